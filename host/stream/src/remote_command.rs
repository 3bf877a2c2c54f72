//! exec and attach over either transport: build the [`RemoteStreams`], run the command, report
//! how it ended on the error stream, close.

use std::future::Future;
use std::time::Duration;

use futures::StreamExt;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::Role;

use crate::negotiate::{Agreed, Offer};
use crate::pipe::{INBOUND_DEPTH, MessageReader, MessageWriter};
use crate::spdy::{Accepted, IncomingStream, Session};
use crate::websocket::{self, ChannelCodec, ChannelFraming, Outbound, Routes};
use crate::{Outcome, RemoteCommandOptions, RemoteStreams, resize, status};

/// What exec and attach speak. SPDY stops at v4, as the kubelet's does (client-go treats a v5
/// SPDY answer as v4 anyway); over WebSocket, v5 is kubectl's only offer, and the rest are what
/// the kubelet and older clients speak ("" is a client that names no subprotocol).
pub const OFFER: Offer = Offer {
    what: "exec/attach",
    spdy: &["v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io"],
    websocket: &[
        "v5.channel.k8s.io",
        "v4.channel.k8s.io",
        "v4.base64.channel.k8s.io",
        "v3.channel.k8s.io",
        "v2.channel.k8s.io",
        "channel.k8s.io",
        "base64.channel.k8s.io",
        "",
    ],
};

/// How long a SPDY client has to open its streams (the kubelet's default).
const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);

/// How long closing waits for the last messages to go out and for the client to answer the close.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;

/// The protocol generation: 4 and up report a JSON Status, 3 and up have a resize stream.
fn generation(protocol: &str) -> u8 {
    match protocol {
        "v5.channel.k8s.io" => 5,
        "v4.channel.k8s.io" | "v4.base64.channel.k8s.io" => 4,
        "v3.channel.k8s.io" => 3,
        "v2.channel.k8s.io" => 2,
        _ => 1,
    }
}

fn status_payload(generation: u8, outcome: &Outcome) -> Option<Vec<u8>> {
    if generation >= 4 { Some(status::json(outcome)) } else { status::text(outcome) }
}

/// Serves one upgraded exec/attach connection to the end.
pub async fn serve<F, Fut>(upgraded: Upgraded, agreed: Agreed, options: RemoteCommandOptions, run: F)
where
    F: FnOnce(RemoteStreams) -> Fut + Send + 'static,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    let io = TokioIo::new(upgraded);
    match agreed {
        Agreed::Spdy(protocol) => serve_spdy(io, generation(protocol), options, run).await,
        Agreed::WebSocket { protocol, .. } => {
            let ws = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
            serve_websocket(ws, protocol, options, run).await;
        }
    }
}

async fn serve_websocket<S, F, Fut>(ws: WebSocketStream<S>, protocol: &'static str, options: RemoteCommandOptions, run: F)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: FnOnce(RemoteStreams) -> Fut,
    Fut: Future<Output = Outcome>,
{
    let codec = ChannelCodec::for_protocol(protocol);
    let (sink, stream) = ws.split();
    let (out, mut writer) = websocket::spawn_writer(sink);
    let writer_for =
        |channel| -> Box<dyn AsyncWrite + Send + Unpin> { Box::new(MessageWriter::new(out.clone(), ChannelFraming { channel, codec })) };
    let mut routes = Routes::new();
    let stdin = options.stdin.then(|| -> Box<dyn AsyncRead + Send + Unpin> {
        let (tx, rx) = mpsc::channel(INBOUND_DEPTH);
        routes.insert(STDIN, tx);
        Box::new(MessageReader::new(rx))
    });
    let resize = options.tty.then(|| {
        let (tx, rx) = mpsc::channel(INBOUND_DEPTH);
        routes.insert(RESIZE, tx);
        resize::spawn(rx)
    });
    let streams = RemoteStreams {
        stdin,
        stdout: options.stdout.then(|| writer_for(STDOUT)),
        stderr: options.stderr.then(|| writer_for(STDERR)),
        resize,
    };
    // The kubelet and the API server announce the session with an empty message on the lowest
    // channel the client reads.
    let first = if options.stdout {
        STDOUT
    } else if options.stderr {
        STDERR
    } else {
        ERROR
    };
    let _ = out.send(Outbound::Message(codec.encode(first, &[]))).await;
    let mut reader = tokio::spawn(websocket::read_loop(stream, codec, routes));

    let outcome = run(streams).await;
    tracing::debug!(?outcome, protocol, "exec/attach over WebSocket finished");
    if let Some(payload) = status_payload(generation(protocol), &outcome) {
        let _ = out.send(Outbound::Message(codec.encode(ERROR, &payload))).await;
    }
    let _ = out.send(Outbound::Close).await;
    drop(out);
    if tokio::time::timeout(CLOSE_GRACE, &mut writer).await.is_err() {
        writer.abort();
    }
    // Read on until the client answers the close, so the connection ends cleanly.
    if tokio::time::timeout(CLOSE_GRACE, &mut reader).await.is_err() {
        reader.abort();
    }
}

/// The SPDY streams of a session, as the client opens them.
#[derive(Default)]
struct Opened {
    error: Option<Accepted>,
    stdin: Option<Accepted>,
    stdout: Option<Accepted>,
    stderr: Option<Accepted>,
    resize: Option<Accepted>,
}

impl Opened {
    fn complete(&self, options: &RemoteCommandOptions, resize: bool) -> bool {
        self.error.is_some()
            && (!options.stdin || self.stdin.is_some())
            && (!options.stdout || self.stdout.is_some())
            && (!options.stderr || self.stderr.is_some())
            && (!resize || self.resize.is_some())
    }

    async fn take(&mut self, incoming: IncomingStream) {
        let kind = incoming.headers.get("streamtype").unwrap_or_default().to_owned();
        let id = incoming.id();
        // Every stream is answered, as spdystream does, so a client never waits on a reply.
        let accepted = incoming.accept().await;
        let slot = match kind.as_str() {
            "error" => &mut self.error,
            "stdin" => &mut self.stdin,
            "stdout" => &mut self.stdout,
            "stderr" => &mut self.stderr,
            "resize" => &mut self.resize,
            _ => {
                tracing::debug!(id, kind, "ignoring a SPDY stream of unknown type");
                return;
            }
        };
        if slot.is_some() {
            tracing::debug!(id, kind, "ignoring a second SPDY stream of one type");
            return;
        }
        *slot = Some(accepted);
    }
}

async fn serve_spdy<T, F, Fut>(io: T, generation: u8, options: RemoteCommandOptions, run: F)
where
    T: AsyncRead + AsyncWrite + Send + 'static,
    F: FnOnce(RemoteStreams) -> Fut,
    Fut: Future<Output = Outcome>,
{
    let mut session = match Session::start(io) {
        Ok(session) => session,
        Err(error) => {
            tracing::warn!(%error, "starting a SPDY session");
            return;
        }
    };
    let wants_resize = options.tty && generation >= 3;
    let mut opened = Opened::default();
    let deadline = tokio::time::Instant::now() + STREAM_CREATION_TIMEOUT;
    while !opened.complete(&options, wants_resize) {
        match tokio::time::timeout_at(deadline, session.next_stream()).await {
            Ok(Some(incoming)) => opened.take(incoming).await,
            Ok(None) => {
                tracing::debug!("exec/attach client hung up before opening its streams");
                session.close().await;
                return;
            }
            Err(_) => {
                tracing::warn!("timed out waiting for the exec/attach client to create its streams");
                session.close().await;
                return;
            }
        }
    }
    let Opened { error: Some(error), stdin, stdout, stderr, resize } = opened else {
        // complete() requires the error stream.
        return;
    };
    // A stream the client asked for but the options did not is answered and then ignored.
    let keep = |stream: Option<Accepted>, wanted: bool| stream.filter(|_| wanted);
    let (stdin, stdout, stderr, resize) =
        (keep(stdin, options.stdin), keep(stdout, options.stdout), keep(stderr, options.stderr), keep(resize, wants_resize));
    let mut controls = Vec::new();
    let mut streams = RemoteStreams { stdin: None, stdout: None, stderr: None, resize: None };
    if let Some(stream) = stdin {
        controls.push(stream.control);
        streams.stdin = Some(Box::new(MessageReader::new(stream.inbound)));
    }
    if let Some(stream) = stdout {
        controls.push(stream.control);
        streams.stdout = Some(Box::new(stream.writer));
    }
    if let Some(stream) = stderr {
        controls.push(stream.control);
        streams.stderr = Some(Box::new(stream.writer));
    }
    if let Some(stream) = resize {
        controls.push(stream.control);
        streams.resize = Some(resize::spawn(stream.inbound));
    }
    let Accepted { writer: mut error_writer, control: error_control, .. } = error;

    let run = run(streams);
    tokio::pin!(run);
    let outcome = loop {
        tokio::select! {
            outcome = &mut run => break outcome,
            Some(extra) = session.next_stream() => {
                tracing::debug!(id = extra.id(), "ignoring a SPDY stream opened after the session started");
                drop(extra.accept().await);
            }
        }
    };
    tracing::debug!(?outcome, generation, "exec/attach over SPDY finished");
    if let Some(payload) = status_payload(generation, &outcome)
        && let Err(error) = error_writer.write_all(&payload).await
    {
        tracing::debug!(%error, "writing the exec/attach status");
    }
    // Half-close everything this side writes (stdin too: client-go waits for that to stop
    // copying), then GOAWAY: the client's reads all end, and it hangs up.
    error_control.finish().await;
    for control in controls {
        control.finish().await;
    }
    session.close().await;
}
