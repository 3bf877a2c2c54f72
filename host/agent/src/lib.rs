//! staticlet: a node agent that runs Kubernetes static pods with no control plane.
//!
//! The data flows one way, one module per stage:
//!
//! ```text
//! source (file, URL) → desired (decode, defaults, validation, merge, admission) → reconcile (workers) → runtime
//! ```
//!
//! [`admission`] holds the validator chain the desired stage runs every pod through.
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
