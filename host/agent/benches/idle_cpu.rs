//! The agent's CPU use while idle with 100 pods running on a real Docker engine: the agent's
//! user + system time over a quiet window, as a percentage of one core.
//!
//! `cargo bench -p staticlet --bench idle_cpu` (needs a running Docker engine).

#[allow(dead_code)]
#[path = "../../../tests/e2e/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use support::images::BUSYBOX;
use support::{Agent, docker, running, wait_for};

const PODS: usize = 100;
const WINDOW: Duration = Duration::from_secs(60);

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn ticks_per_second() -> f64 {
    let out = std::process::Command::new("getconf").arg("CLK_TCK").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

#[tokio::main]
async fn main() {
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
    let before = cpu_ticks(pid);
    tokio::time::sleep(WINDOW).await;
    let used = (cpu_ticks(pid) - before) as f64 / ticks_per_second();
    println!(
        "idle_cpu: agent CPU over {}s idle with {PODS} pods: {:.3}% of one core",
        WINDOW.as_secs(),
        100.0 * used / WINDOW.as_secs_f64()
    );
}
