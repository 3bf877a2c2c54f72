//! A real etcd (Debian's `etcd-server`) for one test: one member, or a cluster of members on
//! TLS with client-certificate authentication, as production runs it. Each member has its own
//! data directory and loopback ports and is stopped by its PID. Keys are written with the real
//! `etcdctl`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::free_port;
use super::pki::{Issued, Pki};

/// One member: its ports, files and process.
struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    data: PathBuf,
    log: PathBuf,
    /// Its certificate, on a TLS cluster.
    tls: Option<Issued>,
    child: Option<Child>,
}

/// A cluster of members, on plain HTTP or on TLS with client certificates.
pub struct Cluster {
    members: Vec<Member>,
    /// The CA, and the test's own client certificate (for `etcdctl`), on a TLS cluster.
    tls: Option<(Pki, Issued)>,
    dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts `size` members, on TLS with their own CA when `tls` (clients then need a
    /// certificate from it: `--client-cert-auth`, peers too), and waits until it answers.
    pub fn start(size: usize, tls: bool) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let tls = tls.then(|| {
            let pki = Pki::new(&dir.path().join("pki"));
            let root = pki.client("root");
            (pki, root)
        });
        let members = (0..size)
            .map(|i| {
                let name = format!("member-{i}");
                Member {
                    client_port: free_port(),
                    peer_port: free_port(),
                    data: dir.path().join(format!("{name}.data")),
                    log: dir.path().join(format!("{name}.log")),
                    tls: tls.as_ref().map(|(pki, _)| pki.member(&name)),
                    child: None,
                    name,
                }
            })
            .collect();
        let mut cluster = Cluster { members, tls, dir };
        for i in 0..size {
            cluster.spawn(i);
        }
        cluster.wait_healthy();
        cluster
    }

    fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// The client URL of member `i`.
    pub fn url(&self, i: usize) -> String {
        format!("{}://127.0.0.1:{}", self.scheme(), self.members[i].client_port)
    }

    /// The members that run, by index.
    pub fn running(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.members.len()).filter(|i| self.members[*i].child.is_some())
    }

    /// Every member's client URL.
    pub fn urls(&self) -> Vec<String> {
        (0..self.members.len()).map(|i| self.url(i)).collect()
    }

    /// Every member's client address, as an agent config grants it.
    pub fn addresses(&self) -> Vec<String> {
        self.members.iter().map(|m| format!("127.0.0.1:{}", m.client_port)).collect()
    }

    /// The CA's certificate, on a TLS cluster.
    pub fn ca(&self) -> Option<PathBuf> {
        self.tls.as_ref().map(|(pki, _)| pki.ca())
    }

    /// A client certificate for node `name`, on a TLS cluster.
    pub fn client(&self, name: &str) -> Issued {
        self.tls.as_ref().expect("a TLS cluster").0.client(name)
    }

    fn peer_url(&self, member: &Member) -> String {
        format!("{}://127.0.0.1:{}", self.scheme(), member.peer_port)
    }

    fn spawn(&mut self, i: usize) {
        let initial: Vec<String> = self.members.iter().map(|m| format!("{}={}", m.name, self.peer_url(m))).collect();
        let member = &self.members[i];
        let (client, peer) = (self.url(i), self.peer_url(member));
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&member.log).unwrap();
        let mut command = Command::new("etcd");
        command
            .args(["--name", &member.name, "--data-dir"])
            .arg(&member.data)
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &initial.join(","), "--initial-cluster-token", "staticlet-test"])
            .args(["--log-level", "warn"]);
        if let (Some((pki, _)), Some(issued)) = (&self.tls, &member.tls) {
            command
                .args(["--client-cert-auth", "--trusted-ca-file"])
                .arg(pki.ca())
                .arg("--cert-file")
                .arg(&issued.cert)
                .arg("--key-file")
                .arg(&issued.key)
                .args(["--peer-client-cert-auth", "--peer-trusted-ca-file"])
                .arg(pki.ca())
                .arg("--peer-cert-file")
                .arg(&issued.cert)
                .arg("--peer-key-file")
                .arg(&issued.key);
        }
        let child = command.stdout(Stdio::null()).stderr(log).spawn().expect("etcd runs (Debian's etcd-server; .ci/run installs it)");
        self.members[i].child = Some(child);
    }

    /// Waits until the members that run answer, with a leader among them.
    pub fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.ctl(&["endpoint", "health"]).status.success() {
            let logs: Vec<String> = self.members.iter().map(|m| std::fs::read_to_string(&m.log).unwrap_or_default()).collect();
            assert!(Instant::now() < deadline, "etcd did not answer: {}", logs.join("\n"));
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Stops member `i` (SIGKILL, by its PID): its clients get refused connections.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts member `i` again on the same data and ports.
    pub fn revive(&mut self, i: usize) {
        self.spawn(i);
    }

    /// Stops every member.
    pub fn stop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }

    /// Starts every stopped member again and waits until the cluster answers.
    pub fn resume(&mut self) {
        for i in 0..self.members.len() {
            if self.members[i].child.is_none() {
                self.spawn(i);
            }
        }
        self.wait_healthy();
    }

    /// The member that leads, by index.
    pub fn leader(&self) -> usize {
        let out = self.ctl(&["endpoint", "status", "-w", "json"]);
        let statuses: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let leader = statuses.iter().find_map(|s| s["Status"]["leader"].as_u64()).expect("a member knows its leader");
        let endpoint = statuses
            .iter()
            .find(|s| s["Status"]["header"]["member_id"].as_u64() == Some(leader))
            .and_then(|s| s["Endpoint"].as_str())
            .expect("the leader is one of the members");
        (0..self.members.len()).find(|i| self.url(*i) == endpoint).unwrap()
    }

    /// Runs `etcdctl` against the members that run, with the test's client certificate on a
    /// TLS cluster.
    pub fn ctl(&self, args: &[&str]) -> Output {
        let running: Vec<String> = self.running().map(|i| self.url(i)).collect();
        let mut command = Command::new("etcdctl");
        command.env("ETCDCTL_API", "3").args(["--endpoints", &running.join(","), "--dial-timeout", "2s"]);
        if let Some((pki, root)) = &self.tls {
            command.arg("--cacert").arg(pki.ca()).arg("--cert").arg(&root.cert).arg("--key").arg(&root.key);
        }
        command.args(args).output().expect("etcdctl runs (Debian's etcd-client; .ci/run installs it)")
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

    /// Writes every `(key, value)` in one transaction (one revision: every node's change at
    /// once), through member `i`'s JSON gateway with the test's client certificate, as a
    /// client program would rather than one `etcdctl` process per key.
    pub async fn put_all(&self, i: usize, pairs: &[(String, String)]) {
        use base64::Engine;
        use base64::engine::general_purpose::STANDARD;
        let mut client = reqwest::Client::builder();
        if let Some((pki, root)) = &self.tls {
            let ca = reqwest::Certificate::from_pem(&std::fs::read(pki.ca()).unwrap()).unwrap();
            let mut identity = std::fs::read(&root.cert).unwrap();
            identity.extend(std::fs::read(&root.key).unwrap());
            client = client.add_root_certificate(ca).identity(reqwest::Identity::from_pem(&identity).unwrap());
        }
        let puts: Vec<serde_json::Value> = pairs
            .iter()
            .map(|(key, value)| serde_json::json!({"request_put": {"key": STANDARD.encode(key), "value": STANDARD.encode(value)}}))
            .collect();
        let answer = client
            .build()
            .unwrap()
            .post(format!("{}/v3/kv/txn", self.url(i)))
            .header("content-type", "application/json")
            .body(serde_json::json!({"success": puts}).to_string())
            .send()
            .await
            .expect("etcd answers the transaction");
        assert!(answer.status().is_success(), "etcd's answer to the transaction: {}", answer.text().await.unwrap_or_default());
    }

    /// The store's current revision.
    pub fn revision(&self) -> i64 {
        let out = self.ctl(&["get", "/", "--prefix", "--keys-only", "--limit", "1", "-w", "json"]);
        let answer: serde_json::Value = serde_json::from_slice(&out.stdout).expect("etcdctl get -w json");
        answer["header"]["revision"].as_i64().expect("a revision in the header")
    }

    /// Where the cluster's files are.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One member on plain HTTP: what most source tests need.
pub struct Etcd {
    /// Its client port on 127.0.0.1.
    pub port: u16,
    cluster: Cluster,
}

impl Etcd {
    /// Starts a one-member cluster and waits until it answers.
    pub fn start() -> Etcd {
        let cluster = Cluster::start(1, false);
        Etcd { port: cluster.members[0].client_port, cluster }
    }

    /// The client URL.
    pub fn url(&self) -> String {
        self.cluster.url(0)
    }

    /// Starts the member again on the same data and ports, after [`Etcd::stop`].
    pub fn resume(&mut self) {
        self.cluster.resume();
    }

    /// Stops the member (SIGKILL, by its PID): clients get refused connections.
    pub fn stop(&mut self) {
        self.cluster.stop();
    }

    /// Runs `etcdctl` against this member.
    pub fn ctl(&self, args: &[&str]) -> Output {
        self.cluster.ctl(args)
    }

    /// `etcdctl` that must succeed.
    pub fn must(&self, args: &[&str]) {
        self.cluster.must(args);
    }

    /// Writes `value` under `key`.
    pub fn put(&self, key: &str, value: &str) {
        self.cluster.put(key, value);
    }

    /// Deletes `key`.
    pub fn delete(&self, key: &str) {
        self.cluster.delete(key);
    }
}
