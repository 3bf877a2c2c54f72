//! A real Podman for the tests: Debian's `podman`, serving its REST API on a Unix socket of its
//! own (as `podman.socket` serves `/run/podman/podman.sock`), with its own storage and state
//! directories, so the tests never touch the machine's Podman.
//! The service stops itself after two idle minutes; [`podman`] starts it again when a later
//! test needs it. The test images are loaded from the same archives Docker gets.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use tokio::sync::Mutex;

use super::{images, yaml};

/// How long the service outlives its last request.
const IDLE_EXIT_SECONDS: &str = "120";

/// One Podman service and the storage it works on.
#[derive(Debug, Clone)]
pub struct Podman {
    /// The API's socket, as an agent config grants it in `allowedSockets`.
    pub socket: PathBuf,
    /// `--root`.
    root: PathBuf,
    /// `--runroot`.
    runroot: PathBuf,
}

static SERVICE: Mutex<Option<Podman>> = Mutex::const_new(None);

/// The tests' Podman, started (and given the test images) on first use.
pub async fn podman() -> Podman {
    let mut service = SERVICE.lock().await;
    if let Some(podman) = service.as_ref()
        && podman.answers()
    {
        return podman.clone();
    }
    let podman = match service.take() {
        Some(stopped) => stopped,
        None => {
            let base = std::env::temp_dir().join(format!("staticlet-e2e-podman-{}", std::process::id()));
            std::fs::create_dir_all(&base).unwrap();
            let podman = Podman { socket: base.join("podman.sock"), root: base.join("root"), runroot: base.join("run") };
            podman.load_images();
            podman
        }
    };
    podman.serve().await;
    *service = Some(podman.clone());
    podman
}

impl Podman {
    /// The adapter's `endpoint` setting for the socket: `unix:///...`.
    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// The same socket as an adapter built against WIT 0.1.0 takes it, whose settings accept
    /// only `http://`: the URL the SDK makes of a socket, `http://~tmp~...~podman.sock`.
    pub fn endpoint_as_url(&self) -> String {
        format!("http://{}", self.socket.display().to_string().replace('/', "~"))
    }

    /// `podman` on this service's storage, as a user would run it.
    pub fn cli(&self) -> Command {
        let mut command = Command::new("podman");
        command.arg("--root").arg(&self.root).arg("--runroot").arg(&self.runroot);
        command
    }

    /// Runs `podman <args>` and returns its standard output.
    pub fn run(&self, args: &[&str]) -> String {
        let output = self.cli().args(args).output().expect("podman is installed");
        assert!(output.status.success(), "podman {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    }

    /// An agent config that makes the Podman adapter (built from `plugins/podman-runtime`) the
    /// default runtime, granted only this Podman's address.
    pub fn agent_config(&self) -> String {
        yaml!(
            r#"
            defaultRuntimeClass: podman
            {runtime_classes}
            "#,
            runtime_classes = self.runtime_class_config(),
        )
    }

    /// An agent config with the runtime class `podman` on the Podman adapter, granted only this
    /// Podman's address; Docker stays the default.
    pub fn runtime_class_config(&self) -> String {
        self.runtime_class_config_with(staticlet_plugin::artifacts::PODMAN_RUNTIME)
    }

    /// The same with the adapter built at `path` (another build of it).
    pub fn runtime_class_config_with(&self, path: &str) -> String {
        self.runtime_class_config_reaching(path, &self.endpoint())
    }

    /// The same with the adapter built at `path` given `endpoint` (one of the socket's forms).
    pub fn runtime_class_config_reaching(&self, path: &str, endpoint: &str) -> String {
        yaml!(
            r#"
            runtimeClasses: {podman: podman}
            plugins:
            - name: podman
              kind: runtime-adapter
              path: {path}
              allowedSockets: ["{socket}"]
              config: {endpoint: "{endpoint}"}
            "#,
            path = path,
            socket = self.socket.display(),
            endpoint = endpoint,
        )
    }

    /// The containers of `node`, infra containers excluded, as `podman ps -a` lists them.
    pub fn containers(&self, node: &str) -> Vec<serde_json::Value> {
        let listed = self.run(&["ps", "-a", "--filter", &format!("label=io.staticlet.node={node}"), "--format", "json"]);
        let all: Vec<serde_json::Value> = serde_json::from_str(&listed).unwrap_or_default();
        all.into_iter().filter(|c| c["IsInfra"] != true).collect()
    }

    /// The pods of `node`, as `podman pod ps` lists them.
    pub fn pods(&self, node: &str) -> Vec<serde_json::Value> {
        let listed = self.run(&["pod", "ps", "--filter", &format!("label=io.staticlet.node={node}"), "--format", "json"]);
        serde_json::from_str(&listed).unwrap_or_default()
    }

    fn answers(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut stream) = std::os::unix::net::UnixStream::connect(&self.socket) else { return false };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let mut answer = String::new();
        stream.write_all(b"GET /v4.0.0/libpod/_ping HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").is_ok()
            && stream.read_to_string(&mut answer).is_ok()
            && answer.starts_with("HTTP/1.1 200")
    }

    async fn serve(&self) {
        let mut service = self
            .cli()
            .args(["system", "service", "--time", IDLE_EXIT_SECONDS, &self.endpoint()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("podman is installed (apt install podman catatonit)");
        // It stops itself when idle; this reaps it then.
        std::thread::spawn(move || service.wait());
        super::wait_for(Duration::from_secs(30), "the Podman service to answer", || async { self.answers().then_some(()) }).await;
    }

    fn load_images(&self) {
        for (tag, archive) in images::archives() {
            let file = tempfile::NamedTempFile::new().unwrap();
            std::fs::write(file.path(), archive).unwrap();
            self.run(&["load", "--quiet", "--input", file.path().to_str().unwrap()]);
            assert!(!self.run(&["images", "--quiet", &tag]).trim().is_empty(), "{tag} loaded into Podman");
        }
    }
}
