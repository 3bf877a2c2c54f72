//! A WebSocket connection as a plain byte stream, for SPDY tunnelled through WebSocket
//! (`SPDY/3.1+portforward.k8s.io`, kubectl's default for port-forward since 1.31): binary
//! messages carry the SPDY bytes with arbitrary boundaries, as client-go's TunnelingConnection
//! writes them.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use futures::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// Reads and writes the payloads of binary messages.
pub struct WsByteStream<S> {
    ws: WebSocketStream<S>,
    pending: Bytes,
    close_sent: bool,
}

impl<S> WsByteStream<S> {
    /// Wraps a server-side WebSocket.
    pub fn new(ws: WebSocketStream<S>) -> Self {
        WsByteStream { ws, pending: Bytes::new(), close_sent: false }
    }
}

fn io_error(error: WsError) -> io::Error {
    match error {
        WsError::Io(error) => error,
        other => io::Error::other(other),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsByteStream<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        while this.pending.is_empty() {
            match ready!(Pin::new(&mut this.ws).poll_next(cx)) {
                Some(Ok(Message::Binary(data))) => this.pending = data,
                // tungstenite answers pings itself while it reads.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Text(_))) => {
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, "text message in a SPDY tunnel")));
                }
                Some(Ok(Message::Close(_))) | None => return Poll::Ready(Ok(())),
                Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) => return Poll::Ready(Ok(())),
                Some(Err(error)) => return Poll::Ready(Err(io_error(error))),
            }
        }
        let n = buf.remaining().min(this.pending.len());
        buf.put_slice(&this.pending[..n]);
        this.pending.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsByteStream<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        ready!(Pin::new(&mut this.ws).poll_ready(cx)).map_err(io_error)?;
        Pin::new(&mut this.ws).start_send(Message::binary(Bytes::copy_from_slice(buf))).map_err(io_error)?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().ws).poll_flush(cx).map_err(io_error)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.close_sent {
            ready!(Pin::new(&mut this.ws).poll_ready(cx)).map_err(io_error)?;
            // Code 1000, which client-go's tunnel reads as EOF; a bare close would be an error.
            let close = CloseFrame { code: CloseCode::Normal, reason: "".into() };
            Pin::new(&mut this.ws).start_send(Message::Close(Some(close))).map_err(io_error)?;
            this.close_sent = true;
        }
        match ready!(Pin::new(&mut this.ws).poll_flush(cx)) {
            Ok(()) | Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => Poll::Ready(Ok(())),
            Err(error) => Poll::Ready(Err(io_error(error))),
        }
    }
}
