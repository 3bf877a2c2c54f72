//! SPDY/3 header blocks: name/value pairs, zlib-compressed with the protocol's preset dictionary.
//!
//! Each direction of a connection is one zlib stream: every header block (SYN_STREAM, SYN_REPLY,
//! HEADERS) continues it and ends with a sync flush, so a block can be decoded only after all the
//! blocks before it, in order.

use std::sync::LazyLock;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};

use super::SpdyError;

/// The words of the SPDY/3 header dictionary, each stored with a 32-bit big-endian length prefix.
const DICTIONARY_WORDS: [&str; 65] = [
    "options",
    "head",
    "post",
    "put",
    "delete",
    "trace",
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "connection",
    "content-base",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-md5",
    "content-range",
    "content-type",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "location",
    "max-forwards",
    "pragma",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "retry-after",
    "server",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "vary",
    "via",
    "warning",
    "www-authenticate",
    "method",
    "get",
    "status",
    "200 OK",
    "version",
    "HTTP/1.1",
    "url",
    "public",
    "set-cookie",
    "keep-alive",
    "origin",
];

/// The dictionary's unprefixed tail: status codes, reason phrases, dates and common values.
const DICTIONARY_TAIL: &str = concat!(
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505",
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request",
    "401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented",
    "503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 ",
    "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,",
    "application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=",
    "gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
);

/// Adler-32 of the dictionary: the id a peer's zlib header names when it compressed with it.
const DICTIONARY_ID: u32 = 0xe3c6_a7c2;

static DICTIONARY: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let mut dictionary = Vec::with_capacity(1423);
    for word in DICTIONARY_WORDS {
        dictionary.extend_from_slice(&(word.len() as u32).to_be_bytes());
        dictionary.extend_from_slice(word.as_bytes());
    }
    dictionary.extend_from_slice(DICTIONARY_TAIL.as_bytes());
    dictionary
});

/// A decompressed header block bigger than this is refused: the streaming protocols send a
/// handful of short headers, and the limit keeps a compression bomb from costing memory.
const MAX_HEADER_BLOCK: usize = 256 * 1024;

/// The headers of a SPDY frame, names lowercased, one entry per value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, String)>);

impl Headers {
    /// The first value of `name` (compared case-insensitively).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Adds a value; SPDY names are lowercase on the wire.
    pub fn push(&mut self, name: &str, value: &str) {
        self.0.push((name.to_ascii_lowercase(), value.to_owned()));
    }

    /// The serialized, uncompressed block: values of one name join with NUL, as SPDY/3 requires
    /// each name to appear once.
    fn to_block(&self) -> Vec<u8> {
        let mut names: Vec<&str> = Vec::new();
        for (name, _) in &self.0 {
            if !names.contains(&name.as_str()) {
                names.push(name);
            }
        }
        let mut block = Vec::new();
        block.extend_from_slice(&(names.len() as u32).to_be_bytes());
        for name in names {
            let value = self.0.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str()).collect::<Vec<_>>().join("\0");
            block.extend_from_slice(&(name.len() as u32).to_be_bytes());
            block.extend_from_slice(name.as_bytes());
            block.extend_from_slice(&(value.len() as u32).to_be_bytes());
            block.extend_from_slice(value.as_bytes());
        }
        block
    }

    fn from_block(mut block: &[u8]) -> Result<Self, SpdyError> {
        let count = take_u32(&mut block)?;
        let mut headers = Headers::default();
        for _ in 0..count {
            let name = take_string(&mut block)?;
            let value = take_string(&mut block)?;
            for value in value.split('\0') {
                headers.push(&name, value);
            }
        }
        Ok(headers)
    }
}

fn take_u32(block: &mut &[u8]) -> Result<u32, SpdyError> {
    let Some((word, rest)) = block.split_first_chunk::<4>() else {
        return Err(SpdyError::Malformed("header block ends inside a length"));
    };
    *block = rest;
    Ok(u32::from_be_bytes(*word))
}

fn take_string(block: &mut &[u8]) -> Result<String, SpdyError> {
    let len = take_u32(block)? as usize;
    if block.len() < len {
        return Err(SpdyError::Malformed("header block ends inside a name or value"));
    }
    let (text, rest) = block.split_at(len);
    *block = rest;
    String::from_utf8(text.to_vec()).map_err(|_| SpdyError::Malformed("header name or value is not UTF-8"))
}

/// Decodes the header blocks of one direction of a connection.
pub struct HeaderInflater {
    zlib: Decompress,
}

impl HeaderInflater {
    /// A decoder at the start of the peer's zlib stream.
    pub fn new() -> Self {
        HeaderInflater { zlib: Decompress::new(true) }
    }

    /// Decompresses and parses the next header block.
    pub fn decode(&mut self, compressed: &[u8]) -> Result<Headers, SpdyError> {
        Headers::from_block(&self.inflate(compressed)?)
    }

    fn inflate(&mut self, input: &[u8]) -> Result<Vec<u8>, SpdyError> {
        let mut out = Vec::with_capacity(input.len() * 4 + 64);
        let mut consumed = 0;
        loop {
            if out.len() == out.capacity() {
                if out.len() >= MAX_HEADER_BLOCK {
                    return Err(SpdyError::Malformed("decompressed header block is too large"));
                }
                out.reserve(out.capacity());
            }
            let (in_before, out_before) = (self.zlib.total_in(), out.len());
            let result = self.zlib.decompress_vec(&input[consumed..], &mut out, FlushDecompress::Sync);
            consumed += (self.zlib.total_in() - in_before) as usize;
            if let Err(error) = result {
                match error.needs_dictionary() {
                    Some(DICTIONARY_ID) => {
                        self.zlib.set_dictionary(&DICTIONARY).map_err(|e| SpdyError::Zlib(format!("setting the dictionary: {e}")))?;
                        continue;
                    }
                    Some(other) => return Err(SpdyError::Zlib(format!("peer compressed with an unknown dictionary {other:#010x}"))),
                    None => return Err(SpdyError::Zlib(format!("decompressing a header block: {error}"))),
                }
            }
            let room_left = out.len() < out.capacity();
            if consumed == input.len() && room_left {
                return Ok(out);
            }
            if room_left && self.zlib.total_in() == in_before && out.len() == out_before {
                return Err(SpdyError::Malformed("header block is truncated"));
            }
        }
    }
}

/// Encodes the header blocks this side sends.
pub struct HeaderDeflater {
    zlib: Compress,
}

impl HeaderDeflater {
    /// An encoder at the start of this side's zlib stream, primed with the dictionary.
    pub fn new() -> Result<Self, SpdyError> {
        let mut zlib = Compress::new(Compression::default(), true);
        zlib.set_dictionary(&DICTIONARY).map_err(|e| SpdyError::Zlib(format!("setting the dictionary: {e}")))?;
        Ok(HeaderDeflater { zlib })
    }

    /// Appends the compressed block for `headers` to `out`, ending with a sync flush.
    pub fn encode(&mut self, headers: &Headers, out: &mut Vec<u8>) -> Result<(), SpdyError> {
        let block = headers.to_block();
        out.reserve(block.len() + 64);
        let mut consumed = 0;
        loop {
            let in_before = self.zlib.total_in();
            self.zlib
                .compress_vec(&block[consumed..], out, FlushCompress::Sync)
                .map_err(|e| SpdyError::Zlib(format!("compressing a header block: {e}")))?;
            consumed += (self.zlib.total_in() - in_before) as usize;
            if consumed == block.len() && out.len() < out.capacity() {
                return Ok(());
            }
            out.reserve(out.capacity().max(64));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dictionary_is_the_spdy3_one() {
        assert_eq!(DICTIONARY.len(), 1423);
        let mut zlib = Compress::new(Compression::default(), true);
        assert_eq!(zlib.set_dictionary(&DICTIONARY).unwrap(), DICTIONARY_ID);
    }

    #[test]
    fn blocks_round_trip_through_one_zlib_stream() {
        let mut deflater = HeaderDeflater::new().unwrap();
        let mut inflater = HeaderInflater::new();
        let mut first = Headers::default();
        first.push("streamType", "error");
        first.push("port", "8080");
        first.push("requestid", "0");
        let mut second = Headers::default();
        second.push("streamtype", "data");
        second.push("x-multi", "a");
        second.push("x-multi", "b");
        for headers in [&first, &second, &Headers::default(), &first] {
            let mut wire = Vec::new();
            deflater.encode(headers, &mut wire).unwrap();
            assert_eq!(&inflater.decode(&wire).unwrap(), headers);
        }
        // The first block names the dictionary in its zlib header (FDICT and the Adler-32).
        let mut fresh = HeaderDeflater::new().unwrap();
        let mut wire = Vec::new();
        fresh.encode(&first, &mut wire).unwrap();
        assert_eq!(wire[1] & 0x20, 0x20);
        assert_eq!(u32::from_be_bytes(wire[2..6].try_into().unwrap()), DICTIONARY_ID);
        assert_eq!(first.get("STREAMTYPE"), Some("error"));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut inflater = HeaderInflater::new();
        assert!(inflater.decode(b"\x78\xbb\x00\x00\x00\x01garbage").is_err());
        let mut inflater = HeaderInflater::new();
        assert!(inflater.decode(b"not zlib at all").is_err());
    }
}
