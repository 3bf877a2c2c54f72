//! Podman's REST API (the libpod endpoints), as far as the adapter uses it, and how its answers
//! become the runtime interface's errors.

use serde::de::DeserializeOwned;
use serde_json::Value;
use staticlet_plugin_sdk::http::{self, Request, Response};
use staticlet_plugin_sdk::runtime::RuntimeError;

/// A Podman service.
#[derive(Debug, Clone)]
pub struct Client {
    /// The endpoint as the settings say it, for messages.
    endpoint: String,
    /// `<url>/<apiVersion>/libpod`: Podman answers 404 to unversioned libpod paths.
    base: String,
}

impl Client {
    /// The service `endpoint` (`unix:///run/podman/podman.sock`) at `url` (the HTTP form the
    /// agent sends, [`http::unix_socket_url`] for a socket), spoken to in `api_version`.
    pub fn new(endpoint: &str, url: &str, api_version: &str) -> Client {
        let base = format!("{}/{}/libpod", url.trim_end_matches('/'), api_version.trim_matches('/'));
        Client { endpoint: endpoint.trim_end_matches('/').to_owned(), base }
    }

    /// A request to `path`, below `/libpod`.
    pub fn request(&self, method: &str, path: &str) -> Request {
        Request::new(method, format!("{}{path}", self.base))
    }

    /// Sends `request`, whatever the answer's status.
    ///
    /// # Errors
    ///
    /// [`RuntimeError::DeadlineExceeded`] when the request's own timeout passed,
    /// [`RuntimeError::Call`] for an answer over its size cap, and
    /// [`RuntimeError::Unavailable`] naming the endpoint when no answer came otherwise
    /// (including the agent's refusal, which says what to change in its config).
    pub fn send(&self, request: &Request) -> Result<Response, RuntimeError> {
        request.send().map_err(|e| match e {
            http::Error::TimedOut(m) => RuntimeError::DeadlineExceeded(m),
            http::Error::TooLarge(m) => RuntimeError::Call(m),
            http::Error::Refused(m) | http::Error::Failed(m) => RuntimeError::Unavailable(format!("Podman at {}: {m}", self.endpoint)),
        })
    }

    /// `GET path`, its successful answer decoded.
    ///
    /// # Errors
    ///
    /// As [`Client::send`], and [`failure`] for an unsuccessful answer.
    pub fn get<T: DeserializeOwned>(&self, what: &str, path: &str) -> Result<T, RuntimeError> {
        decode(what, &ok(what, self.send(&self.request("GET", path))?)?)
    }

    /// `POST path`, with a JSON body when given; the answer when it is a success.
    ///
    /// # Errors
    ///
    /// As [`Client::get`].
    pub fn post(&self, what: &str, path: &str, body: Option<&Value>) -> Result<Response, RuntimeError> {
        let request = match body {
            Some(body) => self.request("POST", path).json(body),
            None => self.request("POST", path),
        };
        ok(what, self.send(&request)?)
    }
}

/// The answer if it is a success (304, "not modified", is one: Podman's answer to stopping
/// what is stopped), else the error it describes.
///
/// # Errors
///
/// [`failure`].
pub fn ok(what: &str, response: Response) -> Result<Response, RuntimeError> {
    if response.is_success() || response.status == 304 { Ok(response) } else { Err(failure(what, &response)) }
}

/// Podman's `cause` for an object that does not exist. It answers 404 for most, but 500 when
/// the object went away while the call was under way.
const GONE: [&str; 2] = ["no such pod", "no such container"];

/// A failed answer as the runtime error the agent reads: a missing object is
/// [`RuntimeError::NotFound`].
pub fn failure(what: &str, response: &Response) -> RuntimeError {
    let answer = serde_json::from_slice::<Value>(&response.body).unwrap_or_default();
    // Podman's errors carry `message`; a pod's start reports each container's in `Errs`.
    let errs = answer["Errs"].as_array().map(|errs| errs.iter().filter_map(|e| e.as_str()).collect::<Vec<_>>().join("; "));
    let message = answer["message"].as_str().map(str::to_owned).or(errs.filter(|e| !e.is_empty())).unwrap_or_else(|| response.text());
    if response.status == 404 || answer["cause"].as_str().is_some_and(|cause| GONE.contains(&cause)) {
        RuntimeError::NotFound(format!("{what}: {message}"))
    } else {
        RuntimeError::Call(format!("{what}: Podman answered {}: {message}", response.status))
    }
}

/// Decodes a JSON answer.
///
/// # Errors
///
/// [`RuntimeError::Call`] when the answer is not what the API documents.
pub fn decode<T: DeserializeOwned>(what: &str, response: &Response) -> Result<T, RuntimeError> {
    serde_json::from_slice(&response.body).map_err(|e| RuntimeError::Call(format!("{what}: Podman's answer does not decode: {e}")))
}
