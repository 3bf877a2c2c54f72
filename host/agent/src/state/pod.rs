//! The record the agent keeps for each pod so that a restart of the agent changes nothing a
//! user can see: crash-loop back-off (the kubelet forgets it) and the pod's start time.

use std::path::Path;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::write_atomic;
use crate::reconcile::backoff::BackoffTable;

/// The record's format; a record of another version is ignored, not misread.
const VERSION: u32 = 1;

/// What is kept of one pod between runs of the agent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PodRecord {
    /// The format version.
    pub version: u32,
    /// When the agent first accepted the pod (`status.startTime`).
    pub start_time: Option<SystemTime>,
    /// Crash-loop back-off per container.
    pub backoff: BackoffTable,
}

/// A record that could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The record's path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The record is not valid JSON of the expected shape.
    #[error("{path}: {source}")]
    Corrupt {
        /// The record's path.
        path: String,
        /// The parse error.
        source: serde_json::Error,
    },
}

impl PodRecord {
    /// Reads the record at `path`; `Ok(None)` when there is none, or it is of another version.
    ///
    /// # Errors
    ///
    /// [`StateError`] naming the file when it cannot be read or parsed.
    pub fn load(path: &Path) -> Result<Option<PodRecord>, StateError> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(StateError::Io { path: path.display().to_string(), source }),
        };
        let record: PodRecord =
            serde_json::from_slice(&bytes).map_err(|source| StateError::Corrupt { path: path.display().to_string(), source })?;
        Ok((record.version == VERSION).then_some(record))
    }

    /// Writes the record to `path` atomically.
    ///
    /// # Errors
    ///
    /// [`StateError::Io`] naming the file.
    pub fn save(&self, path: &Path) -> Result<(), StateError> {
        let record = PodRecord { version: VERSION, ..self.clone() };
        let bytes = serde_json::to_vec_pretty(&record).expect("a pod record always serializes");
        write_atomic(path, &bytes).map_err(|source| StateError::Io { path: path.display().to_string(), source })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn records_round_trip_and_other_versions_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pods/u/pod-state.json");
        assert_eq!(PodRecord::load(&path).unwrap(), None);
        let mut record = PodRecord { start_time: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(7)), ..PodRecord::default() };
        record.backoff.next("app", SystemTime::UNIX_EPOCH + Duration::from_secs(9));
        record.save(&path).unwrap();
        let loaded = PodRecord::load(&path).unwrap().unwrap();
        assert_eq!(loaded.backoff, record.backoff);
        assert_eq!(loaded.start_time, record.start_time);
        std::fs::write(&path, br#"{"version": 99}"#).unwrap();
        assert_eq!(PodRecord::load(&path).unwrap(), None);
        std::fs::write(&path, b"{").unwrap();
        assert!(matches!(PodRecord::load(&path), Err(StateError::Corrupt { .. })));
    }
}
