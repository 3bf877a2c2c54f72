//! What the built-in validator adds to the agent's start: as shipped, its code precompiled into
//! the binary; and, for comparison, the same component as a user plugin with a cold compile
//! cache (its first start, or the first after an upgrade) and a warm one. Engine setup, code,
//! linking, instantiation and `init`, measured as `staticlet run` does them.
//!
//! `cargo bench -p staticlet-plugin --bench plugin_start`

#[allow(dead_code)]
#[path = "../../agent/benches/common/report.rs"]
mod report;

use std::time::{Duration, Instant};

use staticlet_plugin::artifacts::{STATIC_POD_POLICY_NAME, STATIC_POD_POLICY_WASM, static_pod_policy};
use staticlet_plugin::{Code, Health, Plugin, PluginEngine, PluginSpec};

const RUNS: usize = 7;

/// The built-in policy without the code the build compiled for it: as any plugin is loaded.
fn as_a_user_plugin() -> PluginSpec {
    let mut spec = static_pod_policy();
    spec.code = Code::Builtin { name: STATIC_POD_POLICY_NAME, wasm: STATIC_POD_POLICY_WASM, precompiled: None };
    spec
}

fn start(runtime: &tokio::runtime::Runtime, cache: &std::path::Path, spec: PluginSpec) -> Duration {
    let started = Instant::now();
    runtime.block_on(async {
        let engine = PluginEngine::new("bench-node", Some(cache.to_owned())).unwrap();
        let plugin = Plugin::load(&engine, spec).await;
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
    let (mut shipped, mut cold, mut warm) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..RUNS {
        let dir = tempfile::tempdir().unwrap();
        shipped.push(start(&runtime, dir.path(), static_pod_policy()));
        let dir = tempfile::tempdir().unwrap();
        cold.push(start(&runtime, dir.path(), as_a_user_plugin()));
        warm.push(start(&runtime, dir.path(), as_a_user_plugin()));
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!("plugin_start: built-in policy ({} KB component), median of {RUNS} starts", STATIC_POD_POLICY_WASM.len() / 1024);
    let (shipped, cold, warm) = (ms(median(shipped)), ms(median(cold)), ms(median(warm)));
    println!("plugin_start: precompiled, as shipped {shipped:.1} ms");
    println!("plugin_start: as a user plugin, cold compile cache {cold:.1} ms, warm {warm:.1} ms");
    report::row(
        "agent start: loading the built-in policy",
        &format!(
            "precompiled (every start, the first too) **{shipped:.1} ms**; as a user plugin: cold cache {cold:.0} ms, warm {warm:.1} ms (medians of {RUNS})"
        ),
        "adds < 20 ms",
        &report::command("staticlet-plugin", "plugin_start"),
    );
}
