//! File written → the pod's container running on Podman through the Podman runtime adapter,
//! p50 and p99 over 20 pods, side by side in the same run with the floor: a minimal client
//! making the libpod REST calls the adapter makes for the same pod (pod created and started,
//! image looked up, container created in the pod and started), with the same specs, over one
//! warm HTTP connection to the same Podman service. A third line starts the same pod with
//! `podman kube play`, one process doing it all, as a reference.
//!
//! All three are timed to Podman's own record of when the container started
//! (`State.StartedAt`), take turns pod by pod (rotating, after one warm-up round) and keep
//! their pods until the end. The start is then broken down by stage from the agent's debug
//! log and Podman's timestamps (see `common/breakdown.rs`).
//!
//! `cargo bench -p staticlet --bench podman_start_latency` (needs Podman; the benchmark
//! serves its API on a port of its own, with its own storage, as the tests do).

#[allow(dead_code)]
#[path = "../../../tests/e2e/support/mod.rs"]
mod support;

#[allow(dead_code)]
mod common;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use common::breakdown::{self, AgentLog, Start};
use common::{PODS, report};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use staticlet_runtime::{ContainerConfig, MountPropagation, PodSandboxConfig, Protocol};
use support::images::BUSYBOX;
use support::podman::{Podman, podman};
use support::{Agent, wait_for};

const BENCH: &str = "podman_start_latency";
/// The API version the adapter speaks by default.
const API: &str = "/v4.0.0/libpod";
/// How long any one container may take to start before the benchmark gives up.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Who starts the pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Staticlet,
    Minimal,
    KubePlay,
}

/// One HTTP/1.1 connection to Podman's API socket (the one the adapter is granted), kept open
/// between calls.
struct Rest {
    socket: std::path::PathBuf,
    sender: Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>>,
}

impl Rest {
    fn new(socket: &std::path::Path) -> Rest {
        Rest { socket: socket.to_owned(), sender: None }
    }

    /// `method path` below the libpod API, with a JSON body when given: the status and the
    /// answer (JSON, or null). Connects first when the connection is not open.
    async fn call(&mut self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            let stream = tokio::net::UnixStream::connect(&self.socket).await.expect("Podman's API answers");
            let (sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
            tokio::spawn(connection);
            self.sender = Some(sender);
        }
        let sender = self.sender.as_mut().unwrap();
        sender.ready().await.expect("the connection is usable");
        let body = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
        let request = hyper::Request::builder()
            .method(method)
            .uri(format!("{API}{path}"))
            .header("host", "localhost")
            .header("content-type", "application/json")
            .body(Full::new(body))
            .unwrap();
        let response = sender.send_request(request).await.expect("Podman answers");
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    /// A call that must succeed; its answer.
    async fn ok(&mut self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let (status, answer) = self.call(method, path, body).await;
        assert!((200..300).contains(&status), "{method} {path}: Podman answered {status}: {answer}");
        answer
    }

    /// Podman's time field `field` of the object at `path`.
    async fn time(&mut self, path: &str, field: &[&str]) -> SystemTime {
        let mut value = self.ok("GET", path, None).await;
        for key in field {
            value = value[key].take();
        }
        let text = value.as_str().unwrap_or_default().to_owned();
        breakdown::parse_time(&text).unwrap_or_else(|| panic!("{path}: {field:?} is not a time: {text:?}"))
    }

    /// Marks Podman's milestones of the container `id` (a full or short ID, or a name) and its
    /// pod in `start`; returns the pod's and the container's full IDs.
    async fn milestones(&mut self, start: &mut Start, id: &str) -> [String; 2] {
        let container = self.ok("GET", &format!("/containers/{id}/json"), None).await;
        let (id, pod) = (container["Id"].as_str().unwrap().to_owned(), container["Pod"].as_str().unwrap_or_default().to_owned());
        let inspected = self.ok("GET", &format!("/pods/{pod}/json"), None).await;
        let infra = inspected["InfraContainerID"].as_str().unwrap_or_default().to_owned();
        start.mark(breakdown::SANDBOX_CREATED, self.time(&format!("/pods/{pod}/json"), &["Created"]).await);
        start.mark(breakdown::SANDBOX_STARTED, self.time(&format!("/containers/{infra}/json"), &["State", "StartedAt"]).await);
        start.mark(breakdown::CREATED, self.time(&format!("/containers/{id}/json"), &["Created"]).await);
        start.mark(breakdown::STARTED, self.time(&format!("/containers/{id}/json"), &["State", "StartedAt"]).await);
        [pod, id]
    }
}

// The specs below mirror `plugins/podman-adapter/src/convert.rs` (`pod_spec`, `container_spec`,
// `qualify`) for what the benchmark's pod uses: that crate builds only for wasm, so the host's
// benchmarks cannot call it. A change there must be made here too for the floor to stay the
// adapter's own requests.

/// Labels with the annotations folded in as `annotation.<key>` labels, as the adapter sends them.
fn labels(labels: &BTreeMap<String, String>, annotations: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut all = labels.clone();
    all.extend(annotations.iter().map(|(k, v)| (format!("annotation.{k}"), v.clone())));
    all
}

/// An image reference as the adapter qualifies it (the bench's image names its registry).
fn qualify(image: &str) -> String {
    let (first, rest) = image.split_once('/').unwrap_or((image, ""));
    let mut reference = if !rest.is_empty() && (first.contains(['.', ':']) || first == "localhost") {
        image.to_owned()
    } else if !rest.is_empty() {
        format!("docker.io/{image}")
    } else {
        format!("docker.io/library/{image}")
    };
    if !reference.rsplit('/').next().unwrap_or_default().contains([':', '@']) {
        reference.push_str(":latest");
    }
    reference
}

/// The adapter's `POST /pods/create` body.
fn pod_spec(config: &PodSandboxConfig) -> Value {
    let meta = &config.metadata;
    let ports: Vec<Value> = config
        .port_mappings
        .iter()
        .map(|p| {
            let protocol = match p.protocol {
                Protocol::Tcp => "tcp",
                Protocol::Udp => "udp",
                Protocol::Sctp => "sctp",
            };
            json!({"container_port": p.container_port, "host_port": p.host_port, "host_ip": p.host_ip, "protocol": protocol})
        })
        .collect();
    let mut spec = json!({
        "name": format!("k8s_POD_{}_{}_{}_{}", meta.name, meta.namespace, meta.uid, meta.attempt),
        "labels": labels(&config.labels, &config.annotations),
        "hostadd": config.host_aliases.iter().flat_map(|(ip, names)| names.iter().map(move |n| format!("{n}:{ip}"))).collect::<Vec<_>>(),
        "portmappings": ports,
    });
    if !config.hostname.is_empty() {
        spec["hostname"] = json!(config.hostname);
    }
    spec
}

/// The adapter's `POST /containers/create` body.
fn container_spec(pod_id: &str, config: &ContainerConfig, sandbox: &PodSandboxConfig) -> Value {
    let (meta, pod) = (&config.metadata, &sandbox.metadata);
    let security = &config.security;
    let mounts: Vec<Value> = config
        .mounts
        .iter()
        .map(|m| {
            let propagation = match m.propagation {
                MountPropagation::Private => "rprivate",
                MountPropagation::HostToContainer => "rslave",
                MountPropagation::Bidirectional => "rshared",
            };
            json!({"destination": m.container_path, "source": m.host_path, "type": "bind",
                   "options": ["rbind", if m.readonly { "ro" } else { "rw" }, propagation]})
        })
        .collect();
    let env: BTreeMap<&str, &str> = config.envs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut spec = json!({
        "name": format!("k8s_{}_{}_{}_{}_{}", meta.name, pod.name, pod.namespace, pod.uid, meta.attempt),
        "pod": pod_id,
        "image": qualify(&config.image),
        "env": env,
        "labels": labels(&config.labels, &config.annotations),
        "mounts": mounts,
        "privileged": security.privileged,
        "read_only_filesystem": security.readonly_rootfs,
        "no_new_privileges": security.no_new_privs,
        "cap_add": security.add_capabilities,
        "cap_drop": security.drop_capabilities,
        "stdin": config.stdin,
        "terminal": config.tty,
    });
    if !config.command.is_empty() {
        spec["entrypoint"] = json!(config.command);
        spec["command"] = json!(config.args);
    } else if !config.args.is_empty() {
        spec["command"] = json!(config.args);
    }
    if let Some(dir) = &config.working_dir {
        spec["work_dir"] = json!(dir);
    }
    // CPU shares are always set (the kubelet's floor of 2 without a request).
    let resources = &config.resources;
    let mut cpu = serde_json::Map::new();
    for (key, value) in [("shares", resources.cpu_shares), ("quota", resources.cpu_quota), ("period", resources.cpu_period)] {
        if value > 0 {
            cpu.insert(key.into(), json!(value));
        }
    }
    let mut limits = serde_json::Map::new();
    if !cpu.is_empty() {
        limits.insert("cpu".into(), Value::Object(cpu));
    }
    if resources.memory_limit_in_bytes > 0 {
        let bytes = resources.memory_limit_in_bytes;
        limits.insert("memory".into(), json!({"limit": bytes, "swap": bytes}));
    }
    if !limits.is_empty() {
        spec["resource_limits"] = Value::Object(limits);
    }
    if let Some(user) = security.run_as_user {
        spec["user"] = json!(security.run_as_group.map_or_else(|| user.to_string(), |group| format!("{user}:{group}")));
    }
    if !security.supplemental_groups.is_empty() {
        spec["groups"] = json!(security.supplemental_groups.iter().map(ToString::to_string).collect::<Vec<_>>());
    }
    spec
}

/// Staticlet: the manifest written, timed to the container's start; then its way through the
/// agent, from the agent's log.
async fn staticlet(agent: &Agent, log: &mut AgentLog, rest: &mut Rest, i: usize) -> Start {
    let name = format!("lat-{i}");
    let pod = agent.pod(&name);
    let t0 = SystemTime::now();
    agent.write(&format!("{name}.yaml"), &common::manifest(&name, BUSYBOX));
    // The agent's log says when the start call returned, which costs Podman nothing to watch
    // (polling its API would load it while the agent works).
    let started = log.wait_for(t0, "container started", ("pod", &format!("default/{pod}")), START_TIMEOUT).await;
    let mut start = Start::new(t0);
    let [pod_id, container] = rest.milestones(&mut start, started.field("id").expect("the line names the container")).await;
    log.pipeline(&mut start, &pod, &[&pod_id, &container]);
    start
}

/// The floor: the libpod calls the adapter makes for the pod, with its specs, over one warm
/// connection.
async fn minimal(rest: &mut Rest, node: &str, root: &std::path::Path, i: usize) -> Start {
    let (_, sandbox, container) = common::pod_configs(&format!("floor-{i}"), BUSYBOX, node, "podman", root);
    let pod_spec = pod_spec(&sandbox);
    // The connection is open and warm before the clock starts.
    rest.ok("GET", "/_ping", None).await;
    let t0 = SystemTime::now();
    let mut start = Start::new(t0);
    start.mark(breakdown::SANDBOX_CALLED, t0);
    let pod_id = start
        .timed("RunPodSandbox", async {
            let id = rest.ok("POST", "/pods/create", Some(&pod_spec)).await["Id"].as_str().unwrap().to_owned();
            rest.ok("POST", &format!("/pods/{id}/start"), None).await;
            id
        })
        .await;
    start.mark(breakdown::SANDBOX_RETURNED, SystemTime::now());
    let image = format!("/images/{}/json", qualify(BUSYBOX));
    start.timed("ImageStatus", rest.ok("GET", &image, None)).await;
    let spec = container_spec(&pod_id, &container, &sandbox);
    start.mark(breakdown::CREATE_CALLED, SystemTime::now());
    let created = start.timed("CreateContainer", rest.ok("POST", "/containers/create", Some(&spec))).await;
    let id = created["Id"].as_str().unwrap().to_owned();
    let now = SystemTime::now();
    start.mark(breakdown::CREATE_RETURNED, now);
    start.mark(breakdown::START_CALLED, now);
    start.timed("StartContainer", rest.ok("POST", &format!("/containers/{id}/start"), None)).await;
    rest.milestones(&mut start, &id).await;
    start
}

/// The reference: `podman kube play` of the same manifest; milliseconds to its start.
async fn kube_play(podman: &Podman, rest: &mut Rest, plays: &std::path::Path, i: usize) -> f64 {
    let played = format!("play-{i}-{}", std::process::id());
    let file = plays.join(format!("{played}.yaml"));
    std::fs::write(&file, common::manifest(&played, BUSYBOX)).unwrap();
    let t0 = SystemTime::now();
    podman.run(&["kube", "play", "--quiet", file.to_str().unwrap()]);
    breakdown::ms_between(t0, rest.time(&format!("/containers/{played}-main/json"), &["State", "StartedAt"]).await)
}

/// Removes the floor's pods and `kube play`'s when the benchmark ends, however it ends (the
/// agent's are removed by [`Agent`]).
struct Leftovers {
    podman: Podman,
    node: String,
    plays: tempfile::TempDir,
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        let pods: Vec<String> = self.podman.pods(&self.node).iter().filter_map(|p| p["Id"].as_str().map(str::to_owned)).collect();
        if !pods.is_empty() {
            let _ = self.podman.cli().args(["pod", "rm", "-f", "-t", "0"]).args(&pods).output();
        }
        for played in std::fs::read_dir(self.plays.path()).into_iter().flatten().flatten() {
            let _ = self.podman.cli().args(["kube", "down"]).arg(played.path()).output();
        }
    }
}

#[tokio::main]
async fn main() {
    if std::process::Command::new("podman").arg("--version").output().is_err() {
        return report::skip(BENCH, "Podman is not installed (apt install podman catatonit)");
    }
    let podman = podman().await;
    let mut agent = Agent::new("bench-podman");
    agent.uses_podman(&podman);
    std::fs::write(agent.file("config.yaml"), podman.agent_config()).unwrap();
    let config = agent.file("config.yaml");
    agent.start_env(&["--config", config.to_str().unwrap(), "--log-format", "json"], &[("STATICLET_LOG", breakdown::AGENT_LOG_FILTER)]);
    // The agent's log, as `support::Agent` names it.
    let mut log = AgentLog::new(agent.file("agent.log"));
    let leftovers =
        Leftovers { podman: podman.clone(), node: support::node_name("bench-podman-floor"), plays: tempfile::tempdir().unwrap() };
    let floor_root = tempfile::tempdir().unwrap();
    // The floor's connection, and another for reading Podman's timestamps afterwards.
    let (mut floor_rest, mut rest) = (Rest::new(&podman.socket), Rest::new(&podman.socket));
    wait_for(Duration::from_secs(30), "the agent to read its manifests", || async {
        agent.log().contains("source snapshot received").then_some(())
    })
    .await;

    let (mut ours, mut floor, mut played) = (Vec::new(), Vec::new(), Vec::new());
    // Round 0 warms every side up and is not counted.
    for i in 0..=PODS {
        for side in common::turn_order(&[Side::Staticlet, Side::Minimal, Side::KubePlay], i) {
            match side {
                Side::Staticlet => {
                    let start = staticlet(&agent, &mut log, &mut rest, i).await;
                    if i > 0 {
                        ours.push(start);
                    }
                }
                Side::Minimal => {
                    let start = minimal(&mut floor_rest, &leftovers.node, floor_root.path(), i).await;
                    if i > 0 {
                        floor.push(start);
                    }
                }
                Side::KubePlay => {
                    let took = kube_play(&podman, &mut rest, leftovers.plays.path(), i).await;
                    if i > 0 {
                        played.push(took);
                    }
                }
            }
        }
    }

    let totals = |starts: &[Start]| starts.iter().map(Start::total).collect::<Vec<_>>();
    let (ours_ms, floor_ms) = (totals(&ours), totals(&floor));
    let p50 = |samples: &[f64]| report::percentile(samples, 50.0);
    for (label, samples) in [("staticlet", &ours_ms), ("libpod calls", &floor_ms), ("podman kube play", &played)] {
        println!("{BENCH}: {label:<16} {}   (n = {})", report::p50_p99_ms(samples), samples.len());
    }
    let ratio = p50(&ours_ms) / p50(&floor_ms);
    let ratio_played = p50(&ours_ms) / p50(&played);
    println!("{BENCH}: p50 ratio staticlet / the minimal libpod client = {ratio:.2}");
    println!("{BENCH}: p50 ratio staticlet / podman kube play = {ratio_played:.2}");
    breakdown::print(BENCH, &[("staticlet", &ours), ("minimal client", &floor)]);

    let version = podman.run(&["version", "--format", "{{.Client.Version}}"]).trim().to_owned();
    report::row(
        &format!("file written → container running on Podman {version} through the adapter ({PODS} pods)"),
        &format!("{}; **{ratio:.2}×** the minimal libpod client, {ratio_played:.2}× `podman kube play`", report::p50_p99_ms(&ours_ms)),
        "p50 ≤ 1.0× `podman kube play`",
        &report::command("staticlet", BENCH),
    );
    report::row(
        "same pod started by a minimal client with the adapter's libpod calls and specs (one warm HTTP connection: pod created and started, image looked up, container created and started), same Podman, same run",
        &report::p50_p99_ms(&floor_ms),
        "",
        "",
    );
    report::row("same pod started with `podman kube play`, same Podman, same run", &report::p50_p99_ms(&played), "", "");
}
