//! The agent's CPU use while idle with 100 pods running on a real Docker engine: the agent's
//! user + system time over a quiet window, as a percentage of one core.
//!
//! `cargo bench -p staticlet --bench idle_cpu` (needs a running Docker engine).

#[allow(dead_code)]
#[path = "../../../tests/e2e/support/mod.rs"]
mod support;

#[allow(dead_code)]
#[path = "common/report.rs"]
mod report;

#[allow(dead_code)]
#[path = "common/process.rs"]
mod process;

use std::time::{Duration, Instant};

use support::images::BUSYBOX;
use support::{Agent, docker, running, wait_for};

const PODS: usize = 100;
const WINDOW: Duration = Duration::from_secs(60);

/// Whether a Docker engine answers here, and if not, why.
fn engine_missing() -> Option<String> {
    let info = std::process::Command::new("docker").args(["info", "--format", "{{.ServerVersion}}"]).output();
    match info {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(format!("no Docker engine answers ({}); start dockerd", String::from_utf8_lossy(&out.stderr).trim())),
        Err(e) => Some(format!("the docker CLI does not run ({e}); install docker.io")),
    }
}

#[tokio::main]
async fn main() {
    if let Some(why) = engine_missing() {
        return report::skip("idle_cpu", &why);
    }
    let docker = docker().await;
    let mut agent = Agent::new("bench-idle");
    for i in 0..PODS {
        agent.write(
            &format!("idle-{i}.yaml"),
            &format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: idle-{i}\nspec:\n  containers:\n  - name: main\n    image: {BUSYBOX}\n    command: [sleep, '100000']\n"),
        );
    }
    let started = Instant::now();
    agent.start();
    wait_for(Duration::from_secs(600), "100 pods running", || async {
        (running(&docker, &agent.node, "k8s_main_").await.len() == PODS).then_some(())
    })
    .await;
    println!("idle_cpu: {PODS} pods running {:.1} s after agent start", started.elapsed().as_secs_f64());
    // Let the last syncs settle before measuring.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let pid = agent.pid();
    let before = process::cpu_ticks(pid);
    tokio::time::sleep(WINDOW).await;
    let used = (process::cpu_ticks(pid) - before) as f64 / process::ticks_per_second();
    let percent = 100.0 * used / WINDOW.as_secs_f64();
    println!("idle_cpu: agent CPU over {}s idle with {PODS} pods: {percent:.3}% of one core", WINDOW.as_secs());
    report::row(
        &format!("agent CPU, idle, {PODS} pods running"),
        &format!("**{percent:.3}%** ({PODS} pods running, {} s window)", WINDOW.as_secs()),
        "< 0.5% of one core",
        &report::command("staticlet", "idle_cpu"),
    );
}
