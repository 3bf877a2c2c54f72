//! Resource limits and security contexts reach the container and the kernel enforces them.

use std::time::Duration;

use crate::support::images::BUSYBOX;
use crate::support::{Agent, container_status, containers, docker, wait_for, yaml};

const START: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread")]
async fn a_memory_limit_is_enforced_and_reported_as_oom_killed() {
    let docker = docker().await;
    let mut agent = Agent::new("oom");
    agent.write(
        "hog.yaml",
        &yaml!(
            r#"
            apiVersion: v1
            kind: Pod
            metadata:
              name: hog
            spec:
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
    );
    agent.start();
    let hog = wait_for(START, "the hog to be killed", || async {
        containers(&docker, &agent.node, &[("io.kubernetes.container.name", "hog")])
            .await
            .into_iter()
            .find(|c| c.state.as_ref().map(|s| s.as_ref()) == Some("exited"))
    })
    .await;
    let inspect = docker.inspect_container(hog.id.as_deref().unwrap(), None).await.unwrap();
    let host = inspect.host_config.unwrap();
    assert_eq!(host.memory, Some(32 * 1024 * 1024));
    assert_eq!((host.cpu_quota, host.cpu_period, host.cpu_shares), (Some(50_000), Some(100_000), Some(512)));
    assert_eq!(inspect.state.unwrap().oom_killed, Some(true));
    wait_for(START, "the exit reported as OOMKilled", || async {
        agent.log().lines().any(|l| l.contains("container terminated") && l.contains("OOMKilled")).then_some(())
    })
    .await;
    let pod = wait_for(START, "the pod's status", || async { agent.pod_status("hog").await }).await;
    let terminated = &container_status(&pod, "hog").unwrap()["state"]["terminated"];
    assert_eq!((terminated["reason"].as_str(), terminated["exitCode"].as_i64()), (Some("OOMKilled"), Some(137)), "{pod}");
    assert_eq!(pod["status"]["phase"], "Failed");
    assert_eq!(pod["status"]["qosClass"], "Guaranteed", "requests default to the limits");
}

#[tokio::test(flavor = "multi_thread")]
async fn security_contexts_apply_with_pod_defaults() {
    let docker = docker().await;
    let mut agent = Agent::new("security");
    let out = tempfile::tempdir().unwrap();
    std::fs::set_permissions(out.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    agent.write(
        "secure.yaml",
        &yaml!(
            r#"
            apiVersion: v1
            kind: Pod
            metadata:
              name: secure
            spec:
              securityContext:
                runAsUser: 1000
                runAsGroup: 3000
              volumes:
              - name: out
                hostPath:
                  path: {out}
              containers:
              - name: main
                image: {BUSYBOX}
                command: [sh, -c, 'echo "$(id -u):$(id -g)" > /out/id; touch /rootfs-write 2>/dev/null && echo writable > /out/rootfs || echo readonly > /out/rootfs; grep CapBnd /proc/self/status > /out/caps; sleep 100000']
                securityContext:
                  readOnlyRootFilesystem: true
                  allowPrivilegeEscalation: false
                  capabilities:
                    drop: [ALL]
                    add: [NET_BIND_SERVICE]
                volumeMounts:
                - name: out
                  mountPath: /out
            "#,
            out = out.path().display(),
            BUSYBOX,
        ),
    );
    agent.start();
    let read = |name: &str| std::fs::read_to_string(out.path().join(name)).ok().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
    let caps = wait_for(START, "the container's capability output", || async { read("caps") }).await;
    assert_eq!(read("id").as_deref(), Some("1000:3000"), "the pod's runAsUser and runAsGroup apply");
    assert_eq!(read("rootfs").as_deref(), Some("readonly"));
    // Only CAP_NET_BIND_SERVICE (bit 10) is left in the bounding set.
    assert_eq!(caps, "CapBnd:\t0000000000000400");
    let main = containers(&docker, &agent.node, &[("io.kubernetes.container.name", "main")]).await.pop().unwrap();
    let host = docker.inspect_container(main.id.as_deref().unwrap(), None).await.unwrap().host_config.unwrap();
    assert_eq!(host.security_opt, Some(vec!["no-new-privileges".to_owned()]));
    assert_eq!(host.readonly_rootfs, Some(true));
}
