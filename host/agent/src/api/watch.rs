//! `?watch=1` on a pod list: a stream of `ADDED`, `MODIFIED` and `DELETED` events, one JSON
//! object per line, as a kube-apiserver sends them.
//!
//! A watch from `resourceVersion` N (what a list returned) first replays what changed after N:
//! pods added or changed since, and pods removed since, from the store's remembered removals.
//! Without a resource version (or with `0`) it starts with every pod as `ADDED`. A pod that
//! stops matching the selector is `DELETED` for this watch, as the API server does it.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::{Response, StatusCode};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::table::{self, IncludeObject};
use super::{Api, Body, PodFilter, Query, status, with_kind};
use crate::status::{Pods, StatusSnapshot, StoredPod};

/// How each event's object is rendered.
#[derive(Debug, Clone, Copy)]
enum Render {
    Object,
    Table(IncludeObject),
}

struct Watcher {
    pods: watch::Receiver<StatusSnapshot>,
    filter: PodFilter,
    render: Render,
    /// What this watch's client knows of each pod it was told about.
    known: BTreeMap<String, StoredPod>,
    queue: VecDeque<Bytes>,
    deadline: Option<tokio::time::Instant>,
    shutdown: CancellationToken,
}

/// Marks a pod the client has at an older version than the store's: the first diff reports it.
const STALE: u64 = 0;

pub(super) fn serve(api: &Api, filter: PodFilter, query: &Query) -> Result<Response<Body>, Box<Response<Body>>> {
    let mut pods = api.status.subscribe();
    let snapshot = pods.borrow_and_update().clone();
    let from = match query.get("resourceVersion").filter(|v| !v.is_empty() && *v != "0") {
        None => None,
        Some(v) => Some(v.parse::<u64>().map_err(|_| Box::new(super::bad_request(&format!("resourceVersion: {v:?} is not valid"))))?),
    };
    if let Some(from) = from
        && (from < snapshot.oldest_resumable() || from > snapshot.revision)
    {
        return Err(Box::new(status(
            StatusCode::GONE,
            "Expired",
            &format!("too old resource version: {from} ({})", snapshot.revision),
            None,
        )));
    }
    let render = if query.table { Render::Table(IncludeObject::from_query(query.get("includeObject"))) } else { Render::Object };
    let timeout = query.number("timeoutSeconds")?.map(Duration::from_secs);
    let mut watcher = Watcher {
        pods,
        known: from.map(|from| known_at(&snapshot, &filter, from)).unwrap_or_default(),
        filter,
        render,
        queue: VecDeque::new(),
        deadline: timeout.map(|t| tokio::time::Instant::now() + t),
        shutdown: api.shutdown.clone(),
    };
    watcher.diff(&snapshot);
    let stream = futures::stream::unfold(watcher, |mut watcher| async move {
        loop {
            if let Some(line) = watcher.queue.pop_front() {
                return Some((Ok::<_, std::io::Error>(Frame::data(line)), watcher));
            }
            let deadline = watcher.deadline;
            tokio::select! {
                _ = watcher.shutdown.cancelled() => return None,
                _ = async { tokio::time::sleep_until(deadline.expect("guarded")).await }, if deadline.is_some() => return None,
                changed = watcher.pods.changed() => if changed.is_err() { return None },
            }
            let snapshot = watcher.pods.borrow_and_update().clone();
            watcher.diff(&snapshot);
        }
    });
    let mut response = Response::new(BodyExt::boxed_unsync(StreamBody::new(stream.boxed())));
    response.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
    Ok(response)
}

/// What a client that listed at revision `from` holds: the matching pods that existed then
/// (those changed since marked stale), and those removed since.
fn known_at(pods: &Pods, filter: &PodFilter, from: u64) -> BTreeMap<String, StoredPod> {
    let mut known = BTreeMap::new();
    for tombstone in pods.removed.iter().filter(|t| t.removed > from && t.last.created <= from) {
        if filter.matches(&tombstone.last) {
            known.insert(tombstone.last.view.pod.uid.clone(), tombstone.last.clone());
        }
    }
    for (uid, stored) in &pods.by_uid {
        if stored.created <= from && filter.matches(stored) {
            let revision = if stored.revision > from { STALE } else { stored.revision };
            known.insert(uid.clone(), StoredPod { revision, ..stored.clone() });
        }
    }
    known
}

impl Watcher {
    /// Queues an event for every difference between what the client knows and `pods`.
    fn diff(&mut self, pods: &Pods) {
        let current: BTreeMap<&String, &StoredPod> = pods.by_uid.iter().filter(|(_, s)| self.filter.matches(s)).collect();
        let gone: Vec<String> = self.known.keys().filter(|uid| !current.contains_key(uid)).cloned().collect();
        for uid in gone {
            let last = self.known.remove(&uid).expect("listed above");
            let last = StoredPod { revision: pods.revision, ..last };
            self.push("DELETED", &last);
        }
        for (uid, stored) in current {
            let kind = match self.known.get(uid) {
                None => "ADDED",
                Some(known) if known.revision != stored.revision => "MODIFIED",
                Some(_) => continue,
            };
            self.push(kind, stored);
            self.known.insert(uid.clone(), stored.clone());
        }
    }

    fn push(&mut self, kind: &str, stored: &StoredPod) {
        let object: Value = match self.render {
            Render::Object => with_kind(stored.to_pod()),
            Render::Table(include) => table::pod_table(&[stored.to_pod()], stored.revision, include, SystemTime::now()),
        };
        let mut line = serde_json::to_vec(&json!({"type": kind, "object": object})).expect("JSON always serializes");
        line.push(b'\n');
        self.queue.push_back(line.into());
    }
}
