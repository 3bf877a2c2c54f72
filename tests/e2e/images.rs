//! Image pull policies with real pulls, from a private registry on 127.0.0.1:5000 (Debian's
//! `docker-registry`, started by `.ci/run`): the engine really fetches the layers.

use std::time::Duration;

use bollard::Docker;
use bollard::query_parameters::{PushImageOptions, RemoveImageOptions, TagImageOptions};
use futures::StreamExt;

use crate::support::images::{BUSYBOX, REGISTRY};
use crate::support::{Agent, container_status, docker, docker_cli, running, wait_for, yaml};

/// Pushes the test image to the local registry as `repo:tag`, then removes it from the engine,
/// so the only way back is a pull.
pub(crate) async fn publish_and_forget(docker: &Docker, repo: &str, tag: &str) -> String {
    publish_and_forget_image(docker, BUSYBOX, repo, tag).await
}

/// The same with the engine's image `source`.
async fn publish_and_forget_image(docker: &Docker, source: &str, repo: &str, tag: &str) -> String {
    let reference = format!("{REGISTRY}/{repo}");
    docker.tag_image(source, Some(TagImageOptions { repo: Some(reference.clone()), tag: Some(tag.to_owned()) })).await.unwrap();
    let mut push = docker.push_image(&reference, Some(PushImageOptions { tag: Some(tag.to_owned()), ..Default::default() }), None);
    while let Some(step) = push.next().await {
        let info = step.unwrap_or_else(|e| panic!("pushing to the local registry at {REGISTRY} (is it running? .ci/run starts it): {e}"));
        assert!(info.error_detail.is_none(), "{info:?}");
    }
    let image = format!("{reference}:{tag}");
    docker.remove_image(&image, Some(RemoveImageOptions { force: true, ..Default::default() }), None).await.unwrap();
    image
}

fn pod(name: &str, image: &str, policy: &str) -> String {
    yaml!(
        r#"
        apiVersion: v1
        kind: Pod
        metadata:
          name: {name}
        spec:
          containers:
          - name: main
            image: {image}
            imagePullPolicy: {policy}
            command: [sleep, '100000']
        "#,
        name,
        image,
        policy,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn pull_policies_pull_for_real() {
    let docker = docker().await;
    let tag = format!("t{}", std::process::id());
    let pulled = publish_and_forget(&docker, "staticlet-test/pulled", &tag).await;
    let never = publish_and_forget(&docker, "staticlet-test/never", &tag).await;
    let mut agent = Agent::new("pull");
    agent.write("pulled.yaml", &pod("pulled", &pulled, "IfNotPresent"));
    agent.write("never.yaml", &pod("never", &never, "Never"));
    agent.write("always.yaml", &pod("always", &pulled, "Always"));
    agent.start();

    wait_for(Duration::from_secs(90), "the pod whose image was pulled", || async {
        running(&docker, &agent.node, &format!("k8s_main_{}", agent.pod("pulled"))).await.pop()
    })
    .await;
    wait_for(Duration::from_secs(90), "the Always pod", || async {
        running(&docker, &agent.node, &format!("k8s_main_{}", agent.pod("always"))).await.pop()
    })
    .await;
    assert!(docker.inspect_image(&pulled).await.is_ok(), "the image is in the engine after the pull");
    let log = agent.log();
    assert!(log.lines().any(|l| l.contains("Pulled") && l.contains(&pulled)), "{log}");
    // `Never` does not pull: the image stays absent and the pod never starts.
    assert!(log.contains("ErrImageNeverPull"), "{log}");
    assert!(docker.inspect_image(&never).await.is_err());
    assert!(running(&docker, &agent.node, &format!("k8s_main_{}", agent.pod("never"))).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_pull_is_reported_and_does_not_hold_up_other_pods() {
    let docker = docker().await;
    let mut agent = Agent::new("badpull");
    agent.write("missing.yaml", &pod("missing", &format!("{REGISTRY}/staticlet-test/does-not-exist:1"), "IfNotPresent"));
    agent.write("fine.yaml", &pod("fine", BUSYBOX, "IfNotPresent"));
    agent.start();
    wait_for(Duration::from_secs(60), "the healthy pod", || async {
        running(&docker, &agent.node, &format!("k8s_main_{}", agent.pod("fine"))).await.pop()
    })
    .await;
    wait_for(Duration::from_secs(30), "the pull error in the log", || async {
        let log = agent.log();
        log.lines().any(|l| l.contains("does-not-exist") && l.contains("Pulling image")).then_some(())
    })
    .await;
    // The status says what a kubelet's would: ErrImagePull, then ImagePullBackOff while the
    // next pull waits out its back-off.
    let reasons = std::cell::RefCell::new(Vec::<String>::new());
    wait_for(Duration::from_secs(30), "ErrImagePull then ImagePullBackOff", || async {
        let pod = agent.pod_status("missing").await?;
        let reason = container_status(&pod, "main")?["state"]["waiting"]["reason"].as_str()?.to_owned();
        let mut reasons = reasons.borrow_mut();
        if reasons.last() != Some(&reason) {
            reasons.push(reason);
        }
        reasons.windows(2).any(|w| w[0] == "ErrImagePull" && w[1] == "ImagePullBackOff").then_some(())
    })
    .await;
    let pod = agent.pod_status("missing").await.unwrap();
    assert_eq!(pod["status"]["phase"], "Pending");
}

#[tokio::test(flavor = "multi_thread")]
async fn always_pulls_again_and_runs_the_image_now_behind_the_tag() {
    let docker = docker().await;
    let tag = format!("t{}", std::process::id());
    let image = publish_and_forget(&docker, "staticlet-test/always", &tag).await;
    let mut agent = Agent::new("always");
    let manifest = yaml!(
        r#"
        apiVersion: v1
        kind: Pod
        metadata:
          name: moving
        spec:
          terminationGracePeriodSeconds: 2
          containers:
          - name: main
            image: {image}
            imagePullPolicy: Always
            command: [sh, -c, 'cat /version 2>/dev/null || echo first; sleep 100000']
        "#,
        image,
    );
    agent.write("moving.yaml", &manifest);
    agent.start();
    wait_for(Duration::from_secs(90), "the first image's output", || async {
        agent.container_log("moving", "main").await.contains("first").then_some(())
    })
    .await;
    let first = docker_cli(&["image", "inspect", "--format", "{{.Id}}", &image]);

    // A second image behind the same tag, pushed; the engine's own tag is put back on the first,
    // so only a pull can bring the second.
    let builder = format!("staticlet-always-build-{}", std::process::id());
    docker_cli(&["run", "--name", &builder, BUSYBOX, "sh", "-c", "echo second > /version"]);
    docker_cli(&["commit", &builder, &image]);
    docker_cli(&["rm", &builder]);
    docker_cli(&["push", &image]);
    docker_cli(&["tag", &first, &image]);

    let pod_name = agent.pod("moving");
    let restarted = std::process::Command::new(env!("CARGO_BIN_EXE_staticlet"))
        .args(["restart", "pod", &pod_name, "--api-socket"])
        .arg(&agent.socket)
        .output()
        .unwrap();
    assert!(restarted.status.success(), "{restarted:?}");
    wait_for(Duration::from_secs(90), "the second image's output", || async {
        agent.container_log("moving", "main").await.contains("second").then_some(())
    })
    .await;
    assert_ne!(docker_cli(&["image", "inspect", "--format", "{{.Id}}", &image]), first, "the tag now names the pulled image");
}

/// A `docker save` archive of an image `tag`: the test image's layer with `size` bytes of
/// noise in it.
fn noise_image(tag: &str, size: usize) -> Vec<u8> {
    let mut state = u64::from(std::process::id()) | 1;
    let noise: Vec<u8> = (0..size)
        .map(|_| {
            // xorshift64: fast, and random enough that no compressor shrinks it.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let layer = crate::support::images::layer_with(&[("noise", &noise)]);
    staticlet_docker::save_archive(tag, serde_json::json!({"Cmd": ["sh"], "Env": ["PATH=/bin"]}), &layer)
}

/// A TCP proxy to `upstream` that passes what the upstream sends at `bytes_per_second`: a
/// registry over a slow link. Returns its port.
async fn throttled_proxy(upstream: &'static str, bytes_per_second: usize) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(upstream).await else { return };
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                tokio::spawn(async move { tokio::io::copy(&mut client_read, &mut server_write).await });
                // A tenth of a second's worth at a time.
                let mut chunk = vec![0u8; bytes_per_second / 10];
                while let Ok(n) = server_read.read(&mut chunk).await {
                    if n == 0 || client_write.write_all(&chunk[..n]).await.is_err() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_pull_reports_its_progress_and_lands_in_the_pull_histogram() {
    let docker = docker().await;
    let tag = format!("t{}", std::process::id());
    // An image of its own: a megabyte of noise (no registry compresses it) in a layer the
    // engine has nowhere else, so the pull fetches all of it.
    let local = format!("staticlet.test/noise:{tag}");
    crate::support::images::load(&docker, &local, noise_image(&local, 1 << 20)).await;
    let image = publish_and_forget_image(&docker, &local, "staticlet-test/slow", &tag).await;
    docker.remove_image(&local, Some(RemoveImageOptions { force: true, ..Default::default() }), None).await.unwrap();
    // About 2 MB of layer (most of it the noise) at 80 kB/s: some 25 s of pulling.
    let port = throttled_proxy(REGISTRY, 80_000).await;
    let slow = image.replace(REGISTRY, &format!("127.0.0.1:{port}"));
    let mut agent = Agent::new("slowpull");
    agent.write("slow.yaml", &pod("slow", &slow, "IfNotPresent"));
    agent.start();
    wait_for(Duration::from_secs(120), "the pod whose image came over the slow link", || async {
        running(&docker, &agent.node, &format!("k8s_main_{}", agent.pod("slow"))).await.pop()
    })
    .await;
    let (_, events) = agent.api("GET", "/api/v1/namespaces/default/events").await.unwrap();
    let progress: Vec<String> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["reason"] == "Pulling" && e["involvedObject"]["name"] == agent.pod("slow").as_str())
        .filter_map(|e| e["message"].as_str().map(str::to_owned))
        .filter(|m| m.contains(" layers, "))
        .collect();
    assert!(!progress.is_empty(), "a Pulling event with the layers and bytes done: {events}");
    let shown = &progress[0];
    assert!(
        shown.starts_with(&format!("Pulling image \"{slow}\": ")) && shown.contains(" of 1 layers, ") && shown.contains(" MB of "),
        "{shown}"
    );
    assert!(events.to_string().contains(&format!("Successfully pulled image \\\"{slow}\\\" in ")), "{events}");

    // The pull's duration is in the histogram, in a bucket of seconds, not in +Inf.
    let (_, body) = agent.api_raw("GET", "/metrics").await.unwrap();
    let metrics = String::from_utf8_lossy(&body).into_owned();
    let buckets: Vec<(f64, u64)> = metrics
        .lines()
        .filter(|l| l.starts_with("staticlet_image_pull_duration_seconds_bucket{") && l.contains("result=\"success\""))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            Some((le.parse::<f64>().ok().unwrap_or(f64::INFINITY), l.rsplit(' ').next()?.parse().ok()?))
        })
        .collect();
    assert!(buckets.iter().any(|(le, _)| *le == 3600.0), "buckets up to an hour: {metrics}");
    let first_with_it = buckets.iter().find(|(_, count)| *count >= 1).unwrap();
    assert!((10.0..=60.0).contains(&first_with_it.0), "a pull of some 25 s lands in the 30 s or 60 s bucket: {buckets:?}");
}
