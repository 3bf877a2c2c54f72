//! Docker's objects ↔ the runtime trait's types.

use std::collections::{BTreeMap, HashMap};
use std::time::SystemTime;

use bollard::models::{ContainerInspectResponse, ContainerSummary};
use staticlet_runtime::{
    Container, ContainerMetadata, ContainerState, Mount, MountPropagation, PodSandbox, PodSandboxMetadata, SandboxState,
};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::{DOCKER_TYPE_LABEL, SANDBOX_ID_LABEL};

const ANNOTATION_PREFIX: &str = "annotation.";

/// Annotations as Docker labels, dockershim's way.
pub fn annotation_labels(annotations: &BTreeMap<String, String>) -> impl Iterator<Item = (String, String)> + '_ {
    annotations.iter().map(|(k, v)| (format!("{ANNOTATION_PREFIX}{k}"), v.clone()))
}

/// Docker labels → (labels, annotations), dropping the runtime's own bookkeeping labels.
pub fn split_annotations(all: &HashMap<String, String>) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let mut labels = BTreeMap::new();
    let mut annotations = BTreeMap::new();
    for (key, value) in all {
        if let Some(annotation) = key.strip_prefix(ANNOTATION_PREFIX) {
            annotations.insert(annotation.to_owned(), value.clone());
        } else if key != DOCKER_TYPE_LABEL && key != SANDBOX_ID_LABEL {
            labels.insert(key.clone(), value.clone());
        }
    }
    (labels, annotations)
}

/// Parses `k8s_POD_<pod>_<ns>_<uid>_<attempt>` or `k8s_<container>_<pod>_<ns>_<uid>_<attempt>`
/// into (container name, pod metadata). Pod, namespace and container names are DNS labels and
/// cannot hold `_`; the UID is taken as whatever lies between namespace and attempt.
fn parse_name(name: &str) -> Option<(String, PodSandboxMetadata)> {
    let rest = name.trim_start_matches('/').strip_prefix("k8s_")?;
    let mut parts = rest.splitn(4, '_');
    let container = parts.next()?.to_owned();
    let pod = parts.next()?.to_owned();
    let namespace = parts.next()?.to_owned();
    let (uid, attempt) = parts.next()?.rsplit_once('_')?;
    let attempt = attempt.parse().ok()?;
    Some((container, PodSandboxMetadata { name: pod, namespace, uid: uid.to_owned(), attempt }))
}

fn container_state(state: Option<&str>) -> ContainerState {
    match state {
        Some("running" | "paused" | "restarting") => ContainerState::Running,
        Some("created") => ContainerState::Created,
        Some("exited" | "dead") => ContainerState::Exited,
        _ => ContainerState::Unknown,
    }
}

fn from_unix(seconds: Option<i64>) -> SystemTime {
    SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(seconds.unwrap_or(0).max(0) as u64)
}

/// Docker's RFC 3339 times; its zero time (`0001-01-01T00:00:00Z`) means "never".
pub fn parse_time(text: &str) -> Option<SystemTime> {
    let parsed = OffsetDateTime::parse(text, &Rfc3339).ok()?;
    (parsed.year() > 1970).then(|| parsed.into())
}

pub fn sandbox_from_summary(summary: ContainerSummary) -> Option<PodSandbox> {
    let (_, metadata) = parse_name(summary.names.as_ref()?.first()?)?;
    let (labels, annotations) = split_annotations(&summary.labels.unwrap_or_default());
    let state = match container_state(summary.state.as_ref().map(|s| s.as_ref())) {
        ContainerState::Running => SandboxState::Ready,
        _ => SandboxState::NotReady,
    };
    Some(PodSandbox { id: summary.id?, metadata, state, created_at: from_unix(summary.created), labels, annotations })
}

pub fn container_from_summary(summary: ContainerSummary) -> Option<Container> {
    let all_labels = summary.labels.unwrap_or_default();
    let (name, pod) = parse_name(summary.names.as_ref()?.first()?)?;
    let pod_sandbox_id = all_labels.get(SANDBOX_ID_LABEL).cloned().unwrap_or_default();
    let (labels, annotations) = split_annotations(&all_labels);
    Some(Container {
        id: summary.id?,
        pod_sandbox_id,
        metadata: ContainerMetadata { name, attempt: pod.attempt },
        image: summary.image.unwrap_or_default(),
        state: container_state(summary.state.as_ref().map(|s| s.as_ref())),
        created_at: from_unix(summary.created),
        labels,
        annotations,
    })
}

fn inspect_state(inspect: &ContainerInspectResponse) -> ContainerState {
    container_state(inspect.state.as_ref().and_then(|s| s.status.as_ref()).map(|s| s.as_ref()))
}

fn inspect_created(inspect: &ContainerInspectResponse) -> SystemTime {
    inspect.created.as_deref().and_then(parse_time).unwrap_or(SystemTime::UNIX_EPOCH)
}

pub fn sandbox_from_inspect(id: &str, inspect: &ContainerInspectResponse) -> Option<PodSandbox> {
    let (_, metadata) = parse_name(inspect.name.as_deref()?)?;
    let (labels, annotations) = split_annotations(&inspect.config.as_ref()?.labels.clone().unwrap_or_default());
    let state = if inspect_state(inspect) == ContainerState::Running { SandboxState::Ready } else { SandboxState::NotReady };
    Some(PodSandbox { id: id.to_owned(), metadata, state, created_at: inspect_created(inspect), labels, annotations })
}

pub fn container_from_inspect(id: &str, inspect: &ContainerInspectResponse) -> Option<Container> {
    let (name, pod) = parse_name(inspect.name.as_deref()?)?;
    let config = inspect.config.as_ref()?;
    let all_labels = config.labels.clone().unwrap_or_default();
    let pod_sandbox_id = all_labels.get(SANDBOX_ID_LABEL).cloned().unwrap_or_default();
    let (labels, annotations) = split_annotations(&all_labels);
    Some(Container {
        id: inspect.id.clone().unwrap_or_else(|| id.to_owned()),
        pod_sandbox_id,
        metadata: ContainerMetadata { name, attempt: pod.attempt },
        image: config.image.clone().unwrap_or_default(),
        state: inspect_state(inspect),
        created_at: inspect_created(inspect),
        labels,
        annotations,
    })
}

/// A mount as a Docker bind (`host:container:opts`). A bind, unlike a `mounts` entry, creates a
/// missing host directory, which is what a `hostPath` volume without a `type` did under Docker.
pub fn bind(mount: &Mount) -> String {
    let mut options = vec![if mount.readonly { "ro" } else { "rw" }];
    match mount.propagation {
        MountPropagation::Private => {}
        MountPropagation::HostToContainer => options.push("rslave"),
        MountPropagation::Bidirectional => options.push("rshared"),
    }
    format!("{}:{}:{}", mount.host_path.display(), mount.container_path, options.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back() {
        let (container, pod) = parse_name("/k8s_web_web-node-1_default_0123abcd_3").unwrap();
        assert_eq!(container, "web");
        assert_eq!(pod, PodSandboxMetadata { name: "web-node-1".into(), namespace: "default".into(), uid: "0123abcd".into(), attempt: 3 });
        let (container, pod) = parse_name("k8s_POD_web-node-1_kube-system_a_b_0").unwrap();
        assert_eq!(container, "POD");
        assert_eq!(pod.uid, "a_b");
        assert!(parse_name("/nginx").is_none());
    }

    #[test]
    fn zero_time_is_never() {
        assert_eq!(parse_time("0001-01-01T00:00:00Z"), None);
        assert!(parse_time("2026-11-23T05:12:30.123456789Z").is_some());
    }
}
