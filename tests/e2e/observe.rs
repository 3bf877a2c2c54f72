//! The local API, the CLI and observability (issue 6): the real `kubectl` against a running
//! agent's read-only port, the `staticlet` CLI against its socket, `/metrics` parsed as a
//! scraper parses it, JSON logs, and systemd's readiness protocol on a real datagram socket.

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixDatagram;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

use crate::support::images::BUSYBOX;
use crate::support::{Agent, docker, free_port, http_get, http_get_with, running, wait_for, yaml};

const START: Duration = Duration::from_secs(60);

/// A pod that says hello, then ticks once a second; `extra_spec` is YAML added to its `spec:`.
fn ticking(name: &str, extra_spec: &str) -> String {
    yaml!(
        r#"
        apiVersion: v1
        kind: Pod
        metadata:
          name: {name}
          labels: {app: {name}}
        spec:
          containers:
          - name: app
            image: {BUSYBOX}
            command: [sh, -c, 'echo hello from {name}; i=0; while true; do echo tick $i; i=$((i+1)); sleep 1; done']
          {extra_spec}
        "#,
        name,
        BUSYBOX,
        extra_spec,
    )
}

async fn running_pod(agent: &Agent, name: &str) -> Value {
    wait_for(START, &format!("pod {name} to run"), || async {
        let pod = agent.pod_status(name).await?;
        (pod["status"]["phase"] == "Running" && pod["status"]["containerStatuses"][0]["ready"] == true).then_some(pod)
    })
    .await
}

/// `kubectl` against the agent's read-only port, with a home of its own (no kubeconfig, its
/// own discovery cache).
pub(crate) struct Kubectl {
    server: String,
    home: tempfile::TempDir,
}

impl Kubectl {
    pub(crate) fn new(port: u16) -> Kubectl {
        Kubectl { server: format!("http://127.0.0.1:{port}"), home: tempfile::tempdir().unwrap() }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("kubectl");
        command.env("HOME", self.home.path()).env_remove("KUBECONFIG").arg("--server").arg(&self.server).args(args);
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("kubectl runs (Debian's kubernetes-client, or any kubectl)")
    }

    pub(crate) fn stdout(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(output.status.success(), "kubectl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    }

    fn spawn(&self, args: &[&str]) -> Streaming {
        let child = self.command(args).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
        Streaming::new(child)
    }
}

/// A command whose output arrives over time.
struct Streaming {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: String,
}

impl Streaming {
    fn new(mut child: Child) -> Streaming {
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Streaming { child, lines, seen: String::new() }
    }

    /// Waits for a line containing `text`; returns everything read so far.
    fn until(&mut self, text: &str, timeout: Duration) -> &str {
        let deadline = std::time::Instant::now() + timeout;
        while !self.seen.lines().any(|l| l.contains(text)) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push_str(&line);
                    self.seen.push('\n');
                }
                Err(_) => panic!("no line with {text:?} within {timeout:?}; got:\n{}", self.seen),
            }
        }
        &self.seen
    }
}

impl Drop for Streaming {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn staticlet(agent: &Agent, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_staticlet")).args(args).arg("--api-socket").arg(&agent.socket).output().unwrap()
}

fn staticlet_stdout(agent: &Agent, args: &[&str]) -> String {
    let output = staticlet(agent, args);
    assert!(output.status.success(), "staticlet {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_gets_pods_logs_and_watches_and_cannot_delete() {
    let docker = docker().await;
    let port = free_port();
    let mut agent = Agent::new("kubectl");
    agent.write("web.yaml", &ticking("web", ""));
    // Counts its runs in an emptyDir, so each instance's log differs from the one before.
    agent.write(
        "crash.yaml",
        &yaml!(
            r#"
            apiVersion: v1
            kind: Pod
            metadata: {name: crash}
            spec:
              volumes: [{name: runs, emptyDir: {}}]
              containers:
              - name: app
                image: {BUSYBOX}
                volumeMounts: [{name: runs, mountPath: /runs}]
                command: [sh, -c, 'n=$(( $(cat /runs/n 2>/dev/null || echo 0) + 1 )); echo $n > /runs/n; echo run $n; sleep 5; exit 1']
            "#,
            BUSYBOX,
        ),
    );
    agent.start_with(&["--read-only-port", &port.to_string()]);
    running_pod(&agent, "web").await;
    let web = agent.pod("web");
    let kubectl = Kubectl::new(port);

    let wide = kubectl.stdout(&["get", "pods", "-o", "wide"]);
    let header = wide.lines().next().unwrap();
    for column in ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"] {
        assert!(header.contains(column), "{wide}");
    }
    let row = wide.lines().find(|l| l.starts_with(&web)).unwrap_or_else(|| panic!("{wide}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&cells[1..4], ["1/1", "Running", "0"], "{wide}");
    assert!(cells.contains(&agent.node.as_str()), "{wide}");

    let yaml = kubectl.stdout(&["get", "pod", &web, "-o", "yaml"]);
    for annotation in ["kubernetes.io/config.hash:", "kubernetes.io/config.source: file", "kubernetes.io/config.seen:"] {
        assert!(yaml.contains(annotation), "{yaml}");
    }
    assert!(kubectl.stdout(&["get", "pods", "-l", "app=other"]).is_empty());
    assert!(kubectl.stdout(&["get", "pods", "-A", "-l", "app=web"]).contains(&web));

    let logs = kubectl.stdout(&["logs", &web]);
    assert!(logs.starts_with("hello from web\n"), "{logs}");
    let mut follow = kubectl.spawn(&["logs", "-f", "--tail", "1", &web]);
    let ticks = follow.until("tick", Duration::from_secs(10)).to_owned();
    let first: u32 = ticks.lines().find_map(|l| l.strip_prefix("tick ")?.parse().ok()).unwrap();
    follow.until(&format!("tick {}", first + 2), Duration::from_secs(10));
    drop(follow);

    let stamped = kubectl.stdout(&["logs", "--timestamps", "--tail", "1", &web]);
    let (stamp, line) = stamped.trim_end().split_once(' ').unwrap();
    assert!(stamp.parse::<k8s_openapi::jiff::Timestamp>().is_ok() && line.starts_with("tick"), "{stamped}");

    let crash = agent.pod("crash");
    wait_for(START, "the crashing pod's second run", || async {
        let pod = agent.pod_status("crash").await?;
        let status = &pod["status"]["containerStatuses"][0];
        (status["restartCount"].as_u64()? >= 1 && status["state"]["running"].is_object()).then_some(())
    })
    .await;
    let current = kubectl.stdout(&["logs", &crash]);
    let previous = kubectl.stdout(&["logs", "--previous", &crash]);
    let run = |text: &str| text.trim().strip_prefix("run ").and_then(|n| n.parse::<u32>().ok()).unwrap_or_else(|| panic!("{text:?}"));
    assert_eq!(run(&previous) + 1, run(&current), "--previous is the instance before: {previous} / {current}");

    let before = running(&docker, &agent.node, &format!("k8s_app_{web}_")).await;
    let delete = kubectl.run(&["delete", "pod", &web]);
    assert!(!delete.status.success());
    let said = String::from_utf8_lossy(&delete.stderr);
    assert!(said.contains("MethodNotAllowed") && said.contains("managed by its manifest"), "{said}");
    assert!(said.contains(&agent.dir().join("web.yaml").display().to_string()), "the message names the file to change: {said}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = running(&docker, &agent.node, &format!("k8s_app_{web}_")).await;
    assert_eq!(before.iter().map(|c| &c.id).collect::<Vec<_>>(), after.iter().map(|c| &c.id).collect::<Vec<_>>(), "the pod keeps running");

    let mut watch = kubectl.spawn(&["get", "pods", "-w"]);
    watch.until(&web, Duration::from_secs(10));
    agent.write("late.yaml", &ticking("late", ""));
    watch.until(&agent.pod("late"), START);

    let describe = kubectl.stdout(&["describe", "pod", &web]);
    assert!(describe.contains("Started") && describe.contains("Created container app"), "{describe}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_lists_describes_logs_and_restarts_pods() {
    let docker = docker().await;
    let mut agent = Agent::new("cli");
    agent.write("web.yaml", &ticking("web", ""));
    agent.write("bad.yaml", &ticking("bad", "serviceAccountName: robot"));
    agent.start();
    running_pod(&agent, "web").await;
    let web = agent.pod("web");

    let table = staticlet_stdout(&agent, &["get", "pods"]);
    let mut lines = table.lines();
    assert_eq!(lines.next().unwrap().split_whitespace().collect::<Vec<_>>(), ["NAME", "READY", "STATUS", "RESTARTS", "AGE"], "{table}");
    let row: Vec<&str> = table.lines().find(|l| l.starts_with(&web)).unwrap().split_whitespace().collect();
    assert_eq!(&row[1..4], ["1/1", "Running", "0"], "{table}");
    let bad: Vec<&str> = table.lines().find(|l| l.starts_with(&agent.pod("bad"))).unwrap().split_whitespace().collect();
    assert_eq!(&bad[1..4], ["0/1", "Rejected", "0"], "{table}");
    assert!(staticlet_stdout(&agent, &["get", "pods", "-o", "wide"]).lines().next().unwrap().contains("IP"));
    assert!(staticlet_stdout(&agent, &["get", "pod", &web, "-o", "yaml"]).contains("kubernetes.io/config.hash"));
    let json: Value = serde_json::from_str(&staticlet_stdout(&agent, &["get", "pods", "-o", "json"])).unwrap();
    assert_eq!(json["kind"], "List");

    let describe = staticlet_stdout(&agent, &["describe", "pod", &web]);
    for expected in ["Name:", "Containers:", "State:", "Running", "Events:", "Created", "Started container app"] {
        assert!(describe.contains(expected), "{expected}: {describe}");
    }
    let rejected = staticlet_stdout(&agent, &["describe", "pod", &agent.pod("bad")]);
    assert!(rejected.contains("Rejected") && rejected.contains("spec.serviceAccountName"), "{rejected}");

    assert!(staticlet_stdout(&agent, &["logs", &web, "--tail", "50"]).contains("hello from web"));
    let mut follow = Streaming::new(
        Command::new(env!("CARGO_BIN_EXE_staticlet"))
            .args(["logs", "-f", "--tail", "1", &web])
            .arg("--api-socket")
            .arg(&agent.socket)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let first: u32 = follow.until("tick", Duration::from_secs(10)).lines().find_map(|l| l.strip_prefix("tick ")?.parse().ok()).unwrap();
    follow.until(&format!("tick {}", first + 2), Duration::from_secs(10));
    drop(follow);
    let missing = staticlet(&agent, &["logs", "nobody"]);
    assert!(String::from_utf8_lossy(&missing.stderr).contains("pods \"nobody\" not found"));

    let plugins = staticlet_stdout(&agent, &["plugins"]);
    let policy: Vec<&str> = plugins.lines().find(|l| l.starts_with("static-pod-policy")).unwrap().split_whitespace().collect();
    assert_eq!(&policy[1..3], ["admission-validator", "0.2.0"], "{plugins}");
    assert!(policy[3].starts_with("sha256:") && policy[4] == "Ready", "{plugins}");
    assert!(policy[5].parse::<u64>().unwrap() >= 2, "both pods were judged: {plugins}");

    let before = running(&docker, &agent.node, &format!("k8s_app_{web}_")).await;
    assert_eq!(staticlet_stdout(&agent, &["restart", "pod", &web]).trim(), format!("pod/{web} restarted"));
    let after = wait_for(START, "the restarted pod's new container", || async {
        let now = running(&docker, &agent.node, &format!("k8s_app_{web}_")).await;
        (now.len() == 1 && now[0].id != before[0].id).then_some(now)
    })
    .await;
    assert_eq!(after.len(), 1);
    running_pod(&agent, "web").await;
    assert!(staticlet_stdout(&agent, &["describe", "pod", &web]).contains("Restarting"));
    let refused = staticlet(&agent, &["restart", "pod", &agent.pod("bad")]);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("cannot be restarted"), "{refused:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_json_logs_and_systemd_readiness() {
    let port = free_port();
    let mut agent = Agent::new("metrics");
    let notify_path = agent.dir().parent().unwrap().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify.set_read_timeout(Some(START)).unwrap();
    agent.write("web.yaml", &ticking("web", ""));
    agent.write("bad.yaml", &ticking("bad", "serviceAccountName: robot"));
    agent.start_env(&["--read-only-port", &port.to_string(), "--log-format", "json"], &[("NOTIFY_SOCKET", notify_path.to_str().unwrap())]);

    let mut buf = [0u8; 512];
    let n = notify.recv(&mut buf).expect("systemd hears from the agent");
    assert!(String::from_utf8_lossy(&buf[..n]).lines().any(|l| l == "READY=1"), "{}", String::from_utf8_lossy(&buf[..n]));
    running_pod(&agent, "web").await;
    assert!(http_get(port, "/readyz").unwrap().ends_with("ok"));

    let response = http_get(port, "/metrics").unwrap();
    let (head, body) = response.split_once("\r\n\r\n").map(|(h, b)| (h.to_lowercase(), b.to_owned())).unwrap();
    assert!(head.contains("content-type: text/plain; version=0.0.4"), "Prometheus text unless asked: {head}");
    promtool_checks(&body);
    let openmetrics = http_get_with(([127, 0, 0, 1], port).into(), "/metrics", &[("Accept", OPENMETRICS_ACCEPT)]).unwrap();
    assert!(openmetrics.to_lowercase().contains("content-type: application/openmetrics-text; version=1.0.0"), "{openmetrics}");
    assert!(openmetrics.ends_with("# EOF\n") && openmetrics.contains("# TYPE staticlet_admission_rejections counter"), "{openmetrics}");
    let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).expect("/metrics parses as Prometheus text");
    let sample = |name: &str, label: (&str, &str)| {
        scrape.samples.iter().find(|s| s.metric == name && s.labels.get(label.0) == Some(label.1)).map(|s| match s.value {
            prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
    };
    assert_eq!(sample("staticlet_pods", ("phase", "Running")), Some(1.0), "{body}");
    assert_eq!(sample("staticlet_pods", ("phase", "Failed")), Some(1.0), "the rejected pod: {body}");
    assert_eq!(sample("staticlet_container_restarts", ("container", "app")), Some(0.0), "{body}");
    assert_eq!(sample("staticlet_admission_rejections_total", ("validator", "static-pod-policy")), Some(1.0), "{body}");
    assert!(sample("staticlet_source_last_success_timestamp_seconds", ("source", "file")).unwrap() > 1.7e9, "{body}");
    for histogram in
        ["staticlet_pod_sync_duration_seconds", "staticlet_runtime_call_duration_seconds", "staticlet_plugin_call_duration_seconds"]
    {
        assert!(scrape.samples.iter().any(|s| s.metric == histogram), "{histogram}: {body}");
    }
    assert!(
        scrape
            .samples
            .iter()
            .any(|s| s.metric == "staticlet_runtime_call_duration_seconds" && s.labels.get("call") == Some("CreateContainer")),
        "{body}"
    );
    assert_eq!(sample("staticlet_plugin_call_failures_total", ("plugin", "static-pod-policy")), Some(0.0), "{body}");
    assert_eq!(sample("staticlet_source_poll_errors_total", ("source", "file")), Some(0.0), "{body}");
    assert_eq!(sample("staticlet_runtime_call_errors_total", ("call", "StartContainer")), Some(0.0), "{body}");

    assert_eq!(agent.stop_with("TERM").code(), Some(0));
    let n = notify.recv(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).contains("STOPPING=1"));
    let log = agent.log();
    let lines: Vec<Value> = log.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
    assert!(lines.iter().all(|l| l["level"].is_string() && l["timestamp"].is_string()), "{log}");
    assert!(lines.iter().any(|l| l["reason"] == "Started" && l["pod"] == format!("default/{}", agent.pod("web"))), "{log}");
    assert!(lines.iter().any(|l| l["reason"] == "Rejected"), "{log}");
}

/// What Prometheus 2 sends: OpenMetrics first, the text format as the fallback.
const OPENMETRICS_ACCEPT: &str =
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// `promtool check metrics` (Prometheus's own parser and linter) accepts `body` with no
/// complaint.
fn promtool_checks(body: &str) {
    use std::io::Write;
    let mut promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package) is installed");
    promtool.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    let checked = promtool.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&checked.stdout), String::from_utf8_lossy(&checked.stderr));
    assert!(checked.status.success() && said.trim().is_empty(), "promtool check metrics: {:?}\n{said}\n{body}", checked.status);
}
