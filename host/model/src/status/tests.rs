//! Each case is a situation from the kubelet's own tests (`TestPodPhaseWithRestartAlways`,
//! `...Never`, `...OnFailure`, `TestPodPhaseWithRestartAlwaysInitContainers`,
//! `TestPodPhaseWithRestartAlwaysRestartableInitContainers`, `TestGenerateContainersReadyCondition`,
//! `TestGeneratePodInitializedCondition`, `TestGetPodQOS`) with the answer the kubelet gives.

use std::time::{Duration, SystemTime};

use super::*;

fn t(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
}

fn pod(yaml: &str) -> Pod {
    let text = format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n{yaml}");
    crate::yaml::from_str(&text).expect("test pod parses")
}

const TWO: &str = "  containers:\n  - name: a\n    image: i\n  - name: b\n    image: i\n";

fn running(name: &str, attempt: u32) -> ContainerRecord {
    ContainerRecord {
        name: name.into(),
        container_id: format!("docker://{name}-{attempt}"),
        attempt,
        image_id: String::new(),
        state: RecordState::Running { started_at: t(10) },
    }
}

fn exited(name: &str, attempt: u32, exit_code: i32) -> ContainerRecord {
    ContainerRecord {
        state: RecordState::Exited {
            started_at: Some(t(1)),
            finished_at: Some(t(5)),
            exit_code,
            reason: if exit_code == 0 { "Completed" } else { "Error" }.into(),
            message: String::new(),
        },
        ..running(name, attempt)
    }
}

fn observe(containers: Vec<ContainerRecord>) -> PodObservation {
    PodObservation {
        sandbox_ready: true,
        pod_ips: vec!["172.17.0.2".into()],
        host_ip: "192.0.2.10".into(),
        start_time: Some(t(0)),
        containers,
        ..PodObservation::default()
    }
}

fn back_off(mut observed: PodObservation, name: &str) -> PodObservation {
    observed.waiting.insert(
        name.into(),
        WaitingReason { reason: CRASH_LOOP_BACK_OFF.into(), message: format!("back-off 10s restarting failed container={name}") },
    );
    observed
}

fn cond<'a>(status: &'a PodStatus, type_: &str) -> &'a PodCondition {
    status.conditions.as_ref().unwrap().iter().find(|c| c.type_ == type_).unwrap()
}

fn phase_of(spec: &str, containers: Vec<ContainerRecord>) -> String {
    pod_status(&pod(spec), &observe(containers)).phase.unwrap()
}

#[test]
fn restart_always_phases() {
    // All running.
    assert_eq!(phase_of(TWO, vec![running("a", 0), running("b", 0)]), "Running");
    // All stopped: restarting, so Running.
    assert_eq!(phase_of(TWO, vec![exited("a", 0, 0), exited("b", 0, 1)]), "Running");
    // One running, one stopped.
    assert_eq!(phase_of(TWO, vec![running("a", 0), exited("b", 0, 1)]), "Running");
    // One not created yet: Pending.
    assert_eq!(phase_of(TWO, vec![running("a", 0)]), "Pending");
    // A crash-looping container counts as stopped (it has a last termination).
    let status = pod_status(&pod(TWO), &back_off(observe(vec![running("a", 0), exited("b", 3, 1)]), "b"));
    assert_eq!(status.phase.as_deref(), Some("Running"));
}

#[test]
fn restart_never_phases() {
    let never = format!("  restartPolicy: Never\n{TWO}");
    assert_eq!(phase_of(&never, vec![exited("a", 0, 0), exited("b", 0, 0)]), "Succeeded");
    assert_eq!(phase_of(&never, vec![exited("a", 0, 0), exited("b", 0, 1)]), "Failed");
    assert_eq!(phase_of(&never, vec![running("a", 0), exited("b", 0, 1)]), "Running");
    assert_eq!(phase_of(&never, vec![running("a", 0)]), "Pending");
}

#[test]
fn restart_on_failure_phases() {
    let on_failure = format!("  restartPolicy: OnFailure\n{TWO}");
    assert_eq!(phase_of(&on_failure, vec![exited("a", 0, 0), exited("b", 0, 0)]), "Succeeded");
    // A failure is restarted: Running.
    assert_eq!(phase_of(&on_failure, vec![exited("a", 0, 0), exited("b", 0, 1)]), "Running");
}

#[test]
fn succeeded_pods_report_pod_completed() {
    let status = pod_status(&pod(&format!("  restartPolicy: Never\n{TWO}")), &observe(vec![exited("a", 0, 0), exited("b", 0, 0)]));
    let ready = cond(&status, "ContainersReady");
    assert_eq!((ready.status.as_str(), ready.reason.as_deref()), ("False", Some("PodCompleted")));
    assert_eq!(cond(&status, "Ready").reason.as_deref(), Some("PodCompleted"));
    assert_eq!(cond(&status, "Initialized").status, "True");
}

const INIT: &str = "  initContainers:\n  - name: init\n    image: i\n  containers:\n  - name: app\n    image: i\n";

#[test]
fn init_containers_gate_the_pod() {
    // The init container runs: Pending, not initialized, the app waits in PodInitializing.
    let status = pod_status(&pod(INIT), &observe(vec![running("init", 0)]));
    assert_eq!(status.phase.as_deref(), Some("Pending"));
    let initialized = cond(&status, "Initialized");
    assert_eq!(initialized.status, "False");
    assert_eq!(initialized.reason.as_deref(), Some("ContainersNotInitialized"));
    assert_eq!(initialized.message.as_deref(), Some("containers with incomplete status: [init]"));
    let app = &status.container_statuses.as_ref().unwrap()[0];
    assert_eq!(app.state.as_ref().unwrap().waiting.as_ref().unwrap().reason.as_deref(), Some(POD_INITIALIZING));

    // Done: initialized; the completed init container is ready.
    let status = pod_status(&pod(INIT), &observe(vec![exited("init", 0, 0), running("app", 0)]));
    assert_eq!(status.phase.as_deref(), Some("Running"));
    assert_eq!(cond(&status, "Initialized").status, "True");
    assert!(status.init_container_statuses.as_ref().unwrap()[0].ready);
    assert_eq!(cond(&status, "Ready").status, "True");
}

#[test]
fn failing_init_containers() {
    // Under Never a failed init container fails the pod.
    let never = format!("  restartPolicy: Never\n{INIT}");
    assert_eq!(phase_of(&never, vec![exited("init", 0, 1)]), "Failed");
    // Under Always it crash-loops and the pod stays Pending.
    let status = pod_status(&pod(INIT), &back_off(observe(vec![exited("init", 2, 1)]), "init"));
    assert_eq!(status.phase.as_deref(), Some("Pending"));
    let init = &status.init_container_statuses.as_ref().unwrap()[0];
    assert_eq!(init.state.as_ref().unwrap().waiting.as_ref().unwrap().reason.as_deref(), Some(CRASH_LOOP_BACK_OFF));
    assert_eq!(init.last_state.as_ref().unwrap().terminated.as_ref().unwrap().exit_code, 1);
    assert_eq!(init.restart_count, 2);
}

const SIDECAR: &str = "  initContainers:\n  - name: proxy\n    image: i\n    restartPolicy: Always\n    startupProbe:\n      exec: {command: [\"true\"]}\n  containers:\n  - name: app\n    image: i\n";

#[test]
fn sidecars_must_start_before_the_pod_initializes() {
    // Running but its startup probe has not passed: Pending, not initialized, not started.
    let status = pod_status(&pod(SIDECAR), &observe(vec![running("proxy", 0)]));
    assert_eq!(status.phase.as_deref(), Some("Pending"));
    assert_eq!(cond(&status, "Initialized").status, "False");
    assert_eq!(status.init_container_statuses.as_ref().unwrap()[0].started, Some(false));

    // Started: initialized; with the app running the pod is Running and the sidecar counts
    // toward readiness.
    let mut observed = observe(vec![running("proxy", 0), running("app", 0)]);
    observed.probes.insert("docker://proxy-0".into(), ProbeResults { started: Some(true), ready: None });
    let status = pod_status(&pod(SIDECAR), &observed);
    assert_eq!(status.phase.as_deref(), Some("Running"));
    assert_eq!(cond(&status, "Initialized").status, "True");
    assert_eq!(cond(&status, "ContainersReady").status, "True");

    // A sidecar that stopped does not hold the pod back once it has initialized.
    let status = pod_status(&pod(SIDECAR), &back_off(observe(vec![exited("proxy", 1, 1), running("app", 0)]), "proxy"));
    assert_eq!(status.phase.as_deref(), Some("Running"));
    let ready = cond(&status, "ContainersReady");
    assert_eq!(ready.message.as_deref(), Some("containers with unready status: [proxy]"));
}

const PROBED: &str = "  containers:\n  - name: app\n    image: i\n    readinessProbe:\n      httpGet: {port: 80}\n";

#[test]
fn readiness_sets_ready() {
    let mut observed = observe(vec![running("app", 0)]);
    // No result yet: not ready.
    let status = pod_status(&pod(PROBED), &observed);
    assert_eq!(status.phase.as_deref(), Some("Running"));
    let ready = cond(&status, "Ready");
    assert_eq!((ready.status.as_str(), ready.reason.as_deref()), ("False", Some("ContainersNotReady")));
    assert_eq!(ready.message.as_deref(), Some("containers with unready status: [app]"));
    assert!(!status.container_statuses.as_ref().unwrap()[0].ready);

    observed.probes.insert("docker://app-0".into(), ProbeResults { started: None, ready: Some(true) });
    let status = pod_status(&pod(PROBED), &observed);
    assert_eq!(cond(&status, "Ready").status, "True");
    assert_eq!(cond(&status, "ContainersReady").status, "True");
    assert!(status.container_statuses.as_ref().unwrap()[0].ready);
}

#[test]
fn container_states_and_restart_counts() {
    let mut observed = back_off(observe(vec![exited("a", 1, 0), exited("a", 2, 137), running("b", 0)]), "a");
    observed.containers[1].state = RecordState::Exited {
        started_at: Some(t(1)),
        finished_at: Some(t(5)),
        exit_code: 137,
        reason: "OOMKilled".into(),
        message: "out of memory".into(),
    };
    let status = pod_status(&pod(TWO), &observed);
    let a = &status.container_statuses.as_ref().unwrap()[0];
    assert_eq!(a.restart_count, 2);
    assert_eq!(a.container_id.as_deref(), Some("docker://a-2"));
    assert_eq!(a.state.as_ref().unwrap().waiting.as_ref().unwrap().reason.as_deref(), Some(CRASH_LOOP_BACK_OFF));
    let last = a.last_state.as_ref().unwrap().terminated.as_ref().unwrap();
    assert_eq!((last.exit_code, last.reason.as_deref(), last.message.as_deref()), (137, Some("OOMKilled"), Some("out of memory")));
    assert!(!a.ready);
    let b = &status.container_statuses.as_ref().unwrap()[1];
    assert_eq!(b.state.as_ref().unwrap().running.as_ref().unwrap().started_at, Some(time(t(10))));
    assert!(b.ready);
    assert_eq!(b.started, Some(true));
    assert_eq!(cond(&status, "Ready").message.as_deref(), Some("containers with unready status: [a]"));
}

#[test]
fn pull_failures_show_as_waiting() {
    let mut observed = observe(vec![running("a", 0)]);
    observed
        .waiting
        .insert("b".into(), WaitingReason { reason: IMAGE_PULL_BACK_OFF.into(), message: "Back-off pulling image \"i\"".into() });
    let status = pod_status(&pod(TWO), &observed);
    let b = &status.container_statuses.as_ref().unwrap()[1];
    let waiting = b.state.as_ref().unwrap().waiting.as_ref().unwrap();
    assert_eq!(waiting.reason.as_deref(), Some(IMAGE_PULL_BACK_OFF));
    assert_eq!(status.phase.as_deref(), Some("Pending"));
}

#[test]
fn addresses_times_and_the_fixed_conditions() {
    let status = pod_status(&pod(TWO), &observe(vec![running("a", 0), running("b", 0)]));
    assert_eq!(status.pod_ip.as_deref(), Some("172.17.0.2"));
    assert_eq!(status.host_ip.as_deref(), Some("192.0.2.10"));
    assert_eq!(status.start_time, Some(time(t(0))));
    let types: Vec<&str> = status.conditions.as_ref().unwrap().iter().map(|c| c.type_.as_str()).collect();
    assert_eq!(types, ["PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"]);
    assert!(status.conditions.as_ref().unwrap().iter().all(|c| c.status == "True"));
    let no_sandbox = pod_status(&pod(TWO), &PodObservation::default());
    assert_eq!(cond(&no_sandbox, "PodReadyToStartContainers").status, "False");
    assert_eq!(no_sandbox.phase.as_deref(), Some("Pending"));
    let a = &no_sandbox.container_statuses.as_ref().unwrap()[0];
    assert_eq!(a.state.as_ref().unwrap().waiting.as_ref().unwrap().reason.as_deref(), Some(CONTAINER_CREATING));
}

#[test]
fn qos_classes() {
    let with = |resources: &str| pod(&format!("  containers:\n  - name: a\n    image: i\n    resources:\n{resources}"));
    let qos = |p: Pod| qos_class(p.spec.as_ref().unwrap());
    assert_eq!(qos(pod(TWO)), "BestEffort");
    assert_eq!(qos(with("      limits: {cpu: 100m, memory: 64Mi}\n      requests: {cpu: 100m, memory: 64Mi}\n")), "Guaranteed");
    assert_eq!(qos(with("      limits: {cpu: 100m, memory: 64Mi}\n      requests: {cpu: 50m, memory: 64Mi}\n")), "Burstable");
    assert_eq!(qos(with("      requests: {memory: 64Mi}\n")), "Burstable");
    assert_eq!(qos(with("      limits: {memory: 64Mi}\n      requests: {memory: 64Mi}\n")), "Burstable");
    assert_eq!(qos(with("      requests: {cpu: \"0\"}\n")), "BestEffort", "zero quantities are ignored");
}
