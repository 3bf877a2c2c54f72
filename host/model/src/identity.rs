//! A static pod's identity: its name on this node, its UID and its hashes.
//!
//! # The hash recipe (version 1)
//!
//! All hashes are SHA-256 over a tagged byte string, printed as the first 32 lowercase hex
//! characters (128 bits), the length of the kubelet's. JSON below is *canonical*: the pod or
//! container serialised with keys sorted, with `null`s and empty lists dropped (the API server
//! treats them as absent too).
//!
//! | value | input |
//! | --- | --- |
//! | `metadata.uid` (when the manifest gives none) | `staticlet/uid/v1\n` + node name + `\n` + source (`file`, `http`, `plugin:<name>`) + `\n` + source URI (file path or URL) + `\n` + namespace + `/` + name |
//! | `kubernetes.io/config.hash` | `staticlet/config-hash/v1\n` + canonical JSON of the defaulted pod with its name, namespace, UID, node name and `config.source` set, and without the `config.hash` and `config.seen` annotations |
//! | container hash (label `io.kubernetes.container.hash`) | `staticlet/container-hash/v1\n` + canonical JSON of the defaulted container |
//! | sandbox hash (label `io.staticlet.sandbox.hash`) | `staticlet/sandbox-hash/v1\n` + canonical JSON of the pod fields the sandbox is built from: `hostNetwork`, `hostPID`, `hostIPC`, `shareProcessNamespace`, `hostname`, `subdomain`, `hostAliases`, `dnsPolicy`, `dnsConfig`, `securityContext`, `runtimeClassName`, `volumes`, and every container's `ports` |
//!
//! Unlike the kubelet's hashes (computed over in-memory Go structs, so every kubelet upgrade
//! restarts every static pod), these depend only on the manifest's meaning. Whitespace, key order
//! and defaults written out explicitly do not change them. A new recipe gets a new version tag
//! and is only ever introduced together with a migration.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod, Toleration};
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Annotation naming the source a static pod came from.
pub const CONFIG_SOURCE: &str = "kubernetes.io/config.source";
/// Annotation carrying the pod's content hash.
pub const CONFIG_HASH: &str = "kubernetes.io/config.hash";
/// Annotation carrying the time this version of the pod was first seen.
pub const CONFIG_SEEN: &str = "kubernetes.io/config.seen";

/// Where a manifest came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SourceKind {
    /// `--pod-manifest-path`.
    File,
    /// `--manifest-url`.
    Http,
    /// A manifest-source plugin, by name.
    Plugin(String),
}

impl std::fmt::Display for SourceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceKind::File => f.write_str("file"),
            SourceKind::Http => f.write_str("http"),
            SourceKind::Plugin(name) => write!(f, "plugin:{name}"),
        }
    }
}

/// The source and the place within it (file path, URL) a manifest came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Origin {
    /// Which source.
    pub kind: SourceKind,
    /// The file path or URL.
    pub uri: String,
}

/// What a pod needs to know about the node it runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeContext {
    /// The node name, lowercased.
    pub node_name: String,
}

/// A defaulted, validated pod bound to this node, with its identity worked out.
#[derive(Debug, Clone, PartialEq)]
pub struct StaticPod {
    /// The pod as it will run: `metadata.name` is `<name>-<node>`, annotations are set.
    pub pod: Pod,
    /// Where its manifest came from.
    pub origin: Origin,
    /// `metadata.uid`.
    pub uid: String,
    /// `kubernetes.io/config.hash`.
    pub config_hash: String,
    /// Hash of the fields the sandbox is built from; a change recreates the pod.
    pub sandbox_hash: String,
    /// Hash of each container (init and app) by name; a change replaces that container.
    pub container_hashes: BTreeMap<String, String>,
}

impl StaticPod {
    /// `metadata.name`, the static pod name (`<name>-<node>`).
    pub fn name(&self) -> &str {
        self.pod.metadata.name.as_deref().unwrap_or_default()
    }

    /// `metadata.namespace`.
    pub fn namespace(&self) -> &str {
        self.pod.metadata.namespace.as_deref().unwrap_or("default")
    }

    /// `namespace/name`, for messages.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.namespace(), self.name())
    }
}

/// Renames the pod to `<name>-<node>`, binds it to the node and adds the toleration the kubelet
/// gives file pods. Done before validation so the static name is what gets validated.
pub fn bind_to_node(pod: &mut Pod, node: &NodeContext) {
    if let Some(name) = pod.metadata.name.as_mut() {
        *name = format!("{name}-{}", node.node_name);
    }
    let spec = pod.spec.get_or_insert_with(Default::default);
    spec.node_name = Some(node.node_name.clone());
    let tolerate_all = Toleration { operator: Some("Exists".to_owned()), effect: Some("NoExecute".to_owned()), ..Default::default() };
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    if !tolerations.contains(&tolerate_all) {
        tolerations.push(tolerate_all);
    }
}

/// Computes the UID and hashes of a defaulted, bound pod and annotates it.
pub fn make_static(mut pod: Pod, origin: &Origin, node: &NodeContext) -> StaticPod {
    let namespace = pod.metadata.namespace.clone().unwrap_or_else(|| "default".to_owned());
    let name = pod.metadata.name.clone().unwrap_or_default();
    let uid = pod
        .metadata
        .uid
        .get_or_insert_with(|| hash("uid", format!("{}\n{}\n{}\n{namespace}/{name}", node.node_name, origin.kind, origin.uri).as_bytes()))
        .clone();
    let annotations = pod.metadata.annotations.get_or_insert_with(BTreeMap::new);
    annotations.insert(CONFIG_SOURCE.to_owned(), origin.kind.to_string());
    annotations.remove(CONFIG_HASH);
    annotations.remove(CONFIG_SEEN);

    let config_hash = hash("config-hash", &canonical_json(&pod));
    pod.metadata.annotations.get_or_insert_with(BTreeMap::new).insert(CONFIG_HASH.to_owned(), config_hash.clone());

    let spec = pod.spec.as_ref().expect("defaults always set a spec");
    let container_hashes =
        spec.init_containers.iter().flatten().chain(&spec.containers).map(|c| (c.name.clone(), container_hash(c))).collect();
    let ports: Vec<_> = spec.init_containers.iter().flatten().chain(&spec.containers).map(|c| &c.ports).collect();
    let sandbox = json!({
        "hostNetwork": spec.host_network,
        "hostPID": spec.host_pid,
        "hostIPC": spec.host_ipc,
        "shareProcessNamespace": spec.share_process_namespace,
        "hostname": spec.hostname,
        "subdomain": spec.subdomain,
        "hostAliases": spec.host_aliases,
        "dnsPolicy": spec.dns_policy,
        "dnsConfig": spec.dns_config,
        "securityContext": spec.security_context,
        "runtimeClassName": spec.runtime_class_name,
        "volumes": spec.volumes,
        "ports": ports,
    });
    let sandbox_hash = hash("sandbox-hash", &canonical_json(&sandbox));
    StaticPod { pod, origin: origin.clone(), uid, config_hash, sandbox_hash, container_hashes }
}

/// The hash of one container's whole spec.
pub fn container_hash(container: &Container) -> String {
    hash("container-hash", &canonical_json(container))
}

fn hash(purpose: &str, input: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(format!("staticlet/{purpose}/v1\n").as_bytes());
    hasher.update(input);
    hex::encode(&hasher.finalize()[..16])
}

/// Serialises `value` with sorted keys (serde_json's map is ordered), nulls and empty lists
/// dropped.
fn canonical_json(value: &impl Serialize) -> Vec<u8> {
    let mut value = serde_json::to_value(value).expect("Kubernetes types always serialise");
    prune(&mut value);
    serde_json::to_vec(&value).expect("a JSON value always serialises")
}

fn prune(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !(v.is_null() || matches!(v, Value::Array(a) if a.is_empty())));
            map.values_mut().for_each(prune);
        }
        Value::Array(items) => items.iter_mut().for_each(prune),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load;

    fn origin() -> Origin {
        Origin { kind: SourceKind::File, uri: "/etc/kubernetes/manifests/web.yaml".to_owned() }
    }

    fn node() -> NodeContext {
        NodeContext { node_name: "node-1".to_owned() }
    }

    const WEB: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  labels:\n    app: web\nspec:\n  containers:\n  - name: web\n    image: nginx:1.27\n    ports:\n    - containerPort: 80\n";

    /// The recipe is a promise: these values may never change, or every static pod on every
    /// upgraded node restarts.
    #[test]
    fn golden_uid_and_hashes() {
        let pod = load(WEB.as_bytes(), &origin(), &node()).unwrap().pod;
        assert_eq!(pod.name(), "web-node-1");
        assert_eq!(pod.uid, "489141a81c5218d3d0fa4a84264c1051");
        assert_eq!(pod.config_hash, "efcbbbbcc312e8637daf219f7707dcd3");
        assert_eq!(pod.container_hashes["web"], "8c26dcad03cbf4a4644f40dc0398c4b4");
        assert_eq!(pod.sandbox_hash, "d195533e3f12286a4a4d6acff2bb5ff2");
    }

    #[test]
    fn hash_ignores_formatting_and_explicit_defaults() {
        let a = load(WEB.as_bytes(), &origin(), &node()).unwrap().pod;
        let explicit = "{\"kind\":\"Pod\",\"apiVersion\":\"v1\",\"metadata\":{\"labels\":{\"app\":\"web\"},\"name\":\"web\",\"namespace\":\"default\"},\n\"spec\":{\"restartPolicy\":\"Always\",\"terminationGracePeriodSeconds\":30,\"containers\":[{\"image\":\"nginx:1.27\",\"name\":\"web\",\"imagePullPolicy\":\"IfNotPresent\",\"env\":[],\"ports\":[{\"containerPort\":80,\"protocol\":\"TCP\"}]}]}}";
        let b = load(explicit.as_bytes(), &origin(), &node()).unwrap().pod;
        assert_eq!(a.config_hash, b.config_hash);
        assert_eq!(a.uid, b.uid);
        assert_eq!(a.container_hashes, b.container_hashes);
    }

    #[test]
    fn a_container_edit_changes_only_that_container() {
        let a = load(WEB.as_bytes(), &origin(), &node()).unwrap().pod;
        let edited = WEB.replace("    ports:", "    env:\n    - name: A\n      value: b\n    ports:");
        let b = load(edited.as_bytes(), &origin(), &node()).unwrap().pod;
        assert_ne!(a.config_hash, b.config_hash);
        assert_ne!(a.container_hashes["web"], b.container_hashes["web"]);
        assert_eq!(a.sandbox_hash, b.sandbox_hash);
        assert_eq!(a.uid, b.uid);
        let ported = WEB.replace("containerPort: 80", "containerPort: 81");
        let c = load(ported.as_bytes(), &origin(), &node()).unwrap().pod;
        assert_ne!(a.sandbox_hash, c.sandbox_hash);
    }

    #[test]
    fn uid_depends_on_node_and_source() {
        let a = load(WEB.as_bytes(), &origin(), &node()).unwrap().pod;
        let other_node = load(WEB.as_bytes(), &origin(), &NodeContext { node_name: "node-2".into() }).unwrap().pod;
        let other_file = load(WEB.as_bytes(), &Origin { kind: SourceKind::File, uri: "/x.yaml".into() }, &node()).unwrap().pod;
        assert_ne!(a.uid, other_node.uid);
        assert_ne!(a.uid, other_file.uid);
    }

    #[test]
    fn annotations_and_toleration() {
        let pod = load(WEB.as_bytes(), &origin(), &node()).unwrap().pod.pod;
        let annotations = pod.metadata.annotations.unwrap();
        assert_eq!(annotations[CONFIG_SOURCE], "file");
        assert_eq!(annotations[CONFIG_HASH].len(), 32);
        let spec = pod.spec.unwrap();
        assert_eq!(spec.node_name.as_deref(), Some("node-1"));
        assert_eq!(spec.tolerations.unwrap()[0].operator.as_deref(), Some("Exists"));
    }
}
