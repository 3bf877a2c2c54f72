//! The last accepted set of a source that lives elsewhere (a manifest URL, a source plugin),
//! kept under `--root-dir` so that an agent restarted while that server is down, or while it
//! serves manifests that do not load, runs the same pods.
//!
//! Only the desired stage can tell which manifests are good (a URL body with an invalid pod is
//! read, but not accepted), so [`keep`] writes what it last *accepted* from each such source,
//! and the source restores that at its next start ([`LastRead::restore`]). The data still flows
//! one way: source → desired stage → checkpoint file, read once by the source when it starts.
//!
//! The file's format is [`crate::state::checkpoint`]'s, which owns every format under
//! `--root-dir`.

use std::path::{Path, PathBuf};

use staticlet_model::{Origin, SourceKind};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{Manifests, RawManifest, SourceSnapshot};
use crate::metrics::SourceHealth;
use crate::state::checkpoint::{Checkpoint, Item};

/// `items` as a ready snapshot of the source `kind`, as that source publishes them: a manifest
/// URL's items are one body under the URL (they stand or fall together), a plugin's are one
/// manifest each.
pub fn snapshot(kind: &SourceKind, items: &[Item]) -> SourceSnapshot {
    let raw = |item: &Item| {
        let origin = Origin { kind: kind.clone(), uri: item.uri.clone() };
        (item.place.clone(), RawManifest { origin, bytes: item.content.as_bytes().into() })
    };
    let items = match (kind, items.first()) {
        (SourceKind::Http, Some(first)) => [(first.uri.clone(), Ok(Manifests::List(items.iter().map(raw).collect())))].into(),
        _ => items.iter().map(raw).map(|(place, raw)| (place, Ok(Manifests::One(raw)))).collect(),
    };
    SourceSnapshot { ready: true, items }
}

/// The manifests of the source `kind` in `accepted`, as checkpoint items, in order.
fn items_of(accepted: &SourceSnapshot, kind: &SourceKind) -> Vec<Item> {
    let manifests = accepted.items.iter().filter_map(|(place, manifests)| Some((place, manifests.as_ref().ok()?)));
    let placed = manifests.flat_map(|(place, manifests)| match manifests {
        Manifests::One(raw) => vec![(place, raw)],
        Manifests::List(items) => items.iter().map(|(place, raw)| (place, raw)).collect(),
    });
    placed
        .filter(|(_, raw)| raw.origin.kind == *kind)
        // Sources that are checkpointed read text (a plugin's strings, a list split into JSON).
        .map(|(place, raw)| Item {
            place: place.clone(),
            uri: raw.origin.uri.clone(),
            content: String::from_utf8_lossy(&raw.bytes).into_owned(),
        })
        .collect()
}

/// Keeps each source's checkpoint in `checkpoints` (its kind and file) in step with what the
/// desired stage last accepted from it, as `accepted` publishes it, until `shutdown`. Nothing is
/// written before every source is ready: until then a source's restored set may not have been
/// loaded yet.
pub async fn keep(mut accepted: watch::Receiver<SourceSnapshot>, checkpoints: Vec<(SourceKind, PathBuf)>, shutdown: CancellationToken) {
    let mut written: Vec<Option<Vec<Item>>> = vec![None; checkpoints.len()];
    loop {
        {
            let snapshot = accepted.borrow_and_update();
            if snapshot.ready {
                for ((kind, path), written) in checkpoints.iter().zip(&mut written) {
                    let items = items_of(&snapshot, kind);
                    if written.as_ref() != Some(&items) {
                        Checkpoint::new(items.clone()).save(path);
                        *written = Some(items);
                    }
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = accepted.changed() => if changed.is_err() { return },
        }
    }
}

/// The set a source that polls elsewhere last read: restored from its checkpoint at start,
/// published downstream, replaced by each successful poll, kept through failed ones. Every
/// poll's outcome goes to the source's health metrics.
pub struct LastRead {
    path: PathBuf,
    kind: SourceKind,
    out: watch::Sender<SourceSnapshot>,
    health: SourceHealth,
    current: Option<Vec<Item>>,
}

impl LastRead {
    /// Loads the checkpoint at `path` and, if there is one, publishes its set at once.
    pub fn restore(path: PathBuf, kind: SourceKind, out: watch::Sender<SourceSnapshot>, health: SourceHealth) -> LastRead {
        let current = Checkpoint::load(&path).map(|checkpoint| checkpoint.items);
        if let Some(items) = &current {
            out.send_replace(snapshot(&kind, items));
        }
        LastRead { path, kind, out, health, current }
    }

    /// The set in force, if any.
    pub fn current(&self) -> Option<&[Item]> {
        self.current.as_deref()
    }

    /// Where the source's set is checkpointed.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A successful poll that found nothing new.
    pub fn unchanged(&self) {
        self.health.succeeded();
        self.mark_ready();
    }

    /// A successful poll's set, published when it differs from the one in force. Whether it
    /// did.
    pub fn replace(&mut self, items: Vec<Item>) -> bool {
        self.health.succeeded();
        if self.current.as_ref() == Some(&items) {
            self.mark_ready();
            return false;
        }
        self.out.send_replace(snapshot(&self.kind, &items));
        self.current = Some(items);
        true
    }

    /// A failed poll: counted, and the set in force stays. How many manifests it holds.
    pub fn failed(&self) -> usize {
        self.health.failed();
        // The first attempt decides readiness either way, so that a source down at first start
        // does not hold up the others; the checkpoint is what keeps a restart from losing its
        // pods.
        self.mark_ready();
        self.current.as_ref().map_or(0, Vec::len)
    }

    fn mark_ready(&self) {
        self.out.send_if_modified(|current| !std::mem::replace(&mut current.ready, true));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_survives_a_round_trip_and_damage_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoints/http.json");
        let item = Item { place: "http://h/p#0".into(), uri: "http://h/p".into(), content: "{}".into() };
        let checkpoint = Checkpoint::new(vec![item]);
        checkpoint.save(&path);
        assert_eq!(Checkpoint::load(&path), Some(checkpoint));
        std::fs::write(&path, b"{ not json").unwrap();
        assert_eq!(Checkpoint::load(&path), None);
        assert_eq!(Checkpoint::load(&dir.path().join("missing.json")), None);
    }

    #[test]
    fn a_checkpoint_of_the_first_agents_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("http.json");
        let old = r#"{"version": 1, "items": [{"place": "http://h/p#0", "uri": "http://h/p", "content": "{}"}], "etag": "\"v1\""}"#;
        std::fs::write(&path, old).unwrap();
        assert_eq!(Checkpoint::load(&path).unwrap().items.len(), 1);
    }

    fn items(kind: &SourceKind, places: &[(&str, &str)]) -> Vec<Item> {
        let uri = |place: &str| match kind {
            SourceKind::Http => place.split('#').next().unwrap().to_owned(),
            _ => place.rsplit('#').next().unwrap().to_owned(),
        };
        places.iter().map(|(place, content)| Item { place: (*place).into(), uri: uri(place), content: (*content).into() }).collect()
    }

    #[tokio::test]
    async fn what_was_accepted_is_kept_once_every_source_is_ready_and_restored_as_published() {
        let dir = tempfile::tempdir().unwrap();
        let (http, plugin) = (SourceKind::Http, SourceKind::Plugin("p".into()));
        let paths = [dir.path().join("http.json"), dir.path().join("plugin-p.json")];
        let url = items(&http, &[("http://h/p#0", "{\"a\":1}"), ("http://h/p#1", "{\"b\":1}")]);
        let ids = items(&plugin, &[("plugin:p#x", "kind: Pod")]);
        let mut accepted = snapshot(&http, &url);
        accepted.items.extend(snapshot(&plugin, &ids).items);
        let file = RawManifest { origin: Origin { kind: SourceKind::File, uri: "/m/a.yaml".into() }, bytes: b"x".as_slice().into() };
        accepted.items.insert("/m/a.yaml".into(), Ok(Manifests::One(file)));

        let (tx, rx) = watch::channel(SourceSnapshot { ready: false, ..accepted.clone() });
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(keep(rx, vec![(http.clone(), paths[0].clone()), (plugin.clone(), paths[1].clone())], shutdown.clone()));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!paths[0].exists(), "nothing is written before every source is ready");
        tx.send_replace(accepted.clone());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        shutdown.cancel();
        task.await.unwrap();

        assert_eq!(Checkpoint::load(&paths[0]).unwrap().items, url);
        assert_eq!(Checkpoint::load(&paths[1]).unwrap().items, ids);
        let (out, restored) = watch::channel(SourceSnapshot::default());
        LastRead::restore(paths[0].clone(), http.clone(), out, crate::metrics::Metrics::new().source("http"));
        assert_eq!(*restored.borrow(), snapshot(&http, &url), "restored as the URL source publishes it");
    }
}
