//! The desired set: every source's manifests decoded, defaulted, validated and merged.
//!
//! For each place in a source (a file, say) the stage keeps the pod *last accepted* from it: a
//! manifest that stops parsing or validating is reported and its pod keeps running (**better**
//! than the kubelet, which kills it at the next re-list); an item that disappears removes its
//! pod. Two places that declare the same namespace/name are a conflict: the first by source
//! precedence, then by place (file name order), wins, always, and the other is reported.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use staticlet_model::identity::CONFIG_SEEN;
use staticlet_model::{NodeContext, SourceKind, StaticPod};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::source::{RawManifest, SourceSnapshot};

/// The pods the agent should be running.
#[derive(Debug, Clone, Default)]
pub struct DesiredSet {
    /// Every source has completed its first listing: pods not in the set may be removed.
    pub ready: bool,
    /// The pods, by UID.
    pub pods: BTreeMap<String, Arc<StaticPod>>,
}

/// What was last accepted from one place in a source.
struct Accepted {
    /// The bytes last processed from this place, accepted or not, so unchanged items are not
    /// decoded again on every re-list.
    last_bytes: Option<Arc<[u8]>>,
    /// The pod last accepted, if any ever was.
    pod: Option<Arc<StaticPod>>,
}

/// Turns source snapshots into the desired set.
pub struct DesiredState {
    node: NodeContext,
    accepted: BTreeMap<String, Accepted>,
    conflicts: HashMap<String, String>,
}

impl DesiredState {
    /// A stage for pods bound to `node`.
    pub fn new(node: NodeContext) -> Self {
        DesiredState { node, accepted: BTreeMap::new(), conflicts: HashMap::new() }
    }

    /// Folds in a source's snapshot and returns the merged set.
    pub fn update(&mut self, snapshot: &SourceSnapshot) -> DesiredSet {
        self.accepted.retain(|place, _| snapshot.items.contains_key(place));
        for (place, item) in &snapshot.items {
            let entry = self.accepted.entry(place.clone()).or_insert(Accepted { last_bytes: None, pod: None });
            match item {
                Ok(raw) => {
                    if entry.last_bytes.as_ref() == Some(&raw.bytes) {
                        continue;
                    }
                    entry.last_bytes = Some(raw.bytes.clone());
                    if let Some(pod) = load(&self.node, raw, entry.pod.as_deref()) {
                        entry.pod = Some(Arc::new(pod));
                    }
                }
                Err(read_error) => {
                    entry.last_bytes = None;
                    error!(source = %read_error.origin.kind, manifest = %read_error.origin.uri, error = %read_error.message, kept_running = entry.pod.is_some(), "cannot read manifest");
                }
            }
        }
        self.merge(snapshot.ready)
    }

    fn merge(&mut self, ready: bool) -> DesiredSet {
        // Precedence: file, then http, then plugins by name; within a source, by place.
        let mut candidates: Vec<(&String, &Arc<StaticPod>)> =
            self.accepted.iter().filter_map(|(place, a)| a.pod.as_ref().map(|p| (place, p))).collect();
        candidates.sort_by(|(pa, a), (pb, b)| source_rank(&a.origin.kind).cmp(&source_rank(&b.origin.kind)).then(pa.cmp(pb)));

        let mut winners: HashMap<String, &String> = HashMap::new();
        let mut pods = BTreeMap::new();
        let mut conflicts = HashMap::new();
        for (place, pod) in candidates {
            let name = pod.full_name();
            match winners.get(&name) {
                Some(winner) => {
                    conflicts.insert(place.clone(), (*winner).clone());
                }
                None => {
                    winners.insert(name, place);
                    pods.insert(pod.uid.clone(), pod.clone());
                }
            }
        }
        for (loser, winner) in &conflicts {
            if self.conflicts.get(loser) != Some(winner) {
                error!(manifest = %loser, winner = %winner, "conflict: another manifest already declares this namespace/name; this one is ignored until the conflict is resolved");
            }
        }
        self.conflicts = conflicts;
        DesiredSet { ready, pods }
    }
}

/// Loads one manifest; on failure reports it and returns `None` (the caller keeps the pod last
/// accepted).
fn load(node: &NodeContext, raw: &RawManifest, previous: Option<&StaticPod>) -> Option<StaticPod> {
    let origin = &raw.origin;
    match staticlet_model::load(&raw.bytes, origin, node) {
        Ok(loaded) => {
            for warning in &loaded.warnings {
                warn!(source = %origin.kind, manifest = %origin.uri, "{warning}");
            }
            let mut pod = loaded.pod;
            // `config.seen` is when this version was first seen: an unchanged hash keeps it.
            let seen = previous
                .filter(|p| p.config_hash == pod.config_hash)
                .and_then(|p| p.pod.metadata.annotations.as_ref()?.get(CONFIG_SEEN).cloned())
                .unwrap_or_else(|| OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_default());
            pod.pod.metadata.annotations.get_or_insert_with(Default::default).insert(CONFIG_SEEN.to_owned(), seen);
            if previous.is_none_or(|p| p.config_hash != pod.config_hash) {
                info!(source = %origin.kind, manifest = %origin.uri, pod = %pod.full_name(), uid = %pod.uid, hash = %pod.config_hash, "accepted pod");
            }
            Some(pod)
        }
        Err(e) => {
            let kept = previous.map(StaticPod::full_name);
            error!(source = %origin.kind, manifest = %origin.uri, kept_running = ?kept, "{}: {e}", origin.uri);
            None
        }
    }
}

fn source_rank(kind: &SourceKind) -> (u8, &str) {
    match kind {
        SourceKind::File => (0, ""),
        SourceKind::Http => (1, ""),
        SourceKind::Plugin(name) => (2, name),
    }
}

/// Runs the stage until `shutdown`: every new snapshot from `input` produces a new set on `out`.
pub async fn run(
    mut stage: DesiredState,
    mut input: watch::Receiver<SourceSnapshot>,
    out: watch::Sender<Arc<DesiredSet>>,
    shutdown: CancellationToken,
) {
    loop {
        let snapshot = input.borrow_and_update().clone();
        let set = stage.update(&snapshot);
        out.send_if_modified(|current| {
            let changed = current.ready != set.ready
                || current.pods.len() != set.pods.len()
                || current.pods.iter().zip(&set.pods).any(|((ka, a), (kb, b))| ka != kb || !Arc::ptr_eq(a, b));
            if changed {
                *current = Arc::new(set);
            }
            changed
        });
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = input.changed() => if changed.is_err() { return },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::ReadError;
    use staticlet_model::Origin;

    fn raw(path: &str, text: &str) -> (String, Result<RawManifest, ReadError>) {
        let origin = Origin { kind: SourceKind::File, uri: path.to_owned() };
        (path.to_owned(), Ok(RawManifest { origin, bytes: text.as_bytes().into() }))
    }

    fn pod(name: &str, image: &str) -> String {
        format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  containers:\n  - name: c\n    image: {image}\n")
    }

    fn stage() -> DesiredState {
        DesiredState::new(NodeContext { node_name: "n1".into() })
    }

    #[test]
    fn a_broken_edit_keeps_the_last_accepted_pod() {
        let mut stage = stage();
        let good = SourceSnapshot { ready: true, items: [raw("/m/a.yaml", &pod("a", "i:1"))].into() };
        let set = stage.update(&good);
        let uid = set.pods.keys().next().unwrap().clone();
        let broken = SourceSnapshot { ready: true, items: [raw("/m/a.yaml", "apiVersion: v1\nkind: Pod\nmetadata: [\n")].into() };
        let set = stage.update(&broken);
        assert_eq!(set.pods.keys().collect::<Vec<_>>(), vec![&uid]);
        let gone = SourceSnapshot { ready: true, items: BTreeMap::new() };
        assert!(stage.update(&gone).pods.is_empty());
    }

    #[test]
    fn a_file_that_never_parsed_starts_nothing() {
        let mut stage = stage();
        let snapshot = SourceSnapshot { ready: true, items: [raw("/m/a.yaml", "kind: Deployment\n")].into() };
        assert!(stage.update(&snapshot).pods.is_empty());
    }

    #[test]
    fn duplicates_resolve_to_the_first_file_always() {
        let mut stage = stage();
        let snapshot =
            SourceSnapshot { ready: true, items: [raw("/m/b.yaml", &pod("web", "i:2")), raw("/m/a.yaml", &pod("web", "i:1"))].into() };
        for _ in 0..3 {
            let set = stage.update(&snapshot);
            assert_eq!(set.pods.len(), 1);
            let winner = set.pods.values().next().unwrap();
            assert_eq!(winner.origin.uri, "/m/a.yaml");
        }
    }

    #[test]
    fn seen_time_survives_an_unchanged_reload() {
        let mut stage = stage();
        let first = stage.update(&SourceSnapshot { ready: true, items: [raw("/m/a.yaml", &pod("a", "i:1"))].into() });
        let seen = |set: &DesiredSet| set.pods.values().next().unwrap().pod.metadata.annotations.as_ref().unwrap()[CONFIG_SEEN].clone();
        let reformatted = pod("a", "i:1").replace("kind: Pod\n", "kind: Pod   # comment\n");
        let second = stage.update(&SourceSnapshot { ready: true, items: [raw("/m/a.yaml", &reformatted)].into() });
        assert_eq!(seen(&first), seen(&second));
    }
}
