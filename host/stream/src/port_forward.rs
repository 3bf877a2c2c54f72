//! port-forward: every forwarded connection is a pair of streams (data and error) that the
//! client opens over SPDY, directly or tunnelled through WebSocket; the legacy WebSocket
//! protocol instead has a fixed pair of channels per port named in the query.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::Role;

use crate::negotiate::{Agreed, Offer};
use crate::pipe::{INBOUND_DEPTH, MAX_CHUNK, MessageReader, MessageWriter};
use crate::spdy::{Accepted, IncomingStream, Session};
use crate::tunnel::WsByteStream;
use crate::websocket::{self, ChannelCodec, ChannelFraming, Outbound, Routes};
use crate::{Rejected, Tunnel};

/// SPDY tunnelled through WebSocket, kubectl's default since 1.31.
pub const TUNNEL_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";

/// What port-forward speaks: SPDY (directly or tunnelled) and the kubelet's WebSocket channels.
pub const OFFER: Offer = Offer {
    what: "port-forward",
    spdy: &["portforward.k8s.io"],
    websocket: &[TUNNEL_PROTOCOL, "v4.channel.k8s.io", "v4.base64.channel.k8s.io", ""],
};

/// How long the second stream of a pair may take after the first (the kubelet's default).
const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);

/// How long closing waits for the last messages to go out and for the client to answer.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// The ports of a legacy WebSocket request: `port` (the kubelet's name) or `ports` (the API's),
/// each repeated or comma-separated.
pub fn query_ports(uri: &http::Uri) -> Result<Vec<u16>, Rejected> {
    let bad = |message: String| Rejected { status: http::StatusCode::BAD_REQUEST, message };
    let mut ports = Vec::new();
    for (name, value) in form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes()) {
        if name != "port" && name != "ports" {
            continue;
        }
        for text in value.split(',') {
            match text.trim().parse::<u16>() {
                Ok(port) if port > 0 => ports.push(port),
                _ => return Err(bad(format!("unable to parse {text:?} as a port"))),
            }
        }
    }
    if ports.is_empty() {
        return Err(bad("query parameter \"port\" is required".to_owned()));
    }
    // Two channels a port, numbered in one byte.
    if ports.len() > 128 {
        return Err(bad(format!("at most 128 ports can be forwarded at once, not {}", ports.len())));
    }
    Ok(ports)
}

/// Serves one upgraded port-forward connection to the end.
pub async fn serve<F, Fut>(upgraded: Upgraded, agreed: Agreed, ports: Vec<u16>, connect: Arc<F>)
where
    F: Fn(u16) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Box<dyn Tunnel>, String>> + Send + 'static,
{
    let io = TokioIo::new(upgraded);
    match agreed {
        Agreed::Spdy(_) => serve_spdy(io, connect).await,
        Agreed::WebSocket { protocol, .. } => {
            let ws = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
            if protocol == TUNNEL_PROTOCOL {
                serve_spdy(WsByteStream::new(ws), connect).await;
            } else {
                serve_websocket(ws, protocol, ports, connect).await;
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Data,
    Error,
}

/// One accepted stream of a forwarded connection.
struct PairStream {
    kind: Kind,
    port: u16,
    request_id: String,
    stream: Accepted,
}

impl PairStream {
    /// Accepts a stream with valid headers, refuses any other (its CreateStream then fails).
    async fn accept(incoming: IncomingStream) -> Option<PairStream> {
        let port = incoming.headers.get("port").and_then(|p| p.parse::<u16>().ok()).filter(|p| *p > 0);
        let kind = match incoming.headers.get("streamtype") {
            Some("data") => Some(Kind::Data),
            Some("error") => Some(Kind::Error),
            _ => None,
        };
        let (Some(port), Some(kind)) = (port, kind) else {
            tracing::debug!(id = incoming.id(), headers = ?incoming.headers, "refusing a port-forward stream without a valid port and type");
            incoming.refuse().await;
            return None;
        };
        let request_id = match incoming.headers.get("requestid") {
            Some(id) if !id.is_empty() => id.to_owned(),
            // Clients older than request ids open error then data back to back: pair by stream id.
            _ => match kind {
                Kind::Error => incoming.id().to_string(),
                Kind::Data => incoming.id().wrapping_sub(2).to_string(),
            },
        };
        Some(PairStream { kind, port, request_id, stream: incoming.accept().await })
    }
}

async fn serve_spdy<T, F, Fut>(io: T, connect: Arc<F>)
where
    T: AsyncRead + AsyncWrite + Send + 'static,
    F: Fn(u16) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Box<dyn Tunnel>, String>> + Send + 'static,
{
    let mut session = match Session::start(io) {
        Ok(session) => session,
        Err(error) => {
            tracing::warn!(%error, "starting a SPDY session");
            return;
        }
    };
    // First streams of pairs whose second has not arrived yet, by request id.
    let mut waiting: HashMap<String, oneshot::Sender<PairStream>> = HashMap::new();
    let mut pairs = JoinSet::new();
    while let Some(incoming) = session.next_stream().await {
        while pairs.try_join_next().is_some() {}
        let Some(stream) = PairStream::accept(incoming).await else {
            continue;
        };
        waiting.retain(|_, first| !first.is_closed());
        let stream = match waiting.remove(&stream.request_id) {
            Some(first) => match first.send(stream) {
                Ok(()) => continue,
                // The first one timed out in the meantime: this one starts a new pair.
                Err(stream) => stream,
            },
            None => stream,
        };
        let (second_tx, second_rx) = oneshot::channel();
        waiting.insert(stream.request_id.clone(), second_tx);
        pairs.spawn(pair(stream, second_rx, Arc::clone(&connect)));
    }
    tracing::debug!("port-forward connection ended");
    drop(waiting);
    pairs.shutdown().await;
    session.close().await;
}

/// Waits for the other stream of a pair, then forwards.
async fn pair<F, Fut>(first: PairStream, second: oneshot::Receiver<PairStream>, connect: Arc<F>)
where
    F: Fn(u16) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Box<dyn Tunnel>, String>> + Send + 'static,
{
    let second = match tokio::time::timeout(STREAM_CREATION_TIMEOUT, second).await {
        Ok(Ok(second)) => second,
        _ => {
            let message = format!("timed out waiting for the streams of port-forward request {}", first.request_id);
            tracing::debug!(port = first.port, "{message}");
            fail(first, &message).await;
            return;
        }
    };
    let (data, error) = match (first.kind, second.kind) {
        (Kind::Data, Kind::Error) => (first, second),
        (Kind::Error, Kind::Data) => (second, first),
        (kind, _) => {
            let message = format!("error processing stream for request {}: {kind:?} stream already assigned", first.request_id);
            tracing::debug!("{message}");
            second.stream.control.reset().await;
            fail(first, &message).await;
            return;
        }
    };
    forward(data, error, connect.as_ref()).await;
}

/// Reports `message` on an error stream, or resets a data stream, ending it either way.
async fn fail(stream: PairStream, message: &str) {
    let Accepted { mut writer, control, .. } = stream.stream;
    if stream.kind == Kind::Error {
        let _ = writer.write_all(message.as_bytes()).await;
        control.finish().await;
    } else {
        control.reset().await;
    }
}

async fn forward<F, Fut>(data: PairStream, error: PairStream, connect: &F)
where
    F: Fn(u16) -> Fut,
    Fut: Future<Output = Result<Box<dyn Tunnel>, String>>,
{
    let port = data.port;
    let Accepted { inbound, writer: mut to_client, control: data_control } = data.stream;
    let tunnel = match connect(port).await {
        Ok(tunnel) => tunnel,
        Err(message) => {
            // As the kubelet does: the message on the error stream (kubectl 1.32 then reports it
            // and ends the port-forward), and the data stream reset.
            tracing::debug!(port, %message, "port-forward connect failed");
            fail(error, &message).await;
            data_control.reset().await;
            return;
        }
    };
    let (from_pod, mut to_pod) = tokio::io::split(tunnel);
    let upstream = async {
        let copied = tokio::io::copy(&mut MessageReader::new(inbound), &mut to_pod).await;
        let _ = to_pod.shutdown().await;
        copied
    };
    let downstream = async {
        let copied = tokio::io::copy_buf(&mut BufReader::with_capacity(MAX_CHUNK, from_pod), &mut to_client).await;
        let _ = to_client.shutdown().await;
        copied
    };
    tokio::pin!(upstream, downstream);
    let (mut up_done, mut down_done) = (false, false);
    // client-go resets the data stream once the pod's side has ended (our FIN), or when its
    // local connection fails: either way nothing more can flow and the pair is over.
    while !(up_done && down_done) {
        tokio::select! {
            copied = &mut upstream, if !up_done => {
                up_done = true;
                tracing::trace!(port, ?copied, "port-forward client-to-pod copy ended");
                if data_control.is_reset() {
                    break;
                }
            }
            copied = &mut downstream, if !down_done => {
                down_done = true;
                tracing::trace!(port, ?copied, "port-forward pod-to-client copy ended");
            }
        }
    }
    data_control.finish().await;
    let Accepted { control: error_control, .. } = error.stream;
    // The client waits for the error stream to end before it closes its local connection.
    error_control.finish().await;
}

async fn serve_websocket<S, F, Fut>(ws: WebSocketStream<S>, protocol: &'static str, ports: Vec<u16>, connect: Arc<F>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Fn(u16) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Box<dyn Tunnel>, String>> + Send + 'static,
{
    let codec = ChannelCodec::for_protocol(protocol);
    let (sink, stream) = ws.split();
    let (out, mut writer) = websocket::spawn_writer(sink);
    let mut routes = Routes::new();
    let mut forwards = JoinSet::new();
    for (index, port) in ports.into_iter().enumerate() {
        // query_ports allows at most 128 ports, so both channel numbers fit in a byte.
        let data_channel = (index * 2) as u8;
        // Each channel opens with its port, little-endian, as the kubelet writes it.
        for channel in [data_channel, data_channel + 1] {
            let _ = out.send(Outbound::Message(codec.encode(channel, &port.to_le_bytes()))).await;
        }
        let (tx, rx) = mpsc::channel(INBOUND_DEPTH);
        routes.insert(data_channel, tx);
        forwards.spawn(forward_channels(port, data_channel, codec, rx, out.clone(), Arc::clone(&connect)));
    }
    let mut reader = tokio::spawn(websocket::read_loop(stream, codec, routes));
    let mut reader_done = false;
    tokio::select! {
        () = async { while forwards.join_next().await.is_some() {} } => {}
        _ = &mut reader => reader_done = true,
    }
    forwards.shutdown().await;
    let _ = out.send(Outbound::Close).await;
    drop(out);
    if tokio::time::timeout(CLOSE_GRACE, &mut writer).await.is_err() {
        writer.abort();
    }
    if !reader_done && tokio::time::timeout(CLOSE_GRACE, &mut reader).await.is_err() {
        reader.abort();
    }
}

/// One port of a legacy WebSocket port-forward: data on `data_channel`, errors on the next.
async fn forward_channels<F, Fut>(
    port: u16,
    data_channel: u8,
    codec: ChannelCodec,
    inbound: mpsc::Receiver<bytes::Bytes>,
    out: mpsc::Sender<Outbound>,
    connect: Arc<F>,
) where
    F: Fn(u16) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Box<dyn Tunnel>, String>> + Send + 'static,
{
    let tunnel = match connect(port).await {
        Ok(tunnel) => tunnel,
        Err(message) => {
            tracing::debug!(port, %message, "port-forward connect failed");
            let _ = out.send(Outbound::Message(codec.encode(data_channel + 1, message.as_bytes()))).await;
            return;
        }
    };
    let (from_pod, mut to_pod) = tokio::io::split(tunnel);
    let mut to_client = MessageWriter::new(out, ChannelFraming { channel: data_channel, codec });
    let upstream = async {
        let _ = tokio::io::copy(&mut MessageReader::new(inbound), &mut to_pod).await;
        let _ = to_pod.shutdown().await;
    };
    let mut from_pod = BufReader::with_capacity(MAX_CHUNK, from_pod);
    let downstream = tokio::io::copy_buf(&mut from_pod, &mut to_client);
    tokio::pin!(upstream, downstream);
    let mut up_done = false;
    // The port is done when the pod's side ends; the client's side ends only with the connection.
    loop {
        tokio::select! {
            copied = &mut downstream => {
                tracing::trace!(port, ?copied, "port-forward pod-to-client copy ended");
                break;
            }
            () = &mut upstream, if !up_done => up_done = true,
        }
    }
}
