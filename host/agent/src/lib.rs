//! staticlet: a node agent that runs Kubernetes static pods with no control plane.
//!
//! The data flows one way, one module per stage; each stage reads what the one before it
//! publishes and knows nothing of the ones after it:
//!
//! ```text
//! source::Source                 desired                           reconcile           runtime
//! ├─ file::FileSource   (dir) ┐  decode, defaults, validation,     Controller: a
//! ├─ http::UrlSource    (URL) ├► identity, conflicts, admission ─► watcher per handler ─► Runtime trait
//! └─ plugin::PluginSource     ┘  (the validator chain) │           a worker per pod:    (staticlet-runtime:
//!     ▲ restored at start                              │           observe → plan →      Docker, CRI,
//!     └── source::checkpoint::keep ◄── accepted ◄──────┘           execute → publish     adapter plugins)
//!                                                                        │
//!                        requests (restart) ◄── api ◄── status ◄──────────┘
//!                                         (socket, ports) └──► mirror (API server, --kubeconfig)
//! ```
//!
//! Every source implements [`source::Source`] and hands raw manifests with their origin
//! ([`source::SourceSnapshot`]) to [`desired`], the one stage that decodes them and runs them
//! through [`admission`]'s validator chain. [`reconcile`] makes the runtime hold the desired
//! pods: one worker per pod observes its objects, asks the pure planner what to do, does it and
//! publishes the pod's status to [`status`], which [`api`] serves and [`mirror`] copies to an API
//! server. [`requests`] carries what users ask of a running pod back from the API to its
//! worker. [`daemon`] wires the stages for `staticlet run`; [`config`] turns flags and the config
//! file into one [`config::Config`]; [`cli`] holds the subcommands; [`state`] names everything
//! under `--root-dir`. `docs/architecture.md` draws the layers, which a unit test keeps true.

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
pub mod requests;
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
#[cfg(test)]
mod layering;
