//! Security (issue 10, point 7): the API is the agent's user's alone and read-only, its TCP port
//! stays on loopback unless `--address` says otherwise and serves exec, attach and port-forward
//! to loopback clients only, and a manifest cannot reach outside `--root-dir` through its name,
//! an `emptyDir` or a `subPath`. What plugins cannot reach is shown in
//! `host/plugin/tests/sandbox.rs`, against the real wasm components.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::support::images::BUSYBOX;
use crate::support::{Agent, container_status, docker, free_port, http_get, sleeper, wait_for, yaml};

/// An address of this machine other than loopback: the Docker bridge's, which every test
/// machine has.
fn non_loopback_address() -> String {
    let out = std::process::Command::new("ip").args(["-4", "-o", "addr", "show", "docker0"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let cidr = text.split_whitespace().skip_while(|w| *w != "inet").nth(1).expect("docker0 has an IPv4 address");
    cidr.split('/').next().unwrap().to_owned()
}

fn reachable(address: &str, port: u16) -> bool {
    std::net::TcpStream::connect_timeout(&format!("{address}:{port}").parse().unwrap(), Duration::from_secs(2)).is_ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_is_the_agents_users_alone_loopback_only_and_read_only() {
    let _docker = docker().await;
    let mut agent = Agent::new("sec-api");
    agent.write("web.yaml", &sleeper("web", 100_000, ""));
    let port = free_port();
    agent.start_with(&["--read-only-port", &port.to_string()]);
    agent.wait_reported_running(&["web"]).await;

    let socket = std::fs::metadata(&agent.socket).unwrap();
    assert_eq!(socket.permissions().mode() & 0o777, 0o600, "the API socket is 0600");
    let me = std::fs::metadata("/proc/self").unwrap().uid();
    assert_eq!(socket.uid(), me, "the API socket belongs to the agent's user");

    assert!(http_get(port, "/healthz").is_some(), "the read-only port answers on loopback");
    assert!(!reachable(&non_loopback_address(), port), "the read-only port is not on other addresses");

    let pod = format!("/api/v1/namespaces/default/pods/{}", agent.pod("web"));
    for (method, path) in [
        ("POST", "/api/v1/namespaces/default/pods"),
        ("PUT", pod.as_str()),
        ("PATCH", pod.as_str()),
        ("DELETE", pod.as_str()),
        ("DELETE", "/api/v1/namespaces/default/pods"),
        ("POST", &format!("{pod}/eviction")),
        ("PUT", &format!("{pod}/status")),
    ] {
        let (code, status) = agent.api(method, path).await.unwrap();
        assert_eq!(code, 405, "{method} {path}: {status}");
        assert_eq!(status["kind"], "Status", "{method} {path}");
    }
    assert_eq!(agent.api("GET", "/api/v1/pods").await.unwrap().1["items"].as_array().unwrap().len(), 1, "nothing was changed");
}

#[tokio::test(flavor = "multi_thread")]
async fn address_opens_the_read_only_port_beyond_loopback() {
    let _docker = docker().await;
    let mut agent = Agent::new("sec-address");
    let port = free_port();
    agent.start_with(&["--read-only-port", &port.to_string(), "--address", "0.0.0.0"]);
    let address = non_loopback_address();
    wait_for(Duration::from_secs(30), "the read-only port on every address", || async { reachable(&address, port).then_some(()) }).await;
}

/// A WebSocket in the channel protocol exec, attach and port-forward speak (`v4.channel.k8s.io`).
type Channels = WebSocketStream<tokio::net::TcpStream>;

/// Opens `path` on the read-only port at `address` as kubectl opens exec, attach and
/// port-forward (a WebSocket upgrade), with the agent's token if given: the socket, or the
/// status the upgrade was refused with.
async fn open_channels(address: SocketAddr, path: &str, token: Option<&str>) -> Result<Channels, u16> {
    let mut request = format!("ws://{address}{path}").into_client_request().unwrap();
    request.headers_mut().insert("Sec-WebSocket-Protocol", "v4.channel.k8s.io".parse().unwrap());
    if let Some(token) = token {
        request.headers_mut().insert("Authorization", format!("Bearer {token}").parse().unwrap());
    }
    let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    match tokio_tungstenite::client_async(request, tcp).await {
        Ok((socket, _)) => Ok(socket),
        Err(tungstenite::Error::Http(response)) => Err(response.status().as_u16()),
        Err(e) => panic!("{path} on {address}: {e}"),
    }
}

/// Reads `socket` until `done` holds for what each channel (a message's first byte) has
/// carried, or the agent ends the stream.
async fn read_channels(socket: &mut Channels, done: impl Fn(&HashMap<u8, Vec<u8>>) -> bool) -> HashMap<u8, Vec<u8>> {
    let mut channels: HashMap<u8, Vec<u8>> = HashMap::new();
    while !done(&channels) {
        match tokio::time::timeout(Duration::from_secs(20), socket.next()).await.expect("the agent answers within 20 s") {
            Some(Ok(Message::Binary(data))) => {
                if let Some((&channel, payload)) = data.split_first() {
                    channels.entry(channel).or_default().extend_from_slice(payload);
                }
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => break,
        }
    }
    channels
}

/// What channel `channel` carried, as text.
fn channel_text(channels: &HashMap<u8, Vec<u8>>, channel: u8) -> String {
    String::from_utf8_lossy(channels.get(&channel).map(Vec::as_slice).unwrap_or_default()).into_owned()
}

/// `method path` on the read-only port at `address`, with `token` if given: the status code and
/// the body.
async fn request(method: reqwest::Method, address: SocketAddr, path: &str, token: Option<&str>) -> (u16, String) {
    let mut request = reqwest::Client::new().request(method, format!("http://{address}{path}"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_read_only_port_serves_exec_attach_and_port_forward_to_loopback_clients_only() {
    let _docker = docker().await;
    let mut agent = Agent::new("sec-streaming");
    // A web server on the pod's own loopback (for exec and port-forward) and a cat that echoes
    // its stdin (for attach).
    let tools = yaml!(
        r#"
        apiVersion: v1
        kind: Pod
        metadata:
          name: tools
        spec:
          containers:
          - name: web
            image: {BUSYBOX}
            imagePullPolicy: Never
            command: [sh, -c, 'echo serving; exec httpd -f -p 127.0.0.1:8080 -h /www']
          - name: cat
            image: {BUSYBOX}
            imagePullPolicy: Never
            stdin: true
            command: [cat]
        "#,
        BUSYBOX,
    );
    agent.write("tools.yaml", &tools);
    let port = free_port();
    // On every address, so that one agent has clients on loopback and elsewhere.
    agent.start_with(&["--read-only-port", &port.to_string(), "--address", "0.0.0.0"]);
    agent.wait_reported_running(&["tools"]).await;
    let token = std::fs::read_to_string(agent.root.join("api-token")).unwrap().trim().to_owned();
    let name = agent.pod("tools");
    let pod = format!("/api/v1/namespaces/default/pods/{name}");
    let local = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
    // This machine's Docker bridge address: the agent sees the client at that address, not on
    // loopback, as it would see a client on another machine.
    let remote = SocketAddr::new(non_loopback_address().parse().unwrap(), port);
    let verbs = [
        ("exec", format!("{pod}/exec?container=web&command=sh&command=-c&command=echo%20from-loopback&stdout=true")),
        ("attach", format!("{pod}/attach?container=cat&stdin=true&stdout=true")),
        ("portforward", format!("{pod}/portforward?ports=8080")),
    ];

    // Not from elsewhere, even with the token: 403 and why, whether the request is a GET (as
    // for WebSocket) or a POST (as for SPDY); without the token, 401 before that.
    for (verb, path) in &verbs {
        let why = format!(
            "{verb} is served on the plain-HTTP port only to clients on this host, since its token would cross the network in clear; use the kubelet port (--port, TLS) from elsewhere"
        );
        for method in [reqwest::Method::GET, reqwest::Method::POST] {
            let (code, body) = request(method.clone(), remote, path, Some(&token)).await;
            assert_eq!(code, 403, "{method} {verb}: {body}");
            let status: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(
                (status["kind"].as_str(), status["status"].as_str(), status["code"].as_u64()),
                (Some("Status"), Some("Failure"), Some(403))
            );
            assert_eq!((status["reason"].as_str(), status["message"].as_str()), (Some("Forbidden"), Some(why.as_str())), "{method} {verb}");
            assert_eq!((status["details"]["name"].as_str(), status["details"]["kind"].as_str()), (Some(name.as_str()), Some("pods")));
            let (code, body) = request(method.clone(), remote, path, None).await;
            let status: Value = serde_json::from_str(&body).unwrap();
            assert_eq!((code, status["reason"].as_str()), (401, Some("Unauthorized")), "{method} {verb} without the token: {body}");
        }
        // A client that upgrades, as kubectl does, gets no further.
        assert_eq!(open_channels(remote, path, Some(&token)).await.err(), Some(403), "{verb} over WebSocket");
    }
    // Restarting a pod is the socket's alone, from either address.
    for address in [remote, local] {
        let restart = format!("/staticlet/v1/namespaces/default/pods/{name}/restart");
        let (code, body) = request(reqwest::Method::POST, address, &restart, Some(&token)).await;
        let status: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            (code, status["message"].as_str()),
            (403, Some("pods are restarted only through the agent's local socket")),
            "{address}"
        );
    }
    // Reads are served to it, token or not.
    assert_eq!(request(reqwest::Method::GET, remote, "/healthz", None).await, (200, "ok".to_owned()));
    let (code, pods) = request(reqwest::Method::GET, remote, "/pods", None).await;
    assert!(code == 200 && pods.contains(&name), "{code}: {pods}");
    let log = format!("{pod}/log?container=web");
    wait_for(Duration::from_secs(30), "the web container's log from elsewhere", || async {
        (request(reqwest::Method::GET, remote, &log, None).await == (200, "serving\n".to_owned())).then_some(())
    })
    .await;

    // From loopback, with the token, each of them works.
    let mut exec = open_channels(local, &verbs[0].1, Some(&token)).await.expect("exec from loopback");
    let ran = read_channels(&mut exec, |_| false).await;
    assert_eq!(channel_text(&ran, 1), "from-loopback\n", "the command's stdout");
    let status: Value = serde_json::from_slice(ran.get(&3).expect("a status on the error channel")).unwrap();
    assert_eq!(status["status"], "Success", "{status}");

    let mut attach = open_channels(local, &verbs[1].1, Some(&token)).await.expect("attach from loopback");
    attach.send(Message::binary(b"\x00ping over loopback\n".to_vec())).await.unwrap();
    let echoed = read_channels(&mut attach, |c| channel_text(c, 1).contains('\n')).await;
    assert_eq!(channel_text(&echoed, 1), "ping over loopback\n", "cat's stdout, through attach");
    attach.close(None).await.unwrap();

    let mut forward = open_channels(local, &verbs[2].1, Some(&token)).await.expect("port-forward from loopback");
    // The data channel first says its port, little-endian; then it carries the connection.
    let opened = read_channels(&mut forward, |c| c.get(&0).is_some_and(|data| data.len() >= 2)).await;
    assert_eq!(opened[&0][..2], 8080u16.to_le_bytes());
    forward.send(Message::binary(b"\x00GET / HTTP/1.0\r\n\r\n".to_vec())).await.unwrap();
    let page = read_channels(&mut forward, |c| channel_text(c, 0).contains("hello from staticlet")).await;
    assert!(channel_text(&page, 0).contains(" 200 OK"), "{}", channel_text(&page, 0));
    forward.close(None).await.unwrap();

    // Without the token, not from loopback either.
    assert_eq!(open_channels(local, &verbs[0].1, None).await.err(), Some(401));
}

/// The waiting state of container `name` once the agent gave up creating it.
async fn config_error(agent: &Agent, pod: &str, container: &str) -> Value {
    wait_for(Duration::from_secs(60), &format!("{pod}/{container} to fail its config"), || async {
        let status = agent.pod_status(pod).await?;
        let waiting = container_status(&status, container)?["state"]["waiting"].clone();
        (waiting["reason"] == "CreateContainerConfigError").then_some(waiting)
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_manifest_cannot_reach_outside_the_root_dir() {
    let docker = docker().await;
    let mut agent = Agent::new("sec-escape");
    // An init container plants a symlink to / in an emptyDir; the app asks for it as a subPath.
    agent.write(
        "symlink.yaml",
        &yaml!(
            r#"
            apiVersion: v1
            kind: Pod
            metadata:
              name: symlink
            spec:
              volumes:
              - name: data
                emptyDir: {}
              initContainers:
              - name: plant
                image: {BUSYBOX}
                imagePullPolicy: Never
                command: [ln, -s, /, /data/escape]
                volumeMounts:
                - {name: data, mountPath: /data}
              containers:
              - name: main
                image: {BUSYBOX}
                imagePullPolicy: Never
                command: [sleep, '100000']
                volumeMounts:
                - {name: data, mountPath: /host, subPath: escape}
            "#,
            BUSYBOX,
        ),
    );
    // A subPathExpr that passes validation and expands to `../..`.
    agent.write(
        "expr.yaml",
        &yaml!(
            r#"
            apiVersion: v1
            kind: Pod
            metadata:
              name: expr
            spec:
              volumes:
              - name: data
                emptyDir: {}
              containers:
              - name: main
                image: {BUSYBOX}
                imagePullPolicy: Never
                command: [sleep, '100000']
                env:
                - {name: UP, value: '..'}
                volumeMounts:
                - {name: data, mountPath: /host, subPathExpr: '$(UP)/$(UP)'}
            "#,
            BUSYBOX,
        ),
    );
    // A name and a UID made to climb out of the pods directory.
    let climb = yaml!(
        r#"
        apiVersion: v1
        kind: Pod
        metadata:
          name: climb
          uid: ../../../escaped
        spec:
          containers:
          - name: main
            image: {BUSYBOX}
            imagePullPolicy: Never
            command: [sleep, '100000']
        "#,
        BUSYBOX,
    );
    agent.write("climb.yaml", &climb);
    agent.write("slash.yaml", &sleeper("a/../../b", 100_000, ""));
    agent.start();

    let waiting = config_error(&agent, "symlink", "main").await;
    assert!(waiting["message"].as_str().unwrap().contains("resolves outside the volume"), "{waiting}");
    let waiting = config_error(&agent, "expr", "main").await;
    assert!(waiting["message"].as_str().unwrap().contains("without '..'"), "{waiting}");
    let log = agent.log();
    assert!(log.lines().any(|l| l.contains("climb.yaml") && l.contains("metadata.uid: Invalid value")), "{log}");
    assert!(log.lines().any(|l| l.contains("slash.yaml") && l.contains("metadata.name: Invalid value")), "{log}");

    let mains = crate::support::containers(&docker, &agent.node, &[("io.kubernetes.container.name", "main")]).await;
    assert!(mains.is_empty(), "no app container was created: {}", mains.len());
    let root_parent = agent.root.parent().unwrap();
    let outside: Vec<_> = std::fs::read_dir(root_parent).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(!outside.iter().any(|n| n.to_string_lossy().contains("escaped")), "nothing written beside the root dir: {outside:?}");
    assert!(!agent.root.join("escaped").exists() && !std::path::Path::new("/escaped").exists());
}
