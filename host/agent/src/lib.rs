//! staticlet: a node agent that runs Kubernetes static pods with no control plane.
//!
//! The data flows one way, one module per stage:
//!
//! ```text
//! source::Source                   desired                              reconcile     runtime
//! ├─ file::FileSource    (dir)  ┐  decode, defaults, validation,
//! ├─ http::UrlSource     (URL)  ├► merge, admission: the desired set  ─► workers   ─► Runtime trait
//! └─ plugin::PluginSource       ┘  │
//!     ▲ restored at start          └► accepted manifests ─► source::checkpoint::keep (files)
//! ```
//!
//! Every source implements [`source::Source`] and hands raw manifests with their origin
//! ([`source::SourceSnapshot`]) to [`desired`], the one stage that decodes them; it knows nothing
//! of pods or the node. [`daemon`] builds the sources, runs them side by side
//! ([`source::start`]) and wires the stages. [`admission`] holds the validator chain the
//! desired stage runs every pod through; [`reload`] reloads any plugin whose code changed.
//!
//! [`config`] turns flags and the config file into one [`config::Config`]; [`cli`] holds the
//! subcommands; [`state`] names everything under `--root-dir`.

pub mod admission;
pub mod api;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod desired;
pub mod events;
pub mod metrics;
pub mod mirror;
pub mod reconcile;
pub mod reload;
pub mod runtimes;
pub mod source;
pub mod state;
pub mod status;

/// An error with every cause after it (`a: b: c`): HTTP clients put what actually failed (a
/// refused connection, a bad certificate) several sources deep.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}
