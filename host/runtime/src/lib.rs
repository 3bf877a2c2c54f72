//! The runtime trait: the only door from staticlet to a container runtime.
//!
//! The shape follows the CRI's `RuntimeService` and `ImageService`, because that is the
//! vocabulary the kubelet and every Kubernetes runtime already share: a pod is a *sandbox*
//! (which holds the network namespace) plus *containers* created inside it, each named by
//! metadata (name and attempt) and found again by labels. Docker, the CRI and runtime-adapter
//! plugins all implement [`Runtime`]; nothing above the trait knows which one it drives.
//!
//! # Contract
//!
//! - Every call is idempotent where the CRI's is: stopping or removing something already
//!   stopped or gone succeeds.
//! - "Not found" is [`RuntimeError::NotFound`], never a generic failure, so callers can tell a
//!   vanished object from a broken runtime.
//! - Labels and annotations given in a config come back unchanged from the list calls; they are
//!   how the agent finds its own objects again after a restart.

mod clock;
mod fake;
pub mod labels;
mod pull;
mod stream;
mod types;

pub use clock::Clock;
pub use fake::FakeRuntime;
pub use pull::{PullProgress, PullProgressSender, RegistryAuth};
pub use stream::*;
pub use types::*;

use std::time::Duration;

use async_trait::async_trait;

/// The names of the built-in runtimes' handlers, as runtime classes and labels name them.
pub mod handler {
    /// The built-in Docker runtime.
    pub const DOCKER: &str = "docker";
    /// The built-in CRI runtime (containerd, CRI-O at `--container-runtime-endpoint`).
    pub const CRI: &str = "cri";
}
use futures::stream::BoxStream;

/// A container runtime, as the agent drives it.
#[async_trait]
pub trait Runtime: Send + Sync + 'static {
    /// A short name for messages, metrics and container IDs (`docker`, `containerd`, or a
    /// runtime adapter's name in the agent config, such as `podman`).
    fn name(&self) -> &str;

    /// The runtime's name and version; also how the agent checks that it is reachable.
    ///
    /// # Errors
    ///
    /// [`RuntimeError::Unavailable`] when the runtime cannot be reached.
    async fn version(&self) -> Result<RuntimeVersion, RuntimeError>;

    /// Creates and starts a sandbox; returns its ID.
    async fn run_pod_sandbox(&self, config: &PodSandboxConfig) -> Result<String, RuntimeError>;

    /// Stops a sandbox and every container in it, forcibly. Stopping a stopped sandbox succeeds.
    async fn stop_pod_sandbox(&self, sandbox_id: &str) -> Result<(), RuntimeError>;

    /// Removes a stopped sandbox. Removing one that is gone succeeds.
    async fn remove_pod_sandbox(&self, sandbox_id: &str) -> Result<(), RuntimeError>;

    /// The sandboxes whose labels include every pair in `filter`.
    async fn list_pod_sandboxes(&self, filter: &LabelFilter) -> Result<Vec<PodSandbox>, RuntimeError>;

    /// The sandbox's state and network address.
    async fn pod_sandbox_status(&self, sandbox_id: &str) -> Result<PodSandboxStatus, RuntimeError>;

    /// Creates a container in a sandbox; returns its ID. The image must be present.
    async fn create_container(
        &self,
        sandbox_id: &str,
        config: &ContainerConfig,
        sandbox_config: &PodSandboxConfig,
    ) -> Result<String, RuntimeError>;

    /// Starts a created container.
    async fn start_container(&self, container_id: &str) -> Result<(), RuntimeError>;

    /// Stops a container: its stop signal, then SIGKILL after `grace`. Stopping an exited
    /// container succeeds.
    async fn stop_container(&self, container_id: &str, grace: Duration) -> Result<(), RuntimeError>;

    /// Removes a container. Removing one that is gone succeeds.
    async fn remove_container(&self, container_id: &str) -> Result<(), RuntimeError>;

    /// The containers whose labels include every pair in `filter`.
    async fn list_containers(&self, filter: &LabelFilter) -> Result<Vec<Container>, RuntimeError>;

    /// A container's state, times, exit code and reason.
    async fn container_status(&self, container_id: &str) -> Result<ContainerStatus, RuntimeError>;

    /// Runs a command in a running container and waits for it, as the CRI's `ExecSync`: what
    /// exec probes and exec hooks use. Output beyond [`EXEC_OUTPUT_LIMIT`] bytes per stream is
    /// dropped.
    ///
    /// # Errors
    ///
    /// [`RuntimeError::DeadlineExceeded`] when the command has not finished within `timeout`;
    /// [`RuntimeError::NotFound`] when the container is gone.
    async fn exec_sync(&self, container_id: &str, cmd: &[String], timeout: Duration) -> Result<ExecResult, RuntimeError>;

    /// A container's output (stdout and stderr interleaved, as written), running or exited:
    /// what `kubectl logs` shows and what `FallbackToLogsOnError` reads.
    ///
    /// # Errors
    ///
    /// [`RuntimeError::NotFound`] when the container is gone.
    async fn logs(
        &self,
        container_id: &str,
        options: &LogOptions,
    ) -> Result<BoxStream<'static, Result<Vec<u8>, RuntimeError>>, RuntimeError>;

    /// The image as the runtime has it, or `None` when it is not present.
    async fn image_status(&self, image: &str) -> Result<Option<Image>, RuntimeError>;

    /// Pulls an image presenting `auth` to its registry (none: anonymously), reporting what it
    /// can of its progress to `progress`; returns the reference of what was pulled.
    ///
    /// # Errors
    ///
    /// [`RuntimeError::ImagePull`] with the registry's message when the pull fails.
    async fn pull_image(&self, image: &str, auth: Option<&RegistryAuth>, progress: &PullProgressSender) -> Result<String, RuntimeError>;

    /// The image this runtime makes sandboxes from, when it is one the agent should pull (with
    /// the node's credentials) before a sandbox needs it; `None` (the default) when the runtime
    /// has no such image or sees to it alone.
    async fn sandbox_image(&self) -> Result<Option<String>, RuntimeError> {
        Ok(None)
    }

    /// Runs a command in a running container with its streams connected to the caller, as
    /// the CRI's `Exec` gives `kubectl exec`.
    ///
    /// # Errors
    ///
    /// [`RuntimeError::Unsupported`] when the runtime cannot (the default);
    /// [`RuntimeError::NotFound`] when the container is gone.
    async fn exec(&self, container_id: &str, cmd: &[String], options: StreamOptions) -> Result<StreamSession, RuntimeError> {
        let _ = (container_id, cmd, options);
        Err(RuntimeError::Unsupported { runtime: self.name().to_owned(), call: "exec" })
    }

    /// Connects the caller to a running container's own stdin and output, as the CRI's
    /// `Attach` gives `kubectl attach`.
    ///
    /// # Errors
    ///
    /// [`RuntimeError::Unsupported`] when the runtime cannot (the default);
    /// [`RuntimeError::NotFound`] when the container is gone.
    async fn attach(&self, container_id: &str, options: StreamOptions) -> Result<StreamSession, RuntimeError> {
        let _ = (container_id, options);
        Err(RuntimeError::Unsupported { runtime: self.name().to_owned(), call: "attach" })
    }

    /// Opens a TCP connection to `port` on the loopback address of the sandbox's network
    /// namespace, as the CRI's `PortForward` gives `kubectl port-forward`: a pod's port is
    /// reached as the pod itself reaches it, published or not.
    ///
    /// # Errors
    ///
    /// [`RuntimeError::Unsupported`] when the runtime cannot (the default);
    /// [`RuntimeError::NotFound`] when the sandbox is gone; [`RuntimeError::Call`] when
    /// nothing listens on the port.
    async fn port_forward(&self, sandbox_id: &str, port: u16) -> Result<Box<dyn Duplex>, RuntimeError> {
        let _ = (sandbox_id, port);
        Err(RuntimeError::Unsupported { runtime: self.name().to_owned(), call: "port-forward" })
    }

    /// A stream of changes to sandboxes and containers whose labels match `filter`, as the
    /// CRI's `GetContainerEvents` gives the kubelet's evented PLEG. With it the agent reacts
    /// to a crash at once and relists only as a safety net; without it, it relists often.
    ///
    /// # Errors
    ///
    /// [`RuntimeError::Unsupported`] when the runtime has no event stream (the default).
    async fn events(&self, filter: &LabelFilter) -> Result<BoxStream<'static, Result<RuntimeEvent, RuntimeError>>, RuntimeError> {
        let _ = filter;
        Err(RuntimeError::Unsupported { runtime: self.name().to_owned(), call: "events" })
    }
}
