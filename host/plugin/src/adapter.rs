//! The host side of the `runtime-adapter` world: a [`Runtime`] that forwards every call to a
//! plugin, so the agent drives a runtime it does not know exactly as it drives Docker.
//!
//! Each call gets a deadline suited to it: image pulls may take minutes, a stop takes its grace
//! period, an exec its own timeout, and everything else the plugin's call timeout. A trap, a
//! deadline or the memory cap fails that call only, as [`RuntimeError::Call`] naming the plugin
//! and the call; the agent retries it as it retries any failed runtime call.
//!
//! Adapters built against any WIT version the host loads are driven the same way: each
//! version's bindings implement [`RuntimeCalls`] (`calls.rs`, compiled once per version), and
//! only `pull-image` differs: 0.1.0 has no credentials to pass.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::{self, BoxStream};
use staticlet_runtime::{
    Container, ContainerConfig, ContainerStatus, EXEC_OUTPUT_LIMIT, ExecResult, Image, LabelFilter, LogOptions, PodSandbox,
    PodSandboxConfig, PodSandboxStatus, PullProgressSender, RegistryAuth, Runtime, RuntimeError, RuntimeVersion,
};
use wasmtime::Store;

use crate::PluginError;
use crate::plugin::{Bound, GuestCall, Plugin};
use crate::sandbox::State;
use crate::spec::Kind;

/// How long an image pull through an adapter may take when the config does not say.
pub const DEFAULT_IMAGE_PULL_TIMEOUT: Duration = Duration::from_secs(300);

/// What stopping a whole sandbox may take beyond the call timeout: the runtime stops its
/// containers forcibly, but some runtimes still give each a short grace.
const SANDBOX_STOP_ALLOWANCE: Duration = Duration::from_secs(15);

/// One call into an instance: a trap, or the runtime's answer.
pub(crate) type Call<'a, T> = Pin<Box<dyn Future<Output = wasmtime::Result<Result<T, RuntimeError>>> + Send + 'a>>;

/// The runtime interface of one WIT version, in the agent's types. The arguments are
/// converted before the call's future is made, which owns them.
pub(crate) trait RuntimeCalls: Sync {
    fn version<'a>(&'a self, store: &'a mut Store<State>) -> Call<'a, RuntimeVersion>;
    fn run_pod_sandbox<'a>(&'a self, store: &'a mut Store<State>, config: &PodSandboxConfig) -> Call<'a, String>;
    fn stop_pod_sandbox<'a>(&'a self, store: &'a mut Store<State>, id: &str) -> Call<'a, ()>;
    fn remove_pod_sandbox<'a>(&'a self, store: &'a mut Store<State>, id: &str) -> Call<'a, ()>;
    fn list_pod_sandboxes<'a>(&'a self, store: &'a mut Store<State>, filter: &LabelFilter) -> Call<'a, Vec<PodSandbox>>;
    fn pod_sandbox_status<'a>(&'a self, store: &'a mut Store<State>, id: &str) -> Call<'a, PodSandboxStatus>;
    fn create_container<'a>(
        &'a self,
        store: &'a mut Store<State>,
        sandbox_id: &str,
        config: &ContainerConfig,
        sandbox: &PodSandboxConfig,
    ) -> Call<'a, String>;
    fn start_container<'a>(&'a self, store: &'a mut Store<State>, id: &str) -> Call<'a, ()>;
    fn stop_container<'a>(&'a self, store: &'a mut Store<State>, id: &str, grace_ms: u64) -> Call<'a, ()>;
    fn remove_container<'a>(&'a self, store: &'a mut Store<State>, id: &str) -> Call<'a, ()>;
    fn list_containers<'a>(&'a self, store: &'a mut Store<State>, filter: &LabelFilter) -> Call<'a, Vec<Container>>;
    fn container_status<'a>(&'a self, store: &'a mut Store<State>, id: &str) -> Call<'a, ContainerStatus>;
    fn exec_sync<'a>(&'a self, store: &'a mut Store<State>, id: &str, cmd: &[String], timeout_ms: u64) -> Call<'a, ExecResult>;
    fn logs<'a>(&'a self, store: &'a mut Store<State>, id: &str, options: &LogOptions) -> Call<'a, Vec<u8>>;
    fn image_status<'a>(&'a self, store: &'a mut Store<State>, image: &str) -> Call<'a, Option<Image>>;
    fn pull_image<'a>(&'a self, store: &'a mut Store<State>, image: &str, auth: Option<&RegistryAuth>) -> Call<'a, String>;
}

/// `staticlet:plugin@0.1.0` (frozen). Its files are `adapter/`'s.
#[path = "adapter"]
mod v0_1_0 {
    pub(super) use crate::bindings::v0_1_0::runtime::exports::staticlet::plugin::runtime as wit;

    // The same file as `v0_2_0::calls`, on this version's bindings: compiled twice on purpose.
    #[allow(clippy::duplicate_mod)]
    #[path = "calls.rs"]
    mod calls;

    /// 0.1.0 pulls carry no credentials: an adapter built against it pulls anonymously.
    pub(super) fn pull<'a>(
        runtime: &'a wit::Guest,
        store: &'a mut wasmtime::Store<crate::sandbox::State>,
        image: &str,
        _auth: Option<&staticlet_runtime::RegistryAuth>,
    ) -> super::Call<'a, String> {
        let image = image.to_owned();
        Box::pin(async move { Ok(runtime.call_pull_image(store, &image).await?.map_err(|e| calls::runtime_error("pull_image", e))) })
    }
}

/// `staticlet:plugin@0.2.0`. Its files are `adapter/`'s.
#[path = "adapter"]
mod v0_2_0 {
    pub(super) use crate::bindings::v0_2_0::runtime::exports::staticlet::plugin::runtime as wit;

    // The same file as `v0_1_0::calls`, on this version's bindings: compiled twice on purpose.
    #[allow(clippy::duplicate_mod)]
    #[path = "calls.rs"]
    mod calls;

    /// Pulls with the credentials, as the CRI's `AuthConfig` carries them.
    pub(super) fn pull<'a>(
        runtime: &'a wit::Guest,
        store: &'a mut wasmtime::Store<crate::sandbox::State>,
        image: &str,
        auth: Option<&staticlet_runtime::RegistryAuth>,
    ) -> super::Call<'a, String> {
        let image = image.to_owned();
        let auth = auth.map(|a| wit::RegistryAuth {
            username: a.username.clone(),
            password: a.password.clone(),
            identity_token: a.identity_token.clone(),
            registry_token: a.registry_token.clone(),
            server_address: a.server_address.clone(),
        });
        Box::pin(async move {
            Ok(runtime.call_pull_image(store, &image, auth.as_ref()).await?.map_err(|e| calls::runtime_error("pull_image", e)))
        })
    }
}

/// A runtime-adapter plugin, as a [`Runtime`].
#[derive(Debug, Clone)]
pub struct AdapterRuntime {
    plugin: Arc<Plugin>,
    image_pull_timeout: Duration,
}

impl AdapterRuntime {
    /// Drives `plugin`, which must be a runtime adapter; its calls are bounded by its call
    /// timeout, image pulls by `image_pull_timeout`.
    pub fn new(plugin: Arc<Plugin>, image_pull_timeout: Duration) -> Self {
        AdapterRuntime { plugin, image_pull_timeout }
    }

    fn call_timeout(&self) -> Duration {
        self.plugin.spec().limits.call_timeout
    }

    /// Makes one call of the runtime interface, bounded by `timeout`.
    async fn call<T: Send + 'static>(
        &self,
        call: &'static str,
        timeout: Duration,
        export: impl for<'a> FnOnce(&'a dyn RuntimeCalls, &'a mut Store<State>) -> Call<'a, T>,
    ) -> Result<T, RuntimeError> {
        let answer = self
            .plugin
            .call(call, Kind::RuntimeAdapter, timeout, |bound, store| -> GuestCall<'_, Result<T, RuntimeError>> {
                let calls: &dyn RuntimeCalls = match bound {
                    Bound::Runtime1(r) => r.staticlet_plugin_runtime(),
                    Bound::Runtime2(r) => r.staticlet_plugin_runtime(),
                    _ => return Box::pin(async { Err(wasmtime::Error::msg("not a runtime adapter instance")) }),
                };
                let pending = export(calls, store);
                Box::pin(async move { pending.await.map(Ok) })
            })
            .await;
        match answer {
            Ok(answer) => answer,
            // This call failed inside the plugin; the next one gets a fresh instance.
            Err(e @ (PluginError::Trap { .. } | PluginError::Deadline { .. } | PluginError::Memory { .. })) => {
                Err(RuntimeError::Call { call, message: e.to_string() })
            }
            // No instance to call: the code does not load, or its `init` refuses the settings.
            Err(e) => Err(RuntimeError::Unavailable(e.to_string())),
        }
    }
}

#[async_trait]
impl Runtime for AdapterRuntime {
    fn name(&self) -> &str {
        &self.plugin.spec().name
    }

    async fn version(&self) -> Result<RuntimeVersion, RuntimeError> {
        self.call("version", self.call_timeout(), |r, store| r.version(store)).await
    }

    async fn run_pod_sandbox(&self, config: &PodSandboxConfig) -> Result<String, RuntimeError> {
        self.call("run_pod_sandbox", self.call_timeout(), |r, store| r.run_pod_sandbox(store, config)).await
    }

    async fn stop_pod_sandbox(&self, sandbox_id: &str) -> Result<(), RuntimeError> {
        let timeout = self.call_timeout() + SANDBOX_STOP_ALLOWANCE;
        self.call("stop_pod_sandbox", timeout, |r, store| r.stop_pod_sandbox(store, sandbox_id)).await
    }

    async fn remove_pod_sandbox(&self, sandbox_id: &str) -> Result<(), RuntimeError> {
        let timeout = self.call_timeout() + SANDBOX_STOP_ALLOWANCE;
        self.call("remove_pod_sandbox", timeout, |r, store| r.remove_pod_sandbox(store, sandbox_id)).await
    }

    async fn list_pod_sandboxes(&self, filter: &LabelFilter) -> Result<Vec<PodSandbox>, RuntimeError> {
        self.call("list_pod_sandboxes", self.call_timeout(), |r, store| r.list_pod_sandboxes(store, filter)).await
    }

    async fn pod_sandbox_status(&self, sandbox_id: &str) -> Result<PodSandboxStatus, RuntimeError> {
        self.call("pod_sandbox_status", self.call_timeout(), |r, store| r.pod_sandbox_status(store, sandbox_id)).await
    }

    async fn create_container(
        &self,
        sandbox_id: &str,
        config: &ContainerConfig,
        sandbox: &PodSandboxConfig,
    ) -> Result<String, RuntimeError> {
        self.call("create_container", self.call_timeout(), |r, store| r.create_container(store, sandbox_id, config, sandbox)).await
    }

    async fn start_container(&self, container_id: &str) -> Result<(), RuntimeError> {
        self.call("start_container", self.call_timeout(), |r, store| r.start_container(store, container_id)).await
    }

    async fn stop_container(&self, container_id: &str, grace: Duration) -> Result<(), RuntimeError> {
        let grace_ms = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX);
        let timeout = self.call_timeout() + grace;
        self.call("stop_container", timeout, |r, store| r.stop_container(store, container_id, grace_ms)).await
    }

    async fn remove_container(&self, container_id: &str) -> Result<(), RuntimeError> {
        self.call("remove_container", self.call_timeout(), |r, store| r.remove_container(store, container_id)).await
    }

    async fn list_containers(&self, filter: &LabelFilter) -> Result<Vec<Container>, RuntimeError> {
        self.call("list_containers", self.call_timeout(), |r, store| r.list_containers(store, filter)).await
    }

    async fn container_status(&self, container_id: &str) -> Result<ContainerStatus, RuntimeError> {
        self.call("container_status", self.call_timeout(), |r, store| r.container_status(store, container_id)).await
    }

    async fn exec_sync(&self, container_id: &str, cmd: &[String], timeout: Duration) -> Result<ExecResult, RuntimeError> {
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let deadline = self.call_timeout() + timeout;
        let mut result = self.call("exec_sync", deadline, |r, store| r.exec_sync(store, container_id, cmd, timeout_ms)).await?;
        result.stdout.truncate(EXEC_OUTPUT_LIMIT);
        result.stderr.truncate(EXEC_OUTPUT_LIMIT);
        Ok(result)
    }

    /// The log as it is now: the runtime-adapter world has no streaming, so `follow` ends with
    /// what was written so far.
    async fn logs(
        &self,
        container_id: &str,
        options: &LogOptions,
    ) -> Result<BoxStream<'static, Result<Vec<u8>, RuntimeError>>, RuntimeError> {
        let bytes = self.call("logs", self.call_timeout(), |r, store| r.logs(store, container_id, options)).await?;
        Ok(Box::pin(stream::once(async move { Ok(bytes) })))
    }

    async fn image_status(&self, image: &str) -> Result<Option<Image>, RuntimeError> {
        self.call("image_status", self.call_timeout(), |r, store| r.image_status(store, image)).await
    }

    /// Pulls through the adapter with `auth` (a 0.1.0 adapter pulls anonymously); the adapter
    /// reports no progress.
    async fn pull_image(&self, image: &str, auth: Option<&RegistryAuth>, _progress: &PullProgressSender) -> Result<String, RuntimeError> {
        match self.call("pull_image", self.image_pull_timeout, |r, store| r.pull_image(store, image, auth)).await {
            Err(RuntimeError::ImagePull { message, .. } | RuntimeError::Call { message, .. }) => {
                Err(RuntimeError::ImagePull { image: image.to_owned(), message })
            }
            other => other,
        }
    }
}
