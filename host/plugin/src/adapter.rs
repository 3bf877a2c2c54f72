//! The host side of the `runtime-adapter` world: a [`Runtime`] that forwards every call to a
//! plugin, so the agent drives a runtime it does not know exactly as it drives Docker.
//!
//! Each call gets a deadline suited to it: image pulls may take minutes, a stop takes its grace
//! period, an exec its own timeout, and everything else the plugin's call timeout. A trap, a
//! deadline or the memory cap fails that call only, as [`RuntimeError::Call`] naming the plugin
//! and the call; the agent retries it as it retries any failed runtime call.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use futures::stream::{self, BoxStream};
use staticlet_runtime::{
    Container, ContainerConfig, ContainerMetadata, ContainerState, ContainerStatus, EXEC_OUTPUT_LIMIT, ExecResult, Image, LabelFilter,
    LogOptions, MountPropagation, PodSandbox, PodSandboxConfig, PodSandboxMetadata, PodSandboxStatus, Protocol, PullProgressSender,
    RegistryAuth, Runtime, RuntimeError, RuntimeVersion, SandboxState,
};

use crate::PluginError;
use crate::bindings::v0_1_0::runtime::exports::staticlet::plugin::runtime as wit;
use crate::plugin::{Bound, GuestCall, Plugin};
use crate::sandbox::State;
use crate::spec::Kind;

/// How long an image pull through an adapter may take when the config does not say.
pub const DEFAULT_IMAGE_PULL_TIMEOUT: Duration = Duration::from_secs(300);

/// What stopping a whole sandbox may take beyond the call timeout: the runtime stops its
/// containers forcibly, but some runtimes still give each a short grace.
const SANDBOX_STOP_ALLOWANCE: Duration = Duration::from_secs(15);

/// A runtime-adapter plugin, as a [`Runtime`].
#[derive(Debug, Clone)]
pub struct AdapterRuntime {
    plugin: Arc<Plugin>,
    image_pull_timeout: Duration,
}

impl AdapterRuntime {
    /// Drives `plugin`, which must be a runtime adapter; its calls are bounded by its call
    /// timeout, image pulls by `image_pull_timeout`.
    pub fn new(plugin: Arc<Plugin>, image_pull_timeout: Duration) -> Self {
        AdapterRuntime { plugin, image_pull_timeout }
    }

    /// Makes one call of the runtime interface, bounded by `timeout`.
    async fn call<T: Send + 'static>(
        &self,
        call: &'static str,
        timeout: Duration,
        export: impl for<'a> FnOnce(&'a wit::Guest, &'a mut wasmtime::Store<State>) -> GuestCall<'a, Result<T, wit::RuntimeError>>,
    ) -> Result<T, RuntimeError> {
        let answer = self
            .plugin
            .call(call, Kind::RuntimeAdapter, timeout, |bound, store| match bound {
                Bound::Runtime(r) => export(r.staticlet_plugin_runtime(), store),
                _ => Box::pin(async { Err(wasmtime::Error::msg("not a runtime adapter instance")) }),
            })
            .await;
        match answer {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(runtime_error(call, e)),
            // This call failed inside the plugin; the next one gets a fresh instance.
            Err(e @ (PluginError::Trap { .. } | PluginError::Deadline { .. } | PluginError::Memory { .. })) => {
                Err(RuntimeError::Call { call, message: e.to_string() })
            }
            // No instance to call: the code does not load, or its `init` refuses the settings.
            Err(e) => Err(RuntimeError::Unavailable(e.to_string())),
        }
    }
}

/// One typed export call, as the closure [`AdapterRuntime::call`] runs; the arguments are
/// evaluated inside the call's future, which owns what they borrow.
macro_rules! export {
    ($method:ident $(, $arg:expr)*) => {
        move |runtime, store| Box::pin(async move { runtime.$method(store $(, $arg)*).await.map(Ok) })
    };
}

#[async_trait]
impl Runtime for AdapterRuntime {
    fn name(&self) -> &str {
        &self.plugin.spec().name
    }

    async fn version(&self) -> Result<RuntimeVersion, RuntimeError> {
        let timeout = self.plugin.spec().limits.call_timeout;
        let v = self.call("version", timeout, export!(call_version)).await?;
        Ok(RuntimeVersion { runtime_name: v.runtime_name, runtime_version: v.runtime_version })
    }

    async fn run_pod_sandbox(&self, config: &PodSandboxConfig) -> Result<String, RuntimeError> {
        let config = sandbox_config(config);
        let timeout = self.plugin.spec().limits.call_timeout;
        self.call("run_pod_sandbox", timeout, export!(call_run_pod_sandbox, &config)).await
    }

    async fn stop_pod_sandbox(&self, sandbox_id: &str) -> Result<(), RuntimeError> {
        let id = sandbox_id.to_owned();
        let timeout = self.plugin.spec().limits.call_timeout + SANDBOX_STOP_ALLOWANCE;
        self.call("stop_pod_sandbox", timeout, export!(call_stop_pod_sandbox, &id)).await
    }

    async fn remove_pod_sandbox(&self, sandbox_id: &str) -> Result<(), RuntimeError> {
        let id = sandbox_id.to_owned();
        let timeout = self.plugin.spec().limits.call_timeout + SANDBOX_STOP_ALLOWANCE;
        self.call("remove_pod_sandbox", timeout, export!(call_remove_pod_sandbox, &id)).await
    }

    async fn list_pod_sandboxes(&self, filter: &LabelFilter) -> Result<Vec<PodSandbox>, RuntimeError> {
        let filter = pairs(&filter.0);
        let timeout = self.plugin.spec().limits.call_timeout;
        let listed = self.call("list_pod_sandboxes", timeout, export!(call_list_pod_sandboxes, &filter)).await?;
        Ok(listed.into_iter().map(sandbox).collect())
    }

    async fn pod_sandbox_status(&self, sandbox_id: &str) -> Result<PodSandboxStatus, RuntimeError> {
        let id = sandbox_id.to_owned();
        let timeout = self.plugin.spec().limits.call_timeout;
        let status = self.call("pod_sandbox_status", timeout, export!(call_get_pod_sandbox_status, &id)).await?;
        Ok(PodSandboxStatus { sandbox: sandbox(status.sandbox), ip: status.ip.filter(|ip| !ip.is_empty()) })
    }

    async fn create_container(
        &self,
        sandbox_id: &str,
        config: &ContainerConfig,
        sandbox: &PodSandboxConfig,
    ) -> Result<String, RuntimeError> {
        let (id, config, sandbox) = (sandbox_id.to_owned(), container_config(config), sandbox_config(sandbox));
        let timeout = self.plugin.spec().limits.call_timeout;
        self.call("create_container", timeout, export!(call_create_container, &id, &config, &sandbox)).await
    }

    async fn start_container(&self, container_id: &str) -> Result<(), RuntimeError> {
        let id = container_id.to_owned();
        let timeout = self.plugin.spec().limits.call_timeout;
        self.call("start_container", timeout, export!(call_start_container, &id)).await
    }

    async fn stop_container(&self, container_id: &str, grace: Duration) -> Result<(), RuntimeError> {
        let id = container_id.to_owned();
        let grace_ms = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX);
        let timeout = self.plugin.spec().limits.call_timeout + grace;
        self.call("stop_container", timeout, export!(call_stop_container, &id, grace_ms)).await
    }

    async fn remove_container(&self, container_id: &str) -> Result<(), RuntimeError> {
        let id = container_id.to_owned();
        let timeout = self.plugin.spec().limits.call_timeout;
        self.call("remove_container", timeout, export!(call_remove_container, &id)).await
    }

    async fn list_containers(&self, filter: &LabelFilter) -> Result<Vec<Container>, RuntimeError> {
        let filter = pairs(&filter.0);
        let timeout = self.plugin.spec().limits.call_timeout;
        let listed = self.call("list_containers", timeout, export!(call_list_containers, &filter)).await?;
        Ok(listed.into_iter().map(container).collect())
    }

    async fn container_status(&self, container_id: &str) -> Result<ContainerStatus, RuntimeError> {
        let id = container_id.to_owned();
        let timeout = self.plugin.spec().limits.call_timeout;
        let s = self.call("container_status", timeout, export!(call_get_container_status, &id)).await?;
        Ok(ContainerStatus {
            container: container(s.container),
            started_at: s.started_at.map(time),
            finished_at: s.finished_at.map(time),
            exit_code: s.exit_code,
            reason: s.reason,
            message: s.message,
        })
    }

    async fn exec_sync(&self, container_id: &str, cmd: &[String], timeout: Duration) -> Result<ExecResult, RuntimeError> {
        let (id, cmd) = (container_id.to_owned(), cmd.to_vec());
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let deadline = self.plugin.spec().limits.call_timeout + timeout;
        let mut result = self.call("exec_sync", deadline, export!(call_exec_sync, &id, &cmd, timeout_ms)).await?;
        result.stdout.truncate(EXEC_OUTPUT_LIMIT);
        result.stderr.truncate(EXEC_OUTPUT_LIMIT);
        Ok(ExecResult { stdout: result.stdout, stderr: result.stderr, exit_code: result.exit_code })
    }

    /// The log as it is now: the 0.1.0 world has no streaming, so `follow` ends with what was
    /// written so far.
    async fn logs(
        &self,
        container_id: &str,
        options: &LogOptions,
    ) -> Result<BoxStream<'static, Result<Vec<u8>, RuntimeError>>, RuntimeError> {
        let id = container_id.to_owned();
        let options =
            wit::LogOptions { tail_lines: options.tail_lines, timestamps: options.timestamps, since: options.since.map(timestamp) };
        let timeout = self.plugin.spec().limits.call_timeout;
        let bytes = self.call("logs", timeout, export!(call_logs, &id, options)).await?;
        Ok(Box::pin(stream::once(async move { Ok(bytes) })))
    }

    async fn image_status(&self, image: &str) -> Result<Option<Image>, RuntimeError> {
        let image = image.to_owned();
        let timeout = self.plugin.spec().limits.call_timeout;
        let found = self.call("image_status", timeout, export!(call_image_status, &image)).await?;
        Ok(found.map(|i| Image { id: i.id, size: i.size }))
    }

    async fn pull_image(&self, image: &str, auth: Option<&RegistryAuth>, _progress: &PullProgressSender) -> Result<String, RuntimeError> {
        let _ = auth;
        let reference = image.to_owned();
        match self.call("pull_image", self.image_pull_timeout, export!(call_pull_image, &reference)).await {
            Err(RuntimeError::ImagePull { message, .. } | RuntimeError::Call { message, .. }) => {
                Err(RuntimeError::ImagePull { image: image.to_owned(), message })
            }
            other => other,
        }
    }
}

/// The plugin's own error as the runtime error the agent reads. `not-found` stays
/// [`RuntimeError::NotFound`], which the agent treats as "already gone".
fn runtime_error(call: &'static str, e: wit::RuntimeError) -> RuntimeError {
    match e {
        wit::RuntimeError::Unavailable(m) => RuntimeError::Unavailable(m),
        wit::RuntimeError::NotFound(m) => RuntimeError::NotFound(m),
        wit::RuntimeError::ImagePull(message) => RuntimeError::ImagePull { image: String::new(), message },
        wit::RuntimeError::Unsupported(message) => RuntimeError::Call { call, message: format!("not supported: {message}") },
        wit::RuntimeError::DeadlineExceeded(message) => RuntimeError::Call { call, message: format!("deadline exceeded: {message}") },
        wit::RuntimeError::Call(message) => RuntimeError::Call { call, message },
    }
}

fn pairs(map: &BTreeMap<String, String>) -> Vec<(String, String)> {
    map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn timestamp(at: SystemTime) -> i64 {
    match at.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_nanos()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_nanos()).unwrap_or(i64::MAX),
    }
}

fn time(ns: i64) -> SystemTime {
    let magnitude = Duration::from_nanos(ns.unsigned_abs());
    if ns >= 0 { UNIX_EPOCH + magnitude } else { UNIX_EPOCH - magnitude }
}

fn sandbox_metadata(m: &PodSandboxMetadata) -> wit::SandboxMetadata {
    wit::SandboxMetadata { name: m.name.clone(), namespace: m.namespace.clone(), uid: m.uid.clone(), attempt: m.attempt }
}

fn sandbox_config(c: &PodSandboxConfig) -> wit::SandboxConfig {
    wit::SandboxConfig {
        metadata: sandbox_metadata(&c.metadata),
        hostname: c.hostname.clone(),
        log_directory: c.log_directory.display().to_string(),
        dns_config: c.dns_config.as_ref().map(|d| wit::DnsConfig {
            servers: d.servers.clone(),
            searches: d.searches.clone(),
            options: d.options.clone(),
        }),
        port_mappings: c
            .port_mappings
            .iter()
            .map(|p| wit::PortMapping {
                protocol: match p.protocol {
                    Protocol::Tcp => wit::Protocol::Tcp,
                    Protocol::Udp => wit::Protocol::Udp,
                    Protocol::Sctp => wit::Protocol::Sctp,
                },
                container_port: p.container_port,
                host_port: p.host_port,
                host_ip: p.host_ip.clone(),
            })
            .collect(),
        labels: pairs(&c.labels),
        annotations: pairs(&c.annotations),
        host_network: c.host_network,
        host_pid: c.host_pid,
        host_ipc: c.host_ipc,
        host_aliases: c.host_aliases.clone(),
    }
}

fn container_config(c: &ContainerConfig) -> wit::ContainerConfig {
    wit::ContainerConfig {
        metadata: wit::ContainerMetadata { name: c.metadata.name.clone(), attempt: c.metadata.attempt },
        image: c.image.clone(),
        command: c.command.clone(),
        args: c.args.clone(),
        working_dir: c.working_dir.clone(),
        envs: c.envs.clone(),
        mounts: c
            .mounts
            .iter()
            .map(|m| wit::Mount {
                container_path: m.container_path.clone(),
                host_path: m.host_path.display().to_string(),
                readonly: m.readonly,
                propagation: match m.propagation {
                    MountPropagation::Private => wit::MountPropagation::Private,
                    MountPropagation::HostToContainer => wit::MountPropagation::HostToContainer,
                    MountPropagation::Bidirectional => wit::MountPropagation::Bidirectional,
                },
            })
            .collect(),
        labels: pairs(&c.labels),
        annotations: pairs(&c.annotations),
        resources: wit::Resources {
            cpu_period: c.resources.cpu_period,
            cpu_quota: c.resources.cpu_quota,
            cpu_shares: c.resources.cpu_shares,
            memory_limit_in_bytes: c.resources.memory_limit_in_bytes,
        },
        security: wit::Security {
            privileged: c.security.privileged,
            run_as_user: c.security.run_as_user,
            run_as_group: c.security.run_as_group,
            supplemental_groups: c.security.supplemental_groups.clone(),
            readonly_rootfs: c.security.readonly_rootfs,
            add_capabilities: c.security.add_capabilities.clone(),
            drop_capabilities: c.security.drop_capabilities.clone(),
            no_new_privs: c.security.no_new_privs,
        },
        stdin: c.stdin,
        tty: c.tty,
    }
}

fn sandbox(s: wit::Sandbox) -> PodSandbox {
    PodSandbox {
        id: s.id,
        metadata: PodSandboxMetadata {
            name: s.metadata.name,
            namespace: s.metadata.namespace,
            uid: s.metadata.uid,
            attempt: s.metadata.attempt,
        },
        state: match s.state {
            wit::SandboxState::Ready => SandboxState::Ready,
            wit::SandboxState::NotReady => SandboxState::NotReady,
        },
        created_at: time(s.created_at),
        labels: s.labels.into_iter().collect(),
        annotations: s.annotations.into_iter().collect(),
    }
}

fn container(c: wit::Container) -> Container {
    Container {
        id: c.id,
        pod_sandbox_id: c.sandbox_id,
        metadata: ContainerMetadata { name: c.metadata.name, attempt: c.metadata.attempt },
        image: c.image,
        state: match c.state {
            wit::ContainerState::Created => ContainerState::Created,
            wit::ContainerState::Running => ContainerState::Running,
            wit::ContainerState::Exited => ContainerState::Exited,
            wit::ContainerState::Unknown => ContainerState::Unknown,
        },
        created_at: time(c.created_at),
        labels: c.labels.into_iter().collect(),
        annotations: c.annotations.into_iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_on_both_sides_of_the_epoch() {
        for at in [UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789), UNIX_EPOCH - Duration::from_secs(5), UNIX_EPOCH] {
            assert_eq!(time(timestamp(at)), at);
        }
    }

    #[test]
    fn not_found_stays_not_found_and_other_errors_name_the_call() {
        assert_eq!(runtime_error("remove_container", wit::RuntimeError::NotFound("c1".into())), RuntimeError::NotFound("c1".into()));
        let e = runtime_error("create_container", wit::RuntimeError::Call("no such image".into()));
        assert_eq!(e.to_string(), "create_container: no such image");
    }
}
