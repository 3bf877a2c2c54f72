//! The last good set of a source that lives elsewhere (a manifest URL, a source plugin), kept
//! under `--root-dir` so that an agent restarted while that server is down runs the same pods.
//!
//! Plain JSON files replaced by rename (`state::write_atomic`): one small document per source,
//! rewritten only when the set changes, read once at start. An embedded database would add a
//! dependency, a file format and a recovery story for what is one key per source.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use staticlet_model::{Origin, SourceKind};
use tokio::sync::watch;
use tracing::warn;

use super::{Manifests, RawManifest, SourceSnapshot};
use crate::metrics::SourceHealth;
use crate::state::{read_json, write_json};

/// The checkpoint format's version; a file of another version is ignored.
const VERSION: u32 = 1;

/// One manifest of the last good set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    /// Its place in the source (`<url>#<index>`, `plugin:<name>#<id>`).
    pub place: String,
    /// Its origin's URI (the URL, the plugin's manifest id).
    pub uri: String,
    /// The manifest.
    pub content: String,
}

/// A source's last good set, and what a conditional request needs to ask whether it changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Checkpoint {
    version: u32,
    /// The manifests.
    pub items: Vec<Item>,
    /// The body's `ETag`, for `If-None-Match`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// The body's `Last-Modified`, for `If-Modified-Since`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
}

impl Checkpoint {
    /// A checkpoint of `items`.
    pub fn new(items: Vec<Item>, etag: Option<String>, last_modified: Option<String>) -> Checkpoint {
        Checkpoint { version: VERSION, items, etag, last_modified }
    }

    /// The checkpoint at `path`, if there is a readable one; a damaged file or one of another
    /// version is reported and ignored (the source then starts from its first successful poll).
    pub fn load(path: &Path) -> Option<Checkpoint> {
        match read_json::<Checkpoint>(path) {
            Ok(Some(checkpoint)) if checkpoint.version == VERSION => Some(checkpoint),
            Ok(Some(checkpoint)) => {
                warn!(checkpoint = %path.display(), version = checkpoint.version, "ignoring a checkpoint of another version");
                None
            }
            Ok(None) => None,
            Err(e) => {
                warn!("ignoring the source's checkpoint: {e}");
                None
            }
        }
    }

    /// The set as a ready snapshot of the source `kind`, as that source publishes it: a
    /// manifest URL's items are one body under the URL (they stand or fall together), a
    /// plugin's are one manifest each.
    pub fn snapshot(&self, kind: &SourceKind) -> SourceSnapshot {
        let raw = |item: &Item| {
            let origin = Origin { kind: kind.clone(), uri: item.uri.clone() };
            (item.place.clone(), RawManifest { origin, bytes: item.content.as_bytes().into() })
        };
        let items = match (kind, self.items.first()) {
            (SourceKind::Http, Some(first)) => [(first.uri.clone(), Ok(Manifests::List(self.items.iter().map(raw).collect())))].into(),
            _ => self.items.iter().map(raw).map(|(place, raw)| (place, Ok(Manifests::One(raw)))).collect(),
        };
        SourceSnapshot { ready: true, items }
    }

    /// Writes the checkpoint to `path` atomically; a failure is reported, never fatal.
    pub fn save(&self, path: &Path) {
        if let Err(e) = write_json(path, self) {
            warn!("cannot write the source's checkpoint; a restart while the source is down would start without its pods: {e}");
        }
    }
}

/// The last good set of a source that polls elsewhere: restored from its checkpoint at start,
/// published downstream, replaced (and checkpointed) by each successful poll, kept through
/// failed ones. Every poll's outcome goes to the source's health metrics.
pub struct LastGood {
    path: PathBuf,
    kind: SourceKind,
    out: watch::Sender<SourceSnapshot>,
    health: SourceHealth,
    current: Option<Checkpoint>,
}

impl LastGood {
    /// Loads the checkpoint at `path` and, if there is one, publishes its set at once.
    pub fn restore(path: PathBuf, kind: SourceKind, out: watch::Sender<SourceSnapshot>, health: SourceHealth) -> LastGood {
        let current = Checkpoint::load(&path);
        if let Some(checkpoint) = &current {
            out.send_replace(checkpoint.snapshot(&kind));
        }
        LastGood { path, kind, out, health, current }
    }

    /// The set in force, if any.
    pub fn current(&self) -> Option<&Checkpoint> {
        self.current.as_ref()
    }

    /// Where the set is checkpointed.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A successful poll that found nothing new.
    pub fn unchanged(&self) {
        self.health.succeeded();
        self.mark_ready();
    }

    /// A successful poll's set: checkpointed when it differs from the one in force, published
    /// when its manifests do. Whether the manifests changed.
    pub fn replace(&mut self, checkpoint: Checkpoint) -> bool {
        self.health.succeeded();
        let items_changed = self.current.as_ref().is_none_or(|current| current.items != checkpoint.items);
        if self.current.as_ref() != Some(&checkpoint) {
            checkpoint.save(&self.path);
        }
        if items_changed {
            self.out.send_replace(checkpoint.snapshot(&self.kind));
        } else {
            self.mark_ready();
        }
        self.current = Some(checkpoint);
        items_changed
    }

    /// A failed poll: counted, and the set in force stays. How many manifests it holds.
    pub fn failed(&self) -> usize {
        self.health.failed();
        // The first attempt decides readiness either way, so that a source down at first start
        // does not hold up the others; the checkpoint is what keeps a restart from losing its
        // pods.
        self.mark_ready();
        self.current.as_ref().map_or(0, |current| current.items.len())
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
        let checkpoint = Checkpoint::new(vec![item], Some("\"v1\"".into()), None);
        checkpoint.save(&path);
        assert_eq!(Checkpoint::load(&path), Some(checkpoint));
        std::fs::write(&path, b"{ not json").unwrap();
        assert_eq!(Checkpoint::load(&path), None);
        assert_eq!(Checkpoint::load(&dir.path().join("missing.json")), None);
    }
}
