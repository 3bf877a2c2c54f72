//! The registry side: pushes and pulls over the OCI distribution API with the node's registry
//! credentials.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{DigestError, OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth as WireAuth;
use oci_client::{Client, Reference};
use staticlet_credentials::Credentials;
use staticlet_runtime::RegistryAuth;

use crate::media::{DOCKER_MANIFEST, OCI_MANIFEST};
use crate::signature::{PublicKey, signature_tag};
use crate::store::pinned;
use crate::{Artifact, ArtifactError, Store, media, sha256_digest};

/// How long a registry may take to accept a connection, and to send the next bytes of an answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// A registry client with the node's credentials: the docker config files the kubelet reads
/// and its credential provider executables, tried in the kubelet's order.
pub struct Registry {
    credentials: Arc<Credentials>,
}

impl Registry {
    /// A client presenting `credentials`.
    pub fn new(credentials: Arc<Credentials>) -> Registry {
        // oci-client is built with no TLS crypto of its own, so that it uses ring like every
        // other TLS connection here; installing it twice is harmless (the first one stays).
        let _ = rustls::crypto::ring::default_provider().install_default();
        Registry { credentials }
    }

    /// Pulls `reference` into `store` and loads it from there, so a pull is checked exactly as a
    /// later offline load is. With a tag, the manifest is fetched by the tag, and a pinned
    /// digest the tag no longer names is refused with both digests. With `key`, the cosign
    /// signature (`sha256-<hex>.sig`) is pulled too.
    ///
    /// # Errors
    ///
    /// The registry's error, a digest that does not match, an artifact that is not a plugin, or
    /// a signature that does not verify.
    pub async fn pull(&self, store: &Store, reference: &Reference, key: Option<&PublicKey>) -> Result<Artifact, ArtifactError> {
        let by = match reference.tag() {
            Some(tag) => Reference::with_tag(reference.registry().into(), reference.repository().into(), tag.into()),
            None => reference.clone(),
        };
        let manifest = self.manifest(reference, &by).await?;
        let found = sha256_digest(&manifest);
        if let Some(expected) = reference.digest().filter(|pin| *pin != found) {
            return Err(ArtifactError::DigestMismatch { reference: reference.whole(), expected: expected.to_owned(), found });
        }
        let layer =
            media::component_layer(&manifest).map_err(|message| ArtifactError::NotAPlugin { reference: reference.whole(), message })?;
        let wasm = self.blob(reference, &layer).await?;
        store.write_blob(reference, &layer.digest, &wasm)?;
        store.write_blob(reference, &found, &manifest)?;
        if key.is_some() {
            self.pull_signatures(store, reference, &found).await?;
        }
        if let Some(tag) = reference.tag() {
            store.set_tag(reference, tag, &found)?;
        }
        // Written with its tag and the digest found, it loads as `registry/repository[:tag]@digest`.
        let loaded: Reference = pinned(reference, &found).parse().expect("a parsed reference with a digest parses");
        store.load(&loaded, key, false)
    }

    /// Stores the cosign signature manifest of `digest` and its payloads.
    async fn pull_signatures(&self, store: &Store, reference: &Reference, digest: &str) -> Result<(), ArtifactError> {
        let tag = signature_tag(digest);
        let at = Reference::with_tag(reference.registry().into(), reference.repository().into(), tag.clone());
        let Some(manifest) = self.manifest_if_any(reference, &at).await? else {
            let message = format!("{digest} is not signed: the registry has no {tag} (sign it with `cosign sign --key`)");
            return Err(ArtifactError::Signature { reference: reference.whole(), message });
        };
        let parsed = media::parse(&manifest).map_err(|message| ArtifactError::Signature { reference: reference.whole(), message })?;
        for layer in parsed.layers.iter().filter(|l| l.media_type == media::COSIGN_PAYLOAD) {
            let payload = self.blob(reference, layer).await?;
            store.write_blob(reference, &layer.digest, &payload)?;
        }
        let signatures = sha256_digest(&manifest);
        store.write_blob(reference, &signatures, &manifest)?;
        store.set_tag(reference, &tag, &signatures)
    }

    /// Pushes `wasm` as a plugin artifact to `reference`, created at `created` (RFC 3339);
    /// returns the artifact's digest.
    ///
    /// # Errors
    ///
    /// `wasm` is not a component, or the registry refused the push.
    pub async fn push(&self, reference: &Reference, wasm: Vec<u8>, created: &str) -> Result<String, ArtifactError> {
        let built = media::build(wasm, created).map_err(|message| ArtifactError::NotAPlugin { reference: reference.whole(), message })?;
        let digest = sha256_digest(&built.manifest);
        let built = &built;
        self.with_auth(reference, |client, auth| {
            Box::pin(async move {
                client.store_auth_if_needed(reference.resolve_registry(), &auth).await;
                client.push_blob(reference, built.wasm.clone(), &sha256_digest(&built.wasm)).await?;
                client.push_blob(reference, built.config.clone(), &sha256_digest(&built.config)).await?;
                client.push_manifest_raw(reference, built.manifest.clone(), http_header(OCI_MANIFEST)).await
            })
        })
        .await
        .map_err(|e| wire_error(reference, e))?;
        Ok(digest)
    }

    async fn manifest(&self, reference: &Reference, at: &Reference) -> Result<Vec<u8>, ArtifactError> {
        self.manifest_if_any(reference, at).await?.ok_or_else(|| ArtifactError::Registry {
            reference: reference.whole(),
            message: format!("the registry has no manifest {}", at.whole()),
        })
    }

    /// The manifest at `at` (a tag or digest of `reference`'s repository), `None` if the
    /// registry has none.
    async fn manifest_if_any(&self, reference: &Reference, at: &Reference) -> Result<Option<Vec<u8>>, ArtifactError> {
        let pulled = self
            .with_auth(reference, |client, auth| {
                Box::pin(async move { client.pull_manifest_raw(at, &auth, &[OCI_MANIFEST, DOCKER_MANIFEST]).await })
            })
            .await;
        match pulled {
            Ok((bytes, _)) => Ok(Some(bytes.to_vec())),
            Err(OciDistributionError::RegistryError { envelope, .. })
                if envelope.errors.iter().any(|e| e.code == OciErrorCode::ManifestUnknown) =>
            {
                Ok(None)
            }
            Err(OciDistributionError::ServerError { code: 404, .. }) => Ok(None),
            Err(failure) => Err(wire_error(reference, failure)),
        }
    }

    /// A blob, checked against the descriptor's digest as it streams in.
    async fn blob(&self, reference: &Reference, layer: &media::Descriptor) -> Result<Vec<u8>, ArtifactError> {
        let descriptor = oci_client::manifest::OciDescriptor {
            media_type: layer.media_type.clone(),
            digest: layer.digest.clone(),
            size: i64::try_from(layer.size).unwrap_or(i64::MAX),
            ..Default::default()
        };
        let descriptor = &descriptor;
        self.with_auth(reference, |client, auth| {
            Box::pin(async move {
                client.store_auth_if_needed(reference.resolve_registry(), &auth).await;
                let mut bytes = Vec::new();
                client.pull_blob(reference, descriptor, &mut bytes).await.map(|()| bytes)
            })
        })
        .await
        .map_err(|message| wire_error(reference, message))
    }

    /// Runs `call` with each of the node's credentials for `reference` in turn (anonymously if
    /// it has none) until the registry accepts one. (A boxed future rather than an async
    /// closure: the latter's future is not provably `Send` for every lifetime, which the agent's
    /// spawned reload loops need.)
    async fn with_auth<'a, T>(
        &self,
        reference: &Reference,
        call: impl Fn(Client, WireAuth) -> BoxFuture<'a, Result<T, OciDistributionError>>,
    ) -> Result<T, OciDistributionError> {
        let lookup = self.credentials.lookup(&reference.whole()).await;
        for failure in &lookup.failures {
            tracing::warn!(image = %reference.whole(), "{failure}");
        }
        let mut auths: Vec<(String, WireAuth)> =
            lookup.candidates.iter().filter_map(|c| Some((c.source.clone(), wire_auth(&c.auth)?))).collect();
        if auths.is_empty() {
            auths.push(("no credentials".into(), WireAuth::Anonymous));
        }
        let mut refused = Vec::new();
        for (source, auth) in &auths {
            let client = client(reference);
            match call(client, auth.clone()).await {
                Ok(value) => return Ok(value),
                Err(e @ (OciDistributionError::UnauthorizedError { .. } | OciDistributionError::AuthenticationFailure(_))) => {
                    refused.push(format!("{e} (with {source})"));
                }
                Err(e) => return Err(e),
            }
        }
        Err(OciDistributionError::AuthenticationFailure(refused.join("; ")))
    }
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The distribution client's error as the reference's: a digest mismatch keeps its digests.
fn wire_error(reference: &Reference, e: OciDistributionError) -> ArtifactError {
    match e {
        OciDistributionError::DigestError(DigestError::VerificationError { expected, actual }) => {
            ArtifactError::DigestMismatch { reference: reference.whole(), expected, found: actual }
        }
        e => ArtifactError::Registry { reference: reference.whole(), message: e.to_string() },
    }
}

/// A fresh client for `reference`'s registry: plain HTTP for one on loopback (as Docker and
/// containerd treat `localhost` and `127.0.0.0/8`), HTTPS with the system's CAs otherwise.
fn client(reference: &Reference) -> Client {
    let host = reference.resolve_registry().rsplit_once(':').map_or(reference.resolve_registry(), |(host, _)| host);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    Client::new(ClientConfig {
        protocol: if loopback { ClientProtocol::Http } else { ClientProtocol::Https },
        connect_timeout: Some(CONNECT_TIMEOUT),
        read_timeout: Some(READ_TIMEOUT),
        user_agent: concat!("staticlet/", env!("CARGO_PKG_VERSION")),
        ..Default::default()
    })
}

/// The node's credential as the distribution client takes it; `None` for an identity token
/// (an OAuth refresh token), which it cannot exchange.
fn wire_auth(auth: &RegistryAuth) -> Option<WireAuth> {
    use base64::Engine as _;
    if !auth.username.is_empty() || !auth.password.is_empty() {
        return Some(WireAuth::Basic(auth.username.clone(), auth.password.clone()));
    }
    if !auth.auth.is_empty() {
        let decoded = base64::engine::general_purpose::STANDARD.decode(auth.auth.trim()).ok()?;
        let (user, password) = String::from_utf8(decoded).ok()?.split_once(':').map(|(u, p)| (u.to_owned(), p.to_owned()))?;
        return Some(WireAuth::Basic(user, password));
    }
    if !auth.registry_token.is_empty() {
        return Some(WireAuth::Bearer(auth.registry_token.clone()));
    }
    None
}

fn http_header(media_type: &'static str) -> http::HeaderValue {
    http::HeaderValue::from_static(media_type)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nodes_credentials_become_basic_or_bearer_auth() {
        let basic = RegistryAuth::basic("r", "u", "p");
        assert!(matches!(wire_auth(&basic), Some(WireAuth::Basic(u, p)) if u == "u" && p == "p"));
        let encoded = RegistryAuth { auth: "dTpwOng=".into(), ..Default::default() };
        assert!(matches!(wire_auth(&encoded), Some(WireAuth::Basic(u, p)) if u == "u" && p == "p:x"));
        let token = RegistryAuth { registry_token: "t".into(), ..Default::default() };
        assert!(matches!(wire_auth(&token), Some(WireAuth::Bearer(t)) if t == "t"));
        let refresh = RegistryAuth { identity_token: "r".into(), ..Default::default() };
        assert!(wire_auth(&refresh).is_none());
    }
}
