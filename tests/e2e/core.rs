//! The core agent: a manifest directory, reconciled onto Docker as the kubelet does it.

use std::time::{Duration, Instant};

use crate::support::images::BUSYBOX;
use crate::support::{Agent, containers, docker, free_port, http_get, name, running, wait_for, yaml};

const START: Duration = Duration::from_secs(60);

fn sleeper(name: &str) -> String {
    yaml!(
        r#"
        apiVersion: v1
        kind: Pod
        metadata:
          name: {name}
          labels:
            app: {name}
        spec:
          containers:
          - name: main
            image: {BUSYBOX}
            command: [sh, -c, 'trap "exit 0" TERM; sleep 100000 & wait']
        "#,
        name,
        BUSYBOX,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pod_starts_with_the_kubelets_names_and_labels() {
    let docker = docker().await;
    let mut agent = Agent::new("names");
    agent.write("bb-static.yaml", &sleeper("bb-static"));
    agent.start();
    let pod = agent.pod("bb-static");
    let app = wait_for(START, "the app container", || async { running(&docker, &agent.node, "k8s_main_").await.pop() }).await;

    let sandbox = running(&docker, &agent.node, "k8s_POD_").await.pop().expect("a running sandbox");
    let labels = app.labels.clone().unwrap();
    let uid = labels["io.kubernetes.pod.uid"].clone();
    assert_eq!(uid.len(), 32);
    assert_eq!(name(&app), format!("k8s_main_{pod}_default_{uid}_0"));
    assert_eq!(name(&sandbox), format!("k8s_POD_{pod}_default_{uid}_0"));
    assert_eq!(labels["io.kubernetes.pod.name"], pod);
    assert_eq!(labels["io.kubernetes.pod.namespace"], "default");
    assert_eq!(labels["io.kubernetes.container.name"], "main");
    assert_eq!(labels["io.kubernetes.docker.type"], "container");
    assert_eq!(labels["annotation.io.kubernetes.container.restartCount"], "0");
    let sandbox_labels = sandbox.labels.clone().unwrap();
    assert_eq!(sandbox_labels["app"], "bb-static", "the pod's own labels are on the sandbox");
    assert_eq!(sandbox_labels["io.kubernetes.docker.type"], "podsandbox");
    assert_eq!(sandbox_labels["annotation.kubernetes.io/config.source"], "file");
    assert_eq!(sandbox_labels["annotation.kubernetes.io/config.hash"].len(), 32);
    // The app container lives in the sandbox's network namespace.
    let inspect = docker.inspect_container(app.id.as_deref().unwrap(), None).await.unwrap();
    let mode = inspect.host_config.unwrap().network_mode.unwrap();
    assert_eq!(mode, format!("container:{}", sandbox.id.unwrap()));
}

#[tokio::test(flavor = "multi_thread")]
async fn host_network_and_host_port_pods_serve_http_to_the_host() {
    let docker = docker().await;
    let mut agent = Agent::new("http");
    let host_net_port = free_port();
    let host_port = free_port();
    agent.write(
        "web-host.yaml",
        &yaml!(
            r#"
            apiVersion: v1
            kind: Pod
            metadata:
              name: web-host
            spec:
              hostNetwork: true
              containers:
              - name: web
                image: {BUSYBOX}
                command: [httpd, -f, -p, '127.0.0.1:{host_net_port}', -h, /www]
            "#,
            BUSYBOX,
            host_net_port,
        ),
    );
    agent.write(
        "web-port.yaml",
        &yaml!(
            r#"
            apiVersion: v1
            kind: Pod
            metadata:
              name: web-port
            spec:
              containers:
              - name: web
                image: {BUSYBOX}
                command: [httpd, -f, -p, '8080', -h, /www]
                ports:
                - containerPort: 8080
                  hostPort: {host_port}
            "#,
            BUSYBOX,
            host_port,
        ),
    );
    agent.start();
    for port in [host_net_port, host_port] {
        let body = wait_for(START, &format!("HTTP on port {port}"), || async move { http_get(port, "/index.html") }).await;
        assert!(body.contains("hello from staticlet"), "{body}");
    }
    let sandbox = running(&docker, &agent.node, &format!("k8s_POD_{}", agent.pod("web-host"))).await.pop().unwrap();
    let inspect = docker.inspect_container(sandbox.id.as_deref().unwrap(), None).await.unwrap();
    assert_eq!(inspect.host_config.unwrap().network_mode.as_deref(), Some("host"));
}

#[tokio::test(flavor = "multi_thread")]
async fn editing_replaces_only_the_changed_container_and_deleting_removes_the_pod() {
    let docker = docker().await;
    let mut agent = Agent::new("edit");
    let two = |value: &str| {
        yaml!(
            r#"
            apiVersion: v1
            kind: Pod
            metadata:
              name: two
            spec:
              terminationGracePeriodSeconds: 2
              containers:
              - name: steady
                image: {BUSYBOX}
                command: [sleep, '100000']
              - name: edited
                image: {BUSYBOX}
                command: [sleep, '100000']
                env:
                - name: VERSION
                  value: '{value}'
            "#,
            BUSYBOX,
            value,
        )
    };
    agent.write("two.yaml", &two("1"));
    agent.start();
    let pod = agent.pod("two");
    let before = wait_for(START, "both containers", || async {
        let all = running(&docker, &agent.node, "k8s_").await;
        (all.len() == 3).then_some(all)
    })
    .await;
    let id_of = |list: &[bollard::models::ContainerSummary], prefix: &str| {
        list.iter().find(|c| name(c).starts_with(prefix)).and_then(|c| c.id.clone()).unwrap()
    };
    let (steady, edited, sandbox) = (id_of(&before, "k8s_steady_"), id_of(&before, "k8s_edited_"), id_of(&before, "k8s_POD_"));

    agent.write("two.yaml", &two("2"));
    let replaced = wait_for(START, "the edited container's replacement", || async {
        running(&docker, &agent.node, &format!("k8s_edited_{pod}")).await.into_iter().find(|c| name(c).ends_with("_1"))
    })
    .await;
    let env = docker.inspect_container(replaced.id.as_deref().unwrap(), None).await.unwrap().config.unwrap().env.unwrap();
    assert!(env.contains(&"VERSION=2".to_owned()), "{env:?}");
    let after = running(&docker, &agent.node, "k8s_").await;
    assert_eq!(id_of(&after, "k8s_steady_"), steady, "the unchanged container keeps running");
    assert_eq!(id_of(&after, "k8s_POD_"), sandbox, "the sandbox is kept");
    assert!(!after.iter().any(|c| c.id.as_deref() == Some(&edited)), "the old edited container stopped");

    agent.remove("two.yaml");
    wait_for(START, "the pod's removal", || async { containers(&docker, &agent.node, &[]).await.is_empty().then_some(()) }).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crashing_container_restarts_with_growing_back_off() {
    let docker = docker().await;
    let mut agent = Agent::new("crash");
    agent.write(
        "crash.yaml",
        &yaml!(
            r#"
            apiVersion: v1
            kind: Pod
            metadata:
              name: crash
            spec:
              containers:
              - name: crash
                image: {BUSYBOX}
                command: [sh, -c, 'sleep 1; exit 3']
            "#,
            BUSYBOX,
        ),
    );
    agent.start();
    // Record when each attempt first shows up as running.
    let mut seen_at = Vec::new();
    let started = Instant::now();
    while seen_at.len() < 4 && started.elapsed() < Duration::from_secs(90) {
        let attempts = containers(&docker, &agent.node, &[("io.kubernetes.container.name", "crash")]).await;
        for c in attempts {
            let attempt: usize = name(&c).rsplit('_').next().unwrap().parse().unwrap();
            if attempt == seen_at.len() {
                seen_at.push(started.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen_at.len(), 4, "four attempts within 90s: {seen_at:?}\n{}", agent.log());
    let gaps: Vec<f64> = seen_at.windows(2).map(|w| (w[1] - w[0]).as_secs_f64()).collect();
    // Each run lasts ~1 s; the kubelet's back-off adds 0 s, then 10 s, then 20 s.
    assert!(gaps[0] < 6.0, "first restart is immediate: {gaps:?}");
    assert!((10.0..18.0).contains(&gaps[1]), "second restart waits ~10 s: {gaps:?}");
    assert!((20.0..30.0).contains(&gaps[2]), "third restart waits ~20 s: {gaps:?}");
    assert!(agent.log().contains("Back-off restarting failed container"), "{}", agent.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_and_restart_of_the_agent_restarts_nothing() {
    let docker = docker().await;
    let mut agent = Agent::new("adopt");
    agent.write("keep.yaml", &sleeper("keep"));
    agent.write("drop.yaml", &sleeper("drop"));
    agent.start();
    let before = wait_for(START, "both pods", || async {
        let all = running(&docker, &agent.node, "k8s_").await;
        (all.len() == 4).then_some(all)
    })
    .await;
    let mut ids: Vec<_> = before.iter().filter(|c| name(c).contains("keep")).filter_map(|c| c.id.clone()).collect();
    ids.sort();

    agent.kill9();
    // While the agent is down, one manifest goes away.
    agent.remove("drop.yaml");
    agent.start();
    wait_for(START, "the dropped pod's removal", || async {
        let all = containers(&docker, &agent.node, &[]).await;
        all.iter().all(|c| !name(c).contains("drop")).then_some(())
    })
    .await;
    // Give the agent a few relists to do anything it would do.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut after: Vec<_> = containers(&docker, &agent.node, &[]).await.into_iter().filter_map(|c| c.id).collect();
    after.sort();
    assert_eq!(after, ids, "the kept pod's sandbox and container are the same, untouched");
}

#[tokio::test(flavor = "multi_thread")]
async fn junk_next_to_a_good_pod_starts_nothing_and_is_reported() {
    let docker = docker().await;
    let mut agent = Agent::new("junk");
    agent.write("good.yaml", &sleeper("good"));
    // Same namespace/name in a file that sorts later: ignored and reported as a conflict.
    agent.write("zz-same-name.yaml", &sleeper("good").replace("sleep 100000", "sleep 300000"));
    std::fs::write(agent.dir().join(".hidden.yaml"), sleeper("hidden")).unwrap();
    std::fs::write(agent.dir().join("good.yaml.swp"), sleeper("swp")).unwrap();
    std::fs::write(agent.dir().join("good.yaml.bak"), sleeper("bak")).unwrap();
    let broken = yaml!(
        r#"
        apiVersion: v1
        kind: Pod
        metadata:
          name: broken
          labels: [unclosed
        "#
    );
    std::fs::write(agent.dir().join("broken.yaml"), broken).unwrap();
    let deployment = yaml!(
        r#"
        apiVersion: apps/v1
        kind: Deployment
        metadata:
          name: deploy
        spec:
          replicas: 1
        "#
    );
    std::fs::write(agent.dir().join("deploy.yaml"), deployment).unwrap();
    let invalid = yaml!(
        r#"
        apiVersion: v1
        kind: Pod
        metadata:
          name: invalid
        spec:
          containers:
          - name: a
            image: {BUSYBOX}
          - name: a
            image: {BUSYBOX}
        "#,
        BUSYBOX,
    );
    std::fs::write(agent.dir().join("invalid.yaml"), invalid).unwrap();
    agent.start();
    wait_for(START, "the good pod", || async { running(&docker, &agent.node, "k8s_main_good-").await.pop() }).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let all = containers(&docker, &agent.node, &[]).await;
    assert_eq!(all.len(), 2, "only the good pod's sandbox and container: {:?}", all.iter().map(name).collect::<Vec<_>>());
    assert!(agent.is_running());
    let log = agent.log();
    let broken = agent.dir().join("broken.yaml").display().to_string();
    // At the `[` that is never closed.
    assert!(
        log.lines().any(|l| l.contains(&broken) && l.contains("5:11: unclosed bracket")),
        "the broken file is reported with its line:\n{log}"
    );
    assert!(!log.contains("holds a Pod but is not read"), "backup copies are no surprise:\n{log}");
    assert!(log.contains("kind \\\"Deployment\\\" is not a Pod") || log.contains("kind \"Deployment\" is not a Pod"), "{log}");
    assert!(log.contains("only *.yaml, *.yml and *.json files are read"), "{log}");
    assert!(log.lines().any(|l| l.contains("conflict") && l.contains("zz-same-name.yaml")), "{log}");
    let app = running(&docker, &agent.node, "k8s_main_good-").await.pop().unwrap();
    let cmd = docker.inspect_container(app.id.as_deref().unwrap(), None).await.unwrap().config.unwrap().entrypoint.unwrap().join(" ");
    assert!(cmd.contains("sleep 100000"), "the file that sorts first wins: {cmd}");
    assert!(log.contains("9:5: spec.containers[1].name: Duplicate value"), "API validation errors carry line and field path:\n{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broken_edit_keeps_the_running_pod_and_a_fix_applies() {
    let docker = docker().await;
    let mut agent = Agent::new("keepgood");
    agent.write("p.yaml", &sleeper("p"));
    agent.start();
    let first = wait_for(START, "the pod", || async { running(&docker, &agent.node, "k8s_main_").await.pop() }).await;
    let unclosed = yaml!(
        r#"
        apiVersion: v1
        kind: Pod
        metadata: {name: p
        "#
    );
    agent.write("p.yaml", &unclosed);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let still = running(&docker, &agent.node, "k8s_main_").await.pop().expect("still running");
    assert_eq!(still.id, first.id);
    assert!(agent.log().contains("kept_running"), "{}", agent.log());
    // The fixed file is applied at once: a changed command replaces the container.
    agent.write("p.yaml", &sleeper("p").replace("sleep 100000", "sleep 200000"));
    wait_for(START, "the fixed manifest's container", || async {
        running(&docker, &agent.node, "k8s_main_").await.into_iter().find(|c| c.id != first.id)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_the_agent_and_leaves_pods_running() {
    let docker = docker().await;
    let mut agent = Agent::new("sigterm");
    agent.write("p.yaml", &sleeper("p"));
    agent.start();
    let pod = wait_for(START, "the pod", || async { running(&docker, &agent.node, "k8s_main_").await.pop() }).await;
    let status = agent.stop_with("TERM");
    assert!(status.success(), "{status:?}");
    let still = running(&docker, &agent.node, "k8s_main_").await.pop().expect("the pod outlives the agent");
    assert_eq!(still.id, pod.id);
    assert!(agent.log().contains("pods are left running"));
}

#[tokio::test(flavor = "multi_thread")]
async fn volumes_env_and_working_dir_reach_the_container() {
    let docker = docker().await;
    let mut agent = Agent::new("volumes");
    let host_dir = tempfile::tempdir().unwrap();
    let host = host_dir.path().join("made-by-agent");
    agent.write(
        "vol.yaml",
        &yaml!(
            r#"
            apiVersion: v1
            kind: Pod
            metadata:
              name: vol
            spec:
              terminationGracePeriodSeconds: 2
              volumes:
              - name: host
                hostPath:
                  path: {host}
                  type: DirectoryOrCreate
              - name: scratch
                emptyDir: {}
              containers:
              - name: writer
                image: {BUSYBOX}
                workingDir: /scratch
                env:
                - name: GREETING
                  value: hello
                - name: MESSAGE
                  value: $(GREETING)-from-$(POD)
                - name: POD
                  valueFrom:
                    fieldRef:
                      fieldPath: metadata.name
                command: [sh, -c, 'echo "$MESSAGE $(pwd)" > /host/out; echo shared > /scratch/s; sleep 100000']
                volumeMounts:
                - name: host
                  mountPath: /host
                - name: scratch
                  mountPath: /scratch
            "#,
            host = host.display(),
            BUSYBOX,
        ),
    );
    agent.start();
    let out = host.join("out");
    let text = wait_for(START, "the container's output on the host", || async { std::fs::read_to_string(&out).ok() }).await;
    // $(POD) is defined after MESSAGE, so it stays unexpanded, as in Kubernetes.
    assert_eq!(text.trim(), "hello-from-$(POD) /scratch");
    // Docker's list view can lag the process, so the container is looked up in any state.
    let writer = containers(&docker, &agent.node, &[("io.kubernetes.container.name", "writer")]).await.pop().unwrap();
    let uid = writer.labels.unwrap()["io.kubernetes.pod.uid"].clone();
    let scratch = agent.root.join("pods").join(&uid).join("volumes/kubernetes.io~empty-dir/scratch/s");
    wait_for(START, "the emptyDir file under --root-dir", || async { scratch.exists().then_some(()) }).await;
    agent.remove("vol.yaml");
    wait_for(START, "the emptyDir's removal with the pod", || async { (!agent.root.join("pods").join(&uid).exists()).then_some(()) }).await;
}
