//! The static pod model: everything staticlet knows about a pod before it meets a runtime.
//!
//! A manifest goes through four pure steps, each in its own module:
//!
//! 1. [`decode`]: YAML or JSON text, read as the kubelet reads it ([`yaml`]) → a typed
//!    [`Pod`](k8s_openapi::api::core::v1::Pod), with line and column on every error and a
//!    warning for every unknown field;
//! 2. [`defaults`]: the API server's defaults (`restartPolicy: Always`, ...);
//! 3. [`validate`]: the API server's pod validation (`ValidatePodCreate`);
//! 4. [`identity`]: the static pod's name, UID and hashes, with a versioned recipe.
//!
//! [`load`] runs all four and is what the agent and `staticlet validate` call. Nothing here does
//! I/O or knows where a manifest came from beyond the [`Origin`] it is handed.
//!
//! Beside them, the kubelet's pure rules for a running pod: [`status`] computes its status from
//! what the runtime holds, and [`backoff`] is its crash-loop back-off, which the agent keeps in
//! the pod's record under `--root-dir`.

pub mod backoff;
pub mod decode;
pub mod defaults;
pub mod duration;
pub mod field;
pub mod identity;
pub mod list;
pub mod positions;
pub mod quantity;
pub mod status;
pub mod validate;
pub mod yaml;

pub use decode::{DecodeError, Decoded};
pub use field::{FieldError, Position};
pub use identity::{NodeContext, Origin, SourceKind, StaticPod};

use k8s_openapi::api::core::v1::Pod;

/// Why a manifest was not turned into a static pod.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The text is not a single, well-formed Pod.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The pod breaks the API server's validation rules; every violation is listed.
    #[error("{}", join_errors(.0))]
    Invalid(Vec<FieldError>),
}

fn join_errors(errors: &[FieldError]) -> String {
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// A manifest that passed every step, with the warnings decoding produced.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The defaulted, validated static pod with its identity.
    pub pod: StaticPod,
    /// What the kubelet would silently pass over (unknown fields, keys written twice, documents
    /// after the first) and the API server's warnings for a valid but suspicious pod, each with
    /// its path and line.
    pub warnings: Vec<FieldError>,
}

/// Decodes, defaults, validates and names one manifest.
///
/// `text` is the manifest's bytes as read; `origin` says where it came from (it feeds the UID);
/// `node` carries the node name the pod is bound to.
///
/// # Errors
///
/// [`LoadError::Decode`] when the text is not one well-formed `kind: Pod`;
/// [`LoadError::Invalid`] with every violation when the pod fails validation. Field errors carry
/// the line and column of the offending field where it can be traced back to the text.
pub fn load(text: &[u8], origin: &Origin, node: &NodeContext) -> Result<Loaded, LoadError> {
    let Decoded { pod, mut warnings, positions } = decode::decode_pod(text)?;
    // The API server's warnings look at the pod as written: defaults would hide some of them
    // (a negative grace period becomes 1).
    for mut warning in validate::warnings(&pod) {
        warning.position = positions.lookup(&warning.path);
        warnings.push(warning);
    }
    let prepared = prepare(pod, node);
    let mut errors = validate::validate_pod(&prepared);
    if !errors.is_empty() {
        for error in &mut errors {
            error.position = positions.lookup(&error.path);
        }
        return Err(LoadError::Invalid(errors));
    }
    Ok(Loaded { pod: identity::make_static(prepared, origin, node), warnings })
}

/// Applies defaults and binds the pod to the node, so validation sees the pod that will run.
fn prepare(mut pod: Pod, node: &NodeContext) -> Pod {
    defaults::apply(&mut pod);
    identity::bind_to_node(&mut pod, node);
    pod
}
