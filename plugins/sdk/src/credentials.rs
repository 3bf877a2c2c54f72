//! Credential providers: implement [`CredentialProvider`] and export it with
//! [`export_credential_provider!`](crate::export_credential_provider).
//!
//! ```ignore
//! use staticlet_plugin_sdk::Config;
//! use staticlet_plugin_sdk::credentials::{Auth, CacheKeyType, CredentialProvider, Credentials};
//!
//! struct Static { username: String, password: String }
//!
//! impl CredentialProvider for Static {
//!     fn provide(&self, image: &str) -> Result<Credentials, String> {
//!         let registry = image.split('/').next().unwrap_or_default().to_owned();
//!         Ok(Credentials::for_registry(registry, &self.username, &self.password))
//!     }
//! }
//!
//! staticlet_plugin_sdk::export_credential_provider!(Static, |config: Config| -> Result<Static, String> {
//!     Ok(Static { username: config["username"].as_str().unwrap_or_default().into(), password: config["password"].as_str().unwrap_or_default().into() })
//! });
//! ```
//!
//! The agent asks only about images its config's `matchImages` cover, keeps an answer for its
//! cache duration and asks once for concurrent pulls of one image. Reaching a token endpoint
//! takes the `http` feature and a grant of the host in the agent config.

use std::cell::RefCell;

use crate::Config;

/// The generated bindings of the `credential-provider` world, for
/// [`export_credential_provider!`](crate::export_credential_provider).
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit/since_v0.2.0",
        world: "credential-provider",
        pub_export_macro: true,
        export_macro_name: "export_credential_provider_world",
        default_bindings_module: "staticlet_plugin_sdk::credentials::bindings",
    });
}

use bindings::exports::staticlet::plugin::credentials as wit;
use bindings::staticlet::plugin::types;

pub use wit::CacheKeyType;

/// A login for the registries a location covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    /// A registry location as a docker config keys it (`reg.example.com`, `*.example.com`,
    /// `reg:5000/team`).
    pub location: String,
    /// The user name.
    pub username: String,
    /// The password or token.
    pub password: String,
}

/// The answer for one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// What the answer may be reused for.
    pub cache_key_type: CacheKeyType,
    /// How long it may be reused, in milliseconds; `None` takes the config's default.
    pub cache_duration_ms: Option<u64>,
    /// The logins.
    pub auths: Vec<Auth>,
}

impl Credentials {
    /// One login for every image of `registry`, reused for that registry for the config's
    /// default duration.
    pub fn for_registry(registry: impl Into<String>, username: &str, password: &str) -> Self {
        let auth = Auth { location: registry.into(), username: username.to_owned(), password: password.to_owned() };
        Credentials { cache_key_type: CacheKeyType::Registry, cache_duration_ms: None, auths: vec![auth] }
    }
}

/// A credential provider. One value is built per instance by `init`.
pub trait CredentialProvider: 'static {
    /// The logins for pulling `image`, a normalized repository without tag or digest
    /// (`docker.io/library/busybox`); an error says why there are none (never a secret).
    fn provide(&self, image: &str) -> Result<Credentials, String>;
}

type Built = Box<dyn CredentialProvider>;

thread_local! {
    static PROVIDER: RefCell<Option<Built>> = const { RefCell::new(None) };
}

fn error(code: &str, message: impl Into<String>) -> types::Error {
    types::Error { code: code.into(), message: message.into() }
}

#[doc(hidden)]
pub fn run_init(config: &str, build: impl FnOnce(Config) -> Result<Built, String>) -> Result<(), types::Error> {
    let config = crate::parse_config(config).map_err(|e| error("config", e))?;
    let provider = build(config).map_err(|e| error("config", e))?;
    PROVIDER.with(|p| *p.borrow_mut() = Some(provider));
    Ok(())
}

#[doc(hidden)]
pub fn run_provide(image: String) -> Result<wit::Credentials, types::Error> {
    PROVIDER.with(|p| {
        let provider = p.borrow();
        let provider = provider.as_ref().ok_or_else(|| error("internal", "provide was called before init"))?;
        let answer = provider.provide(&image).map_err(|e| error("unavailable", e))?;
        Ok(wit::Credentials {
            cache_key_type: answer.cache_key_type,
            cache_duration_ms: answer.cache_duration_ms,
            auths: answer
                .auths
                .into_iter()
                .map(|a| wit::Auth { location: a.location, username: a.username, password: a.password })
                .collect(),
        })
    })
}

/// Exports a [`CredentialProvider`] as the component's `credential-provider` world. `$build`
/// turns the plugin's settings ([`Config`]) into the provider, or says what is wrong with them.
#[macro_export]
macro_rules! export_credential_provider {
    ($ty:ty, $build:expr) => {
        struct StaticletGuest;

        impl $crate::credentials::bindings::Guest for StaticletGuest {
            fn init(config: String) -> Result<(), $crate::credentials::bindings::staticlet::plugin::types::Error> {
                let build: fn($crate::Config) -> Result<$ty, String> = $build;
                $crate::credentials::run_init(&config, |c| build(c).map(|p| Box::new(p) as Box<dyn $crate::credentials::CredentialProvider>))
            }
        }

        impl $crate::credentials::bindings::exports::staticlet::plugin::credentials::Guest for StaticletGuest {
            fn provide(
                image: String,
            ) -> Result<
                $crate::credentials::bindings::exports::staticlet::plugin::credentials::Credentials,
                $crate::credentials::bindings::staticlet::plugin::types::Error,
            > {
                $crate::credentials::run_provide(image)
            }
        }

        $crate::credentials::bindings::export_credential_provider_world!(StaticletGuest with_types_in $crate::credentials::bindings);
    };
}
