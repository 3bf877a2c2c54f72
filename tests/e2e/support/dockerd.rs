//! A Docker engine of a test's own, for the faults a shared engine cannot take: restarting it,
//! starting the agent before it, an engine without the sandbox image. It has its own socket,
//! data root, exec root and Linux bridge, and is stopped by its PID.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bollard::Docker;

use super::{images, wait_for};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A private `dockerd`, not running until [`Dockerd::start`].
pub struct Dockerd {
    dir: PathBuf,
    bridge: String,
    subnet: String,
    /// Pulls go through a proxy that refuses every connection: nothing is ever downloaded.
    offline: bool,
    child: Option<Child>,
}

impl Dockerd {
    /// Prepares the engine's directories and bridge.
    pub fn new() -> Dockerd {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let dir = PathBuf::from(format!("/tmp/staticlet-e2e-dockerd-{pid}-{n}"));
        std::fs::create_dir_all(&dir).unwrap();
        // Linux caps interface names at 15 bytes.
        let bridge = format!("stl{}x{n}", pid % 100_000);
        let subnet = format!("10.{}.{}", 200 + (pid % 50), 10 + n);
        let ip = |args: &[&str]| Command::new("ip").args(args).stdout(Stdio::null()).stderr(Stdio::null()).status().unwrap();
        ip(&["link", "add", &bridge, "type", "bridge"]);
        ip(&["addr", "add", &format!("{subnet}.1/24"), "dev", &bridge]);
        ip(&["link", "set", &bridge, "up"]);
        Dockerd { dir, bridge, subnet, offline: false, child: None }
    }

    /// An engine whose every pull fails at once, whatever network the machine has: for
    /// manifests naming real registries' images that a test must not download.
    pub fn offline() -> Dockerd {
        let mut dockerd = Dockerd::new();
        dockerd.offline = true;
        dockerd
    }

    /// The endpoint to give the agent (`--docker-endpoint`).
    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("docker.sock")
    }

    /// Starts the engine, with live restore: containers keep running while it is down, as on
    /// a node that updates its engine.
    pub async fn start(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("dockerd.log")).unwrap();
        let mut command = Command::new("dockerd");
        if self.offline {
            let refused = "http://127.0.0.1:9";
            command.envs([("HTTPS_PROXY", refused), ("HTTP_PROXY", refused)]).env_remove("NO_PROXY").env_remove("no_proxy");
        }
        let child = command
            .arg("--host")
            .arg(self.endpoint())
            .arg("--data-root")
            .arg(self.dir.join("data"))
            .arg("--exec-root")
            .arg(self.dir.join("exec"))
            .arg("--pidfile")
            .arg(self.dir.join("docker.pid"))
            .args(["--bridge", &self.bridge, "--fixed-cidr", &format!("{}.0/24", self.subnet)])
            .args(["--iptables=false", "--ip6tables=false", "--live-restore"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("dockerd runs");
        self.child = Some(child);
        wait_for(Duration::from_secs(60), "the private dockerd to answer", || async {
            if !self.socket().exists() {
                return None;
            }
            self.client().ping().await.ok()
        })
        .await;
    }

    /// Stops the engine with SIGTERM and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
            child.wait().unwrap();
        }
    }

    /// A client for the engine; it must have started once.
    pub fn client(&self) -> Docker {
        Docker::connect_with_unix(&self.socket().display().to_string(), 120, bollard::API_DEFAULT_VERSION).unwrap()
    }

    /// Loads the test images (busybox and the test pause image).
    pub async fn load_test_images(&self) {
        let client = self.client();
        for (tag, archive) in images::archives() {
            images::load(&client, &tag, archive).await;
        }
    }

    /// The engine's own log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default()
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        if self.child.is_some() {
            let docker = ["--host", &self.endpoint()].map(str::to_owned);
            let ids = Command::new("docker")
                .args(&docker)
                .args(["ps", "-aq"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).split_whitespace().map(str::to_owned).collect::<Vec<_>>())
                .unwrap_or_default();
            if !ids.is_empty() {
                let _ =
                    Command::new("docker").args(&docker).args(["rm", "-f"]).args(&ids).stdout(Stdio::null()).stderr(Stdio::null()).status();
            }
            self.stop();
        }
        // dockerd mounts its data root over itself and may leave that mount behind.
        let _ = Command::new("umount").arg("-l").arg(self.dir.join("data")).stdout(Stdio::null()).stderr(Stdio::null()).status();
        let _ = Command::new("ip").args(["link", "del", &self.bridge]).stdout(Stdio::null()).stderr(Stdio::null()).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
