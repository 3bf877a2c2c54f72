//! A runtime adapter for the agent's tests: the Podman adapter, made to misbehave as its
//! `misbehave` setting says (every other setting goes to the Podman adapter unchanged):
//!
//! - `trap-on-create`: `create-container` panics before doing anything, which traps the
//!   instance (`panic = "abort"`);
//! - `hang`: `run-pod-sandbox` and `create-container` spin and never return, until the agent's
//!   deadline interrupts them;
//! - `wrong-host`: every request goes to `http://192.0.2.1:8888`, a host no agent config
//!   grants, so the agent refuses each and the call fails with the refusal.
//!
//! Every other call works as the Podman adapter's, so listing still does. Replacing its
//! `.wasm` with the real adapter's is how a test "fixes" it.

use podman_adapter::Podman;
use staticlet_plugin_sdk::Config;
use staticlet_plugin_sdk::runtime::{
    Container, ContainerConfig, ContainerStatus, ExecResult, Image, LogOptions, RegistryAuth, RuntimeAdapter, RuntimeError, RuntimeVersion,
    Sandbox, SandboxConfig, SandboxStatus, StringMap,
};

/// Where `wrong-host` sends every request: TEST-NET-1, which no agent config grants.
const WRONG_ENDPOINT: &str = "http://192.0.2.1:8888";

/// How the adapter misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Misbehaviour {
    TrapOnCreate,
    Hang,
    WrongHost,
}

/// The Podman adapter and its misbehaviour.
struct Misbehaving {
    podman: Podman,
    how: Misbehaviour,
}

fn build(mut config: Config) -> Result<Misbehaving, String> {
    let how = match config.get("misbehave").and_then(|m| m.as_str()) {
        Some("trap-on-create") => Misbehaviour::TrapOnCreate,
        Some("hang") => Misbehaviour::Hang,
        Some("wrong-host") => Misbehaviour::WrongHost,
        other => return Err(format!("misbehave: want trap-on-create, hang or wrong-host, got {other:?}")),
    };
    if let Some(settings) = config.as_object_mut() {
        settings.remove("misbehave");
        if how == Misbehaviour::WrongHost {
            settings.insert("endpoint".into(), WRONG_ENDPOINT.into());
        }
    }
    Ok(Misbehaving { podman: Podman::from_settings(&config)?, how })
}

impl Misbehaving {
    fn hang_if_told(&self) {
        if self.how == Misbehaviour::Hang {
            // Busy and never blocking in a host call: only the agent's epoch deadline ends it.
            let mut spins: u64 = 0;
            loop {
                spins = std::hint::black_box(spins.wrapping_add(1));
            }
        }
    }
}

impl RuntimeAdapter for Misbehaving {
    fn version(&self) -> Result<RuntimeVersion, RuntimeError> {
        self.podman.version()
    }
    fn run_pod_sandbox(&self, config: SandboxConfig) -> Result<String, RuntimeError> {
        self.hang_if_told();
        self.podman.run_pod_sandbox(config)
    }
    fn stop_pod_sandbox(&self, sandbox_id: String) -> Result<(), RuntimeError> {
        self.podman.stop_pod_sandbox(sandbox_id)
    }
    fn remove_pod_sandbox(&self, sandbox_id: String) -> Result<(), RuntimeError> {
        self.podman.remove_pod_sandbox(sandbox_id)
    }
    fn list_pod_sandboxes(&self, filter: StringMap) -> Result<Vec<Sandbox>, RuntimeError> {
        self.podman.list_pod_sandboxes(filter)
    }
    fn get_pod_sandbox_status(&self, sandbox_id: String) -> Result<SandboxStatus, RuntimeError> {
        self.podman.get_pod_sandbox_status(sandbox_id)
    }
    fn create_container(&self, sandbox_id: String, config: ContainerConfig, sandbox: SandboxConfig) -> Result<String, RuntimeError> {
        assert!(self.how != Misbehaviour::TrapOnCreate, "told to trap while creating {}", config.metadata.name);
        self.hang_if_told();
        self.podman.create_container(sandbox_id, config, sandbox)
    }
    fn start_container(&self, container_id: String) -> Result<(), RuntimeError> {
        self.podman.start_container(container_id)
    }
    fn stop_container(&self, container_id: String, grace_ms: u64) -> Result<(), RuntimeError> {
        self.podman.stop_container(container_id, grace_ms)
    }
    fn remove_container(&self, container_id: String) -> Result<(), RuntimeError> {
        self.podman.remove_container(container_id)
    }
    fn list_containers(&self, filter: StringMap) -> Result<Vec<Container>, RuntimeError> {
        self.podman.list_containers(filter)
    }
    fn get_container_status(&self, container_id: String) -> Result<ContainerStatus, RuntimeError> {
        self.podman.get_container_status(container_id)
    }
    fn exec_sync(&self, container_id: String, cmd: Vec<String>, timeout_ms: u64) -> Result<ExecResult, RuntimeError> {
        self.podman.exec_sync(container_id, cmd, timeout_ms)
    }
    fn logs(&self, container_id: String, options: LogOptions) -> Result<Vec<u8>, RuntimeError> {
        self.podman.logs(container_id, options)
    }
    fn image_status(&self, image: String) -> Result<Option<Image>, RuntimeError> {
        self.podman.image_status(image)
    }
    fn pull_image(&self, image: String, auth: Option<RegistryAuth>) -> Result<String, RuntimeError> {
        self.podman.pull_image(image, auth)
    }
}

staticlet_plugin_sdk::export_runtime!(Misbehaving, build);
