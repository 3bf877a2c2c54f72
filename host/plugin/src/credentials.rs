//! The host side of the `credential-provider` world: a plugin as one of the node's credential
//! providers, asked (behind the kubelet's cache) after its credential provider executables.

use std::sync::Arc;

use async_trait::async_trait;
use staticlet_credentials::provider::{Provided, Provider, ProviderError};

use crate::Plugin;

/// A credential-provider plugin, as a [`Provider`].
#[derive(Debug, Clone)]
pub struct CredentialPlugin {
    plugin: Arc<Plugin>,
}

impl CredentialPlugin {
    /// Asks `plugin`, which must be a credential provider.
    pub fn new(plugin: Arc<Plugin>) -> Self {
        CredentialPlugin { plugin }
    }
}

#[async_trait]
impl Provider for CredentialPlugin {
    fn name(&self) -> &str {
        &self.plugin.spec().name
    }

    async fn provide(&self, repository: &str) -> Result<Provided, ProviderError> {
        // The plugin's error names the plugin and the call; it holds no secret, since a
        // provider's answer is never part of one.
        self.plugin.provide(repository).await.map_err(|e| ProviderError { provider: self.name().to_owned(), message: e.to_string() })
    }
}
