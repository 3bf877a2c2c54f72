//! A small blocking HTTP/1.1 client over `wasi:http/outgoing-handler`. The agent sends each
//! request, only to the hosts its config grants the plugin (`allowedHosts`), and ends it with
//! the deadline of the call in progress.
//!
//! ```ignore
//! use staticlet_plugin_sdk::http::Request;
//!
//! let answer = Request::post("http://127.0.0.1:8888/v4.0.0/libpod/pods/create")
//!     .json(&serde_json::json!({"name": "web"}))
//!     .send()?;
//! if answer.is_success() { /* answer.body */ }
//! ```
//!
//! A Unix socket the agent config grants (`allowedSockets`) is reached with a URL whose host is
//! the socket's path with each `/` written as `~`; [`unix_socket_url`] makes it from the
//! `unix:///run/podman/podman.sock` form users write:
//!
//! ```ignore
//! let base = staticlet_plugin_sdk::http::unix_socket_url("unix:///run/podman/podman.sock")?;
//! let answer = Request::get(format!("{base}/v4.0.0/libpod/_ping")).send()?;
//! ```
//!
//! By default a request waits as long as the agent lets the call run: an image pull may take
//! minutes and a stop takes the container's grace period, and no single number fits both. Give
//! [`Request::timeout`] only when the plugin itself must stop waiting earlier.

use std::fmt;
use std::time::Duration;

use wasip2::clocks::monotonic_clock;
use wasip2::http::outgoing_handler;
use wasip2::http::types::{ErrorCode, Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, Scheme, http_error_code};
use wasip2::io::poll::{Pollable, poll};
use wasip2::io::streams::StreamError;

/// The largest answer read unless [`Request::max_body_bytes`] says otherwise: well inside an
/// instance's default memory cap of 64 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// How much of the answer one read asks for.
const READ_CHUNK: u64 = 64 * 1024;
/// `blocking-write-and-flush` takes at most this much a call.
const WRITE_CHUNK: usize = 4096;

/// One request, built with the methods below and sent with [`Request::send`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
    timeout: Option<Duration>,
    max_body_bytes: usize,
}

impl Request {
    /// `method url`, where `url` is `http://host:port/path?query` (or `https://`).
    pub fn new(method: &str, url: impl Into<String>) -> Request {
        Request {
            method: method.to_owned(),
            url: url.into(),
            headers: Vec::new(),
            body: None,
            timeout: None,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }

    /// `GET url`.
    pub fn get(url: impl Into<String>) -> Request {
        Request::new("GET", url)
    }

    /// `POST url`.
    pub fn post(url: impl Into<String>) -> Request {
        Request::new("POST", url)
    }

    /// `DELETE url`.
    pub fn delete(url: impl Into<String>) -> Request {
        Request::new("DELETE", url)
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Request {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sends `body` with its `content-type`.
    pub fn body(self, content_type: &str, body: impl Into<Vec<u8>>) -> Request {
        let mut request = self.header("content-type", content_type);
        request.body = Some(body.into());
        request
    }

    /// Sends `value` as JSON.
    pub fn json(self, value: &serde_json::Value) -> Request {
        self.body("application/json", value.to_string())
    }

    /// Gives up with [`Error::TimedOut`] when the whole answer has not arrived within `timeout`
    /// (the agent's deadline for the call applies as well).
    pub fn timeout(mut self, timeout: Duration) -> Request {
        self.timeout = Some(timeout);
        self
    }

    /// Refuses answers longer than `bytes` (default [`DEFAULT_MAX_BODY_BYTES`]).
    pub fn max_body_bytes(mut self, bytes: usize) -> Request {
        self.max_body_bytes = bytes;
        self
    }

    /// Sends the request and reads the whole answer, whatever its status.
    ///
    /// # Errors
    ///
    /// [`Error::Refused`] when the agent would not send it, [`Error::TimedOut`] after the
    /// request's own timeout, [`Error::TooLarge`] past the size cap, [`Error::Failed`] for
    /// anything else that kept an answer from arriving whole.
    pub fn send(&self) -> Result<Response, Error> {
        let (scheme, authority, path) = split_url(&self.url).map_err(Error::Failed)?;
        let deadline = self.timeout.map(|t| monotonic_clock::now().saturating_add(u64::try_from(t.as_nanos()).unwrap_or(u64::MAX)));
        let failed = |what: &str| Error::Failed(format!("{} {}: {what}", self.method, self.url));

        let fields = Fields::new();
        for (name, value) in &self.headers {
            fields.append(name, value.as_bytes()).map_err(|e| failed(&format!("header {name}: {e:?}")))?;
        }
        // The body is whole before it is sent: its length goes ahead of it instead of chunked
        // encoding, which some token endpoints and proxies refuse.
        if let Some(body) = &self.body {
            fields.set("content-length", &[body.len().to_string().into_bytes()]).map_err(|e| failed(&format!("content-length: {e:?}")))?;
        }
        let request = OutgoingRequest::new(fields);
        request.set_method(&method(&self.method)).map_err(|()| failed("not a method"))?;
        let scheme = if scheme == "https" { Scheme::Https } else { Scheme::Http };
        request.set_scheme(Some(&scheme)).map_err(|()| failed("bad scheme"))?;
        request.set_authority(Some(authority)).map_err(|()| failed("bad host"))?;
        request.set_path_with_query(Some(&path)).map_err(|()| failed("bad path"))?;

        let outgoing = request.body().map_err(|()| failed("cannot open the request body"))?;
        let future = outgoing_handler::handle(request, None).map_err(|code| describe(code, authority))?;
        if let Some(body) = &self.body {
            let stream = outgoing.write().map_err(|()| failed("cannot write the request body"))?;
            for chunk in body.chunks(WRITE_CHUNK) {
                if let Err(e) = stream.blocking_write_and_flush(chunk) {
                    // The agent closes the body of a request it refused: its answer says why.
                    if wait(&future.subscribe(), deadline)
                        && let Some(Ok(Err(code))) = future.get()
                    {
                        return Err(describe(code, authority));
                    }
                    return Err(stream_error(e, authority, "sending the request"));
                }
            }
        }
        OutgoingBody::finish(outgoing, None).map_err(|code| describe(code, authority))?;

        let timed_out =
            || Error::TimedOut(format!("{} {}: no whole answer within {:?}", self.method, self.url, self.timeout.unwrap_or_default()));
        if !wait(&future.subscribe(), deadline) {
            return Err(timed_out());
        }
        let response = match future.get() {
            Some(Ok(Ok(response))) => response,
            Some(Ok(Err(code))) => return Err(describe(code, authority)),
            Some(Err(())) | None => return Err(failed("no answer")),
        };
        let status = response.status();
        let headers =
            response.headers().entries().into_iter().map(|(name, value)| (name, String::from_utf8_lossy(&value).into_owned())).collect();
        let incoming = response.consume().map_err(|()| failed("cannot read the answer"))?;
        let body = match read_body(&incoming, deadline, self.max_body_bytes, authority)? {
            Some(body) => body,
            None => return Err(timed_out()),
        };
        Ok(Response { status, headers, body })
    }
}

/// An answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The headers, as the server sent them (see [`Response::header`] to look one up).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The first value of header `name`, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The body as trimmed text, for messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).trim().to_owned()
    }
}

/// Why no whole answer came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The agent would not send the request; the message says what to change in the agent
    /// config.
    Refused(String),
    /// The request's own [`Request::timeout`] passed first.
    TimedOut(String),
    /// The answer was longer than [`Request::max_body_bytes`].
    TooLarge(String),
    /// Anything else: a bad URL, an unreachable or silent server, a broken connection.
    Failed(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Refused(m) | Error::TimedOut(m) | Error::TooLarge(m) | Error::Failed(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {}

/// The base URL of the HTTP service on the Unix socket `unix:///<path>` (or a bare absolute
/// path): `http://` and the path with each `/` written as `~`, which is how the agent knows a
/// socket from a host. The path takes letters, digits, `.`, `_`, `-` and `/`, as the agent's
/// `allowedSockets` do.
///
/// # Errors
///
/// A URL that is not `unix://` with an absolute path of those characters.
pub fn unix_socket_url(url: &str) -> Result<String, String> {
    let path = url.strip_prefix("unix://").unwrap_or(url);
    let plain = path.chars().all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c));
    if !path.starts_with('/') || path.ends_with('/') || !plain || path.split('/').any(|part| part == "..") {
        return Err(format!("{url}: want unix:// and the socket's absolute path (letters, digits, '.', '_', '-' and '/')"));
    }
    Ok(format!("http://{}", path.replace('/', "~")))
}

/// `scheme://authority/path?query` → (scheme, authority, path and query); the path defaults to
/// `/`.
fn split_url(url: &str) -> Result<(&str, &str, String), String> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| format!("{url} is not a URL"))?;
    if scheme != "http" && scheme != "https" {
        return Err(format!("{url}: only http:// and https:// are supported"));
    }
    let (authority, path) = rest.find(['/', '?']).map_or((rest, ""), |i| (&rest[..i], &rest[i..]));
    if authority.is_empty() {
        return Err(format!("{url} names no host"));
    }
    let path = if path.starts_with('/') { path.to_owned() } else { format!("/{path}") };
    Ok((scheme, authority, path))
}

fn method(name: &str) -> Method {
    match name.to_ascii_uppercase().as_str() {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "PATCH" => Method::Patch,
        "OPTIONS" => Method::Options,
        _ => Method::Other(name.to_owned()),
    }
}

/// Waits until `ready`; `false` when `deadline` (monotonic nanoseconds) came first.
fn wait(ready: &Pollable, deadline: Option<u64>) -> bool {
    let Some(deadline) = deadline else {
        ready.block();
        return true;
    };
    let timer = monotonic_clock::subscribe_instant(deadline);
    poll(&[ready, &timer]).contains(&0)
}

/// The whole body, or `None` when `deadline` passed first.
fn read_body(body: &IncomingBody, deadline: Option<u64>, max: usize, authority: &str) -> Result<Option<Vec<u8>>, Error> {
    let stream = body.stream().map_err(|()| Error::Failed(format!("{authority}: cannot read the answer")))?;
    let ready = stream.subscribe();
    let mut out = Vec::new();
    loop {
        if !wait(&ready, deadline) {
            return Ok(None);
        }
        match stream.read(READ_CHUNK) {
            Ok(chunk) => out.extend_from_slice(&chunk),
            Err(StreamError::Closed) => return Ok(Some(out)),
            Err(e) => return Err(stream_error(e, authority, "reading the answer")),
        }
        if out.len() > max {
            return Err(Error::TooLarge(format!("the answer from {authority} is larger than {max} bytes")));
        }
    }
}

fn stream_error(e: StreamError, authority: &str, doing: &str) -> Error {
    match e {
        StreamError::Closed => Error::Failed(format!("{doing}: {authority} closed the connection")),
        StreamError::LastOperationFailed(e) => match http_error_code(&e) {
            Some(code) => describe(code, authority),
            None => Error::Failed(format!("{doing}: {}", e.to_debug_string())),
        },
    }
}

/// The transport's error in words; the agent's two refusals say what to change in its config.
fn describe(code: ErrorCode, authority: &str) -> Error {
    if authority.starts_with('~') {
        let socket = authority.replace('~', "/");
        return match code {
            ErrorCode::HttpRequestDenied => Error::Refused(format!(
                "the agent refused the request to the socket {socket}: it is not in this plugin's allowedSockets (add \"{socket}\" there to allow it)"
            )),
            ErrorCode::ConnectionRefused => Error::Failed(format!("nothing listens on {socket}")),
            other => Error::Failed(format!("{socket}: {other:?}")),
        };
    }
    match code {
        ErrorCode::HttpRequestDenied => Error::Refused(format!(
            "the agent refused the request to {authority}: the host is not in this plugin's allowedHosts (add \"{authority}\" there to allow it)"
        )),
        ErrorCode::DestinationIpProhibited => Error::Refused(format!(
            "the agent refused the address {authority} resolves to (loopback, link-local or another special address): list that address itself, with its port, in this plugin's allowedHosts to allow it"
        )),
        ErrorCode::ConnectionRefused => Error::Failed(format!("{authority} refused the connection")),
        ErrorCode::DnsError(dns) => Error::Failed(format!("cannot resolve {authority}: {}", dns.rcode.unwrap_or_default())),
        ErrorCode::ConnectionTimeout => Error::Failed(format!("no connection to {authority} in time")),
        ErrorCode::ConnectionReadTimeout | ErrorCode::HttpResponseTimeout => Error::Failed(format!("{authority} did not answer in time")),
        ErrorCode::ConnectionTerminated | ErrorCode::ConnectionLimitReached => Error::Failed(format!("{authority} closed the connection")),
        other => Error::Failed(format!("{authority}: {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_scheme_authority_and_path() {
        assert_eq!(split_url("http://127.0.0.1:8888/v4.0.0/libpod/_ping"), Ok(("http", "127.0.0.1:8888", "/v4.0.0/libpod/_ping".into())));
        assert_eq!(split_url("https://etcd.example:2379"), Ok(("https", "etcd.example:2379", "/".into())));
        assert_eq!(split_url("http://h:1?x=1"), Ok(("http", "h:1", "/?x=1".into())));
        assert!(split_url("unix:///run/podman.sock").is_err());
        assert!(split_url("http:///path").is_err());
        assert!(split_url("127.0.0.1:8888").is_err());
    }

    #[test]
    fn a_unix_socket_becomes_a_host_the_agent_knows() {
        assert_eq!(unix_socket_url("unix:///run/podman/podman.sock"), Ok("http://~run~podman~podman.sock".into()));
        assert_eq!(unix_socket_url("/run/user/1000/podman/podman.sock"), Ok("http://~run~user~1000~podman~podman.sock".into()));
        let base = unix_socket_url("unix:///run/podman/podman.sock").unwrap();
        assert_eq!(
            split_url(&format!("{base}/v4.0.0/libpod/_ping")),
            Ok(("http", "~run~podman~podman.sock", "/v4.0.0/libpod/_ping".into()))
        );
        for bad in
            ["unix://run/podman.sock", "unix:///run/../etc/x.sock", "unix:///run/pod man.sock", "unix:///run/", "tcp://127.0.0.1:8888"]
        {
            assert!(unix_socket_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn header_lookup_ignores_case() {
        let response =
            Response { status: 200, headers: vec![("content-type".into(), "application/json".into())], body: b" ok \n".to_vec() };
        assert_eq!(response.header("Content-Type"), Some("application/json"));
        assert_eq!(response.header("x-missing"), None);
        assert_eq!(response.text(), "ok");
        assert!(response.is_success());
    }
}
