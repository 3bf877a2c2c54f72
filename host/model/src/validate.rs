//! The API server's pod validation (`ValidatePodCreate` in
//! `k8s.io/kubernetes/pkg/apis/core/validation`), for the rules a static pod can break. Paths and
//! messages are worded as the API server words them, so an error reads like `kubectl apply`'s.
//!
//! The pod given is already defaulted and bound to the node, so this sees what will run.

use std::collections::{BTreeMap, HashMap, HashSet};

use k8s_openapi::api::core::v1::{Container, EnvVar, LifecycleHandler, Pod, PodSpec, Probe, ResourceRequirements, Volume};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::field::FieldError;
use crate::quantity::{ParsedQuantity, parse_quantity};

const DNS1123_LABEL_MAX: usize = 63;
const DNS1123_SUBDOMAIN_MAX: usize = 253;
const DNS1123_LABEL_MESSAGE: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
const TOTAL_ANNOTATION_BYTES: usize = 256 * 1024;

/// Validates a defaulted pod; an empty list means it is valid.
pub fn validate_pod(pod: &Pod) -> Vec<FieldError> {
    let mut errors = Vec::new();
    validate_metadata(pod, &mut errors);
    match &pod.spec {
        Some(spec) => validate_spec(spec, &mut errors),
        None => errors.push(FieldError::required("spec")),
    }
    errors
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters.
pub fn is_dns1123_label(value: &str) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= DNS1123_LABEL_MAX
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

/// Dot-separated DNS-1123 labels, at most 253 characters.
pub fn is_dns1123_subdomain(value: &str) -> bool {
    value.len() <= DNS1123_SUBDOMAIN_MAX && value.split('.').all(is_dns1123_label)
}

/// An IANA service name: at most 15 lowercase alphanumerics and `-`, with a letter, no leading,
/// trailing or doubled `-`.
pub fn is_iana_svc_name(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 15
        && value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && value.bytes().any(|b| b.is_ascii_lowercase())
        && !value.starts_with('-')
        && !value.ends_with('-')
        && !value.contains("--")
}

/// A qualified name (`prefix/name` or `name`), as label and annotation keys must be.
pub fn is_qualified_name(value: &str) -> bool {
    let (prefix, name) = match value.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, value),
    };
    let name_ok = !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric();
    name_ok && prefix.is_none_or(is_dns1123_subdomain)
}

/// A UID usable as one path component and inside a runtime object name.
pub fn is_safe_uid(uid: &str) -> bool {
    (1..=128).contains(&uid.len())
        && uid != "."
        && uid != ".."
        && uid.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A label value: empty, or at most 63 characters of the qualified-name alphabet.
pub fn is_label_value(value: &str) -> bool {
    value.is_empty() || is_qualified_name(value) && !value.contains('/')
}

fn validate_metadata(pod: &Pod, errors: &mut Vec<FieldError>) {
    let meta = &pod.metadata;
    match meta.name.as_deref() {
        None | Some("") => errors.push(FieldError::required("metadata.name")),
        Some(name) if !is_dns1123_subdomain(name) => errors.push(FieldError::invalid(
            "metadata.name",
            name,
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
        )),
        Some(_) => {}
    }
    // The API server assigns UIDs itself; a static pod may bring its own, and the agent uses it
    // as a directory name under --root-dir and in runtime object names, so it must be one
    // plain path component.
    if let Some(uid) = meta.uid.as_deref()
        && !is_safe_uid(uid)
    {
        errors.push(FieldError::invalid(
            "metadata.uid",
            uid,
            "must be 1 to 128 characters of letters, digits, '-', '_' or '.', and not '.' or '..'",
        ));
    }
    if let Some(namespace) = meta.namespace.as_deref()
        && !is_dns1123_label(namespace)
    {
        errors.push(FieldError::invalid("metadata.namespace", namespace, DNS1123_LABEL_MESSAGE));
    }
    for (key, value) in meta.labels.iter().flatten() {
        if !is_qualified_name(key) {
            errors.push(FieldError::invalid(
                format!("metadata.labels[{key}]"),
                key,
                "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
            ));
        }
        if !is_label_value(value) {
            errors.push(FieldError::invalid(format!("metadata.labels[{key}]"), value, "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"));
        }
    }
    let mut total = 0;
    for (key, value) in meta.annotations.iter().flatten() {
        if !is_qualified_name(&key.to_lowercase()) {
            errors.push(FieldError::invalid(
                format!("metadata.annotations[{key}]"),
                key,
                "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
            ));
        }
        total += key.len() + value.len();
    }
    if total > TOTAL_ANNOTATION_BYTES {
        errors.push(FieldError::new("metadata.annotations", format!("Too long: must have at most {TOTAL_ANNOTATION_BYTES} bytes")));
    }
}

fn validate_spec(spec: &PodSpec, errors: &mut Vec<FieldError>) {
    let volumes = validate_volumes(spec.volumes.as_deref().unwrap_or_default(), errors);
    if spec.containers.is_empty() {
        errors.push(FieldError::required("spec.containers"));
    }
    let mut names = HashSet::new();
    let host_network = spec.host_network.unwrap_or(false);
    for (i, c) in spec.init_containers.iter().flatten().enumerate() {
        validate_container(c, &format!("spec.initContainers[{i}]"), Kind::Init, &volumes, host_network, &mut names, errors);
    }
    for (i, c) in spec.containers.iter().enumerate() {
        validate_container(c, &format!("spec.containers[{i}]"), Kind::App, &volumes, host_network, &mut names, errors);
    }
    validate_host_ports(spec, errors);

    one_of("spec.restartPolicy", spec.restart_policy.as_deref(), &["Always", "OnFailure", "Never"], errors);
    one_of("spec.dnsPolicy", spec.dns_policy.as_deref(), &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"], errors);
    if spec.dns_policy.as_deref() == Some("None") && spec.dns_config.is_none() {
        errors
            .push(FieldError::required("spec.dnsConfig").with_message("Required value: must provide `dnsConfig` when `dnsPolicy` is None"));
    }
    if let Some(dns) = &spec.dns_config {
        let servers = dns.nameservers.as_deref().unwrap_or_default();
        if servers.len() > 3 {
            errors.push(FieldError::invalid("spec.dnsConfig.nameservers", servers.join(","), "must not have more than 3 nameservers"));
        }
        for (i, server) in servers.iter().enumerate() {
            if server.parse::<std::net::IpAddr>().is_err() {
                errors.push(FieldError::invalid(format!("spec.dnsConfig.nameservers[{i}]"), server, "must be a valid IP address"));
            }
        }
        if dns.searches.as_ref().is_some_and(|s| s.len() > 32) {
            errors.push(FieldError::invalid("spec.dnsConfig.searches", "...", "must not have more than 32 search paths"));
        }
    }
    if let Some(seconds) = spec.active_deadline_seconds
        && seconds < 1
    {
        errors.push(FieldError::invalid("spec.activeDeadlineSeconds", seconds, "must be between 1 and 2147483647, inclusive"));
    }
    for (field, value) in [("spec.hostname", &spec.hostname), ("spec.subdomain", &spec.subdomain)] {
        if let Some(value) = value
            && !is_dns1123_label(value)
        {
            errors.push(FieldError::invalid(field, value, DNS1123_LABEL_MESSAGE));
        }
    }
    for (i, alias) in spec.host_aliases.iter().flatten().enumerate() {
        if alias.ip.parse::<std::net::IpAddr>().is_err() {
            errors.push(FieldError::invalid(format!("spec.hostAliases[{i}].ip"), &alias.ip, "must be a valid IP address"));
        }
    }
    if let Some(sc) = &spec.security_context {
        non_negative("spec.securityContext.runAsUser", sc.run_as_user, errors);
        non_negative("spec.securityContext.runAsGroup", sc.run_as_group, errors);
    }
}

impl FieldError {
    fn with_message(mut self, message: &str) -> Self {
        message.clone_into(&mut self.message);
        self
    }
}

/// A name that must be present, a DNS-1123 label, and unique among its kind.
fn unique_label_name(path: &str, name: &str, seen: &mut HashSet<String>, errors: &mut Vec<FieldError>) {
    if name.is_empty() {
        errors.push(FieldError::required(path));
    } else if !is_dns1123_label(name) {
        errors.push(FieldError::invalid(path, name, DNS1123_LABEL_MESSAGE));
    } else if !seen.insert(name.to_owned()) {
        errors.push(FieldError::duplicate(path, name));
    }
}

fn one_of(path: &str, value: Option<&str>, allowed: &[&str], errors: &mut Vec<FieldError>) {
    match value {
        None => errors.push(FieldError::required(path)),
        Some(v) if !allowed.contains(&v) => errors.push(FieldError::not_supported(path, v, allowed)),
        Some(_) => {}
    }
}

fn non_negative(path: &str, value: Option<i64>, errors: &mut Vec<FieldError>) {
    if let Some(v) = value
        && v < 0
    {
        errors.push(FieldError::invalid(path, v, "must be between 0 and 2147483647, inclusive"));
    }
}

/// Returns the pod's volume names, for the mounts to refer to.
fn validate_volumes(volumes: &[Volume], errors: &mut Vec<FieldError>) -> HashSet<String> {
    let mut names = HashSet::new();
    for (i, volume) in volumes.iter().enumerate() {
        let path = format!("spec.volumes[{i}]");
        unique_label_name(&format!("{path}.name"), &volume.name, &mut names, errors);
        let sources = volume_source_count(volume);
        if sources == 0 {
            errors.push(FieldError::required(&path).with_message("Required value: must specify a volume type"));
        } else if sources > 1 {
            errors.push(FieldError::forbidden(&path, "may not specify more than 1 volume type"));
        }
        if let Some(host) = &volume.host_path {
            if host.path.is_empty() {
                errors.push(FieldError::required(format!("{path}.hostPath.path")));
            }
            let kinds = ["", "DirectoryOrCreate", "Directory", "FileOrCreate", "File", "Socket", "CharDevice", "BlockDevice"];
            if let Some(kind) = host.type_.as_deref()
                && !kinds.contains(&kind)
            {
                errors.push(FieldError::not_supported(format!("{path}.hostPath.type"), kind, &kinds));
            }
        }
        if let Some(empty) = &volume.empty_dir {
            let media = ["", "Memory", "HugePages"];
            if let Some(medium) = empty.medium.as_deref()
                && !media.contains(&medium)
            {
                errors.push(FieldError::not_supported(format!("{path}.emptyDir.medium"), medium, &media));
            }
            if let Some(limit) = &empty.size_limit {
                check_quantity(&format!("{path}.emptyDir.sizeLimit"), limit, errors);
            }
        }
    }
    names
}

/// How many volume sources a volume sets. Counted from its JSON form, so every source the
/// API knows counts, including ones this agent does not run (admission rejects those).
fn volume_source_count(volume: &Volume) -> usize {
    match serde_json::to_value(volume) {
        Ok(serde_json::Value::Object(map)) => map.iter().filter(|(k, v)| k.as_str() != "name" && !v.is_null()).count(),
        _ => 0,
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Init,
    App,
}

fn validate_container(
    c: &Container,
    path: &str,
    kind: Kind,
    volumes: &HashSet<String>,
    host_network: bool,
    names: &mut HashSet<String>,
    errors: &mut Vec<FieldError>,
) {
    unique_label_name(&format!("{path}.name"), &c.name, names, errors);
    match c.image.as_deref() {
        None | Some("") => errors.push(FieldError::required(format!("{path}.image"))),
        Some(image) if image.trim() != image => {
            errors.push(FieldError::invalid(format!("{path}.image"), image, "must not have leading or trailing whitespace"))
        }
        Some(_) => {}
    }
    one_of(&format!("{path}.imagePullPolicy"), c.image_pull_policy.as_deref(), &["Always", "IfNotPresent", "Never"], errors);
    one_of(
        &format!("{path}.terminationMessagePolicy"),
        c.termination_message_policy.as_deref(),
        &["File", "FallbackToLogsOnError"],
        errors,
    );

    let sidecar = c.restart_policy.as_deref() == Some("Always");
    match (kind, c.restart_policy.as_deref()) {
        (_, None) | (Kind::Init, Some("Always")) => {}
        (Kind::App, Some(_)) => {
            errors.push(FieldError::forbidden(format!("{path}.restartPolicy"), "may not be set for non-init containers"))
        }
        (Kind::Init, Some(other)) => errors.push(FieldError::not_supported(format!("{path}.restartPolicy"), other, &["Always"])),
    }
    if kind == Kind::Init && !sidecar {
        for (field, set) in [
            ("lifecycle", c.lifecycle.is_some()),
            ("livenessProbe", c.liveness_probe.is_some()),
            ("readinessProbe", c.readiness_probe.is_some()),
            ("startupProbe", c.startup_probe.is_some()),
        ] {
            if set {
                errors.push(FieldError::forbidden(
                    format!("{path}.{field}"),
                    "may not be set for init containers without restartPolicy=Always",
                ));
            }
        }
    }

    validate_ports(c, path, host_network, errors);
    validate_env(c.env.as_deref().unwrap_or_default(), path, errors);
    for (i, from) in c.env_from.iter().flatten().enumerate() {
        if let Some(prefix) = &from.prefix
            && !prefix.bytes().all(|b| (b' '..=b'~').contains(&b) && b != b'=')
        {
            errors.push(FieldError::invalid(
                format!("{path}.envFrom[{i}].prefix"),
                prefix,
                "a valid environment variable name must consist only of printable ASCII characters other than '='",
            ));
        }
    }
    validate_mounts(c, path, volumes, errors);
    if let Some(resources) = &c.resources {
        validate_resources(resources, &format!("{path}.resources"), errors);
    }
    for (field, probe) in [("livenessProbe", &c.liveness_probe), ("readinessProbe", &c.readiness_probe), ("startupProbe", &c.startup_probe)]
    {
        if let Some(probe) = probe {
            validate_probe(probe, &format!("{path}.{field}"), field != "readinessProbe", errors);
        }
    }
    if let Some(lifecycle) = &c.lifecycle {
        for (field, handler) in [("postStart", &lifecycle.post_start), ("preStop", &lifecycle.pre_stop)] {
            if let Some(handler) = handler {
                validate_handler(handler, &format!("{path}.lifecycle.{field}"), errors);
            }
        }
    }
    if let Some(sc) = &c.security_context {
        non_negative(&format!("{path}.securityContext.runAsUser"), sc.run_as_user, errors);
        non_negative(&format!("{path}.securityContext.runAsGroup"), sc.run_as_group, errors);
        if let Some(caps) = &sc.capabilities {
            for (field, list) in [("add", &caps.add), ("drop", &caps.drop)] {
                for (i, cap) in list.iter().flatten().enumerate() {
                    if cap.is_empty() {
                        errors.push(FieldError::required(format!("{path}.securityContext.capabilities.{field}[{i}]")));
                    }
                }
            }
        }
    }
}

fn validate_ports(c: &Container, path: &str, host_network: bool, errors: &mut Vec<FieldError>) {
    let mut names = HashSet::new();
    for (i, port) in c.ports.iter().flatten().enumerate() {
        let p = format!("{path}.ports[{i}]");
        if let Some(name) = &port.name {
            if !is_iana_svc_name(name) {
                errors.push(FieldError::invalid(format!("{p}.name"), name, "must be no more than 15 characters, contain only lowercase alphanumerics and '-', contain at least one letter, and not begin or end with '-' or contain '--'"));
            } else if !names.insert(name.clone()) {
                errors.push(FieldError::duplicate(format!("{p}.name"), name));
            }
        }
        if !(1..=65535).contains(&port.container_port) {
            errors.push(FieldError::invalid(format!("{p}.containerPort"), port.container_port, "must be between 1 and 65535, inclusive"));
        }
        let host_port = port.host_port.unwrap_or(0);
        if !(0..=65535).contains(&host_port) {
            errors.push(FieldError::invalid(format!("{p}.hostPort"), host_port, "must be between 1 and 65535, inclusive"));
        }
        if host_network && host_port != 0 && host_port != port.container_port {
            errors.push(FieldError::invalid(
                format!("{p}.containerPort"),
                port.container_port,
                "must match `hostPort` when `hostNetwork` is true",
            ));
        }
        one_of(&format!("{p}.protocol"), port.protocol.as_deref(), &["SCTP", "TCP", "UDP"], errors);
    }
}

fn validate_host_ports(spec: &PodSpec, errors: &mut Vec<FieldError>) {
    let inits = spec.init_containers.iter().flatten().enumerate().map(|(i, c)| ("initContainers", i, c));
    let apps = spec.containers.iter().enumerate().map(|(i, c)| ("containers", i, c));
    let mut seen = HashSet::new();
    for (kind, index, c) in inits.chain(apps) {
        for (i, port) in c.ports.iter().flatten().enumerate() {
            let host_port = port.host_port.unwrap_or(0);
            if host_port == 0 {
                continue;
            }
            let protocol = port.protocol.as_deref().unwrap_or("TCP");
            if !seen.insert((host_port, protocol, port.host_ip.as_deref().unwrap_or(""))) {
                errors.push(FieldError::duplicate(format!("spec.{kind}[{index}].ports[{i}].hostPort"), format!("{host_port}/{protocol}")));
            }
        }
    }
}

fn validate_env(env: &[EnvVar], path: &str, errors: &mut Vec<FieldError>) {
    for (i, var) in env.iter().enumerate() {
        let p = format!("{path}.env[{i}]");
        if var.name.is_empty() {
            errors.push(FieldError::required(format!("{p}.name")));
        } else if !var.name.bytes().all(|b| (b' '..=b'~').contains(&b) && b != b'=') {
            errors.push(FieldError::invalid(
                format!("{p}.name"),
                &var.name,
                "a valid environment variable name must consist only of printable ASCII characters other than '='",
            ));
        }
        let Some(from) = &var.value_from else { continue };
        if var.value.as_deref().is_some_and(|v| !v.is_empty()) {
            errors.push(FieldError::invalid(format!("{p}.valueFrom"), "", "may not be specified when `value` is not empty"));
        }
        let sources = [
            from.field_ref.is_some(),
            from.resource_field_ref.is_some(),
            from.config_map_key_ref.is_some(),
            from.secret_key_ref.is_some(),
            from.file_key_ref.is_some(),
        ];
        match sources.iter().filter(|s| **s).count() {
            0 => errors.push(FieldError::invalid(
                format!("{p}.valueFrom"),
                "",
                "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef`, `secretKeyRef` or `fileKeyRef`",
            )),
            1 => {}
            _ => errors.push(FieldError::invalid(format!("{p}.valueFrom"), "", "may not have more than one field specified at a time")),
        }
    }
}

fn validate_mounts(c: &Container, path: &str, volumes: &HashSet<String>, errors: &mut Vec<FieldError>) {
    let mut paths = HashSet::new();
    for (i, mount) in c.volume_mounts.iter().flatten().enumerate() {
        let p = format!("{path}.volumeMounts[{i}]");
        if mount.name.is_empty() {
            errors.push(FieldError::required(format!("{p}.name")));
        } else if !volumes.contains(&mount.name) {
            errors.push(FieldError::new(format!("{p}.name"), format!("Not found: \"{}\"", mount.name)));
        }
        if mount.mount_path.is_empty() {
            errors.push(FieldError::required(format!("{p}.mountPath")));
        } else if !paths.insert(mount.mount_path.clone()) {
            errors.push(FieldError::invalid(format!("{p}.mountPath"), &mount.mount_path, "must be unique"));
        }
        let sub_path = mount.sub_path.as_deref().unwrap_or("");
        if !sub_path.is_empty() && mount.sub_path_expr.as_deref().is_some_and(|e| !e.is_empty()) {
            errors.push(FieldError::invalid(
                format!("{p}.subPathExpr"),
                mount.sub_path_expr.as_deref().unwrap_or(""),
                "subPathExpr and subPath are mutually exclusive",
            ));
        }
        for (field, value) in [("subPath", sub_path), ("subPathExpr", mount.sub_path_expr.as_deref().unwrap_or(""))] {
            if value.starts_with('/') {
                errors.push(FieldError::invalid(format!("{p}.{field}"), value, "must be a relative path"));
            } else if value.split('/').any(|part| part == "..") {
                errors.push(FieldError::invalid(format!("{p}.{field}"), value, "must not contain '..'"));
            }
        }
        if let Some(mode) = mount.mount_propagation.as_deref() {
            let modes = ["Bidirectional", "HostToContainer", "None"];
            if !modes.contains(&mode) {
                errors.push(FieldError::not_supported(format!("{p}.mountPropagation"), mode, &modes));
            }
        }
    }
}

fn is_resource_name(name: &str) -> bool {
    matches!(name, "cpu" | "memory" | "ephemeral-storage")
        || name.starts_with("hugepages-")
        || name.contains('/') && is_qualified_name(name)
}

fn validate_resources(resources: &ResourceRequirements, path: &str, errors: &mut Vec<FieldError>) {
    let mut parse_all = |field: &str, map: &Option<BTreeMap<String, Quantity>>| -> HashMap<String, ParsedQuantity> {
        let mut parsed = HashMap::new();
        for (name, quantity) in map.iter().flatten() {
            let p = format!("{path}.{field}[{name}]");
            if !is_resource_name(name) {
                errors.push(FieldError::invalid(&p, name, "must be a standard resource type or fully qualified"));
            }
            if let Some(value) = check_quantity(&p, quantity, errors) {
                parsed.insert(name.clone(), value);
            }
        }
        parsed
    };
    let limits = parse_all("limits", &resources.limits);
    let requests = parse_all("requests", &resources.requests);
    for (name, request) in &requests {
        if let Some(limit) = limits.get(name)
            && request > limit
        {
            let shown = &resources.limits.as_ref().and_then(|l| l.get(name)).map(|q| q.0.clone()).unwrap_or_default();
            let value = &resources.requests.as_ref().and_then(|r| r.get(name)).map(|q| q.0.clone()).unwrap_or_default();
            errors.push(FieldError::invalid(
                format!("{path}.requests[{name}]"),
                value,
                format!("must be less than or equal to {name} limit of {shown}"),
            ));
        }
    }
}

fn check_quantity(path: &str, quantity: &Quantity, errors: &mut Vec<FieldError>) -> Option<ParsedQuantity> {
    match parse_quantity(&quantity.0) {
        Ok(value) if value.is_negative() => {
            errors.push(FieldError::invalid(path, &quantity.0, "must be greater than or equal to 0"));
            None
        }
        Ok(value) => Some(value),
        Err(e) => {
            errors.push(FieldError::invalid(path, &quantity.0, e));
            None
        }
    }
}

fn validate_probe(probe: &Probe, path: &str, success_must_be_one: bool, errors: &mut Vec<FieldError>) {
    let handlers = [probe.exec.is_some(), probe.http_get.is_some(), probe.tcp_socket.is_some(), probe.grpc.is_some()];
    match handlers.iter().filter(|h| **h).count() {
        0 => errors.push(FieldError::required(path).with_message("Required value: must specify a handler type")),
        1 => {}
        _ => errors.push(FieldError::forbidden(path, "may not specify more than 1 handler type")),
    }
    for (field, value) in [
        ("initialDelaySeconds", probe.initial_delay_seconds),
        ("timeoutSeconds", probe.timeout_seconds),
        ("periodSeconds", probe.period_seconds),
        ("successThreshold", probe.success_threshold),
        ("failureThreshold", probe.failure_threshold),
    ] {
        non_negative(&format!("{path}.{field}"), value.map(i64::from), errors);
    }
    if success_must_be_one && probe.success_threshold.is_some_and(|s| s != 1) {
        errors.push(FieldError::invalid(format!("{path}.successThreshold"), probe.success_threshold.unwrap_or(0), "must be 1"));
    }
    if probe.termination_grace_period_seconds.is_some_and(|s| s <= 0) {
        errors.push(FieldError::invalid(
            format!("{path}.terminationGracePeriodSeconds"),
            probe.termination_grace_period_seconds.unwrap_or(0),
            "must be greater than 0",
        ));
    }
    if let Some(http) = &probe.http_get {
        validate_port_ref(&http.port, &format!("{path}.httpGet.port"), errors);
    }
    if let Some(tcp) = &probe.tcp_socket {
        validate_port_ref(&tcp.port, &format!("{path}.tcpSocket.port"), errors);
    }
}

fn validate_handler(handler: &LifecycleHandler, path: &str, errors: &mut Vec<FieldError>) {
    let handlers = [handler.exec.is_some(), handler.http_get.is_some(), handler.tcp_socket.is_some(), handler.sleep.is_some()];
    match handlers.iter().filter(|h| **h).count() {
        0 => errors.push(FieldError::required(path).with_message("Required value: must specify a handler type")),
        1 => {}
        _ => errors.push(FieldError::forbidden(path, "may not specify more than 1 handler type")),
    }
    if let Some(http) = &handler.http_get {
        validate_port_ref(&http.port, &format!("{path}.httpGet.port"), errors);
    }
}

fn validate_port_ref(port: &IntOrString, path: &str, errors: &mut Vec<FieldError>) {
    match port {
        IntOrString::Int(n) if !(1..=65535).contains(n) => {
            errors.push(FieldError::invalid(path, n, "must be between 1 and 65535, inclusive"))
        }
        IntOrString::String(name) if !is_iana_svc_name(name) => {
            errors.push(FieldError::invalid(path, name, "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)"))
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::defaults;

    /// A defaulted pod from JSON, with `spec` merged over one valid container.
    fn pod(spec: Value) -> Pod {
        let mut base = json!({"metadata": {"name": "p", "namespace": "default"}, "spec": {"containers": [{"name": "c", "image": "i:1"}]}});
        if let (Value::Object(target), Value::Object(extra)) = (&mut base["spec"], spec) {
            target.extend(extra);
        }
        let mut pod: Pod = serde_json::from_value(base).unwrap();
        defaults::apply(&mut pod);
        pod
    }

    fn errors(spec: Value) -> Vec<String> {
        validate_pod(&pod(spec)).into_iter().map(|e| format!("{}: {}", e.path, e.message)).collect()
    }

    fn assert_one(spec: Value, expected: &str) {
        let found = errors(spec);
        assert!(found.iter().any(|e| e == expected), "expected {expected:?} in {found:?}");
    }

    #[test]
    fn a_plain_pod_is_valid() {
        assert_eq!(errors(json!({})), Vec::<String>::new());
    }

    #[test]
    fn names() {
        let mut bad = pod(json!({}));
        bad.metadata.name = Some("Web_1".into());
        bad.metadata.namespace = Some("kube.system".into());
        let found: Vec<_> = validate_pod(&bad).into_iter().map(|e| e.path).collect();
        assert_eq!(found, ["metadata.name", "metadata.namespace"]);
        assert_one(
            json!({"containers": [{"name": "A", "image": "i"}]}),
            "spec.containers[0].name: Invalid value: \"A\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character",
        );
        assert_one(json!({"initContainers": [{"name": "c", "image": "i"}]}), "spec.containers[0].name: Duplicate value: \"c\"");
        assert_one(json!({"containers": [{"name": "c"}]}), "spec.containers[0].image: Required value");
        assert_one(json!({"containers": []}), "spec.containers: Required value");
    }

    #[test]
    fn a_given_uid_must_be_one_safe_path_component() {
        for bad in ["../../etc", "a/b", "..", "", "x y"] {
            let mut pod = pod(json!({}));
            pod.metadata.uid = Some(bad.into());
            let found: Vec<_> = validate_pod(&pod).into_iter().map(|e| e.path).collect();
            assert_eq!(found, ["metadata.uid"], "{bad:?}");
        }
        let mut pod = pod(json!({}));
        pod.metadata.uid = Some("6f1c2d1e-2b7a-4f0e-9d1c-1a2b3c4d5e6f".into());
        assert!(validate_pod(&pod).is_empty());
    }

    #[test]
    fn labels_and_annotations() {
        let mut bad = pod(json!({}));
        bad.metadata.labels = Some(BTreeMap::from([("ok".into(), "-bad".into()), ("bad key!".into(), "v".into())]));
        let found: Vec<_> = validate_pod(&bad).into_iter().map(|e| e.path).collect();
        assert_eq!(found, ["metadata.labels[bad key!]", "metadata.labels[ok]"]);
    }

    #[test]
    fn ports() {
        assert_one(
            json!({"containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 70000}]}]}),
            "spec.containers[0].ports[0].containerPort: Invalid value: \"70000\": must be between 1 and 65535, inclusive",
        );
        assert_one(
            json!({"containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80, "name": "http"}, {"containerPort": 81, "name": "http"}]}]}),
            "spec.containers[0].ports[1].name: Duplicate value: \"http\"",
        );
        assert_one(
            json!({"containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80, "name": "-x"}]}]}),
            "spec.containers[0].ports[0].name: Invalid value: \"-x\": must be no more than 15 characters, contain only lowercase alphanumerics and '-', contain at least one letter, and not begin or end with '-' or contain '--'",
        );
        assert_one(
            json!({"containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80, "protocol": "HTTP"}]}]}),
            "spec.containers[0].ports[0].protocol: Unsupported value: \"HTTP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
        );
        assert_one(
            json!({"containers": [{"name": "a", "image": "i", "ports": [{"containerPort": 80, "hostPort": 8080}]}, {"name": "b", "image": "i", "ports": [{"containerPort": 81, "hostPort": 8080}]}]}),
            "spec.containers[1].ports[0].hostPort: Duplicate value: \"8080/TCP\"",
        );
        assert_one(
            json!({"hostNetwork": true, "containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80, "hostPort": 81}]}]}),
            "spec.containers[0].ports[0].containerPort: Invalid value: \"80\": must match `hostPort` when `hostNetwork` is true",
        );
    }

    #[test]
    fn volumes_and_mounts() {
        assert_one(json!({"volumes": [{"name": "v"}]}), "spec.volumes[0]: Required value: must specify a volume type");
        assert_one(
            json!({"volumes": [{"name": "v", "emptyDir": {}, "hostPath": {"path": "/x"}}]}),
            "spec.volumes[0]: Forbidden: may not specify more than 1 volume type",
        );
        assert_one(
            json!({"volumes": [{"name": "v", "emptyDir": {}}, {"name": "v", "emptyDir": {}}]}),
            "spec.volumes[1].name: Duplicate value: \"v\"",
        );
        assert_one(
            json!({"volumes": [{"name": "v", "hostPath": {"path": "/x", "type": "Dir"}}]}),
            "spec.volumes[0].hostPath.type: Unsupported value: \"Dir\": supported values: \"\", \"DirectoryOrCreate\", \"Directory\", \"FileOrCreate\", \"File\", \"Socket\", \"CharDevice\", \"BlockDevice\"",
        );
        assert_one(
            json!({"containers": [{"name": "c", "image": "i", "volumeMounts": [{"name": "nope", "mountPath": "/x"}]}]}),
            "spec.containers[0].volumeMounts[0].name: Not found: \"nope\"",
        );
        assert_one(
            json!({"volumes": [{"name": "v", "emptyDir": {}}], "containers": [{"name": "c", "image": "i", "volumeMounts": [{"name": "v", "mountPath": "/x", "subPath": "../etc"}]}]}),
            "spec.containers[0].volumeMounts[0].subPath: Invalid value: \"../etc\": must not contain '..'",
        );
        assert_one(
            json!({"volumes": [{"name": "v", "emptyDir": {}}], "containers": [{"name": "c", "image": "i", "volumeMounts": [{"name": "v", "mountPath": "/x", "subPathExpr": "/$(POD_NAME)"}]}]}),
            "spec.containers[0].volumeMounts[0].subPathExpr: Invalid value: \"/$(POD_NAME)\": must be a relative path",
        );
        assert_one(
            json!({"volumes": [{"name": "v", "emptyDir": {}}], "containers": [{"name": "c", "image": "i", "volumeMounts": [{"name": "v", "mountPath": "/x"}, {"name": "v", "mountPath": "/x"}]}]}),
            "spec.containers[0].volumeMounts[1].mountPath: Invalid value: \"/x\": must be unique",
        );
    }

    #[test]
    fn resources() {
        assert_one(
            json!({"containers": [{"name": "c", "image": "i", "resources": {"limits": {"memory": "1KiB"}}}]}),
            "spec.containers[0].resources.limits[memory]: Invalid value: \"1KiB\": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
        );
        assert_one(
            json!({"containers": [{"name": "c", "image": "i", "resources": {"limits": {"cpu": "500m"}, "requests": {"cpu": "1"}}}]}),
            "spec.containers[0].resources.requests[cpu]: Invalid value: \"1\": must be less than or equal to cpu limit of 500m",
        );
        assert_one(
            json!({"containers": [{"name": "c", "image": "i", "resources": {"requests": {"memory": "-1"}}}]}),
            "spec.containers[0].resources.requests[memory]: Invalid value: \"-1\": must be greater than or equal to 0",
        );
        assert_one(
            json!({"containers": [{"name": "c", "image": "i", "resources": {"requests": {"gpu": "1"}}}]}),
            "spec.containers[0].resources.requests[gpu]: Invalid value: \"gpu\": must be a standard resource type or fully qualified",
        );
        assert_eq!(
            errors(
                json!({"containers": [{"name": "c", "image": "i", "resources": {"limits": {"cpu": 2, "memory": "1Gi"}, "requests": {"cpu": "1500m", "memory": "1Gi"}}}]})
            ),
            Vec::<String>::new()
        );
    }

    #[test]
    fn probes_and_lifecycle() {
        assert_one(
            json!({"containers": [{"name": "c", "image": "i", "livenessProbe": {"periodSeconds": 5}}]}),
            "spec.containers[0].livenessProbe: Required value: must specify a handler type",
        );
        assert_one(
            json!({"containers": [{"name": "c", "image": "i", "livenessProbe": {"exec": {"command": ["true"]}, "tcpSocket": {"port": 80}}}]}),
            "spec.containers[0].livenessProbe: Forbidden: may not specify more than 1 handler type",
        );
        assert_one(
            json!({"containers": [{"name": "c", "image": "i", "livenessProbe": {"exec": {"command": ["true"]}, "successThreshold": 2}}]}),
            "spec.containers[0].livenessProbe.successThreshold: Invalid value: \"2\": must be 1",
        );
        assert_eq!(
            errors(
                json!({"containers": [{"name": "c", "image": "i", "readinessProbe": {"exec": {"command": ["true"]}, "successThreshold": 2}}]})
            ),
            Vec::<String>::new()
        );
        assert_one(
            json!({"containers": [{"name": "c", "image": "i", "readinessProbe": {"httpGet": {"port": 0}}}]}),
            "spec.containers[0].readinessProbe.httpGet.port: Invalid value: \"0\": must be between 1 and 65535, inclusive",
        );
        assert_one(
            json!({"containers": [{"name": "c", "image": "i", "lifecycle": {"preStop": {}}}]}),
            "spec.containers[0].lifecycle.preStop: Required value: must specify a handler type",
        );
        assert_one(
            json!({"initContainers": [{"name": "i", "image": "i", "livenessProbe": {"exec": {"command": ["true"]}}}]}),
            "spec.initContainers[0].livenessProbe: Forbidden: may not be set for init containers without restartPolicy=Always",
        );
        assert_eq!(
            errors(
                json!({"initContainers": [{"name": "s", "image": "i", "restartPolicy": "Always", "livenessProbe": {"exec": {"command": ["true"]}}}]})
            ),
            Vec::<String>::new()
        );
        assert_one(
            json!({"containers": [{"name": "c", "image": "i", "restartPolicy": "Always"}]}),
            "spec.containers[0].restartPolicy: Forbidden: may not be set for non-init containers",
        );
    }

    #[test]
    fn env() {
        assert_one(
            json!({"containers": [{"name": "c", "image": "i", "env": [{"name": "A=B", "value": "x"}]}]}),
            "spec.containers[0].env[0].name: Invalid value: \"A=B\": a valid environment variable name must consist only of printable ASCII characters other than '='",
        );
        assert_one(
            json!({"containers": [{"name": "c", "image": "i", "env": [{"name": "A", "valueFrom": {}}]}]}),
            "spec.containers[0].env[0].valueFrom: Invalid value: \"\": must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef`, `secretKeyRef` or `fileKeyRef`",
        );
        assert_one(
            json!({"containers": [{"name": "c", "image": "i", "env": [{"name": "A", "value": "v", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]}]}),
            "spec.containers[0].env[0].valueFrom: Invalid value: \"\": may not be specified when `value` is not empty",
        );
    }

    #[test]
    fn pod_level_fields() {
        assert_one(
            json!({"restartPolicy": "Sometimes"}),
            "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"",
        );
        assert_one(json!({"dnsPolicy": "None"}), "spec.dnsConfig: Required value: must provide `dnsConfig` when `dnsPolicy` is None");
        assert_one(
            json!({"dnsConfig": {"nameservers": ["1.1.1.1", "x"]}}),
            "spec.dnsConfig.nameservers[1]: Invalid value: \"x\": must be a valid IP address",
        );
        assert_one(
            json!({"activeDeadlineSeconds": 0}),
            "spec.activeDeadlineSeconds: Invalid value: \"0\": must be between 1 and 2147483647, inclusive",
        );
        assert_one(
            json!({"hostAliases": [{"ip": "nope", "hostnames": ["a"]}]}),
            "spec.hostAliases[0].ip: Invalid value: \"nope\": must be a valid IP address",
        );
    }

    #[test]
    fn helpers() {
        assert!(is_dns1123_label("a-1"));
        assert!(!is_dns1123_label("a_1"));
        assert!(!is_dns1123_label(&"a".repeat(64)));
        assert!(is_dns1123_subdomain("a.b-c.d"));
        assert!(is_qualified_name("example.com/app_name.x"));
        assert!(!is_qualified_name("Example.com/app"));
        assert!(is_iana_svc_name("http-alt"));
        assert!(!is_iana_svc_name("8080"));
        assert!(!is_iana_svc_name("a--b"));
    }
}
