//! The CLI's side of the local API: HTTP over the agent's Unix socket.

use std::path::PathBuf;

use anyhow::{Context as _, anyhow};
use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::UnixStream;

use crate::config::DEFAULT_API_SOCKET;

/// The media type kubectl asks for when it wants server-side printing.
pub const TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";
/// Plain JSON.
pub const JSON: &str = "application/json";

/// Where the agent's API is.
#[derive(Debug, Clone, Args)]
pub struct SocketArgs {
    /// The agent's API socket.
    #[arg(long, value_name = "PATH", env = "STATICLET_API_SOCKET", default_value = DEFAULT_API_SOCKET, global = true)]
    pub api_socket: PathBuf,
}

/// A client of one agent's socket.
#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
}

impl Client {
    /// A client of the socket `args` name.
    pub fn new(args: &SocketArgs) -> Client {
        Client { socket: args.api_socket.clone() }
    }

    /// Sends a request without a body; a reply that is not a success becomes an error with
    /// the agent's message, as kubectl words it.
    pub async fn send(&self, method: Method, path_and_query: &str, accept: &str) -> anyhow::Result<Response<Incoming>> {
        let stream = UnixStream::connect(&self.socket).await.with_context(|| {
            format!("cannot reach the agent at {} (is `staticlet run` running, and may you open its socket?)", self.socket.display())
        })?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.context("talking to the agent")?;
        tokio::spawn(connection);
        let request = Request::builder()
            .method(method)
            .uri(path_and_query)
            .header(hyper::header::HOST, "localhost")
            .header(hyper::header::ACCEPT, accept)
            .body(Empty::<Bytes>::new())
            .expect("a request from valid parts");
        let response = sender.send_request(request).await.context("talking to the agent")?;
        if response.status().is_success() {
            return Ok(response);
        }
        let code = response.status();
        let body = response.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let status: Value = serde_json::from_slice(&body).unwrap_or_default();
        match (status["reason"].as_str(), status["message"].as_str()) {
            (Some(reason), Some(message)) => Err(anyhow!("Error from server ({reason}): {message}")),
            _ => Err(anyhow!("Error from server ({code}): {}", String::from_utf8_lossy(&body).trim())),
        }
    }

    /// GETs a JSON document.
    pub async fn get_json(&self, path_and_query: &str, accept: &str) -> anyhow::Result<Value> {
        let response = self.send(Method::GET, path_and_query, accept).await?;
        let body = response.into_body().collect().await.context("reading the agent's answer")?.to_bytes();
        serde_json::from_slice(&body).context("the agent's answer is not JSON")
    }
}

/// Runs one request-shaped command on a small runtime of its own.
pub fn block_on<T>(future: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the async runtime")?.block_on(future)
}

/// Encodes a query parameter value.
pub fn encode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// The API path of one pod.
pub fn pod_path(namespace: &str, name: &str) -> String {
    format!("/api/v1/namespaces/{}/pods/{}", encode(namespace), encode(name))
}
