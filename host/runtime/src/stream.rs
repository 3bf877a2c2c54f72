//! The interactive calls' types: exec and attach sessions, and port-forward connections.

use std::pin::Pin;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

use crate::RuntimeError;

/// What an interactive exec or attach asks of the runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StreamOptions {
    /// Connect the client's input to the process's stdin.
    pub stdin: bool,
    /// Run (exec) or expect (attach) a TTY: output comes as one stream and the terminal can be
    /// resized.
    pub tty: bool,
}

/// A terminal size, in character cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TerminalSize {
    /// Columns.
    pub width: u16,
    /// Rows.
    pub height: u16,
}

/// A chunk of a process's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamOutput {
    /// Written to stdout (or to the TTY).
    Stdout(Vec<u8>),
    /// Written to stderr.
    Stderr(Vec<u8>),
}

/// A running exec or attach session.
///
/// The caller copies its input into `stdin` (shutting it down closes the process's stdin),
/// drains `output` until it ends, then awaits `exit`.
pub struct StreamSession {
    /// The process's stdin, when asked for.
    pub stdin: Option<Pin<Box<dyn AsyncWrite + Send>>>,
    /// The process's output, until it closes its stdout and stderr.
    pub output: BoxStream<'static, Result<StreamOutput, RuntimeError>>,
    /// Terminal resizes, with a TTY; the runtime applies each as it arrives.
    pub resize: Option<mpsc::Sender<TerminalSize>>,
    /// The exit code once `output` has ended: `None` for an attach, which ends when the client
    /// or the container goes, not with a code of its own.
    pub exit: BoxFuture<'static, Result<Option<i32>, RuntimeError>>,
}

impl std::fmt::Debug for StreamSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamSession")
            .field("stdin", &self.stdin.is_some())
            .field("resize", &self.resize.is_some())
            .finish_non_exhaustive()
    }
}

/// A byte stream both ways: a port-forward connection into a pod's network namespace.
pub trait Duplex: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> Duplex for T {}
