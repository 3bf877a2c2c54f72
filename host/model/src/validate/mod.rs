//! The API server's pod validation (`ValidatePodCreate` in
//! `k8s.io/kubernetes/pkg/apis/core/validation`, with the options a 1.34 API server uses for a
//! new pod), and its warnings for valid but suspicious pods (`pkg/api/pod/warnings.go`). Paths
//! and messages are worded as the API server words them, so an error reads like
//! `kubectl apply`'s; `docs/validation.md` lists every rule and where it is tested.
//!
//! The pod given to [`validate_pod`] is already defaulted and bound to the node, so this sees
//! what will run.

mod container;
mod names;
mod pod;
mod probe;
mod security;
mod volume;
mod warnings;

#[cfg(test)]
mod tests;

use k8s_openapi::api::core::v1::Pod;

use crate::field::FieldError;

pub use names::{is_dns1123_label, is_dns1123_subdomain, is_iana_svc_name, is_label_value, is_qualified_name, is_safe_uid};
pub use warnings::warnings;

pub(crate) use volume::sources_set;

/// Validates a defaulted pod; an empty list means it is valid.
pub fn validate_pod(pod: &Pod) -> Vec<FieldError> {
    let mut errors = Vec::new();
    pod::validate_metadata(pod, &mut errors);
    match &pod.spec {
        Some(spec) => pod::validate_create(pod, spec, &mut errors),
        None => errors.push(FieldError::required("spec")),
    }
    errors
}
