//! Pod events, recorded as the kubelet records them (`Pulling`, `Pulled`, `Created`, `Started`,
//! `Killing`, `BackOff`, `Unhealthy`, `Rejected`, ...) and served as `core/v1` Events, so that
//! `kubectl describe pod` and `kubectl get events` show them.
//!
//! Every event is also a log line. A repeat of the same event (same pod, object, reason and
//! message) bumps its count and last timestamp rather than adding a line, as the kubelet's event
//! correlator does. Each pod keeps its newest [`PER_POD`] events for an hour, the API server's
//! default event TTL.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use staticlet_model::StaticPod;
use staticlet_model::status::time;
use tracing::{info, warn};

/// How many events each pod keeps.
pub const PER_POD: usize = 64;
/// How long an event is kept after it last happened.
pub const TTL: Duration = Duration::from_secs(3600);

/// Whether an event is routine or a problem, as `Event.type` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Routine: an image pulled, a container started.
    Normal,
    /// A problem: a probe failed, a container backs off, a pod was rejected.
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// The pod an event is about.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Involved {
    uid: String,
    namespace: String,
    name: String,
}

#[derive(Debug, Clone)]
struct Record {
    /// Unique within this agent's life: the event's name suffix and its resource version.
    serial: u64,
    container: Option<String>,
    kind: EventType,
    reason: String,
    message: String,
    count: i32,
    first: SystemTime,
    last: SystemTime,
}

#[derive(Debug, Default)]
struct PodEventLog {
    pod: Option<Involved>,
    records: VecDeque<Record>,
}

/// The agent's event store. Cloning shares it.
#[derive(Debug, Clone, Default)]
pub struct Recorder {
    pods: Arc<Mutex<HashMap<String, PodEventLog>>>,
    serial: Arc<AtomicU64>,
    node: Arc<str>,
}

impl Recorder {
    /// A store for the events of pods on `node` (the events' `source.host`).
    pub fn new(node: &str) -> Recorder {
        Recorder { node: node.into(), ..Recorder::default() }
    }

    /// The handle a pod's worker records through.
    pub fn for_pod(&self, pod: &StaticPod) -> PodEvents {
        PodEvents {
            recorder: self.clone(),
            pod: Involved { uid: pod.uid.clone(), namespace: pod.namespace().to_owned(), name: pod.name().to_owned() },
        }
    }

    /// The handle of a pod found running that no source declares (its worker tears it
    /// down): its events are logged, not kept, since nothing names the pod any more.
    pub fn for_unknown_pod(&self, uid: &str) -> PodEvents {
        PodEvents { recorder: self.clone(), pod: Involved { uid: uid.to_owned(), namespace: String::new(), name: String::new() } }
    }

    fn record(&self, pod: &Involved, container: Option<&str>, kind: EventType, reason: &str, message: String) {
        let full_name = if pod.name.is_empty() { format!("uid {}", pod.uid) } else { format!("{}/{}", pod.namespace, pod.name) };
        match kind {
            EventType::Normal => info!(pod = %full_name, container, reason, "{message}"),
            EventType::Warning => warn!(pod = %full_name, container, reason, "{message}"),
        }
        if pod.name.is_empty() {
            return;
        }
        let now = SystemTime::now();
        let mut pods = self.pods.lock().expect("event lock");
        let log = pods.entry(pod.uid.clone()).or_default();
        log.pod = Some(pod.clone());
        log.records.retain(|r| now.duration_since(r.last).unwrap_or_default() < TTL);
        let serial = self.serial.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(same) = log
            .records
            .iter_mut()
            .find(|r| r.kind == kind && r.reason == reason && r.message == message && r.container.as_deref() == container)
        {
            same.count += 1;
            same.last = now;
            same.serial = serial;
            return;
        }
        if log.records.len() == PER_POD {
            log.records.pop_front();
        }
        log.records.push_back(Record {
            serial,
            container: container.map(str::to_owned),
            kind,
            reason: reason.to_owned(),
            message,
            count: 1,
            first: now,
            last: now,
        });
    }

    /// Every event kept, as `core/v1` Events, oldest first; only `namespace`'s when given.
    pub fn events(&self, namespace: Option<&str>) -> Vec<Event> {
        let pods = self.pods.lock().expect("event lock");
        let mut events: Vec<(SystemTime, Event)> = pods
            .values()
            .filter_map(|log| log.pod.as_ref().map(|pod| (pod, &log.records)))
            .filter(|(pod, _)| namespace.is_none_or(|ns| pod.namespace == ns))
            .flat_map(|(pod, records)| records.iter().map(move |r| (r.last, self.to_event(pod, r))))
            .collect();
        events.sort_by_key(|(last, _)| *last);
        events.into_iter().map(|(_, e)| e).collect()
    }

    fn to_event(&self, pod: &Involved, record: &Record) -> Event {
        let field_path = record.container.as_ref().map(|c| format!("spec.containers{{{c}}}"));
        Event {
            metadata: ObjectMeta {
                // Named as the kubelet names them: the pod's name and a unique suffix.
                name: Some(format!("{}.{:016x}", pod.name, record.serial)),
                namespace: Some(pod.namespace.clone()),
                resource_version: Some(record.serial.to_string()),
                creation_timestamp: Some(time(record.first)),
                ..ObjectMeta::default()
            },
            involved_object: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(pod.name.clone()),
                namespace: Some(pod.namespace.clone()),
                uid: Some(pod.uid.clone()),
                field_path,
                ..ObjectReference::default()
            },
            reason: Some(record.reason.clone()),
            message: Some(record.message.clone()),
            type_: Some(record.kind.as_str().to_owned()),
            count: Some(record.count),
            first_timestamp: Some(time(record.first)),
            last_timestamp: Some(time(record.last)),
            source: Some(EventSource { component: Some("staticlet".into()), host: Some(self.node.to_string()) }),
            reporting_component: Some("staticlet".into()),
            reporting_instance: Some(self.node.to_string()),
            ..Event::default()
        }
    }
}

/// Records the events of one pod.
#[derive(Debug, Clone)]
pub struct PodEvents {
    recorder: Recorder,
    pod: Involved,
}

impl PodEvents {
    /// Whether the events name a pod (and so are kept), rather than only being logged.
    pub fn names_a_pod(&self) -> bool {
        !self.pod.name.is_empty()
    }

    /// Records a routine event, about one container when `container` is given.
    pub fn normal(&self, container: Option<&str>, reason: &str, message: impl Into<String>) {
        self.recorder.record(&self.pod, container, EventType::Normal, reason, message.into());
    }

    /// Records a problem.
    pub fn warning(&self, container: Option<&str>, reason: &str, message: impl Into<String>) {
        self.recorder.record(&self.pod, container, EventType::Warning, reason, message.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str) -> Involved {
        Involved { uid: format!("uid-{name}"), namespace: "default".into(), name: name.into() }
    }

    #[test]
    fn a_repeat_counts_rather_than_adds() {
        let recorder = Recorder::new("n1");
        let events = PodEvents { recorder: recorder.clone(), pod: pod("web") };
        events.warning(Some("app"), "BackOff", "Back-off restarting failed container app");
        events.warning(Some("app"), "BackOff", "Back-off restarting failed container app");
        events.normal(Some("app"), "Started", "Started container app");
        let all = recorder.events(Some("default"));
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].count, Some(2));
        assert_eq!(all[0].involved_object.field_path.as_deref(), Some("spec.containers{app}"));
        assert_eq!(all[1].reason.as_deref(), Some("Started"));
        assert!(recorder.events(Some("other")).is_empty());
    }

    #[test]
    fn each_pod_keeps_its_newest_events() {
        let recorder = Recorder::new("n1");
        let events = PodEvents { recorder: recorder.clone(), pod: pod("web") };
        for i in 0..PER_POD + 5 {
            events.normal(None, "Pulled", format!("pull {i}"));
        }
        let all = recorder.events(None);
        assert_eq!(all.len(), PER_POD);
        assert_eq!(all[0].message.as_deref(), Some("pull 5"));
    }
}
