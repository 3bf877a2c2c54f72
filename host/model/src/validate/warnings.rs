//! The API server's warnings for a valid but suspicious pod (`GetWarningsForPod` in
//! `pkg/api/pod/warnings.go`). `kubectl apply` prints them as `Warning: <path>: <message>`.

use std::collections::{HashMap, HashSet};

use k8s_openapi::api::core::v1::{NodeSelectorTerm, Pod, PodAffinityTerm, WeightedPodAffinityTerm};

use super::security::containers_with_paths;
use crate::field::FieldError;
use crate::quantity::parse_quantity;

/// Annotations that no longer do anything, with what to use instead.
const DEPRECATED_ANNOTATIONS: [(&str, &str); 3] = [
    ("scheduler.alpha.kubernetes.io/critical-pod", "non-functional in v1.16+; use the \"priorityClassName\" field instead"),
    ("security.alpha.kubernetes.io/sysctls", "non-functional in v1.11+; use the \"sysctls\" field instead"),
    ("security.alpha.kubernetes.io/unsafe-sysctls", "non-functional in v1.11+; use the \"sysctls\" field instead"),
];

/// Node labels that have a GA replacement (`nodeapi.GetNodeLabelDeprecatedMessage`).
fn deprecated_node_label(key: &str) -> Option<&'static str> {
    Some(match key {
        "beta.kubernetes.io/arch" => "deprecated since v1.14; use \"kubernetes.io/arch\" instead",
        "beta.kubernetes.io/os" => "deprecated since v1.14; use \"kubernetes.io/os\" instead",
        "failure-domain.beta.kubernetes.io/region" => "deprecated since v1.17; use \"topology.kubernetes.io/region\" instead",
        "failure-domain.beta.kubernetes.io/zone" => "deprecated since v1.17; use \"topology.kubernetes.io/zone\" instead",
        "beta.kubernetes.io/instance-type" => "deprecated since v1.17; use \"node.kubernetes.io/instance-type\" instead",
        _ => return None,
    })
}

/// Volume sources that are deprecated or gone, with upstream's message.
const DEPRECATED_VOLUMES: [(&str, &str); 9] = [
    ("photonPersistentDisk", "deprecated in v1.11, non-functional in v1.16+"),
    ("gitRepo", "deprecated in v1.11"),
    ("scaleIO", "deprecated in v1.16, non-functional in v1.22+"),
    ("flocker", "deprecated in v1.22, non-functional in v1.25+"),
    ("storageos", "deprecated in v1.22, non-functional in v1.25+"),
    ("quobyte", "deprecated in v1.22, non-functional in v1.25+"),
    ("glusterfs", "deprecated in v1.25, non-functional in v1.26+"),
    ("cephfs", "deprecated in v1.28, non-functional in v1.31+"),
    ("rbd", "deprecated in v1.28, non-functional in v1.31+"),
];

/// The API server's warnings for `pod`, each with its field path.
///
/// Give it the pod as decoded, before defaults: the negative `terminationGracePeriodSeconds`
/// warning is about the value written in the manifest, which defaulting turns into 1. The
/// other warnings read the same on a defaulted pod.
pub fn warnings(pod: &Pod) -> Vec<FieldError> {
    let mut out = Vec::new();
    let Some(spec) = &pod.spec else { return out };
    let annotations = pod.metadata.annotations.as_ref();
    let has_annotation = |key: &str| annotations.is_some_and(|a| a.contains_key(key));

    if let Some(warning) = priority_mismatch(spec.priority, spec.priority_class_name.as_deref()) {
        out.push(warning);
    }
    for key in spec.node_selector.iter().flat_map(|s| s.keys()) {
        if let Some(message) = deprecated_node_label(key) {
            out.push(FieldError::new(format!("spec.nodeSelector[{key}]"), message));
        }
    }
    if let Some(node) = spec.affinity.as_ref().and_then(|a| a.node_affinity.as_ref()) {
        let base = "spec.affinity.nodeAffinity";
        if let Some(required) = &node.required_during_scheduling_ignored_during_execution {
            for (i, term) in required.node_selector_terms.iter().enumerate() {
                node_term(term, &format!("{base}.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[{i}]"), &mut out);
            }
        }
        for (i, term) in node.preferred_during_scheduling_ignored_during_execution.iter().flatten().enumerate() {
            node_term(&term.preference, &format!("{base}.preferredDuringSchedulingIgnoredDuringExecution[{i}].preference"), &mut out);
        }
    }
    for (i, constraint) in spec.topology_spread_constraints.iter().flatten().enumerate() {
        let path = format!("spec.topologySpreadConstraints[{i}]");
        if let Some(message) = deprecated_node_label(&constraint.topology_key) {
            out.push(FieldError::new(format!("{path}.topologyKey"), format!("{} is {message}", constraint.topology_key)));
        }
        if constraint.label_selector.is_none() {
            out.push(FieldError::new(format!("{path}.labelSelector"), "a null labelSelector results in matching no pod"));
        }
    }
    for (key, message) in DEPRECATED_ANNOTATIONS {
        if has_annotation(key) {
            out.push(FieldError::new(format!("metadata.annotations[{key}]"), message));
        }
    }
    for (i, volume) in spec.volumes.iter().flatten().enumerate() {
        let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(volume) else { continue };
        for (field, message) in DEPRECATED_VOLUMES {
            if fields.get(field).is_some_and(|v| !v.is_null()) {
                // Upstream spells two of these paths differently from the JSON field.
                let shown = match field {
                    "storageos" => "storageOS",
                    other => other,
                };
                out.push(FieldError::new(format!("spec.volumes[{i}].{shown}"), message));
            }
        }
    }
    let mut ips = HashSet::new();
    for (i, alias) in spec.host_aliases.iter().flatten().enumerate() {
        if !ips.insert(alias.ip.as_str()) {
            out.push(FieldError::new(format!("spec.hostAliases[{i}].ip"), format!("duplicate ip {:?}", alias.ip)));
        }
    }
    let mut secrets = HashSet::new();
    for (i, secret) in spec.image_pull_secrets.iter().flatten().enumerate() {
        if !secrets.insert(secret.name.as_str()) {
            out.push(FieldError::new(format!("spec.imagePullSecrets[{i}].name"), format!("duplicate name {:?}", secret.name)));
        }
    }
    for (i, secret) in spec.image_pull_secrets.iter().flatten().enumerate() {
        if secret.name.is_empty() {
            out.push(FieldError::new(format!("spec.imagePullSecrets[{i}].name"), "invalid empty name \"\""));
        }
    }
    for (name, quantity) in spec.overhead.iter().flatten() {
        fractional_bytes(name, &quantity.0, &format!("spec.overhead[{name}]"), &mut out);
    }
    let pod_seccomp = spec.security_context.as_ref().and_then(|s| s.seccomp_profile.as_ref()).is_some();
    if !pod_seccomp && has_annotation("seccomp.security.alpha.kubernetes.io/pod") {
        out.push(FieldError::new(
            "metadata.annotations[seccomp.security.alpha.kubernetes.io/pod]",
            "non-functional in v1.27+; use the \"seccompProfile\" field instead",
        ));
    }
    for (path, c) in containers_with_paths(spec) {
        let key = format!("container.seccomp.security.alpha.kubernetes.io/{}", c.name);
        if c.security_context.as_ref().and_then(|s| s.seccomp_profile.as_ref()).is_none() && has_annotation(&key) {
            out.push(FieldError::new(
                format!("metadata.annotations[{key}]"),
                "non-functional in v1.27+; use the \"seccompProfile\" field instead",
            ));
        }
        if let Some(resources) = &c.resources {
            for (field, list) in [("limits", &resources.limits), ("requests", &resources.requests)] {
                for (name, quantity) in list.iter().flatten() {
                    fractional_bytes(name, &quantity.0, &format!("{path}.resources.{field}[{name}]"), &mut out);
                }
            }
        }
        duplicate_env(c.env.as_deref().unwrap_or_default(), &path, &mut out);
    }
    port_warnings(pod, &mut out);
    if spec.termination_grace_period_seconds.is_some_and(|s| s < 0) {
        out.push(FieldError::new(
            "spec.terminationGracePeriodSeconds",
            "must be >= 0; negative values are invalid and will be treated as 1",
        ));
    }
    if let Some(affinity) = &spec.affinity {
        for (name, terms) in super::pod::pod_affinities(affinity) {
            let Some((required, preferred)) = terms else { continue };
            null_selectors(
                required.as_deref().unwrap_or_default(),
                preferred.as_deref().unwrap_or_default(),
                &format!("spec.affinity.{name}"),
                &mut out,
            );
        }
    }
    out
}

fn node_term(term: &NodeSelectorTerm, path: &str, out: &mut Vec<FieldError>) {
    for (i, expression) in term.match_expressions.iter().flatten().enumerate() {
        if let Some(message) = deprecated_node_label(&expression.key) {
            out.push(FieldError::new(format!("{path}.matchExpressions[{i}].key"), format!("{} is {message}", expression.key)));
        }
    }
}

fn null_selectors(required: &[PodAffinityTerm], preferred: &[WeightedPodAffinityTerm], path: &str, out: &mut Vec<FieldError>) {
    const WHY: &str = "a null labelSelector results in matching no pod";
    for (i, term) in required.iter().enumerate() {
        if term.label_selector.is_none() {
            out.push(FieldError::new(format!("{path}.requiredDuringSchedulingIgnoredDuringExecution[{i}].labelSelector"), WHY));
        }
    }
    for (i, term) in preferred.iter().enumerate() {
        if term.pod_affinity_term.label_selector.is_none() {
            out.push(FieldError::new(
                format!("{path}.preferredDuringSchedulingIgnoredDuringExecution[{i}].podAffinityTerm.labelSelector"),
                WHY,
            ));
        }
    }
}

/// Memory and ephemeral storage are counted in whole bytes.
fn fractional_bytes(name: &str, text: &str, path: &str, out: &mut Vec<FieldError>) {
    if !matches!(name, "memory" | "ephemeral-storage") {
        return;
    }
    if let Ok(value) = parse_quantity(text)
        && value.as_millis_ceil() % 1000 != 0
    {
        out.push(FieldError::new(path, format!("fractional byte value {text:?} is invalid, must be an integer")));
    }
}

/// A later env entry with the same name replaces the earlier one, unless it builds on it with
/// `$(NAME)`; `kubectl apply` may drop either.
fn duplicate_env(env: &[k8s_openapi::api::core::v1::EnvVar], path: &str, out: &mut Vec<FieldError>) {
    let mut seen = HashSet::new();
    for (i, var) in env.iter().enumerate() {
        if seen.insert(var.name.as_str()) {
            continue;
        }
        let reference = format!("$({})", var.name);
        let value = var.value.as_deref().unwrap_or_default();
        if var.value_from.is_some() || value == reference || !value.contains(&reference) {
            out.push(FieldError::new(
                format!("{path}.env[{i}]"),
                format!("hides previous definition of {:?}, which may be dropped when using apply", var.name),
            ));
        }
    }
}

/// Ports declared twice, or overlapping in a way the runtime resolves arbitrarily.
fn port_warnings(pod: &Pod, out: &mut Vec<FieldError>) {
    let Some(spec) = &pod.spec else { return };
    struct Seen {
        path: String,
        host_ip: String,
        host_port: i32,
    }
    let mut all: HashMap<String, Vec<Seen>> = HashMap::new();
    for (path, c) in containers_with_paths(spec) {
        for (i, port) in c.ports.iter().flatten().enumerate() {
            let port_path = format!("{path}.ports[{i}]");
            let host_ip = port.host_ip.clone().unwrap_or_default();
            let host_port = port.host_port.unwrap_or(0);
            let protocol = port.protocol.as_deref().unwrap_or("TCP");
            if !host_ip.is_empty() && host_port == 0 {
                out.push(FieldError::new(
                    &port_path,
                    format!(
                        "hostIP set without hostPort: {{Name:{} HostPort:{host_port} ContainerPort:{} Protocol:{protocol} HostIP:{host_ip}}}",
                        port.name.as_deref().unwrap_or_default(),
                        port.container_port
                    ),
                ));
            }
            let others = all.entry(format!("{}/{protocol}", port.container_port)).or_default();
            for other in others.iter() {
                let message = if host_ip == other.host_ip && host_port == other.host_port {
                    "duplicate port definition with"
                } else if host_port == 0 || other.host_port == 0 {
                    "overlapping port definition with"
                } else if host_port == other.host_port && (host_ip.is_empty() != other.host_ip.is_empty()) {
                    "dangerously ambiguous port definition with"
                } else {
                    continue;
                };
                out.push(FieldError::new(&port_path, format!("{message} {}", other.path)));
            }
            others.push(Seen { path: port_path, host_ip, host_port });
        }
    }
}

/// The built-in priority classes, by name, with their values.
const SYSTEM_PRIORITY_CLASSES: [(&str, i32); 2] = [("system-node-critical", 2_000_001_000), ("system-cluster-critical", 2_000_000_000)];

/// The API server's Priority admission computes `spec.priority` from the class and refuses a
/// pod that says otherwise, so a static pod whose two fields disagree runs here and under the
/// kubelet but its mirror pod is refused: a staticlet warning (no such warning in
/// `warnings.go`, whose pods have passed that admission already).
fn priority_mismatch(priority: Option<i32>, class: Option<&str>) -> Option<FieldError> {
    let priority = priority?;
    let message = match class.filter(|c| !c.is_empty()) {
        None => format!(
            "{priority} is set without priorityClassName: the API server computes the priority from the class (0 without one) and refuses a mirror pod whose priority differs"
        ),
        Some(class) => {
            let (_, value) = SYSTEM_PRIORITY_CLASSES.iter().find(|(name, _)| *name == class)?;
            if *value == priority {
                return None;
            }
            format!(
                "{priority} does not match priorityClassName {class} ({value}): the API server refuses a mirror pod whose priority differs from its class's"
            )
        }
    };
    Some(FieldError::new("spec.priority", message))
}
