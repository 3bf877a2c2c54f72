//! The WebSocket channel protocols (`channel.k8s.io` and its versions): every message carries
//! one stream's bytes behind a channel-number byte (or, in the base64 variants, a channel digit
//! and base64 text). v5 adds channel 255: `[255, n]` from the client closes its channel n, which
//! is how kubectl ends stdin.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::pipe::Framing;

/// The channel byte of v5's close signal.
const CLOSE_SIGNAL: u8 = 255;

/// Messages queued for the writer before channel writers wait.
const OUTBOUND_DEPTH: usize = 64;

/// How channel numbers and payloads are put into messages.
#[derive(Debug, Clone, Copy)]
pub struct ChannelCodec {
    /// base64.channel.k8s.io and its versions: text messages, channel as an ASCII digit.
    pub base64: bool,
    /// v5.channel.k8s.io: the client may close its channels.
    pub close_signal: bool,
}

impl ChannelCodec {
    /// The codec of a negotiated subprotocol ("" is the original binary one).
    pub fn for_protocol(protocol: &str) -> Self {
        ChannelCodec { base64: protocol.contains("base64."), close_signal: protocol == "v5.channel.k8s.io" }
    }

    /// The message carrying `data` on `channel`.
    pub fn encode(self, channel: u8, data: &[u8]) -> Message {
        if self.base64 {
            let mut text = String::with_capacity(1 + data.len().div_ceil(3) * 4);
            text.push(char::from(b'0' + channel));
            BASE64.encode_string(data, &mut text);
            Message::text(text)
        } else {
            let mut frame = Vec::with_capacity(1 + data.len());
            frame.push(channel);
            frame.extend_from_slice(data);
            Message::binary(frame)
        }
    }
}

/// What the writer task consumes.
pub enum Outbound {
    /// A message to send.
    Message(Message),
    /// Send a normal close, flush, and stop.
    Close,
}

/// Starts the task that owns the sending half of the connection.
pub fn spawn_writer<S>(sink: SplitSink<WebSocketStream<S>, Message>) -> (mpsc::Sender<Outbound>, JoinHandle<()>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (tx, rx) = mpsc::channel(OUTBOUND_DEPTH);
    (tx, tokio::spawn(write_loop(sink, rx)))
}

async fn write_loop<S>(mut sink: SplitSink<WebSocketStream<S>, Message>, mut rx: mpsc::Receiver<Outbound>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        let mut closing = false;
        while let Some(item) = next.take() {
            match item {
                Outbound::Message(message) => {
                    if let Err(error) = sink.feed(message).await {
                        tracing::debug!(%error, "WebSocket write failed");
                        return;
                    }
                    next = rx.try_recv().ok();
                }
                Outbound::Close => closing = true,
            }
        }
        if let Err(error) = sink.flush().await {
            tracing::debug!(%error, "WebSocket write failed");
            return;
        }
        if closing {
            // Code 1000: client-go reads only a normal closure as the end of its streams; a bare
            // close frame (1005) would fail kubectl's read of the error stream.
            let close = CloseFrame { code: CloseCode::Normal, reason: "".into() };
            if let Err(error) = sink.send(Message::Close(Some(close))).await {
                tracing::debug!(%error, "sending the WebSocket close");
            }
            return;
        }
    }
}

/// Bytes on one channel, as messages for the writer task.
pub struct ChannelFraming {
    /// The channel number.
    pub channel: u8,
    /// The connection's codec.
    pub codec: ChannelCodec,
}

impl Framing for ChannelFraming {
    type Item = Outbound;

    fn data(&mut self, chunk: &[u8]) -> Outbound {
        Outbound::Message(self.codec.encode(self.channel, chunk))
    }

    fn finish(&mut self) -> Option<Outbound> {
        // No channel protocol lets the server half-close a channel; the connection's close ends all.
        None
    }
}

/// Where the reader sends each channel's payloads; channels without a route are dropped.
pub struct Routes(Vec<Option<mpsc::Sender<Bytes>>>);

impl Routes {
    /// No routes.
    pub fn new() -> Self {
        Routes(Vec::new())
    }

    /// Sends `channel`'s payloads to `tx`.
    pub fn insert(&mut self, channel: u8, tx: mpsc::Sender<Bytes>) {
        let index = usize::from(channel);
        if self.0.len() <= index {
            self.0.resize_with(index + 1, || None);
        }
        self.0[index] = Some(tx);
    }

    fn close(&mut self, channel: u8) {
        if let Some(route) = self.0.get_mut(usize::from(channel)) {
            *route = None;
        }
    }

    async fn deliver(&mut self, channel: u8, payload: Bytes) {
        let Some(route) = self.0.get_mut(usize::from(channel)) else {
            tracing::trace!(channel, "WebSocket message for a channel nobody reads");
            return;
        };
        if let Some(tx) = route
            && tx.send(payload).await.is_err()
        {
            *route = None;
        }
    }
}

/// Reads the client's messages until the connection ends, routing payloads by channel.
/// Returning drops every route: each channel's reader sees EOF.
pub async fn read_loop<S>(mut stream: SplitStream<WebSocketStream<S>>, codec: ChannelCodec, mut routes: Routes)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    while let Some(message) = stream.next().await {
        let data = match message {
            Ok(Message::Binary(data)) => data,
            Ok(Message::Text(text)) => Bytes::from(text),
            // tungstenite answers pings itself while it reads.
            Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => continue,
            Ok(Message::Close(_)) => break,
            Err(error) => {
                tracing::debug!(%error, "WebSocket read ended");
                break;
            }
        };
        let Some(&first) = data.first() else {
            continue;
        };
        if codec.close_signal && first == CLOSE_SIGNAL {
            let [_, channel] = data[..] else {
                tracing::debug!(len = data.len(), "malformed close signal; ending the connection");
                break;
            };
            tracing::trace!(channel, "client closed its channel");
            routes.close(channel);
            continue;
        }
        if codec.base64 {
            let Some(channel) = first.checked_sub(b'0') else {
                tracing::debug!(first, "base64 message with an invalid channel");
                continue;
            };
            match BASE64.decode(&data[1..]) {
                Ok(payload) => routes.deliver(channel, Bytes::from(payload)).await,
                Err(error) => tracing::debug!(%error, channel, "undecodable base64 message"),
            }
        } else {
            routes.deliver(first, data.slice(1..)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codecs_frame_channels() {
        let binary = ChannelCodec::for_protocol("v4.channel.k8s.io");
        assert!(!binary.base64 && !binary.close_signal);
        assert_eq!(binary.encode(1, b"hi"), Message::binary(vec![1, b'h', b'i']));
        assert_eq!(binary.encode(3, b""), Message::binary(vec![3]));
        let base64 = ChannelCodec::for_protocol("v4.base64.channel.k8s.io");
        assert!(base64.base64);
        assert_eq!(base64.encode(1, b"foo\n"), Message::text("1Zm9vCg=="));
        assert!(ChannelCodec::for_protocol("v5.channel.k8s.io").close_signal);
        assert!(!ChannelCodec::for_protocol("").base64);
    }
}
