//! Private registries (issue 26): pulls from a registry that requires a login (the support's
//! `docker-registry` with an htpasswd file), with the node's docker config from each of the
//! kubelet's places, with a kubelet credential provider executable, on Docker and containerd,
//! the sandbox image included; and never a password in a log line.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::containerd;
use crate::support::registry::{AuthRegistry, PASSWORD, USER, auth_registry};
use crate::support::{self, Agent, container_status, docker, running, wait_for, yaml};

fn pod(name: &str, image: &str) -> String {
    yaml!(
        r#"
        apiVersion: v1
        kind: Pod
        metadata:
          name: {name}
        spec:
          terminationGracePeriodSeconds: 2
          containers:
          - name: main
            image: {image}
            command: [sleep, '100000']
        "#,
        name,
        image,
    )
}

/// The agent's log holds neither the password nor the `auth` form of it, at debug level.
fn assert_no_secret(agent: &Agent) {
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    let log = agent.log();
    for secret in [PASSWORD, auth.as_str(), "w0rd-7c1f9a"] {
        assert!(!log.contains(secret), "a secret reached the agent's log:\n{log}");
    }
}

/// The waiting reason and message of `pod`'s container `main`, once it has one.
async fn waiting(agent: &Agent, pod: &str) -> (String, String) {
    wait_for(Duration::from_secs(60), "the container to wait with a reason", || async {
        let status = agent.pod_status(pod).await?;
        let waiting = &container_status(&status, "main")?["state"]["waiting"];
        Some((waiting["reason"].as_str()?.to_owned(), waiting["message"].as_str()?.to_owned()))
    })
    .await
}

/// Puts a file back as it was (or removes it) when dropped: the tests write to `/.docker` and
/// `/.dockercfg`, which belong to the machine.
struct Restore(PathBuf, Option<Vec<u8>>);

impl Restore {
    fn write(path: &Path, text: &str) -> Restore {
        let before = std::fs::read(path).ok();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
        Restore(path.to_owned(), before)
    }
}

impl Drop for Restore {
    fn drop(&mut self) {
        let _ = match &self.1 {
            Some(before) => std::fs::write(&self.0, before),
            None => std::fs::remove_file(&self.0),
        };
    }
}

/// `/.docker/config.json` and `/.dockercfg` are the machine's: one test at a time goes through
/// the places.
static MACHINE_PLACES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The agent's `HOME` and working directory, empty.
struct Places {
    _dir: tempfile::TempDir,
    home: PathBuf,
    cwd: PathBuf,
}

impl Places {
    fn new() -> Places {
        let dir = tempfile::tempdir().unwrap();
        let (home, cwd) = (dir.path().join("home"), dir.path().join("cwd"));
        std::fs::create_dir_all(&home).unwrap();
        std::fs::create_dir_all(&cwd).unwrap();
        Places { _dir: dir, home, cwd }
    }

    /// Each place the kubelet looks, alone in turn, while the agent runs: the login written
    /// there, then a pod whose image needs it (`place<i>`, the registry's `<repo>-place<i>`),
    /// which must come up as running. A file counts from the next pull.
    async fn each_with_a_pod(&self, agent: &Agent, registry: &AuthRegistry, repo: &str, tag: &str) -> Vec<String> {
        let _machine = MACHINE_PLACES.lock().await;
        let docker = docker().await;
        let (config_json, dockercfg) = (registry.config_json(), registry.dockercfg());
        let places: [(PathBuf, &str); 8] = [
            (agent.root.join("config.json"), &config_json),
            (self.cwd.join("config.json"), &config_json),
            (self.home.join(".docker/config.json"), &config_json),
            (PathBuf::from("/.docker/config.json"), &config_json),
            (agent.root.join(".dockercfg"), &dockercfg),
            (self.cwd.join(".dockercfg"), &dockercfg),
            (self.home.join(".dockercfg"), &dockercfg),
            (PathBuf::from("/.dockercfg"), &dockercfg),
        ];
        let mut images = Vec::new();
        for (i, (path, text)) in places.iter().enumerate() {
            let image = registry.publish(&docker, &format!("{repo}-place{i}"), tag).await;
            let _file = Restore::write(path, text);
            let name = format!("place{i}");
            agent.write(&format!("{name}.yaml"), &pod(&name, &image));
            reported_running(agent, &name).await;
            images.push(image);
        }
        images
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn docker_pulls_with_the_node_credentials_from_each_of_the_kubelets_places() {
    let docker = docker().await;
    let registry = auth_registry().await;
    let tag = format!("t{}", std::process::id());
    let pause = registry.publish_pause(&docker, "staticlet-test/pause", &tag).await;
    let places = Places::new();
    let mut agent = Agent::new("regplaces");
    agent.pod_infra_image = None;
    agent.current_dir = Some(places.cwd.clone());
    std::fs::create_dir_all(&agent.root).unwrap();

    // No credentials anywhere: the pod does not start, and its status says what the registry said.
    let refused = registry.publish(&docker, "staticlet-test/refused", &tag).await;
    agent.write("refused.yaml", &pod("refused", &refused));
    let home = places.home.display().to_string();
    agent.start_env(&["--pod-infra-container-image", &pause], &[("HOME", &home), ("STATICLET_LOG", "debug")]);
    let (reason, message) = waiting(&agent, "refused").await;
    assert!(reason == "ErrImagePull" || reason == "ImagePullBackOff", "{reason}: {message}");
    assert!(message.contains("no basic auth credentials"), "the registry's words, in the back-off too: {message}");

    let images = places.each_with_a_pod(&agent, &registry, "staticlet-test/docker", &tag).await;
    for (i, image) in images.iter().enumerate() {
        let main = running(&docker, &agent.node, &format!("k8s_main_{}", agent.pod(&format!("place{i}")))).await.pop().unwrap();
        assert_eq!(main.image.as_deref(), Some(image.as_str()));
    }
    // The first sandbox made with a login in place runs the configured sandbox image, pulled
    // with it.
    let sandbox = running(&docker, &agent.node, &format!("k8s_POD_{}", agent.pod("place0"))).await.pop().unwrap();
    assert_eq!(sandbox.image.as_deref(), Some(pause.as_str()));
    let log = agent.log();
    assert!(log.contains("Successfully pulled image"), "{log}");
    // The files were written with the default 0644: used, and said once each to be too open.
    let warned = format!("file={} mode=644", agent.root.join("config.json").display());
    assert_eq!(log.lines().filter(|l| l.contains(&warned) && l.contains("readable by other users")).count(), 1, "{log}");
    assert_no_secret(&agent);
}

#[tokio::test(flavor = "multi_thread")]
async fn containerd_pulls_with_the_node_credentials_from_each_place_including_its_sandbox_image() {
    let docker = docker().await;
    let registry = auth_registry().await;
    let tag = format!("t{}", std::process::id());
    let pause = registry.publish_pause(&docker, "staticlet-test/cri-pause", &tag).await;
    // A containerd of its own, whose sandbox image is behind the login.
    let containerd = containerd::dedicated(1, &pause).await;
    let places = Places::new();
    let mut agent = Agent::new("regcri");
    agent.uses_containerd(&containerd);
    agent.current_dir = Some(places.cwd.clone());
    std::fs::create_dir_all(&agent.root).unwrap();
    let home = places.home.display().to_string();
    agent.start_env(&["--container-runtime-endpoint", &containerd.endpoint()], &[("HOME", &home), ("STATICLET_LOG", "debug")]);
    let pulled = places.each_with_a_pod(&agent, &registry, "staticlet-test/cri", &tag).await;
    let images = containerd.run(&["images", "ls", "-q"]);
    for wanted in pulled.iter().chain([&pause]) {
        assert!(images.lines().any(|l| l == wanted.as_str()), "{wanted} pulled into containerd: {images}");
    }
    assert_no_secret(&agent);
}

/// A credential provider in the kubelet's exec protocol, as a shell script: it logs each call
/// to `calls`, and answers with the registry's login for the whole registry for five minutes.
fn provider_script(registry: &AuthRegistry, calls: &Path) -> String {
    format!(
        r#"#!/bin/sh
request=$(cat)
echo "$request" >> '{calls}'
printf '{{"kind":"CredentialProviderResponse","apiVersion":"credentialprovider.kubelet.k8s.io/v1","cacheKeyType":"Registry","cacheDuration":"5m0s","auth":{{"{address}":{{"username":"{USER}","password":"{PASSWORD}"}}}}}}'
"#,
        calls = calls.display(),
        address = registry.address,
    )
}

/// Installs `script` as the credential provider `name` for `registry`'s images, in a bin dir
/// and a `CredentialProviderConfig` beside the agent's files; returns the flags that use them.
fn install_provider(agent: &Agent, name: &str, script: &str, registry: &AuthRegistry) -> [String; 4] {
    use std::os::unix::fs::PermissionsExt;
    let bin = agent.file("providers");
    std::fs::create_dir_all(&bin).unwrap();
    let executable = bin.join(name);
    std::fs::write(&executable, script).unwrap();
    std::fs::set_permissions(&executable, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = agent.file("credential-providers.yaml");
    let text = yaml!(
        r#"
        apiVersion: kubelet.config.k8s.io/v1
        kind: CredentialProviderConfig
        providers:
        - name: {name}
          matchImages: ["{registry}"]
          defaultCacheDuration: 1m
          apiVersion: credentialprovider.kubelet.k8s.io/v1
        "#,
        name,
        registry = registry.address,
    );
    std::fs::write(&config, text).unwrap();
    [
        "--image-credential-provider-config".to_owned(),
        config.display().to_string(),
        "--image-credential-provider-bin-dir".to_owned(),
        bin.display().to_string(),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn an_exec_credential_provider_logs_pulls_in_and_its_answer_is_cached() {
    let docker = docker().await;
    let registry = auth_registry().await;
    let tag = format!("t{}", std::process::id());
    let mut agent = Agent::new("regexec");
    let calls = agent.file("provider-calls");
    let flags = install_provider(&agent, "test-credential-provider", &provider_script(&registry, &calls), &registry);
    let mut images = Vec::new();
    for i in 0..3 {
        let image = registry.publish(&docker, &format!("staticlet-test/exec{i}"), &tag).await;
        agent.write(&format!("exec{i}.yaml"), &pod(&format!("exec{i}"), &image));
        images.push(image);
    }
    agent.start_env(&flags.each_ref().map(String::as_str), &[("STATICLET_LOG", "debug")]);
    for i in 0..3 {
        wait_for(Duration::from_secs(90), "each pod whose image the provider's login pulls", || async {
            running(&docker, &agent.node, &format!("k8s_main_{}", agent.pod(&format!("exec{i}")))).await.pop()
        })
        .await;
    }
    let asked = std::fs::read_to_string(&calls).unwrap();
    assert_eq!(asked.lines().count(), 1, "one call for the registry, cached for the others: {asked}");
    let request: serde_json::Value = serde_json::from_str(asked.lines().next().unwrap()).unwrap();
    assert_eq!(request["kind"], "CredentialProviderRequest");
    assert_eq!(request["apiVersion"], "credentialprovider.kubelet.k8s.io/v1");
    assert!(images.iter().any(|i| i.starts_with(request["image"].as_str().unwrap())), "the repository, without its tag: {request}");
    assert_no_secret(&agent);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_credential_provider_is_reported_and_holds_up_no_other_pod() {
    let docker = docker().await;
    let registry = auth_registry().await;
    let tag = format!("t{}", std::process::id());
    let mut agent = Agent::new("regfail");
    let broken = "#!/bin/sh\necho 'token endpoint unreachable' >&2\nexit 1\n";
    let flags = install_provider(&agent, "broken-provider", broken, &registry);
    let private = registry.publish(&docker, "staticlet-test/broken", &tag).await;
    agent.write("private.yaml", &pod("private", &private));
    agent.write("public.yaml", &pod("public", crate::support::images::BUSYBOX));
    agent.start_with(&flags.each_ref().map(String::as_str));
    wait_for(Duration::from_secs(60), "the pod that needs no login", || async {
        running(&docker, &agent.node, &format!("k8s_main_{}", agent.pod("public"))).await.pop()
    })
    .await;
    let (reason, _) = waiting(&agent, "private").await;
    assert!(reason == "ErrImagePull" || reason == "ImagePullBackOff", "{reason}");
    let (_, events) = agent.api("GET", "/api/v1/namespaces/default/events").await.unwrap();
    let reported = events["items"].as_array().unwrap().iter().any(|e| {
        e["reason"] == "CredentialProviderFailed"
            && e["involvedObject"]["name"] == agent.pod("private").as_str()
            && e["message"].as_str().unwrap_or_default().contains("token endpoint unreachable")
    });
    assert!(reported, "the provider's failure is an event of the pod it concerns: {events}");
}

/// An agent config with Podman's adapter built at `adapter` as the default runtime.
fn podman_config(podman: &crate::support::podman::Podman, adapter: &str) -> String {
    format!("defaultRuntimeClass: podman\n{}", podman.runtime_class_config_with(adapter))
}

/// Waits for `pod`'s container `main` to be reported running.
async fn reported_running(agent: &Agent, pod: &str) {
    wait_for(Duration::from_secs(120), "the pod to be reported running", || async {
        let status = agent.pod_status(pod).await?;
        container_status(&status, "main")?["state"]["running"].is_object().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn podman_pulls_with_the_node_credentials_through_its_adapter() {
    let docker = docker().await;
    let registry = auth_registry().await;
    let podman = crate::support::podman::podman().await;
    let tag = format!("t{}", std::process::id());
    let image = registry.publish(&docker, "staticlet-test/podman", &tag).await;
    let mut agent = Agent::new("regpodman");
    agent.uses_podman(&podman);
    std::fs::create_dir_all(&agent.root).unwrap();
    std::fs::write(agent.root.join("config.json"), registry.config_json()).unwrap();
    std::fs::write(agent.file("config.yaml"), podman_config(&podman, staticlet_plugin::artifacts::PODMAN_RUNTIME)).unwrap();
    agent.write("app.yaml", &pod("app", &image));
    agent.start_env(&["--config", agent.file("config.yaml").to_str().unwrap()], &[("STATICLET_LOG", "debug")]);
    reported_running(&agent, "app").await;
    let images = podman.run(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(images.lines().any(|l| l == image), "pulled into Podman with the login: {images}");
    assert_no_secret(&agent);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_podman_adapter_built_against_wit_0_1_0_still_runs_pods() {
    docker().await;
    let podman = crate::support::podman::podman().await;
    let mut agent = Agent::new("regold");
    agent.uses_podman(&podman);
    let adapter = crate::support::wit_v0_1_0("podman_runtime.wasm");
    // Its settings take only http:// URLs: the socket in the form the agent routes to it.
    let config = format!("defaultRuntimeClass: podman\n{}", podman.runtime_class_config_reaching(&adapter, &podman.endpoint_as_url()));
    std::fs::write(agent.file("config.yaml"), config).unwrap();
    agent.write("app.yaml", &pod("app", crate::support::images::BUSYBOX));
    agent.start_with(&["--config", agent.file("config.yaml").to_str().unwrap()]);
    reported_running(&agent, "app").await;
    assert!(podman.containers(&agent.node).iter().any(|c| c["State"] == "running"), "running in Podman");
    let (_, plugins) = agent.api("GET", "/staticlet/v1/plugins").await.unwrap();
    assert!(plugins.to_string().contains("0.1.0"), "{plugins}");
    // Its manifest gone, the old adapter stops and removes it as the current one would.
    agent.remove("app.yaml");
    wait_for(Duration::from_secs(60), "the pod to be removed from Podman", || async {
        podman.containers(&agent.node).is_empty().then_some(())
    })
    .await;
}

/// A token endpoint for the wasm provider: `POST /token` with the node's token gets the
/// registry's login for five minutes. Counts the requests it answered.
async fn token_endpoint(token: &'static str) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let served = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = served.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            // The whole request before the answer: closing on an unread body resets the
            // connection, and the plugin would see no answer.
            let mut request = Vec::new();
            let mut buf = vec![0u8; 8192];
            while !support::http_request_is_whole(&request) {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let head = String::from_utf8_lossy(&request).to_lowercase();
            let (status, body) = if head.contains(&format!("authorization: bearer {token}")) {
                counted.fetch_add(1, Ordering::SeqCst);
                ("200 OK", serde_json::json!({"username": USER, "password": PASSWORD, "expiresInSeconds": 300}).to_string())
            } else {
                ("401 Unauthorized", "{}".to_owned())
            };
            let reply = format!(
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(reply.as_bytes()).await;
        }
    });
    (port, served)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wasm_credential_provider_trades_the_nodes_token_for_the_login() {
    let docker = docker().await;
    let registry = auth_registry().await;
    let tag = format!("t{}", std::process::id());
    let (port, served) = token_endpoint("node-token-5e1f").await;
    let mut agent = Agent::new("regwasm");
    let config = yaml!(
        r#"
        plugins:
        - name: registry-token
          kind: credential-provider
          path: {path}
          matchImages: ["{registry}"]
          defaultCacheDuration: 1m
          config: {settings}
          allowedHosts: ["127.0.0.1:{port}"]
        "#,
        path = staticlet_plugin::artifacts::TOKEN_CREDENTIAL_PROVIDER,
        registry = registry.address,
        settings = format!("{{tokenUrl: 'http://127.0.0.1:{port}/token', token: node-token-5e1f}}"),
        port = port,
    );
    std::fs::write(agent.file("config.yaml"), config).unwrap();
    for i in 0..2 {
        let image = registry.publish(&docker, &format!("staticlet-test/wasm{i}"), &tag).await;
        agent.write(&format!("wasm{i}.yaml"), &pod(&format!("wasm{i}"), &image));
    }
    agent.start_env(&["--config", agent.file("config.yaml").to_str().unwrap()], &[("STATICLET_LOG", "debug")]);
    for i in 0..2 {
        wait_for(Duration::from_secs(90), "each pod whose login the plugin got", || async {
            running(&docker, &agent.node, &format!("k8s_main_{}", agent.pod(&format!("wasm{i}")))).await.pop()
        })
        .await;
    }
    assert_eq!(served.load(std::sync::atomic::Ordering::SeqCst), 1, "one token trade for the registry, cached for the other pod");
    assert_no_secret(&agent);
    assert!(!agent.log().contains("node-token-5e1f"), "the node's token stays out of the log too");
}
