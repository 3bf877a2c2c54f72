//! The status store: the one place pod workers publish what their pods are doing, and the one
//! place the API (and mirror pods) read it from. Readers get a consistent snapshot of every pod
//! and can wait for the next change.

use std::collections::BTreeMap;
use std::sync::Arc;

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

/// The store. Cloning shares it.
#[derive(Debug, Clone)]
pub struct StatusStore {
    pods: watch::Sender<Snapshot>,
}

impl Default for StatusStore {
    fn default() -> Self {
        StatusStore { pods: watch::Sender::new(Snapshot::default()) }
    }
}

impl StatusStore {
    /// Publishes a pod's view; readers are woken only if it changed.
    pub fn publish(&self, uid: &str, view: PodView) {
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
        self.pods.send_if_modified(|pods| Arc::make_mut(pods).remove(uid).is_some());
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
