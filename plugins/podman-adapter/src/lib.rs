//! The Podman runtime adapter's logic (`podman-runtime` exports it as a component): a staticlet
//! runtime adapter for Podman, through Podman's REST API (`podman system service
//! tcp:127.0.0.1:8888`, the libpod endpoints).
//!
//! A static pod is one Podman pod, whose infra container is the sandbox; the pod's containers
//! run inside it. Names and labels are the ones the Docker runtime gives, so `podman pod ps` and
//! `podman ps` read as a kubelet user expects: pods `k8s_POD_<pod>_<ns>_<uid>_<attempt>`,
//! containers `k8s_<container>_<pod>_<ns>_<uid>_<attempt>`, the agent's labels, and
//! annotations as `annotation.<key>` labels.
//!
//! Settings: `endpoint` (default `http://127.0.0.1:8888`) and `apiVersion` (default `v4.0.0`).
//! The agent config must grant the endpoint's address in `allowedHosts`.

pub mod api;
pub mod convert;

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Value, json};
use staticlet_runtime_sdk::{
    Config, Container, ContainerConfig, ContainerMetadata, ContainerState, ContainerStatus, ExecResult, Image, LogOptions,
    MountPropagation, Protocol, RuntimeAdapter, RuntimeError, RuntimeVersion, Sandbox, SandboxConfig, SandboxMetadata, SandboxState,
    SandboxStatus, StringMap,
};

use api::{Client, decode, failure, ok};
use convert::{
    container_name, demux, label_filter, labels_with_annotations, parse_name, parse_time, percent_encode, qualify, sandbox_name,
    split_labels,
};

/// Where Podman's API is when the settings do not say.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:8888";
/// The API version the paths carry: Debian's Podman 4 serves `/v4.0.0/libpod/...`.
pub const DEFAULT_API_VERSION: &str = "v4.0.0";
/// How much of each exec output stream is kept, as the agent keeps it.
const EXEC_OUTPUT_LIMIT: usize = 10 * 1024;

/// The adapter: a client for one Podman service.
#[derive(Debug, Clone)]
pub struct Podman {
    client: Client,
}

impl Podman {
    /// The adapter for the settings the agent config gives it. Keys it does not know are
    /// logged and ignored, so a config written for a newer adapter still loads.
    ///
    /// # Errors
    ///
    /// A setting of the wrong type, named.
    pub fn from_settings(config: &Config) -> Result<Podman, String> {
        let text = |key: &str, default: &str| match config.get(key) {
            None => Ok(default.to_owned()),
            Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            Some(other) => Err(format!("{key}: want a non-empty string, got {other}")),
        };
        let endpoint = text("endpoint", DEFAULT_ENDPOINT)?;
        if !endpoint.starts_with("http://") && !endpoint.starts_with("https://") {
            return Err(format!("endpoint: {endpoint:?} is not an http:// or https:// URL"));
        }
        let api_version = text("apiVersion", DEFAULT_API_VERSION)?;
        if let Some(map) = config.as_object() {
            let unknown: Vec<&str> = map.keys().map(String::as_str).filter(|k| !["endpoint", "apiVersion"].contains(k)).collect();
            if !unknown.is_empty() {
                staticlet_runtime_sdk::log_warn(&format!("ignoring settings the Podman adapter does not know: {}", unknown.join(", ")));
            }
        }
        Ok(Podman { client: Client::new(&endpoint, &api_version) })
    }

    fn post(&self, what: &str, path: &str, body: Option<&Value>) -> Result<staticlet_runtime_sdk::http::Response, RuntimeError> {
        ok(what, self.client.send("POST", path, body)?)
    }

    /// Sends a stop or removal, which succeeds on what is already gone.
    fn idempotent(&self, what: &str, method: &str, path: &str) -> Result<(), RuntimeError> {
        match ok(what, self.client.send(method, path, None)?) {
            Ok(_) | Err(RuntimeError::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListedPod {
    id: String,
    name: String,
    status: String,
    created: String,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InspectedPod {
    id: String,
    name: String,
    state: String,
    created: String,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
    #[serde(rename = "InfraContainerID", default)]
    infra_container_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListedContainer {
    id: String,
    names: Vec<String>,
    image: String,
    state: String,
    created: String,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pod: String,
    #[serde(default)]
    is_infra: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InspectedContainer {
    id: String,
    name: String,
    created: String,
    image_name: String,
    state: InspectedState,
    config: InspectedConfig,
    #[serde(default)]
    pod: String,
    #[serde(default)]
    network_settings: Option<NetworkSettings>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InspectedState {
    status: String,
    exit_code: i32,
    started_at: String,
    finished_at: String,
    #[serde(rename = "OOMKilled", default)]
    oom_killed: bool,
    #[serde(default)]
    error: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InspectedConfig {
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct NetworkSettings {
    #[serde(rename = "IPAddress", default)]
    ip_address: String,
    #[serde(default)]
    networks: Option<BTreeMap<String, Network>>,
}

#[derive(Debug, Deserialize)]
struct Network {
    #[serde(rename = "IPAddress", default)]
    ip_address: String,
}

fn sandbox_state(status: &str) -> SandboxState {
    // A pod is "Degraded" when some of its containers stopped; its infra, which holds the
    // namespaces, still runs.
    match status {
        "Running" | "Degraded" => SandboxState::Ready,
        _ => SandboxState::NotReady,
    }
}

fn container_state(state: &str) -> ContainerState {
    match state {
        "created" | "configured" | "initialized" => ContainerState::Created,
        "running" | "paused" | "stopping" => ContainerState::Running,
        "exited" | "stopped" => ContainerState::Exited,
        _ => ContainerState::Unknown,
    }
}

fn sandbox(id: String, name: &str, status: &str, created: &str, labels: Option<BTreeMap<String, String>>) -> Sandbox {
    let (_, pod, namespace, uid, attempt) = parse_name(name).unwrap_or(("", name, "", "", 0));
    let (labels, annotations) = split_labels(labels.unwrap_or_default());
    Sandbox {
        id,
        metadata: SandboxMetadata { name: pod.to_owned(), namespace: namespace.to_owned(), uid: uid.to_owned(), attempt },
        state: sandbox_state(status),
        created_at: parse_time(created).unwrap_or_default(),
        labels,
        annotations,
    }
}

/// A container as the runtime interface lists it, from what Podman lists or inspects.
struct Found<'a> {
    id: String,
    name: &'a str,
    sandbox_id: String,
    image: String,
    state: &'a str,
    created: &'a str,
    labels: Option<BTreeMap<String, String>>,
}

fn container(found: Found<'_>) -> Container {
    let (container, _, _, _, attempt) = parse_name(found.name).unwrap_or((found.name, "", "", "", 0));
    let (labels, annotations) = split_labels(found.labels.unwrap_or_default());
    Container {
        id: found.id,
        sandbox_id: found.sandbox_id,
        metadata: ContainerMetadata { name: container.to_owned(), attempt },
        image: found.image,
        state: container_state(found.state),
        created_at: parse_time(found.created).unwrap_or_default(),
        labels,
        annotations,
    }
}

/// What an error says, whatever its kind.
fn message(e: RuntimeError) -> String {
    match e {
        RuntimeError::Unavailable(m)
        | RuntimeError::NotFound(m)
        | RuntimeError::ImagePull(m)
        | RuntimeError::Unsupported(m)
        | RuntimeError::DeadlineExceeded(m)
        | RuntimeError::Call(m) => m,
    }
}

fn host_namespace(host: bool) -> Option<Value> {
    host.then(|| json!({"nsmode": "host"}))
}

/// Podman's `resource_limits` for a container: CPU shares, quota and period, and a memory
/// limit with no swap beyond it, as the kubelet sets them; `None` when nothing is limited.
fn resource_limits(config: &ContainerConfig) -> Option<Value> {
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
    (!limits.is_empty()).then_some(Value::Object(limits))
}

fn mounts(config: &ContainerConfig) -> Vec<Value> {
    config
        .mounts
        .iter()
        .map(|m| {
            let propagation = match m.propagation {
                MountPropagation::Private => "rprivate",
                MountPropagation::HostToContainer => "rslave",
                MountPropagation::Bidirectional => "rshared",
            };
            json!({
                "destination": m.container_path,
                "source": m.host_path,
                "type": "bind",
                "options": ["rbind", if m.readonly { "ro" } else { "rw" }, propagation],
            })
        })
        .collect()
}

impl RuntimeAdapter for Podman {
    fn version(&self) -> Result<RuntimeVersion, RuntimeError> {
        let version: Value = self.client.get("reading Podman's version", "/version")?;
        let number = version["Version"].as_str().or_else(|| version["Components"][0]["Version"].as_str()).unwrap_or_default().to_owned();
        Ok(RuntimeVersion { runtime_name: "podman".into(), runtime_version: number })
    }

    fn run_pod_sandbox(&self, config: SandboxConfig) -> Result<String, RuntimeError> {
        let meta = &config.metadata;
        let name = sandbox_name(&meta.name, &meta.namespace, &meta.uid, meta.attempt);
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
        let hosts: Vec<String> =
            config.host_aliases.iter().flat_map(|(ip, names)| names.iter().map(move |n| format!("{n}:{ip}"))).collect();
        let mut spec = json!({
            "name": name,
            "labels": labels_with_annotations(&config.labels, &config.annotations),
            "portmappings": ports,
            "hostadd": hosts,
        });
        if let Some(host) = host_namespace(config.host_network) {
            // On the host's network a pod also has the host's name, as the kubelet's do; a
            // UTS namespace of its own would get the pod's name, which is no valid hostname.
            spec["netns"] = host.clone();
            spec["utsns"] = host;
        } else if !config.hostname.is_empty() {
            spec["hostname"] = json!(config.hostname);
        }
        if let Some(dns) = &config.dns_config {
            spec["dns_server"] = json!(dns.servers);
            spec["dns_search"] = json!(dns.searches);
            spec["dns_option"] = json!(dns.options);
        }
        let what = format!("creating pod {name}");
        let created: Value = decode(&what, &self.post(&what, "/pods/create", Some(&spec))?)?;
        let id = created["Id"].as_str().ok_or_else(|| RuntimeError::Call(format!("{what}: Podman returned no id")))?.to_owned();
        if let Err(e) = self.post(&format!("starting pod {name}"), &format!("/pods/{id}/start"), None) {
            // As the CRI's RunPodSandbox: a sandbox that did not start is not left behind.
            let _ = self.remove_pod_sandbox(id);
            return Err(e);
        }
        Ok(id)
    }

    fn stop_pod_sandbox(&self, sandbox_id: String) -> Result<(), RuntimeError> {
        // Forcibly, as the CRI's StopPodSandbox: the agent already stopped the containers
        // with their grace periods.
        self.idempotent(&format!("stopping pod {sandbox_id}"), "POST", &format!("/pods/{sandbox_id}/stop?t=0"))
    }

    fn remove_pod_sandbox(&self, sandbox_id: String) -> Result<(), RuntimeError> {
        self.idempotent(&format!("removing pod {sandbox_id}"), "DELETE", &format!("/pods/{sandbox_id}?force=true"))
    }

    fn list_pod_sandboxes(&self, filter: StringMap) -> Result<Vec<Sandbox>, RuntimeError> {
        let pods: Option<Vec<ListedPod>> = self.client.get("listing pods", &format!("/pods/json?filters={}", label_filter(&filter)))?;
        Ok(pods.unwrap_or_default().into_iter().map(|p| sandbox(p.id, &p.name, &p.status, &p.created, p.labels)).collect())
    }

    fn get_pod_sandbox_status(&self, sandbox_id: String) -> Result<SandboxStatus, RuntimeError> {
        let pod: InspectedPod = self.client.get(&format!("pod {sandbox_id}"), &format!("/pods/{sandbox_id}/json"))?;
        let ip = if pod.infra_container_id.is_empty() {
            None
        } else {
            let what = format!("infra container of pod {sandbox_id}");
            let infra: InspectedContainer = self.client.get(&what, &format!("/containers/{}/json", pod.infra_container_id))?;
            infra.network_settings.and_then(|n| {
                let from_networks = n.networks.into_iter().flatten().map(|(_, net)| net.ip_address).find(|ip| !ip.is_empty());
                Some(n.ip_address).filter(|ip| !ip.is_empty()).or(from_networks)
            })
        };
        Ok(SandboxStatus { sandbox: sandbox(pod.id, &pod.name, &pod.state, &pod.created, pod.labels), ip })
    }

    fn create_container(&self, sandbox_id: String, config: ContainerConfig, sandbox: SandboxConfig) -> Result<String, RuntimeError> {
        let pod = &sandbox.metadata;
        let name = container_name(&config.metadata.name, &pod.name, &pod.namespace, &pod.uid, config.metadata.attempt);
        let image = qualify(&config.image);
        let env: BTreeMap<&str, &str> = config.envs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let security = &config.security;
        let mut spec = json!({
            "name": name,
            "pod": sandbox_id,
            "image": image,
            "env": env,
            "labels": labels_with_annotations(&config.labels, &config.annotations),
            "mounts": mounts(&config),
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
            // Kubernetes: a command without args drops the image's CMD as well.
            spec["command"] = json!(config.args);
        } else if !config.args.is_empty() {
            spec["command"] = json!(config.args);
        }
        if let Some(dir) = &config.working_dir {
            spec["work_dir"] = json!(dir);
        }
        if let Some(limits) = resource_limits(&config) {
            spec["resource_limits"] = limits;
        }
        match (security.run_as_user, security.run_as_group) {
            (Some(user), Some(group)) => spec["user"] = json!(format!("{user}:{group}")),
            (Some(user), None) => spec["user"] = json!(user.to_string()),
            (None, Some(group)) => spec["user"] = json!(format!("0:{group}")),
            (None, None) => {}
        }
        if !security.supplemental_groups.is_empty() {
            spec["groups"] = json!(security.supplemental_groups.iter().map(ToString::to_string).collect::<Vec<_>>());
        }
        if let Some(pidns) = host_namespace(sandbox.host_pid) {
            spec["pidns"] = pidns;
        }
        if let Some(ipcns) = host_namespace(sandbox.host_ipc) {
            spec["ipcns"] = ipcns;
        }
        let what = format!("creating container {name}");
        let response = self.client.send("POST", "/containers/create", Some(&spec))?;
        if !(200..300).contains(&response.status) {
            let error = failure(&what, &response);
            let absent = matches!(&error, RuntimeError::NotFound(_)) || response.text().contains("image not known");
            return Err(if absent { RuntimeError::NotFound(format!("image {image}")) } else { error });
        }
        let created: Value = decode(&what, &response)?;
        created["Id"].as_str().map(str::to_owned).ok_or_else(|| RuntimeError::Call(format!("{what}: Podman returned no id")))
    }

    fn start_container(&self, container_id: String) -> Result<(), RuntimeError> {
        self.post(&format!("starting container {container_id}"), &format!("/containers/{container_id}/start"), None).map(drop)
    }

    fn stop_container(&self, container_id: String, grace_ms: u64) -> Result<(), RuntimeError> {
        let seconds = grace_ms.div_ceil(1000);
        let what = format!("stopping container {container_id}");
        self.post(&what, &format!("/containers/{container_id}/stop?timeout={seconds}"), None).map(drop)
    }

    fn remove_container(&self, container_id: String) -> Result<(), RuntimeError> {
        let what = format!("removing container {container_id}");
        self.idempotent(&what, "DELETE", &format!("/containers/{container_id}?force=true&v=true&timeout=0"))
    }

    fn list_containers(&self, filter: StringMap) -> Result<Vec<Container>, RuntimeError> {
        let path = format!("/containers/json?all=true&filters={}", label_filter(&filter));
        let listed: Option<Vec<ListedContainer>> = self.client.get("listing containers", &path)?;
        Ok(listed
            .unwrap_or_default()
            .into_iter()
            // Infra containers carry their pod's labels, but they are the sandbox.
            .filter(|c| !c.is_infra)
            .map(|c| {
                let name = c.names.first().cloned().unwrap_or_default();
                let found = Found {
                    id: c.id,
                    name: &name,
                    sandbox_id: c.pod,
                    image: c.image,
                    state: &c.state,
                    created: &c.created,
                    labels: c.labels,
                };
                container(found)
            })
            .collect())
    }

    fn get_container_status(&self, container_id: String) -> Result<ContainerStatus, RuntimeError> {
        let c: InspectedContainer = self.client.get(&format!("container {container_id}"), &format!("/containers/{container_id}/json"))?;
        let state = c.state;
        let found = Found {
            id: c.id,
            name: &c.name,
            sandbox_id: c.pod,
            image: c.image_name,
            state: &state.status,
            created: &c.created,
            labels: c.config.labels,
        };
        let listed = container(found);
        let reason = match (listed.state, state.oom_killed, state.exit_code) {
            (ContainerState::Exited, true, _) => "OOMKilled",
            (ContainerState::Exited, false, 0) => "Completed",
            (ContainerState::Exited, false, _) => "Error",
            _ => "",
        };
        Ok(ContainerStatus {
            container: listed,
            started_at: parse_time(&state.started_at),
            finished_at: parse_time(&state.finished_at),
            exit_code: state.exit_code,
            reason: reason.into(),
            message: state.error,
        })
    }

    fn exec_sync(&self, container_id: String, cmd: Vec<String>, _timeout_ms: u64) -> Result<ExecResult, RuntimeError> {
        // The agent bounds the whole call by the timeout: the exec's answer only comes when
        // the command ends, and an adapter cannot interrupt a blocking read.
        let what = format!("exec in container {container_id}");
        let body = json!({"AttachStdout": true, "AttachStderr": true, "Cmd": cmd});
        let created: Value = decode(&what, &self.post(&what, &format!("/containers/{container_id}/exec"), Some(&body))?)?;
        let exec = created["Id"].as_str().ok_or_else(|| RuntimeError::Call(format!("{what}: Podman returned no id")))?;
        let output = self.post(&what, &format!("/exec/{exec}/start"), Some(&json!({"Detach": false})))?;
        let (_, mut stdout, mut stderr) = demux(&output.body);
        stdout.truncate(EXEC_OUTPUT_LIMIT);
        stderr.truncate(EXEC_OUTPUT_LIMIT);
        let inspected: Value = self.client.get(&what, &format!("/exec/{exec}/json"))?;
        let exit_code = inspected["ExitCode"].as_i64().and_then(|c| i32::try_from(c).ok()).unwrap_or(-1);
        Ok(ExecResult { stdout, stderr, exit_code })
    }

    fn logs(&self, container_id: String, options: LogOptions) -> Result<Vec<u8>, RuntimeError> {
        let mut path = format!("/containers/{container_id}/logs?stdout=true&stderr=true&timestamps={}", options.timestamps);
        if let Some(tail) = options.tail_lines {
            path.push_str(&format!("&tail={tail}"));
        }
        if let Some(since) = options.since {
            path.push_str(&format!("&since={}", since.div_euclid(1_000_000_000)));
        }
        let response = ok(&format!("logs of container {container_id}"), self.client.send("GET", &path, None)?)?;
        Ok(demux(&response.body).0)
    }

    fn image_status(&self, image: String) -> Result<Option<Image>, RuntimeError> {
        let reference = qualify(&image);
        let response = self.client.send("GET", &format!("/images/{reference}/json"), None)?;
        if response.status == 404 {
            return Ok(None);
        }
        let what = format!("image {reference}");
        let found: Value = decode(&what, &ok(&what, response)?)?;
        Ok(Some(Image { id: found["Id"].as_str().unwrap_or_default().to_owned(), size: found["Size"].as_u64().unwrap_or_default() }))
    }

    fn pull_image(&self, image: String) -> Result<String, RuntimeError> {
        let reference = qualify(&image);
        let response = self
            .client
            .send("POST", &format!("/images/pull?reference={}", percent_encode(&reference)), None)
            .and_then(|r| ok(&format!("pulling {reference}"), r))
            .map_err(|e| RuntimeError::ImagePull(message(e)))?;
        // A failed pull is still a 200: the error is one of the streamed progress objects.
        for line in response.body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            if let Ok(progress) = serde_json::from_slice::<Value>(line)
                && let Some(error) = progress["error"].as_str()
            {
                return Err(RuntimeError::ImagePull(error.to_owned()));
            }
        }
        Ok(reference)
    }
}
