//! The prober on the in-memory runtime, on paused time: probes run on the kubelet's schedule,
//! results settle only after their thresholds, startup probes hold the others back, and a
//! probe slower than its timeout fails.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::Container;
use staticlet_model::StaticPod;
use staticlet_runtime::{Runtime, RuntimeError};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{Prober, Target};
use crate::reconcile::testing::{Harness, at, pod};

/// A running container of a pod whose only container has `probes`: its ID, spec and pod.
async fn running(harness: &Harness, probes: &str) -> (String, Container, Arc<StaticPod>) {
    let pod = pod(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: probed
spec:
  containers:
  - name: app
    image: app:1
{probes}"#
    ));
    let id = harness.start_objects(&pod).await;
    let spec = pod.pod.spec.as_ref().unwrap().containers[0].clone();
    (id, spec, pod)
}

/// A prober for `harness`'s runtime, probing the container `running` made, as if it had been
/// created at `created_at`.
fn probe(harness: &Harness, probed: &(String, Container, Arc<StaticPod>), created_at: SystemTime) -> (Prober, Arc<Notify>) {
    let (id, spec, pod) = probed;
    let poke = Arc::new(Notify::new());
    let runtime: Arc<dyn Runtime> = harness.fake.clone();
    let events = harness.ctx.events.for_pod(pod);
    let mut prober = Prober::new(runtime, harness.ctx.clock, harness.ctx.runner.clone(), poke.clone(), events);
    prober.sync(&[Target { container_id: id, container: spec, created_at, pod_ip: "10.88.0.2" }]);
    (prober, poke)
}

#[tokio::test(start_paused = true)]
async fn liveness_fails_only_after_failure_threshold_failures_in_a_row() {
    let harness = Harness::new(&["app:1"]);
    let probed = running(&harness, "    livenessProbe:\n      exec: {command: [\"false\"]}\n      periodSeconds: 10\n").await;
    let id = probed.0.clone();
    let start = Instant::now();
    let (prober, poke) = probe(&harness, &probed, harness.ctx.clock.now());
    // Runs at 0, 10 and 20 s; the default failureThreshold is 3.
    at(start, 19.5).await;
    assert_eq!(harness.fake.calls("exec_sync"), 2);
    assert!(prober.unhealthy().is_empty(), "two failures are not enough");
    at(start, 20.5).await;
    let unhealthy = prober.unhealthy().remove(&id).expect("unhealthy after the third failure");
    assert_eq!(unhealthy.reason, "failed liveness probe");
    tokio::time::timeout(Duration::from_millis(1), poke.notified()).await.expect("the worker is poked");
    // On hold once failed: the worker restarts the container, which brings new probes.
    at(start, 60.0).await;
    assert_eq!(harness.fake.calls("exec_sync"), 3);
}

#[tokio::test(start_paused = true)]
async fn readiness_starts_unready_and_changes_after_its_thresholds() {
    let harness = Harness::new(&["app:1"]);
    let probes = "    readinessProbe:\n      exec: {command: [ready]}\n      periodSeconds: 5\n      successThreshold: 2\n      failureThreshold: 2\n";
    let probed = running(&harness, probes).await;
    harness.fake.fail("exec_sync", RuntimeError::Unavailable("not yet".into()), Some(1));
    let id = probed.0.clone();
    let start = Instant::now();
    let (prober, _poke) = probe(&harness, &probed, harness.ctx.clock.now());
    at(start, 0.5).await;
    assert_eq!(prober.results().get(&id).and_then(|r| r.ready), None, "unready until a result settles");
    // Runs at 0 (fails), 5 and 10 s (succeed): ready after the second success in a row.
    at(start, 9.5).await;
    assert_eq!(prober.results().get(&id).and_then(|r| r.ready), None);
    at(start, 10.5).await;
    assert_eq!(prober.results()[&id].ready, Some(true));
    // Two failures in a row make it unready again; readiness never restarts anything.
    harness.fake.fail("exec_sync", RuntimeError::Unavailable("busy".into()), None);
    at(start, 20.5).await;
    assert_eq!(prober.results()[&id].ready, Some(false));
    assert!(prober.unhealthy().is_empty());
    assert!(harness.has_event("Unhealthy", "Readiness probe failed: command [\"ready\"]: runtime unavailable: busy"));
}

#[tokio::test(start_paused = true)]
async fn a_startup_probe_holds_liveness_back_until_it_passes() {
    let harness = Harness::new(&["app:1"]);
    let probes = concat!(
        "    startupProbe:\n      exec: {command: [started]}\n      periodSeconds: 1\n      failureThreshold: 30\n",
        "    livenessProbe:\n      exec: {command: [\"false\"]}\n      periodSeconds: 1\n      failureThreshold: 1\n",
    );
    let probed = running(&harness, probes).await;
    harness.fake.fail("exec_sync", RuntimeError::Unavailable("starting".into()), Some(3));
    let id = probed.0.clone();
    let start = Instant::now();
    let (prober, _poke) = probe(&harness, &probed, harness.ctx.clock.now());
    // The startup probe fails at 0, 1 and 2 s and passes at 3 s; liveness waits for it.
    at(start, 2.5).await;
    assert_eq!(prober.results().get(&id).and_then(|r| r.started), None);
    assert!(prober.unhealthy().is_empty(), "liveness does not run before the startup probe passes");
    at(start, 3.5).await;
    assert_eq!(prober.results()[&id].started, Some(true));
    at(start, 5.0).await;
    assert_eq!(prober.unhealthy()[&id].reason, "failed liveness probe");
}

#[tokio::test(start_paused = true)]
async fn the_initial_delay_counts_from_the_containers_creation() {
    let harness = Harness::new(&["app:1"]);
    let probed = running(&harness, "    readinessProbe:\n      exec: {command: [ready]}\n      initialDelaySeconds: 30\n").await;
    let start = Instant::now();
    let id = probed.0.clone();
    // Created 20 s ago (the agent restarted, say): the first run is 10 s from now.
    let (prober, _poke) = probe(&harness, &probed, harness.ctx.clock.now() - Duration::from_secs(20));
    at(start, 9.5).await;
    assert_eq!(harness.fake.calls("exec_sync"), 0);
    at(start, 10.5).await;
    assert_eq!(harness.fake.calls("exec_sync"), 1);
    assert_eq!(prober.results()[&id].ready, Some(true));
}

#[tokio::test(start_paused = true)]
async fn a_probe_slower_than_its_timeout_fails() {
    let harness = Harness::new(&["app:1"]);
    let probed =
        running(&harness, "    livenessProbe:\n      exec: {command: [check]}\n      timeoutSeconds: 2\n      failureThreshold: 1\n").await;
    harness.fake.slow("exec_sync", Duration::from_secs(5));
    let id = probed.0.clone();
    let start = Instant::now();
    let (prober, _poke) = probe(&harness, &probed, harness.ctx.clock.now());
    at(start, 1.5).await;
    assert!(prober.unhealthy().is_empty(), "still within its timeout");
    at(start, 2.5).await;
    assert_eq!(prober.unhealthy()[&id].reason, "failed liveness probe");
    assert!(harness.has_event("Unhealthy", "Liveness probe failed: command [\"check\"] timed out after 2s"));
}
