//! The runtime interface's records to Podman's specs and back: object names, labels, times,
//! image references, and the multiplexed output of logs and execs. Pure, so tested natively.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Value, json};
use staticlet_plugin_sdk::runtime::{
    Container, ContainerConfig, ContainerMetadata, ContainerState, MountPropagation, Protocol, RuntimeError, Sandbox, SandboxConfig,
    SandboxMetadata, SandboxState,
};

/// The label prefix that carries an annotation, as the Docker runtime stores them: Podman pods
/// and containers have labels only.
const ANNOTATION_PREFIX: &str = "annotation.";

/// Labels with the annotations folded in as `annotation.<key>` labels.
fn labels_with_annotations(labels: &[(String, String)], annotations: &[(String, String)]) -> BTreeMap<String, String> {
    let mut all: BTreeMap<String, String> = labels.iter().cloned().collect();
    all.extend(annotations.iter().map(|(k, v)| (format!("{ANNOTATION_PREFIX}{k}"), v.clone())));
    all
}

/// Key and value pairs, as the runtime interface carries labels and annotations.
type Pairs = Vec<(String, String)>;

/// Podman's labels split back into labels and annotations.
fn split_labels(all: Option<BTreeMap<String, String>>) -> (Pairs, Pairs) {
    let mut labels = Vec::new();
    let mut annotations = Vec::new();
    for (key, value) in all.unwrap_or_default() {
        match key.strip_prefix(ANNOTATION_PREFIX) {
            Some(annotation) => annotations.push((annotation.to_owned(), value)),
            None => labels.push((key, value)),
        }
    }
    (labels, annotations)
}

/// The kubelet's sandbox name, given to the Podman pod: `k8s_POD_<pod>_<namespace>_<uid>_<attempt>`.
pub fn sandbox_name(meta: &SandboxMetadata) -> String {
    format!("k8s_POD_{}_{}_{}_{}", meta.name, meta.namespace, meta.uid, meta.attempt)
}

/// The kubelet's container name: `k8s_<container>_<pod>_<namespace>_<uid>_<attempt>`.
pub fn container_name(container: &ContainerMetadata, pod: &SandboxMetadata) -> String {
    format!("k8s_{}_{}_{}_{}_{}", container.name, pod.name, pod.namespace, pod.uid, container.attempt)
}

/// A kubelet-style name parsed back, as the Docker runtime parses it: (container name or `POD`,
/// the pod's metadata with the name's attempt). Pod, namespace and container names are DNS
/// labels and hold no `_`; the UID is whatever lies between the namespace and the attempt.
fn parse_name(name: &str) -> Option<(&str, SandboxMetadata)> {
    let rest = name.trim_start_matches('/').strip_prefix("k8s_")?;
    let mut parts = rest.splitn(4, '_');
    let (first, pod, namespace) = (parts.next()?, parts.next()?, parts.next()?);
    let (uid, attempt) = parts.next()?.rsplit_once('_')?;
    let meta =
        SandboxMetadata { name: pod.to_owned(), namespace: namespace.to_owned(), uid: uid.to_owned(), attempt: attempt.parse().ok()? };
    Some((first, meta))
}

/// The `filters` query value of Podman's list calls for a label filter, `{"label":["k=v",...]}`
/// URL-encoded: Podman keeps the objects carrying every pair. `None` when there is nothing to
/// filter by.
pub fn label_filter(filter: &[(String, String)]) -> Option<String> {
    let labels: Vec<String> = filter.iter().map(|(k, v)| format!("{k}={v}")).collect();
    (!labels.is_empty()).then(|| percent_encode(&json!({ "label": labels }).to_string()))
}

/// Encodes everything but unreserved characters, for a query value.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A fully qualified reference, as Docker resolves one (`nginx` is
/// `docker.io/library/nginx:latest`): Podman would otherwise resolve a short name through its
/// registries.conf, or ask which registry to use, and nobody answers on a node.
pub fn qualify(image: &str) -> String {
    let (first, rest) = match image.split_once('/') {
        Some((first, rest)) => (first, Some(rest)),
        None => (image, None),
    };
    let registry_given = rest.is_some() && (first.contains('.') || first.contains(':') || first == "localhost");
    let mut reference = match (registry_given, rest) {
        (true, _) => image.to_owned(),
        (false, Some(_)) => format!("docker.io/{image}"),
        (false, None) => format!("docker.io/library/{image}"),
    };
    let last = reference.rsplit('/').next().unwrap_or_default();
    if !last.contains(':') && !last.contains('@') {
        reference.push_str(":latest");
    }
    reference
}

/// Nanoseconds since the epoch of an RFC 3339 time (`2026-11-23T13:20:06.123456789+01:00`);
/// `None` for Go's zero time, which Podman writes for "never".
pub fn parse_time(text: &str) -> Option<i64> {
    let (date, time) = text.split_once('T')?;
    let mut ymd = date.split('-').map(|p| p.parse::<i64>().ok());
    let (year, month, day) = (ymd.next()??, ymd.next()??, ymd.next()??);
    if year <= 1 {
        return None;
    }
    let (clock, offset_seconds) = match time.find(['Z', 'z', '+', '-']) {
        Some(i) => {
            let zone = &time[i..];
            let offset = if zone.eq_ignore_ascii_case("z") {
                0
            } else {
                let sign = if zone.starts_with('-') { -1 } else { 1 };
                let (h, m) = zone[1..].split_once(':')?;
                sign * (h.parse::<i64>().ok()? * 3600 + m.parse::<i64>().ok()? * 60)
            };
            (&time[..i], offset)
        }
        None => (time, 0),
    };
    let (whole, fraction) = clock.split_once('.').unwrap_or((clock, ""));
    let mut hms = whole.split(':').map(|p| p.parse::<i64>().ok());
    let (h, m, s) = (hms.next()??, hms.next()??, hms.next()??);
    let nanos: i64 = format!("{:0<9}", &fraction[..fraction.len().min(9)]).parse().ok()?;
    let seconds = days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + s - offset_seconds;
    Some(seconds * 1_000_000_000 + nanos)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A time as the `since` of Podman's logs call: Unix seconds with their fraction.
pub fn unix_seconds(ns: i64) -> String {
    format!("{}.{:09}", ns.div_euclid(1_000_000_000), ns.rem_euclid(1_000_000_000))
}

/// Output in Docker's multiplexed framing (an 8-byte header per frame: the stream, three zero
/// bytes, then the length big-endian), as Podman sends logs and exec output, even without a
/// TTY. Each frame's payload goes to `sink` with its stream (1 stdout, 2 stderr); bytes that do
/// not frame go to stdout as they are.
pub fn demux(mut data: &[u8], mut sink: impl FnMut(u8, &[u8])) {
    while data.len() >= 8 && data[0] <= 2 && data[1..4] == [0, 0, 0] {
        let len = u32::from_be_bytes([data[4], data[5], data[6], data[7]]) as usize;
        let end = (8 + len).min(data.len());
        sink(data[0], &data[8..end]);
        data = &data[end..];
    }
    if !data.is_empty() {
        sink(1, data);
    }
}

/// The Podman pod spec (`POST /pods/create`) of a sandbox.
pub fn pod_spec(config: &SandboxConfig) -> Value {
    let mut spec = json!({
        "name": sandbox_name(&config.metadata),
        "labels": labels_with_annotations(&config.labels, &config.annotations),
        "hostadd": config.host_aliases.iter().flat_map(|(ip, names)| names.iter().map(move |n| format!("{n}:{ip}"))).collect::<Vec<_>>(),
    });
    if config.host_network {
        // The host's name as well, as the kubelet gives a pod on the host network; published
        // ports are the host's own there, and Podman refuses port mappings on it.
        spec["netns"] = json!({"nsmode": "host"});
        spec["utsns"] = json!({"nsmode": "host"});
    } else {
        if !config.hostname.is_empty() {
            spec["hostname"] = json!(config.hostname);
        }
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
        spec["portmappings"] = json!(ports);
    }
    if let Some(dns) = &config.dns_config {
        for (key, values) in [("dns_server", &dns.servers), ("dns_search", &dns.searches), ("dns_option", &dns.options)] {
            if !values.is_empty() {
                spec[key] = json!(values);
            }
        }
    }
    spec
}

/// The Podman container spec (`POST /containers/create`) of a container in pod `sandbox_id`.
///
/// # Errors
///
/// A group without a user, which the CRI says a runtime must refuse (as the Docker runtime does).
pub fn container_spec(sandbox_id: &str, config: &ContainerConfig, sandbox: &SandboxConfig) -> Result<Value, RuntimeError> {
    let security = &config.security;
    let env: BTreeMap<&str, &str> = config.envs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut spec = json!({
        "name": container_name(&config.metadata, &sandbox.metadata),
        "pod": sandbox_id,
        "image": qualify(&config.image),
        "env": env,
        "labels": labels_with_annotations(&config.labels, &config.annotations),
        "mounts": mounts(config),
        "privileged": security.privileged,
        "read_only_filesystem": security.readonly_rootfs,
        "no_new_privileges": security.no_new_privs,
        "cap_add": security.add_capabilities,
        "cap_drop": security.drop_capabilities,
        "stdin": config.stdin,
        "terminal": config.tty,
    });
    // Kubernetes' command replaces the entrypoint and its args the command; a command alone
    // drops the image's command too, so an empty one is sent.
    if !config.command.is_empty() {
        spec["entrypoint"] = json!(config.command);
        spec["command"] = json!(config.args);
    } else if !config.args.is_empty() {
        spec["command"] = json!(config.args);
    }
    if let Some(dir) = &config.working_dir {
        spec["work_dir"] = json!(dir);
    }
    if let Some(limits) = resource_limits(config) {
        spec["resource_limits"] = limits;
    }
    match (security.run_as_user, security.run_as_group) {
        (Some(user), Some(group)) => spec["user"] = json!(format!("{user}:{group}")),
        (Some(user), None) => spec["user"] = json!(user.to_string()),
        (None, Some(_)) => {
            return Err(RuntimeError::Call(
                "runAsGroup is set without runAsUser; set both (the image's user name cannot be combined with a group)".into(),
            ));
        }
        (None, None) => {}
    }
    if !security.supplemental_groups.is_empty() {
        spec["groups"] = json!(security.supplemental_groups.iter().map(ToString::to_string).collect::<Vec<_>>());
    }
    // The pod shares its network, IPC and UTS namespaces with its containers; the host's PID
    // and IPC namespaces are joined per container.
    if sandbox.host_pid {
        spec["pidns"] = json!({"nsmode": "host"});
    }
    if sandbox.host_ipc {
        spec["ipcns"] = json!({"nsmode": "host"});
    }
    Ok(spec)
}

/// Podman's `resource_limits` (the OCI `LinuxResources`): CPU shares, quota and period, and a
/// memory limit with no swap beyond it, as the kubelet sets them; `None` when nothing is limited.
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

/// Every mount as a bind mount: `hostPath` and `emptyDir` volumes both arrive as host paths.
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

/// A pod as `GET /pods/json` lists it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListedPod {
    id: String,
    name: String,
    created: String,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    infra_id: String,
    #[serde(default)]
    containers: Option<Vec<ListedPodContainer>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListedPodContainer {
    id: String,
    status: String,
}

/// A pod as `GET /pods/{id}/json` inspects it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct InspectedPod {
    id: String,
    name: String,
    created: String,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
    /// The container holding the pod's namespaces.
    #[serde(rename = "InfraContainerID", default)]
    pub infra_container_id: String,
    #[serde(default)]
    containers: Option<Vec<InspectedPodContainer>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InspectedPodContainer {
    id: String,
    state: String,
}

/// A container as `GET /containers/json` lists it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListedContainer {
    id: String,
    names: Vec<String>,
    image: String,
    state: String,
    created: String,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pod: String,
    /// Whether it is a pod's infra container, which is the sandbox rather than a container.
    #[serde(default)]
    pub is_infra: bool,
}

/// A container as `GET /containers/{id}/json` inspects it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct InspectedContainer {
    id: String,
    name: String,
    created: String,
    image_name: String,
    state: InspectedState,
    config: InspectedConfig,
    #[serde(default)]
    pod: String,
    /// Its network namespace's addresses.
    #[serde(default)]
    pub network_settings: Option<NetworkSettings>,
}

/// A container's state, as inspected.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct InspectedState {
    status: String,
    /// The exit code of its last run.
    pub exit_code: i32,
    /// When it last started; Go's zero time when never.
    pub started_at: String,
    /// When it last exited; Go's zero time when never.
    pub finished_at: String,
    /// Whether the kernel's OOM killer ended it.
    #[serde(rename = "OOMKilled", default)]
    pub oom_killed: bool,
    /// Why it could not start, when it could not.
    #[serde(default)]
    pub error: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InspectedConfig {
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
}

/// A container's network settings, as inspected.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkSettings {
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

impl NetworkSettings {
    /// The address of its network namespace; `None` on the host's network, which has none of
    /// its own.
    pub fn ip(self) -> Option<String> {
        let from_networks = self.networks.into_iter().flatten().map(|(_, net)| net.ip_address).find(|ip| !ip.is_empty());
        Some(self.ip_address).filter(|ip| !ip.is_empty()).or(from_networks)
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

/// Ready while the infra container, which holds the pod's namespaces, runs. Podman's own pod
/// status says "Degraded" as soon as one app container is not running, which says nothing
/// about the sandbox.
fn sandbox_state(infra_running: bool) -> SandboxState {
    if infra_running { SandboxState::Ready } else { SandboxState::NotReady }
}

fn sandbox(id: String, name: &str, created: &str, labels: Option<BTreeMap<String, String>>, infra_running: bool) -> Option<Sandbox> {
    let (_, metadata) = parse_name(name)?;
    let (labels, annotations) = split_labels(labels);
    Some(Sandbox {
        id,
        metadata,
        state: sandbox_state(infra_running),
        created_at: parse_time(created).unwrap_or_default(),
        labels,
        annotations,
    })
}

impl ListedPod {
    /// The sandbox it is; `None` for a pod not named as a sandbox.
    pub fn into_sandbox(self) -> Option<Sandbox> {
        let infra_running = self.containers.iter().flatten().any(|c| c.id == self.infra_id && c.status == "running");
        sandbox(self.id, &self.name, &self.created, self.labels, infra_running)
    }
}

impl InspectedPod {
    /// The ids of its running containers, the infra container last: it holds the namespaces
    /// the others run in.
    pub fn running_containers(&self) -> Vec<String> {
        let mut running: Vec<&InspectedPodContainer> =
            self.containers.iter().flatten().filter(|c| container_state(&c.state) == ContainerState::Running).collect();
        running.sort_by_key(|c| c.id == self.infra_container_id);
        running.into_iter().map(|c| c.id.clone()).collect()
    }

    /// The sandbox it is; `None` for a pod not named as a sandbox.
    pub fn into_sandbox(self) -> Option<Sandbox> {
        let infra_running = self.containers.iter().flatten().any(|c| c.id == self.infra_container_id && c.state == "running");
        sandbox(self.id, &self.name, &self.created, self.labels, infra_running)
    }
}

fn container(
    id: String,
    name: &str,
    sandbox_id: String,
    image: String,
    state: &str,
    created: &str,
    labels: Option<BTreeMap<String, String>>,
) -> Option<Container> {
    let (container, pod) = parse_name(name)?;
    let (labels, annotations) = split_labels(labels);
    Some(Container {
        id,
        sandbox_id,
        metadata: ContainerMetadata { name: container.to_owned(), attempt: pod.attempt },
        image,
        state: container_state(state),
        created_at: parse_time(created).unwrap_or_default(),
        labels,
        annotations,
    })
}

impl ListedContainer {
    /// The container it is; `None` for one not named as a pod's container.
    pub fn into_container(self) -> Option<Container> {
        let ListedContainer { id, names, image, state, created, labels, pod, .. } = self;
        container(id, names.first()?, pod, image, &state, &created, labels)
    }
}

impl InspectedContainer {
    /// The container it is, and its state; `None` for one not named as a pod's container.
    pub fn into_container(self) -> Option<(Container, InspectedState)> {
        let listed = container(self.id, &self.name, self.pod, self.image_name, &self.state.status, &self.created, self.config.labels)?;
        Some((listed, self.state))
    }
}

#[cfg(test)]
mod tests {
    use staticlet_plugin_sdk::runtime::{DnsConfig, PortMapping, Resources, Security};

    use super::*;

    fn sandbox_config() -> SandboxConfig {
        SandboxConfig {
            metadata: SandboxMetadata { name: "web-n1".into(), namespace: "default".into(), uid: "u1".into(), attempt: 2 },
            hostname: "web-n1".into(),
            log_directory: String::new(),
            dns_config: Some(DnsConfig { servers: vec!["10.0.0.10".into()], searches: vec![], options: vec!["ndots:2".into()] }),
            port_mappings: vec![PortMapping { protocol: Protocol::Udp, container_port: 53, host_port: 5353, host_ip: "127.0.0.1".into() }],
            labels: vec![("io.staticlet.node".into(), "n1".into())],
            annotations: vec![("kubernetes.io/config.hash".into(), "h".into())],
            host_network: false,
            host_pid: false,
            host_ipc: false,
            host_aliases: vec![("10.1.2.3".into(), vec!["db".into(), "db.local".into()])],
        }
    }

    fn container_config() -> ContainerConfig {
        ContainerConfig {
            metadata: ContainerMetadata { name: "app".into(), attempt: 3 },
            image: "busybox".into(),
            command: vec!["sleep".into()],
            args: vec![],
            working_dir: None,
            envs: vec![("A".into(), "1".into())],
            mounts: vec![],
            labels: vec![],
            annotations: vec![],
            resources: Resources { cpu_period: 100_000, cpu_quota: 50_000, cpu_shares: 512, memory_limit_in_bytes: 0 },
            security: Security {
                privileged: false,
                run_as_user: None,
                run_as_group: None,
                supplemental_groups: vec![],
                readonly_rootfs: false,
                add_capabilities: vec![],
                drop_capabilities: vec![],
                no_new_privs: false,
            },
            stdin: false,
            tty: false,
        }
    }

    #[test]
    fn names_parse_back_as_docker_parses_them() {
        let pod = sandbox_config().metadata;
        let name = sandbox_name(&pod);
        assert_eq!(name, "k8s_POD_web-n1_default_u1_2");
        assert_eq!(parse_name(&name), Some(("POD", pod.clone())));
        let app = ContainerMetadata { name: "app".into(), attempt: 3 };
        let name = container_name(&app, &pod);
        assert_eq!(name, "k8s_app_web-n1_default_u1_3");
        assert_eq!(parse_name(&name).map(|(first, parsed)| (first, parsed.attempt)), Some(("app", 3)));
        assert_eq!(parse_name("/k8s_POD_web_kube-system_a_b_0").unwrap().1.uid, "a_b");
        assert!(parse_name("k8s_app_web_default_u1_x").is_none());
        assert!(parse_name("0123abcd-infra").is_none());
    }

    #[test]
    fn annotations_travel_as_labels() {
        let all = labels_with_annotations(&[("a".into(), "1".into())], &[("kubernetes.io/config.hash".into(), "h".into())]);
        assert_eq!(all.get("annotation.kubernetes.io/config.hash").map(String::as_str), Some("h"));
        let (labels, annotations) = split_labels(Some(all));
        assert_eq!(labels, [("a".to_owned(), "1".to_owned())]);
        assert_eq!(annotations, [("kubernetes.io/config.hash".to_owned(), "h".to_owned())]);
    }

    #[test]
    fn filters_are_encoded_json() {
        let filter = [("io.staticlet.node".to_owned(), "n1".to_owned()), ("a".to_owned(), "b c".to_owned())];
        assert_eq!(label_filter(&filter).unwrap(), "%7B%22label%22%3A%5B%22io.staticlet.node%3Dn1%22%2C%22a%3Db%20c%22%5D%7D");
        assert_eq!(label_filter(&[]), None);
    }

    #[test]
    fn images_are_qualified_as_docker_would() {
        assert_eq!(qualify("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(qualify("nginx:1.27"), "docker.io/library/nginx:1.27");
        assert_eq!(qualify("grafana/agent:v1"), "docker.io/grafana/agent:v1");
        assert_eq!(qualify("127.0.0.1:5000/app"), "127.0.0.1:5000/app:latest");
        assert_eq!(qualify("staticlet.test/busybox:1"), "staticlet.test/busybox:1");
        assert_eq!(qualify("localhost/app@sha256:ab"), "localhost/app@sha256:ab");
    }

    #[test]
    fn times_parse_with_fractions_and_offsets() {
        assert_eq!(parse_time("1970-01-01T00:00:01Z"), Some(1_000_000_000));
        assert_eq!(parse_time("2026-11-23T13:20:06.5+01:00"), parse_time("2026-11-23T12:20:06.500Z"));
        assert_eq!(parse_time("2000-03-01T00:00:00Z"), Some(951_868_800_000_000_000));
        assert_eq!(parse_time("0001-01-01T00:00:00Z"), None);
        assert_eq!(unix_seconds(1_500_000_000_250_000_000), "1500000000.250000000");
    }

    #[test]
    fn multiplexed_output_is_split_by_stream_in_order() {
        let mut data = vec![1, 0, 0, 0, 0, 0, 0, 3];
        data.extend_from_slice(b"out");
        data.extend_from_slice(&[2, 0, 0, 0, 0, 0, 0, 3]);
        data.extend_from_slice(b"err");
        data.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 9]);
        data.extend_from_slice(b"cut");
        let mut frames = Vec::new();
        demux(&data, |stream, bytes| frames.push((stream, bytes.to_vec())));
        assert_eq!(frames, [(1, b"out".to_vec()), (2, b"err".to_vec()), (1, b"cut".to_vec())]);
        let mut plain = Vec::new();
        demux(b"plain text", |stream, bytes| plain.push((stream, bytes.to_vec())));
        assert_eq!(plain, [(1, b"plain text".to_vec())]);
    }

    #[test]
    fn a_pod_spec_publishes_ports_off_the_host_network_only() {
        let mut config = sandbox_config();
        let spec = pod_spec(&config);
        assert_eq!(spec["name"], "k8s_POD_web-n1_default_u1_2");
        assert_eq!(spec["hostname"], "web-n1");
        assert_eq!(spec["portmappings"][0], json!({"container_port": 53, "host_port": 5353, "host_ip": "127.0.0.1", "protocol": "udp"}));
        assert_eq!(spec["hostadd"], json!(["db:10.1.2.3", "db.local:10.1.2.3"]));
        assert_eq!(spec["labels"]["annotation.kubernetes.io/config.hash"], "h");
        assert_eq!(spec["dns_server"], json!(["10.0.0.10"]));
        assert!(spec.get("dns_search").is_none());

        config.host_network = true;
        let spec = pod_spec(&config);
        assert_eq!(spec["netns"], json!({"nsmode": "host"}));
        assert!(spec.get("portmappings").is_none() && spec.get("hostname").is_none());
    }

    #[test]
    fn a_container_spec_follows_kubernetes_command_and_args() {
        let sandbox = sandbox_config();
        let mut config = container_config();
        let spec = container_spec("pod1", &config, &sandbox).unwrap();
        assert_eq!(spec["name"], "k8s_app_web-n1_default_u1_3");
        assert_eq!(spec["image"], "docker.io/library/busybox:latest");
        assert_eq!((&spec["entrypoint"], &spec["command"]), (&json!(["sleep"]), &json!([])));
        assert_eq!(spec["resource_limits"], json!({"cpu": {"shares": 512, "quota": 50_000, "period": 100_000}}));
        assert!(spec.get("user").is_none() && spec.get("pidns").is_none());

        config.security.run_as_group = Some(5);
        assert!(container_spec("pod1", &config, &sandbox).is_err());
        config.security.run_as_user = Some(1000);
        assert_eq!(container_spec("pod1", &config, &sandbox).unwrap()["user"], "1000:5");
    }
}
