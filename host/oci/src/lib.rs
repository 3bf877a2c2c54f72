//! Plugins as OCI artifacts: WebAssembly components pushed to and pulled from a container
//! registry, kept by digest under the agent's `--root-dir`, pinned and optionally signed.
//!
//! The pieces, in the order a plugin meets them:
//!
//! - [`media`]: the artifact's layout, as the CNCF Wasm OCI artifact spec gives it (and
//!   Kubewarden's older media types, on pull);
//! - [`Registry`]: pushes and pulls over the distribution API with the node's registry
//!   credentials, checking every manifest and blob against its digest;
//! - [`Store`]: blobs by digest and tags as resolved, written once and checked again at every
//!   load, so a node loads its plugins offline and notices a damaged file;
//! - [`signature`]: cosign's key-based signatures (the `.sig` tag), verified offline;
//! - [`Artifacts`]: the store first, the registry (with back-off) for what it lacks: what the
//!   plugin host asks for an [`Image`]'s component.

pub mod media;
pub mod signature;

mod artifacts;
mod registry;
mod store;

use std::path::PathBuf;

pub use artifacts::Artifacts;
pub use oci_client::Reference;
pub use registry::Registry;
pub use store::Store;

/// A plugin's component as the agent config names it: an image reference, and the public key
/// its signature must verify with, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// `registry/repository[:tag][@sha256:...]`.
    pub reference: Reference,
    /// A cosign public key (PEM): when set, the artifact must carry a signature it verifies.
    pub public_key: Option<PathBuf>,
}

impl Image {
    /// Parses `reference` (without a tag or digest it means `:latest`, as Docker reads it);
    /// errors say what is wrong with it.
    ///
    /// # Errors
    ///
    /// Not an image reference, or one without a registry host (plugins are never looked up on
    /// Docker Hub by accident: the registry is always written out).
    pub fn parse(reference: &str, public_key: Option<PathBuf>) -> Result<Image, String> {
        let parsed: Reference = reference.parse().map_err(|e| format!("{reference:?} is not an image reference: {e}"))?;
        let host = reference.split('/').next().unwrap_or_default();
        if !reference.contains('/') || !(host.contains('.') || host.contains(':') || host == "localhost") {
            return Err(format!("{reference:?} names no registry: write it in full, like registry.example.com/plugins/name:1.0"));
        }
        if let Some(digest) = parsed.digest() {
            store::check_digest(digest).map_err(|e| format!("{reference:?}: {e}"))?;
        }
        Ok(Image { reference: parsed, public_key })
    }
}

impl std::fmt::Display for Image {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reference.whole())
    }
}

/// A plugin's component, checked: from the store, its digest and every blob verified (and its
/// signature, if a key was asked for).
#[derive(Clone, PartialEq, Eq)]
pub struct Artifact {
    /// The reference pinned to what was loaded: `registry/repository[:tag]@sha256:...`.
    pub reference: String,
    /// The manifest's digest, `sha256:...`: what a config pins.
    pub digest: String,
    /// The component.
    pub wasm: Vec<u8>,
}

impl std::fmt::Debug for Artifact {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Artifact").field("reference", &self.reference).field("wasm", &format_args!("<{} bytes>", self.wasm.len())).finish()
    }
}

/// Why an artifact was refused or could not be had. Each names the reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArtifactError {
    /// What the registry serves (or the store holds) is not what the config pins.
    #[error("{reference}: the registry serves {found}, but the config pins {expected}; refusing it")]
    DigestMismatch {
        /// The reference.
        reference: String,
        /// The pinned digest.
        expected: String,
        /// The digest of what was served.
        found: String,
    },
    /// A stored file no longer hashes to its name.
    #[error("{reference}: stored blob {file} is damaged (it hashes to {found}); delete it and pull again")]
    Damaged {
        /// The reference.
        reference: String,
        /// The blob's file.
        file: String,
        /// What it hashes to now.
        found: String,
    },
    /// The store lacks the artifact (or its signature) and it was not pulled.
    #[error("{reference}: not in the store {store}{}", if *offline { "; pull it there with `staticlet plugins pull`" } else { " yet" })]
    NotStored {
        /// The reference.
        reference: String,
        /// The store's directory.
        store: String,
        /// Whether the registry is not asked (`staticlet validate`, a later start offline).
        offline: bool,
    },
    /// The artifact is not a plugin: its manifest or layers are not a WebAssembly artifact's.
    #[error("{reference}: not a WebAssembly plugin artifact: {message}")]
    NotAPlugin {
        /// The reference.
        reference: String,
        /// What is wrong.
        message: String,
    },
    /// A key is configured and no signature verifies with it.
    #[error("{reference}: {message}")]
    Signature {
        /// The reference.
        reference: String,
        /// Why: unsigned, or signed with another key, or for another digest.
        message: String,
    },
    /// The registry could not be reached, refused the credentials, or answered with an error.
    #[error("{reference}: pulling from the registry: {message}")]
    Registry {
        /// The reference.
        reference: String,
        /// What went wrong.
        message: String,
    },
    /// The store could not be read or written.
    #[error("{reference}: store {path}: {message}")]
    Io {
        /// The reference.
        reference: String,
        /// The file or directory.
        path: String,
        /// The I/O error.
        message: String,
    },
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}
