//! The server side of the Kubernetes streaming protocols: what a kubelet speaks to
//! `kubectl exec`/`attach`/`port-forward`/`cp` and to the kube-apiserver's proxy, over an
//! HTTP/1.1 connection that hyper has accepted.
//!
//! Two transports, chosen by the request's `Upgrade` header:
//!
//! - **SPDY/3.1** (`X-Stream-Protocol-Version`): the client opens one stream per purpose
//!   (`streamtype` header), and this side answers each. The API server always proxies to
//!   kubelets this way, and kubectl falls back to it when WebSocket fails.
//! - **WebSocket** (`Sec-WebSocket-Protocol`): `v5.channel.k8s.io` and older channel protocols
//!   multiplex streams by a leading channel byte; `SPDY/3.1+portforward.k8s.io` carries SPDY
//!   bytes in binary messages. kubectl 1.32 tries these first.
//!
//! [`remote_command`] and [`port_forward`] check the request, answer `101 Switching Protocols`,
//! and serve the upgraded connection from a task of their own.

mod negotiate;
mod pipe;
mod port_forward;
mod remote_command;
mod resize;
mod spdy;
mod status;
mod tunnel;
mod websocket;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};

/// What the client asked for, from the query (`?stdin=true&stdout=true&stderr=true&tty=true`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RemoteCommandOptions {
    /// The client sends standard input.
    pub stdin: bool,
    /// The client reads standard output.
    pub stdout: bool,
    /// The client reads standard error (ignored with `tty`, whose output merges it into stdout).
    pub stderr: bool,
    /// The command runs on a terminal, and the client sends its size.
    pub tty: bool,
}

/// The streams of one exec/attach session, whatever the transport. A stream is None when the
/// client did not ask for it.
///
/// When the client goes away, stdin reaches EOF and writes fail with `BrokenPipe`; `run` should
/// then end the command's I/O and return. Output is sent in the order written, and everything
/// written before `run` returns reaches the client before the outcome does.
pub struct RemoteStreams {
    /// Standard input; EOF when the client closes it (v5 close signal, SPDY FIN, or the
    /// connection ending).
    pub stdin: Option<Box<dyn AsyncRead + Send + Unpin>>,
    /// Standard output.
    pub stdout: Option<Box<dyn AsyncWrite + Send + Unpin>>,
    /// Standard error; None with a TTY, which merges it into standard output.
    pub stderr: Option<Box<dyn AsyncWrite + Send + Unpin>>,
    /// Terminal sizes; Some only with a TTY. A consumer that lags gets the newest size.
    pub resize: Option<tokio::sync::mpsc::Receiver<staticlet_runtime::TerminalSize>>,
}

/// How the command ended, reported on the error channel or stream when `run` returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The command exited with this code. Non-zero codes reach kubectl, which exits with them
    /// (client-go accepts 0–255).
    Exited(i32),
    /// The command could not be run or attached to; kubectl prints the message.
    Failed(String),
}

/// Why a request was not upgraded: the agent turns it into a Kubernetes Status response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Rejected {
    /// The HTTP status to answer with.
    pub status: http::StatusCode,
    /// What was wrong, naming the protocols this side speaks where that is the problem.
    pub message: String,
}

/// exec and attach: negotiates the protocol from the request's headers, answers 101 (the
/// returned response has no body; the caller attaches an empty body), and spawns a task that,
/// once hyper hands over the upgraded connection, builds the [`RemoteStreams`], awaits
/// `run(streams)`, writes the outcome, and closes the connection.
///
/// Must be called inside a tokio runtime, on a request served with hyper's upgrades enabled.
pub fn remote_command<B, F, Fut>(
    request: &mut http::Request<B>,
    options: RemoteCommandOptions,
    run: F,
) -> Result<http::Response<()>, Rejected>
where
    B: Send + 'static,
    F: FnOnce(RemoteStreams) -> Fut + Send + 'static,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    // As the kubelet does: a terminal has no separate stderr.
    let options = RemoteCommandOptions { stderr: options.stderr && !options.tty, ..options };
    if !(options.stdin || options.stdout || options.stderr) {
        return Err(Rejected {
            status: http::StatusCode::BAD_REQUEST,
            message: "you must specify at least 1 of stdin, stdout, stderr".to_owned(),
        });
    }
    let agreed = remote_command::OFFER.negotiate(request.headers())?;
    tracing::debug!(?agreed, ?options, "upgrading an exec/attach request");
    let response = agreed.response();
    let upgrade = hyper::upgrade::on(request);
    tokio::spawn(async move {
        match upgrade.await {
            Ok(upgraded) => remote_command::serve(upgraded, agreed, options, run).await,
            Err(error) => tracing::debug!(%error, "exec/attach connection was not upgraded"),
        }
    });
    Ok(response)
}

/// A connection into the pod's network namespace, for one forwarded port.
pub trait Tunnel: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> Tunnel for T {}

/// port-forward: for each port the client opens (a SPDY data stream with its `port` header, or
/// the WebSocket `port`/`ports` query parameter), calls `connect(port)` and copies bytes both
/// ways; an `Err(message)` from connect is written to that request's error stream or channel,
/// as the kubelet does (the message is the caller's, written as is).
///
/// Must be called inside a tokio runtime, on a request served with hyper's upgrades enabled.
pub fn port_forward<B, F, Fut>(request: &mut http::Request<B>, connect: F) -> Result<http::Response<()>, Rejected>
where
    B: Send + 'static,
    F: Fn(u16) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Box<dyn Tunnel>, String>> + Send + 'static,
{
    let agreed = port_forward::OFFER.negotiate(request.headers())?;
    let ports = match &agreed {
        negotiate::Agreed::WebSocket { protocol, .. } if *protocol != port_forward::TUNNEL_PROTOCOL => {
            port_forward::query_ports(request.uri())?
        }
        _ => Vec::new(),
    };
    tracing::debug!(?agreed, ?ports, "upgrading a port-forward request");
    let response = agreed.response();
    let upgrade = hyper::upgrade::on(request);
    let connect = Arc::new(connect);
    tokio::spawn(async move {
        match upgrade.await {
            Ok(upgraded) => port_forward::serve(upgraded, agreed, ports, connect).await,
            Err(error) => tracing::debug!(%error, "port-forward connection was not upgraded"),
        }
    });
    Ok(response)
}
