//! SPDY/3.1 framing: the frames the Kubernetes streaming protocols use, as a tokio codec.
//!
//! Every frame starts with 8 bytes. A control frame has the high bit set, then the version (3)
//! and the type, then 8 bits of flags and a 24-bit length; a data frame has the stream id, then
//! flags and length. Header blocks go through the connection's zlib streams, so the decoder and
//! the encoder each keep one.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::SpdyError;
use super::headers::{HeaderDeflater, HeaderInflater, Headers};

const VERSION: u16 = 3;
const CONTROL_BIT: u32 = 0x8000_0000;
const STREAM_ID_MASK: u32 = 0x7fff_ffff;
const FLAG_FIN: u8 = 0x01;
/// The largest payload a frame's 24-bit length field can describe.
const MAX_PAYLOAD: usize = 0x00ff_ffff;

const TYPE_SYN_STREAM: u16 = 1;
const TYPE_SYN_REPLY: u16 = 2;
const TYPE_RST_STREAM: u16 = 3;
const TYPE_PING: u16 = 6;
const TYPE_GOAWAY: u16 = 7;
const TYPE_HEADERS: u16 = 8;

/// RST_STREAM status: the stream is not wanted (an invalid port-forward stream, say).
pub const REFUSED_STREAM: u32 = 3;
/// RST_STREAM status: this side abandons a stream it had accepted.
pub const CANCEL: u32 = 5;
/// RST_STREAM status: the peer broke the protocol on this stream (a reused or even id).
pub const PROTOCOL_ERROR: u32 = 1;

/// One SPDY/3.1 frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A new stream; clients open odd ids.
    SynStream {
        /// The new stream's id.
        stream_id: u32,
        /// The opener sends nothing more on it.
        fin: bool,
        /// The stream's headers (`streamtype`, `port`, `requestid`).
        headers: Headers,
    },
    /// Acceptance of a stream the other side opened.
    SynReply {
        /// The accepted stream.
        stream_id: u32,
        /// The replier sends nothing on it.
        fin: bool,
        /// Reply headers; the kubelet sends none.
        headers: Headers,
    },
    /// Abrupt end of a stream in both directions.
    RstStream {
        /// The stream ended.
        stream_id: u32,
        /// Why, as a SPDY status code.
        status: u32,
    },
    /// A liveness probe; the receiver echoes the id of a ping the other side started.
    Ping {
        /// Odd when a client started it, even when a server did.
        id: u32,
    },
    /// The sender opens no more streams and will close the connection.
    GoAway {
        /// The last stream the sender accepted from the receiver.
        last_good_stream_id: u32,
        /// 0 for a normal shutdown.
        status: u32,
    },
    /// More headers on an open stream; nothing in these protocols uses them.
    Headers {
        /// The stream.
        stream_id: u32,
        /// The sender is done with the stream.
        fin: bool,
        /// The headers.
        headers: Headers,
    },
    /// Stream payload.
    Data {
        /// The stream.
        stream_id: u32,
        /// The sender is done sending on the stream (half-close).
        fin: bool,
        /// The bytes.
        data: Bytes,
    },
    /// A control frame these protocols do not need (SETTINGS, WINDOW_UPDATE, ...): spdystream
    /// neither sends nor honours flow control, so they are read and dropped.
    Ignored {
        /// The control frame type.
        kind: u16,
    },
}

/// Reads frames, decompressing header blocks in arrival order.
pub struct FrameDecoder {
    headers: HeaderInflater,
}

impl FrameDecoder {
    /// A decoder at the start of a connection.
    pub fn new() -> Self {
        FrameDecoder { headers: HeaderInflater::new() }
    }
}

fn stream_id(payload: &[u8]) -> Result<u32, SpdyError> {
    match payload.first_chunk::<4>() {
        Some(word) => Ok(u32::from_be_bytes(*word) & STREAM_ID_MASK),
        None => Err(SpdyError::Malformed("control frame too short for its stream id")),
    }
}

fn after_stream_id(payload: &[u8]) -> Result<&[u8], SpdyError> {
    payload.get(4..).ok_or(SpdyError::Malformed("control frame too short for its stream id"))
}

fn second_word(payload: &[u8]) -> Result<u32, SpdyError> {
    match payload.get(4..8) {
        Some(word) => Ok(u32::from_be_bytes([word[0], word[1], word[2], word[3]])),
        None => Err(SpdyError::Malformed("control frame too short")),
    }
}

impl Decoder for FrameDecoder {
    type Item = Frame;
    type Error = SpdyError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, SpdyError> {
        let Some(head) = src.first_chunk::<8>() else {
            return Ok(None);
        };
        let first = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        let second = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
        let flags = (second >> 24) as u8;
        let len = (second & MAX_PAYLOAD as u32) as usize;
        if src.len() < 8 + len {
            src.reserve(8 + len - src.len());
            return Ok(None);
        }
        src.advance(8);
        let payload = src.split_to(len).freeze();
        let fin = flags & FLAG_FIN != 0;
        if first & CONTROL_BIT == 0 {
            return Ok(Some(Frame::Data { stream_id: first & STREAM_ID_MASK, fin, data: payload }));
        }
        let version = ((first >> 16) & 0x7fff) as u16;
        if version != VERSION {
            return Err(SpdyError::Malformed("control frame is not SPDY version 3"));
        }
        let frame = match (first & 0xffff) as u16 {
            TYPE_SYN_STREAM => {
                let Some(block) = payload.get(10..) else {
                    return Err(SpdyError::Malformed("SYN_STREAM too short"));
                };
                Frame::SynStream { stream_id: stream_id(&payload)?, fin, headers: self.headers.decode(block)? }
            }
            TYPE_SYN_REPLY => {
                Frame::SynReply { stream_id: stream_id(&payload)?, fin, headers: self.headers.decode(after_stream_id(&payload)?)? }
            }
            TYPE_HEADERS => {
                Frame::Headers { stream_id: stream_id(&payload)?, fin, headers: self.headers.decode(after_stream_id(&payload)?)? }
            }
            TYPE_RST_STREAM => Frame::RstStream { stream_id: stream_id(&payload)?, status: second_word(&payload)? },
            TYPE_PING => match payload.first_chunk::<4>() {
                Some(id) => Frame::Ping { id: u32::from_be_bytes(*id) },
                None => return Err(SpdyError::Malformed("PING too short")),
            },
            TYPE_GOAWAY => Frame::GoAway {
                last_good_stream_id: stream_id(&payload)?,
                // SPDY/2 peers send no status; treat that as a normal shutdown.
                status: second_word(&payload).unwrap_or(0),
            },
            kind => Frame::Ignored { kind },
        };
        Ok(Some(frame))
    }
}

/// Writes frames, compressing header blocks in send order.
pub struct FrameEncoder {
    headers: HeaderDeflater,
}

impl FrameEncoder {
    /// An encoder at the start of a connection.
    pub fn new() -> Result<Self, SpdyError> {
        Ok(FrameEncoder { headers: HeaderDeflater::new()? })
    }
}

impl FrameEncoder {
    /// SYN_REPLY and HEADERS: a stream id, then a header block.
    fn put_headed(&mut self, dst: &mut BytesMut, kind: u16, stream_id: u32, fin: bool, headers: &Headers) -> Result<(), SpdyError> {
        let mut payload = Vec::with_capacity(32);
        payload.extend_from_slice(&(stream_id & STREAM_ID_MASK).to_be_bytes());
        self.headers.encode(headers, &mut payload)?;
        put_control(dst, kind, fin_flag(fin), &payload);
        Ok(())
    }
}

fn put_control(dst: &mut BytesMut, kind: u16, flags: u8, payload: &[u8]) {
    dst.put_u16(0x8000 | VERSION);
    dst.put_u16(kind);
    dst.put_u32((u32::from(flags) << 24) | payload.len() as u32);
    dst.put_slice(payload);
}

fn fin_flag(fin: bool) -> u8 {
    if fin { FLAG_FIN } else { 0 }
}

impl Encoder<Frame> for FrameEncoder {
    type Error = SpdyError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), SpdyError> {
        match frame {
            Frame::Data { stream_id, fin, data } => {
                // Only the last piece of an oversized payload carries the FIN.
                let mut chunks = data.chunks(MAX_PAYLOAD).peekable();
                if chunks.peek().is_none() {
                    dst.put_u32(stream_id & STREAM_ID_MASK);
                    dst.put_u32(u32::from(fin_flag(fin)) << 24);
                }
                while let Some(chunk) = chunks.next() {
                    let flags = fin_flag(fin && chunks.peek().is_none());
                    dst.put_u32(stream_id & STREAM_ID_MASK);
                    dst.put_u32((u32::from(flags) << 24) | chunk.len() as u32);
                    dst.put_slice(chunk);
                }
            }
            Frame::SynStream { stream_id, fin, headers } => {
                let mut payload = Vec::with_capacity(64);
                payload.extend_from_slice(&(stream_id & STREAM_ID_MASK).to_be_bytes());
                // No associated stream, priority 0, slot 0.
                payload.extend_from_slice(&[0; 6]);
                self.headers.encode(&headers, &mut payload)?;
                put_control(dst, TYPE_SYN_STREAM, fin_flag(fin), &payload);
            }
            Frame::SynReply { stream_id, fin, headers } => self.put_headed(dst, TYPE_SYN_REPLY, stream_id, fin, &headers)?,
            Frame::Headers { stream_id, fin, headers } => self.put_headed(dst, TYPE_HEADERS, stream_id, fin, &headers)?,
            Frame::RstStream { stream_id, status } => {
                let mut payload = [0; 8];
                payload[..4].copy_from_slice(&(stream_id & STREAM_ID_MASK).to_be_bytes());
                payload[4..].copy_from_slice(&status.to_be_bytes());
                put_control(dst, TYPE_RST_STREAM, 0, &payload);
            }
            Frame::Ping { id } => put_control(dst, TYPE_PING, 0, &id.to_be_bytes()),
            Frame::GoAway { last_good_stream_id, status } => {
                let mut payload = [0; 8];
                payload[..4].copy_from_slice(&(last_good_stream_id & STREAM_ID_MASK).to_be_bytes());
                payload[4..].copy_from_slice(&status.to_be_bytes());
                put_control(dst, TYPE_GOAWAY, 0, &payload);
            }
            Frame::Ignored { kind } => return Err(SpdyError::Unsupported(kind)),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Headers {
        let mut headers = Headers::default();
        for (name, value) in pairs {
            headers.push(name, value);
        }
        headers
    }

    #[test]
    fn every_frame_round_trips() {
        let frames = vec![
            Frame::SynStream { stream_id: 1, fin: false, headers: headers(&[("streamtype", "error"), ("port", "80")]) },
            Frame::SynReply { stream_id: 1, fin: false, headers: Headers::default() },
            Frame::Headers { stream_id: 3, fin: true, headers: headers(&[("x", "y")]) },
            Frame::Data { stream_id: 1, fin: false, data: Bytes::from_static(b"payload") },
            Frame::Data { stream_id: 1, fin: true, data: Bytes::new() },
            Frame::RstStream { stream_id: 5, status: CANCEL },
            Frame::Ping { id: 7 },
            Frame::GoAway { last_good_stream_id: 5, status: 0 },
        ];
        let mut encoder = FrameEncoder::new().unwrap();
        let mut wire = BytesMut::new();
        for frame in frames.clone() {
            encoder.encode(frame, &mut wire).unwrap();
        }
        // Byte by byte, as a slow connection would deliver them.
        let mut decoder = FrameDecoder::new();
        let mut buffer = BytesMut::new();
        let mut decoded = Vec::new();
        for byte in wire {
            buffer.extend_from_slice(&[byte]);
            while let Some(frame) = decoder.decode(&mut buffer).unwrap() {
                decoded.push(frame);
            }
        }
        assert_eq!(decoded, frames);
    }

    #[test]
    fn wire_layout_is_spdy3() {
        let mut wire = BytesMut::new();
        FrameEncoder::new().unwrap().encode(Frame::Ping { id: 9 }, &mut wire).unwrap();
        assert_eq!(&wire[..], [0x80, 0x03, 0x00, 0x06, 0x00, 0x00, 0x00, 0x04, 0, 0, 0, 9]);
        let mut wire = BytesMut::new();
        FrameEncoder::new().unwrap().encode(Frame::Data { stream_id: 3, fin: true, data: Bytes::from_static(b"ab") }, &mut wire).unwrap();
        assert_eq!(&wire[..], [0, 0, 0, 3, 0x01, 0, 0, 2, b'a', b'b']);
    }

    #[test]
    fn short_or_foreign_frames_are_errors_not_panics() {
        for wire in [
            &[0x80, 0x03, 0x00, 0x02, 0x00, 0x00, 0x00, 0x02, 0, 1][..],
            &[0x80, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00, 0x04, 0, 0, 0, 1],
            &[0x80, 0x03, 0x00, 0x03, 0x00, 0x00, 0x00, 0x04, 0, 0, 0, 1],
            &[0x80, 0x03, 0x00, 0x06, 0x00, 0x00, 0x00, 0x00],
            &[0x80, 0x02, 0x00, 0x06, 0x00, 0x00, 0x00, 0x04, 0, 0, 0, 1],
        ] {
            assert!(FrameDecoder::new().decode(&mut BytesMut::from(wire)).is_err(), "{wire:?}");
        }
        // SETTINGS and WINDOW_UPDATE are read past, not misread.
        let mut wire = BytesMut::from(&[0x80, 0x03, 0x00, 0x09, 0x00, 0x00, 0x00, 0x08, 0, 0, 0, 1, 0, 0, 0x10, 0][..]);
        assert_eq!(FrameDecoder::new().decode(&mut wire).unwrap(), Some(Frame::Ignored { kind: 9 }));
        assert!(wire.is_empty());
    }
}
