//! File written → all of the pod's containers running, on a real Docker engine, p50 and p99
//! over 20 pods; side by side in the same run with `docker run` of the same containers (a
//! sandbox, then the app container in its network namespace), the way a person would start
//! them by hand. Both are timed to Docker's own `start` event of the app container.
//!
//! `cargo bench -p staticlet --bench start_latency` (needs a running Docker engine).

#[allow(dead_code)]
#[path = "../../../tests/e2e/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::Docker;
use bollard::models::EventMessage;
use bollard::query_parameters::EventsOptions;
use futures::StreamExt;
use support::images::{BUSYBOX, PAUSE};
use support::{Agent, docker};

const PODS: usize = 20;

/// Docker's `start` events since `t0`, replayed from the engine's own log, so the lazily
/// opened stream misses nothing that happened before it was first polled.
fn start_events(docker: &Docker, t0: SystemTime) -> impl futures::Stream<Item = Result<EventMessage, bollard::errors::Error>> + Unpin {
    let filters = HashMap::from([("type".to_owned(), vec!["container".to_owned()]), ("event".to_owned(), vec!["start".to_owned()])]);
    let since = t0.duration_since(UNIX_EPOCH).unwrap().as_secs().saturating_sub(1).to_string();
    Box::pin(docker.events(Some(EventsOptions { since: Some(since), filters: Some(filters), ..Default::default() })))
}

/// Milliseconds from `t0` to the engine's `start` event of the container whose name starts with
/// `prefix`, by the engine's own timestamp.
async fn started(docker: &Docker, t0: SystemTime, prefix: &str) -> f64 {
    let mut events = start_events(docker, t0);
    while let Some(event) = events.next().await {
        let event = event.unwrap();
        let name = event.actor.and_then(|a| a.attributes).and_then(|a| a.get("name").cloned()).unwrap_or_default();
        if name.starts_with(prefix) {
            let at = UNIX_EPOCH + Duration::from_nanos(event.time_nano.unwrap() as u64);
            return at.duration_since(t0).unwrap_or_default().as_secs_f64() * 1000.0;
        }
    }
    panic!("the event stream ended");
}

fn manifest(name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  containers:\n  - name: main\n    image: {BUSYBOX}\n    command: [sleep, '100000']\n"
    )
}

fn report(label: &str, mut samples: Vec<f64>) -> f64 {
    let (p50, p99) = support::p50_p99(&mut samples);
    println!("start_latency: {label:<12} p50 {p50:7.1} ms   p99 {p99:7.1} ms   (n = {})", samples.len());
    p50
}

#[tokio::main]
async fn main() {
    let docker = docker().await;
    let mut agent = Agent::new("bench-start");
    agent.start();
    tokio::time::sleep(Duration::from_secs(1)).await;

    let mut staticlet = Vec::new();
    let mut baseline = Vec::new();
    for i in 0..PODS {
        // staticlet: write the file, wait for the app container's start.
        let name = format!("lat-{i}");
        let t0 = SystemTime::now();
        agent.write(&format!("{name}.yaml"), &manifest(&name));
        staticlet.push(started(&docker, t0, &format!("k8s_main_{}", agent.pod(&name))).await);

        // docker run: the same sandbox and container, by hand.
        let sandbox = format!("bench-sandbox-{i}-{}", std::process::id());
        let app = format!("bench-app-{i}-{}", std::process::id());
        let t0 = SystemTime::now();
        let run = |args: &[&str]| assert!(Command::new("docker").args(args).stdout(Stdio::null()).status().unwrap().success());
        run(&["run", "-d", "--name", &sandbox, "--ipc", "shareable", PAUSE]);
        let ns = format!("container:{sandbox}");
        run(&["run", "-d", "--name", &app, "--network", &ns, "--ipc", &ns, BUSYBOX, "sleep", "100000"]);
        baseline.push(started(&docker, t0, &app).await);
        run(&["rm", "-f", &app, &sandbox]);
    }
    let ours = report("staticlet", staticlet);
    let theirs = report("docker run", baseline);
    println!("start_latency: p50 ratio staticlet / docker run = {:.2}", ours / theirs);
}
