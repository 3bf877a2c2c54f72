//! File written → the pod's container running on Podman through the Podman runtime adapter,
//! p50 and p99 over 20 pods; side by side in the same run with `podman kube play` of the same
//! pod on the same Podman (its own service and storage, as the tests use). Both are timed to
//! Podman's own record of when the container started (`State.StartedAt`).
//!
//! `cargo bench -p staticlet --bench podman_start_latency` (needs Podman and Docker: the test
//! images are built the way the tests build them).

#[allow(dead_code)]
#[path = "../../../tests/e2e/support/mod.rs"]
mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use support::images::BUSYBOX;
use support::podman::{Podman, podman};
use support::{Agent, docker, wait_for};

const PODS: usize = 20;

fn report(label: &str, mut samples: Vec<f64>) -> f64 {
    let (p50, p99) = support::p50_p99(&mut samples);
    println!("podman_start_latency: {label:<16} p50 {p50:7.1} ms   p99 {p99:7.1} ms   (n = {})", samples.len());
    p50
}

fn manifest(name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  containers:\n  - name: main\n    image: {BUSYBOX}\n    command: [sleep, '100000']\n"
    )
}

/// Milliseconds from `t0` to the start of the running container whose name starts with
/// `prefix`, by Podman's own clock.
async fn started(podman: &Podman, t0: SystemTime, prefix: &str) -> f64 {
    let id = wait_for(Duration::from_secs(60), prefix, || async {
        let ids = podman.run(&["ps", "--filter", &format!("name=^{prefix}"), "--filter", "status=running", "--format", "{{.ID}}"]);
        ids.lines().next().map(str::to_owned)
    })
    .await;
    let nanos: u64 = podman.run(&["inspect", "--format", "{{.State.StartedAt.UnixNano}}", &id]).trim().parse().unwrap();
    let at = UNIX_EPOCH + Duration::from_nanos(nanos);
    at.duration_since(t0).unwrap_or_default().as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
    docker().await;
    let podman = podman().await;
    let mut agent = Agent::new("bench-podman");
    agent.uses_podman(&podman);
    std::fs::write(agent.file("config.yaml"), podman.agent_config()).unwrap();
    agent.start_with(&["--config", agent.file("config.yaml").to_str().unwrap()]);
    tokio::time::sleep(Duration::from_secs(1)).await;

    let plays = tempfile::tempdir().unwrap();
    let mut staticlet = Vec::new();
    let mut kube_play = Vec::new();
    for i in 0..PODS {
        let name = format!("lat-{i}");
        let t0 = SystemTime::now();
        agent.write(&format!("{name}.yaml"), &manifest(&name));
        staticlet.push(started(&podman, t0, &format!("k8s_main_{}", agent.pod(&name))).await);

        let played = format!("play-{i}-{}", std::process::id());
        let file = plays.path().join(format!("{played}.yaml"));
        std::fs::write(&file, manifest(&played)).unwrap();
        let t0 = SystemTime::now();
        podman.run(&["kube", "play", "--quiet", file.to_str().unwrap()]);
        kube_play.push(started(&podman, t0, &format!("{played}-main")).await);
        podman.run(&["kube", "down", file.to_str().unwrap()]);
    }
    let ours = report("staticlet", staticlet);
    let theirs = report("podman kube play", kube_play);
    println!("podman_start_latency: p50 ratio staticlet / podman kube play = {:.2}", ours / theirs);
}
