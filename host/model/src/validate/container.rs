//! Containers: `validateContainers`, `validateInitContainers`, `validateContainerCommon` (ports,
//! env, envFrom, volume mounts and devices, pull policy, resources, resize policy) and
//! `validateContainerOnlyForPod`. Probes and lifecycle handlers are in [`super::probe`], security
//! contexts in [`super::security`].

use std::collections::{BTreeMap, HashMap, HashSet};

use k8s_openapi::api::core::v1::{Container, ContainerPort, EnvFromSource, EnvVar, ObjectFieldSelector, PodSpec, ResourceFieldSelector};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::names::{self, inclusive_range, push_invalid};
use super::volume::Volumes;
use super::{probe, security};
use crate::field::FieldError;
use crate::quantity::{ParsedQuantity, parse_quantity};

/// Field paths an env var may read through `fieldRef` (`validEnvDownwardAPIFieldPathExpressions`),
/// sorted as upstream lists them in its error.
const ENV_FIELD_PATHS: [&str; 9] = [
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];
/// Field paths a downwardAPI volume file may read (`validVolumeDownwardAPIFieldPathExpressions`).
pub(super) const VOLUME_FIELD_PATHS: [&str; 5] =
    ["metadata.annotations", "metadata.labels", "metadata.name", "metadata.namespace", "metadata.uid"];
/// Every field label `ConvertDownwardAPIFieldLabel` knows for `v1`.
const KNOWN_FIELD_LABELS: [&str; 14] = [
    "metadata.annotations",
    "metadata.labels",
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.serviceAccountName",
    "spec.schedulerName",
    "status.phase",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];
const RESOURCE_FIELD_PATHS: [&str; 6] =
    ["limits.cpu", "limits.ephemeral-storage", "limits.memory", "requests.cpu", "requests.ephemeral-storage", "requests.memory"];
const BYTE_DIVISORS: [&str; 13] = ["1", "1k", "1M", "1G", "1T", "1P", "1E", "1Ki", "1Mi", "1Gi", "1Ti", "1Pi", "1Ei"];

/// Containers and init containers, with names unique across both and host ports unique among
/// the app containers (and within each init container, since those run one at a time).
pub(super) fn validate_all(spec: &PodSpec, volumes: &Volumes, errors: &mut Vec<FieldError>) {
    let grace = spec.termination_grace_period_seconds;
    let ctx = Context {
        volumes,
        pod_restart_policy: spec.restart_policy.as_deref().unwrap_or_default(),
        host_users: spec.host_users.unwrap_or(true),
    };
    if spec.containers.is_empty() {
        errors.push(FieldError::required("spec.containers"));
    }
    let mut names = HashSet::new();
    for (i, c) in spec.containers.iter().enumerate() {
        let path = format!("spec.containers[{i}]");
        validate_common(c, &path, &ctx, errors);
        if !names.insert(c.name.as_str()) {
            errors.push(FieldError::duplicate(format!("{path}.name"), &c.name));
        }
        probe::validate_lifecycle_and_probes(c, &path, grace, errors);
        if c.restart_policy.is_some() {
            errors.push(FieldError::forbidden(format!("{path}.restartPolicy"), "may not be set for non-init containers"));
        }
    }
    check_host_port_conflicts(spec.containers.iter().enumerate(), "spec.containers", errors);
    for (i, c) in spec.init_containers.iter().flatten().enumerate() {
        let path = format!("spec.initContainers[{i}]");
        validate_common(c, &path, &ctx, errors);
        let sidecar = match c.restart_policy.as_deref() {
            None => false,
            Some("Always") => true,
            Some(other) => {
                errors.push(FieldError::not_supported(format!("{path}.restartPolicy"), other, &["Always"]));
                false
            }
        };
        if names.contains(c.name.as_str()) {
            errors.push(FieldError::duplicate(format!("{path}.name"), &c.name));
        } else if !c.name.is_empty() {
            names.insert(c.name.as_str());
        }
        check_host_port_conflicts(std::iter::once((i, c)), "spec.initContainers", errors);
        if sidecar {
            probe::validate_lifecycle_and_probes(c, &path, grace, errors);
        } else {
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
    }
}

struct Context<'a> {
    volumes: &'a Volumes,
    pod_restart_policy: &'a str,
    host_users: bool,
}

/// `validateContainerCommon` plus `validateContainerOnlyForPod`.
fn validate_common(c: &Container, path: &str, ctx: &Context<'_>, errors: &mut Vec<FieldError>) {
    if c.name.is_empty() {
        errors.push(FieldError::required(format!("{path}.name")));
    } else {
        push_invalid(errors, &format!("{path}.name"), &c.name, names::dns1123_label(&c.name));
    }
    let image = c.image.as_deref().unwrap_or_default();
    if image.is_empty() {
        errors.push(FieldError::required(format!("{path}.image")));
    }
    match c.termination_message_policy.as_deref() {
        None | Some("") => errors.push(FieldError::required(format!("{path}.terminationMessagePolicy"))),
        Some("File" | "FallbackToLogsOnError") => {}
        Some(other) => {
            errors.push(FieldError::not_supported(format!("{path}.terminationMessagePolicy"), other, &["File", "FallbackToLogsOnError"]))
        }
    }
    validate_ports(c.ports.as_deref().unwrap_or_default(), &format!("{path}.ports"), errors);
    validate_env(c.env.as_deref().unwrap_or_default(), &format!("{path}.env"), errors);
    validate_env_from(c.env_from.as_deref().unwrap_or_default(), &format!("{path}.envFrom"), errors);
    validate_mounts(c, path, ctx.volumes, errors);
    validate_devices(c, path, ctx.volumes, errors);
    validate_pull_policy(c.image_pull_policy.as_deref(), &format!("{path}.imagePullPolicy"), errors);
    if let Some(resources) = &c.resources {
        let resources_path = format!("{path}.resources");
        let empty = BTreeMap::new();
        validate_requirements(resources.limits.as_ref().unwrap_or(&empty), resources.requests.as_ref(), &resources_path, errors);
        for (i, claim) in resources.claims.iter().flatten().enumerate() {
            // A static pod has no resourceClaims (admission refuses them), so every name is unknown.
            errors.push(FieldError::new(
                format!("{resources_path}.claims[{i}]"),
                format!("Not found: \"{}\": must be one of the names in pod.spec.resourceClaims which is empty", claim.name),
            ));
        }
    }
    validate_resize_policy(c, path, ctx.pod_restart_policy, errors);
    security::validate_container_security_context(c, path, ctx.host_users, errors);
    if image.trim() != image {
        errors.push(FieldError::invalid(format!("{path}.image"), image, "must not have leading or trailing whitespace"));
    }
}

/// `validatePullPolicy`, also used for image volumes.
pub(super) fn validate_pull_policy(policy: Option<&str>, path: &str, errors: &mut Vec<FieldError>) {
    match policy {
        None | Some("") => errors.push(FieldError::required(path)),
        Some("Always" | "IfNotPresent" | "Never") => {}
        Some(other) => errors.push(FieldError::not_supported(path, other, &["Always", "IfNotPresent", "Never"])),
    }
}

/// `validateContainerPorts`.
fn validate_ports(ports: &[ContainerPort], path: &str, errors: &mut Vec<FieldError>) {
    let mut names = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        let p = format!("{path}[{i}]");
        if let Some(name) = port.name.as_deref().filter(|n| !n.is_empty()) {
            let messages = names::port_name(name);
            if !messages.is_empty() {
                push_invalid(errors, &format!("{p}.name"), name, messages);
            } else if !names.insert(name) {
                errors.push(FieldError::duplicate(format!("{p}.name"), name));
            }
        }
        if port.container_port == 0 {
            errors.push(FieldError::required(format!("{p}.containerPort")));
        } else if !(1..=65535).contains(&port.container_port) {
            errors.push(FieldError::invalid_unquoted(format!("{p}.containerPort"), port.container_port, inclusive_range(1, 65535)));
        }
        let host_port = port.host_port.unwrap_or(0);
        if host_port != 0 && !(1..=65535).contains(&host_port) {
            errors.push(FieldError::invalid_unquoted(format!("{p}.hostPort"), host_port, inclusive_range(1, 65535)));
        }
        match port.protocol.as_deref() {
            None | Some("") => errors.push(FieldError::required(format!("{p}.protocol"))),
            Some("SCTP" | "TCP" | "UDP") => {}
            Some(other) => errors.push(FieldError::not_supported(format!("{p}.protocol"), other, &["SCTP", "TCP", "UDP"])),
        }
    }
}

/// `AccumulateUniqueHostPorts`: a host port, protocol and host IP may be taken once.
fn check_host_port_conflicts<'a>(containers: impl Iterator<Item = (usize, &'a Container)>, list: &str, errors: &mut Vec<FieldError>) {
    let mut seen = HashSet::new();
    for (index, c) in containers {
        for (i, port) in c.ports.iter().flatten().enumerate() {
            let host_port = port.host_port.unwrap_or(0);
            if host_port == 0 {
                continue;
            }
            let key =
                format!("{}/{}/{host_port}", port.protocol.as_deref().unwrap_or_default(), port.host_ip.as_deref().unwrap_or_default());
            if !seen.insert(key.clone()) {
                errors.push(FieldError::duplicate(format!("{list}[{index}].ports[{i}].hostPort"), key));
            }
        }
    }
}

/// `ValidateEnv` with the relaxed name rule of 1.34.
fn validate_env(env: &[EnvVar], path: &str, errors: &mut Vec<FieldError>) {
    for (i, var) in env.iter().enumerate() {
        let p = format!("{path}[{i}]");
        if var.name.is_empty() {
            errors.push(FieldError::required(format!("{p}.name")));
        } else {
            push_invalid(errors, &format!("{p}.name"), &var.name, names::relaxed_env_var_name(&var.name));
        }
        let Some(from) = &var.value_from else { continue };
        let from_path = format!("{p}.valueFrom");
        let mut sources = 0;
        if let Some(field_ref) = &from.field_ref {
            sources += 1;
            validate_object_field_selector(field_ref, &ENV_FIELD_PATHS, &format!("{from_path}.fieldRef"), errors);
        }
        if let Some(resource_ref) = &from.resource_field_ref {
            sources += 1;
            validate_resource_field_selector(resource_ref, false, &format!("{from_path}.resourceFieldRef"), errors);
        }
        // Admission refuses configMapKeyRef and secretKeyRef; they still count as a source here.
        sources += usize::from(from.config_map_key_ref.is_some())
            + usize::from(from.secret_key_ref.is_some())
            + usize::from(from.file_key_ref.is_some());
        if sources == 0 {
            errors.push(FieldError::invalid(
                &from_path,
                "",
                "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef`, `secretKeyRef` or `fileKeyRef`",
            ));
        } else if var.value.as_deref().is_some_and(|v| !v.is_empty()) {
            errors.push(FieldError::invalid(&from_path, "", "may not be specified when `value` is not empty"));
        } else if sources > 1 {
            errors.push(FieldError::invalid(&from_path, "", "may not have more than one field specified at a time"));
        }
    }
}

/// `validateObjectFieldSelector`: the field must be one the downward API offers in this place.
pub(super) fn validate_object_field_selector(selector: &ObjectFieldSelector, allowed: &[&str], path: &str, errors: &mut Vec<FieldError>) {
    // The API server defaults an empty apiVersion to v1 before validating.
    let version = selector.api_version.as_deref().unwrap_or("v1");
    if version.is_empty() {
        errors.push(FieldError::required(format!("{path}.apiVersion")));
        return;
    }
    let field_path = selector.field_path.as_str();
    if field_path.is_empty() {
        errors.push(FieldError::required(format!("{path}.fieldPath")));
        return;
    }
    let conversion_error = if version != "v1" {
        Some(format!("unsupported pod version: {version}"))
    } else if let Some((base, _)) = split_subscript(field_path) {
        (!matches!(base, "metadata.annotations" | "metadata.labels"))
            .then(|| format!("field label does not support subscript: {field_path}"))
    } else if field_path == "spec.host" || KNOWN_FIELD_LABELS.contains(&field_path) {
        None
    } else {
        Some(format!("field label not supported: {field_path}"))
    };
    if let Some(error) = conversion_error {
        errors.push(FieldError::invalid(format!("{path}.fieldPath"), field_path, format!("error converting fieldPath: {error}")));
        return;
    }
    match split_subscript(field_path) {
        Some(("metadata.annotations", key)) => {
            let key = key.to_lowercase();
            push_invalid(errors, path, &key, names::qualified_name(&key));
        }
        Some((_, key)) => push_invalid(errors, path, key, names::qualified_name(key)),
        None => {
            // `spec.host` is the old name of `spec.nodeName`.
            let converted = if field_path == "spec.host" { "spec.nodeName" } else { field_path };
            if !allowed.contains(&converted) {
                errors.push(FieldError::not_supported(format!("{path}.fieldPath"), converted, allowed));
            }
        }
    }
}

/// `fieldpath.SplitMaybeSubscriptedPath`: `metadata.labels['key']` → (`metadata.labels`, `key`).
fn split_subscript(path: &str) -> Option<(&str, &str)> {
    let inner = path.strip_suffix("']")?;
    let (base, key) = inner.split_once("['")?;
    (!base.is_empty()).then_some((base, key))
}

/// `validateContainerResourceFieldSelector` with the divisor check; `volume` requires the
/// container name, as downwardAPI volume files must name one.
pub(super) fn validate_resource_field_selector(selector: &ResourceFieldSelector, volume: bool, path: &str, errors: &mut Vec<FieldError>) {
    let resource = selector.resource.as_str();
    if volume && selector.container_name.as_deref().unwrap_or_default().is_empty() {
        errors.push(FieldError::required(format!("{path}.containerName")));
    } else if resource.is_empty() {
        errors.push(FieldError::required(format!("{path}.resource")));
    } else if !RESOURCE_FIELD_PATHS.contains(&resource)
        && !resource.starts_with("limits.hugepages-")
        && !resource.starts_with("requests.hugepages-")
    {
        errors.push(FieldError::not_supported(format!("{path}.resource"), resource, &RESOURCE_FIELD_PATHS));
    }
    let Some(divisor) = selector.divisor.as_ref().and_then(|d| parse_quantity(&d.0).ok()) else { return };
    if divisor == ParsedQuantity::ZERO {
        return;
    }
    let one_of = |allowed: &[&str]| allowed.iter().any(|a| parse_quantity(a).is_ok_and(|q| q == divisor));
    let byte_message = |kind: &str| {
        format!("only divisor's values 1, 1k, 1M, 1G, 1T, 1P, 1E, 1Ki, 1Mi, 1Gi, 1Ti, 1Pi, 1Ei are supported with the {kind} resource")
    };
    let message = match resource {
        "limits.cpu" | "requests.cpu" if !one_of(&["1m", "1"]) => {
            Some("only divisor's values 1m and 1 are supported with the cpu resource".to_owned())
        }
        "limits.memory" | "requests.memory" if !one_of(&BYTE_DIVISORS) => Some(byte_message("memory")),
        "limits.ephemeral-storage" | "requests.ephemeral-storage" if !one_of(&BYTE_DIVISORS) => {
            Some(byte_message("local ephemeral storage"))
        }
        r if (r.starts_with("limits.hugepages-") || r.starts_with("requests.hugepages-")) && !one_of(&BYTE_DIVISORS) => {
            Some(byte_message("hugepages"))
        }
        _ => None,
    };
    if let Some(message) = message {
        errors.push(FieldError::invalid(format!("{path}.divisor"), resource, message));
    }
}

/// `ValidateEnvFrom`. The "must specify one of" error sits on the list's path, as upstream's.
fn validate_env_from(sources: &[EnvFromSource], path: &str, errors: &mut Vec<FieldError>) {
    for (i, source) in sources.iter().enumerate() {
        if let Some(prefix) = source.prefix.as_deref().filter(|p| !p.is_empty()) {
            push_invalid(errors, &format!("{path}[{i}].prefix"), prefix, names::relaxed_env_var_name(prefix));
        }
        match usize::from(source.config_map_ref.is_some()) + usize::from(source.secret_ref.is_some()) {
            0 => errors.push(FieldError::invalid(path, "", "must specify one of: `configMapRef` or `secretRef`")),
            1 => {}
            _ => errors.push(FieldError::invalid(path, "", "may not have more than one field specified at a time")),
        }
    }
}

/// `ValidateVolumeMounts`. The subPath, mountPropagation and recursiveReadOnly errors sit on
/// the list's path without an index: upstream passes the list's path to those checks.
fn validate_mounts(c: &Container, path: &str, volumes: &Volumes, errors: &mut Vec<FieldError>) {
    let list = format!("{path}.volumeMounts");
    let devices: HashMap<&str, &str> = c.volume_devices.iter().flatten().map(|d| (d.name.as_str(), d.device_path.as_str())).collect();
    let privileged = c.security_context.as_ref().and_then(|s| s.privileged).unwrap_or(false);
    let mut mount_paths = HashSet::new();
    for (i, mount) in c.volume_mounts.iter().flatten().enumerate() {
        let p = format!("{list}[{i}]");
        if mount.name.is_empty() {
            errors.push(FieldError::required(format!("{p}.name")));
        }
        if !volumes.contains_key(&mount.name) {
            errors.push(FieldError::not_found(format!("{p}.name"), &mount.name));
        }
        if mount.mount_path.is_empty() {
            errors.push(FieldError::required(format!("{p}.mountPath")));
        }
        if !mount_paths.insert(mount.mount_path.as_str()) {
            errors.push(FieldError::invalid(format!("{p}.mountPath"), &mount.mount_path, "must be unique"));
        }
        if devices.contains_key(mount.name.as_str()) {
            errors.push(FieldError::invalid(format!("{p}.name"), &mount.name, "must not already exist in volumeDevices"));
        }
        if devices.values().any(|d| *d == mount.mount_path) {
            errors.push(FieldError::invalid(
                format!("{p}.mountPath"),
                &mount.mount_path,
                "must not already exist as a path in volumeDevices",
            ));
        }
        let sub_path = mount.sub_path.as_deref().unwrap_or_default();
        if !sub_path.is_empty() {
            local_descending_path(sub_path, &format!("{list}.subPath"), errors);
        }
        let sub_path_expr = mount.sub_path_expr.as_deref().unwrap_or_default();
        if !sub_path_expr.is_empty() {
            if !sub_path.is_empty() {
                errors.push(FieldError::invalid(
                    format!("{p}.subPathExpr"),
                    sub_path_expr,
                    "subPathExpr and subPath are mutually exclusive",
                ));
            }
            local_descending_path(sub_path_expr, &format!("{list}.subPathExpr"), errors);
        }
        if let Some(mode) = mount.mount_propagation.as_deref() {
            let modes = ["Bidirectional", "HostToContainer", "None"];
            if !modes.contains(&mode) {
                errors.push(FieldError::not_supported(format!("{list}.mountPropagation"), mode, &modes));
            }
            if mode == "Bidirectional" && !privileged {
                errors.push(FieldError::forbidden(
                    format!("{list}.mountPropagation"),
                    "Bidirectional mount propagation is available only to privileged containers",
                ));
            }
        }
        match mount.recursive_read_only.as_deref() {
            None | Some("Disabled") => {}
            Some("Enabled" | "IfPossible") => {
                if !mount.read_only.unwrap_or(false) {
                    errors.push(FieldError::forbidden(format!("{list}.recursiveReadOnly"), "may only be specified when readOnly is true"));
                }
                if mount.mount_propagation.as_deref().is_some_and(|m| m != "None") {
                    errors.push(FieldError::forbidden(
                        format!("{list}.recursiveReadOnly"),
                        "may only be specified when mountPropagation is None or not specified",
                    ));
                }
            }
            Some(other) => {
                errors.push(FieldError::not_supported(format!("{list}.recursiveReadOnly"), other, &["Disabled", "Enabled", "IfPossible"]))
            }
        }
    }
}

/// `ValidateVolumeDevices`. Block devices need a PersistentVolumeClaim or ephemeral volume,
/// which a static pod cannot have, so a device naming an existing volume is always refused.
fn validate_devices(c: &Container, path: &str, volumes: &Volumes, errors: &mut Vec<FieldError>) {
    let mounts: HashMap<&str, &str> = c.volume_mounts.iter().flatten().map(|m| (m.name.as_str(), m.mount_path.as_str())).collect();
    let mut device_paths = HashSet::new();
    let mut device_names = HashSet::new();
    for (i, device) in c.volume_devices.iter().flatten().enumerate() {
        let p = format!("{path}.volumeDevices[{i}]");
        let (name, device_path) = (device.name.as_str(), device.device_path.as_str());
        if name.is_empty() {
            errors.push(FieldError::required(format!("{p}.name")));
        }
        if device_names.contains(name) {
            errors.push(FieldError::invalid(format!("{p}.name"), name, "must be unique"));
        }
        match volumes.get(name) {
            Some(is_claim) if !is_claim => errors.push(FieldError::invalid(
                format!("{p}.name"),
                name,
                "can only use volume source type of PersistentVolumeClaim or Ephemeral for block mode",
            )),
            Some(_) => {}
            None => errors.push(FieldError::not_found(format!("{p}.name"), name)),
        }
        if device_path.is_empty() {
            errors.push(FieldError::required(format!("{p}.devicePath")));
        }
        if device_paths.contains(device_path) {
            errors.push(FieldError::invalid(format!("{p}.devicePath"), device_path, "must be unique"));
        }
        if !device_path.is_empty() && has_backsteps(device_path) {
            errors.push(FieldError::invalid(format!("{p}.devicePath"), device_path, "can not contain backsteps ('..')"));
        } else {
            device_paths.insert(device_path);
        }
        if mounts.contains_key(name) {
            errors.push(FieldError::invalid(format!("{p}.name"), name, "must not already exist in volumeMounts"));
        }
        if mounts.values().any(|m| *m == device_path) {
            errors.push(FieldError::invalid(format!("{p}.devicePath"), device_path, "must not already exist as a path in volumeMounts"));
        }
        if !name.is_empty() {
            device_names.insert(name);
        }
    }
}

/// Whether a path has a `..` element (`validatePathNoBacksteps`).
pub(super) fn has_backsteps(path: &str) -> bool {
    path.split(['/', '\\']).any(|part| part == "..")
}

/// `validatePathNoBacksteps`.
pub(super) fn no_backsteps(path: &str, field: &str, errors: &mut Vec<FieldError>) {
    if has_backsteps(path) {
        errors.push(FieldError::invalid(field, path, "must not contain '..'"));
    }
}

/// `validateLocalDescendingPath`: relative, without `..` elements.
pub(super) fn local_descending_path(path: &str, field: &str, errors: &mut Vec<FieldError>) {
    if path.starts_with('/') {
        errors.push(FieldError::invalid(field, path, "must be a relative path"));
    }
    no_backsteps(path, field, errors);
}

/// `ValidateLocalNonReservedPath`: a local descending path that does not start with `..`.
pub(super) fn local_non_reserved_path(path: &str, field: &str, errors: &mut Vec<FieldError>) {
    local_descending_path(path, field, errors);
    if path.starts_with("..") && !path.starts_with("../") {
        errors.push(FieldError::invalid(field, path, "must not start with '..'"));
    }
}

fn is_native_resource(name: &str) -> bool {
    !name.contains('/') || name.contains("kubernetes.io/")
}

fn is_hugepages(name: &str) -> bool {
    name.starts_with("hugepages-")
}

/// `IsExtendedResourceName`: fully qualified, outside `kubernetes.io`, not a quota name.
fn is_extended_resource(name: &str) -> bool {
    !is_native_resource(name) && !name.starts_with("requests.") && names::qualified_name(&format!("requests.{name}")).is_empty()
}

/// `helper.IsStandardResourceName`, for the names without a `/`.
fn is_standard_resource(name: &str) -> bool {
    const STANDARD: [&str; 21] = [
        "cpu",
        "memory",
        "ephemeral-storage",
        "requests.cpu",
        "requests.memory",
        "requests.ephemeral-storage",
        "limits.cpu",
        "limits.memory",
        "limits.ephemeral-storage",
        "pods",
        "services",
        "replicationcontrollers",
        "resourcequotas",
        "secrets",
        "configmaps",
        "persistentvolumeclaims",
        "storage",
        "requests.storage",
        "services.nodeports",
        "services.loadbalancers",
        "count/pods",
    ];
    STANDARD.contains(&name) || is_hugepages(name) || name.starts_with("requests.hugepages-")
}

/// `validateContainerResourceName`: a standard container resource, a `kubernetes.io/` one or an
/// extended resource.
fn resource_name_errors(name: &str, path: &str, errors: &mut Vec<FieldError>) {
    let messages = names::qualified_name(name);
    if !messages.is_empty() {
        errors.extend(messages.into_iter().map(|m| FieldError::invalid_unquoted(path, name, m)));
        return;
    }
    if !name.contains('/') {
        if !is_standard_resource(name) {
            errors.push(FieldError::invalid_unquoted(path, name, "must be a standard resource type or fully qualified"));
        } else if !matches!(name, "cpu" | "memory" | "ephemeral-storage") && !is_hugepages(name) {
            errors.push(FieldError::invalid_unquoted(path, name, "must be a standard resource for containers"));
        }
    } else if !is_native_resource(name) && !is_extended_resource(name) {
        errors.push(FieldError::invalid_unquoted(path, name, "doesn't follow extended resource name standard"));
    }
}

/// `ValidateResourceQuantityValue`: not negative, and whole for extended resources.
fn quantity_value_errors(name: &str, quantity: &Quantity, path: &str, errors: &mut Vec<FieldError>) -> Option<ParsedQuantity> {
    let Ok(value) = parse_quantity(&quantity.0) else {
        // The API server refuses these while decoding, before validation.
        errors.push(FieldError::invalid(path, &quantity.0, crate::quantity::QuantityError));
        return None;
    };
    if value.is_negative() {
        errors.push(FieldError::invalid(path, &quantity.0, "must be greater than or equal to 0"));
    }
    if is_extended_resource(name) && value.as_millis_ceil() % 1000 != 0 {
        errors.push(FieldError::invalid_unquoted(path, &quantity.0, "must be an integer"));
    }
    Some(value)
}

/// `spec.overhead`: limits only, as upstream validates it.
pub(super) fn validate_resource_list(list: &BTreeMap<String, Quantity>, path: &str, errors: &mut Vec<FieldError>) {
    validate_requirements(list, None, path, errors);
}

/// `validateResourceRequirements` with the container resource names.
fn validate_requirements(
    limits: &BTreeMap<String, Quantity>,
    requests: Option<&BTreeMap<String, Quantity>>,
    path: &str,
    errors: &mut Vec<FieldError>,
) {
    let mut cpu_or_memory = false;
    let mut hugepages = false;
    let mut parsed_limits = HashMap::new();
    for (name, quantity) in limits {
        let p = format!("{path}.limits[{name}]");
        resource_name_errors(name, &p, errors);
        if let Some(value) = quantity_value_errors(name, quantity, &p, errors) {
            parsed_limits.insert(name.as_str(), value);
            if is_hugepages(name) {
                hugepages = true;
                hugepage_multiple(name, quantity, value, &p, errors);
            }
        }
        cpu_or_memory |= matches!(name.as_str(), "cpu" | "memory");
    }
    for (name, quantity) in requests.into_iter().flatten() {
        let p = format!("{path}.requests[{name}]");
        resource_name_errors(name, &p, errors);
        let value = quantity_value_errors(name, quantity, &p, errors);
        let overcommit = is_native_resource(name) && !is_hugepages(name);
        match (value, parsed_limits.get(name.as_str())) {
            (Some(request), Some(limit)) => {
                let shown = &limits[name].0;
                if request != *limit && !overcommit {
                    errors.push(FieldError::invalid(
                        format!("{path}.requests"),
                        &quantity.0,
                        format!("must be equal to {name} limit of {shown}"),
                    ));
                } else if request > *limit {
                    errors.push(FieldError::invalid(
                        format!("{path}.requests"),
                        &quantity.0,
                        format!("must be less than or equal to {name} limit of {shown}"),
                    ));
                }
            }
            _ if !overcommit && !limits.contains_key(name) => {
                errors.push(FieldError::required_because(format!("{path}.limits"), "Limit must be set for non overcommitable resources"))
            }
            _ => {}
        }
        if let Some(value) = value
            && is_hugepages(name)
        {
            hugepages = true;
            hugepage_multiple(name, quantity, value, &p, errors);
        }
        cpu_or_memory |= matches!(name.as_str(), "cpu" | "memory");
    }
    if hugepages && !cpu_or_memory {
        errors.push(FieldError::forbidden(path, "HugePages require cpu or memory"));
    }
}

/// `validateResourceQuantityHugePageValue`: a whole number of pages.
fn hugepage_multiple(name: &str, quantity: &Quantity, value: ParsedQuantity, path: &str, errors: &mut Vec<FieldError>) {
    let page = name.strip_prefix("hugepages-").and_then(|size| parse_quantity(size).ok());
    let divisible = page.is_some_and(|page| {
        let page = page.as_units_ceil();
        page > 0 && value.as_units_ceil() % page == 0
    });
    if !divisible {
        errors.push(FieldError::invalid(path, &quantity.0, format!("{} is not positive integer multiple of {name}", quantity.0)));
    }
}

/// `validateResizePolicy`.
fn validate_resize_policy(c: &Container, path: &str, pod_restart_policy: &str, errors: &mut Vec<FieldError>) {
    let list = format!("{path}.resizePolicy");
    let mut seen = HashSet::new();
    for (i, policy) in c.resize_policy.iter().flatten().enumerate() {
        if !seen.insert(policy.resource_name.as_str()) {
            errors.push(FieldError::new(format!("{list}[{i}]"), format!("Duplicate value: {}", policy.resource_name)));
        }
        match policy.resource_name.as_str() {
            "cpu" | "memory" => {}
            "" => errors.push(FieldError::required(&list)),
            other => errors.push(FieldError::new(&list, format!("Unsupported value: {other}: supported values: \"cpu\", \"memory\""))),
        }
        match policy.restart_policy.as_str() {
            "NotRequired" | "RestartContainer" => {}
            "" => errors.push(FieldError::required(&list)),
            other => errors.push(FieldError::not_supported(&list, other, &["NotRequired", "RestartContainer"])),
        }
        if pod_restart_policy == "Never" && policy.restart_policy != "NotRequired" {
            errors.push(FieldError::invalid(&list, &policy.restart_policy, "must be 'NotRequired' when `restartPolicy` is 'Never'"));
        }
    }
}
