//! The layout of `--root-dir`. Every path the agent writes under it is named here.
//!
//! ```text
//! <root-dir>/pods/<uid>/volumes/kubernetes.io~empty-dir/<volume>/   emptyDir volumes
//! ```
//!
//! The layout follows the kubelet's (`/var/lib/kubelet/pods/<uid>/volumes/...`), so operators
//! find things where they expect them.

use std::path::PathBuf;

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

    /// The directory holding everything of one pod. UIDs are computed by the agent or, when a
    /// manifest gives its own, validated as one safe path component by the model.
    pub fn pod_dir(&self, uid: &str) -> PathBuf {
        self.root.join("pods").join(uid)
    }

    /// An emptyDir volume of a pod.
    pub fn empty_dir(&self, uid: &str, volume: &str) -> PathBuf {
        self.pod_dir(uid).join("volumes").join("kubernetes.io~empty-dir").join(volume)
    }
}
