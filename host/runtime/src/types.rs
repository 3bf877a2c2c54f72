//! The runtime's vocabulary: configs going in, objects and statuses coming out.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::SystemTime;

/// Which pod a sandbox belongs to, and which incarnation of it this is.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodSandboxMetadata {
    /// The pod's name (`<name>-<node>` for a static pod).
    pub name: String,
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's UID.
    pub uid: String,
    /// Incremented each time the sandbox is recreated.
    pub attempt: u32,
}

/// A port published on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMapping {
    /// `TCP`, `UDP` or `SCTP`.
    pub protocol: Protocol,
    /// The port inside the pod.
    pub container_port: u16,
    /// The port on the host.
    pub host_port: u16,
    /// The host address to bind; empty for all.
    pub host_ip: String,
}

/// A transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Protocol {
    /// Lowercase, as Docker and iptables spell it.
    pub fn as_lower(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// Resolver settings for a pod (`dnsConfig`, or what `dnsPolicy` implies).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DnsConfig {
    /// Name servers.
    pub servers: Vec<String>,
    /// Search domains.
    pub searches: Vec<String>,
    /// Resolver options (`ndots:5`).
    pub options: Vec<String>,
}

/// Everything a runtime needs to create a sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodSandboxConfig {
    /// Which pod, which attempt.
    pub metadata: PodSandboxMetadata,
    /// The pod's hostname (ignored on the host network).
    pub hostname: String,
    /// Where the pod's container logs go, for runtimes that write log files.
    pub log_directory: PathBuf,
    /// Resolver settings; `None` uses the runtime's default (the host's).
    pub dns_config: Option<DnsConfig>,
    /// Ports to publish on the host.
    pub port_mappings: Vec<PortMapping>,
    /// Labels, returned by the list calls.
    pub labels: BTreeMap<String, String>,
    /// Annotations, returned by the list calls.
    pub annotations: BTreeMap<String, String>,
    /// Run in the host's network namespace.
    pub host_network: bool,
    /// Run in the host's PID namespace.
    pub host_pid: bool,
    /// Run in the host's IPC namespace.
    pub host_ipc: bool,
    /// Extra `/etc/hosts` entries: (IP, hostnames).
    pub host_aliases: Vec<(String, Vec<String>)>,
}

/// Whether a sandbox's namespaces are up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SandboxState {
    /// Running: containers can join it.
    Ready,
    /// Stopped or broken: the pod needs a new one.
    NotReady,
}

/// A sandbox, as a list call returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodSandbox {
    /// The runtime's ID.
    pub id: String,
    /// Which pod, which attempt.
    pub metadata: PodSandboxMetadata,
    /// Ready or not.
    pub state: SandboxState,
    /// When it was created.
    pub created_at: SystemTime,
    /// The labels it was created with.
    pub labels: BTreeMap<String, String>,
    /// The annotations it was created with.
    pub annotations: BTreeMap<String, String>,
}

/// A sandbox's detailed status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodSandboxStatus {
    /// The sandbox.
    pub sandbox: PodSandbox,
    /// The pod's IP address, when it has its own network namespace.
    pub ip: Option<String>,
}

/// Which container of the pod, and which incarnation.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContainerMetadata {
    /// The container's name in the pod spec.
    pub name: String,
    /// The restart count: 0 for the first run, incremented on each restart.
    pub attempt: u32,
}

/// How a mount propagates between host and container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MountPropagation {
    /// `None`: private.
    #[default]
    Private,
    /// `HostToContainer`: rslave.
    HostToContainer,
    /// `Bidirectional`: rshared.
    Bidirectional,
}

/// A host path mounted into a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Where it appears in the container.
    pub container_path: String,
    /// The path on the host.
    pub host_path: PathBuf,
    /// Mounted read-only.
    pub readonly: bool,
    /// Propagation mode.
    pub propagation: MountPropagation,
}

/// Everything a runtime needs to create a container.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContainerConfig {
    /// Which container, which attempt.
    pub metadata: ContainerMetadata,
    /// The image reference, already present.
    pub image: String,
    /// Overrides the image's entrypoint when non-empty.
    pub command: Vec<String>,
    /// Overrides the image's command when non-empty.
    pub args: Vec<String>,
    /// Working directory; `None` keeps the image's.
    pub working_dir: Option<String>,
    /// Environment variables, in order.
    pub envs: Vec<(String, String)>,
    /// Mounts.
    pub mounts: Vec<Mount>,
    /// Labels, returned by the list calls.
    pub labels: BTreeMap<String, String>,
    /// Annotations, returned by the list calls.
    pub annotations: BTreeMap<String, String>,
    /// cgroup limits.
    pub resources: LinuxContainerResources,
    /// Users, capabilities and privileges.
    pub security: LinuxContainerSecurity,
    /// Keep stdin open.
    pub stdin: bool,
    /// Allocate a TTY.
    pub tty: bool,
}

/// A container's cgroup limits, as the CRI's `LinuxContainerResources`. Zero means unset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LinuxContainerResources {
    /// CFS period in microseconds.
    pub cpu_period: i64,
    /// CFS quota in microseconds per period.
    pub cpu_quota: i64,
    /// Relative CPU weight.
    pub cpu_shares: i64,
    /// Memory limit in bytes.
    pub memory_limit_in_bytes: i64,
}

/// A container's security settings, as the CRI's `LinuxContainerSecurityContext`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LinuxContainerSecurity {
    /// Run privileged.
    pub privileged: bool,
    /// The UID to run as; `None` keeps the image's user.
    pub run_as_user: Option<i64>,
    /// The GID to run as.
    pub run_as_group: Option<i64>,
    /// Extra groups.
    pub supplemental_groups: Vec<i64>,
    /// Mount the root filesystem read-only.
    pub readonly_rootfs: bool,
    /// Capabilities to add (`NET_ADMIN`).
    pub add_capabilities: Vec<String>,
    /// Capabilities to drop (`ALL`, `NET_RAW`).
    pub drop_capabilities: Vec<String>,
    /// Set `no_new_privs`, as `allowPrivilegeEscalation: false` asks.
    pub no_new_privs: bool,
}

/// A container's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerState {
    /// Created, never started.
    Created,
    /// Running.
    Running,
    /// Exited.
    Exited,
    /// The runtime cannot say.
    Unknown,
}

/// A container, as a list call returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    /// The runtime's ID.
    pub id: String,
    /// The sandbox it belongs to.
    pub pod_sandbox_id: String,
    /// Which container, which attempt.
    pub metadata: ContainerMetadata,
    /// The image it was created from.
    pub image: String,
    /// Its state.
    pub state: ContainerState,
    /// When it was created.
    pub created_at: SystemTime,
    /// The labels it was created with.
    pub labels: BTreeMap<String, String>,
    /// The annotations it was created with.
    pub annotations: BTreeMap<String, String>,
}

/// A container's detailed status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerStatus {
    /// The container.
    pub container: Container,
    /// When it started, if it has.
    pub started_at: Option<SystemTime>,
    /// When it exited, if it has.
    pub finished_at: Option<SystemTime>,
    /// Its exit code, once exited.
    pub exit_code: i32,
    /// A machine-readable reason for the exit (`Completed`, `Error`, `OOMKilled`).
    pub reason: String,
    /// A human-readable message.
    pub message: String,
}

/// Which part of a container's log to read, as `kubectl logs` asks for it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LogOptions {
    /// Only the last lines; `None` for all.
    pub tail_lines: Option<u64>,
    /// Keep streaming what the container writes until it exits.
    pub follow: bool,
    /// Prefix each line with its RFC 3339 timestamp.
    pub timestamps: bool,
    /// Only what was written since then.
    pub since: Option<SystemTime>,
}

/// How much of each output stream [`crate::Runtime::exec_sync`] keeps: the kubelet keeps 10 KiB
/// of a probe's output.
pub const EXEC_OUTPUT_LIMIT: usize = 10 * 1024;

/// What a command run by [`crate::Runtime::exec_sync`] printed and how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExecResult {
    /// Its standard output, up to [`EXEC_OUTPUT_LIMIT`] bytes.
    pub stdout: Vec<u8>,
    /// Its standard error, up to [`EXEC_OUTPUT_LIMIT`] bytes.
    pub stderr: Vec<u8>,
    /// Its exit code.
    pub exit_code: i32,
}

/// An image present in the runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// The runtime's image ID.
    pub id: String,
    /// Its size in bytes.
    pub size: u64,
}

/// The runtime's name and version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeVersion {
    /// `docker`, `containerd`, ...
    pub runtime_name: String,
    /// The runtime's version.
    pub runtime_version: String,
}

/// Label equality filter for the list calls: every pair must match.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelFilter(pub BTreeMap<String, String>);

impl LabelFilter {
    /// A filter on one label.
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        LabelFilter(BTreeMap::from([(key.into(), value.into())]))
    }

    /// Adds a label to the filter.
    #[must_use]
    pub fn and(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.0.insert(key.into(), value.into());
        self
    }

    /// Whether `labels` include every pair of the filter.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|(k, v)| labels.get(k) == Some(v))
    }
}

/// Something happened to a sandbox or container (created, started, exited, removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeEvent {
    /// The object's ID.
    pub id: String,
    /// The object's labels, which say whose it is.
    pub labels: BTreeMap<String, String>,
}

/// A failed runtime call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuntimeError {
    /// The runtime cannot be reached.
    #[error("runtime unavailable: {0}")]
    Unavailable(String),
    /// The sandbox, container or image does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// An image pull failed.
    #[error("pulling image {image:?}: {message}")]
    ImagePull {
        /// The image.
        image: String,
        /// The registry's or runtime's words.
        message: String,
    },
    /// The runtime does not offer this call.
    #[error("{runtime} does not support {call}")]
    Unsupported {
        /// The runtime.
        runtime: String,
        /// The call.
        call: &'static str,
    },
    /// A call did not finish in time.
    #[error("{call}: no answer within {after:?}")]
    DeadlineExceeded {
        /// The call (`exec_sync`).
        call: &'static str,
        /// The time it was given.
        after: std::time::Duration,
    },
    /// Any other failure of a call, named.
    #[error("{call}: {message}")]
    Call {
        /// The call that failed (`create_container`).
        call: &'static str,
        /// The runtime's words.
        message: String,
    },
}
