//! The Debian package under systemd, for real: a Debian node booted with systemd as PID 1
//! installs the `.deb` built from the binary under test (`scripts/dist --deb`), and the unit is
//! checked as a node runs it: readiness with an empty or missing manifest directory, a pod from
//! a manifest, logs, exec and port-forward under the unit's hardening, stop and restart leaving
//! and adopting the pods, JSON logs in the journal, and the watchdog restarting a wedged agent.

use std::time::Duration;

use serde_json::Value;

use crate::support::images::BUSYBOX;
use crate::support::systemd_node::SystemdNode;

const MANIFESTS: &str = "/etc/kubernetes/manifests";

/// The `.deb` of the binary under test, built into `dir`.
fn package(dir: &std::path::Path) -> std::path::PathBuf {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let built = std::process::Command::new(repo.join("scripts/dist"))
        .args(["--deb", env!("CARGO_BIN_EXE_staticlet"), "amd64"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(built.status.success(), "scripts/dist --deb: {}", String::from_utf8_lossy(&built.stderr));
    std::path::PathBuf::from(String::from_utf8_lossy(&built.stdout).trim())
}

/// A pod serving a file over HTTP on 8080, saying hello on stdout first.
fn web() -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: web
spec:
  containers:
  - name: main
    image: {BUSYBOX}
    imagePullPolicy: Never
    command: [sh, -c, 'echo hello-from-web; mkdir -p /www; echo served-through-the-unit > /www/index; exec httpd -f -p 8080 -h /www']
"#
    )
}

/// The ID of the pod's running `main` container in the node's Docker.
fn main_container(node: &SystemdNode) -> String {
    node.ok("docker ps -q --no-trunc --filter name=k8s_main_web --filter status=running")
}

/// Whether `staticlet get pod` shows `pod` as 1/1 Running with no restart.
fn ready_without_restarts(node: &SystemdNode, pod: &str) -> bool {
    let listed = String::from_utf8_lossy(&node.sh(&format!("staticlet get pod {pod}")).stdout).into_owned();
    listed.lines().nth(1).is_some_and(|row| row.split_whitespace().take(4).eq([pod, "1/1", "Running", "0"]))
}

fn active(node: &SystemdNode) -> bool {
    node.unit_property("staticlet", "ActiveState") == "active"
}

#[test]
fn the_debian_package_runs_static_pods_under_systemd() {
    let built = tempfile::tempdir().unwrap();
    let deb = package(built.path());
    let node = SystemdNode::boot("systemd");
    node.copy_in(&deb, "/root/staticlet.deb");
    node.ok("dpkg -i /root/staticlet.deb");

    // Installed: enabled for the next boot, not started, the manifest directory made.
    assert_eq!(node.sh("systemctl is-enabled staticlet").stdout, b"enabled\n");
    assert_eq!(node.unit_property("staticlet", "ActiveState"), "inactive");
    assert_eq!(node.ok(&format!("ls -A {MANIFESTS} | wc -l")), "0");

    // Ready with an empty manifest directory: `systemctl start` of a Type=notify unit returns
    // once the agent said READY=1.
    node.ok("systemctl start staticlet");
    assert!(active(&node));
    assert_eq!(node.ok("curl -sf http://127.0.0.1:10248/healthz"), "ok");

    // And with none at all, as when /etc/kubernetes/manifests is made later in a boot.
    node.ok(&format!("systemctl stop staticlet && rm -rf {MANIFESTS} && systemctl start staticlet"));
    assert!(active(&node));
    node.ok(&format!("mkdir -p {MANIFESTS}"));
    node.sh_with_input(&format!("cat > {MANIFESTS}/web.yaml"), web().as_bytes());
    node.wait("the pod to run", Duration::from_secs(90), || !main_container(&node).is_empty());
    let pod = format!("web-{}", node.hostname());

    // logs, exec and port-forward through the agent, under the unit's hardening.
    node.wait("the pod's log", Duration::from_secs(30), || node.sh(&format!("staticlet logs {pod}")).stdout == b"hello-from-web\n");
    node.wait("the pod's file", Duration::from_secs(30), || node.sh(&format!("staticlet exec {pod} -- cat /www/index")).status.success());
    assert_eq!(node.ok(&format!("staticlet exec {pod} -- cat /www/index")), "served-through-the-unit");
    node.ok(&format!("(staticlet port-forward {pod} 18080:8080 >/root/port-forward.log 2>&1 &)"));
    node.wait("port-forward to answer", Duration::from_secs(30), || {
        node.sh("curl -sf -m 5 http://127.0.0.1:18080/index").stdout == b"served-through-the-unit\n"
    });

    // Stopping the agent leaves the pod running; starting or restarting it adopts the pod.
    let container = main_container(&node);
    node.ok("systemctl stop staticlet");
    assert_eq!(node.unit_property("staticlet", "ActiveState"), "inactive");
    assert_eq!(main_container(&node), container, "the pod outlives the agent");
    node.ok("systemctl start staticlet");
    node.ok("systemctl restart staticlet");
    node.wait("the restarted agent to report the pod", Duration::from_secs(30), || ready_without_restarts(&node, &pod));
    assert_eq!(main_container(&node), container, "adopted, not restarted");

    // The journal holds the agent's own lines as JSON objects.
    let journal = node.ok("journalctl _SYSTEMD_UNIT=staticlet.service -o cat --no-pager");
    let lines: Vec<Value> = journal.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
    assert!(lines.iter().all(|l| l["level"].is_string() && l["message"].is_string()), "{journal}");
    assert!(
        lines.iter().any(|l| l["message"] == "plugin loaded" && l["origin"] == "precompiled"),
        "the built-in policy's code came with the binary: {journal}"
    );

    // A wedged agent (stopped with SIGSTOP: no sync loop, no watchdog pings) is killed by the
    // watchdog and restarted, and the new one adopts the pod.
    node.ok("mkdir -p /etc/systemd/system/staticlet.service.d");
    node.sh_with_input("cat > /etc/systemd/system/staticlet.service.d/watchdog.conf", b"[Service]\nWatchdogSec=3s\n");
    node.ok("systemctl daemon-reload && systemctl restart staticlet");
    let wedged = node.unit_property("staticlet", "MainPID");
    let restarts = node.unit_property("staticlet", "NRestarts").parse::<u32>().unwrap();
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(node.unit_property("staticlet", "MainPID"), wedged, "a live agent keeps the watchdog fed");
    node.ok(&format!("kill -STOP {wedged}"));
    node.wait("the watchdog to restart the agent", Duration::from_secs(60), || {
        let pid = node.unit_property("staticlet", "MainPID");
        pid != wedged && pid != "0" && active(&node)
    });
    assert!(node.unit_property("staticlet", "NRestarts").parse::<u32>().unwrap() > restarts);
    assert!(node.ok("journalctl -u staticlet --no-pager").contains("Watchdog timeout"));
    node.wait("the new agent to report the pod", Duration::from_secs(30), || ready_without_restarts(&node, &pod));
    assert_eq!(main_container(&node), container, "adopted again");
}
