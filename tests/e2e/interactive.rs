//! Interactive access (issue 12): exec, attach, port-forward and cp into static pods, with the
//! real `kubectl` (WebSocket and SPDY) and the `staticlet` CLI against a running agent and real
//! containers, and the kubelet port over TLS with client certificates and the API server's
//! TokenReview and SubjectAccessReview.

use std::io::Write as _;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use crate::support::apiserver::ApiServer;
use crate::support::images::BUSYBOX;
use crate::support::{Agent, docker, free_port, http_get, sleeper, wait_for, yaml};

/// An agent with the kubelet port (where kubectl sends its token, over TLS) on loopback and
/// the plain-HTTP read-only port, with `pods` written; the read-only port's number.
async fn agent_with(test: &str, pods: &[(&str, String)]) -> (Agent, u16) {
    docker().await;
    let (port, kubelet_port) = (free_port(), free_port());
    let mut agent = Agent::new(test);
    for (name, manifest) in pods {
        agent.write(&format!("{name}.yaml"), manifest);
    }
    agent.start_with(&["--read-only-port", &port.to_string(), "--port", &kubelet_port.to_string(), "--address", "127.0.0.1"]);
    let names: Vec<&str> = pods.iter().map(|(name, _)| *name).collect();
    agent.wait_reported_running(&names).await;
    (agent, port)
}

/// kubectl with the kubeconfig the agent wrote (its token, its kubelet port and that port's
/// self-signed certificate), and a home of its own.
struct Kubectl {
    kubeconfig: std::path::PathBuf,
    home: tempfile::TempDir,
}

impl Kubectl {
    fn of(agent: &Agent) -> Kubectl {
        let home = tempfile::tempdir().unwrap();
        let kubeconfig = home.path().join("kubeconfig");
        let printed = staticlet(agent, &["kubeconfig"], &[]);
        assert!(printed.status.success(), "staticlet kubeconfig: {}", String::from_utf8_lossy(&printed.stderr));
        std::fs::write(&kubeconfig, &printed.stdout).unwrap();
        Kubectl { kubeconfig, home }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("kubectl");
        command.env("HOME", self.home.path()).env("KUBECONFIG", &self.kubeconfig).args(args);
        command
    }

    fn run(&self, args: &[&str], stdin: &[u8], env: &[(&str, &str)]) -> Output {
        let mut child = self
            .command(args)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl runs (Debian's kubernetes-client, or any kubectl)");
        let mut input = child.stdin.take().unwrap();
        let stdin = stdin.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = input.write_all(&stdin);
        });
        let output = child.wait_with_output().unwrap();
        writer.join().unwrap();
        output
    }
}

fn staticlet(agent: &Agent, args: &[&str], command: &[&str]) -> Output {
    agent.cli(args, command).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A pod serving `body` over HTTP on port 8080 of its own loopback only: no hostPort, no
/// pod-IP listener, so only a port-forward into its network namespace reaches it.
fn web(name: &str, body: &str) -> String {
    yaml!(
        r#"
        apiVersion: v1
        kind: Pod
        metadata:
          name: {name}
        spec:
          containers:
          - name: web
            image: {BUSYBOX}
            imagePullPolicy: Never
            command: [sh, -c, 'mkdir -p /www && echo {body} > /www/index.html && exec httpd -f -p 127.0.0.1:8080 -h /www']
        "#,
        name,
        BUSYBOX,
        body,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_exec_returns_the_exit_code_and_streams_over_websocket_and_spdy() {
    let (agent, port) = agent_with("kexec", &[("shell", sleeper("shell", 3600, ""))]).await;
    let pod = agent.pod("shell");
    let kubectl = Kubectl::of(&agent);
    let script = "echo out; echo err >&2; exit 3";
    // kubectl 1.32 speaks WebSocket (v5.channel.k8s.io) first; the SPDY run is what older
    // kubectls and the API server speak.
    for (protocol, env) in
        [("websocket", ("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "true")), ("spdy", ("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false"))]
    {
        let output = kubectl.run(&["exec", &pod, "--", "sh", "-c", script], b"", &[env]);
        assert_eq!(output.status.code(), Some(3), "{protocol}: kubectl exits with the command's code: {}", text(&output.stderr));
        assert_eq!(text(&output.stdout), "out\n", "{protocol}: stdout alone on stdout");
        assert!(text(&output.stderr).starts_with("err\n"), "{protocol}: stderr on stderr: {}", text(&output.stderr));

        let output = kubectl.run(&["exec", "-i", &pod, "--", "tr", "a-z", "A-Z"], b"hello from stdin\n", &[env]);
        assert!(output.status.success(), "{protocol}: {}", text(&output.stderr));
        assert_eq!(text(&output.stdout), "HELLO FROM STDIN\n", "{protocol}: stdin reaches the command and its end ends it");
    }

    // Without the token: exec is refused with 401, reads still work.
    let home = tempfile::tempdir().unwrap();
    let anonymous = |args: &[&str]| {
        Command::new("kubectl")
            .env("HOME", home.path())
            .env_remove("KUBECONFIG")
            .args(["--server", &format!("http://127.0.0.1:{port}")])
            .args(args)
            .output()
            .unwrap()
    };
    let refused = anonymous(&["exec", &pod, "--", "true"]);
    assert!(!refused.status.success());
    assert!(text(&refused.stderr).contains("Unauthorized"), "{}", text(&refused.stderr));
    let read = anonymous(&["get", "pod", &pod]);
    assert!(read.status.success(), "reads need no token: {}", text(&read.stderr));
    let status =
        reqwest_status(&format!("http://127.0.0.1:{port}/api/v1/namespaces/default/pods/{pod}/exec?command=true&stdout=true")).await;
    assert_eq!(status, 401);
}

async fn reqwest_status(url: &str) -> u16 {
    reqwest::Client::new().post(url).send().await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_it_gets_a_terminal_that_follows_resizes_from_kubectl_and_the_cli() {
    let (agent, _) = agent_with("ktty", &[("tty", sleeper("tty", 3600, ""))]).await;
    let pod = agent.pod("tty");
    let kubectl = Kubectl::of(&agent);
    let clients = [
        (
            "kubectl",
            format!("HOME={} KUBECONFIG={} kubectl exec -it {pod} -- sh", kubectl.home.path().display(), kubectl.kubeconfig.display()),
        ),
        (
            "staticlet",
            format!(
                "{} exec -it {pod} --root-dir {} --api-socket {} -- sh",
                env!("CARGO_BIN_EXE_staticlet"),
                agent.root.display(),
                agent.socket.display()
            ),
        ),
    ];
    for (client, line) in clients {
        let session = format!("staticlet-e2e-{}-{client}", std::process::id());
        let tmux = |args: &[&str]| Command::new("tmux").args(["-L", &session]).args(args).output().expect("tmux runs (Debian's tmux)");
        let exit_file = kubectl.home.path().join(format!("{client}.exit"));
        let wrapped = format!("{line}; echo EXIT=$? > {}", exit_file.display());
        let started = tmux(&["new-session", "-d", "-s", "t", "-x", "120", "-y", "40", &wrapped]);
        assert!(started.status.success(), "{}", text(&started.stderr));
        let screen = || text(&tmux(&["capture-pane", "-p", "-t", "t"]).stdout);
        let wait_screen = |want: &'static str| async move {
            wait_for(Duration::from_secs(20), &format!("{client}: {want:?} on the terminal"), || async {
                screen().contains(want).then_some(())
            })
            .await;
        };
        // Typed before the client has put the terminal in raw mode, keys would be echoed locally.
        wait_screen("/ #").await;
        // One line of output, so the screen is read after all of it (the typed line itself
        // does not contain the expanded text).
        tmux(&["send-keys", "-t", "t", "echo TTY=$(tty) SIZE=$(stty size)", "Enter"]);
        wait_screen("SIZE=40 120").await;
        assert!(screen().contains("TTY=/dev/pts/"), "{client}: the command has a TTY: {}", screen());
        tmux(&["resize-window", "-t", "t", "-x", "100", "-y", "30"]);
        tokio::time::sleep(Duration::from_millis(500)).await;
        tmux(&["send-keys", "-t", "t", "clear; echo SIZE=$(stty size)", "Enter"]);
        wait_screen("SIZE=30 100").await;
        tmux(&["send-keys", "-t", "t", "exit 7", "Enter"]);
        let exit = wait_for(Duration::from_secs(20), "the client to exit", || async {
            // The shell creates the file before it writes the line.
            std::fs::read_to_string(&exit_file).ok().filter(|line| line.ends_with('\n'))
        })
        .await;
        assert_eq!(exit.trim(), "EXIT=7", "{client} exits with the shell's code");
        tmux(&["kill-server"]);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_port_forward_serves_a_pods_loopback_http_on_a_local_port() {
    let (agent, _) = agent_with("kpf", &[("static-web", web("static-web", "hello-from-the-pod"))]).await;
    let pod = agent.pod("static-web");
    let kubectl = Kubectl::of(&agent);
    // kubectl 1.32 tunnels SPDY through a WebSocket; older ones (and the API server) speak SPDY.
    for tunnel in ["true", "false"] {
        let local = free_port();
        let mut forward = kubectl
            .command(&["port-forward", &format!("pod/{pod}"), &format!("{local}:8080")])
            .env("KUBECTL_PORT_FORWARD_WEBSOCKETS", tunnel)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        for _ in 0..3 {
            let page = wait_for(Duration::from_secs(20), "the forwarded page", || async { http_get(local, "/") }).await;
            assert!(page.contains("hello-from-the-pod"), "websocket={tunnel}: {page}");
        }
        forward.kill().unwrap();
        forward.wait().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_cp_copies_files_into_and_out_of_a_container() {
    let (agent, _) = agent_with("kcp", &[("files", sleeper("files", 3600, ""))]).await;
    let pod = agent.pod("files");
    let kubectl = Kubectl::of(&agent);
    let dir = tempfile::tempdir().unwrap();
    // Big enough that a stream without flow control would stall.
    let payload: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    let local = dir.path().join("payload.bin");
    std::fs::write(&local, &payload).unwrap();
    let copied_in = kubectl.run(&["cp", local.to_str().unwrap(), &format!("{pod}:/tmp/payload.bin")], b"", &[]);
    assert!(copied_in.status.success(), "kubectl cp in: {}", text(&copied_in.stderr));
    let size = kubectl.run(&["exec", &pod, "--", "wc", "-c", "/tmp/payload.bin"], b"", &[]);
    assert_eq!(text(&size.stdout).split_whitespace().next(), Some(payload.len().to_string().as_str()));

    let back = dir.path().join("back.bin");
    let copied_out = kubectl.run(&["cp", &format!("{pod}:/tmp/payload.bin"), back.to_str().unwrap()], b"", &[]);
    assert!(copied_out.status.success(), "kubectl cp out: {}", text(&copied_out.stderr));
    assert!(std::fs::read(&back).unwrap() == payload, "the file comes back byte for byte");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_staticlet_cli_execs_attaches_forwards_and_copies_over_the_socket() {
    let echo = yaml!(
        r#"
        apiVersion: v1
        kind: Pod
        metadata:
          name: echo
        spec:
          containers:
          - name: cat
            image: {BUSYBOX}
            imagePullPolicy: Never
            stdin: true
            command: [cat]
        "#,
        BUSYBOX,
    );
    let (agent, _) =
        agent_with("cli", &[("shell", sleeper("shell", 3600, "")), ("echo", echo), ("web", web("web", "cli-forwarded"))]).await;
    let (shell, web) = (agent.pod("shell"), agent.pod("web"));

    let output = staticlet(&agent, &["exec", &shell], &["sh", "-c", "echo via-cli; exit 4"]);
    assert_eq!(output.status.code(), Some(4), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "via-cli\n");
    assert!(text(&output.stderr).contains("command terminated with exit code 4"));

    // Without the token file (another root dir), the agent refuses.
    let elsewhere = tempfile::tempdir().unwrap();
    std::fs::write(elsewhere.path().join("api-token"), "not-the-token\n").unwrap();
    let refused = Command::new(env!("CARGO_BIN_EXE_staticlet"))
        .args([
            "exec",
            &shell,
            "--root-dir",
            elsewhere.path().to_str().unwrap(),
            "--api-socket",
            agent.socket.to_str().unwrap(),
            "--",
            "true",
        ])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(text(&refused.stderr).contains("Unauthorized"), "{}", text(&refused.stderr));

    // attach joins the container's own stdin and stdout.
    let mut attach = agent
        .cli(&["attach", "-i", &agent.pod("echo")], &[])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    attach.stdin.as_mut().unwrap().write_all(b"ping through attach\n").unwrap();
    let mut stdout = attach.stdout.take().unwrap();
    let echoed = tokio::task::spawn_blocking(move || {
        let mut seen = Vec::new();
        let mut buffer = [0u8; 256];
        while !String::from_utf8_lossy(&seen).contains("ping through attach") {
            match std::io::Read::read(&mut stdout, &mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buffer[..n]),
            }
        }
        String::from_utf8_lossy(&seen).into_owned()
    });
    let echoed = tokio::time::timeout(Duration::from_secs(20), echoed).await.expect("attach echoes within 20 s").unwrap();
    assert!(echoed.contains("ping through attach"), "{echoed}");
    attach.kill().unwrap();
    attach.wait().unwrap();

    // port-forward prints kubectl's lines and serves the pod's loopback port.
    let local = free_port();
    let mut forward =
        agent.cli(&["port-forward", &web, &format!("{local}:8080")], &[]).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let page = wait_for(Duration::from_secs(20), "the page through staticlet port-forward", || async { http_get(local, "/") }).await;
    assert!(page.contains("cli-forwarded"), "{page}");
    forward.kill().unwrap();
    forward.wait().unwrap();
    let mut said = String::new();
    std::io::Read::read_to_string(forward.stdout.as_mut().unwrap(), &mut said).unwrap();
    assert!(said.contains(&format!("Forwarding from 127.0.0.1:{local} -> 8080")), "{said}");

    // cp in and out, a directory tree.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("tree/sub")).unwrap();
    std::fs::write(dir.path().join("tree/a.txt"), "alpha").unwrap();
    std::fs::write(dir.path().join("tree/sub/b.txt"), "beta").unwrap();
    let copied = staticlet(&agent, &["cp", dir.path().join("tree").to_str().unwrap(), &format!("{shell}:/tmp/tree")], &[]);
    assert!(copied.status.success(), "{}", text(&copied.stderr));
    let listed = staticlet(&agent, &["exec", &shell], &["cat", "/tmp/tree/a.txt", "/tmp/tree/sub/b.txt"]);
    assert_eq!(text(&listed.stdout), "alphabeta");
    let copied = staticlet(&agent, &["cp", &format!("{shell}:/tmp/tree"), dir.path().join("back").to_str().unwrap()], &[]);
    assert!(copied.status.success(), "{}", text(&copied.stderr));
    assert_eq!(std::fs::read_to_string(dir.path().join("back/sub/b.txt")).unwrap(), "beta");
}

/// A CA and client certificates signed by it, for the kubelet port's tests.
struct Pki {
    ca: rcgen::CertificateParams,
    ca_key: rcgen::KeyPair,
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, "test-client-ca");
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.crt"), params.self_signed(&ca_key).unwrap().pem()).unwrap();
        Pki { ca: params, ca_key, dir }
    }

    fn ca_file(&self) -> std::path::PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// A client certificate for `user` in `group`: (certificate PEM, key PEM).
    fn client(&self, user: &str, group: &str) -> (String, String) {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, user);
        params.distinguished_name.push(rcgen::DnType::OrganizationName, group);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let key = rcgen::KeyPair::generate().unwrap();
        let issuer = rcgen::Issuer::from_params(&self.ca, &self.ca_key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// A TLS client of the kubelet port that trusts the agent's self-signed certificate and
/// presents `identity` if given.
fn tls_client(agent: &Agent, identity: Option<&(String, String)>) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(agent.root.join("pki/staticlet.crt")).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    match identity {
        Some((cert, key)) => {
            let chain = CertificateDer::pem_slice_iter(cert.as_bytes()).collect::<Result<Vec<_>, _>>().unwrap();
            builder.with_client_auth_cert(chain, PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap()).unwrap()
        }
        None => builder.with_no_client_auth(),
    }
}

/// GET `path` on the kubelet port: (status, body).
async fn kubelet_get(config: &rustls::ClientConfig, port: u16, path: &str, token: Option<&str>) -> (u16, String) {
    let client = reqwest::Client::builder().use_preconfigured_tls(config.clone()).build().unwrap();
    let mut request = client.get(format!("https://localhost:{port}{path}"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// Execs `command` through the kubelet port's `/exec` over WebSocket (v4.channel.k8s.io, as a
/// proxying API server may): (stdout, the error channel's Status).
async fn kubelet_exec(
    config: &rustls::ClientConfig,
    port: u16,
    pod: &str,
    command: &[&str],
    token: Option<&str>,
) -> Result<(String, Value), u16> {
    let query: String = command.iter().map(|c| format!("command={}&", urlencode(c))).collect();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let tls =
        tokio_rustls::TlsConnector::from(Arc::new(config.clone())).connect(ServerName::try_from("localhost").unwrap(), tcp).await.unwrap();
    let mut request = http::Request::builder()
        .uri(format!("wss://localhost:{port}/exec/default/{pod}/main?{query}output=1&error=1"))
        .header("Host", format!("localhost:{port}"))
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "13")
        .header("Sec-WebSocket-Key", tokio_tungstenite::tungstenite::handshake::client::generate_key())
        .header("Sec-WebSocket-Protocol", "v4.channel.k8s.io");
    if let Some(token) = token {
        request = request.header("Authorization", format!("Bearer {token}"));
    }
    let (mut socket, _) = match tokio_tungstenite::client_async(request.body(()).unwrap(), tls).await {
        Ok(connected) => connected,
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => return Err(response.status().as_u16()),
        Err(e) => panic!("exec over the kubelet port: {e}"),
    };
    let (mut stdout, mut status) = (String::new(), Value::Null);
    while let Some(Ok(message)) = socket.next().await {
        if let Message::Binary(data) = message
            && let Some((&channel, payload)) = data.split_first()
        {
            match channel {
                1 => stdout.push_str(&String::from_utf8_lossy(payload)),
                3 if !payload.is_empty() => status = serde_json::from_slice(payload).unwrap(),
                _ => {}
            }
        }
    }
    let _ = socket.close(None).await;
    Ok((stdout, status))
}

fn urlencode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_kubelet_port_serves_logs_and_exec_to_clients_of_the_client_ca_only() {
    docker().await;
    let pki = Pki::new();
    let port = free_port();
    let mut agent = Agent::new("kubelet-tls");
    agent.write(
        "talker.yaml",
        &sleeper("talker", 3600, "").replace("command: [sleep, '3600']", "command: [sh, -c, 'echo spoken; exec sleep 3600']"),
    );
    agent.start_with(&["--port", &port.to_string(), "--client-ca-file", pki.ca_file().to_str().unwrap()]);
    agent.wait_reported_running(&["talker"]).await;
    let pod = agent.pod("talker");

    let apiserver = pki.client("kube-apiserver-kubelet-client", "system:masters");
    let trusted = tls_client(&agent, Some(&apiserver));
    let (code, logs) = kubelet_get(&trusted, port, &format!("/containerLogs/default/{pod}/main"), None).await;
    assert_eq!((code, logs.as_str()), (200, "spoken\n"));
    let (code, pods) = kubelet_get(&trusted, port, "/pods", None).await;
    assert_eq!(code, 200);
    assert!(pods.contains(&pod));
    let (stdout, status) = kubelet_exec(&trusted, port, &pod, &["sh", "-c", "echo over-tls; exit 6"], None).await.unwrap();
    assert_eq!(stdout, "over-tls\n");
    assert_eq!(status["reason"], "NonZeroExitCode");
    assert_eq!(status["details"]["causes"][0]["message"], "6");

    // No certificate, no token: 401 for reads and exec alike.
    let anonymous = tls_client(&agent, None);
    assert_eq!(kubelet_get(&anonymous, port, &format!("/containerLogs/default/{pod}/main"), None).await.0, 401);
    assert_eq!(kubelet_exec(&anonymous, port, &pod, &["true"], None).await.unwrap_err(), 401);
    // A certificate of another CA does not get through the handshake.
    let stranger = Pki::new().client("mallory", "system:masters");
    let untrusted = tls_client(&agent, Some(&stranger));
    let client = reqwest::Client::builder().use_preconfigured_tls(untrusted).build().unwrap();
    assert!(client.get(format!("https://localhost:{port}/pods")).send().await.is_err());
    // The agent's own token works here too.
    let token = std::fs::read_to_string(agent.root.join("api-token")).unwrap();
    assert_eq!(kubelet_get(&anonymous, port, "/pods", Some(token.trim())).await.0, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_on_the_kubelet_port_are_reviewed_and_authorized_by_the_api_server() {
    docker().await;
    let apiserver = ApiServer::start().await;
    apiserver.accept_token("alice-token", "alice", &["ops"]);
    apiserver.accept_token("bob-token", "bob", &["dev"]);
    apiserver.allow("alice");
    let port = free_port();
    let mut agent = Agent::new("kubelet-webhook");
    agent.write("quiet.yaml", &sleeper("quiet", 3600, ""));
    let kubeconfig = apiserver.kubeconfig(&agent.node);
    agent.start_with(&["--kubeconfig", kubeconfig.to_str().unwrap(), "--port", &port.to_string(), "--authentication-token-webhook"]);
    agent.wait_reported_running(&["quiet"]).await;
    let pod = agent.pod("quiet");
    let client = tls_client(&agent, None);

    let (code, _) = kubelet_get(&client, port, "/pods", Some("alice-token")).await;
    assert_eq!(code, 200, "alice is vouched for and allowed");
    let (stdout, status) = kubelet_exec(&client, port, &pod, &["echo", "alice-was-here"], Some("alice-token")).await.unwrap();
    assert_eq!((stdout.as_str(), status["status"].as_str()), ("alice-was-here\n", Some("Success")));
    let (code, body) = kubelet_get(&client, port, "/pods", Some("bob-token")).await;
    assert_eq!(code, 403, "bob is known but not allowed: {body}");
    assert!(body.contains("User \\\"bob\\\" cannot get resource \\\"nodes/proxy\\\""), "{body}");
    assert_eq!(kubelet_get(&client, port, "/pods", Some("nobody-token")).await.0, 401);

    let reviews = apiserver.access_reviews();
    let exec = reviews.iter().find(|r| r["spec"]["resourceAttributes"]["verb"] == "create").expect("exec was authorized");
    assert_eq!(exec["spec"]["user"], "alice");
    assert_eq!(exec["spec"]["groups"][0], "ops");
    let attributes = &exec["spec"]["resourceAttributes"];
    assert_eq!((attributes["resource"].as_str(), attributes["subresource"].as_str()), (Some("nodes"), Some("proxy")));
    assert_eq!(attributes["name"].as_str(), Some(agent.node.as_str()));
}
