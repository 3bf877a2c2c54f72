//! File written → the pod's container running, on a real Docker engine, p50 and p99 over 20
//! pods, side by side in the same run with the floor: a minimal client making the Engine API
//! calls for the same pod over one warm connection (bollard), with the very requests
//! staticlet's Docker runtime sends (`staticlet_docker::sandbox_create_request` and
//! `container_create_request`, from the configs the agent's own code builds): the sandbox
//! image inspected, the pause container created and started, the app image inspected, the app
//! container created and started in the sandbox's namespaces (`container:<id>`). A third line
//! starts the same two containers with `docker run`, the way a person would by hand; its
//! process start-up is part of its time, so it is a reference, not the floor.
//!
//! All three are timed to Docker's own `start` event of the app container, take turns pod by
//! pod (in a rotating order, after one warm-up round), and keep their containers until the
//! end, so that drift and the engine's growing container count hit them alike. Then the
//! start is broken down by stage (see `common/breakdown.rs`) from the agent's debug log and
//! the engine's events, and the figures are printed as the Performance rows (docs/performance.md).
//!
//! `cargo bench -p staticlet --bench start_latency` (needs a running Docker engine).

#[allow(dead_code)]
#[path = "../../../tests/e2e/support/mod.rs"]
mod support;

#[allow(dead_code)]
mod common;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bollard::Docker;
use bollard::query_parameters::EventsOptions;
use common::breakdown::{self, AgentLog, Start};
use common::{PODS, report};
use futures::StreamExt;
use support::images::{BUSYBOX, PAUSE};
use support::{Agent, docker};

const BENCH: &str = "start_latency";
/// How long any one container may take to start before the benchmark gives up.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Who starts the pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Staticlet,
    Minimal,
    DockerRun,
}

/// One container event the engine reported.
#[derive(Debug, Clone)]
struct Seen {
    name: String,
    id: String,
    action: String,
    at: SystemTime,
}

/// The engine's container `create` and `start` events since the benchmark began, gathered by
/// a task of their own from one event stream, with the engine's own timestamps.
#[derive(Debug, Clone, Default)]
struct EngineEvents(Arc<Mutex<Vec<Seen>>>);

impl EngineEvents {
    /// Follows `docker`'s events from `since` on (replayed from the engine's log, so nothing
    /// that happens before the stream is first polled is missed).
    fn follow(docker: &Docker, since: SystemTime) -> EngineEvents {
        let events = EngineEvents::default();
        let filters = HashMap::from([
            ("type".to_owned(), vec!["container".to_owned()]),
            ("event".to_owned(), vec!["create".to_owned(), "start".to_owned()]),
        ]);
        let since = since.duration_since(UNIX_EPOCH).unwrap().as_secs().saturating_sub(1).to_string();
        let mut stream = docker.events(Some(EventsOptions { since: Some(since), filters: Some(filters), ..Default::default() }));
        let seen = events.0.clone();
        tokio::spawn(async move {
            while let Some(Ok(event)) = stream.next().await {
                let actor = event.actor.unwrap_or_default();
                let name = actor.attributes.and_then(|a| a.get("name").cloned()).unwrap_or_default();
                let at = UNIX_EPOCH + Duration::from_nanos(event.time_nano.unwrap_or_default() as u64);
                let action = event.action.unwrap_or_default();
                seen.lock().unwrap().push(Seen { name, id: actor.id.unwrap_or_default(), action, at });
            }
        });
        events
    }

    /// The event `action` of the container whose name starts with `prefix`, once seen.
    ///
    /// # Panics
    ///
    /// After [`START_TIMEOUT`].
    async fn wait(&self, prefix: &str, action: &str) -> Seen {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(seen) = self.0.lock().unwrap().iter().find(|s| s.action == action && s.name.starts_with(prefix)).cloned() {
                return seen;
            }
            assert!(Instant::now() < deadline, "no {action} event of {prefix}* within {START_TIMEOUT:?}");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Marks the engine's milestones of pod `pod` (its static pod name) in `start`, once its
    /// app container has started; returns the sandbox's and the container's IDs.
    async fn milestones(&self, start: &mut Start, pod: &str) -> [String; 2] {
        let started = self.wait(&format!("k8s_main_{pod}_"), "start").await;
        let created = self.wait(&format!("k8s_main_{pod}_"), "create").await;
        let sandbox_created = self.wait(&format!("k8s_POD_{pod}_"), "create").await;
        let sandbox_started = self.wait(&format!("k8s_POD_{pod}_"), "start").await;
        start.mark(breakdown::SANDBOX_CREATED, sandbox_created.at);
        start.mark(breakdown::SANDBOX_STARTED, sandbox_started.at);
        start.mark(breakdown::CREATED, created.at);
        start.mark(breakdown::STARTED, started.at);
        [sandbox_created.id, started.id]
    }
}

/// Staticlet: the manifest written (atomically, as config tools write), timed to the app
/// container's start; then its way through the agent, from the agent's log.
async fn staticlet(agent: &Agent, log: &mut AgentLog, events: &EngineEvents, i: usize) -> Start {
    let name = format!("lat-{i}");
    let pod = agent.pod(&name);
    let t0 = SystemTime::now();
    agent.write(&format!("{name}.yaml"), &common::manifest(&name, BUSYBOX));
    let mut start = Start::new(t0);
    let [sandbox, container] = events.milestones(&mut start, &pod).await;
    log.wait_for(t0, "container started", ("pod", &format!("default/{pod}")), START_TIMEOUT).await;
    log.pipeline(&mut start, &pod, &[&sandbox, &container]);
    start
}

/// The floor: the Engine API calls staticlet's Docker runtime makes for the pod, and no
/// others, each request exactly as the runtime builds it, over one warm connection.
async fn minimal(client: &Docker, node: &str, root: &std::path::Path, events: &EngineEvents, i: usize) -> Start {
    let (pod, sandbox, container) = common::pod_configs(&format!("floor-{i}"), BUSYBOX, node, "docker", root);
    let (sandbox_options, sandbox_body) = staticlet_docker::sandbox_create_request(&sandbox, PAUSE.to_owned());
    // The connection is open and warm before the clock starts.
    client.ping().await.expect("the engine answers");
    let t0 = SystemTime::now();
    let mut start = Start::new(t0);
    start.mark(breakdown::SANDBOX_CALLED, t0);
    let sandbox_id = start
        .timed("RunPodSandbox", async {
            // The runtime looks the sandbox image up first (it pulls it when absent).
            client.inspect_image(PAUSE).await.expect("the pause image is present");
            let id = client.create_container(Some(sandbox_options), sandbox_body).await.expect("the sandbox is created").id;
            client.start_container(&id, None).await.expect("the sandbox starts");
            id
        })
        .await;
    start.mark(breakdown::SANDBOX_RETURNED, SystemTime::now());
    start.timed("ImageStatus", client.inspect_image(BUSYBOX)).await.expect("the app image is present");
    let (options, body) = staticlet_docker::container_create_request(&sandbox_id, &container, &sandbox).expect("the request builds");
    start.mark(breakdown::CREATE_CALLED, SystemTime::now());
    let id = start.timed("CreateContainer", client.create_container(Some(options), body)).await.expect("the container is created").id;
    let now = SystemTime::now();
    start.mark(breakdown::CREATE_RETURNED, now);
    start.mark(breakdown::START_CALLED, now);
    start.timed("StartContainer", client.start_container(&id, None)).await.expect("the container starts");
    events.milestones(&mut start, pod.name()).await;
    start
}

/// The reference: two `docker run` processes, the app container in the sandbox's namespaces.
async fn docker_run(node: &str, events: &EngineEvents, i: usize) -> f64 {
    let sandbox = format!("bench-sandbox-{i}-{}", std::process::id());
    let app = format!("bench-app-{i}-{}", std::process::id());
    // Labelled as the floor's node, so the clean-up finds them.
    let label = format!("io.staticlet.node={node}");
    let t0 = SystemTime::now();
    let run = |args: &[&str]| assert!(Command::new("docker").args(args).stdout(Stdio::null()).status().unwrap().success());
    run(&["run", "-d", "--name", &sandbox, "--label", &label, "--ipc", "shareable", PAUSE]);
    let ns = format!("container:{sandbox}");
    run(&["run", "-d", "--name", &app, "--label", &label, "--network", &ns, "--ipc", &ns, BUSYBOX, "sleep", "100000"]);
    breakdown::ms_between(t0, events.wait(&app, "start").await.at)
}

/// Removes the floor's and the reference's containers when the benchmark ends, however it
/// ends (the agent's are removed by [`Agent`]).
struct Leftovers(String);

impl Drop for Leftovers {
    fn drop(&mut self) {
        let listed = Command::new("docker").args(["ps", "-aq", "--filter", &format!("label=io.staticlet.node={}", self.0)]).output();
        let ids: Vec<String> =
            listed.map(|o| String::from_utf8_lossy(&o.stdout).split_whitespace().map(str::to_owned).collect()).unwrap_or_default();
        if !ids.is_empty() {
            let _ = Command::new("docker").args(["rm", "-f"]).args(&ids).stdout(Stdio::null()).stderr(Stdio::null()).status();
        }
    }
}

/// A client of the local engine if one answers, else why not.
async fn engine() -> Result<Docker, String> {
    let docker = Docker::connect_with_local_defaults().map_err(|e| format!("no Docker endpoint: {e}"))?;
    match tokio::time::timeout(Duration::from_secs(5), docker.ping()).await {
        Ok(Ok(_)) => Ok(docker),
        Ok(Err(e)) => Err(format!("no Docker engine answers ({e}); start dockerd")),
        Err(_) => Err("the Docker engine does not answer within 5 s".to_owned()),
    }
}

#[tokio::main]
async fn main() {
    let client = match engine().await {
        Ok(client) => client,
        Err(why) => return report::skip(BENCH, &why),
    };
    let docker = docker().await;
    let events = EngineEvents::follow(&docker, SystemTime::now());
    let mut agent = Agent::new("bench-start");
    agent.start_env(&["--log-format", "json"], &[("STATICLET_LOG", breakdown::AGENT_LOG_FILTER)]);
    // The agent's log, as `support::Agent` names it.
    let mut log = AgentLog::new(agent.file("agent.log"));
    let floor_node = support::node_name("bench-start-floor");
    let _leftovers = Leftovers(floor_node.clone());
    let floor_root = tempfile::tempdir().unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;

    let (mut ours, mut floor, mut by_hand) = (Vec::new(), Vec::new(), Vec::new());
    // Round 0 warms every side up (first use of the images, the connection, the worker code)
    // and is not counted.
    for i in 0..=PODS {
        for side in common::turn_order(&[Side::Staticlet, Side::Minimal, Side::DockerRun], i) {
            match side {
                Side::Staticlet => {
                    let start = staticlet(&agent, &mut log, &events, i).await;
                    if i > 0 {
                        ours.push(start);
                    }
                }
                Side::Minimal => {
                    let start = minimal(&client, &floor_node, floor_root.path(), &events, i).await;
                    if i > 0 {
                        floor.push(start);
                    }
                }
                Side::DockerRun => {
                    let took = docker_run(&floor_node, &events, i).await;
                    if i > 0 {
                        by_hand.push(took);
                    }
                }
            }
        }
    }

    let totals = |starts: &[Start]| starts.iter().map(Start::total).collect::<Vec<_>>();
    let (ours_ms, floor_ms) = (totals(&ours), totals(&floor));
    let p50 = |samples: &[f64]| report::percentile(samples, 50.0);
    for (label, samples) in [("staticlet", &ours_ms), ("minimal client", &floor_ms), ("docker run", &by_hand)] {
        println!("{BENCH}: {label:<16} {}   (n = {})", report::p50_p99_ms(samples), samples.len());
    }
    let ratio = p50(&ours_ms) / p50(&floor_ms);
    let ratio_by_hand = p50(&ours_ms) / p50(&by_hand);
    println!("{BENCH}: p50 ratio staticlet / minimal Engine API client = {ratio:.2}");
    println!("{BENCH}: p50 ratio staticlet / docker run = {ratio_by_hand:.2}");
    breakdown::print(BENCH, &[("staticlet", &ours), ("minimal client", &floor)]);

    report::row(
        &format!("file written → all containers running, staticlet ({PODS} pods)"),
        &format!(
            "{}; **{ratio:.2}×** the minimal Engine API client at p50, {:.2}× at p99",
            report::p50_p99_ms(&ours_ms),
            report::percentile(&ours_ms, 99.0) / report::percentile(&floor_ms, 99.0)
        ),
        "p50 ≤ 1.05×, p99 ≤ 1.3× the minimal Engine API client",
        &report::command("staticlet", BENCH),
    );
    report::row(
        "same pod started by a minimal Engine API client with staticlet's requests (bollard, one warm connection: sandbox image inspected, pause container created and started, app image inspected, app container created and started in its namespaces), same engine, same run",
        &report::p50_p99_ms(&floor_ms),
        "",
        "",
    );
    report::row(
        "same pod started with two `docker run` processes (sandbox + app), same run",
        &format!("{}; staticlet **{ratio_by_hand:.2}×**", report::p50_p99_ms(&by_hand)),
        "",
        "",
    );
}
