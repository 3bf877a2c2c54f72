//! A small blocking HTTP client over `wasi:http/outgoing-handler`: the agent sends the request,
//! and only to the hosts its config grants this plugin (with the TLS files its grant names, for
//! an `https://` endpoint). [`Stream`] reads an answer as it arrives, for the watch.

use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    ErrorCode, Fields, FutureIncomingResponse, IncomingResponse, Method, OutgoingBody, OutgoingRequest, RequestOptions, Scheme,
};
use wasip2::io::streams::StreamError;

/// How long connecting to one endpoint may take before the next one is tried.
const CONNECT_TIMEOUT_NS: u64 = 2_000_000_000;
/// How long one endpoint may take to start answering.
const FIRST_BYTE_TIMEOUT_NS: u64 = 5_000_000_000;
/// The largest answer read: far above any node's set of manifests.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// An answer.
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The body.
    pub body: Vec<u8>,
}

/// `POST url` with a JSON body and the given extra headers.
pub fn post_json(url: &str, headers: &[(&str, &str)], body: &str) -> Result<Response, String> {
    let future = send_post(url, headers, body)?;
    let response = await_response(&future)?;
    let status = response.status();
    let incoming = response.consume().map_err(|()| "cannot read the answer".to_owned())?;
    let mut body = Vec::new();
    {
        let stream = incoming.stream().map_err(|()| "cannot read the answer".to_owned())?;
        loop {
            match stream.blocking_read(64 * 1024) {
                Ok(chunk) => body.extend_from_slice(&chunk),
                Err(StreamError::Closed) => break,
                Err(e) => return Err(format!("reading the answer: {}", stream_error(e))),
            }
            if body.len() > MAX_BODY_BYTES {
                return Err(format!("the answer is larger than {MAX_BODY_BYTES} bytes"));
            }
        }
    }
    Ok(Response { status, body })
}

/// Sends `POST url` with its whole body; the answer to wait for.
fn send_post(url: &str, headers: &[(&str, &str)], body: &str) -> Result<FutureIncomingResponse, String> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| format!("{url} is not a URL"))?;
    let (authority, path) = rest.find('/').map_or((rest, "/"), |i| (&rest[..i], &rest[i..]));

    let fields = Fields::new();
    fields.append("content-type", b"application/json").map_err(|e| format!("content-type header: {e:?}"))?;
    fields.append("content-length", body.len().to_string().as_bytes()).map_err(|e| format!("content-length header: {e:?}"))?;
    for (name, value) in headers {
        fields.append(name, value.as_bytes()).map_err(|e| format!("{name} header: {e:?}"))?;
    }
    let request = OutgoingRequest::new(fields);
    request.set_method(&Method::Post).map_err(|()| "cannot set the method".to_owned())?;
    request.set_scheme(Some(&if scheme == "https" { Scheme::Https } else { Scheme::Http })).map_err(|()| format!("bad scheme in {url}"))?;
    request.set_authority(Some(authority)).map_err(|()| format!("bad host in {url}"))?;
    request.set_path_with_query(Some(path)).map_err(|()| format!("bad path in {url}"))?;

    let options = RequestOptions::new();
    // A host may not support these; its own limits apply then.
    let _ = options.set_connect_timeout(Some(CONNECT_TIMEOUT_NS));
    let _ = options.set_first_byte_timeout(Some(FIRST_BYTE_TIMEOUT_NS));

    let outgoing = request.body().map_err(|()| "cannot open the request body".to_owned())?;
    let future = outgoing_handler::handle(request, Some(options)).map_err(describe)?;
    {
        let stream = outgoing.write().map_err(|()| "cannot write the request body".to_owned())?;
        // `blocking_write_and_flush` takes at most 4096 bytes a call.
        for chunk in body.as_bytes().chunks(4096) {
            stream.blocking_write_and_flush(chunk).map_err(|e| format!("sending the request: {}", stream_error(e)))?;
        }
    }
    OutgoingBody::finish(outgoing, None).map_err(describe)?;
    Ok(future)
}

/// The answer's head, once it came.
fn await_response(future: &FutureIncomingResponse) -> Result<IncomingResponse, String> {
    future.subscribe().block();
    match future.get() {
        Some(Ok(Ok(response))) => Ok(response),
        Some(Ok(Err(code))) => Err(describe(code)),
        Some(Err(())) | None => Err("no answer".to_owned()),
    }
}

fn stream_error(e: StreamError) -> String {
    match e {
        StreamError::Closed => "the connection closed".to_owned(),
        StreamError::LastOperationFailed(e) => e.to_debug_string(),
    }
}

/// The transport error, in words; the two refusals say what to change in the agent config.
fn describe(code: ErrorCode) -> String {
    match code {
        ErrorCode::HttpRequestDenied => "the agent refused the request: the host is not in this plugin's allowedHosts".to_owned(),
        ErrorCode::DestinationIpProhibited => {
            "the agent refused the address the host resolves to (loopback, link-local or another special address); list that IP itself in allowedHosts to allow it"
                .to_owned()
        }
        ErrorCode::ConnectionRefused => "connection refused".to_owned(),
        ErrorCode::ConnectionTimeout => "no connection within the connect timeout".to_owned(),
        ErrorCode::ConnectionReadTimeout => "no answer within the first-byte timeout".to_owned(),
        other => format!("{other:?}"),
    }
}

/// A response read as it arrives: etcd's watch, which streams one JSON message per line for as
/// long as the watch lasts. Dropping it closes the connection.
pub struct Stream {
    // Field order is drop order: a stream goes before the body it reads, the body before its
    // response.
    stream: wasip2::io::streams::InputStream,
    _body: wasip2::http::types::IncomingBody,
    _response: wasip2::http::types::IncomingResponse,
}

/// What one [`Stream::read`] got.
pub enum Read {
    /// Bytes of the answer.
    Data(Vec<u8>),
    /// Nothing before the deadline.
    Timeout,
    /// The server ended the answer.
    Closed,
}

impl Stream {
    /// `POST url` with a JSON body; the stream of a 200 answer, or the error answer whole.
    pub fn open(url: &str, headers: &[(&str, &str)], body: &str) -> Result<Result<Stream, Response>, String> {
        let future = send_post(url, headers, body)?;
        let response = await_response(&future)?;
        let status = response.status();
        let incoming = response.consume().map_err(|()| "cannot read the answer".to_owned())?;
        let stream = incoming.stream().map_err(|()| "cannot read the answer".to_owned())?;
        let stream = Stream { stream, _body: incoming, _response: response };
        if status == 200 {
            return Ok(Ok(stream));
        }
        let mut body = Vec::new();
        while let Ok(Read::Data(chunk)) = stream.read(wasip2::clocks::monotonic_clock::now() + FIRST_BYTE_TIMEOUT_NS) {
            body.extend_from_slice(&chunk);
        }
        Ok(Err(Response { status, body }))
    }

    /// The bytes that arrive before `deadline` (monotonic nanoseconds).
    pub fn read(&self, deadline: u64) -> Result<Read, String> {
        let ready = self.stream.subscribe();
        let timer = wasip2::clocks::monotonic_clock::subscribe_instant(deadline);
        if !wasip2::io::poll::poll(&[&ready, &timer]).contains(&0) {
            return Ok(Read::Timeout);
        }
        match self.stream.read(64 * 1024) {
            Ok(chunk) => Ok(Read::Data(chunk)),
            Err(StreamError::Closed) => Ok(Read::Closed),
            Err(e) => Err(stream_error(e)),
        }
    }
}
