//! Source plugins: `manifest-source` components, each polled on the interval its config entry
//! gives, and at once whenever the source says it changed: between polls the agent sits in the
//! plugin's `wait-for-change`, which a source following its backend (the etcd source's watch)
//! answers as soon as it sees a change. A 0.1.0 source cannot say, and is polled at its interval
//! only; a wait that fails leaves the interval in charge until the next one. A poll's list is the full set of that source, each manifest under its stable id (the
//! place `plugin:<name>#<id>`, so a pod keeps its UID across polls); `none` means unchanged.
//! A poll that fails (the plugin's own error, a trap, its deadline, a refused outbound request)
//! is reported and the source's last good set keeps running. What the desired stage last
//! accepted from the plugin is checkpointed under `--root-dir` ([`super::checkpoint`]), as the
//! manifest URL's is, so a restart while the plugin's backend is down runs the same pods.
//!
//! Manifests are not decoded here: each is its own item downstream, like a file, so one bad
//! manifest keeps the pod last accepted from its id without holding up the others.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use staticlet_model::SourceKind;
use staticlet_plugin::{Plugin, PluginEngine};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::checkpoint::LastRead;
use super::{Source, SourceSnapshot};
use crate::config::plugins::SourceConfig;
use crate::metrics::{Metrics, SourceHealth};
use crate::state::checkpoint::Item;

/// The least time between two polls of one source, however often it says it changed.
const MIN_POLL_SPACING: Duration = Duration::from_millis(50);

/// A loaded source plugin, how often to poll it and where its checkpoint is.
pub struct PluginSource {
    plugin: Arc<Plugin>,
    interval: Duration,
    kind: SourceKind,
    checkpoint: PathBuf,
    metrics: Metrics,
}

impl PluginSource {
    /// Loads the plugin; one that fails to load is kept, every poll failing with its load error
    /// until its file is fixed. Its set is restored from `checkpoint` at start, and its calls
    /// are timed in `metrics`.
    pub async fn load(engine: &PluginEngine, config: &SourceConfig, checkpoint: PathBuf, metrics: Metrics) -> PluginSource {
        let plugin = Arc::new(Plugin::load(engine, config.spec.clone()).await);
        PluginSource { plugin, interval: config.interval, kind: SourceKind::Plugin(config.spec.name.clone()), checkpoint, metrics }
    }

    /// The plugin, for listings.
    pub fn plugin(&self) -> &Arc<Plugin> {
        &self.plugin
    }

    /// One poll, timed: the full set as checkpoint items, or `None` when nothing changed.
    async fn poll(&self) -> Result<Option<Vec<Item>>, String> {
        let started = Instant::now();
        let polled = self.plugin.poll().await;
        self.metrics.plugin_called(&self.plugin.spec().name, "poll", started.elapsed(), polled.is_err());
        polled.map_err(|e| e.to_string()).and_then(|list| list.map(|list| self.items(list)).transpose())
    }

    /// Folds one poll's outcome into the set last read, and logs what changed or failed.
    fn settle(&self, polled: Result<Option<Vec<Item>>, String>, last: &mut LastRead) {
        let name = &self.plugin.spec().name;
        match polled {
            Ok(None) => last.unchanged(),
            Ok(Some(items)) => {
                let pods = items.len();
                if last.replace(items) {
                    info!(plugin = %name, pods, "source plugin's manifests changed");
                }
            }
            Err(e) => {
                let kept = last.failed();
                warn!(plugin = %name, kept, "source plugin: {e}; the pods of its last good poll keep running");
            }
        }
    }

    /// Waits until the next poll is due, the source says it changed, or new code of the plugin
    /// was loaded (`reloads` moved on); `false` on shutdown. Leaving mid-wait drops the
    /// plugin's call, which ends it.
    async fn wait_for_next_poll(&self, reloads: &mut watch::Receiver<u64>, shutdown: &CancellationToken) -> bool {
        let polled = tokio::time::Instant::now();
        let due = polled + self.interval;
        tokio::select! {
            _ = shutdown.cancelled() => false,
            () = async {
                self.follow_changes_until(due).await;
                // A source that says "changed" all the time gets polled no more often than this.
                tokio::time::sleep_until(polled + MIN_POLL_SPACING).await;
            } => true,
            changed = reloads.changed() => changed.is_ok(),
        }
    }

    /// Returns when the source says it changed, or at `due`.
    async fn follow_changes_until(&self, due: tokio::time::Instant) {
        let left = due.saturating_duration_since(tokio::time::Instant::now());
        match self.plugin.wait_for_change(left).await {
            Ok(true) => return,
            Ok(false) => {}
            // The source logs its own trouble following its backend (and the next poll fails
            // too if the backend is gone); the interval is in charge until a wait succeeds.
            Err(e) => debug!(plugin = %self.plugin.spec().name, "source plugin cannot follow its changes: {e}; polling at its interval"),
        }
        tokio::time::sleep_until(due).await;
    }

    /// A poll's list as checkpoint items; ids must be unique and not empty.
    fn items(&self, list: Vec<(String, String)>) -> Result<Vec<Item>, String> {
        let mut seen = HashSet::new();
        let mut items = Vec::with_capacity(list.len());
        for (id, content) in list {
            if id.is_empty() {
                return Err("the plugin returned a manifest with an empty id; the whole poll is rejected".to_owned());
            }
            if !seen.insert(id.clone()) {
                return Err(format!("the plugin returned the id {id:?} twice; the whole poll is rejected"));
            }
            items.push(Item { place: format!("{}#{id}", self.kind), uri: id, content });
        }
        items.sort_by(|a, b| a.place.cmp(&b.place));
        Ok(items)
    }
}

#[async_trait]
impl Source for PluginSource {
    fn kind(&self) -> SourceKind {
        self.kind.clone()
    }

    fn checkpoint(&self) -> Option<&Path> {
        Some(&self.checkpoint)
    }

    /// Publishes the checkpointed set at once if there is one, then every successful poll's
    /// set; reloads the plugin when its file changes and polls the new code at once.
    async fn run(self: Box<Self>, out: watch::Sender<SourceSnapshot>, health: SourceHealth, shutdown: CancellationToken) {
        let mut last = LastRead::restore(self.checkpoint.clone(), self.kind.clone(), out, health);
        if let Some(items) = last.current() {
            info!(plugin = %self.plugin.spec().name, pods = items.len(), checkpoint = %last.path().display(), "restored the source plugin's last good pods from the checkpoint");
        }
        let (reloaded, mut reloads) = watch::channel(0);
        let plugins = vec![self.plugin.clone()];
        tokio::spawn(staticlet_plugin::reload::watch(plugins, "polling it now", reloaded, shutdown.clone()));
        loop {
            let polled = self.poll().await;
            self.settle(polled, &mut last);
            if !self.wait_for_next_poll(&mut reloads, &shutdown).await {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use staticlet_plugin::artifacts::FIXTURE_SOURCE;
    use staticlet_plugin::{Code, DirGrant, Kind, PluginSpec};

    use super::*;

    fn ids(snapshot: &SourceSnapshot) -> Vec<String> {
        snapshot.items.keys().cloned().collect()
    }

    async fn next(rx: &mut watch::Receiver<SourceSnapshot>) -> SourceSnapshot {
        tokio::time::timeout(Duration::from_secs(20), rx.changed()).await.expect("a new snapshot in time").unwrap();
        rx.borrow_and_update().clone()
    }

    /// The fixture source serving every file of `<dir>/manifests` (which holds `a`), its
    /// component copied to `<dir>/fixture.wasm`.
    fn fixture(dir: &std::path::Path) -> SourceConfig {
        let (manifests, wasm) = (dir.join("manifests"), dir.join("fixture.wasm"));
        std::fs::create_dir(&manifests).unwrap();
        std::fs::write(manifests.join("a"), "kind: Pod").unwrap();
        std::fs::copy(FIXTURE_SOURCE, &wasm).unwrap();
        let mut spec = PluginSpec::new("fixture", Kind::ManifestSource, Code::File(wasm));
        spec.settings = r#"{"dir": "/m"}"#.into();
        spec.grants.read_only_dirs.push(DirGrant { host_path: manifests, guest_path: "/m".into() });
        SourceConfig { spec, interval: Duration::from_millis(200) }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn polls_follow_the_source_keep_the_last_good_set_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let config = fixture(dir.path());
        let manifests = dir.path().join("manifests");
        let checkpoint = dir.path().join("checkpoints/plugin-fixture.json");
        let engine = PluginEngine::new("n1", None).unwrap();
        let metrics = Metrics::new();

        // The checkpoint keeps what the desired stage accepted; here, standing in for it, all
        // the source publishes.
        let run = |shutdown: CancellationToken| {
            let (tx, rx) = watch::channel(SourceSnapshot::default());
            let (engine, config, checkpoint, metrics) = (engine.clone(), config.clone(), checkpoint.clone(), metrics.clone());
            let keeper = crate::source::checkpoint::keep(
                rx.clone(),
                vec![(SourceKind::Plugin("fixture".into()), checkpoint.clone())],
                shutdown.clone(),
            );
            let task = tokio::spawn(async move {
                let source = Box::new(PluginSource::load(&engine, &config, checkpoint, metrics.clone()).await);
                let health = metrics.source(&source.kind().to_string());
                tokio::join!(source.run(tx, health, shutdown), keeper);
            });
            (rx, task)
        };
        let shutdown = CancellationToken::new();
        let (mut rx, task) = run(shutdown.clone());
        let first = next(&mut rx).await;
        assert!(first.ready);
        assert_eq!(ids(&first), ["plugin:fixture#a"]);
        let Ok(crate::source::Manifests::One(manifest)) = &first.items["plugin:fixture#a"] else { panic!("one manifest") };
        let origin = &manifest.origin;
        assert_eq!((origin.kind.to_string(), origin.uri.as_str()), ("plugin:fixture".to_owned(), "a"));

        std::fs::write(manifests.join("b"), "kind: Pod").unwrap();
        assert_eq!(ids(&next(&mut rx).await), ["plugin:fixture#a", "plugin:fixture#b"]);

        // The plugin fails (a file it cannot read as text is its `unavailable` error): the set
        // stays, the failure is counted.
        std::fs::write(manifests.join("c"), b"\xff\xfe").unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(ids(&rx.borrow()), ["plugin:fixture#a", "plugin:fixture#b"]);
        let text = metrics.encode(&Default::default(), crate::metrics::Format::OpenMetrics);
        let errors = text.lines().find(|l| l.starts_with("staticlet_source_poll_errors_total{source=\"plugin:fixture\"}")).unwrap();
        assert!(!errors.ends_with(" 0"), "{errors}");
        shutdown.cancel();
        task.await.unwrap();

        // A restart while the plugin still fails: the checkpoint serves the last good set.
        let shutdown = CancellationToken::new();
        let (rx, task) = run(shutdown.clone());
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(ids(&rx.borrow()), ["plugin:fixture#a", "plugin:fixture#b"]);
        shutdown.cancel();
        task.await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_replaced_component_is_reloaded_and_polled_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = fixture(dir.path());
        let (manifests, wasm) = (dir.path().join("manifests"), dir.path().join("fixture.wasm"));
        // Long enough, and the fixture not following its directory, so that only a reload can
        // explain a second poll within the test.
        config.interval = Duration::from_secs(3600);
        config.spec.settings = r#"{"dir": "/m", "follow": false}"#.into();
        let engine = PluginEngine::new("n1", None).unwrap();
        let metrics = Metrics::new();
        let source = Box::new(PluginSource::load(&engine, &config, dir.path().join("checkpoint.json"), metrics.clone()).await);
        let plugin = source.plugin().clone();
        let health = metrics.source(&source.kind().to_string());
        let (tx, mut rx) = watch::channel(SourceSnapshot::default());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(source.run(tx, health, shutdown.clone()));
        assert_eq!(ids(&next(&mut rx).await), ["plugin:fixture#a"]);
        let digest = plugin.info().digest;

        // New code, and a manifest that only a poll of it will see in time: the same component
        // with a custom section appended (id 0, size 15, name "staticlet-test"), so its digest
        // differs.
        std::fs::write(manifests.join("b"), "kind: Pod").unwrap();
        let mut bytes = std::fs::read(&wasm).unwrap();
        bytes.extend_from_slice(&[0, 15, 14]);
        bytes.extend_from_slice(b"staticlet-test");
        let replacement = dir.path().join("fixture.wasm.new");
        std::fs::write(&replacement, bytes).unwrap();
        std::fs::rename(&replacement, &wasm).unwrap();
        let after = next(&mut rx).await;
        assert_eq!(ids(&after), ["plugin:fixture#a", "plugin:fixture#b"]);
        assert_ne!(plugin.info().digest, digest);
        shutdown.cancel();
        task.await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_source_that_sees_a_change_is_polled_at_once_not_at_its_interval() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = fixture(dir.path());
        // Only the source saying so can explain a second poll within the test.
        config.interval = Duration::from_secs(3600);
        let engine = PluginEngine::new("n1", None).unwrap();
        let metrics = Metrics::new();
        let source = Box::new(PluginSource::load(&engine, &config, dir.path().join("checkpoint.json"), metrics.clone()).await);
        assert!(source.plugin().follows_changes(), "the fixture is built against WIT 0.2.0");
        let health = metrics.source(&source.kind().to_string());
        let (tx, mut rx) = watch::channel(SourceSnapshot::default());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(source.run(tx, health, shutdown.clone()));
        assert_eq!(ids(&next(&mut rx).await), ["plugin:fixture#a"]);

        for (file, expected) in
            [("b", vec!["plugin:fixture#a", "plugin:fixture#b"]), ("c", vec!["plugin:fixture#a", "plugin:fixture#b", "plugin:fixture#c"])]
        {
            let written = Instant::now();
            std::fs::write(dir.path().join("manifests").join(file), "kind: Pod").unwrap();
            assert_eq!(ids(&next(&mut rx).await), expected);
            assert!(written.elapsed() < Duration::from_secs(2), "seen after {:?}", written.elapsed());
        }
        // Shutdown ends the wait in progress rather than waiting out its hour.
        let stopping = Instant::now();
        shutdown.cancel();
        task.await.unwrap();
        assert!(stopping.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn ids_must_be_unique_and_not_empty() {
        let source = PluginSource {
            plugin: Arc::new(futures::executor::block_on(Plugin::load(
                &PluginEngine::new("n1", None).unwrap(),
                PluginSpec::new("p", Kind::ManifestSource, Code::File("/nonexistent.wasm".into())),
            ))),
            interval: Duration::from_secs(1),
            kind: SourceKind::Plugin("p".into()),
            checkpoint: PathBuf::from("/nonexistent.json"),
            metrics: Metrics::new(),
        };
        let items = source.items(vec![("b".into(), "x".into()), ("a".into(), "y".into())]).unwrap();
        assert_eq!(
            items.iter().map(|i| (i.place.as_str(), i.uri.as_str())).collect::<Vec<_>>(),
            [("plugin:p#a", "a"), ("plugin:p#b", "b")]
        );
        assert!(source.items(vec![("a".into(), "x".into()), ("a".into(), "y".into())]).unwrap_err().contains("\"a\" twice"));
        assert!(source.items(vec![(String::new(), "x".into())]).unwrap_err().contains("empty id"));
    }
}
