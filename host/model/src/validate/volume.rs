//! Volumes: `ValidateVolumes` and `validateVolumeSource` for the sources a static pod may use
//! (hostPath, emptyDir, downwardAPI, image). Every other source counts towards "more than 1
//! volume type" but is not checked further: admission refuses them.

use std::collections::{HashMap, HashSet};

use k8s_openapi::api::core::v1::{DownwardAPIVolumeSource, Volume};

use super::container::{self, VOLUME_FIELD_PATHS};
use super::names::{self, push_invalid};
use crate::field::FieldError;
use crate::quantity::parse_quantity;

/// The valid volumes by name, each with whether it is a claim (persistentVolumeClaim or
/// ephemeral), the only sources block devices may use.
pub(super) type Volumes = HashMap<String, bool>;

/// Volume sources in the order `validateVolumeSource` tries them: (JSON field, path upstream
/// reports when it is the second source). `downwarAPI` and `persistentDisk` are upstream's
/// spellings.
const SOURCES: [(&str, &str); 30] = [
    ("emptyDir", "emptyDir"),
    ("hostPath", "hostPath"),
    ("gitRepo", "gitRepo"),
    ("gcePersistentDisk", "gcePersistentDisk"),
    ("awsElasticBlockStore", "awsElasticBlockStore"),
    ("secret", "secret"),
    ("nfs", "nfs"),
    ("iscsi", "iscsi"),
    ("glusterfs", "glusterfs"),
    ("flocker", "flocker"),
    ("persistentVolumeClaim", "persistentVolumeClaim"),
    ("rbd", "rbd"),
    ("cinder", "cinder"),
    ("cephfs", "cephFS"),
    ("quobyte", "quobyte"),
    ("downwardAPI", "downwarAPI"),
    ("fc", "fc"),
    ("flexVolume", "flexVolume"),
    ("configMap", "configMap"),
    ("azureFile", "azureFile"),
    ("vsphereVolume", "vsphereVolume"),
    ("photonPersistentDisk", "photonPersistentDisk"),
    ("portworxVolume", "portworxVolume"),
    ("azureDisk", "azureDisk"),
    ("storageos", "storageos"),
    ("projected", "projected"),
    ("scaleIO", "scaleIO"),
    ("csi", "csi"),
    ("ephemeral", "ephemeral"),
    ("image", "image"),
];

const FILE_MODE_MESSAGE: &str = "must be a number between 0 and 0777 (octal), both inclusive";

/// `ValidateVolumes`: returns the volumes that passed, for mounts and devices to refer to (a
/// volume with errors is not found by its mounts, as upstream).
pub(super) fn validate_volumes(volumes: &[Volume], errors: &mut Vec<FieldError>) -> Volumes {
    let mut valid = Volumes::new();
    let mut seen = HashSet::new();
    for (i, volume) in volumes.iter().enumerate() {
        let path = format!("spec.volumes[{i}]");
        let mut own = Vec::new();
        validate_source(volume, &path, &mut own);
        if volume.name.is_empty() {
            own.push(FieldError::required(format!("{path}.name")));
        } else {
            push_invalid(&mut own, &format!("{path}.name"), &volume.name, names::dns1123_label(&volume.name));
        }
        if seen.contains(volume.name.as_str()) {
            own.push(FieldError::duplicate(format!("{path}.name"), &volume.name));
        }
        if own.is_empty() {
            seen.insert(volume.name.as_str());
            valid.insert(volume.name.clone(), volume.persistent_volume_claim.is_some() || volume.ephemeral.is_some());
        }
        errors.extend(own);
    }
    valid
}

/// The sources a volume sets, by JSON field name, read from its JSON form so that every source
/// the API knows counts, those this agent does not run included.
pub(crate) fn sources_set(volume: &Volume) -> HashSet<String> {
    match serde_json::to_value(volume) {
        Ok(serde_json::Value::Object(map)) => map.into_iter().filter(|(k, v)| k != "name" && !v.is_null()).map(|(k, _)| k).collect(),
        _ => HashSet::new(),
    }
}

fn validate_source(volume: &Volume, path: &str, errors: &mut Vec<FieldError>) {
    let set = sources_set(volume);
    let mut count = 0;
    for (field, reported) in SOURCES {
        if !set.contains(field) {
            continue;
        }
        if count > 0 {
            errors.push(FieldError::forbidden(format!("{path}.{reported}"), "may not specify more than 1 volume type"));
            continue;
        }
        count += 1;
        match field {
            "emptyDir" => {
                if let Some(limit) = volume.empty_dir.as_ref().and_then(|e| e.size_limit.as_ref())
                    && parse_quantity(&limit.0).is_ok_and(|q| q.is_negative())
                {
                    errors.push(FieldError::forbidden(
                        format!("{path}.emptyDir.sizeLimit"),
                        "SizeLimit field must be a valid resource quantity",
                    ));
                }
                // A staticlet rule: the API server takes any medium, and the kubelet then fails
                // to mount one it does not know (`unknown storage medium`), so the pod never runs.
                let medium = volume.empty_dir.as_ref().and_then(|e| e.medium.as_deref()).unwrap_or_default();
                if !(matches!(medium, "" | "Memory" | "HugePages") || medium.starts_with("HugePages-")) {
                    errors.push(FieldError::not_supported(
                        format!("{path}.emptyDir.medium"),
                        medium,
                        &["", "Memory", "HugePages", "HugePages-<size>"],
                    ));
                }
            }
            "hostPath" => validate_host_path(volume, path, errors),
            "downwardAPI" => {
                if let Some(downward) = &volume.downward_api {
                    validate_downward_api(downward, &format!("{path}.downwardAPI"), errors);
                }
            }
            "image" => {
                if let Some(image) = &volume.image {
                    if image.reference.as_deref().unwrap_or_default().is_empty() {
                        errors.push(FieldError::required(format!("{path}.image.reference")));
                    }
                    // The API server defaults the pull policy from the reference's tag first.
                    if let Some(policy) = image.pull_policy.as_deref() {
                        container::validate_pull_policy(Some(policy), &format!("{path}.image.pullPolicy"), errors);
                    }
                }
            }
            _ => {}
        }
    }
    // Keys the agent's API version does not know are still volume types to the API server.
    let unknown = set.iter().filter(|k| !SOURCES.iter().any(|(field, _)| field == k)).count();
    if count + unknown == 0 {
        errors.push(FieldError::required_because(path, "must specify a volume type"));
    }
}

/// `validateHostPathVolumeSource`.
fn validate_host_path(volume: &Volume, path: &str, errors: &mut Vec<FieldError>) {
    let Some(host) = &volume.host_path else { return };
    if host.path.is_empty() {
        errors.push(FieldError::required(format!("{path}.hostPath.path")));
        return;
    }
    container::no_backsteps(&host.path, &format!("{path}.hostPath.path"), errors);
    let kinds = ["", "BlockDevice", "CharDevice", "Directory", "DirectoryOrCreate", "File", "FileOrCreate", "Socket"];
    if let Some(kind) = host.type_.as_deref()
        && !kinds.contains(&kind)
    {
        errors.push(FieldError::not_supported(format!("{path}.hostPath.type"), kind, &kinds));
    }
}

/// `validateDownwardAPIVolumeSource`. Item errors sit on the source's path without the item
/// index: upstream passes the source's path to each item.
fn validate_downward_api(source: &DownwardAPIVolumeSource, path: &str, errors: &mut Vec<FieldError>) {
    if let Some(mode) = source.default_mode
        && !(0..=0o777).contains(&mode)
    {
        errors.push(FieldError::invalid_unquoted(format!("{path}.defaultMode"), mode, FILE_MODE_MESSAGE));
    }
    for item in source.items.iter().flatten() {
        if item.path.is_empty() {
            errors.push(FieldError::required(format!("{path}.path")));
        }
        container::local_non_reserved_path(&item.path, &format!("{path}.path"), errors);
        match (&item.field_ref, &item.resource_field_ref) {
            (Some(field_ref), resource_ref) => {
                container::validate_object_field_selector(field_ref, &VOLUME_FIELD_PATHS, &format!("{path}.fieldRef"), errors);
                if resource_ref.is_some() {
                    errors.push(FieldError::invalid(path, "resource", "fieldRef and resourceFieldRef can not be specified simultaneously"));
                }
            }
            (None, Some(resource_ref)) => {
                container::validate_resource_field_selector(resource_ref, true, &format!("{path}.resourceFieldRef"), errors)
            }
            (None, None) => errors.push(FieldError::required_because(path, "one of fieldRef and resourceFieldRef is required")),
        }
        if let Some(mode) = item.mode
            && !(0..=0o777).contains(&mode)
        {
            errors.push(FieldError::invalid_unquoted(format!("{path}.mode"), mode, FILE_MODE_MESSAGE));
        }
    }
}
