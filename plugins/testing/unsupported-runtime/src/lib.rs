//! A runtime adapter for the plugin host's tests: it answers `version` with the name and version
//! its settings give (`{"name": ..., "version": ...}`) and refuses every other call with
//! `unsupported`, so a test sees how the agent reports a runtime that cannot do what it asks.

use std::cell::RefCell;

// wit-bindgen's export glue is `unsafe extern "C"` by nature; the lint stays on elsewhere.
#[allow(unsafe_code)]
mod bindings {
    wit_bindgen::generate!({
        path: "../../../wit/since_v0.2.0",
        world: "runtime-adapter",
    });

    use super::UnsupportedRuntime;
    export!(UnsupportedRuntime);
}

use bindings::Guest;
use bindings::exports::staticlet::plugin::runtime::{
    Container, ContainerConfig, ContainerStatus, ExecResult, Guest as Runtime, Image, LogOptions, RegistryAuth, RuntimeError,
    RuntimeVersion, Sandbox, SandboxConfig, SandboxStatus, StringMap,
};
use bindings::staticlet::plugin::types::Error;

thread_local! {
    static VERSION: RefCell<Option<RuntimeVersion>> = const { RefCell::new(None) };
}

fn unsupported<T>(call: &str) -> Result<T, RuntimeError> {
    Err(RuntimeError::Unsupported(format!("{call}: this test runtime only answers version")))
}

fn setting(config: &serde_json::Value, key: &str) -> Result<String, Error> {
    config
        .get(key)
        .and_then(|v| v.as_str())
        .map(str::to_owned)
        .ok_or_else(|| Error { code: "config".into(), message: format!("{key}: missing; the settings must give a name and a version") })
}

struct UnsupportedRuntime;

impl Guest for UnsupportedRuntime {
    fn init(config: String) -> Result<(), Error> {
        let config: serde_json::Value =
            serde_json::from_str(&config).map_err(|e| Error { code: "config".into(), message: format!("settings are not JSON: {e}") })?;
        let version = RuntimeVersion { runtime_name: setting(&config, "name")?, runtime_version: setting(&config, "version")? };
        VERSION.with(|v| *v.borrow_mut() = Some(version));
        Ok(())
    }
}

impl Runtime for UnsupportedRuntime {
    fn version() -> Result<RuntimeVersion, RuntimeError> {
        VERSION.with(|v| v.borrow().clone()).ok_or_else(|| RuntimeError::Call("version was called before init".into()))
    }

    fn run_pod_sandbox(_: SandboxConfig) -> Result<String, RuntimeError> {
        unsupported("run-pod-sandbox")
    }

    fn stop_pod_sandbox(_: String) -> Result<(), RuntimeError> {
        unsupported("stop-pod-sandbox")
    }

    fn remove_pod_sandbox(_: String) -> Result<(), RuntimeError> {
        unsupported("remove-pod-sandbox")
    }

    fn list_pod_sandboxes(_: StringMap) -> Result<Vec<Sandbox>, RuntimeError> {
        unsupported("list-pod-sandboxes")
    }

    fn get_pod_sandbox_status(_: String) -> Result<SandboxStatus, RuntimeError> {
        unsupported("get-pod-sandbox-status")
    }

    fn create_container(_: String, _: ContainerConfig, _: SandboxConfig) -> Result<String, RuntimeError> {
        unsupported("create-container")
    }

    fn start_container(_: String) -> Result<(), RuntimeError> {
        unsupported("start-container")
    }

    fn stop_container(_: String, _: u64) -> Result<(), RuntimeError> {
        unsupported("stop-container")
    }

    fn remove_container(_: String) -> Result<(), RuntimeError> {
        unsupported("remove-container")
    }

    fn list_containers(_: StringMap) -> Result<Vec<Container>, RuntimeError> {
        unsupported("list-containers")
    }

    fn get_container_status(_: String) -> Result<ContainerStatus, RuntimeError> {
        unsupported("get-container-status")
    }

    fn exec_sync(_: String, _: Vec<String>, _: u64) -> Result<ExecResult, RuntimeError> {
        unsupported("exec-sync")
    }

    fn logs(_: String, _: LogOptions) -> Result<Vec<u8>, RuntimeError> {
        unsupported("logs")
    }

    fn image_status(_: String) -> Result<Option<Image>, RuntimeError> {
        unsupported("image-status")
    }

    fn pull_image(_: String, _: Option<RegistryAuth>) -> Result<String, RuntimeError> {
        unsupported("pull-image")
    }
}
