//! The pod status, computed from what the agent observed with the kubelet's rules
//! (`generateAPIPodStatus`, `getPhase`, `convertToAPIContainerStatuses`, the prober manager's
//! `UpdatePodStatus` and the condition generators), so that `kubectl get pods` reads the same
//! for a static pod here as under a kubelet.
//!
//! The input is runtime-neutral ([`PodObservation`]): the agent turns its runtime's sandboxes,
//! containers, probe results and sync failures into it. Nothing here does I/O.

use std::collections::BTreeMap;
use std::time::SystemTime;

use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus, Pod, PodCondition,
    PodIP, PodSpec, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::quantity::{ParsedQuantity, parse_quantity};

/// Waiting reason of a container that has not been created yet.
pub const CONTAINER_CREATING: &str = "ContainerCreating";
/// Waiting reason of an app container while init containers run.
pub const POD_INITIALIZING: &str = "PodInitializing";
/// Waiting reason of a crashed container in back-off.
pub const CRASH_LOOP_BACK_OFF: &str = "CrashLoopBackOff";
/// Waiting reason after a failed pull.
pub const ERR_IMAGE_PULL: &str = "ErrImagePull";
/// Waiting reason while a failed pull is backed off.
pub const IMAGE_PULL_BACK_OFF: &str = "ImagePullBackOff";

/// One container instance the runtime holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerRecord {
    /// The container's name in the spec.
    pub name: String,
    /// `<runtime>://<id>`, as `containerID` shows it.
    pub container_id: String,
    /// The restart count this instance was started as.
    pub attempt: u32,
    /// The image's ID in the runtime, when known.
    pub image_id: String,
    /// What it is doing.
    pub state: RecordState,
}

/// A container instance's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordState {
    /// Created, not started.
    Created,
    /// Running since then.
    Running {
        /// When it started.
        started_at: SystemTime,
    },
    /// Exited.
    Exited {
        /// When it started, if it did.
        started_at: Option<SystemTime>,
        /// When it exited.
        finished_at: Option<SystemTime>,
        /// Its exit code.
        exit_code: i32,
        /// `Completed`, `Error`, `OOMKilled`.
        reason: String,
        /// Its termination message.
        message: String,
    },
    /// The runtime cannot say.
    Unknown,
}

/// Why a container is not running although it should be: the last sync's failure for it, or
/// the back-off it waits out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitingReason {
    /// `CrashLoopBackOff`, `ErrImagePull`, `ImagePullBackOff`, `CreateContainerConfigError`...
    pub reason: String,
    /// The detail.
    pub message: String,
}

/// Probe results of one running container; `None` where its probe has not given a result yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProbeResults {
    /// The startup probe succeeded.
    pub started: Option<bool>,
    /// The readiness probe's result.
    pub ready: Option<bool>,
}

/// Everything the status is computed from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodObservation {
    /// The pod's sandbox is up with its network: `PodReadyToStartContainers`.
    pub sandbox_ready: bool,
    /// The pod's addresses (the host's on the host network).
    pub pod_ips: Vec<String>,
    /// The node's address.
    pub host_ip: String,
    /// When the agent first accepted the pod.
    pub start_time: Option<SystemTime>,
    /// Every container instance of the current sandbox, any order.
    pub containers: Vec<ContainerRecord>,
    /// Containers waiting for a reason the runtime does not show, by name.
    pub waiting: BTreeMap<String, WaitingReason>,
    /// Probe results by `containerID`.
    pub probes: BTreeMap<String, ProbeResults>,
}

/// Whether an init container is a sidecar (`restartPolicy: Always`).
pub fn is_sidecar(container: &Container) -> bool {
    container.restart_policy.as_deref() == Some("Always")
}

/// The pod's status as the kubelet would report it.
pub fn pod_status(pod: &Pod, observed: &PodObservation) -> PodStatus {
    let spec = pod.spec.clone().unwrap_or_default();
    let init_statuses = container_statuses(&spec, spec.init_containers.as_deref().unwrap_or_default(), true, observed);
    let app_statuses = container_statuses(&spec, &spec.containers, false, observed);
    let all: Vec<&ContainerStatus> = init_statuses.iter().chain(&app_statuses).collect();
    let has_initialized = app_statuses.iter().any(|s| s.state.as_ref().is_some_and(|st| st.running.is_some() || st.terminated.is_some()));
    let phase = phase(&spec, &all, has_initialized);

    let initialized = initialized_condition(&spec, &all, &phase, has_initialized);
    let containers_ready = containers_ready_condition(&spec, &all, &phase);
    let ready = PodCondition { type_: "Ready".into(), ..containers_ready.clone() };
    let conditions = vec![
        condition("PodReadyToStartContainers", observed.sandbox_ready, None, None),
        initialized,
        ready,
        containers_ready,
        condition("PodScheduled", true, None, None),
    ];

    PodStatus {
        phase: Some(phase),
        conditions: Some(conditions),
        host_ip: Some(observed.host_ip.clone()).filter(|ip| !ip.is_empty()),
        host_ips: Some(vec![k8s_openapi::api::core::v1::HostIP { ip: observed.host_ip.clone() }]).filter(|_| !observed.host_ip.is_empty()),
        pod_ip: observed.pod_ips.first().cloned(),
        pod_ips: Some(observed.pod_ips.iter().map(|ip| PodIP { ip: ip.clone() }).collect()).filter(|ips: &Vec<PodIP>| !ips.is_empty()),
        start_time: observed.start_time.map(time),
        init_container_statuses: Some(init_statuses).filter(|s| !s.is_empty()),
        container_statuses: Some(app_statuses),
        qos_class: Some(qos_class(&spec).to_owned()),
        ..PodStatus::default()
    }
}

/// A kubelet-style timestamp: whole seconds, as the API serializes them.
pub fn time(at: SystemTime) -> Time {
    let secs = at.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    Time(Timestamp::from_second(secs).unwrap_or(Timestamp::UNIX_EPOCH))
}

fn condition(type_: &str, status: bool, reason: Option<&str>, message: Option<String>) -> PodCondition {
    PodCondition {
        type_: type_.into(),
        status: if status { "True" } else { "False" }.into(),
        reason: reason.map(str::to_owned),
        message,
        ..PodCondition::default()
    }
}

fn container_statuses(spec: &PodSpec, containers: &[Container], init: bool, observed: &PodObservation) -> Vec<ContainerStatus> {
    let has_init_containers = !init && spec.init_containers.as_ref().is_some_and(|c| !c.is_empty());
    let default_reason = if has_init_containers { POD_INITIALIZING } else { CONTAINER_CREATING };
    containers.iter().map(|c| container_status(c, init, default_reason, observed)).collect()
}

fn container_status(container: &Container, init: bool, default_reason: &str, observed: &PodObservation) -> ContainerStatus {
    let mut instances: Vec<&ContainerRecord> = observed.containers.iter().filter(|r| r.name == container.name).collect();
    instances.sort_by_key(|r| std::cmp::Reverse(r.attempt));
    let mut status = ContainerStatus {
        name: container.name.clone(),
        image: container.image.clone().unwrap_or_default(),
        ready: false,
        started: Some(false),
        ..ContainerStatus::default()
    };
    let waiting = |reason: &str, message: &str| ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.to_owned()),
            message: Some(message.to_owned()).filter(|m| !m.is_empty()),
        }),
        ..ContainerState::default()
    };
    let Some(newest) = instances.first() else {
        status.state = Some(match observed.waiting.get(&container.name) {
            Some(w) => waiting(&w.reason, &w.message),
            None => waiting(default_reason, ""),
        });
        return status;
    };
    status.container_id = Some(newest.container_id.clone());
    status.image_id = newest.image_id.clone();
    status.restart_count = newest.attempt as i32;
    status.state = Some(record_state(&newest.state));
    status.last_state = instances.get(1).map(|previous| record_state(&previous.state)).filter(|s| s.terminated.is_some());
    if !matches!(newest.state, RecordState::Running { .. })
        && let Some(w) = observed.waiting.get(&container.name)
    {
        if matches!(newest.state, RecordState::Exited { .. }) {
            status.last_state = status.state.take();
        }
        status.state = Some(waiting(&w.reason, &w.message));
    }

    let running = matches!(newest.state, RecordState::Running { .. });
    let probes = observed.probes.get(&newest.container_id).copied().unwrap_or_default();
    let started = running && if container.startup_probe.is_some() { probes.started == Some(true) } else { true };
    status.started = Some(started);
    if init && !is_sidecar(container) {
        status.ready = matches!(newest.state, RecordState::Exited { exit_code: 0, .. });
    } else if started {
        status.ready = if container.readiness_probe.is_some() { probes.ready == Some(true) } else { true };
    }
    status
}

fn record_state(state: &RecordState) -> ContainerState {
    match state {
        RecordState::Running { started_at } => {
            ContainerState { running: Some(ContainerStateRunning { started_at: Some(time(*started_at)) }), ..ContainerState::default() }
        }
        RecordState::Exited { started_at, finished_at, exit_code, reason, message } => ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: *exit_code,
                reason: Some(reason.clone()).filter(|r| !r.is_empty()),
                message: Some(message.clone()).filter(|m| !m.is_empty()),
                started_at: started_at.map(time),
                finished_at: finished_at.map(time),
                ..ContainerStateTerminated::default()
            }),
            ..ContainerState::default()
        },
        RecordState::Created => ContainerState {
            waiting: Some(ContainerStateWaiting { reason: Some(CONTAINER_CREATING.into()), message: None }),
            ..ContainerState::default()
        },
        RecordState::Unknown => ContainerState { waiting: Some(ContainerStateWaiting::default()), ..ContainerState::default() },
    }
}

fn find<'a>(statuses: &[&'a ContainerStatus], name: &str) -> Option<&'a ContainerStatus> {
    statuses.iter().copied().find(|s| s.name == name)
}

fn state_of(status: &ContainerStatus) -> (bool, Option<i32>, bool, Option<i32>) {
    let state = status.state.clone().unwrap_or_default();
    let last_exit = status.last_state.as_ref().and_then(|s| s.terminated.as_ref()).map(|t| t.exit_code);
    (state.running.is_some(), state.terminated.map(|t| t.exit_code), state.waiting.is_some(), last_exit)
}

/// `getPhase`, for a static pod (which the kubelet never moves to a terminal phase on its own).
fn phase(spec: &PodSpec, statuses: &[&ContainerStatus], has_initialized: bool) -> String {
    let policy = spec.restart_policy.as_deref().unwrap_or("Always");
    let (mut pending_init, mut pending_sidecars, mut failed_init) = (0, 0, 0);
    let (mut unknown, mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0, 0);
    for init in spec.init_containers.iter().flatten() {
        let Some(status) = find(statuses, &init.name) else {
            if is_sidecar(init) {
                unknown += 1;
            } else {
                pending_init += 1;
            }
            continue;
        };
        let (is_running, terminated, is_waiting, last_exit) = state_of(status);
        if is_sidecar(init) {
            if is_running {
                if status.started != Some(true) {
                    pending_sidecars += 1;
                }
                running += 1;
            } else if is_waiting && last_exit.is_none() {
                pending_sidecars += 1;
                waiting += 1;
            }
        } else if is_running {
            pending_init += 1;
        } else if let Some(code) = terminated {
            failed_init += usize::from(code != 0);
        } else if is_waiting && let Some(code) = last_exit {
            failed_init += usize::from(code != 0);
        } else {
            pending_init += 1;
        }
    }
    for container in &spec.containers {
        let Some(status) = find(statuses, &container.name) else {
            unknown += 1;
            continue;
        };
        let (is_running, terminated, is_waiting, last_exit) = state_of(status);
        if is_running {
            running += 1;
        } else if let Some(code) = terminated {
            stopped += 1;
            succeeded += usize::from(code == 0);
        } else if is_waiting && last_exit.is_some() {
            stopped += 1;
        } else if is_waiting {
            waiting += 1;
        } else {
            unknown += 1;
        }
    }

    let phase = if failed_init > 0 && policy == "Never" {
        "Failed"
    } else if pending_init > 0 || (pending_sidecars > 0 && !has_initialized) || waiting > 0 {
        "Pending"
    } else if running > 0 && unknown == 0 {
        "Running"
    } else if running == 0 && stopped > 0 && unknown == 0 {
        if policy == "Always" {
            "Running"
        } else if stopped == succeeded {
            "Succeeded"
        } else if policy == "Never" {
            "Failed"
        } else {
            "Running"
        }
    } else {
        "Pending"
    };
    phase.to_owned()
}

fn names_message(unknown: &[&str], unready: &[&str], unready_words: &str) -> String {
    let mut parts = Vec::new();
    if !unknown.is_empty() {
        parts.push(format!("containers with unknown status: [{}]", unknown.join(" ")));
    }
    if !unready.is_empty() {
        parts.push(format!("containers with {unready_words} status: [{}]", unready.join(" ")));
    }
    parts.join(", ")
}

/// `GeneratePodInitializedCondition`.
fn initialized_condition(spec: &PodSpec, statuses: &[&ContainerStatus], phase: &str, has_initialized: bool) -> PodCondition {
    let inits = spec.init_containers.as_deref().unwrap_or_default();
    if inits.is_empty() {
        return condition("Initialized", true, None, None);
    }
    let (mut unknown, mut unready) = (Vec::new(), Vec::new());
    for init in inits {
        match find(statuses, &init.name) {
            None => unknown.push(init.name.as_str()),
            Some(s) if is_sidecar(init) && s.started != Some(true) => unready.push(init.name.as_str()),
            Some(s) if !is_sidecar(init) && !s.ready => unready.push(init.name.as_str()),
            Some(_) => {}
        }
    }
    if phase == "Succeeded" && unknown.is_empty() {
        return condition("Initialized", true, Some("PodCompleted"), None);
    }
    if has_initialized || (unknown.is_empty() && unready.is_empty()) {
        return condition("Initialized", true, None, None);
    }
    condition("Initialized", false, Some("ContainersNotInitialized"), Some(names_message(&unknown, &unready, "incomplete")))
}

/// `GenerateContainersReadyCondition`; the `Ready` condition copies it, as no static pod has
/// readiness gates anyone could set.
fn containers_ready_condition(spec: &PodSpec, statuses: &[&ContainerStatus], phase: &str) -> PodCondition {
    let (mut unknown, mut unready) = (Vec::new(), Vec::new());
    let sidecars = spec.init_containers.iter().flatten().filter(|c| is_sidecar(c));
    for container in sidecars.chain(&spec.containers) {
        match find(statuses, &container.name) {
            None => unknown.push(container.name.as_str()),
            Some(s) if !s.ready => unready.push(container.name.as_str()),
            Some(_) => {}
        }
    }
    if phase == "Succeeded" && unknown.is_empty() {
        return condition("ContainersReady", false, Some("PodCompleted"), None);
    }
    if unknown.is_empty() && unready.is_empty() {
        return condition("ContainersReady", true, None, None);
    }
    condition("ContainersReady", false, Some("ContainersNotReady"), Some(names_message(&unknown, &unready, "unready")))
}

/// `GetPodQOS`: Guaranteed when every container limits CPU and memory with requests equal to
/// limits, BestEffort when nothing requests or limits either, Burstable otherwise.
pub fn qos_class(spec: &PodSpec) -> &'static str {
    let mut requests: BTreeMap<&str, ParsedQuantity> = BTreeMap::new();
    let mut limits: BTreeMap<&str, ParsedQuantity> = BTreeMap::new();
    let mut guaranteed = true;
    for container in spec.containers.iter().chain(spec.init_containers.iter().flatten()) {
        let resources = container.resources.as_ref();
        for (name, quantity) in resources.and_then(|r| r.requests.as_ref()).into_iter().flatten() {
            if let Some((name, q)) = qos_quantity(name, &quantity.0) {
                requests.entry(name).and_modify(|sum| *sum = *sum + q).or_insert(q);
            }
        }
        let mut limited = Vec::new();
        for (name, quantity) in resources.and_then(|r| r.limits.as_ref()).into_iter().flatten() {
            if let Some((name, q)) = qos_quantity(name, &quantity.0) {
                limited.push(name);
                limits.entry(name).and_modify(|sum| *sum = *sum + q).or_insert(q);
            }
        }
        if !(limited.contains(&"cpu") && limited.contains(&"memory")) {
            guaranteed = false;
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return "BestEffort";
    }
    if guaranteed && requests.len() == limits.len() && requests.iter().all(|(name, q)| limits.get(name) == Some(q)) {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

fn qos_quantity<'a>(name: &'a str, text: &str) -> Option<(&'a str, ParsedQuantity)> {
    let q = parse_quantity(text).ok()?;
    (matches!(name, "cpu" | "memory") && q > ParsedQuantity::ZERO).then_some((name, q))
}

#[cfg(test)]
mod tests;
