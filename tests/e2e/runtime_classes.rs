//! Runtime classes and runtime-adapter plugins: pods on Docker and on Podman side by side from
//! one manifest directory, and adapters that misbehave (a trap, a call that never ends, a
//! request to a host nobody granted) failing only their own pods until a fixed `.wasm` is
//! dropped in.

use std::time::Duration;

use staticlet_plugin::artifacts::{MISBEHAVING_RUNTIME, PODMAN_RUNTIME};

use crate::support::images::BUSYBOX;
use crate::support::podman::podman;
use crate::support::{Agent, condition, container_status, docker, running, wait_for, yaml};

const UP: Duration = Duration::from_secs(60);

fn pod(name: &str, class: Option<&str>) -> String {
    let class = class.map(|c| format!("runtimeClassName: {c}")).unwrap_or_default();
    yaml!(
        r#"
        apiVersion: v1
        kind: Pod
        metadata:
          name: {name}
        spec:
          {class}
          terminationGracePeriodSeconds: 2
          containers:
          - {name: app, image: {BUSYBOX}, command: [sleep, '3600']}
        "#,
        name,
        class,
        BUSYBOX,
    )
}

async fn running_id(agent: &Agent, name: &str) -> String {
    wait_for(UP, &format!("pod {name} running"), || async {
        let pod = agent.pod_status(name).await?;
        let ready = pod["status"]["phase"] == "Running" && condition(&pod, "Ready").as_deref() == Some("True");
        ready.then(|| container_status(&pod, "app").unwrap()["containerID"].as_str().unwrap().to_owned())
    })
    .await
}

/// The waiting message of pod `name`'s container once it contains `text`.
async fn waiting_with(agent: &Agent, name: &str, text: &str) -> serde_json::Value {
    wait_for(UP, &format!("pod {name} waiting with {text:?}"), || async {
        let pod = agent.pod_status(name).await?;
        let waiting = container_status(&pod, "app")?["state"]["waiting"].clone();
        waiting["message"].as_str()?.contains(text).then_some(waiting)
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn pods_run_side_by_side_on_the_runtime_their_class_names() {
    let docker = docker().await;
    let podman = podman().await;
    let mut agent = Agent::new("classes");
    agent.uses_podman(&podman);
    std::fs::write(agent.file("config.yaml"), podman.runtime_class_config()).unwrap();
    agent.write("plain.yaml", &pod("plain", None));
    agent.write("elsewhere.yaml", &pod("elsewhere", Some("podman")));
    agent.write("unknown.yaml", &pod("unknown", Some("gvisor")));
    agent.start_with(&["--config", agent.file("config.yaml").to_str().unwrap()]);

    let plain = running_id(&agent, "plain").await;
    let elsewhere = running_id(&agent, "elsewhere").await;
    assert!(plain.starts_with("docker://") && elsewhere.starts_with("podman://"), "{plain} {elsewhere}");
    assert_eq!(running(&docker, &agent.node, &format!("k8s_app_{}_", agent.pod("plain"))).await.len(), 1);
    assert!(running(&docker, &agent.node, &format!("k8s_app_{}_", agent.pod("elsewhere"))).await.is_empty());
    let on_podman: Vec<String> = podman.containers(&agent.node).iter().map(|c| c["Names"][0].as_str().unwrap().to_owned()).collect();
    assert_eq!(on_podman.len(), 1, "{on_podman:?}");
    assert!(on_podman[0].starts_with(&format!("k8s_app_{}_default_", agent.pod("elsewhere"))), "{on_podman:?}");

    let rejected = wait_for(UP, "the pod of an unknown class rejected", || async {
        let pod = agent.pod_status("unknown").await?;
        (pod["status"]["phase"] == "Failed").then_some(pod)
    })
    .await;
    let message = rejected["status"]["message"].as_str().unwrap();
    assert!(
        message.contains(r#"spec.runtimeClassName: no runtime class "gvisor" on this node; its classes are docker, podman"#),
        "{message}"
    );

    // Moving a pod to another class moves it: gone from Podman, started on Docker.
    agent.write("elsewhere.yaml", &pod("elsewhere", None));
    wait_for(UP, "the moved pod on Docker and off Podman", || async {
        let moved = running_id(&agent, "elsewhere").await;
        (moved.starts_with("docker://") && podman.pods(&agent.node).is_empty()).then_some(())
    })
    .await;
    assert_eq!(running_id(&agent, "plain").await, plain, "the other pod was never touched");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_misbehaving_adapter_fails_only_its_own_pods_until_it_is_fixed() {
    docker().await;
    let podman = podman().await;
    let mut agent = Agent::new("misbehaving");
    agent.uses_podman(&podman);
    let classes = ["trap", "hang", "stray"];
    for class in classes {
        std::fs::copy(MISBEHAVING_RUNTIME, agent.file(&format!("{class}.wasm"))).unwrap();
    }
    let config = yaml!(
        r#"
        runtimeClasses:
          trap: trap
          hang: hang
          stray: stray
        plugins:
        - name: trap
          kind: runtime-adapter
          path: {trap}
          timeout: 2s
          allowedSockets: ["{socket}"]
          config: {endpoint: "{endpoint}", misbehave: trap-on-create}
        - name: hang
          kind: runtime-adapter
          path: {hang}
          timeout: 2s
          allowedSockets: ["{socket}"]
          config: {endpoint: "{endpoint}", misbehave: hang}
        - name: stray
          kind: runtime-adapter
          path: {stray}
          timeout: 2s
          allowedSockets: ["{socket}"]
          config: {endpoint: "{endpoint}", misbehave: wrong-host}
        "#,
        trap = agent.file("trap.wasm").display(),
        hang = agent.file("hang.wasm").display(),
        stray = agent.file("stray.wasm").display(),
        socket = podman.socket.display(),
        endpoint = podman.endpoint(),
    );
    std::fs::write(agent.file("config.yaml"), config).unwrap();
    agent.write("steady.yaml", &pod("steady", None));
    for class in classes {
        agent.write(&format!("{class}.yaml"), &pod(class, Some(class)));
    }
    agent.start_with(&["--config", agent.file("config.yaml").to_str().unwrap()]);

    let steady = running_id(&agent, "steady").await;
    let trapped = waiting_with(&agent, "trap", "create_container trapped").await;
    assert_eq!(trapped["reason"], "CreateContainerError", "{trapped}");
    let hung = waiting_with(&agent, "hang", "run_pod_sandbox exceeded its deadline of 2000ms").await;
    assert_eq!(hung["reason"], "ContainerCreating", "{hung}");
    let stray = waiting_with(&agent, "stray", "the host is not in this plugin's allowedHosts").await;
    assert!(stray["message"].as_str().unwrap().contains("192.0.2.1:8888"), "{stray}");
    agent.wait_log("refused an outbound HTTP request").await;
    assert!(agent.is_running(), "the agent stays up");
    assert_eq!(running_id(&agent, "steady").await, steady, "the Docker pod is untouched");

    // The fixed adapter, dropped in place of each broken one, is reloaded and its pods converge.
    for class in classes {
        let fixed = agent.file(&format!(".{class}.wasm.new"));
        std::fs::copy(PODMAN_RUNTIME, &fixed).unwrap();
        std::fs::rename(&fixed, agent.file(&format!("{class}.wasm"))).unwrap();
    }
    let mut converged = Vec::new();
    for class in classes {
        let id = running_id(&agent, class).await;
        assert!(id.starts_with(&format!("{class}://")), "{id}");
        converged.push(id);
    }
    // Three handlers share one Podman: each manages only its own pods, none removes another's.
    tokio::time::sleep(Duration::from_secs(5)).await;
    for (class, id) in classes.iter().zip(&converged) {
        assert_eq!(&running_id(&agent, class).await, id, "pod {class} left alone by the other handlers");
    }
    assert_eq!(podman.pods(&agent.node).len(), 3);
    assert_eq!(running_id(&agent, "steady").await, steady);
    assert!(agent.log().contains("plugin reloaded; runtime calls use the new code"), "{}", agent.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_podman_example_config_runs_pods_on_podman() {
    docker().await;
    let podman = podman().await;
    let mut agent = Agent::new("example-podman");
    agent.uses_podman(&podman);
    // The example as shipped, pointed at the tests' Podman socket instead of the system's, with
    // the adapter where the example expects it (beside the config).
    let example = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/podman/config.yaml")).unwrap();
    assert!(example.contains("/run/podman/podman.sock"), "{example}");
    let socket = podman.socket.display().to_string();
    std::fs::write(agent.file("config.yaml"), example.replace("/run/podman/podman.sock", &socket)).unwrap();
    std::fs::copy(PODMAN_RUNTIME, agent.file("podman_runtime.wasm")).unwrap();
    agent.write("plain.yaml", &pod("plain", None));
    agent.write("pinned.yaml", &pod("pinned", Some("podman")));
    agent.start_with(&["--config", agent.file("config.yaml").to_str().unwrap()]);
    for name in ["plain", "pinned"] {
        let id = running_id(&agent, name).await;
        assert!(id.starts_with("podman://"), "the example makes Podman the default: {id}");
    }
    assert_eq!(podman.pods(&agent.node).len(), 2);
}
