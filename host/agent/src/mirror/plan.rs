//! What to do on the API server: the mirror pod each static pod should have, and the calls that
//! bring the API server's mirror pods for this node in line with the static pods.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use staticlet_model::StaticPod;

/// The annotation that marks a mirror pod, holding its static pod's config hash.
pub const CONFIG_MIRROR: &str = "kubernetes.io/config.mirror";

/// This node's Node object, the owner of every mirror pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRef {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.uid`, which the ownerReference must carry.
    pub uid: String,
}

/// The mirror pod of `pod`: the same pod, without the fields the API server assigns, with
/// `kubernetes.io/config.mirror` set to its config hash and exactly one ownerReference, this
/// node's Node as controller (what NodeRestriction admits from a node's credentials).
pub fn mirror_pod(pod: &StaticPod, node: &NodeRef) -> Pod {
    let mut mirror = pod.pod.clone();
    let meta = &mut mirror.metadata;
    meta.uid = None;
    meta.resource_version = None;
    meta.generation = None;
    meta.creation_timestamp = None;
    meta.deletion_timestamp = None;
    meta.managed_fields = None;
    meta.annotations.get_or_insert_with(BTreeMap::new).insert(CONFIG_MIRROR.to_owned(), pod.config_hash.clone());
    meta.owner_references = Some(vec![OwnerReference {
        api_version: "v1".to_owned(),
        kind: "Node".to_owned(),
        name: node.name.clone(),
        uid: node.uid.clone(),
        controller: Some(true),
        block_owner_deletion: None,
    }]);
    if let Some(spec) = mirror.spec.as_mut() {
        spec.node_name = Some(node.name.clone());
    }
    mirror.status = None;
    mirror
}

/// A pod the API server holds on this node, as far as planning needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.uid`: deletes are conditioned on it, so a mirror recreated meanwhile survives.
    pub uid: String,
    /// Its `kubernetes.io/config.mirror`; `None` for a pod that is not a mirror pod.
    pub config_mirror: Option<String>,
    /// Whether a deletion has begun (`metadata.deletionTimestamp`), as after `kubectl delete`.
    pub deleting: bool,
    /// Its status.
    pub status: Option<PodStatus>,
}

impl Observed {
    /// Its namespace and name, which key the API server's pods.
    pub fn key(&self) -> (String, String) {
        (self.namespace.clone(), self.name.clone())
    }

    /// What planning needs of a pod the API server returned.
    pub fn of(pod: &Pod) -> Observed {
        let meta = &pod.metadata;
        Observed {
            namespace: meta.namespace.clone().unwrap_or_else(|| "default".to_owned()),
            name: meta.name.clone().unwrap_or_default(),
            uid: meta.uid.clone().unwrap_or_default(),
            config_mirror: meta.annotations.as_ref().and_then(|a| a.get(CONFIG_MIRROR)).cloned(),
            deleting: meta.deletion_timestamp.is_some(),
            status: pod.status.clone(),
        }
    }
}

/// A static pod the agent runs, and the status it reports.
#[derive(Debug, Clone)]
pub struct Wanted<'a> {
    /// The pod.
    pub pod: &'a StaticPod,
    /// Its status as the agent's API serves it; `None` before the first sync.
    pub status: Option<PodStatus>,
}

/// One call to the API server.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Create this mirror pod.
    Create(Box<Pod>),
    /// Delete the pod at once (grace period 0, conditioned on its uid).
    Delete {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// Its uid.
        uid: String,
    },
    /// Replace the mirror pod's status (`pods/status`).
    PatchStatus {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// The static pod's status.
        status: Box<PodStatus>,
    },
}

impl Action {
    /// The namespace and name of the pod the call is about.
    pub fn target(&self) -> (&str, &str) {
        match self {
            Action::Create(pod) => {
                (pod.metadata.namespace.as_deref().unwrap_or("default"), pod.metadata.name.as_deref().unwrap_or_default())
            }
            Action::Delete { namespace, name, .. } | Action::PatchStatus { namespace, name, .. } => (namespace, name),
        }
    }
}

/// Why a static pod has no mirror pod, to report on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    /// The static pod's UID.
    pub uid: String,
    /// The static pod's namespace/name.
    pub pod: String,
    /// Why.
    pub reason: String,
}

/// The calls, in order, that make the API server's pods on `node` (`observed`) mirror `wanted`,
/// and the static pods that cannot be mirrored.
///
/// - a static pod without a mirror gets one;
/// - a mirror whose `config.mirror` is not its static pod's config hash (the manifest changed,
///   or someone edited it), or that is being deleted, is deleted at once and created again;
/// - a mirror whose status differs from its static pod's gets the static pod's status;
/// - a mirror pod with no static pod is deleted (left over from a removed manifest, or from
///   before the agent restarted);
/// - a pod that is not a mirror pod is never touched; a static pod whose name it takes is
///   reported as blocked.
pub fn plan(node: &NodeRef, wanted: &[Wanted<'_>], observed: &[Observed]) -> (Vec<Action>, Vec<Blocked>) {
    let mut by_key: BTreeMap<(&str, &str), &Observed> = observed.iter().map(|o| ((o.namespace.as_str(), o.name.as_str()), o)).collect();
    let mut actions = Vec::new();
    let mut blocked = Vec::new();
    let delete = |o: &Observed| Action::Delete { namespace: o.namespace.clone(), name: o.name.clone(), uid: o.uid.clone() };
    for want in wanted {
        let key = (want.pod.namespace(), want.pod.name());
        let create = || Action::Create(Box::new(mirror_pod(want.pod, node)));
        match by_key.remove(&key) {
            None => actions.push(create()),
            Some(o) if o.config_mirror.is_none() => blocked.push(Blocked {
                uid: want.pod.uid.clone(),
                pod: format!("{}/{}", key.0, key.1),
                reason: "a pod of that name that is not a mirror pod exists on the API server; it is left alone".to_owned(),
            }),
            Some(o) if o.deleting || o.config_mirror.as_deref() != Some(want.pod.config_hash.as_str()) => {
                actions.push(delete(o));
                actions.push(create());
            }
            Some(o) => {
                if let Some(status) = &want.status
                    && o.status.as_ref() != Some(status)
                {
                    actions.push(Action::PatchStatus {
                        namespace: o.namespace.clone(),
                        name: o.name.clone(),
                        status: Box::new(status.clone()),
                    });
                }
            }
        }
    }
    actions.extend(by_key.into_values().filter(|o| o.config_mirror.is_some()).map(delete));
    (actions, blocked)
}

#[cfg(test)]
mod tests {
    use staticlet_model::{NodeContext, Origin, SourceKind};

    use super::*;

    fn node() -> NodeRef {
        NodeRef { name: "n1".into(), uid: "0b7c-node-uid".into() }
    }

    fn static_pod(name: &str, image: &str) -> StaticPod {
        let text = format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec: {{containers: [{{name: c, image: {image}}}]}}\n");
        let origin = Origin { kind: SourceKind::File, uri: format!("/m/{name}.yaml") };
        staticlet_model::load(text.as_bytes(), &origin, &NodeContext { node_name: "n1".into() }).unwrap().pod
    }

    /// The API server's view of `pod`'s mirror, as created from the plan.
    fn observed(pod: &StaticPod) -> Observed {
        let mut mirror = mirror_pod(pod, &node());
        mirror.metadata.uid = Some(format!("api-{}", pod.name()));
        Observed::of(&mirror)
    }

    fn running() -> PodStatus {
        PodStatus { phase: Some("Running".into()), ..Default::default() }
    }

    #[test]
    fn a_mirror_pod_has_the_annotation_and_exactly_the_node_as_owner() {
        let pod = static_pod("web", "nginx:1.27");
        let mirror = mirror_pod(&pod, &node());
        let meta = &mirror.metadata;
        assert_eq!(meta.name.as_deref(), Some("web-n1"));
        assert_eq!(meta.uid, None, "the API server assigns a mirror pod's uid");
        assert_eq!(meta.annotations.as_ref().unwrap()[CONFIG_MIRROR], pod.config_hash);
        let owners = meta.owner_references.as_ref().unwrap();
        assert_eq!(owners.len(), 1);
        assert_eq!(
            (owners[0].kind.as_str(), owners[0].name.as_str(), owners[0].uid.as_str(), owners[0].controller),
            ("Node", "n1", "0b7c-node-uid", Some(true))
        );
        assert_eq!(mirror.spec.as_ref().unwrap().node_name.as_deref(), Some("n1"));
        assert_eq!(mirror.status, None);
    }

    #[test]
    fn missing_mirrors_are_created_and_statuses_follow() {
        let (web, db) = (static_pod("web", "nginx:1.27"), static_pod("db", "postgres:17"));
        let wanted = [Wanted { pod: &web, status: Some(running()) }, Wanted { pod: &db, status: None }];
        let (actions, blocked) = plan(&node(), &wanted, &[observed(&web)]);
        assert!(blocked.is_empty());
        assert_eq!(
            actions,
            [
                Action::PatchStatus { namespace: "default".into(), name: "web-n1".into(), status: Box::new(running()) },
                Action::Create(Box::new(mirror_pod(&db, &node()))),
            ]
        );

        let mut current = observed(&web);
        current.status = Some(running());
        assert_eq!(plan(&node(), &wanted[..1], &[current]), (vec![], vec![]), "nothing to do when all is in line");
    }

    #[test]
    fn a_stale_or_deleted_mirror_is_replaced_and_an_orphan_removed() {
        let web = static_pod("web", "nginx:1.27");
        let edited = static_pod("web", "nginx:1.28");
        let delete = Action::Delete { namespace: "default".into(), name: "web-n1".into(), uid: "api-web-n1".into() };

        // The manifest changed: the mirror of the old version goes, one of the new comes.
        let (actions, _) = plan(&node(), &[Wanted { pod: &edited, status: None }], &[observed(&web)]);
        assert_eq!(actions, [delete.clone(), Action::Create(Box::new(mirror_pod(&edited, &node())))]);

        // `kubectl delete` began a graceful deletion: finished at once, and the mirror made again.
        let mut deleting = observed(&web);
        deleting.deleting = true;
        let (actions, _) = plan(&node(), &[Wanted { pod: &web, status: None }], &[deleting]);
        assert_eq!(actions, [delete.clone(), Action::Create(Box::new(mirror_pod(&web, &node())))]);

        // No static pod (the manifest is gone, or went while the agent was down): deleted.
        let (actions, _) = plan(&node(), &[], &[observed(&web)]);
        assert_eq!(actions, [delete]);
    }

    #[test]
    fn a_pod_that_is_not_a_mirror_is_never_touched() {
        let web = static_pod("web", "nginx:1.27");
        let mut other = observed(&web);
        other.config_mirror = None;
        let (actions, blocked) = plan(&node(), &[Wanted { pod: &web, status: None }], std::slice::from_ref(&other));
        assert!(actions.is_empty());
        assert_eq!(blocked[0].pod, "default/web-n1");
        assert_eq!(plan(&node(), &[], &[other]), (vec![], vec![]));
    }
}
