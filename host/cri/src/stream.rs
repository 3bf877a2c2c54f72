//! The client side of the Kubernetes streaming protocols, over WebSocket, for the URLs a CRI
//! runtime's streaming server answers Exec, Attach and PortForward with.
//!
//! exec and attach offer `v5.channel.k8s.io` then `v4.channel.k8s.io`: every binary message is a
//! channel byte (0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize) and its payload; v5 adds channel
//! 255, whose `[255, 0]` closes stdin. The error channel ends the session with a JSON
//! metav1.Status that carries the exit code. port-forward speaks `v4.channel.k8s.io` with the
//! port in the query: channel 0 is the data, channel 1 the error, each opened by the server with
//! the port in two little-endian bytes.
//!
//! Everything the session depends on is in the URL's token (the runtime kept the CRI request's
//! options), so exec and attach send no query of their own.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use http::header::SEC_WEBSOCKET_PROTOCOL;
use http::{HeaderValue, Uri};
use staticlet_runtime::{Duplex, RuntimeError, StreamOptions, StreamOutput, StreamSession, TerminalSize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf, ReadHalf, SimplexStream, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// A streaming connection: plain TCP, since streaming servers listen on loopback.
type Ws = WebSocketStream<TcpStream>;

/// exec/attach's offer, newest first: the server takes the first it speaks. One header value,
/// since Go's x/net/websocket (containerd's and CRI-O's streaming servers) reads only the first.
const REMOTE_COMMAND_PROTOCOLS: &str = "v5.channel.k8s.io, v4.channel.k8s.io";
/// Adds channel 255, the close signal.
const V5: &str = "v5.channel.k8s.io";
/// containerd 1.6's newest: no close signal.
const V4: &str = "v4.channel.k8s.io";
/// exec/attach channels.
const STDIN: u8 = 0;
/// Output, or the terminal's.
const STDOUT: u8 = 1;
/// Standard error, without a TTY.
const STDERR: u8 = 2;
/// The metav1.Status at the end.
const ERROR: u8 = 3;
/// `{"Width":W,"Height":H}` from the client.
const RESIZE: u8 = 4;
/// v5's close signal: `[255, channel]`.
const CLOSE: u8 = 255;
/// port-forward's data channel for its one port.
const PORT_DATA: u8 = 0;
/// port-forward's error channel: the reason forwarding failed.
const PORT_ERROR: u8 = 1;
/// A streaming server on the same host answers at once; this only bounds a wedged one.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// Bounds the close frame sent at the end, for a peer that stopped reading.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest payload of one outgoing message.
const CHUNK: usize = 32 * 1024;
/// Messages buffered towards the caller before the reader waits for it.
const DEPTH: usize = 16;

/// A failure of `call` (the message names host:port at most, never the URL's token).
fn call_error(call: &'static str, message: impl Into<String>) -> RuntimeError {
    RuntimeError::Call { call, message: message.into() }
}

/// Connects and upgrades, returning the connection, the subprotocol the server chose, and the
/// URL's host:port, the only part of the URL errors name (the path holds the session's token).
async fn connect(
    call: &'static str,
    url: &str,
    query: Option<&str>,
    protocols: &'static str,
) -> Result<(Ws, String, String), RuntimeError> {
    let uri: Uri = url.parse().map_err(|e| call_error(call, format!("invalid streaming URL: {e}")))?;
    match uri.scheme_str() {
        Some("http" | "ws") => {}
        other => return Err(call_error(call, format!("streaming URL scheme {other:?} is not supported: only plain http is"))),
    }
    let authority = uri.authority().ok_or_else(|| call_error(call, "streaming URL has no host"))?;
    let target = format!("{}:{}", authority.host(), authority.port_u16().unwrap_or(80));
    let query = match (uri.query(), query) {
        (Some(own), Some(extra)) => format!("?{own}&{extra}"),
        (Some(only), None) | (None, Some(only)) => format!("?{only}"),
        (None, None) => String::new(),
    };
    let mut request = format!("ws://{authority}{}{query}", uri.path())
        .into_client_request()
        .map_err(|e| call_error(call, format!("streaming request to {target}: {e}")))?;
    request.headers_mut().insert(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(protocols));
    let upgrade = async {
        let tcp = TcpStream::connect(&target)
            .await
            .map_err(|e| RuntimeError::Unavailable(format!("{call}: streaming server at {target}: {e}")))?;
        // Keystrokes and small replies should not wait for Nagle.
        let _ = tcp.set_nodelay(true);
        let (ws, response) = tokio_tungstenite::client_async(request, tcp).await.map_err(|e| match e {
            WsError::Http(response) => {
                let body = response.body().as_deref().map(String::from_utf8_lossy).unwrap_or_default();
                let body: String = body.trim().chars().take(200).collect();
                call_error(call, format!("streaming server at {target} refused the upgrade: {} {body}", response.status()))
            }
            other => call_error(call, format!("WebSocket handshake with {target}: {other}")),
        })?;
        let protocol = response.headers().get(SEC_WEBSOCKET_PROTOCOL).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        Ok((ws, protocol))
    };
    let (ws, protocol) = tokio::time::timeout(HANDSHAKE_TIMEOUT, upgrade)
        .await
        .map_err(|_| call_error(call, format!("streaming server at {target}: no answer within {HANDSHAKE_TIMEOUT:?}")))??;
    Ok((ws, protocol, target))
}

/// exec or attach: connects to `url` (from the CRI's Exec/Attach response) and returns the session.
/// `call` is "exec" or "attach" (for error messages). For attach, `exit` resolves to Ok(None).
pub(crate) async fn remote_command(call: &'static str, url: &str, options: StreamOptions) -> Result<StreamSession, RuntimeError> {
    let (ws, protocol, target) = connect(call, url, None, REMOTE_COMMAND_PROTOCOLS).await?;
    if protocol != V5 && protocol != V4 {
        return Err(call_error(
            call,
            format!("streaming server at {target} chose subprotocol {protocol:?}, not {REMOTE_COMMAND_PROTOCOLS}"),
        ));
    }
    let (sink, stream) = ws.split();
    let (stdin_pipe, stdin) = if options.stdin {
        let (read, write) = tokio::io::simplex(2 * CHUNK);
        (Some(read), Some(Box::pin(write) as Pin<Box<dyn AsyncWrite + Send>>))
    } else {
        (None, None)
    };
    let (resize, resizes) = if options.tty {
        let (tx, rx) = mpsc::channel(4);
        (Some(tx), Some(rx))
    } else {
        (None, None)
    };
    let (done_tx, done_rx) = oneshot::channel::<()>();
    tokio::spawn(send_input(sink, stdin_pipe, resizes, protocol == V5, done_rx));
    let (output_tx, output_rx) = mpsc::channel(DEPTH);
    let (mut exit_tx, exit_rx) = oneshot::channel();
    tokio::spawn(async move {
        let outcome = read_output(call, &target, stream, output_tx, &mut exit_tx).await;
        drop(done_tx);
        let _ = exit_tx.send(outcome);
    });
    let output = futures::stream::unfold(output_rx, |mut rx| async move { rx.recv().await.map(|chunk| (Ok(chunk), rx)) }).boxed();
    // The signature names the call only as text; attach has no exit code of its own.
    let attach = call == "attach";
    let exit = Box::pin(async move {
        let code = exit_rx.await.map_err(|_| call_error(call, "the streaming session ended without an outcome"))??;
        Ok((!attach).then_some(code))
    });
    Ok(StreamSession { stdin, output, resize, exit })
}

/// Copies the caller's stdin and resizes to the server until the reader is done.
async fn send_input(
    mut sink: SplitSink<Ws, Message>,
    mut stdin: Option<ReadHalf<SimplexStream>>,
    mut resizes: Option<mpsc::Receiver<TerminalSize>>,
    close_signal: bool,
    mut done: oneshot::Receiver<()>,
) {
    let mut buffer = vec![STDIN; CHUNK + 1];
    loop {
        let message = tokio::select! {
            read = read_some(&mut stdin, &mut buffer[1..]) => match read {
                Ok(n) if n > 0 => Message::binary(buffer[..=n].to_vec()),
                _ => {
                    stdin = None;
                    // v4 cannot close one channel: the process's stdin stays open until it exits
                    // or the connection closes.
                    if !close_signal {
                        continue;
                    }
                    Message::binary(vec![CLOSE, STDIN])
                }
            },
            size = recv_some(&mut resizes) => match size {
                Some(size) => {
                    let json = format!(r#"{{"Width":{},"Height":{}}}"#, size.width, size.height);
                    Message::binary([&[RESIZE][..], json.as_bytes()].concat())
                }
                None => {
                    resizes = None;
                    continue;
                }
            },
            _ = &mut done => break,
        };
        if sink.send(message).await.is_err() {
            return;
        }
    }
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.close()).await;
}

/// Reads from `reader`, or waits forever once it is gone (a `select!` branch that stays quiet).
async fn read_some<R: AsyncRead + Unpin>(reader: &mut Option<R>, buffer: &mut [u8]) -> io::Result<usize> {
    match reader {
        Some(reader) => reader.read(buffer).await,
        None => std::future::pending().await,
    }
}

/// Receives from `rx`, or waits forever once it is gone.
async fn recv_some<T>(rx: &mut Option<mpsc::Receiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Forwards output until the server closes, then decodes the error channel into the exit code.
async fn read_output(
    call: &'static str,
    target: &str,
    mut stream: SplitStream<Ws>,
    output: mpsc::Sender<StreamOutput>,
    exit: &mut oneshot::Sender<Result<i32, RuntimeError>>,
) -> Result<i32, RuntimeError> {
    let mut status = Vec::new();
    loop {
        let message = tokio::select! {
            message = stream.next() => message,
            // The caller dropped the session: hang up rather than wait out a long attach.
            () = exit.closed() => return Ok(0),
        };
        let data = match message {
            Some(Ok(Message::Binary(data))) => data,
            Some(Ok(Message::Close(_))) | None => break,
            // A status read in full is the outcome even if the connection then ends badly.
            Some(Err(_)) if !status.is_empty() => break,
            Some(Err(e)) => return Err(call_error(call, format!("reading from the streaming server at {target}: {e}"))),
            // tungstenite answers pings itself; the binary protocols send no text.
            Some(Ok(_)) => continue,
        };
        // The server opens the session with an empty message; empty payloads carry nothing.
        let (Some(&channel), Some(payload)) = (data.first(), data.get(1..).filter(|p| !p.is_empty())) else {
            continue;
        };
        let chunk = match channel {
            STDOUT => StreamOutput::Stdout(payload.to_vec()),
            STDERR => StreamOutput::Stderr(payload.to_vec()),
            ERROR => {
                status.extend_from_slice(payload);
                continue;
            }
            _ => {
                tracing::debug!(channel, "ignoring a streaming message on an unexpected channel");
                continue;
            }
        };
        // A caller that stopped reading output may still want the exit code: read on.
        let _ = output.send(chunk).await;
    }
    exit_code(call, &status)
}

/// Decodes the error channel as client-go's v4 decoder does: nothing or Success is 0, a
/// NonZeroExitCode failure its code, and any other failure an error with the server's message.
fn exit_code(call: &'static str, status: &[u8]) -> Result<i32, RuntimeError> {
    if status.is_empty() {
        return Ok(0);
    }
    let status: serde_json::Value = serde_json::from_slice(status)
        .map_err(|e| call_error(call, format!("error stream protocol error: {e} in {:?}", String::from_utf8_lossy(status))))?;
    match status["status"].as_str() {
        Some("Success") => Ok(0),
        Some("Failure") if status["reason"] == "NonZeroExitCode" => {
            let causes = status["details"]["causes"].as_array().map(Vec::as_slice).unwrap_or_default();
            let cause = causes
                .iter()
                .find(|c| c["reason"] == "ExitCode")
                .ok_or_else(|| call_error(call, "error stream protocol error: no ExitCode cause given"))?;
            let code = cause["message"].as_str().unwrap_or_default();
            // client-go takes exit codes as 0-255 too.
            code.parse::<u8>()
                .map(i32::from)
                .map_err(|_| call_error(call, format!("error stream protocol error: invalid exit code value {code:?}")))
        }
        Some("Failure") => Err(call_error(call, status["message"].as_str().unwrap_or("the streaming server reported a failure"))),
        _ => Err(call_error(call, format!("error stream protocol error: unknown status {status}"))),
    }
}

/// port-forward: connects to `url` (from the CRI's PortForward response) for `port` and returns a byte stream both ways.
///
/// The CRI PortForward call must have named `port` alone: containerd's streaming server (the
/// kubelet's streaming library) forwards the request's ports and ignores the query, which is
/// sent for servers that read it; the port each channel opens with is checked against `port`.
///
/// v4 has no half-close: shutting down the returned stream's write side only stops this side
/// writing, and the pod's end of the connection stays open until it closes its own or the
/// stream is dropped.
pub(crate) async fn port_forward(url: &str, port: u16) -> Result<Box<dyn Duplex>, RuntimeError> {
    const CALL: &str = "port_forward";
    let (ws, _, _) = connect(CALL, url, Some(&format!("port={port}")), V4).await?;
    let (sink, stream) = ws.split();
    let (to_pod_pipe, to_pod) = tokio::io::simplex(2 * CHUNK);
    let (from_pod_tx, from_pod) = mpsc::channel(DEPTH);
    let (done_tx, done_rx) = oneshot::channel::<()>();
    tokio::spawn(send_port_data(sink, to_pod_pipe, done_rx));
    tokio::spawn(async move {
        receive_port_data(stream, port, from_pod_tx).await;
        drop(done_tx);
    });
    Ok(Box::new(PortStream { from_pod, pending: Bytes::new(), to_pod }))
}

/// Copies what the caller writes to the data channel until the reader is done.
async fn send_port_data(mut sink: SplitSink<Ws, Message>, pipe: ReadHalf<SimplexStream>, mut done: oneshot::Receiver<()>) {
    let mut pipe = Some(pipe);
    let mut buffer = vec![PORT_DATA; CHUNK + 1];
    loop {
        tokio::select! {
            read = read_some(&mut pipe, &mut buffer[1..]) => match read {
                Ok(n) if n > 0 => {
                    if sink.send(Message::binary(buffer[..=n].to_vec())).await.is_err() {
                        return;
                    }
                }
                // The caller shut down its write side: v4 has no way to tell the pod.
                _ => pipe = None,
            },
            _ = &mut done => break,
        }
    }
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.close()).await;
}

/// Delivers the data channel to the caller and the error channel as an error, until the server
/// closes or the caller drops its stream.
async fn receive_port_data(mut stream: SplitStream<Ws>, port: u16, tx: mpsc::Sender<io::Result<Bytes>>) {
    // Each channel opens with its port, which this side checks and strips.
    let mut opened = [false; 2];
    loop {
        let message = tokio::select! {
            message = stream.next() => message,
            () = tx.closed() => return,
        };
        let mut payload = match message {
            Some(Ok(Message::Binary(data))) => data,
            Some(Ok(Message::Close(_))) | None => return,
            Some(Ok(_)) => continue,
            Some(Err(e)) => {
                let _ = tx.send(Err(io::Error::new(io::ErrorKind::ConnectionAborted, e))).await;
                return;
            }
        };
        let Some(&channel) = payload.first() else {
            continue;
        };
        let Some(opened) = opened.get_mut(usize::from(channel)) else {
            tracing::debug!(channel, "ignoring a port-forward message on an unexpected channel");
            continue;
        };
        if !*opened {
            let got = payload.get(1..3).map(|p| u16::from_le_bytes([p[0], p[1]]));
            if got != Some(port) {
                let message = format!("port-forward protocol error: channel {channel} opened for port {got:?}, not {port}");
                let _ = tx.send(Err(io::Error::new(io::ErrorKind::InvalidData, message))).await;
                return;
            }
            *opened = true;
            payload = payload.slice(3..);
        } else {
            payload = payload.slice(1..);
        }
        if payload.is_empty() {
            continue;
        }
        if channel == PORT_ERROR {
            // The pod's port could not be reached, or forwarding failed: nothing more will come.
            let _ = tx.send(Err(io::Error::other(String::from_utf8_lossy(&payload).into_owned()))).await;
            return;
        }
        if tx.send(Ok(payload)).await.is_err() {
            return;
        }
    }
}

/// One forwarded connection, as the caller sees it.
struct PortStream {
    /// The data channel's payloads, or the error channel's message as an error.
    from_pod: mpsc::Receiver<io::Result<Bytes>>,
    /// The rest of the last payload, when the caller's buffer was smaller.
    pending: Bytes,
    /// To the writer task, which frames it for the data channel.
    to_pod: WriteHalf<SimplexStream>,
}

impl AsyncRead for PortStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        while self.pending.is_empty() {
            match ready!(self.from_pod.poll_recv(cx)) {
                Some(Ok(bytes)) => self.pending = bytes,
                Some(Err(e)) => return Poll::Ready(Err(e)),
                None => return Poll::Ready(Ok(())),
            }
        }
        let n = self.pending.len().min(buf.remaining());
        buf.put_slice(&self.pending.split_to(n));
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for PortStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.to_pod).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.to_pod).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.to_pod).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;
