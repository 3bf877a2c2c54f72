//! The runtime interface on one WIT version's bindings, as the agent's types. This file is
//! compiled once per version (`adapter::v0_1_0::calls`, `adapter::v0_2_0::calls`), each time
//! against that version's `wit` module: the interface is the same in both but for
//! `pull-image`, whose call each version's module writes itself (`super::pull`).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use staticlet_runtime::{
    Container, ContainerConfig, ContainerMetadata, ContainerState, ContainerStatus, ExecResult, Image, LabelFilter, LogOptions,
    MountPropagation, PodSandbox, PodSandboxConfig, PodSandboxMetadata, PodSandboxStatus, Protocol, RegistryAuth, RuntimeError,
    RuntimeVersion, SandboxState,
};
use wasmtime::Store;

use super::wit;
use crate::adapter::{Call, RuntimeCalls};
use crate::sandbox::State;

/// One export call: its answer converted with `$convert`, its error named after `$name`.
macro_rules! call {
    ($name:literal, $future:expr, $convert:expr) => {
        Box::pin(async move { Ok($future.await?.map($convert).map_err(|e| runtime_error($name, e))) })
    };
}

impl RuntimeCalls for wit::Guest {
    fn version<'a>(&'a self, store: &'a mut Store<State>) -> Call<'a, RuntimeVersion> {
        call!("version", self.call_version(store), |v| RuntimeVersion { runtime_name: v.runtime_name, runtime_version: v.runtime_version })
    }

    fn run_pod_sandbox<'a>(&'a self, store: &'a mut Store<State>, config: &PodSandboxConfig) -> Call<'a, String> {
        let config = sandbox_config(config);
        call!("run_pod_sandbox", self.call_run_pod_sandbox(store, &config), |id| id)
    }

    fn stop_pod_sandbox<'a>(&'a self, store: &'a mut Store<State>, id: &str) -> Call<'a, ()> {
        let id = id.to_owned();
        call!("stop_pod_sandbox", self.call_stop_pod_sandbox(store, &id), |()| ())
    }

    fn remove_pod_sandbox<'a>(&'a self, store: &'a mut Store<State>, id: &str) -> Call<'a, ()> {
        let id = id.to_owned();
        call!("remove_pod_sandbox", self.call_remove_pod_sandbox(store, &id), |()| ())
    }

    fn list_pod_sandboxes<'a>(&'a self, store: &'a mut Store<State>, filter: &LabelFilter) -> Call<'a, Vec<PodSandbox>> {
        let filter = pairs(&filter.0);
        call!("list_pod_sandboxes", self.call_list_pod_sandboxes(store, &filter), |listed| listed.into_iter().map(sandbox).collect())
    }

    fn pod_sandbox_status<'a>(&'a self, store: &'a mut Store<State>, id: &str) -> Call<'a, PodSandboxStatus> {
        let id = id.to_owned();
        call!("pod_sandbox_status", self.call_get_pod_sandbox_status(store, &id), |status| PodSandboxStatus {
            sandbox: sandbox(status.sandbox),
            ip: status.ip.filter(|ip| !ip.is_empty()),
        })
    }

    fn create_container<'a>(
        &'a self,
        store: &'a mut Store<State>,
        sandbox_id: &str,
        config: &ContainerConfig,
        sandbox: &PodSandboxConfig,
    ) -> Call<'a, String> {
        let (id, config, sandbox) = (sandbox_id.to_owned(), container_config(config), sandbox_config(sandbox));
        call!("create_container", self.call_create_container(store, &id, &config, &sandbox), |id| id)
    }

    fn start_container<'a>(&'a self, store: &'a mut Store<State>, id: &str) -> Call<'a, ()> {
        let id = id.to_owned();
        call!("start_container", self.call_start_container(store, &id), |()| ())
    }

    fn stop_container<'a>(&'a self, store: &'a mut Store<State>, id: &str, grace_ms: u64) -> Call<'a, ()> {
        let id = id.to_owned();
        call!("stop_container", self.call_stop_container(store, &id, grace_ms), |()| ())
    }

    fn remove_container<'a>(&'a self, store: &'a mut Store<State>, id: &str) -> Call<'a, ()> {
        let id = id.to_owned();
        call!("remove_container", self.call_remove_container(store, &id), |()| ())
    }

    fn list_containers<'a>(&'a self, store: &'a mut Store<State>, filter: &LabelFilter) -> Call<'a, Vec<Container>> {
        let filter = pairs(&filter.0);
        call!("list_containers", self.call_list_containers(store, &filter), |listed| listed.into_iter().map(container).collect())
    }

    fn container_status<'a>(&'a self, store: &'a mut Store<State>, id: &str) -> Call<'a, ContainerStatus> {
        let id = id.to_owned();
        call!("container_status", self.call_get_container_status(store, &id), |s| ContainerStatus {
            container: container(s.container),
            started_at: s.started_at.map(time),
            finished_at: s.finished_at.map(time),
            exit_code: s.exit_code,
            reason: s.reason,
            message: s.message,
        })
    }

    fn exec_sync<'a>(&'a self, store: &'a mut Store<State>, id: &str, cmd: &[String], timeout_ms: u64) -> Call<'a, ExecResult> {
        let (id, cmd) = (id.to_owned(), cmd.to_vec());
        call!("exec_sync", self.call_exec_sync(store, &id, &cmd, timeout_ms), |r| ExecResult {
            stdout: r.stdout,
            stderr: r.stderr,
            exit_code: r.exit_code
        })
    }

    fn logs<'a>(&'a self, store: &'a mut Store<State>, id: &str, options: &LogOptions) -> Call<'a, Vec<u8>> {
        let id = id.to_owned();
        let options =
            wit::LogOptions { tail_lines: options.tail_lines, timestamps: options.timestamps, since: options.since.map(timestamp) };
        call!("logs", self.call_logs(store, &id, options), |bytes| bytes)
    }

    fn image_status<'a>(&'a self, store: &'a mut Store<State>, image: &str) -> Call<'a, Option<Image>> {
        let image = image.to_owned();
        call!("image_status", self.call_image_status(store, &image), |found| found.map(|i| Image { id: i.id, size: i.size }))
    }

    fn pull_image<'a>(&'a self, store: &'a mut Store<State>, image: &str, auth: Option<&RegistryAuth>) -> Call<'a, String> {
        super::pull(self, store, image, auth)
    }
}

/// The plugin's own error as the runtime error the agent reads. `not-found` stays
/// [`RuntimeError::NotFound`], which the agent treats as "already gone".
pub(super) fn runtime_error(call: &'static str, e: wit::RuntimeError) -> RuntimeError {
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
