//! A small blocking HTTP client over `wasi:http/outgoing-handler`. The agent sends each
//! request, only to the hosts its config grants this plugin, and bounds it by the deadline of
//! the call in progress; this client sets no timeouts of its own, since an image pull may take
//! minutes and a stop takes the container's grace period.

use wasip2::http::outgoing_handler;
use wasip2::http::types::{ErrorCode, Fields, Method, OutgoingBody, OutgoingRequest, Scheme};
use wasip2::io::streams::StreamError;

/// The largest answer read: far above any runtime's answer to one call.
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// An answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// The body as text, for messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).trim().to_owned()
    }
}

/// `GET url`.
///
/// # Errors
///
/// The transport's failure in words (no status code came back); a refusal by the agent says
/// which setting to change.
pub fn get(url: &str) -> Result<Response, String> {
    send("GET", url, None)
}

/// Sends one request, with a JSON body when given.
///
/// # Errors
///
/// As [`get`].
pub fn send(method: &str, url: &str, json: Option<&[u8]>) -> Result<Response, String> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| format!("{url} is not a URL"))?;
    let (authority, path) = rest.find('/').map_or((rest, "/"), |i| (&rest[..i], &rest[i..]));

    let fields = Fields::new();
    if json.is_some() {
        fields.append("content-type", b"application/json").map_err(|e| format!("content-type header: {e:?}"))?;
    }
    let request = OutgoingRequest::new(fields);
    let method = match method {
        "GET" => Method::Get,
        "POST" => Method::Post,
        "DELETE" => Method::Delete,
        "PUT" => Method::Put,
        other => Method::Other(other.to_owned()),
    };
    request.set_method(&method).map_err(|()| "cannot set the method".to_owned())?;
    request.set_scheme(Some(&if scheme == "https" { Scheme::Https } else { Scheme::Http })).map_err(|()| format!("bad scheme in {url}"))?;
    request.set_authority(Some(authority)).map_err(|()| format!("bad host in {url}"))?;
    request.set_path_with_query(Some(path)).map_err(|()| format!("bad path in {url}"))?;

    let outgoing = request.body().map_err(|()| "cannot open the request body".to_owned())?;
    let future = outgoing_handler::handle(request, None).map_err(describe)?;
    if let Some(body) = json {
        let stream = outgoing.write().map_err(|()| "cannot write the request body".to_owned())?;
        // `blocking_write_and_flush` takes at most 4096 bytes a call.
        for chunk in body.chunks(4096) {
            stream.blocking_write_and_flush(chunk).map_err(|e| format!("sending the request: {}", stream_error(e)))?;
        }
    }
    OutgoingBody::finish(outgoing, None).map_err(describe)?;

    future.subscribe().block();
    let response = match future.get() {
        Some(Ok(Ok(response))) => response,
        Some(Ok(Err(code))) => return Err(describe(code)),
        Some(Err(())) | None => return Err("no answer".to_owned()),
    };
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

fn stream_error(e: StreamError) -> String {
    match e {
        StreamError::Closed => "the connection closed".to_owned(),
        StreamError::LastOperationFailed(e) => e.to_debug_string(),
    }
}

/// The transport error, in words; the two refusals say what to change in the agent config.
fn describe(code: ErrorCode) -> String {
    match code {
        ErrorCode::HttpRequestDenied => {
            "the agent refused the request: the host is not in this plugin's allowedHosts".to_owned()
        }
        ErrorCode::DestinationIpProhibited => {
            "the agent refused the address the host resolves to (loopback, link-local or another special address); list that IP itself in allowedHosts to allow it"
                .to_owned()
        }
        ErrorCode::ConnectionRefused => "connection refused".to_owned(),
        ErrorCode::ConnectionTimeout => "no connection within the call's deadline".to_owned(),
        ErrorCode::ConnectionReadTimeout => "no answer within the call's deadline".to_owned(),
        other => format!("{other:?}"),
    }
}
