//! What the plugin host asks for an image's component: the store first, the registry for what
//! it lacks, with the kubelet's image back-off between failed pulls.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::signature::PublicKey;
use crate::{Artifact, ArtifactError, Image, Registry, Store};

/// The first wait after a failed pull, doubled after each further failure up to
/// [`MAX_BACKOFF`]: the kubelet's image pull back-off.
const INITIAL_BACKOFF: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// The store and, unless offline, a registry to fill it from.
pub struct Artifacts {
    store: Store,
    registry: Option<Registry>,
    backoff: Mutex<HashMap<String, Backoff>>,
}

/// When a reference may be pulled again, and what its last pull said.
#[derive(Debug, Clone)]
struct Backoff {
    until: Instant,
    delay: Duration,
    error: ArtifactError,
}

impl Backoff {
    /// The back-off after `previous` (if any) and a new failure at `now`.
    fn after(previous: Option<&Backoff>, now: Instant, error: ArtifactError) -> Backoff {
        let delay = previous.map_or(INITIAL_BACKOFF, |b| (b.delay * 2).min(MAX_BACKOFF));
        Backoff { until: now + delay, delay, error }
    }
}

impl Artifacts {
    /// Loads from `store`, pulling what it lacks from `registry`; with no registry, only what is
    /// stored loads.
    pub fn new(store: Store, registry: Option<Registry>) -> Artifacts {
        Artifacts { store, registry, backoff: Mutex::default() }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Pulls `image` now, whatever the store holds (a tag is resolved again), checked as a load
    /// is: what `staticlet plugins pull` does.
    ///
    /// # Errors
    ///
    /// As [`Artifacts::fetch`]; offline, that there is no registry to pull from.
    pub async fn pull(&self, image: &Image) -> Result<Artifact, ArtifactError> {
        let key = image.public_key.as_deref().map(|path| read_key(image, path)).transpose()?;
        let Some(registry) = &self.registry else { return self.store.load(&image.reference, key.as_ref(), true) };
        registry.pull(&self.store, &image.reference, key.as_ref()).await
    }

    /// The digest `image` stands for now, without reading any blob: `None` until it is pulled.
    ///
    /// # Errors
    ///
    /// The store cannot be read.
    pub fn current(&self, image: &Image) -> Result<Option<String>, ArtifactError> {
        self.store.resolve(&image.reference)
    }

    /// `image`'s component, checked: from the store, else pulled (at most once per back-off
    /// period after a failed pull, which is answered with that pull's error meanwhile).
    ///
    /// # Errors
    ///
    /// Why it cannot be had, naming the reference (and digests, files or key at fault).
    pub async fn fetch(&self, image: &Image) -> Result<Artifact, ArtifactError> {
        let key = image.public_key.as_deref().map(|path| read_key(image, path)).transpose()?;
        let Some(registry) = &self.registry else { return self.store.load(&image.reference, key.as_ref(), true) };
        match self.store.load(&image.reference, key.as_ref(), false) {
            Err(ArtifactError::NotStored { .. }) => {}
            loaded => return loaded,
        }
        let name = image.reference.whole();
        let previous = self.backoff.lock().expect("back-off lock").get(&name).cloned();
        if let Some(previous) = previous.as_ref().filter(|b| Instant::now() < b.until) {
            return Err(previous.error.clone());
        }
        let pulled = registry.pull(&self.store, &image.reference, key.as_ref()).await;
        let mut backoff = self.backoff.lock().expect("back-off lock");
        match &pulled {
            Ok(artifact) => {
                backoff.remove(&name);
                tracing::info!(image = %name, pinned = %artifact.reference, "pulled plugin artifact");
            }
            Err(e) => {
                backoff.insert(name, Backoff::after(previous.as_ref(), Instant::now(), e.clone()));
            }
        }
        pulled
    }
}

/// The configured public key, read at each fetch (a rotated key file is used at once).
fn read_key(image: &Image, path: &std::path::Path) -> Result<PublicKey, ArtifactError> {
    let message =
        |e: String| ArtifactError::Signature { reference: image.reference.whole(), message: format!("public key {}: {e}", path.display()) };
    let pem = std::fs::read(path).map_err(|e| message(e.to_string()))?;
    PublicKey::from_pem(&pem).map_err(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn failed_pulls_back_off_as_the_kubelets_image_pulls_do() {
        let error = ArtifactError::Registry { reference: "r".into(), message: "connection refused".into() };
        let now = Instant::now();
        let mut backoff = Backoff::after(None, now, error.clone());
        let mut delays = vec![backoff.delay];
        for _ in 0..6 {
            backoff = Backoff::after(Some(&backoff), now, error.clone());
            delays.push(backoff.delay);
        }
        let secs: Vec<u64> = delays.iter().map(Duration::as_secs).collect();
        assert_eq!(secs, [10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(backoff.until, now + MAX_BACKOFF);
    }

    #[tokio::test(start_paused = true)]
    async fn a_pull_failure_is_answered_from_the_back_off_until_it_ends() {
        let dir = tempfile::tempdir().unwrap();
        let credentials = std::sync::Arc::new(staticlet_credentials::Credentials::new(dir.path(), Vec::new()));
        let artifacts = Artifacts::new(Store::new(dir.path().join("oci")), Some(Registry::new(credentials)));
        let image = Image::parse("127.0.0.1:1/plugins/p:1.0", None).unwrap();
        let first = artifacts.fetch(&image).await.unwrap_err();
        assert!(matches!(first, ArtifactError::Registry { .. }), "{first}");
        let until = artifacts.backoff.lock().unwrap()["127.0.0.1:1/plugins/p:1.0"].until;
        assert_eq!(artifacts.fetch(&image).await.unwrap_err(), first, "answered from the back-off");
        assert_eq!(artifacts.backoff.lock().unwrap()["127.0.0.1:1/plugins/p:1.0"].until, until, "not pulled again");
    }
}
