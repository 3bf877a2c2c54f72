//! The static pod policy: a static pod runs without an API server, so it may not depend on API
//! objects. Every reference to one is a violation with its field path and the reason, in app,
//! init and ephemeral containers alike. The kubelet rejects the same set since 1.34.

pub mod rules;

use staticlet_plugin_sdk::{Context, Pod, Validator, Verdict};

/// The policy; it takes no settings.
pub struct StaticPodPolicy;

impl Validator for StaticPodPolicy {
    fn validate(&self, _ctx: &Context, pod: &Pod) -> Verdict {
        let mut verdict = Verdict::default();
        for (field, message) in rules::check(pod) {
            verdict.reject(field, message);
        }
        verdict
    }
}

staticlet_plugin_sdk::export_validator!(StaticPodPolicy, |_config| Ok(StaticPodPolicy));
