//! File written → the pod's container running on containerd through the CRI runtime, p50 and
//! p99 over 20 pods; side by side in the same run with the floor: a minimal client making the
//! bare CRI calls for the same pod (ImageStatus, RunPodSandbox, CreateContainer, StartContainer)
//! on the same containerd. Both are timed to containerd's own record of when the container
//! started (`ContainerStatus.started_at`).
//!
//! `cargo bench -p staticlet --bench cri_start_latency` (needs containerd, the CNI plugins and
//! Docker: the test images are built the way the tests build them).

#[allow(dead_code)]
#[path = "../../../tests/e2e/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use staticlet_cri::CriRuntime;
use staticlet_runtime::{ContainerConfig, ContainerMetadata, ContainerState, LabelFilter, PodSandboxConfig, PodSandboxMetadata, Runtime};
use support::containerd::containerd;
use support::images::BUSYBOX;
use support::{Agent, docker, wait_for};

const PODS: usize = 20;

fn report(label: &str, mut samples: Vec<f64>) -> f64 {
    let (p50, p99) = support::p50_p99(&mut samples);
    println!("cri_start_latency: {label:<16} p50 {p50:7.1} ms   p99 {p99:7.1} ms   (n = {})", samples.len());
    p50
}

fn manifest(name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  containers:\n  - name: main\n    image: {BUSYBOX}\n    command: [sleep, '100000']\n"
    )
}

/// Milliseconds from `t0` to the start of the running container of pod `pod`, by containerd's
/// own clock.
async fn started(cri: &CriRuntime, t0: SystemTime, pod: &str) -> f64 {
    let id = wait_for(Duration::from_secs(60), pod, || async {
        let listed = cri.list_containers(&LabelFilter::new("io.kubernetes.pod.name", pod)).await.ok()?;
        listed.into_iter().find(|c| c.state == ContainerState::Running).map(|c| c.id)
    })
    .await;
    let at = cri.container_status(&id).await.unwrap().started_at.unwrap();
    at.duration_since(t0).unwrap_or_default().as_secs_f64() * 1000.0
}

/// The bare calls for the same pod, as a minimal CRI client makes them.
async fn bare(cri: &CriRuntime, node: &str, name: &str, uid: &str) {
    let labels =
        BTreeMap::from([("io.staticlet.node".to_owned(), node.to_owned()), ("io.kubernetes.pod.name".to_owned(), name.to_owned())]);
    let sandbox = PodSandboxConfig {
        metadata: PodSandboxMetadata { name: name.to_owned(), namespace: "default".to_owned(), uid: uid.to_owned(), attempt: 0 },
        hostname: name.to_owned(),
        log_directory: format!("/var/log/pods/default_{name}_{uid}").into(),
        labels: labels.clone(),
        ..Default::default()
    };
    let container = ContainerConfig {
        metadata: ContainerMetadata { name: "main".to_owned(), attempt: 0 },
        image: BUSYBOX.to_owned(),
        command: vec!["sleep".to_owned(), "100000".to_owned()],
        labels,
        ..Default::default()
    };
    cri.image_status(BUSYBOX).await.unwrap().expect("the test image is present");
    let sandbox_id = cri.run_pod_sandbox(&sandbox).await.unwrap();
    let id = cri.create_container(&sandbox_id, &container, &sandbox).await.unwrap();
    cri.start_container(&id).await.unwrap();
}

#[tokio::main]
async fn main() {
    docker().await;
    let containerd = containerd().await;
    let cri = CriRuntime::new(containerd.socket.clone());
    let mut agent = Agent::new("bench-cri");
    agent.uses_containerd(&containerd);
    agent.start_with(&["--container-runtime-endpoint", &containerd.endpoint()]);
    tokio::time::sleep(Duration::from_secs(1)).await;

    let floor_node = support::node_name("bench-cri-floor");
    let mut staticlet = Vec::new();
    let mut floor = Vec::new();
    for i in 0..PODS {
        let name = format!("lat-{i}");
        let t0 = SystemTime::now();
        agent.write(&format!("{name}.yaml"), &manifest(&name));
        staticlet.push(started(&cri, t0, &agent.pod(&name)).await);

        let bare_name = format!("bare-{i}-{floor_node}");
        let t0 = SystemTime::now();
        bare(&cri, &floor_node, &bare_name, &format!("bare-uid-{i}-{}", std::process::id())).await;
        floor.push(started(&cri, t0, &bare_name).await);
    }
    containerd.remove_node(&floor_node);
    let ours = report("staticlet", staticlet);
    let theirs = report("bare CRI calls", floor);
    println!("cri_start_latency: p50 ratio staticlet / bare CRI calls = {:.2}", ours / theirs);
}
