//! The local API, in the Kubernetes wire format, read from the status store and the event
//! recorder (and, for logs, the runtime): enough of a kube-apiserver that `kubectl --server`
//! works against it, plus the kubelet's `/pods`, `/healthz`, `/readyz` and `/metrics`.
//!
//! It listens on a Unix socket (mode 0600) and, when asked, on a TCP port. Both are read-only
//! for pods: a static pod is managed by its manifest, so every write answers 405 with a
//! `Status` naming the manifest to change. The actions are `staticlet restart pod`, accepted
//! only on the socket, where the file mode keeps it to the socket's owner, and the streaming
//! verbs, which need the agent's bearer token.
//!
//! Routes:
//! - discovery: `/api`, `/api/v1`, `/apis`, `/version`;
//! - `/api/v1/pods`, `/api/v1/namespaces/{ns}/pods` (list and `?watch=1`, `labelSelector`,
//!   `fieldSelector`, Table when the `Accept` header asks `as=Table`), `.../pods/{name}`,
//!   `.../pods/{name}/log`;
//! - `/api/v1/events`, `/api/v1/namespaces/{ns}/events`: what `kubectl describe` shows;
//! - `.../pods/{name}/exec`, `attach` and `portforward` (WebSocket or SPDY upgrades), which take
//!   the bearer token of [`credential`];
//! - `/staticlet/v1/plugins`, and `POST /staticlet/v1/namespaces/{ns}/pods/{name}/restart`.

pub mod credential;
pub mod healthz;
pub mod kubelet;
mod logs;
pub mod selector;
mod stream;
pub mod table;
mod watch;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{Event, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Status, StatusDetails};
use serde_json::{Value, json};
use staticlet_plugin::Health;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use self::selector::Selector;
use self::table::IncludeObject;
use crate::events::Recorder;
use crate::metrics::{Format, Metrics};
use crate::requests::RestartRequest;
use crate::runtimes::Runtimes;
use crate::status::{PluginRegistry, StatusStore, StoredPod};

/// A response body: whole, or streamed (logs, watches).
pub type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// The Kubernetes version whose API this one mirrors.
const KUBERNETES_MAJOR: &str = "1";
const KUBERNETES_MINOR: &str = "34";

/// Why the API could not start.
#[derive(Debug, thiserror::Error)]
#[error("API listener {listener}: {source}")]
pub struct ApiError {
    /// The socket path or address.
    pub listener: String,
    /// The I/O error.
    pub source: std::io::Error,
}

/// Everything the API reads from.
#[derive(Clone)]
pub struct Api {
    /// Pods and their statuses.
    pub status: StatusStore,
    /// Pod events.
    pub events: Recorder,
    /// The metrics `/metrics` serves.
    pub metrics: Metrics,
    /// The runtimes, for container logs.
    pub runtimes: Runtimes,
    /// The loaded plugins.
    pub plugins: PluginRegistry,
    /// Where restart requests go (the pod controller).
    pub restarts: mpsc::UnboundedSender<RestartRequest>,
    /// Ends watches and log follows when the agent stops.
    pub shutdown: CancellationToken,
    /// The token exec, attach and port-forward need.
    pub credential: credential::Credential,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api").field("runtimes", &self.runtimes).finish_non_exhaustive()
    }
}

/// Where a request came in, which decides what it may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// The Unix socket: its owner may also restart pods.
    Socket,
    /// The TCP read-only port, from a client on this host or not.
    ReadOnlyPort {
        /// The client connected from a loopback address.
        loopback: bool,
    },
    /// The kubelet port, whose gate has authenticated and authorized the request already.
    KubeletPort,
}

/// Serves the API on the Unix socket at `path` (mode 0600) until the API's shutdown, then
/// removes the socket.
///
/// # Errors
///
/// [`ApiError`] when the socket cannot be created.
pub async fn serve_socket(path: PathBuf, api: Arc<Api>) -> Result<(), ApiError> {
    let fail = |source| ApiError { listener: path.display().to_string(), source };
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
        tokio::select! {
            _ = api.shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => serve_connection(stream, api.clone(), Access::Socket),
                Err(e) => debug!("accepting an API connection: {e}"),
            },
        }
    }
    let _ = std::fs::remove_file(&path);
    Ok(())
}

/// Serves the read-only API over plain HTTP at `address` until the API's shutdown.
///
/// # Errors
///
/// [`ApiError`] when the port cannot be bound.
pub async fn serve_read_only_port(address: SocketAddr, api: Arc<Api>) -> Result<(), ApiError> {
    let listener = TcpListener::bind(address).await.map_err(|source| ApiError { listener: address.to_string(), source })?;
    info!(address = %address, "serving the read-only API over HTTP");
    loop {
        tokio::select! {
            _ = api.shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => serve_connection(stream, api.clone(), Access::ReadOnlyPort { loopback: peer.ip().is_loopback() }),
                Err(e) => debug!("accepting an API connection: {e}"),
            },
        }
    }
    Ok(())
}

fn serve_connection<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(stream: S, api: Arc<Api>, access: Access) {
    tokio::spawn(async move {
        let service = hyper::service::service_fn(move |request| {
            let api = api.clone();
            async move { Ok::<_, Infallible>(route(request, &api, access).await) }
        });
        if let Err(e) = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).with_upgrades().await {
            debug!("API connection ended: {e}");
        }
    });
}

/// A request's query parameters and how it wants its answer.
struct Query {
    params: BTreeMap<String, String>,
    table: bool,
}

impl Query {
    fn of(request: &Request<Incoming>) -> Query {
        let params = form_urlencoded::parse(request.uri().query().unwrap_or_default().as_bytes()).into_owned().collect();
        let accept = request.headers().get(hyper::header::ACCEPT).and_then(|a| a.to_str().ok()).unwrap_or_default();
        // kubectl lists the Table media type first and plain JSON as its fallback.
        let table = accept.split(',').next().is_some_and(|first| first.contains("as=Table"));
        Query { params, table }
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.params.get(key).map(String::as_str)
    }

    fn flag(&self, key: &str) -> bool {
        self.get(key).is_some_and(|v| v == "true" || v == "1")
    }

    fn number(&self, key: &str) -> Result<Option<u64>, Box<Response<Body>>> {
        self.get(key)
            .map(|v| v.parse::<u64>().map_err(|_| Box::new(bad_request(&format!("{key}: {v:?} is not a whole number")))))
            .transpose()
    }
}

async fn route(request: Request<Incoming>, api: &Api, access: Access) -> Response<Body> {
    let path = request.uri().path().trim_end_matches('/').to_owned();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let query = Query::of(&request);
    let method = request.method().clone();
    if method == Method::POST
        && let ["staticlet", "v1", "namespaces", namespace, "pods", name, "restart"] = segments[..]
    {
        return restart(api, access, namespace, name).await;
    }
    if (method == Method::GET || method == Method::POST)
        && let ["api", "v1", "namespaces", namespace, "pods", name, verb @ ("exec" | "attach" | "portforward")] = segments[..]
    {
        return streaming(api, access, request, (namespace, name), verb).await;
    }
    if method != Method::GET && method != Method::HEAD {
        let pods = api.status.snapshot();
        let pod = match segments[..] {
            ["api", "v1", "namespaces", namespace, "pods", name, ..] => pods.find(namespace, name),
            _ => None,
        };
        return method_not_allowed(&method, pod);
    }
    let result = match segments[..] {
        ["healthz" | "livez"] => Ok(healthz::answer(None, query.get("verbose").is_some(), &api.status.sync_loop)),
        ["healthz" | "livez", check] => Ok(healthz::answer(Some(check), false, &api.status.sync_loop)),
        ["readyz"] => Ok(match api.status.not_ready() {
            None => text(StatusCode::OK, "ok"),
            Some(why) => text(StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}")),
        }),
        ["metrics"] => Ok(metrics(api, request.headers().get(hyper::header::ACCEPT).and_then(|a| a.to_str().ok()))),
        ["version"] => Ok(json_response(StatusCode::OK, &version())),
        ["api"] => Ok(json_response(StatusCode::OK, &json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}))),
        ["apis"] => Ok(json_response(StatusCode::OK, &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": []}))),
        ["api", "v1"] => Ok(json_response(StatusCode::OK, &resources())),
        ["pods"] => Ok(json_response(StatusCode::OK, &pod_list(&api.status.snapshot().by_uid.values().collect::<Vec<_>>(), None))),
        ["api", "v1", "pods"] => pods(api, None, &query),
        ["api", "v1", "namespaces", namespace, "pods"] => pods(api, Some(namespace), &query),
        ["api", "v1", "namespaces", namespace, "pods", name] => pod(api, namespace, name, &query),
        ["api", "v1", "namespaces", namespace, "pods", name, "log"] => logs::serve(api, namespace, name, &query).await,
        ["api", "v1", "events"] => events(api, None, &query),
        ["api", "v1", "namespaces", namespace, "events"] => events(api, Some(namespace), &query),
        ["staticlet", "v1", "plugins"] => Ok(plugins(api)),
        _ => Err(Box::new(status(StatusCode::NOT_FOUND, "NotFound", "the server could not find the requested resource", None))),
    };
    result.unwrap_or_else(|response| *response)
}

/// The pods one request selects.
#[derive(Debug, Clone)]
pub(crate) struct PodFilter {
    namespace: Option<String>,
    labels: Selector,
    fields: Selector,
}

impl PodFilter {
    fn of(namespace: Option<&str>, query: &Query) -> Result<PodFilter, Box<Response<Body>>> {
        let labels = Selector::labels(query.get("labelSelector").unwrap_or_default()).map_err(|e| Box::new(bad_request(&e.to_string())))?;
        let fields = Selector::fields(query.get("fieldSelector").unwrap_or_default()).map_err(|e| Box::new(bad_request(&e.to_string())))?;
        Ok(PodFilter { namespace: namespace.map(str::to_owned), labels, fields })
    }

    fn matches(&self, stored: &StoredPod) -> bool {
        let pod = &stored.view.pod;
        if self.namespace.as_deref().is_some_and(|ns| ns != pod.namespace()) {
            return false;
        }
        let no_labels = BTreeMap::new();
        if !self.labels.matches(pod.pod.metadata.labels.as_ref().unwrap_or(&no_labels)) {
            return false;
        }
        let spec = pod.pod.spec.as_ref();
        let status = &stored.view.status;
        self.fields.matches(&selectable([
            ("metadata.name", Some(pod.name().to_owned())),
            ("metadata.namespace", Some(pod.namespace().to_owned())),
            ("spec.nodeName", spec.and_then(|s| s.node_name.clone())),
            ("spec.restartPolicy", spec.and_then(|s| s.restart_policy.clone())),
            ("spec.schedulerName", spec.and_then(|s| s.scheduler_name.clone())),
            ("status.phase", status.phase.clone()),
            ("status.podIP", status.pod_ip.clone()),
        ]))
    }
}

/// An object's selectable fields for a field selector; an unset field selects as empty, as
/// the API server's do.
fn selectable<const N: usize>(fields: [(&str, Option<String>); N]) -> BTreeMap<String, String> {
    fields.into_iter().map(|(k, v)| (k.to_owned(), v.unwrap_or_default())).collect()
}

fn pods(api: &Api, namespace: Option<&str>, query: &Query) -> Result<Response<Body>, Box<Response<Body>>> {
    let filter = PodFilter::of(namespace, query)?;
    if query.flag("watch") {
        return watch::serve(api, filter, query);
    }
    let snapshot = api.status.snapshot();
    let selected: Vec<&StoredPod> = snapshot.by_uid.values().filter(|s| filter.matches(s)).collect();
    if query.table {
        let pods: Vec<Pod> = selected.iter().map(|s| s.to_pod()).collect();
        let include = IncludeObject::from_query(query.get("includeObject"));
        return Ok(json_response(StatusCode::OK, &table::pod_table(&pods, snapshot.revision, include, SystemTime::now())));
    }
    Ok(json_response(StatusCode::OK, &pod_list(&selected, Some(snapshot.revision))))
}

fn pod(api: &Api, namespace: &str, name: &str, query: &Query) -> Result<Response<Body>, Box<Response<Body>>> {
    let snapshot = api.status.snapshot();
    let stored = snapshot.find(namespace, name).ok_or_else(|| Box::new(pod_not_found(name)))?;
    if query.table {
        let include = IncludeObject::from_query(query.get("includeObject"));
        return Ok(json_response(StatusCode::OK, &table::pod_table(&[stored.to_pod()], stored.revision, include, SystemTime::now())));
    }
    Ok(json_response(StatusCode::OK, &with_kind(stored.to_pod())))
}

fn events(api: &Api, namespace: Option<&str>, query: &Query) -> Result<Response<Body>, Box<Response<Body>>> {
    let fields = Selector::fields(query.get("fieldSelector").unwrap_or_default()).map_err(|e| Box::new(bad_request(&e.to_string())))?;
    let selected: Vec<Event> = api
        .events
        .events(namespace)
        .into_iter()
        .filter(|e| {
            let o = &e.involved_object;
            fields.matches(&selectable([
                ("involvedObject.kind", o.kind.clone()),
                ("involvedObject.name", o.name.clone()),
                ("involvedObject.namespace", o.namespace.clone()),
                ("involvedObject.uid", o.uid.clone()),
                ("involvedObject.fieldPath", o.field_path.clone()),
                ("metadata.namespace", e.metadata.namespace.clone()),
                ("reason", e.reason.clone()),
                ("type", e.type_.clone()),
            ]))
        })
        .collect();
    if query.table {
        return Ok(json_response(StatusCode::OK, &event_table(&selected)));
    }
    let items: Vec<Value> = selected.into_iter().map(|e| with_kind_of(e, "Event")).collect();
    Ok(json_response(StatusCode::OK, &json!({"apiVersion": "v1", "kind": "EventList", "metadata": {}, "items": items})))
}

fn event_table(events: &[Event]) -> Value {
    let now = SystemTime::now();
    let column = |name: &str| json!({"name": name, "type": "string", "format": "", "description": "", "priority": 0});
    let rows: Vec<Value> = events
        .iter()
        .map(|e| {
            let last = e
                .last_timestamp
                .as_ref()
                .map_or_else(String::new, |t| table::human_duration(now.duration_since(table::system_time(t.0)).unwrap_or_default()));
            let o = &e.involved_object;
            json!({
                "cells": [last, e.type_, e.reason, format!("pod/{}", o.name.as_deref().unwrap_or_default()), e.message],
                "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": e.metadata},
            })
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {},
        "columnDefinitions": [column("Last Seen"), column("Type"), column("Reason"), column("Object"), column("Message")],
        "rows": rows,
    })
}

fn plugins(api: &Api) -> Response<Body> {
    let items: Vec<Value> = api
        .plugins
        .infos()
        .into_iter()
        .map(|info| {
            let (health, message) = match info.health {
                Health::Ready => ("Ready", None),
                Health::Degraded(m) => ("Degraded", Some(m)),
                Health::Failed(m) => ("Failed", Some(m)),
            };
            json!({
                "name": info.name, "kind": info.kind.world(), "code": info.code, "witVersion": info.wit_version,
                "digest": info.digest, "image": info.image, "health": health, "message": message, "calls": info.calls, "failedCalls": info.failed_calls,
            })
        })
        .collect();
    json_response(StatusCode::OK, &json!({"kind": "PluginList", "apiVersion": "staticlet.dev/v1", "items": items}))
}

/// exec, attach and port-forward: writes to the host, so they take the token whatever the
/// listener, and never cross the network in clear.
async fn streaming(api: &Api, access: Access, request: Request<Incoming>, (namespace, name): (&str, &str), verb: &str) -> Response<Body> {
    if access != Access::KubeletPort && !api.credential.accepts(request.headers()) {
        return status(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized", None);
    }
    if access == (Access::ReadOnlyPort { loopback: false }) {
        let message = format!(
            "{verb} is served on the plain-HTTP port only to clients on this host, since its token would cross the network in clear; use the kubelet port (--port, TLS) from elsewhere"
        );
        return status(StatusCode::FORBIDDEN, "Forbidden", &message, Some(name));
    }
    let result = match verb {
        "exec" => stream::remote_command(api, request, stream::Verb::Exec, (namespace, name, None)).await,
        "attach" => stream::remote_command(api, request, stream::Verb::Attach, (namespace, name, None)).await,
        _ => stream::port_forward(api, request, namespace, name).await,
    };
    result.unwrap_or_else(|response| *response)
}

async fn restart(api: &Api, access: Access, namespace: &str, name: &str) -> Response<Body> {
    if access != Access::Socket {
        return status(StatusCode::FORBIDDEN, "Forbidden", "pods are restarted only through the agent's local socket", Some(name));
    }
    let Some(uid) = api.status.snapshot().find(namespace, name).map(|s| s.view.pod.uid.clone()) else {
        return pod_not_found(name);
    };
    let (accepted, answer) = oneshot::channel();
    if api.restarts.send(RestartRequest { uid, accepted }).is_err() {
        return status(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", "the agent is shutting down", Some(name));
    }
    match answer.await {
        Ok(Ok(())) => {
            let body = json!({"apiVersion": "v1", "kind": "Status", "status": "Success", "code": 200,
                "message": format!("pod {namespace}/{name} is restarting"), "details": {"name": name, "kind": "pods"}});
            json_response(StatusCode::OK, &body)
        }
        Ok(Err(why)) => status(StatusCode::CONFLICT, "Conflict", &format!("pod {namespace}/{name} cannot be restarted: {why}"), Some(name)),
        Err(_) => status(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", "the agent is shutting down", Some(name)),
    }
}

/// The metrics, in the format the scraper's `Accept` header asks for.
fn metrics(api: &Api, accept: Option<&str>) -> Response<Body> {
    let format = Format::negotiate(accept);
    let mut response = Response::new(full(api.metrics.encode(&api.status.snapshot(), format).into()));
    response.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static(format.content_type()));
    response
}

fn version() -> Value {
    json!({
        "major": KUBERNETES_MAJOR,
        "minor": KUBERNETES_MINOR,
        "gitVersion": format!("v{KUBERNETES_MAJOR}.{KUBERNETES_MINOR}.0-staticlet.{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "",
        "buildDate": "",
        "goVersion": "",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, match std::env::consts::ARCH { "x86_64" => "amd64", "aarch64" => "arm64", other => other }),
    })
}

fn resources() -> Value {
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": "v1",
        "resources": [
            {"name": "pods", "singularName": "pod", "namespaced": true, "kind": "Pod", "verbs": ["get", "list", "watch"],
             "shortNames": ["po"], "categories": ["all"]},
            {"name": "pods/log", "singularName": "", "namespaced": true, "kind": "Pod", "verbs": ["get"]},
            {"name": "pods/exec", "singularName": "", "namespaced": true, "kind": "PodExecOptions", "verbs": ["create", "get"]},
            {"name": "pods/attach", "singularName": "", "namespaced": true, "kind": "PodAttachOptions", "verbs": ["create", "get"]},
            {"name": "pods/portforward", "singularName": "", "namespaced": true, "kind": "PodPortForwardOptions", "verbs": ["create", "get"]},
            {"name": "events", "singularName": "event", "namespaced": true, "kind": "Event", "verbs": ["get", "list"], "shortNames": ["ev"]},
        ],
    })
}

fn with_kind(pod: Pod) -> Value {
    with_kind_of(pod, "Pod")
}

fn with_kind_of(object: impl serde::Serialize, kind: &str) -> Value {
    let mut value = serde_json::to_value(object).expect("API objects always serialize");
    value["apiVersion"] = json!("v1");
    value["kind"] = json!(kind);
    value
}

fn pod_list(pods: &[&StoredPod], revision: Option<u64>) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "PodList",
        "metadata": {"resourceVersion": revision.map(|r| r.to_string())},
        "items": pods.iter().map(|s| with_kind(s.to_pod())).collect::<Vec<_>>(),
    })
}

fn method_not_allowed(method: &Method, pod: Option<&StoredPod>) -> Response<Body> {
    let message = match pod {
        Some(stored) => {
            let pod = &stored.view.pod;
            format!(
                "{method} is not allowed: pod {} is a static pod managed by its manifest {} ({}); change or remove the manifest instead (the pod keeps running)",
                pod.full_name(),
                pod.origin.uri,
                pod.origin.kind
            )
        }
        None => format!("{method} is not allowed: static pods are managed by their manifests; change or remove the manifest instead"),
    };
    status(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", &message, pod.map(|s| s.view.pod.name()))
}

/// The annotation that names the container `kubectl logs` and `exec` pick by default.
const DEFAULT_CONTAINER: &str = "kubectl.kubernetes.io/default-container";

/// The container a request names, or the pod's default one, as the API server picks it.
fn pick_container(pod: &staticlet_model::StaticPod, requested: Option<&str>) -> Result<String, Box<Response<Body>>> {
    let name = pod.name();
    let spec = pod.pod.spec.clone().unwrap_or_default();
    let names: Vec<&str> = spec.init_containers.iter().flatten().chain(&spec.containers).map(|c| c.name.as_str()).collect();
    match requested.filter(|c| !c.is_empty()) {
        Some(c) if names.contains(&c) => Ok(c.to_owned()),
        Some(c) => Err(Box::new(bad_request(&format!("container {c} is not valid for pod {name}")))),
        None => {
            let default = pod.pod.metadata.annotations.as_ref().and_then(|a| a.get(DEFAULT_CONTAINER)).cloned();
            match (default, spec.containers.as_slice()) {
                (Some(d), _) if names.contains(&d.as_str()) => Ok(d),
                (_, [only]) => Ok(only.name.clone()),
                _ => {
                    let choices = spec.containers.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(" ");
                    Err(Box::new(bad_request(&format!("a container name must be specified for pod {name}, choose one of: [{choices}]"))))
                }
            }
        }
    }
}

/// A stored pod and the runtime its class runs on.
type PodOnRuntime = (StoredPod, Arc<dyn staticlet_runtime::Runtime>);

/// The pod a request names and the runtime its class runs on: what logs and the streaming verbs
/// start from.
fn pod_and_runtime(api: &Api, namespace: &str, name: &str) -> Result<PodOnRuntime, Box<Response<Body>>> {
    let stored = api.status.snapshot().find(namespace, name).cloned().ok_or_else(|| Box::new(pod_not_found(name)))?;
    let runtime = api
        .runtimes
        .for_pod(&stored.view.pod.pod)
        .ok_or_else(|| Box::new(unavailable("the pod's runtime class is not on this node")))?
        .clone();
    Ok((stored, runtime))
}

fn unavailable(message: &str) -> Response<Body> {
    status(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", &format!("the container runtime: {message}"), None)
}

fn pod_not_found(name: &str) -> Response<Body> {
    status(StatusCode::NOT_FOUND, "NotFound", &format!("pods \"{name}\" not found"), Some(name))
}

fn bad_request(message: &str) -> Response<Body> {
    status(StatusCode::BAD_REQUEST, "BadRequest", message, None)
}

fn status(code: StatusCode, reason: &str, message: &str, name: Option<&str>) -> Response<Body> {
    let body = Status {
        code: Some(i32::from(code.as_u16())),
        message: Some(message.to_owned()),
        reason: Some(reason.to_owned()),
        status: Some("Failure".into()),
        details: name.map(|n| StatusDetails { name: Some(n.to_owned()), kind: Some("pods".into()), ..StatusDetails::default() }),
        ..Status::default()
    };
    json_response(code, &with_kind_of(body, "Status"))
}

fn empty() -> Body {
    full(Bytes::new())
}

fn full(bytes: Bytes) -> Body {
    Full::new(bytes).map_err(|never: Infallible| match never {}).boxed_unsync()
}

fn text(code: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(full(body.into()));
    *response.status_mut() = code;
    response.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

fn json_response(code: StatusCode, body: &Value) -> Response<Body> {
    let mut response = Response::new(full(Bytes::from(serde_json::to_vec(body).expect("JSON always serializes"))));
    *response.status_mut() = code;
    response.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
    response
}
