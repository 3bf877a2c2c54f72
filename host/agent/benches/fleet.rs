//! A fleet of 20 nodes on one machine (issue 28): a real 3-member etcd cluster on TLS with
//! client certificates, 20 agents sharing the machine's Docker engine, each fed by the etcd
//! source over mutual TLS (its own prefix and the fleet's) and mirroring its pods to one API
//! server. It measures, from the moment the test began its put to the engine's `start` event of
//! each node's new container:
//!
//! - a put of a pod for every node (20 keys, one per node's prefix, in one transaction) →
//!   running on every node;
//! - one put changing the pod every node runs → updated on every node;
//! - the etcd leader killed: pods stopped (none), and the next put → every node;
//! - the whole cluster stopped, and every agent restarted meanwhile: pods stopped (none; the
//!   agents restore their checkpoints and adopt their containers);
//! - the cluster back: a put → every node;
//! - the API server down: pods stopped (none); every node's mirror pods back after;
//! - each agent's CPU (percent of a core) and RSS while idle, 40 pods running.
//!
//! Beside them, in the same run, the floor: a minimal client starting the same pods for every
//! node at once on the same engine, with the Engine API calls staticlet's Docker runtime makes
//! (the same requests, built by the runtime's own functions). On a small machine the engine
//! starting 20 pods at once takes longer than the fleet's target, whoever asks it.
//!
//! `cargo bench -p staticlet --bench fleet` (needs Docker, etcd and etcdctl; `FLEET_NODES`
//! changes the size).

#[allow(dead_code)]
#[path = "../../../tests/e2e/support/mod.rs"]
mod support;

#[allow(dead_code)]
mod common;

#[allow(dead_code)]
#[path = "common/process.rs"]
mod process;

use std::time::{Duration, Instant, SystemTime};

use common::report;
use support::fleet::{FLEET_POD, Fleet, OWN_POD, Running, Spread};
use support::images::{BUSYBOX, PAUSE};

/// How long the agents are left alone before their idle CPU is measured, and for how long.
const SETTLE: Duration = Duration::from_secs(10);
const IDLE_WINDOW: Duration = Duration::from_secs(30);

/// How many of `before`'s containers are not running any more (stopped, or replaced).
fn stopped(before: &Running, after: &Running) -> usize {
    before.iter().filter(|(pod, id)| after.get(*pod) != Some(id)).count()
}

/// Whether `tool` is nowhere on the `PATH`.
fn missing(tool: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    !std::env::split_paths(&path).any(|dir| dir.join(tool).is_file())
}

fn summary(samples: &[f64]) -> String {
    let max = samples.iter().copied().fold(0.0, f64::max);
    format!(
        "p50 **{:.2} s**, p99 **{:.2} s**, all {} nodes {max:.2} s",
        report::percentile(samples, 50.0),
        report::percentile(samples, 99.0),
        samples.len()
    )
}

fn spread(what: &str, spread: &Spread) -> String {
    let runtime =
        if spread.to_runtime.is_empty() { String::new() } else { format!(" (its runtime called: {})", summary(&spread.to_runtime)) };
    println!("fleet: {what}: to running {:.2?}, to the runtime {:.2?}", spread.to_running, spread.to_runtime);
    format!("{}{runtime}", summary(&spread.to_running))
}

/// The floor: one minimal client starting the fleet's pod for `nodes` nodes at once, each with
/// the Engine API calls staticlet's Docker runtime makes for it, exactly as the runtime builds
/// them, on one warm connection; the seconds from the first call to each app container's start.
async fn floor(fleet: &Fleet, nodes: usize) -> Vec<f64> {
    let client = fleet.docker().clone();
    let node = support::node_name("fleetbench-floor");
    let root = tempfile::tempdir().unwrap();
    let configs: Vec<_> = (0..nodes)
        .map(|i| common::pod_configs_of(&support::fleet::pod(&format!("floor{i}"), 3600), "app", &node, "docker", root.path()))
        .collect();
    client.ping().await.expect("the engine answers");
    let began = SystemTime::now();
    let starts = configs.into_iter().map(|(pod, sandbox, container)| {
        let client = client.clone();
        async move {
            let (options, body) = staticlet_docker::sandbox_create_request(&sandbox, PAUSE.to_owned());
            client.inspect_image(PAUSE).await.expect("the pause image is present");
            let sandbox_id = client.create_container(Some(options), body).await.expect("the sandbox is created").id;
            client.start_container(&sandbox_id, None).await.expect("the sandbox starts");
            client.inspect_image(BUSYBOX).await.expect("the app image is present");
            let (options, body) =
                staticlet_docker::container_create_request(&sandbox_id, &container, &sandbox).expect("the request builds");
            let id = client.create_container(Some(options), body).await.expect("the container is created").id;
            client.start_container(&id, None).await.expect("the container starts");
            pod.name().to_owned()
        }
    });
    let pods = futures::future::join_all(starts).await;
    let mut took = Vec::new();
    for pod in pods {
        let started = support::wait_for(Duration::from_secs(60), "the floor's container start event", || async {
            fleet.starts().started(&pod, began)
        })
        .await;
        took.push(started.duration_since(began).unwrap_or_default().as_secs_f64());
    }
    let ids =
        std::process::Command::new("docker").args(["ps", "-aq", "--filter", &format!("label=io.staticlet.node={node}")]).output().unwrap();
    let ids: Vec<String> = String::from_utf8_lossy(&ids.stdout).split_whitespace().map(str::to_owned).collect();
    if !ids.is_empty() {
        std::process::Command::new("docker").args(["rm", "-f"]).args(&ids).output().unwrap();
    }
    took
}

#[tokio::main]
async fn main() {
    if ["docker", "etcd", "etcdctl", "kubectl"].iter().any(|t| missing(t)) {
        return report::skip(
            "fleet",
            "needs Docker, etcd, etcdctl and kubectl (apt install docker.io etcd-server etcd-client kubernetes-client)",
        );
    }
    let nodes: usize = std::env::var("FLEET_NODES").ok().and_then(|n| n.parse().ok()).unwrap_or(20);
    let started = Instant::now();
    let mut fleet = Fleet::start("fleetbench", nodes).await;

    let floor = floor(&fleet, nodes).await;
    println!("fleet: floor, {nodes} pods started at once by a minimal client: {floor:.2?}");
    let own = fleet.put_own_pods(3600).await;
    let own_row = spread("own pods, one transaction → running", &own);
    fleet.wait_agents_ready(&[OWN_POD]).await;
    let first = fleet.put_fleet_pod(3600).await;
    let first_row = spread("the fleet's pod, one put → running", &first);
    fleet.wait_agents_ready(&[OWN_POD, FLEET_POD]).await;
    let update = fleet.put_fleet_pod(3601).await;
    let update_row = spread("the fleet's pod changed, one put → updated", &update);
    fleet.wait_agents_ready(&[OWN_POD, FLEET_POD]).await;

    // The leader dies.
    let before = fleet.running();
    let leader = fleet.kill_leader();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut lost = stopped(&before, &fleet.running());
    let after_leader = fleet.put_fleet_pod(3602).await;
    let after_leader_row = spread(&format!("leader (member {leader}) killed, {lost} pods stopped; the next put → updated"), &after_leader);
    fleet.etcd.revive(leader);
    fleet.wait_agents_ready(&[OWN_POD, FLEET_POD]).await;

    // The whole cluster stops, and every agent restarts meanwhile.
    let before = fleet.running();
    fleet.etcd.stop();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let outage = stopped(&before, &fleet.running());
    fleet.restart_agents();
    fleet.wait_agents_ready(&[OWN_POD, FLEET_POD]).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let restarted = stopped(&before, &fleet.running());
    println!("fleet: etcd down, {outage} pods stopped; every agent restarted meanwhile, {restarted} pods stopped");
    lost += outage + restarted;

    // The cluster is back.
    fleet.etcd.resume();
    let after_outage = fleet.put_fleet_pod(3603).await;
    let after_outage_row = spread("etcd back, the next put → updated", &after_outage);
    fleet.wait_agents_ready(&[OWN_POD, FLEET_POD]).await;

    // Every node's pods on one API server; its outage stops nothing.
    let table = fleet.wait_mirrored(&[OWN_POD, FLEET_POD]).await;
    let mirrored = table.lines().skip(1).count();
    let before = fleet.running();
    fleet.api.stop().await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let api_outage = stopped(&before, &fleet.running());
    fleet.api.resume().await;
    fleet.wait_mirrored(&[OWN_POD, FLEET_POD]).await;
    println!("fleet: {mirrored} mirror pods in kubectl get pods -A -o wide; API server down 10 s, {api_outage} pods stopped");
    lost += api_outage;

    // Idle: every node's pods running, watches open, nothing changing.
    tokio::time::sleep(SETTLE).await;
    let pids: Vec<u32> = fleet.agents.iter().map(support::Agent::pid).collect();
    let before: Vec<u64> = pids.iter().map(|pid| process::cpu_ticks(*pid)).collect();
    tokio::time::sleep(IDLE_WINDOW).await;
    let cpu: Vec<f64> = pids
        .iter()
        .zip(&before)
        .map(|(pid, before)| (process::cpu_ticks(*pid) - before) as f64 / process::ticks_per_second() / IDLE_WINDOW.as_secs_f64() * 100.0)
        .collect();
    let rss: Vec<f64> = pids.iter().map(|pid| process::status_kib(&pid.to_string(), "VmRSS") as f64 / 1024.0).collect();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let max = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    println!("fleet: idle CPU per agent {cpu:.3?} %, RSS {rss:.1?} MiB; the whole run took {:.0?}", started.elapsed());

    let command = report::command("staticlet", "fleet");
    let setting = format!(
        "{nodes} agents on one Docker engine, a 3-member etcd cluster on TLS with client certificates, the etcd source's watch over mutual TLS"
    );
    report::row(&format!("Fleet: one put → a new pod running on every node ({setting})"), &first_row, "p99 under 2 s", &command);
    report::row(
        "Fleet: a put for every node (20 keys, one per node's prefix, one transaction) → running on all",
        &own_row,
        "p99 under 2 s",
        "",
    );
    report::row(
        "Fleet floor: the same pods started at once by a minimal client on the same engine (the Engine API calls staticlet's Docker runtime makes)",
        &summary(&floor),
        "",
        "",
    );
    report::row(
        "Fleet: one put changing every node's pod → updated on all (old container stopped, new one running)",
        &update_row,
        "p99 under 2 s",
        "",
    );
    report::row(
        "Fleet: faults (etcd leader killed; whole cluster stopped with every agent restarted meanwhile; API server down 10 s)",
        &format!(
            "**{lost} pods stopped**; after the leader's death a put → all {after_leader_row}; after the cluster came back {after_outage_row}; {mirrored} mirror pods listed by kubectl"
        ),
        "0 pods stopped",
        "",
    );
    report::row(
        "Fleet: each agent while idle (2 pods, 2 etcd watches, mirror pods)",
        &format!(
            "CPU mean **{:.3} %** of a core (max {:.3} %), RSS mean **{:.1} MiB** (max {:.1} MiB)",
            mean(&cpu),
            max(&cpu),
            mean(&rss),
            max(&rss)
        ),
        "",
        "",
    );
    drop(fleet);
}
