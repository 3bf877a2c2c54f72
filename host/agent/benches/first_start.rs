//! A fresh node's first start: the agent from an empty `--root-dir` with one pod in its
//! manifest directory, on a real Docker engine. How long from the process starting to the pod
//! admitted (the built-in policy's code comes with the binary: nothing is compiled), the peak
//! RSS on the way to the pod running, and the RSS once settled. Then a user plugin's first
//! compile, the Python example validator (`examples/plugins/allowed-registries`, built with
//! componentize-py), with the RSS at its peak and after the compile gave its memory back.
//!
//! `cargo bench -p staticlet --bench first_start` (needs a running Docker engine; the plugin
//! half needs componentize-py).

#[allow(dead_code)]
#[path = "../../../tests/e2e/support/mod.rs"]
mod support;

#[allow(dead_code)]
#[path = "common/report.rs"]
mod report;

// Each benchmark uses some of what it reads.
#[allow(dead_code)]
#[path = "common/process.rs"]
mod process;

use std::process::Command;
use std::time::{Duration, Instant};

use support::images::BUSYBOX;
use support::{Agent, docker, running, wait_for};

const RUNS: usize = 5;
const SETTLE: Duration = Duration::from_secs(10);

/// A `kB` field of the agent's `/proc/<pid>/status` in MiB.
fn mib(pid: u32, field: &str) -> f64 {
    process::status_kib(&pid.to_string(), field) as f64 / 1024.0
}

/// Polls the agent's log until a line holds every one of `words`; the time it took.
fn until_logged(agent: &Agent, started: Instant, words: &[&str]) -> Duration {
    let deadline = started + Duration::from_secs(300);
    loop {
        if agent.log().lines().any(|l| words.iter().all(|w| l.contains(w))) {
            return started.elapsed();
        }
        assert!(Instant::now() < deadline, "the agent never logged {words:?}:\n{}", agent.log());
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[tokio::main]
async fn main() {
    if Command::new("docker").args(["info"]).output().map_or(true, |o| !o.status.success()) {
        return report::skip("first_start", "no Docker engine answers; start dockerd");
    }
    let docker = docker().await;
    let (mut admitted, mut peaks, mut settled) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..RUNS {
        let mut agent = Agent::new(&format!("bench-first-{run}"));
        agent.write(
            "first.yaml",
            &format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: first\nspec:\n  containers:\n  - name: main\n    image: {BUSYBOX}\n    imagePullPolicy: Never\n    command: [sleep, '100000']\n"),
        );
        let started = Instant::now();
        agent.start();
        admitted.push(until_logged(&agent, started, &["admitted"]).as_secs_f64() * 1000.0);
        assert!(agent.log().contains("origin=precompiled"), "the built-in policy was compiled:\n{}", agent.log());
        wait_for(Duration::from_secs(120), "the pod to run", || async {
            (!running(&docker, &agent.node, "k8s_main_").await.is_empty()).then_some(())
        })
        .await;
        tokio::time::sleep(SETTLE).await;
        peaks.push(mib(agent.pid(), "VmHWM"));
        settled.push(mib(agent.pid(), "VmRSS"));
        println!(
            "first_start: run {run}: admitted {:.1} ms after start, peak RSS {:.1} MiB, settled {:.1} MiB",
            admitted[run], peaks[run], settled[run]
        );
    }
    let command = report::command("staticlet", "first_start");
    report::row(
        "first start, empty --root-dir: process start → pod admitted",
        &format!("**{:.0} ms** (median of {RUNS}; built-in policy precompiled)", report::percentile(&admitted, 50.0)),
        "tens of ms",
        &command,
    );
    report::row(
        "first start, one pod: peak RSS / settled RSS",
        &format!(
            "**{:.1} MiB** / **{:.1} MiB** (medians of {RUNS}, {} s after the pod runs)",
            report::percentile(&peaks, 50.0),
            report::percentile(&settled, 50.0),
            SETTLE.as_secs()
        ),
        "< 60 MiB / < 40 MiB",
        &command,
    );
    python_validator_cold_load(&command);
}

/// The Python example validator loaded with a cold code cache: the compile's peak, and the
/// RSS once it is over.
fn python_validator_cold_load(command: &str) {
    let dir = tempfile::tempdir().unwrap();
    let wasm = match support::build_example_validator(support::ExampleLanguage::Python, dir.path()) {
        Ok(wasm) => wasm,
        Err(why) if why.starts_with("componentize-py does not run") => return report::skip("first_start (Python validator)", &why),
        Err(why) => panic!("{why}"),
    };
    let config = dir.path().join("staticlet.yaml");
    std::fs::write(
        &config,
        format!(
            "plugins:\n- name: allowed-registries\n  kind: admission-validator\n  path: {}\n  config: {{registries: [registry.internal:5000]}}\n",
            wasm.display()
        ),
    )
    .unwrap();
    let mut agent = Agent::new("bench-first-python");
    let started = Instant::now();
    agent.start_with(&["--config", config.to_str().unwrap()]);
    let loaded = until_logged(&agent, started, &["plugin loaded", "allowed-registries", "origin=compiled"]);
    std::thread::sleep(SETTLE);
    let (peak, after) = (mib(agent.pid(), "VmHWM"), mib(agent.pid(), "VmRSS"));
    println!(
        "first_start: Python validator ({:.1} MiB of wasm) compiled in {:.1} s: peak RSS {peak:.1} MiB, {:.0} s later {after:.1} MiB",
        std::fs::metadata(&wasm).unwrap().len() as f64 / 1048576.0,
        loaded.as_secs_f64(),
        SETTLE.as_secs()
    );
    report::row(
        "a user plugin's first compile (the Python example validator): peak RSS → RSS after",
        &format!("**{peak:.0} MiB → {after:.0} MiB** ({:.1} s compile, cold cache)", loaded.as_secs_f64()),
        "memory given back after the compile",
        command,
    );
}
