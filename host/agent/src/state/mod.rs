//! Everything the agent keeps under `--root-dir`. Every path it writes there is named here, every
//! format it writes is defined here (pod records, [`checkpoint`]s, the API [`token`], the
//! kubelet port's self-signed [`tls`] pair), and every record is written whole (temporary file,
//! fsync, rename), so a crash leaves the old record or the new one, never half of one.
//!
//! ```text
//! <root-dir>/pods/<uid>/pod-state.json                              back-off, start time (PodRecord)
//! <root-dir>/pods/<uid>/volumes/kubernetes.io~empty-dir/<volume>/   emptyDir volumes
//! <root-dir>/pods/<uid>/containers/<container>/<attempt>            termination messages
//! <root-dir>/plugins/cache/<sha256>-<engine>.cwasm                   compiled plugin code
//! <root-dir>/checkpoints/<source>.json                               last good set of a URL or plugin source
//! <root-dir>/api-token                                               the bearer token streaming verbs need (0600)
//! <root-dir>/kubeconfig                                              a kubeconfig for the local API, with that token (0600)
//! <root-dir>/pki/staticlet.{crt,key}                                 the kubelet port's self-signed serving pair
//! ```
//!
//! The layout follows the kubelet's (`/var/lib/kubelet/pods/<uid>/volumes/...`), so operators
//! find things where they expect them.

pub mod checkpoint;
mod pod;
pub mod tls;
pub mod token;

pub use pod::PodRecord;

use std::io::Write;
use std::path::{Path, PathBuf};

/// Paths under `--root-dir`.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    /// The layout under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Layout { root: root.into() }
    }

    /// Where compiled plugin code is cached (owned by the plugin host, which writes each file
    /// once, atomically, and never rewrites it).
    pub fn plugin_cache(&self) -> PathBuf {
        self.root.join("plugins").join("cache")
    }

    /// Where plugins pulled from registries are stored, by digest (owned by `staticlet-oci`).
    pub fn plugin_store(&self) -> PathBuf {
        self.root.join("plugins").join("oci")
    }

    /// The last good set of a non-file source (`http`, `plugin:<name>`).
    pub fn checkpoint(&self, source: &str) -> PathBuf {
        // `plugin:<name>` → `plugin-<name>.json`: plugin names are DNS labels, so no escaping.
        self.root.join("checkpoints").join(format!("{}.json", source.replace(':', "-")))
    }

    /// The directory holding everything of one pod. UIDs are computed by the agent or, when a
    /// manifest gives its own, validated as one safe path component by the model.
    pub fn pod_dir(&self, uid: &str) -> PathBuf {
        self.root.join("pods").join(uid)
    }

    /// An emptyDir volume of a pod.
    pub fn empty_dir(&self, uid: &str, volume: &str) -> PathBuf {
        self.pod_dir(uid).join("volumes").join("kubernetes.io~empty-dir").join(volume)
    }

    /// The host side of a container's `terminationMessagePath`. Container names are DNS labels,
    /// checked by the model.
    pub fn termination_message(&self, uid: &str, container: &str, attempt: u32) -> PathBuf {
        self.pod_dir(uid).join("containers").join(container).join(attempt.to_string())
    }

    /// The bearer token `exec`, `attach` and `port-forward` need on the local API.
    pub fn api_token(&self) -> PathBuf {
        self.root.join("api-token")
    }

    /// The kubeconfig for the local API that `staticlet kubeconfig` prints.
    pub fn kubeconfig(&self) -> PathBuf {
        self.root.join("kubeconfig")
    }

    /// The kubelet port's serving certificate and key, made when none is given, as the
    /// kubelet keeps them under `/var/lib/kubelet/pki`.
    pub fn serving_pair(&self) -> (PathBuf, PathBuf) {
        let dir = self.root.join("pki");
        (dir.join("staticlet.crt"), dir.join("staticlet.key"))
    }

    /// A pod's [`PodRecord`].
    pub fn pod_record(&self, uid: &str) -> PathBuf {
        self.pod_dir(uid).join("pod-state.json")
    }
}

/// A state file that could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file's path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid JSON of the expected shape.
    #[error("{path}: {source}")]
    Corrupt {
        /// The file's path.
        path: String,
        /// The parse error.
        source: serde_json::Error,
    },
}

/// Reads a JSON state file; `Ok(None)` when there is none.
///
/// # Errors
///
/// [`StateError`] naming the file when it cannot be read or parsed.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, StateError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(StateError::Io { path: path.display().to_string(), source }),
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|source| StateError::Corrupt { path: path.display().to_string(), source })
}

/// Writes a JSON state file atomically ([`write_atomic`]).
///
/// # Errors
///
/// [`StateError::Io`] naming the file.
pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<(), StateError> {
    let bytes = serde_json::to_vec_pretty(value).expect("state records always serialize");
    write_atomic(path, &bytes).map_err(|source| StateError::Io { path: path.display().to_string(), source })
}

/// Replaces `path` with `bytes` atomically: a reader sees the old content or the new, and a
/// crash at any point leaves one of them.
///
/// # Errors
///
/// The I/O error of whichever step failed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    file.write_all(bytes)?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|e| e.error)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_replaces_the_file_whole_and_leaves_nothing_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deep/record.json");
        write_atomic(&path, b"old").unwrap();
        // A reader holding the old file keeps seeing it whole: the new one is another inode.
        let held = std::fs::File::open(&path).unwrap();
        write_atomic(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert_eq!(std::io::read_to_string(held).unwrap(), "old");
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(names, ["record.json"], "no temporary file is left behind");
    }
}
