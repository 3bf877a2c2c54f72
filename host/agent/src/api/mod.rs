//! The local, read-only API on a Unix socket: pods with their status in the Kubernetes wire
//! format, read from the status store and never from a runtime.
//!
//! Routes: the kubelet's `/pods` (a `PodList`) and `/healthz`; `/api/v1/pods`,
//! `/api/v1/namespaces/{namespace}/pods` and `/api/v1/namespaces/{namespace}/pods/{name}` as a
//! kube-apiserver answers them. Anything but `GET` is refused with a `Status` that names the
//! manifest to change, because a static pod is managed by its manifest.

use std::convert::Infallible;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ListMeta, Status, StatusDetails};
use serde_json::json;
use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::status::{PodView, StatusStore};

/// Why the API could not start.
#[derive(Debug, thiserror::Error)]
#[error("API socket {path}: {source}")]
pub struct ApiError {
    /// The socket path.
    pub path: PathBuf,
    /// The I/O error.
    pub source: std::io::Error,
}

/// Serves the API on the Unix socket at `path` (mode 0600) until `shutdown`, then removes it.
///
/// # Errors
///
/// [`ApiError`] when the socket cannot be created.
pub async fn serve(path: PathBuf, store: StatusStore, shutdown: CancellationToken) -> Result<(), ApiError> {
    let fail = |source| ApiError { path: path.clone(), source };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(fail(e)),
        _ => {}
    }
    let listener = UnixListener::bind(&path).map_err(fail)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(fail)?;
    info!(socket = %path.display(), "serving the API");
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    debug!("accepting an API connection: {e}");
                    continue;
                }
            },
        };
        let store = store.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let store = store.clone();
                async move { Ok::<_, Infallible>(route(&request, &store)) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await {
                debug!("API connection ended: {e}");
            }
        });
    }
    let _ = std::fs::remove_file(&path);
    Ok(())
}

fn route(request: &Request<Incoming>, store: &StatusStore) -> Response<Full<Bytes>> {
    let path = request.uri().path().trim_end_matches('/');
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let snapshot = store.snapshot();
    let pods = snapshot.values();
    let found = |namespace: &str, name: &str| pods.clone().find(|v| v.pod.namespace() == namespace && v.pod.name() == name).cloned();
    if request.method() != Method::GET {
        let pod = match segments[..] {
            ["api", "v1", "namespaces", namespace, "pods", name, ..] => found(namespace, name),
            _ => None,
        };
        return method_not_allowed(request.method(), pod.as_deref());
    }
    match segments[..] {
        ["healthz"] => Response::new(Full::new(Bytes::from_static(b"ok"))),
        ["pods"] | ["api", "v1", "pods"] => json_response(StatusCode::OK, &pod_list(pods.map(|v| v.to_pod()))),
        ["api", "v1", "namespaces", namespace, "pods"] => {
            json_response(StatusCode::OK, &pod_list(pods.filter(|v| v.pod.namespace() == namespace).map(|v| v.to_pod())))
        }
        ["api", "v1", "namespaces", namespace, "pods", name] => match found(namespace, name) {
            Some(view) => json_response(StatusCode::OK, &with_kind(view.to_pod())),
            None => status(StatusCode::NOT_FOUND, "NotFound", &format!("pods \"{name}\" not found"), Some(name)),
        },
        _ => status(StatusCode::NOT_FOUND, "NotFound", "the server could not find the requested resource", None),
    }
}

fn with_kind(pod: Pod) -> serde_json::Value {
    let mut value = serde_json::to_value(pod).expect("a pod always serializes");
    value["apiVersion"] = json!("v1");
    value["kind"] = json!("Pod");
    value
}

fn pod_list(pods: impl Iterator<Item = Pod>) -> serde_json::Value {
    json!({
        "apiVersion": "v1",
        "kind": "PodList",
        "metadata": ListMeta::default(),
        "items": pods.map(with_kind).collect::<Vec<_>>(),
    })
}

fn method_not_allowed(method: &Method, pod: Option<&PodView>) -> Response<Full<Bytes>> {
    let message = match pod {
        Some(view) => format!(
            "{method} is not allowed: pod {} is a static pod managed by its manifest {} ({}); change or remove the manifest instead",
            view.pod.full_name(),
            view.pod.origin.uri,
            view.pod.origin.kind
        ),
        None => format!("{method} is not allowed: static pods are managed by their manifests; change or remove the manifest instead"),
    };
    status(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", &message, pod.map(|v| v.pod.name()))
}

fn status(code: StatusCode, reason: &str, message: &str, name: Option<&str>) -> Response<Full<Bytes>> {
    let body = Status {
        code: Some(i32::from(code.as_u16())),
        message: Some(message.to_owned()),
        reason: Some(reason.to_owned()),
        status: Some("Failure".into()),
        details: name.map(|n| StatusDetails { name: Some(n.to_owned()), kind: Some("pods".into()), ..StatusDetails::default() }),
        ..Status::default()
    };
    let mut value = serde_json::to_value(body).expect("a status always serializes");
    value["apiVersion"] = json!("v1");
    value["kind"] = json!("Status");
    json_response(code, &value)
}

fn json_response(code: StatusCode, body: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(serde_json::to_vec(body).expect("JSON always serializes"))));
    *response.status_mut() = code;
    response.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
    response
}
