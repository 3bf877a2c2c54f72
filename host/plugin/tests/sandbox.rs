//! The plugin host against real components built from `plugins/` by the build script: the
//! built-in policy, and the `hostile` test validator that traps, spins, hoards memory, reads
//! files and makes HTTP requests when asked to.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use staticlet_plugin::artifacts::{FIXTURE_SOURCE, HOSTILE, STATIC_POD_POLICY_WASM, UNSUPPORTED_RUNTIME, static_pod_policy};
use staticlet_plugin::{
    AdapterRuntime, Code, DEFAULT_IMAGE_PULL_TIMEOUT, DirGrant, Health, Kind, Plugin, PluginEngine, PluginError, PluginSpec, PodContext,
    Refresh,
};
use staticlet_runtime::{Runtime, RuntimeError};

fn spec(name: &str, kind: Kind, code: Code, settings: serde_json::Value) -> PluginSpec {
    PluginSpec { settings: settings.to_string(), ..PluginSpec::new(name, kind, code) }
}

fn hostile(mode: serde_json::Value) -> PluginSpec {
    spec("hostile", Kind::AdmissionValidator, Code::File(HOSTILE.into()), mode)
}

fn ctx() -> PodContext {
    PodContext { node_name: "n1".into(), source: "file".into(), source_uri: "/etc/kubernetes/manifests/p.yaml".into() }
}

fn pod(marked: bool, extra_spec: serde_json::Value) -> String {
    let mut pod = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "namespace": "default"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}
    });
    if marked {
        pod["metadata"]["annotations"] = serde_json::json!({"testing.staticlet.dev/misbehave": "true"});
    }
    if let serde_json::Value::Object(extra) = extra_spec {
        for (k, v) in extra {
            pod["spec"][k] = v;
        }
    }
    pod.to_string()
}

fn engine() -> PluginEngine {
    PluginEngine::new("node-1", None).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_wasm_policy_agrees_with_its_native_rules() {
    let plugin = Plugin::load(&engine(), static_pod_policy()).await;
    assert_eq!(plugin.info().health, Health::Ready);
    assert_eq!(plugin.info().wit_version.as_deref(), Some("0.2.0"));
    let bad = pod(
        false,
        serde_json::json!({
            "serviceAccountName": "default",
            "imagePullSecrets": [{"name": "regcred"}],
            "initContainers": [{"name": "i", "image": "i", "envFrom": [{"configMapRef": {"name": "m"}}]}],
            "ephemeralContainers": [{"name": "e", "image": "i"}],
            "volumes": [{"name": "s", "secret": {"secretName": "s"}}, {"name": "h", "hostPath": {"path": "/srv"}}]
        }),
    );
    let verdict = plugin.validate(&ctx(), &bad).await.unwrap();
    let native = static_pod_rules::check(&serde_json::from_str(&bad).unwrap());
    let wasm: Vec<(String, String)> = verdict.violations.into_iter().map(|v| (v.field, v.message)).collect();
    assert_eq!(wasm, native);
    assert!(wasm.iter().any(|(field, _)| field == "spec.serviceAccountName"), "{wasm:?}");
    assert!(plugin.validate(&ctx(), &pod(false, serde_json::json!({}))).await.unwrap().violations.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trap_fails_that_call_only() {
    let plugin = Plugin::load(&engine(), hostile(serde_json::json!({"mode": "trap"}))).await;
    let err = plugin.validate(&ctx(), &pod(true, serde_json::json!({}))).await.unwrap_err();
    assert!(matches!(err, PluginError::Trap { ref plugin, call: "validate", .. } if plugin == "hostile"), "{err}");
    assert!(matches!(plugin.info().health, Health::Degraded(_)));
    // A fresh instance answers the next call.
    assert!(plugin.validate(&ctx(), &pod(false, serde_json::json!({}))).await.unwrap().violations.is_empty());
    assert_eq!(plugin.info().health, Health::Ready);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_spinning_call_is_interrupted_at_its_deadline() {
    let mut spec = hostile(serde_json::json!({"mode": "loop"}));
    spec.limits.call_timeout = Duration::from_millis(300);
    let plugin = Plugin::load(&engine(), spec).await;
    let started = Instant::now();
    let err = plugin.validate(&ctx(), &pod(true, serde_json::json!({}))).await.unwrap_err();
    let took = started.elapsed();
    assert!(matches!(err, PluginError::Deadline { call: "validate", .. }), "{err}");
    assert!(took >= Duration::from_millis(300) && took < Duration::from_secs(3), "{took:?}");
    assert!(plugin.validate(&ctx(), &pod(false, serde_json::json!({}))).await.is_ok());
}

#[tokio::test(flavor = "multi_thread")]
async fn unbounded_allocation_hits_the_memory_cap() {
    let mut spec = hostile(serde_json::json!({"mode": "alloc"}));
    spec.limits.memory_bytes = 32 << 20;
    let plugin = Plugin::load(&engine(), spec).await;
    let err = plugin.validate(&ctx(), &pod(true, serde_json::json!({}))).await.unwrap_err();
    assert!(matches!(err, PluginError::Memory { limit, .. } if limit == 32 << 20), "{err}");
    assert!(plugin.validate(&ctx(), &pod(false, serde_json::json!({}))).await.is_ok());
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_never_loads_and_every_call_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garbage.wasm");
    std::fs::write(&path, b"\0asm this is not a component").unwrap();
    let plugin = Plugin::load(&engine(), spec("junk", Kind::AdmissionValidator, Code::File(path.clone()), serde_json::json!({}))).await;
    assert!(matches!(plugin.info().health, Health::Failed(_)));
    let err = plugin.validate(&ctx(), &pod(false, serde_json::json!({}))).await.unwrap_err();
    assert!(matches!(err, PluginError::Compile { .. }), "{err}");
    assert!(err.to_string().contains("junk") && err.to_string().contains(&path.display().to_string()), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_component_of_another_kind_or_bad_settings_does_not_load() {
    let engine = engine();
    let wrong =
        Plugin::load(&engine, spec("h", Kind::ManifestSource, Code::File(HOSTILE.into()), serde_json::json!({"mode": "trap"}))).await;
    let Health::Failed(why) = wrong.info().health else { panic!("loaded as a source") };
    assert!(why.contains("is an admission-validator plugin, but the config says kind: manifest-source"), "{why}");
    assert!(matches!(wrong.poll().await, Err(PluginError::Link { .. })));

    let unset = Plugin::load(&engine, hostile(serde_json::json!({"mode": "dance"}))).await;
    let err = unset.validate(&ctx(), &pod(false, serde_json::json!({}))).await.unwrap_err();
    assert!(matches!(&err, PluginError::Guest { call: "init", code, .. } if code == "config"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_manifest_source_serves_its_set_and_then_says_nothing_changed() {
    let engine = engine();
    let manifest = "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec: {containers: [{name: c, image: busybox}]}\n";
    let inline =
        spec("inventory", Kind::ManifestSource, Code::File(FIXTURE_SOURCE.into()), serde_json::json!({"manifests": {"web": manifest}}));
    let inline = Plugin::load(&engine, inline).await;
    assert_eq!(inline.info().health, Health::Ready);
    assert_eq!(inline.poll().await.unwrap(), Some(vec![("web".to_owned(), manifest.to_owned())]));
    assert_eq!(inline.poll().await.unwrap(), None);
    let err = inline.validate(&ctx(), &pod(false, serde_json::json!({}))).await.unwrap_err();
    assert!(matches!(err, PluginError::WrongKind { call: "validate", .. }), "{err}");

    // A source reading a granted directory: a new file is a new set; a vanished directory is
    // the source's own error, which names the plugin.
    let dir = tempfile::tempdir().unwrap();
    let mut from_dir = spec("dir", Kind::ManifestSource, Code::File(FIXTURE_SOURCE.into()), serde_json::json!({"dir": "/manifests"}));
    from_dir.grants.read_only_dirs.push(DirGrant { host_path: dir.path().to_owned(), guest_path: "/manifests".into() });
    let from_dir = Plugin::load(&engine, from_dir).await;
    assert_eq!(from_dir.poll().await.unwrap(), Some(vec![]));
    std::fs::write(dir.path().join("web.yaml"), manifest).unwrap();
    assert_eq!(from_dir.poll().await.unwrap(), Some(vec![("web.yaml".to_owned(), manifest.to_owned())]));
    assert_eq!(from_dir.poll().await.unwrap(), None);
    std::fs::remove_file(dir.path().join("web.yaml")).unwrap();
    assert_eq!(from_dir.poll().await.unwrap(), Some(vec![]));

    let unreadable = spec("nowhere", Kind::ManifestSource, Code::File(FIXTURE_SOURCE.into()), serde_json::json!({"dir": "/manifests"}));
    let err = Plugin::load(&engine, unreadable).await.poll().await.unwrap_err();
    assert!(matches!(&err, PluginError::Guest { call: "poll", code, .. } if code == "unavailable"), "{err}");
    assert!(err.to_string().starts_with("plugin nowhere: poll failed: unavailable: cannot read /manifests"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_runtime_adapter_loads_and_answers_version() {
    let engine = engine();
    let settings = serde_json::json!({"name": "fixture", "version": "1.2.3"});
    let adapter =
        Arc::new(Plugin::load(&engine, spec("rt", Kind::RuntimeAdapter, Code::File(UNSUPPORTED_RUNTIME.into()), settings.clone())).await);
    assert_eq!(adapter.info().health, Health::Ready);
    assert_eq!(adapter.info().wit_version.as_deref(), Some("0.2.0"));
    let runtime = AdapterRuntime::new(adapter.clone(), DEFAULT_IMAGE_PULL_TIMEOUT);
    let version = runtime.version().await.unwrap();
    assert_eq!((version.runtime_name.as_str(), version.runtime_version.as_str()), ("fixture", "1.2.3"));
    assert_eq!(runtime.name(), "rt");
    let refused = runtime.remove_container("c1").await.unwrap_err();
    assert!(
        matches!(&refused, RuntimeError::Call { call: "remove_container", message } if message.starts_with("not supported: ")),
        "{refused}"
    );
    let err = adapter.poll().await.unwrap_err();
    assert_eq!(err.to_string(), "plugin rt is a runtime-adapter plugin; it cannot poll");

    let misdeclared = Plugin::load(&engine, spec("rt", Kind::AdmissionValidator, Code::File(UNSUPPORTED_RUNTIME.into()), settings)).await;
    let Health::Failed(why) = misdeclared.info().health else { panic!("a runtime adapter loaded as a validator") };
    assert!(why.contains("is a runtime-adapter plugin, but the config says kind: admission-validator"), "{why}");

    let unnamed =
        Plugin::load(&engine, spec("rt", Kind::RuntimeAdapter, Code::File(UNSUPPORTED_RUNTIME.into()), serde_json::json!({}))).await;
    let err = AdapterRuntime::new(Arc::new(unnamed), DEFAULT_IMAGE_PULL_TIMEOUT).version().await.unwrap_err();
    assert!(matches!(&err, RuntimeError::Unavailable(why) if why.starts_with("plugin rt: init failed: config: name: missing")), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn compiled_code_is_cached_on_disk_by_digest() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let file = copy_of(STATIC_POD_POLICY_WASM, dir.path());
    let as_a_file = |name: &str| spec(name, Kind::AdmissionValidator, Code::File(file.clone()), serde_json::json!({}));
    let first = Plugin::load(&PluginEngine::new("node-1", Some(cache.clone())).unwrap(), as_a_file("policy")).await;
    let cached: Vec<_> = std::fs::read_dir(&cache).unwrap().flatten().map(|e| e.file_name().into_string().unwrap()).collect();
    assert_eq!(cached.len(), 1, "{cached:?}");
    assert!(cached[0].starts_with(first.info().digest.as_deref().unwrap()), "{cached:?}");
    // A new engine (as after a restart) loads the code from the cache.
    let again = PluginEngine::new("node-1", Some(cache.clone())).unwrap();
    let second = Plugin::load(&again, as_a_file("policy")).await;
    assert_eq!(second.info().health, Health::Ready);
    assert_eq!(second.refresh().await, Refresh::Unchanged);
    // The built-in policy comes precompiled: nothing is compiled or cached for it.
    let builtin = Plugin::load(&again, static_pod_policy()).await;
    assert_eq!(builtin.info().health, Health::Ready);
    assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 1);
}

fn copy_of(wasm: &[u8], dir: &Path) -> std::path::PathBuf {
    let path = dir.join("policy.wasm");
    std::fs::write(&path, wasm).unwrap();
    path
}

/// Replaces `path` the way a deployment tool does: write beside it, rename over it.
fn replace(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn replacing_the_wasm_changes_verdicts_and_garbage_keeps_the_last_good_code() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("validator.wasm");
    std::fs::copy(HOSTILE, &path).unwrap();
    let plugin =
        Plugin::load(&engine(), spec("swap", Kind::AdmissionValidator, Code::File(path.clone()), serde_json::json!({"mode": "reject"})))
            .await;
    let with_sa = pod(false, serde_json::json!({"serviceAccountName": "x"}));
    assert!(plugin.validate(&ctx(), &with_sa).await.unwrap().violations.is_empty());

    replace(&path, STATIC_POD_POLICY_WASM);
    assert!(matches!(plugin.refresh().await, Refresh::Loaded { .. }));
    let fields: Vec<String> = plugin.validate(&ctx(), &with_sa).await.unwrap().violations.into_iter().map(|v| v.field).collect();
    assert_eq!(fields, ["spec.serviceAccountName"]);

    replace(&path, b"not wasm at all");
    assert!(matches!(plugin.refresh().await, Refresh::Failed(PluginError::Compile { .. })));
    assert_eq!(plugin.refresh().await, Refresh::Unchanged, "the same failure is reported once");
    assert_eq!(plugin.validate(&ctx(), &with_sa).await.unwrap().violations.len(), 1, "the last good code stays in use");
}

fn reason(plugin_result: Result<staticlet_plugin::Verdict, PluginError>) -> String {
    plugin_result.unwrap().violations.into_iter().next().map(|v| v.message).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn files_are_out_of_reach_unless_a_directory_is_granted() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("allowed.txt"), "registry.internal").unwrap();
    let engine = engine();
    let denied = Plugin::load(&engine, hostile(serde_json::json!({"mode": "read", "path": "/etc/hostname"}))).await;
    assert!(reason(denied.validate(&ctx(), &pod(true, serde_json::json!({}))).await).starts_with("error:"));

    let mut granted = hostile(serde_json::json!({"mode": "read", "path": "/policy/allowed.txt"}));
    granted.grants.read_only_dirs.push(DirGrant { host_path: dir.path().to_owned(), guest_path: "/policy".into() });
    let granted = Plugin::load(&engine, granted).await;
    assert_eq!(reason(granted.validate(&ctx(), &pod(true, serde_json::json!({}))).await), "read: registry.internal");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_agents_environment_is_out_of_reach() {
    // Cargo runs tests with PATH, HOME and its own CARGO_* variables set.
    assert!(std::env::var_os("PATH").is_some() && std::env::var_os("CARGO_MANIFEST_DIR").is_some());
    let engine = engine();
    let plugin = Plugin::load(&engine, hostile(serde_json::json!({"mode": "env"}))).await;
    assert_eq!(reason(plugin.validate(&ctx(), &pod(true, serde_json::json!({}))).await), "env: []");
}

#[tokio::test(flavor = "multi_thread")]
async fn raw_sockets_and_name_lookups_are_out_of_reach() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let engine = engine();
    for address in [format!("127.0.0.1:{port}"), format!("localhost:{port}")] {
        let plugin = Plugin::load(&engine, hostile(serde_json::json!({"mode": "connect", "address": address}))).await;
        let outcome = reason(plugin.validate(&ctx(), &pod(true, serde_json::json!({}))).await);
        assert!(outcome.starts_with("error:"), "{address}: {outcome}");
    }
    assert!(listener.accept().is_err(), "nothing reached the listener");
}

/// A one-connection-at-a-time HTTP server on loopback that answers with the Host header it got.
fn serve_host_header() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 4096];
            let n = stream.read(&mut buf).unwrap_or(0);
            let head = String::from_utf8_lossy(&buf[..n]).to_string();
            let host =
                head.lines().find_map(|l| l.strip_prefix("host: ").or_else(|| l.strip_prefix("Host: "))).unwrap_or("none").to_owned();
            let body = format!("host={host}");
            let _ = write!(stream, "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread")]
async fn outbound_http_reaches_only_granted_and_vetted_addresses() {
    let port = serve_host_header();
    let engine = engine();
    let fetch = |url: String, grants: &[String]| {
        let mut spec = hostile(serde_json::json!({"mode": "fetch", "url": url}));
        spec.grants.http_hosts = grants.iter().map(|g| g.parse().unwrap()).collect();
        spec
    };
    let marked = pod(true, serde_json::json!({}));

    let allowed = Plugin::load(&engine, fetch(format!("http://127.0.0.1:{port}/check"), &[format!("127.0.0.1:{port}")])).await;
    assert_eq!(reason(allowed.validate(&ctx(), &marked).await), format!("status 200: host=127.0.0.1:{port}"));

    let unlisted = Plugin::load(&engine, fetch(format!("http://127.0.0.1:{port}/"), &["policy.example.com".into()])).await;
    assert_eq!(reason(unlisted.validate(&ctx(), &marked).await), "error: ErrorCode::HttpRequestDenied");

    // A name is resolved by the host, and loopback is refused unless the address itself is
    // listed: this is what keeps a plugin off the node's own services through DNS.
    let by_name = Plugin::load(&engine, fetch(format!("http://localhost:{port}/"), &[format!("localhost:{port}")])).await;
    assert_eq!(reason(by_name.validate(&ctx(), &marked).await), "error: ErrorCode::DestinationIpProhibited");
}
