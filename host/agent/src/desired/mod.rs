//! The desired set: every source's manifests decoded, defaulted, validated, merged and admitted.
//!
//! For each place in a source (a file, say) the stage keeps the pod *last accepted* from it: a
//! manifest that stops parsing or validating is reported and its pod keeps running (**better**
//! than the kubelet, which kills it at the next re-list); an item that disappears removes its
//! pod. The manifests of a [`List`](Manifests::List) (a manifest URL's body) stand or fall
//! together: one that does not load keeps every pod last accepted from the body, as spec §3
//! has it. Each version of a manifest is loaded (decoded, defaulted, validated) once, here and
//! nowhere else. Two places that declare the same namespace/name (or the same explicit
//! `metadata.uid`) are a conflict: the first by source precedence, then by place (file name
//! order), wins, always, and the other is reported.
//!
//! The winners go through the admission [`Chain`]; a rejected pod is not run and is reported
//! with every violation. A decision is kept per pod version (UID and config hash: an edited
//! manifest is judged at once) until the validators' generation changes, when every pod is
//! judged again. A pod version that was admitted keeps running if a validator merely *fails* on
//! it afterwards (a deadline, a trap): only a verdict stops a running pod, never a broken plugin.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use serde_json::Value;
use staticlet_model::identity::CONFIG_SEEN;
use staticlet_model::{LoadError, Loaded, NodeContext, Origin, SourceKind, StaticPod};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::admission::{Chain, Decision};
use crate::events::Recorder;
use crate::metrics::Metrics;
use crate::source::{Manifests, RawManifest, SourceSnapshot};

/// The pods the agent should be running.
#[derive(Debug, Clone, Default)]
pub struct DesiredSet {
    /// Every source has completed its first listing: pods not in the set may be removed.
    pub ready: bool,
    /// The pods to run, by UID.
    pub pods: BTreeMap<String, Arc<StaticPod>>,
    /// The pods admission rejected, by UID: not run, reported with their reasons.
    pub rejected: BTreeMap<String, RejectedPod>,
}

/// A pod the admission chain turned down.
#[derive(Debug, Clone, PartialEq)]
pub struct RejectedPod {
    /// The pod as it would have run.
    pub pod: Arc<StaticPod>,
    /// Why not.
    pub decision: Arc<Decision>,
}

impl DesiredSet {
    /// Whether `other` holds the very same pods and decisions.
    fn same_as(&self, other: &DesiredSet) -> bool {
        self.ready == other.ready
            && self.pods.len() == other.pods.len()
            && self.pods.iter().zip(&other.pods).all(|((ka, a), (kb, b))| ka == kb && Arc::ptr_eq(a, b))
            && self.rejected.len() == other.rejected.len()
            && self
                .rejected
                .iter()
                .zip(&other.rejected)
                .all(|((ka, a), (kb, b))| ka == kb && Arc::ptr_eq(&a.pod, &b.pod) && Arc::ptr_eq(&a.decision, &b.decision))
    }
}

/// The chain's last decision on one pod, the pod version it judged and the validators'
/// generation it was made under.
struct Judged {
    generation: u64,
    config_hash: String,
    decision: Arc<Decision>,
}

/// A pod under the place in its source it came from.
type Placed = (String, Arc<StaticPod>);

/// What was last accepted from one place in a source.
#[derive(Default)]
struct Accepted {
    /// What was last processed from this place, accepted or not, so unchanged items are not
    /// decoded again on every re-list.
    last: Option<Manifests>,
    /// The pods last accepted, each under its own place (the place itself, or a list item's);
    /// none if nothing ever was.
    pods: Vec<Placed>,
    /// What they were loaded from.
    from: Option<Manifests>,
}

/// Turns source snapshots into the desired set.
pub struct DesiredState {
    node: NodeContext,
    chain: Arc<Chain>,
    accepted: BTreeMap<String, Accepted>,
    conflicts: HashMap<String, String>,
    judged: HashMap<String, Judged>,
    events: Recorder,
    metrics: Metrics,
}

impl DesiredState {
    /// A stage for pods bound to `node`, admitted by `chain`.
    pub fn new(node: NodeContext, chain: Arc<Chain>) -> Self {
        DesiredState {
            node,
            chain,
            accepted: BTreeMap::new(),
            conflicts: HashMap::new(),
            judged: HashMap::new(),
            events: Recorder::default(),
            metrics: Metrics::default(),
        }
    }

    /// Rejections go to `events` (the pod's `Rejected` event) and `metrics` (by validator).
    pub fn reporting_to(self, events: Recorder, metrics: Metrics) -> Self {
        DesiredState { events, metrics, ..self }
    }

    /// Folds in a source's snapshot and returns the merged, admitted set; `generation` is the
    /// validators' current generation.
    pub async fn update(&mut self, snapshot: &SourceSnapshot, generation: u64) -> DesiredSet {
        self.load(snapshot);
        let (ready, winners) = self.merge(snapshot.ready);
        self.admit(ready, winners, generation).await
    }

    fn load(&mut self, snapshot: &SourceSnapshot) {
        self.accepted.retain(|place, _| snapshot.items.contains_key(place));
        for (place, item) in &snapshot.items {
            let entry = self.accepted.entry(place.clone()).or_default();
            match item {
                Ok(manifests) => {
                    if entry.last.as_ref() == Some(manifests) {
                        continue;
                    }
                    entry.last = Some(manifests.clone());
                    match load_place(&self.node, place, manifests, &entry.pods) {
                        Ok(pods) => (entry.pods, entry.from) = (pods, Some(manifests.clone())),
                        Err((origin, message)) => {
                            let kept = (!entry.pods.is_empty()).then(|| names(&entry.pods));
                            error!(source = %origin.kind, manifest = %origin.uri, kept_running = ?kept, "{}: {message}", origin.uri);
                        }
                    }
                }
                Err(read_error) => {
                    entry.last = None;
                    error!(source = %read_error.origin.kind, manifest = %read_error.origin.uri, error = %read_error.message, kept_running = !entry.pods.is_empty(), "cannot read manifest");
                }
            }
        }
    }

    /// The manifests the pods in force were loaded from, by place: what a source's checkpoint
    /// keeps ([`crate::source::checkpoint::keep`]). A place whose manifests stopped loading
    /// holds those last accepted from it.
    pub fn accepted(&self, ready: bool) -> SourceSnapshot {
        let items = self.accepted.iter().filter_map(|(place, a)| Some((place.clone(), Ok(a.from.clone()?))));
        SourceSnapshot { ready, items: items.collect() }
    }

    fn merge(&mut self, ready: bool) -> (bool, BTreeMap<String, Arc<StaticPod>>) {
        // Precedence: file, then http, then plugins by name; within a source, by place.
        let mut candidates: Vec<(&String, &Arc<StaticPod>)> =
            self.accepted.values().flat_map(|a| a.pods.iter().map(|(place, pod)| (place, pod))).collect();
        candidates.sort_by(|(pa, a), (pb, b)| source_rank(&a.origin.kind).cmp(&source_rank(&b.origin.kind)).then(pa.cmp(pb)));

        // A pod is one namespace/name and one UID: a place that repeats either loses to the
        // place that declared it first (two files with the same explicit `metadata.uid` would
        // otherwise fight over one worker).
        let mut by_name: HashMap<String, &String> = HashMap::new();
        let mut pods: BTreeMap<String, Arc<StaticPod>> = BTreeMap::new();
        let mut by_uid: HashMap<&str, &String> = HashMap::new();
        let mut conflicts = HashMap::new();
        for (place, pod) in candidates {
            let name = pod.full_name();
            let clash = match (by_name.get(&name), by_uid.get(pod.uid.as_str())) {
                (Some(winner), _) => Some((*winner, "namespace/name")),
                (None, Some(winner)) => Some((*winner, "metadata.uid")),
                (None, None) => None,
            };
            match clash {
                Some((winner, what)) => {
                    conflicts.insert(place.clone(), ((*winner).clone(), what));
                }
                None => {
                    by_name.insert(name, place);
                    by_uid.insert(&pod.uid, place);
                    pods.insert(pod.uid.clone(), pod.clone());
                }
            }
        }
        for (loser, (winner, what)) in &conflicts {
            if self.conflicts.get(loser) != Some(winner) {
                error!(manifest = %loser, winner = %winner, "conflict: another manifest already declares this {what}; this one is ignored until the conflict is resolved");
            }
        }
        let conflicts = conflicts.into_iter().map(|(loser, (winner, _))| (loser, winner)).collect();
        self.conflicts = conflicts;
        (ready, pods)
    }

    /// Splits the winners into admitted and rejected pods.
    async fn admit(&mut self, ready: bool, winners: BTreeMap<String, Arc<StaticPod>>, generation: u64) -> DesiredSet {
        let mut set = DesiredSet { ready, ..DesiredSet::default() };
        let mut judged = HashMap::with_capacity(winners.len());
        for (uid, pod) in winners {
            let previous = self.judged.remove(&uid).filter(|p| p.config_hash == pod.config_hash);
            let decision = match previous {
                Some(previous) if previous.generation == generation => previous.decision,
                previous => {
                    let fresh = self.chain.admit(&pod, &self.node.node_name).await;
                    self.settle(&pod, previous.map(|p| p.decision), fresh)
                }
            };
            judged.insert(uid.clone(), Judged { generation, config_hash: pod.config_hash.clone(), decision: decision.clone() });
            if decision.admitted() {
                set.pods.insert(uid, pod);
            } else {
                set.rejected.insert(uid, RejectedPod { pod, decision });
            }
        }
        self.judged = judged;
        set
    }

    /// The decision to act on, given the one before (if this version of the pod was judged
    /// already) and a fresh one; reports what changed.
    fn settle(&self, pod: &StaticPod, before: Option<Arc<Decision>>, fresh: Decision) -> Arc<Decision> {
        let name = pod.full_name();
        let manifest = &pod.origin.uri;
        if let Some(before) = before {
            if before.admitted() && !fresh.admitted() && fresh.violations.is_empty() {
                error!(pod = %name, manifest = %manifest, "{}; the pod was admitted before and keeps running", fresh.message());
                return before;
            }
            if *before == fresh {
                return before;
            }
        }
        for warning in &fresh.warnings {
            warn!(pod = %name, manifest = %manifest, "admission warning: {warning}");
        }
        if fresh.admitted() {
            info!(pod = %name, manifest = %manifest, "admitted");
        } else {
            let validators: BTreeSet<&str> = fresh.violations.iter().chain(&fresh.failures).map(|r| r.validator.as_str()).collect();
            for validator in validators {
                self.metrics.rejected_by(validator);
            }
            self.events.for_pod(pod).warning(None, "Rejected", format!("pod rejected (manifest {manifest}): {}", fresh.message()));
        }
        Arc::new(fresh)
    }
}

/// The pods of one place, each under its own place, every manifest loaded once; a list's
/// manifests stand or fall together. `before` holds the pods last accepted from the place.
///
/// # Errors
///
/// The first manifest that does not load: its origin and why, in words.
fn load_place(node: &NodeContext, place: &str, manifests: &Manifests, before: &[Placed]) -> Result<Vec<Placed>, (Origin, String)> {
    let items: Vec<(&str, &RawManifest)> = match manifests {
        Manifests::One(raw) => vec![(place, raw)],
        Manifests::List(items) => items.iter().map(|(place, raw)| (place.as_str(), raw)).collect(),
    };
    let mut loaded = Vec::with_capacity(items.len());
    for (index, (_, raw)) in items.iter().enumerate() {
        match staticlet_model::load(&raw.bytes, &raw.origin, node) {
            Ok(pod) => loaded.push(pod),
            Err(e) => return Err((raw.origin.clone(), rejection(manifests, index, raw, &e))),
        }
    }
    let accepted = items.into_iter().zip(loaded).map(|((place, raw), loaded)| {
        let previous = before.iter().find(|(before, _)| before == place).map(|(_, pod)| &**pod);
        (place.to_owned(), Arc::new(accept(raw, loaded, previous)))
    });
    Ok(accepted.collect())
}

/// Why a place's manifests are not accepted: the error, and for a list the item at fault, by
/// index and name, since a list's items are read from one body.
fn rejection(manifests: &Manifests, index: usize, raw: &RawManifest, error: &LoadError) -> String {
    match manifests {
        Manifests::One(_) => error.to_string(),
        Manifests::List(_) => {
            // An item that does not decode may still name itself; list items are JSON.
            let item: Value = serde_json::from_slice(&raw.bytes).unwrap_or(Value::Null);
            let name = item["metadata"]["name"].as_str().unwrap_or("<unnamed>");
            format!("items[{index}] ({name}): {error}; the whole body is rejected")
        }
    }
}

/// A loaded manifest's pod, its warnings reported; `config.seen` is kept from `previous` when
/// the pod did not change.
fn accept(raw: &RawManifest, loaded: Loaded, previous: Option<&StaticPod>) -> StaticPod {
    let origin = &raw.origin;
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
    pod
}

/// The pods' namespace/names, for messages.
fn names(pods: &[Placed]) -> String {
    pods.iter().map(|(_, pod)| pod.full_name()).collect::<Vec<_>>().join(", ")
}

fn source_rank(kind: &SourceKind) -> (u8, &str) {
    match kind {
        SourceKind::File => (0, ""),
        SourceKind::Http => (1, ""),
        SourceKind::Plugin(name) => (2, name),
    }
}

/// Runs the stage until `shutdown`: every new snapshot from `input`, and every new generation
/// of the validators, produces a new set on `out`, and the manifests it was loaded from on
/// `accepted` ([`DesiredState::accepted`]).
pub async fn run(
    mut stage: DesiredState,
    mut input: watch::Receiver<SourceSnapshot>,
    mut validators: watch::Receiver<u64>,
    out: watch::Sender<Arc<DesiredSet>>,
    accepted: watch::Sender<SourceSnapshot>,
    shutdown: CancellationToken,
) {
    loop {
        let snapshot = input.borrow_and_update().clone();
        let generation = *validators.borrow_and_update();
        // Where the sources' part of a pod's way ends, for timing it from the log (the
        // start-latency benchmarks do); decoding and admission log their own lines after it.
        debug!(items = snapshot.items.len(), ready = snapshot.ready, "source snapshot received");
        let set = stage.update(&snapshot, generation).await;
        out.send_if_modified(|current| {
            let changed = !current.same_as(&set);
            if changed {
                *current = Arc::new(set);
            }
            changed
        });
        let manifests = stage.accepted(snapshot.ready);
        accepted.send_if_modified(|current| {
            let changed = *current != manifests;
            *current = manifests;
            changed
        });
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = input.changed() => if changed.is_err() { return },
            changed = validators.changed() => if changed.is_err() { return },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::ReadError;

    fn raw(path: &str, text: &str) -> (String, Result<Manifests, ReadError>) {
        let origin = Origin { kind: SourceKind::File, uri: path.to_owned() };
        (path.to_owned(), Ok(Manifests::One(RawManifest { origin, bytes: text.as_bytes().into() })))
    }

    fn pod(name: &str, image: &str) -> String {
        format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  containers:\n  - name: c\n    image: {image}\n")
    }

    #[tokio::test]
    async fn a_name_declared_by_several_sources_goes_by_precedence_and_never_flaps() {
        let mut stage = stage();
        let item = |kind: SourceKind, place: &str, image: &str| {
            let origin = Origin { kind, uri: place.to_owned() };
            (place.to_owned(), Ok(Manifests::One(RawManifest { origin, bytes: pod("web", image).as_bytes().into() })))
        };
        let mut items: BTreeMap<_, _> = [
            item(SourceKind::Plugin("b".into()), "plugin:b#web", "i:plugin-b"),
            item(SourceKind::Plugin("a".into()), "plugin:a#web", "i:plugin-a"),
            item(SourceKind::Http, "http://h/pods#0", "i:url"),
            raw("/m/web.yaml", &pod("web", "i:file")),
        ]
        .into();
        // The directory, then the URL, then plugins by name; each winner holds on every update.
        for winner in ["/m/web.yaml", "http://h/pods#0", "plugin:a#web", "plugin:b#web"] {
            for _ in 0..3 {
                let set = stage.update(&SourceSnapshot { ready: true, items: items.clone() }, 0).await;
                assert_eq!(set.pods.len(), 1);
                let pod = set.pods.values().next().unwrap();
                let Ok(Manifests::One(manifest)) = &items[winner] else { panic!("one manifest") };
                assert_eq!(pod.origin, manifest.origin, "{winner} should win");
            }
            items.remove(winner);
        }
    }

    fn stage() -> DesiredState {
        DesiredState::new(NodeContext { node_name: "n1".into() }, Arc::default())
    }

    #[tokio::test]
    async fn a_broken_edit_keeps_the_last_accepted_pod() {
        let mut stage = stage();
        let good = SourceSnapshot { ready: true, items: [raw("/m/a.yaml", &pod("a", "i:1"))].into() };
        let set = stage.update(&good, 0).await;
        let uid = set.pods.keys().next().unwrap().clone();
        let broken = SourceSnapshot { ready: true, items: [raw("/m/a.yaml", "apiVersion: v1\nkind: Pod\nmetadata: [\n")].into() };
        let set = stage.update(&broken, 0).await;
        assert_eq!(set.pods.keys().collect::<Vec<_>>(), vec![&uid]);
        let gone = SourceSnapshot { ready: true, items: BTreeMap::new() };
        assert!(stage.update(&gone, 0).await.pods.is_empty());
    }

    /// A manifest URL's body as the URL source publishes it: split, each item at `<url>#<i>`.
    fn body(url: &str, text: &str) -> (String, Result<Manifests, ReadError>) {
        let origin = Origin { kind: SourceKind::Http, uri: url.to_owned() };
        let items = staticlet_model::list::split(text.as_bytes()).unwrap().into_iter().enumerate();
        let items = items.map(|(i, item)| (format!("{url}#{i}"), RawManifest { origin: origin.clone(), bytes: item.as_bytes().into() }));
        (url.to_owned(), Ok(Manifests::List(items.collect())))
    }

    fn pod_list(pods: &[(&str, &str)]) -> String {
        let items: String = pods
            .iter()
            .map(|(name, image)| format!("- metadata: {{name: {name}}}\n  spec: {{containers: [{{name: c, image: {image}}}]}}\n"))
            .collect();
        format!("kind: PodList\napiVersion: v1\nitems:\n{items}")
    }

    #[test]
    fn one_bad_item_rejects_the_whole_body_naming_the_item() {
        let node = NodeContext { node_name: "n1".into() };
        let list = pod_list(&[("a", "i"), ("b", "i")]);
        let (place, good) = body("http://h/pods", &list);
        let pods = load_place(&node, &place, good.as_ref().unwrap(), &[]).unwrap();
        assert_eq!(pods.iter().map(|(place, _)| place.as_str()).collect::<Vec<_>>(), ["http://h/pods#0", "http://h/pods#1"]);
        assert!(pods.iter().all(|(_, pod)| pod.origin == Origin { kind: SourceKind::Http, uri: "http://h/pods".into() }));

        let (place, bad) = body("http://h/pods", &list.replace("{name: b}", "{name: B_}"));
        let (origin, err) = load_place(&node, &place, bad.as_ref().unwrap(), &pods).unwrap_err();
        assert_eq!(origin.uri, "http://h/pods");
        assert!(err.starts_with("items[1] (B_): ") && err.contains("metadata.name"), "{err}");
        assert!(err.ends_with("; the whole body is rejected"), "{err}");
    }

    #[tokio::test]
    async fn a_bad_body_keeps_every_pod_of_the_last_good_one_and_starts_none_of_its_own() {
        let mut stage = stage();
        let names = |set: &DesiredSet| {
            set.pods
                .values()
                .map(|p| (p.name().to_owned(), p.pod.spec.as_ref().unwrap().containers[0].image.clone().unwrap()))
                .collect::<BTreeSet<_>>()
        };
        let snapshot = |text: &str| SourceSnapshot { ready: true, items: [body("http://h/pods", text)].into() };
        let good = stage.update(&snapshot(&pod_list(&[("a", "i:1"), ("b", "i:1"), ("x", "i:1")])), 0).await;
        let expected: BTreeSet<_> = [("a-n1", "i:1"), ("b-n1", "i:1"), ("x-n1", "i:1")].map(|(n, i)| (n.to_owned(), i.to_owned())).into();
        assert_eq!(names(&good), expected);
        // A changed item, a bad one and one gone: the whole body is rejected.
        let bad = stage.update(&snapshot(&pod_list(&[("a", "i:2"), ("B_", "i:1")])), 0).await;
        assert_eq!(names(&bad), expected);
        assert!(good.pods.iter().zip(&bad.pods).all(|((_, before), (_, after))| Arc::ptr_eq(before, after)), "the very same pods");
        let fixed = stage.update(&snapshot(&pod_list(&[("a", "i:2"), ("c", "i:1")])), 0).await;
        assert_eq!(names(&fixed), [("a-n1", "i:2"), ("c-n1", "i:1")].map(|(n, i)| (n.to_owned(), i.to_owned())).into());
        let empty = stage.update(&snapshot("kind: PodList\napiVersion: v1\nitems: []\n"), 0).await;
        assert!(empty.pods.is_empty());
    }

    #[tokio::test]
    async fn what_a_checkpoint_keeps_is_what_was_last_accepted() {
        let mut stage = stage();
        let (url, good) = body("http://h/pods", &pod_list(&[("a", "i:1")]));
        let never = raw("/m/x.yaml", "kind: Deployment\n");
        stage.update(&SourceSnapshot { ready: true, items: [(url.clone(), good.clone()), never.clone()].into() }, 0).await;
        let accepted = stage.accepted(true);
        assert!(accepted.ready);
        assert_eq!(accepted.items, [(url.clone(), good.clone())].into(), "a manifest that never loaded is not kept");
        let (_, bad) = body("http://h/pods", &pod_list(&[("a", "i:2"), ("B_", "i:1")]));
        stage.update(&SourceSnapshot { ready: true, items: [(url.clone(), bad)].into() }, 0).await;
        assert_eq!(stage.accepted(false).items, [(url, good)].into(), "a rejected body leaves the one accepted before");
        stage.update(&SourceSnapshot { ready: true, items: BTreeMap::new() }, 0).await;
        assert!(stage.accepted(true).items.is_empty());
    }

    #[tokio::test]
    async fn a_file_that_never_parsed_starts_nothing() {
        let mut stage = stage();
        let snapshot = SourceSnapshot { ready: true, items: [raw("/m/a.yaml", "kind: Deployment\n")].into() };
        assert!(stage.update(&snapshot, 0).await.pods.is_empty());
    }

    #[tokio::test]
    async fn duplicates_resolve_to_the_first_file_always() {
        let mut stage = stage();
        let snapshot =
            SourceSnapshot { ready: true, items: [raw("/m/b.yaml", &pod("web", "i:2")), raw("/m/a.yaml", &pod("web", "i:1"))].into() };
        for _ in 0..3 {
            let set = stage.update(&snapshot, 0).await;
            assert_eq!(set.pods.len(), 1);
            let winner = set.pods.values().next().unwrap();
            assert_eq!(winner.origin.uri, "/m/a.yaml");
        }
    }

    #[tokio::test]
    async fn seen_time_survives_an_unchanged_reload() {
        let mut stage = stage();
        let first = stage.update(&SourceSnapshot { ready: true, items: [raw("/m/a.yaml", &pod("a", "i:1"))].into() }, 0).await;
        let seen = |set: &DesiredSet| set.pods.values().next().unwrap().pod.metadata.annotations.as_ref().unwrap()[CONFIG_SEEN].clone();
        let reformatted = pod("a", "i:1").replace("kind: Pod\n", "kind: Pod   # comment\n");
        let second = stage.update(&SourceSnapshot { ready: true, items: [raw("/m/a.yaml", &reformatted)].into() }, 0).await;
        assert_eq!(seen(&first), seen(&second));
    }

    struct Switch(std::sync::Mutex<Result<staticlet_plugin::Verdict, staticlet_plugin::PluginError>>);

    #[async_trait::async_trait]
    impl crate::admission::Validator for Switch {
        fn name(&self) -> &str {
            "switch"
        }
        async fn validate(
            &self,
            _: &staticlet_plugin::PodContext,
            _: &str,
        ) -> Result<staticlet_plugin::Verdict, staticlet_plugin::PluginError> {
            self.0.lock().unwrap().clone()
        }
    }

    #[tokio::test]
    async fn only_a_verdict_stops_a_running_pod_and_a_new_generation_is_judged_again() {
        use crate::config::plugins::FailurePolicy;
        use staticlet_plugin::{PluginError, Verdict, Violation};
        let switch = Arc::new(Switch(std::sync::Mutex::new(Ok(Verdict::default()))));
        let mut chain = Chain::default();
        chain.push(switch.clone(), FailurePolicy::Fail);
        let mut stage = DesiredState::new(NodeContext { node_name: "n1".into() }, Arc::new(chain));
        let snapshot = SourceSnapshot { ready: true, items: [raw("/m/a.yaml", &pod("a", "i:1"))].into() };
        assert_eq!(stage.update(&snapshot, 0).await.pods.len(), 1);

        *switch.0.lock().unwrap() = Err(PluginError::Trap { plugin: "switch".into(), call: "validate", message: "boom".into() });
        let set = stage.update(&snapshot, 1).await;
        assert_eq!((set.pods.len(), set.rejected.len()), (1, 0), "a failing validator does not stop an admitted pod");

        *switch.0.lock().unwrap() =
            Ok(Verdict { violations: vec![Violation { field: "spec.x".into(), message: "no".into() }], warnings: vec![] });
        let unchanged = stage.update(&snapshot, 1).await;
        assert_eq!(unchanged.pods.len(), 1, "the same generation is not judged again");
        let set = stage.update(&snapshot, 2).await;
        assert!(set.pods.is_empty());
        assert_eq!(set.rejected.values().next().unwrap().decision.message(), "spec.x: no");

        // An edited manifest is judged at once, in the same generation.
        *switch.0.lock().unwrap() = Ok(Verdict::default());
        let edited = SourceSnapshot { ready: true, items: [raw("/m/a.yaml", &pod("a", "i:2"))].into() };
        assert_eq!(stage.update(&edited, 2).await.pods.len(), 1);

        // A new pod: under Fail, a failing validator keeps it out.
        *switch.0.lock().unwrap() = Err(PluginError::Trap { plugin: "switch".into(), call: "validate", message: "boom".into() });
        let fresh = SourceSnapshot { ready: true, items: [raw("/m/b.yaml", &pod("b", "i:1"))].into() };
        let set = stage.update(&fresh, 2).await;
        assert!(set.pods.is_empty() && set.rejected.len() == 1);
    }
}
