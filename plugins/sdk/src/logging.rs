//! Lines in the agent's log, tagged with the plugin's name, and the node's name, from any world.

// Every world imports the same `host` interface, so any world's bindings reach it.
#[cfg(all(feature = "credential-provider", not(any(feature = "validator", feature = "runtime-adapter"))))]
use crate::credentials::bindings::staticlet::plugin::{host, types::LogLevel};
#[cfg(all(feature = "runtime-adapter", not(feature = "validator")))]
use crate::runtime::bindings::staticlet::plugin::{host, types::LogLevel};
#[cfg(all(
    feature = "manifest-source",
    not(any(feature = "validator", feature = "runtime-adapter", feature = "credential-provider"))
))]
use crate::source::bindings::staticlet::plugin::{host, types::LogLevel};
#[cfg(feature = "validator")]
use crate::validator::bindings::staticlet::plugin::{host, types::LogLevel};

/// Logs a debugging detail through the agent, tagged with the plugin's name.
pub fn log_debug(message: &str) {
    host::log(LogLevel::Debug, message);
}

/// Logs a line through the agent, tagged with the plugin's name.
pub fn log_info(message: &str) {
    host::log(LogLevel::Info, message);
}

/// Logs a warning through the agent, tagged with the plugin's name.
pub fn log_warn(message: &str) {
    host::log(LogLevel::Warn, message);
}

/// Logs an error through the agent, tagged with the plugin's name.
pub fn log_error(message: &str) {
    host::log(LogLevel::Error, message);
}

/// The node the agent runs pods for (its `--hostname-override`).
pub fn node_name() -> String {
    host::node_name()
}
