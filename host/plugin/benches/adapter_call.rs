//! The Podman runtime adapter's own cost per runtime call: the same calls made through the
//! adapter (the plugin boundary, JSON both ways, the HTTP client inside wasm and the host's
//! vetted egress) and natively from the host (one HTTP/1.1 request on a fresh connection, the
//! answer decoded), interleaved, against the same real Podman. The difference of the p50s is
//! what the adapter adds.
//!
//! `cargo bench -p staticlet-plugin --bench adapter_call` with Podman's API on
//! `$STATICLET_BENCH_PODMAN` (default `unix:///run/podman/podman.sock`, as `podman.socket`
//! serves it; `http://host:port` for a service on TCP).

#[allow(dead_code)]
#[path = "../../agent/benches/common/report.rs"]
mod report;

use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use staticlet_plugin::artifacts::PODMAN_RUNTIME;
use staticlet_plugin::{AdapterRuntime, Code, DEFAULT_IMAGE_PULL_TIMEOUT, Kind, Plugin, PluginEngine, PluginSpec};
use staticlet_runtime::{LabelFilter, Runtime};

const CALLS: usize = 500;

/// `GET path` on a fresh connection to the socket or `host:port` at `address`, decoded as JSON
/// (Podman's errors are JSON too): what the adapter does for one call.
async fn native_get(address: &str, path: &str) -> serde_json::Value {
    let request = hyper::Request::get(path).header("host", "localhost").body(Empty::<bytes::Bytes>::new()).unwrap();
    let response = if address.starts_with('/') {
        let stream = tokio::net::UnixStream::connect(address).await.unwrap();
        let (mut sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
        tokio::spawn(connection);
        sender.send_request(request).await.unwrap()
    } else {
        let stream = tokio::net::TcpStream::connect(address).await.unwrap();
        let (mut sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
        tokio::spawn(connection);
        sender.send_request(request).await.unwrap()
    };
    serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap()
}

/// The p50 and p99 of one call through the adapter and natively, in ms: `[a50, a99, n50, n99]`.
fn summarize(call: &str, adapter: &[f64], native: &[f64]) -> [f64; 4] {
    use report::percentile;
    let (a50, a99, n50, n99) = (percentile(adapter, 50.0), percentile(adapter, 99.0), percentile(native, 50.0), percentile(native, 99.0));
    println!(
        "adapter_call: {call:<16} adapter p50 {a50:7.3} ms p99 {a99:7.3} ms | native p50 {n50:7.3} ms p99 {n99:7.3} ms | adapter's own cost p50 {:.3} ms",
        a50 - n50
    );
    [a50, a99, n50, n99]
}

#[tokio::main]
async fn main() {
    let endpoint = std::env::var("STATICLET_BENCH_PODMAN").unwrap_or_else(|_| "unix:///run/podman/podman.sock".to_owned());
    let engine = PluginEngine::new("bench", None).unwrap();
    let mut spec = PluginSpec::new("podman", Kind::RuntimeAdapter, Code::File(PODMAN_RUNTIME.into()));
    spec.settings = serde_json::json!({"endpoint": endpoint}).to_string();
    let address = match endpoint.strip_prefix("unix://") {
        Some(socket) => {
            spec.grants.unix_sockets = vec![socket.into()];
            socket.to_owned()
        }
        None => {
            let address = endpoint.trim_start_matches("http://").trim_end_matches('/').to_owned();
            spec.grants.http_hosts = vec![address.parse().unwrap()];
            address
        }
    };
    spec.limits.call_timeout = Duration::from_secs(10);
    let adapter = AdapterRuntime::new(Arc::new(Plugin::load(&engine, spec).await), DEFAULT_IMAGE_PULL_TIMEOUT);
    let version = match adapter.version().await {
        Ok(version) => version.runtime_version,
        Err(e) => {
            return report::skip(
                "adapter_call",
                &format!("no Podman API at {endpoint} ({e}); serve one (systemctl start podman.socket) or set STATICLET_BENCH_PODMAN"),
            );
        }
    };

    let filter = LabelFilter::new("io.staticlet.node", "adapter-call-bench");
    let encoded = "%7B%22label%22%3A%5B%22io.staticlet.node%3Dadapter-call-bench%22%5D%7D";
    let list_path = format!("/v4.0.0/libpod/containers/json?all=true&filters={encoded}");
    // Podman's own `version` takes hundreds of milliseconds (it gathers host facts), which would
    // drown the adapter's cost; these two are the calls the agent makes most.
    let absent = "staticlet.bench/absent:1";
    let image_path = format!("/v4.0.0/libpod/images/{absent}/json");
    let mut figures = Vec::new();
    for (call, path) in [("list_containers", list_path), ("image_status", image_path)] {
        let (mut through_adapter, mut natively) = (Vec::with_capacity(CALLS), Vec::with_capacity(CALLS));
        for _ in 0..CALLS {
            let started = Instant::now();
            match call {
                "list_containers" => drop(adapter.list_containers(&filter).await.unwrap()),
                _ => assert!(adapter.image_status(absent).await.unwrap().is_none()),
            }
            through_adapter.push(started.elapsed().as_secs_f64() * 1000.0);
            let started = Instant::now();
            drop(native_get(&address, &path).await);
            natively.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        figures.push(summarize(call, &through_adapter, &natively));
    }
    let [[l_a50, l_a99, l_n50, _], [i_a50, i_a99, i_n50, _]] = figures[..] else { unreachable!("two calls") };
    report::row(
        &format!(
            "Podman adapter, cost per runtime call (`list_containers`, `image_status` against a real Podman {version}; the plugin boundary, JSON both ways, the HTTP client inside wasm, the host's vetted egress)"
        ),
        &format!(
            "adapter p50 **{l_a50:.2} ms** / {i_a50:.2} ms, p99 {l_a99:.2} / {i_a99:.2} ms; the same call made natively from the host p50 {l_n50:.2} / {i_n50:.2} ms: the adapter's own cost **{:.2} / {:.2} ms**",
            l_a50 - l_n50,
            i_a50 - i_n50
        ),
        "under 1 ms p50",
        &format!(
            "{} (Podman's API on `$STATICLET_BENCH_PODMAN`, default `unix:///run/podman/podman.sock`)",
            report::command("staticlet-plugin", "adapter_call")
        ),
    );
}
