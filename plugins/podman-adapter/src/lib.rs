//! The Podman runtime adapter's logic: a staticlet runtime adapter for Podman, through Podman's
//! REST API (the libpod endpoints) on its socket, `/run/podman/podman.sock` (what
//! `podman.socket` serves), or on TCP where Podman is served that way.
//! `podman-runtime` exports it as a component; test adapters wrap it. It exports nothing
//! itself: a wrapper linking it would then carry two sets of the world's exports, which do not
//! link.
//!
//! A static pod is one Podman pod, whose infra container is the sandbox; the pod's containers
//! run inside it. Names and labels are the ones the Docker runtime gives, so `podman pod ps` and
//! `podman ps` read as a kubelet user expects: pods `k8s_POD_<pod>_<ns>_<uid>_<attempt>`,
//! containers `k8s_<container>_<pod>_<ns>_<uid>_<attempt>`, the agent's labels, and
//! annotations as `annotation.<key>` labels.
//!
//! Settings: `endpoint` (default `unix:///run/podman/podman.sock`; or `http://host:port`) and
//! `apiVersion` (default `v4.0.0`). The agent config must grant the socket in the plugin's
//! `allowedSockets` (or a TCP endpoint's address in its `allowedHosts`).

mod api;
mod convert;

use std::time::Duration;

use serde_json::{Value, json};
use staticlet_plugin_sdk::Config;
use staticlet_plugin_sdk::runtime::{
    Container, ContainerConfig, ContainerState, ContainerStatus, ExecResult, Image, LogOptions, RegistryAuth, RuntimeAdapter, RuntimeError,
    RuntimeVersion, Sandbox, SandboxConfig, SandboxStatus, StringMap,
};

use api::{Client, decode, failure, ok};
use convert::{
    InspectedContainer, InspectedPod, ListedContainer, ListedPod, container_name, demux, label_filter, parse_time, percent_encode, qualify,
    sandbox_name, unix_seconds,
};

/// Where Podman's API is when the settings do not say: rootful Podman's socket, which systemd's
/// `podman.socket` serves on demand. No root-equivalent API on TCP is needed.
pub const DEFAULT_ENDPOINT: &str = "unix:///run/podman/podman.sock";
/// The API version the paths carry: Debian's Podman 4 serves `/v4.0.0/libpod/...`.
pub const DEFAULT_API_VERSION: &str = "v4.0.0";
/// The settings the adapter reads.
const SETTINGS: [&str; 2] = ["endpoint", "apiVersion"];
/// How much of each exec output stream is kept: the agent's `EXEC_OUTPUT_LIMIT`.
const EXEC_OUTPUT_LIMIT: usize = 10 * 1024;
/// The longest log returned at once. The 0.1.0 world returns a log in one piece, held twice in
/// the instance's memory (capped at 64 MiB by default) while it is split into its streams.
const LOG_LIMIT: usize = 8 * 1024 * 1024;

/// The adapter: a client for one Podman service.
#[derive(Debug, Clone)]
pub struct Podman {
    client: Client,
}

impl Podman {
    /// The adapter for the settings the agent config gives it. Keys it does not know are
    /// logged and ignored, so that a wrapper's own settings or a config written for a newer
    /// adapter still load.
    ///
    /// # Errors
    ///
    /// A setting of the wrong type or form, named.
    pub fn from_settings(config: &Config) -> Result<Podman, String> {
        let settings = config.as_object().ok_or_else(|| format!("the settings must be an object, got {config}"))?;
        let text = |key: &str, default: &str| match settings.get(key) {
            None => Ok(default.to_owned()),
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
            Some(other) => Err(format!("{key}: want a non-empty string, got {other}")),
        };
        let endpoint = text("endpoint", DEFAULT_ENDPOINT)?;
        let url = if endpoint.starts_with("unix://") {
            staticlet_plugin_sdk::http::unix_socket_url(&endpoint).map_err(|e| format!("endpoint: {e}"))?
        } else {
            let authority =
                endpoint.strip_prefix("http://").or_else(|| endpoint.strip_prefix("https://")).map(|rest| rest.trim_end_matches('/'));
            if authority.is_none_or(|a| a.is_empty() || a.contains(['/', '?'])) {
                return Err(format!("endpoint: want unix:///path/to/podman.sock or http://host:port (Podman's service), got {endpoint:?}"));
            }
            endpoint.clone()
        };
        let api_version = text("apiVersion", DEFAULT_API_VERSION)?;
        if !api_version.trim_start_matches('v').split('.').all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())) {
            return Err(format!("apiVersion: want a version such as {DEFAULT_API_VERSION}, got {api_version:?}"));
        }
        let unknown: Vec<&str> = settings.keys().map(String::as_str).filter(|k| !SETTINGS.contains(k)).collect();
        if !unknown.is_empty() {
            staticlet_plugin_sdk::log_warn(&format!(
                "the Podman adapter ignores settings it does not know: {} (it reads {})",
                unknown.join(", "),
                SETTINGS.join(", ")
            ));
        }
        Ok(Podman { client: Client::new(&endpoint, &url, &api_version) })
    }

    /// Stops container `id`, SIGKILL after `seconds`; a stopped one is fine.
    fn stop(&self, id: &str, seconds: u64) -> Result<(), RuntimeError> {
        self.client.post(&format!("stopping container {id}"), &format!("/containers/{id}/stop?timeout={seconds}"), None).map(drop)
    }
}

/// Success for a call on something already gone, as stops and removals want it.
fn gone_is_fine(result: Result<(), RuntimeError>) -> Result<(), RuntimeError> {
    match result {
        Err(RuntimeError::NotFound(_)) => Ok(()),
        other => other,
    }
}

/// A path below `/libpod` with a label filter added to its query.
fn filtered(path: &str, filter: &StringMap) -> String {
    match label_filter(filter) {
        Some(filter) => format!("{path}{}filters={filter}", if path.contains('?') { '&' } else { '?' }),
        None => path.to_owned(),
    }
}

impl RuntimeAdapter for Podman {
    fn version(&self) -> Result<RuntimeVersion, RuntimeError> {
        let version: Value = self.client.get("reading Podman's version", "/version")?;
        let number = version["Version"].as_str().or_else(|| version["Components"][0]["Version"].as_str()).unwrap_or_default();
        Ok(RuntimeVersion { runtime_name: "podman".into(), runtime_version: number.to_owned() })
    }

    fn run_pod_sandbox(&self, config: SandboxConfig) -> Result<String, RuntimeError> {
        let name = sandbox_name(&config.metadata);
        let what = format!("creating pod {name}");
        let created: Value = decode(&what, &self.client.post(&what, "/pods/create", Some(&convert::pod_spec(&config)))?)?;
        let id = created["Id"].as_str().ok_or_else(|| RuntimeError::Call(format!("{what}: Podman returned no id")))?.to_owned();
        if let Err(e) = self.client.post(&format!("starting pod {name}"), &format!("/pods/{id}/start"), None) {
            // As the CRI's RunPodSandbox: a sandbox that did not start (a host port already
            // taken, say) is not left behind.
            let _ = self.remove_pod_sandbox(id);
            return Err(e);
        }
        Ok(id)
    }

    fn stop_pod_sandbox(&self, sandbox_id: String) -> Result<(), RuntimeError> {
        // Container by container: Podman's pod stop does nothing (304) to a pod it calls
        // "Degraded", which is what a pod is once the agent stopped its app containers, and
        // reads `t=0` as its default of ten seconds. Forcibly, as the CRI's StopPodSandbox: the
        // agent already stopped the containers with their grace periods.
        let pod = match self.client.get::<InspectedPod>(&format!("pod {sandbox_id}"), &format!("/pods/{sandbox_id}/json")) {
            Err(RuntimeError::NotFound(_)) => return Ok(()),
            found => found?,
        };
        for id in pod.running_containers() {
            gone_is_fine(self.stop(&id, 0))?;
        }
        Ok(())
    }

    fn remove_pod_sandbox(&self, sandbox_id: String) -> Result<(), RuntimeError> {
        // Stopped first: a forced removal gives each running container Podman's default stop
        // timeout.
        self.stop_pod_sandbox(sandbox_id.clone())?;
        let what = format!("removing pod {sandbox_id}");
        gone_is_fine(ok(&what, self.client.send(&self.client.request("DELETE", &format!("/pods/{sandbox_id}?force=true")))?).map(drop))
    }

    fn list_pod_sandboxes(&self, filter: StringMap) -> Result<Vec<Sandbox>, RuntimeError> {
        let pods: Option<Vec<ListedPod>> = self.client.get("listing pods", &filtered("/pods/json", &filter))?;
        Ok(pods.into_iter().flatten().filter_map(ListedPod::into_sandbox).collect())
    }

    fn get_pod_sandbox_status(&self, sandbox_id: String) -> Result<SandboxStatus, RuntimeError> {
        let pod: InspectedPod = self.client.get(&format!("pod {sandbox_id}"), &format!("/pods/{sandbox_id}/json"))?;
        let infra_id = pod.infra_container_id.clone();
        let sandbox = pod.into_sandbox().ok_or_else(|| RuntimeError::NotFound(format!("pod {sandbox_id} is not a staticlet sandbox")))?;
        let ip = if infra_id.is_empty() {
            None
        } else {
            let what = format!("infra container of pod {sandbox_id}");
            let infra: InspectedContainer = self.client.get(&what, &format!("/containers/{infra_id}/json"))?;
            infra.network_settings.and_then(|n| n.ip())
        };
        Ok(SandboxStatus { sandbox, ip })
    }

    fn create_container(&self, sandbox_id: String, config: ContainerConfig, sandbox: SandboxConfig) -> Result<String, RuntimeError> {
        let spec = convert::container_spec(&sandbox_id, &config, &sandbox)?;
        let what = format!("creating container {}", container_name(&config.metadata, &sandbox.metadata));
        let response = self.client.send(&self.client.request("POST", "/containers/create").json(&spec))?;
        if !response.is_success() {
            // Podman answers 500, not 404, when the image is absent.
            if response.text().contains("image not known") {
                return Err(RuntimeError::NotFound(format!("{what}: image {} is not present", qualify(&config.image))));
            }
            return Err(failure(&what, &response));
        }
        let created: Value = decode(&what, &response)?;
        created["Id"].as_str().map(str::to_owned).ok_or_else(|| RuntimeError::Call(format!("{what}: Podman returned no id")))
    }

    fn start_container(&self, container_id: String) -> Result<(), RuntimeError> {
        self.client.post(&format!("starting container {container_id}"), &format!("/containers/{container_id}/start"), None).map(drop)
    }

    fn stop_container(&self, container_id: String, grace_ms: u64) -> Result<(), RuntimeError> {
        // Whole seconds, rounded up: a grace period is a floor, never cut short.
        self.stop(&container_id, grace_ms.div_ceil(1000))
    }

    fn remove_container(&self, container_id: String) -> Result<(), RuntimeError> {
        // `timeout=0`: a running container is killed rather than given Podman's default stop
        // timeout; stopping it gracefully is the caller's job.
        let what = format!("removing container {container_id}");
        let request = self.client.request("DELETE", &format!("/containers/{container_id}?force=true&v=true&timeout=0"));
        gone_is_fine(ok(&what, self.client.send(&request)?).map(drop))
    }

    fn list_containers(&self, filter: StringMap) -> Result<Vec<Container>, RuntimeError> {
        let listed: Option<Vec<ListedContainer>> =
            self.client.get("listing containers", &filtered("/containers/json?all=true", &filter))?;
        // Infra containers carry their pod's labels, but they are the sandbox.
        Ok(listed.into_iter().flatten().filter(|c| !c.is_infra).filter_map(ListedContainer::into_container).collect())
    }

    fn get_container_status(&self, container_id: String) -> Result<ContainerStatus, RuntimeError> {
        let inspected: InspectedContainer =
            self.client.get(&format!("container {container_id}"), &format!("/containers/{container_id}/json"))?;
        let (container, state) = inspected
            .into_container()
            .ok_or_else(|| RuntimeError::NotFound(format!("container {container_id} is not a staticlet container")))?;
        let reason = if state.oom_killed {
            "OOMKilled"
        } else if container.state != ContainerState::Exited {
            ""
        } else if state.exit_code == 0 {
            "Completed"
        } else {
            "Error"
        };
        Ok(ContainerStatus {
            container,
            started_at: parse_time(&state.started_at),
            finished_at: parse_time(&state.finished_at),
            exit_code: state.exit_code,
            reason: reason.into(),
            message: state.error,
        })
    }

    fn exec_sync(&self, container_id: String, cmd: Vec<String>, timeout_ms: u64) -> Result<ExecResult, RuntimeError> {
        let what = format!("exec in container {container_id}");
        if cmd.is_empty() {
            return Err(RuntimeError::Call(format!("{what}: the command is empty")));
        }
        let body = json!({"AttachStdout": true, "AttachStderr": true, "Cmd": cmd});
        let created: Value = decode(&what, &self.client.post(&what, &format!("/containers/{container_id}/exec"), Some(&body))?)?;
        let exec = created["Id"].as_str().ok_or_else(|| RuntimeError::Call(format!("{what}: Podman returned no id")))?;
        // The answer ends when the command does, so its timeout bounds the wait (0: none, as
        // in the CRI). The command itself runs on; Podman has no way to end an exec.
        let mut start = self.client.request("POST", &format!("/exec/{exec}/start")).json(&json!({"Detach": false}));
        if timeout_ms > 0 {
            start = start.timeout(Duration::from_millis(timeout_ms));
        }
        let output = match self.client.send(&start) {
            Err(RuntimeError::DeadlineExceeded(_)) => {
                return Err(RuntimeError::DeadlineExceeded(format!("{what}: {cmd:?} did not finish within {timeout_ms}ms")));
            }
            answer => ok(&what, answer?)?,
        };
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        demux(&output.body, |stream, bytes| {
            let buffer = if stream == 2 { &mut stderr } else { &mut stdout };
            let room = EXEC_OUTPUT_LIMIT.saturating_sub(buffer.len());
            buffer.extend_from_slice(&bytes[..bytes.len().min(room)]);
        });
        let inspected: Value = self.client.get(&what, &format!("/exec/{exec}/json"))?;
        let exit_code = inspected["ExitCode"].as_i64().and_then(|c| i32::try_from(c).ok()).unwrap_or(-1);
        Ok(ExecResult { stdout, stderr, exit_code })
    }

    fn logs(&self, container_id: String, options: LogOptions) -> Result<Vec<u8>, RuntimeError> {
        let mut path = format!("/containers/{container_id}/logs?stdout=true&stderr=true&timestamps={}", options.timestamps);
        if let Some(tail) = options.tail_lines {
            path.push_str(&format!("&tail={tail}"));
        }
        if let Some(since) = options.since.filter(|since| *since > 0) {
            path.push_str(&format!("&since={}", unix_seconds(since)));
        }
        let what = format!("logs of container {container_id}");
        let request = self.client.request("GET", &path).max_body_bytes(LOG_LIMIT);
        let response = match self.client.send(&request) {
            Err(RuntimeError::Call(_)) => {
                return Err(RuntimeError::Call(format!("{what}: longer than {LOG_LIMIT} bytes; ask for fewer lines")));
            }
            answer => ok(&what, answer?)?,
        };
        let mut log = Vec::with_capacity(response.body.len());
        demux(&response.body, |_, bytes| log.extend_from_slice(bytes));
        Ok(log)
    }

    fn image_status(&self, image: String) -> Result<Option<Image>, RuntimeError> {
        let reference = qualify(&image);
        let response = self.client.send(&self.client.request("GET", &format!("/images/{reference}/json")))?;
        if response.status == 404 {
            return Ok(None);
        }
        let what = format!("image {reference}");
        let found: Value = decode(&what, &ok(&what, response)?)?;
        Ok(Some(Image { id: found["Id"].as_str().unwrap_or_default().to_owned(), size: found["Size"].as_u64().unwrap_or_default() }))
    }

    fn pull_image(&self, image: String, auth: Option<RegistryAuth>) -> Result<String, RuntimeError> {
        let reference = qualify(&image);
        let what = format!("pulling {reference}");
        let mut request = self.client.request("POST", &format!("/images/pull?reference={}", percent_encode(&reference)));
        if let Some(auth) = &auth {
            request = request.header("X-Registry-Auth", &registry_auth_header(auth));
        }
        let response = self.client.send(&request)?;
        if !response.is_success() {
            return Err(RuntimeError::ImagePull(failure(&what, &response).message().to_owned()));
        }
        // A failed pull is still a 200: the error is one of the streamed progress objects.
        for line in response.body.split(|b| *b == b'\n') {
            if let Ok(progress) = serde_json::from_slice::<Value>(line)
                && let Some(error) = progress["error"].as_str()
            {
                return Err(RuntimeError::ImagePull(format!("{what}: {error}")));
            }
        }
        Ok(reference)
    }
}

/// The login as the Docker-compatible `X-Registry-Auth` header Podman reads: base64url of
/// Docker's `AuthConfig` JSON, empty fields left out.
fn registry_auth_header(auth: &RegistryAuth) -> String {
    use base64::Engine as _;
    let mut login = serde_json::Map::new();
    for (key, value) in [
        ("username", &auth.username),
        ("password", &auth.password),
        ("identitytoken", &auth.identity_token),
        ("registrytoken", &auth.registry_token),
        ("serveraddress", &auth.server_address),
    ] {
        if !value.is_empty() {
            login.insert(key.to_owned(), Value::String(value.clone()));
        }
    }
    base64::engine::general_purpose::URL_SAFE.encode(Value::Object(login).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_default_and_bad_values_name_their_key() {
        assert!(Podman::from_settings(&json!({})).is_ok());
        assert!(Podman::from_settings(&json!({"endpoint": "http://10.0.0.5:8888/", "apiVersion": "v4.3.1"})).is_ok());
        let error = |settings: Value| Podman::from_settings(&settings).unwrap_err();
        assert!(Podman::from_settings(&json!({"endpoint": "unix:///run/user/1000/podman/podman.sock"})).is_ok());
        assert!(error(json!({"endpoint": "unix://run/podman.sock"})).starts_with("endpoint:"));
        assert!(error(json!({"endpoint": "tcp://127.0.0.1:8888"})).starts_with("endpoint:"));
        assert!(error(json!({"endpoint": "http://"})).starts_with("endpoint:"));
        assert!(error(json!({"endpoint": 8888})).starts_with("endpoint:"));
        assert!(error(json!({"apiVersion": "latest"})).starts_with("apiVersion:"));
        assert!(error(json!("http://127.0.0.1:8888")).contains("object"));
    }

    #[test]
    fn the_login_travels_as_dockers_auth_header() {
        use base64::Engine as _;
        let auth = RegistryAuth {
            username: "u".into(),
            password: "p:w".into(),
            identity_token: String::new(),
            registry_token: String::new(),
            server_address: "127.0.0.1:5001".into(),
        };
        let header = registry_auth_header(&auth);
        let decoded: Value = serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE.decode(header).unwrap()).unwrap();
        assert_eq!(decoded, json!({"username": "u", "password": "p:w", "serveraddress": "127.0.0.1:5001"}));
    }

    #[test]
    fn filters_join_the_query() {
        let filter = vec![("a".to_owned(), "1".to_owned())];
        assert_eq!(filtered("/pods/json", &filter), "/pods/json?filters=%7B%22label%22%3A%5B%22a%3D1%22%5D%7D");
        assert_eq!(
            filtered("/containers/json?all=true", &filter),
            "/containers/json?all=true&filters=%7B%22label%22%3A%5B%22a%3D1%22%5D%7D"
        );
        assert_eq!(filtered("/pods/json", &Vec::new()), "/pods/json");
    }
}
