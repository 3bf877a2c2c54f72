//! Admission: every validator runs on every defaulted pod, in order, before the pod may run.
//!
//! Validators sit behind the [`Validator`] trait; the built-in static pod policy and every
//! configured validator are WebAssembly plugins implementing it ([`plugins`]). The [`Chain`]
//! asks each of them and applies its [`FailurePolicy`] when one cannot answer. A change to any
//! validator's code bumps the chain's generation, and the desired stage re-evaluates every pod.

pub mod plugins;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use staticlet_model::StaticPod;
use staticlet_plugin::{PluginError, PodContext, Verdict};

use crate::config::plugins::FailurePolicy;

/// Something that judges pods.
#[async_trait]
pub trait Validator: Send + Sync {
    /// The name logs and messages give it.
    fn name(&self) -> &str;

    /// Judges one defaulted pod, given as canonical JSON.
    ///
    /// # Errors
    ///
    /// When the validator could not judge it; the chain's failure policy decides.
    async fn validate(&self, ctx: &PodContext, pod_json: &str) -> Result<Verdict, PluginError>;
}

/// One reason a pod may not run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The validator that said so.
    pub validator: String,
    /// The field at fault; empty when a validator failed rather than judged.
    pub field: String,
    /// Why.
    pub message: String,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() { f.write_str(&self.message) } else { write!(f, "{}: {}", self.field, self.message) }
    }
}

/// The chain's decision on one pod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    /// Every violation any validator found.
    pub violations: Vec<Rejection>,
    /// Validators under `Fail` that could not judge the pod.
    pub failures: Vec<Rejection>,
    /// Warnings from validators, and failures under `Ignore`.
    pub warnings: Vec<String>,
}

impl Decision {
    /// Whether the pod may run.
    pub fn admitted(&self) -> bool {
        self.violations.is_empty() && self.failures.is_empty()
    }

    /// Every reason, for the pod's status message and the log: `field: message; ...`.
    pub fn message(&self) -> String {
        self.violations.iter().chain(&self.failures).map(ToString::to_string).collect::<Vec<_>>().join("; ")
    }
}

struct Entry {
    validator: Arc<dyn Validator>,
    policy: FailurePolicy,
}

/// The validators, in order.
#[derive(Default)]
pub struct Chain {
    entries: Vec<Entry>,
    /// The runtime classes this node has, when it checks them.
    runtime_classes: Option<Vec<String>>,
}

impl fmt::Debug for Chain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.entries.iter().map(|e| (e.validator.name(), e.policy))).finish()
    }
}

impl Chain {
    /// Appends a validator.
    pub fn push(&mut self, validator: Arc<dyn Validator>, policy: FailurePolicy) {
        self.entries.push(Entry { validator, policy });
    }

    /// Rejects pods whose `spec.runtimeClassName` is none of `classes`, before any validator
    /// runs, as the kubelet rejects a pod whose RuntimeClass does not exist.
    pub fn check_runtime_classes(&mut self, classes: Vec<String>) {
        self.runtime_classes = Some(classes);
    }

    /// Asks every validator about `pod`; none is skipped, so the author sees every violation at
    /// once.
    pub async fn admit(&self, pod: &StaticPod, node_name: &str) -> Decision {
        let mut decision = Decision::default();
        if let (Some(known), Some(class)) = (&self.runtime_classes, pod.pod.spec.as_ref().and_then(|s| s.runtime_class_name.as_ref()))
            && !known.contains(class)
        {
            decision.violations.push(Rejection {
                validator: "runtime-classes".to_owned(),
                field: "spec.runtimeClassName".to_owned(),
                message: format!("no runtime class {class:?} on this node; its classes are {}", known.join(", ")),
            });
        }
        if self.entries.is_empty() {
            return decision;
        }
        let ctx = PodContext { node_name: node_name.to_owned(), source: pod.origin.kind.to_string(), source_uri: pod.origin.uri.clone() };
        let json = match serde_json::to_string(&pod.pod) {
            Ok(json) => json,
            Err(e) => {
                decision.failures.push(Rejection {
                    validator: String::new(),
                    field: String::new(),
                    message: format!("the pod cannot be encoded for validators: {e}"),
                });
                return decision;
            }
        };
        for entry in &self.entries {
            let name = entry.validator.name();
            match entry.validator.validate(&ctx, &json).await {
                Ok(verdict) => {
                    decision.violations.extend(verdict.violations.into_iter().map(|v| Rejection {
                        validator: name.to_owned(),
                        field: v.field,
                        message: v.message,
                    }));
                    decision.warnings.extend(verdict.warnings.into_iter().map(|w| format!("{name}: {w}")));
                }
                Err(e) => {
                    let message = format!("validator {name} failed: {e}");
                    match entry.policy {
                        FailurePolicy::Fail => {
                            decision.failures.push(Rejection { validator: name.to_owned(), field: String::new(), message })
                        }
                        FailurePolicy::Ignore => decision.warnings.push(format!("{message} (failurePolicy: Ignore, admitted)")),
                    }
                }
            }
        }
        decision
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use staticlet_model::{NodeContext, Origin, SourceKind};
    use staticlet_plugin::Violation;

    struct Fixed(&'static str, Result<Verdict, PluginError>);

    #[async_trait]
    impl Validator for Fixed {
        fn name(&self) -> &str {
            self.0
        }
        async fn validate(&self, _ctx: &PodContext, pod_json: &str) -> Result<Verdict, PluginError> {
            assert!(pod_json.contains("\"kind\":\"Pod\""));
            self.1.clone()
        }
    }

    fn pod() -> StaticPod {
        let text = b"apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n  - name: c\n    image: i\n";
        let origin = Origin { kind: SourceKind::File, uri: "/m/p.yaml".into() };
        staticlet_model::load(text, &origin, &NodeContext { node_name: "n".into() }).unwrap().pod
    }

    fn trap() -> PluginError {
        PluginError::Trap { plugin: "broken".into(), call: "validate", message: "unreachable".into() }
    }

    fn reject(field: &str) -> Verdict {
        Verdict { violations: vec![Violation { field: field.into(), message: "no".into() }], warnings: vec![] }
    }

    #[tokio::test]
    async fn every_validator_is_asked_and_every_violation_kept() {
        let mut chain = Chain::default();
        chain.push(Arc::new(Fixed("a", Ok(reject("spec.x")))), FailurePolicy::Fail);
        chain.push(Arc::new(Fixed("b", Ok(reject("spec.y")))), FailurePolicy::Fail);
        let decision = chain.admit(&pod(), "n").await;
        assert!(!decision.admitted());
        assert_eq!(decision.message(), "spec.x: no; spec.y: no");
    }

    #[tokio::test]
    async fn an_unknown_runtime_class_is_rejected_naming_the_known_ones() {
        let mut chain = Chain::default();
        chain.check_runtime_classes(vec!["docker".into(), "podman".into()]);
        let mut pod = pod();
        assert!(chain.admit(&pod, "n").await.admitted(), "no class: the default");
        pod.pod.spec.as_mut().unwrap().runtime_class_name = Some("podman".into());
        assert!(chain.admit(&pod, "n").await.admitted());
        pod.pod.spec.as_mut().unwrap().runtime_class_name = Some("gvisor".into());
        let decision = chain.admit(&pod, "n").await;
        assert_eq!(decision.message(), r#"spec.runtimeClassName: no runtime class "gvisor" on this node; its classes are docker, podman"#);
    }

    #[tokio::test]
    async fn a_failing_validator_rejects_under_fail_and_warns_under_ignore() {
        let mut fail = Chain::default();
        fail.push(Arc::new(Fixed("broken", Err(trap()))), FailurePolicy::Fail);
        let decision = fail.admit(&pod(), "n").await;
        assert!(!decision.admitted());
        assert!(decision.message().starts_with("validator broken failed: plugin broken: validate trapped"), "{}", decision.message());

        let mut ignore = Chain::default();
        ignore.push(Arc::new(Fixed("broken", Err(trap()))), FailurePolicy::Ignore);
        let decision = ignore.admit(&pod(), "n").await;
        assert!(decision.admitted());
        assert_eq!(decision.warnings.len(), 1);
    }
}
