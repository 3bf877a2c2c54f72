//! What the built-in validator adds to the agent's start, with a cold compile cache (the first
//! start, or the first after an upgrade) and a warm one: engine setup, compile or cache load,
//! linking, instantiation and `init`, measured as `staticlet run` does them.
//!
//! `cargo bench -p staticlet-plugin --bench plugin_start`

#[allow(dead_code)]
#[path = "../../agent/benches/common/report.rs"]
mod report;

use std::time::{Duration, Instant};

use staticlet_plugin::artifacts::{STATIC_POD_POLICY_WASM, static_pod_policy};
use staticlet_plugin::{Health, Plugin, PluginEngine};

const RUNS: usize = 7;

fn start(runtime: &tokio::runtime::Runtime, cache: &std::path::Path) -> Duration {
    let started = Instant::now();
    runtime.block_on(async {
        let engine = PluginEngine::new("bench-node", Some(cache.to_owned())).unwrap();
        let plugin = Plugin::load(&engine, static_pod_policy()).await;
        assert_eq!(plugin.info().health, Health::Ready);
    });
    started.elapsed()
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut cold = Vec::new();
    let mut warm = Vec::new();
    for _ in 0..RUNS {
        let dir = tempfile::tempdir().unwrap();
        cold.push(start(&runtime, dir.path()));
        warm.push(start(&runtime, dir.path()));
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!("plugin_start: built-in policy ({} KB component), median of {RUNS} starts", STATIC_POD_POLICY_WASM.len() / 1024);
    let (cold, warm) = (ms(median(cold)), ms(median(warm)));
    println!("plugin_start: cold compile cache {cold:.1} ms");
    println!("plugin_start: warm compile cache {warm:.1} ms");
    report::row(
        "agent start: loading the built-in policy",
        &format!("warm compile cache **{warm:.1} ms**; cold {cold:.0} ms (medians of {RUNS})"),
        "warm adds < 20 ms",
        &report::command("staticlet-plugin", "plugin_start"),
    );
}
