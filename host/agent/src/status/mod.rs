//! The status store: the one place pod workers publish what their pods are doing, and the one
//! place the API (and mirror pods) read it from. Readers get a consistent snapshot of every pod
//! and can wait for the next change.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use staticlet_model::StaticPod;
use tokio::sync::watch;

/// One pod as the API shows it: the wanted pod with its computed status.
#[derive(Debug, Clone, PartialEq)]
pub struct PodView {
    /// The pod as it runs.
    pub pod: Arc<StaticPod>,
    /// Its status, computed with the kubelet's rules.
    pub status: PodStatus,
}

impl PodView {
    /// The pod with its status filled in, as `kubectl get pod -o yaml` shows it.
    pub fn to_pod(&self) -> Pod {
        Pod { status: Some(self.status.clone()), ..self.pod.pod.clone() }
    }
}

/// Every pod's view by UID.
pub type Snapshot = Arc<BTreeMap<String, Arc<PodView>>>;

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
    pods: watch::Sender<Snapshot>,
    /// Pods whose view admission owns: workers tearing down such a pod do not overwrite it.
    rejected: Arc<Mutex<HashSet<String>>>,
}

impl Default for StatusStore {
    fn default() -> Self {
        StatusStore { pods: watch::Sender::new(Snapshot::default()), rejected: Arc::default() }
    }
}

impl StatusStore {
    fn is_rejected(&self, uid: &str) -> bool {
        self.rejected.lock().expect("status lock").contains(uid)
    }

    /// Publishes a pod's view; readers are woken only if it changed.
    pub fn publish(&self, uid: &str, view: PodView) {
        if self.is_rejected(uid) {
            return;
        }
        self.pods.send_if_modified(|pods| {
            if pods.get(uid).is_some_and(|current| **current == view) {
                return false;
            }
            Arc::make_mut(pods).insert(uid.to_owned(), Arc::new(view));
            true
        });
    }

    /// Forgets a pod that is gone.
    pub fn remove(&self, uid: &str) {
        if self.is_rejected(uid) {
            return;
        }
        self.pods.send_if_modified(|pods| Arc::make_mut(pods).remove(uid).is_some());
    }

    /// Replaces the set of rejected pods and their views: views of pods no longer rejected go.
    pub fn set_rejected(&self, views: BTreeMap<String, PodView>) {
        let mut rejected = self.rejected.lock().expect("status lock");
        self.pods.send_if_modified(|pods| {
            let mut changed = false;
            for uid in rejected.iter().filter(|uid| !views.contains_key(*uid)) {
                changed |= Arc::make_mut(pods).remove(uid).is_some();
            }
            for (uid, view) in &views {
                if pods.get(uid).is_none_or(|current| **current != *view) {
                    Arc::make_mut(pods).insert(uid.clone(), Arc::new(view.clone()));
                    changed = true;
                }
            }
            changed
        });
        *rejected = views.into_keys().collect();
    }

    /// The current views.
    pub fn snapshot(&self) -> Snapshot {
        self.pods.borrow().clone()
    }

    /// A receiver that sees every change.
    pub fn subscribe(&self) -> watch::Receiver<Snapshot> {
        self.pods.subscribe()
    }
}
