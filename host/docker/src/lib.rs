//! The Docker runtime: [`Runtime`] over the Docker Engine API, the way the kubelet's dockershim
//! mapped the CRI onto Docker.
//!
//! - A sandbox is a pause container (`--pod-infra-container-image`) named
//!   `k8s_POD_<pod>_<namespace>_<uid>_<attempt>`; it owns the pod's network and IPC namespaces
//!   and publishes its `hostPort`s.
//! - Containers are named `k8s_<container>_<pod>_<namespace>_<uid>_<attempt>` and join the
//!   sandbox's namespaces (`container:<sandbox id>`).
//! - Labels pass through unchanged; annotations are stored as `annotation.<key>` labels;
//!   `io.kubernetes.docker.type` tells sandboxes from containers, as in dockershim.
//!
//! The client connects lazily and negotiates the API version on first use, so the agent can
//! start before the engine and pick it up when it appears.

mod convert;
mod exec;
mod image;
mod pause;
mod stream;

pub use image::save_archive;

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::models::{ContainerCreateBody, HostConfig, PortBinding};
use bollard::query_parameters::{
    CreateContainerOptions, EventsOptions, InspectContainerOptions, ListContainersOptions, LogsOptions, RemoveContainerOptions,
    StopContainerOptions,
};
use futures::StreamExt;
use futures::stream::BoxStream;
use staticlet_runtime::{
    Container, ContainerConfig, ContainerStatus, Duplex, ExecResult, Image, LabelFilter, LinuxContainerSecurity, LogOptions, PodSandbox,
    PodSandboxConfig, PodSandboxStatus, PullProgressSender, RegistryAuth, Runtime, RuntimeError, RuntimeEvent, RuntimeVersion,
    StreamOptions, StreamSession,
};
use tokio::sync::OnceCell;

use convert::{annotation_labels, container_from_summary, parse_time, sandbox_from_summary};

/// Label dockershim used to tell sandboxes from containers.
pub const DOCKER_TYPE_LABEL: &str = "io.kubernetes.docker.type";
/// Label pointing a container at its sandbox.
pub const SANDBOX_ID_LABEL: &str = "io.kubernetes.sandbox.id";

const TYPE_SANDBOX: &str = "podsandbox";
const TYPE_CONTAINER: &str = "container";
/// How long a sandbox's pause process gets to exit on SIGTERM, as dockershim allowed.
const SANDBOX_GRACE: Duration = Duration::from_secs(10);
/// Calls that only read state must answer quickly; a hung engine must not hang a pod worker.
const QUICK_CALL: Duration = Duration::from_secs(30);
/// The transport's own limit, long enough for an image pull.
const TRANSPORT_TIMEOUT_SECS: u64 = 3600;

/// Settings for the Docker runtime.
#[derive(Debug, Clone)]
pub struct DockerConfig {
    /// `unix:///var/run/docker.sock`, `tcp://host:2375`, or a plain socket path.
    pub endpoint: String,
    /// The image sandboxes are made from (the agent pulls it when absent); while it is absent,
    /// sandboxes run the pause image staticlet carries.
    pub pod_infra_image: String,
}

/// The Docker runtime.
pub struct DockerRuntime {
    config: DockerConfig,
    client: OnceCell<Docker>,
    /// Whether the fall back to the built-in pause image was logged.
    sandbox_fallback_told: std::sync::atomic::AtomicBool,
}

impl DockerRuntime {
    /// A runtime for the engine at `config.endpoint`. Does not connect yet.
    pub fn new(config: DockerConfig) -> Self {
        DockerRuntime { config, client: OnceCell::new(), sandbox_fallback_told: Default::default() }
    }

    /// The image a new sandbox runs: the configured one if present (the agent pulls it, with
    /// the node's credentials, before it asks for a sandbox), else the built-in pause image.
    async fn sandbox_image(&self, docker: &Docker) -> Result<String, RuntimeError> {
        let configured = &self.config.pod_infra_image;
        if image::status(docker, configured).await?.is_some() {
            return Ok(configured.clone());
        }
        if !self.sandbox_fallback_told.swap(true, std::sync::atomic::Ordering::Relaxed) {
            tracing::warn!(image = %configured, "the sandbox image is not present; sandboxes run the built-in {} until it is", pause::image_name());
        }
        pause::ensure_loaded(docker).await
    }

    /// The endpoint `DOCKER_HOST` names, or the local socket.
    pub fn default_endpoint() -> String {
        std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".to_owned())
    }

    async fn client(&self) -> Result<&Docker, RuntimeError> {
        self.client
            .get_or_try_init(|| async {
                let endpoint = &self.config.endpoint;
                let docker = if let Some(addr) = endpoint.strip_prefix("tcp://").or_else(|| endpoint.strip_prefix("http://")) {
                    Docker::connect_with_http(addr, TRANSPORT_TIMEOUT_SECS, bollard::API_DEFAULT_VERSION)
                } else {
                    Docker::connect_with_unix(endpoint.trim_start_matches("unix://"), TRANSPORT_TIMEOUT_SECS, bollard::API_DEFAULT_VERSION)
                }
                .map_err(|e| RuntimeError::Unavailable(format!("docker at {endpoint}: {e}")))?;
                let negotiated = tokio::time::timeout(QUICK_CALL, docker.negotiate_version())
                    .await
                    .map_err(|_| RuntimeError::Unavailable(format!("docker at {endpoint}: no answer")))?;
                negotiated.map_err(|e| RuntimeError::Unavailable(format!("docker at {endpoint}: {e}")))
            })
            .await
    }

    async fn list(&self, filter: &LabelFilter, docker_type: &str) -> Result<Vec<bollard::models::ContainerSummary>, RuntimeError> {
        let mut labels: Vec<String> = filter.0.iter().map(|(k, v)| format!("{k}={v}")).collect();
        labels.push(format!("{DOCKER_TYPE_LABEL}={docker_type}"));
        let options =
            ListContainersOptions { all: true, filters: Some(HashMap::from([("label".to_owned(), labels)])), ..Default::default() };
        let docker = self.client().await?;
        quick("list_containers", docker.list_containers(Some(options))).await
    }

    async fn stop(&self, id: &str, grace: Duration) -> Result<(), RuntimeError> {
        // Rounded up: Docker takes whole seconds, and a grace period is a floor, never cut short.
        let options = StopContainerOptions { t: Some(grace.as_secs_f64().ceil().max(1.0) as i32), signal: None };
        let docker = self.client().await?;
        match docker.stop_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            // 304: already stopped.
            Err(DockerError::DockerResponseServerError { status_code: 304, .. }) => Ok(()),
            Err(e) => Err(map_error("stop_container", id, e)),
        }
    }

    async fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        let options = RemoveContainerOptions { force: true, v: true, ..Default::default() };
        let docker = self.client().await?;
        match docker.remove_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) => match map_error("remove_container", id, e) {
                RuntimeError::NotFound(_) => Ok(()),
                // A removal already under way finishes on its own.
                RuntimeError::Call { message, .. } if message.contains("already in progress") => Ok(()),
                other => Err(other),
            },
        }
    }

    async fn containers_of_sandbox(&self, sandbox_id: &str) -> Result<Vec<Container>, RuntimeError> {
        let summaries = self.list(&LabelFilter::new(SANDBOX_ID_LABEL, sandbox_id), TYPE_CONTAINER).await?;
        Ok(summaries.into_iter().filter_map(container_from_summary).collect())
    }
}

#[async_trait]
impl Runtime for DockerRuntime {
    fn name(&self) -> &str {
        "docker"
    }

    async fn version(&self) -> Result<RuntimeVersion, RuntimeError> {
        let docker = self.client().await?;
        let version = quick("version", docker.version()).await.map_err(|e| RuntimeError::Unavailable(e.to_string()))?;
        Ok(RuntimeVersion { runtime_name: "docker".to_owned(), runtime_version: version.version.unwrap_or_default() })
    }

    async fn run_pod_sandbox(&self, config: &PodSandboxConfig) -> Result<String, RuntimeError> {
        let docker = self.client().await?;
        let sandbox_image = self.sandbox_image(docker).await?;
        let (options, body) = sandbox_create_request(config, sandbox_image);
        let name = options.name.clone().unwrap_or_default();
        let created = docker.create_container(Some(options), body).await.map_err(|e| map_error("run_pod_sandbox", &name, e))?;
        if let Err(e) = docker.start_container(&created.id, None).await {
            // A sandbox that cannot start (a host port already taken, say) must not linger.
            let _ = self.remove(&created.id).await;
            return Err(map_error("run_pod_sandbox", &name, e));
        }
        Ok(created.id)
    }

    async fn stop_pod_sandbox(&self, sandbox_id: &str) -> Result<(), RuntimeError> {
        for container in self.containers_of_sandbox(sandbox_id).await? {
            self.stop(&container.id, Duration::ZERO).await.or_else(ignore_not_found)?;
        }
        self.stop(sandbox_id, SANDBOX_GRACE).await.or_else(ignore_not_found)
    }

    async fn remove_pod_sandbox(&self, sandbox_id: &str) -> Result<(), RuntimeError> {
        for container in self.containers_of_sandbox(sandbox_id).await? {
            self.remove(&container.id).await?;
        }
        self.remove(sandbox_id).await
    }

    async fn list_pod_sandboxes(&self, filter: &LabelFilter) -> Result<Vec<PodSandbox>, RuntimeError> {
        Ok(self.list(filter, TYPE_SANDBOX).await?.into_iter().filter_map(sandbox_from_summary).collect())
    }

    async fn pod_sandbox_status(&self, sandbox_id: &str) -> Result<PodSandboxStatus, RuntimeError> {
        let docker = self.client().await?;
        let inspect = quick("inspect_container", docker.inspect_container(sandbox_id, None::<InspectContainerOptions>))
            .await
            .map_err(|e| if e.to_string().contains("404") { RuntimeError::NotFound(format!("sandbox {sandbox_id}")) } else { e })?;
        let ip = inspect
            .network_settings
            .as_ref()
            .and_then(|n| n.networks.as_ref())
            .and_then(|nets| nets.values().find_map(|n| n.ip_address.clone().filter(|ip| !ip.is_empty())));
        let sandbox = convert::sandbox_from_inspect(sandbox_id, &inspect)
            .ok_or_else(|| RuntimeError::NotFound(format!("sandbox {sandbox_id} (not a staticlet sandbox)")))?;
        Ok(PodSandboxStatus { sandbox, ip })
    }

    async fn create_container(
        &self,
        sandbox_id: &str,
        config: &ContainerConfig,
        sandbox_config: &PodSandboxConfig,
    ) -> Result<String, RuntimeError> {
        let docker = self.client().await?;
        let (options, body) = container_create_request(sandbox_id, config, sandbox_config)?;
        let name = options.name.clone().unwrap_or_default();
        let created = docker.create_container(Some(options), body).await.map_err(|e| map_error("create_container", &name, e))?;
        Ok(created.id)
    }

    async fn start_container(&self, container_id: &str) -> Result<(), RuntimeError> {
        let docker = self.client().await?;
        docker.start_container(container_id, None).await.map_err(|e| map_error("start_container", container_id, e))
    }

    async fn stop_container(&self, container_id: &str, grace: Duration) -> Result<(), RuntimeError> {
        self.stop(container_id, grace).await
    }

    async fn remove_container(&self, container_id: &str) -> Result<(), RuntimeError> {
        self.remove(container_id).await
    }

    async fn list_containers(&self, filter: &LabelFilter) -> Result<Vec<Container>, RuntimeError> {
        Ok(self.list(filter, TYPE_CONTAINER).await?.into_iter().filter_map(container_from_summary).collect())
    }

    async fn container_status(&self, container_id: &str) -> Result<ContainerStatus, RuntimeError> {
        let docker = self.client().await?;
        let inspect = docker
            .inspect_container(container_id, None::<InspectContainerOptions>)
            .await
            .map_err(|e| map_error("container_status", container_id, e))?;
        let container = convert::container_from_inspect(container_id, &inspect)
            .ok_or_else(|| RuntimeError::NotFound(format!("container {container_id} (not a staticlet container)")))?;
        let state = inspect.state.unwrap_or_default();
        let exit_code = state.exit_code.unwrap_or(0) as i32;
        let reason = if state.oom_killed == Some(true) {
            "OOMKilled"
        } else if container.state != staticlet_runtime::ContainerState::Exited {
            ""
        } else if exit_code == 0 {
            "Completed"
        } else {
            "Error"
        };
        Ok(ContainerStatus {
            container,
            started_at: state.started_at.as_deref().and_then(parse_time),
            finished_at: state.finished_at.as_deref().and_then(parse_time),
            exit_code,
            reason: reason.to_owned(),
            message: state.error.unwrap_or_default(),
        })
    }

    async fn exec_sync(&self, container_id: &str, cmd: &[String], timeout: Duration) -> Result<ExecResult, RuntimeError> {
        let docker = self.client().await?;
        match tokio::time::timeout(timeout, exec::run(docker, container_id, cmd)).await {
            Ok(result) => result,
            Err(_) => Err(RuntimeError::DeadlineExceeded { call: "exec_sync", after: timeout }),
        }
    }

    async fn logs(
        &self,
        container_id: &str,
        options: &LogOptions,
    ) -> Result<BoxStream<'static, Result<Vec<u8>, RuntimeError>>, RuntimeError> {
        let docker = self.client().await?;
        // Fail now, not mid-stream, when the container is gone.
        quick("logs", docker.inspect_container(container_id, None::<InspectContainerOptions>)).await?;
        let query = LogsOptions {
            follow: options.follow,
            stdout: true,
            stderr: true,
            since: options.since.and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map_or(0, |d| d.as_secs() as i32),
            timestamps: options.timestamps,
            tail: options.tail_lines.map_or_else(|| "all".to_owned(), |n| n.to_string()),
            ..LogsOptions::default()
        };
        let id = container_id.to_owned();
        let stream = docker.logs(container_id, Some(query)).map(move |chunk| match chunk {
            Ok(output) => Ok(output.into_bytes().to_vec()),
            Err(e) => Err(map_error("logs", &id, e)),
        });
        Ok(stream.boxed())
    }

    async fn exec(&self, container_id: &str, cmd: &[String], options: StreamOptions) -> Result<StreamSession, RuntimeError> {
        stream::exec(self.client().await?, container_id, cmd, options).await
    }

    async fn attach(&self, container_id: &str, options: StreamOptions) -> Result<StreamSession, RuntimeError> {
        stream::attach(self.client().await?, container_id, options).await
    }

    async fn port_forward(&self, sandbox_id: &str, port: u16) -> Result<Box<dyn Duplex>, RuntimeError> {
        stream::port_forward(self.client().await?, sandbox_id, port).await
    }

    async fn image_status(&self, image: &str) -> Result<Option<Image>, RuntimeError> {
        image::status(self.client().await?, image).await
    }

    async fn pull_image(&self, image: &str, auth: Option<&RegistryAuth>, progress: &PullProgressSender) -> Result<String, RuntimeError> {
        image::pull(self.client().await?, image, auth, progress).await
    }

    async fn sandbox_image(&self) -> Result<Option<String>, RuntimeError> {
        Ok(Some(self.config.pod_infra_image.clone()))
    }

    async fn events(&self, filter: &LabelFilter) -> Result<BoxStream<'static, Result<RuntimeEvent, RuntimeError>>, RuntimeError> {
        let docker = self.client().await?.clone();
        let labels = filter.0.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let filters = HashMap::from([
            ("type".to_owned(), vec!["container".to_owned()]),
            ("event".to_owned(), ["create", "start", "die", "destroy", "oom"].map(str::to_owned).to_vec()),
            ("label".to_owned(), labels),
        ]);
        let options = EventsOptions { filters: Some(filters), ..Default::default() };
        let stream = docker.events(Some(options)).map(|event| {
            let actor = event.map_err(|e| RuntimeError::Unavailable(format!("docker events: {e}")))?.actor.unwrap_or_default();
            Ok(RuntimeEvent { id: actor.id.unwrap_or_default(), labels: actor.attributes.unwrap_or_default().into_iter().collect() })
        });
        Ok(stream.boxed())
    }
}

/// The Engine API request that creates a sandbox's pause container from `image`: the
/// container's name (in the options) and its body. [`DockerRuntime::run_pod_sandbox`] sends it
/// and then starts the container; it is public so that a minimal client (the start-latency
/// benchmark's floor) sends exactly the same request, not an approximation of it.
pub fn sandbox_create_request(config: &PodSandboxConfig, image: String) -> (CreateContainerOptions, ContainerCreateBody) {
    let meta = &config.metadata;
    let name = format!("k8s_POD_{}_{}_{}_{}", meta.name, meta.namespace, meta.uid, meta.attempt);

    let mut labels = config.labels.clone();
    labels.extend(annotation_labels(&config.annotations));
    labels.insert(DOCKER_TYPE_LABEL.to_owned(), TYPE_SANDBOX.to_owned());

    let mut exposed = BTreeSet::new();
    let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    for port in config.port_mappings.iter().filter(|_| !config.host_network) {
        let key = format!("{}/{}", port.container_port, port.protocol.as_lower());
        exposed.insert(key.clone());
        let binding = PortBinding { host_ip: Some(port.host_ip.clone()), host_port: Some(port.host_port.to_string()) };
        bindings.entry(key).or_insert_with(|| Some(Vec::new())).get_or_insert_with(Vec::new).push(binding);
    }
    let dns = config.dns_config.as_ref();
    let host_config = HostConfig {
        network_mode: Some(if config.host_network { "host" } else { "bridge" }.to_owned()),
        // Containers join the sandbox's IPC namespace, which Docker allows only when shareable.
        ipc_mode: Some(if config.host_ipc { "host" } else { "shareable" }.to_owned()),
        pid_mode: config.host_pid.then(|| "host".to_owned()),
        port_bindings: (!bindings.is_empty()).then_some(bindings),
        extra_hosts: (!config.host_aliases.is_empty())
            .then(|| config.host_aliases.iter().flat_map(|(ip, names)| names.iter().map(move |n| format!("{n}:{ip}"))).collect()),
        dns: dns.map(|d| d.servers.clone()).filter(|v| !v.is_empty()),
        dns_search: dns.map(|d| d.searches.clone()).filter(|v| !v.is_empty()),
        dns_options: dns.map(|d| d.options.clone()).filter(|v| !v.is_empty()),
        ..Default::default()
    };
    let body = ContainerCreateBody {
        image: Some(image),
        hostname: (!config.host_network && !config.hostname.is_empty()).then(|| config.hostname.clone()),
        labels: Some(labels.into_iter().collect()),
        exposed_ports: (!exposed.is_empty()).then(|| exposed.into_iter().collect()),
        host_config: Some(host_config),
        ..Default::default()
    };
    (CreateContainerOptions { name: Some(name), platform: String::new() }, body)
}

/// The Engine API request that creates container `config` in sandbox `sandbox_id`: the
/// container's name (in the options) and its body, joining the sandbox's namespaces
/// (`container:<sandbox id>`). [`DockerRuntime::create_container`] sends it; it is public for
/// the same reason as [`sandbox_create_request`].
///
/// # Errors
///
/// A group without a user, which the CRI says a runtime must refuse.
pub fn container_create_request(
    sandbox_id: &str,
    config: &ContainerConfig,
    sandbox_config: &PodSandboxConfig,
) -> Result<(CreateContainerOptions, ContainerCreateBody), RuntimeError> {
    let pod = &sandbox_config.metadata;
    let name = format!("k8s_{}_{}_{}_{}_{}", config.metadata.name, pod.name, pod.namespace, pod.uid, config.metadata.attempt);

    let mut labels = config.labels.clone();
    labels.extend(annotation_labels(&config.annotations));
    labels.insert(DOCKER_TYPE_LABEL.to_owned(), TYPE_CONTAINER.to_owned());
    labels.insert(SANDBOX_ID_LABEL.to_owned(), sandbox_id.to_owned());

    let binds = config.mounts.iter().map(convert::bind).collect::<Vec<_>>();
    let namespace_of_sandbox = format!("container:{sandbox_id}");
    let (limits, security) = (&config.resources, &config.security);
    let set = |v: i64| (v > 0).then_some(v);
    let host_config = HostConfig {
        cpu_shares: set(limits.cpu_shares),
        cpu_period: set(limits.cpu_period),
        cpu_quota: set(limits.cpu_quota),
        memory: set(limits.memory_limit_in_bytes),
        // No swap beyond the limit, so the limit is what the container can use, as on a kubelet node.
        memory_swap: set(limits.memory_limit_in_bytes),
        privileged: Some(security.privileged),
        readonly_rootfs: Some(security.readonly_rootfs),
        cap_add: (!security.add_capabilities.is_empty()).then(|| security.add_capabilities.clone()),
        cap_drop: (!security.drop_capabilities.is_empty()).then(|| security.drop_capabilities.clone()),
        group_add: (!security.supplemental_groups.is_empty()).then(|| security.supplemental_groups.iter().map(i64::to_string).collect()),
        security_opt: security.no_new_privs.then(|| vec!["no-new-privileges".to_owned()]),
        network_mode: Some(namespace_of_sandbox.clone()),
        ipc_mode: Some(if sandbox_config.host_ipc { "host".to_owned() } else { namespace_of_sandbox }),
        pid_mode: sandbox_config.host_pid.then(|| "host".to_owned()),
        binds: (!binds.is_empty()).then_some(binds),
        ..Default::default()
    };
    let body = ContainerCreateBody {
        image: Some(config.image.clone()),
        // Kubernetes' `command` replaces the entrypoint and `args` the command; with only a
        // command given, Docker then ignores the image's command too, as Kubernetes does.
        entrypoint: (!config.command.is_empty()).then(|| config.command.clone()),
        cmd: (!config.args.is_empty()).then(|| config.args.clone()),
        env: Some(config.envs.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        working_dir: config.working_dir.clone(),
        user: user(&config.security)?,
        labels: Some(labels.into_iter().collect()),
        open_stdin: Some(config.stdin),
        tty: Some(config.tty),
        host_config: Some(host_config),
        ..Default::default()
    };
    Ok((CreateContainerOptions { name: Some(name), platform: String::new() }, body))
}

/// `uid[:gid]` for Docker, or `None` to keep the image's user.
///
/// # Errors
///
/// A group without a user, which the CRI says a runtime must refuse.
fn user(security: &LinuxContainerSecurity) -> Result<Option<String>, RuntimeError> {
    match (security.run_as_user, security.run_as_group) {
        (Some(uid), Some(gid)) => Ok(Some(format!("{uid}:{gid}"))),
        (Some(uid), None) => Ok(Some(uid.to_string())),
        (None, Some(_)) => Err(RuntimeError::Call {
            call: "create_container",
            message: "runAsGroup is set without runAsUser; set both (the image's user name cannot be combined with a group)".into(),
        }),
        (None, None) => Ok(None),
    }
}

/// Runs a read-only call with a deadline, naming the call in errors.
async fn quick<T>(call: &'static str, future: impl Future<Output = Result<T, DockerError>>) -> Result<T, RuntimeError> {
    match tokio::time::timeout(QUICK_CALL, future).await {
        Ok(result) => result.map_err(|e| map_error(call, "", e)),
        Err(_) => Err(RuntimeError::Unavailable(format!("{call}: docker did not answer within {}s", QUICK_CALL.as_secs()))),
    }
}

fn ignore_not_found(error: RuntimeError) -> Result<(), RuntimeError> {
    match error {
        RuntimeError::NotFound(_) => Ok(()),
        other => Err(other),
    }
}

fn map_error(call: &'static str, object: &str, error: DockerError) -> RuntimeError {
    match error {
        DockerError::DockerResponseServerError { status_code: 404, message } => {
            RuntimeError::NotFound(if object.is_empty() { message } else { format!("{object}: {message}") })
        }
        DockerError::DockerResponseServerError { message, .. } => RuntimeError::Call { call, message },
        DockerError::HyperResponseError { .. } | DockerError::IOError { .. } | DockerError::RequestTimeoutError => {
            RuntimeError::Unavailable(format!("{call}: {error}"))
        }
        other => RuntimeError::Call { call, message: other.to_string() },
    }
}
