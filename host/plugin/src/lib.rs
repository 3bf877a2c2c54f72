//! The WebAssembly plugin host.
//!
//! Plugins are components implementing one world of the `staticlet:plugin` WIT package (see
//! `wit/` at the top of the repository): `admission-validator`, `manifest-source`,
//! `runtime-adapter` or (since 0.2.0) `credential-provider`, built against any version of the
//! package this host loads (0.1.0 and 0.2.0). The pieces, in the order a plugin meets them:
//!
//! - [`PluginSpec`]: what the agent config says about a plugin (code, settings, grants, limits);
//! - [`PluginEngine`]: one wasmtime engine for every plugin, with the epoch ticker that enforces
//!   call deadlines, one linker per WIT version, and the on-disk cache of compiled code;
//! - [`Plugin`]: one loaded plugin: its pre-linked component, a warm instance, hot reload when
//!   its `.wasm` changes, and the typed calls of its kind ([`Plugin::validate`],
//!   [`Plugin::poll`]);
//! - [`AdapterRuntime`]: a runtime-adapter plugin as the agent's `Runtime`;
//! - [`CredentialPlugin`]: a credential-provider plugin as one of the node's credential providers.
//!
//! Every plugin runs with no ambient authority: no files, environment, sockets or HTTP unless
//! its [`Grants`] say so; every call has a deadline and every instance a memory cap, and a call
//! that traps, overruns or runs out of memory fails alone: its instance is thrown away and the
//! next call gets a fresh one.
//!
//! This crate knows nothing of what the agent does with verdicts, manifests or runtimes.

mod adapter;
mod bindings;
mod cache;
mod credentials;
mod egress;
mod engine;
mod engine_config;
mod plugin;
pub mod reload;
mod sandbox;
pub mod spec;

pub use adapter::{AdapterRuntime, DEFAULT_IMAGE_PULL_TIMEOUT};
pub use credentials::CredentialPlugin;
pub use engine::PluginEngine;
pub use plugin::{Health, Plugin, PluginInfo, Refresh};
pub use spec::{Code, DirGrant, Grants, HostGrant, Kind, Limits, PluginSpec, TlsGrant};

/// Where a pod came from, as validators see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodContext {
    /// The node's name.
    pub node_name: String,
    /// `file`, `http` or `plugin:<name>`.
    pub source: String,
    /// The manifest's path, URL or id.
    pub source_uri: String,
}

/// One reason a validator gives for rejecting a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The field at fault, as a Kubernetes field path.
    pub field: String,
    /// Why.
    pub message: String,
}

/// A validator's decision on one pod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Every reason to reject the pod; empty admits it.
    pub violations: Vec<Violation>,
    /// Notes that do not block the pod.
    pub warnings: Vec<String>,
}

/// The components built from `plugins/` by this crate's build script.
pub mod artifacts {
    include!(concat!(env!("OUT_DIR"), "/artifacts.rs"));

    /// The built-in static pod policy (`plugins/static-pod-policy`), embedded in the binary.
    pub const STATIC_POD_POLICY_WASM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/static_pod_policy.wasm"));

    /// [`STATIC_POD_POLICY_WASM`] compiled by the build script for the target being built, so
    /// a fresh node never compiles it.
    pub const STATIC_POD_POLICY_PRECOMPILED: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/static_pod_policy.cwasm"));

    /// The name the built-in static pod policy goes by.
    pub const STATIC_POD_POLICY_NAME: &str = "static-pod-policy";

    /// The spec of the built-in static pod policy: embedded code, no settings, no grants.
    pub fn static_pod_policy() -> crate::PluginSpec {
        crate::PluginSpec::new(
            STATIC_POD_POLICY_NAME,
            crate::Kind::AdmissionValidator,
            crate::Code::Builtin {
                name: STATIC_POD_POLICY_NAME,
                wasm: STATIC_POD_POLICY_WASM,
                precompiled: Some(STATIC_POD_POLICY_PRECOMPILED),
            },
        )
    }
}

/// Why a plugin could not be loaded or a call into it failed. Every variant names the plugin;
/// load errors name its code too.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PluginError {
    /// The `.wasm` file could not be read.
    #[error("plugin {plugin}: cannot read {code}: {message}")]
    Read {
        /// The plugin's name.
        plugin: String,
        /// Its file.
        code: String,
        /// The I/O error.
        message: String,
    },
    /// An image plugin's artifact could not be had from the store or the registry, or was
    /// refused (a digest or signature that does not match); the message names the reference.
    #[error("plugin {plugin}: {message}")]
    Artifact {
        /// The plugin's name.
        plugin: String,
        /// Why, with the reference and the digests, file or key at fault.
        message: String,
    },
    /// The file is not a WebAssembly component wasmtime can compile.
    #[error("plugin {plugin}: {code} is not a valid WebAssembly component: {message}")]
    Compile {
        /// The plugin's name.
        plugin: String,
        /// Its file.
        code: String,
        /// What the compiler said.
        message: String,
    },
    /// The component does not implement the configured kind's world, or was built against a WIT
    /// version this host does not know, or imports something the host does not provide.
    #[error("plugin {plugin}: {code} {message}")]
    Link {
        /// The plugin's name.
        plugin: String,
        /// Its file.
        code: String,
        /// What does not fit.
        message: String,
    },
    /// A call was made that the plugin's kind does not have.
    #[error("plugin {plugin} is {} plugin; it cannot {call}", kind.with_article())]
    WrongKind {
        /// The plugin's name.
        plugin: String,
        /// Its kind.
        kind: Kind,
        /// The call.
        call: &'static str,
    },
    /// The plugin's `init` or another export returned its own error.
    #[error("plugin {plugin}: {call} failed: {code}: {message}")]
    Guest {
        /// The plugin's name.
        plugin: String,
        /// The export that failed (`init`, `validate`, ...).
        call: &'static str,
        /// The plugin's error code.
        code: String,
        /// The plugin's message.
        message: String,
    },
    /// The call trapped (a panic, `unreachable`, an out-of-bounds access).
    #[error("plugin {plugin}: {call} trapped: {message}")]
    Trap {
        /// The plugin's name.
        plugin: String,
        /// The export that trapped.
        call: &'static str,
        /// The trap.
        message: String,
    },
    /// The call ran past its deadline and was interrupted.
    #[error("plugin {plugin}: {call} exceeded its deadline of {}ms and was interrupted", timeout.as_millis())]
    Deadline {
        /// The plugin's name.
        plugin: String,
        /// The export that overran.
        call: &'static str,
        /// The deadline.
        timeout: std::time::Duration,
    },
    /// The instance tried to grow its memory past the cap.
    #[error("plugin {plugin}: {call} exceeded its memory limit of {limit} bytes")]
    Memory {
        /// The plugin's name.
        plugin: String,
        /// The export that ran out.
        call: &'static str,
        /// The cap.
        limit: u64,
    },
}
