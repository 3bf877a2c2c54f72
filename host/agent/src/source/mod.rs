//! Manifest sources: where pod manifests come from.
//!
//! Every source implements [`Source`]: the directory ([`file::FileSource`]), the manifest URL
//! ([`http::UrlSource`]) and each source plugin ([`plugin::PluginSource`]). A source knows
//! nothing of pods. It publishes a [`SourceSnapshot`]: the complete current set of raw
//! manifests it holds, each keyed by its place in the source (file path, URL, plugin item id),
//! plus whether it has completed its first full listing. [`start`] runs them side by side and
//! [`merge`]s what they publish; decoding and everything after happen downstream, in
//! [`crate::desired`].

pub mod checkpoint;
pub mod file;
pub mod http;
pub mod plugin;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use staticlet_model::{Origin, SourceKind};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::metrics::{Metrics, SourceHealth};

/// A place pod manifests come from.
#[async_trait]
pub trait Source: Send {
    /// Which source this is. Its name (`file`, `http`, `plugin:<name>`) labels the source's
    /// health metrics, its logs and its checkpoint.
    fn kind(&self) -> SourceKind;

    /// Where a source that lives elsewhere (a URL, a plugin) restores its set from when it
    /// starts: the file [`checkpoint::keep`] keeps in step with what the desired stage accepted
    /// from it. The directory has none: it is its own record.
    fn checkpoint(&self) -> Option<&Path> {
        None
    }

    /// Runs until `shutdown`: publishes on `out` each complete set of manifests that differs
    /// from the one before (marking it ready once the first full listing or poll is done), and
    /// reports every listing or poll to `health`.
    async fn run(self: Box<Self>, out: watch::Sender<SourceSnapshot>, health: SourceHealth, shutdown: CancellationToken);
}

/// One manifest as a source read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawManifest {
    /// Where it came from.
    pub origin: Origin,
    /// Its bytes, unparsed.
    pub bytes: Arc<[u8]>,
}

/// What a source read at one place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Manifests {
    /// One manifest (a file, a plugin's manifest id), its pod going by the place. While it does
    /// not load, the pod last accepted from it keeps running.
    One(RawManifest),
    /// Manifests that stand or fall together, in order, each under a place of its own: a
    /// manifest URL's body (its Pod, or its list's items, as `<url>#<index>`). While one of
    /// them does not load, every pod last accepted from the body keeps running and none of the
    /// others starts.
    List(Vec<(String, RawManifest)>),
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
    /// What the source read at each of its places.
    pub items: BTreeMap<String, Result<Manifests, ReadError>>,
}

/// Runs each source in a task of its own, reporting its health under its name in `metrics`,
/// and [`merge`]s what they publish. The tasks end at `shutdown`.
pub fn start(
    sources: Vec<Box<dyn Source>>,
    metrics: &Metrics,
    shutdown: &CancellationToken,
) -> (Vec<JoinHandle<()>>, watch::Receiver<SourceSnapshot>) {
    let mut tasks = Vec::with_capacity(sources.len());
    let mut inputs = Vec::with_capacity(sources.len());
    for source in sources {
        let (out, input) = watch::channel(SourceSnapshot::default());
        let health = metrics.source(&source.kind().to_string());
        tasks.push(tokio::spawn(source.run(out, health, shutdown.clone())));
        inputs.push(input);
    }
    (tasks, merge(inputs, shutdown.clone()))
}

/// Merges several sources' snapshots into one, republished whenever any changes: every item
/// of every source (their places never collide: paths, the URL, `plugin:<name>#<id>`),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A source that publishes one snapshot and waits for shutdown.
    struct Fixed(SourceKind, SourceSnapshot);

    #[async_trait]
    impl Source for Fixed {
        fn kind(&self) -> SourceKind {
            self.0.clone()
        }

        async fn run(self: Box<Self>, out: watch::Sender<SourceSnapshot>, health: SourceHealth, shutdown: CancellationToken) {
            health.succeeded();
            out.send_replace(self.1);
            shutdown.cancelled().await;
        }
    }

    fn snapshot(ready: bool, kind: SourceKind, place: &str) -> SourceSnapshot {
        let raw = RawManifest { origin: Origin { kind, uri: place.to_owned() }, bytes: b"kind: Pod".as_slice().into() };
        SourceSnapshot { ready, items: [(place.to_owned(), Ok(Manifests::One(raw)))].into() }
    }

    #[tokio::test]
    async fn started_sources_are_merged_and_ready_only_once_every_one_is() {
        let plugin = SourceKind::Plugin("p".into());
        let sources: Vec<Box<dyn Source>> = vec![
            Box::new(Fixed(SourceKind::File, snapshot(true, SourceKind::File, "/m/a.yaml"))),
            Box::new(Fixed(plugin.clone(), snapshot(false, plugin, "plugin:p#a"))),
        ];
        let (metrics, shutdown) = (Metrics::new(), CancellationToken::new());
        let (tasks, mut merged) = start(sources, &metrics, &shutdown);
        let both = merged.wait_for(|s| s.items.len() == 2).await.unwrap().clone();
        assert_eq!(both.items.keys().collect::<Vec<_>>(), ["/m/a.yaml", "plugin:p#a"]);
        assert!(!both.ready, "one source has not finished its first listing");
        let text = metrics.encode(&Default::default(), crate::metrics::Format::OpenMetrics);
        assert!(text.contains("source=\"file\"") && text.contains("source=\"plugin:p\""), "{text}");
        shutdown.cancel();
        futures::future::join_all(tasks).await;
    }
}
