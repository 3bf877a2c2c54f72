//! A kube-apiserver **test double**, for the mirror-pod tests: no real kube-apiserver can be
//! installed on the CI machine (it is not packaged for Debian), so this stands in for one.
//!
//! It is a real HTTP server that speaks the Kubernetes wire protocol for the calls a node agent
//! makes — pods (list, watch with `fieldSelector=spec.nodeName=`, create, graceful and immediate
//! delete with uid preconditions, `pods/status` merge patches), nodes (get, create) and Leases in
//! `kube-node-lease` (get, create, update with resourceVersion checks) — with resourceVersions,
//! `Status` errors (`AlreadyExists`, `Conflict`, `NotFound`, `Forbidden`) and streamed watch
//! events as the real one sends them. Callers authenticate with bearer tokens: `node-<name>`
//! is the user `system:node:<name>`, `admin` is a cluster admin (what `kubectl delete` would
//! use). Node users are held to the NodeRestriction admission plugin's rules for mirror pods
//! (spec §8, §9): a pod a node creates must be bound to that node, carry
//! `kubernetes.io/config.mirror`, have exactly one ownerReference — its own Node, by name and uid,
//! as controller — and reference no ServiceAccount, Secret, ConfigMap, PersistentVolumeClaim,
//! ResourceClaim, ClusterTrustBundle or ephemeral container; a node may change only pods bound
//! to itself, only its own Node and only its own Lease. Anything else it answers 403, as
//! NodeRestriction does. It keeps everything in memory; `stop` drops the listener and every
//! open connection (the server is down: connections are refused), `resume` serves again on the
//! same port with the same objects. For the kubelet port it also answers TokenReview (for the
//! tokens a test accepts) and SubjectAccessReview (allowing the users a test allows).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{free_port, yaml};

/// A request the double served: who, how, where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    /// The authenticated user.
    pub user: String,
    /// The HTTP method.
    pub method: String,
    /// The path, without the query.
    pub path: String,
}

#[derive(Default)]
struct State {
    revision: u64,
    uids: u64,
    pods: BTreeMap<(String, String), Value>,
    nodes: BTreeMap<String, Value>,
    leases: BTreeMap<String, Value>,
    /// Every change to a pod: (revision, ADDED|MODIFIED|DELETED, the object then).
    pod_events: Vec<(u64, &'static str, Value)>,
    served: Vec<Served>,
    /// Tokens TokenReview vouches for: token → (user, groups).
    tokens: BTreeMap<String, (String, Vec<String>)>,
    /// Users every SubjectAccessReview allows.
    allowed: Vec<String>,
    /// Every SubjectAccessReview asked, as sent.
    access_reviews: Vec<Value>,
}

type Body = UnsyncBoxBody<Bytes, Infallible>;

struct Shared {
    state: Mutex<State>,
    revision: watch::Sender<u64>,
}

/// The API server double, serving on 127.0.0.1.
pub struct ApiServer {
    /// Its port.
    pub port: u16,
    shared: Arc<Shared>,
    server: Option<JoinHandle<()>>,
    dir: tempfile::TempDir,
}

impl ApiServer {
    /// Starts serving on a free port.
    pub async fn start() -> ApiServer {
        let shared = Arc::new(Shared { state: Mutex::default(), revision: watch::Sender::new(0) });
        let mut server = ApiServer { port: free_port(), shared, server: None, dir: tempfile::tempdir().unwrap() };
        server.resume().await;
        server
    }

    /// Serves again on the same port, with the same objects, after [`ApiServer::stop`].
    pub async fn resume(&mut self) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port)).await.expect("the API server double's port is free");
        let shared = self.shared.clone();
        self.server = Some(tokio::spawn(async move {
            // Connections live in this set: aborting the server drops it, closing them all.
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let shared = shared.clone();
                connections.spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let shared = shared.clone();
                        async move { Ok::<_, Infallible>(serve(&shared, request).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
                while connections.try_join_next().is_some() {}
            }
        }));
    }

    /// Takes the server down: the port refuses connections and open watches break.
    pub async fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
            let _ = server.await;
        }
    }

    /// The API server's URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Writes a kubeconfig in which `node` authenticates as `system:node:<node>`.
    pub fn kubeconfig(&self, node: &str) -> std::path::PathBuf {
        let path = self.dir.path().join(format!("{node}.kubeconfig"));
        let text = yaml!(
            r#"
            apiVersion: v1
            kind: Config
            clusters:
            - name: double
              cluster: {server: "{url}"}
            users:
            - name: {node}
              user: {token: node-{node}}
            contexts:
            - name: {node}
              context: {cluster: double, user: {node}}
            current-context: {node}
            "#,
            url = self.url(),
            node,
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Writes a kubeconfig for reading the cluster with `kubectl` (which sends no token over
    /// plain HTTP, and so reads anonymously).
    pub fn reader_kubeconfig(&self) -> std::path::PathBuf {
        let path = self.dir.path().join("reader.kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: double\n  cluster: {{server: \"{}\"}}\nusers:\n- name: reader\n  user: {{}}\ncontexts:\n- name: reader\n  context: {{cluster: double, user: reader}}\ncurrent-context: reader\n",
            self.url()
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    /// TokenReview vouches for `token` as `user` in `groups`.
    pub fn accept_token(&self, token: &str, user: &str, groups: &[&str]) {
        let groups = groups.iter().map(|g| (*g).to_owned()).collect();
        self.shared.state.lock().unwrap().tokens.insert(token.to_owned(), (user.to_owned(), groups));
    }

    /// SubjectAccessReview allows everything `user` asks.
    pub fn allow(&self, user: &str) {
        self.shared.state.lock().unwrap().allowed.push(user.to_owned());
    }

    /// The SubjectAccessReviews asked so far.
    pub fn access_reviews(&self) -> Vec<Value> {
        self.shared.state.lock().unwrap().access_reviews.clone()
    }

    /// Creates the Node `name` as an admin would; its uid.
    pub async fn add_node(&self, name: &str) -> String {
        let (code, node) =
            self.call("admin", "POST", "/api/v1/nodes", json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}})).await;
        assert_eq!(code, 201, "{node}");
        node["metadata"]["uid"].as_str().unwrap().to_owned()
    }

    /// The pods bound to `node`.
    pub fn pods(&self, node: &str) -> Vec<Value> {
        let state = self.shared.state.lock().unwrap();
        state.pods.values().filter(|p| p["spec"]["nodeName"] == node).cloned().collect()
    }

    /// The pod `namespace/name`.
    pub fn pod(&self, namespace: &str, name: &str) -> Option<Value> {
        self.shared.state.lock().unwrap().pods.get(&(namespace.to_owned(), name.to_owned())).cloned()
    }

    /// The Node `name`.
    pub fn node(&self, name: &str) -> Option<Value> {
        self.shared.state.lock().unwrap().nodes.get(name).cloned()
    }

    /// The Lease of `node` in `kube-node-lease`.
    pub fn lease(&self, node: &str) -> Option<Value> {
        self.shared.state.lock().unwrap().leases.get(node).cloned()
    }

    /// Every request served so far.
    pub fn served(&self) -> Vec<Served> {
        self.shared.state.lock().unwrap().served.clone()
    }

    /// Serves one call in-process as `user`, as if it came over HTTP: what tests do as the
    /// cluster's admin (`kubectl delete pod`, creating a Node or an unrelated pod).
    pub async fn call(&self, user: &str, method: &str, path: &str, body: Value) -> (u16, Value) {
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        let (code, value) = handle(&self.shared, &format!("system:{user}"), method, path, query, body.to_string().as_bytes());
        (code.as_u16(), value)
    }

    /// Sends a request over HTTP as `token` and returns the status code and JSON answer.
    pub async fn request(&self, token: &str, method: &str, path: &str, body: Value) -> (u16, Value) {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.unwrap();
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
        tokio::spawn(connection);
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost")
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        let code = response.status().as_u16();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

async fn serve(shared: &Arc<Shared>, request: Request<Incoming>) -> Response<Body> {
    let token =
        request.headers().get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).map(str::to_owned);
    let user = match token.as_deref() {
        Some("admin") => "system:admin".to_owned(),
        Some(t) if t.starts_with("node-") => format!("system:node:{}", &t[5..]),
        // No credentials at all: an anonymous reader, as with `--anonymous-auth` and a binding
        // that lets it read. It is how `kubectl` gets in, since it withholds tokens over plain
        // HTTP. Writes, and unknown tokens, are refused.
        None if request.method() == hyper::Method::GET => "system:anonymous".to_owned(),
        _ => return respond(StatusCode::UNAUTHORIZED, status(401, "Unauthorized", "Unauthorized")),
    };
    let method = request.method().to_string();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or_default().to_owned();
    if method == "GET" && path == "/api/v1/pods" && param(&query, "watch").as_deref() == Some("true") {
        shared.state.lock().unwrap().served.push(Served { user: user.clone(), method, path });
        return watch_pods(shared.clone(), &query);
    }
    let table = request.headers().get("accept").and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("as=Table"));
    let body = request.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let (code, value) = handle(shared, &user, &method, &path, &query, &body);
    if table && value["kind"] == "PodList" {
        return respond(code, pod_table(&value));
    }
    respond(code, value)
}

/// A pod list as the API server's table of pods, which `kubectl get pods` asks for: the
/// columns of its pod printer (`-o wide` shows those of priority 1 too).
fn pod_table(list: &Value) -> Value {
    let column =
        |name: &str, priority: u8| json!({"name": name, "type": "string", "format": "", "description": name, "priority": priority});
    let rows: Vec<Value> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|pod| {
            let statuses = pod["status"]["containerStatuses"].as_array().cloned().unwrap_or_default();
            let containers = pod["spec"]["containers"].as_array().map_or(0, Vec::len);
            let ready = statuses.iter().filter(|s| s["ready"] == true).count();
            let restarts: u64 = statuses.iter().filter_map(|s| s["restartCount"].as_u64()).sum();
            let none = || json!("<none>");
            json!({
                "cells": [
                    pod["metadata"]["name"],
                    format!("{ready}/{containers}"),
                    pod["status"]["phase"].as_str().unwrap_or("Pending"),
                    restarts.to_string(),
                    age(&pod["metadata"]["creationTimestamp"]),
                    pod["status"]["podIP"].as_str().map_or_else(none, |ip| json!(ip)),
                    pod["spec"]["nodeName"].as_str().map_or_else(none, |node| json!(node)),
                    none(),
                    none(),
                ],
                "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": {"name": pod["metadata"]["name"], "namespace": pod["metadata"]["namespace"]}},
            })
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": list["metadata"]["resourceVersion"]},
        "columnDefinitions": [
            column("Name", 0), column("Ready", 0), column("Status", 0), column("Restarts", 0), column("Age", 0),
            column("IP", 1), column("Node", 1), column("Nominated Node", 1), column("Readiness Gates", 1),
        ],
        "rows": rows,
    })
}

fn respond(code: StatusCode, value: Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(value.to_string())).boxed_unsync())
        .unwrap()
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": reason, "code": code})
}

fn param(query: &str, key: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == key).map(|(_, v)| v.into_owned())
}

/// `spec.nodeName=<node>`, the one field selector a node agent uses.
fn node_selector(query: &str) -> Result<Option<String>, Value> {
    match param(query, "fieldSelector") {
        None => Ok(None),
        Some(selector) => match selector.strip_prefix("spec.nodeName=") {
            Some(node) => Ok(Some(node.to_owned())),
            None => Err(status(400, "BadRequest", &format!("the double supports only spec.nodeName field selectors, not {selector:?}"))),
        },
    }
}

fn watch_pods(shared: Arc<Shared>, query: &str) -> Response<Body> {
    let node = match node_selector(query) {
        Ok(node) => node,
        Err(e) => return respond(StatusCode::BAD_REQUEST, e),
    };
    let from: u64 = param(query, "resourceVersion").and_then(|v| v.parse().ok()).unwrap_or(0);
    let timeout = Duration::from_secs(param(query, "timeoutSeconds").and_then(|v| v.parse().ok()).unwrap_or(300));
    let deadline = tokio::time::Instant::now() + timeout;
    let changes = shared.revision.subscribe();
    let stream = futures::stream::unfold((shared, changes, from), move |(shared, mut changes, mut seen)| {
        let node = node.clone();
        async move {
            loop {
                let lines: Vec<String> = {
                    let state = shared.state.lock().unwrap();
                    let fresh: Vec<_> = state
                        .pod_events
                        .iter()
                        .filter(|(rv, _, pod)| *rv > seen && node.as_ref().is_none_or(|n| pod["spec"]["nodeName"] == *n))
                        .collect();
                    seen = state.revision;
                    fresh.iter().map(|(_, kind, pod)| format!("{}\n", json!({"type": kind, "object": pod}))).collect()
                };
                if !lines.is_empty() {
                    return Some((Ok::<_, Infallible>(Frame::data(Bytes::from(lines.concat()))), (shared, changes, seen)));
                }
                tokio::select! {
                    changed = changes.changed() => if changed.is_err() { return None },
                    _ = tokio::time::sleep_until(deadline) => return None,
                }
            }
        }
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(StreamBody::new(stream).boxed_unsync())
        .unwrap()
}

fn handle(shared: &Shared, user: &str, method: &str, path: &str, query: &str, body: &[u8]) -> (StatusCode, Value) {
    let mut state = shared.state.lock().unwrap();
    state.served.push(Served { user: user.to_owned(), method: method.to_owned(), path: path.to_owned() });
    let node_user = user.strip_prefix("system:node:").map(str::to_owned);
    let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let before = state.revision;
    let result = match (method, &segments[..]) {
        // Discovery, as far as `kubectl get pods` needs it.
        ("GET", ["api"]) => Ok((StatusCode::OK, json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}))),
        ("GET", ["apis"]) => Ok((StatusCode::OK, json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": []}))),
        ("GET", ["api", "v1"]) => Ok((
            StatusCode::OK,
            json!({"kind": "APIResourceList", "groupVersion": "v1", "resources": [
                {"name": "pods", "singularName": "pod", "namespaced": true, "kind": "Pod", "verbs": ["create", "delete", "get", "list", "watch"], "shortNames": ["po"]},
                {"name": "nodes", "singularName": "node", "namespaced": false, "kind": "Node", "verbs": ["create", "get", "list"], "shortNames": ["no"]},
            ]}),
        )),
        ("GET", ["api", "v1", "pods"]) => list_pods(&state, query),
        ("POST", ["api", "v1", "namespaces", ns, "pods"]) => create_pod(&mut state, node_user.as_deref(), ns, body),
        ("GET", ["api", "v1", "namespaces", ns, "pods", name]) => {
            state.pods.get(&(ns.to_string(), name.to_string())).cloned().map(|p| (StatusCode::OK, p)).ok_or_else(|| not_found("pods", name))
        }
        ("DELETE", ["api", "v1", "namespaces", ns, "pods", name]) => delete_pod(&mut state, node_user.as_deref(), ns, name, &body),
        ("PATCH", ["api", "v1", "namespaces", ns, "pods", name, "status"]) => {
            patch_pod_status(&mut state, node_user.as_deref(), ns, name, body)
        }
        ("GET", ["api", "v1", "nodes", name]) => {
            state.nodes.get(*name).cloned().map(|n| (StatusCode::OK, n)).ok_or_else(|| not_found("nodes", name))
        }
        ("POST", ["api", "v1", "nodes"]) => create_node(&mut state, node_user.as_deref(), body),
        ("GET", ["apis", "coordination.k8s.io", "v1", "namespaces", "kube-node-lease", "leases", name]) => {
            state.leases.get(*name).cloned().map(|l| (StatusCode::OK, l)).ok_or_else(|| not_found("leases", name))
        }
        ("POST", ["apis", "coordination.k8s.io", "v1", "namespaces", "kube-node-lease", "leases"]) => {
            let name = body["metadata"]["name"].as_str().unwrap_or_default().to_owned();
            write_lease(&mut state, node_user.as_deref(), &name, body, true)
        }
        ("PUT", ["apis", "coordination.k8s.io", "v1", "namespaces", "kube-node-lease", "leases", name]) => {
            write_lease(&mut state, node_user.as_deref(), name, body, false)
        }
        ("POST", ["apis", "authentication.k8s.io", "v1", "tokenreviews"]) => {
            let token = body["spec"]["token"].as_str().unwrap_or_default();
            let review = match state.tokens.get(token) {
                Some((name, groups)) => json!({"authenticated": true, "user": {"username": name, "groups": groups}}),
                None => json!({"authenticated": false, "error": "token not found"}),
            };
            Ok((
                StatusCode::CREATED,
                json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": body["spec"], "status": review}),
            ))
        }
        ("POST", ["apis", "authorization.k8s.io", "v1", "subjectaccessreviews"]) => {
            let allowed = body["spec"]["user"].as_str().is_some_and(|user| state.allowed.iter().any(|a| a == user));
            state.access_reviews.push(body.clone());
            Ok((
                StatusCode::CREATED,
                json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": body["spec"], "status": {"allowed": allowed}}),
            ))
        }
        _ => Err(status(404, "NotFound", &format!("the double does not serve {method} {path}"))),
    };
    if state.revision != before {
        shared.revision.send_replace(state.revision);
    }
    match result {
        Ok(ok) => ok,
        Err(failure) => (StatusCode::from_u16(failure["code"].as_u64().unwrap_or(500) as u16).unwrap(), failure),
    }
}

type Answer = Result<(StatusCode, Value), Value>;

fn not_found(resource: &str, name: &str) -> Value {
    status(404, "NotFound", &format!("{resource} {name:?} not found"))
}

fn forbidden(node: &str, why: &str) -> Value {
    status(403, "Forbidden", &format!("pod is forbidden: node {node:?} {why}"))
}

impl State {
    fn stamp(&mut self, object: &mut Value, create: bool) {
        self.revision += 1;
        object["metadata"]["resourceVersion"] = json!(self.revision.to_string());
        if create {
            self.uids += 1;
            object["metadata"]["uid"] = json!(format!("00000000-0000-4000-8000-{:012}", self.uids));
            object["metadata"]["creationTimestamp"] = json!(now());
        }
    }

    fn pod_event(&mut self, kind: &'static str, pod: &Value) {
        let revision = self.revision;
        self.pod_events.push((revision, kind, pod.clone()));
    }
}

/// How long ago `timestamp` was, as the API server's printers write it (`7s`, `3m12s`, `5h`).
fn age(timestamp: &Value) -> String {
    let Some(created) = timestamp.as_str().and_then(|t| t.parse::<k8s_openapi::jiff::Timestamp>().ok()) else { return "<unknown>".into() };
    let seconds = k8s_openapi::jiff::Timestamp::now().duration_since(created).as_secs().max(0);
    match seconds {
        0..120 => format!("{seconds}s"),
        120..600 => format!("{}m{}s", seconds / 60, seconds % 60),
        600..10_800 => format!("{}m", seconds / 60),
        _ => format!("{}h", seconds / 3600),
    }
}

fn now() -> String {
    k8s_openapi::jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn list_pods(state: &State, query: &str) -> Answer {
    let node = node_selector(query)?;
    let items: Vec<&Value> = state.pods.values().filter(|p| node.as_ref().is_none_or(|n| p["spec"]["nodeName"] == *n)).collect();
    Ok((
        StatusCode::OK,
        json!({"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": state.revision.to_string()}, "items": items}),
    ))
}

/// NodeRestriction's rules for a pod a node creates.
fn admit_mirror_pod(state: &State, node: &str, pod: &Value) -> Result<(), Value> {
    let deny = |why: &str| Err(forbidden(node, why));
    if pod["metadata"]["annotations"]["kubernetes.io/config.mirror"].as_str().is_none() {
        return deny("can only create mirror pods (the pod has no kubernetes.io/config.mirror annotation)");
    }
    if pod["spec"]["nodeName"] != node {
        return deny("can only create pods with spec.nodeName set to itself");
    }
    let owners = pod["metadata"]["ownerReferences"].as_array().cloned().unwrap_or_default();
    let [owner] = &owners[..] else { return deny("can only create pods with a single owner reference set to itself") };
    let node_uid = state.nodes.get(node).map(|n| n["metadata"]["uid"].clone()).unwrap_or(Value::Null);
    if owner["apiVersion"] != "v1" || owner["kind"] != "Node" || owner["name"] != node {
        return deny("can only create pods with an owner reference set to itself");
    }
    if owner["uid"] != node_uid {
        return deny(&format!("can only create pods with an owner reference set to its own Node's uid {node_uid}"));
    }
    if owner["controller"] != true {
        return deny("can only create pods with a controller owner reference set to itself");
    }
    let spec = &pod["spec"];
    if spec.get("serviceAccountName").is_some() || spec.get("serviceAccount").is_some() {
        return deny("can not create pods that reference serviceaccounts");
    }
    if spec.get("ephemeralContainers").is_some() {
        return deny("can not create pods with ephemeral containers");
    }
    if spec.get("resourceClaims").is_some() {
        return deny("can not create pods that reference resourceclaims");
    }
    if spec.get("imagePullSecrets").is_some() {
        return deny("can not create pods that reference secrets");
    }
    for volume in spec["volumes"].as_array().into_iter().flatten() {
        for (kind, what) in [
            ("secret", "secrets"),
            ("configMap", "configmaps"),
            ("persistentVolumeClaim", "persistentvolumeclaims"),
            ("ephemeral", "persistentvolumeclaims"),
            ("csi", "csidrivers"),
        ] {
            if volume.get(kind).is_some() {
                return deny(&format!("can not create pods that reference {what}"));
            }
        }
        for source in volume["projected"]["sources"].as_array().into_iter().flatten() {
            for (kind, what) in [
                ("secret", "secrets"),
                ("configMap", "configmaps"),
                ("serviceAccountToken", "serviceaccounts"),
                ("clusterTrustBundle", "clustertrustbundles"),
                ("podCertificate", "podcertificates"),
            ] {
                if source.get(kind).is_some() {
                    return deny(&format!("can not create pods that reference {what}"));
                }
            }
        }
    }
    let containers = ["containers", "initContainers"].iter().flat_map(|k| spec[*k].as_array().cloned().unwrap_or_default());
    for container in containers {
        for env in container["env"].as_array().into_iter().flatten() {
            if env["valueFrom"].get("secretKeyRef").is_some() {
                return deny("can not create pods that reference secrets");
            }
            if env["valueFrom"].get("configMapKeyRef").is_some() {
                return deny("can not create pods that reference configmaps");
            }
        }
        for from in container["envFrom"].as_array().into_iter().flatten() {
            if from.get("secretRef").is_some() {
                return deny("can not create pods that reference secrets");
            }
            if from.get("configMapRef").is_some() {
                return deny("can not create pods that reference configmaps");
            }
        }
    }
    Ok(())
}

fn create_pod(state: &mut State, node: Option<&str>, namespace: &str, mut pod: Value) -> Answer {
    let name = pod["metadata"]["name"].as_str().unwrap_or_default().to_owned();
    if let Some(node) = node {
        admit_mirror_pod(state, node, &pod)?;
    }
    let key = (namespace.to_owned(), name.clone());
    if state.pods.contains_key(&key) {
        let mut exists = status(409, "AlreadyExists", &format!("pods {name:?} already exists"));
        exists["details"] = json!({"name": name, "kind": "pods"});
        return Err(exists);
    }
    pod["metadata"]["namespace"] = json!(namespace);
    // As the real pod strategy does: a new pod's status is the server's, not the caller's.
    pod["status"] = json!({"phase": "Pending"});
    state.stamp(&mut pod, true);
    state.pod_event("ADDED", &pod);
    state.pods.insert(key, pod.clone());
    Ok((StatusCode::CREATED, pod))
}

fn bound_to(node: Option<&str>, pod: &Value) -> Result<(), Value> {
    match node {
        Some(node) if pod["spec"]["nodeName"] != node => Err(forbidden(node, "can only change pods with spec.nodeName set to itself")),
        _ => Ok(()),
    }
}

fn delete_pod(state: &mut State, node: Option<&str>, namespace: &str, name: &str, options: &Value) -> Answer {
    let key = (namespace.to_owned(), name.to_owned());
    let mut pod = state.pods.get(&key).cloned().ok_or_else(|| not_found("pods", name))?;
    bound_to(node, &pod)?;
    if let Some(uid) = options["preconditions"]["uid"].as_str()
        && pod["metadata"]["uid"] != uid
    {
        return Err(status(
            409,
            "Conflict",
            &format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {}", pod["metadata"]["uid"]),
        ));
    }
    let grace = options["gracePeriodSeconds"].as_u64().unwrap_or(30);
    let terminal = matches!(pod["status"]["phase"].as_str(), Some("Succeeded" | "Failed"));
    if grace > 0 && !terminal && pod["spec"]["nodeName"].is_string() {
        // A bound pod is deleted gracefully: marked, and left for its node to finish.
        if pod["metadata"]["deletionTimestamp"].is_null() {
            pod["metadata"]["deletionTimestamp"] = json!(now());
            pod["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
            state.stamp(&mut pod, false);
            state.pod_event("MODIFIED", &pod);
            state.pods.insert(key, pod.clone());
        }
        return Ok((StatusCode::OK, pod));
    }
    state.pods.remove(&key);
    state.stamp(&mut pod, false);
    state.pod_event("DELETED", &pod);
    Ok((StatusCode::OK, pod))
}

fn patch_pod_status(state: &mut State, node: Option<&str>, namespace: &str, name: &str, patch: Value) -> Answer {
    let key = (namespace.to_owned(), name.to_owned());
    let mut pod = state.pods.get(&key).cloned().ok_or_else(|| not_found("pods", name))?;
    bound_to(node, &pod)?;
    // The status subresource takes only the status from a patch.
    merge(&mut pod["status"], &patch["status"]);
    state.stamp(&mut pod, false);
    state.pod_event("MODIFIED", &pod);
    state.pods.insert(key, pod.clone());
    Ok((StatusCode::OK, pod))
}

/// A JSON merge patch (RFC 7386).
fn merge(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(fields) => {
            if !target.is_object() {
                *target = json!({});
            }
            for (key, value) in fields {
                if value.is_null() {
                    target.as_object_mut().unwrap().remove(key);
                } else {
                    merge(&mut target[key], value);
                }
            }
        }
        other => *target = other.clone(),
    }
}

fn create_node(state: &mut State, node: Option<&str>, mut object: Value) -> Answer {
    let name = object["metadata"]["name"].as_str().unwrap_or_default().to_owned();
    if let Some(node) = node
        && node != name
    {
        return Err(status(403, "Forbidden", &format!("nodes {name:?} is forbidden: node {node:?} can only create its own Node object")));
    }
    if state.nodes.contains_key(&name) {
        return Err(status(409, "AlreadyExists", &format!("nodes {name:?} already exists")));
    }
    state.stamp(&mut object, true);
    state.nodes.insert(name, object.clone());
    Ok((StatusCode::CREATED, object))
}

fn write_lease(state: &mut State, node: Option<&str>, name: &str, mut lease: Value, create: bool) -> Answer {
    if let Some(node) = node
        && node != name
    {
        return Err(status(403, "Forbidden", &format!("leases {name:?} is forbidden: node {node:?} can only access its own lease")));
    }
    match (create, state.leases.get(name)) {
        (true, Some(_)) => return Err(status(409, "AlreadyExists", &format!("leases {name:?} already exists"))),
        (false, None) => return Err(not_found("leases", name)),
        (false, Some(current)) => {
            let given = &lease["metadata"]["resourceVersion"];
            if !given.is_null() && *given != current["metadata"]["resourceVersion"] {
                return Err(status(
                    409,
                    "Conflict",
                    "the object has been modified; please apply your changes to the latest version and try again",
                ));
            }
            lease["metadata"]["uid"] = current["metadata"]["uid"].clone();
            lease["metadata"]["creationTimestamp"] = current["metadata"]["creationTimestamp"].clone();
        }
        (true, None) => {}
    }
    lease["metadata"]["namespace"] = json!("kube-node-lease");
    state.stamp(&mut lease, create);
    state.leases.insert(name.to_owned(), lease.clone());
    Ok((if create { StatusCode::CREATED } else { StatusCode::OK }, lease))
}
