//! Registry credentials for image pulls, found as the kubelet finds them for a static pod
//! (which cannot name a pull secret): the node's docker config file, then credential providers.
//!
//! - [`reference`]: an image's repository as the keyring matches it (`docker.io/library/x`);
//! - [`keyring`]: credentials by registry location, with the kubelet's glob, port and path
//!   matching and its order (most specific first);
//! - [`docker_config`]: the node's `config.json` or `.dockercfg`, from the kubelet's places;
//! - [`provider`]: credential providers (the kubelet's exec plugins, and anything else
//!   implementing [`provider::Provider`]) behind the kubelet's cache.
//!
//! [`Credentials::lookup`] puts them together for one image: every candidate, in the order a
//! pull should try them. No secret is ever part of an error or a `Debug` output.

pub mod docker_config;
pub mod keyring;
pub mod provider;
pub mod reference;

use std::sync::Arc;

use futures::future::join_all;

use crate::docker_config::DockerConfigFiles;
use crate::keyring::{Candidate, Keyring};
use crate::provider::{Cached, ProviderError};

/// The node's credentials.
pub struct Credentials {
    files: Arc<DockerConfigFiles>,
    providers: Vec<Cached>,
}

/// What a lookup found for one image.
#[derive(Debug, Default)]
pub struct Lookup {
    /// The credentials to try, in order. Empty: pull anonymously.
    pub candidates: Vec<Candidate>,
    /// Providers that were asked and failed; they contributed nothing.
    pub failures: Vec<ProviderError>,
}

impl Credentials {
    /// The credentials of a node whose `--root-dir` is `root_dir` (where the kubelet looks for
    /// `config.json` first), with `providers` asked in their order.
    pub fn new(root_dir: impl Into<std::path::PathBuf>, providers: Vec<Cached>) -> Self {
        Credentials { files: Arc::new(DockerConfigFiles::new(root_dir)), providers }
    }

    /// Every credential for `image`, as the kubelet orders them: the docker config file's, then
    /// the providers' (merged into one keyring, most specific location first). Providers are
    /// asked side by side; one that fails is reported and left out.
    pub async fn lookup(&self, image: &str) -> Lookup {
        let repository = reference::repository(image);
        let files = self.files.clone();
        let from_files = tokio::task::spawn_blocking(move || files.read().0).await.unwrap_or_default();
        let mut candidates = from_files.lookup(&repository);
        let asked: Vec<&Cached> = self.providers.iter().filter(|p| p.matches(&repository)).collect();
        let answers = join_all(asked.iter().map(|p| p.provide(&repository))).await;
        let mut from_providers = Keyring::default();
        let mut failures = Vec::new();
        for (provider, answer) in asked.iter().zip(answers) {
            match answer {
                Ok(auth) => {
                    let origin = format!("credential provider {}", provider.name());
                    for (location, auth) in auth {
                        from_providers.add(&location, auth, &origin);
                    }
                }
                Err(e) => failures.push(e),
            }
        }
        candidates.extend(from_providers.lookup(&repository));
        Lookup { candidates, failures }
    }
}
