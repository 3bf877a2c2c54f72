//! Validator latency per pod: the built-in static pod policy as a WebAssembly component, called
//! through the plugin host on a warm instance, against the same rules compiled natively (the
//! JSON decode included on both sides, since the component receives JSON too).
//!
//! `cargo bench -p staticlet-plugin --bench validator_latency`

#[allow(dead_code)]
#[path = "../../agent/benches/common/report.rs"]
mod report;

use std::time::{Duration, Instant};

use staticlet_plugin::artifacts::static_pod_policy;
use staticlet_plugin::{Plugin, PluginEngine, PodContext};

const CALLS: usize = 20_000;
const WARMUP: usize = 2_000;

/// A typical static pod, about 2 KB of JSON once defaulted: two containers with env, ports,
/// probes, resources and mounts, and hostPath/emptyDir volumes.
fn typical_pod() -> String {
    let container = |name: &str, port: u16| {
        serde_json::json!({
            "name": name, "image": format!("registry.internal:5000/{name}:1.4.2"),
            "command": ["/bin/server"], "args": ["--listen", format!(":{port}"), "--log-level", "info"],
            "env": [{"name": "MODE", "value": "edge"}, {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
            "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "500m", "memory": "128Mi"}},
            "livenessProbe": {"httpGet": {"path": "/healthz", "port": port, "scheme": "HTTP"}, "periodSeconds": 10, "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3},
            "readinessProbe": {"tcpSocket": {"port": port}, "periodSeconds": 5, "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3},
            "volumeMounts": [{"name": "data", "mountPath": "/data"}, {"name": "scratch", "mountPath": "/tmp"}],
            "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File", "imagePullPolicy": "IfNotPresent"
        })
    };
    serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "edge-gateway-node-1", "namespace": "kube-system", "uid": "6c1f0f3e5d9a4b7c8e2f1a0b3c4d5e6f",
            "labels": {"app": "edge-gateway", "tier": "node"},
            "annotations": {"kubernetes.io/config.source": "file", "kubernetes.io/config.hash": "6c1f0f3e5d9a4b7c8e2f1a0b3c4d5e6f"}},
        "spec": {
            "nodeName": "node-1", "restartPolicy": "Always", "dnsPolicy": "ClusterFirst", "priority": 2000001000,
            "priorityClassName": "system-node-critical", "terminationGracePeriodSeconds": 30, "schedulerName": "default-scheduler",
            "enableServiceLinks": true, "securityContext": {}, "tolerations": [{"operator": "Exists", "effect": "NoExecute"}],
            "containers": [container("gateway", 8080), container("metrics", 9100)],
            "volumes": [{"name": "data", "hostPath": {"path": "/var/lib/edge-gateway", "type": "DirectoryOrCreate"}}, {"name": "scratch", "emptyDir": {}}]
        }
    })
    .to_string()
}

fn percentiles(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    (samples[samples.len() / 2], samples[samples.len() * 99 / 100])
}

fn main() {
    let pod = typical_pod();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let wasm = runtime.block_on(async {
        let engine = PluginEngine::new("bench-node", None).unwrap();
        let plugin = Plugin::load(&engine, static_pod_policy()).await;
        let ctx =
            PodContext { node_name: "node-1".into(), source: "file".into(), source_uri: "/etc/kubernetes/manifests/edge.yaml".into() };
        for _ in 0..WARMUP {
            assert!(plugin.validate(&ctx, &pod).await.unwrap().violations.is_empty());
        }
        let mut samples = Vec::with_capacity(CALLS);
        for _ in 0..CALLS {
            let started = Instant::now();
            let verdict = plugin.validate(&ctx, &pod).await.unwrap();
            samples.push(started.elapsed());
            std::hint::black_box(verdict);
        }
        samples
    });
    let mut native = Vec::with_capacity(CALLS);
    for i in 0..WARMUP + CALLS {
        let started = Instant::now();
        let decoded: k8s_openapi::api::core::v1::Pod = serde_json::from_str(std::hint::black_box(&pod)).unwrap();
        let violations = static_pod_rules::check(&decoded);
        let took = started.elapsed();
        assert!(violations.is_empty());
        if i >= WARMUP {
            native.push(took);
        }
    }
    let (wasm_p50, wasm_p99) = percentiles(wasm);
    let (native_p50, native_p99) = percentiles(native);
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!("validator_latency: {} byte pod, {CALLS} calls after {WARMUP} warm-up calls", pod.len());
    println!("validator_latency: wasm   (static-pod-policy component) p50 {:.1} us, p99 {:.1} us", us(wasm_p50), us(wasm_p99));
    println!("validator_latency: native (same rules, same JSON decode) p50 {:.1} us, p99 {:.1} us", us(native_p50), us(native_p99));
    let ratio = us(wasm_p50) / us(native_p50);
    println!("validator_latency: wasm/native ratio at p50 {ratio:.2}x");
    report::row(
        &format!("built-in policy, per pod ({:.1} KB pod JSON, warm instance)", pod.len() as f64 / 1000.0),
        &format!(
            "wasm p50 **{:.1} µs**, p99 {:.1} µs; native p50 {:.1} µs, p99 {:.1} µs: **{ratio:.2}×**",
            us(wasm_p50),
            us(wasm_p99),
            us(native_p50),
            us(native_p99)
        ),
        "p50 < 20 µs, < 3× native",
        &report::command("staticlet-plugin", "validator_latency"),
    );
}
