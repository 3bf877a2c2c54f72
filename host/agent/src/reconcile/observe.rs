//! Observe: what the runtime holds of one pod, as the planner reads it. The pod's sandboxes and
//! containers by label, each exited container's status with its termination message (from the
//! file the container wrote, or the tail of its log), and what the probes and hooks found.
//! Statuses are fetched once per container and state, and sandbox addresses once per sandbox,
//! so a steady pod costs two list calls per look.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use futures::StreamExt;
use staticlet_model::StaticPod;
use staticlet_runtime::{
    Container, ContainerState, ContainerStatus, LabelFilter, LogOptions, PodSandbox, Runtime, RuntimeError, SandboxState,
};
use tracing::info;

use super::plan::{ObservedContainer, ObservedPod, Unhealthy};
use super::probe::Prober;
use crate::state::Layout;
use staticlet_runtime::labels::{NODE, POD_UID, TERMINATION_MESSAGE_PATH, TERMINATION_MESSAGE_POLICY, belongs_to};

/// The kubelet reads at most this much of a termination message.
const MAX_TERMINATION_MESSAGE: u64 = 4096;
/// `FallbackToLogsOnError` takes at most this many lines of the log, as the kubelet does...
const FALLBACK_LOG_LINES: u64 = 80;
/// ...and at most this many bytes of them.
const FALLBACK_LOG_BYTES: usize = 2048;

/// Observes one pod's objects on one handler's runtime.
pub struct Observer {
    uid: String,
    handler: String,
    node: String,
    runtime: Arc<dyn Runtime>,
    layout: Layout,
    /// Detailed statuses by container ID, with the listed state they were fetched in.
    statuses: HashMap<String, (ContainerState, ContainerStatus)>,
    /// Running containers whose `postStart` hook failed, by ID: they must be stopped.
    failed_hooks: HashMap<String, Unhealthy>,
}

impl Observer {
    /// An observer of pod `uid`'s objects that `handler` made on `runtime` for `node`;
    /// termination messages are read under `layout`.
    pub fn new(uid: &str, handler: &str, node: &str, runtime: Arc<dyn Runtime>, layout: Layout) -> Self {
        Observer {
            uid: uid.to_owned(),
            handler: handler.to_owned(),
            node: node.to_owned(),
            runtime,
            layout,
            statuses: HashMap::new(),
            failed_hooks: HashMap::new(),
        }
    }

    /// Remembers that the `postStart` hook of container `id` failed, so the container is seen
    /// as one to stop.
    pub fn hook_failed(&mut self, id: String, message: &str) {
        let reason = format!("its postStart hook failed: {message}");
        self.failed_hooks.insert(id, Unhealthy { reason, grace_seconds: None });
    }

    /// The runtime's name, the scheme of the pod's `containerID`s.
    pub fn runtime_name(&self) -> &str {
        self.runtime.name()
    }

    /// Forgets everything cached, for a pod started afresh.
    pub fn forget(&mut self) {
        self.statuses.clear();
        self.failed_hooks.clear();
    }

    /// The pod's objects now, for `wanted` (whose startup probes decide which sidecars are
    /// still starting), with `prober`'s verdicts.
    pub async fn observe(&mut self, wanted: Option<&StaticPod>, prober: &Prober) -> Result<ObservedPod, RuntimeError> {
        let filter = LabelFilter::new(POD_UID, &self.uid).and(NODE, &self.node);
        let runtime = self.runtime.clone();
        let (mut sandboxes, mut containers) = tokio::try_join!(runtime.list_pod_sandboxes(&filter), runtime.list_containers(&filter))?;
        sandboxes.retain(|s| belongs_to(&s.labels, &self.handler));
        containers.retain(|c| belongs_to(&c.labels, &self.handler));
        self.statuses.retain(|id, _| containers.iter().any(|c| &c.id == id));
        self.failed_hooks.retain(|id, _| containers.iter().any(|c| &c.id == id && c.state == ContainerState::Running));
        let mut unhealthy = prober.unhealthy();
        unhealthy.extend(self.failed_hooks.iter().map(|(id, u)| (id.clone(), u.clone())));
        let probes = prober.results();
        let has_startup_probe = startup_probes(wanted);
        let mut observed = ObservedPod { sandboxes, containers: Vec::with_capacity(containers.len()) };
        for container in containers {
            let status = match self.statuses.get(&container.id) {
                Some((state, status)) if *state == container.state => Some(status.clone()),
                _ if matches!(container.state, ContainerState::Running | ContainerState::Exited) => {
                    match runtime.container_status(&container.id).await {
                        Ok(status) => Some(self.remember(&container, status).await),
                        Err(RuntimeError::NotFound(_)) => continue,
                        Err(e) => return Err(e),
                    }
                }
                _ => None,
            };
            let unhealthy = unhealthy.remove(&container.id);
            let starting = container.state == ContainerState::Running
                && has_startup_probe.get(container.metadata.name.as_str()).is_some_and(|has| *has)
                && probes.get(&container.id).and_then(|r| r.started) != Some(true);
            observed.containers.push(ObservedContainer { container, status, unhealthy, starting });
        }
        Ok(observed)
    }

    /// Caches a freshly fetched status; for an exited container, reads its termination message
    /// from the file, or under `FallbackToLogsOnError` from the tail of its log when it failed
    /// without writing one.
    async fn remember(&mut self, container: &Container, mut status: ContainerStatus) -> ContainerStatus {
        if container.state == ContainerState::Exited {
            let meta = &status.container.metadata;
            if container.annotations.contains_key(TERMINATION_MESSAGE_PATH)
                && let Some(message) = read_message(&self.layout.termination_message(&self.uid, &meta.name, meta.attempt))
            {
                status.message = message;
            } else if status.exit_code != 0
                && container.annotations.get(TERMINATION_MESSAGE_POLICY).is_some_and(|p| p == "FallbackToLogsOnError")
                && let Some(tail) = self.log_tail(&container.id).await
            {
                status.message = tail;
            }
            let meta = &status.container.metadata;
            info!(uid = %self.uid, container = %meta.name, attempt = meta.attempt, exit_code = status.exit_code, reason = %status.reason, "container terminated");
        }
        self.statuses.insert(container.id.clone(), (container.state, status.clone()));
        status
    }

    /// The end of a container's log, as much as the kubelet takes for a termination message.
    async fn log_tail(&self, container_id: &str) -> Option<String> {
        let options = LogOptions { tail_lines: Some(FALLBACK_LOG_LINES), ..LogOptions::default() };
        let mut stream = self.runtime.logs(container_id, &options).await.ok()?;
        let mut bytes = Vec::new();
        while let Some(Ok(chunk)) = stream.next().await {
            bytes.extend_from_slice(&chunk);
        }
        let start = bytes.len().saturating_sub(FALLBACK_LOG_BYTES);
        (start < bytes.len()).then(|| String::from_utf8_lossy(&bytes[start..]).into_owned())
    }
}

/// Which of the wanted pod's containers have a startup probe, by name.
fn startup_probes(wanted: Option<&StaticPod>) -> HashMap<&str, bool> {
    let Some(spec) = wanted.and_then(|p| p.pod.spec.as_ref()) else { return HashMap::new() };
    spec.init_containers.iter().flatten().chain(&spec.containers).map(|c| (c.name.as_str(), c.startup_probe.is_some())).collect()
}

/// The container's termination message, if it wrote one: at most the kubelet's 4 KiB.
fn read_message(path: &Path) -> Option<String> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path).ok()?.take(MAX_TERMINATION_MESSAGE).read_to_end(&mut bytes).ok()?;
    (!bytes.is_empty()).then(|| String::from_utf8_lossy(&bytes).into_owned())
}

/// The newest ready sandbox: the one containers are started in.
pub fn current_sandbox(observed: &ObservedPod) -> Option<&PodSandbox> {
    observed.sandboxes.iter().filter(|s| s.state == SandboxState::Ready).max_by_key(|s| (s.metadata.attempt, s.created_at))
}

/// The pod's addresses, asked of the runtime once per sandbox.
pub struct PodAddresses {
    runtime: Arc<dyn Runtime>,
    host_ip: String,
    by_sandbox: HashMap<String, Option<String>>,
}

impl PodAddresses {
    /// Addresses of sandboxes on `runtime`; pods on the host network have `host_ip`.
    pub fn new(runtime: Arc<dyn Runtime>, host_ip: &str) -> Self {
        PodAddresses { runtime, host_ip: host_ip.to_owned(), by_sandbox: HashMap::new() }
    }

    /// The pod's address in a sandbox: its own, or the host's on the host network; empty if
    /// the runtime gives none.
    pub async fn of(&mut self, sandbox_id: &str, host_network: bool) -> String {
        if host_network {
            return self.host_ip.clone();
        }
        if !self.by_sandbox.contains_key(sandbox_id) {
            let ip = self.runtime.pod_sandbox_status(sandbox_id).await.ok().and_then(|s| s.ip);
            self.by_sandbox.insert(sandbox_id.to_owned(), ip);
        }
        self.by_sandbox.get(sandbox_id).cloned().flatten().unwrap_or_default()
    }

    /// The node's address.
    pub fn host_ip(&self) -> &str {
        &self.host_ip
    }

    /// Forgets the addresses of sandboxes that are gone.
    pub fn retain(&mut self, sandboxes: &[PodSandbox]) {
        self.by_sandbox.retain(|id, _| sandboxes.iter().any(|s| &s.id == id));
    }

    /// Forgets every address, for a pod started afresh.
    pub fn clear(&mut self) {
        self.by_sandbox.clear();
    }
}

/// Whether the pod runs on the host's network.
pub fn host_network(pod: &StaticPod) -> bool {
    pod.pod.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false)
}
