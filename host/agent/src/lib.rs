//! staticlet: a node agent that runs Kubernetes static pods with no control plane.
//!
//! The data flows one way, one module per stage:
//!
//! ```text
//! source (file) → desired (decode, defaults, validation, merge, admission) → reconcile (workers) → runtime
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
pub mod reconcile;
pub mod source;
pub mod state;
pub mod status;
