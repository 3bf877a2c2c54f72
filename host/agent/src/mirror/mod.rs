//! Mirror pods (spec §9): the read-only copies of static pods an agent with `--kubeconfig`
//! keeps on the cluster's API server, so `kubectl get pods` shows them as it shows a kubelet's.
//!
//! The stage reads the desired set and the status store and writes only to the API server: it
//! can never hold up a pod. [`plan`] is a pure function from the static pods and the mirror
//! pods the API server holds for this node to the calls that bring the second in line with the
//! first; [`sync`] is the loop that watches both sides and makes those calls, with back-off;
//! [`node`] finds (or, with `--register-node`, registers) the Node object that owns every mirror
//! pod and keeps its heartbeat Lease.

pub mod node;
pub mod plan;
pub mod sync;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kube::config::{KubeConfigOptions, Kubeconfig, KubeconfigError};
use staticlet_model::StaticPod;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::desired::DesiredSet;
use crate::events::Recorder;
use crate::status::StatusStore;
pub use node::{RegisterAs, Registration};

/// The reason of the Warning event a pod gets while its mirror pod cannot be made.
pub const FAILED_MIRROR: &str = "FailedMirrorPod";

/// Reports why mirror pods cannot be made: a [`FAILED_MIRROR`] Warning event on each of `pods`
/// (which logs it too), or a warning in the log when it holds back no pod.
fn report<'a>(events: &Recorder, pods: impl IntoIterator<Item = &'a StaticPod>, message: &str) {
    let mut pods = pods.into_iter().peekable();
    if pods.peek().is_none() {
        tracing::warn!("mirror pods: {message}");
    }
    for pod in pods {
        events.for_pod(pod).warning(None, FAILED_MIRROR, message.to_owned());
    }
}

/// Why the API server cannot be reached as configured.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    /// The kubeconfig cannot be read or used.
    #[error("--kubeconfig {path}: {source}")]
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        source: KubeconfigError,
    },
    /// A client cannot be built from it.
    #[error("--kubeconfig {path}: {source}")]
    Client {
        /// The file.
        path: PathBuf,
        /// Why.
        source: kube::Error,
    },
}

/// The agent's link to an API server: a client and the node it speaks for.
#[derive(Clone)]
pub struct Mirror {
    client: kube::Client,
    server: String,
    node_name: String,
}

impl std::fmt::Debug for Mirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mirror").field("server", &self.server).field("node_name", &self.node_name).finish_non_exhaustive()
    }
}

impl Mirror {
    /// A client for the API server and credentials `kubeconfig` names (its current context), as
    /// kubectl reads it. Nothing is dialled yet.
    pub async fn connect(kubeconfig: &Path, node_name: &str) -> Result<Mirror, MirrorError> {
        let error = |source| MirrorError::Kubeconfig { path: kubeconfig.to_owned(), source };
        let file = Kubeconfig::read_from(kubeconfig).map_err(error)?;
        let config = kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default()).await.map_err(error)?;
        let server = config.cluster_url.to_string();
        let client = kube::Client::try_from(config).map_err(|source| MirrorError::Client { path: kubeconfig.to_owned(), source })?;
        Ok(Mirror { client, server, node_name: node_name.to_owned() })
    }

    /// The API server's URL.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The API server's client, for the kubelet port's TokenReview and SubjectAccessReview.
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// Keeps mirror pods of `desired`'s pods, with their statuses from `status`, until
    /// `shutdown`: waits for the Node object (registering it as `register` describes this host
    /// and keeping its Lease, with `--register-node`), then runs the sync loop. Problems are logged and recorded
    /// as events on the pods they hold back; none of it waits on, or is waited on by, the pods'
    /// workers.
    pub async fn run(
        self,
        register: Option<RegisterAs>,
        desired: watch::Receiver<Arc<DesiredSet>>,
        status: StatusStore,
        events: Recorder,
        shutdown: CancellationToken,
    ) {
        let registration = match register {
            Some(register) => Some(register.describe().await),
            None => None,
        };
        let nodes = node::Nodes::new(self.client.clone(), self.server.clone(), self.node_name.clone(), registration);
        let Some(node) = nodes.wait(&desired, &events, &shutdown).await else { return };
        let heartbeat = nodes.registration().map(|_| tokio::spawn(nodes.clone().heartbeat(node.clone(), shutdown.clone())));
        sync::Sync::new(self.client, self.server, node).run(desired, status, events, shutdown).await;
        if let Some(heartbeat) = heartbeat {
            let _ = heartbeat.await;
        }
    }
}
