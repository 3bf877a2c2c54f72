//! Shared helpers for the end-to-end suites: a real Docker engine, the real `staticlet`
//! binary, and locally built images.

pub mod apiserver;
pub mod containerd;
pub mod dockerd;
pub mod etcd;
pub mod fleet;
pub mod hostile;
pub mod images;
pub mod pki;
pub mod podman;
pub mod registry;
pub mod systemd_node;

/// A shipped plugin as built against WIT 0.1.0 (`tests/fixtures/wit-v0.1.0`), by file name.
pub fn wit_v0_1_0(file: &str) -> String {
    format!("{}/../../tests/fixtures/wit-v0.1.0/{file}", env!("CARGO_MANIFEST_DIR"))
}
pub mod template;

pub(crate) use template::yaml;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::models::ContainerSummary;
use bollard::query_parameters::ListContainersOptions;

/// A client for the engine the tests (and the agent) use.
pub async fn docker() -> Docker {
    let docker =
        Docker::connect_with_local_defaults().expect("a Docker endpoint").negotiate_version().await.expect("a running Docker engine");
    images::ensure_loaded(&docker).await;
    docker
}

/// A unique node name per test, so tests sharing the engine never see each other's pods.
pub fn node_name(test: &str) -> String {
    format!("{test}-{}", std::process::id()).to_lowercase().replace('_', "-")
}

/// The agent's containers (`all`: including exited ones), by label.
pub async fn containers(docker: &Docker, node: &str, extra: &[(&str, &str)]) -> Vec<ContainerSummary> {
    let mut labels = vec![format!("io.staticlet.node={node}")];
    labels.extend(extra.iter().map(|(k, v)| format!("{k}={v}")));
    let options = ListContainersOptions { all: true, filters: Some(HashMap::from([("label".to_owned(), labels)])), ..Default::default() };
    docker.list_containers(Some(options)).await.unwrap()
}

/// The running containers of the agent whose name starts with `prefix`.
pub async fn running(docker: &Docker, node: &str, prefix: &str) -> Vec<ContainerSummary> {
    containers(docker, node, &[])
        .await
        .into_iter()
        .filter(|c| c.state.as_ref().map(|s| s.as_ref()) == Some("running"))
        .filter(|c| name(c).starts_with(prefix))
        .collect()
}

/// `docker …`, which must succeed; its standard output, trimmed.
pub fn docker_cli(args: &[&str]) -> String {
    let output = Command::new("docker").args(args).output().unwrap();
    assert!(output.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// A container's name without Docker's leading slash.
pub fn name(c: &ContainerSummary) -> String {
    c.names.as_ref().and_then(|n| n.first()).map(|n| n.trim_start_matches('/').to_owned()).unwrap_or_default()
}

/// Polls `check` until it returns `Some`, or panics with `what` after `timeout`.
pub async fn wait_for<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A `staticlet run` process with its own manifest directory, root directory and log file.
pub struct Agent {
    /// Manifests go here.
    pub manifests: PathBuf,
    /// `--root-dir`.
    pub root: PathBuf,
    /// The node name.
    pub node: String,
    /// `--api-socket`.
    pub socket: PathBuf,
    /// `--pod-infra-container-image`, or none to leave the agent its default.
    pub pod_infra_image: Option<&'static str>,
    /// The working directory to start it in (the test process's when none).
    pub current_dir: Option<PathBuf>,
    log: PathBuf,
    child: Option<Child>,
    /// The Podman it runs pods on too, to clean up after.
    podman: Option<podman::Podman>,
    /// The containerd it runs pods on too, to clean up after.
    containerd: Option<containerd::Containerd>,
    _dir: tempfile::TempDir,
}

impl Agent {
    /// A stopped agent with fresh directories.
    pub fn new(test: &str) -> Agent {
        let dir = tempfile::tempdir().unwrap();
        let manifests = dir.path().join("manifests");
        std::fs::create_dir(&manifests).unwrap();
        Agent {
            manifests,
            root: dir.path().join("root"),
            node: node_name(test),
            socket: dir.path().join("staticlet.sock"),
            pod_infra_image: Some(images::PAUSE),
            current_dir: None,
            log: dir.path().join("agent.log"),
            child: None,
            podman: None,
            containerd: None,
            _dir: dir,
        }
    }

    /// Starts the agent with extra flags.
    pub fn start_with(&mut self, extra: &[&str]) {
        self.start_env(extra, &[]);
    }

    /// Starts the agent with extra flags and environment variables.
    pub fn start_env(&mut self, extra: &[&str], env: &[(&str, &str)]) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_staticlet"));
        if let Some(dir) = &self.current_dir {
            command.current_dir(dir);
        }
        let child = command
            .arg("run")
            .arg("--pod-manifest-path")
            .arg(&self.manifests)
            .arg("--root-dir")
            .arg(&self.root)
            .arg("--api-socket")
            .arg(&self.socket)
            .args(["--hostname-override", &self.node, "--file-check-frequency", "2s"])
            .args(self.pod_infra_image.iter().flat_map(|image| ["--pod-infra-container-image", image]))
            // Agents side by side would all want 10250 with --kubeconfig; a test that wants the
            // kubelet port names one.
            .args(if extra.contains(&"--port") { &[][..] } else { &["--port", "0"][..] })
            // And all 10248 for healthz.
            .args(if extra.contains(&"--healthz-port") { &[][..] } else { &["--healthz-port", "0"][..] })
            .args(extra)
            .env("STATICLET_LOG", "info")
            .env("NO_COLOR", "1")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("the staticlet binary runs");
        self.child = Some(child);
    }

    /// Starts the agent.
    pub fn start(&mut self) {
        self.start_with(&[]);
    }

    /// The `staticlet` CLI against this agent's socket and root dir: `args`, then `command`
    /// after `--` when given.
    pub fn cli(&self, args: &[&str], command: &[&str]) -> Command {
        let mut cli = Command::new(env!("CARGO_BIN_EXE_staticlet"));
        cli.args(args).arg("--root-dir").arg(&self.root);
        if args[0] != "kubeconfig" {
            cli.arg("--api-socket").arg(&self.socket);
        }
        if !command.is_empty() {
            cli.arg("--").args(command);
        }
        cli
    }

    /// Kills the agent with SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Stops the agent with `signal` and waits for it to exit; returns its exit status.
    pub fn stop_with(&mut self, signal: &str) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("the agent is running");
        Command::new("kill").args([&format!("-{signal}"), &child.id().to_string()]).status().unwrap();
        child.wait().unwrap()
    }

    /// The agent's process ID.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the agent is running").id()
    }

    /// Whether the agent process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    /// Writes a manifest file (atomically, as editors and config tools do).
    pub fn write(&self, file: &str, text: &str) {
        let tmp = self.manifests.join(format!(".{file}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, self.manifests.join(file)).unwrap();
    }

    /// Removes a manifest file.
    pub fn remove(&self, file: &str) {
        std::fs::remove_file(self.manifests.join(file)).unwrap();
    }

    /// Everything the agent logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The manifest directory.
    pub fn dir(&self) -> &Path {
        &self.manifests
    }

    /// The static pod name of `name` on this node.
    pub fn pod(&self, name: &str) -> String {
        format!("{name}-{}", self.node)
    }

    /// Runs this agent's pods on `podman` too: they are removed from it when the test ends.
    pub fn uses_podman(&mut self, podman: &podman::Podman) {
        self.podman = Some(podman.clone());
    }

    /// Runs this agent's pods on `containerd` too: they are removed from it when the test ends.
    pub fn uses_containerd(&mut self, containerd: &containerd::Containerd) {
        self.containerd = Some(containerd.clone());
    }

    /// A file beside the manifest directory (configs, plugins), by name.
    pub fn file(&self, name: &str) -> PathBuf {
        self.manifests.parent().unwrap().join(name)
    }

    /// A request to the agent's API socket: the status code and the JSON body.
    pub async fn api(&self, method: &str, path: &str) -> Option<(u16, serde_json::Value)> {
        let (code, body) = self.api_raw(method, path).await?;
        Some((code, serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null)))
    }

    /// What `kubectl logs` shows of container `container` of pod `name` (the manifest's name).
    pub async fn container_log(&self, name: &str, container: &str) -> String {
        let path = format!("/api/v1/namespaces/default/pods/{}/log?container={container}", self.pod(name));
        self.api_raw("GET", &path).await.map(|(_, body)| String::from_utf8_lossy(&body).into_owned()).unwrap_or_default()
    }

    /// A request to the agent's API socket: the status code and the raw body.
    pub async fn api_raw(&self, method: &str, path: &str) -> Option<(u16, bytes::Bytes)> {
        use http_body_util::{BodyExt, Empty};
        let stream = tokio::net::UnixStream::connect(&self.socket).await.ok()?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.ok()?;
        tokio::spawn(connection);
        let request =
            hyper::Request::builder().method(method).uri(path).header("host", "localhost").body(Empty::<bytes::Bytes>::new()).ok()?;
        let response = sender.send_request(request).await.ok()?;
        let code = response.status().as_u16();
        let body = response.into_body().collect().await.ok()?.to_bytes();
        Some((code, body))
    }

    /// Pod `name` (the manifest's name) with its status, as the API serves it.
    pub async fn pod_status(&self, name: &str) -> Option<serde_json::Value> {
        let (code, pod) = self.api("GET", &format!("/api/v1/namespaces/default/pods/{}", self.pod(name))).await?;
        (code == 200).then_some(pod)
    }

    /// Waits until the agent's log says `text`.
    pub async fn wait_log(&self, text: &str) {
        wait_for(Duration::from_secs(60), &format!("the agent to log {text:?}"), || async { self.log().contains(text).then_some(()) })
            .await;
    }

    /// The running `app` containers of pod `name` (the manifest's name).
    pub async fn app_containers(&self, name: &str) -> Vec<ContainerSummary> {
        running(&docker().await, &self.node, &format!("k8s_app_{}_", self.pod(name))).await
    }

    /// Waits until the API reports every one of `names` in phase Running.
    pub async fn wait_reported_running(&self, names: &[&str]) {
        wait_for(Duration::from_secs(60), &format!("the agent to report {names:?} running"), || async {
            for name in names {
                if self.pod_status(name).await?["status"]["phase"] != "Running" {
                    return None;
                }
            }
            Some(())
        })
        .await;
    }
}

/// The condition `type_` of a pod as the API serves it: `True` or `False`.
pub fn condition(pod: &serde_json::Value, type_: &str) -> Option<String> {
    pod["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == type_).map(|c| c["status"].as_str().unwrap_or("").to_owned())
}

/// The status of container `name` in a pod as the API serves it (init or app).
pub fn container_status<'a>(pod: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    let all = pod["status"]["initContainerStatuses"].as_array().into_iter().flatten();
    all.chain(pod["status"]["containerStatuses"].as_array().into_iter().flatten()).find(|c| c["name"] == name)
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill9();
        // Leave the engine as it was: remove every object of this test's node.
        let ids = Command::new("docker")
            .args(["ps", "-aq", "--filter", &format!("label=io.staticlet.node={}", self.node)])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).split_whitespace().map(str::to_owned).collect::<Vec<_>>())
            .unwrap_or_default();
        if !ids.is_empty() {
            let _ = Command::new("docker").args(["rm", "-f"]).args(&ids).stdout(Stdio::null()).stderr(Stdio::null()).status();
        }
        if let Some(podman) = &self.podman {
            let pods: Vec<String> = podman.pods(&self.node).iter().filter_map(|p| p["Id"].as_str().map(str::to_owned)).collect();
            if !pods.is_empty() {
                let _ = podman.cli().args(["pod", "rm", "-f", "-t", "0"]).args(&pods).stdout(Stdio::null()).stderr(Stdio::null()).status();
            }
        }
        if let Some(containerd) = &self.containerd {
            containerd.remove_node(&self.node);
        }
    }
}

/// A pod whose one container, `main`, sleeps for `seconds` (the number tells its versions
/// apart) on the local busybox image; `extra_spec` is YAML added to `spec:`, before
/// `containers:`.
pub fn sleeper(name: &str, seconds: u32, extra_spec: &str) -> String {
    yaml!(
        r#"
        apiVersion: v1
        kind: Pod
        metadata:
          name: {name}
        spec:
          {extra_spec}
          containers:
          - name: main
            image: {BUSYBOX}
            imagePullPolicy: Never
            command: [sleep, '{seconds}']
        "#,
        name,
        extra_spec,
        seconds,
        BUSYBOX = images::BUSYBOX,
    )
}

/// Whether the bytes read so far hold a whole HTTP/1.1 request: its head and as much body as
/// its Content-Length says.
pub fn http_request_is_whole(request: &[u8]) -> bool {
    let request = String::from_utf8_lossy(request);
    let Some(end) = request.find("\r\n\r\n") else { return false };
    let length = request[..end]
        .lines()
        .find_map(|line| line.to_lowercase().strip_prefix("content-length:").map(|n| n.trim().parse::<usize>().unwrap_or(0)))
        .unwrap_or(0);
    request.len() >= end + 4 + length
}

/// The languages the allowed-registries example is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExampleLanguage {
    /// `rust/`, built with cargo.
    Rust,
    /// `python/`, built with componentize-py.
    Python,
    /// `javascript/`, built with ComponentizeJS.
    JavaScript,
}

impl ExampleLanguage {
    /// Every one.
    pub const ALL: [ExampleLanguage; 3] = [ExampleLanguage::Rust, ExampleLanguage::Python, ExampleLanguage::JavaScript];

    /// Its folder under `examples/plugins/allowed-registries`.
    pub fn folder(self) -> &'static str {
        match self {
            ExampleLanguage::Rust => "rust",
            ExampleLanguage::Python => "python",
            ExampleLanguage::JavaScript => "javascript",
        }
    }

    /// The file holding the policy.
    pub fn policy_file(self) -> &'static str {
        match self {
            ExampleLanguage::Rust => "src/lib.rs",
            ExampleLanguage::Python => "app.py",
            ExampleLanguage::JavaScript => "app.js",
        }
    }
}

/// The allowed-registries example validator in `language`, built into `dir` from the
/// repository's root exactly as its README says; `Err` says why it could not be.
pub fn build_example_validator(language: ExampleLanguage, dir: &Path) -> Result<PathBuf, String> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let wasm = dir.join(format!("allowed_registries_{}.wasm", language.folder()));
    let (tool, install, mut command) = match language {
        ExampleLanguage::Rust => {
            // Beside the repository's own plugins, whose compiled dependencies it then shares.
            let target_dir = Path::new(staticlet_plugin::artifacts::HOSTILE).ancestors().nth(3).unwrap().to_owned();
            let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
            cargo
                .args(["build", "--manifest-path", "examples/plugins/allowed-registries/rust/Cargo.toml"])
                .args(["--release", "--target", "wasm32-wasip2", "--locked", "--target-dir"])
                .arg(&target_dir);
            ("cargo", "rustup target add wasm32-wasip2", cargo)
        }
        ExampleLanguage::Python => {
            let mut componentize = Command::new("componentize-py");
            componentize
                .args(["-d", "wit/since_v0.2.0", "-w", "admission-validator", "componentize"])
                .args(["-p", "plugins/sdk-python", "-p", "examples/plugins/allowed-registries/python", "app", "-o"])
                .arg(&wasm);
            ("componentize-py", "pip install componentize-py==0.25.1", componentize)
        }
        ExampleLanguage::JavaScript => {
            let mut componentize = Command::new(repo.join("plugins/sdk-js/node_modules/.bin/componentize-js"));
            componentize
                .arg("examples/plugins/allowed-registries/javascript/app.js")
                .args(["--wit", "wit/since_v0.2.0", "--world-name", "admission-validator", "-o"])
                .arg(&wasm);
            ("componentize-js", "npm ci --prefix plugins/sdk-js", componentize)
        }
    };
    let built = command.current_dir(&repo).output().map_err(|e| format!("{tool} does not run ({e}); {install} (.ci/run does it)"))?;
    if !built.status.success() {
        return Err(format!("{tool}: {}", String::from_utf8_lossy(&built.stderr)));
    }
    if language == ExampleLanguage::Rust {
        let target_dir = Path::new(staticlet_plugin::artifacts::HOSTILE).parent().unwrap();
        std::fs::copy(target_dir.join("allowed_registries.wasm"), &wasm).map_err(|e| e.to_string())?;
    }
    Ok(wasm)
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A plain HTTP GET on loopback; the body, or `None` while nothing answers.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    http_get_from(([127, 0, 0, 1], port).into(), path)
}

/// A plain HTTP GET to `address`; the body, or `None` while nothing answers.
pub fn http_get_from(address: std::net::SocketAddr, path: &str) -> Option<String> {
    http_get_with(address, path, &[])
}

/// [`http_get_from`] with extra request headers.
pub fn http_get_with(address: std::net::SocketAddr, path: &str, headers: &[(&str, &str)]) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(&address, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let headers: String = headers.iter().map(|(name, value)| format!("{name}: {value}\r\n")).collect();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n{headers}\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.starts_with("HTTP/1.").then_some(response)
}

/// The p50 and p99 of `samples` (sorted in place), nearest-rank, for the benchmarks.
pub fn p50_p99(samples: &mut [f64]) -> (f64, f64) {
    samples.sort_by(f64::total_cmp);
    let at = |p: f64| samples[(((p / 100.0) * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1];
    (at(50.0), at(99.0))
}
