//! A pod worker: one task per pod UID, so a slow pod (a long image pull, a container that takes
//! its whole grace period to stop) never delays another. It observes the pod's runtime objects,
//! asks the planner what to do, does it, and sleeps until the wanted pod changes, the relist
//! pokes it, a back-off expires or the periodic resync comes round.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::future::join_all;
use staticlet_model::StaticPod;
use staticlet_runtime::{ContainerState, LabelFilter, RuntimeError, SandboxState};
use tokio::sync::{Notify, watch};
use tracing::{error, info, warn};

use super::Context;
use super::backoff::BackoffTable;
use super::labels::{GRACE_PERIOD, NODE, POD_UID};
use super::plan::{self, Action, ObservedContainer, ObservedPod, Plan};
use super::podconfig;

/// Every pod is looked at this often even when nothing pokes it. The relist already pokes a
/// worker on any change it can see, so this only bounds how long a missed change can last;
/// it is kept long because each resync costs two runtime calls per pod.
const RESYNC: Duration = Duration::from_secs(300);
/// The kubelet's floor on a grace period.
const MIN_GRACE: Duration = Duration::from_secs(2);
/// Retry delays after a failed sync: from the first to the cap, doubling.
const RETRY_FIRST: Duration = Duration::from_secs(2);
const RETRY_MAX: Duration = Duration::from_secs(300);

/// How a sync ended.
enum Outcome {
    /// Nothing of the pod is left and nothing is wanted.
    Gone,
    /// Look again at this time at the latest.
    Requeue(Duration),
}

/// The state one worker carries between syncs.
pub struct Worker {
    uid: String,
    ctx: Arc<Context>,
    wanted: watch::Receiver<Option<Arc<StaticPod>>>,
    poke: Arc<Notify>,
    backoff: BackoffTable,
    /// Statuses of exited containers, which never change.
    exited: HashMap<String, staticlet_runtime::ContainerStatus>,
    retry: Duration,
    reported: HashSet<(String, SystemTime)>,
}

impl Worker {
    /// A worker for `uid`, fed by `wanted` and woken by `poke`.
    pub fn new(uid: String, ctx: Arc<Context>, wanted: watch::Receiver<Option<Arc<StaticPod>>>, poke: Arc<Notify>) -> Self {
        Worker {
            uid,
            ctx,
            wanted,
            poke,
            backoff: BackoffTable::default(),
            exited: HashMap::new(),
            retry: RETRY_FIRST,
            reported: HashSet::new(),
        }
    }

    /// Runs until the pod is gone and no longer wanted, or the controller drops the worker.
    pub async fn run(mut self) {
        loop {
            let wanted = self.wanted.borrow_and_update().clone();
            let wait = match self.sync(wanted.as_deref()).await {
                Ok(Outcome::Gone) if self.wanted.borrow().is_none() => return,
                Ok(Outcome::Gone) => continue,
                Ok(Outcome::Requeue(wait)) => {
                    self.retry = RETRY_FIRST;
                    wait
                }
                Err(e) => {
                    let pod = wanted.as_ref().map_or_else(|| self.uid.clone(), |p| p.full_name());
                    error!(pod = %pod, uid = %self.uid, runtime = self.ctx.runtime.name(), retry_in = ?self.retry, "sync failed: {e}");
                    let wait = self.retry;
                    self.retry = (self.retry * 2).min(RETRY_MAX);
                    wait
                }
            };
            tokio::select! {
                changed = self.wanted.changed() => if changed.is_err() { return },
                _ = self.poke.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    async fn observe(&mut self) -> Result<ObservedPod, RuntimeError> {
        let filter = LabelFilter::new(POD_UID, &self.uid).and(NODE, &self.ctx.node);
        let runtime = &self.ctx.runtime;
        let (sandboxes, containers) = tokio::try_join!(runtime.list_pod_sandboxes(&filter), runtime.list_containers(&filter))?;
        let mut observed = ObservedPod { sandboxes, containers: Vec::with_capacity(containers.len()) };
        self.exited.retain(|id, _| containers.iter().any(|c| &c.id == id));
        for container in containers {
            let status = if container.state == ContainerState::Exited {
                match self.exited.get(&container.id) {
                    Some(status) => Some(status.clone()),
                    None => match runtime.container_status(&container.id).await {
                        Ok(status) => {
                            let meta = &status.container.metadata;
                            info!(uid = %self.uid, container = %meta.name, attempt = meta.attempt, exit_code = status.exit_code, reason = %status.reason, "container terminated");
                            self.exited.insert(container.id.clone(), status.clone());
                            Some(status)
                        }
                        Err(RuntimeError::NotFound(_)) => continue,
                        Err(e) => return Err(e),
                    },
                }
            } else {
                None
            };
            observed.containers.push(ObservedContainer { container, status });
        }
        Ok(observed)
    }

    async fn sync(&mut self, wanted: Option<&StaticPod>) -> Result<Outcome, RuntimeError> {
        let observed = self.observe().await?;
        let plan = plan::plan(wanted, &observed, &self.backoff, SystemTime::now());
        if plan.gone {
            let dir = self.ctx.layout.pod_dir(&self.uid);
            if dir.exists()
                && let Err(e) = std::fs::remove_dir_all(&dir)
            {
                warn!(uid = %self.uid, dir = %dir.display(), "cannot remove the pod's directory: {e}");
            }
            return Ok(Outcome::Gone);
        }
        for (name, finished) in &plan.backoff_next {
            self.backoff.next(name, *finished);
        }
        self.report_waiting(wanted, &plan);
        self.execute(wanted, &observed, &plan).await?;
        let now = SystemTime::now();
        let wait = plan.requeue_at().and_then(|at| at.duration_since(now).ok()).unwrap_or(RESYNC).min(RESYNC);
        Ok(Outcome::Requeue(wait))
    }

    fn report_waiting(&mut self, wanted: Option<&StaticPod>, plan: &Plan) {
        let Some(pod) = wanted else { return };
        for waiting in &plan.waiting {
            if self.reported.insert((waiting.name.clone(), waiting.until)) {
                let delay = waiting.until.duration_since(SystemTime::now()).unwrap_or_default();
                warn!(pod = %pod.full_name(), container = %waiting.name, reason = "BackOff", "Back-off restarting failed container; next attempt in {}s", delay.as_secs());
            }
        }
        self.reported.retain(|(_, until)| *until > SystemTime::now() - Duration::from_secs(1));
    }

    async fn execute(&mut self, wanted: Option<&StaticPod>, observed: &ObservedPod, plan: &Plan) -> Result<(), RuntimeError> {
        let runtime = self.ctx.runtime.clone();
        let pod_name = wanted.map_or_else(|| format!("uid {}", self.uid), StaticPod::full_name);
        let grace = grace_period(wanted, observed);
        let mut sandbox = observed
            .sandboxes
            .iter()
            .filter(|s| s.state == SandboxState::Ready)
            .max_by_key(|s| (s.metadata.attempt, s.created_at))
            .map(|s| (s.id.clone(), s.metadata.attempt));
        let mut first_error = None;

        for action in &plan.actions {
            match action {
                Action::KillPod { reason } => {
                    info!(pod = %pod_name, reason = "Killing", "stopping pod because {reason}");
                    self.kill_pod(observed, grace).await?;
                    sandbox = None;
                }
                Action::CreateSandbox { attempt } => {
                    let pod = wanted.expect("the planner creates sandboxes only for wanted pods");
                    let config = podconfig::sandbox_config(pod, *attempt, &self.ctx.node);
                    let id = runtime.run_pod_sandbox(&config).await?;
                    info!(pod = %pod_name, sandbox = %short(&id), attempt, "created sandbox");
                    sandbox = Some((id, *attempt));
                }
                Action::StartContainer { name, attempt } => {
                    let pod = wanted.expect("the planner starts containers only for wanted pods");
                    let Some((sandbox_id, sandbox_attempt)) = &sandbox else {
                        return Err(RuntimeError::NotFound(format!("a ready sandbox for {pod_name}")));
                    };
                    if let Err(e) = self.start_container(pod, name, *attempt, sandbox_id, *sandbox_attempt).await {
                        error!(pod = %pod_name, container = %name, "failed to start container: {e}");
                        first_error.get_or_insert(e);
                    }
                }
                Action::KillContainer { id, name, reason } => {
                    info!(pod = %pod_name, container = %name, reason = "Killing", "stopping container because {reason}");
                    runtime.stop_container(id, grace).await?;
                }
                Action::RemoveContainer { id } => runtime.remove_container(id).await?,
                Action::RemoveSandbox { id } => {
                    runtime.stop_pod_sandbox(id).await?;
                    runtime.remove_pod_sandbox(id).await?;
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    async fn kill_pod(&self, observed: &ObservedPod, grace: Duration) -> Result<(), RuntimeError> {
        let runtime = &self.ctx.runtime;
        let running = observed.containers.iter().filter(|c| c.container.state == ContainerState::Running);
        for result in join_all(running.map(|c| runtime.stop_container(&c.container.id, grace))).await {
            result?;
        }
        for sandbox in &observed.sandboxes {
            runtime.stop_pod_sandbox(&sandbox.id).await?;
            runtime.remove_pod_sandbox(&sandbox.id).await?;
        }
        for c in &observed.containers {
            runtime.remove_container(&c.container.id).await?;
        }
        Ok(())
    }

    async fn start_container(
        &self,
        pod: &StaticPod,
        name: &str,
        attempt: u32,
        sandbox_id: &str,
        sandbox_attempt: u32,
    ) -> Result<(), RuntimeError> {
        let runtime = &self.ctx.runtime;
        let full_name = pod.full_name();
        let container =
            podconfig::find_container(pod, name).ok_or_else(|| RuntimeError::NotFound(format!("container {name} in {full_name}")))?;
        let image = container.image.clone().unwrap_or_default();
        self.ensure_image(&full_name, name, &image, container.image_pull_policy.as_deref().unwrap_or("IfNotPresent")).await?;
        let sandbox_config = podconfig::sandbox_config(pod, sandbox_attempt, &self.ctx.node);
        let pod_ip = if sandbox_config.host_network { None } else { runtime.pod_sandbox_status(sandbox_id).await.ok().and_then(|s| s.ip) };
        let config = podconfig::container_config(pod, container, attempt, &self.ctx.node, &self.ctx.layout, pod_ip.as_deref())
            .map_err(|e| RuntimeError::Call { call: "create_container", message: e.to_string() })?;
        let id = runtime.create_container(sandbox_id, &config, &sandbox_config).await?;
        info!(pod = %full_name, container = name, id = %short(&id), reason = "Created", "created container");
        runtime.start_container(&id).await?;
        info!(pod = %full_name, container = name, id = %short(&id), attempt, reason = "Started", "started container");
        Ok(())
    }

    async fn ensure_image(&self, pod: &str, container: &str, image: &str, policy: &str) -> Result<(), RuntimeError> {
        let runtime = &self.ctx.runtime;
        let present = runtime.image_status(image).await?.is_some();
        match policy {
            "Never" if !present => {
                return Err(RuntimeError::ImagePull {
                    image: image.to_owned(),
                    message: "ErrImageNeverPull: the image is not present and the pull policy is Never".into(),
                });
            }
            "IfNotPresent" | "Never" if present => return Ok(()),
            _ => {}
        }
        info!(pod, container, image, reason = "Pulling", "pulling image");
        let started = std::time::Instant::now();
        runtime.pull_image(image).await?;
        info!(pod, container, image, reason = "Pulled", "pulled image in {:.3}s", started.elapsed().as_secs_f64());
        Ok(())
    }
}

/// The grace period for stopping: the wanted pod's, else what its objects were started with.
fn grace_period(wanted: Option<&StaticPod>, observed: &ObservedPod) -> Duration {
    let seconds = wanted
        .and_then(|p| p.pod.spec.as_ref()?.termination_grace_period_seconds)
        .or_else(|| observed.containers.iter().find_map(|c| c.container.annotations.get(GRACE_PERIOD)?.parse().ok()));
    seconds.map_or(Duration::from_secs(30), |s: i64| Duration::from_secs(s.max(0) as u64)).max(MIN_GRACE)
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}
