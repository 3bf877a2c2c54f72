//! The mirror loop: watches this node's pods on the API server, the desired set and the status
//! store, and after each change (no more often than [`MIN_PASS_INTERVAL`]) makes the calls [`plan`] asks for.
//!
//! A failed call is retried, whole pass and all, with exponential back-off; the watch recovers
//! on its own with the same back-off and lists again. Status changes that arrive while a pass
//! waits are coalesced: a pass always reads the newest statuses, so a pod whose status changed
//! five times since the last pass gets one patch.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, PodStatus};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::utils::Backoff as KubeBackoff;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use serde_json::json;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::plan::{self, Action, NodeRef, Observed, Wanted};
use super::report;
use crate::desired::DesiredSet;
use crate::events::Recorder;
use crate::status::{StatusSnapshot, StatusStore};

/// The shortest time between two passes: status bursts (a pod starting its containers one by
/// one) become one patch per pod instead of one per change.
pub const MIN_PASS_INTERVAL: Duration = Duration::from_millis(500);

/// The back-off between failed passes and between watch attempts: doubling from half a second
/// to ten, reset by a success. Ten seconds bounds how long mirrors lag behind an API server
/// that came back.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(500);
    const MAX: Duration = Duration::from_secs(10);
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { next: Self::FIRST }
    }
}

impl Iterator for Backoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let delay = self.next;
        self.next = (delay * 2).min(Self::MAX);
        Some(delay)
    }
}

impl KubeBackoff for Backoff {
    fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

/// When the next pass may run: after a change, no sooner than [`MIN_PASS_INTERVAL`] after the
/// last one, and after a failed pass not before its back-off.
struct Pacing {
    /// Something changed since the last pass began (or its failure wants it retried).
    dirty: bool,
    /// The earliest time the next pass may begin.
    earliest: Instant,
    /// The back-off between failed passes.
    retries: Backoff,
}

impl Pacing {
    /// A pass is due at once.
    fn new() -> Pacing {
        Pacing { dirty: true, earliest: Instant::now(), retries: Backoff::default() }
    }

    /// A pass begins: it takes in every change so far, and the next waits its interval.
    fn started(&mut self) {
        self.dirty = false;
        self.earliest = Instant::now() + MIN_PASS_INTERVAL;
    }

    /// A pass ended: a failed one is retried after the back-off, a successful one resets it.
    fn finished(&mut self, outcome: Result<(), String>) {
        if let Err(failure) = outcome {
            let delay = self.retries.next().unwrap_or(Backoff::MAX);
            debug!("mirror pods: {failure}; retrying in {delay:?}");
            self.dirty = true;
            self.earliest = self.earliest.max(Instant::now() + delay);
        } else {
            self.retries.reset();
        }
    }
}

/// The mirror loop's state.
pub struct Sync {
    client: Client,
    server: String,
    node: NodeRef,
    /// This node's pods on the API server, as last watched or returned by a call.
    observed: BTreeMap<(String, String), Observed>,
    /// The status last patched onto each mirror pod, by its uid. Passes compare the wanted
    /// status with this rather than with what the watch returns, as the kubelet's status manager
    /// does: an API server that normalizes a field must not set off a patch on every pass.
    sent: HashMap<String, PodStatus>,
}

impl Sync {
    /// The loop for `node`'s mirror pods through `client`.
    pub fn new(client: Client, server: String, node: NodeRef) -> Sync {
        Sync { client, server, node, observed: BTreeMap::new(), sent: HashMap::new() }
    }

    /// Runs until `shutdown`: the pods in `desired` get mirrors, with their statuses from
    /// `status`. Nothing is done before `desired` is complete (every source listed), so that an
    /// agent that just restarted does not take the mirrors of pods it has not read yet for
    /// orphans.
    pub async fn run(
        mut self,
        mut desired: watch::Receiver<Arc<DesiredSet>>,
        status: StatusStore,
        events: Recorder,
        shutdown: CancellationToken,
    ) {
        let watch = self.watch_node_pods();
        let mut watch = std::pin::pin!(watch);
        let mut snapshots = status.subscribe();
        // Filled during a (re)list, swapped in when it completes.
        let mut listing: Option<BTreeMap<(String, String), Observed>> = None;
        let mut listed = false;
        let mut watch_failing = false;
        let mut pacing = Pacing::new();
        loop {
            let due = (listed && pacing.dirty && desired.borrow().ready).then_some(pacing.earliest);
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return,
                event = watch.next() => match event {
                    Some(Ok(event)) => {
                        if std::mem::take(&mut watch_failing) {
                            info!(server = %self.server, "mirror pods: watching the API server again");
                        }
                        listed |= self.observe(event, &mut listing);
                        pacing.dirty = true;
                    }
                    Some(Err(e)) => self.watch_failed(&e, std::mem::replace(&mut watch_failing, true)),
                    None => return,
                },
                changed = snapshots.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    pacing.dirty = true;
                }
                changed = desired.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    pacing.dirty = true;
                }
                _ = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                    let snapshot = snapshots.borrow_and_update().clone();
                    let wanted = desired.borrow_and_update().clone();
                    pacing.started();
                    pacing.finished(self.pass(&wanted, &snapshot, &events).await);
                }
            }
        }
    }

    /// This node's pods on the API server, listed again after each failure with back-off.
    fn watch_node_pods(&self) -> impl futures::Stream<Item = Result<watcher::Event<Pod>, watcher::Error>> + use<> {
        let selector = format!("spec.nodeName={}", self.node.name);
        watcher(Api::<Pod>::all(self.client.clone()), watcher::Config::default().fields(&selector)).backoff(Backoff::default())
    }

    /// Logs a failed watch: a warning when it starts failing, then only at debug level, so a
    /// long outage of the API server does not flood the log.
    fn watch_failed(&self, e: &watcher::Error, already_failing: bool) {
        if !already_failing {
            warn!(server = %self.server, "mirror pods: cannot watch this node's pods: {e}; retrying with back-off, pods run regardless");
        } else {
            debug!(server = %self.server, "mirror pods: watch still failing: {e}");
        }
    }

    /// Takes in one watch event; true once a listing has completed.
    fn observe(&mut self, event: watcher::Event<Pod>, listing: &mut Option<BTreeMap<(String, String), Observed>>) -> bool {
        match event {
            watcher::Event::Init => *listing = Some(BTreeMap::new()),
            watcher::Event::InitApply(pod) => {
                let o = Observed::of(&pod);
                listing.get_or_insert_default().insert(o.key(), o);
            }
            watcher::Event::InitDone => {
                self.observed = listing.take().unwrap_or_default();
                self.sent.retain(|uid, _| self.observed.values().any(|o| &o.uid == uid));
                return true;
            }
            watcher::Event::Apply(pod) => {
                let o = Observed::of(&pod);
                self.observed.insert(o.key(), o);
            }
            watcher::Event::Delete(pod) => {
                let o = Observed::of(&pod);
                if self.observed.get(&o.key()).is_some_and(|current| current.uid == o.uid) {
                    self.observed.remove(&o.key());
                }
                self.sent.remove(&o.uid);
            }
        }
        false
    }

    /// Plans the admitted pods of `desired` against the newest statuses and makes the calls;
    /// stops at the first failure. Rejected pods get no mirror: NodeRestriction would refuse
    /// most of them, and the kubelet makes none for them either.
    async fn pass(&mut self, desired: &DesiredSet, snapshot: &StatusSnapshot, events: &Recorder) -> Result<(), String> {
        let wanted: Vec<Wanted<'_>> =
            desired.pods.values().map(|pod| Wanted { pod, status: snapshot.by_uid.get(&pod.uid).map(|s| s.view.status.clone()) }).collect();
        let observed: Vec<Observed> = self
            .observed
            .values()
            .map(|o| Observed { status: self.sent.get(&o.uid).cloned().or_else(|| o.status.clone()), ..o.clone() })
            .collect();
        let (actions, blocked) = plan::plan(&self.node, &wanted, &observed);
        for b in blocked {
            report(events, desired.pods.get(&b.uid).map(|pod| &**pod), &format!("no mirror pod on {}: {}", self.server, b.reason));
        }
        for action in actions {
            let described = describe(&action);
            let (namespace, name) = action.target();
            let static_pod = desired.pods.values().find(|pod| pod.namespace() == namespace && pod.name() == name).cloned();
            if let Err(e) = self.apply(action).await {
                let message = format!("{described} on {}: {e}", self.server);
                report(events, static_pod.as_deref(), &message);
                return Err(message);
            }
        }
        Ok(())
    }

    /// Makes one call, and records its outcome as the watch would. Answers that only say the
    /// API server is ahead of the watch (created meanwhile, already gone) are not failures.
    async fn apply(&mut self, action: Action) -> Result<(), kube::Error> {
        match action {
            Action::Create(pod) => {
                let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
                match Api::<Pod>::namespaced(self.client.clone(), namespace).create(&PostParams::default(), &pod).await {
                    Ok(created) => {
                        let o = Observed::of(&created);
                        debug!(pod = %format!("{}/{}", o.namespace, o.name), uid = %o.uid, "mirror pod created");
                        self.observed.insert(o.key(), o);
                        Ok(())
                    }
                    Err(kube::Error::Api(status)) if status.is_already_exists() => Ok(()),
                    Err(e) => Err(e),
                }
            }
            Action::Delete { namespace, name, uid } => {
                let params = DeleteParams {
                    grace_period_seconds: Some(0),
                    preconditions: Some(Preconditions { uid: Some(uid.clone()), resource_version: None }),
                    ..DeleteParams::default()
                };
                match Api::<Pod>::namespaced(self.client.clone(), &namespace).delete(&name, &params).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(status)) if status.is_not_found() || status.is_conflict() => {}
                    Err(e) => return Err(e),
                }
                debug!(pod = %format!("{namespace}/{name}"), %uid, "mirror pod deleted");
                self.observed.remove(&(namespace, name));
                self.sent.remove(&uid);
                Ok(())
            }
            Action::PatchStatus { namespace, name, status } => {
                let patch = Patch::Merge(json!({ "status": status }));
                let api = Api::<Pod>::namespaced(self.client.clone(), &namespace);
                match api.patch_status(&name, &PatchParams::default(), &patch).await {
                    Ok(patched) => {
                        let o = Observed::of(&patched);
                        self.sent.insert(o.uid.clone(), *status);
                        self.observed.insert((namespace, name), o);
                        Ok(())
                    }
                    Err(kube::Error::Api(s)) if s.is_not_found() => Ok(()),
                    Err(e) => Err(e),
                }
            }
        }
    }
}

/// The call, as errors and events name it: "creating mirror pod default/web-n1".
fn describe(action: &Action) -> String {
    let (namespace, name) = action.target();
    let what = match action {
        Action::Create(_) => "creating mirror pod",
        Action::Delete { .. } => "deleting mirror pod",
        Action::PatchStatus { .. } => "updating the status of mirror pod",
    };
    format!("{what} {namespace}/{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_doubles_to_its_cap_and_resets() {
        let mut backoff = Backoff::default();
        let delays: Vec<_> = backoff.by_ref().take(7).map(|d| d.as_millis()).collect();
        assert_eq!(delays, [500, 1000, 2000, 4000, 8000, 10_000, 10_000]);
        backoff.reset();
        assert_eq!(backoff.next(), Some(Duration::from_millis(500)));
    }
}
