//! Security (issue 10, point 7): the API is the agent's user's alone and read-only, its TCP port
//! stays on loopback unless `--address` says otherwise, and a manifest cannot reach outside
//! `--root-dir` through its name, an `emptyDir` or a `subPath`. What plugins cannot reach is
//! shown in `host/plugin/tests/sandbox.rs`, against the real wasm components.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::Duration;

use serde_json::Value;

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
