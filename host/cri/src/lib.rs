//! The CRI runtime: [`Runtime`] over a CRI v1 endpoint (containerd, CRI-O), the calls mapped as
//! the kubelet's `kuberuntime` makes them, so what `crictl pods` and `crictl ps` show of a
//! staticlet pod reads as it does for a kubelet's.
//!
//! - The trait is shaped after the CRI, so most calls are one gRPC call each; the runtime
//!   makes the sandbox (its own pause image), the network (CNI) and the log files.
//! - Container logs are files the runtime writes under the sandbox's log directory
//!   (`<log dir>/<container>/<attempt>.log`, the kubelet's layout); the agent reads them itself,
//!   as the kubelet does ([`logs`]).
//! - Exec, attach and port-forward ask the runtime for a URL on its streaming server and
//!   connect to it ([`stream`]).
//!
//! The channel connects lazily, so the agent can start before the runtime and pick it up when
//! its socket appears.

mod convert;
mod logs;
mod stream;

use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;
use hyper_util::rt::TokioIo;
use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use staticlet_runtime::{
    Container, ContainerConfig, ContainerStatus, Duplex, EXEC_OUTPUT_LIMIT, ExecResult, Image, LabelFilter, LogOptions, PodSandbox,
    PodSandboxConfig, PodSandboxStatus, PullProgressSender, RegistryAuth, Runtime, RuntimeError, RuntimeVersion, StreamOptions,
    StreamSession,
};
use tokio::sync::OnceCell;
use tonic::transport::{Channel, Endpoint};

/// The kubelet's default endpoint, containerd's socket.
pub const DEFAULT_ENDPOINT: &str = "unix:///run/containerd/containerd.sock";
/// Calls that only read state must answer quickly; a hung runtime must not hang a pod worker.
const QUICK_CALL: Duration = Duration::from_secs(30);
/// Runtimes answer list calls with every object at once; the kubelet allows 16 MiB, not
/// gRPC's default 4 MiB.
const MAX_MESSAGE: usize = 16 * 1024 * 1024;
/// Extra time given to an `ExecSync` beyond the command's own timeout, for the runtime to
/// report it.
const EXEC_SYNC_SLACK: Duration = Duration::from_secs(5);

/// The socket of a CRI endpoint as the kubelet's `--container-runtime-endpoint` takes it:
/// `unix:///run/containerd/containerd.sock`, or a plain path.
///
/// # Errors
///
/// An endpoint that is not a Unix socket: the CRI is served on one on Linux.
pub fn socket_of(endpoint: &str) -> Result<std::path::PathBuf, String> {
    let socket = match endpoint.split_once("://") {
        None => endpoint,
        Some(("unix", path)) => path,
        Some((scheme, _)) => return Err(format!("{endpoint:?}: a CRI endpoint is a Unix socket (unix:///path), not {scheme}://")),
    };
    if socket.is_empty() {
        return Err(format!("{endpoint:?}: no socket path"));
    }
    Ok(socket.into())
}

/// The CRI runtime.
pub struct CriRuntime {
    name: String,
    socket: std::path::PathBuf,
    channel: OnceCell<Channel>,
}

impl CriRuntime {
    /// A runtime for the CRI socket at `socket` (see [`socket_of`]). Does not connect yet.
    ///
    /// It is named as the kubelet names container IDs (`containerd://<id>`) after the runtime
    /// its socket is named for: `containerd` for `containerd.sock`, `cri-o` for `crio.sock`,
    /// else `cri`. The name is fixed here rather than asked of the runtime, since the agent
    /// starts before the runtime may be up and a name must not change under running pods.
    pub fn new(socket: std::path::PathBuf) -> Self {
        let file = socket.file_name().and_then(|f| f.to_str()).unwrap_or_default();
        let name = if file.starts_with("containerd") {
            "containerd"
        } else if file.starts_with("crio") {
            "cri-o"
        } else {
            "cri"
        };
        CriRuntime { name: name.to_owned(), socket, channel: OnceCell::new() }
    }

    async fn channel(&self) -> Result<Channel, RuntimeError> {
        let channel = self
            .channel
            .get_or_try_init(|| async {
                let socket = self.socket.clone();
                // The URI is required by the API and unused: every connection goes to the socket.
                let endpoint = Endpoint::from_static("http://cri.local").connect_timeout(QUICK_CALL);
                let channel = endpoint.connect_with_connector_lazy(tower::service_fn(move |_: http::Uri| {
                    let socket = socket.clone();
                    async move { tokio::net::UnixStream::connect(socket).await.map(TokioIo::new) }
                }));
                Ok::<_, RuntimeError>(channel)
            })
            .await?;
        Ok(channel.clone())
    }

    async fn runtime(&self) -> Result<RuntimeServiceClient<Channel>, RuntimeError> {
        Ok(RuntimeServiceClient::new(self.channel().await?).max_decoding_message_size(MAX_MESSAGE))
    }

    async fn images(&self) -> Result<ImageServiceClient<Channel>, RuntimeError> {
        Ok(ImageServiceClient::new(self.channel().await?).max_decoding_message_size(MAX_MESSAGE))
    }

    /// Runs a call that should answer at once, with a deadline, mapping its status.
    async fn quick<T>(
        &self,
        call: &'static str,
        object: &str,
        future: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, RuntimeError> {
        match tokio::time::timeout(QUICK_CALL, future).await {
            Ok(result) => result.map(tonic::Response::into_inner).map_err(|status| self.error(call, object, status)),
            Err(_) => Err(RuntimeError::Unavailable(format!("{call}: {} did not answer within {}s", self.name, QUICK_CALL.as_secs()))),
        }
    }

    /// A gRPC status as a runtime error, naming the object and, when the socket is not there,
    /// the endpoint.
    fn error(&self, call: &'static str, object: &str, status: tonic::Status) -> RuntimeError {
        let message = status.message();
        let object = if object.is_empty() { String::new() } else { format!("{object}: ") };
        match status.code() {
            tonic::Code::NotFound => RuntimeError::NotFound(format!("{object}{message}")),
            // A socket that is not there surfaces as Unknown with the connector's words.
            code if code == tonic::Code::Unavailable
                || (code == tonic::Code::Unknown && (message.contains("transport") || message.contains("connect"))) =>
            {
                RuntimeError::Unavailable(format!("{call}: {} at {}: {message}", self.name, self.socket.display()))
            }
            _ => RuntimeError::Call { call, message: format!("{object}{message}") },
        }
    }

    async fn status(&self, container_id: &str) -> Result<cri::ContainerStatus, RuntimeError> {
        let request = cri::ContainerStatusRequest { container_id: container_id.to_owned(), verbose: false };
        let mut client = self.runtime().await?;
        let response = self.quick("container_status", container_id, client.container_status(request)).await?;
        response.status.ok_or_else(|| RuntimeError::NotFound(format!("container {container_id}")))
    }
}

#[async_trait]
impl Runtime for CriRuntime {
    fn name(&self) -> &str {
        &self.name
    }

    async fn version(&self) -> Result<RuntimeVersion, RuntimeError> {
        let mut client = self.runtime().await?;
        let version = self
            .quick("version", "", client.version(cri::VersionRequest { version: "v1".to_owned() }))
            .await
            .map_err(|e| RuntimeError::Unavailable(e.to_string()))?;
        Ok(RuntimeVersion { runtime_name: version.runtime_name, runtime_version: version.runtime_version })
    }

    async fn run_pod_sandbox(&self, config: &PodSandboxConfig) -> Result<String, RuntimeError> {
        // The node agent makes the log directory, not the runtime (the kubelet does the same).
        create_dir("run_pod_sandbox", &config.log_directory).await?;
        let request = cri::RunPodSandboxRequest { config: Some(convert::sandbox_config(config)), runtime_handler: String::new() };
        let mut client = self.runtime().await?;
        let response = client.run_pod_sandbox(request).await.map_err(|s| self.error("run_pod_sandbox", &config.metadata.name, s))?;
        Ok(response.into_inner().pod_sandbox_id)
    }

    async fn stop_pod_sandbox(&self, sandbox_id: &str) -> Result<(), RuntimeError> {
        let mut client = self.runtime().await?;
        match client.stop_pod_sandbox(cri::StopPodSandboxRequest { pod_sandbox_id: sandbox_id.to_owned() }).await {
            Ok(_) => Ok(()),
            Err(status) => ignore_not_found(self.error("stop_pod_sandbox", sandbox_id, status)),
        }
    }

    async fn remove_pod_sandbox(&self, sandbox_id: &str) -> Result<(), RuntimeError> {
        // The runtime removes the sandbox's containers but not their logs, which the node agent
        // owns: each container's file is `<log dir>/<container>/<attempt>.log`, so its
        // grandparent is the sandbox's log directory.
        let request = cri::ListContainersRequest {
            filter: Some(cri::ContainerFilter { pod_sandbox_id: sandbox_id.to_owned(), ..Default::default() }),
        };
        let mut client = self.runtime().await?;
        let mut log_dirs = std::collections::BTreeSet::new();
        for container in self.quick("remove_pod_sandbox", sandbox_id, client.list_containers(request)).await?.containers {
            if let Ok(status) = self.status(&container.id).await
                && let Some(dir) = std::path::Path::new(&status.log_path).parent().and_then(std::path::Path::parent)
                && !status.log_path.is_empty()
            {
                log_dirs.insert(dir.to_owned());
            }
        }
        match client.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: sandbox_id.to_owned() }).await {
            Ok(_) => {}
            Err(status) => ignore_not_found(self.error("remove_pod_sandbox", sandbox_id, status))?,
        }
        for dir in log_dirs {
            if let Err(e) = tokio::fs::remove_dir_all(&dir).await
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(sandbox = sandbox_id, "cannot remove the pod's logs at {}: {e}", dir.display());
            }
        }
        Ok(())
    }

    async fn list_pod_sandboxes(&self, filter: &LabelFilter) -> Result<Vec<PodSandbox>, RuntimeError> {
        let request = cri::ListPodSandboxRequest {
            filter: Some(cri::PodSandboxFilter { label_selector: filter.0.clone().into_iter().collect(), ..Default::default() }),
        };
        let mut client = self.runtime().await?;
        let response = self.quick("list_pod_sandboxes", "", client.list_pod_sandbox(request)).await?;
        Ok(response.items.into_iter().filter_map(convert::sandbox).collect())
    }

    async fn pod_sandbox_status(&self, sandbox_id: &str) -> Result<PodSandboxStatus, RuntimeError> {
        let request = cri::PodSandboxStatusRequest { pod_sandbox_id: sandbox_id.to_owned(), verbose: false };
        let mut client = self.runtime().await?;
        let response = self.quick("pod_sandbox_status", sandbox_id, client.pod_sandbox_status(request)).await?;
        let status = response.status.ok_or_else(|| RuntimeError::NotFound(format!("sandbox {sandbox_id}")))?;
        // A host-network sandbox has no address of its own; the agent reports the node's.
        let ip = status.network.as_ref().map(|n| n.ip.clone()).filter(|ip| !ip.is_empty());
        let sandbox = convert::sandbox_of_status(status).ok_or_else(|| RuntimeError::NotFound(format!("sandbox {sandbox_id}")))?;
        Ok(PodSandboxStatus { sandbox, ip })
    }

    async fn create_container(
        &self,
        sandbox_id: &str,
        config: &ContainerConfig,
        sandbox_config: &PodSandboxConfig,
    ) -> Result<String, RuntimeError> {
        create_dir("create_container", &sandbox_config.log_directory.join(&config.metadata.name)).await?;
        let request = cri::CreateContainerRequest {
            pod_sandbox_id: sandbox_id.to_owned(),
            config: Some(convert::container_config(config, sandbox_config)),
            sandbox_config: Some(convert::sandbox_config(sandbox_config)),
        };
        let mut client = self.runtime().await?;
        let response = client.create_container(request).await.map_err(|s| self.error("create_container", &config.metadata.name, s))?;
        Ok(response.into_inner().container_id)
    }

    async fn start_container(&self, container_id: &str) -> Result<(), RuntimeError> {
        let mut client = self.runtime().await?;
        client
            .start_container(cri::StartContainerRequest { container_id: container_id.to_owned() })
            .await
            .map(drop)
            .map_err(|s| self.error("start_container", container_id, s))
    }

    async fn stop_container(&self, container_id: &str, grace: Duration) -> Result<(), RuntimeError> {
        // Rounded up: the CRI takes whole seconds, and a grace period is a floor, never cut short.
        let request = cri::StopContainerRequest { container_id: container_id.to_owned(), timeout: grace.as_secs_f64().ceil() as i64 };
        let mut client = self.runtime().await?;
        client.stop_container(request).await.map(drop).map_err(|s| self.error("stop_container", container_id, s))
    }

    async fn remove_container(&self, container_id: &str) -> Result<(), RuntimeError> {
        // Its log goes with it, as the kubelet removes it: the runtime leaves the file.
        let log_path = match self.status(container_id).await {
            Ok(status) => Some(status.log_path).filter(|path| !path.is_empty()),
            Err(RuntimeError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        let mut client = self.runtime().await?;
        match client.remove_container(cri::RemoveContainerRequest { container_id: container_id.to_owned() }).await {
            Ok(_) => {}
            Err(status) => ignore_not_found(self.error("remove_container", container_id, status))?,
        }
        if let Some(path) = log_path
            && let Err(e) = tokio::fs::remove_file(&path).await
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(container = container_id, "cannot remove its log {path}: {e}");
        }
        Ok(())
    }

    async fn list_containers(&self, filter: &LabelFilter) -> Result<Vec<Container>, RuntimeError> {
        let request = cri::ListContainersRequest {
            filter: Some(cri::ContainerFilter { label_selector: filter.0.clone().into_iter().collect(), ..Default::default() }),
        };
        let mut client = self.runtime().await?;
        let response = self.quick("list_containers", "", client.list_containers(request)).await?;
        Ok(response.containers.into_iter().filter_map(convert::container).collect())
    }

    async fn container_status(&self, container_id: &str) -> Result<ContainerStatus, RuntimeError> {
        let status = self.status(container_id).await?;
        let (started_at, finished_at) = (convert::time(status.started_at), convert::time(status.finished_at));
        let (exit_code, reason, message) = (status.exit_code, status.reason.clone(), status.message.clone());
        // ContainerStatus does not name the sandbox; the list does.
        let request =
            cri::ListContainersRequest { filter: Some(cri::ContainerFilter { id: container_id.to_owned(), ..Default::default() }) };
        let mut client = self.runtime().await?;
        let listed = self.quick("container_status", container_id, client.list_containers(request)).await?;
        let pod_sandbox_id = listed.containers.into_iter().next().map(|c| c.pod_sandbox_id).unwrap_or_default();
        let container = convert::container(cri::Container {
            id: status.id,
            pod_sandbox_id,
            metadata: status.metadata,
            image: status.image,
            image_ref: status.image_ref,
            state: status.state,
            created_at: status.created_at,
            labels: status.labels,
            annotations: status.annotations,
            image_id: status.image_id,
        })
        .ok_or_else(|| RuntimeError::NotFound(format!("container {container_id}")))?;
        Ok(ContainerStatus { container, started_at, finished_at, exit_code, reason, message })
    }

    async fn exec_sync(&self, container_id: &str, cmd: &[String], timeout: Duration) -> Result<ExecResult, RuntimeError> {
        let request =
            cri::ExecSyncRequest { container_id: container_id.to_owned(), cmd: cmd.to_vec(), timeout: timeout.as_secs_f64().ceil() as i64 };
        let mut client = self.runtime().await?;
        let deadline = RuntimeError::DeadlineExceeded { call: "exec_sync", after: timeout };
        let response = match tokio::time::timeout(timeout + EXEC_SYNC_SLACK, client.exec_sync(request)).await {
            Err(_) => return Err(deadline),
            Ok(Err(status)) if status.code() == tonic::Code::DeadlineExceeded || status.message().contains("deadline exceeded") => {
                return Err(deadline);
            }
            Ok(result) => result.map_err(|s| self.error("exec_sync", container_id, s))?.into_inner(),
        };
        let limited = |mut output: Vec<u8>| {
            output.truncate(EXEC_OUTPUT_LIMIT);
            output
        };
        Ok(ExecResult { stdout: limited(response.stdout), stderr: limited(response.stderr), exit_code: response.exit_code })
    }

    async fn logs(
        &self,
        container_id: &str,
        options: &LogOptions,
    ) -> Result<BoxStream<'static, Result<Vec<u8>, RuntimeError>>, RuntimeError> {
        let status = self.status(container_id).await?;
        if status.log_path.is_empty() {
            return Err(RuntimeError::Call { call: "logs", message: format!("{container_id}: the runtime keeps no log file for it") });
        }
        let client = self.runtime().await?;
        let id = container_id.to_owned();
        let running = move || -> futures::future::BoxFuture<'static, bool> {
            let (mut client, container_id) = (client.clone(), id.clone());
            Box::pin(async move {
                let request = cri::ContainerStatusRequest { container_id, verbose: false };
                match client.container_status(request).await {
                    Ok(response) => response.into_inner().status.is_some_and(|s| s.state == cri::ContainerState::ContainerRunning as i32),
                    Err(_) => false,
                }
            })
        };
        logs::read(status.log_path.into(), options, running).await
    }

    async fn image_status(&self, image: &str) -> Result<Option<Image>, RuntimeError> {
        let request = cri::ImageStatusRequest { image: Some(image_spec(image)), verbose: false };
        let mut client = self.images().await?;
        let response = self.quick("image_status", image, client.image_status(request)).await?;
        Ok(response.image.map(|image| Image { id: image.id, size: image.size }))
    }

    /// The runtime's own sandbox image, from its config as `crictl info` shows it: containerd
    /// reports it as `sandboxImage`. A runtime that does not say is left to pull it alone.
    async fn sandbox_image(&self) -> Result<Option<String>, RuntimeError> {
        let mut client = self.runtime().await?;
        let response = self.quick("status", "", client.status(cri::StatusRequest { verbose: true })).await?;
        let config = response.info.get("config").and_then(|config| serde_json::from_str::<serde_json::Value>(config).ok());
        Ok(config.and_then(|config| config.get("sandboxImage")?.as_str().map(str::to_owned)).filter(|image| !image.is_empty()))
    }

    /// Pulls with the credentials as the kubelet passes them, in `AuthConfig`. The CRI reports
    /// no progress until the pull ends.
    async fn pull_image(&self, image: &str, auth: Option<&RegistryAuth>, _progress: &PullProgressSender) -> Result<String, RuntimeError> {
        let auth = auth.map(|a| cri::AuthConfig {
            username: a.username.clone(),
            password: a.password.clone(),
            auth: a.auth.clone(),
            server_address: a.server_address.clone(),
            identity_token: a.identity_token.clone(),
            registry_token: a.registry_token.clone(),
        });
        let request = cri::PullImageRequest { image: Some(image_spec(image)), auth, sandbox_config: None };
        let mut client = self.images().await?;
        match client.pull_image(request).await {
            Ok(response) => Ok(response.into_inner().image_ref),
            Err(status) => match self.error("pull_image", image, status) {
                unavailable @ RuntimeError::Unavailable(_) => Err(unavailable),
                other => Err(RuntimeError::ImagePull { image: image.to_owned(), message: other.to_string() }),
            },
        }
    }

    async fn exec(&self, container_id: &str, cmd: &[String], options: StreamOptions) -> Result<StreamSession, RuntimeError> {
        let request = cri::ExecRequest {
            container_id: container_id.to_owned(),
            cmd: cmd.to_vec(),
            tty: options.tty,
            stdin: options.stdin,
            stdout: true,
            // A terminal has one output stream; the CRI refuses stderr with a TTY.
            stderr: !options.tty,
        };
        let mut client = self.runtime().await?;
        let url = self.quick("exec", container_id, client.exec(request)).await?.url;
        stream::remote_command("exec", &url, options).await
    }

    async fn attach(&self, container_id: &str, options: StreamOptions) -> Result<StreamSession, RuntimeError> {
        let request = cri::AttachRequest {
            container_id: container_id.to_owned(),
            stdin: options.stdin,
            tty: options.tty,
            stdout: true,
            stderr: !options.tty,
        };
        let mut client = self.runtime().await?;
        let url = self.quick("attach", container_id, client.attach(request)).await?.url;
        stream::remote_command("attach", &url, options).await
    }

    async fn port_forward(&self, sandbox_id: &str, port: u16) -> Result<Box<dyn Duplex>, RuntimeError> {
        let request = cri::PortForwardRequest { pod_sandbox_id: sandbox_id.to_owned(), port: vec![i32::from(port)] };
        let mut client = self.runtime().await?;
        let url = self.quick("port_forward", sandbox_id, client.port_forward(request)).await?.url;
        stream::port_forward(&url, port).await
    }
}

async fn create_dir(call: &'static str, dir: &std::path::Path) -> Result<(), RuntimeError> {
    tokio::fs::create_dir_all(dir).await.map_err(|e| RuntimeError::Call { call, message: format!("creating {}: {e}", dir.display()) })
}

fn image_spec(image: &str) -> cri::ImageSpec {
    cri::ImageSpec { image: image.to_owned(), ..Default::default() }
}

fn ignore_not_found(error: RuntimeError) -> Result<(), RuntimeError> {
    match error {
        RuntimeError::NotFound(_) => Ok(()),
        other => Err(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_unix_sockets_with_or_without_the_scheme() {
        assert_eq!(socket_of(DEFAULT_ENDPOINT).unwrap(), std::path::Path::new("/run/containerd/containerd.sock"));
        assert_eq!(socket_of("/run/crio/crio.sock").unwrap(), std::path::Path::new("/run/crio/crio.sock"));
        let tcp = socket_of("tcp://10.0.0.1:1234").unwrap_err();
        assert!(tcp.contains("Unix socket") && tcp.contains("tcp://"), "{tcp}");
        assert!(socket_of("unix://").is_err());
        let name = |path: &str| CriRuntime::new(path.into()).name;
        assert_eq!((name("/run/containerd/containerd.sock"), name("/var/run/crio/crio.sock")), ("containerd".into(), "cri-o".into()));
        assert_eq!(name("/tmp/x/runtime.sock"), "cri");
    }
}
