//! Agent start → every one of 1,000 pods planned and created, on a runtime that answers at
//! once (the in-memory fake), so the figure is the agent's own work: listing and reading the
//! files, decoding, defaults, validation, hashing, merging, and one worker per pod planning
//! and issuing its calls, with every pod going through the built-in policy. Runs twice, each in
//! a process of its own: with a cold compile cache (first start on a node) and a warm one
//! (every start after). Prints the time and the process's peak RSS.
//!
//! `cargo bench -p staticlet --bench plan_1000`

#[allow(dead_code)]
#[path = "common/report.rs"]
mod report;

// Each benchmark uses some of what it reads.
#[allow(dead_code)]
#[path = "common/process.rs"]
mod process;

use std::sync::Arc;
use std::time::{Duration, Instant};

use staticlet::config::Config;
use staticlet_runtime::{FakeRuntime, Runtime};
use tokio_util::sync::CancellationToken;

const PODS: usize = 1000;

fn manifest(i: usize) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: pod-{i}\n  namespace: bench\n  labels:\n    app: pod-{i}\n    tier: edge\nspec:\n  volumes:\n  - name: data\n    emptyDir: {{}}\n  containers:\n  - name: app\n    image: registry.example/app:1.{i}\n    command: [/app, --port, '8080']\n    env:\n    - name: MODE\n      value: production\n    ports:\n    - name: http\n      containerPort: 8080\n    volumeMounts:\n    - name: data\n      mountPath: /data\n    readinessProbe:\n      httpGet:\n        path: /healthz\n        port: http\n  - name: sidecar\n    image: registry.example/sidecar:2\n    args: [--upstream, 'http://127.0.0.1:8080']\n"
    )
}

/// The manifests and the agent's state on tmpfs when there is one: creating a few thousand
/// directories on a VM's ext4 costs anywhere from 0.3 to 1.5 s depending on what was deleted in
/// the last minutes (the inode allocator skips recently freed inodes), which would drown the
/// agent's own work this bench is about.
fn state_dir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    let dir = if shm.is_dir() { tempfile::tempdir_in(shm) } else { tempfile::tempdir() }.unwrap();
    println!("plan_1000: manifests and state under {}", dir.path().display());
    dir
}

fn main() {
    match std::env::var_os(CHILD_CACHE) {
        Some(cache) => measure(cache.into()),
        None => {
            // Each case in a process of its own, so that one's peak RSS does not hide the other's.
            let cache = tempfile::tempdir().unwrap();
            let results = tempfile::tempdir().unwrap();
            let mut figures = Vec::new();
            for case in ["cold", "warm"] {
                let result = results.path().join(case);
                let status = std::process::Command::new(std::env::current_exe().unwrap())
                    .env(CHILD_CACHE, cache.path())
                    .env(CHILD_CASE, case)
                    .env(CHILD_RESULT, &result)
                    .status()
                    .unwrap();
                assert!(status.success(), "the {case} run failed");
                let text = std::fs::read_to_string(&result).unwrap();
                let (ms, mib) = text.trim().split_once(' ').unwrap();
                figures.push((ms.parse::<f64>().unwrap(), mib.parse::<f64>().unwrap()));
            }
            let [(cold_ms, cold_mib), (warm_ms, warm_mib)] = figures[..] else { unreachable!("two cases") };
            report::row(
                &format!(
                    "{PODS} manifests: agent start → every pod admitted by the built-in policy and planned (instant in-process fake runtime; manifests and state on tmpfs)"
                ),
                &format!(
                    "warm compile cache **{warm_ms:.0} ms**, peak RSS **{warm_mib:.1} MiB**; empty cache (first start on a node: the policy comes precompiled) {cold_ms:.0} ms, peak RSS {cold_mib:.1} MiB (one run each)"
                ),
                "< 1 s, peak RSS < 40 MiB",
                &report::command("staticlet", "plan_1000"),
            );
        }
    }
}

/// Set in the child processes: the compile cache the cold run fills and the warm run reuses.
const CHILD_CACHE: &str = "PLAN_1000_CACHE";
/// Set in the child processes: `cold` or `warm`, for the printout.
const CHILD_CASE: &str = "PLAN_1000_CASE";
/// Set in the child processes: the file each writes its figures to (milliseconds, then peak
/// RSS in MiB), for the parent's summary line.
const CHILD_RESULT: &str = "PLAN_1000_RESULT";

fn measure(cache: std::path::PathBuf) {
    let case = std::env::var(CHILD_CASE).unwrap();
    let dir = state_dir();
    let manifests = dir.path().join("manifests");
    std::fs::create_dir(&manifests).unwrap();
    let mut images = vec!["registry.example/sidecar:2".to_owned()];
    for i in 0..PODS {
        std::fs::write(manifests.join(format!("pod-{i}.yaml")), manifest(i)).unwrap();
        images.push(format!("registry.example/app:1.{i}"));
    }
    let fake = Arc::new(FakeRuntime::with_images(images.iter().map(String::as_str)));
    let config = Config {
        static_pod_path: manifests,
        file_check_frequency: Duration::from_secs(20),
        node_name: "bench".into(),
        pod_infra_container_image: "pause".into(),
        credential_providers: None,
        root_dir: dir.path().join("root"),
        docker_endpoint: String::new(),
        cri_socket: std::path::PathBuf::new(),
        node_ip: "127.0.0.1".into(),
        api_socket: dir.path().join("staticlet.sock"),
        manifest_url: None,
        read_only_address: None,
        healthz_address: None,
        kubelet_server: None,
        // The agent as shipped: every pod goes through the built-in policy.
        validators: vec![staticlet::config::plugins::static_pod_policy()],
        source_plugins: vec![],
        default_runtime_class: "fake".into(),
        runtime_classes: [("fake".to_owned(), "fake".to_owned())].into(),
        runtime_adapters: vec![],
        credential_plugins: vec![],
        kubeconfig: None,
        register_node: false,
        ignored_keys: vec![],
    };
    let engine = staticlet_plugin::PluginEngine::new("bench-node", Some(cache)).unwrap();
    let credential = staticlet::api::credential::Credential::load_or_create(&dir.path().join("api-token")).unwrap();
    let rss_before = process::status_kib("self", "VmHWM");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let started = Instant::now();
    let elapsed = runtime.block_on(async {
        let shutdown = CancellationToken::new();
        let agent = tokio::spawn({
            let runtime: Arc<dyn Runtime> = fake.clone();
            let shutdown = shutdown.clone();
            let runtimes = staticlet::runtimes::Runtimes::single("fake", runtime);
            async move { staticlet::daemon::run(&config, None, runtimes, vec![], engine, None, credential, shutdown).await }
        });
        while fake.running_container_count() < 2 * PODS {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let elapsed = started.elapsed();
        shutdown.cancel();
        agent.await.unwrap();
        elapsed
    });
    assert_eq!(fake.sandbox_count(), PODS);
    println!(
        "plan_1000 ({case} compile cache): {PODS} manifests, agent start -> every pod planned and created: {:.0} ms",
        elapsed.as_secs_f64() * 1000.0
    );
    let peak_mib = process::status_kib("self", "VmHWM") as f64 / 1024.0;
    println!(
        "plan_1000 ({case} compile cache): peak RSS {peak_mib:.1} MiB (before the agent started: {:.1} MiB)",
        rss_before as f64 / 1024.0
    );
    if let Some(result) = std::env::var_os(CHILD_RESULT) {
        std::fs::write(result, format!("{} {peak_mib}", elapsed.as_secs_f64() * 1000.0)).unwrap();
    }
}
