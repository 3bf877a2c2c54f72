//! Publish: the pod's status, computed from what was observed and planned, in the kubelet's
//! terms. Pure: the worker gathers the facts (the pod's address, probe results, why containers
//! wait) and hands the status to the store.

use std::collections::HashMap;
use std::time::SystemTime;

use k8s_openapi::api::core::v1::PodStatus;
use staticlet_model::StaticPod;
use staticlet_model::status::{self, ContainerRecord, PodObservation, ProbeResults, RecordState, WaitingReason};
use staticlet_runtime::{ContainerState, PodSandbox};

use super::observe::current_sandbox;
use super::plan::{ObservedContainer, ObservedPod, Plan};
use staticlet_runtime::labels::SANDBOX_HASH;

/// What the status needs beside the observed objects and the plan.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// The runtime's name, the scheme of `containerID`s (`docker://…`).
    pub scheme: &'a str,
    /// The node's address.
    pub host_ip: &'a str,
    /// The pod's address in its current sandbox; empty if it has none.
    pub pod_ip: &'a str,
    /// When the agent first accepted the pod.
    pub start_time: Option<SystemTime>,
    /// Why containers that have not started wait, by name.
    pub failures: &'a HashMap<String, WaitingReason>,
    /// Probe results by runtime container ID.
    pub probes: &'a HashMap<String, ProbeResults>,
}

/// The sandbox the status describes: the current one, if it was made for the pod as it is
/// wanted now (a sandbox about to be replaced shows as none).
pub fn status_sandbox<'a>(pod: &StaticPod, observed: &'a ObservedPod) -> Option<&'a PodSandbox> {
    current_sandbox(observed).filter(|s| s.labels.get(SANDBOX_HASH) == Some(&pod.sandbox_hash))
}

/// The pod's status as the kubelet would report it.
pub fn pod_status(pod: &StaticPod, observed: &ObservedPod, plan: &Plan, facts: Facts<'_>) -> PodStatus {
    let sandbox = status_sandbox(pod, observed);
    let mut observation = PodObservation {
        sandbox_ready: sandbox.is_some(),
        pod_ips: Some(facts.pod_ip.to_owned()).filter(|ip| !ip.is_empty() && sandbox.is_some()).into_iter().collect(),
        host_ip: facts.host_ip.to_owned(),
        start_time: facts.start_time,
        containers: Vec::new(),
        waiting: facts.failures.iter().map(|(name, w)| (name.clone(), w.clone())).collect(),
        probes: Default::default(),
    };
    for c in observed.containers.iter().filter(|c| sandbox.is_some_and(|s| s.id == c.container.pod_sandbox_id)) {
        let container_id = format!("{}://{}", facts.scheme, c.container.id);
        if let Some(results) = facts.probes.get(&c.container.id) {
            observation.probes.insert(container_id.clone(), *results);
        }
        observation.containers.push(ContainerRecord {
            name: c.container.metadata.name.clone(),
            container_id,
            attempt: c.container.metadata.attempt,
            image_id: c.container.image.clone(),
            state: record_state(c),
        });
    }
    for waiting in &plan.waiting {
        let message = format!(
            "back-off {}s restarting failed container={} pod={}_{}({})",
            waiting.delay.as_secs(),
            waiting.name,
            pod.name(),
            pod.namespace(),
            pod.uid
        );
        observation.waiting.insert(waiting.name.clone(), WaitingReason { reason: status::CRASH_LOOP_BACK_OFF.into(), message });
    }
    status::pod_status(&pod.pod, &observation)
}

fn record_state(c: &ObservedContainer) -> RecordState {
    match (c.container.state, &c.status) {
        (ContainerState::Running, status) => {
            RecordState::Running { started_at: status.as_ref().and_then(|s| s.started_at).unwrap_or(c.container.created_at) }
        }
        (ContainerState::Exited, Some(s)) => RecordState::Exited {
            started_at: s.started_at,
            finished_at: s.finished_at,
            exit_code: s.exit_code,
            reason: s.reason.clone(),
            message: s.message.clone(),
        },
        (ContainerState::Created, _) => RecordState::Created,
        _ => RecordState::Unknown,
    }
}
