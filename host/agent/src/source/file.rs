//! The file source (spec §2): a directory (or one file) of manifests, watched with inotify and
//! re-listed every `fileCheckFrequency`, because inotify misses some changes (a symlink's new
//! target, a directory that is replaced).

use std::collections::{BTreeMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use std::time::Duration;

use async_trait::async_trait;
use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
use notify::{EventKind, RecursiveMode, Watcher};
use staticlet_model::{Origin, SourceKind};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{Manifests, RawManifest, ReadError, Source, SourceSnapshot};
use crate::metrics::SourceHealth;

/// The kubelet's cap on a manifest file.
pub const MAX_FILE_BYTES: u64 = 10 * 1024 * 1024;
/// Editors write in bursts (a swap file, a rename, a chmod); one re-list covers a burst. A file
/// renamed into place is whole already, so that event is not debounced.
const DEBOUNCE: Duration = Duration::from_millis(20);
/// Why a FIFO, a socket or a device is skipped: opening one could block or have effects.
const NOT_REGULAR: &str = "not a regular file (FIFOs, sockets and devices are never opened)";
/// While the path does not exist, it is looked for this often, so a directory created later
/// is picked up promptly without a restart.
const MISSING_PATH_POLL: Duration = Duration::from_secs(1);

/// The file source and its settings.
#[derive(Debug, Clone)]
pub struct FileSource {
    /// The directory or file (`--pod-manifest-path`).
    pub path: PathBuf,
    /// The re-list period (`--file-check-frequency`).
    pub check_frequency: Duration,
}

/// What identifies one version of a file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fingerprint {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl Fingerprint {
    pub(crate) fn of(meta: &std::fs::Metadata) -> Self {
        Fingerprint {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            ctime_ns: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
        }
    }
}

/// Why a directory entry is not read as a manifest, judged by its name alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Skip {
    /// Dotfiles are ignored, as the kubelet ignores them.
    Dotfile,
    /// Only `*.yaml`, `*.yml` and `*.json` are read (**better** than the kubelet, which reads
    /// editor swap files and backups too).
    Extension,
}

impl Skip {
    fn of(name: &str) -> Option<Skip> {
        if name.starts_with('.') {
            return Some(Skip::Dotfile);
        }
        let manifest_like = [".yaml", ".yml", ".json"].iter().any(|ext| name.ends_with(ext));
        (!manifest_like).then_some(Skip::Extension)
    }

    fn reason(self) -> &'static str {
        match self {
            Skip::Dotfile => "dotfiles are ignored",
            Skip::Extension => "only *.yaml, *.yml and *.json files are read",
        }
    }
}

/// The files of `dir` the file source reads, sorted: what `staticlet validate DIR` checks.
///
/// # Errors
///
/// The directory cannot be read.
pub fn manifest_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if path.is_file() && Skip::of(name).is_none() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

struct Lister {
    path: PathBuf,
    files: BTreeMap<PathBuf, (Fingerprint, Result<RawManifest, ReadError>)>,
    skipped: HashSet<PathBuf>,
    /// The path does not exist (yet, or any more): the source is empty, and looked at often.
    missing: bool,
    /// The last listing of the directory failed (the files listed before are kept).
    listing_failed: bool,
}

impl Lister {
    fn new(path: &Path) -> Self {
        Lister { path: path.to_owned(), files: BTreeMap::new(), skipped: HashSet::new(), missing: false, listing_failed: false }
    }

    /// Lists the path, re-reading only files whose fingerprint changed. A path that does not
    /// exist is an empty source that has been seen, as the kubelet has it: the agent is ready,
    /// and the pods come when the path does.
    fn relist(&mut self) -> SourceSnapshot {
        let meta = match std::fs::metadata(&self.path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if !self.missing {
                    info!(path = %self.path.display(), "manifest path does not exist; waiting for it (the source counts as read, and empty)");
                    self.missing = true;
                }
                // A path that went away takes its pods with it, as deleting each file would.
                self.files.clear();
                return self.snapshot();
            }
            Err(e) => {
                warn!(path = %self.path.display(), error = %e, "cannot stat the manifest path; keeping what was read before");
                self.listing_failed = true;
                return self.snapshot();
            }
        };
        self.missing = false;
        self.listing_failed = false;
        let candidates = if meta.is_dir() {
            self.list_dir()
        } else if meta.is_file() {
            vec![self.path.clone()]
        } else {
            self.skip_once(&self.path.clone(), NOT_REGULAR);
            Vec::new()
        };
        let keep: HashSet<&PathBuf> = candidates.iter().collect();
        self.files.retain(|path, _| keep.contains(path));
        for path in &candidates {
            self.refresh(path);
        }
        self.snapshot()
    }

    fn list_dir(&mut self) -> Vec<PathBuf> {
        let entries = match std::fs::read_dir(&self.path) {
            Ok(entries) => entries,
            Err(e) => {
                warn!(path = %self.path.display(), error = %e, "cannot list the manifest directory");
                self.listing_failed = true;
                return self.files.keys().cloned().collect();
            }
        };
        let mut found = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            // Follows symlinks, as the kubelet does; stat never opens, so nothing here blocks.
            let meta = std::fs::metadata(&path);
            match Skip::of(&name) {
                Some(Skip::Extension) if meta.as_ref().is_ok_and(std::fs::Metadata::is_file) => {
                    self.skip_by_extension_once(&path);
                    continue;
                }
                Some(skip) => {
                    self.skip_once(&path, skip.reason());
                    continue;
                }
                None => {}
            }
            match meta {
                Ok(meta) if meta.is_file() => found.push(path),
                Ok(meta) if meta.is_dir() => self.skip_once(&path, "subdirectories are not read"),
                Ok(_) => self.skip_once(&path, NOT_REGULAR),
                Err(e) => self.skip_once(&path, if e.kind() == std::io::ErrorKind::NotFound { "dangling symlink" } else { "cannot stat" }),
            }
        }
        found.sort();
        found
    }

    fn skip_once(&mut self, path: &Path, reason: &str) {
        if self.skipped.insert(path.to_owned()) {
            info!(file = %path.display(), reason, "skipping file in manifest directory");
        }
    }

    /// A file the kubelet would read but staticlet does not, for its name: a warning when it
    /// holds a Pod (kube-up's `*.manifest` files do), since the user surely meant it to run.
    /// A copy of a manifest that is read (`web.yaml.bak`) is what the filter is for: no warning.
    fn skip_by_extension_once(&mut self, path: &Path) {
        if !self.skipped.insert(path.to_owned()) {
            return;
        }
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let stem = path.file_stem().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let copy_of_a_manifest = Skip::of(&stem).is_none();
        let is_pod = !copy_of_a_manifest && read_capped(path).is_ok_and(|bytes| staticlet_model::decode::decode_pod(&bytes).is_ok());
        if is_pod {
            warn!(
                file = %path.display(),
                "{name} holds a Pod but is not read: only *.yaml, *.yml and *.json files are (the kubelet reads every file); rename it to {stem}.yaml to run it"
            );
        } else {
            info!(file = %path.display(), reason = Skip::Extension.reason(), "skipping file in manifest directory");
        }
    }

    fn refresh(&mut self, path: &Path) {
        let origin = Origin { kind: SourceKind::File, uri: path.display().to_string() };
        let meta = match std::fs::metadata(path) {
            Ok(meta) => meta,
            Err(e) => {
                self.files.remove(path);
                debug!(file = %path.display(), error = %e, "manifest vanished while listing");
                return;
            }
        };
        if !meta.is_file() {
            // Replaced by a FIFO, socket or device since it was listed: never opened.
            self.files.remove(path);
            self.skip_once(path, NOT_REGULAR);
            return;
        }
        let fingerprint = Fingerprint::of(&meta);
        if self.files.get(path).is_some_and(|(seen, _)| *seen == fingerprint) {
            return;
        }
        let item = if meta.len() > MAX_FILE_BYTES {
            Err(ReadError {
                origin,
                message: format!("file is {} bytes, more than the {MAX_FILE_BYTES}-byte limit for a manifest", meta.len()),
            })
        } else {
            read_capped(path)
                .map(|bytes| RawManifest { origin: origin.clone(), bytes: bytes.into() })
                .map_err(|e| ReadError { origin, message: e })
        };
        self.files.insert(path.to_owned(), (fingerprint, item));
    }

    fn snapshot(&self) -> SourceSnapshot {
        let items = self.files.iter().map(|(path, (_, item))| (path.display().to_string(), item.clone().map(Manifests::One))).collect();
        SourceSnapshot { ready: true, items }
    }
}

/// Reads a manifest, refusing one over [`MAX_FILE_BYTES`] (read up to the cap plus one byte, to
/// notice a file that grew past it since it was listed) and anything but a regular file. The
/// open never blocks: a FIFO swapped in after the caller's stat opens at once and is refused.
///
/// # Errors
///
/// The I/O error, the limit or the file type, in words.
pub fn read_capped(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file =
        std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY).open(path).map_err(|e| e.to_string())?;
    if !file.metadata().map_err(|e| e.to_string())?.is_file() {
        return Err(NOT_REGULAR.to_owned());
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(format!("file is larger than the {MAX_FILE_BYTES}-byte limit for a manifest"));
    }
    Ok(bytes)
}

#[async_trait]
impl Source for FileSource {
    fn kind(&self) -> SourceKind {
        SourceKind::File
    }

    /// Lists the path at once and again on every inotify event and every `check_frequency`,
    /// publishing the set whenever it changes; a listing that fails counts against `health`.
    async fn run(self: Box<Self>, out: watch::Sender<SourceSnapshot>, health: SourceHealth, shutdown: CancellationToken) {
        let mut lister = Lister::new(&self.path);
        let (events_tx, mut events) = mpsc::unbounded_channel::<Change>();
        let mut watcher: Option<notify::RecommendedWatcher> = None;
        let mut watched: Option<(u64, u64)> = None;
        let mut ticker = tokio::time::interval(self.check_frequency);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

        loop {
            // (Re)establish the watch when the watched directory is new or was replaced.
            let target = self.watch_target();
            let identity = std::fs::metadata(&target).ok().map(|m| (m.dev(), m.ino()));
            if identity != watched {
                watcher = identity.and_then(|_| watch(&target, &self.path, events_tx.clone()));
                watched = identity.filter(|_| watcher.is_some());
            }

            let snapshot = lister.relist();
            if lister.listing_failed {
                health.failed()
            } else {
                health.succeeded()
            }
            out.send_if_modified(|current| {
                let changed = *current != snapshot;
                *current = snapshot;
                changed
            });

            let wait_missing = tokio::time::sleep(MISSING_PATH_POLL);
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = ticker.tick() => {}
                Some(change) = events.recv() => {
                    if change == Change::Partial {
                        tokio::time::sleep(DEBOUNCE).await;
                    }
                    while events.try_recv().is_ok() {}
                }
                _ = wait_missing, if lister.missing || watched.is_none() => {}
            }
        }
        drop(watcher);
    }
}

impl FileSource {
    /// The directory to watch: the path itself, or a single file's parent, since editors
    /// replace files by renaming and a watch on the old inode would go quiet.
    fn watch_target(&self) -> PathBuf {
        match std::fs::metadata(&self.path) {
            Ok(meta) if !meta.is_dir() => self.path.parent().map_or_else(|| PathBuf::from("."), Path::to_owned),
            _ => self.path.clone(),
        }
    }
}

/// A change in the watched directory, as far as its event tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    /// A file renamed into place: whole, as atomic writers (config tools, `kubectl`-style
    /// apply scripts) leave it.
    Whole,
    /// Anything else: more events of the same write may follow.
    Partial,
}

/// Whether `event` is only about dotfiles in the directory of the source `path`: they are never
/// read, so their events change nothing. Atomic writers (editors, config tools) write one beside
/// the manifest and rename it into place; waiting out the debounce after its creation would
/// delay every pod written that way. (A manifest path that is itself a dotfile is read.)
fn only_unread_files(event: &notify::Event, path: &Path) -> bool {
    let dotfile = |p: &PathBuf| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'));
    !event.paths.is_empty() && event.paths.iter().all(|p| dotfile(p) && p != path)
}

/// Watches `dir` (the manifest directory, or the parent of the manifest file `path`) and sends
/// what each event tells of a change.
fn watch(dir: &Path, path: &Path, events: mpsc::UnboundedSender<Change>) -> Option<notify::RecommendedWatcher> {
    let path = path.to_owned();
    let handler = move |result: notify::Result<notify::Event>| {
        // Reading the directory raises open and read events of its own: reacting to those would
        // make every re-list trigger the next one.
        let change = |kind: &EventKind| match kind {
            EventKind::Modify(ModifyKind::Name(RenameMode::To | RenameMode::Both)) => Some(Change::Whole),
            EventKind::Access(AccessKind::Close(AccessMode::Write)) => Some(Change::Partial),
            EventKind::Access(_) => None,
            _ => Some(Change::Partial),
        };
        if let Some(change) = result.ok().filter(|event| !only_unread_files(event, &path)).and_then(|event| change(&event.kind)) {
            let _ = events.send(change);
        }
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(watcher) => watcher,
        Err(e) => {
            warn!(path = %dir.display(), error = %e, "cannot create an inotify watcher; relying on periodic re-lists");
            return None;
        }
    };
    match watcher.watch(dir, RecursiveMode::NonRecursive) {
        Ok(()) => Some(watcher),
        Err(e) => {
            warn!(path = %dir.display(), error = %e, "cannot watch the manifest directory; relying on periodic re-lists");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_of_dotfiles_change_nothing_unless_the_path_is_one() {
        use notify::event::{CreateKind, EventKind, ModifyKind, RenameMode};
        let dir = Path::new("/etc/kubernetes/manifests");
        let event =
            |kind, names: &[&str]| notify::Event { kind, paths: names.iter().map(|n| dir.join(n)).collect(), attrs: Default::default() };
        let created = EventKind::Create(CreateKind::File);
        let renamed = EventKind::Modify(ModifyKind::Name(RenameMode::Both));
        assert!(only_unread_files(&event(created, &[".web.yaml.tmp"]), dir), "an atomic writer's temporary file");
        assert!(!only_unread_files(&event(renamed, &[".web.yaml.tmp", "web.yaml"]), dir), "renamed into place");
        assert!(!only_unread_files(&event(created, &["web.yaml"]), dir));
        assert!(!only_unread_files(&event(created, &[]), dir), "an event about nothing in particular");
        let hidden = dir.join(".pod.yaml");
        assert!(!only_unread_files(&event(created, &[".pod.yaml"]), &hidden), "the manifest path itself");
    }

    #[test]
    fn reads_only_manifests() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["a.yaml", "b.yml", "c.json", ".hidden.yaml", "a.yaml.swp", "a.yaml.bak", "4913", "notes.txt"] {
            std::fs::write(dir.path().join(name), "x").unwrap();
        }
        std::fs::create_dir(dir.path().join("sub.yaml")).unwrap();
        let snapshot = Lister::new(dir.path()).relist();
        let names: Vec<_> = snapshot.items.keys().map(|k| Path::new(k).file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["a.yaml", "b.yml", "c.json"]);
        assert!(snapshot.ready);
    }

    #[test]
    fn a_missing_directory_is_an_empty_source_that_was_read_and_is_waited_for() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("later");
        let mut lister = Lister::new(&path);
        let empty = lister.relist();
        assert!(empty.ready && empty.items.is_empty());
        assert!(lister.missing);
        std::fs::create_dir(&path).unwrap();
        std::fs::write(path.join("p.yaml"), "x").unwrap();
        assert_eq!(lister.relist().items.len(), 1);
        assert!(!lister.missing);
    }

    #[test]
    fn fifos_sockets_and_devices_are_never_opened() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo.yaml");
        mkfifo(&fifo);
        let _socket = std::os::unix::net::UnixListener::bind(dir.path().join("socket.yaml")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", dir.path().join("zero.yaml")).unwrap();
        std::fs::write(dir.path().join("pod.yaml"), "x").unwrap();
        // Each would block or never end if opened and read: the listing returns at once.
        let snapshot = Lister::new(dir.path()).relist();
        assert_eq!(snapshot.items.keys().map(String::as_str).collect::<Vec<_>>(), [dir.path().join("pod.yaml").display().to_string()]);
        // The same for a FIFO given as the manifest path itself.
        let as_path = Lister::new(&fifo).relist();
        assert!(as_path.ready && as_path.items.is_empty());
        assert_eq!(read_capped(&fifo).unwrap_err(), NOT_REGULAR);
    }

    fn mkfifo(path: &Path) {
        let status = std::process::Command::new("mkfifo").arg(path).status().unwrap();
        assert!(status.success());
    }

    #[test]
    fn oversized_files_are_read_errors() {
        let dir = tempfile::tempdir().unwrap();
        let file = std::fs::File::create(dir.path().join("big.yaml")).unwrap();
        file.set_len(MAX_FILE_BYTES + 1).unwrap();
        let snapshot = Lister::new(dir.path()).relist();
        let item = snapshot.items.values().next().unwrap();
        assert!(item.as_ref().unwrap_err().message.contains("limit"));
    }

    #[test]
    fn symlink_targets_are_followed_and_changes_seen() {
        let dir = tempfile::tempdir().unwrap();
        let store = tempfile::tempdir().unwrap();
        std::fs::write(store.path().join("v1"), "one").unwrap();
        std::fs::write(store.path().join("v2"), "two!").unwrap();
        let link = dir.path().join("pod.yaml");
        std::os::unix::fs::symlink(store.path().join("v1"), &link).unwrap();
        let mut lister = Lister::new(dir.path());
        let first = lister.relist();
        let Ok(Manifests::One(first)) = first.items.values().next().unwrap() else { panic!("one manifest") };
        assert_eq!(&*first.bytes, b"one");
        std::fs::remove_file(&link).unwrap();
        std::os::unix::fs::symlink(store.path().join("v2"), &link).unwrap();
        let second = lister.relist();
        let Ok(Manifests::One(second)) = second.items.values().next().unwrap() else { panic!("one manifest") };
        assert_eq!(&*second.bytes, b"two!");
    }
}
