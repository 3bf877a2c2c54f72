//! Security: `ValidateSecurityContext` (containers), `validatePodSpecSecurityContext`, sysctls,
//! seccomp and AppArmor profiles and their deprecated annotations, `validateOS` with
//! `validateLinux`/`validateWindows`.

use std::collections::{BTreeMap, HashSet};

use k8s_openapi::api::core::v1::{AppArmorProfile, Container, PodSpec, SeccompProfile, SecurityContext};

use super::container::local_descending_path;
use super::names::inclusive_range;
use crate::field::FieldError;

const MAX_ID: i64 = 0xffff_ffff;
const SYSCTL_MAX: usize = 253;
const SYSCTL_REGEX: &str = "^([a-z0-9]([-_a-z0-9]*[a-z0-9])?[\\./])*[a-z0-9]([-_a-z0-9]*[a-z0-9])?$";
const SECCOMP_POD_ANNOTATION: &str = "seccomp.security.alpha.kubernetes.io/pod";
const SECCOMP_CONTAINER_PREFIX: &str = "container.seccomp.security.alpha.kubernetes.io/";
const APPARMOR_PREFIX: &str = "container.apparmor.security.beta.kubernetes.io/";
const APPARMOR_LOCALHOST_MAX: usize = 4095;
/// sysctls that live in the IPC namespace (`utilsysctl.GetNamespace`), besides `fs.mqueue.*`.
const IPC_SYSCTLS: [&str; 8] = [
    "kernel.shmmax",
    "kernel.shmall",
    "kernel.shmmni",
    "kernel.shm_rmid_forced",
    "kernel.msgmax",
    "kernel.msgmnb",
    "kernel.msgmni",
    "kernel.sem",
];

fn id_range(path: String, value: Option<i64>, errors: &mut Vec<FieldError>) {
    if let Some(id) = value
        && !(0..=MAX_ID).contains(&id)
    {
        errors.push(FieldError::invalid_unquoted(path, id, inclusive_range(0, MAX_ID)));
    }
}

/// A whole object as the value of an `Invalid value` error. Upstream prints Go's `%#v` of its
/// internal struct (pointer addresses included); the object's JSON says the same thing legibly.
fn object<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// `ValidateSecurityContext` for one container. `privileged` is allowed: `--allow-privileged`
/// defaults to true and static pods are how control planes run privileged.
pub(super) fn validate_container_security_context(c: &Container, path: &str, host_users: bool, errors: &mut Vec<FieldError>) {
    let Some(sc) = &c.security_context else { return };
    let path = format!("{path}.securityContext");
    id_range(format!("{path}.runAsUser"), sc.run_as_user, errors);
    id_range(format!("{path}.runAsGroup"), sc.run_as_group, errors);
    if let Some(mount) = sc.proc_mount.as_deref() {
        if !matches!(mount, "Default" | "Unmasked") {
            errors.push(FieldError::not_supported(format!("{path}.procMount"), mount, &["Default", "Unmasked"]));
        }
        if host_users && mount == "Unmasked" {
            errors.push(FieldError::invalid(format!("{path}.procMount"), mount, "`hostUsers` must be false to use `Unmasked`"));
        }
    }
    validate_seccomp(sc.seccomp_profile.as_ref(), &format!("{path}.seccompProfile"), errors);
    if sc.allow_privilege_escalation == Some(false) {
        if sc.privileged == Some(true) {
            errors.push(FieldError::invalid_unquoted(
                &path,
                object(sc),
                "cannot set `allowPrivilegeEscalation` to false and `privileged` to true",
            ));
        }
        for cap in sc.capabilities.iter().flat_map(|c| c.add.iter().flatten()) {
            if cap == "CAP_SYS_ADMIN" {
                errors.push(FieldError::invalid_unquoted(
                    &path,
                    object(sc),
                    "cannot set `allowPrivilegeEscalation` to false and `capabilities.Add` CAP_SYS_ADMIN",
                ));
            }
        }
    }
    validate_apparmor(sc.app_armor_profile.as_ref(), &format!("{path}.appArmorProfile"), errors);
}

/// `validateSeccompProfileField`.
fn validate_seccomp(profile: Option<&SeccompProfile>, path: &str, errors: &mut Vec<FieldError>) {
    let Some(profile) = profile else { return };
    match profile.type_.as_str() {
        "Localhost" | "RuntimeDefault" | "Unconfined" => {}
        "" => errors.push(FieldError::required_because(format!("{path}.type"), "type is required when seccompProfile is set")),
        other => errors.push(FieldError::not_supported(format!("{path}.type"), other, &["Localhost", "RuntimeDefault", "Unconfined"])),
    }
    match (profile.type_.as_str(), profile.localhost_profile.as_deref()) {
        ("Localhost", None) => {
            errors.push(FieldError::required_because(format!("{path}.localhostProfile"), "must be set when seccomp type is Localhost"))
        }
        ("Localhost", Some(local)) => local_descending_path(local, &format!("{path}.localhostProfile"), errors),
        (_, Some(_)) => errors.push(FieldError::invalid_unquoted(
            format!("{path}.localhostProfile"),
            object(profile),
            "can only be set when seccomp type is Localhost",
        )),
        (_, None) => {}
    }
}

/// `ValidateAppArmorProfileField`.
fn validate_apparmor(profile: Option<&AppArmorProfile>, path: &str, errors: &mut Vec<FieldError>) {
    let Some(profile) = profile else { return };
    let local_path = format!("{path}.localhostProfile");
    match (profile.type_.as_str(), profile.localhost_profile.as_deref()) {
        ("Localhost", None) => errors.push(FieldError::required_because(local_path, "must be set when AppArmor type is Localhost")),
        ("Localhost", Some(local)) => {
            if local.trim() != local {
                errors.push(FieldError::invalid(&local_path, local, "must not be padded with whitespace"));
            } else if local.is_empty() {
                errors.push(FieldError::required_because(&local_path, "must be set when AppArmor type is Localhost"));
            }
            if local.len() > APPARMOR_LOCALHOST_MAX {
                errors.push(FieldError::too_long(&local_path, APPARMOR_LOCALHOST_MAX));
            }
        }
        ("RuntimeDefault" | "Unconfined", Some(local)) => {
            errors.push(FieldError::invalid(local_path, local, "can only be set when AppArmor type is Localhost"))
        }
        ("RuntimeDefault" | "Unconfined", None) => {}
        ("", _) => errors.push(FieldError::required_because(format!("{path}.type"), "type is required when appArmorProfile is set")),
        (other, _) => errors.push(FieldError::not_supported(format!("{path}.type"), other, &["Localhost", "RuntimeDefault", "Unconfined"])),
    }
}

/// `validatePodSpecSecurityContext`, with `shareProcessNamespace` and `hostPID`, which the
/// internal API keeps in the pod's security context (hence the path).
pub(super) fn validate_pod_security_context(spec: &PodSpec, errors: &mut Vec<FieldError>) {
    let path = "spec.securityContext";
    if spec.share_process_namespace == Some(true) && spec.host_pid == Some(true) {
        errors.push(FieldError::invalid_unquoted(
            format!("{path}.shareProcessNamespace"),
            true,
            "ShareProcessNamespace and HostPID cannot both be enabled",
        ));
    }
    let Some(sc) = &spec.security_context else { return };
    id_range(format!("{path}.fsGroup"), sc.fs_group, errors);
    id_range(format!("{path}.runAsUser"), sc.run_as_user, errors);
    id_range(format!("{path}.runAsGroup"), sc.run_as_group, errors);
    for (i, gid) in sc.supplemental_groups.iter().flatten().enumerate() {
        id_range(format!("{path}.supplementalGroups[{i}]"), Some(*gid), errors);
    }
    let mut names = HashSet::new();
    for (i, sysctl) in sc.sysctls.iter().flatten().enumerate() {
        let name_path = format!("{path}.sysctls[{i}].name");
        let name = sysctl.name.as_str();
        if name.is_empty() {
            errors.push(FieldError::required(&name_path));
        } else if !is_sysctl_name(name) {
            errors.push(FieldError::invalid(
                &name_path,
                name,
                format!("must have at most {SYSCTL_MAX} characters and match regex {SYSCTL_REGEX}"),
            ));
        } else if names.contains(name) {
            errors.push(FieldError::duplicate(&name_path, name));
        }
        let normalized = normalize_sysctl(name);
        if spec.host_network == Some(true) && normalized.starts_with("net.") {
            errors.push(FieldError::invalid(&name_path, name, "may not be specified when 'hostNetwork' is true"));
        } else if spec.host_ipc == Some(true) && (IPC_SYSCTLS.contains(&normalized.as_str()) || normalized.starts_with("fs.mqueue.")) {
            errors.push(FieldError::invalid(&name_path, name, "may not be specified when 'hostIPC' is true"));
        }
        names.insert(name);
    }
    if let Some(policy) = sc.fs_group_change_policy.as_deref()
        && !matches!(policy, "Always" | "OnRootMismatch")
    {
        errors.push(FieldError::not_supported(format!("{path}.fsGroupChangePolicy"), policy, &["Always", "OnRootMismatch"]));
    }
    validate_seccomp(sc.seccomp_profile.as_ref(), &format!("{path}.seccompProfile"), errors);
    validate_apparmor(sc.app_armor_profile.as_ref(), &format!("{path}.appArmorProfile"), errors);
    if let Some(policy) = sc.supplemental_groups_policy.as_deref()
        && !matches!(policy, "Merge" | "Strict")
    {
        errors.push(FieldError::not_supported(format!("{path}.supplementalGroupsPolicy"), policy, &["Merge", "Strict"]));
    }
    if let Some(policy) = sc.se_linux_change_policy.as_deref()
        && !matches!(policy, "MountOption" | "Recursive")
    {
        errors.push(FieldError::not_supported(format!("{path}.seLinuxChangePolicy"), policy, &["MountOption", "Recursive"]));
    }
}

/// `IsValidSysctlName`: dot- or slash-separated segments of `[a-z0-9]([-_a-z0-9]*[a-z0-9])?`.
fn is_sysctl_name(name: &str) -> bool {
    let segment_ok = |s: &str| {
        let b = s.as_bytes();
        !b.is_empty()
            && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'-' | b'_'))
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
    };
    name.len() <= SYSCTL_MAX && name.split(['.', '/']).all(segment_ok)
}

/// A sysctl written with `/` as its separator means the same as with `.` (`NormalizeName`).
fn normalize_sysctl(name: &str) -> String {
    match name.find(['.', '/']) {
        Some(i) if name.as_bytes()[i] == b'/' => name
            .chars()
            .map(|c| {
                if c == '/' {
                    '.'
                } else if c == '.' {
                    '/'
                } else {
                    c
                }
            })
            .collect(),
        _ => name.to_owned(),
    }
}

/// `validateOS` with `validateLinux` and `validateWindows`.
pub(super) fn validate_os(spec: &PodSpec, errors: &mut Vec<FieldError>) {
    let Some(os) = &spec.os else { return };
    match os.name.as_str() {
        "" => errors.push(FieldError::required_because("spec.os.name", "cannot be empty")),
        "linux" => {
            if spec.security_context.as_ref().is_some_and(|sc| sc.windows_options.is_some()) {
                errors.push(FieldError::forbidden("spec.securityContext.windowsOptions", "windows options cannot be set for a linux pod"));
            }
            for (path, c) in containers_with_paths(spec) {
                if c.security_context.as_ref().is_some_and(|sc| sc.windows_options.is_some()) {
                    errors.push(FieldError::forbidden(
                        format!("{path}.securityContext.windowsOptions"),
                        "windows options cannot be set for a linux pod",
                    ));
                }
            }
        }
        "windows" => validate_windows(spec, errors),
        other => errors.push(FieldError::not_supported("spec.os", other, &["linux", "windows"])),
    }
}

fn validate_windows(spec: &PodSpec, errors: &mut Vec<FieldError>) {
    const WHY: &str = "cannot be set for a windows pod";
    let mut forbid = |path: String, set: bool| {
        if set {
            errors.push(FieldError::forbidden(path, WHY));
        }
    };
    if let Some(sc) = &spec.security_context {
        let p = "spec.securityContext";
        forbid(format!("{p}.appArmorProfile"), sc.app_armor_profile.is_some());
        forbid(format!("{p}.seLinuxOptions"), sc.se_linux_options.is_some());
        forbid(format!("{p}.seccompProfile"), sc.seccomp_profile.is_some());
        forbid(format!("{p}.fsGroup"), sc.fs_group.is_some());
        forbid(format!("{p}.fsGroupChangePolicy"), sc.fs_group_change_policy.is_some());
        forbid(format!("{p}.sysctls"), sc.sysctls.as_ref().is_some_and(|s| !s.is_empty()));
        forbid(format!("{p}.runAsUser"), sc.run_as_user.is_some());
        forbid(format!("{p}.runAsGroup"), sc.run_as_group.is_some());
        forbid(format!("{p}.supplementalGroups"), sc.supplemental_groups.is_some());
        forbid(format!("{p}.supplementalGroupsPolicy"), sc.supplemental_groups_policy.is_some());
        forbid(format!("{p}.seLinuxChangePolicy"), sc.se_linux_change_policy.is_some());
    }
    forbid("spec.hostUsers".to_owned(), spec.host_users.is_some());
    forbid("spec.hostPID".to_owned(), spec.host_pid == Some(true));
    forbid("spec.hostIPC".to_owned(), spec.host_ipc == Some(true));
    forbid("spec.shareProcessNamespace".to_owned(), spec.share_process_namespace.is_some());
    for (path, c) in containers_with_paths(spec) {
        let Some(sc) = &c.security_context else { continue };
        let p = format!("{path}.securityContext");
        forbid(format!("{p}.appArmorProfile"), sc.app_armor_profile.is_some());
        forbid(format!("{p}.seLinuxOptions"), sc.se_linux_options.is_some());
        forbid(format!("{p}.seccompProfile"), sc.seccomp_profile.is_some());
        forbid(format!("{p}.capabilities"), sc.capabilities.is_some());
        forbid(format!("{p}.readOnlyRootFilesystem"), sc.read_only_root_filesystem.is_some());
        forbid(format!("{p}.privileged"), sc.privileged.is_some());
        forbid(format!("{p}.allowPrivilegeEscalation"), sc.allow_privilege_escalation.is_some());
        forbid(format!("{p}.procMount"), sc.proc_mount.is_some());
        forbid(format!("{p}.runAsUser"), sc.run_as_user.is_some());
        forbid(format!("{p}.runAsGroup"), sc.run_as_group.is_some());
    }
}

/// Every container with its path, init containers first (`VisitContainersWithPath`).
pub(super) fn containers_with_paths(spec: &PodSpec) -> impl Iterator<Item = (String, &Container)> {
    let inits = spec.init_containers.iter().flatten().enumerate().map(|(i, c)| (format!("spec.initContainers[{i}]"), c));
    inits.chain(spec.containers.iter().enumerate().map(|(i, c)| (format!("spec.containers[{i}]"), c)))
}

/// `ValidateSeccompPodAnnotations` and `ValidateAppArmorPodAnnotations`. The seccomp paths join
/// the annotation key with a dot, as upstream's `Child` does.
pub(super) fn validate_annotations(annotations: Option<&BTreeMap<String, String>>, spec: &PodSpec, errors: &mut Vec<FieldError>) {
    for (key, value) in annotations.into_iter().flatten() {
        if key == SECCOMP_POD_ANNOTATION || key.starts_with(SECCOMP_CONTAINER_PREFIX) {
            validate_seccomp_annotation(value, &format!("metadata.annotations.{key}"), errors);
        }
        if let Some(container) = key.strip_prefix(APPARMOR_PREFIX) {
            let path = format!("metadata.annotations[{key}]");
            if !containers_with_paths(spec).any(|(_, c)| c.name == container) {
                errors.push(FieldError::invalid(&path, container, "container not found"));
            }
            if !(value.is_empty() || value == "runtime/default" || value == "unconfined" || value.starts_with("localhost/")) {
                errors.push(FieldError::invalid(&path, value, format!("invalid AppArmor profile name: \"{value}\"")));
            }
        }
    }
}

/// `ValidateSeccompProfile` for the deprecated annotation values.
fn validate_seccomp_annotation(value: &str, path: &str, errors: &mut Vec<FieldError>) {
    match value {
        "runtime/default" | "docker/default" | "unconfined" => {}
        _ => match value.strip_prefix("localhost/") {
            Some(local) => local_descending_path(local, path, errors),
            None => errors.push(FieldError::invalid(path, value, "must be a valid seccomp profile")),
        },
    }
}

/// `validateSeccompAnnotationsAndFields` and `validateAppArmorAnnotationsAndFieldsMatchOnCreate`:
/// when a deprecated annotation and the field both say something, they must agree.
pub(super) fn validate_annotations_match_fields(
    annotations: Option<&BTreeMap<String, String>>,
    spec: &PodSpec,
    errors: &mut Vec<FieldError>,
) {
    let Some(annotations) = annotations else { return };
    let pod_sc = spec.security_context.as_ref();
    if let (Some(profile), Some(annotation)) = (pod_sc.and_then(|s| s.seccomp_profile.as_ref()), annotations.get(SECCOMP_POD_ANNOTATION)) {
        seccomp_match(annotation, profile, "spec.securityContext.seccompProfile", errors);
    }
    let windows = spec.os.as_ref().is_some_and(|os| os.name == "windows");
    for (path, c) in containers_with_paths(spec) {
        let sc: Option<&SecurityContext> = c.security_context.as_ref();
        if let (Some(profile), Some(annotation)) =
            (sc.and_then(|s| s.seccomp_profile.as_ref()), annotations.get(&format!("{SECCOMP_CONTAINER_PREFIX}{}", c.name)))
        {
            seccomp_match(annotation, profile, &format!("{path}.securityContext.seccompProfile"), errors);
        }
        let profile = sc.and_then(|s| s.app_armor_profile.as_ref()).or(pod_sc.and_then(|s| s.app_armor_profile.as_ref()));
        if windows {
            continue;
        }
        if let (Some(profile), Some(annotation)) = (profile, annotations.get(&format!("{APPARMOR_PREFIX}{}", c.name))) {
            let p = format!("{path}.securityContext.appArmorProfile");
            profile_matches_annotation(
                "apparmor",
                annotation,
                &profile.type_,
                profile.localhost_profile.as_deref(),
                &["runtime/default"],
                &p,
                errors,
            );
        }
    }
}

/// The deprecated annotation and the field must say the same (`validateSeccompAnnotationsAndFields`
/// and its AppArmor twin): the same type, and for `Localhost` the same profile.
fn profile_matches_annotation(
    what: &str,
    annotation: &str,
    type_: &str,
    localhost_profile: Option<&str>,
    runtime_default: &[&str],
    path: &str,
    errors: &mut Vec<FieldError>,
) {
    let type_mismatch = || Some((format!("{path}.type"), format!("{what} type in annotation and field must match")));
    let mismatch = match type_ {
        "Unconfined" if annotation != "unconfined" => type_mismatch(),
        "RuntimeDefault" if !runtime_default.contains(&annotation) => type_mismatch(),
        "Localhost" => match annotation.strip_prefix("localhost/") {
            None => type_mismatch(),
            Some(local) if localhost_profile != Some(local) => {
                Some((format!("{path}.localhostProfile"), format!("{what} profile in annotation and field must match")))
            }
            Some(_) => None,
        },
        _ => None,
    };
    if let Some((path, why)) = mismatch {
        errors.push(FieldError::forbidden(path, why));
    }
}

fn seccomp_match(annotation: &str, profile: &SeccompProfile, path: &str, errors: &mut Vec<FieldError>) {
    let runtime_default = ["runtime/default", "docker/default"];
    profile_matches_annotation("seccomp", annotation, &profile.type_, profile.localhost_profile.as_deref(), &runtime_default, path, errors);
}
