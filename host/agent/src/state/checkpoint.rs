//! The checkpoint of a source that lives elsewhere (a manifest URL, a source plugin): the set
//! of manifests the agent last accepted from it, which `source::checkpoint` keeps and restores.
//!
//! Plain JSON files replaced by rename ([`super::write_atomic`]): one small document per source,
//! rewritten only when the set changes, read once at start. An embedded database would add a
//! dependency, a file format and a recovery story for what is one key per source.

use std::path::Path;

use serde::{Deserialize, Serialize};
use tracing::warn;

use super::{read_json, write_json};

/// The checkpoint format's version; a file of another version is ignored.
const VERSION: u32 = 1;

/// One manifest of a source's set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    /// Its place in the source (`<url>#<index>`, `plugin:<name>#<id>`).
    pub place: String,
    /// Its origin's URI (the URL, the plugin's manifest id).
    pub uri: String,
    /// The manifest.
    pub content: String,
}

/// A source's last accepted set. (Files of the first agents also hold the `ETag` and
/// `Last-Modified` of the body last read; they are ignored.)
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    version: u32,
    /// The manifests.
    pub items: Vec<Item>,
}

impl Checkpoint {
    /// A checkpoint of `items`.
    pub fn new(items: Vec<Item>) -> Checkpoint {
        Checkpoint { version: VERSION, items }
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

    /// Writes the checkpoint to `path` atomically; a failure is reported, never fatal.
    pub fn save(&self, path: &Path) {
        if let Err(e) = write_json(path, self) {
            warn!("cannot write the source's checkpoint; a restart while the source is down would start without its pods: {e}");
        }
    }
}
