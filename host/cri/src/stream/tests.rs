//! The client against a real server of these protocols: staticlet-stream's, served by hyper on
//! loopback as the agent serves it, with paths standing in for the runtime's tokens.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use staticlet_runtime::{RuntimeError, StreamOptions, StreamOutput, StreamSession, TerminalSize};
use staticlet_stream::{Outcome, RemoteCommandOptions, RemoteStreams, Tunnel};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::{exit_code, port_forward, remote_command};

const PATIENCE: Duration = Duration::from_secs(30);

type Handler = dyn Fn(&mut Request<Incoming>) -> Response<Full<Bytes>> + Send + Sync;

/// Serves `handler` on a loopback port with upgrades, the way a streaming server is reached.
async fn server(handler: Arc<Handler>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
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

fn answer(upgrade: Result<Response<()>, staticlet_stream::Rejected>) -> Response<Full<Bytes>> {
    match upgrade {
        Ok(response) => response.map(|()| Full::new(Bytes::new())),
        Err(rejected) => {
            let mut response = Response::new(Full::new(Bytes::from(rejected.message)));
            *response.status_mut() = rejected.status;
            response
        }
    }
}

fn not_found() -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from("404 page not found")));
    *response.status_mut() = StatusCode::NOT_FOUND;
    response
}

/// An exec/attach server at `/exec/token` running `run` with `options`.
async fn command_server<F, Fut>(options: RemoteCommandOptions, run: F) -> SocketAddr
where
    F: Fn(RemoteStreams) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    server(Arc::new(move |request: &mut Request<Incoming>| {
        if request.uri().path() != "/exec/token" {
            return not_found();
        }
        answer(staticlet_stream::remote_command(request, options, run.clone()))
    }))
    .await
}

/// Everything a session gave, once its output ended.
async fn finish(session: StreamSession) -> (Vec<u8>, Vec<u8>, Result<Option<i32>, RuntimeError>) {
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let mut output = session.output;
    while let Some(chunk) = tokio::time::timeout(PATIENCE, output.next()).await.expect("output went quiet") {
        match chunk.unwrap() {
            StreamOutput::Stdout(bytes) => stdout.extend(bytes),
            StreamOutput::Stderr(bytes) => stderr.extend(bytes),
        }
    }
    let exit = tokio::time::timeout(PATIENCE, session.exit).await.expect("no exit");
    (stdout, stderr, exit)
}

#[tokio::test]
async fn exec_separates_stdout_and_stderr_and_reports_the_exit_code() {
    let options = RemoteCommandOptions { stdin: false, stdout: true, stderr: true, tty: false };
    let addr = command_server(options, |streams: RemoteStreams| async move {
        let (Some(mut stdout), Some(mut stderr)) = (streams.stdout, streams.stderr) else {
            return Outcome::Failed("wrong streams".into());
        };
        stdout.write_all(b"out 1\n").await.unwrap();
        stderr.write_all(b"err\n").await.unwrap();
        stdout.write_all(b"out 2\n").await.unwrap();
        Outcome::Exited(5)
    })
    .await;
    let session = remote_command("exec", &format!("http://{addr}/exec/token"), StreamOptions::default()).await.unwrap();
    assert!(session.stdin.is_none() && session.resize.is_none());
    let (stdout, stderr, exit) = finish(session).await;
    assert_eq!(stdout, b"out 1\nout 2\n");
    assert_eq!(stderr, b"err\n");
    assert_eq!(exit.unwrap(), Some(5));
}

#[tokio::test]
async fn exec_stdin_reaches_eof_through_the_v5_close_signal() {
    let options = RemoteCommandOptions { stdin: true, stdout: true, stderr: true, tty: false };
    let addr = command_server(options, |streams: RemoteStreams| async move {
        let (Some(mut stdin), Some(mut stdout)) = (streams.stdin, streams.stdout) else {
            return Outcome::Failed("wrong streams".into());
        };
        // Returning at all proves stdin reached EOF: v5's close signal, the connection still open.
        let copied = tokio::io::copy(&mut stdin, &mut stdout).await.unwrap();
        stdout.write_all(format!("|{copied}").as_bytes()).await.unwrap();
        Outcome::Exited(0)
    })
    .await;
    let options = StreamOptions { stdin: true, tty: false };
    let mut session = remote_command("exec", &format!("http://{addr}/exec/token"), options).await.unwrap();
    let mut stdin = session.stdin.take().unwrap();
    let input: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let writer = {
        let input = input.clone();
        tokio::spawn(async move {
            stdin.write_all(&input).await.unwrap();
            stdin.shutdown().await.unwrap();
        })
    };
    let (stdout, stderr, exit) = finish(session).await;
    writer.await.unwrap();
    assert_eq!(&stdout[..input.len()], &input[..]);
    assert_eq!(&stdout[input.len()..], format!("|{}", input.len()).as_bytes());
    assert!(stderr.is_empty());
    assert_eq!(exit.unwrap(), Some(0));
}

#[tokio::test]
async fn tty_resizes_reach_the_server() {
    let options = RemoteCommandOptions { stdin: true, stdout: true, stderr: false, tty: true };
    let addr = command_server(options, |streams: RemoteStreams| async move {
        let (Some(mut stdout), Some(mut resize)) = (streams.stdout, streams.resize) else {
            return Outcome::Failed("wrong streams for a TTY".into());
        };
        for _ in 0..2 {
            let size = resize.recv().await.unwrap();
            stdout.write_all(format!("{}x{};", size.width, size.height).as_bytes()).await.unwrap();
        }
        Outcome::Exited(0)
    })
    .await;
    let options = StreamOptions { stdin: true, tty: true };
    let mut session = remote_command("exec", &format!("http://{addr}/exec/token"), options).await.unwrap();
    let resize = session.resize.take().unwrap();
    resize.send(TerminalSize { width: 120, height: 40 }).await.unwrap();
    resize.send(TerminalSize { width: 80, height: 24 }).await.unwrap();
    let (stdout, _, exit) = finish(session).await;
    assert_eq!(stdout, b"120x40;80x24;");
    assert_eq!(exit.unwrap(), Some(0));
}

#[tokio::test]
async fn attach_has_no_exit_code() {
    let options = RemoteCommandOptions { stdin: false, stdout: true, stderr: true, tty: false };
    let addr = command_server(options, |streams: RemoteStreams| async move {
        let _ = streams.stdout.unwrap().write_all(b"attached\n").await;
        Outcome::Exited(0)
    })
    .await;
    let session = remote_command("attach", &format!("http://{addr}/exec/token"), StreamOptions::default()).await.unwrap();
    let (stdout, _, exit) = finish(session).await;
    assert_eq!(stdout, b"attached\n");
    assert_eq!(exit.unwrap(), None);
}

#[tokio::test]
async fn a_failure_status_is_the_servers_message() {
    let options = RemoteCommandOptions { stdin: false, stdout: true, stderr: true, tty: false };
    let addr = command_server(options, |_| async { Outcome::Failed("container \"abc\" is not running".into()) }).await;
    let session = remote_command("exec", &format!("http://{addr}/exec/token"), StreamOptions::default()).await.unwrap();
    let (_, _, exit) = finish(session).await;
    match exit {
        Err(RuntimeError::Call { call: "exec", message }) => assert_eq!(message, "container \"abc\" is not running"),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn statuses_decode_as_client_go_does() {
    assert_eq!(exit_code("exec", b"").unwrap(), 0);
    assert_eq!(exit_code("exec", br#"{"metadata":{},"status":"Success"}"#).unwrap(), 0);
    let nonzero = br#"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: exit code 137","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"137"}]}}"#;
    assert_eq!(exit_code("exec", nonzero).unwrap(), 137);
    let bad_code = br#"{"status":"Failure","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"300"}]}}"#;
    assert!(matches!(exit_code("exec", bad_code), Err(RuntimeError::Call { message, .. }) if message.contains("invalid exit code")));
    assert!(matches!(exit_code("exec", b"not json"), Err(RuntimeError::Call { message, .. }) if message.contains("protocol error")));
}

/// A pod-side TCP server that echoes.
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut read, mut write) = stream.split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
            });
        }
    });
    addr
}

/// A port-forward server at `/portforward/token` whose port 8080 reaches the echo server and
/// whose other ports are refused; the query it saw goes to `queries`.
async fn port_forward_server(queries: mpsc::UnboundedSender<String>) -> SocketAddr {
    let echo = echo_server().await;
    server(Arc::new(move |request: &mut Request<Incoming>| {
        if request.uri().path() != "/portforward/token" {
            return not_found();
        }
        let _ = queries.send(request.uri().query().unwrap_or_default().to_owned());
        answer(staticlet_stream::port_forward(request, move |port| async move {
            if port != 8080 {
                return Err(format!("error forwarding port {port} to pod abc, uid : connection refused"));
            }
            let stream = TcpStream::connect(echo).await.map_err(|e| e.to_string())?;
            Ok(Box::new(stream) as Box<dyn Tunnel>)
        }))
    }))
    .await
}

#[tokio::test]
async fn port_forward_carries_bytes_both_ways() {
    let (queries, mut seen) = mpsc::unbounded_channel();
    let addr = port_forward_server(queries).await;
    // The runtime's URL may carry a query of its own, which is kept.
    let stream = port_forward(&format!("http://{addr}/portforward/token?keep=1"), 8080).await.unwrap();
    assert_eq!(seen.recv().await.unwrap(), "keep=1&port=8080");
    let (mut read, mut write) = tokio::io::split(stream);
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 253) as u8).collect();
    let writer = {
        let data = data.clone();
        tokio::spawn(async move { write.write_all(&data).await.unwrap() })
    };
    let mut echoed = vec![0; data.len()];
    tokio::time::timeout(PATIENCE, read.read_exact(&mut echoed)).await.unwrap().unwrap();
    assert!(echoed == data, "the echo differs");
    writer.await.unwrap();
}

#[tokio::test]
async fn port_forward_error_channel_is_a_read_error() {
    let (queries, _seen) = mpsc::unbounded_channel();
    let addr = port_forward_server(queries).await;
    let mut stream = port_forward(&format!("http://{addr}/portforward/token"), 9).await.unwrap();
    let mut buffer = Vec::new();
    let error = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut buffer)).await.unwrap().unwrap_err();
    assert_eq!(error.to_string(), "error forwarding port 9 to pod abc, uid : connection refused");
}

#[tokio::test]
async fn failures_name_the_server_but_not_the_token() {
    let options = RemoteCommandOptions { stdin: false, stdout: true, stderr: false, tty: false };
    let addr = command_server(options, |_| async { Outcome::Exited(0) }).await;
    let error = remote_command("exec", &format!("http://{addr}/exec/SecretToken"), StreamOptions::default()).await.unwrap_err();
    let RuntimeError::Call { call: "exec", message } = error else { panic!("unexpected {error:?}") };
    assert!(message.contains(&addr.to_string()) && message.contains("404") && !message.contains("SecretToken"), "{message}");

    let error = port_forward("https://127.0.0.1:1/portforward/SecretToken", 80).await.err().unwrap();
    assert!(matches!(&error, RuntimeError::Call { call: "port_forward", message } if message.contains("https")), "{error:?}");

    // A port nothing listens on: the runtime's streaming server is gone.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let error = remote_command("attach", &format!("http://{closed}/attach/SecretToken"), StreamOptions::default()).await.unwrap_err();
    assert!(matches!(&error, RuntimeError::Unavailable(message) if message.contains(&closed.to_string()) && !message.contains("Secret")));
}

#[tokio::test]
async fn dropping_an_attach_session_hangs_up() {
    let (ended_tx, mut ended) = mpsc::unbounded_channel::<()>();
    let options = RemoteCommandOptions { stdin: true, stdout: true, stderr: false, tty: true };
    let addr = command_server(options, move |streams: RemoteStreams| {
        let ended_tx = ended_tx.clone();
        async move {
            let (Some(mut stdin), Some(mut stdout)) = (streams.stdin, streams.stdout) else {
                return Outcome::Failed("wrong streams".into());
            };
            stdout.write_all(b"$ ").await.unwrap();
            // An attached shell that never exits: only the client going away ends its stdin.
            let mut sink = Vec::new();
            let _ = stdin.read_to_end(&mut sink).await;
            let _ = ended_tx.send(());
            Outcome::Exited(0)
        }
    })
    .await;
    // No stdin on this side, so no close signal: only the hang-up can end the server's stdin.
    let mut session =
        remote_command("attach", &format!("http://{addr}/exec/token"), StreamOptions { stdin: false, tty: true }).await.unwrap();
    let first = tokio::time::timeout(PATIENCE, session.output.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(first, StreamOutput::Stdout(b"$ ".to_vec()));
    drop(session);
    tokio::time::timeout(PATIENCE, ended.recv()).await.expect("the server never saw the client go").unwrap();
}
