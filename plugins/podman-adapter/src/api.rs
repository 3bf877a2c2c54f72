//! Podman's REST API (the libpod endpoints), as far as the adapter uses it.

use serde::de::DeserializeOwned;
use staticlet_runtime_sdk::RuntimeError;
use staticlet_runtime_sdk::http::{self, Response};

/// A Podman service.
#[derive(Debug, Clone)]
pub struct Client {
    endpoint: String,
    /// `<endpoint>/<apiVersion>/libpod`: Podman answers 404 to unversioned paths.
    base: String,
}

impl Client {
    /// The service at `endpoint` (`http://127.0.0.1:8888`), spoken to in `api_version`.
    pub fn new(endpoint: &str, api_version: &str) -> Client {
        let endpoint = endpoint.trim_end_matches('/').to_owned();
        let base = format!("{endpoint}/{}/libpod", api_version.trim_matches('/'));
        Client { endpoint, base }
    }

    /// Sends one request to `path` (below `/libpod`).
    ///
    /// # Errors
    ///
    /// [`RuntimeError::Unavailable`] naming the endpoint when no answer came.
    pub fn send(&self, method: &str, path: &str, body: Option<&serde_json::Value>) -> Result<Response, RuntimeError> {
        let body = body.map(|b| b.to_string().into_bytes());
        http::send(method, &format!("{}{path}", self.base), body.as_deref())
            .map_err(|e| RuntimeError::Unavailable(format!("Podman at {}: {e}", self.endpoint)))
    }

    /// `GET path`, its 2xx answer decoded.
    ///
    /// # Errors
    ///
    /// As [`Client::send`], and [`failure`] for any other status.
    pub fn get<T: DeserializeOwned>(&self, what: &str, path: &str) -> Result<T, RuntimeError> {
        let response = self.send("GET", path, None)?;
        decode(what, &ok(what, response)?)
    }
}

/// The answer if it is a success, else the error it describes.
///
/// # Errors
///
/// [`failure`].
pub fn ok(what: &str, response: Response) -> Result<Response, RuntimeError> {
    if (200..300).contains(&response.status) || response.status == 304 { Ok(response) } else { Err(failure(what, &response)) }
}

/// A failed answer as the runtime error the agent reads: 404 is [`RuntimeError::NotFound`].
pub fn failure(what: &str, response: &Response) -> RuntimeError {
    // Podman's errors carry `message`; a pod's start reports each container's in `Errs`.
    let message = serde_json::from_slice::<serde_json::Value>(&response.body)
        .ok()
        .and_then(|v| {
            let errs = v["Errs"].as_array().map(|errs| errs.iter().filter_map(|e| e.as_str()).collect::<Vec<_>>().join("; "));
            v["message"].as_str().map(str::to_owned).or(errs.filter(|e| !e.is_empty()))
        })
        .unwrap_or_else(|| response.text());
    match response.status {
        404 => RuntimeError::NotFound(format!("{what}: {message}")),
        status => RuntimeError::Call(format!("{what}: Podman answered {status}: {message}")),
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
