//! Hostile manifests (issue 10, point 3): a generated corpus of bad inputs, each rejected with
//! its file, line and the rule it broke, by `staticlet validate` and by the running agent,
//! which stays up, stays small and leaves its healthy pods alone.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use crate::support::hostile::{Case, corpus};
use crate::support::images::BUSYBOX;
use crate::support::{Agent, containers, docker, running, wait_for, yaml};

/// `staticlet validate` over `dir`: exit code, stdout lines by file name, stderr.
fn validate(dir: &std::path::Path, extra: &[&str]) -> (i32, BTreeMap<String, Vec<String>>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_staticlet"))
        .arg("validate")
        .args(extra)
        .args(["--hostname-override", "n1"])
        .arg(dir)
        .output()
        .unwrap();
    let mut by_file: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let (path, rest) = line.split_once(": ").unwrap_or((line, ""));
        let file = path.rsplit('/').next().unwrap_or(path).to_owned();
        by_file.entry(file).or_default().push(rest.to_owned());
    }
    (out.status.code().unwrap_or(-1), by_file, String::from_utf8_lossy(&out.stderr).into_owned())
}

fn write_corpus(dir: &std::path::Path) -> Vec<Case> {
    let cases = corpus();
    for case in &cases {
        std::fs::write(dir.join(&case.file), &case.bytes).unwrap();
    }
    cases
}

/// Whether `line` starts with `line:column: `.
fn positioned(line: &str) -> bool {
    let mut parts = line.splitn(3, ':');
    let numeric = |p: Option<&str>| p.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    numeric(parts.next()) && numeric(parts.next())
}

#[test]
fn every_bad_manifest_is_rejected_with_its_file_line_and_rule() {
    let dir = tempfile::tempdir().unwrap();
    let cases = write_corpus(dir.path());
    assert!(cases.len() >= 200, "the corpus has {} cases", cases.len());
    let unnamed: Vec<&str> =
        cases.iter().filter(|c| c.rule.is_empty() || c.rule.iter().any(String::is_empty)).map(|c| c.file.as_str()).collect();
    assert!(unnamed.is_empty(), "every case names the rule it breaks (an empty one matches any message): {unnamed:?}");

    let (code, by_file, _) = validate(dir.path(), &[]);
    assert_eq!(code, 1);
    let mut wrong = Vec::new();
    for case in &cases {
        let lines = by_file.get(&case.file).map(Vec::as_slice).unwrap_or_default();
        let named = lines.iter().find(|l| case.rule.iter().any(|rule| l.contains(rule.as_str())));
        match named {
            None => wrong.push(format!("{}: wanted one of {:?}, got {lines:?}", case.file, case.rule)),
            Some(line) if case.positioned && !positioned(line) => wrong.push(format!("{}: no line:column in {line:?}", case.file)),
            Some(_) => {}
        }
    }
    assert!(wrong.is_empty(), "{} of {} cases not rejected as expected:\n{}", wrong.len(), cases.len(), wrong.join("\n"));
}

#[test]
fn unknown_fields_are_warnings_and_strict_makes_them_errors() {
    let dir = tempfile::tempdir().unwrap();
    let typo = yaml!(
        r#"
        apiVersion: v1
        kind: Pod
        metadata:
          name: typo
        spec:
          containers:
          - name: main
            image: {BUSYBOX}
            imagePullPolice: Never
            command: [sleep, '100000']
        "#,
        BUSYBOX,
    );
    std::fs::write(dir.path().join("typo.yaml"), typo).unwrap();

    let (code, by_file, stderr) = validate(dir.path(), &[]);
    assert_eq!(code, 0, "an unknown field is no error: {by_file:?}");
    assert!(stderr.contains("typo.yaml: warning: 9:5: spec.containers[0].imagePullPolice: unknown field"), "{stderr}");

    let (code, by_file, _) = validate(dir.path(), &["--strict"]);
    assert_eq!(code, 1);
    assert!(by_file["typo.yaml"][0].starts_with("9:5: spec.containers[0].imagePullPolice: unknown field"), "{by_file:?}");
}

/// Resets the kernel's record of the agent's peak resident memory, so the next reading covers
/// only what happens from here (start-up, which compiles the built-in policy, is left out).
fn reset_peak_rss(pid: u32) {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").unwrap();
}

/// The agent's peak resident memory, from the kernel.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_agent_rejects_the_corpus_and_its_healthy_pods_never_notice() {
    let docker = docker().await;
    let mut agent = Agent::new("hostile");
    // An unknown field and a negative grace period: the kubelet runs such a pod, and so does
    // the agent, with a warning and the API server's default.
    let negative_grace = yaml!(
        r#"
        apiVersion: v1
        kind: Pod
        metadata:
          name: steady
        spec:
          terminationGracePeriodSeconds: -5
          containers:
          - name: main
            image: {BUSYBOX}
            imagePullPolicy: Never
            comand: [x]
            command: [sleep, '100000']
        "#,
        BUSYBOX,
    );
    agent.write("steady.yaml", &negative_grace);
    agent.start();
    let app = wait_for(Duration::from_secs(60), "the healthy pod", || async {
        running(&docker, &agent.node, &format!("k8s_main_{}_", agent.pod("steady"))).await.pop()
    })
    .await;
    let before: Vec<_> = containers(&docker, &agent.node, &[]).await.into_iter().filter_map(|c| c.id).collect();
    let pod = agent.pod_status("steady").await.unwrap();
    assert_eq!(pod["spec"]["terminationGracePeriodSeconds"], 1);
    let log = agent.log();
    assert!(log.lines().any(|l| l.contains("steady.yaml") && l.contains("11:5: spec.containers[0].comand: unknown field")), "{log}");

    reset_peak_rss(agent.pid());
    let cases = write_corpus(agent.dir());
    let huge = agent.dir().join("huge.yaml");
    {
        use std::io::Write;
        let mut file = std::io::BufWriter::new(std::fs::File::create(&huge).unwrap());
        let line = format!("# {}\n", "x".repeat(1021));
        for _ in 0..50 * 1024 {
            file.write_all(line.as_bytes()).unwrap();
        }
    }

    let files: Vec<String> = cases.iter().map(|c| agent.dir().join(&c.file).display().to_string()).collect();
    let unreported = || {
        let log = agent.log();
        let reported = |file: &str| log.lines().any(|l| l.contains(file) && l.contains("ERROR"));
        files.iter().chain([&huge.display().to_string()]).filter(|f| !reported(f)).cloned().collect::<Vec<_>>()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !unreported().is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(unreported(), Vec::<String>::new(), "the agent reports every bad manifest");
    let log = agent.log();
    assert!(log.contains("more than the 10485760-byte limit for a manifest"), "{log}");

    // A few more listings go by: still nothing started, nothing replaced.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(agent.is_running());
    let after: Vec<_> = containers(&docker, &agent.node, &[]).await.into_iter().filter_map(|c| c.id).collect();
    assert_eq!(after, before, "only the healthy pod's sandbox and container, the same ones");
    let still = running(&docker, &agent.node, &format!("k8s_main_{}_", agent.pod("steady"))).await.pop();
    assert_eq!(still.and_then(|c| c.id), app.id, "the healthy pod's app still runs");
    assert_eq!(agent.api("GET", "/healthz").await.map(|(code, _)| code), Some(200));
    let peak = peak_rss_kib(agent.pid());
    assert!(peak < 200 * 1024, "the agent's peak RSS while it read the corpus stays bounded: {peak} KiB");
}
