//! A pod worker: one task per pod UID, so a slow pod (a long image pull, a container that takes
//! its whole grace period to stop) never delays another. It observes the pod's runtime objects,
//! asks the planner what to do, does it, publishes the pod's status, and sleeps until the wanted
//! pod changes, the relist or a probe pokes it, a back-off expires or the periodic resync comes
//! round.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;
use futures::future::join_all;
use k8s_openapi::api::core::v1::{ContainerPort, LifecycleHandler};
use staticlet_model::StaticPod;
use staticlet_model::status::{self, ContainerRecord, ERR_IMAGE_PULL, IMAGE_PULL_BACK_OFF, PodObservation, RecordState, WaitingReason};
use staticlet_runtime::{
    Container, ContainerState, ContainerStatus, LabelFilter, LogOptions, PodSandbox, Runtime, RuntimeError, SandboxState,
};
use tokio::sync::{Notify, watch};
use tracing::{debug, error, info, warn};

use super::Context;
use super::backoff::BackoffTable;
use super::container_action;
use super::labels::{
    CONTAINER_PORTS, CONTAINER_ROLE, GRACE_PERIOD, INIT_INDEX, NODE, POD_UID, PRE_STOP_HANDLER, TERMINATION_MESSAGE_PATH,
    TERMINATION_MESSAGE_POLICY, belongs_to,
};
use super::plan::{self, Action, ObservedContainer, ObservedPod, Plan};
use super::podconfig;
use super::probe::{Prober, Target};
use crate::events::PodEvents;
use crate::state::PodRecord;
use crate::status::PodView;

/// Every pod is looked at this often even when nothing pokes it. The relist already pokes a
/// worker on any change it can see, so this only bounds how long a missed change can last;
/// it is kept long because each resync costs two runtime calls per pod.
const RESYNC: Duration = Duration::from_secs(300);
/// The kubelet's floor on a grace period.
const MIN_GRACE: Duration = Duration::from_secs(2);
/// Retry delays after a failed sync: from the first to the cap, doubling. The cap is the
/// kubelet's pod worker back-off (`workerBackOffPeriod`), so a runtime that recovers is used
/// again within seconds; containers that keep failing have their own, longer back-off.
const RETRY_FIRST: Duration = Duration::from_secs(2);
const RETRY_MAX: Duration = Duration::from_secs(10);
/// The kubelet reads at most this much of a termination message.
const MAX_TERMINATION_MESSAGE: u64 = 4096;
/// `FallbackToLogsOnError` takes at most this many lines of the log, as the kubelet does...
const FALLBACK_LOG_LINES: u64 = 80;
/// ...and at most this many bytes of them.
const FALLBACK_LOG_BYTES: usize = 2048;
/// A postStart hook has no deadline of its own in the API; this bounds a hung one.
const POST_START_TIMEOUT: Duration = Duration::from_secs(120);

/// How a sync ended.
enum Outcome {
    /// Nothing of the pod is left and nothing is wanted.
    Gone,
    /// Look again at this time at the latest.
    Requeue(Duration),
}

/// Why a container could not be started, in the status's words.
struct StartFailure {
    reason: &'static str,
    message: String,
    /// A back-off to wait out before trying again (image pulls).
    retry_at: Option<SystemTime>,
}

/// The state one worker carries between syncs.
pub struct Worker {
    uid: String,
    /// The handler whose runtime this worker drives.
    handler: String,
    runtime: Arc<dyn Runtime>,
    ctx: Arc<Context>,
    wanted: watch::Receiver<Option<Arc<StaticPod>>>,
    poke: Arc<Notify>,
    /// Woken when someone asks for the pod to be restarted.
    restart: Arc<Notify>,
    restart_requested: bool,
    /// Back-off and start time, kept under `--root-dir`.
    record: PodRecord,
    /// Pull back-off per image, as the kubelet's image manager keeps it.
    image_backoff: BackoffTable,
    /// Detailed statuses by container ID, with the listed state they were fetched in.
    statuses: HashMap<String, (ContainerState, ContainerStatus)>,
    /// Sandbox addresses by sandbox ID.
    sandbox_ips: HashMap<String, Option<String>>,
    /// The last start failure of each container, by name.
    failures: HashMap<String, WaitingReason>,
    prober: Prober,
    /// Where this pod's events go.
    events: PodEvents,
    retry: Duration,
    reported: HashSet<(String, SystemTime)>,
}

impl Worker {
    /// A worker for `uid` on `handler`'s `runtime`, fed by `wanted`, woken by `poke`, and
    /// asked to restart the pod by `restart`.
    pub fn new(
        uid: String,
        handler: String,
        runtime: Arc<dyn Runtime>,
        ctx: Arc<Context>,
        wanted: watch::Receiver<Option<Arc<StaticPod>>>,
        poke: Arc<Notify>,
        restart: Arc<Notify>,
    ) -> Self {
        let path = ctx.layout.pod_record(&uid);
        let record = PodRecord::load(&path).unwrap_or_else(|e| {
            warn!(uid = %uid, "ignoring the pod's saved state and rebuilding it from the runtime: {e}");
            None
        });
        let events = wanted.borrow().as_ref().map_or_else(|| ctx.events.for_unknown_pod(&uid), |p| ctx.events.for_pod(p));
        let prober = Prober::new(runtime.clone(), ctx.runner.clone(), poke.clone(), events.clone());
        Worker {
            uid,
            handler,
            runtime,
            ctx,
            wanted,
            poke,
            restart,
            restart_requested: false,
            record: record.unwrap_or_default(),
            image_backoff: BackoffTable::default(),
            statuses: HashMap::new(),
            sandbox_ips: HashMap::new(),
            failures: HashMap::new(),
            prober,
            events,
            retry: RETRY_FIRST,
            reported: HashSet::new(),
        }
    }

    /// Runs until the pod is gone and no longer wanted, or the controller drops the worker.
    pub async fn run(mut self) {
        loop {
            let wanted = self.wanted.borrow_and_update().clone();
            if let Some(pod) = &wanted
                && !self.events.names_a_pod()
            {
                // Adopted before its manifest was read: from now on its events are kept.
                self.events = self.ctx.events.for_pod(pod);
                self.prober.set_events(self.events.clone());
            }
            let started = Instant::now();
            let synced = self.sync(wanted.as_ref()).await;
            self.ctx.metrics.pod_synced(started.elapsed());
            let (wait, failed) = match synced {
                Ok(Outcome::Gone) if self.wanted.borrow().is_none() => return,
                Ok(Outcome::Gone) => continue,
                Ok(Outcome::Requeue(wait)) => (wait, false),
                Err(e) => {
                    let pod = wanted.as_ref().map_or_else(|| self.uid.clone(), |p| p.full_name());
                    error!(pod = %pod, uid = %self.uid, runtime = self.runtime.name(), retry_in = ?self.retry, "sync failed: {e}");
                    (self.next_retry(), true)
                }
            };
            tokio::select! {
                changed = self.wanted.changed() => if changed.is_err() { return },
                // After a failure the retry waits out its back-off: the failed attempt's own
                // objects coming and going poke the worker, and must not make it a hot loop.
                _ = self.poke.notified(), if !failed => {}
                _ = self.restart.notified() => self.restart_requested = true,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Whose the objects this worker creates are.
    fn owner(&self) -> podconfig::Owner<'_> {
        podconfig::Owner { node: &self.ctx.node, handler: &self.handler }
    }

    /// Drops the pod's status, unless it is the status of the pod on another handler (the pod
    /// moved there, and this worker only clears what it left here).
    fn forget_status(&self) {
        let runtimes = &self.ctx.runtimes;
        self.ctx.status.remove_if(&self.uid, |view| runtimes.handler_of(&view.pod.pod).is_none_or(|h| h == self.handler));
    }

    fn next_retry(&mut self) -> Duration {
        let wait = self.retry;
        self.retry = (self.retry * 2).min(RETRY_MAX);
        wait
    }

    async fn observe(&mut self, wanted: Option<&StaticPod>) -> Result<ObservedPod, RuntimeError> {
        let filter = LabelFilter::new(POD_UID, &self.uid).and(NODE, &self.ctx.node);
        let runtime = self.runtime.clone();
        let (mut sandboxes, mut containers) = tokio::try_join!(runtime.list_pod_sandboxes(&filter), runtime.list_containers(&filter))?;
        sandboxes.retain(|s| belongs_to(&s.labels, &self.handler));
        containers.retain(|c| belongs_to(&c.labels, &self.handler));
        self.statuses.retain(|id, _| containers.iter().any(|c| &c.id == id));
        self.sandbox_ips.retain(|id, _| sandboxes.iter().any(|s| &s.id == id));
        let unhealthy = self.prober.unhealthy();
        let probes = self.prober.results();
        let starting_up: HashMap<&str, bool> = wanted
            .and_then(|p| p.pod.spec.as_ref())
            .map(|spec| {
                spec.init_containers
                    .iter()
                    .flatten()
                    .chain(&spec.containers)
                    .map(|c| (c.name.as_str(), c.startup_probe.is_some()))
                    .collect()
            })
            .unwrap_or_default();
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
            let unhealthy = unhealthy.get(&container.id).cloned();
            let starting = container.state == ContainerState::Running
                && starting_up.get(container.metadata.name.as_str()).is_some_and(|has_probe| *has_probe)
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
                && let Some(message) = read_message(&self.ctx.layout.termination_message(&self.uid, &meta.name, meta.attempt))
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

    /// One pass for the pod as `wanted` at the start of the pass; the status published is
    /// computed for that same pod.
    async fn sync(&mut self, wanted_arc: Option<&Arc<StaticPod>>) -> Result<Outcome, RuntimeError> {
        let wanted = wanted_arc.map(|p| &**p);
        let mut observed = match self.observe(wanted).await {
            Ok(observed) => observed,
            Err(e) => {
                if let Some(pod) = wanted_arc
                    && self.record.start_time.is_none()
                {
                    // Never seen on its runtime: the pod waits, and says why, until it can be.
                    self.waiting_on_runtime(pod, &format!("cannot list the pod's objects on runtime {}: {e}", self.handler)).await;
                }
                return Err(e);
            }
        };
        if self.restart_requested && wanted.is_some() {
            self.events.normal(None, "Restarting", "Stopping every container to start the pod afresh, as requested");
            self.kill_pod(&observed, grace_period(wanted, &observed)).await?;
            self.restart_requested = false;
            // Afresh: no back-off, a new start time, restart counts from zero.
            self.record = PodRecord::default();
            self.failures.clear();
            self.statuses.clear();
            self.sandbox_ips.clear();
            self.reported.clear();
            observed = self.observe(wanted).await?;
        }
        let now = SystemTime::now();
        let plan = plan::plan(wanted, &observed, &self.record.backoff, now);
        if plan.gone {
            let dir = self.ctx.layout.pod_dir(&self.uid);
            if dir.exists()
                && let Err(e) = std::fs::remove_dir_all(&dir)
            {
                warn!(uid = %self.uid, dir = %dir.display(), "cannot remove the pod's directory: {e}");
            }
            self.forget_status();
            return Ok(Outcome::Gone);
        }
        let mut dirty = false;
        if wanted.is_some() && self.record.start_time.is_none() {
            // A record lost or damaged is rebuilt from the runtime: a pod already running
            // started when its first sandbox was made.
            let first_sandbox = observed.sandboxes.iter().map(|s| s.created_at).min();
            self.record.start_time = Some(first_sandbox.unwrap_or(now));
            dirty = true;
        }
        for (name, finished) in &plan.backoff_next {
            self.record.backoff.next(name, *finished);
            dirty = true;
        }
        if dirty && let Err(e) = self.record.save(&self.ctx.layout.pod_record(&self.uid)) {
            warn!(uid = %self.uid, "cannot save the pod's state; back-off will not survive a restart: {e}");
        }
        self.report_waiting(wanted, &plan);
        if wanted.is_none() {
            // Its manifest is gone: the pod leaves the API at once, as it leaves the kubelet's
            // pod manager, while its objects are torn down (forgetting it afterwards let the API
            // show it for a moment after its last object was gone).
            self.forget_status();
        }
        let retry_at = match self.execute(wanted, &observed, &plan).await {
            Ok(retry_at) => retry_at,
            Err(e) => {
                // What failed shows in the pod's status until a retry works.
                if let Some(pod) = wanted_arc {
                    self.publish(pod, &observed, &plan).await;
                }
                return Err(e);
            }
        };
        if let Some(pod) = wanted_arc {
            self.watch_probes(pod, &observed).await;
            self.publish(pod, &observed, &plan).await;
        }
        let wait = match retry_at {
            Some(at) => at.duration_since(SystemTime::now()).unwrap_or_default().max(self.next_retry()),
            None => {
                self.retry = RETRY_FIRST;
                plan.requeue_at().and_then(|at| at.duration_since(SystemTime::now()).ok()).unwrap_or(RESYNC).min(RESYNC)
            }
        };
        Ok(Outcome::Requeue(wait))
    }

    fn report_waiting(&mut self, wanted: Option<&StaticPod>, plan: &Plan) {
        let Some(pod) = wanted else { return };
        for waiting in &plan.waiting {
            if self.reported.insert((waiting.name.clone(), waiting.until)) {
                let delay = waiting.until.duration_since(SystemTime::now()).unwrap_or_default();
                debug!(pod = %pod.full_name(), container = %waiting.name, "next start attempt in {}s", delay.as_secs());
                self.events.warning(
                    Some(&waiting.name),
                    "BackOff",
                    format!("Back-off restarting failed container {} in pod {}", waiting.name, pod.full_name()),
                );
            }
        }
        self.reported.retain(|(_, until)| *until > SystemTime::now() - Duration::from_secs(1));
    }

    /// The newest ready sandbox: the one containers are started in.
    fn current_sandbox(observed: &ObservedPod) -> Option<&PodSandbox> {
        observed.sandboxes.iter().filter(|s| s.state == SandboxState::Ready).max_by_key(|s| (s.metadata.attempt, s.created_at))
    }

    /// The pod's address in a sandbox: its own, or the host's on the host network.
    async fn pod_ip(&mut self, sandbox_id: &str, host_network: bool) -> String {
        if host_network {
            return self.ctx.host_ip.clone();
        }
        if !self.sandbox_ips.contains_key(sandbox_id) {
            let ip = self.runtime.pod_sandbox_status(sandbox_id).await.ok().and_then(|s| s.ip);
            self.sandbox_ips.insert(sandbox_id.to_owned(), ip);
        }
        self.sandbox_ips.get(sandbox_id).cloned().flatten().unwrap_or_default()
    }

    /// Executes the plan; returns when a failed start may be retried, if one failed.
    async fn execute(
        &mut self,
        wanted: Option<&StaticPod>,
        observed: &ObservedPod,
        plan: &Plan,
    ) -> Result<Option<SystemTime>, RuntimeError> {
        let runtime = self.runtime.clone();
        let pod_name = wanted.map_or_else(|| format!("uid {}", self.uid), StaticPod::full_name);
        let grace = grace_period(wanted, observed);
        let mut sandbox = Self::current_sandbox(observed).map(|s| (s.id.clone(), s.metadata.attempt));
        let mut retry_at = None;

        for action in &plan.actions {
            match action {
                Action::KillPod { reason } => {
                    info!(pod = %pod_name, reason = "Killing", "stopping pod because {reason}");
                    self.kill_pod(observed, grace).await?;
                    sandbox = None;
                }
                Action::CreateSandbox { attempt } => {
                    let pod = wanted.expect("the planner creates sandboxes only for wanted pods");
                    let config = podconfig::sandbox_config(pod, *attempt, self.owner());
                    let id = match runtime.run_pod_sandbox(&config).await {
                        Ok(id) => id,
                        Err(e) => {
                            self.sandbox_failed(pod, &e);
                            return Err(e);
                        }
                    };
                    info!(pod = %pod_name, sandbox = %short(&id), attempt, "created sandbox");
                    sandbox = Some((id, *attempt));
                }
                Action::StartContainer { name, attempt } => {
                    let pod = wanted.expect("the planner starts containers only for wanted pods");
                    let Some((sandbox_id, sandbox_attempt)) = sandbox.clone() else {
                        return Err(RuntimeError::NotFound(format!("a ready sandbox for {pod_name}")));
                    };
                    match self.start_container(pod, name, *attempt, &sandbox_id, sandbox_attempt).await {
                        Ok(()) => {
                            self.failures.remove(name);
                        }
                        Err(failure) => {
                            if failure.reason == IMAGE_PULL_BACK_OFF {
                                self.events.warning(Some(name), "BackOff", failure.message.clone());
                            } else {
                                self.events.warning(Some(name), "Failed", format!("Error: {}: {}", failure.reason, failure.message));
                            }
                            let at = failure.retry_at.unwrap_or_else(SystemTime::now);
                            retry_at = Some(retry_at.map_or(at, |r: SystemTime| r.min(at)));
                            self.failures.insert(name.clone(), WaitingReason { reason: failure.reason.into(), message: failure.message });
                        }
                    }
                }
                Action::KillContainer { id, name, reason, grace_seconds } => {
                    self.events.normal(Some(name), "Killing", format!("Stopping container {name}: {reason}"));
                    let grace = grace_seconds.map_or(grace, grace_from_seconds);
                    if let Some(c) = observed.containers.iter().find(|c| &c.container.id == id) {
                        self.kill_container(&c.container, grace).await?;
                    }
                }
                Action::RemoveContainer { id } => {
                    if let Some(c) = observed.containers.iter().find(|c| &c.container.id == id) {
                        self.remove_container(&c.container).await?;
                    }
                }
                Action::RemoveSandbox { id } => self.remove_sandbox(id).await?,
            }
        }
        Ok(retry_at)
    }

    /// Shows every container of a pod that has not started waiting in `ContainerCreating`
    /// with `message`, and publishes that.
    async fn waiting_on_runtime(&mut self, pod: &Arc<StaticPod>, message: &str) {
        self.all_creating(pod, message);
        self.publish(pod, &ObservedPod::default(), &Plan::default()).await;
    }

    /// Marks every container of `pod` as waiting in `ContainerCreating` with `message`, until
    /// it starts.
    fn all_creating(&mut self, pod: &StaticPod, message: &str) {
        let spec = pod.pod.spec.as_ref();
        let names = spec.into_iter().flat_map(|s| s.init_containers.iter().flatten().chain(&s.containers)).map(|c| c.name.clone());
        for name in names {
            self.failures.insert(name, WaitingReason { reason: "ContainerCreating".into(), message: message.to_owned() });
        }
    }

    /// Shows a failed sandbox as the kubelet does: a `FailedCreatePodSandBox` event, and every
    /// container waiting in `ContainerCreating` with the runtime's words, until a retry works.
    fn sandbox_failed(&mut self, pod: &StaticPod, e: &RuntimeError) {
        let message = format!("Failed to create pod sandbox: {e}");
        self.events.warning(None, "FailedCreatePodSandBox", message.clone());
        self.all_creating(pod, &message);
    }

    /// Removes a container and the host side of its termination message.
    async fn remove_container(&self, container: &Container) -> Result<(), RuntimeError> {
        self.runtime.remove_container(&container.id).await?;
        if container.annotations.contains_key(TERMINATION_MESSAGE_PATH) {
            let path = self.ctx.layout.termination_message(&self.uid, &container.metadata.name, container.metadata.attempt);
            let _ = std::fs::remove_file(path);
        }
        Ok(())
    }

    async fn remove_sandbox(&self, sandbox_id: &str) -> Result<(), RuntimeError> {
        self.runtime.stop_pod_sandbox(sandbox_id).await?;
        self.runtime.remove_pod_sandbox(sandbox_id).await
    }

    /// Stops the pod as the kubelet does: app containers first, together, then sidecars one by
    /// one in reverse order, all within one grace period; then the sandboxes.
    async fn kill_pod(&mut self, observed: &ObservedPod, grace: Duration) -> Result<(), RuntimeError> {
        let deadline = Instant::now() + grace;
        let running = observed.containers.iter().map(|c| &c.container).filter(|c| c.state == ContainerState::Running);
        let (mut sidecars, others): (Vec<&Container>, Vec<&Container>) =
            running.partition(|c| c.annotations.get(CONTAINER_ROLE).is_some_and(|r| r == "sidecar"));
        sidecars.sort_by_key(|c| std::cmp::Reverse(c.annotations.get(INIT_INDEX).and_then(|i| i.parse::<usize>().ok())));
        let mut addresses = HashMap::new();
        for c in others.iter().chain(&sidecars) {
            if !addresses.contains_key(&c.pod_sandbox_id) {
                let ip = self.pod_ip(&c.pod_sandbox_id, false).await;
                addresses.insert(c.pod_sandbox_id.clone(), ip);
            }
        }
        for c in others.iter().chain(&sidecars) {
            self.events.normal(Some(&c.metadata.name), "Killing", format!("Stopping container {}", c.metadata.name));
        }
        let this = &*self;
        for result in join_all(others.iter().map(|c| this.stop_with_hook(c, grace, &addresses[&c.pod_sandbox_id]))).await {
            result?;
        }
        for c in sidecars {
            let remaining = deadline.saturating_duration_since(Instant::now()).max(MIN_GRACE);
            this.stop_with_hook(c, remaining, &addresses[&c.pod_sandbox_id]).await?;
        }
        for sandbox in &observed.sandboxes {
            self.remove_sandbox(&sandbox.id).await?;
        }
        for c in &observed.containers {
            self.remove_container(&c.container).await?;
        }
        Ok(())
    }

    async fn kill_container(&mut self, container: &Container, grace: Duration) -> Result<(), RuntimeError> {
        let pod_ip = self.pod_ip(&container.pod_sandbox_id, false).await;
        self.stop_with_hook(container, grace, &pod_ip).await
    }

    /// Runs the container's `preStop` hook, then stops it with what is left of `grace` (at
    /// least the kubelet's 2 s floor).
    async fn stop_with_hook(&self, container: &Container, grace: Duration, pod_ip: &str) -> Result<(), RuntimeError> {
        let started = Instant::now();
        if container.state == ContainerState::Running
            && let Some(hook) = container.annotations.get(PRE_STOP_HANDLER)
        {
            let ports: Option<Vec<ContainerPort>> = container.annotations.get(CONTAINER_PORTS).and_then(|p| serde_json::from_str(p).ok());
            let name = &container.metadata.name;
            match serde_json::from_str::<LifecycleHandler>(hook).map_err(|e| e.to_string()).and_then(|hook| {
                container_action::from_hook(&hook, ports.as_deref(), if pod_ip.is_empty() { &self.ctx.host_ip } else { pod_ip })
                    .map_err(|e| e.to_string())
            }) {
                Ok(action) => {
                    if let Err(message) = self.ctx.runner.hook(&action, self.runtime.as_ref(), &container.id, grace).await {
                        self.events.warning(Some(name), "FailedPreStopHook", format!("PreStopHook failed: {message}"));
                    }
                }
                Err(e) => self.events.warning(Some(name), "FailedPreStopHook", format!("PreStopHook cannot run: {e}")),
            }
        }
        let remaining = grace.saturating_sub(started.elapsed()).max(MIN_GRACE);
        self.runtime.stop_container(&container.id, remaining).await
    }

    async fn start_container(
        &mut self,
        pod: &StaticPod,
        name: &str,
        attempt: u32,
        sandbox_id: &str,
        sandbox_attempt: u32,
    ) -> Result<(), StartFailure> {
        let runtime = self.runtime.clone();
        let full_name = pod.full_name();
        let call_failed = |reason: &'static str| move |e: RuntimeError| StartFailure { reason, message: e.to_string(), retry_at: None };
        let container = podconfig::find_container(pod, name).ok_or_else(|| StartFailure {
            reason: "CreateContainerConfigError",
            message: format!("no container {name}"),
            retry_at: None,
        })?;
        let image = container.image.clone().unwrap_or_default();
        self.ensure_image(name, &image, container.image_pull_policy.as_deref().unwrap_or("IfNotPresent")).await?;
        let sandbox_config = podconfig::sandbox_config(pod, sandbox_attempt, self.owner());
        let pod_ip = self.pod_ip(sandbox_id, host_network(pod)).await;
        let addresses = podconfig::Addresses { pod_ip: Some(pod_ip.as_str()).filter(|ip| !ip.is_empty()), host_ip: &self.ctx.host_ip };
        let config = podconfig::container_config(pod, container, attempt, self.owner(), &self.ctx.layout, addresses)
            .map_err(|e| StartFailure { reason: "CreateContainerConfigError", message: e.to_string(), retry_at: None })?;
        let id = runtime.create_container(sandbox_id, &config, &sandbox_config).await.map_err(call_failed("CreateContainerError"))?;
        self.events.normal(Some(name), "Created", format!("Created container {name}"));
        runtime.start_container(&id).await.map_err(call_failed("RunContainerError"))?;
        debug!(pod = %full_name, container = name, id = %short(&id), attempt, "container started");
        self.events.normal(Some(name), "Started", format!("Started container {name}"));

        if let Some(hook) = container.lifecycle.as_ref().and_then(|l| l.post_start.as_ref()) {
            let outcome = match container_action::from_hook(hook, container.ports.as_deref(), &pod_ip) {
                Ok(action) => self.ctx.runner.hook(&action, runtime.as_ref(), &id, POST_START_TIMEOUT).await,
                Err(e) => Err(e.to_string()),
            };
            if let Err(message) = outcome {
                self.events.warning(Some(name), "FailedPostStartHook", format!("PostStartHook failed: {message}"));
                let grace = grace_period(Some(pod), &ObservedPod::default());
                let listed = Container {
                    id: id.clone(),
                    pod_sandbox_id: sandbox_id.to_owned(),
                    metadata: config.metadata.clone(),
                    image: config.image.clone(),
                    state: ContainerState::Running,
                    created_at: SystemTime::now(),
                    labels: config.labels.clone(),
                    annotations: config.annotations.clone(),
                };
                self.stop_with_hook(&listed, grace, &pod_ip).await.map_err(call_failed("PostStartHookError"))?;
                return Err(StartFailure { reason: "PostStartHookError", message, retry_at: None });
            }
        }
        Ok(())
    }

    async fn ensure_image(&mut self, container: &str, image: &str, policy: &str) -> Result<(), StartFailure> {
        let runtime = &self.runtime;
        let present = runtime
            .image_status(image)
            .await
            .map_err(|e| StartFailure { reason: ERR_IMAGE_PULL, message: e.to_string(), retry_at: None })?
            .is_some();
        match policy {
            "Never" if !present => {
                return Err(StartFailure {
                    reason: "ErrImageNeverPull",
                    message: format!("Container image \"{image}\" is not present with pull policy of Never"),
                    retry_at: None,
                });
            }
            "IfNotPresent" | "Never" if present => return Ok(()),
            _ => {}
        }
        let now = SystemTime::now();
        if let Some(until) = self.image_backoff.waiting_since_update(image, now) {
            return Err(StartFailure {
                reason: IMAGE_PULL_BACK_OFF,
                message: format!("Back-off pulling image \"{image}\""),
                retry_at: Some(until),
            });
        }
        self.events.normal(Some(container), "Pulling", format!("Pulling image \"{image}\""));
        let started = Instant::now();
        match runtime.pull_image(image).await {
            Ok(_) => {
                let took = started.elapsed().as_secs_f64();
                self.events.normal(Some(container), "Pulled", format!("Successfully pulled image \"{image}\" in {took:.3}s"));
                Ok(())
            }
            Err(e) => {
                // The next sync comes soon and finds the back-off, so the status moves on to
                // ImagePullBackOff as a kubelet's does.
                self.image_backoff.next(image, now);
                Err(StartFailure { reason: ERR_IMAGE_PULL, message: e.to_string(), retry_at: None })
            }
        }
    }

    /// Keeps one set of probe tasks per running container of the current sandbox.
    async fn watch_probes(&mut self, pod: &StaticPod, observed: &ObservedPod) {
        let Some(sandbox) = Self::current_sandbox(observed) else {
            self.prober.sync(&[]);
            return;
        };
        let pod_ip = self.pod_ip(&sandbox.id, host_network(pod)).await;
        let targets: Vec<Target<'_>> = observed
            .containers
            .iter()
            .filter(|c| c.container.state == ContainerState::Running && c.container.pod_sandbox_id == sandbox.id)
            .filter_map(|c| {
                Some(Target {
                    container_id: &c.container.id,
                    container: podconfig::find_container(pod, &c.container.metadata.name)?,
                    created_at: c.container.created_at,
                    pod_ip: &pod_ip,
                })
            })
            .collect();
        self.prober.sync(&targets);
    }

    /// Computes the pod's status from what was observed and publishes it.
    async fn publish(&mut self, pod: &Arc<StaticPod>, observed: &ObservedPod, plan: &Plan) {
        let scheme = self.runtime.name().to_owned();
        let sandbox = Self::current_sandbox(observed).filter(|s| s.labels.get(super::labels::SANDBOX_HASH) == Some(&pod.sandbox_hash));
        let pod_ip = match sandbox {
            Some(s) => self.pod_ip(&s.id, host_network(pod)).await,
            None => String::new(),
        };
        let probes = self.prober.results();
        let mut observation = PodObservation {
            sandbox_ready: sandbox.is_some(),
            pod_ips: Some(pod_ip).filter(|ip| !ip.is_empty()).into_iter().collect(),
            host_ip: self.ctx.host_ip.clone(),
            start_time: self.record.start_time,
            containers: Vec::new(),
            waiting: self.failures.iter().map(|(name, w)| (name.clone(), w.clone())).collect(),
            probes: Default::default(),
        };
        for c in observed.containers.iter().filter(|c| sandbox.is_some_and(|s| s.id == c.container.pod_sandbox_id)) {
            let container_id = format!("{scheme}://{}", c.container.id);
            if let Some(results) = probes.get(&c.container.id) {
                observation.probes.insert(container_id.clone(), *results);
            }
            observation.containers.push(ContainerRecord {
                name: c.container.metadata.name.clone(),
                container_id,
                attempt: c.container.metadata.attempt,
                image_id: c.container.image.clone(),
                state: record_state(c),
            });
        }
        for waiting in &plan.waiting {
            let message = format!(
                "back-off {}s restarting failed container={} pod={}_{}({})",
                waiting.delay.as_secs(),
                waiting.name,
                pod.name(),
                pod.namespace(),
                pod.uid
            );
            observation.waiting.insert(waiting.name.clone(), WaitingReason { reason: status::CRASH_LOOP_BACK_OFF.into(), message });
        }
        let status = status::pod_status(&pod.pod, &observation);
        self.ctx.status.publish(&self.uid, PodView { pod: pod.clone(), status });
    }
}

fn record_state(c: &ObservedContainer) -> RecordState {
    match (c.container.state, &c.status) {
        (ContainerState::Running, status) => {
            RecordState::Running { started_at: status.as_ref().and_then(|s| s.started_at).unwrap_or(c.container.created_at) }
        }
        (ContainerState::Exited, Some(s)) => RecordState::Exited {
            started_at: s.started_at,
            finished_at: s.finished_at,
            exit_code: s.exit_code,
            reason: s.reason.clone(),
            message: s.message.clone(),
        },
        (ContainerState::Created, _) => RecordState::Created,
        _ => RecordState::Unknown,
    }
}

/// The container's termination message, if it wrote one: at most the kubelet's 4 KiB.
fn read_message(path: &std::path::Path) -> Option<String> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path).ok()?.take(MAX_TERMINATION_MESSAGE).read_to_end(&mut bytes).ok()?;
    (!bytes.is_empty()).then(|| String::from_utf8_lossy(&bytes).into_owned())
}

/// The grace period for stopping: the wanted pod's (its `deletionGracePeriodSeconds` first, as
/// the kubelet takes it for a pod being deleted), else what its objects were started with.
fn grace_period(wanted: Option<&StaticPod>, observed: &ObservedPod) -> Duration {
    let seconds = wanted
        .and_then(|p| p.pod.metadata.deletion_grace_period_seconds.or(p.pod.spec.as_ref()?.termination_grace_period_seconds))
        .or_else(|| observed.containers.iter().find_map(|c| c.container.annotations.get(GRACE_PERIOD)?.parse().ok()));
    grace_from_seconds(seconds.unwrap_or(30))
}

/// A grace period from the API's seconds, never below the kubelet's floor.
fn grace_from_seconds(seconds: i64) -> Duration {
    Duration::from_secs(seconds.max(0) as u64).max(MIN_GRACE)
}

fn host_network(pod: &StaticPod) -> bool {
    pod.pod.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false)
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}
