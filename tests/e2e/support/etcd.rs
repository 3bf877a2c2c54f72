//! A real etcd (Debian's `etcd-server`) for one test: its own data directory and loopback ports,
//! stopped by its PID when dropped. Keys are written with the real `etcdctl`.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

/// One etcd member.
pub struct Etcd {
    /// The client port on 127.0.0.1.
    pub port: u16,
    peer_port: u16,
    data: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

impl Etcd {
    /// Starts a one-member cluster and waits until it answers.
    pub fn start() -> Etcd {
        let dir = tempfile::tempdir().unwrap();
        let mut etcd = Etcd {
            port: free_port(),
            peer_port: free_port(),
            data: dir.path().join("data"),
            log: dir.path().join("etcd.log"),
            child: None,
            _dir: dir,
        };
        etcd.resume();
        etcd
    }

    /// The client URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts the member again on the same data and ports, after [`Etcd::stop`].
    pub fn resume(&mut self) {
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let child = Command::new("etcd")
            .args(["--name", "test", "--data-dir"])
            .arg(&self.data)
            .args(["--listen-client-urls", &self.url(), "--advertise-client-urls", &self.url()])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("test={peer}"), "--log-level", "warn"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("etcd runs (Debian's etcd-server; .ci/run installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.ctl(&["endpoint", "health"]).status.success() {
            assert!(Instant::now() < deadline, "etcd did not answer: {}", std::fs::read_to_string(&self.log).unwrap_or_default());
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Stops the member (SIGKILL, by its PID): clients get refused connections.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Runs `etcdctl` against this member.
    pub fn ctl(&self, args: &[&str]) -> Output {
        Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &self.url(), "--dial-timeout", "2s"])
            .args(args)
            .output()
            .expect("etcdctl runs (Debian's etcd-client; .ci/run installs it)")
    }

    /// `etcdctl` that must succeed.
    pub fn must(&self, args: &[&str]) {
        let out = self.ctl(args);
        assert!(out.status.success(), "etcdctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Writes `value` under `key`.
    pub fn put(&self, key: &str, value: &str) {
        self.must(&["put", key, value]);
    }

    /// Deletes `key`.
    pub fn delete(&self, key: &str) {
        self.must(&["del", key]);
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}
