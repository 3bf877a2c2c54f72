//! The CRI runtime against a real containerd (issue 11): what the conformance suite does not
//! already show on it. Every fact about what containerd holds is read with `ctr` or from the
//! files containerd writes, not through staticlet's own CRI client.

use std::time::Duration;

use crate::observe::Kubectl;
use crate::support::containerd::{Containerd, containerd};
use crate::support::images::BUSYBOX;
use crate::support::{Agent, container_status, docker, free_port, http_get, http_get_from, wait_for, yaml};

const UP: Duration = Duration::from_secs(60);

/// A fresh agent that will run its pods on the tests' containerd.
async fn agent_on_containerd(test: &str) -> (Agent, Containerd) {
    // The test images come from the archives Docker gets; Docker also feeds the registry.
    docker().await;
    let containerd = containerd().await;
    let mut agent = Agent::new(test);
    agent.uses_containerd(&containerd);
    (agent, containerd)
}

fn start(agent: &mut Agent, containerd: &Containerd) {
    agent.start_with(&["--container-runtime-endpoint", &containerd.endpoint()]);
}

/// A pod that stops within 2 s; `spec` is the rest of its `spec:`, as YAML.
fn pod(name: &str, spec: &str) -> String {
    yaml!(
        r#"
        apiVersion: v1
        kind: Pod
        metadata:
          name: {name}
        spec:
          terminationGracePeriodSeconds: 2
          {spec}
        "#,
        name,
        spec,
    )
}

async fn status_where(agent: &Agent, name: &str, what: &str, check: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    wait_for(UP, what, || async { agent.pod_status(name).await.filter(|pod| check(pod)) }).await
}

/// The sandbox containerd holds for a pod: its labels, read with `ctr`.
fn sandbox_labels(containerd: &Containerd, node: &str, pod: &str) -> Option<serde_json::Value> {
    containerd
        .held(node)
        .into_iter()
        .map(|(labels, _)| labels)
        .find(|labels| labels["io.cri-containerd.kind"] == "sandbox" && labels["io.kubernetes.pod.name"] == pod)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pod_gets_an_ip_of_the_cni_network_reachable_from_the_host_and_reads_as_a_kubelets_pod() {
    let (mut agent, containerd) = agent_on_containerd("cri-ip").await;
    // Before it serves, the web container writes a line to stdout, one to stderr, and a line of
    // 20 000 bytes, longer than the 16 KiB containerd writes in one log entry.
    agent.write(
        "web.yaml",
        &pod(
            "web",
            &yaml!(
                r#"
                containers:
                - name: web
                  image: {BUSYBOX}
                  command: [sh, -c, 'echo out-1; echo err-1 >&2; head -c 20000 /dev/zero | tr "\\000" x; echo; exec httpd -f -p 8080 -h /www']
                "#,
                BUSYBOX,
            ),
        ),
    );
    let read_only_port = free_port();
    agent.start_with(&["--container-runtime-endpoint", &containerd.endpoint(), "--read-only-port", &read_only_port.to_string()]);
    let running = status_where(&agent, "web", "web running", |p| p["status"]["phase"] == "Running").await;
    let ip = running["status"]["podIP"].as_str().unwrap_or_default().to_owned();
    assert!(ip.starts_with("10.88.77."), "the pod's IP comes from the CNI network's /24: {running}");
    assert_eq!(running["status"]["podIPs"][0]["ip"], ip.as_str());
    let address = std::net::SocketAddr::new(ip.parse().unwrap(), 8080);
    let page = wait_for(UP, "the pod's httpd at its own IP", || async { http_get_from(address, "/") }).await;
    assert!(page.contains("hello from staticlet"), "{page}");
    let wide = Kubectl::new(read_only_port).stdout(&["get", "pods", "-o", "wide"]);
    let row = wide.lines().find(|l| l.starts_with(&agent.pod("web"))).unwrap_or_else(|| panic!("{wide}"));
    assert!(row.split_whitespace().any(|cell| cell == ip), "kubectl get pods -o wide shows the pod IP: {wide}");

    // What containerd holds names the pod as a kubelet's does, and its log is where the
    // kubelet's would be.
    let name = agent.pod("web");
    let labels = sandbox_labels(&containerd, &agent.node, &name).expect("a sandbox for the pod");
    assert_eq!(labels["io.kubernetes.pod.namespace"], "default");
    let uid = labels["io.kubernetes.pod.uid"].as_str().unwrap().to_owned();
    assert_eq!(running["metadata"]["uid"], uid.as_str());
    let container_id = container_status(&running, "web").unwrap()["containerID"].as_str().unwrap().to_owned();
    assert!(container_id.starts_with("containerd://"), "container IDs carry the runtime's name as the kubelet's do: {container_id}");
    let log = format!("/var/log/pods/default_{name}_{uid}/web/0.log");
    let long = "x".repeat(20_000);
    let written = wait_for(UP, "the container's three lines in its log file", || async {
        let written = std::fs::read_to_string(&log).ok()?;
        (written.contains(" stderr F err-1\n") && written.lines().filter(|l| l.contains(" stdout F x")).count() == 1).then_some(written)
    })
    .await;
    let shown = |text: &str| text.replace(&long, "<20000 x>");

    // The CRI's format: an entry a line, `<RFC 3339 time> <stream> <P|F> <content>`; the long
    // line is cut into partial (P) entries and ended by a full (F) one.
    let entries: Vec<[&str; 4]> = written
        .lines()
        .map(|line| line.splitn(4, ' ').collect::<Vec<_>>().try_into().unwrap_or_else(|_| panic!("a CRI log entry: {line:?}")))
        .collect();
    for [time, stream, tag, _] in &entries {
        assert!(time::OffsetDateTime::parse(time, &time::format_description::well_known::Rfc3339).is_ok(), "RFC 3339: {time}");
        assert!(matches!((*stream, *tag), ("stdout" | "stderr", "P" | "F")), "{stream} {tag}");
    }
    let of = |wanted: &str| {
        entries.iter().filter(|[_, stream, ..]| *stream == wanted).map(|[_, _, tag, content]| (*tag, *content)).collect::<Vec<_>>()
    };
    assert_eq!(of("stderr"), [("F", "err-1")]);
    let stdout = of("stdout");
    let tags: Vec<(&str, usize)> = stdout.iter().map(|(tag, content)| (*tag, content.len())).collect();
    assert_eq!(stdout[0], ("F", "out-1"), "{tags:?}");
    let (last, partial) = stdout[1..].split_last().unwrap_or_else(|| panic!("the long line's entries: {tags:?}"));
    assert!(!partial.is_empty() && partial.iter().all(|(tag, _)| *tag == "P") && last.0 == "F", "P entries, then F: {tags:?}");
    assert!(stdout[1..].iter().map(|(_, content)| *content).collect::<String>() == long, "the long line, cut and whole: {tags:?}");

    // kubectl logs, the API and `staticlet logs` print the file's lines in its order, a cut line
    // joined again; with timestamps, each line after the time of its first entry.
    let (mut plain, mut stamped, mut in_line) = (String::new(), String::new(), false);
    for [time, _, tag, content] in &entries {
        if !in_line {
            stamped.push_str(&format!("{time} "));
        }
        plain.push_str(content);
        stamped.push_str(content);
        if *tag == "F" {
            plain.push('\n');
            stamped.push('\n');
        }
        in_line = *tag == "P";
    }
    let kubectl = Kubectl::new(read_only_port);
    let api = |query: &'static str| {
        let path = format!("/api/v1/namespaces/default/pods/{name}/log?container=web{query}");
        let agent = &agent;
        async move { agent.api_raw("GET", &path).await.map(|(code, body)| (code, String::from_utf8_lossy(&body).into_owned())) }
    };
    let cli = |extra: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_staticlet"))
            .args(["logs", &name, "-c", "web", "--api-socket"])
            .arg(&agent.socket)
            .args(extra)
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    };
    assert_eq!(api("").await.map(|(code, body)| (code, shown(&body))), Some((200, shown(&plain))));
    assert_eq!(shown(&kubectl.stdout(&["logs", &name, "-c", "web"])), shown(&plain));
    assert_eq!(shown(&cli(&[])), shown(&plain));
    assert_eq!(api("&timestamps=true").await.map(|(code, body)| (code, shown(&body))), Some((200, shown(&stamped))));
    assert_eq!(shown(&kubectl.stdout(&["logs", &name, "-c", "web", "--timestamps"])), shown(&stamped));
    assert_eq!(shown(&cli(&["--timestamps"])), shown(&stamped));
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_follow_tail_timestamp_and_show_the_previous_attempt_from_the_cri_files() {
    let (mut agent, containerd) = agent_on_containerd("cri-logs").await;
    // Each attempt prints its own lines, then fails: restarts with back-off.
    agent.write(
        "talk.yaml",
        &pod(
            "talk",
            &yaml!(
                r#"
                containers:
                - name: talk
                  image: {BUSYBOX}
                  command: [sh, -c, 'n=$(cat /proc/sys/kernel/random/uuid); for i in 1 2 3; do echo line-$i-$n; done; echo err-$n >&2; sleep 3; exit 1']
                "#,
                BUSYBOX,
            ),
        ),
    );
    start(&mut agent, &containerd);
    let restarted = status_where(&agent, "talk", "a restart", |p| {
        container_status(p, "talk").and_then(|c| c["restartCount"].as_i64()).is_some_and(|n| n >= 1)
    })
    .await;
    assert_eq!(container_status(&restarted, "talk").unwrap()["lastState"]["terminated"]["exitCode"], 1);

    let base = format!("/api/v1/namespaces/default/pods/{}/log?container=talk", agent.pod("talk"));
    let get = |query: &str| {
        let path = format!("{base}{query}");
        let agent = &agent;
        async move {
            let (code, body) = agent.api_raw("GET", &path).await.unwrap();
            assert_eq!(code, 200, "{path}: {}", String::from_utf8_lossy(&body));
            String::from_utf8(body.to_vec()).unwrap()
        }
    };
    let previous = get("&previous=true").await;
    let lines: Vec<&str> = previous.lines().collect();
    assert_eq!(lines.len(), 4, "three lines and stderr, from the previous attempt's own file: {previous}");
    let run = lines.iter().find_map(|l| l.strip_prefix("line-1-")).expect("the first line").to_owned();
    // stdout in order; stderr comes through a pipe of its own, so only its presence is certain.
    let stdout: Vec<&str> = lines.iter().copied().filter(|l| l.starts_with("line-")).collect();
    assert_eq!(stdout, [1, 2, 3].map(|i| format!("line-{i}-{run}")), "{previous}");
    assert!(lines.contains(&format!("err-{run}").as_str()), "stderr in the same log: {previous}");

    let current = wait_for(UP, "the current attempt's output", || async {
        let log = get("").await;
        log.contains("err-").then_some(log)
    })
    .await;
    assert!(!current.contains(&run), "the current attempt has a file of its own: {current}");
    let tail = get("&tailLines=2").await;
    let last_two: Vec<&str> = current.lines().skip(2).collect();
    assert_eq!(tail.lines().collect::<Vec<_>>(), last_two, "the last two lines of {current}");
    let stamped = get("&tailLines=1&timestamps=true").await;
    let (stamp, line) = stamped.trim_end().split_once(' ').unwrap();
    assert!(time::OffsetDateTime::parse(stamp, &time::format_description::well_known::Rfc3339).is_ok(), "RFC 3339: {stamped}");
    assert_eq!(Some(line), current.lines().last(), "{stamped}");

    // Following streams until the attempt exits, then ends.
    let followed =
        tokio::time::timeout(Duration::from_secs(30), get("&follow=true")).await.expect("a followed log ends when its container stops");
    assert!(followed.lines().count() >= 4, "{followed}");
    // Two attempts' files, each where the kubelet keeps them.
    let uid = restarted["metadata"]["uid"].as_str().unwrap();
    let dir = format!("/var/log/pods/default_{}_{uid}/talk", agent.pod("talk"));
    assert!(std::path::Path::new(&format!("{dir}/0.log")).exists() || std::path::Path::new(&format!("{dir}/1.log")).exists(), "{dir}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_oom_kill_is_reported_as_oom_killed() {
    let (mut agent, containerd) = agent_on_containerd("cri-oom").await;
    agent.write(
        "hog.yaml",
        &pod(
            "hog",
            &yaml!(
                r#"
                restartPolicy: Never
                containers:
                - name: hog
                  image: {BUSYBOX}
                  command: [sh, -c, 'a=$(head -c 300000000 /dev/zero | tr "\\000" x); sleep 1000']
                  resources:
                    limits:
                      memory: 32Mi
                      cpu: 500m
                "#,
                BUSYBOX,
            ),
        ),
    );
    start(&mut agent, &containerd);
    let pod =
        status_where(&agent, "hog", "the hog's end", |p| container_status(p, "hog").is_some_and(|c| c["state"]["terminated"].is_object()))
            .await;
    let terminated = &container_status(&pod, "hog").unwrap()["state"]["terminated"];
    assert_eq!((terminated["reason"].as_str(), terminated["exitCode"].as_i64()), (Some("OOMKilled"), Some(137)), "{pod}");
    assert_eq!(pod["status"]["phase"], "Failed");
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_of_the_agent_restarts_nothing_and_a_removed_manifest_removes_the_sandbox_and_its_logs() {
    let (mut agent, containerd) = agent_on_containerd("cri-kill").await;
    let sleeping = yaml!(
        r#"
        containers:
        - name: main
          image: {BUSYBOX}
          command: [sleep, '3600']
        "#,
        BUSYBOX,
    );
    agent.write("stay.yaml", &pod("stay", &sleeping));
    start(&mut agent, &containerd);
    let before = status_where(&agent, "stay", "stay running", |p| p["status"]["phase"] == "Running").await;
    let id = container_status(&before, "main").unwrap()["containerID"].as_str().unwrap().to_owned();
    let tasks_before = containerd.run(&["tasks", "ls"]);

    agent.kill9();
    start(&mut agent, &containerd);
    let after = status_where(&agent, "stay", "stay reported again", |p| p["status"]["phase"] == "Running").await;
    assert_eq!(container_status(&after, "main").unwrap()["containerID"], id.as_str(), "the same container, adopted");
    assert_eq!(container_status(&after, "main").unwrap()["restartCount"], 0);
    let pid = |tasks: &str| tasks.lines().find(|l| l.starts_with(id.trim_start_matches("containerd://"))).map(str::to_owned);
    assert_eq!(pid(&containerd.run(&["tasks", "ls"])), pid(&tasks_before), "the same process");

    let uid = before["metadata"]["uid"].as_str().unwrap().to_owned();
    let logs = format!("/var/log/pods/default_{}_{uid}", agent.pod("stay"));
    assert!(std::path::Path::new(&logs).is_dir());
    agent.remove("stay.yaml");
    wait_for(UP, "the sandbox removed from containerd", || async {
        (sandbox_labels(&containerd, &agent.node, &agent.pod("stay")).is_none() && containerd.held(&agent.node).is_empty()).then_some(())
    })
    .await;
    wait_for(UP, "the pod's logs removed", || async { (!std::path::Path::new(&logs).exists()).then_some(()) }).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn if_not_present_never_asks_the_registry_for_a_present_image() {
    let (mut agent, containerd) = agent_on_containerd("cri-present").await;
    // Present under a name whose registry does not exist: any pull of it fails.
    let unreachable = format!("127.0.0.1:9/staticlet-test/present:{}", std::process::id());
    let source = containerd.run(&["images", "ls", "-q"]).lines().find(|i| i.contains(BUSYBOX)).unwrap().to_owned();
    containerd.run(&["images", "tag", "--force", &source, &unreachable]);
    let spec = |policy: &str| {
        yaml!(
            r#"
            containers:
            - {name: app, image: '{unreachable}', imagePullPolicy: {policy}, command: [sleep, '3600']}
            "#,
            unreachable,
            policy,
        )
    };
    agent.write("present.yaml", &pod("present", &spec("IfNotPresent")));
    agent.write("always.yaml", &pod("always", &spec("Always")));
    start(&mut agent, &containerd);
    status_where(&agent, "present", "the IfNotPresent pod running on the image it has", |p| p["status"]["phase"] == "Running").await;
    let always = status_where(&agent, "always", "the Always pod failing to pull", |p| {
        container_status(p, "app")
            .is_some_and(|c| matches!(c["state"]["waiting"]["reason"].as_str(), Some("ErrImagePull" | "ImagePullBackOff")))
    })
    .await;
    let message = container_status(&always, "app").unwrap()["state"]["waiting"]["message"].as_str().unwrap_or_default().to_owned();
    assert!(message.contains("127.0.0.1:9"), "the pull was tried and its error names the registry: {message}");
    assert_eq!(http_get(9, "/"), None, "nothing listens on the unreachable registry's port");
}
