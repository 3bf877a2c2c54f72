//! Plugins of every WIT version this host loads: the shipped plugins as built against the
//! frozen 0.1.0 (`tests/fixtures/wit-v0.1.0`), the current ones against 0.2.0, and 0.2.0's new
//! kind, the credential provider (`plugins/token-credential-provider`) against a real HTTP
//! token endpoint on loopback.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use staticlet_credentials::provider::{CacheKeyType, Provider};
use staticlet_plugin::artifacts::{TOKEN_CREDENTIAL_PROVIDER, static_pod_policy};
use staticlet_plugin::{
    AdapterRuntime, Code, CredentialPlugin, DEFAULT_IMAGE_PULL_TIMEOUT, Health, Kind, Plugin, PluginEngine, PluginSpec, PodContext,
};
use staticlet_runtime::{PullProgress, RegistryAuth, Runtime, RuntimeError};

/// A plugin built against 0.1.0, by file name.
fn v0_1_0(file: &str) -> Code {
    Code::File(format!("{}/../../tests/fixtures/wit-v0.1.0/{file}", env!("CARGO_MANIFEST_DIR")).into())
}

fn spec(name: &str, kind: Kind, code: Code, settings: serde_json::Value) -> PluginSpec {
    PluginSpec { settings: settings.to_string(), ..PluginSpec::new(name, kind, code) }
}

fn engine() -> PluginEngine {
    PluginEngine::new("node-1", None).unwrap()
}

fn ctx() -> PodContext {
    PodContext { node_name: "node-1".into(), source: "file".into(), source_uri: "/etc/kubernetes/manifests/p.yaml".into() }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_policy_built_against_0_1_0_judges_as_the_current_one() {
    let engine = engine();
    let old =
        Plugin::load(&engine, spec("old-policy", Kind::AdmissionValidator, v0_1_0("static_pod_policy.wasm"), serde_json::json!({}))).await;
    let current = Plugin::load(&engine, static_pod_policy()).await;
    assert_eq!((old.info().health, old.info().wit_version.as_deref()), (Health::Ready, Some("0.1.0")));
    assert_eq!(current.info().wit_version.as_deref(), Some("0.2.0"));
    let pod = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
        "spec": {"serviceAccountName": "default", "containers": [{"name": "c", "image": "busybox", "envFrom": [{"secretRef": {"name": "s"}}]}]}
    })
    .to_string();
    let (old, current) = (old.validate(&ctx(), &pod).await.unwrap(), current.validate(&ctx(), &pod).await.unwrap());
    assert!(!old.violations.is_empty());
    assert_eq!(old, current);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_adapter_and_source_built_against_0_1_0_load_and_answer() {
    let engine = engine();
    // Nothing listens on port 1: the calls run in the plugins and fail as they should.
    let granted = |mut spec: PluginSpec| {
        spec.grants.http_hosts = vec!["127.0.0.1:1".parse().unwrap()];
        spec
    };
    let source = Plugin::load(
        &engine,
        granted(spec("etcd", Kind::ManifestSource, v0_1_0("etcd_source.wasm"), serde_json::json!({"endpoints": ["http://127.0.0.1:1"]}))),
    )
    .await;
    assert_eq!((source.info().health, source.info().wit_version.as_deref()), (Health::Ready, Some("0.1.0")));
    let polled = source.poll().await.unwrap_err().to_string();
    assert!(polled.contains("no etcd endpoint answered: http://127.0.0.1:1/v3/kv/range"), "{polled}");

    let adapter = Arc::new(
        Plugin::load(
            &engine,
            granted(spec(
                "podman",
                Kind::RuntimeAdapter,
                v0_1_0("podman_runtime.wasm"),
                serde_json::json!({"endpoint": "http://127.0.0.1:1"}),
            )),
        )
        .await,
    );
    assert_eq!((adapter.info().health, adapter.info().wit_version.as_deref()), (Health::Ready, Some("0.1.0")));
    let runtime = AdapterRuntime::new(adapter, DEFAULT_IMAGE_PULL_TIMEOUT);
    let version = runtime.version().await.unwrap_err();
    assert!(matches!(&version, RuntimeError::Unavailable(why) if why.contains("127.0.0.1:1 refused the connection")), "{version}");
    // A 0.1.0 adapter takes pulls with credentials too: it pulls without them.
    let (progress, _) = tokio::sync::watch::channel(PullProgress::default());
    let auth = RegistryAuth::basic("", "user", "secret");
    let pulled = runtime.pull_image("127.0.0.1:5001/app:1", Some(&auth), &progress).await.unwrap_err();
    assert!(matches!(&pulled, RuntimeError::Unavailable(why) if why.contains("refused the connection")), "{pulled}");
    assert!(!pulled.to_string().contains("secret"));
}

/// A token endpoint on loopback: `POST /token` with `Authorization: Bearer good-token` gets a
/// registry login good for 5 minutes; anything else a 401. Counts its requests.
fn token_endpoint() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let requests = Arc::new(AtomicUsize::new(0));
    let counted = requests.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            counted.fetch_add(1, Ordering::SeqCst);
            let head = read_request(&mut stream).to_lowercase();
            let (status, body) = if head.starts_with("post /token ") && head.contains("authorization: bearer good-token") {
                ("200 OK", r#"{"username": "robot", "password": "short-lived-pw", "expiresInSeconds": 300}"#)
            } else {
                ("401 Unauthorized", r#"{"error": "bad token good-token?"}"#)
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (port, requests)
}

/// The whole request, head and body: answering and closing while part of it is unread makes
/// the kernel reset the connection, and the client sees no answer.
fn read_request(stream: &mut impl Read) -> String {
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    while !is_complete(&String::from_utf8_lossy(&request)) {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&request).into_owned()
}

/// Whether a request holds its head and as much body as its Content-Length says.
fn is_complete(request: &str) -> bool {
    let Some(end) = request.find("\r\n\r\n") else { return false };
    let length = request[..end]
        .lines()
        .find_map(|line| line.to_lowercase().strip_prefix("content-length:").map(|n| n.trim().parse::<usize>().unwrap_or(0)))
        .unwrap_or(0);
    request.len() >= end + 4 + length
}

async fn token_provider(engine: &PluginEngine, port: u16, token: &str) -> Plugin {
    let settings = serde_json::json!({"tokenUrl": format!("http://127.0.0.1:{port}/token"), "token": token});
    let mut spec = spec("registry-token", Kind::CredentialProvider, Code::File(TOKEN_CREDENTIAL_PROVIDER.into()), settings);
    spec.grants.http_hosts = vec![format!("127.0.0.1:{port}").parse().unwrap()];
    Plugin::load(engine, spec).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_credential_provider_plugin_trades_its_token_for_a_login() {
    let engine = engine();
    let (port, requests) = token_endpoint();
    let plugin = Arc::new(token_provider(&engine, port, "good-token").await);
    assert_eq!((plugin.info().health, plugin.info().wit_version.as_deref()), (Health::Ready, Some("0.2.0")));
    let provider = CredentialPlugin::new(plugin);
    let provided = provider.provide("registry.example.com:5001/team/app").await.unwrap();
    assert_eq!(provided.cache_key_type, CacheKeyType::Registry);
    assert_eq!(provided.cache_duration, Some(Duration::from_secs(300)));
    assert_eq!(provided.auth, [("registry.example.com:5001".to_owned(), RegistryAuth::basic("", "robot", "short-lived-pw"))]);
    assert_eq!(requests.load(Ordering::SeqCst), 1);

    let refused = CredentialPlugin::new(Arc::new(token_provider(&engine, port, "bad-token").await));
    let e = refused.provide("registry.example.com:5001/team/app").await.unwrap_err().to_string();
    assert!(e.contains("answered 401") && e.contains("registry-token"), "{e}");
    assert!(!e.contains("bad-token") && !e.contains("good-token"), "no token in the error: {e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_credential_provider_reaches_only_its_granted_hosts() {
    let engine = engine();
    let (port, requests) = token_endpoint();
    let settings = serde_json::json!({"tokenUrl": format!("http://127.0.0.1:{port}/token"), "token": "good-token"});
    let ungranted =
        Plugin::load(&engine, spec("registry-token", Kind::CredentialProvider, Code::File(TOKEN_CREDENTIAL_PROVIDER.into()), settings))
            .await;
    let e = CredentialPlugin::new(Arc::new(ungranted)).provide("reg.example.com/app").await.unwrap_err();
    assert!(e.to_string().contains("allowedHosts"), "the refusal says what to grant: {e}");
    assert_eq!(requests.load(Ordering::SeqCst), 0);
}
