//! Reconcile: make the runtime hold exactly the desired pods.
//!
//! The [`Controller`] owns one [`worker::Worker`] per pod UID and a relist loop in the manner of
//! the kubelet's PLEG: it lists the agent's sandboxes and containers, and pokes only the workers
//! whose pod changed. Where the runtime streams events (the kubelet's evented PLEG), an event
//! pokes its pod's worker at once and the relist is only a safety net every
//! [`EVENTED_RELIST_PERIOD`]; otherwise the relist runs every [`RELIST_PERIOD`]. Workers for pods no longer wanted tear them down;
//! objects of pods the agent never heard of (left from before a restart) get a worker that
//! removes them, but only once every source has been read, so nothing is removed that a source
//! would have brought back.

pub mod backoff;
pub mod handler;
pub mod labels;
pub mod plan;
pub mod podconfig;
pub mod probe;
pub mod worker;

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use staticlet_model::StaticPod;
use staticlet_runtime::{LabelFilter, Runtime, RuntimeError};
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::desired::DesiredSet;
use crate::events::Recorder;
use crate::metrics::Metrics;
use crate::state::Layout;
use crate::status::{PodView, StatusStore, rejected_status};
use labels::{NODE, POD_UID};

/// How often the runtime is relisted when it streams no events, as the kubelet's PLEG does.
pub const RELIST_PERIOD: Duration = Duration::from_secs(1);
/// How often the runtime is relisted while its event stream is connected.
pub const EVENTED_RELIST_PERIOD: Duration = Duration::from_secs(10);
/// How soon after an event the runtime is relisted.
const EVENT_SETTLE: Duration = Duration::from_millis(300);
/// Wait before reconnecting a broken event stream.
const EVENTS_RECONNECT: Duration = Duration::from_secs(1);

/// Follows the runtime's event stream, reconnecting when it breaks, and forwards the pod UID of
/// each event. `live` says whether the stream is connected; a runtime without events leaves it
/// false for good.
async fn listen(ctx: Arc<Context>, uids: mpsc::UnboundedSender<String>, live: watch::Sender<bool>) {
    let filter = LabelFilter::new(NODE, &ctx.node);
    loop {
        match ctx.runtime.events(&filter).await {
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
                            debug!(runtime = ctx.runtime.name(), "event stream broke: {e}");
                            break;
                        }
                    }
                }
                live.send_replace(false);
            }
            Err(RuntimeError::Unsupported { .. }) => return,
            Err(e) => debug!(runtime = ctx.runtime.name(), "cannot follow runtime events: {e}"),
        }
        tokio::time::sleep(EVENTS_RECONNECT).await;
    }
}

/// What every worker shares.
pub struct Context {
    /// The runtime pods run on.
    pub runtime: Arc<dyn Runtime>,
    /// This node's name.
    pub node: String,
    /// Paths under `--root-dir`.
    pub layout: Layout,
    /// The node's address (`status.hostIP`, and the pod's on the host network).
    pub host_ip: String,
    /// Where workers publish pod statuses.
    pub status: StatusStore,
    /// Runs probe and hook actions; shared for its HTTP connection pool.
    pub runner: handler::Runner,
    /// Where pod events go.
    pub events: Recorder,
    /// Sync durations go here.
    pub metrics: Metrics,
}

/// A request to restart a pod: every container stopped, and the pod started afresh.
#[derive(Debug)]
pub struct RestartRequest {
    /// The pod.
    pub uid: String,
    /// Answered once the pod's worker has the request, or with why not.
    pub accepted: oneshot::Sender<Result<(), String>>,
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
    workers: HashMap<String, WorkerHandle>,
    fingerprints: HashMap<String, u64>,
    desired: Arc<DesiredSet>,
    runtime_down: bool,
}

impl Controller {
    /// A controller with no workers yet.
    pub fn new(ctx: Arc<Context>) -> Self {
        Controller { ctx, workers: HashMap::new(), fingerprints: HashMap::new(), desired: Arc::default(), runtime_down: false }
    }

    /// Runs until `shutdown`. Pods are left running when it returns, as the kubelet leaves them.
    pub async fn run(
        mut self,
        mut desired: watch::Receiver<Arc<DesiredSet>>,
        mut restarts: mpsc::UnboundedReceiver<RestartRequest>,
        shutdown: CancellationToken,
    ) {
        let (events_tx, mut events) = mpsc::unbounded_channel();
        let (live_tx, live) = watch::channel(false);
        let listener = tokio::spawn(listen(self.ctx.clone(), events_tx, live_tx));
        let mut next_relist = Instant::now();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                changed = desired.changed() => {
                    if changed.is_err() { break }
                    self.desired = desired.borrow_and_update().clone();
                    self.apply_desired();
                }
                Some(request) = restarts.recv() => {
                    let answer = match self.workers.get(&request.uid) {
                        Some(handle) if handle.wanted.borrow().is_some() && !handle.task.is_finished() => {
                            handle.restart.notify_one();
                            Ok(())
                        }
                        _ => Err("the pod is not running here (rejected, or being removed)".to_owned()),
                    };
                    let _ = request.accepted.send(answer);
                }
                Some(uid) = events.recv() => {
                    if let Some(handle) = self.workers.get(&uid) {
                        handle.poke.notify_one();
                    }
                    // Docker announces an exit a moment before its list view shows it, so a
                    // relist shortly after settles what the poke may have seen half done; it
                    // also sorts out objects of pods that have no worker.
                    next_relist = next_relist.min(Instant::now() + EVENT_SETTLE);
                }
                _ = tokio::time::sleep_until(next_relist) => {
                    self.relist().await;
                    let period = if *live.borrow() { EVENTED_RELIST_PERIOD } else { RELIST_PERIOD };
                    next_relist = Instant::now() + period;
                }
            }
        }
        listener.abort();
        for (_, handle) in self.workers.drain() {
            handle.task.abort();
        }
    }

    fn spawn(&mut self, uid: &str, wanted: Option<Arc<StaticPod>>) {
        let (tx, rx) = watch::channel(wanted);
        let poke = Arc::new(Notify::new());
        let restart = Arc::new(Notify::new());
        let worker = worker::Worker::new(uid.to_owned(), self.ctx.clone(), rx, poke.clone(), restart.clone());
        let task = tokio::spawn(worker.run());
        self.workers.insert(uid.to_owned(), WorkerHandle { wanted: tx, poke, restart, task });
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
                .map(|(uid, r)| (uid.clone(), PodView { pod: r.pod.clone(), status: rejected_status(r.decision.message()) }))
                .collect(),
        );
        for (uid, pod) in &desired.pods {
            match self.workers.get(uid) {
                Some(handle) if !handle.task.is_finished() => {
                    handle.wanted.send_if_modified(|current| {
                        let changed = !current.as_ref().is_some_and(|c| Arc::ptr_eq(c, pod));
                        *current = Some(pod.clone());
                        changed
                    });
                }
                _ => self.spawn(uid, Some(pod.clone())),
            }
        }
        for (uid, handle) in &self.workers {
            // A rejected pod stops at once, without waiting for the sources to be ready: it is
            // in a source, and its validators said no.
            if (desired.ready || desired.rejected.contains_key(uid)) && !desired.pods.contains_key(uid) && handle.wanted.borrow().is_some()
            {
                handle.wanted.send_replace(None);
            }
        }
    }

    async fn relist(&mut self) {
        let filter = LabelFilter::new(NODE, &self.ctx.node);
        let runtime = &self.ctx.runtime;
        let (sandboxes, containers) = match tokio::try_join!(runtime.list_pod_sandboxes(&filter), runtime.list_containers(&filter)) {
            Ok(lists) => lists,
            Err(e) => {
                if !self.runtime_down {
                    warn!(runtime = runtime.name(), "cannot list pods: {e}; retrying every {}s", RELIST_PERIOD.as_secs());
                    self.runtime_down = true;
                }
                return;
            }
        };
        if std::mem::take(&mut self.runtime_down) {
            info!(runtime = runtime.name(), "runtime reachable again");
        }
        let mut fingerprints: HashMap<String, DefaultHasher> = HashMap::new();
        for s in &sandboxes {
            if let Some(uid) = s.labels.get(POD_UID) {
                (&s.id, s.state as u8).hash(fingerprints.entry(uid.clone()).or_default());
            }
        }
        for c in &containers {
            if let Some(uid) = c.labels.get(POD_UID) {
                (&c.id, c.state as u8).hash(fingerprints.entry(uid.clone()).or_default());
            }
        }
        let fingerprints: HashMap<String, u64> = fingerprints.into_iter().map(|(uid, h)| (uid, h.finish())).collect();
        for (uid, handle) in &self.workers {
            if fingerprints.get(uid) != self.fingerprints.get(uid) {
                handle.poke.notify_one();
            }
        }
        if self.desired.ready {
            let orphans: Vec<String> = fingerprints.keys().filter(|uid| !self.workers.contains_key(*uid)).cloned().collect();
            for uid in orphans {
                info!(uid = %uid, "found objects of a pod with no manifest; removing them");
                self.spawn(&uid, None);
            }
        }
        self.fingerprints = fingerprints;
        self.reap();
    }

    /// Drops workers that finished; one whose pod is wanted again is started anew.
    fn reap(&mut self) {
        let finished: Vec<String> = self.workers.iter().filter(|(_, h)| h.task.is_finished()).map(|(uid, _)| uid.clone()).collect();
        for uid in finished {
            self.workers.remove(&uid);
            if let Some(pod) = self.desired.pods.get(&uid).cloned() {
                debug!(uid = %uid, "pod wanted again after its worker finished");
                self.spawn(&uid, Some(pod));
            }
        }
    }
}
