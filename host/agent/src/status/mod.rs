//! The status store: the one place pod workers publish what their pods are doing, and the one
//! place the API (and mirror pods) read it from. Readers get a consistent snapshot of every pod
//! and can wait for the next change.
//!
//! Every change bumps the store's revision, which is what the API serves as `resourceVersion`:
//! a pod carries the revision it last changed at, and the store remembers recent deletions so
//! that a watch resuming from a list's revision misses nothing.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use staticlet_model::StaticPod;
use staticlet_plugin::{Plugin, PluginInfo};
use tokio::sync::watch;

pub mod sync_loop;

pub use sync_loop::SyncLoop;

/// How many deletions the store remembers for watches resuming from an older revision.
const TOMBSTONES: usize = 1024;

/// One pod as the API shows it: the wanted pod with its computed status.
#[derive(Debug, Clone, PartialEq)]
pub struct PodWithStatus {
    /// The pod as it runs.
    pub pod: Arc<StaticPod>,
    /// Its status, computed with the kubelet's rules.
    pub status: PodStatus,
}

impl PodWithStatus {
    /// The pod with its status filled in, as `kubectl get pod -o yaml` shows it.
    pub fn to_pod(&self) -> Pod {
        Pod { status: Some(self.status.clone()), ..self.pod.pod.clone() }
    }
}

/// A pod with its status in the store, with the revisions it was added and last changed at.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredPod {
    /// The pod with its status.
    pub view: Arc<PodWithStatus>,
    /// The store revision the pod appeared at.
    pub created: u64,
    /// The store revision of its last change: its `resourceVersion`.
    pub revision: u64,
}

impl StoredPod {
    /// The pod with its status and `resourceVersion`; its `creationTimestamp` is when the agent
    /// first started it, since no API server ever created it.
    pub fn to_pod(&self) -> Pod {
        let mut pod = self.view.to_pod();
        pod.metadata.resource_version = Some(self.revision.to_string());
        if pod.metadata.creation_timestamp.is_none() {
            pod.metadata.creation_timestamp = self.view.status.start_time.clone();
        }
        pod
    }
}

/// A pod that left the store, and when.
#[derive(Debug, Clone, PartialEq)]
pub struct Tombstone {
    /// The pod as it was last shown.
    pub last: StoredPod,
    /// The revision it was removed at.
    pub removed: u64,
}

/// Every pod in the store at one revision.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Pods {
    /// The store's revision.
    pub revision: u64,
    /// Each pod by UID.
    pub by_uid: BTreeMap<String, StoredPod>,
    /// Recent removals, oldest first.
    pub removed: VecDeque<Tombstone>,
}

impl Pods {
    /// The pod named `namespace/name`.
    pub fn find(&self, namespace: &str, name: &str) -> Option<&StoredPod> {
        self.by_uid.values().find(|s| s.view.pod.namespace() == namespace && s.view.pod.name() == name)
    }

    /// The revision below which removals are forgotten: a watch from before it cannot resume.
    pub fn oldest_resumable(&self) -> u64 {
        if self.removed.len() < TOMBSTONES { 0 } else { self.removed.front().map_or(0, |t| t.removed) }
    }

    fn insert(&mut self, uid: &str, view: PodWithStatus) -> bool {
        if self.by_uid.get(uid).is_some_and(|current| *current.view == view) {
            return false;
        }
        self.revision += 1;
        let revision = self.revision;
        let created = self.by_uid.get(uid).map_or(revision, |current| current.created);
        self.by_uid.insert(uid.to_owned(), StoredPod { view: Arc::new(view), created, revision });
        true
    }

    fn remove(&mut self, uid: &str) -> bool {
        let Some(last) = self.by_uid.remove(uid) else { return false };
        self.revision += 1;
        if self.removed.len() == TOMBSTONES {
            self.removed.pop_front();
        }
        self.removed.push_back(Tombstone { last, removed: self.revision });
        true
    }
}

/// Every pod with its status at one revision of the store: what the API, the mirror and the
/// metrics read.
pub type StatusSnapshot = Arc<Pods>;

/// The reason a pod turned down by admission shows, as the kubelet's rejected pods show the
/// admit handler's reason.
pub const REJECTED: &str = "Rejected";

/// The status of a pod admission turned down: `Failed`, `Rejected`, with every reason.
pub fn rejected_status(message: String) -> PodStatus {
    PodStatus { phase: Some("Failed".into()), reason: Some(REJECTED.into()), message: Some(message), ..PodStatus::default() }
}

/// The store. Cloning shares it.
#[derive(Debug, Clone)]
pub struct StatusStore {
    pods: watch::Sender<StatusSnapshot>,
    /// Pods whose view admission owns: workers tearing down such a pod do not overwrite it.
    rejected: Arc<Mutex<HashSet<String>>>,
    /// Whether the agent has admitted its sources' first complete listing and handed it to
    /// the pod workers: `/readyz`, and systemd's `READY=1`.
    ready: watch::Sender<bool>,
    /// The runtime handlers that cannot be reached, with why: `/readyz` names them.
    unreachable: Arc<Mutex<BTreeMap<String, String>>>,
    /// When the controller's loop last went round: `/healthz` and systemd's watchdog.
    pub sync_loop: SyncLoop,
}

impl Default for StatusStore {
    fn default() -> Self {
        StatusStore {
            pods: watch::Sender::new(StatusSnapshot::default()),
            rejected: Arc::default(),
            ready: watch::Sender::new(false),
            unreachable: Arc::default(),
            sync_loop: SyncLoop::default(),
        }
    }
}

impl StatusStore {
    fn is_rejected(&self, uid: &str) -> bool {
        self.rejected.lock().expect("status lock").contains(uid)
    }

    /// Publishes a pod's view; readers are woken only if it changed.
    pub fn publish(&self, uid: &str, view: PodWithStatus) {
        if self.is_rejected(uid) {
            return;
        }
        self.pods.send_if_modified(|pods| Arc::make_mut(pods).insert(uid, view));
    }

    /// Forgets a pod that is gone, if `which` says its stored view is the one meant.
    pub fn remove_if(&self, uid: &str, which: impl FnOnce(&PodWithStatus) -> bool) {
        if self.is_rejected(uid) {
            return;
        }
        self.pods
            .send_if_modified(|pods| pods.by_uid.get(uid).is_some_and(|stored| which(&stored.view)) && Arc::make_mut(pods).remove(uid));
    }

    /// Replaces the set of rejected pods and their views: views of pods no longer rejected go.
    pub fn set_rejected(&self, views: BTreeMap<String, PodWithStatus>) {
        let mut rejected = self.rejected.lock().expect("status lock");
        self.pods.send_if_modified(|pods| {
            let mut changed = false;
            for uid in rejected.iter().filter(|uid| !views.contains_key(*uid)) {
                if pods.by_uid.contains_key(uid) {
                    changed |= Arc::make_mut(pods).remove(uid);
                }
            }
            for (uid, view) in &views {
                if pods.by_uid.get(uid).is_none_or(|current| *current.view != *view) {
                    changed |= Arc::make_mut(pods).insert(uid, view.clone());
                }
            }
            changed
        });
        *rejected = views.into_keys().collect();
    }

    /// The current views.
    pub fn snapshot(&self) -> StatusSnapshot {
        self.pods.borrow().clone()
    }

    /// A receiver that sees every change.
    pub fn subscribe(&self) -> watch::Receiver<StatusSnapshot> {
        self.pods.subscribe()
    }

    /// Marks the agent ready: its first complete desired set is in the workers' hands.
    pub fn mark_ready(&self) {
        self.ready.send_if_modified(|ready| !std::mem::replace(ready, true));
    }

    /// Whether the agent is ready.
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Records whether runtime `handler` answered its last listing (`Err` says why not).
    pub fn set_runtime_reachable(&self, handler: &str, reachable: Result<(), String>) {
        let mut unreachable = self.unreachable.lock().expect("status lock");
        match reachable {
            Ok(()) => unreachable.remove(handler),
            Err(why) => unreachable.insert(handler.to_owned(), why),
        };
    }

    /// Why the agent is not ready, or `None` when it is: its first manifests are not admitted
    /// yet, or a runtime cannot be reached (its pods can be neither started nor watched).
    pub fn not_ready(&self) -> Option<String> {
        if !self.is_ready() {
            return Some("the first manifests are not admitted yet".to_owned());
        }
        let unreachable = self.unreachable.lock().expect("status lock");
        (!unreachable.is_empty()).then(|| {
            unreachable.iter().map(|(handler, why)| format!("runtime {handler} is unreachable: {why}")).collect::<Vec<_>>().join("; ")
        })
    }

    /// Waits until the agent is ready.
    pub async fn wait_ready(&self) {
        let mut ready = self.ready.subscribe();
        let _ = ready.wait_for(|ready| *ready).await;
    }
}

/// Every plugin the agent has loaded, of every kind, for `staticlet plugins`. Cloning shares it.
#[derive(Debug, Clone, Default)]
pub struct PluginRegistry {
    plugins: Arc<Mutex<Vec<Arc<Plugin>>>>,
}

impl PluginRegistry {
    /// Adds loaded plugins.
    pub fn register(&self, plugins: impl IntoIterator<Item = Arc<Plugin>>) {
        self.plugins.lock().expect("plugin registry lock").extend(plugins);
    }

    /// The plugin named `name`.
    pub fn get(&self, name: &str) -> Option<Arc<Plugin>> {
        self.plugins.lock().expect("plugin registry lock").iter().find(|p| p.spec().name == name).cloned()
    }

    /// What each plugin is and how it is doing, in load order.
    pub fn infos(&self) -> Vec<PluginInfo> {
        self.plugins.lock().expect("plugin registry lock").iter().map(|p| p.info()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use staticlet_model::{NodeContext, Origin, SourceKind};

    fn view(name: &str, phase: &str) -> PodWithStatus {
        let text = format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec: {{containers: [{{name: c, image: i}}]}}\n");
        let origin = Origin { kind: SourceKind::File, uri: format!("/m/{name}.yaml") };
        let pod = staticlet_model::load(text.as_bytes(), &origin, &NodeContext { node_name: "n1".into() }).unwrap().pod;
        PodWithStatus { pod: Arc::new(pod), status: PodStatus { phase: Some(phase.into()), ..PodStatus::default() } }
    }

    #[test]
    fn revisions_count_changes_and_removals_are_remembered() {
        let store = StatusStore::default();
        store.publish("a", view("a", "Pending"));
        store.publish("a", view("a", "Pending"));
        assert_eq!(store.snapshot().revision, 1);
        store.publish("a", view("a", "Running"));
        store.publish("b", view("b", "Running"));
        let pods = store.snapshot();
        assert_eq!((pods.by_uid["a"].created, pods.by_uid["a"].revision, pods.by_uid["b"].revision), (1, 2, 3));
        assert_eq!(pods.by_uid["a"].to_pod().metadata.resource_version.as_deref(), Some("2"));
        store.remove_if("a", |_| true);
        store.remove_if("b", |_| false);
        let pods = store.snapshot();
        assert_eq!(pods.revision, 4);
        assert_eq!(pods.removed.iter().map(|t| (t.last.view.pod.name(), t.removed)).collect::<Vec<_>>(), vec![("a-n1", 4)]);
        assert!(pods.find("default", "b-n1").is_some());
    }
}
