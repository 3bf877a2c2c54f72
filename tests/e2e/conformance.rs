//! The runtime conformance suite, in the spirit of cri-tools' `critest`: one set of behaviour
//! tests, written once against the agent and its API, run against every runtime the agent can
//! drive. A runtime joins by adding its name to the `conformance!` line at the bottom and a
//! constructor to [`Runtime`].
//!
//! What a kubelet user relies on is checked through the agent's API (phases, container IDs,
//! restart counts, logs), and what the runtime holds is checked in the runtime itself (`docker
//! ps`, `podman ps` and `podman pod ps`, containerd's `ctr`), so a runtime cannot pass by
//! reporting what it does not do.

use std::time::Duration;

use bollard::Docker;

use crate::support::containerd::{Containerd, containerd};
use crate::support::images::BUSYBOX;
use crate::support::podman::{Podman, podman};
use crate::support::{Agent, condition, container_status, containers, docker, free_port, http_get, name, wait_for, yaml};

/// How long a pod may take to come up on any runtime.
const UP: Duration = Duration::from_secs(60);

/// A runtime under test, and how to look inside it.
enum Runtime {
    Docker(Docker),
    Podman(Podman),
    Containerd(Containerd),
}

/// What a runtime holds for a node: its sandboxes, and its app containers by name and state.
#[derive(Debug)]
struct Held {
    sandboxes: usize,
    containers: Vec<(String, String)>,
}

impl Runtime {
    async fn docker() -> Runtime {
        Runtime::Docker(docker().await)
    }

    async fn podman() -> Runtime {
        // The test images live in Docker's archives; Docker also pushes to the registry.
        docker().await;
        Runtime::Podman(podman().await)
    }

    async fn containerd() -> Runtime {
        // The test images live in Docker's archives; Docker also pushes to the registry.
        docker().await;
        Runtime::Containerd(containerd().await)
    }

    /// A fresh agent that runs pods on this runtime by default.
    fn agent(&self, test: &str) -> Agent {
        let mut agent = Agent::new(test);
        match self {
            Runtime::Docker(_) => {}
            Runtime::Podman(podman) => {
                agent.uses_podman(podman);
                std::fs::write(agent.file("config.yaml"), podman.agent_config()).unwrap();
            }
            Runtime::Containerd(containerd) => agent.uses_containerd(containerd),
        }
        agent
    }

    /// Whether the runtime offers exec, attach and port-forward: Docker and the CRI do;
    /// runtime adapters do not yet (the adapter WIT has no streaming calls).
    fn interactive(&self) -> Option<&'static str> {
        match self {
            Runtime::Docker(_) | Runtime::Containerd(_) => None,
            Runtime::Podman(_) => Some("podman"),
        }
    }

    fn start(&self, agent: &mut Agent) {
        match self {
            Runtime::Docker(_) => agent.start(),
            Runtime::Podman(_) => agent.start_with(&["--config", agent.file("config.yaml").to_str().unwrap()]),
            Runtime::Containerd(containerd) => agent.start_with(&["--container-runtime-endpoint", &containerd.endpoint()]),
        }
    }

    async fn held(&self, node: &str) -> Held {
        match self {
            Runtime::Docker(docker) => {
                let all = containers(docker, node, &[]).await;
                let sandboxes = all.iter().filter(|c| name(c).starts_with("k8s_POD_")).count();
                let containers = all
                    .iter()
                    .filter(|c| !name(c).starts_with("k8s_POD_"))
                    .map(|c| (name(c), c.state.as_ref().map(|s| s.to_string()).unwrap_or_default()))
                    .collect();
                Held { sandboxes, containers }
            }
            Runtime::Podman(podman) => Held {
                sandboxes: podman.pods(node).len(),
                containers: podman
                    .containers(node)
                    .iter()
                    .map(|c| (c["Names"][0].as_str().unwrap_or("").to_owned(), c["State"].as_str().unwrap_or("").to_lowercase()))
                    .collect(),
            },
            Runtime::Containerd(containerd) => {
                let held = containerd.held(node);
                let is_sandbox = |labels: &serde_json::Value| labels["io.cri-containerd.kind"] == "sandbox";
                Held {
                    sandboxes: held.iter().filter(|(labels, _)| is_sandbox(labels)).count(),
                    containers: held
                        .iter()
                        .filter(|(labels, _)| !is_sandbox(labels))
                        .map(|(labels, running)| {
                            // `crictl ps` shows the container's own name; this is the name the
                            // other runtimes hold, made of the same labels.
                            let label = |key: &str| labels[key].as_str().unwrap_or_default().to_owned();
                            let name = format!(
                                "k8s_{}_{}_{}_{}",
                                label("io.kubernetes.container.name"),
                                label("io.kubernetes.pod.name"),
                                label("io.kubernetes.pod.namespace"),
                                label("io.kubernetes.pod.uid")
                            );
                            (name, if *running { "running" } else { "exited" }.to_owned())
                        })
                        .collect(),
                }
            }
        }
    }
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

async fn running_pod(agent: &Agent, name: &str) -> serde_json::Value {
    wait_for(UP, &format!("pod {name} running and ready"), || async {
        let pod = agent.pod_status(name).await?;
        (pod["status"]["phase"] == "Running" && condition(&pod, "Ready").as_deref() == Some("True")).then_some(pod)
    })
    .await
}

/// A `spec:` whose one container, `app`, sleeps for an hour.
fn sleeping_app() -> String {
    yaml!(
        r#"
        containers:
        - {name: app, image: {BUSYBOX}, command: [sleep, '3600']}
        "#,
        BUSYBOX,
    )
}

fn container_id(pod: &serde_json::Value, container: &str) -> String {
    container_status(pod, container).and_then(|c| c["containerID"].as_str()).unwrap_or_default().to_owned()
}

async fn runs_a_pod_with_init_volumes_env_and_limits(rt: &Runtime) {
    let mut agent = rt.agent("conf-run");
    let host = agent.file("host");
    std::fs::create_dir(&host).unwrap();
    agent.write(
        "web.yaml",
        &pod(
            "web",
            &yaml!(
                r#"
                volumes:
                - {name: data, emptyDir: {}}
                - {name: host, hostPath: {path: {host}, type: Directory}}
                initContainers:
                - name: init
                  image: {BUSYBOX}
                  command: [sh, -c, "echo init-done > /data/init"]
                  volumeMounts: [{name: data, mountPath: /data}]
                containers:
                - name: app
                  image: {BUSYBOX}
                  command: [sh, -c]
                  args: ["cat /data/init; echo $GREETING > /host/greeting; echo limit=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes); echo started; exec sleep 3600"]
                  env: [{name: GREETING, value: hello-from-the-pod}]
                  resources: {limits: {memory: 64Mi}}
                  volumeMounts: [{name: data, mountPath: /data}, {name: host, mountPath: /host}]
                "#,
                host = host.display(),
                BUSYBOX,
            ),
        ),
    );
    rt.start(&mut agent);
    let status = running_pod(&agent, "web").await;
    assert_eq!(container_status(&status, "init").unwrap()["state"]["terminated"]["reason"], "Completed", "{status}");

    let log = wait_for(UP, "the app's output", || async {
        let log = agent.container_log("web", "app").await;
        log.contains("started").then_some(log)
    })
    .await;
    assert!(log.contains("init-done"), "the init container ran first, in the shared emptyDir: {log}");
    assert!(log.contains("limit=67108864"), "the memory limit is the container's cgroup limit: {log}");
    assert_eq!(std::fs::read_to_string(host.join("greeting")).unwrap(), "hello-from-the-pod\n", "env and the hostPath volume");

    let held = rt.held(&agent.node).await;
    assert_eq!(held.sandboxes, 1, "{held:?}");
    let app = held.containers.iter().find(|(name, _)| name.starts_with(&format!("k8s_app_{}_default_", agent.pod("web"))));
    assert_eq!(app.map(|(_, state)| state.as_str()), Some("running"), "named as the kubelet names it: {held:?}");
}

async fn updates_only_the_changed_container(rt: &Runtime) {
    let mut agent = rt.agent("conf-update");
    let containers = |b_args: &str| {
        yaml!(
            r#"
            containers:
            - {name: a, image: {BUSYBOX}, command: [sleep, '3600']}
            - {name: b, image: {BUSYBOX}, command: [sleep], args: ['{b_args}']}
            "#,
            BUSYBOX,
            b_args,
        )
    };
    agent.write("two.yaml", &pod("two", &containers("3600")));
    rt.start(&mut agent);
    let before = running_pod(&agent, "two").await;
    agent.write("two.yaml", &pod("two", &containers("3601")));
    let after = wait_for(UP, "container b replaced", || async {
        let pod = running_pod(&agent, "two").await;
        (container_id(&pod, "b") != container_id(&before, "b")).then_some(pod)
    })
    .await;
    assert_eq!(container_id(&after, "a"), container_id(&before, "a"), "the unchanged container keeps running");
    assert!(container_id(&after, "b").contains("://"), "{after}");
}

async fn restarts_a_crashing_container_with_back_off(rt: &Runtime) {
    let mut agent = rt.agent("conf-crash");
    agent.write(
        "crash.yaml",
        &pod(
            "crash",
            &yaml!(
                r#"
                containers:
                - {name: app, image: {BUSYBOX}, command: [sh, -c, 'echo crashing; exit 3']}
                "#,
                BUSYBOX,
            ),
        ),
    );
    rt.start(&mut agent);
    let status = wait_for(UP, "two restarts and a back-off", || async {
        let pod = agent.pod_status("crash").await?;
        let app = container_status(&pod, "app")?;
        (app["restartCount"].as_u64()? >= 2 && app["state"]["waiting"]["reason"] == "CrashLoopBackOff").then(|| app.clone())
    })
    .await;
    assert_eq!(status["lastState"]["terminated"]["exitCode"], 3, "{status}");
}

async fn probes_decide_readiness(rt: &Runtime) {
    let mut agent = rt.agent("conf-probe");
    agent.write(
        "probed.yaml",
        &pod(
            "probed",
            &yaml!(
                r#"
                containers:
                - name: app
                  image: {BUSYBOX}
                  command: [sh, -c, 'sleep 4; touch /tmp/ready; exec sleep 3600']
                  readinessProbe: {exec: {command: [test, -f, /tmp/ready]}, periodSeconds: 1}
                "#,
                BUSYBOX,
            ),
        ),
    );
    rt.start(&mut agent);
    wait_for(UP, "the pod running but not ready", || async {
        let pod = agent.pod_status("probed").await?;
        (pod["status"]["phase"] == "Running" && condition(&pod, "Ready").as_deref() == Some("False")).then_some(())
    })
    .await;
    running_pod(&agent, "probed").await;
}

async fn adopts_its_pods_after_a_restart(rt: &Runtime) {
    let mut agent = rt.agent("conf-adopt");
    agent.write("kept.yaml", &pod("kept", &sleeping_app()));
    rt.start(&mut agent);
    let before = running_pod(&agent, "kept").await;
    agent.kill9();
    rt.start(&mut agent);
    let after = running_pod(&agent, "kept").await;
    assert_eq!(container_id(&after, "app"), container_id(&before, "app"), "found by label and left running");
    assert_eq!(container_status(&after, "app").unwrap()["restartCount"], 0);
}

async fn removes_a_pod_whose_manifest_goes(rt: &Runtime) {
    let mut agent = rt.agent("conf-remove");
    agent.write("gone.yaml", &pod("gone", &sleeping_app()));
    rt.start(&mut agent);
    running_pod(&agent, "gone").await;
    agent.remove("gone.yaml");
    wait_for(UP, "every object of the pod removed from the runtime", || async {
        let held = rt.held(&agent.node).await;
        (held.sandboxes == 0 && held.containers.is_empty()).then_some(())
    })
    .await;
    assert!(agent.pod_status("gone").await.is_none());
}

async fn serves_host_ports_and_the_host_network(rt: &Runtime) {
    let mut agent = rt.agent("conf-ports");
    let (mapped, host) = (free_port(), free_port());
    agent.write(
        "mapped.yaml",
        &pod(
            "mapped",
            &yaml!(
                r#"
                containers:
                - name: web
                  image: {BUSYBOX}
                  command: [httpd, -f, -p, '8080', -h, /www]
                  ports: [{containerPort: 8080, hostPort: {mapped}}]
                "#,
                BUSYBOX,
                mapped,
            ),
        ),
    );
    agent.write(
        "hostnet.yaml",
        &pod(
            "hostnet",
            &yaml!(
                r#"
                hostNetwork: true
                containers:
                - name: web
                  image: {BUSYBOX}
                  command: [httpd, -f, -p, '{host}', -h, /www]
                "#,
                BUSYBOX,
                host,
            ),
        ),
    );
    rt.start(&mut agent);
    for port in [mapped, host] {
        let page = wait_for(UP, &format!("httpd on port {port}"), || async { http_get(port, "/") }).await;
        assert!(page.contains("hello from staticlet"), "{page}");
    }
}

/// exec and port-forward where the runtime offers them, and an error naming the runtime where
/// it does not.
async fn execs_and_forwards_ports_where_the_runtime_can(rt: &Runtime) {
    let mut agent = rt.agent("conf-exec");
    agent.write(
        "inside.yaml",
        &pod(
            "inside",
            &yaml!(
                r#"
                containers:
                - name: web
                  image: {BUSYBOX}
                  command: [httpd, -f, -p, '127.0.0.1:8080', -h, /www]
                "#,
                BUSYBOX,
            ),
        ),
    );
    rt.start(&mut agent);
    running_pod(&agent, "inside").await;
    let name = agent.pod("inside");
    let exec = agent.cli(&["exec", &name], &["sh", "-c", "cat /www/index.html; exit 5"]).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&exec.stdout), String::from_utf8_lossy(&exec.stderr));
    let local = free_port();
    let mut forward = agent
        .cli(&["port-forward", &name, &format!("{local}:8080")], &[])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    match rt.interactive() {
        None => {
            assert_eq!(exec.status.code(), Some(5), "{stderr}");
            assert!(stdout.contains("hello from staticlet"), "{stdout}");
            let page = wait_for(UP, "the page through port-forward", || async { http_get(local, "/") }).await;
            assert!(page.contains("hello from staticlet"), "{page}");
            forward.kill().unwrap();
        }
        Some(runtime) => {
            assert!(!exec.status.success());
            assert!(stderr.contains(&format!("{runtime} does not support exec")), "the error names the runtime: {stderr}");
            tokio::time::sleep(Duration::from_secs(2)).await;
            assert_eq!(http_get(local, "/"), None, "nothing is forwarded");
            tokio::time::sleep(Duration::from_secs(1)).await;
            forward.kill().unwrap();
            let mut said = String::new();
            std::io::Read::read_to_string(forward.stderr.as_mut().unwrap(), &mut said).unwrap();
            assert!(said.contains(&format!("{runtime} does not support port-forward")), "the error names the runtime: {said}");
        }
    }
    forward.wait().unwrap();
}

async fn pulls_images_by_the_pull_policy(rt: &Runtime) {
    let docker = docker().await;
    let tag = format!("conformance-{}", std::process::id());
    let image = crate::images::publish_and_forget(&docker, "staticlet-test/conformance", &tag).await;
    let mut agent = rt.agent("conf-pull");
    let spec = |policy: &str| {
        yaml!(
            r#"
            containers:
            - {name: app, image: '{image}', imagePullPolicy: {policy}, command: [sleep, '3600']}
            "#,
            image,
            policy,
        )
    };
    agent.write("never.yaml", &pod("never", &spec("Never")));
    rt.start(&mut agent);
    wait_for(UP, "ErrImageNeverPull", || async {
        let pod = agent.pod_status("never").await?;
        (container_status(&pod, "app")?["state"]["waiting"]["reason"] == "ErrImageNeverPull").then_some(())
    })
    .await;
    agent.write("pulled.yaml", &pod("pulled", &spec("IfNotPresent")));
    running_pod(&agent, "pulled").await;
}

/// One test per behaviour and runtime: `<runtime>::<behaviour>`.
macro_rules! conformance {
    ($($runtime:ident),* $(,)?) => {$(
        mod $runtime {
            conformance!(@behaviours $runtime:
                runs_a_pod_with_init_volumes_env_and_limits,
                updates_only_the_changed_container,
                restarts_a_crashing_container_with_back_off,
                probes_decide_readiness,
                adopts_its_pods_after_a_restart,
                removes_a_pod_whose_manifest_goes,
                serves_host_ports_and_the_host_network,
                pulls_images_by_the_pull_policy,
                execs_and_forwards_ports_where_the_runtime_can,
            );
        }
    )*};
    (@behaviours $runtime:ident: $($behaviour:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread")]
        async fn $behaviour() {
            super::$behaviour(&super::Runtime::$runtime().await).await;
        }
    )*};
}

conformance!(docker, podman, containerd);
