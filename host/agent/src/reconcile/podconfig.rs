//! A static pod → the runtime's sandbox and container configs, as the kubelet's kuberuntime
//! builds them: labels, annotations, ports, DNS, environment (with `$(VAR)` expansion and the
//! downward API's `fieldRef`), and mounts for `hostPath` and `emptyDir` volumes.

use std::collections::{BTreeMap, HashMap};
use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, EnvVar, PodSpec, Volume};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use staticlet_model::StaticPod;
use staticlet_model::quantity::parse_quantity;
use staticlet_model::status::is_sidecar;
use staticlet_runtime::{
    ContainerConfig, ContainerMetadata, DnsConfig, LinuxContainerResources, LinuxContainerSecurity, Mount, MountPropagation,
    PodSandboxConfig, PodSandboxMetadata, PortMapping, Protocol,
};

use crate::state::Layout;
use staticlet_runtime::labels::*;

/// Why a container could not be configured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A `hostPath` volume's `type` check failed.
    #[error("hostPath volume {volume:?}: {message}")]
    HostPath {
        /// The volume's name.
        volume: String,
        /// What is wrong with the path.
        message: String,
    },
    /// A volume could not be prepared.
    #[error("volume {volume:?}: {message}")]
    Volume {
        /// The volume's name.
        volume: String,
        /// What went wrong.
        message: String,
    },
    /// An environment variable could not be resolved.
    #[error("env {name:?}: {message}")]
    Env {
        /// The variable.
        name: String,
        /// Why.
        message: String,
    },
}

fn spec(pod: &StaticPod) -> &PodSpec {
    pod.pod.spec.as_ref().expect("defaulted pods have a spec")
}

/// Whose a runtime object is: the node's agent, and the handler that created it.
#[derive(Debug, Clone, Copy)]
pub struct Owner<'a> {
    /// The node's name.
    pub node: &'a str,
    /// The runtime handler the pod runs on.
    pub handler: &'a str,
}

/// The labels that find every runtime object of a pod.
pub fn pod_labels(pod: &StaticPod, owner: Owner<'_>) -> BTreeMap<String, String> {
    BTreeMap::from([
        (POD_NAME.to_owned(), pod.name().to_owned()),
        (POD_NAMESPACE.to_owned(), pod.namespace().to_owned()),
        (POD_UID.to_owned(), pod.uid.clone()),
        (NODE.to_owned(), owner.node.to_owned()),
        (HANDLER.to_owned(), owner.handler.to_owned()),
    ])
}

fn grace_seconds(pod: &StaticPod) -> i64 {
    spec(pod).termination_grace_period_seconds.unwrap_or(30)
}

/// The sandbox config for `attempt`.
pub fn sandbox_config(pod: &StaticPod, attempt: u32, owner: Owner<'_>) -> PodSandboxConfig {
    let spec = spec(pod);
    let mut labels = pod.pod.metadata.labels.clone().unwrap_or_default();
    labels.extend(pod_labels(pod, owner));
    labels.insert(SANDBOX_HASH.to_owned(), pod.sandbox_hash.clone());
    let mut annotations = pod.pod.metadata.annotations.clone().unwrap_or_default();
    annotations.insert(GRACE_PERIOD.to_owned(), grace_seconds(pod).to_string());

    let host_network = spec.host_network.unwrap_or(false);
    let port_mappings = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .flat_map(|c| c.ports.iter().flatten())
        .filter(|p| p.host_port.unwrap_or(0) > 0)
        .map(|p| PortMapping {
            protocol: match p.protocol.as_deref() {
                Some("UDP") => Protocol::Udp,
                Some("SCTP") => Protocol::Sctp,
                _ => Protocol::Tcp,
            },
            container_port: p.container_port as u16,
            host_port: p.host_port.unwrap_or(0) as u16,
            host_ip: p.host_ip.clone().unwrap_or_default(),
        })
        .collect();
    let hostname = spec.hostname.clone().unwrap_or_else(|| truncate_hostname(pod.name()));
    PodSandboxConfig {
        metadata: PodSandboxMetadata { name: pod.name().to_owned(), namespace: pod.namespace().to_owned(), uid: pod.uid.clone(), attempt },
        hostname,
        log_directory: PathBuf::from(format!("/var/log/pods/{}_{}_{}", pod.namespace(), pod.name(), pod.uid)),
        dns_config: dns_config(spec),
        port_mappings,
        labels,
        annotations,
        host_network,
        host_pid: spec.host_pid.unwrap_or(false),
        host_ipc: spec.host_ipc.unwrap_or(false),
        host_aliases: spec.host_aliases.iter().flatten().map(|a| (a.ip.clone(), a.hostnames.clone().unwrap_or_default())).collect(),
    }
}

/// Hostnames are DNS labels: at most 63 characters, not ending in `-` or `.`.
fn truncate_hostname(name: &str) -> String {
    let cut = &name[..name.len().min(63)];
    cut.trim_end_matches(['-', '.']).to_owned()
}

/// No cluster DNS exists on a standalone node, so `ClusterFirst` falls back to the host's
/// resolver as the kubelet does without `--cluster-dns`; `None` uses `dnsConfig` alone.
fn dns_config(spec: &PodSpec) -> Option<DnsConfig> {
    let config = spec.dns_config.as_ref();
    if spec.dns_policy.as_deref() != Some("None") && config.is_none() {
        return None;
    }
    let config = config.cloned().unwrap_or_default();
    Some(DnsConfig {
        servers: config.nameservers.unwrap_or_default(),
        searches: config.searches.unwrap_or_default(),
        options: config
            .options
            .unwrap_or_default()
            .into_iter()
            .filter_map(|o| {
                Some(match o.value {
                    Some(v) => format!("{}:{v}", o.name?),
                    None => o.name?,
                })
            })
            .collect(),
    })
}

/// Looks a container (init or app) up by name.
pub fn find_container<'a>(pod: &'a StaticPod, name: &str) -> Option<&'a Container> {
    let spec = spec(pod);
    spec.init_containers.iter().flatten().chain(&spec.containers).find(|c| c.name == name)
}

/// The pod's and the node's addresses, for `status.podIP` and `status.hostIP` references.
#[derive(Debug, Clone, Copy)]
pub struct Addresses<'a> {
    /// The pod's address, once its sandbox has one.
    pub pod_ip: Option<&'a str>,
    /// The node's address.
    pub host_ip: &'a str,
}

/// The container config for `name` at `attempt`.
///
/// # Errors
///
/// [`ConfigError`] naming the volume or variable that could not be prepared.
pub fn container_config(
    pod: &StaticPod,
    container: &Container,
    attempt: u32,
    owner: Owner<'_>,
    layout: &Layout,
    addresses: Addresses<'_>,
) -> Result<ContainerConfig, ConfigError> {
    let mut labels = pod_labels(pod, owner);
    labels.insert(CONTAINER_NAME.to_owned(), container.name.clone());
    let mut annotations = container_annotations(pod, container, attempt);
    let envs = resolve_env(pod, container, owner.node, addresses)?;
    let lookup: HashMap<&str, &str> = envs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut mounts = mounts(pod, container, layout, &lookup)?;
    mounts.extend(termination_message_mount(pod, container, attempt, layout, &mut annotations)?);
    let expand_all = |list: &Option<Vec<String>>| list.iter().flatten().map(|s| expand(s, &lookup)).collect::<Vec<_>>();
    Ok(ContainerConfig {
        metadata: ContainerMetadata { name: container.name.clone(), attempt },
        image: container.image.clone().unwrap_or_default(),
        command: expand_all(&container.command),
        args: expand_all(&container.args),
        working_dir: container.working_dir.clone().filter(|w| !w.is_empty()),
        mounts,
        envs,
        labels,
        annotations,
        resources: resources(container),
        security: security(spec(pod), container),
        stdin: container.stdin.unwrap_or(false),
        tty: container.tty.unwrap_or(false),
    })
}

/// The annotations the agent reads back from the runtime: the spec hash and restart count,
/// and what stopping the container needs even once its manifest is gone (the grace period,
/// its role and init index for the stop order, its `preStop` hook and the ports the hook may
/// name).
fn container_annotations(pod: &StaticPod, container: &Container, attempt: u32) -> BTreeMap<String, String> {
    let mut annotations = BTreeMap::from([
        (CONTAINER_HASH.to_owned(), pod.container_hashes.get(&container.name).cloned().unwrap_or_default()),
        (RESTART_COUNT.to_owned(), attempt.to_string()),
        (GRACE_PERIOD.to_owned(), grace_seconds(pod).to_string()),
    ]);
    let init_index = spec(pod).init_containers.iter().flatten().position(|c| c.name == container.name);
    let role = match init_index {
        Some(_) if is_sidecar(container) => "sidecar",
        Some(_) => "init",
        None => "app",
    };
    annotations.insert(CONTAINER_ROLE.to_owned(), role.to_owned());
    if let Some(index) = init_index {
        annotations.insert(INIT_INDEX.to_owned(), index.to_string());
    }
    if let Some(pre_stop) = container.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref()) {
        annotations.insert(PRE_STOP_HANDLER.to_owned(), serde_json::to_string(pre_stop).expect("a preStop hook always serializes"));
    }
    if let Some(ports) = container.ports.as_ref().filter(|p| !p.is_empty()) {
        annotations.insert(CONTAINER_PORTS.to_owned(), serde_json::to_string(ports).expect("ports always serialize"));
    }
    annotations
}

/// The mount of the file the container writes its termination message to, when it has a
/// `terminationMessagePath`: the file is created on the host for this attempt, and the path
/// and policy are recorded in `annotations` for reading the message back.
fn termination_message_mount(
    pod: &StaticPod,
    container: &Container,
    attempt: u32,
    layout: &Layout,
    annotations: &mut BTreeMap<String, String>,
) -> Result<Option<Mount>, ConfigError> {
    let Some(path) = container.termination_message_path.as_deref().filter(|p| !p.is_empty()) else { return Ok(None) };
    let host_path = layout.termination_message(&pod.uid, &container.name, attempt);
    create_message_file(&host_path).map_err(|e| ConfigError::Volume {
        volume: "terminationMessagePath".into(),
        message: format!("creating {}: {e}", host_path.display()),
    })?;
    annotations.insert(TERMINATION_MESSAGE_PATH.to_owned(), path.to_owned());
    let policy = container.termination_message_policy.as_deref().unwrap_or("File");
    annotations.insert(TERMINATION_MESSAGE_POLICY.to_owned(), policy.to_owned());
    Ok(Some(Mount { container_path: path.to_owned(), host_path, readonly: false, propagation: MountPropagation::Private }))
}

/// The kubelet's CFS period.
const CPU_PERIOD_US: i64 = 100_000;
/// The kubelet's floor on CPU shares (`MilliCPUToShares`).
const MIN_CPU_SHARES: i64 = 2;
/// The kernel's floor on a CFS quota.
const MIN_CPU_QUOTA_US: i64 = 1_000;

/// `requests.cpu` as CPU shares, `limits.cpu` as a CFS quota and `limits.memory` as the memory
/// limit, computed as the kubelet computes them.
fn resources(container: &Container) -> LinuxContainerResources {
    let quantity =
        |map: Option<&BTreeMap<String, Quantity>>, name: &str| map.and_then(|m| m.get(name)).and_then(|q| parse_quantity(&q.0).ok());
    let resources = container.resources.as_ref();
    let limits = resources.and_then(|r| r.limits.as_ref());
    let requests = resources.and_then(|r| r.requests.as_ref());
    let cpu_request = quantity(requests, "cpu").map_or(0, |q| q.as_millis_ceil());
    let cpu_limit = quantity(limits, "cpu").map_or(0, |q| q.as_millis_ceil());
    let mut out = LinuxContainerResources {
        cpu_shares: (cpu_request * 1024 / 1000).max(MIN_CPU_SHARES),
        memory_limit_in_bytes: quantity(limits, "memory").map_or(0, |q| q.as_units_ceil()),
        ..Default::default()
    };
    if cpu_limit > 0 {
        out.cpu_period = CPU_PERIOD_US;
        out.cpu_quota = (cpu_limit * CPU_PERIOD_US / 1000).max(MIN_CPU_QUOTA_US);
    }
    out
}

/// The effective security settings: the container's own, with the pod's `runAsUser`,
/// `runAsGroup`, `supplementalGroups` and `fsGroup` as defaults, as the kubelet merges them.
fn security(spec: &PodSpec, container: &Container) -> LinuxContainerSecurity {
    let pod = spec.security_context.clone().unwrap_or_default();
    let own = container.security_context.clone().unwrap_or_default();
    let capabilities = own.capabilities.unwrap_or_default();
    let mut supplemental_groups = pod.supplemental_groups.unwrap_or_default();
    supplemental_groups.extend(pod.fs_group);
    LinuxContainerSecurity {
        privileged: own.privileged.unwrap_or(false),
        run_as_user: own.run_as_user.or(pod.run_as_user),
        run_as_group: own.run_as_group.or(pod.run_as_group),
        supplemental_groups,
        readonly_rootfs: own.read_only_root_filesystem.unwrap_or(false),
        add_capabilities: capabilities.add.unwrap_or_default(),
        drop_capabilities: capabilities.drop.unwrap_or_default(),
        no_new_privs: own.allow_privilege_escalation == Some(false),
    }
}

fn resolve_env(pod: &StaticPod, container: &Container, node: &str, addresses: Addresses<'_>) -> Result<Vec<(String, String)>, ConfigError> {
    let mut resolved: Vec<(String, String)> = Vec::new();
    for var in container.env.iter().flatten() {
        let value = env_value(pod, var, node, addresses, &resolved)?;
        match resolved.iter_mut().find(|(k, _)| *k == var.name) {
            Some(slot) => slot.1 = value,
            None => resolved.push((var.name.clone(), value)),
        }
    }
    Ok(resolved)
}

fn env_value(
    pod: &StaticPod,
    var: &EnvVar,
    node: &str,
    addresses: Addresses<'_>,
    earlier: &[(String, String)],
) -> Result<String, ConfigError> {
    let fail = |message: String| ConfigError::Env { name: var.name.clone(), message };
    let Some(from) = &var.value_from else {
        let lookup: HashMap<&str, &str> = earlier.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        return Ok(expand(var.value.as_deref().unwrap_or(""), &lookup));
    };
    let Some(field) = &from.field_ref else {
        return Err(fail("only fieldRef is supported in valueFrom on a static pod".into()));
    };
    let meta = &pod.pod.metadata;
    let path = field.field_path.as_str();
    let keyed = |prefix: &str, map: &Option<BTreeMap<String, String>>| {
        let key = path.strip_prefix(prefix)?.strip_suffix("']")?;
        Some(map.as_ref().and_then(|m| m.get(key)).cloned().unwrap_or_default())
    };
    let value = match path {
        "metadata.name" => pod.name().to_owned(),
        "metadata.namespace" => pod.namespace().to_owned(),
        "metadata.uid" => pod.uid.clone(),
        "spec.nodeName" => node.to_owned(),
        "spec.serviceAccountName" => String::new(),
        "status.podIP" | "status.podIPs" => addresses.pod_ip.unwrap_or_default().to_owned(),
        "status.hostIP" | "status.hostIPs" => addresses.host_ip.to_owned(),
        _ => keyed("metadata.labels['", &meta.labels)
            .or_else(|| keyed("metadata.annotations['", &meta.annotations))
            .ok_or_else(|| fail(format!("fieldRef {path:?} is not supported")))?,
    };
    Ok(value)
}

/// Kubernetes' `$(VAR)` expansion: defined references are replaced, `$$` escapes, undefined
/// references stay as written.
pub fn expand(input: &str, vars: &HashMap<&str, &str>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('(')
            && let Some(end) = body.find(')')
        {
            let name = &body[..end];
            match vars.get(name) {
                Some(value) => out.push_str(value),
                None => out.push_str(&rest[i..i + 2 + end + 1]),
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The container's mounts; a `subPathExpr` is expanded with the container's environment, as the
/// kubelet expands it, and then held to the same rules as a `subPath`.
fn mounts(pod: &StaticPod, container: &Container, layout: &Layout, env: &HashMap<&str, &str>) -> Result<Vec<Mount>, ConfigError> {
    let volumes: HashMap<&str, &Volume> = spec(pod).volumes.iter().flatten().map(|v| (v.name.as_str(), v)).collect();
    let mut mounts = Vec::new();
    for mount in container.volume_mounts.iter().flatten() {
        let Some(volume) = volumes.get(mount.name.as_str()) else { continue };
        let Some(base) = volume_path(pod, volume, layout)? else { continue };
        let sub = match (mount.sub_path.as_deref(), mount.sub_path_expr.as_deref()) {
            (Some(sub), _) if !sub.is_empty() => Some(sub.to_owned()),
            (_, Some(expr)) if !expr.is_empty() => Some(expand(expr, env)),
            _ => None,
        };
        let host_path = match sub {
            Some(sub) => sub_path(&base, &sub, &volume.name)?,
            None => base,
        };
        mounts.push(Mount {
            container_path: mount.mount_path.clone(),
            host_path,
            readonly: mount.read_only.unwrap_or(false),
            propagation: match mount.mount_propagation.as_deref() {
                Some("HostToContainer") => MountPropagation::HostToContainer,
                Some("Bidirectional") => MountPropagation::Bidirectional,
                _ => MountPropagation::Private,
            },
        });
    }
    Ok(mounts)
}

/// The host path backing a volume, prepared (created or checked) as its type requires.
fn volume_path(pod: &StaticPod, volume: &Volume, layout: &Layout) -> Result<Option<PathBuf>, ConfigError> {
    if let Some(host) = &volume.host_path {
        let path = PathBuf::from(&host.path);
        check_host_path(&path, host.type_.as_deref().unwrap_or(""))
            .map_err(|message| ConfigError::HostPath { volume: volume.name.clone(), message })?;
        return Ok(Some(path));
    }
    if volume.empty_dir.is_some() {
        let dir = layout.empty_dir(&pod.uid, &volume.name);
        std::fs::create_dir_all(&dir)
            .map_err(|e| ConfigError::Volume { volume: volume.name.clone(), message: format!("creating {}: {e}", dir.display()) })?;
        set_mode(&dir, 0o777);
        return Ok(Some(dir));
    }
    Ok(None)
}

/// An empty file the container's user can write whatever its user is, as the kubelet makes it.
fn create_message_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path.parent().expect("a message file has a directory"))?;
    std::fs::File::create(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))
}

/// An emptyDir is writable by whatever user the container runs as, as the kubelet makes it.
fn set_mode(dir: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode));
}

/// The kubelet's `hostPath.type` checks: `...OrCreate` creates, the others must already match.
fn check_host_path(path: &Path, kind: &str) -> Result<(), String> {
    use std::os::unix::fs::FileTypeExt;
    let meta = std::fs::metadata(path);
    let shown = path.display();
    match kind {
        "" => Ok(()),
        "DirectoryOrCreate" => match meta {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => Err(format!("{shown} exists and is not a directory")),
            Err(_) => std::fs::create_dir_all(path).map_err(|e| format!("creating directory {shown}: {e}")).map(|()| set_mode(path, 0o755)),
        },
        "FileOrCreate" => match meta {
            Ok(m) if m.is_file() => Ok(()),
            Ok(_) => Err(format!("{shown} exists and is not a file")),
            Err(_) => {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| format!("creating directory {}: {e}", parent.display()))?;
                }
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map(drop)
                    .map_err(|e| format!("creating file {shown}: {e}"))
            }
        },
        _ => {
            let meta = meta.map_err(|_| format!("{shown} does not exist (type {kind})"))?;
            let ft = meta.file_type();
            let ok = match kind {
                "Directory" => ft.is_dir(),
                "File" => ft.is_file(),
                "Socket" => ft.is_socket(),
                "CharDevice" => ft.is_char_device(),
                "BlockDevice" => ft.is_block_device(),
                _ => false,
            };
            if ok { Ok(()) } else { Err(format!("{shown} is not a {kind}")) }
        }
    }
}

/// Resolves a `subPath` inside a volume, refusing anything that would leave it (validation
/// already rejects `..` and absolute paths; a symlink inside the volume is caught here).
fn sub_path(base: &Path, sub: &str, volume: &str) -> Result<PathBuf, ConfigError> {
    let fail = |message: String| ConfigError::Volume { volume: volume.to_owned(), message };
    if Path::new(sub).components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(fail(format!("subPath {sub:?} must be a relative path without '..'")));
    }
    let path = base.join(sub);
    if !path.exists() {
        std::fs::create_dir_all(&path).map_err(|e| fail(format!("creating subPath {}: {e}", path.display())))?;
    }
    let real_base = base.canonicalize().map_err(|e| fail(e.to_string()))?;
    let real = path.canonicalize().map_err(|e| fail(e.to_string()))?;
    if !real.starts_with(&real_base) {
        return Err(fail(format!("subPath {sub:?} resolves outside the volume")));
    }
    Ok(real)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansion_follows_kubernetes() {
        let vars = HashMap::from([("A", "x"), ("B", "y")]);
        assert_eq!(expand("$(A)-$(B)", &vars), "x-y");
        assert_eq!(expand("$(C)", &vars), "$(C)");
        assert_eq!(expand("$$(A)", &vars), "$(A)");
        assert_eq!(expand("cost $5 $(A", &vars), "cost $5 $(A");
    }

    fn container(json: serde_json::Value) -> Container {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn resources_as_the_kubelet_computes_them() {
        let c = container(
            serde_json::json!({"name": "c", "resources": {"limits": {"cpu": "1500m", "memory": "64Mi"}, "requests": {"cpu": "250m"}}}),
        );
        let r = resources(&c);
        assert_eq!(
            r,
            LinuxContainerResources { cpu_period: 100_000, cpu_quota: 150_000, cpu_shares: 256, memory_limit_in_bytes: 67_108_864 }
        );
        assert_eq!(
            resources(&container(serde_json::json!({"name": "c"}))),
            LinuxContainerResources { cpu_shares: 2, ..Default::default() }
        );
        let tiny = resources(&container(serde_json::json!({"name": "c", "resources": {"limits": {"cpu": "1m"}}})));
        assert_eq!(tiny.cpu_quota, 1_000);
    }

    #[test]
    fn container_security_overrides_the_pods() {
        let spec: PodSpec = serde_json::from_value(serde_json::json!({
            "containers": [],
            "securityContext": {"runAsUser": 1000, "runAsGroup": 1000, "supplementalGroups": [5], "fsGroup": 2000}
        }))
        .unwrap();
        let c = container(serde_json::json!({"name": "c", "securityContext": {
            "runAsUser": 0, "readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false,
            "capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]}
        }}));
        let s = security(&spec, &c);
        assert_eq!(s.run_as_user, Some(0));
        assert_eq!(s.run_as_group, Some(1000));
        assert_eq!(s.supplemental_groups, vec![5, 2000]);
        assert!(s.readonly_rootfs && s.no_new_privs && !s.privileged);
        assert_eq!((s.add_capabilities, s.drop_capabilities), (vec!["NET_ADMIN".to_owned()], vec!["ALL".to_owned()]));
    }

    #[test]
    fn sub_paths_stay_inside() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("link")).unwrap();
        assert!(sub_path(dir.path(), "a/b", "v").unwrap().ends_with("a/b"));
        assert!(sub_path(dir.path(), "link", "v").is_err());
        assert!(sub_path(dir.path(), "../x", "v").is_err());
    }

    #[test]
    fn host_path_types() {
        let dir = tempfile::tempdir().unwrap();
        let new_dir = dir.path().join("d");
        check_host_path(&new_dir, "DirectoryOrCreate").unwrap();
        assert!(new_dir.is_dir());
        check_host_path(&new_dir, "Directory").unwrap();
        assert!(check_host_path(&new_dir, "File").is_err());
        assert!(check_host_path(&dir.path().join("missing"), "Directory").is_err());
        let file = dir.path().join("x/f");
        check_host_path(&file, "FileOrCreate").unwrap();
        assert!(file.is_file());
    }
}
