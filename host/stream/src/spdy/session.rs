//! A SPDY/3.1 server connection: the client opens the streams, this side accepts or refuses
//! them, and each accepted stream is a byte reader and a byte writer.
//!
//! One task reads frames and routes payloads to streams; one task writes every frame, in the
//! order they were queued (so a SYN_REPLY always precedes the stream's first data, which
//! spdystream requires: it drops data on a stream it has no reply for). There is no flow
//! control: spdystream sends no WINDOW_UPDATE and ignores ours, so honouring the 64 KiB initial
//! window would stall every transfer. Back-pressure comes from TCP instead.

use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;

use super::SpdyError;
use super::frame::{CANCEL, Frame, FrameDecoder, FrameEncoder, PROTOCOL_ERROR, REFUSED_STREAM};
use super::headers::Headers;
use crate::pipe::{Framing, INBOUND_DEPTH, MessageWriter};

/// Frames queued for the writer before stream writers wait: enough to keep the socket busy.
const OUTBOUND_DEPTH: usize = 64;

/// How long closing waits for queued frames to go out, and then for the client to hang up.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// What the writer task consumes.
pub enum Outbound {
    /// A frame to send.
    Frame(Frame),
    /// Send this GOAWAY, flush, shut the write side down and stop.
    Close(Frame),
}

/// What both ends of the connection know about one stream.
struct StreamState {
    id: u32,
    /// The stream is dead: the peer reset it, or this side refused or reset it.
    reset: AtomicBool,
    /// This side half-closed it.
    fin_sent: AtomicBool,
}

impl StreamState {
    fn done(&self) -> bool {
        self.reset.load(Ordering::Acquire) || self.fin_sent.load(Ordering::Acquire)
    }
}

/// A stream the client opened, not yet answered.
pub struct IncomingStream {
    /// The headers the client opened it with.
    pub headers: Headers,
    state: Arc<StreamState>,
    inbound: mpsc::Receiver<Bytes>,
    out: mpsc::Sender<Outbound>,
}

/// An accepted stream's three handles.
pub struct Accepted {
    /// The client's payloads; closed at the client's FIN or reset.
    pub inbound: mpsc::Receiver<Bytes>,
    /// Writes DATA frames; shutting it down sends the FIN.
    pub writer: MessageWriter<SpdyFraming>,
    /// Half-closes or resets the stream from outside the writer.
    pub control: StreamControl,
}

impl IncomingStream {
    /// The stream's id (odd: client-initiated).
    pub fn id(&self) -> u32 {
        self.state.id
    }

    /// Answers with SYN_REPLY; the client's CreateStream returns once that arrives.
    pub async fn accept(self) -> Accepted {
        let reply = Frame::SynReply { stream_id: self.state.id, fin: false, headers: Headers::default() };
        // A send error means the connection is gone; the handles then fail on use.
        let _ = self.out.send(Outbound::Frame(reply)).await;
        Accepted {
            inbound: self.inbound,
            writer: MessageWriter::new(self.out.clone(), SpdyFraming { state: Arc::clone(&self.state) }),
            control: StreamControl { state: self.state, out: self.out },
        }
    }

    /// Answers with RST_STREAM (REFUSED_STREAM), which fails the client's CreateStream.
    pub async fn refuse(self) {
        self.state.reset.store(true, Ordering::Release);
        let _ = self.out.send(Outbound::Frame(Frame::RstStream { stream_id: self.state.id, status: REFUSED_STREAM })).await;
    }
}

/// Ends a stream from outside its writer (the writer may be owned by someone else by then).
#[derive(Clone)]
pub struct StreamControl {
    state: Arc<StreamState>,
    out: mpsc::Sender<Outbound>,
}

impl StreamControl {
    /// Half-closes the stream (FIN), unless that already happened or the stream is dead.
    pub async fn finish(&self) {
        if self.state.reset.load(Ordering::Acquire) || self.state.fin_sent.swap(true, Ordering::AcqRel) {
            return;
        }
        let _ = self.out.send(Outbound::Frame(fin_frame(self.state.id))).await;
    }

    /// Ends both directions (RST_STREAM, CANCEL), unless the stream is already dead.
    pub async fn reset(&self) {
        if self.state.reset.swap(true, Ordering::AcqRel) {
            return;
        }
        let _ = self.out.send(Outbound::Frame(Frame::RstStream { stream_id: self.state.id, status: CANCEL })).await;
    }

    /// Whether the stream is dead (reset by either side, or refused).
    pub fn is_reset(&self) -> bool {
        self.state.reset.load(Ordering::Acquire)
    }
}

fn fin_frame(stream_id: u32) -> Frame {
    Frame::Data { stream_id, fin: true, data: Bytes::new() }
}

/// DATA frames for one stream.
pub struct SpdyFraming {
    state: Arc<StreamState>,
}

impl Framing for SpdyFraming {
    type Item = Outbound;

    fn data(&mut self, chunk: &[u8]) -> Outbound {
        Outbound::Frame(Frame::Data { stream_id: self.state.id, fin: false, data: Bytes::copy_from_slice(chunk) })
    }

    fn finish(&mut self) -> Option<Outbound> {
        if self.state.reset.load(Ordering::Acquire) || self.state.fin_sent.swap(true, Ordering::AcqRel) {
            return None;
        }
        Some(Outbound::Frame(fin_frame(self.state.id)))
    }

    fn check(&self) -> io::Result<()> {
        if self.state.reset.load(Ordering::Acquire) {
            return Err(io::Error::new(io::ErrorKind::BrokenPipe, format!("SPDY stream {} was reset", self.state.id)));
        }
        Ok(())
    }
}

/// The server side of one SPDY connection.
pub struct Session {
    incoming: mpsc::Receiver<IncomingStream>,
    out: mpsc::Sender<Outbound>,
    last_stream_id: Arc<AtomicU32>,
    closing: CancellationToken,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
}

impl Session {
    /// Starts serving SPDY on `io`, which the HTTP upgrade handed over.
    pub fn start<T>(io: T) -> Result<Session, SpdyError>
    where
        T: AsyncRead + AsyncWrite + Send + 'static,
    {
        let encoder = FrameEncoder::new()?;
        let (read_half, write_half) = tokio::io::split(io);
        let (out, out_rx) = mpsc::channel(OUTBOUND_DEPTH);
        let (incoming_tx, incoming) = mpsc::channel(8);
        let last_stream_id = Arc::new(AtomicU32::new(0));
        let closing = CancellationToken::new();
        let writer = tokio::spawn(write_loop(FramedWrite::new(write_half, encoder), out_rx));
        let reader = tokio::spawn(
            Reader {
                out: out.clone(),
                incoming: incoming_tx,
                last_stream_id: Arc::clone(&last_stream_id),
                closing: closing.clone(),
                streams: HashMap::new(),
            }
            .run(FramedRead::new(read_half, FrameDecoder::new())),
        );
        Ok(Session { incoming, out, last_stream_id, closing, reader, writer })
    }

    /// The next stream the client opens; None once the connection is over.
    pub async fn next_stream(&mut self) -> Option<IncomingStream> {
        self.incoming.recv().await
    }

    /// Sends GOAWAY after everything already queued, shuts the write side, and reads until the
    /// client hangs up (closing with its frames unread would make the kernel answer with a TCP
    /// reset, which can destroy data the client has not read yet).
    pub async fn close(self) {
        let Session { incoming, out, last_stream_id, closing, mut reader, mut writer } = self;
        drop(incoming);
        closing.cancel();
        let goaway = Frame::GoAway { last_good_stream_id: last_stream_id.load(Ordering::Acquire), status: 0 };
        let flushed = tokio::time::timeout(CLOSE_GRACE, async {
            let _ = out.send(Outbound::Close(goaway)).await;
            drop(out);
            let _ = (&mut writer).await;
        })
        .await;
        if flushed.is_err() {
            tracing::debug!("SPDY client did not take the final frames in time");
            writer.abort();
        }
        if tokio::time::timeout(CLOSE_GRACE, &mut reader).await.is_err() {
            tracing::debug!("SPDY client did not hang up after GOAWAY");
            reader.abort();
        }
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(mut sink: FramedWrite<W, FrameEncoder>, mut rx: mpsc::Receiver<Outbound>) {
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        let mut closing = false;
        // Take whatever else is already queued before paying for a flush.
        while let Some(item) = next.take() {
            let frame = match item {
                Outbound::Frame(frame) => frame,
                Outbound::Close(goaway) => {
                    closing = true;
                    goaway
                }
            };
            if let Err(error) = sink.feed(frame).await {
                tracing::debug!(%error, "SPDY write failed");
                return;
            }
            if closing {
                break;
            }
            next = rx.try_recv().ok();
        }
        if let Err(error) = sink.flush().await {
            tracing::debug!(%error, "SPDY write failed");
            return;
        }
        if closing {
            break;
        }
    }
    if let Err(error) = sink.close().await {
        tracing::debug!(%error, "shutting down the SPDY connection's write side");
    }
}

/// What the reader knows of a stream.
struct Entry {
    /// None once the client half-closed it (or its consumer went away).
    inbound: Option<mpsc::Sender<Bytes>>,
    state: Arc<StreamState>,
}

struct Reader {
    out: mpsc::Sender<Outbound>,
    incoming: mpsc::Sender<IncomingStream>,
    last_stream_id: Arc<AtomicU32>,
    closing: CancellationToken,
    streams: HashMap<u32, Entry>,
}

impl Reader {
    async fn run<R: AsyncRead>(mut self, frames: FramedRead<R, FrameDecoder>) {
        tokio::pin!(frames);
        while let Some(frame) = frames.next().await {
            match frame {
                Ok(frame) => self.handle(frame).await,
                Err(error) => {
                    tracing::debug!(%error, "SPDY connection read ended");
                    break;
                }
            }
        }
        // Dropping the entries closes every inbound channel: readers see EOF.
    }

    async fn send(&self, frame: Frame) {
        // Fails only when the writer is gone, and then nothing can be answered anyway.
        let _ = self.out.send(Outbound::Frame(frame)).await;
    }

    async fn handle(&mut self, frame: Frame) {
        match frame {
            Frame::SynStream { stream_id, fin, headers } => self.open(stream_id, fin, headers).await,
            Frame::Data { stream_id, fin, data } => {
                let Some(entry) = self.streams.get_mut(&stream_id) else {
                    tracing::trace!(stream_id, "SPDY data for a stream that is gone");
                    return;
                };
                if !data.is_empty()
                    && let Some(tx) = &entry.inbound
                {
                    let delivered = tokio::select! {
                        sent = tx.send(data) => sent.is_ok(),
                        () = self.closing.cancelled() => false,
                    };
                    if !delivered {
                        entry.inbound = None;
                    }
                }
                if fin {
                    entry.inbound = None;
                }
            }
            Frame::RstStream { stream_id, status } => {
                tracing::trace!(stream_id, status, "SPDY stream reset by the client");
                if let Some(entry) = self.streams.remove(&stream_id) {
                    entry.state.reset.store(true, Ordering::Release);
                }
            }
            // Odd ids are pings the client started (kubectl pings every few seconds); even ones
            // would answer pings of ours, and this side sends none.
            Frame::Ping { id } if id % 2 == 1 => self.send(Frame::Ping { id }).await,
            Frame::Ping { .. } => {}
            Frame::GoAway { last_good_stream_id, status } => {
                // Its open streams go on; the connection ends when the client hangs up.
                tracing::trace!(last_good_stream_id, status, "SPDY client sent GOAWAY");
            }
            Frame::Headers { stream_id, fin, .. } => {
                if fin && let Some(entry) = self.streams.get_mut(&stream_id) {
                    entry.inbound = None;
                }
            }
            Frame::SynReply { .. } | Frame::Ignored { .. } => {}
        }
    }

    async fn open(&mut self, stream_id: u32, fin: bool, headers: Headers) {
        if stream_id.is_multiple_of(2) || stream_id <= self.last_stream_id.load(Ordering::Acquire) {
            tracing::debug!(stream_id, "SPDY client opened a stream with an invalid id");
            self.send(Frame::RstStream { stream_id, status: PROTOCOL_ERROR }).await;
            return;
        }
        self.last_stream_id.store(stream_id, Ordering::Release);
        self.streams.retain(|_, entry| !(entry.state.done() && entry.inbound.as_ref().is_none_or(|tx| tx.is_closed())));
        let state = Arc::new(StreamState { id: stream_id, reset: AtomicBool::new(false), fin_sent: AtomicBool::new(false) });
        let (tx, rx) = mpsc::channel(INBOUND_DEPTH);
        self.streams.insert(stream_id, Entry { inbound: (!fin).then_some(tx), state: Arc::clone(&state) });
        let stream = IncomingStream { headers, state, inbound: rx, out: self.out.clone() };
        if self.incoming.send(stream).await.is_err() {
            // Nobody takes new streams any more (the session is closing).
            self.streams.remove(&stream_id);
            self.send(Frame::RstStream { stream_id, status: REFUSED_STREAM }).await;
        }
    }
}
