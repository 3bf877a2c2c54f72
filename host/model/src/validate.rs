//! Placeholder until the validation module lands.
use k8s_openapi::api::core::v1::Pod;
use crate::field::FieldError;
/// Validates a pod.
pub fn validate_pod(_pod: &Pod) -> Vec<FieldError> { Vec::new() }
