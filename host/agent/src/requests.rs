//! What users ask of running pods beside their manifests (`staticlet restart`). The API takes
//! the request and the pod's worker carries it out; this module is the message between them, so
//! neither stage reaches into the other.

use tokio::sync::oneshot;

/// A request to restart a pod: every container stopped, and the pod started afresh.
#[derive(Debug)]
pub struct RestartRequest {
    /// The pod.
    pub uid: String,
    /// Answered once the pod's worker has the request, or with why not.
    pub accepted: oneshot::Sender<Result<(), String>>,
}
