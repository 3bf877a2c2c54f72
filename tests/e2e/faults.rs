//! Faults (issue 10, points 1, 2 and 6): the engine restarted or absent, objects removed behind
//! the agent's back, the agent killed in the middle of a burst of changes, its state files torn,
//! and a node that can pull no pause image.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use bollard::Docker;

use crate::support::dockerd::Dockerd;
use crate::support::images::BUSYBOX;
use crate::support::{self, Agent, container_status, containers, docker, name, running, wait_for, yaml};

const CONVERGE: Duration = Duration::from_secs(120);

/// A pod whose container sleeps for `seconds`, stopped quickly so rounds stay short.
fn sleeper(name: &str, seconds: u32) -> String {
    support::sleeper(name, seconds, "terminationGracePeriodSeconds: 1")
}

/// What `/readyz` answers.
async fn readyz(agent: &Agent) -> Option<(u16, String)> {
    agent.api_raw("GET", "/readyz").await.map(|(code, body)| (code, String::from_utf8_lossy(&body).into_owned()))
}

/// The IDs of every object of the agent's node on `docker`, sorted.
async fn ids(docker: &Docker, node: &str) -> Vec<String> {
    let mut ids: Vec<String> = containers(docker, node, &[]).await.into_iter().filter_map(|c| c.id).collect();
    ids.sort();
    ids
}

/// Waits until the API reports each of `names` Running.
async fn all_running(agent: &Agent, names: &[String]) {
    wait_for(CONVERGE, &format!("{} pods reported running; the agent's log:\n{}", names.len(), agent.log()), || async {
        for name in names {
            if agent.pod_status(name).await?["status"]["phase"] != "Running" {
                return None;
            }
        }
        Some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_engine_restart_under_twenty_pods_changes_nothing() {
    let mut engine = Dockerd::new();
    engine.start().await;
    engine.load_test_images().await;
    let docker = engine.client();
    let mut agent = Agent::new("engine-restart");
    let names: Vec<String> = (0..20).map(|i| format!("p{i}")).collect();
    for name in &names {
        agent.write(&format!("{name}.yaml"), &sleeper(name, 100_000));
    }
    agent.start_with(&["--docker-endpoint", &engine.endpoint()]);
    all_running(&agent, &names).await;
    let before = ids(&docker, &agent.node).await;
    assert_eq!(before.len(), 40, "a sandbox and a container per pod");

    engine.stop();
    wait_for(Duration::from_secs(30), "/readyz to report the engine down", || async {
        readyz(&agent).await.filter(|(code, body)| *code == 503 && body.contains("runtime docker is unreachable"))
    })
    .await;
    engine.start().await;
    wait_for(Duration::from_secs(30), "/readyz to recover", || async { readyz(&agent).await.filter(|(code, _)| *code == 200) }).await;
    agent.wait_log("runtime reachable again").await;

    // The event stream is back: an edit is applied as soon as it is written.
    let old_p0 = running(&docker, &agent.node, &format!("k8s_main_{}_", agent.pod("p0"))).await.pop().and_then(|c| c.id).unwrap();
    agent.write("p0.yaml", &sleeper("p0", 100_001));
    let new_p0 = wait_for(Duration::from_secs(30), "the edit after the restart", || async {
        running(&docker, &agent.node, &format!("k8s_main_{}_", agent.pod("p0"))).await.pop().and_then(|c| c.id).filter(|id| *id != old_p0)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    let mut expected: Vec<String> = before.iter().filter(|id| **id != old_p0).cloned().chain([new_p0]).collect();
    expected.sort();
    let running_now: Vec<String> = {
        let mut ids: Vec<String> = running(&docker, &agent.node, "k8s_").await.into_iter().filter_map(|c| c.id).collect();
        ids.sort();
        ids
    };
    assert_eq!(running_now, expected, "the same objects as before the engine restart, no duplicates, the edit applied");
    for name in &names[1..] {
        let pod = agent.pod_status(name).await.unwrap();
        assert_eq!(container_status(&pod, "main").unwrap()["restartCount"], 0, "{name} counted no restart");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_absent_engine_is_waited_for_and_reported() {
    let mut engine = Dockerd::new();
    let mut agent = Agent::new("engine-absent");
    agent.write("late.yaml", &sleeper("late", 100_000));
    agent.start_with(&["--docker-endpoint", &engine.endpoint()]);

    let (_, body) = wait_for(Duration::from_secs(30), "/readyz to report the engine absent", || async {
        readyz(&agent).await.filter(|(code, body)| *code == 503 && body.contains("runtime docker is unreachable"))
    })
    .await;
    assert!(body.contains("docker.sock"), "{body}");
    agent.wait_log("cannot list pods").await;
    let pod = wait_for(Duration::from_secs(30), "the pod to say why it waits", || async {
        agent.pod_status("late").await.filter(|p| container_status(p, "main").is_some())
    })
    .await;
    assert_eq!(pod["status"]["phase"], "Pending");
    let waiting = &container_status(&pod, "main").unwrap()["state"]["waiting"];
    assert_eq!(waiting["reason"], "ContainerCreating");
    assert!(waiting["message"].as_str().unwrap().contains("runtime docker"), "{waiting}");
    assert!(agent.is_running());

    engine.start().await;
    engine.load_test_images().await;
    all_running(&agent, &["late".to_owned()]).await;
    wait_for(Duration::from_secs(30), "/readyz to turn ready", || async { readyz(&agent).await.filter(|(code, _)| *code == 200) }).await;
    assert_eq!(running(&engine.client(), &agent.node, "k8s_main_").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_air_gapped_engine_runs_pods_on_the_built_in_pause_image() {
    let mut engine = Dockerd::new();
    engine.start().await;
    engine.load_test_images().await;
    let docker = engine.client();
    let mut agent = Agent::new("air-gapped");
    // No --pod-infra-container-image: the kubelet's default, which no registry here serves.
    agent.pod_infra_image = None;
    agent.write("edge.yaml", &sleeper("edge", 100_000));
    agent.start_with(&["--docker-endpoint", &engine.endpoint()]);
    all_running(&agent, &["edge".to_owned()]).await;
    agent.wait_log("cannot pull the sandbox image").await;

    let sandbox = running(&docker, &agent.node, "k8s_POD_").await.pop().expect("a running sandbox");
    let image = sandbox.image.unwrap_or_default();
    assert!(image.starts_with("staticlet.local/pause:"), "{image}");
    let inspect = docker.inspect_image(&image).await.unwrap();
    assert_eq!(inspect.config.and_then(|c| c.entrypoint), Some(vec!["/pause".to_owned()]));

    // The pause process exits on SIGTERM at once, well inside the sandbox's 10 s grace.
    let removed = Instant::now();
    agent.remove("edge.yaml");
    wait_for(Duration::from_secs(30), "the pod's removal", || async {
        containers(&docker, &agent.node, &[]).await.is_empty().then_some(())
    })
    .await;
    assert!(removed.elapsed() < Duration::from_secs(8), "stopping took {:?}", removed.elapsed());
}

#[tokio::test(flavor = "multi_thread")]
async fn objects_removed_behind_the_agents_back_come_back() {
    let docker = docker().await;
    let mut agent = Agent::new("behind-back");
    agent.write("a.yaml", &sleeper("a", 100_000));
    agent.write("b.yaml", &sleeper("b", 100_000));
    agent.start();
    all_running(&agent, &["a".to_owned(), "b".to_owned()]).await;
    let app = |pod: String| {
        let docker = docker.clone();
        let node = agent.node.clone();
        async move { running(&docker, &node, &format!("k8s_main_{pod}_")).await.pop().and_then(|c| c.id) }
    };
    let sandbox = |pod: String| {
        let docker = docker.clone();
        let node = agent.node.clone();
        async move { running(&docker, &node, &format!("k8s_POD_{pod}_")).await.pop().and_then(|c| c.id) }
    };

    // `docker rm -f` of a's container: a new one, in the same sandbox.
    let (a_app, a_sandbox) = (app(agent.pod("a")).await.unwrap(), sandbox(agent.pod("a")).await.unwrap());
    std::process::Command::new("docker").args(["rm", "-f", &a_app]).output().unwrap();
    wait_for(Duration::from_secs(30), "a's container recreated", || async { app(agent.pod("a")).await.filter(|id| *id != a_app) }).await;
    assert_eq!(sandbox(agent.pod("a")).await.unwrap(), a_sandbox, "the sandbox stays");

    // `docker kill` of b's sandbox: the pod is made again, a new sandbox and container.
    let (b_app, b_sandbox) = (app(agent.pod("b")).await.unwrap(), sandbox(agent.pod("b")).await.unwrap());
    std::process::Command::new("docker").args(["kill", &b_sandbox]).output().unwrap();
    wait_for(Duration::from_secs(60), "b's sandbox recreated", || async { sandbox(agent.pod("b")).await.filter(|id| *id != b_sandbox) })
        .await;
    wait_for(Duration::from_secs(60), "b's container recreated", || async { app(agent.pod("b")).await.filter(|id| *id != b_app) }).await;
    all_running(&agent, &["a".to_owned(), "b".to_owned()]).await;
    assert_eq!(running(&docker, &agent.node, "k8s_").await.len(), 4, "one sandbox and one container each, no duplicates");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_sandbox_is_retried_with_back_off_not_in_a_hot_loop() {
    let docker = docker().await;
    let mut agent = Agent::new("sandbox-retry");
    // Docker cannot bind a host port that is taken, so the sandbox fails to start.
    let taken = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let manifest = yaml!(
        r#"
        apiVersion: v1
        kind: Pod
        metadata:
          name: clash
        spec:
          terminationGracePeriodSeconds: 1
          containers:
          - name: main
            image: {BUSYBOX}
            imagePullPolicy: Never
            ports:
            - containerPort: 80
              hostPort: {port}
            command: [sleep, '100000']
        "#,
        BUSYBOX,
        port,
    );
    agent.write("clash.yaml", &manifest);
    agent.start();
    agent.wait_log("Failed to create pod sandbox").await;
    tokio::time::sleep(Duration::from_secs(12)).await;
    let attempts = agent.log().lines().filter(|l| l.contains("sync failed") && l.contains("clash")).count();
    // Retries after 2, 4, 8 and then every 10 s: four or five attempts in 12 s, not dozens.
    assert!((2..=6).contains(&attempts), "{attempts} attempts in 12 s:\n{}", agent.log());

    drop(taken);
    wait_for(Duration::from_secs(30), "the pod to start once the port is free", || async {
        running(&docker, &agent.node, &format!("k8s_main_{}_", agent.pod("clash"))).await.pop()
    })
    .await;
}

/// A small deterministic generator, so a failing round can be replayed from its seed.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Whether the engine holds exactly `wanted` (pod → the seconds its container sleeps): one
/// running sandbox and one running container of the right version per pod, nothing running
/// for any other pod; `Err` says what is off.
async fn holds_exactly(docker: &Docker, agent: &Agent, wanted: &BTreeMap<String, u32>) -> Result<(), String> {
    let mut seen: BTreeMap<String, (usize, Vec<String>)> = BTreeMap::new();
    for c in containers(docker, &agent.node, &[]).await {
        let pod = c.labels.as_ref().and_then(|l| l.get("io.kubernetes.pod.name")).cloned().unwrap_or_default();
        let Some(short) = wanted.keys().find(|w| agent.pod(w) == pod) else {
            return Err(format!("an object of a pod not wanted: {}", name(&c)));
        };
        if c.state.as_ref().map(|s| s.to_string()).as_deref() != Some("running") {
            continue;
        }
        let entry = seen.entry(short.clone()).or_default();
        if name(&c).starts_with("k8s_POD_") {
            entry.0 += 1;
        } else {
            entry.1.push(c.command.clone().unwrap_or_default());
        }
    }
    for (pod, seconds) in wanted {
        match seen.get(pod) {
            Some((1, commands)) if *commands == [format!("sleep {seconds}")] => {}
            other => return Err(format!("{pod} (sleep {seconds}): running sandboxes and commands {other:?}")),
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_in_bursts_of_changes_always_converges() {
    let docker = docker().await;
    let mut agent = Agent::new("kill9-burst");
    let seed = u64::from(std::process::id()) | 1;
    let mut rng = XorShift(seed);
    let mut wanted: BTreeMap<String, u32> = BTreeMap::new();
    let mut next_pod = 0;
    for _ in 0..4 {
        let pod = format!("p{next_pod}");
        next_pod += 1;
        agent.write(&format!("{pod}.yaml"), &sleeper(&pod, 100_000));
        wanted.insert(pod, 100_000);
    }
    agent.start();

    for round in 0..20 {
        // Eight changes 0-150 ms apart, the agent killed before a random one of them: some land
        // while it runs, the rest while it is down.
        let kill_before = rng.below(8);
        for step in 0..8 {
            if step == kill_before {
                agent.kill9();
            }
            let pods: Vec<String> = wanted.keys().cloned().collect();
            match rng.below(3) {
                0 if wanted.len() < 7 => {
                    let pod = format!("p{next_pod}");
                    next_pod += 1;
                    agent.write(&format!("{pod}.yaml"), &sleeper(&pod, 100_000));
                    wanted.insert(pod, 100_000);
                }
                1 if wanted.len() > 2 => {
                    let pod = &pods[rng.below(pods.len() as u64) as usize];
                    agent.remove(&format!("{pod}.yaml"));
                    wanted.remove(pod);
                }
                _ => {
                    let pod = &pods[rng.below(pods.len() as u64) as usize];
                    let seconds = wanted[pod] + 1;
                    agent.write(&format!("{pod}.yaml"), &sleeper(pod, seconds));
                    wanted.insert(pod.clone(), seconds);
                }
            }
            tokio::time::sleep(Duration::from_millis(rng.below(150))).await;
        }
        agent.start();
        let deadline = Instant::now() + CONVERGE;
        loop {
            match holds_exactly(&docker, &agent, &wanted).await {
                Ok(()) => break,
                Err(off) if Instant::now() > deadline => {
                    panic!("round {round} (seed {seed}) did not converge: {off}\n{}", agent.log())
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
        // A worker publishes its pod's status at the end of the pass that started it: the API
        // follows the runtime by that much.
        let expected: BTreeSet<String> = wanted.keys().map(|p| agent.pod(p)).collect();
        let listed = || async {
            let (_, list) = agent.api("GET", "/api/v1/pods").await.unwrap();
            list["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["metadata"]["name"].as_str().unwrap().to_owned())
                .collect::<BTreeSet<String>>()
        };
        let what = format!("round {round}: the API to show the wanted pods only, {expected:?}");
        wait_for(Duration::from_secs(10), &what, || async { (listed().await == expected).then_some(()) }).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_torn_state_file_is_reported_and_rebuilt_from_the_runtime() {
    let docker = docker().await;
    let mut agent = Agent::new("torn-state");
    agent.write("kept.yaml", &sleeper("kept", 100_000));
    agent.start();
    all_running(&agent, &["kept".to_owned()]).await;
    let pod = agent.pod_status("kept").await.unwrap();
    let uid = pod["metadata"]["uid"].as_str().unwrap().to_owned();
    let started = pod["status"]["startTime"].as_str().unwrap().to_owned();
    let objects = ids(&docker, &agent.node).await;

    agent.kill9();
    let record = agent.root.join("pods").join(&uid).join("pod-state.json");
    let whole = std::fs::read(&record).unwrap();
    std::fs::write(&record, &whole[..whole.len() / 2]).unwrap();
    agent.start();
    agent.wait_log("ignoring the pod's saved state and rebuilding it from the runtime").await;
    assert!(agent.log().contains(&record.display().to_string()), "the file is named:\n{}", agent.log());

    let rebuilt: serde_json::Value = wait_for(Duration::from_secs(30), "the record rewritten whole", || async {
        serde_json::from_slice(&std::fs::read(&record).ok()?).ok()
    })
    .await;
    assert!(rebuilt["startTime"].is_object(), "{rebuilt}");
    assert_eq!(ids(&docker, &agent.node).await, objects, "nothing restarted");
    let pod = agent.pod_status("kept").await.unwrap();
    let restarted = pod["status"]["startTime"].as_str().unwrap();
    let seconds = |t: &str| time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).unwrap().unix_timestamp();
    assert!((seconds(restarted) - seconds(&started)).abs() <= 1, "the start time comes from the sandbox: {started} vs {restarted}");
    assert!(agent.is_running());
}
