//! Manifest sources: where pod manifests come from.
//!
//! A source knows nothing of pods. It publishes a [`SourceSnapshot`]: the complete current set
//! of raw manifests it holds, each keyed by its place in the source (file path, URL, plugin
//! item id), plus whether it has completed its first full listing. Decoding and everything
//! after happen downstream, in [`crate::desired`].

pub mod checkpoint;
pub mod file;
pub mod http;
pub mod plugin;

use std::collections::BTreeMap;
use std::sync::Arc;

use staticlet_model::Origin;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// One manifest as a source read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawManifest {
    /// Where it came from.
    pub origin: Origin,
    /// Its bytes, unparsed.
    pub bytes: Arc<[u8]>,
}

/// An item the source could not read (too large, unreadable). Downstream keeps the pod last
/// accepted from that place, exactly as for a manifest that does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadError {
    /// Where.
    pub origin: Origin,
    /// What went wrong.
    pub message: String,
}

/// Everything a source holds right now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceSnapshot {
    /// Whether the first complete listing is done. Until every source is ready the agent
    /// removes nothing it finds running.
    pub ready: bool,
    /// Each item by its place in the source.
    pub items: BTreeMap<String, Result<RawManifest, ReadError>>,
}

/// Merges several sources' snapshots into one, republished whenever any changes: every item
/// of every source (their places never collide: paths, `<url>#<index>`, `plugin:<name>#<id>`),
/// ready once every source is.
pub fn merge(mut inputs: Vec<watch::Receiver<SourceSnapshot>>, shutdown: CancellationToken) -> watch::Receiver<SourceSnapshot> {
    let (out, merged) = watch::channel(SourceSnapshot::default());
    tokio::spawn(async move {
        loop {
            let mut snapshot = SourceSnapshot { ready: true, items: BTreeMap::new() };
            for input in &mut inputs {
                let part = input.borrow_and_update();
                snapshot.ready &= part.ready;
                snapshot.items.extend(part.items.iter().map(|(place, item)| (place.clone(), item.clone())));
            }
            out.send_if_modified(|current| {
                let changed = *current != snapshot;
                *current = snapshot;
                changed
            });
            let changes = inputs.iter_mut().map(|input| Box::pin(input.changed()));
            tokio::select! {
                _ = shutdown.cancelled() => return,
                (changed, _, _) = futures::future::select_all(changes) => if changed.is_err() { return },
            }
        }
    });
    merged
}
