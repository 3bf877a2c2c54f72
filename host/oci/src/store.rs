//! Pulled artifacts on disk, under `<root-dir>/plugins/oci/`:
//!
//! - `blobs/sha256/<hex>`: manifests, components and signature payloads, each named by its
//!   digest, written once (to a temporary name, synced, renamed) and hashed again at every load;
//! - `refs/<registry>/<repository>/_tags/<tag>`: the digest a tag was resolved to (repository
//!   components never start with `_`, so tags and nested repositories cannot collide).
//!
//! A tag is resolved once, when first pulled: later loads, online or not, use what it resolved
//! to until `staticlet plugins pull` resolves it again.

use std::io::Write;
use std::path::{Path, PathBuf};

use oci_client::Reference;

use crate::signature::{self, PublicKey};
use crate::{Artifact, ArtifactError, media, sha256_digest};

/// Checks `digest` is `sha256:` and 64 lowercase hex digits (so it can name a file).
pub(crate) fn check_digest(digest: &str) -> Result<(), String> {
    let hex = digest.strip_prefix("sha256:").ok_or_else(|| format!("{digest} is not a sha256 digest"))?;
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err(format!("{digest} is not a sha256 digest (64 lowercase hex digits)"));
    }
    Ok(())
}

/// The store. Cloning shares nothing but the path.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// The store in `dir` (`<root-dir>/plugins/oci`); it is made on the first write.
    pub fn new(dir: impl Into<PathBuf>) -> Store {
        Store { dir: dir.into() }
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn blob_path(&self, digest: &str) -> Result<PathBuf, String> {
        check_digest(digest)?;
        Ok(self.dir.join("blobs/sha256").join(&digest["sha256:".len()..]))
    }

    fn tag_path(&self, reference: &Reference, tag: &str) -> PathBuf {
        self.dir.join("refs").join(reference.registry()).join(reference.repository()).join("_tags").join(tag)
    }

    /// Stores `bytes` as the blob `digest`, unless it is there already.
    pub(crate) fn write_blob(&self, reference: &Reference, digest: &str, bytes: &[u8]) -> Result<(), ArtifactError> {
        let path = self.blob_path(digest).map_err(|message| io_error(reference, &self.dir, message))?;
        let found = sha256_digest(bytes);
        if found != digest {
            return Err(ArtifactError::DigestMismatch { reference: reference.whole(), expected: digest.to_owned(), found });
        }
        if path.exists() {
            return Ok(());
        }
        write_new(&path, bytes).map_err(|e| io_error(reference, &path, e.to_string()))
    }

    /// The blob `digest`, checked; `None` if it is not stored.
    fn read_blob(&self, reference: &Reference, digest: &str) -> Result<Option<Vec<u8>>, ArtifactError> {
        let path = self.blob_path(digest).map_err(|message| io_error(reference, &self.dir, message))?;
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error(reference, &path, e.to_string())),
        };
        let found = sha256_digest(&bytes);
        if found != digest {
            return Err(ArtifactError::Damaged { reference: reference.whole(), file: path.display().to_string(), found });
        }
        Ok(Some(bytes))
    }

    /// Records that `tag` of `reference`'s repository resolved to `digest`.
    pub(crate) fn set_tag(&self, reference: &Reference, tag: &str, digest: &str) -> Result<(), ArtifactError> {
        let path = self.tag_path(reference, tag);
        write_new(&path, format!("{digest}\n").as_bytes()).map_err(|e| io_error(reference, &path, e.to_string()))
    }

    fn tag(&self, reference: &Reference, tag: &str) -> Result<Option<String>, ArtifactError> {
        let path = self.tag_path(reference, tag);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let digest = text.trim().to_owned();
                check_digest(&digest).map_err(|message| io_error(reference, &path, message))?;
                Ok(Some(digest))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error(reference, &path, e.to_string())),
        }
    }

    /// The digest `reference` stands for here: the one it pins, else what its tag resolved to
    /// (`None` if it was never pulled). One small read: the plugin host asks every second.
    ///
    /// # Errors
    ///
    /// The tag's file cannot be read.
    pub fn resolve(&self, reference: &Reference) -> Result<Option<String>, ArtifactError> {
        match (reference.digest(), reference.tag()) {
            (Some(digest), _) => Ok(Some(digest.to_owned())),
            (None, Some(tag)) => self.tag(reference, tag),
            (None, None) => Ok(None),
        }
    }

    /// The component `reference` stands for, with every blob checked against its digest and,
    /// with `key`, its signature verified.
    ///
    /// # Errors
    ///
    /// [`ArtifactError::NotStored`] when a piece is missing (with `offline` set as given), else
    /// why it is refused.
    pub fn load(&self, reference: &Reference, key: Option<&PublicKey>, offline: bool) -> Result<Artifact, ArtifactError> {
        let not_stored = || ArtifactError::NotStored { reference: reference.whole(), store: self.dir.display().to_string(), offline };
        let digest = self.resolve(reference)?.ok_or_else(not_stored)?;
        let manifest = self.read_blob(reference, &digest)?.ok_or_else(not_stored)?;
        let layer =
            media::component_layer(&manifest).map_err(|message| ArtifactError::NotAPlugin { reference: reference.whole(), message })?;
        let wasm = self.read_blob(reference, &layer.digest)?.ok_or_else(not_stored)?;
        if let Some(key) = key {
            let signed = self.tag(reference, &signature::signature_tag(&digest))?.ok_or_else(not_stored)?;
            let signatures = self.read_blob(reference, &signed)?.ok_or_else(not_stored)?;
            signature::verify(&digest, &signatures, key, |payload| match self.read_blob(reference, payload) {
                Ok(Some(bytes)) => Ok(bytes),
                Ok(None) => Err("its payload is not stored".to_owned()),
                Err(e) => Err(e.to_string()),
            })
            .map_err(|message| ArtifactError::Signature {
                reference: reference.whole(),
                message: format!("signature of {digest}: {message}"),
            })?;
        }
        Ok(Artifact { reference: pinned(reference, &digest), digest, wasm })
    }
}

/// `reference` written with `digest`: `registry/repository[:tag]@digest`.
pub(crate) fn pinned(reference: &Reference, digest: &str) -> String {
    let tag = reference.tag().map(|t| format!(":{t}")).unwrap_or_default();
    format!("{}/{}{tag}@{digest}", reference.registry(), reference.repository())
}

fn io_error(reference: &Reference, path: &Path, message: String) -> ArtifactError {
    ArtifactError::Io { reference: reference.whole(), path: path.display().to_string(), message }
}

/// Writes `bytes` to `path` whole or not at all: to a temporary file, synced, then renamed, in
/// directories only the agent's user can read (a plugin's settings are not here, but a private
/// plugin is the vendor's).
fn write_new(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let dir = path.parent().expect("store paths have a parent");
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("blob");
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";

    fn stored(store: &Store, reference: &Reference) -> String {
        let built = media::build(COMPONENT.to_vec(), "2026-12-06T00:00:00Z").unwrap();
        let digest = sha256_digest(&built.manifest);
        store.write_blob(reference, &sha256_digest(&built.wasm), &built.wasm).unwrap();
        store.write_blob(reference, &digest, &built.manifest).unwrap();
        digest
    }

    #[test]
    fn a_pinned_artifact_loads_from_the_store_and_a_tag_loads_as_resolved() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let tagged: Reference = "127.0.0.1:5000/plugins/p:1.0".parse().unwrap();
        let digest = stored(&store, &tagged);
        let pinned_ref: Reference = format!("127.0.0.1:5000/plugins/p@{digest}").parse().unwrap();
        let artifact = store.load(&pinned_ref, None, true).unwrap();
        assert_eq!((artifact.wasm.as_slice(), artifact.digest.as_str()), (COMPONENT, digest.as_str()));
        assert_eq!(artifact.reference, format!("127.0.0.1:5000/plugins/p@{digest}"));

        let err = store.load(&tagged, None, true).unwrap_err();
        assert!(matches!(err, ArtifactError::NotStored { .. }), "{err}");
        store.set_tag(&tagged, "1.0", &digest).unwrap();
        assert_eq!(store.load(&tagged, None, true).unwrap().reference, format!("127.0.0.1:5000/plugins/p:1.0@{digest}"));
        assert!(dir.path().join("refs/127.0.0.1:5000/plugins/p/_tags/1.0").is_file());
    }

    #[test]
    fn a_damaged_blob_is_named_and_a_mismatched_write_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let reference: Reference = "127.0.0.1:5000/plugins/p:1.0".parse().unwrap();
        let digest = stored(&store, &reference);
        let layer = sha256_digest(COMPONENT);
        let file = dir.path().join("blobs/sha256").join(&layer["sha256:".len()..]);
        std::fs::write(&file, b"\0asm\x0d\0\x01\0 and more").unwrap();
        let pinned_ref: Reference = format!("127.0.0.1:5000/plugins/p@{digest}").parse().unwrap();
        let err = store.load(&pinned_ref, None, true).unwrap_err().to_string();
        assert!(err.contains(&format!("stored blob {} is damaged", file.display())), "{err}");

        let err = store.write_blob(&reference, &layer, b"other").unwrap_err();
        assert!(matches!(err, ArtifactError::DigestMismatch { ref expected, .. } if *expected == layer), "{err}");
    }
}
