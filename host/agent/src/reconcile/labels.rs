//! The labels and annotations staticlet puts on runtime objects. The `io.kubernetes.*` names
//! are the kubelet's, so `docker ps` and `crictl` read as users expect; the `io.staticlet.*`
//! ones are how an agent finds its own objects again.

/// The pod's name (`<name>-<node>`).
pub const POD_NAME: &str = "io.kubernetes.pod.name";
/// The pod's namespace.
pub const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
/// The pod's UID.
pub const POD_UID: &str = "io.kubernetes.pod.uid";
/// The container's name in the pod spec.
pub const CONTAINER_NAME: &str = "io.kubernetes.container.name";
/// The node whose agent owns the object: two agents sharing an engine never touch each
/// other's pods.
pub const NODE: &str = "io.staticlet.node";
/// Hash of the pod fields the sandbox is built from.
pub const SANDBOX_HASH: &str = "io.staticlet.sandbox.hash";
/// Annotation: hash of the container's spec.
pub const CONTAINER_HASH: &str = "io.kubernetes.container.hash";
/// Annotation: the container's restart count.
pub const RESTART_COUNT: &str = "io.kubernetes.container.restartCount";
/// Annotation: the grace period the object was started with, so an orphan is stopped as
/// gently as its pod asked.
pub const GRACE_PERIOD: &str = "io.kubernetes.pod.terminationGracePeriod";
