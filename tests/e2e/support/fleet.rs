//! A fleet on one machine: a real etcd cluster on TLS with client certificates, and agents (each
//! its own node name, root dir, API socket and client certificate) sharing the machine's Docker
//! engine, every one fed by the etcd source over mutual TLS from two prefixes: its own
//! (`/staticlet/<node>/`) and the fleet's (`/staticlet/fleet/`, one key every node runs). With a
//! kubeconfig per node, every agent mirrors its pods to one API server (the double).
//!
//! The e2e test drives it at 3 nodes; the `fleet` benchmark at 20, and measures. Pod starts are
//! timed with the engine's own `start` events against the moment the test began its put.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::Docker;
use bollard::query_parameters::EventsOptions;
use futures::StreamExt;
use staticlet_plugin::artifacts::ETCD_SOURCE;

use super::apiserver::ApiServer;
use super::etcd::Cluster;
use super::images::BUSYBOX;
use super::{Agent, docker, wait_for, yaml};

/// How long every node may take to run a change before the fleet is declared stuck.
const CONVERGE: Duration = Duration::from_secs(120);

/// How often an agent polls each prefix when its watch is down: the watch, not this, is what
/// delivers changes quickly.
const INTERVAL: &str = "10s";

/// The pod every node runs from the fleet's prefix.
pub const FLEET_POD: &str = "web";
/// The pod each node runs from its own prefix.
pub const OWN_POD: &str = "own";

/// A running app container: the pod's static name and the container's ID.
pub type Running = BTreeMap<String, String>;

/// The etcd cluster, the agents and the API server.
pub struct Fleet {
    /// The etcd cluster, three members on TLS.
    pub etcd: Cluster,
    /// One agent per node.
    pub agents: Vec<Agent>,
    /// The API server the agents mirror their pods to.
    pub api: ApiServer,
    starts: Starts,
    docker: Docker,
    config_dir: tempfile::TempDir,
}

/// The engine's events the fleet is timed by, by container name and action (`create`, `start`),
/// with the engine's time: a sandbox created is the change reaching the node's agent, an app
/// container started is the pod running.
#[derive(Clone, Default)]
pub struct Starts(Arc<Mutex<HashMap<(String, String), SystemTime>>>);

impl Starts {
    fn follow(docker: &Docker) -> Starts {
        let starts = Starts::default();
        let filters = HashMap::from([
            ("type".to_owned(), vec!["container".to_owned()]),
            ("event".to_owned(), vec!["create".to_owned(), "start".to_owned()]),
        ]);
        let since = (SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() - 1).to_string();
        let mut stream = docker.events(Some(EventsOptions { since: Some(since), filters: Some(filters), ..Default::default() }));
        let seen = starts.0.clone();
        tokio::spawn(async move {
            while let Some(Ok(event)) = stream.next().await {
                let actor = event.actor.unwrap_or_default();
                let name = actor.attributes.and_then(|a| a.get("name").cloned()).unwrap_or_default();
                let at = UNIX_EPOCH + Duration::from_nanos(u64::try_from(event.time_nano.unwrap_or_default()).unwrap_or_default());
                seen.lock().unwrap().insert((name, event.action.unwrap_or_default()), at);
            }
        });
        starts
    }

    /// The latest `action` of a container whose name starts with `prefix`, after `since`.
    fn seen(&self, prefix: &str, action: &str, since: SystemTime) -> Option<SystemTime> {
        let seen = self.0.lock().unwrap();
        seen.iter().filter(|((name, a), at)| a == action && name.starts_with(prefix) && **at >= since).map(|(_, at)| *at).max()
    }

    /// When the app container of static pod `pod` started after `since`, if it has.
    pub fn started(&self, pod: &str, since: SystemTime) -> Option<SystemTime> {
        self.seen(&format!("k8s_app_{pod}_"), "start", since)
    }

    /// When the sandbox of static pod `pod` was created after `since`, if it was.
    pub fn sandbox_created(&self, pod: &str, since: SystemTime) -> Option<SystemTime> {
        self.seen(&format!("k8s_POD_{pod}_"), "create", since)
    }
}

/// How long each node took from a put, in seconds.
#[derive(Debug, Clone, Default)]
pub struct Spread {
    /// Until the engine created the node's sandbox for it (its `create` event: the agent's
    /// first call, as the engine finished it), when the change made a new pod.
    pub to_runtime: Vec<f64>,
    /// Until the node's new container ran.
    pub to_running: Vec<f64>,
}

/// A pod of one `app` container sleeping `version` seconds (the number tells versions apart),
/// on the host's network as the fleet's static pods (load balancers, agents, exporters) are; it
/// ends on SIGTERM at once, as a service does.
pub fn pod(name: &str, version: u32) -> String {
    yaml!(
        r#"
        apiVersion: v1
        kind: Pod
        metadata: {name: {name}, labels: {fleet: staticlet-test}}
        spec:
          hostNetwork: true
          terminationGracePeriodSeconds: 5
          containers:
          - name: app
            image: {BUSYBOX}
            command: [sh, -c, 'trap "exit 0" TERM; sleep {version} & wait']
        "#,
        name,
        BUSYBOX,
        version,
    )
}

impl Fleet {
    /// Starts a 3-member etcd cluster on TLS, the API server, and `nodes` agents, each with
    /// its own client certificate.
    pub async fn start(test: &str, nodes: usize) -> Fleet {
        let docker = docker().await;
        let starts = Starts::follow(&docker);
        let etcd = Cluster::start(3, true);
        let api = ApiServer::start().await;
        let config_dir = tempfile::tempdir().unwrap();
        let mut fleet = Fleet { etcd, agents: Vec::new(), api, starts, docker, config_dir };
        for i in 0..nodes {
            let mut agent = Agent::new(&format!("{test}{i}"));
            let config = fleet.agent_config(&agent.node);
            let kubeconfig = fleet.api.kubeconfig(&agent.node);
            agent.start_with(&Fleet::flags(&config, &kubeconfig));
            fleet.agents.push(agent);
        }
        fleet
    }

    /// An agent's flags: its config, and its kubeconfig, with which it registers its Node (as a
    /// kubelet does) and mirrors its pods.
    fn flags<'a>(config: &'a std::path::Path, kubeconfig: &'a std::path::Path) -> [&'a str; 5] {
        ["--config", config.to_str().unwrap(), "--kubeconfig", kubeconfig.to_str().unwrap(), "--register-node"]
    }

    /// The agent config of `node`: the etcd source on its own prefix and on the fleet's, each
    /// endpoint granted with the cluster's CA and the node's client certificate.
    fn agent_config(&self, node: &str) -> PathBuf {
        let client = self.etcd.client(node);
        let ca = self.etcd.ca().unwrap();
        let endpoints = format!("[{}]", self.etcd.urls().join(", "));
        let grants: String = self
            .etcd
            .addresses()
            .iter()
            .map(|address| {
                format!(
                    "\n  - {{host: \"{address}\", caFile: {}, certFile: {}, keyFile: {}}}",
                    ca.display(),
                    client.cert.display(),
                    client.key.display()
                )
            })
            .collect();
        let source = |name: &str, prefix: &str| {
            format!(
                "- name: {name}\n  kind: manifest-source\n  path: {ETCD_SOURCE}\n  interval: {INTERVAL}\n  config: {{endpoints: {endpoints}, prefix: \"{prefix}\"}}\n  allowedHosts:{grants}\n"
            )
        };
        let text = format!("plugins:\n{}{}", source("etcd", "/staticlet/{node}/"), source("fleet", "/staticlet/fleet/"));
        let path = self.config_dir.path().join(format!("{node}.yaml"));
        std::fs::write(&path, text).unwrap();
        path
    }

    /// The nodes' names.
    pub fn nodes(&self) -> Vec<String> {
        self.agents.iter().map(|a| a.node.clone()).collect()
    }

    /// Puts each node's own pod at `version`, a key per node, in one transaction; each node's
    /// time from the moment it was sent.
    pub async fn put_own_pods(&self, version: u32) -> Spread {
        let puts: Vec<(String, String)> =
            self.nodes().iter().map(|node| (format!("/staticlet/{node}/{OWN_POD}.yaml"), pod(OWN_POD, version))).collect();
        let member = self.etcd.running().next().expect("a member runs");
        let began = SystemTime::now();
        self.etcd.put_all(member, &puts).await;
        self.wait_started(OWN_POD, began).await
    }

    /// Puts the fleet's pod at `version`, one put for every node; each node's time from the put.
    pub async fn put_fleet_pod(&self, version: u32) -> Spread {
        let began = SystemTime::now();
        self.etcd.put(&format!("/staticlet/fleet/{FLEET_POD}.yaml"), &pod(FLEET_POD, version));
        self.wait_started(FLEET_POD, began).await
    }

    async fn wait_started(&self, name: &str, began: SystemTime) -> Spread {
        let mut spread = Spread::default();
        for node in self.nodes() {
            let pod = format!("{name}-{node}");
            let started = wait_for(CONVERGE, &format!("{pod} to start after its put"), || async { self.starts.started(&pod, began) }).await;
            spread.to_running.push(started.duration_since(began).unwrap_or_default().as_secs_f64());
            if let Some(created) = self.starts.sandbox_created(&pod, began) {
                spread.to_runtime.push(created.duration_since(began).unwrap_or_default().as_secs_f64());
            }
        }
        spread
    }

    /// The engine's events since the fleet started.
    pub fn starts(&self) -> &Starts {
        &self.starts
    }

    /// The running app containers of the fleet's nodes, by static pod name.
    pub fn running(&self) -> Running {
        let mut running = Running::new();
        for node in self.nodes() {
            let out = Command::new("docker")
                .args(["ps", "--filter", &format!("label=io.staticlet.node={node}"), "--filter", "label=io.kubernetes.container.name=app"])
                .args(["--format", "{{.Label \"io.kubernetes.pod.name\"}} {{.ID}}"])
                .output()
                .unwrap();
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                if let Some((pod, id)) = line.split_once(' ') {
                    running.insert(pod.to_owned(), id.to_owned());
                }
            }
        }
        running
    }

    /// Kills the etcd member that leads and waits for the others to elect another; its index.
    pub fn kill_leader(&mut self) -> usize {
        let leader = self.etcd.leader();
        self.etcd.kill(leader);
        self.etcd.wait_healthy();
        leader
    }

    /// Restarts every agent (SIGTERM, then the same flags).
    pub fn restart_agents(&mut self) {
        for i in 0..self.agents.len() {
            let node = self.agents[i].node.clone();
            let config = self.config_dir.path().join(format!("{node}.yaml"));
            let kubeconfig = self.api.kubeconfig(&node);
            let agent = &mut self.agents[i];
            assert!(agent.stop_with("TERM").success(), "{node} stops cleanly");
            agent.start_with(&Fleet::flags(&config, &kubeconfig));
        }
    }

    /// Waits until every agent answers on its API socket with its pods reported.
    pub async fn wait_agents_ready(&self, pods: &[&str]) {
        for agent in &self.agents {
            agent.wait_reported_running(pods).await;
        }
    }

    /// `kubectl get pods -A -o wide` against the API server.
    pub fn kubectl_get_pods(&self) -> String {
        let kubeconfig = self.api.reader_kubeconfig();
        let out = Command::new("kubectl").arg("--kubeconfig").arg(&kubeconfig).args(["get", "pods", "-A", "-o", "wide"]).output().unwrap();
        assert!(out.status.success(), "kubectl get pods: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// Waits until the API server lists a mirror pod of each of `pods` for every node, and
    /// returns `kubectl`'s table.
    pub async fn wait_mirrored(&self, pods: &[&str]) -> String {
        let wanted: Vec<(String, String)> =
            self.nodes().iter().flat_map(|node| pods.iter().map(move |pod| (format!("{pod}-{node}"), node.clone()))).collect();
        wait_for(CONVERGE, "every node's pods mirrored", || async {
            let mirrored = self.nodes().iter().flat_map(|node| self.api.pods(node)).collect::<Vec<_>>();
            let all = wanted.iter().all(|(name, node)| {
                mirrored.iter().any(|p| p["metadata"]["name"] == name.as_str() && p["spec"]["nodeName"] == node.as_str())
            });
            all.then_some(())
        })
        .await;
        self.kubectl_get_pods()
    }

    /// The engine, for callers that inspect it.
    pub fn docker(&self) -> &Docker {
        &self.docker
    }
}
