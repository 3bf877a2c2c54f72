//! Pods as a `meta.k8s.io/v1` Table, the server-side printing `kubectl get` asks for: the
//! columns and the STATUS and RESTARTS wording of kubectl's own pod printer, so that `kubectl
//! get pods` and `staticlet get pods` read exactly as they do against a cluster.

use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::{ContainerStateTerminated, ContainerStatus, Pod, PodSpec, PodStatus};
use serde_json::{Value, json};

/// What each row carries besides its cells (`?includeObject=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncludeObject {
    /// Nothing.
    None,
    /// The object's metadata (kubectl's default).
    Metadata,
    /// The whole object.
    Object,
}

impl IncludeObject {
    /// From the query parameter; the API's default is `Metadata`.
    pub fn from_query(value: Option<&str>) -> IncludeObject {
        match value {
            Some("None") => IncludeObject::None,
            Some("Object") => IncludeObject::Object,
            _ => IncludeObject::Metadata,
        }
    }
}

/// The column definitions of the pod table; priority 1 columns show with `-o wide`.
pub fn pod_columns() -> Value {
    let column = |name: &str, kind: &str, format: &str, priority: u8, description: &str| json!({"name": name, "type": kind, "format": format, "description": description, "priority": priority});
    json!([
        column("Name", "string", "name", 0, "Name must be unique within a namespace."),
        column("Ready", "string", "", 0, "The aggregate readiness state of this pod for accepting traffic."),
        column("Status", "string", "", 0, "The aggregate status of the containers in this pod."),
        column(
            "Restarts",
            "string",
            "",
            0,
            "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted."
        ),
        column("Age", "string", "", 0, "CreationTimestamp is a timestamp representing the server time when this object was created."),
        column("IP", "string", "", 1, "IP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated."),
        column("Node", "string", "", 1, "NodeName is a request to schedule this pod onto a specific node."),
        column("Nominated Node", "string", "", 1, "nominatedNodeName is set when this pod preempts other pods on the node."),
        column("Readiness Gates", "string", "", 1, "If specified, all readiness gates will be evaluated for pod readiness."),
    ])
}

/// A Table of `pods` at `revision`.
pub fn pod_table(pods: &[Pod], revision: u64, include: IncludeObject, now: SystemTime) -> Value {
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": revision.to_string()},
        "columnDefinitions": pod_columns(),
        "rows": pods.iter().map(|pod| pod_row(pod, include, now)).collect::<Vec<_>>(),
    })
}

fn pod_row(pod: &Pod, include: IncludeObject, now: SystemTime) -> Value {
    let cells = pod_cells(pod, now);
    let mut row = json!({"cells": cells});
    match include {
        IncludeObject::None => {}
        IncludeObject::Metadata => {
            row["object"] = json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": pod.metadata});
        }
        IncludeObject::Object => {
            let mut object = serde_json::to_value(pod).expect("a pod always serializes");
            object["apiVersion"] = json!("v1");
            object["kind"] = json!("Pod");
            row["object"] = object;
        }
    }
    row
}

/// NAME, READY, STATUS, RESTARTS, AGE, IP, NODE, NOMINATED NODE, READINESS GATES, worked out as
/// kubectl's pod printer does.
pub fn pod_cells(pod: &Pod, now: SystemTime) -> Vec<String> {
    let spec = pod.spec.clone().unwrap_or_default();
    let status = pod.status.clone().unwrap_or_default();
    let sidecars: Vec<&str> =
        spec.init_containers.iter().flatten().filter(|c| c.restart_policy.as_deref() == Some("Always")).map(|c| c.name.as_str()).collect();
    let mut tally = Tally { reason: status.reason.clone().or_else(|| status.phase.clone()).unwrap_or_default(), ..Tally::default() };
    let init_count = spec.init_containers.as_ref().map_or(0, Vec::len);
    let initializing = tally.init_containers(status.init_container_statuses.as_deref().unwrap_or_default(), init_count, &sidecars);
    let initialized = status.conditions.iter().flatten().any(|c| c.type_ == "Initialized" && c.status == "True");
    if !initializing || initialized {
        tally.app_containers(&status);
    }
    // As kubectl prints a pod being deleted (here: its manifest carries a deletionTimestamp).
    if pod.metadata.deletion_timestamp.is_some() && !matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
        tally.reason = "Terminating".into();
    }
    let total = if spec.containers.is_empty() { 0 } else { spec.containers.len() + sidecars.len() };
    let restarts = tally.restarts_cell(now);
    let none = || "<none>".to_owned();
    vec![
        pod.metadata.name.clone().unwrap_or_default(),
        format!("{}/{total}", tally.ready),
        tally.reason,
        restarts,
        age_cell(pod, now),
        status.pod_ip.clone().filter(|ip| !ip.is_empty()).unwrap_or_else(none),
        spec.node_name.clone().filter(|n| !n.is_empty()).unwrap_or_else(none),
        status.nominated_node_name.clone().filter(|n| !n.is_empty()).unwrap_or_else(none),
        readiness_gates_cell(&spec, &status).unwrap_or_else(none),
    ]
}

/// What kubectl's pod printer adds up over the container statuses for READY, STATUS and
/// RESTARTS.
#[derive(Debug, Default)]
struct Tally {
    /// Ready app containers and started, ready sidecars.
    ready: usize,
    /// Restarts of the containers that count: the init containers while the pod initializes,
    /// else the sidecars and the app containers.
    restarts: i32,
    /// The sidecars' share of `restarts`, which still counts once the pod is initialized.
    sidecar_restarts: i32,
    /// When a container last exited to be restarted.
    last_restart: Option<SystemTime>,
    /// The STATUS cell: the pod's reason or phase unless a container's state says more.
    reason: String,
}

impl Tally {
    /// Keeps the latest time any container's previous run finished.
    fn note_restart(&mut self, c: &ContainerStatus) {
        if let Some(finished) = c.last_state.as_ref().and_then(|s| s.terminated.as_ref()).and_then(|t| t.finished_at.as_ref()) {
            let at = system_time(finished.0);
            self.last_restart = Some(self.last_restart.map_or(at, |l| l.max(at)));
        }
    }

    /// Goes through the init containers in order up to the first one that has not completed,
    /// which gives the pod its `Init:` status; sidecars count toward READY and never hold the
    /// pod back. Returns whether the pod is still initializing.
    fn init_containers(&mut self, statuses: &[ContainerStatus], init_count: usize, sidecars: &[&str]) -> bool {
        for (i, c) in statuses.iter().enumerate() {
            self.restarts += c.restart_count;
            self.note_restart(c);
            if sidecars.contains(&c.name.as_str()) {
                self.sidecar_restarts += c.restart_count;
                if c.started == Some(true) && c.ready {
                    self.ready += 1;
                }
                continue;
            }
            let state = c.state.clone().unwrap_or_default();
            match (&state.terminated, &state.waiting) {
                (Some(t), _) if t.exit_code == 0 => continue,
                (Some(t), _) => self.reason = format!("Init:{}", terminated_reason(t)),
                (None, Some(w)) if w.reason.as_deref().is_some_and(|r| !r.is_empty() && r != "PodInitializing") => {
                    self.reason = format!("Init:{}", w.reason.as_deref().unwrap_or_default());
                }
                _ => self.reason = format!("Init:{i}/{init_count}"),
            }
            return true;
        }
        false
    }

    /// Goes through the app containers, last to first as kubectl does, so the first container
    /// that is waiting or has exited gives the pod its status; restarts start again from the
    /// sidecars'.
    fn app_containers(&mut self, status: &PodStatus) {
        self.restarts = self.sidecar_restarts;
        let mut running = false;
        for c in status.container_statuses.iter().flatten().rev() {
            self.restarts += c.restart_count;
            self.note_restart(c);
            let state = c.state.clone().unwrap_or_default();
            if let Some(waiting) = state.waiting.as_ref().and_then(|w| w.reason.clone()).filter(|r| !r.is_empty()) {
                self.reason = waiting;
            } else if let Some(t) = &state.terminated {
                self.reason = terminated_reason(t);
            } else if c.ready && state.running.is_some() {
                running = true;
                self.ready += 1;
            }
        }
        if self.reason == "Completed" && running {
            let pod_ready = status.conditions.iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True");
            self.reason = if pod_ready { "Running".into() } else { "NotReady".into() };
        }
    }

    /// RESTARTS: the count, and how long ago the last one was when there were any.
    fn restarts_cell(&self, now: SystemTime) -> String {
        match self.last_restart {
            Some(at) if self.restarts != 0 => {
                format!("{} ({} ago)", self.restarts, human_duration(now.duration_since(at).unwrap_or_default()))
            }
            _ => self.restarts.to_string(),
        }
    }
}

/// Why a container exited: its reason, else the signal that killed it, else its exit code.
fn terminated_reason(t: &ContainerStateTerminated) -> String {
    match t.reason.as_deref().filter(|r| !r.is_empty()) {
        Some(r) => r.to_owned(),
        None if t.signal.unwrap_or(0) != 0 => format!("Signal:{}", t.signal.unwrap_or(0)),
        None => format!("ExitCode:{}", t.exit_code),
    }
}

/// AGE: since the pod was created.
fn age_cell(pod: &Pod, now: SystemTime) -> String {
    pod.metadata
        .creation_timestamp
        .as_ref()
        .map_or_else(|| "<unknown>".to_owned(), |t| human_duration(now.duration_since(system_time(t.0)).unwrap_or_default()))
}

/// READINESS GATES: how many of the pod's gates have their condition true, when it has any.
fn readiness_gates_cell(spec: &PodSpec, status: &PodStatus) -> Option<String> {
    spec.readiness_gates.as_ref().filter(|g| !g.is_empty()).map(|gates| {
        let met =
            gates.iter().filter(|g| status.conditions.iter().flatten().any(|c| c.type_ == g.condition_type && c.status == "True")).count();
        format!("{met}/{}", gates.len())
    })
}

/// An API timestamp as a `SystemTime`; whole seconds are all the API keeps anyway.
pub fn system_time(at: k8s_openapi::jiff::Timestamp) -> SystemTime {
    let seconds = at.as_second();
    if seconds >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_secs(seconds.unsigned_abs())
    } else {
        SystemTime::UNIX_EPOCH - Duration::from_secs(seconds.unsigned_abs())
    }
}

/// A duration as kubectl prints ages: `45s`, `3m12s`, `17m`, `5h3m`, `3d4h`, `400d`, `2y30d`.
pub fn human_duration(d: Duration) -> String {
    let seconds = d.as_secs();
    let minutes = seconds / 60;
    let hours = minutes / 60;
    let with = |major: u64, major_unit: &str, minor: u64, minor_unit: &str| {
        if minor == 0 { format!("{major}{major_unit}") } else { format!("{major}{major_unit}{minor}{minor_unit}") }
    };
    if seconds < 120 {
        format!("{seconds}s")
    } else if minutes < 10 {
        with(minutes, "m", seconds % 60, "s")
    } else if minutes < 180 {
        format!("{minutes}m")
    } else if hours < 8 {
        with(hours, "h", minutes % 60, "m")
    } else if hours < 48 {
        format!("{hours}h")
    } else if hours < 24 * 8 {
        with(hours / 24, "d", hours % 24, "h")
    } else if hours < 24 * 365 * 2 {
        format!("{}d", hours / 24)
    } else if hours < 24 * 365 * 8 {
        with(hours / 24 / 365, "y", (hours / 24) % 365, "d")
    } else {
        format!("{}y", hours / 24 / 365)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(status: Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web-n1", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"nodeName": "n1", "containers": [{"name": "app"}, {"name": "log"}]},
            "status": status,
        }))
        .unwrap()
    }

    fn at(text: &str) -> SystemTime {
        system_time(text.parse().unwrap())
    }

    #[test]
    fn a_running_pod_reads_as_kubectl_prints_it() {
        let running = pod(json!({
            "phase": "Running", "podIP": "172.17.0.2",
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [
                {"name": "app", "ready": true, "restartCount": 2, "image": "", "imageID": "",
                 "state": {"running": {}}, "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2026-01-01T00:55:00Z"}}},
                {"name": "log", "ready": true, "restartCount": 0, "image": "", "imageID": "", "state": {"running": {}}},
            ],
        }));
        let cells = pod_cells(&running, at("2026-01-01T01:00:00Z"));
        assert_eq!(cells, ["web-n1", "2/2", "Running", "2 (5m ago)", "60m", "172.17.0.2", "n1", "<none>", "<none>"]);
    }

    #[test]
    fn waiting_and_init_reasons_win_over_the_phase() {
        let backoff = pod(json!({
            "phase": "Running",
            "containerStatuses": [
                {"name": "app", "ready": false, "restartCount": 4, "image": "", "imageID": "", "state": {"waiting": {"reason": "CrashLoopBackOff"}}},
                {"name": "log", "ready": true, "restartCount": 0, "image": "", "imageID": "", "state": {"running": {}}},
            ],
        }));
        let cells = pod_cells(&backoff, at("2026-01-01T00:00:30Z"));
        assert_eq!(&cells[1..4], ["1/2", "CrashLoopBackOff", "4"]);

        let mut initializing = pod(json!({
            "phase": "Pending",
            "initContainerStatuses": [{"name": "setup", "ready": false, "restartCount": 0, "image": "", "imageID": "", "state": {"running": {}}}],
        }));
        initializing.spec.as_mut().unwrap().init_containers = Some(vec![serde_json::from_value(json!({"name": "setup"})).unwrap()]);
        assert_eq!(pod_cells(&initializing, at("2026-01-01T00:00:30Z"))[2], "Init:0/1");

        let rejected = pod(json!({"phase": "Failed", "reason": "Rejected"}));
        assert_eq!(pod_cells(&rejected, at("2026-01-01T00:00:30Z"))[2], "Rejected");
    }

    #[test]
    fn ages_read_as_kubectl_prints_them() {
        for (seconds, text) in
            [(45, "45s"), (119, "119s"), (192, "3m12s"), (1020, "17m"), (18_180, "5h3m"), (187_200, "2d4h"), (34_560_000, "400d")]
        {
            assert_eq!(human_duration(Duration::from_secs(seconds)), text);
        }
    }
}
