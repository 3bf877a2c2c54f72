//! Write staticlet plugins in Rust.
//!
//! | feature | what it gives |
//! | --- | --- |
//! | `validator` (default) | an admission validator: [`Validator`], [`export_validator!`] |
//! | `runtime-adapter` | a runtime adapter: [`runtime::RuntimeAdapter`], [`export_runtime!`] |
//! | `credential-provider` | a credential provider: [`credentials::CredentialProvider`], [`export_credential_provider!`] |
//! | `manifest-source` | a manifest source: [`source::ManifestSource`], [`export_source!`] |
//! | `http` | [`http`]: a blocking HTTP client over the agent's vetted outbound requests |
//!
//! A validator in a few lines:
//!
//! ```ignore
//! use staticlet_plugin_sdk::{Context, Pod, Validator, Verdict};
//!
//! struct NoLatest;
//!
//! impl Validator for NoLatest {
//!     fn validate(&self, _ctx: &Context, pod: &Pod) -> Verdict {
//!         let mut verdict = Verdict::default();
//!         for (i, c) in pod.spec.iter().flat_map(|s| &s.containers).enumerate() {
//!             if c.image.as_deref().is_some_and(|i| i.ends_with(":latest")) {
//!                 verdict.reject(format!("spec.containers[{i}].image"), "pin a version instead of :latest");
//!             }
//!         }
//!         verdict
//!     }
//! }
//!
//! staticlet_plugin_sdk::export_validator!(NoLatest, |_config| Ok(NoLatest));
//! ```
//!
//! A runtime adapter depends on the SDK with `default-features = false, features =
//! ["runtime-adapter", "http"]`; see [`runtime`] for an example.
//!
//! Build either with `cargo build --release --target wasm32-wasip2`: the `.wasm` in
//! `target/wasm32-wasip2/release/` is the component the agent loads.
//!
//! A component must declare only the world it implements. Each world's bindings here carry its
//! imports only; its exports are declared by the export macro, where it is invoked. So when cargo
//! unifies features across a workspace and compiles both worlds into this crate, a validator still
//! exports only the validator world and an adapter only the runtime one.

#[cfg(feature = "credential-provider")]
pub mod credentials;
#[cfg(feature = "http")]
pub mod http;
#[cfg(any(feature = "validator", feature = "runtime-adapter", feature = "credential-provider", feature = "manifest-source"))]
mod logging;
#[cfg(feature = "runtime-adapter")]
pub mod runtime;
#[cfg(feature = "manifest-source")]
pub mod source;
#[cfg(feature = "validator")]
pub mod validator;

#[cfg(any(feature = "validator", feature = "runtime-adapter", feature = "credential-provider", feature = "manifest-source"))]
pub use logging::{log_debug, log_error, log_info, log_warn, node_name};
/// A plugin's settings from the agent config: a JSON object, `{}` when there are none.
#[cfg(any(feature = "validator", feature = "runtime-adapter", feature = "credential-provider", feature = "manifest-source"))]
pub use serde_json::Value as Config;
#[cfg(feature = "validator")]
pub use validator::{Context, Pod, Validator, Verdict, Violation};

/// The settings `init` received, as JSON; empty text is no settings.
#[cfg(any(feature = "validator", feature = "runtime-adapter", feature = "credential-provider", feature = "manifest-source"))]
fn parse_config(text: &str) -> Result<Config, String> {
    if text.trim().is_empty() {
        return Ok(Config::Object(Default::default()));
    }
    serde_json::from_str(text).map_err(|e| format!("the plugin's settings are not JSON: {e}"))
}
