//! Runtime adapters: implement [`RuntimeAdapter`] and export it with
//! [`export_runtime!`](crate::export_runtime).
//!
//! ```ignore
//! use staticlet_plugin_sdk::Config;
//! use staticlet_plugin_sdk::http::Request;
//! use staticlet_plugin_sdk::runtime::{RuntimeAdapter, RuntimeError, RuntimeVersion};
//!
//! struct MyRuntime { endpoint: String }
//!
//! impl RuntimeAdapter for MyRuntime {
//!     fn version(&self) -> Result<RuntimeVersion, RuntimeError> {
//!         let answer = Request::get(format!("{}/version", self.endpoint))
//!             .send()
//!             .map_err(|e| RuntimeError::Unavailable(e.to_string()))?;
//!         Ok(RuntimeVersion { runtime_name: "mine".into(), runtime_version: answer.text() })
//!     }
//!     // ... the other calls of the `runtime` interface
//! }
//!
//! staticlet_plugin_sdk::export_runtime!(MyRuntime, |config: Config| -> Result<MyRuntime, String> {
//!     Ok(MyRuntime { endpoint: config["endpoint"].as_str().unwrap_or("http://127.0.0.1:8888").into() })
//! });
//! ```
//!
//! The agent may run several calls at once, each on an instance of its own, and throws an
//! instance away after a trap or a missed deadline, so an adapter keeps no state between calls
//! beyond what `init` builds from its settings: the runtime is the state. Calls block; the agent
//! bounds each with a deadline of its own (longer for image pulls, stops and execs), and that
//! deadline also ends the HTTP requests in flight.

use std::cell::RefCell;

use crate::Config;

/// The generated bindings of the `runtime-adapter` world, for [`export_runtime!`](crate::export_runtime).
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit/since_v0.2.0",
        world: "runtime-adapter",
        // So that adapters can compare what they build and return, in their tests too.
        additional_derives: [PartialEq, Eq],
        pub_export_macro: true,
        export_macro_name: "export_runtime_world",
        default_bindings_module: "staticlet_plugin_sdk::runtime::bindings",
    });
}

use bindings::staticlet::plugin::types;

pub use bindings::exports::staticlet::plugin::runtime::{
    Container, ContainerConfig, ContainerMetadata, ContainerState, ContainerStatus, DnsConfig, ExecResult, Image, LogOptions, Mount,
    MountPropagation, PortMapping, Protocol, RegistryAuth, Resources, RuntimeError, RuntimeVersion, Sandbox, SandboxConfig,
    SandboxMetadata, SandboxState, SandboxStatus, Security, StringMap, Timestamp,
};

impl RuntimeError {
    /// What the error says, whatever its kind.
    pub fn message(&self) -> &str {
        match self {
            RuntimeError::Unavailable(m)
            | RuntimeError::NotFound(m)
            | RuntimeError::ImagePull(m)
            | RuntimeError::Unsupported(m)
            | RuntimeError::DeadlineExceeded(m)
            | RuntimeError::Call(m) => m,
        }
    }
}

/// A container runtime, as the agent drives it: the `runtime` interface of the WIT package,
/// with `&self`. See `wit/since_v0.2.0/runtime.wit` for each call's contract; in short,
/// stopping or removing what is already stopped or gone succeeds, a missing object is
/// [`RuntimeError::NotFound`] (which the agent reads as "already gone"), and labels come back
/// from the list calls unchanged.
pub trait RuntimeAdapter: 'static {
    /// The runtime's name and version; also how the agent checks that it is reachable.
    fn version(&self) -> Result<RuntimeVersion, RuntimeError>;
    /// Creates and starts a sandbox; returns its id.
    fn run_pod_sandbox(&self, config: SandboxConfig) -> Result<String, RuntimeError>;
    /// Stops a sandbox and every container in it. Stopping a stopped sandbox succeeds.
    fn stop_pod_sandbox(&self, sandbox_id: String) -> Result<(), RuntimeError>;
    /// Removes a stopped sandbox. Removing one that is gone succeeds.
    fn remove_pod_sandbox(&self, sandbox_id: String) -> Result<(), RuntimeError>;
    /// The sandboxes whose labels include every pair of `filter`.
    fn list_pod_sandboxes(&self, filter: StringMap) -> Result<Vec<Sandbox>, RuntimeError>;
    /// A sandbox's state and address.
    fn get_pod_sandbox_status(&self, sandbox_id: String) -> Result<SandboxStatus, RuntimeError>;
    /// Creates a container in a sandbox; returns its id.
    fn create_container(&self, sandbox_id: String, config: ContainerConfig, sandbox: SandboxConfig) -> Result<String, RuntimeError>;
    /// Starts a created container.
    fn start_container(&self, container_id: String) -> Result<(), RuntimeError>;
    /// Stops a container: its stop signal, then SIGKILL after `grace_ms`. Stopping an exited
    /// container succeeds.
    fn stop_container(&self, container_id: String, grace_ms: u64) -> Result<(), RuntimeError>;
    /// Removes a container. Removing one that is gone succeeds.
    fn remove_container(&self, container_id: String) -> Result<(), RuntimeError>;
    /// The containers whose labels include every pair of `filter`.
    fn list_containers(&self, filter: StringMap) -> Result<Vec<Container>, RuntimeError>;
    /// A container's state, times, exit code and reason.
    fn get_container_status(&self, container_id: String) -> Result<ContainerStatus, RuntimeError>;
    /// Runs a command in a running container and waits for it, for at most `timeout_ms`.
    fn exec_sync(&self, container_id: String, cmd: Vec<String>, timeout_ms: u64) -> Result<ExecResult, RuntimeError>;
    /// A container's output so far, stdout and stderr interleaved as written.
    fn logs(&self, container_id: String, options: LogOptions) -> Result<Vec<u8>, RuntimeError>;
    /// The image as the runtime has it, or `None` when it is not present.
    fn image_status(&self, image: String) -> Result<Option<Image>, RuntimeError>;
    /// Pulls an image, presenting `auth` to its registry (`None`: anonymously); returns the
    /// reference of what was pulled. `auth` holds secrets: never log it or put it in an error.
    fn pull_image(&self, image: String, auth: Option<RegistryAuth>) -> Result<String, RuntimeError>;
}

type Built = Box<dyn RuntimeAdapter>;

thread_local! {
    static ADAPTER: RefCell<Option<Built>> = const { RefCell::new(None) };
}

#[doc(hidden)]
pub fn run_init(config: &str, build: impl FnOnce(Config) -> Result<Built, String>) -> Result<(), types::Error> {
    let error = |message: String| types::Error { code: "config".into(), message };
    let adapter = build(crate::parse_config(config).map_err(error)?).map_err(error)?;
    ADAPTER.with(|a| *a.borrow_mut() = Some(adapter));
    Ok(())
}

#[doc(hidden)]
pub fn with_adapter<T>(call: impl FnOnce(&dyn RuntimeAdapter) -> Result<T, RuntimeError>) -> Result<T, RuntimeError> {
    ADAPTER.with(|a| match a.borrow().as_deref() {
        Some(adapter) => call(adapter),
        None => Err(RuntimeError::Call("called before init".into())),
    })
}

/// Exports a [`RuntimeAdapter`] as the component's `runtime-adapter` world. `$build` turns the
/// plugin's settings ([`Config`], `{}` when there are none) into the adapter, or says what is
/// wrong with them (the agent reports that as a `config` error).
///
/// Invoke it once, in the crate that builds the component: the world's exports are declared
/// where it expands, so a library adapter meant to be wrapped leaves it to its wrapper.
#[macro_export]
macro_rules! export_runtime {
    ($ty:ty, $build:expr) => {
        struct StaticletGuest;

        impl $crate::runtime::bindings::Guest for StaticletGuest {
            fn init(config: String) -> Result<(), $crate::runtime::bindings::staticlet::plugin::types::Error> {
                let build: fn($crate::Config) -> Result<$ty, String> = $build;
                $crate::runtime::run_init(&config, |c| build(c).map(|a| Box::new(a) as Box<dyn $crate::runtime::RuntimeAdapter>))
            }
        }

        impl $crate::runtime::bindings::exports::staticlet::plugin::runtime::Guest for StaticletGuest {
            fn version() -> Result<$crate::runtime::RuntimeVersion, $crate::runtime::RuntimeError> {
                $crate::runtime::with_adapter(|a| a.version())
            }
            fn run_pod_sandbox(config: $crate::runtime::SandboxConfig) -> Result<String, $crate::runtime::RuntimeError> {
                $crate::runtime::with_adapter(|a| a.run_pod_sandbox(config))
            }
            fn stop_pod_sandbox(id: String) -> Result<(), $crate::runtime::RuntimeError> {
                $crate::runtime::with_adapter(|a| a.stop_pod_sandbox(id))
            }
            fn remove_pod_sandbox(id: String) -> Result<(), $crate::runtime::RuntimeError> {
                $crate::runtime::with_adapter(|a| a.remove_pod_sandbox(id))
            }
            fn list_pod_sandboxes(
                filter: $crate::runtime::StringMap,
            ) -> Result<Vec<$crate::runtime::Sandbox>, $crate::runtime::RuntimeError> {
                $crate::runtime::with_adapter(|a| a.list_pod_sandboxes(filter))
            }
            fn get_pod_sandbox_status(id: String) -> Result<$crate::runtime::SandboxStatus, $crate::runtime::RuntimeError> {
                $crate::runtime::with_adapter(|a| a.get_pod_sandbox_status(id))
            }
            fn create_container(
                sandbox_id: String,
                config: $crate::runtime::ContainerConfig,
                sandbox: $crate::runtime::SandboxConfig,
            ) -> Result<String, $crate::runtime::RuntimeError> {
                $crate::runtime::with_adapter(|a| a.create_container(sandbox_id, config, sandbox))
            }
            fn start_container(id: String) -> Result<(), $crate::runtime::RuntimeError> {
                $crate::runtime::with_adapter(|a| a.start_container(id))
            }
            fn stop_container(id: String, grace_ms: u64) -> Result<(), $crate::runtime::RuntimeError> {
                $crate::runtime::with_adapter(|a| a.stop_container(id, grace_ms))
            }
            fn remove_container(id: String) -> Result<(), $crate::runtime::RuntimeError> {
                $crate::runtime::with_adapter(|a| a.remove_container(id))
            }
            fn list_containers(
                filter: $crate::runtime::StringMap,
            ) -> Result<Vec<$crate::runtime::Container>, $crate::runtime::RuntimeError> {
                $crate::runtime::with_adapter(|a| a.list_containers(filter))
            }
            fn get_container_status(id: String) -> Result<$crate::runtime::ContainerStatus, $crate::runtime::RuntimeError> {
                $crate::runtime::with_adapter(|a| a.get_container_status(id))
            }
            fn exec_sync(
                id: String,
                cmd: Vec<String>,
                timeout_ms: u64,
            ) -> Result<$crate::runtime::ExecResult, $crate::runtime::RuntimeError> {
                $crate::runtime::with_adapter(|a| a.exec_sync(id, cmd, timeout_ms))
            }
            fn logs(id: String, options: $crate::runtime::LogOptions) -> Result<Vec<u8>, $crate::runtime::RuntimeError> {
                $crate::runtime::with_adapter(|a| a.logs(id, options))
            }
            fn image_status(image: String) -> Result<Option<$crate::runtime::Image>, $crate::runtime::RuntimeError> {
                $crate::runtime::with_adapter(|a| a.image_status(image))
            }
            fn pull_image(
                image: String,
                auth: Option<$crate::runtime::RegistryAuth>,
            ) -> Result<String, $crate::runtime::RuntimeError> {
                $crate::runtime::with_adapter(|a| a.pull_image(image, auth))
            }
        }

        $crate::runtime::bindings::export_runtime_world!(StaticletGuest with_types_in $crate::runtime::bindings);
    };
}
