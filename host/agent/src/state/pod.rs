//! The record the agent keeps for each pod so that a restart of the agent changes nothing a
//! user can see: crash-loop back-off (the kubelet forgets it) and the pod's start time.

use std::path::Path;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::{StateError, read_json, write_json};
use staticlet_model::backoff::BackoffTable;

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

impl PodRecord {
    /// Reads the record at `path`; `Ok(None)` when there is none, or it is of another version.
    ///
    /// # Errors
    ///
    /// [`StateError`] naming the file when it cannot be read or parsed.
    pub fn load(path: &Path) -> Result<Option<PodRecord>, StateError> {
        Ok(read_json::<PodRecord>(path)?.filter(|record| record.version == VERSION))
    }

    /// Writes the record to `path` atomically.
    ///
    /// # Errors
    ///
    /// [`StateError::Io`] naming the file.
    pub fn save(&self, path: &Path) -> Result<(), StateError> {
        write_json(path, &PodRecord { version: VERSION, ..self.clone() })
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
