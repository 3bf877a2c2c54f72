//! The labels and annotations staticlet puts on runtime objects: the contract between the agent
//! and whatever runtime holds its pods, which is how it finds them again after a restart. The
//! `io.kubernetes.*` names are the kubelet's, so `docker ps` and `crictl` read as users expect;
//! the `io.staticlet.*` ones are the agent's own.

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
/// The runtime handler (`docker`, or a runtime adapter's name) that created the object:
/// handlers may share one engine (two runtime classes on one Podman), and each manages only its
/// own objects. Objects without it predate runtime classes, when every pod ran on Docker.
pub const HANDLER: &str = "io.staticlet.runtime-handler";

/// Whether an object with `labels` is `handler`'s to manage.
pub fn belongs_to(labels: &std::collections::BTreeMap<String, String>, handler: &str) -> bool {
    labels.get(HANDLER).map_or(handler == crate::handler::DOCKER, |h| h == handler)
}

/// Hash of the pod fields the sandbox is built from.
pub const SANDBOX_HASH: &str = "io.staticlet.sandbox.hash";
/// Annotation: hash of the container's spec.
pub const CONTAINER_HASH: &str = "io.kubernetes.container.hash";
/// Annotation: the container's restart count.
pub const RESTART_COUNT: &str = "io.kubernetes.container.restartCount";
/// Annotation: the grace period the object was started with, so an orphan is stopped as
/// gently as its pod asked.
pub const GRACE_PERIOD: &str = "io.kubernetes.pod.terminationGracePeriod";
/// Annotation: the container's `preStop` hook (JSON), so it runs even after the manifest is gone.
pub const PRE_STOP_HANDLER: &str = "io.kubernetes.container.preStopHandler";
/// Annotation: the container's ports (JSON), which a hook's named port refers to.
pub const CONTAINER_PORTS: &str = "io.kubernetes.container.ports";
/// Annotation: where the container writes its termination message.
pub const TERMINATION_MESSAGE_PATH: &str = "io.kubernetes.container.terminationMessagePath";
/// Annotation: `File`, or `FallbackToLogsOnError` to take the log's tail when the file is empty.
pub const TERMINATION_MESSAGE_POLICY: &str = "io.kubernetes.container.terminationMessagePolicy";
/// Annotation: `app`, `init` or `sidecar`: app containers stop before sidecars.
pub const CONTAINER_ROLE: &str = "io.staticlet.container.role";
/// Annotation: an init container's position, so sidecars stop in reverse order.
pub const INIT_INDEX: &str = "io.staticlet.container.initIndex";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_belong_to_the_handler_that_labelled_them_and_unlabelled_ones_to_docker() {
        let labelled = std::collections::BTreeMap::from([(HANDLER.to_owned(), "podman".to_owned())]);
        assert!(belongs_to(&labelled, "podman"));
        assert!(!belongs_to(&labelled, "docker"));
        let from_before_runtime_classes = std::collections::BTreeMap::new();
        assert!(belongs_to(&from_before_runtime_classes, "docker"));
        assert!(!belongs_to(&from_before_runtime_classes, "podman"));
    }
}
