//! An in-memory runtime for unit tests and in-process benchmarks. It answers at once, starts
//! every container successfully and keeps it running until told otherwise; a test can make a
//! container exit, make a call fail or make it slow. It is never a stand-in for a real engine in
//! an end-to-end test.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;

use crate::*;

#[derive(Default)]
struct State {
    next_id: u64,
    sandboxes: BTreeMap<String, PodSandbox>,
    containers: BTreeMap<String, ContainerStatus>,
    images: BTreeSet<String>,
    /// Registries that refuse pulls without these credentials, by host.
    protected: HashMap<String, RegistryAuth>,
    /// The user name each pull presented (empty: none), in order.
    pull_users: Vec<String>,
    /// What `sandbox_image` answers.
    sandbox_image: Option<String>,
}

/// Faults a test injects, by call name (`"run_pod_sandbox"`, `"list_containers"`, ...).
#[derive(Default)]
struct Faults {
    /// Calls that fail with this error, the given number of times (`None`: until healed).
    failing: HashMap<&'static str, (RuntimeError, Option<usize>)>,
    /// Calls that take this long before answering.
    slow: HashMap<&'static str, Duration>,
    /// How many times each call was made.
    calls: HashMap<&'static str, usize>,
}

/// An in-memory [`Runtime`].
#[derive(Default)]
pub struct FakeRuntime {
    state: Mutex<State>,
    faults: Mutex<Faults>,
    clock: Clock,
}

impl FakeRuntime {
    /// A fake with the given images present.
    pub fn with_images<'a>(images: impl IntoIterator<Item = &'a str>) -> Self {
        let fake = FakeRuntime::default();
        fake.state.lock().unwrap().images.extend(images.into_iter().map(str::to_owned));
        fake
    }

    /// The same fake, stamping its objects with `clock`'s time.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Makes `call` fail with `error`, `times` times (`None`: until [`FakeRuntime::heal`]).
    pub fn fail(&self, call: &'static str, error: RuntimeError, times: Option<usize>) {
        self.faults.lock().unwrap().failing.insert(call, (error, times));
    }

    /// Makes `call` answer normally again.
    pub fn heal(&self, call: &'static str) {
        self.faults.lock().unwrap().failing.remove(call);
    }

    /// Makes `call` take `delay` (on tokio's clock) before it answers.
    pub fn slow(&self, call: &'static str, delay: Duration) {
        self.faults.lock().unwrap().slow.insert(call, delay);
    }

    /// How many times `call` was made, failed calls included.
    pub fn calls(&self, call: &str) -> usize {
        self.faults.lock().unwrap().calls.get(call).copied().unwrap_or(0)
    }

    /// Makes pulls of images on `registry` (the reference's host) fail as a registry's would
    /// unless they present `auth`'s username and password.
    pub fn protect(&self, registry: &str, auth: RegistryAuth) {
        self.state.lock().unwrap().protected.insert(registry.to_owned(), auth);
    }

    /// Makes the fake a runtime whose sandboxes are made from `image`, which the agent ensures.
    pub fn set_sandbox_image(&self, image: &str) {
        self.state.lock().unwrap().sandbox_image = Some(image.to_owned());
    }

    /// Whether `image` is present.
    pub fn has_image(&self, image: &str) -> bool {
        self.state.lock().unwrap().images.contains(image)
    }

    /// The user name each pull presented (empty: none), in order.
    pub fn pull_users(&self) -> Vec<String> {
        self.state.lock().unwrap().pull_users.clone()
    }

    /// Makes the running containers named `name` exit with `exit_code`, as if their process
    /// ended; returns how many did.
    pub fn exit(&self, name: &str, exit_code: i32) -> usize {
        let now = self.clock.now();
        let mut state = self.state.lock().unwrap();
        let running =
            state.containers.values_mut().filter(|c| c.container.metadata.name == name && c.container.state == ContainerState::Running);
        let mut exited = 0;
        for status in running {
            status.container.state = ContainerState::Exited;
            status.exit_code = exit_code;
            status.reason = if exit_code == 0 { "Completed" } else { "Error" }.into();
            status.finished_at = Some(now);
            exited += 1;
        }
        exited
    }

    /// Counts the call, waits out its delay and returns its injected error, if any.
    async fn enter(&self, call: &'static str) -> Result<(), RuntimeError> {
        let delay = {
            let mut faults = self.faults.lock().unwrap();
            *faults.calls.entry(call).or_default() += 1;
            faults.slow.get(call).copied()
        };
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        let mut faults = self.faults.lock().unwrap();
        let Some((error, times)) = faults.failing.get_mut(call) else { return Ok(()) };
        let error = error.clone();
        match times {
            Some(1) => {
                faults.failing.remove(call);
            }
            Some(n) => *n -= 1,
            None => {}
        }
        Err(error)
    }

    /// How many sandboxes exist, in any state.
    pub fn sandbox_count(&self) -> usize {
        self.state.lock().unwrap().sandboxes.len()
    }

    /// How many containers are running.
    pub fn running_container_count(&self) -> usize {
        let state = self.state.lock().unwrap();
        state.containers.values().filter(|c| c.container.state == ContainerState::Running).count()
    }
}

fn next_id(state: &mut State) -> String {
    state.next_id += 1;
    format!("{:064x}", state.next_id)
}

#[async_trait]
impl Runtime for FakeRuntime {
    fn name(&self) -> &str {
        "fake"
    }

    async fn version(&self) -> Result<RuntimeVersion, RuntimeError> {
        self.enter("version").await?;
        Ok(RuntimeVersion { runtime_name: "fake".into(), runtime_version: "0".into() })
    }

    async fn run_pod_sandbox(&self, config: &PodSandboxConfig) -> Result<String, RuntimeError> {
        self.enter("run_pod_sandbox").await?;
        let mut state = self.state.lock().unwrap();
        let id = next_id(&mut state);
        let sandbox = PodSandbox {
            id: id.clone(),
            metadata: config.metadata.clone(),
            state: SandboxState::Ready,
            created_at: self.clock.now(),
            labels: config.labels.clone(),
            annotations: config.annotations.clone(),
        };
        state.sandboxes.insert(id.clone(), sandbox);
        Ok(id)
    }

    async fn stop_pod_sandbox(&self, sandbox_id: &str) -> Result<(), RuntimeError> {
        self.enter("stop_pod_sandbox").await?;
        let mut state = self.state.lock().unwrap();
        if let Some(sandbox) = state.sandboxes.get_mut(sandbox_id) {
            sandbox.state = SandboxState::NotReady;
        }
        for status in state.containers.values_mut().filter(|c| c.container.pod_sandbox_id == sandbox_id) {
            if status.container.state == ContainerState::Running {
                status.container.state = ContainerState::Exited;
                status.exit_code = 137;
                status.finished_at = Some(self.clock.now());
            }
        }
        Ok(())
    }

    async fn remove_pod_sandbox(&self, sandbox_id: &str) -> Result<(), RuntimeError> {
        self.enter("remove_pod_sandbox").await?;
        let mut state = self.state.lock().unwrap();
        state.sandboxes.remove(sandbox_id);
        state.containers.retain(|_, c| c.container.pod_sandbox_id != sandbox_id);
        Ok(())
    }

    async fn list_pod_sandboxes(&self, filter: &LabelFilter) -> Result<Vec<PodSandbox>, RuntimeError> {
        self.enter("list_pod_sandboxes").await?;
        let state = self.state.lock().unwrap();
        Ok(state.sandboxes.values().filter(|s| filter.matches(&s.labels)).cloned().collect())
    }

    async fn pod_sandbox_status(&self, sandbox_id: &str) -> Result<PodSandboxStatus, RuntimeError> {
        self.enter("pod_sandbox_status").await?;
        let state = self.state.lock().unwrap();
        let sandbox = state.sandboxes.get(sandbox_id).cloned().ok_or_else(|| RuntimeError::NotFound(format!("sandbox {sandbox_id}")))?;
        Ok(PodSandboxStatus { sandbox, ip: Some("10.88.0.2".into()) })
    }

    async fn create_container(&self, sandbox_id: &str, config: &ContainerConfig, _: &PodSandboxConfig) -> Result<String, RuntimeError> {
        self.enter("create_container").await?;
        let mut state = self.state.lock().unwrap();
        if !state.images.contains(&config.image) {
            return Err(RuntimeError::NotFound(format!("image {}", config.image)));
        }
        if !state.sandboxes.contains_key(sandbox_id) {
            return Err(RuntimeError::NotFound(format!("sandbox {sandbox_id}")));
        }
        let id = next_id(&mut state);
        let container = Container {
            id: id.clone(),
            pod_sandbox_id: sandbox_id.to_owned(),
            metadata: config.metadata.clone(),
            image: config.image.clone(),
            state: ContainerState::Created,
            created_at: self.clock.now(),
            labels: config.labels.clone(),
            annotations: config.annotations.clone(),
        };
        let status =
            ContainerStatus { container, started_at: None, finished_at: None, exit_code: 0, reason: String::new(), message: String::new() };
        state.containers.insert(id.clone(), status);
        Ok(id)
    }

    async fn start_container(&self, container_id: &str) -> Result<(), RuntimeError> {
        self.enter("start_container").await?;
        let mut state = self.state.lock().unwrap();
        let status = state.containers.get_mut(container_id).ok_or_else(|| RuntimeError::NotFound(format!("container {container_id}")))?;
        status.container.state = ContainerState::Running;
        status.started_at = Some(self.clock.now());
        Ok(())
    }

    async fn stop_container(&self, container_id: &str, _grace: Duration) -> Result<(), RuntimeError> {
        self.enter("stop_container").await?;
        let mut state = self.state.lock().unwrap();
        if let Some(status) = state.containers.get_mut(container_id)
            && status.container.state == ContainerState::Running
        {
            status.container.state = ContainerState::Exited;
            status.exit_code = 143;
            status.reason = "Error".into();
            status.finished_at = Some(self.clock.now());
        }
        Ok(())
    }

    async fn remove_container(&self, container_id: &str) -> Result<(), RuntimeError> {
        self.enter("remove_container").await?;
        let mut state = self.state.lock().unwrap();
        state.containers.remove(container_id);
        Ok(())
    }

    async fn list_containers(&self, filter: &LabelFilter) -> Result<Vec<Container>, RuntimeError> {
        self.enter("list_containers").await?;
        let state = self.state.lock().unwrap();
        Ok(state.containers.values().filter(|c| filter.matches(&c.container.labels)).map(|c| c.container.clone()).collect())
    }

    async fn container_status(&self, container_id: &str) -> Result<ContainerStatus, RuntimeError> {
        self.enter("container_status").await?;
        let state = self.state.lock().unwrap();
        state.containers.get(container_id).cloned().ok_or_else(|| RuntimeError::NotFound(format!("container {container_id}")))
    }

    /// Runs nothing: `false` exits 1, anything else exits 0, in a running container; a command
    /// made slower than its timeout fails with [`RuntimeError::DeadlineExceeded`].
    async fn exec_sync(&self, container_id: &str, cmd: &[String], timeout: Duration) -> Result<ExecResult, RuntimeError> {
        // A slow command that outlasts its timeout is cut off, as a real runtime cuts it off.
        if self.faults.lock().unwrap().slow.get("exec_sync").is_some_and(|delay| *delay > timeout) {
            *self.faults.lock().unwrap().calls.entry("exec_sync").or_default() += 1;
            tokio::time::sleep(timeout).await;
            return Err(RuntimeError::DeadlineExceeded { call: "exec_sync", after: timeout });
        }
        self.enter("exec_sync").await?;
        let state = self.state.lock().unwrap();
        match state.containers.get(container_id) {
            Some(c) if c.container.state == ContainerState::Running => {
                Ok(ExecResult { exit_code: i32::from(cmd.first().is_some_and(|c| c == "false")), ..ExecResult::default() })
            }
            _ => Err(RuntimeError::NotFound(format!("running container {container_id}"))),
        }
    }

    /// The fake's containers write nothing.
    async fn logs(
        &self,
        container_id: &str,
        _options: &LogOptions,
    ) -> Result<BoxStream<'static, Result<Vec<u8>, RuntimeError>>, RuntimeError> {
        self.enter("logs").await?;
        let state = self.state.lock().unwrap();
        match state.containers.contains_key(container_id) {
            true => Ok(futures::stream::empty().boxed()),
            false => Err(RuntimeError::NotFound(format!("container {container_id}"))),
        }
    }

    async fn image_status(&self, image: &str) -> Result<Option<Image>, RuntimeError> {
        self.enter("image_status").await?;
        let state = self.state.lock().unwrap();
        Ok(state.images.contains(image).then(|| Image { id: format!("sha256:{image}"), size: 0 }))
    }

    async fn pull_image(&self, image: &str, auth: Option<&RegistryAuth>, progress: &PullProgressSender) -> Result<String, RuntimeError> {
        self.enter("pull_image").await?;
        let mut state = self.state.lock().unwrap();
        state.pull_users.push(auth.map(|a| a.username.clone()).unwrap_or_default());
        let host = image.split('/').next().unwrap_or_default();
        if let Some(wanted) = state.protected.get(host).filter(|_| image.contains('/')) {
            let presented = auth.is_some_and(|a| a.username == wanted.username && a.password == wanted.password);
            if !presented {
                let message = format!("failed to authorize: {host}: 401 Unauthorized");
                return Err(RuntimeError::ImagePull { image: image.to_owned(), message });
            }
        }
        progress.send_replace(PullProgress { layers: 1, layers_done: 1, bytes_total: 1, bytes_done: 1 });
        state.images.insert(image.to_owned());
        Ok(image.to_owned())
    }

    async fn sandbox_image(&self) -> Result<Option<String>, RuntimeError> {
        Ok(self.state.lock().unwrap().sandbox_image.clone())
    }
}
