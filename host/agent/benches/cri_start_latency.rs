//! File written → the pod's container running on containerd through the CRI runtime, p50 and
//! p99 over 20 pods, side by side in the same run with the floor: a minimal client making the
//! bare CRI calls for the same pod (RunPodSandbox, ImageStatus, CreateContainer,
//! StartContainer, in the order the agent makes them) with the configs the agent's own code
//! builds, on the same containerd over one warm connection. Both are timed to containerd's own
//! record of when the container started (`ContainerStatus.started_at`), take turns pod by pod
//! (rotating, after one warm-up round) and keep their pods until the end. The start is then
//! broken down by stage from the agent's debug log and containerd's timestamps (see
//! `common/breakdown.rs`; the CRI has no time for a sandbox's start, only its creation).
//!
//! `cargo bench -p staticlet --bench cri_start_latency` (needs containerd and the CNI plugins;
//! the benchmark runs a containerd of its own, as the tests do).

#[allow(dead_code)]
#[path = "../../../tests/e2e/support/mod.rs"]
mod support;

#[allow(dead_code)]
mod common;

use std::time::{Duration, SystemTime};

use common::breakdown::{self, AgentLog, Start};
use common::{PODS, report};
use staticlet_cri::CriRuntime;
use staticlet_runtime::{ContainerState, LabelFilter, Runtime};
use support::Agent;
use support::containerd::containerd;
use support::images::BUSYBOX;

const BENCH: &str = "cri_start_latency";
/// How long any one container may take to start before the benchmark gives up.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Who starts the pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Staticlet,
    Minimal,
}

/// Marks containerd's milestones of pod `pod` (its name) in `start`: the sandbox's creation
/// and the running container's creation and start. Returns the sandbox's and the container's
/// IDs.
async fn milestones(cri: &CriRuntime, start: &mut Start, pod: &str) -> [String; 2] {
    let listed = cri.list_containers(&LabelFilter::new("io.kubernetes.pod.name", pod)).await.unwrap();
    let container = listed.into_iter().find(|c| c.state == ContainerState::Running).expect("the pod's container runs");
    let status = cri.container_status(&container.id).await.unwrap();
    let sandbox = cri.pod_sandbox_status(&container.pod_sandbox_id).await.unwrap();
    start.mark(breakdown::SANDBOX_CREATED, sandbox.sandbox.created_at);
    start.mark(breakdown::CREATED, status.container.created_at);
    start.mark(breakdown::STARTED, status.started_at.expect("a running container has started"));
    [container.pod_sandbox_id, container.id]
}

/// Staticlet: the manifest written, timed to the container's start; then its way through the
/// agent, from the agent's log (which also says when to look, without polling containerd).
async fn staticlet(agent: &Agent, log: &mut AgentLog, cri: &CriRuntime, i: usize) -> Start {
    let name = format!("lat-{i}");
    let pod = agent.pod(&name);
    let t0 = SystemTime::now();
    agent.write(&format!("{name}.yaml"), &common::manifest(&name, BUSYBOX));
    log.wait_for(t0, "container started", ("pod", &format!("default/{pod}")), START_TIMEOUT).await;
    let mut start = Start::new(t0);
    let [sandbox, container] = milestones(cri, &mut start, &pod).await;
    log.pipeline(&mut start, &pod, &[&sandbox, &container]);
    start
}

/// The floor: the bare CRI calls for the pod, with the agent's configs.
async fn minimal(cri: &CriRuntime, node: &str, root: &std::path::Path, i: usize) -> Start {
    let (pod, sandbox, container) = common::pod_configs(&format!("floor-{i}"), BUSYBOX, node, "cri", root);
    // The connection is open and warm before the clock starts.
    cri.version().await.expect("containerd answers");
    let t0 = SystemTime::now();
    let mut start = Start::new(t0);
    start.mark(breakdown::SANDBOX_CALLED, t0);
    let sandbox_id = start.timed("RunPodSandbox", cri.run_pod_sandbox(&sandbox)).await.expect("the sandbox runs");
    start.mark(breakdown::SANDBOX_RETURNED, SystemTime::now());
    start.timed("ImageStatus", cri.image_status(BUSYBOX)).await.unwrap().expect("the test image is present");
    start.mark(breakdown::CREATE_CALLED, SystemTime::now());
    let id = start.timed("CreateContainer", cri.create_container(&sandbox_id, &container, &sandbox)).await.expect("created");
    let now = SystemTime::now();
    start.mark(breakdown::CREATE_RETURNED, now);
    start.mark(breakdown::START_CALLED, now);
    start.timed("StartContainer", cri.start_container(&id)).await.expect("started");
    milestones(cri, &mut start, pod.name()).await;
    start
}

/// Whether this machine has what the benchmark's containerd needs, and if not, what is missing.
fn missing() -> Option<String> {
    let runs = |tool: &str| std::process::Command::new(tool).arg("--version").output().is_ok_and(|o| o.status.success());
    if !runs("containerd") || !runs("ctr") {
        return Some("containerd is not installed (apt install containerd)".to_owned());
    }
    let cni = std::path::Path::new("/usr/lib/cni");
    (!cni.join("bridge").exists() || !cni.join("host-local").exists())
        .then(|| "the CNI plugins are not in /usr/lib/cni (apt install containernetworking-plugins)".to_owned())
}

#[tokio::main]
async fn main() {
    if let Some(why) = missing() {
        return report::skip(BENCH, &why);
    }
    let containerd = containerd().await;
    let cri = CriRuntime::new(containerd.socket.clone());
    let mut agent = Agent::new("bench-cri");
    agent.uses_containerd(&containerd);
    agent.start_env(
        &["--container-runtime-endpoint", &containerd.endpoint(), "--log-format", "json"],
        &[("STATICLET_LOG", breakdown::AGENT_LOG_FILTER)],
    );
    // The agent's log, as `support::Agent` names it.
    let mut log = AgentLog::new(agent.file("agent.log"));
    let floor_node = support::node_name("bench-cri-floor");
    let floor_root = tempfile::tempdir().unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;

    let (mut ours, mut floor) = (Vec::new(), Vec::new());
    // Round 0 warms both sides up and is not counted.
    for i in 0..=PODS {
        for side in common::turn_order(&[Side::Staticlet, Side::Minimal], i) {
            match side {
                Side::Staticlet => {
                    let start = staticlet(&agent, &mut log, &cri, i).await;
                    if i > 0 {
                        ours.push(start);
                    }
                }
                Side::Minimal => {
                    let start = minimal(&cri, &floor_node, floor_root.path(), i).await;
                    if i > 0 {
                        floor.push(start);
                    }
                }
            }
        }
    }
    containerd.remove_node(&floor_node);

    let totals = |starts: &[Start]| starts.iter().map(Start::total).collect::<Vec<_>>();
    let (ours_ms, floor_ms) = (totals(&ours), totals(&floor));
    for (label, samples) in [("staticlet", &ours_ms), ("bare CRI calls", &floor_ms)] {
        println!("{BENCH}: {label:<16} {}   (n = {})", report::p50_p99_ms(samples), samples.len());
    }
    let ratio = report::percentile(&ours_ms, 50.0) / report::percentile(&floor_ms, 50.0);
    println!("{BENCH}: p50 ratio staticlet / bare CRI calls = {ratio:.2}");
    breakdown::print(BENCH, &[("staticlet", &ours), ("bare CRI calls", &floor)]);

    let version = cri.version().await.map(|v| v.runtime_version).unwrap_or_default();
    report::row(
        &format!(
            "file written → all containers running on containerd {version} through the CRI ({PODS} pods; timed to containerd's `ContainerStatus.started_at`)"
        ),
        &format!(
            "{}; **{ratio:.2}×** the bare CRI calls at p50, {:.2}× at p99",
            report::p50_p99_ms(&ours_ms),
            report::percentile(&ours_ms, 99.0) / report::percentile(&floor_ms, 99.0)
        ),
        "p50 ≤ 1.05×, p99 ≤ 1.3× the bare CRI calls",
        &report::command("staticlet", BENCH),
    );
    report::row(
        "same pod started by a minimal client with the bare CRI calls (RunPodSandbox, ImageStatus, CreateContainer, StartContainer) and the agent's configs, same containerd, same run",
        &report::p50_p99_ms(&floor_ms),
        "",
        "",
    );
}
