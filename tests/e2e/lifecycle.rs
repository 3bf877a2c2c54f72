//! Pod lifecycle fidelity (issue 3): init containers, sidecars, probes, termination, status,
//! with the status read from the agent's API as `kubectl` would read it.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::images::BUSYBOX;
use crate::support::{Agent, condition, container_status, containers, docker, name, running, wait_for, yaml};

const START: Duration = Duration::from_secs(60);

/// A pod; `spec` is its `spec:`, as YAML.
fn manifest(name: &str, spec: &str) -> String {
    yaml!(
        r#"
        apiVersion: v1
        kind: Pod
        metadata:
          name: {name}
        spec:
          {spec}
        "#,
        name,
        spec,
    )
}

/// A host directory mounted into a pod as `/out`, where containers append lines to
/// `/out/events` so a test can see what happened in which order.
struct Events {
    dir: tempfile::TempDir,
}

impl Events {
    fn new() -> Events {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("events"), "").unwrap();
        Events { dir }
    }

    /// The pod-level `volumes:` entry named `out`.
    fn volume(&self) -> String {
        yaml!(
            r#"
            volumes:
            - name: out
              hostPath: {path: '{path}'}
            "#,
            path = self.dir.path().display(),
        )
    }

    fn read(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("events")).unwrap()
    }
}

/// Waits until the pod's containers are all gone from Docker.
async fn wait_removed(docker: &bollard::Docker, agent: &Agent) {
    wait_for(START, "the pod's removal", || async { containers(docker, &agent.node, &[]).await.is_empty().then_some(()) }).await;
}

/// Waits until the API shows pod `name` satisfying `check`.
async fn wait_status(agent: &Agent, name: &str, what: &str, timeout: Duration, check: impl Fn(&Value) -> bool) -> Value {
    wait_for(timeout, what, || async {
        let pod = agent.pod_status(name).await?;
        check(&pod).then_some(pod)
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn an_init_container_fills_an_empty_dir_the_app_reads() {
    let _docker = docker().await;
    let mut agent = Agent::new("init-emptydir");
    agent.write(
        "init.yaml",
        &manifest(
            "init",
            &yaml!(
                r#"
                volumes:
                - name: data
                  emptyDir: {}
                initContainers:
                - name: fill
                  image: {BUSYBOX}
                  command: [sh, -c, 'sleep 1; echo hello > /data/msg']
                  volumeMounts:
                  - {name: data, mountPath: /data}
                containers:
                - name: app
                  image: {BUSYBOX}
                  command: [sh, -c, 'test "$(cat /data/msg)" = hello && exec sleep 100000']
                  volumeMounts:
                  - {name: data, mountPath: /data}
                "#,
                BUSYBOX,
            ),
        ),
    );
    agent.start();
    // While the init container runs, the pod is Pending and the app waits in PodInitializing.
    let pending = wait_status(&agent, "init", "the init container running", START, |p| {
        container_status(p, "fill").is_some_and(|c| c["state"]["running"].is_object())
    })
    .await;
    assert_eq!(pending["status"]["phase"], "Pending");
    assert_eq!(condition(&pending, "Initialized").as_deref(), Some("False"));
    assert_eq!(container_status(&pending, "app").unwrap()["state"]["waiting"]["reason"], "PodInitializing");

    let running =
        wait_status(&agent, "init", "the app running and ready", START, |p| condition(p, "Ready").as_deref() == Some("True")).await;
    assert_eq!(running["status"]["phase"], "Running");
    let fill = container_status(&running, "fill").unwrap();
    assert_eq!(fill["state"]["terminated"]["reason"], "Completed");
    assert_eq!(fill["ready"], true);
    // The app found the file: it is still on its first run three seconds later.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let later = agent.pod_status("init").await.unwrap();
    let app = container_status(&later, "app").unwrap();
    assert!(app["state"]["running"].is_object(), "{app}");
    assert_eq!(app["restartCount"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sidecar_starts_before_the_app_and_stops_after_it() {
    let docker = docker().await;
    let mut agent = Agent::new("sidecar");
    let events = Events::new();
    // The app takes two seconds over its SIGTERM: were the sidecar stopped at the same time, its
    // line would come first.
    agent.write(
        "side.yaml",
        &manifest(
            "side",
            &yaml!(
                r#"
                terminationGracePeriodSeconds: 20
                {volume}
                initContainers:
                - name: proxy
                  image: {BUSYBOX}
                  restartPolicy: Always
                  command: [sh, -c, 'trap "echo proxy-stop >> /out/events; exit 0" TERM; echo proxy-start >> /out/events; sleep 100000 & wait']
                  volumeMounts:
                  - {name: out, mountPath: /out}
                containers:
                - name: app
                  image: {BUSYBOX}
                  command: [sh, -c, 'trap "sleep 2; echo app-stop >> /out/events; exit 0" TERM; echo app-start >> /out/events; sleep 100000 & wait']
                  volumeMounts:
                  - {name: out, mountPath: /out}
                "#,
                volume = events.volume(),
                BUSYBOX,
            ),
        ),
    );
    agent.start();
    let ready = wait_status(&agent, "side", "both containers ready", START, |p| condition(p, "Ready").as_deref() == Some("True")).await;
    assert_eq!(container_status(&ready, "proxy").unwrap()["started"], true);
    assert_eq!(events.read(), "proxy-start\napp-start\n");

    agent.remove("side.yaml");
    wait_removed(&docker, &agent).await;
    assert_eq!(events.read(), "proxy-start\napp-start\napp-stop\nproxy-stop\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_liveness_probe_restarts_the_container() {
    let docker = docker().await;
    let mut agent = Agent::new("liveness");
    // Healthy for three seconds, then the probe's file goes away.
    agent.write(
        "live.yaml",
        &manifest(
            "live",
            &yaml!(
                r#"
                terminationGracePeriodSeconds: 2
                containers:
                - name: app
                  image: {BUSYBOX}
                  command: [sh, -c, 'touch /tmp/healthy; sleep 3; rm /tmp/healthy; sleep 100000']
                  livenessProbe:
                    exec: {command: [cat, /tmp/healthy]}
                    periodSeconds: 1
                    failureThreshold: 2
                "#,
                BUSYBOX,
            ),
        ),
    );
    agent.start();
    let restarted = wait_status(&agent, "live", "a restart after the liveness probe failed", START, |p| {
        container_status(p, "app").is_some_and(|c| c["restartCount"] == 1 && c["state"]["running"].is_object())
    })
    .await;
    let app = container_status(&restarted, "app").unwrap();
    assert_eq!(app["lastState"]["terminated"]["exitCode"], 137, "killed after its grace period: {app}");
    let log = agent.log();
    assert!(log.contains("Liveness probe failed"), "{log}");
    assert!(log.contains("failed liveness probe, will be restarted"), "{log}");
    assert_eq!(running(&docker, &agent.node, "k8s_app_").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn readiness_flips_the_ready_condition_and_startup_gates_it() {
    let docker = docker().await;
    let mut agent = Agent::new("readiness");
    // httpd serves /www/ready once it exists; the startup probe waits for the port to open.
    agent.write(
        "ready.yaml",
        &manifest(
            "ready",
            &yaml!(
                r#"
                containers:
                - name: web
                  image: {BUSYBOX}
                  command: [sh, -c, 'mkdir -p /www; sleep 2; exec httpd -f -p 8080 -h /www']
                  ports:
                  - {name: http, containerPort: 8080}
                  startupProbe:
                    tcpSocket: {port: http}
                    periodSeconds: 1
                    failureThreshold: 30
                  readinessProbe:
                    httpGet: {path: /ready, port: 8080}
                    periodSeconds: 1
                "#,
                BUSYBOX,
            ),
        ),
    );
    agent.start();
    let unready = wait_status(&agent, "ready", "the container started but not ready", START, |p| {
        container_status(p, "web").is_some_and(|c| c["started"] == true)
    })
    .await;
    assert_eq!(condition(&unready, "Ready").as_deref(), Some("False"));
    assert_eq!(unready["status"]["phase"], "Running");
    agent.wait_log("Readiness probe failed: HTTP probe failed with statuscode: 404").await;
    assert_eq!(condition(&agent.pod_status("ready").await.unwrap(), "Ready").as_deref(), Some("False"));

    let web = running(&docker, &agent.node, "k8s_web_").await.pop().unwrap();
    exec(&docker, web.id.as_deref().unwrap(), "echo ok > /www/ready").await;
    let ready = wait_status(&agent, "ready", "Ready=True", START, |p| condition(p, "Ready").as_deref() == Some("True")).await;
    assert_eq!(condition(&ready, "ContainersReady").as_deref(), Some("True"));
    assert_eq!(container_status(&ready, "web").unwrap()["ready"], true);

    exec(&docker, web.id.as_deref().unwrap(), "rm /www/ready").await;
    let unready = wait_status(&agent, "ready", "Ready=False again", START, |p| condition(p, "Ready").as_deref() == Some("False")).await;
    assert_eq!(
        unready["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Ready").unwrap()["reason"],
        "ContainersNotReady"
    );
    assert_eq!(container_status(&unready, "web").unwrap()["restartCount"], 0, "readiness never restarts");
}

async fn exec(docker: &bollard::Docker, id: &str, script: &str) {
    let exec = docker
        .create_exec(id, bollard::exec::CreateExecOptions { cmd: Some(vec!["sh", "-c", script]), ..Default::default() })
        .await
        .unwrap();
    docker.start_exec(&exec.id, Some(bollard::exec::StartExecOptions { detach: true, ..Default::default() })).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sigterm_handler_and_pre_stop_hook_finish_when_the_manifest_is_removed() {
    let docker = docker().await;
    let mut agent = Agent::new("graceful");
    let events = Events::new();
    agent.write(
        "graceful.yaml",
        &manifest(
            "graceful",
            &yaml!(
                r#"
                terminationGracePeriodSeconds: 30
                {volume}
                containers:
                - name: app
                  image: {BUSYBOX}
                  command: [sh, -c, 'trap "sleep 3; echo handler-done >> /out/events; exit 0" TERM; sleep 100000 & wait']
                  lifecycle:
                    preStop:
                      exec: {command: [sh, -c, 'echo pre-stop >> /out/events']}
                  volumeMounts:
                  - {name: out, mountPath: /out}
                "#,
                volume = events.volume(),
                BUSYBOX,
            ),
        ),
    );
    agent.start();
    wait_for(START, "the app", || async { running(&docker, &agent.node, "k8s_app_").await.pop() }).await;
    agent.remove("graceful.yaml");
    wait_removed(&docker, &agent).await;
    assert_eq!(events.read(), "pre-stop\nhandler-done\n", "{}", agent.log());
    wait_for(START, "the API to forget the pod", || async { agent.pod_status("graceful").await.is_none().then_some(()) }).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_container_ignoring_sigterm_is_killed_after_its_grace_period() {
    let docker = docker().await;
    let mut agent = Agent::new("stubborn");
    agent.write(
        "stubborn.yaml",
        &manifest(
            "stubborn",
            &yaml!(
                r#"
                terminationGracePeriodSeconds: 4
                containers:
                - name: app
                  image: {BUSYBOX}
                  command: [sh, -c, 'trap "" TERM; sleep 100000 & wait; sleep 100000']
                "#,
                BUSYBOX,
            ),
        ),
    );
    agent.start();
    wait_for(START, "the app", || async { running(&docker, &agent.node, "k8s_app_").await.pop() }).await;
    let removed_at = Instant::now();
    agent.remove("stubborn.yaml");
    wait_for(START, "the app to stop", || async { running(&docker, &agent.node, "k8s_app_").await.is_empty().then_some(()) }).await;
    let took = removed_at.elapsed();
    assert!(took >= Duration::from_millis(3500), "it lived out its 4 s grace period: {took:?}");
    assert!(took < Duration::from_secs(15), "then it was killed: {took:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn changing_one_containers_env_restarts_that_container_only() {
    let docker = docker().await;
    let mut agent = Agent::new("env-change");
    let pod = |value: &str| {
        manifest(
            "pair",
            &yaml!(
                r#"
                terminationGracePeriodSeconds: 2
                containers:
                - name: left
                  image: {BUSYBOX}
                  command: [sleep, '100000']
                - name: right
                  image: {BUSYBOX}
                  command: [sleep, '100000']
                  env:
                  - {name: COLOUR, value: '{value}'}
                "#,
                BUSYBOX,
                value,
            ),
        )
    };
    agent.write("pair.yaml", &pod("red"));
    agent.start();
    let first = wait_status(&agent, "pair", "both running", START, |p| condition(p, "Ready").as_deref() == Some("True")).await;
    let left_id = container_status(&first, "left").unwrap()["containerID"].clone();
    agent.write("pair.yaml", &pod("blue"));
    let second = wait_status(&agent, "pair", "right restarted", START, |p| {
        container_status(p, "right").is_some_and(|c| c["restartCount"] == 1 && c["ready"] == true)
    })
    .await;
    let left = container_status(&second, "left").unwrap();
    assert_eq!(left["containerID"], left_id, "the unchanged container kept running");
    assert_eq!(left["restartCount"], 0);
    let right = running(&docker, &agent.node, "k8s_right_").await.pop().unwrap();
    let env = docker.inspect_container(right.id.as_deref().unwrap(), None).await.unwrap().config.unwrap().env.unwrap();
    assert!(env.contains(&"COLOUR=blue".to_owned()), "{env:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_termination_message_and_a_failed_init_container_reach_the_status() {
    let _docker = docker().await;
    let mut agent = Agent::new("termination-message");
    agent.write(
        "message.yaml",
        &manifest(
            "message",
            &yaml!(
                r#"
                restartPolicy: Never
                containers:
                - name: job
                  image: {BUSYBOX}
                  command: [sh, -c, 'echo "disk full on /var" > /dev/termination-log; exit 2']
                "#,
                BUSYBOX,
            ),
        ),
    );
    agent.write(
        "initfail.yaml",
        &manifest(
            "initfail",
            &yaml!(
                r#"
                restartPolicy: Never
                initContainers:
                - name: check
                  image: {BUSYBOX}
                  command: [sh, -c, 'exit 1']
                containers:
                - name: app
                  image: {BUSYBOX}
                  command: [sleep, '100000']
                "#,
                BUSYBOX,
            ),
        ),
    );
    agent.write(
        "fallback.yaml",
        &manifest(
            "fallback",
            &yaml!(
                r#"
                restartPolicy: Never
                containers:
                - name: job
                  image: {BUSYBOX}
                  terminationMessagePolicy: FallbackToLogsOnError
                  command: [sh, -c, 'echo starting; echo "fatal: cannot open /etc/app.conf" >&2; exit 4']
                "#,
                BUSYBOX,
            ),
        ),
    );
    agent.start();
    let fallback = wait_status(&agent, "fallback", "the log's tail as the message", START, |p| p["status"]["phase"] == "Failed").await;
    let message = container_status(&fallback, "job").unwrap()["state"]["terminated"]["message"].as_str().unwrap_or_default().to_owned();
    // Docker may order two lines written in the same instant to two streams either way.
    let mut lines: Vec<&str> = message.lines().collect();
    lines.sort_unstable();
    assert_eq!(lines, ["fatal: cannot open /etc/app.conf", "starting"], "{message:?}");
    let failed = wait_status(&agent, "message", "the job to fail", START, |p| p["status"]["phase"] == "Failed").await;
    let terminated = &container_status(&failed, "job").unwrap()["state"]["terminated"];
    assert_eq!(terminated["exitCode"], 2);
    assert_eq!(terminated["reason"], "Error");
    assert_eq!(terminated["message"], "disk full on /var\n");

    let init_failed =
        wait_status(&agent, "initfail", "the pod to fail on its init container", START, |p| p["status"]["phase"] == "Failed").await;
    assert_eq!(container_status(&init_failed, "check").unwrap()["state"]["terminated"]["exitCode"], 1);
    assert_eq!(container_status(&init_failed, "app").unwrap()["state"]["waiting"]["reason"], "PodInitializing");
    assert_eq!(condition(&init_failed, "Initialized").as_deref(), Some("False"));
}

#[tokio::test(flavor = "multi_thread")]
async fn back_off_and_restart_counts_survive_an_agent_restart() {
    let docker = docker().await;
    let mut agent = Agent::new("backoff-restart");
    agent.write(
        "crashy.yaml",
        &manifest(
            "crashy",
            &yaml!(
                r#"
                containers:
                - name: crashy
                  image: {BUSYBOX}
                  command: [sh, -c, 'exit 3']
                "#,
                BUSYBOX,
            ),
        ),
    );
    agent.start();
    // Attempt 0 crashes and restarts at once; attempt 1 waits 10 s; attempt 2 then waits 20 s.
    let waiting = wait_status(&agent, "crashy", "attempt 2 in CrashLoopBackOff", Duration::from_secs(60), |p| {
        container_status(p, "crashy").is_some_and(|c| c["restartCount"] == 2 && c["state"]["waiting"]["reason"] == "CrashLoopBackOff")
    })
    .await;
    let message = container_status(&waiting, "crashy").unwrap()["state"]["waiting"]["message"].as_str().unwrap().to_owned();
    assert!(message.starts_with("back-off 20s restarting failed container=crashy"), "{message}");
    let crashed_at = Instant::now();
    agent.kill9();
    agent.start();
    // A forgetful agent would restart it at once; this one waits out the 20 s.
    let third = wait_for(Duration::from_secs(60), "attempt 3", || async {
        containers(&docker, &agent.node, &[("io.kubernetes.container.name", "crashy")]).await.into_iter().find(|c| name(c).ends_with("_3"))
    })
    .await;
    let waited = crashed_at.elapsed();
    assert!(waited >= Duration::from_secs(15), "the back-off survived the restart: attempt 3 after {waited:?}");
    assert!(name(&third).ends_with("_3"), "restart counts carry on");
    let status = wait_status(&agent, "crashy", "restartCount 3", START, |p| {
        container_status(p, "crashy").is_some_and(|c| c["restartCount"].as_i64() >= Some(3))
    })
    .await;
    assert_eq!(status["status"]["phase"], "Running");
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_are_refused_with_the_manifest_named() {
    let _docker = docker().await;
    let mut agent = Agent::new("api-writes");
    agent.write(
        "web.yaml",
        &manifest(
            "web",
            &yaml!(
                r#"
                containers:
                - name: web
                  image: {BUSYBOX}
                  command: [sleep, '100000']
                "#,
                BUSYBOX,
            ),
        ),
    );
    agent.start();
    wait_status(&agent, "web", "the pod", START, |_| true).await;
    let (code, status) = agent.api("DELETE", &format!("/api/v1/namespaces/default/pods/{}", agent.pod("web"))).await.unwrap();
    assert_eq!(code, 405);
    assert_eq!(status["kind"], "Status");
    let message = status["message"].as_str().unwrap();
    assert!(message.contains(&agent.manifests.join("web.yaml").display().to_string()), "{message}");
    let (code, list) = agent.api("GET", "/pods").await.unwrap();
    assert_eq!((code, list["kind"].as_str()), (200, Some("PodList")));
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert!(agent.pod_status("web").await.is_some(), "the pod is still there");
}
