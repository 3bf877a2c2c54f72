//! Against the real kubectl, when one is on PATH: a loopback "API server" that answers just
//! enough discovery and the pod, and serves exec and port-forward with this crate. Each
//! transport kubectl can pick is forced in turn with its environment switches.

use std::process::Stdio;
use std::sync::Mutex;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use super::*;

const API_RESOURCES: &str = r#"{"kind":"APIResourceList","groupVersion":"v1","resources":[
 {"name":"pods","singularName":"pod","namespaced":true,"kind":"Pod","verbs":["get","list"],"shortNames":["po"]},
 {"name":"pods/exec","singularName":"","namespaced":true,"kind":"PodExecOptions","verbs":["create","get"]},
 {"name":"pods/attach","singularName":"","namespaced":true,"kind":"PodAttachOptions","verbs":["create","get"]},
 {"name":"pods/portforward","singularName":"","namespaced":true,"kind":"PodPortForwardOptions","verbs":["create","get"]}]}"#;

const POD: &str = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"default","uid":"1234"},
 "spec":{"containers":[{"name":"c","image":"busybox"}]},"status":{"phase":"Running"}}"#;

fn json(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn exec_options(uri: &http::Uri) -> RemoteCommandOptions {
    let mut options = RemoteCommandOptions::default();
    for (name, value) in form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes()) {
        let on = value == "true" || value == "1";
        match name.as_ref() {
            "stdin" => options.stdin = on,
            "stdout" => options.stdout = on,
            "stderr" => options.stderr = on,
            "tty" => options.tty = on,
            _ => {}
        }
    }
    options
}

/// stdin back on stdout, a line on stderr, exit code 3.
async fn echo_command(streams: RemoteStreams) -> Outcome {
    if let (Some(mut stdin), Some(mut stdout)) = (streams.stdin, streams.stdout)
        && let Err(error) = tokio::io::copy(&mut stdin, &mut stdout).await
    {
        return Outcome::Failed(error.to_string());
    }
    if let Some(mut stderr) = streams.stderr {
        let _ = stderr.write_all(b"to stderr\n").await;
    }
    Outcome::Exited(3)
}

struct Cluster {
    dir: tempfile::TempDir,
    upgrades: Arc<Mutex<Vec<String>>>,
}

impl Cluster {
    async fn start() -> Cluster {
        let echo = echo_server().await;
        let upgrades = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&upgrades);
        let addr = server(move |request| {
            let path = request.uri().path().to_owned();
            match path.as_str() {
                "/api" => json(StatusCode::OK, r#"{"kind":"APIVersions","versions":["v1"],"serverAddressByClientCIDRs":[]}"#),
                "/apis" => json(StatusCode::OK, r#"{"kind":"APIGroupList","apiVersion":"v1","groups":[]}"#),
                "/api/v1" => json(StatusCode::OK, API_RESOURCES),
                "/api/v1/namespaces/default/pods/p" => json(StatusCode::OK, POD),
                "/api/v1/namespaces/default/pods/p/exec" | "/api/v1/namespaces/default/pods/p/portforward" => {
                    let upgrade = request.headers().get(http::header::UPGRADE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
                    seen.lock().unwrap().push(upgrade);
                    if path.ends_with("/exec") {
                        let options = exec_options(request.uri());
                        answer(remote_command(request, options, echo_command))
                    } else {
                        answer(port_forward(request, connector(echo)))
                    }
                }
                _ => {
                    json(StatusCode::NOT_FOUND, r#"{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}"#)
                }
            }
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://{addr}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    namespace: default\ncurrent-context: c\n"
        );
        std::fs::write(dir.path().join("kubeconfig"), kubeconfig).unwrap();
        Cluster { dir, upgrades }
    }

    fn kubectl(&self, websockets: bool) -> Command {
        let mut command = Command::new("kubectl");
        command
            .arg("--kubeconfig")
            .arg(self.dir.path().join("kubeconfig"))
            .arg("--cache-dir")
            .arg(self.dir.path().join("cache"))
            .env("HOME", self.dir.path())
            .env_remove("KUBECONFIG")
            .env("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", websockets.to_string())
            .env("KUBECTL_PORT_FORWARD_WEBSOCKETS", websockets.to_string())
            .kill_on_drop(true);
        command
    }

    fn last_upgrade(&self) -> String {
        self.upgrades.lock().unwrap().last().cloned().unwrap_or_default()
    }
}

fn kubectl_present() -> bool {
    let found = std::process::Command::new("kubectl")
        .args(["version", "--client"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        eprintln!("kubectl is not on PATH: the real-client tests have nothing to drive");
    }
    found
}

#[tokio::test]
async fn kubectl_exec_over_websocket_and_spdy() {
    if !kubectl_present() {
        return;
    }
    let cluster = Cluster::start().await;
    for (websockets, transport) in [(true, "websocket"), (false, "SPDY/3.1")] {
        let mut child = cluster
            .kubectl(websockets)
            .args(["exec", "-i", "p", "--", "cat"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Megabytes each way (kubectl cp's traffic), written while kubectl's output is read.
        let payload = pattern(3 * 1024 * 1024);
        let mut stdin = child.stdin.take().unwrap();
        let input = payload.clone();
        tokio::spawn(async move {
            stdin.write_all(&input).await.unwrap();
        });
        let output = tokio::time::timeout(PATIENCE, child.wait_with_output()).await.expect("kubectl exec hung").unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(cluster.last_upgrade(), transport);
        assert!(output.stdout == payload, "{transport}: {} of {} bytes back; {stderr}", output.stdout.len(), payload.len());
        assert!(stderr.contains("to stderr"), "{transport}: {stderr}");
        assert_eq!(output.status.code(), Some(3), "{transport}: {stderr}");
    }
}

#[tokio::test]
async fn kubectl_port_forward_over_websocket_and_spdy() {
    if !kubectl_present() {
        return;
    }
    let cluster = Cluster::start().await;
    for (websockets, transport) in [(true, "websocket"), (false, "SPDY/3.1")] {
        let mut child =
            cluster.kubectl(websockets).args(["port-forward", "p", ":80"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let local = loop {
            let line = tokio::time::timeout(PATIENCE, lines.next_line()).await.expect("kubectl port-forward printed nothing").unwrap();
            let line = line.unwrap_or_else(|| panic!("kubectl port-forward ended ({transport})"));
            if let Some(rest) = line.strip_prefix("Forwarding from 127.0.0.1:") {
                break rest.split(' ').next().unwrap().parse::<u16>().unwrap();
            }
        };
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        // Two connections in turn over the one upgraded connection, one of them megabytes.
        for size in [3 * 1024 * 1024, 10] {
            let mut stream = TcpStream::connect(("127.0.0.1", local)).await.unwrap();
            let payload = pattern(size);
            let (mut read, mut write) = stream.split();
            let send = async {
                write.write_all(&payload).await.unwrap();
                write.shutdown().await.unwrap();
            };
            let mut echoed = Vec::new();
            let receive = read.read_to_end(&mut echoed);
            let ((), received) = tokio::time::timeout(PATIENCE, async { tokio::join!(send, receive) }).await.expect("port-forward stalled");
            received.unwrap();
            assert!(echoed == payload, "{transport}: echoed {} of {} bytes", echoed.len(), payload.len());
        }
        assert_eq!(cluster.last_upgrade(), transport);
        child.kill().await.unwrap();
    }
}
