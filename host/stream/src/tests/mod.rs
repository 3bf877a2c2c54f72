//! End to end over loopback: a hyper server serving this crate's endpoints, driven by WebSocket
//! and SPDY clients that behave as client-go's do (the headers it sends, the streams it opens,
//! the order it closes them in).

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_util::codec::{FramedRead, FramedWrite};

use crate::negotiate::Agreed;
use crate::spdy::frame::{Frame, FrameDecoder, FrameEncoder, REFUSED_STREAM};
use crate::spdy::headers::Headers;
use crate::tunnel::WsByteStream;
use crate::*;

mod kubectl;

const PATIENCE: Duration = Duration::from_secs(30);

/// Serves `handler` on a loopback port, with upgrades, the way the agent will.
async fn server<H>(handler: H) -> SocketAddr
where
    H: Fn(&mut Request<Incoming>) -> Response<Full<Bytes>> + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handler = Arc::new(handler);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let handler = Arc::clone(&handler);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
                    let response = handler(&mut request);
                    async move { Ok::<_, Infallible>(response) }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).with_upgrades().await;
            });
        }
    });
    addr
}

/// The agent's part: a 101 with an empty body, or the rejection as a plain error.
fn answer(upgrade: Result<Response<()>, Rejected>) -> Response<Full<Bytes>> {
    match upgrade {
        Ok(response) => response.map(|()| Full::new(Bytes::new())),
        Err(rejected) => {
            let mut response = Response::new(Full::new(Bytes::from(rejected.message)));
            *response.status_mut() = rejected.status;
            response
        }
    }
}

/// A pod-side TCP server that echoes, and half-closes when its client does.
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut read, mut write) = stream.split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
                let _ = write.shutdown().await;
            });
        }
    });
    addr
}

/// Port 80 reaches the echo server; any other port fails as a closed port in a pod would.
fn connector(
    echo: SocketAddr,
) -> impl Fn(u16) -> futures::future::BoxFuture<'static, Result<Box<dyn Tunnel>, String>> + Send + Sync + 'static {
    move |port| {
        Box::pin(async move {
            if port != 80 {
                return Err(format!("error forwarding port {port} to pod 1234, uid : connection refused"));
            }
            let stream = TcpStream::connect(echo).await.map_err(|e| e.to_string())?;
            Ok(Box::new(stream) as Box<dyn Tunnel>)
        })
    }
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ (i >> 12) as u8).collect()
}

async fn ws_connect(addr: SocketAddr, path: &str, protocol: &str) -> WebSocketStream<TcpStream> {
    let mut request = format!("ws://{addr}{path}").into_client_request().unwrap();
    request.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_str(protocol).unwrap());
    let stream = TcpStream::connect(addr).await.unwrap();
    let (ws, response) = tokio_tungstenite::client_async(request, stream).await.unwrap();
    assert_eq!(response.headers()["sec-websocket-protocol"], protocol);
    ws
}

/// Everything a WebSocket channel client received, until the server closed.
#[derive(Default, Debug)]
struct Channels {
    first: Option<Vec<u8>>,
    data: HashMap<u8, Vec<u8>>,
    close: Option<CloseCode>,
}

async fn read_channels(ws: &mut WebSocketStream<TcpStream>, channels: &mut Channels, done: impl Fn(&Channels) -> bool) {
    while !done(channels) {
        match tokio::time::timeout(PATIENCE, ws.next()).await.expect("server went quiet") {
            Some(Ok(Message::Binary(message))) => {
                channels.first.get_or_insert_with(|| message.to_vec());
                channels.data.entry(message[0]).or_default().extend_from_slice(&message[1..]);
            }
            Some(Ok(Message::Close(frame))) => channels.close = frame.map(|f| f.code),
            Some(Ok(other)) => panic!("unexpected message {other:?}"),
            Some(Err(_)) | None => break,
        }
    }
}

#[tokio::test]
async fn websocket_v5_exec_echoes_stdin_until_the_close_signal() {
    let addr = server(|request| {
        answer(remote_command(
            request,
            RemoteCommandOptions { stdin: true, stdout: true, stderr: true, tty: false },
            |streams| async move {
                let RemoteStreams { stdin, stdout, stderr, resize } = streams;
                let (Some(mut stdin), Some(mut stdout), Some(mut stderr), None) = (stdin, stdout, stderr, resize) else {
                    return Outcome::Failed("wrong streams".into());
                };
                // Reaching EOF proves the v5 close signal ended stdin.
                let copied = tokio::io::copy(&mut stdin, &mut stdout).await.unwrap();
                stderr.write_all(format!("copied {copied}").as_bytes()).await.unwrap();
                Outcome::Exited(3)
            },
        ))
    })
    .await;
    let mut ws = ws_connect(addr, "/exec?stdin=true&stdout=true&stderr=true", "v5.channel.k8s.io").await;
    for part in [&b"hello "[..], b"world"] {
        ws.send(Message::binary([&[0u8][..], part].concat())).await.unwrap();
    }
    ws.send(Message::binary(vec![255, 0])).await.unwrap();
    let mut channels = Channels::default();
    read_channels(&mut ws, &mut channels, |_| false).await;

    assert_eq!(channels.first.as_deref(), Some(&[1u8][..]), "the session opens with an empty stdout message");
    assert_eq!(channels.data[&1], b"hello world");
    assert_eq!(channels.data[&2], b"copied 11");
    let status: serde_json::Value = serde_json::from_slice(&channels.data[&3]).unwrap();
    assert_eq!(status["status"], "Failure");
    assert_eq!(status["reason"], "NonZeroExitCode");
    assert_eq!(status["details"]["causes"][0], serde_json::json!({"reason": "ExitCode", "message": "3"}));
    assert_eq!(channels.close, Some(CloseCode::Normal), "client-go reads only a normal closure as EOF");
}

#[tokio::test]
async fn websocket_v4_tty_exec_delivers_resizes_and_success() {
    let addr = server(|request| {
        answer(remote_command(request, RemoteCommandOptions { stdin: true, stdout: true, stderr: true, tty: true }, |streams| async move {
            let RemoteStreams { stdin, stdout, stderr, resize } = streams;
            let (Some(_stdin), Some(mut stdout), None, Some(mut resize)) = (stdin, stdout, stderr, resize) else {
                return Outcome::Failed("wrong streams for a TTY".into());
            };
            let size = resize.recv().await.unwrap();
            stdout.write_all(format!("{}x{}", size.width, size.height).as_bytes()).await.unwrap();
            Outcome::Exited(0)
        }))
    })
    .await;
    let mut ws = ws_connect(addr, "/exec?stdin=true&stdout=true&tty=true", "v4.channel.k8s.io").await;
    // One size split across two messages, as a stream protocol allows.
    ws.send(Message::binary(b"\x04{\"Width\":120,".to_vec())).await.unwrap();
    ws.send(Message::binary(b"\x04\"Height\":40}\n".to_vec())).await.unwrap();
    let mut channels = Channels::default();
    read_channels(&mut ws, &mut channels, |_| false).await;
    assert_eq!(channels.data[&1], b"120x40");
    assert_eq!(channels.data[&3], br#"{"metadata":{},"status":"Success"}"#);
    assert!(!channels.data.contains_key(&2));
}

#[tokio::test]
async fn websocket_v4_without_close_signal_keeps_channel_255_as_data() {
    // v4 has no close signal: stdin ends only with the connection, so the command here ends
    // on its own and reports a failure as a v4 Status.
    let addr = server(|request| {
        answer(remote_command(
            request,
            RemoteCommandOptions { stdin: true, stdout: true, stderr: false, tty: false },
            |streams| async move {
                let mut stdin = streams.stdin.unwrap();
                let mut first = [0u8; 5];
                stdin.read_exact(&mut first).await.unwrap();
                streams.stdout.unwrap().write_all(&first).await.unwrap();
                Outcome::Failed("container is gone".into())
            },
        ))
    })
    .await;
    let mut ws = ws_connect(addr, "/exec", "v4.channel.k8s.io").await;
    ws.send(Message::binary(vec![255, 0])).await.unwrap();
    ws.send(Message::binary(b"\x00hello".to_vec())).await.unwrap();
    let mut channels = Channels::default();
    read_channels(&mut ws, &mut channels, |_| false).await;
    assert_eq!(channels.data[&1], b"hello");
    let status: serde_json::Value = serde_json::from_slice(&channels.data[&3]).unwrap();
    assert_eq!(
        (status["status"].as_str(), status["message"].as_str(), status["code"].as_u64()),
        (Some("Failure"), Some("container is gone"), Some(500))
    );
}

/// The sending half of a test SPDY client.
type SpdySink = FramedWrite<Box<dyn AsyncWrite + Send + Unpin>, FrameEncoder>;

/// A SPDY client: the frame codec over any byte stream, frames read by a task of its own so
/// sending and receiving never wait on each other.
struct SpdyClient {
    frames: mpsc::UnboundedReceiver<Frame>,
    sink: SpdySink,
    next_id: u32,
}

impl SpdyClient {
    fn new<T: AsyncRead + AsyncWrite + Send + 'static>(io: T) -> Self {
        let (read, write) = tokio::io::split(io);
        let (tx, frames) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut read = FramedRead::new(read, FrameDecoder::new());
            while let Some(Ok(frame)) = read.next().await {
                if tx.send(frame).is_err() {
                    break;
                }
            }
        });
        let write: Box<dyn AsyncWrite + Send + Unpin> = Box::new(write);
        SpdyClient { frames, sink: FramedWrite::new(write, FrameEncoder::new().unwrap()), next_id: 1 }
    }

    async fn open(&mut self, headers: &[(&str, &str)]) -> u32 {
        let stream_id = self.next_id;
        self.next_id += 2;
        let mut block = Headers::default();
        for (name, value) in headers {
            block.push(name, value);
        }
        self.sink.send(Frame::SynStream { stream_id, fin: false, headers: block }).await.unwrap();
        stream_id
    }

    async fn send(&mut self, frame: Frame) {
        self.sink.send(frame).await.unwrap();
    }

    /// Sends `payload` on a stream, then its FIN, from a task; hands the sink back at the end.
    fn upload(mut self, stream_id: u32, payload: Arc<Vec<u8>>) -> (mpsc::UnboundedReceiver<Frame>, tokio::task::JoinHandle<SpdySink>) {
        let upload = tokio::spawn(async move {
            for chunk in payload.chunks(32 * 1024) {
                self.sink.feed(Frame::Data { stream_id, fin: false, data: Bytes::copy_from_slice(chunk) }).await.unwrap();
            }
            self.sink.send(Frame::Data { stream_id, fin: true, data: Bytes::new() }).await.unwrap();
            self.sink
        });
        (self.frames, upload)
    }
}

/// What a SPDY client has seen, by stream.
#[derive(Default, Debug)]
struct Seen {
    replies: HashSet<u32>,
    data: HashMap<u32, Vec<u8>>,
    fins: HashSet<u32>,
    resets: HashMap<u32, u32>,
    pings: Vec<u32>,
    goaway: bool,
}

impl Seen {
    async fn until(&mut self, frames: &mut mpsc::UnboundedReceiver<Frame>, done: impl Fn(&Seen) -> bool) {
        while !done(self) {
            let frame = tokio::time::timeout(PATIENCE, frames.recv()).await.expect("server went quiet").expect("connection ended early");
            match frame {
                Frame::SynReply { stream_id, .. } => assert!(self.replies.insert(stream_id), "second reply for {stream_id}"),
                Frame::Data { stream_id, fin, data } => {
                    assert!(self.replies.contains(&stream_id), "data on {stream_id} before its reply");
                    assert!(!self.fins.contains(&stream_id), "data on {stream_id} after its FIN");
                    self.data.entry(stream_id).or_default().extend_from_slice(&data);
                    if fin {
                        self.fins.insert(stream_id);
                    }
                }
                Frame::RstStream { stream_id, status } => {
                    self.resets.insert(stream_id, status);
                }
                Frame::Ping { id } => self.pings.push(id),
                Frame::GoAway { .. } => self.goaway = true,
                other => panic!("unexpected frame {other:?}"),
            }
        }
    }
}

/// The HTTP upgrade as client-go's SPDY round tripper sends it; returns the chosen protocol.
async fn spdy_connect(addr: SocketAddr, path: &str, protocols: &[&str]) -> (TcpStream, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut request = format!("POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nContent-Length: 0\r\n");
    for protocol in protocols {
        request.push_str(&format!("X-Stream-Protocol-Version: {protocol}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(stream.read_u8().await.unwrap());
    }
    let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("\r\nupgrade: spdy/3.1\r\n") && head.contains("\r\nconnection: upgrade\r\n"), "{head}");
    let protocol = head.lines().find_map(|line| line.strip_prefix("x-stream-protocol-version: ")).unwrap_or_default().to_owned();
    (stream, protocol)
}

#[tokio::test]
async fn spdy_exec_moves_megabytes_answers_pings_and_reports_the_exit_code() {
    let addr = server(|request| {
        answer(remote_command(
            request,
            RemoteCommandOptions { stdin: true, stdout: true, stderr: true, tty: false },
            |streams| async move {
                let (Some(mut stdin), Some(mut stdout), Some(mut stderr)) = (streams.stdin, streams.stdout, streams.stderr) else {
                    return Outcome::Failed("wrong streams".into());
                };
                let copied = tokio::io::copy(&mut stdin, &mut stdout).await.unwrap();
                stderr.write_all(format!("copied {copied}").as_bytes()).await.unwrap();
                Outcome::Exited(7)
            },
        ))
    })
    .await;
    // kubectl 1.32 offers v5 first; the kubelet answers v4 over SPDY.
    let (tcp, protocol) = spdy_connect(
        addr,
        "/exec",
        &["v5.channel.k8s.io", "v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io"],
    )
    .await;
    assert_eq!(protocol, "v4.channel.k8s.io");
    let mut client = SpdyClient::new(tcp);
    let error = client.open(&[("streamType", "error")]).await;
    let stdin = client.open(&[("streamType", "stdin")]).await;
    let stdout = client.open(&[("streamType", "stdout")]).await;
    let stderr = client.open(&[("streamType", "stderr")]).await;
    client.send(Frame::Ping { id: 1 }).await;
    let payload = Arc::new(pattern(3 * 1024 * 1024 + 17));
    let (mut frames, upload) = client.upload(stdin, Arc::clone(&payload));
    let mut seen = Seen::default();
    seen.until(&mut frames, |seen| seen.goaway).await;
    upload.await.unwrap();

    assert_eq!(seen.replies, HashSet::from([error, stdin, stdout, stderr]));
    assert_eq!(seen.pings, vec![1]);
    assert!(seen.data[&stdout] == *payload, "stdout differs from stdin ({} bytes)", seen.data[&stdout].len());
    assert_eq!(seen.data[&stderr], format!("copied {}", payload.len()).as_bytes());
    let status: serde_json::Value = serde_json::from_slice(&seen.data[&error]).unwrap();
    assert_eq!(status["details"]["causes"][0]["message"], "7");
    assert!([error, stdout, stderr].iter().all(|id| seen.fins.contains(id)), "{seen:?}");
    assert!(seen.resets.is_empty());
}

#[tokio::test]
async fn spdy_v2_exec_reports_failure_as_text_without_resize() {
    let addr = server(|request| {
        answer(remote_command(
            request,
            RemoteCommandOptions { stdin: false, stdout: true, stderr: false, tty: true },
            |streams| async move {
                assert!(streams.resize.is_none(), "v2 has no resize stream");
                streams.stdout.unwrap().write_all(b"out").await.unwrap();
                Outcome::Failed("no such container".into())
            },
        ))
    })
    .await;
    let (tcp, protocol) = spdy_connect(addr, "/exec", &["v2.channel.k8s.io", "channel.k8s.io"]).await;
    assert_eq!(protocol, "v2.channel.k8s.io");
    let mut client = SpdyClient::new(tcp);
    let error = client.open(&[("streamtype", "error")]).await;
    let stdout = client.open(&[("streamtype", "stdout")]).await;
    let mut seen = Seen::default();
    seen.until(&mut client.frames, |seen| seen.goaway).await;
    assert_eq!(seen.data[&stdout], b"out");
    assert_eq!(seen.data[&error], b"no such container");
}

#[tokio::test]
async fn spdy_tty_exec_waits_for_the_resize_stream_and_delivers_sizes() {
    let addr = server(|request| {
        answer(remote_command(request, RemoteCommandOptions { stdin: true, stdout: true, stderr: true, tty: true }, |streams| async move {
            let (Some(_stdin), Some(mut stdout), None, Some(mut resize)) = (streams.stdin, streams.stdout, streams.stderr, streams.resize)
            else {
                return Outcome::Failed("wrong streams for a TTY".into());
            };
            while let Some(size) = resize.recv().await {
                stdout.write_all(format!("{}x{};", size.width, size.height).as_bytes()).await.unwrap();
                if size.width == 0 {
                    break;
                }
            }
            Outcome::Exited(0)
        }))
    })
    .await;
    let (tcp, protocol) = spdy_connect(addr, "/exec", &["v4.channel.k8s.io"]).await;
    assert_eq!(protocol, "v4.channel.k8s.io");
    let mut client = SpdyClient::new(tcp);
    // As client-go's v3 handler with a TTY: no stderr stream, a resize stream last.
    let error = client.open(&[("streamtype", "error")]).await;
    let _stdin = client.open(&[("streamtype", "stdin")]).await;
    let stdout = client.open(&[("streamtype", "stdout")]).await;
    let resize = client.open(&[("streamtype", "resize")]).await;
    for json in [&b"{\"Width\":80,\"Height\":24}\n"[..], b"{\"Width\":0,", b"\"Height\":0}\n"] {
        client.send(Frame::Data { stream_id: resize, fin: false, data: Bytes::copy_from_slice(json) }).await;
    }
    let mut seen = Seen::default();
    seen.until(&mut client.frames, |seen| seen.goaway).await;
    assert_eq!(seen.data[&stdout], b"80x24;0x0;");
    assert_eq!(seen.data[&error], br#"{"metadata":{},"status":"Success"}"#);
}

/// One forwarded connection as client-go's PortForwarder makes it: the error stream (closed
/// for writing at once), then the data stream, both with the port and a request id.
async fn open_pair(client: &mut SpdyClient, port: &str, request_id: &str) -> (u32, u32) {
    let error = client.open(&[("streamtype", "error"), ("port", port), ("requestid", request_id)]).await;
    client.send(Frame::Data { stream_id: error, fin: true, data: Bytes::new() }).await;
    let data = client.open(&[("streamtype", "data"), ("port", port), ("requestid", request_id)]).await;
    (error, data)
}

async fn port_forward_over(io: impl AsyncRead + AsyncWrite + Send + 'static, size: usize) {
    let mut client = SpdyClient::new(io);
    let mut seen = Seen::default();

    let invalid = client.open(&[("streamtype", "data")]).await;
    seen.until(&mut client.frames, |seen| seen.resets.contains_key(&invalid)).await;
    assert_eq!(seen.resets[&invalid], REFUSED_STREAM);

    // A port the pod refuses: the caller's message on the error stream, the data stream reset.
    let (refused_error, refused_data) = open_pair(&mut client, "81", "0").await;
    seen.until(&mut client.frames, |seen| seen.fins.contains(&refused_error) && seen.resets.contains_key(&refused_data)).await;
    assert_eq!(seen.data[&refused_error], b"error forwarding port 81 to pod 1234, uid : connection refused");

    let (error, data) = open_pair(&mut client, "80", "1").await;
    client.send(Frame::Ping { id: 3 }).await;
    seen.until(&mut client.frames, |seen| seen.replies.contains(&data) && seen.pings == [3]).await;
    let payload = Arc::new(pattern(size));
    let (mut frames, upload) = client.upload(data, Arc::clone(&payload));
    // The echo server half-closes after our FIN, so the server's FIN on data ends the copy.
    seen.until(&mut frames, |seen| seen.fins.contains(&data)).await;
    let mut sink = upload.await.unwrap();
    assert!(seen.data[&data] == *payload, "echo differs ({} of {} bytes)", seen.data[&data].len(), payload.len());
    // client-go then resets the data stream and waits for the error stream to end.
    sink.send(Frame::RstStream { stream_id: data, status: 5 }).await.unwrap();
    seen.until(&mut frames, |seen| seen.fins.contains(&error)).await;
    assert!(seen.data.get(&error).is_none_or(Vec::is_empty), "no error for a good forward");
}

#[tokio::test]
async fn spdy_port_forward_pairs_streams_and_moves_megabytes() {
    let echo = echo_server().await;
    let addr = server(move |request| answer(port_forward(request, connector(echo)))).await;
    let (tcp, protocol) = spdy_connect(addr, "/portforward", &["portforward.k8s.io"]).await;
    assert_eq!(protocol, "portforward.k8s.io");
    port_forward_over(tcp, 4 * 1024 * 1024 + 5).await;
}

#[tokio::test]
async fn spdy_tunnelled_through_websocket_port_forward() {
    let echo = echo_server().await;
    let addr = server(move |request| answer(port_forward(request, connector(echo)))).await;
    let ws = ws_connect(addr, "/portforward", "SPDY/3.1+portforward.k8s.io").await;
    port_forward_over(WsByteStream::new(ws), 2 * 1024 * 1024 + 3).await;
}

#[tokio::test]
async fn legacy_websocket_port_forward_uses_two_channels_a_port() {
    let echo = echo_server().await;
    let addr = server(move |request| answer(port_forward(request, connector(echo)))).await;
    let mut ws = ws_connect(addr, "/portforward?ports=80%2C81", "v4.channel.k8s.io").await;
    let mut channels = Channels::default();
    read_channels(&mut ws, &mut channels, |c| c.data.get(&3).is_some_and(|e| e.len() > 2)).await;
    assert_eq!(channels.first.as_deref(), Some(&[0u8, 80, 0][..]));
    assert_eq!(channels.data[&1], [80, 0]);
    assert_eq!(channels.data[&2], [81, 0]);
    assert_eq!(&channels.data[&3][2..], b"error forwarding port 81 to pod 1234, uid : connection refused");
    ws.send(Message::binary(b"\x00hello".to_vec())).await.unwrap();
    read_channels(&mut ws, &mut channels, |c| c.data[&0].len() >= 7).await;
    assert_eq!(channels.data[&0], b"\x50\x00hello");
    ws.close(None).await.unwrap();
    read_channels(&mut ws, &mut channels, |_| false).await;
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(http::HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_str(value).unwrap());
    }
    map
}

/// The exact upgrade headers of kubectl 1.32 (client-go v0.32's gorilla dialer, SPDY round
/// tripper and tunnelling dialer).
#[test]
fn kubectl_132_upgrade_requests_negotiate() {
    let websocket = |protocol| {
        headers(&[
            ("Connection", "Upgrade"),
            ("Upgrade", "websocket"),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("Sec-WebSocket-Protocol", protocol),
        ])
    };
    let accept = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=".to_owned();
    assert_eq!(
        remote_command::OFFER.negotiate(&websocket("v5.channel.k8s.io")),
        Ok(Agreed::WebSocket { protocol: "v5.channel.k8s.io", accept: accept.clone() })
    );
    assert_eq!(
        port_forward::OFFER.negotiate(&websocket("SPDY/3.1+portforward.k8s.io")),
        Ok(Agreed::WebSocket { protocol: "SPDY/3.1+portforward.k8s.io", accept: accept.clone() })
    );
    // kube-rs and older clients.
    assert_eq!(
        port_forward::OFFER.negotiate(&websocket("v4.channel.k8s.io")),
        Ok(Agreed::WebSocket { protocol: "v4.channel.k8s.io", accept: accept.clone() })
    );
    assert_eq!(
        remote_command::OFFER.negotiate(&websocket("v4.base64.channel.k8s.io, v4.channel.k8s.io")),
        Ok(Agreed::WebSocket { protocol: "v4.base64.channel.k8s.io", accept })
    );

    let spdy = |protocols: &[&'static str]| {
        let mut pairs = vec![("Connection", "Upgrade"), ("Upgrade", "SPDY/3.1")];
        pairs.extend(protocols.iter().map(|p| ("X-Stream-Protocol-Version", *p)));
        headers(&pairs)
    };
    let kubectl_exec = spdy(&["v5.channel.k8s.io", "v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io"]);
    assert_eq!(remote_command::OFFER.negotiate(&kubectl_exec), Ok(Agreed::Spdy("v4.channel.k8s.io")));
    assert_eq!(port_forward::OFFER.negotiate(&spdy(&["portforward.k8s.io"])), Ok(Agreed::Spdy("portforward.k8s.io")));
    assert_eq!(remote_command::OFFER.negotiate(&spdy(&["channel.k8s.io, v3.channel.k8s.io"])), Ok(Agreed::Spdy("channel.k8s.io")));

    let response = Agreed::Spdy("v4.channel.k8s.io").response();
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(response.headers()["x-stream-protocol-version"], "v4.channel.k8s.io");
    assert_eq!(response.headers()["upgrade"], "SPDY/3.1");
}

#[test]
fn requests_we_cannot_serve_are_rejected_with_our_protocols() {
    let plain = remote_command::OFFER.negotiate(&headers(&[("Accept", "*/*")])).unwrap_err();
    assert_eq!(plain.status, StatusCode::BAD_REQUEST);
    assert!(plain.message.contains("v5.channel.k8s.io") && plain.message.contains("v4.channel.k8s.io"), "{}", plain.message);
    let unknown = port_forward::OFFER
        .negotiate(&headers(&[("Connection", "Upgrade"), ("Upgrade", "SPDY/3.1"), ("X-Stream-Protocol-Version", "portforward.k8s.io.v9")]))
        .unwrap_err();
    assert!(unknown.message.contains("portforward.k8s.io"), "{}", unknown.message);
    let no_version = remote_command::OFFER.negotiate(&headers(&[("Connection", "Upgrade"), ("Upgrade", "SPDY/3.1")])).unwrap_err();
    assert!(no_version.message.contains("X-Stream-Protocol-Version is required"), "{}", no_version.message);
    let websocket = remote_command::OFFER.negotiate(&headers(&[
        ("Connection", "Upgrade"),
        ("Upgrade", "websocket"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "x"),
        ("Sec-WebSocket-Protocol", "v9.channel.k8s.io"),
    ]));
    assert_eq!(websocket.unwrap_err().status, StatusCode::BAD_REQUEST);
    assert!(port_forward::query_ports(&"/pf?ports=80,443&port=8080".parse().unwrap()).unwrap() == [80, 443, 8080]);
    assert!(port_forward::query_ports(&"/pf?ports=0".parse().unwrap()).is_err());
    assert!(port_forward::query_ports(&"/pf".parse().unwrap()).is_err());
}

#[tokio::test]
async fn plain_request_and_empty_options_are_rejected_over_http() {
    let addr = server(|request| {
        let stdin = request.uri().query() == Some("stdin=true");
        answer(remote_command(request, RemoteCommandOptions { stdin, ..Default::default() }, |_| async { Outcome::Exited(0) }))
    })
    .await;
    for (path, expected) in [("/exec?stdin=true", "needs a connection upgrade"), ("/exec", "at least 1 of stdin, stdout, stderr")] {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        assert!(answer.contains(expected), "{answer}");
    }
}
