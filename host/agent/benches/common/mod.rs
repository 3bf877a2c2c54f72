//! What the agent's benchmarks share: the summary lines `scripts/bench` collects
//! ([`report`]), a pod's start broken down by stage ([`breakdown`]), and the start-latency
//! benchmarks' pod, as staticlet runs it and as their minimal clients are given it.

pub mod breakdown;
pub mod report;

use staticlet::reconcile::podconfig::{self, Addresses, Owner};
use staticlet::state::Layout;
use staticlet_model::{NodeContext, Origin, SourceKind, StaticPod};
use staticlet_runtime::{ContainerConfig, PodSandboxConfig};

/// Pods each start-latency benchmark starts, per side.
pub const PODS: usize = 20;

/// The start-latency benchmarks' pod: one container sleeping on the test busybox image.
pub fn manifest(name: &str, image: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  containers:\n  - name: main\n    image: {image}\n    command: [sleep, '100000']\n"
    )
}

/// The pod `name` on `node` as staticlet would run it on `handler`, and the sandbox and
/// container configs it would send: decoded, defaulted and named by the agent's own code, and
/// configured by the same functions its workers call (labels, annotations, the
/// termination-message mount, whose host file is made under `root`). A minimal client sending
/// these makes the same requests as the agent, so the comparison is of the two clients alone.
///
/// # Panics
///
/// When the manifest does not load, which would be a bug in the benchmark.
pub fn pod_configs(
    name: &str,
    image: &str,
    node: &str,
    handler: &str,
    root: &std::path::Path,
) -> (StaticPod, PodSandboxConfig, ContainerConfig) {
    pod_configs_of(&manifest(name, image), "main", node, handler, root)
}

/// The same for the pod `manifest` declares, whose container `container` is configured.
///
/// # Panics
///
/// As [`pod_configs`].
pub fn pod_configs_of(
    manifest: &str,
    container: &str,
    node: &str,
    handler: &str,
    root: &std::path::Path,
) -> (StaticPod, PodSandboxConfig, ContainerConfig) {
    let origin = Origin { kind: SourceKind::File, uri: "/bench/manifest.yaml".to_owned() };
    let node_context = NodeContext { node_name: node.to_owned() };
    let pod = staticlet_model::load(manifest.as_bytes(), &origin, &node_context).expect("the bench's manifest loads").pod;
    let owner = Owner { node, handler };
    let sandbox = podconfig::sandbox_config(&pod, 0, owner);
    let container = podconfig::find_container(&pod, container).expect("the pod has its container");
    // No pod IP: the container's environment does not refer to it, and the minimal client has
    // no reason to ask for it.
    let addresses = Addresses { pod_ip: None, host_ip: "127.0.0.1" };
    let config = podconfig::container_config(&pod, container, 0, owner, &Layout::new(root), addresses).expect("the container configures");
    (pod, sandbox, config)
}

/// The order the sides of a benchmark take their `i`th turn in: rotated each round, so that
/// no side always comes right after another's clean-up or always first after a pause.
pub fn turn_order<T: Copy>(sides: &[T], i: usize) -> Vec<T> {
    let mut order = sides.to_vec();
    order.rotate_left(i % sides.len().max(1));
    order
}
