//! This node's Node object: found (mirror pods wait for it), or with `--register-node` created
//! with the host's addresses and capacity, and kept alive with a Lease in `kube-node-lease`, as
//! the kubelet does.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus, NodeSystemInfo, Taint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::{Api, Client};
use staticlet_runtime::Runtime;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::plan::NodeRef;
use super::report;
use super::sync::Backoff;
use crate::desired::DesiredSet;
use crate::events::Recorder;

/// The namespace of node heartbeat Leases.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";

/// How long a Lease holds without renewal (the kubelet's `nodeLeaseDurationSeconds`).
pub const LEASE_DURATION_SECONDS: i32 = 40;

/// How often the Lease is renewed: a quarter of its duration, as the kubelet does.
pub const RENEW_INTERVAL: Duration = Duration::from_secs(10);

/// The taint a registered node carries: staticlet runs only its own static pods, so nothing the
/// scheduler places on the node would ever start.
pub const STATIC_PODS_ONLY_TAINT: &str = "node.staticlet.dev/static-pods-only";

/// What `--register-node` tells the API server about this host.
#[derive(Debug, Clone, PartialEq)]
pub struct Registration {
    /// `status.addresses`: `InternalIP` and `Hostname`.
    pub addresses: Vec<NodeAddress>,
    /// `status.capacity` (and `allocatable`): `cpu`, `memory`, `pods`.
    pub capacity: BTreeMap<String, Quantity>,
    /// `status.nodeInfo`.
    pub node_info: NodeSystemInfo,
    /// `status.daemonEndpoints.kubeletEndpoint.Port`: where the API server reaches this node's
    /// kubelet port for logs, exec, attach and port-forward.
    pub kubelet_port: Option<u16>,
}

/// What `--register-node` needs to describe this host, gathered when the mirror starts.
#[derive(Clone)]
pub struct RegisterAs {
    /// `--node-ip`.
    pub node_ip: String,
    /// The kubelet port, if served.
    pub kubelet_port: Option<u16>,
    /// The default runtime, whose name and version the Node shows.
    pub runtime: Arc<dyn Runtime>,
}

impl RegisterAs {
    /// This host's [`Registration`]: the runtime's version is asked for now, and left out (with a
    /// warning) if the runtime cannot say.
    pub async fn describe(&self) -> Registration {
        let version = match self.runtime.version().await {
            Ok(v) => format!("{}://{}", v.runtime_name, v.runtime_version),
            Err(e) => {
                warn!("registering the node without its container runtime's version: {e}");
                String::new()
            }
        };
        Registration::of_this_host(&self.node_ip, &version, self.kubelet_port)
    }
}

impl Registration {
    /// This host as the kubelet would describe it: `node_ip` and the hostname, the CPUs and
    /// memory the kernel reports, `runtime` (`docker://28.1.1`) as its container runtime, and
    /// its kubelet port if served.
    pub fn of_this_host(node_ip: &str, runtime: &str, kubelet_port: Option<u16>) -> Registration {
        let read = |path: &str| std::fs::read_to_string(path).map(|s| s.trim().to_owned()).unwrap_or_default();
        let mut addresses = vec![NodeAddress { type_: "InternalIP".into(), address: node_ip.to_owned() }];
        let hostname = read("/proc/sys/kernel/hostname");
        if !hostname.is_empty() {
            addresses.push(NodeAddress { type_: "Hostname".into(), address: hostname });
        }
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let memory_kib = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0);
        let capacity = BTreeMap::from([
            ("cpu".to_owned(), Quantity(cpus.to_string())),
            ("memory".to_owned(), Quantity(format!("{memory_kib}Ki"))),
            // The kubelet's default `maxPods`.
            ("pods".to_owned(), Quantity("110".to_owned())),
        ]);
        let os_image = read("/etc/os-release")
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|v| v.trim_matches('"').to_owned())
            .unwrap_or_else(|| "Linux".to_owned());
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            other => other,
        };
        let node_info = NodeSystemInfo {
            architecture: architecture.to_owned(),
            boot_id: read("/proc/sys/kernel/random/boot_id"),
            container_runtime_version: runtime.to_owned(),
            kernel_version: read("/proc/sys/kernel/osrelease"),
            kubelet_version: format!("v{}-staticlet", env!("CARGO_PKG_VERSION")),
            machine_id: read("/etc/machine-id"),
            operating_system: std::env::consts::OS.to_owned(),
            os_image,
            system_uuid: read("/sys/class/dmi/id/product_uuid"),
            ..NodeSystemInfo::default()
        };
        Registration { addresses, capacity, node_info, kubelet_port }
    }

    /// The Node object for `name`, Ready, tainted so nothing is scheduled onto it.
    pub fn node(&self, name: &str, now: Timestamp) -> Node {
        let ready = NodeCondition {
            type_: "Ready".into(),
            status: "True".into(),
            reason: Some("KubeletReady".into()),
            message: Some("staticlet is posting ready status".into()),
            last_heartbeat_time: Some(Time(now)),
            last_transition_time: Some(Time(now)),
        };
        let labels = BTreeMap::from([
            ("kubernetes.io/hostname".to_owned(), name.to_owned()),
            ("kubernetes.io/os".to_owned(), self.node_info.operating_system.clone()),
            ("kubernetes.io/arch".to_owned(), self.node_info.architecture.clone()),
        ]);
        Node {
            metadata: ObjectMeta { name: Some(name.to_owned()), labels: Some(labels), ..ObjectMeta::default() },
            spec: Some(NodeSpec {
                taints: Some(vec![Taint { key: STATIC_PODS_ONLY_TAINT.into(), effect: "NoSchedule".into(), ..Taint::default() }]),
                ..NodeSpec::default()
            }),
            status: Some(NodeStatus {
                addresses: Some(self.addresses.clone()),
                allocatable: Some(self.capacity.clone()),
                capacity: Some(self.capacity.clone()),
                conditions: Some(vec![ready]),
                daemon_endpoints: self
                    .kubelet_port
                    .map(|port| NodeDaemonEndpoints { kubelet_endpoint: Some(DaemonEndpoint { port: i32::from(port) }) }),
                node_info: Some(self.node_info.clone()),
                ..NodeStatus::default()
            }),
        }
    }
}

/// The heartbeat Lease of `node`, renewed at `now`, owned by its Node so it goes with it.
pub fn lease(node: &NodeRef, now: Timestamp) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(node.name.clone()),
            namespace: Some(LEASE_NAMESPACE.into()),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".into(),
                kind: "Node".into(),
                name: node.name.clone(),
                uid: node.uid.clone(),
                ..OwnerReference::default()
            }]),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(node.name.clone()),
            lease_duration_seconds: Some(LEASE_DURATION_SECONDS),
            renew_time: Some(MicroTime(now)),
            ..LeaseSpec::default()
        }),
    }
}

/// Finds, registers and heartbeats this node's Node object.
#[derive(Clone)]
pub struct Nodes {
    client: Client,
    server: String,
    name: String,
    registration: Option<Registration>,
}

impl Nodes {
    /// `name`'s Node on `server`; registered when `registration` is given.
    pub fn new(client: Client, server: String, name: String, registration: Option<Registration>) -> Nodes {
        Nodes { client, server, name, registration }
    }

    /// What `--register-node` registers, if it is on.
    pub fn registration(&self) -> Option<&Registration> {
        self.registration.as_ref()
    }

    /// Waits for the Node object, creating it with `--register-node`. While it cannot be had,
    /// every pod in `desired` gets a Warning event saying why (also logged), retried with
    /// back-off. `None` on shutdown.
    pub async fn wait(
        &self,
        desired: &watch::Receiver<Arc<DesiredSet>>,
        events: &Recorder,
        shutdown: &CancellationToken,
    ) -> Option<NodeRef> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let mut backoff = Backoff::default();
        loop {
            let problem = match nodes.get_opt(&self.name).await {
                Ok(Some(node)) => return Some(node_ref(&node)),
                Ok(None) => match &self.registration {
                    None => format!(
                        "node {:?} is not registered on the API server {}; mirror pods wait for it (--register-node registers it)",
                        self.name, self.server
                    ),
                    Some(registration) => {
                        match nodes.create(&PostParams::default(), &registration.node(&self.name, Timestamp::now())).await {
                            Ok(node) => {
                                info!(node = %self.name, server = %self.server, "registered the node");
                                return Some(node_ref(&node));
                            }
                            Err(kube::Error::Api(s)) if s.is_already_exists() => continue,
                            Err(e) => format!("registering node {:?} on the API server {}: {e}", self.name, self.server),
                        }
                    }
                },
                Err(e) => format!("reading node {:?} from the API server {}: {e}; mirror pods wait for it", self.name, self.server),
            };
            let pods: Vec<_> = desired.borrow().pods.values().cloned().collect();
            report(events, pods.iter().map(|pod| &**pod), &problem);
            tokio::select! {
                _ = shutdown.cancelled() => return None,
                _ = tokio::time::sleep(backoff.next().unwrap_or(RENEW_INTERVAL)) => {}
            }
        }
    }

    /// Renews `node`'s Lease every [`RENEW_INTERVAL`] until `shutdown`, creating it when it is
    /// missing; failures are logged and retried sooner, with back-off.
    pub async fn heartbeat(self, node: NodeRef, shutdown: CancellationToken) {
        let leases: Api<Lease> = Api::namespaced(self.client.clone(), LEASE_NAMESPACE);
        let mut backoff = Backoff::default();
        let mut failing = false;
        // The Lease as last written: renewing it is one update, as the kubelet's is; it is read
        // afresh only after a failure (a conflict, or the Lease gone).
        let mut last: Option<Lease> = None;
        loop {
            let renewed = async {
                let fresh = lease(&node, Timestamp::now());
                let current = match last.take() {
                    Some(current) => Some(current),
                    None => leases.get_opt(&node.name).await?,
                };
                match current {
                    None => leases.create(&PostParams::default(), &fresh).await,
                    Some(mut current) => {
                        current.spec = fresh.spec;
                        leases.replace(&node.name, &PostParams::default(), &current).await
                    }
                }
            };
            let delay = match renewed.await {
                Ok(written) => {
                    last = Some(written);
                    if std::mem::take(&mut failing) {
                        info!(node = %node.name, "node lease renewed again");
                    }
                    kube::runtime::utils::Backoff::reset(&mut backoff);
                    RENEW_INTERVAL
                }
                Err(e) => {
                    if !std::mem::replace(&mut failing, true) {
                        warn!(node = %node.name, server = %self.server, "cannot renew the node's lease in {LEASE_NAMESPACE}: {e}; retrying");
                    }
                    backoff.next().unwrap_or(RENEW_INTERVAL).min(RENEW_INTERVAL)
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }
}

fn node_ref(node: &Node) -> NodeRef {
    NodeRef { name: node.metadata.name.clone().unwrap_or_default(), uid: node.metadata.uid.clone().unwrap_or_default() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registered_node_describes_the_host_and_takes_no_scheduled_pods() {
        let registration = Registration::of_this_host("10.0.0.7", "docker://28.1.1", Some(10250));
        assert_eq!(registration.addresses[0], NodeAddress { type_: "InternalIP".into(), address: "10.0.0.7".into() });
        let cpus: usize = registration.capacity["cpu"].0.parse().unwrap();
        assert!(cpus >= 1);
        assert!(registration.capacity["memory"].0.ends_with("Ki") && registration.capacity["memory"].0 != "0Ki");
        let node = registration.node("n1", Timestamp::UNIX_EPOCH);
        assert_eq!(node.metadata.labels.as_ref().unwrap()["kubernetes.io/hostname"], "n1");
        let taints = node.spec.unwrap().taints.unwrap();
        assert_eq!((taints[0].key.as_str(), taints[0].effect.as_str()), (STATIC_PODS_ONLY_TAINT, "NoSchedule"));
        let status = node.status.unwrap();
        assert_eq!(status.conditions.unwrap()[0].status, "True");
        assert_eq!(status.node_info.unwrap().container_runtime_version, "docker://28.1.1");
        assert_eq!(status.daemon_endpoints.unwrap().kubelet_endpoint.unwrap().port, 10250, "the API server finds the kubelet port here");
    }

    #[test]
    fn the_lease_is_held_by_the_node_and_owned_by_it() {
        let node = NodeRef { name: "n1".into(), uid: "u1".into() };
        let lease = lease(&node, Timestamp::UNIX_EPOCH);
        assert_eq!(lease.metadata.namespace.as_deref(), Some(LEASE_NAMESPACE));
        assert_eq!(lease.metadata.owner_references.unwrap()[0].uid, "u1");
        let spec = lease.spec.unwrap();
        assert_eq!((spec.holder_identity.as_deref(), spec.lease_duration_seconds), (Some("n1"), Some(40)));
    }
}
