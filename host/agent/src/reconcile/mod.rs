//! Reconcile: make the runtime hold exactly the desired pods.
//!
//! The [`Controller`] owns one [`worker::Worker`] per pod UID and runtime handler, and one
//! watcher per handler that relists it in the manner of the kubelet's PLEG: it lists the
//! agent's sandboxes and containers, and the controller pokes only the workers whose pod
//! changed. Where the runtime streams events (the kubelet's evented PLEG), an event pokes its
//! pod's worker at once and the relist is only a safety net every [`EVENTED_RELIST_PERIOD`];
//! otherwise the relist runs every [`RELIST_PERIOD`]. Workers for pods no longer wanted tear them down;
//! objects of pods the agent never heard of (left from before a restart) get a worker that
//! removes them, but only once every source has been read, so nothing is removed that a source
//! would have brought back.

pub mod container_action;
pub mod execute;
pub mod observe;
pub mod plan;
pub mod podconfig;
pub mod probe;
pub mod publish;
pub mod pull;
pub mod worker;

#[cfg(test)]
mod testing;

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use staticlet_model::StaticPod;
use staticlet_runtime::{Clock, Container, LabelFilter, PodSandbox, Runtime, RuntimeError};
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::desired::DesiredSet;
use crate::events::Recorder;
use crate::metrics::Metrics;
use crate::requests::RestartRequest;
use crate::runtimes::Runtimes;
use crate::state::Layout;
use crate::status::{PodWithStatus, StatusStore, rejected_status};
use staticlet_runtime::labels::{NODE, POD_UID, belongs_to};

/// How often a runtime is relisted when it streams no events, as the kubelet's PLEG does.
pub const RELIST_PERIOD: Duration = Duration::from_secs(1);
/// How often a runtime is relisted while its event stream is connected.
pub const EVENTED_RELIST_PERIOD: Duration = Duration::from_secs(10);
/// How soon after an event the runtime is relisted.
const EVENT_SETTLE: Duration = Duration::from_millis(300);
/// Wait before reconnecting a broken event stream.
const EVENTS_RECONNECT: Duration = Duration::from_secs(1);

/// A worker's key: the handler whose runtime holds the pod's objects, and the pod's UID. A pod
/// moved to another runtime class has a worker on each handler until the old one is empty.
type Key = (String, String);

/// What a runtime's watcher tells the controller.
enum Observation {
    /// An object of pod `uid` changed on `handler`.
    Event { handler: String, uid: String },
    /// `handler` was listed: a fingerprint of each pod's objects there.
    Listed { handler: String, fingerprints: HashMap<String, u64> },
}

/// Follows a runtime's event stream, reconnecting when it breaks, and forwards the pod UID of
/// each event. `live` says whether the stream is connected; a runtime without events leaves it
/// false for good.
async fn listen(runtime: Arc<dyn Runtime>, node: String, uids: mpsc::UnboundedSender<String>, live: watch::Sender<bool>) {
    let filter = LabelFilter::new(NODE, &node);
    loop {
        match runtime.events(&filter).await {
            Ok(mut stream) => {
                live.send_replace(true);
                while let Some(event) = stream.next().await {
                    match event {
                        Ok(event) => {
                            if let Some(uid) = event.labels.get(POD_UID) {
                                let _ = uids.send(uid.clone());
                            }
                        }
                        Err(e) => {
                            debug!(runtime = runtime.name(), "event stream broke: {e}");
                            break;
                        }
                    }
                }
                live.send_replace(false);
            }
            Err(RuntimeError::Unsupported { .. }) => return,
            Err(e) => debug!(runtime = runtime.name(), "cannot follow runtime events: {e}"),
        }
        tokio::time::sleep(EVENTS_RECONNECT).await;
    }
}

/// Watches one handler's runtime: relists it (often without events, rarely with them, soon
/// after an event) and forwards what it sees. Each handler has its own watcher, so a runtime
/// that is slow or down never delays another's pods.
async fn watch_runtime(
    handler: String,
    runtime: Arc<dyn Runtime>,
    node: String,
    observations: mpsc::UnboundedSender<Observation>,
    status: StatusStore,
    shutdown: CancellationToken,
) {
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let (live_tx, live) = watch::channel(false);
    let listener = tokio::spawn(listen(runtime.clone(), node.clone(), events_tx, live_tx));
    let filter = LabelFilter::new(NODE, &node);
    let mut next_relist = Instant::now();
    let mut down = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(uid) = events.recv() => {
                let _ = observations.send(Observation::Event { handler: handler.clone(), uid });
                // Docker announces an exit a moment before its list view shows it, so a
                // relist shortly after settles what the poke may have seen half done; it
                // also sorts out objects of pods that have no worker.
                next_relist = next_relist.min(Instant::now() + EVENT_SETTLE);
            }
            _ = tokio::time::sleep_until(next_relist) => {
                match tokio::try_join!(runtime.list_pod_sandboxes(&filter), runtime.list_containers(&filter)) {
                    Ok((sandboxes, containers)) => {
                        if std::mem::take(&mut down) {
                            info!(runtime = %handler, "runtime reachable again");
                            status.set_runtime_reachable(&handler, Ok(()));
                        }
                        let fingerprints = fingerprints(&handler, &sandboxes, &containers);
                        let _ = observations.send(Observation::Listed { handler: handler.clone(), fingerprints });
                    }
                    Err(e) => {
                        if !std::mem::replace(&mut down, true) {
                            warn!(runtime = %handler, "cannot list pods: {e}; retrying every {}s", RELIST_PERIOD.as_secs());
                        }
                        status.set_runtime_reachable(&handler, Err(e.to_string()));
                    }
                }
                let period = if *live.borrow() && !down { EVENTED_RELIST_PERIOD } else { RELIST_PERIOD };
                next_relist = Instant::now() + period;
            }
        }
    }
    listener.abort();
}

/// A hash of each pod's objects (IDs and states) that are `handler`'s, to see which pods changed
/// between relists.
fn fingerprints(handler: &str, sandboxes: &[PodSandbox], containers: &[Container]) -> HashMap<String, u64> {
    let mut hashers: HashMap<String, DefaultHasher> = HashMap::new();
    for s in sandboxes.iter().filter(|s| belongs_to(&s.labels, handler)) {
        if let Some(uid) = s.labels.get(POD_UID) {
            (&s.id, s.state as u8).hash(hashers.entry(uid.clone()).or_default());
        }
    }
    for c in containers.iter().filter(|c| belongs_to(&c.labels, handler)) {
        if let Some(uid) = c.labels.get(POD_UID) {
            (&c.id, c.state as u8).hash(hashers.entry(uid.clone()).or_default());
        }
    }
    hashers.into_iter().map(|(uid, h)| (uid, h.finish())).collect()
}

/// What every worker shares.
pub struct Context {
    /// The runtimes pods run on, by runtime class.
    pub runtimes: Runtimes,
    /// This node's name.
    pub node: String,
    /// Paths under `--root-dir`.
    pub layout: Layout,
    /// The node's address (`status.hostIP`, and the pod's on the host network).
    pub host_ip: String,
    /// Where workers publish pod statuses.
    pub status: StatusStore,
    /// Runs probe and hook actions; shared for its HTTP connection pool.
    pub runner: container_action::Runner,
    /// Where pod events go.
    pub events: Recorder,
    /// Sync durations go here.
    pub metrics: Metrics,
    /// The wall clock back-offs and probe delays are measured on.
    pub clock: Clock,
    /// The node's registry credentials, for every pull.
    pub credentials: Arc<staticlet_credentials::Credentials>,
    /// Which handlers' sandbox images were found present lately.
    pub sandbox_images: pull::SandboxImages,
}

struct WorkerHandle {
    wanted: watch::Sender<Option<Arc<StaticPod>>>,
    poke: Arc<Notify>,
    restart: Arc<Notify>,
    task: JoinHandle<()>,
}

/// Owns the pod workers.
pub struct Controller {
    ctx: Arc<Context>,
    workers: HashMap<Key, WorkerHandle>,
    fingerprints: HashMap<Key, u64>,
    desired: Arc<DesiredSet>,
}

impl Controller {
    /// A controller with no workers yet.
    pub fn new(ctx: Arc<Context>) -> Self {
        Controller { ctx, workers: HashMap::new(), fingerprints: HashMap::new(), desired: Arc::default() }
    }

    /// Runs until `shutdown`. Pods are left running when it returns, as the kubelet leaves them.
    pub async fn run(
        mut self,
        mut desired: watch::Receiver<Arc<DesiredSet>>,
        mut restarts: mpsc::UnboundedReceiver<RestartRequest>,
        shutdown: CancellationToken,
    ) {
        let (observations_tx, mut observations) = mpsc::unbounded_channel();
        let watchers: Vec<JoinHandle<()>> = self
            .ctx
            .runtimes
            .handlers()
            .map(|(handler, runtime)| {
                let task = watch_runtime(
                    handler.to_owned(),
                    runtime.clone(),
                    self.ctx.node.clone(),
                    observations_tx.clone(),
                    self.ctx.status.clone(),
                    shutdown.clone(),
                );
                tokio::spawn(task)
            })
            .collect();
        // A round at least every period, so /healthz and the watchdog tell a quiet loop from a
        // stuck one.
        let mut rounds = tokio::time::interval(crate::status::sync_loop::PERIOD);
        rounds.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            self.ctx.status.sync_loop.went_round();
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = rounds.tick() => {}
                changed = desired.changed() => {
                    if changed.is_err() { break }
                    self.desired = desired.borrow_and_update().clone();
                    self.apply_desired();
                }
                Some(request) = restarts.recv() => {
                    let running = self.workers.iter().find(|((_, uid), handle)| {
                        *uid == request.uid && handle.wanted.borrow().is_some() && !handle.task.is_finished()
                    });
                    let answer = match running {
                        Some((_, handle)) => {
                            handle.restart.notify_one();
                            Ok(())
                        }
                        None => Err("the pod is not running here (rejected, or being removed)".to_owned()),
                    };
                    let _ = request.accepted.send(answer);
                }
                Some(observation) = observations.recv() => match observation {
                    Observation::Event { handler, uid } => {
                        if let Some(handle) = self.workers.get(&(handler, uid)) {
                            handle.poke.notify_one();
                        }
                    }
                    Observation::Listed { handler, fingerprints } => self.listed(&handler, fingerprints),
                },
            }
        }
        for watcher in watchers {
            watcher.abort();
        }
        for (_, handle) in self.workers.drain() {
            handle.task.abort();
        }
    }

    fn spawn(&mut self, key: Key, wanted: Option<Arc<StaticPod>>) {
        let Some(runtime) = self.ctx.runtimes.handler(&key.0).cloned() else { return };
        let (tx, rx) = watch::channel(wanted);
        let poke = Arc::new(Notify::new());
        let restart = Arc::new(Notify::new());
        let worker = worker::Worker::new(key.1.clone(), key.0.clone(), runtime, self.ctx.clone(), rx, poke.clone(), restart.clone());
        let task = tokio::spawn(worker.run());
        self.workers.insert(key, WorkerHandle { wanted: tx, poke, restart, task });
    }

    fn apply_desired(&mut self) {
        let desired = self.desired.clone();
        if desired.ready {
            self.ctx.status.mark_ready();
        }
        self.ctx.status.set_rejected(
            desired
                .rejected
                .iter()
                .map(|(uid, r)| (uid.clone(), PodWithStatus { pod: r.pod.clone(), status: rejected_status(r.decision.message()) }))
                .collect(),
        );
        for (uid, pod) in &desired.pods {
            let Some(handler) = self.ctx.runtimes.handler_of(&pod.pod) else {
                // Admission rejects unknown classes, so this is a bug, not bad input.
                error!(pod = %pod.full_name(), "admitted with a runtime class this node does not have; not run");
                continue;
            };
            let key = (handler.to_owned(), uid.clone());
            match self.workers.get(&key) {
                Some(handle) if !handle.task.is_finished() => {
                    handle.wanted.send_if_modified(|current| {
                        let changed = !current.as_ref().is_some_and(|c| Arc::ptr_eq(c, pod));
                        *current = Some(pod.clone());
                        changed
                    });
                }
                _ => self.spawn(key, Some(pod.clone())),
            }
        }
        for ((handler, uid), handle) in &self.workers {
            let unwanted_here = match desired.pods.get(uid) {
                // Moved to another runtime class: this handler's objects go at once.
                Some(pod) => self.ctx.runtimes.handler_of(&pod.pod) != Some(handler.as_str()),
                // A rejected pod stops at once, without waiting for the sources to be ready:
                // it is in a source, and its validators said no.
                None => desired.ready || desired.rejected.contains_key(uid),
            };
            if unwanted_here && handle.wanted.borrow().is_some() {
                handle.wanted.send_replace(None);
            }
        }
    }

    /// Pokes the workers whose pods changed on `handler`, and gives objects of pods nobody
    /// wants there a worker that removes them.
    fn listed(&mut self, handler: &str, fingerprints: HashMap<String, u64>) {
        for (key, handle) in &self.workers {
            if key.0 == handler && fingerprints.get(&key.1) != self.fingerprints.get(key) {
                handle.poke.notify_one();
            }
        }
        if self.desired.ready {
            let orphans: Vec<Key> =
                fingerprints.keys().map(|uid| (handler.to_owned(), uid.clone())).filter(|key| !self.workers.contains_key(key)).collect();
            for key in orphans {
                info!(runtime = %key.0, uid = %key.1, "found objects of a pod with no manifest here; removing them");
                self.spawn(key, None);
            }
        }
        self.fingerprints.retain(|(h, _), _| h != handler);
        self.fingerprints.extend(fingerprints.into_iter().map(|(uid, f)| ((handler.to_owned(), uid), f)));
        self.reap();
    }

    /// Drops workers that finished; one whose pod is wanted again there is started anew.
    fn reap(&mut self) {
        let finished: Vec<Key> = self.workers.iter().filter(|(_, h)| h.task.is_finished()).map(|(key, _)| key.clone()).collect();
        for key in finished {
            self.workers.remove(&key);
            if let Some(pod) = self.desired.pods.get(&key.1).cloned()
                && self.ctx.runtimes.handler_of(&pod.pod) == Some(key.0.as_str())
            {
                debug!(uid = %key.1, "pod wanted again after its worker finished");
                self.spawn(key, Some(pod));
            }
        }
    }
}

#[cfg(test)]
mod tests;
