//! A pod worker: one task per pod UID and handler, so a slow pod (a long image pull, a
//! container that takes its whole grace period to stop) never delays another. Each pass runs
//! the stages in order: observe the pod's runtime objects ([`super::observe`]), plan (the pure
//! [`super::plan`]), execute the plan ([`super::execute`]) and publish the status
//! ([`super::publish`]); then it sleeps until the wanted pod changes, the relist or a probe
//! pokes it, a back-off expires or the periodic resync comes round.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use staticlet_model::StaticPod;
use staticlet_runtime::{ContainerState, Runtime, RuntimeError};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tracing::{debug, error, warn};

use super::Context;
use super::execute::{Executed, Executor};
use super::observe::{Observer, current_sandbox, host_network};
use super::plan::{self, ObservedPod, Plan, Requests};
use super::podconfig;
use super::probe::{Prober, Target};
use super::publish::{self, Facts};
use crate::events::PodEvents;
use crate::state::PodRecord;
use crate::status::PodWithStatus;

/// Every pod is looked at this often even when nothing pokes it. The relist already pokes a
/// worker on any change it can see, so this only bounds how long a missed change can last;
/// it is kept long because each resync costs two runtime calls per pod.
const RESYNC: Duration = Duration::from_secs(300);
/// Retry delays after a failed sync: from the first to the cap, doubling. The cap is the
/// kubelet's pod worker back-off (`workerBackOffPeriod`), so a runtime that recovers is used
/// again within seconds; containers that keep failing have their own, longer back-off.
const RETRY_FIRST: Duration = Duration::from_secs(2);
const RETRY_MAX: Duration = Duration::from_secs(10);

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
    /// The handler whose runtime this worker drives.
    handler: String,
    ctx: Arc<Context>,
    wanted: watch::Receiver<Option<Arc<StaticPod>>>,
    poke: Arc<Notify>,
    /// Woken when someone asks for the pod to be restarted.
    restart: Arc<Notify>,
    restart_requested: bool,
    /// Back-off and start time, kept under `--root-dir`.
    record: PodRecord,
    observer: Observer,
    prober: Prober,
    executor: Executor,
    /// Where this pod's events go.
    events: PodEvents,
    retry: Duration,
    /// Back-offs already announced with an event: (container, until).
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
        let record = PodRecord::load(&ctx.layout.pod_record(&uid)).unwrap_or_else(|e| {
            warn!(uid = %uid, "ignoring the pod's saved state and rebuilding it from the runtime: {e}");
            None
        });
        let events = wanted.borrow().as_ref().map_or_else(|| ctx.events.for_unknown_pod(&uid), |p| ctx.events.for_pod(p));
        let prober = Prober::new(runtime.clone(), ctx.clock, ctx.runner.clone(), poke.clone(), events.clone());
        let observer = Observer::new(&uid, &handler, &ctx.node, runtime.clone(), ctx.layout.clone());
        let executor = Executor::new(&uid, &handler, runtime, ctx.clone(), events.clone());
        Worker {
            uid,
            handler,
            ctx,
            wanted,
            poke,
            restart,
            restart_requested: false,
            record: record.unwrap_or_default(),
            observer,
            prober,
            executor,
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
                self.set_events(self.ctx.events.for_pod(pod));
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
                    error!(pod = %pod, uid = %self.uid, handler = %self.handler, retry_in = ?self.retry, "sync failed: {e}");
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

    fn set_events(&mut self, events: PodEvents) {
        self.prober.set_events(events.clone());
        self.executor.set_events(events.clone());
        self.events = events;
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

    /// One pass for the pod as `wanted` at the start of the pass; the status published is
    /// computed for that same pod.
    async fn sync(&mut self, wanted_arc: Option<&Arc<StaticPod>>) -> Result<Outcome, RuntimeError> {
        let wanted = wanted_arc.map(|p| &**p);
        let observed = match self.observer.observe(wanted, &self.prober).await {
            Ok(observed) => observed,
            Err(e) => {
                if let Some(pod) = wanted_arc
                    && self.record.start_time.is_none()
                {
                    // Never seen on its runtime: the pod waits, and says why, until it can be.
                    self.executor.all_creating(pod, &format!("cannot list the pod's objects on runtime {}: {e}", self.handler));
                    self.publish(pod, &ObservedPod::default(), &Plan::default()).await;
                }
                return Err(e);
            }
        };
        let now = self.ctx.clock.now();
        let requests = Requests { restart: self.restart_requested };
        let plan = plan::plan(wanted, &observed, &self.record.backoff, requests, now);
        if plan.gone {
            self.remove_pod_dir();
            self.forget_status();
            return Ok(Outcome::Gone);
        }
        let unsaved = self.keep_record(wanted, &observed, &plan, now);
        self.report_waiting(wanted, &plan);
        if plan.afresh {
            self.events.normal(None, "Restarting", "Stopping every container to start the pod afresh, as requested");
        }
        if wanted.is_none() {
            // Its manifest is gone: the pod leaves the API at once, as it leaves the kubelet's
            // pod manager, while its objects are torn down (forgetting it afterwards let the API
            // show it for a moment after its last object was gone).
            self.forget_status();
        }
        let executed = self.executor.execute(wanted, &observed, &plan).await;
        if unsaved {
            self.save_record();
        }
        let executed = match executed {
            Ok(executed) => executed,
            Err(e) => {
                // What failed shows in the pod's status until a retry works.
                if let Some(pod) = wanted_arc {
                    self.publish(pod, &observed, &plan).await;
                }
                return Err(e);
            }
        };
        if plan.afresh {
            self.start_afresh();
            return Ok(Outcome::Requeue(Duration::ZERO));
        }
        if let Some(pod) = wanted_arc {
            self.watch_probes(pod, &observed).await;
            self.publish(pod, &observed, &plan).await;
        }
        Ok(Outcome::Requeue(self.requeue_after(&plan, executed)))
    }

    /// How long to sleep after a pass that worked: until a failed start may be retried, at
    /// once to stop a container whose `postStart` hook failed, else until the next back-off
    /// ends or the periodic resync.
    fn requeue_after(&mut self, plan: &Plan, executed: Executed) -> Duration {
        let now = self.ctx.clock.now();
        let failed_hooks = !executed.failed_hooks.is_empty();
        for (id, message) in executed.failed_hooks {
            self.observer.hook_failed(id, &message);
        }
        match executed.retry_at {
            Some(at) => at.duration_since(now).unwrap_or_default().max(self.next_retry()),
            None if failed_hooks => Duration::ZERO,
            None => {
                self.retry = RETRY_FIRST;
                plan.requeue_at().and_then(|at| at.duration_since(now).ok()).unwrap_or(RESYNC).min(RESYNC)
            }
        }
    }

    /// After a requested restart: no back-off, a new start time, restart counts from zero.
    fn start_afresh(&mut self) {
        self.restart_requested = false;
        self.record = PodRecord::default();
        self.observer.forget();
        self.executor.forget();
        self.reported.clear();
    }

    fn remove_pod_dir(&self) {
        let dir = self.ctx.layout.pod_dir(&self.uid);
        if dir.exists()
            && let Err(e) = std::fs::remove_dir_all(&dir)
        {
            warn!(uid = %self.uid, dir = %dir.display(), "cannot remove the pod's directory: {e}");
        }
    }

    /// Keeps the pod's record (start time, crash-loop back-off). A grown back-off is saved at
    /// once, before the restart it delays, so it survives an agent killed right after; returns
    /// whether a new start time still has to be saved, which can wait until the pass is done
    /// (it is rebuilt from the pod's first sandbox if the agent dies first), off a new pod's
    /// way to its first container.
    fn keep_record(&mut self, wanted: Option<&StaticPod>, observed: &ObservedPod, plan: &Plan, now: SystemTime) -> bool {
        let mut started = false;
        if wanted.is_some() && self.record.start_time.is_none() {
            // A record lost or damaged is rebuilt from the runtime: a pod already running
            // started when its first sandbox was made.
            let first_sandbox = observed.sandboxes.iter().map(|s| s.created_at).min();
            self.record.start_time = Some(first_sandbox.unwrap_or(now));
            started = true;
        }
        for (name, finished) in &plan.backoff_next {
            self.record.backoff.next(name, *finished);
        }
        if plan.backoff_next.is_empty() {
            return started;
        }
        self.save_record();
        false
    }

    fn save_record(&self) {
        if let Err(e) = self.record.save(&self.ctx.layout.pod_record(&self.uid)) {
            warn!(uid = %self.uid, "cannot save the pod's state; back-off will not survive a restart: {e}");
        }
    }

    fn report_waiting(&mut self, wanted: Option<&StaticPod>, plan: &Plan) {
        let Some(pod) = wanted else { return };
        let now = self.ctx.clock.now();
        for waiting in &plan.waiting {
            if self.reported.insert((waiting.name.clone(), waiting.until)) {
                let delay = waiting.until.duration_since(now).unwrap_or_default();
                debug!(pod = %pod.full_name(), container = %waiting.name, "next start attempt in {}s", delay.as_secs());
                self.events.warning(
                    Some(&waiting.name),
                    "BackOff",
                    format!("Back-off restarting failed container {} in pod {}", waiting.name, pod.full_name()),
                );
            }
        }
        self.reported.retain(|(_, until)| *until > now - Duration::from_secs(1));
    }

    /// Keeps one set of probe tasks per running container of the current sandbox.
    async fn watch_probes(&mut self, pod: &StaticPod, observed: &ObservedPod) {
        let Some(sandbox) = current_sandbox(observed) else {
            self.prober.sync(&[]);
            return;
        };
        let pod_ip = self.executor.addresses.of(&sandbox.id, host_network(pod)).await;
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
        let pod_ip = match publish::status_sandbox(pod, observed) {
            Some(sandbox) => self.executor.addresses.of(&sandbox.id, host_network(pod)).await,
            None => String::new(),
        };
        let probes = self.prober.results();
        let facts = Facts {
            scheme: self.observer.runtime_name(),
            host_ip: self.executor.addresses.host_ip(),
            pod_ip: &pod_ip,
            start_time: self.record.start_time,
            failures: self.executor.failures(),
            probes: &probes,
        };
        let status = publish::pod_status(pod, observed, plan, facts);
        self.ctx.status.publish(&self.uid, PodWithStatus { pod: pod.clone(), status });
    }
}

#[cfg(test)]
mod tests;
