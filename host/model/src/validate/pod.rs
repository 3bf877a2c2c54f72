//! `ValidatePodCreate`: object metadata (`ValidateObjectMeta`, `ValidatePodSpecificAnnotations`)
//! and the pod-level fields of `ValidatePodSpec`. Containers, volumes and security contexts have
//! their own modules.

use std::collections::{BTreeMap, HashSet};

use k8s_openapi::api::core::v1::{
    Affinity, NodeSelector, NodeSelectorRequirement, Pod, PodAffinityTerm, PodSpec, TopologySpreadConstraint, WeightedPodAffinityTerm,
};

use super::names::{self, inclusive_range, push_invalid};
use super::{container, security, volume};
use crate::field::FieldError;

const TOTAL_ANNOTATION_BYTES: usize = 256 * 1024;
const MAX_DNS_NAMESERVERS: usize = 3;
const MAX_DNS_SEARCH_PATHS: usize = 32;
const MAX_DNS_SEARCH_CHARS: usize = 2048;
const MAX_INT32: i64 = i32::MAX as i64;
const POD_DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";
const STANDARD_FINALIZERS: [&str; 3] = ["kubernetes", "orphan", "foregroundDeletion"];

/// `ValidateObjectMeta` with `ValidatePodName`, plus `ValidatePodSpecificAnnotations`.
pub(super) fn validate_metadata(pod: &Pod, errors: &mut Vec<FieldError>) {
    let meta = &pod.metadata;
    if let Some(prefix) = meta.generate_name.as_deref().filter(|p| !p.is_empty()) {
        // A prefix may end in '-' because random characters follow it.
        let masked = match prefix.strip_suffix('-') {
            Some(head) => format!("{head}a"),
            None => prefix.to_owned(),
        };
        push_invalid(errors, "metadata.generateName", prefix, names::dns1123_subdomain(&masked));
    }
    match meta.name.as_deref() {
        None | Some("") => errors.push(FieldError::required_because("metadata.name", "name or generateName is required")),
        Some(name) => push_invalid(errors, "metadata.name", name, names::dns1123_subdomain(name)),
    }
    // The API server assigns UIDs itself; a static pod may bring its own, and the agent uses it
    // as a directory name under --root-dir and in runtime object names, so it must be one
    // plain path component (a staticlet rule, not an API server one).
    if let Some(uid) = meta.uid.as_deref()
        && !names::is_safe_uid(uid)
    {
        errors.push(FieldError::invalid(
            "metadata.uid",
            uid,
            "must be 1 to 128 characters of letters, digits, '-', '_' or '.', and not '.' or '..'",
        ));
    }
    match meta.namespace.as_deref() {
        None | Some("") => errors.push(FieldError::required("metadata.namespace")),
        Some(namespace) => push_invalid(errors, "metadata.namespace", namespace, names::dns1123_label(namespace)),
    }
    if let Some(generation) = meta.generation
        && generation < 0
    {
        errors.push(FieldError::invalid_unquoted("metadata.generation", generation, "must be greater than or equal to 0"));
    }
    validate_labels(meta.labels.as_ref(), "metadata.labels", errors);
    validate_annotations(meta.annotations.as_ref(), errors);
    // Upstream reports owner reference errors on the list's path, without an index.
    for owner in meta.owner_references.iter().flatten() {
        let version = owner.api_version.rsplit('/').next().unwrap_or_default();
        if version.is_empty() {
            errors.push(FieldError::invalid("metadata.ownerReferences.apiVersion", &owner.api_version, "version must not be empty"));
        }
        for (field, value) in [("kind", &owner.kind), ("name", &owner.name), ("uid", &owner.uid)] {
            if value.is_empty() {
                errors.push(FieldError::invalid(format!("metadata.ownerReferences.{field}"), "", "must not be empty"));
            }
        }
    }
    for finalizer in meta.finalizers.iter().flatten() {
        push_invalid(errors, "metadata.finalizers", finalizer, names::qualified_name(finalizer));
        if !finalizer.contains('/') && !STANDARD_FINALIZERS.contains(&finalizer.as_str()) {
            errors.push(FieldError::invalid(
                "metadata.finalizers",
                finalizer,
                "name is neither a standard finalizer name nor is it fully qualified",
            ));
        }
    }
    let annotations = meta.annotations.as_ref();
    if let Some(cost) = annotations.and_then(|a| a.get(POD_DELETION_COST))
        && !is_deletion_cost(cost)
    {
        errors.push(FieldError::invalid(format!("metadata.annotations[{POD_DELETION_COST}]"), cost, "must be a 32bit integer"));
    }
    if let Some(spec) = &pod.spec {
        security::validate_annotations(annotations, spec, errors);
    }
}

/// `GetDeletionCostFromPodAnnotations`: a decimal int32 without `+` or leading zeros.
fn is_deletion_cost(value: &str) -> bool {
    let first_ok = match value.as_bytes().first() {
        Some(b'-') => true,
        Some(b'0') => value == "0",
        Some(b) => b.is_ascii_digit(),
        None => false,
    };
    first_ok && value.parse::<i32>().is_ok()
}

/// `ValidateLabels`: every error sits on the map's own path, as upstream reports it.
pub(super) fn validate_labels(labels: Option<&BTreeMap<String, String>>, path: &str, errors: &mut Vec<FieldError>) {
    for (key, value) in labels.into_iter().flatten() {
        push_invalid(errors, path, key, names::qualified_name(key));
        push_invalid(errors, path, value, names::label_value(value));
    }
}

/// `ValidateAnnotations`: keys are qualified names compared in lowercase; 256 KiB in all.
fn validate_annotations(annotations: Option<&BTreeMap<String, String>>, errors: &mut Vec<FieldError>) {
    let mut total = 0;
    for (key, value) in annotations.into_iter().flatten() {
        push_invalid(errors, "metadata.annotations", key, names::qualified_name(&key.to_lowercase()));
        total += key.len() + value.len();
    }
    if total > TOTAL_ANNOTATION_BYTES {
        errors.push(FieldError::too_long("metadata.annotations", TOTAL_ANNOTATION_BYTES));
    }
}

/// `ValidatePodSpec` and the rest of `ValidatePodCreate`, in upstream's order.
pub(super) fn validate_create(pod: &Pod, spec: &PodSpec, errors: &mut Vec<FieldError>) {
    if spec.termination_grace_period_seconds.is_none() {
        errors.push(FieldError::required("spec.terminationGracePeriodSeconds"));
    }
    let volumes = volume::validate_volumes(spec.volumes.as_deref().unwrap_or_default(), errors);
    container::validate_all(spec, &volumes, errors);
    validate_host_network_ports(spec, errors);
    match spec.restart_policy.as_deref() {
        None | Some("") => errors.push(FieldError::required("spec.restartPolicy")),
        Some("Always" | "OnFailure" | "Never") => {}
        Some(other) => errors.push(FieldError::not_supported("spec.restartPolicy", other, &["Always", "OnFailure", "Never"])),
    }
    let dns_policies = ["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"];
    match spec.dns_policy.as_deref() {
        None | Some("") => errors.push(FieldError::required("spec.dnsPolicy")),
        Some(policy) if !dns_policies.contains(&policy) => errors.push(FieldError::not_supported("spec.dnsPolicy", policy, &dns_policies)),
        Some(_) => {}
    }
    validate_labels(spec.node_selector.as_ref(), "spec.nodeSelector", errors);
    security::validate_pod_security_context(spec, errors);
    if let Some(affinity) = &spec.affinity {
        validate_affinity(affinity, errors);
    }
    validate_dns_config(spec, errors);
    for (i, gate) in spec.readiness_gates.iter().flatten().enumerate() {
        let path = format!("spec.readinessGates[{i}].conditionType");
        push_invalid(errors, &path, &gate.condition_type, names::qualified_name(&gate.condition_type));
    }
    let mut gates = HashSet::new();
    for (i, gate) in spec.scheduling_gates.iter().flatten().enumerate() {
        let path = format!("spec.schedulingGates[{i}]");
        push_invalid(errors, &path, &gate.name, names::qualified_name(&gate.name));
        if !gates.insert(gate.name.as_str()) {
            errors.push(FieldError::duplicate(&path, &gate.name));
        }
    }
    validate_topology_spread(spec.topology_spread_constraints.as_deref().unwrap_or_default(), errors);
    validate_host_users(spec, errors);
    if let Some(node) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        push_invalid(errors, "spec.nodeName", node, names::dns1123_subdomain(node));
    }
    if let Some(seconds) = spec.active_deadline_seconds
        && !(1..=MAX_INT32).contains(&seconds)
    {
        errors.push(FieldError::invalid_unquoted("spec.activeDeadlineSeconds", seconds, inclusive_range(1, MAX_INT32)));
    }
    for (field, value) in [("spec.hostname", &spec.hostname), ("spec.subdomain", &spec.subdomain)] {
        if let Some(value) = value.as_deref().filter(|v| !v.is_empty()) {
            push_invalid(errors, field, value, names::dns1123_label(value));
        }
    }
    validate_tolerations(spec, errors);
    for (i, alias) in spec.host_aliases.iter().flatten().enumerate() {
        validate_ip(&format!("spec.hostAliases[{i}].ip"), &alias.ip, errors);
        for (j, hostname) in alias.hostnames.iter().flatten().enumerate() {
            push_invalid(errors, &format!("spec.hostAliases[{i}].hostnames[{j}]"), hostname, names::dns1123_subdomain(hostname));
        }
    }
    for (field, value) in [("spec.priorityClassName", &spec.priority_class_name), ("spec.runtimeClassName", &spec.runtime_class_name)] {
        // An empty priorityClassName means none; an empty runtimeClassName is checked and fails.
        match value.as_deref() {
            Some("") if field == "spec.priorityClassName" => {}
            Some(value) => push_invalid(errors, field, value, names::dns1123_subdomain(value)),
            None => {}
        }
    }
    match spec.preemption_policy.as_deref() {
        None | Some("PreemptLowerPriority" | "Never") => {}
        Some("") => errors.push(FieldError::required("spec.preemptionPolicy")),
        Some(other) => errors.push(FieldError::not_supported("spec.preemptionPolicy", other, &["PreemptLowerPriority", "Never"])),
    }
    if let Some(overhead) = &spec.overhead {
        container::validate_resource_list(overhead, "spec.overhead", errors);
    }
    security::validate_os(spec, errors);

    // ValidatePodCreate itself.
    if spec.ephemeral_containers.as_ref().is_some_and(|e| !e.is_empty()) {
        errors.push(FieldError::forbidden("spec.ephemeralContainers", "cannot be set on create"));
    }
    if spec.node_name.as_deref().is_some_and(|n| !n.is_empty()) && spec.scheduling_gates.as_ref().is_some_and(|g| !g.is_empty()) {
        errors.push(FieldError::forbidden("spec.nodeName", "cannot be set until all schedulingGates have been cleared"));
    }
    security::validate_annotations_match_fields(pod.metadata.annotations.as_ref(), spec, errors);
}

/// `validatePodHostNetworkDeps`: on the host network a container's port is the host's port.
/// Upstream checks app containers only.
fn validate_host_network_ports(spec: &PodSpec, errors: &mut Vec<FieldError>) {
    if !spec.host_network.unwrap_or(false) {
        return;
    }
    for (i, c) in spec.containers.iter().enumerate() {
        for (j, port) in c.ports.iter().flatten().enumerate() {
            let host_port = port.host_port.unwrap_or(0);
            if host_port != port.container_port {
                errors.push(FieldError::invalid_unquoted(
                    format!("spec.containers[{i}].ports[{j}].hostPort"),
                    host_port,
                    "must match `containerPort` when `hostNetwork` is true",
                ));
            }
        }
    }
}

/// `IsValidIP` as the legacy IP fields use it (`hostAliases[].ip`, `dnsConfig.nameservers`).
pub(super) fn validate_ip(path: &str, value: &str, errors: &mut Vec<FieldError>) {
    if value.parse::<std::net::IpAddr>().is_err() {
        errors.push(FieldError::invalid(path, value, "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"));
    }
}

/// `validatePodDNSConfig`, with `RelaxedDNSSearchValidation` (on by default since 1.33).
fn validate_dns_config(spec: &PodSpec, errors: &mut Vec<FieldError>) {
    if spec.dns_policy.as_deref() == Some("None") {
        match &spec.dns_config {
            None => {
                errors.push(FieldError::required_because("spec.dnsConfig", "must provide `dnsConfig` when `dnsPolicy` is None"));
                return;
            }
            Some(dns) if dns.nameservers.as_ref().is_none_or(Vec::is_empty) => {
                errors.push(FieldError::required_because(
                    "spec.dnsConfig.nameservers",
                    "must provide at least one DNS nameserver when `dnsPolicy` is None",
                ));
                return;
            }
            Some(_) => {}
        }
    }
    let Some(dns) = &spec.dns_config else { return };
    let servers = dns.nameservers.as_deref().unwrap_or_default();
    if servers.len() > MAX_DNS_NAMESERVERS {
        errors.push(FieldError::invalid_unquoted(
            "spec.dnsConfig.nameservers",
            go_string_list(servers),
            format!("must not have more than {MAX_DNS_NAMESERVERS} nameservers"),
        ));
    }
    for (i, server) in servers.iter().enumerate() {
        validate_ip(&format!("spec.dnsConfig.nameservers[{i}]"), server, errors);
    }
    let searches = dns.searches.as_deref().unwrap_or_default();
    if searches.len() > MAX_DNS_SEARCH_PATHS {
        errors.push(FieldError::invalid_unquoted(
            "spec.dnsConfig.searches",
            go_string_list(searches),
            format!("must not have more than {MAX_DNS_SEARCH_PATHS} search paths"),
        ));
    }
    if searches.join(" ").len() > MAX_DNS_SEARCH_CHARS {
        errors.push(FieldError::invalid_unquoted(
            "spec.dnsConfig.searches",
            go_string_list(searches),
            format!("must not have more than {MAX_DNS_SEARCH_CHARS} characters (including spaces) in the search list"),
        ));
    }
    for (i, search) in searches.iter().enumerate() {
        if search != "." {
            let trimmed = search.strip_suffix('.').unwrap_or(search);
            push_invalid(errors, &format!("spec.dnsConfig.searches[{i}]"), trimmed, names::dns1123_subdomain_with_underscore(trimmed));
        }
    }
    for (i, option) in dns.options.iter().flatten().enumerate() {
        if option.name.as_deref().unwrap_or_default().is_empty() {
            errors.push(FieldError::required_because(format!("spec.dnsConfig.options[{i}]"), "must not be empty"));
        }
    }
}

/// A list of strings as Go's `%#v` prints a `[]string`.
pub(super) fn go_string_list(values: &[String]) -> String {
    format!("[]string{{{}}}", values.iter().map(|v| format!("{v:?}")).collect::<Vec<_>>().join(", "))
}

/// `validateHostUsers`: a user namespace does not mix with the host's namespaces. The
/// capitalised `HostPID`/`HostIPC` paths are upstream's.
fn validate_host_users(spec: &PodSpec, errors: &mut Vec<FieldError>) {
    if spec.host_users != Some(false) {
        return;
    }
    for (field, set) in [("hostNetwork", spec.host_network), ("HostPID", spec.host_pid), ("HostIPC", spec.host_ipc)] {
        if set.unwrap_or(false) {
            errors.push(FieldError::forbidden(format!("spec.{field}"), "when `pod.Spec.HostUsers` is false"));
        }
    }
}

/// `ValidateTolerations`.
fn validate_tolerations(spec: &PodSpec, errors: &mut Vec<FieldError>) {
    for (i, toleration) in spec.tolerations.iter().flatten().enumerate() {
        let path = format!("spec.tolerations[{i}]");
        let key = toleration.key.as_deref().unwrap_or_default();
        let operator = toleration.operator.as_deref().unwrap_or_default();
        let effect = toleration.effect.as_deref().unwrap_or_default();
        let value = toleration.value.as_deref().unwrap_or_default();
        if !key.is_empty() {
            push_invalid(errors, &format!("{path}.key"), key, names::qualified_name(key));
        }
        if key.is_empty() && operator != "Exists" {
            errors.push(FieldError::invalid(
                format!("{path}.operator"),
                operator,
                "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            ));
        }
        if toleration.toleration_seconds.is_some() && effect != "NoExecute" {
            errors.push(FieldError::invalid(
                format!("{path}.effect"),
                effect,
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            ));
        }
        match operator {
            "Equal" | "" => {
                let messages = names::label_value(value);
                if !messages.is_empty() {
                    errors.push(FieldError::invalid(format!("{path}.operator"), value, messages.join(";")));
                }
            }
            "Exists" if !value.is_empty() => {
                errors.push(FieldError::invalid(format!("{path}.operator"), value, "value must be empty when `operator` is 'Exists'"))
            }
            "Exists" => {}
            other => errors.push(FieldError::not_supported(format!("{path}.operator"), other, &["Equal", "Exists"])),
        }
        let effects = ["NoSchedule", "PreferNoSchedule", "NoExecute"];
        if !effect.is_empty() && !effects.contains(&effect) {
            errors.push(FieldError::not_supported(format!("{path}.effect"), effect, &effects));
        }
    }
}

/// `validateAffinity`, light: node selector terms and requirements, weights and pod affinity
/// topology keys. Label selectors inside pod affinity terms are not checked (see the docs).
fn validate_affinity(affinity: &Affinity, errors: &mut Vec<FieldError>) {
    if let Some(node) = &affinity.node_affinity {
        let path = "spec.affinity.nodeAffinity";
        if let Some(required) = &node.required_during_scheduling_ignored_during_execution {
            validate_node_selector(required, &format!("{path}.requiredDuringSchedulingIgnoredDuringExecution"), errors);
        }
        for (i, term) in node.preferred_during_scheduling_ignored_during_execution.iter().flatten().enumerate() {
            let term_path = format!("{path}.preferredDuringSchedulingIgnoredDuringExecution[{i}]");
            check_weight(term.weight, &term_path, errors);
            for (j, req) in term.preference.match_expressions.iter().flatten().enumerate() {
                // Preferred terms may carry invalid label values: they can still match nothing.
                validate_node_requirement(req, false, &format!("{term_path}.preference.matchExpressions[{j}]"), errors);
            }
        }
    }
    for (name, terms) in pod_affinities(affinity) {
        let Some((required, preferred)) = terms else { continue };
        let path = format!("spec.affinity.{name}");
        for (i, term) in required.iter().flatten().enumerate() {
            validate_pod_affinity_term(term, &format!("{path}.requiredDuringSchedulingIgnoredDuringExecution[{i}]"), errors);
        }
        for (i, weighted) in preferred.iter().flatten().enumerate() {
            let term_path = format!("{path}.preferredDuringSchedulingIgnoredDuringExecution[{i}]");
            check_weight(weighted.weight, &term_path, errors);
            validate_pod_affinity_term(&weighted.pod_affinity_term, &format!("{term_path}.podAffinityTerm"), errors);
        }
    }
}

/// The pod affinity and anti-affinity of `affinity`, by field name, each as its required and
/// preferred terms: validation and the warnings walk both the same way.
pub(super) fn pod_affinities(affinity: &Affinity) -> [(&'static str, Option<PodAffinityTerms<'_>>); 2] {
    [
        (
            "podAffinity",
            affinity
                .pod_affinity
                .as_ref()
                .map(|a| (&a.required_during_scheduling_ignored_during_execution, &a.preferred_during_scheduling_ignored_during_execution)),
        ),
        (
            "podAntiAffinity",
            affinity
                .pod_anti_affinity
                .as_ref()
                .map(|a| (&a.required_during_scheduling_ignored_during_execution, &a.preferred_during_scheduling_ignored_during_execution)),
        ),
    ]
}

/// A pod (anti-)affinity's required and preferred terms.
pub(super) type PodAffinityTerms<'a> = (&'a Option<Vec<PodAffinityTerm>>, &'a Option<Vec<WeightedPodAffinityTerm>>);

fn check_weight(weight: i32, path: &str, errors: &mut Vec<FieldError>) {
    if !(1..=100).contains(&weight) {
        errors.push(FieldError::invalid_unquoted(format!("{path}.weight"), weight, "must be in the range 1-100"));
    }
}

fn validate_pod_affinity_term(term: &PodAffinityTerm, path: &str, errors: &mut Vec<FieldError>) {
    for namespace in term.namespaces.iter().flatten() {
        push_invalid(errors, &format!("{path}.namespace"), namespace, names::dns1123_label(namespace));
    }
    if term.topology_key.is_empty() {
        errors.push(FieldError::required_because(format!("{path}.topologyKey"), "can not be empty"));
    }
    push_invalid(errors, &format!("{path}.topologyKey"), &term.topology_key, names::qualified_name(&term.topology_key));
}

/// `ValidateNodeSelector`.
fn validate_node_selector(selector: &NodeSelector, path: &str, errors: &mut Vec<FieldError>) {
    let terms_path = format!("{path}.nodeSelectorTerms");
    if selector.node_selector_terms.is_empty() {
        errors.push(FieldError::required_because(&terms_path, "must have at least one node selector term"));
        return;
    }
    for (i, term) in selector.node_selector_terms.iter().enumerate() {
        for (j, req) in term.match_expressions.iter().flatten().enumerate() {
            validate_node_requirement(req, true, &format!("{terms_path}[{i}].matchExpressions[{j}]"), errors);
        }
        for (j, req) in term.match_fields.iter().flatten().enumerate() {
            let req_path = format!("{terms_path}[{i}].matchFields[{j}]");
            let values = req.values.as_deref().unwrap_or_default();
            match req.operator.as_str() {
                "In" | "NotIn" if values.len() != 1 => errors.push(FieldError::required_because(
                    format!("{req_path}.values"),
                    "must be only one value when `operator` is 'In' or 'NotIn' for node field selector",
                )),
                "In" | "NotIn" => {}
                other => errors.push(FieldError::invalid(format!("{req_path}.operator"), other, "not a valid selector operator")),
            }
            if req.key != "metadata.name" {
                errors.push(FieldError::invalid(format!("{req_path}.key"), &req.key, "not a valid field selector key"));
            } else {
                for (k, value) in values.iter().enumerate() {
                    push_invalid(errors, &format!("{req_path}.values[{k}]"), value, names::dns1123_subdomain(value));
                }
            }
        }
    }
}

/// `ValidateNodeSelectorRequirement`.
fn validate_node_requirement(req: &NodeSelectorRequirement, check_values: bool, path: &str, errors: &mut Vec<FieldError>) {
    let values = req.values.as_deref().unwrap_or_default();
    match req.operator.as_str() {
        "In" | "NotIn" if values.is_empty() => {
            errors.push(FieldError::required_because(format!("{path}.values"), "must be specified when `operator` is 'In' or 'NotIn'"))
        }
        "Exists" | "DoesNotExist" if !values.is_empty() => errors
            .push(FieldError::forbidden(format!("{path}.values"), "may not be specified when `operator` is 'Exists' or 'DoesNotExist'")),
        "Gt" | "Lt" if values.len() != 1 => errors
            .push(FieldError::required_because(format!("{path}.values"), "must be specified single value when `operator` is 'Lt' or 'Gt'")),
        "In" | "NotIn" | "Exists" | "DoesNotExist" | "Gt" | "Lt" => {}
        other => errors.push(FieldError::invalid(format!("{path}.operator"), other, "not a valid selector operator")),
    }
    push_invalid(errors, &format!("{path}.key"), &req.key, names::qualified_name(&req.key));
    if check_values {
        for (i, value) in values.iter().enumerate() {
            push_invalid(errors, &format!("{path}.values[{i}]"), value, names::label_value(value));
        }
    }
}

/// `validateTopologySpreadConstraints`, light: the label selector itself is not checked.
fn validate_topology_spread(constraints: &[TopologySpreadConstraint], errors: &mut Vec<FieldError>) {
    for (i, c) in constraints.iter().enumerate() {
        let path = format!("spec.topologySpreadConstraints[{i}]");
        if c.max_skew <= 0 {
            errors.push(FieldError::invalid_unquoted(format!("{path}.maxSkew"), c.max_skew, "must be greater than zero"));
        }
        if c.topology_key.is_empty() {
            errors.push(FieldError::required_because(format!("{path}.topologyKey"), "can not be empty"));
        }
        let actions = ["DoNotSchedule", "ScheduleAnyway"];
        if !actions.contains(&c.when_unsatisfiable.as_str()) {
            errors.push(FieldError::not_supported(format!("{path}.whenUnsatisfiable"), &c.when_unsatisfiable, &actions));
        }
        // Upstream reports a pair on the first of two constraints that share it.
        if constraints[i + 1..].iter().any(|o| o.topology_key == c.topology_key && o.when_unsatisfiable == c.when_unsatisfiable) {
            errors.push(FieldError::duplicate(
                format!("{path}.{{topologyKey, whenUnsatisfiable}}"),
                format!("{{{}, {}}}", c.topology_key, c.when_unsatisfiable),
            ));
        }
        if let Some(min) = c.min_domains {
            if min <= 0 {
                errors.push(FieldError::invalid_unquoted(format!("{path}.minDomains"), min, "must be greater than zero"));
            }
            if c.when_unsatisfiable != "DoNotSchedule" {
                errors.push(FieldError::invalid_unquoted(
                    format!("{path}.minDomains"),
                    min,
                    format!("can only use minDomains if whenUnsatisfiable=DoNotSchedule, not {}", c.when_unsatisfiable),
                ));
            }
        }
        for (field, policy) in [("nodeAffinityPolicy", &c.node_affinity_policy), ("nodeTaintsPolicy", &c.node_taints_policy)] {
            if let Some(policy) = policy.as_deref()
                && !["Honor", "Ignore"].contains(&policy)
            {
                errors.push(FieldError::not_supported(format!("{path}.{field}"), policy, &["Honor", "Ignore"]));
            }
        }
        if c.match_label_keys.as_ref().is_some_and(|k| !k.is_empty()) && c.label_selector.is_none() {
            errors.push(FieldError::forbidden(format!("{path}.matchLabelKeys"), "must not be specified when labelSelector is not set"));
        }
    }
}
