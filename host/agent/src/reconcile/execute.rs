//! Execute: a plan's actions as runtime calls, with the events and waiting reasons the kubelet
//! shows for them. What to do was decided by the planner; this module only decides how a call
//! is made (which config, which grace period, which hook runs first).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::future::join_all;
use k8s_openapi::api::core::v1::{ContainerPort, LifecycleHandler};
use staticlet_model::StaticPod;
use staticlet_model::duration::GoDuration;
use staticlet_model::status::{ERR_IMAGE_PULL, IMAGE_PULL_BACK_OFF, WaitingReason};
use staticlet_runtime::{Container, ContainerState, Runtime, RuntimeError};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::Context;
use super::container_action;
use super::observe::{PodAddresses, current_sandbox, host_network};
use super::plan::{self, Action, ImageStep, ObservedPod, Plan};
use super::podconfig;
use super::pull;
use crate::events::PodEvents;
use staticlet_model::backoff::BackoffTable;
use staticlet_runtime::labels::{CONTAINER_PORTS, CONTAINER_ROLE, GRACE_PERIOD, INIT_INDEX, PRE_STOP_HANDLER, TERMINATION_MESSAGE_PATH};

/// The kubelet's floor on a grace period.
const MIN_GRACE: Duration = Duration::from_secs(2);
/// A postStart hook has no deadline of its own in the API; this bounds a hung one.
const POST_START_TIMEOUT: Duration = Duration::from_secs(120);

/// Why a container could not be started, in the status's words.
struct StartFailure {
    reason: &'static str,
    message: String,
    /// A back-off to wait out before trying again (image pulls).
    retry_at: Option<SystemTime>,
}

impl StartFailure {
    fn new(reason: &'static str, message: impl Into<String>) -> Self {
        StartFailure { reason, message: message.into(), retry_at: None }
    }
}

/// What executing a plan left to do.
#[derive(Debug, Default)]
pub struct Executed {
    /// A container failed to start: try again at this time at the earliest.
    pub retry_at: Option<SystemTime>,
    /// Containers started whose `postStart` hook failed, by ID, with the hook's words: the
    /// planner has them stopped.
    pub failed_hooks: Vec<(String, String)>,
}

/// Carries out plans for one pod on one handler's runtime.
pub struct Executor {
    uid: String,
    handler: String,
    runtime: Arc<dyn Runtime>,
    ctx: Arc<Context>,
    events: PodEvents,
    /// The pod's addresses, which configs, hooks and the status need.
    pub addresses: PodAddresses,
    /// Pull back-off per image, as the kubelet's image manager keeps it.
    image_backoff: BackoffTable,
    /// The last failed pull's words, per image, for the back-off's message.
    pull_errors: HashMap<String, String>,
    /// The last start failure of each container, by name, until it starts.
    failures: HashMap<String, WaitingReason>,
}

impl Executor {
    /// An executor for pod `uid` on `handler`'s `runtime`, whose events go to `events`.
    pub fn new(uid: &str, handler: &str, runtime: Arc<dyn Runtime>, ctx: Arc<Context>, events: PodEvents) -> Self {
        let addresses = PodAddresses::new(runtime.clone(), &ctx.host_ip);
        Executor {
            uid: uid.to_owned(),
            handler: handler.to_owned(),
            runtime,
            ctx,
            events,
            addresses,
            image_backoff: BackoffTable::default(),
            pull_errors: HashMap::new(),
            failures: HashMap::new(),
        }
    }

    /// Sends the pod's events to `events` from now on.
    pub fn set_events(&mut self, events: PodEvents) {
        self.events = events;
    }

    /// Why containers that have not started are waiting, by name.
    pub fn failures(&self) -> &HashMap<String, WaitingReason> {
        &self.failures
    }

    /// Forgets start failures and addresses, for a pod started afresh.
    pub fn forget(&mut self) {
        self.failures.clear();
        self.addresses.clear();
    }

    /// Whose the objects this executor creates are.
    fn owner(&self) -> podconfig::Owner<'_> {
        podconfig::Owner { node: &self.ctx.node, handler: &self.handler }
    }

    /// Executes `plan` for `wanted` on what was `observed`.
    ///
    /// # Errors
    ///
    /// The first runtime call that failed; the actions after it are not run. A container that
    /// fails to start is no error: it waits with its reason, and [`Executed::retry_at`] says
    /// when to try again.
    pub async fn execute(&mut self, wanted: Option<&StaticPod>, observed: &ObservedPod, plan: &Plan) -> Result<Executed, RuntimeError> {
        self.addresses.retain(&observed.sandboxes);
        let pod_name = wanted.map_or_else(|| format!("uid {}", self.uid), StaticPod::full_name);
        let grace = grace_period(wanted, observed);
        let mut sandbox = current_sandbox(observed).map(|s| (s.id.clone(), s.metadata.attempt));
        let mut executed = Executed::default();
        for action in &plan.actions {
            match action {
                Action::KillPod { reason } => {
                    info!(pod = %pod_name, reason = "Killing", "stopping pod because {reason}");
                    self.kill_pod(observed, grace).await?;
                    sandbox = None;
                }
                Action::CreateSandbox { attempt } => {
                    let pod = wanted.expect("the planner creates sandboxes only for wanted pods");
                    let id = self.create_sandbox(pod, *attempt).await?;
                    info!(pod = %pod_name, sandbox = %short(&id), attempt, "created sandbox");
                    sandbox = Some((id, *attempt));
                }
                Action::StartContainer { name, attempt } => {
                    let pod = wanted.expect("the planner starts containers only for wanted pods");
                    let Some((sandbox_id, sandbox_attempt)) = sandbox.clone() else {
                        return Err(RuntimeError::NotFound(format!("a ready sandbox for {pod_name}")));
                    };
                    self.start(pod, name, (*attempt, &sandbox_id, sandbox_attempt), &mut executed).await;
                }
                Action::KillContainer { id, name, reason, grace_seconds } => {
                    self.events.normal(Some(name), "Killing", format!("Stopping container {name}: {reason}"));
                    let grace = grace_seconds.map_or(grace, grace_from_seconds);
                    if let Some(c) = observed.containers.iter().find(|c| &c.container.id == id) {
                        let pod_ip = self.addresses.of(&c.container.pod_sandbox_id, false).await;
                        self.stop_with_hook(&c.container, grace, &pod_ip).await?;
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
        Ok(executed)
    }

    /// Creates the pod's sandbox; a failure shows on every container until a retry works.
    async fn create_sandbox(&mut self, pod: &StaticPod, attempt: u32) -> Result<String, RuntimeError> {
        self.ensure_sandbox_image().await;
        let config = podconfig::sandbox_config(pod, attempt, self.owner());
        self.runtime.run_pod_sandbox(&config).await.inspect_err(|e| {
            let message = format!("Failed to create pod sandbox: {e}");
            self.events.warning(None, "FailedCreatePodSandBox", message.clone());
            self.all_creating(pod, &message);
        })
    }

    /// Starts container `name`, recording why it could not start if it could not.
    async fn start(&mut self, pod: &StaticPod, name: &str, at: (u32, &str, u32), executed: &mut Executed) {
        match self.start_container(pod, name, at).await {
            Ok(Some(failed_hook)) => executed.failed_hooks.push(failed_hook),
            Ok(None) => {}
            Err(failure) => {
                if failure.reason == IMAGE_PULL_BACK_OFF {
                    self.events.warning(Some(name), "BackOff", failure.message.clone());
                } else if failure.reason == ERR_IMAGE_PULL {
                    // The pull's own event said why, as the kubelet's "Failed to pull image" does.
                    self.events.warning(Some(name), "Failed", format!("Error: {ERR_IMAGE_PULL}"));
                } else {
                    self.events.warning(Some(name), "Failed", format!("Error: {}: {}", failure.reason, failure.message));
                }
                let at = failure.retry_at.unwrap_or_else(|| self.ctx.clock.now());
                executed.retry_at = Some(executed.retry_at.map_or(at, |r| r.min(at)));
                self.failures.insert(name.to_owned(), WaitingReason { reason: failure.reason.into(), message: failure.message });
            }
        }
    }

    /// Marks every container of `pod` as waiting in `ContainerCreating` with `message`, until
    /// it starts.
    pub fn all_creating(&mut self, pod: &StaticPod, message: &str) {
        let spec = pod.pod.spec.as_ref();
        let names = spec.into_iter().flat_map(|s| s.init_containers.iter().flatten().chain(&s.containers)).map(|c| c.name.clone());
        for name in names {
            self.failures.insert(name, WaitingReason { reason: "ContainerCreating".into(), message: message.to_owned() });
        }
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
    pub async fn kill_pod(&mut self, observed: &ObservedPod, grace: Duration) -> Result<(), RuntimeError> {
        let deadline = Instant::now() + grace;
        let running = observed.containers.iter().map(|c| &c.container).filter(|c| c.state == ContainerState::Running);
        let (mut sidecars, others): (Vec<&Container>, Vec<&Container>) =
            running.partition(|c| c.annotations.get(CONTAINER_ROLE).is_some_and(|r| r == "sidecar"));
        sidecars.sort_by_key(|c| std::cmp::Reverse(c.annotations.get(INIT_INDEX).and_then(|i| i.parse::<usize>().ok())));
        let mut addresses = HashMap::new();
        for c in others.iter().chain(&sidecars) {
            if !addresses.contains_key(&c.pod_sandbox_id) {
                let ip = self.addresses.of(&c.pod_sandbox_id, false).await;
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

    /// Runs the container's `preStop` hook, then stops it with what is left of `grace` (at
    /// least the kubelet's 2 s floor).
    async fn stop_with_hook(&self, container: &Container, grace: Duration, pod_ip: &str) -> Result<(), RuntimeError> {
        let started = Instant::now();
        if container.state == ContainerState::Running
            && let Some(hook) = container.annotations.get(PRE_STOP_HANDLER)
        {
            let ports: Option<Vec<ContainerPort>> = container.annotations.get(CONTAINER_PORTS).and_then(|p| serde_json::from_str(p).ok());
            let host = if pod_ip.is_empty() { &self.ctx.host_ip } else { pod_ip };
            let name = &container.metadata.name;
            match serde_json::from_str::<LifecycleHandler>(hook)
                .map_err(|e| e.to_string())
                .and_then(|hook| container_action::from_hook(&hook, ports.as_deref(), host).map_err(|e| e.to_string()))
            {
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

    /// Creates and starts attempt `at.0` of container `name` in sandbox `at.1` (attempt `at.2`),
    /// then runs its `postStart` hook. Returns the container's ID with the hook's words if the
    /// hook failed.
    async fn start_container(
        &mut self,
        pod: &StaticPod,
        name: &str,
        at: (u32, &str, u32),
    ) -> Result<Option<(String, String)>, StartFailure> {
        let (attempt, sandbox_id, sandbox_attempt) = at;
        let call_failed = |reason: &'static str| move |e: RuntimeError| StartFailure::new(reason, e.to_string());
        let container = podconfig::find_container(pod, name)
            .ok_or_else(|| StartFailure::new("CreateContainerConfigError", format!("no container {name}")))?;
        let image = container.image.clone().unwrap_or_default();
        // The pod's address (for `status.podIP` in the environment, and hooks) is asked for
        // while the image is looked up: two calls the runtime answers side by side.
        let runtime = self.runtime.clone();
        let (present, pod_ip) = tokio::join!(runtime.image_status(&image), self.addresses.of(sandbox_id, host_network(pod)));
        let present =
            present.map_err(|e| StartFailure::new("ImageInspectError", format!("Failed to inspect image \"{image}\": {e}")))?.is_some();
        self.ensure_image(name, &image, present, container.image_pull_policy.as_deref().unwrap_or("IfNotPresent")).await?;
        let sandbox_config = podconfig::sandbox_config(pod, sandbox_attempt, self.owner());
        let addresses = podconfig::Addresses { pod_ip: Some(pod_ip.as_str()).filter(|ip| !ip.is_empty()), host_ip: &self.ctx.host_ip };
        let config = podconfig::container_config(pod, container, attempt, self.owner(), &self.ctx.layout, addresses)
            .map_err(|e| StartFailure::new("CreateContainerConfigError", e.to_string()))?;
        let id = runtime.create_container(sandbox_id, &config, &sandbox_config).await.map_err(call_failed("CreateContainerError"))?;
        self.events.normal(Some(name), "Created", format!("Created container {name}"));
        runtime.start_container(&id).await.map_err(call_failed("RunContainerError"))?;
        debug!(pod = %pod.full_name(), container = name, id = %short(&id), attempt, "container started");
        self.events.normal(Some(name), "Started", format!("Started container {name}"));
        self.failures.remove(name);
        let Some(hook) = container.lifecycle.as_ref().and_then(|l| l.post_start.as_ref()) else { return Ok(None) };
        let outcome = match container_action::from_hook(hook, container.ports.as_deref(), &pod_ip) {
            Ok(action) => self.ctx.runner.hook(&action, runtime.as_ref(), &id, POST_START_TIMEOUT).await,
            Err(e) => Err(e.to_string()),
        };
        let Err(message) = outcome else { return Ok(None) };
        self.events.warning(Some(name), "FailedPostStartHook", format!("PostStartHook failed: {message}"));
        self.events.warning(Some(name), "Failed", format!("Error: PostStartHookError: {message}"));
        self.failures.insert(name.to_owned(), WaitingReason { reason: "PostStartHookError".into(), message: message.clone() });
        Ok(Some((id, message)))
    }

    /// Makes `image` (`present` on the node or not) available as its pull `policy` and the image
    /// back-off say.
    async fn ensure_image(&mut self, container: &str, image: &str, present: bool, policy: &str) -> Result<(), StartFailure> {
        let now = self.ctx.clock.now();
        let last_error = self.pull_errors.get(image).map(String::as_str);
        match plan::image_step(image, policy, present, &self.image_backoff, last_error, now) {
            ImageStep::Use => return Ok(()),
            ImageStep::Refuse { reason, message, retry_at } => return Err(StartFailure { reason, message, retry_at }),
            ImageStep::Pull => {}
        }
        self.events.normal(Some(container), "Pulling", format!("Pulling image \"{image}\""));
        let started = Instant::now();
        match pull::pull(self.runtime.as_ref(), &self.ctx.credentials, image, &self.events, Some(container)).await {
            Ok(()) => {
                self.pull_errors.remove(image);
                let took = GoDuration(Duration::from_millis(started.elapsed().as_millis() as u64));
                let size = self.runtime.image_status(image).await.ok().flatten().map_or(0, |i| i.size);
                let message =
                    format!("Successfully pulled image \"{image}\" in {took} ({took} including waiting). Image size: {size} bytes.");
                self.events.normal(Some(container), "Pulled", message);
                Ok(())
            }
            Err(message) => {
                // The next sync comes soon and finds the back-off, so the status moves on to
                // ImagePullBackOff as a kubelet's does.
                self.image_backoff.next(image, now);
                self.events.warning(Some(container), "Failed", format!("Failed to pull image \"{image}\": {message}"));
                self.pull_errors.insert(image.to_owned(), message.clone());
                Err(StartFailure::new(ERR_IMAGE_PULL, message))
            }
        }
    }

    /// Pulls the runtime's sandbox image with the node's credentials when it is missing, before
    /// the runtime needs it (a runtime pulls it anonymously). A failure is logged and left to
    /// the runtime: Docker then runs the built-in pause image, a CRI runtime says why it cannot.
    /// An image found present is not looked up again for a while, by any pod's worker.
    async fn ensure_sandbox_image(&mut self) {
        if self.ctx.sandbox_images.recently_present(&self.handler) {
            return;
        }
        let Ok(Some(image)) = self.runtime.sandbox_image().await else { return };
        match self.runtime.image_status(&image).await {
            Ok(None) => {}
            Ok(Some(_)) => return self.ctx.sandbox_images.present(&self.handler),
            Err(_) => return,
        }
        let now = self.ctx.clock.now();
        if self.image_backoff.waiting_since_update(&image, now).is_some() {
            return;
        }
        info!(image, "pulling the sandbox image");
        match pull::pull(self.runtime.as_ref(), &self.ctx.credentials, &image, &self.events, None).await {
            Ok(()) => self.ctx.sandbox_images.present(&self.handler),
            Err(message) => {
                self.image_backoff.next(&image, now);
                warn!(image, "cannot pull the sandbox image: {message}");
            }
        }
    }
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

/// The start of a runtime ID, for logs.
fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}
