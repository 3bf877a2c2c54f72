//! Manifest sources: implement [`ManifestSource`] and export it with
//! [`export_source!`](crate::export_source).
//!
//! ```ignore
//! use staticlet_plugin_sdk::Config;
//! use staticlet_plugin_sdk::source::{Error, Manifest, ManifestSource};
//!
//! struct Fixed {
//!     manifests: Vec<Manifest>,
//!     served: bool,
//! }
//!
//! impl ManifestSource for Fixed {
//!     fn poll(&mut self) -> Result<Option<Vec<Manifest>>, Error> {
//!         // The full set once, then "unchanged".
//!         if std::mem::replace(&mut self.served, true) {
//!             return Ok(None);
//!         }
//!         Ok(Some(self.manifests.clone()))
//!     }
//! }
//!
//! staticlet_plugin_sdk::export_source!(Fixed, |_config: Config| -> Result<Fixed, String> {
//!     Ok(Fixed { manifests: vec![Manifest::new("web", "apiVersion: v1\nkind: Pod\n...")], served: false })
//! });
//! ```
//!
//! The agent polls at the interval its config gives, and between polls sits in
//! [`ManifestSource::wait_for_change`]: a source that can follow its backend (a watch, a long
//! poll) answers `true` as soon as it sees a change and the agent polls at once; the default
//! waits out the timeout.

use std::cell::RefCell;
use std::time::Duration;

use crate::Config;

/// The generated bindings of the `manifest-source` world, for
/// [`export_source!`](crate::export_source).
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit/since_v0.2.0",
        world: "manifest-source",
        pub_export_macro: true,
        export_macro_name: "export_source_world",
        default_bindings_module: "staticlet_plugin_sdk::source::bindings",
    });
}

use bindings::exports::staticlet::plugin::source as wit;
use bindings::staticlet::plugin::types;

/// One manifest: its id, stable across polls (the same id is the same pod, which keeps its
/// UID), and its YAML or JSON text, one `kind: Pod`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The id.
    pub id: String,
    /// The text.
    pub content: String,
}

impl Manifest {
    /// The manifest `id` with `content`.
    pub fn new(id: impl Into<String>, content: impl Into<String>) -> Manifest {
        Manifest { id: id.into(), content: content.into() }
    }
}

/// Why a poll or a wait gave nothing: a short stable code a program can match, and words for
/// the agent's log. A failed poll keeps the source's last good pods running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// `unavailable` (the backend cannot be reached), `config`, or the source's own.
    pub code: String,
    /// What went wrong, never a secret.
    pub message: String,
}

impl Error {
    /// An error with its own `code`.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Error {
        Error { code: code.into(), message: message.into() }
    }

    /// The backend could not be reached.
    pub fn unavailable(message: impl Into<String>) -> Error {
        Error::new("unavailable", message)
    }
}

/// A manifest source. One value is built per instance by `init`, and keeps its state between
/// calls.
pub trait ManifestSource: 'static {
    /// The source's full current set, or `None` when nothing changed since the last successful
    /// poll.
    fn poll(&mut self) -> Result<Option<Vec<Manifest>>, Error>;

    /// Returns `true` as soon as the source may have changed, `false` once `timeout` passed
    /// without news. The default cannot tell, and waits out the timeout.
    fn wait_for_change(&mut self, timeout: Duration) -> Result<bool, Error> {
        std::thread::sleep(timeout);
        Ok(false)
    }
}

type Built = Box<dyn ManifestSource>;

thread_local! {
    static SOURCE: RefCell<Option<Built>> = const { RefCell::new(None) };
}

fn wit_error(e: Error) -> types::Error {
    types::Error { code: e.code, message: e.message }
}

fn with_source<T>(call: &str, f: impl FnOnce(&mut dyn ManifestSource) -> Result<T, Error>) -> Result<T, types::Error> {
    SOURCE.with(|s| match s.borrow_mut().as_mut() {
        Some(source) => f(source.as_mut()).map_err(wit_error),
        None => Err(wit_error(Error::new("internal", format!("{call} was called before init")))),
    })
}

#[doc(hidden)]
pub fn run_init(config: &str, build: impl FnOnce(Config) -> Result<Built, String>) -> Result<(), types::Error> {
    let config = crate::parse_config(config).map_err(|e| wit_error(Error::new("config", e)))?;
    let source = build(config).map_err(|e| wit_error(Error::new("config", e)))?;
    SOURCE.with(|s| *s.borrow_mut() = Some(source));
    Ok(())
}

#[doc(hidden)]
pub fn run_poll() -> Result<Option<Vec<wit::Manifest>>, types::Error> {
    with_source("poll", |source| {
        Ok(source.poll()?.map(|list| list.into_iter().map(|m| wit::Manifest { id: m.id, content: m.content }).collect()))
    })
}

#[doc(hidden)]
pub fn run_wait_for_change(timeout_ms: u64) -> Result<bool, types::Error> {
    with_source("wait-for-change", |source| source.wait_for_change(Duration::from_millis(timeout_ms)))
}

/// Exports a [`ManifestSource`] as the component's `manifest-source` world. `$build` turns the
/// plugin's settings ([`Config`]) into the source, or says what is wrong with them.
#[macro_export]
macro_rules! export_source {
    ($ty:ty, $build:expr) => {
        struct StaticletGuest;

        impl $crate::source::bindings::Guest for StaticletGuest {
            fn init(config: String) -> Result<(), $crate::source::bindings::staticlet::plugin::types::Error> {
                let build: fn($crate::Config) -> Result<$ty, String> = $build;
                $crate::source::run_init(&config, |c| build(c).map(|s| Box::new(s) as Box<dyn $crate::source::ManifestSource>))
            }
        }

        impl $crate::source::bindings::exports::staticlet::plugin::source::Guest for StaticletGuest {
            fn poll() -> Result<
                Option<Vec<$crate::source::bindings::exports::staticlet::plugin::source::Manifest>>,
                $crate::source::bindings::staticlet::plugin::types::Error,
            > {
                $crate::source::run_poll()
            }

            fn wait_for_change(timeout_ms: u64) -> Result<bool, $crate::source::bindings::staticlet::plugin::types::Error> {
                $crate::source::run_wait_for_change(timeout_ms)
            }
        }

        $crate::source::bindings::export_source_world!(StaticletGuest with_types_in $crate::source::bindings);
    };
}
