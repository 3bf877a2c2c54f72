//! Cosign's key-based signatures, verified offline.
//!
//! `cosign sign --key` (v2; v3 with `--new-bundle-format=false`) stores a signature of the
//! artifact `sha256:<hex>` as another manifest in the same repository, tagged
//! `sha256-<hex>.sig`. Each of its layers is a "simple signing" payload naming the signed
//! digest, and carries the base64 ECDSA P-256 / SHA-256 signature of that payload's bytes in the
//! annotation `dev.cosignproject.cosign/signature`. One layer that verifies with the key and
//! names the artifact's digest is enough, as with `cosign verify --key K
//! --insecure-ignore-tlog`: the transparency log is not consulted (a node may be offline).
//!
//! The `sigstore` crate does this too, but brings its own registry client, OpenSSL or aws-lc
//! and calls its cosign support experimental; the check itself is a few lines on ring.

use base64::Engine as _;

use crate::media::{COSIGN_PAYLOAD, COSIGN_SIGNATURE_ANNOTATION, Manifest};

/// The `type` of a cosign payload.
const COSIGN_TYPE: &str = "cosign container image signature";

/// The tag cosign stores the signatures of `digest` (`sha256:<hex>`) under.
pub fn signature_tag(digest: &str) -> String {
    format!("{}.sig", digest.replace(':', "-"))
}

/// A cosign public key: an ECDSA P-256 point.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    point: Vec<u8>,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublicKey").field("sha256", &crate::sha256_digest(&self.point)).finish()
    }
}

impl PublicKey {
    /// Reads a `-----BEGIN PUBLIC KEY-----` PEM, as `cosign generate-key-pair` writes
    /// `cosign.pub` (and `openssl ec -pubout` does).
    ///
    /// # Errors
    ///
    /// Not a PEM public key, or not an ECDSA P-256 one.
    pub fn from_pem(pem: &[u8]) -> Result<PublicKey, String> {
        use x509_parser::prelude::FromDer as _;
        use x509_parser::public_key::PublicKey as Parsed;
        let (_, pem) = x509_parser::pem::parse_x509_pem(pem).map_err(|e| format!("not a PEM public key: {e}"))?;
        if pem.label != "PUBLIC KEY" {
            return Err(format!("a PEM {:?}, not a PUBLIC KEY", pem.label));
        }
        let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(&pem.contents).map_err(|e| format!("not a public key: {e}"))?;
        let p256 = x509_parser::oid_registry::OID_EC_P256;
        let curve = spki.algorithm.parameters.as_ref().and_then(|p| p.as_oid().ok());
        match spki.parsed() {
            Ok(Parsed::EC(point)) if curve.as_ref() == Some(&p256) => Ok(PublicKey { point: point.data().to_vec() }),
            Ok(Parsed::EC(_)) => Err("an elliptic-curve key on another curve than P-256, which cosign keys use".into()),
            _ => Err(format!("a {} key; cosign keys are ECDSA P-256", spki.algorithm.algorithm)),
        }
    }

    /// Whether `signature` (ASN.1 DER) signs `payload` with this key.
    fn verifies(&self, payload: &[u8], signature: &[u8]) -> bool {
        ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_ASN1, &self.point).verify(payload, signature).is_ok()
    }
}

/// Checks that `signatures` (the manifest at [`signature_tag`]) holds a signature of `digest`
/// by `key`; `blob` reads a layer's payload by its digest.
///
/// # Errors
///
/// Why no layer passes, each layer's reason.
pub fn verify(digest: &str, signatures: &[u8], key: &PublicKey, blob: impl Fn(&str) -> Result<Vec<u8>, String>) -> Result<(), String> {
    let manifest: Manifest = serde_json::from_slice(signatures).map_err(|e| format!("the signature manifest does not parse: {e}"))?;
    let mut reasons = Vec::new();
    for layer in manifest.layers.iter().filter(|l| l.media_type == COSIGN_PAYLOAD) {
        let checked = blob(&layer.digest).and_then(|payload| {
            let signature = layer.annotations.get(COSIGN_SIGNATURE_ANNOTATION).ok_or("it has no signature annotation")?;
            let signature = base64::engine::general_purpose::STANDARD
                .decode(signature.trim())
                .map_err(|e| format!("its signature is not base64: {e}"))?;
            if !key.verifies(&payload, &signature) {
                return Err("its signature does not verify with the configured key".to_owned());
            }
            let signed = signed_digest(&payload)?;
            if signed != digest {
                return Err(format!("it signs {signed}"));
            }
            Ok(())
        });
        match checked {
            Ok(()) => return Ok(()),
            Err(reason) => reasons.push(format!("layer {}: {reason}", layer.digest)),
        }
    }
    if reasons.is_empty() {
        return Err("the signature manifest has no cosign signature layer".into());
    }
    Err(format!("no signature verifies: {}", reasons.join("; ")))
}

/// The digest a cosign payload signs, after checking its type. Keys are matched without regard
/// to case, as cosign's Go decoder does (its spec spells `Docker-manifest-digest`).
fn signed_digest(payload: &[u8]) -> Result<String, String> {
    let payload: serde_json::Value = serde_json::from_slice(payload).map_err(|e| format!("its payload is not JSON: {e}"))?;
    let field = |value: &serde_json::Value, name: &str| -> Option<serde_json::Value> {
        value.as_object()?.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone())
    };
    let critical = field(&payload, "critical").ok_or("its payload has no `critical` section")?;
    let kind = field(&critical, "type").and_then(|t| t.as_str().map(str::to_owned)).unwrap_or_default();
    if kind != COSIGN_TYPE {
        return Err(format!("its payload's type is {kind:?}, not {COSIGN_TYPE:?}"));
    }
    field(&critical, "image")
        .and_then(|image| field(&image, "docker-manifest-digest"))
        .and_then(|d| d.as_str().map(str::to_owned))
        .ok_or_else(|| "its payload names no docker-manifest-digest".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A signature made by cosign itself, from sigstore-rs's tests
    /// (`src/cosign/signature_layers.rs`, `build_correct_signature_layer_without_bundle`,
    /// Apache-2.0): the public key, the payload cosign signed and its signature.
    const COSIGN_KEY: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAENptdY/l3nB0yqkXLBWkZWQwo6+cu
OSWS1X9vPavpiQOoTTGC0xX57OojUadxF1cdQmrsiReWg2Wn4FneJfa8xw==
-----END PUBLIC KEY-----
";
    const COSIGN_PAYLOAD_JSON: &str = r#"{"critical":{"identity":{"docker-reference":"registry-testing.svc.lan/busybox"},"image":{"docker-manifest-digest":"sha256:f3cfc9d0dbf931d3db4685ec659b7ac68e2a578219da4aae65427886e649b06b"},"type":"cosign container image signature"},"optional":null}"#;
    const COSIGN_SIGNATURE: &str = "MEUCIQD6q/COgzOyW0YH1Dk+CCYSt4uAhm3FDHUwvPI55zwnlwIgE0ZK58ZOWpZw8YVmBapJhBqCfdPekIknimuO0xH8Jh8=";
    const SIGNED: &str = "sha256:f3cfc9d0dbf931d3db4685ec659b7ac68e2a578219da4aae65427886e649b06b";

    fn signatures(payload: &[u8], signature: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": crate::media::OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": format!("sha256:{:064}", 0), "size": 0},
            "layers": [{"mediaType": COSIGN_PAYLOAD, "digest": crate::sha256_digest(payload), "size": payload.len(),
                        "annotations": {COSIGN_SIGNATURE_ANNOTATION: signature}}],
        }))
        .unwrap()
    }

    #[test]
    fn a_signature_cosign_made_verifies() {
        let key = PublicKey::from_pem(COSIGN_KEY.as_bytes()).unwrap();
        let payload = COSIGN_PAYLOAD_JSON.as_bytes();
        let manifest = signatures(payload, COSIGN_SIGNATURE);
        assert_eq!(verify(SIGNED, &manifest, &key, |_| Ok(payload.to_vec())), Ok(()));
    }

    #[test]
    fn another_digest_a_changed_payload_or_another_key_is_refused() {
        let key = PublicKey::from_pem(COSIGN_KEY.as_bytes()).unwrap();
        let payload = COSIGN_PAYLOAD_JSON.as_bytes();
        let manifest = signatures(payload, COSIGN_SIGNATURE);
        let other = format!("sha256:{}", "a".repeat(64));
        let err = verify(&other, &manifest, &key, |_| Ok(payload.to_vec())).unwrap_err();
        assert!(err.contains(&format!("it signs {SIGNED}")), "{err}");

        let changed = COSIGN_PAYLOAD_JSON.replace("busybox", "busybax");
        let err = verify(SIGNED, &signatures(changed.as_bytes(), COSIGN_SIGNATURE), &key, |_| Ok(changed.as_bytes().to_vec())).unwrap_err();
        assert!(err.contains("does not verify with the configured key"), "{err}");

        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(&ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        let pair =
            ring::signature::EcdsaKeyPair::from_pkcs8(&ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng).unwrap();
        let other_key = PublicKey { point: ring::signature::KeyPair::public_key(&pair).as_ref().to_vec() };
        let err = verify(SIGNED, &manifest, &other_key, |_| Ok(payload.to_vec())).unwrap_err();
        assert!(err.contains("does not verify"), "{err}");
    }

    #[test]
    fn keys_other_than_p256_are_named() {
        assert!(PublicKey::from_pem(b"hello").unwrap_err().starts_with("not a PEM public key"));
        let ed25519 =
            "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----\n";
        assert!(PublicKey::from_pem(ed25519.as_bytes()).unwrap_err().contains("cosign keys are ECDSA P-256"));
        assert_eq!(signature_tag(SIGNED), "sha256-f3cfc9d0dbf931d3db4685ec659b7ac68e2a578219da4aae65427886e649b06b.sig");
    }
}
