//! The static pod policy as a component: the built-in admission validator, embedded in the
//! `staticlet` binary. The rules themselves live in `static-pod-rules`.

use staticlet_plugin_sdk::{Context, Pod, Validator, Verdict};

/// The policy; it takes no settings.
pub struct StaticPodPolicy;

impl Validator for StaticPodPolicy {
    fn validate(&self, _ctx: &Context, pod: &Pod) -> Verdict {
        let mut verdict = Verdict::default();
        for (field, message) in static_pod_rules::check(pod) {
            verdict.reject(field, message);
        }
        verdict
    }
}

staticlet_plugin_sdk::export_validator!(StaticPodPolicy, |_config| Ok(StaticPodPolicy));
