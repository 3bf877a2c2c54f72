//! The bearer token the streaming verbs (exec, attach, port-forward) need on the local API,
//! and the kubeconfig that carries it to kubectl.
//!
//! Reading pods stays open to whoever can reach the API; running a command in a container is
//! a write to the host, so it takes a secret that only the agent's owner (root by default) can
//! read: the token file is 0600 under `--root-dir`, as the kubelet keeps its credentials under
//! `/var/lib/kubelet`.

use std::io;
use std::path::Path;

use hyper::HeaderMap;

/// The local API's bearer token.
#[derive(Clone)]
pub struct Credential {
    token: String,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credential(..)")
    }
}

impl Credential {
    /// The token kept at `path` ([`crate::state::token`]), made the first time.
    ///
    /// # Errors
    ///
    /// The I/O error of reading, making or protecting the file.
    pub fn load_or_create(path: &Path) -> io::Result<Credential> {
        Ok(Credential { token: crate::state::token::load_or_create(path)? })
    }

    /// The token, for a client that read it from the file.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Whether the request carries this token as `Authorization: Bearer ...`. The comparison
    /// takes the same time wherever the first wrong byte is.
    pub fn accepts(&self, headers: &HeaderMap) -> bool {
        let Some(given) = bearer(headers) else { return false };
        let (given, wanted) = (given.as_bytes(), self.token.as_bytes());
        given.len() == wanted.len() && given.iter().zip(wanted).fold(0u8, |diff, (a, b)| diff | (a ^ b)) == 0
    }

    /// A kubeconfig for `server` (the kubelet port's URL, trusted through
    /// `certificate_authority` when given) that authenticates with the token, with `node` in
    /// the cluster, user and context names.
    pub fn kubeconfig(&self, server: &str, certificate_authority: Option<&[u8]>, node: &str) -> String {
        use base64::Engine as _;
        let name = format!("staticlet-{node}");
        let mut cluster = serde_json::json!({"server": server});
        if let Some(pem) = certificate_authority {
            cluster["certificate-authority-data"] = base64::engine::general_purpose::STANDARD.encode(pem).into();
        }
        let config = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": name, "cluster": cluster}],
            "users": [{"name": name, "user": {"token": self.token}}],
            "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
            "current-context": name,
        });
        staticlet_model::yaml::to_string(&config).expect("a kubeconfig always serializes")
    }
}

/// The bearer token a request carries (`Authorization: Bearer ...`), if any.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers.get(hyper::header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ").map(str::trim)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn the_token_is_made_once_private_and_checked_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api-token");
        let made = Credential::load_or_create(&path).unwrap();
        assert_eq!(made.token().len(), 64, "256 random bits in hex");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let again = Credential::load_or_create(&path).unwrap();
        assert_eq!(again.token(), made.token(), "a restart keeps the token kubeconfigs carry");

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        Credential::load_or_create(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);

        let mut headers = HeaderMap::new();
        assert!(!made.accepts(&headers));
        headers.insert(hyper::header::AUTHORIZATION, format!("Bearer {}", made.token()).parse().unwrap());
        assert!(made.accepts(&headers));
        let truncated = &made.token()[1..];
        headers.insert(hyper::header::AUTHORIZATION, format!("Bearer {truncated}").parse().unwrap());
        assert!(!made.accepts(&headers));
        headers.insert(hyper::header::AUTHORIZATION, format!("Basic {}", made.token()).parse().unwrap());
        assert!(!made.accepts(&headers));
    }
}
