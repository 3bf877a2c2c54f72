//! Byte streams over message channels: how one stream of a multiplexed connection (a SPDY stream,
//! a WebSocket channel) looks to the code that reads or writes it.
//!
//! The connection's single reader task pushes each stream's payloads into a bounded channel, so a
//! consumer that stops reading eventually stops the connection (TCP back-pressure, as the kubelet
//! has); the single writer task drains one channel of encoded messages, so writes from many
//! streams reach the wire whole and in order.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use tokio_util::sync::PollSender;

/// The most one write puts into one message: kubectl's own copies use 32 KiB buffers.
pub const MAX_CHUNK: usize = 32 * 1024;

/// Payloads a stream may have waiting for its consumer before the connection's reader waits.
pub const INBOUND_DEPTH: usize = 16;

/// The read side of a stream: its payloads, in order, then EOF when the peer is done with it.
pub struct MessageReader {
    rx: mpsc::Receiver<Bytes>,
    pending: Bytes,
}

impl MessageReader {
    /// Reads what arrives on `rx`; EOF once every sender is gone.
    pub fn new(rx: mpsc::Receiver<Bytes>) -> Self {
        MessageReader { rx, pending: Bytes::new() }
    }
}

impl AsyncRead for MessageReader {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        while this.pending.is_empty() {
            match ready!(this.rx.poll_recv(cx)) {
                Some(bytes) => this.pending = bytes,
                None => return Poll::Ready(Ok(())),
            }
        }
        let n = buf.remaining().min(this.pending.len());
        buf.put_slice(&this.pending[..n]);
        this.pending.advance(n);
        Poll::Ready(Ok(()))
    }
}

/// How a stream's bytes become messages of its connection.
pub trait Framing: Send + Unpin + 'static {
    /// What the connection's writer task consumes.
    type Item: Send + 'static;
    /// The message carrying `chunk`.
    fn data(&mut self, chunk: &[u8]) -> Self::Item;
    /// The message that half-closes the stream, if the protocol has one and it was not sent yet.
    fn finish(&mut self) -> Option<Self::Item>;
    /// Whether the stream can still be written (a SPDY stream the peer reset cannot).
    fn check(&self) -> io::Result<()> {
        Ok(())
    }
}

/// The write side of a stream.
pub struct MessageWriter<F: Framing> {
    tx: PollSender<F::Item>,
    framing: F,
    shut: bool,
}

impl<F: Framing> MessageWriter<F> {
    /// Writes to the connection whose writer task reads `tx`.
    pub fn new(tx: mpsc::Sender<F::Item>, framing: F) -> Self {
        MessageWriter { tx: PollSender::new(tx), framing, shut: false }
    }
}

fn connection_gone() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the streaming connection is closed")
}

impl<F: Framing> AsyncWrite for MessageWriter<F> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.shut {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::BrokenPipe, "write after the stream was shut down")));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        this.framing.check()?;
        ready!(this.tx.poll_reserve(cx)).map_err(|_| connection_gone())?;
        let n = buf.len().min(MAX_CHUNK);
        let item = this.framing.data(&buf[..n]);
        this.tx.send_item(item).map_err(|_| connection_gone())?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The writer task flushes whenever its queue runs dry; nothing is held back here.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.shut {
            return Poll::Ready(Ok(()));
        }
        // A connection that is already gone has nothing left to half-close.
        if ready!(this.tx.poll_reserve(cx)).is_ok()
            && let Some(item) = this.framing.finish()
        {
            let _ = this.tx.send_item(item);
        }
        this.tx.close();
        this.shut = true;
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    struct Tagged;

    impl Framing for Tagged {
        type Item = Vec<u8>;
        fn data(&mut self, chunk: &[u8]) -> Vec<u8> {
            [b"d:", chunk].concat()
        }
        fn finish(&mut self) -> Option<Vec<u8>> {
            Some(b"fin".to_vec())
        }
    }

    #[tokio::test]
    async fn writer_chunks_and_finishes_once() {
        let (tx, mut rx) = mpsc::channel(8);
        let mut writer = MessageWriter::new(tx, Tagged);
        let big = vec![7u8; MAX_CHUNK + 10];
        writer.write_all(&big).await.unwrap();
        writer.shutdown().await.unwrap();
        writer.shutdown().await.unwrap();
        assert!(writer.write_all(b"late").await.is_err());
        assert_eq!(rx.recv().await.unwrap().len(), MAX_CHUNK + 2);
        assert_eq!(rx.recv().await.unwrap().len(), 12);
        assert_eq!(rx.recv().await.unwrap(), b"fin");
        assert!(rx.recv().await.is_none());
    }

    #[tokio::test]
    async fn reader_joins_messages_then_eof() {
        let (tx, rx) = mpsc::channel(8);
        tx.send(Bytes::from_static(b"hello ")).await.unwrap();
        tx.send(Bytes::new()).await.unwrap();
        tx.send(Bytes::from_static(b"world")).await.unwrap();
        drop(tx);
        let mut text = String::new();
        MessageReader::new(rx).read_to_string(&mut text).await.unwrap();
        assert_eq!(text, "hello world");
    }
}
