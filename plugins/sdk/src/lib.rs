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
//! use staticlet_plugin_sdk::{Context, Pod, Validator, Verdict, container_images};
//!
//! struct NoLatest;
//!
//! impl Validator for NoLatest {
//!     fn validate(&self, _ctx: &Context, pod: &Pod) -> Verdict {
//!         let latest = container_images(pod).filter(|(_, image)| image.ends_with(":latest"));
//!         latest.map(|(field, _)| (field, "pin a version instead of :latest")).collect()
//!     }
//! }
//!
//! staticlet_plugin_sdk::export_validator!(NoLatest, |_config| Ok(NoLatest));
//! ```
//!
//! For the usual chores: [`container_images`] lists every container's image with its field
//! path, [`normalize_image`] and [`in_registries`] say which registry an image comes from,
//! [`string_list`] reads a list setting (its error is `init`'s), and a [`Verdict`] collects
//! from `(field, message)` pairs. `examples/plugins/allowed-registries/rust` is a whole policy.
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
#[cfg(feature = "validator")]
pub mod images;
#[cfg(any(feature = "validator", feature = "runtime-adapter", feature = "credential-provider", feature = "manifest-source"))]
mod logging;
#[cfg(feature = "runtime-adapter")]
pub mod runtime;
#[cfg(feature = "manifest-source")]
pub mod source;
#[cfg(feature = "validator")]
pub mod validator;

#[cfg(feature = "validator")]
pub use images::{container_images, in_registries, normalize_image};
#[cfg(any(feature = "validator", feature = "runtime-adapter", feature = "credential-provider", feature = "manifest-source"))]
pub use logging::{log_debug, log_error, log_info, log_warn, node_name};
/// A plugin's settings from the agent config: a JSON object, `{}` when there are none.
#[cfg(any(feature = "validator", feature = "runtime-adapter", feature = "credential-provider", feature = "manifest-source"))]
pub use serde_json::Value as Config;
#[cfg(feature = "validator")]
pub use validator::{Context, Pod, Validator, Verdict, Violation};

/// The setting `key`: a non-empty list of non-empty strings (`registries: [docker.io, ghcr.io/acme]`),
/// or the error naming it for `init` to return.
#[cfg(any(feature = "validator", feature = "runtime-adapter", feature = "credential-provider", feature = "manifest-source"))]
pub fn string_list(config: &Config, key: &str) -> Result<Vec<String>, String> {
    let strings: Option<Vec<String>> = config
        .get(key)
        .and_then(Config::as_array)
        .and_then(|items| items.iter().map(|item| item.as_str().filter(|s| !s.is_empty()).map(str::to_owned)).collect());
    strings.filter(|s| !s.is_empty()).ok_or_else(|| format!("settings need `{key}`: a non-empty list of strings"))
}

/// The settings `init` received, as JSON; empty text is no settings.
#[cfg(any(feature = "validator", feature = "runtime-adapter", feature = "credential-provider", feature = "manifest-source"))]
fn parse_config(text: &str) -> Result<Config, String> {
    if text.trim().is_empty() {
        return Ok(Config::Object(Default::default()));
    }
    serde_json::from_str(text).map_err(|e| format!("the plugin's settings are not JSON: {e}"))
}

#[cfg(all(test, any(feature = "validator", feature = "runtime-adapter", feature = "credential-provider", feature = "manifest-source")))]
mod tests {
    use super::*;

    #[test]
    fn a_string_list_setting_must_be_a_non_empty_list_of_non_empty_strings() {
        let config = parse_config(r#"{"registries": ["a", "b"]}"#).unwrap();
        assert_eq!(string_list(&config, "registries"), Ok(vec!["a".to_owned(), "b".to_owned()]));
        for bad in [r#"{}"#, r#"{"registries": []}"#, r#"{"registries": "a"}"#, r#"{"registries": ["a", 7]}"#, r#"{"registries": [""]}"#] {
            let err = string_list(&parse_config(bad).unwrap(), "registries").unwrap_err();
            assert!(err.contains("`registries`"), "{bad}: {err}");
        }
    }
}
