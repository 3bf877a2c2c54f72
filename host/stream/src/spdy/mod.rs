//! SPDY/3.1 as the Kubernetes streaming protocols use it: moby/spdystream on the client side,
//! one connection carrying many half-closable streams, headers compressed with zlib.

pub mod frame;
pub mod headers;
pub mod session;

pub use session::{Accepted, IncomingStream, Session};

/// Why a SPDY connection could not go on.
#[derive(Debug, thiserror::Error)]
pub enum SpdyError {
    /// The connection failed underneath.
    #[error("SPDY connection I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The peer sent bytes that are not a SPDY/3.1 frame.
    #[error("malformed SPDY frame: {0}")]
    Malformed(&'static str),
    /// A header block did not compress or decompress.
    #[error("SPDY header compression: {0}")]
    Zlib(String),
    /// This implementation has no encoding for that control frame type.
    #[error("cannot send SPDY control frame type {0}")]
    Unsupported(u16),
}
