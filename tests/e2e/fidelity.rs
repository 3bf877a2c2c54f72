//! Drop-in on real nodes (issue 24): the situations of the field that a kubelet handles, on the
//! real agent and Docker: long and upper-case hostnames, YAML written as people write it, a
//! manifest path that is missing or is a FIFO, kube-up's `*.manifest` files, two manifests with
//! one UID, and a manifest that carries a deletionTimestamp.

use std::os::unix::net::{UnixDatagram, UnixListener};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::images::BUSYBOX;
use crate::support::{Agent, containers, docker, docker_cli, name, running, sleeper, wait_for, yaml};

const START: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread")]
async fn a_control_plane_pod_runs_on_a_node_with_a_long_upper_case_hostname() {
    let docker = docker().await;
    let mut agent = Agent::new("longhost");
    // An EC2-style FQDN whose first label, once `kube-apiserver-` is put in front, is longer
    // than a DNS label's 63 characters: a DNS-1123 subdomain allows that, as the API server
    // does, up to 253 characters in all.
    let first_label = format!("{}-{}", agent.node, "x".repeat(56 - agent.node.len().min(40)));
    // Given in upper case, used in lower case, as the kubelet lowercases it.
    let hostname = format!("{first_label}.EU-Central-1.Compute.Internal");
    let manifest = yaml!(
        r#"
        apiVersion: v1
        kind: Pod
        metadata:
          name: kube-apiserver
          namespace: kube-system
        spec:
          containers:
          - name: kube-apiserver
            image: {BUSYBOX}
            imagePullPolicy: Never
            command: [sleep, '100000']
        "#,
        BUSYBOX,
    );
    agent.write("kube-apiserver.yaml", &manifest);
    agent.node = hostname.clone();
    agent.start();
    agent.node = hostname.to_lowercase();
    let pod_name = format!("kube-apiserver-{}", agent.node);
    assert!(pod_name.split('.').next().unwrap().len() > 63, "{pod_name}");
    let container = wait_for(START, "the control-plane pod", || async {
        running(&docker, &agent.node, &format!("k8s_kube-apiserver_{pod_name}_kube-system_")).await.pop()
    })
    .await;
    // The pod's hostname is its name cut to a DNS label, as the kubelet cuts it.
    let in_pod = docker_cli(&["exec", container.id.as_deref().unwrap(), "hostname"]);
    assert_eq!(in_pod, pod_name[..63].trim_end_matches(['-', '.']), "{in_pod}");
    let (code, pod) = agent.api("GET", &format!("/api/v1/namespaces/kube-system/pods/{pod_name}")).await.unwrap();
    assert_eq!(code, 200, "{pod}");
    assert_eq!(pod["spec"]["nodeName"], agent.node.as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn yaml_is_read_as_the_kubelet_reads_it() {
    let docker = docker().await;
    let mut agent = Agent::new("yaml11");
    let data = tempfile::tempdir().unwrap();
    // Writable by the container's user, so only the read-only mount can refuse the write.
    std::fs::set_permissions(data.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    // A BOM, a leading `---`, YAML 1.1 scalars where the fields are numbers and booleans
    // (`01750` is octal 1000, `1_000` is 1000, `yes`/`no`/`n` are booleans), a second Pod
    // document that the kubelet never reads, and a comment-only document at the end.
    let manifest = yaml!(
        r#"
        {BOM}---
        apiVersion: v1
        kind: Pod
        metadata:
          name: styled
        spec:
          hostNetwork: no
          containers:
          - name: app
            image: {BUSYBOX}
            imagePullPolicy: Never
            tty: n
            securityContext:
              runAsUser: 01750
              runAsGroup: 1_000
            command: [sh, -c, 'id -u; id -g; touch /data/x 2>/dev/null || echo read-only; sleep 100000']
            volumeMounts:
            - {name: data, mountPath: /data, readOnly: yes}
          volumes:
          - name: data
            hostPath: {path: {data}}
        ---
        apiVersion: v1
        kind: Pod
        metadata:
          name: second
        spec:
          containers:
          - name: app
            image: {BUSYBOX}
        ---
        # the end
        "#,
        BOM = '\u{feff}',
        BUSYBOX,
        data = data.path().display(),
    );
    agent.write("styled.yaml", &manifest);
    // A boolean where a string belongs is refused as the kubelet refuses it, with the fix.
    let unquoted = yaml!(
        r#"
        apiVersion: v1
        kind: Pod
        metadata:
          name: unquoted
        spec:
          containers:
          - name: main
            image: {BUSYBOX}
            imagePullPolicy: Never
            env:
            - name: DEBUG
              value: on
            command: [sleep, '1']
        "#,
        BUSYBOX,
    );
    agent.write("unquoted.yaml", &unquoted);
    agent.start();
    wait_for(START, "the styled pod", || async { running(&docker, &agent.node, "k8s_app_styled-").await.pop() }).await;
    let log = wait_for(START, "the container's output", || async {
        let log = agent.container_log("styled", "app").await;
        log.contains("read-only").then_some(log)
    })
    .await;
    assert_eq!(log.lines().collect::<Vec<_>>(), ["1000", "1000", "read-only"]);
    agent.wait_log("document 2 (Pod second) is ignored: the kubelet runs only the first document").await;
    assert!(running(&docker, &agent.node, "k8s_app_second-").await.is_empty());
    agent
        .wait_log(
            "spec.containers[0].env[0].value: invalid type: boolean `true`, expected a string; YAML reads an unquoted yes, no, on, off",
        )
        .await;
    let log = agent.log();
    assert!(log.lines().any(|l| l.contains("unquoted.yaml") && l.contains("12:7")), "the error has its line and column:\n{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn fifos_sockets_and_devices_neither_block_nor_delay_readiness_and_sigterm_stops_at_once() {
    let docker = docker().await;
    let mut agent = Agent::new("fifo");
    let status = Command::new("mkfifo").arg(agent.dir().join("pipe.yaml")).status().unwrap();
    assert!(status.success());
    let _socket = UnixListener::bind(agent.dir().join("socket.yaml")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", agent.dir().join("zero.yaml")).unwrap();
    agent.write("p.yaml", &sleeper("p", 100_000, ""));
    let started = Instant::now();
    agent.start();
    wait_for(Duration::from_secs(10), "/readyz to answer ok", || async {
        agent.api_raw("GET", "/readyz").await.filter(|(code, _)| *code == 200).map(|_| ())
    })
    .await;
    let ready_after = started.elapsed();
    wait_for(START, "the pod beside them", || async { running(&docker, &agent.node, "k8s_main_p-").await.pop() }).await;
    let log = agent.log();
    for file in ["pipe.yaml", "socket.yaml", "zero.yaml"] {
        assert!(
            log.lines().any(|l| l.contains(file) && l.contains("FIFOs, sockets and devices are never opened")),
            "{file} is skipped:\n{log}"
        );
    }
    assert!(ready_after < Duration::from_secs(5), "ready after {ready_after:?}");
    let asked = Instant::now();
    let status = agent.stop_with("TERM");
    assert!(status.success(), "{status:?}");
    assert!(asked.elapsed() < Duration::from_secs(1), "SIGTERM took {:?}", asked.elapsed());

    // A FIFO given as the manifest path itself.
    let mut alone = Agent::new("fifopath");
    let pipe = alone.dir().join("only.yaml");
    assert!(Command::new("mkfifo").arg(&pipe).status().unwrap().success());
    alone.manifests = pipe;
    alone.start();
    wait_for(Duration::from_secs(10), "/readyz to answer ok", || async {
        alone.api_raw("GET", "/readyz").await.filter(|(code, _)| *code == 200).map(|_| ())
    })
    .await;
    let asked = Instant::now();
    assert!(alone.stop_with("TERM").success());
    assert!(asked.elapsed() < Duration::from_secs(1), "SIGTERM took {:?}", asked.elapsed());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_manifest_path_is_ready_at_once_and_its_pods_come_with_it() {
    let docker = docker().await;
    let mut agent = Agent::new("missing");
    std::fs::remove_dir(agent.dir()).unwrap();
    let notify_path = agent.file("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    agent.start_env(&[], &[("NOTIFY_SOCKET", notify_path.to_str().unwrap())]);
    let mut buf = [0u8; 512];
    let n = notify.recv(&mut buf).expect("READY=1 while the path is missing");
    assert!(String::from_utf8_lossy(&buf[..n]).lines().any(|l| l == "READY=1"));
    let (code, _) = agent.api_raw("GET", "/readyz").await.unwrap();
    assert_eq!(code, 200);
    agent.wait_log("manifest path does not exist; waiting for it").await;
    std::fs::create_dir(agent.dir()).unwrap();
    agent.write("late.yaml", &sleeper("late", 100_000, ""));
    wait_for(START, "the pod from the late directory", || async { running(&docker, &agent.node, "k8s_main_late-").await.pop() }).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kube_up_manifest_file_and_the_api_servers_warnings_are_reported_once() {
    let mut agent = Agent::new("dotmanifest");
    std::fs::write(agent.dir().join("kube-proxy.manifest"), sleeper("kube-proxy", 100_000, "")).unwrap();
    // Valid, but the API server warns about it: the seccomp annotation has done nothing since 1.27.
    let annotated = yaml!(
        r#"
        apiVersion: v1
        kind: Pod
        metadata:
          name: annotated
          annotations:
            seccomp.security.alpha.kubernetes.io/pod: runtime/default
        spec:
          containers:
          - name: main
            image: {BUSYBOX}
            imagePullPolicy: Never
            command: [sleep, '100000']
        "#,
        BUSYBOX,
    );
    agent.write("annotated.yaml", &annotated);
    std::fs::write(agent.dir().join("notes.txt"), "not a pod\n").unwrap();
    agent.start();
    agent.wait_log("kube-proxy.manifest holds a Pod but is not read").await;
    let warning = "6:5: metadata.annotations[seccomp.security.alpha.kubernetes.io/pod]: non-functional in v1.27+";
    agent.wait_log(warning).await;
    // Several re-lists later, still said once.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let log = agent.log();
    assert_eq!(log.matches("kube-proxy.manifest holds a Pod").count(), 1, "{log}");
    assert_eq!(log.matches(warning).count(), 1, "{log}");
    assert!(log.contains("rename it to kube-proxy.yaml to run it"), "{log}");
    assert!(log.lines().filter(|l| l.contains("notes.txt")).all(|l| l.contains("INFO")), "{log}");
    assert!(log.lines().any(|l| l.contains("notes.txt") && l.contains("only *.yaml, *.yml and *.json files are read")), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_manifests_with_one_uid_run_one_pod_and_removing_either_leaves_the_other() {
    let docker = docker().await;
    let mut agent = Agent::new("sameuid");
    let with_uid = |name: &str| {
        yaml!(
            r#"
            apiVersion: v1
            kind: Pod
            metadata:
              name: {name}
              uid: 3f0c8a4e-static-uid
            spec:
              containers:
              - name: main
                image: {BUSYBOX}
                imagePullPolicy: Never
                command: [sleep, '100000']
            "#,
            name,
            BUSYBOX,
        )
    };
    agent.write("a.yaml", &with_uid("a"));
    agent.write("b.yaml", &with_uid("b"));
    agent.start();
    let a = wait_for(START, "pod a", || async { running(&docker, &agent.node, "k8s_main_a-").await.pop() }).await;
    agent.wait_log("conflict: another manifest already declares this metadata.uid").await;
    assert!(running(&docker, &agent.node, "k8s_main_b-").await.is_empty(), "the file that sorts first wins");

    // Removing the loser leaves the winner untouched.
    agent.remove("b.yaml");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(running(&docker, &agent.node, "k8s_main_a-").await.pop().and_then(|c| c.id), a.id);

    // Removing the winner leaves exactly the other's pod: a's sandbox and containers go.
    agent.write("b.yaml", &with_uid("b"));
    tokio::time::sleep(Duration::from_secs(3)).await;
    agent.remove("a.yaml");
    wait_for(START, "pod b", || async { running(&docker, &agent.node, "k8s_main_b-").await.pop() }).await;
    let left = wait_for(START, "a's objects to go", || async {
        let all = containers(&docker, &agent.node, &[]).await;
        all.iter().all(|c| !name(c).contains("_a-")).then_some(all)
    })
    .await;
    assert_eq!(left.len(), 2, "b's sandbox and container only: {:?}", left.iter().map(name).collect::<Vec<_>>());
    let (gone, _) = agent.api("GET", &format!("/api/v1/namespaces/default/pods/{}", agent.pod("a"))).await.unwrap();
    assert_eq!(gone, 404);
    agent.wait_reported_running(&["b"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deletion_timestamp_in_the_manifest_stops_the_pod_gracefully() {
    let docker = docker().await;
    let mut agent = Agent::new("deleting");
    let data = tempfile::tempdir().unwrap();
    let pod = |meta: &str| {
        yaml!(
            r#"
            apiVersion: v1
            kind: Pod
            metadata:
              name: graceful
              {meta}
            spec:
              terminationGracePeriodSeconds: 30
              containers:
              - name: main
                image: {BUSYBOX}
                imagePullPolicy: Never
                command: [sh, -c, 'trap "echo stopped > /data/bye; exit 0" TERM; while true; do sleep 1; done']
                volumeMounts: [{name: data, mountPath: /data}]
              volumes:
              - {name: data, hostPath: {path: {data}}}
            "#,
            meta,
            BUSYBOX,
            data = data.path().display(),
        )
    };
    agent.write("graceful.yaml", &pod(""));
    let born_deleted = yaml!(
        r#"
        apiVersion: v1
        kind: Pod
        metadata:
          name: born-deleted
          deletionTimestamp: "2026-01-01T00:00:00Z"
        spec:
          containers:
          - name: main
            image: {BUSYBOX}
            imagePullPolicy: Never
            command: [sleep, '100000']
        "#,
        BUSYBOX,
    );
    agent.write("born-deleted.yaml", &born_deleted);
    agent.start();
    wait_for(START, "the pod", || async { running(&docker, &agent.node, "k8s_main_graceful-").await.pop() }).await;
    let deleted = yaml!(
        r#"
        deletionTimestamp: "2026-01-01T00:00:00Z"
        deletionGracePeriodSeconds: 5
        "#
    );
    agent.write("graceful.yaml", &pod(&deleted));
    wait_for(START, "the pod's containers to stop", || async {
        running(&docker, &agent.node, "k8s_main_graceful-").await.is_empty().then_some(())
    })
    .await;
    assert_eq!(std::fs::read_to_string(data.path().join("bye")).unwrap().trim(), "stopped", "SIGTERM reached the container");
    // It stays stopped, and kubectl's table says it is terminating.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(running(&docker, &agent.node, "k8s_main_graceful-").await.is_empty());
    assert!(running(&docker, &agent.node, "k8s_main_born-deleted-").await.is_empty(), "a pod born deleted never starts");
    let output = Command::new(env!("CARGO_BIN_EXE_staticlet")).args(["get", "pods", "--api-socket"]).arg(&agent.socket).output().unwrap();
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(table.lines().any(|l| l.starts_with(&agent.pod("graceful")) && l.contains("Terminating")), "{output:?}");
}

/// One manifest of the real-manifest corpus and what a 1.34 kubelet makes of it, from
/// `tests/corpus/SOURCES.md`: `None` when accepted, else the message it is refused with.
struct CorpusEntry {
    file: std::path::PathBuf,
    refused_with: Option<String>,
}

fn corpus() -> Vec<CorpusEntry> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/corpus");
    let sources = std::fs::read_to_string(dir.join("SOURCES.md")).unwrap();
    let entries: Vec<CorpusEntry> = sources
        .lines()
        .filter(|line| line.starts_with("| `"))
        .map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
            let expected = cells.last().unwrap();
            let refused_with = expected.strip_prefix("refused: `").map(|rest| rest.split('`').next().unwrap().to_owned());
            assert!(refused_with.is_some() || expected.starts_with("accepted"), "an expected verdict: {line}");
            CorpusEntry { file: dir.join("manifests").join(cells[0].trim_matches('`')), refused_with }
        })
        .collect();
    let on_disk = std::fs::read_dir(dir.join("manifests")).unwrap().count();
    assert_eq!(entries.len(), on_disk, "every manifest in the corpus has its row in SOURCES.md");
    assert!(entries.len() >= 50, "{} manifests", entries.len());
    entries
}

#[test]
fn the_real_manifest_corpus_passes_staticlet_validate_or_is_refused_with_its_rule() {
    for entry in corpus() {
        let output = Command::new(env!("CARGO_BIN_EXE_staticlet"))
            .args(["validate", "--hostname-override", "corpus-node"])
            .arg(&entry.file)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        match &entry.refused_with {
            None => assert!(output.status.success(), "{}: {stdout}{}", entry.file.display(), String::from_utf8_lossy(&output.stderr)),
            Some(rule) => {
                assert_eq!(output.status.code(), Some(1), "{}: {stdout}", entry.file.display());
                assert!(stdout.contains(rule.as_str()), "{} is refused with {rule:?}: {stdout}", entry.file.display());
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_real_manifest_corpus_is_admitted_by_the_agent_or_refused_with_its_rule() {
    // The manifests name real registries' images: an engine of the test's own, whose every
    // pull fails at once, runs them as far as a node without those images gets.
    let mut engine = crate::support::dockerd::Dockerd::offline();
    engine.start().await;
    engine.load_test_images().await;
    let mut agent = Agent::new("corpus");
    let entries = corpus();
    for entry in &entries {
        std::fs::copy(&entry.file, agent.dir().join(entry.file.file_name().unwrap())).unwrap();
    }
    agent.start_with(&["--docker-endpoint", &engine.endpoint()]);
    for entry in &entries {
        let text = std::fs::read(&entry.file).unwrap();
        let file = entry.file.file_name().unwrap().to_string_lossy().into_owned();
        let Ok(decoded) = staticlet_model::decode::decode_pod(&text) else { panic!("{file} decodes") };
        let meta = decoded.pod.metadata;
        let Some(name) = meta.name else {
            let rule = entry.refused_with.as_deref().expect("only a refused manifest has no name");
            agent.wait_log(rule).await;
            assert!(agent.log().lines().any(|l| l.contains(&file) && l.contains(rule)), "{file}");
            continue;
        };
        let path = format!("/api/v1/namespaces/{}/pods/{}", meta.namespace.as_deref().unwrap_or("default"), agent.pod(&name));
        let pod = wait_for(START, &format!("{file} in the API"), || async {
            agent.api("GET", &path).await.filter(|(code, _)| *code == 200).map(|(_, pod)| pod)
        })
        .await;
        match &entry.refused_with {
            None => assert_ne!(pod["status"]["reason"], "Rejected", "{file}: {}", pod["status"]),
            Some(rule) => {
                assert_eq!(pod["status"]["reason"], "Rejected", "{file}");
                assert!(pod["status"]["message"].as_str().unwrap_or_default().contains(rule.as_str()), "{file}: {}", pod["status"]);
            }
        }
    }
    assert!(agent.is_running());
}
