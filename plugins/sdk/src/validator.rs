//! Admission validators: implement [`Validator`] and export it with
//! [`export_validator!`](crate::export_validator).

use std::cell::RefCell;

pub use k8s_openapi::api::core::v1::Pod;

use crate::Config;

/// The generated bindings of the `admission-validator` world, for [`export_validator!`](crate::export_validator).
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit/since_v0.2.0",
        world: "admission-validator",
        pub_export_macro: true,
        export_macro_name: "export_validator_world",
        default_bindings_module: "staticlet_plugin_sdk::validator::bindings",
    });
}

use bindings::exports::staticlet::plugin::validator as wit;
use bindings::staticlet::plugin::types;

/// Where the pod came from and where it will run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    /// The node's name.
    pub node_name: String,
    /// `file`, `http` or `plugin:<name>`.
    pub source: String,
    /// The manifest's path, URL or id.
    pub source_uri: String,
}

/// One reason a pod may not run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The field at fault, as a Kubernetes field path (`spec.volumes[0].configMap`).
    pub field: String,
    /// Why, for the manifest's author.
    pub message: String,
}

/// A decision on one pod: admitted when it has no violations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Every reason to reject the pod.
    pub violations: Vec<Violation>,
    /// Notes that do not block the pod.
    pub warnings: Vec<String>,
}

impl Verdict {
    /// Adds a violation.
    pub fn reject(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.violations.push(Violation { field: field.into(), message: message.into() });
    }

    /// Adds a warning.
    pub fn warn(&mut self, message: impl Into<String>) {
        self.warnings.push(message.into());
    }
}

/// A verdict rejecting the pod for each `(field, message)`, so that a validator can end in an
/// iterator's `collect()`.
impl<F: Into<String>, M: Into<String>> FromIterator<(F, M)> for Verdict {
    fn from_iter<I: IntoIterator<Item = (F, M)>>(violations: I) -> Self {
        let mut verdict = Verdict::default();
        for (field, message) in violations {
            verdict.reject(field, message);
        }
        verdict
    }
}

/// A validator. One value is built per instance by `init` and asked about every pod.
pub trait Validator: 'static {
    /// Judges one defaulted pod.
    fn validate(&self, ctx: &Context, pod: &Pod) -> Verdict;
}

type Built = Box<dyn Validator>;

thread_local! {
    static VALIDATOR: RefCell<Option<Built>> = const { RefCell::new(None) };
}

fn error(code: &str, message: impl Into<String>) -> types::Error {
    types::Error { code: code.into(), message: message.into() }
}

#[doc(hidden)]
pub fn run_init(config: &str, build: impl FnOnce(Config) -> Result<Built, String>) -> Result<(), types::Error> {
    let config = crate::parse_config(config).map_err(|e| error("config", e))?;
    let validator = build(config).map_err(|e| error("config", e))?;
    VALIDATOR.with(|v| *v.borrow_mut() = Some(validator));
    Ok(())
}

#[doc(hidden)]
pub fn run_validate(ctx: types::PodContext, pod: String) -> Result<wit::Verdict, types::Error> {
    let pod: Pod = serde_json::from_str(&pod).map_err(|e| error("internal", format!("the agent sent a pod that does not decode: {e}")))?;
    let ctx = Context { node_name: ctx.node_name, source: ctx.source, source_uri: ctx.source_uri };
    VALIDATOR.with(|v| {
        let validator = v.borrow();
        let validator = validator.as_ref().ok_or_else(|| error("internal", "validate was called before init"))?;
        let verdict = validator.validate(&ctx, &pod);
        Ok(wit::Verdict {
            violations: verdict.violations.into_iter().map(|v| wit::Violation { field: v.field, message: v.message }).collect(),
            warnings: verdict.warnings,
        })
    })
}

/// Exports a [`Validator`] as the component's `admission-validator` world. `$build` turns the
/// plugin's settings ([`Config`], `{}` when there are none) into the validator, or says what
/// is wrong with them.
#[macro_export]
macro_rules! export_validator {
    ($ty:ty, $build:expr) => {
        struct StaticletGuest;

        impl $crate::validator::bindings::Guest for StaticletGuest {
            fn init(config: String) -> Result<(), $crate::validator::bindings::staticlet::plugin::types::Error> {
                let build: fn($crate::Config) -> Result<$ty, String> = $build;
                $crate::validator::run_init(&config, |c| build(c).map(|v| Box::new(v) as Box<dyn $crate::Validator>))
            }
        }

        impl $crate::validator::bindings::exports::staticlet::plugin::validator::Guest for StaticletGuest {
            fn validate(
                ctx: $crate::validator::bindings::staticlet::plugin::types::PodContext,
                pod: String,
            ) -> Result<
                $crate::validator::bindings::exports::staticlet::plugin::validator::Verdict,
                $crate::validator::bindings::staticlet::plugin::types::Error,
            > {
                $crate::validator::run_validate(ctx, pod)
            }
        }

        $crate::validator::bindings::export_validator_world!(StaticletGuest with_types_in $crate::validator::bindings);
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verdict_collects_violations_from_field_and_message_pairs() {
        let verdict: Verdict = [("spec.containers[0].image", "no".to_owned())].into_iter().collect();
        assert_eq!(verdict.violations, [Violation { field: "spec.containers[0].image".into(), message: "no".into() }]);
        assert!(verdict.warnings.is_empty());
        assert_eq!(std::iter::empty::<(String, String)>().collect::<Verdict>(), Verdict::default());
    }
}
