//! What an image pull carries besides the image: the registry credentials to present, and a
//! channel for the progress a long pull makes.

use std::fmt;

/// Credentials for one registry, as a docker config entry or a credential provider gives them
/// and as the CRI's `AuthConfig` carries them. Empty fields are absent.
///
/// Its `Debug` never shows a secret: only the registry and which fields are set.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct RegistryAuth {
    /// The registry these are for, as the config keyed them (`registry.example.com:5000`).
    pub server_address: String,
    /// A user name.
    pub username: String,
    /// The user's password.
    pub password: String,
    /// `base64(username:password)`, when given in that form.
    pub auth: String,
    /// An OAuth refresh token the registry's token service exchanges for an access token.
    pub identity_token: String,
    /// A bearer token sent to the registry as is.
    pub registry_token: String,
}

impl RegistryAuth {
    /// Username and password for `server_address`.
    pub fn basic(server_address: impl Into<String>, username: impl Into<String>, password: impl Into<String>) -> Self {
        RegistryAuth { server_address: server_address.into(), username: username.into(), password: password.into(), ..Default::default() }
    }
}

impl fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = |field: &str| if field.is_empty() { "" } else { "<redacted>" };
        f.debug_struct("RegistryAuth")
            .field("server_address", &self.server_address)
            .field("username", &set(&self.username))
            .field("password", &set(&self.password))
            .field("auth", &set(&self.auth))
            .field("identity_token", &set(&self.identity_token))
            .field("registry_token", &set(&self.registry_token))
            .finish()
    }
}

/// How far a pull has got, as far as the runtime tells: Docker reports every layer, the CRI
/// nothing until the end (its progress stays empty).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PullProgress {
    /// Layers the image has, as far as known yet.
    pub layers: u32,
    /// Layers downloaded (or found present) and extracted.
    pub layers_done: u32,
    /// Bytes to download, over the layers whose size is known.
    pub bytes_total: u64,
    /// Bytes downloaded.
    pub bytes_done: u64,
}

/// Where a runtime reports a pull's progress; the puller reads the latest value when it
/// reports to the user.
pub type PullProgressSender = tokio::sync::watch::Sender<PullProgress>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_the_registry_and_no_secret() {
        let auth = RegistryAuth { auth: "YWxpY2U6aHVudGVyMg==".into(), ..RegistryAuth::basic("reg.example.com", "alice", "hunter2") };
        let shown = format!("{auth:?}");
        assert!(shown.contains("reg.example.com"), "{shown}");
        for secret in ["alice", "hunter2", "YWxpY2U6aHVudGVyMg=="] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.contains("identity_token: \"\""), "absent fields show as empty: {shown}");
    }
}
