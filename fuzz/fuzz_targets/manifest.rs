//! A static pod manifest file as the file source reads it: arbitrary bytes through decoding,
//! defaulting, validation and identity (`staticlet_model::load`), then the built-in admission
//! rules (`static_pod_rules::check`) on every pod that loads. Manifest directories are often
//! writable by provisioning tools and other operators, so none of this may panic, and every
//! message it produces is rendered, since the agent logs and serves them.

#![no_main]

use libfuzzer_sys::fuzz_target;
use staticlet_model::{LoadError, NodeContext, Origin, SourceKind, load};

const NODE: &str = "fuzz-node";

fuzz_target!(|data: &[u8]| {
    let origin = Origin { kind: SourceKind::File, uri: "/etc/kubernetes/manifests/fuzz.yaml".into() };
    let node = NodeContext { node_name: NODE.into() };
    match load(data, &origin, &node) {
        Ok(loaded) => {
            for warning in &loaded.warnings {
                assert!(!warning.to_string().is_empty(), "empty warning: {warning:?}");
            }
            let pod = &loaded.pod;
            // Validation runs on the renamed pod, so anything that loads carries the node suffix
            // and is bound to the node; otherwise two nodes' mirror pods would collide.
            assert!(pod.name().ends_with(&format!("-{NODE}")), "name {:?} lacks the node suffix", pod.name());
            let spec = pod.pod.spec.as_ref().expect("a loaded pod has a spec");
            assert_eq!(spec.node_name.as_deref(), Some(NODE));
            // Container names are unique across init and app containers once validated, so no
            // container's hash may shadow another's: a shadowed one would never be restarted on edit.
            let containers = spec.init_containers.as_ref().map_or(0, Vec::len) + spec.containers.len();
            assert_eq!(pod.container_hashes.len(), containers, "container hashes collide");
            assert!(is_hash(&pod.config_hash) && is_hash(&pod.sandbox_hash), "malformed hash in {pod:?}");
            for (path, message) in static_pod_rules::check(&pod.pod) {
                assert!(!path.is_empty() && !message.is_empty(), "empty violation: {path:?}: {message:?}");
            }
        }
        Err(error) => {
            assert!(!error.to_string().is_empty(), "empty error: {error:?}");
            if let LoadError::Invalid(violations) = &error {
                assert!(!violations.is_empty(), "invalid without a reason");
                for violation in violations {
                    assert!(!violation.to_string().is_empty(), "empty violation: {violation:?}");
                }
            }
        }
    }
});

/// The recipe's hashes: 128 bits as 32 lowercase hex characters.
fn is_hash(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}
