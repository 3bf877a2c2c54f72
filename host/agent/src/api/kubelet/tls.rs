//! The kubelet port's TLS: its serving pair (given, or made once and kept under the root dir,
//! as the kubelet keeps `kubelet.crt` under `/var/lib/kubelet/pki`), the client CAs, and who a
//! client certificate says its holder is.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

use super::auth::User;

/// Why the kubelet port's TLS could not be set up; names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file holds no usable PEM.
    #[error("{path}: {message}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// rustls refused the pair or the CAs.
    #[error("{0}")]
    Rustls(String),
    /// The self-signed pair could not be made.
    #[error(transparent)]
    SelfSigned(#[from] crate::state::tls::SelfSignedError),
}

/// The server's TLS settings: `pair` (certificate, key) or the self-signed one at `made`;
/// client certificates are asked for, and checked against `client_ca` when given.
pub fn server_config(
    pair: Option<&(PathBuf, PathBuf)>,
    made: &(PathBuf, PathBuf),
    names: &[String],
    client_ca: Option<&Path>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let (cert, key) = match pair {
        Some(pair) => pair.clone(),
        None => {
            crate::state::tls::ensure_self_signed(made, names)?;
            made.clone()
        }
    };
    let chain = read_certificates(&cert)?;
    let key =
        PrivateKeyDer::from_pem_file(&key).map_err(|e| TlsError::Pem { path: key.clone(), message: format!("no private key: {e}") })?;
    let builder = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    let builder = match client_ca {
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for ca in read_certificates(path)? {
                roots.add(ca).map_err(|e| TlsError::Pem { path: path.to_owned(), message: format!("not a CA certificate: {e}") })?;
            }
            // Clients without a certificate may still come with a bearer token.
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::new(rustls::crypto::ring::default_provider()))
                .allow_unauthenticated()
                .build()
                .map_err(|e| TlsError::Rustls(format!("{}: {e}", path.display())))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|e| TlsError::Rustls(format!("{}: {e}", cert.display())))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = std::fs::read(path).map_err(|source| TlsError::Io { path: path.to_owned(), source })?;
    let certificates: Vec<_> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Pem { path: path.to_owned(), message: e.to_string() })?;
    if certificates.is_empty() {
        return Err(TlsError::Pem { path: path.to_owned(), message: "no CERTIFICATE in it".into() });
    }
    Ok(certificates)
}

/// The names a self-signed serving certificate is made for: the node name, its IP, and
/// loopback (what the kubeconfig of `staticlet kubeconfig` connects to).
pub fn serving_names(node_name: &str, node_ip: &str) -> Vec<String> {
    [node_name, node_ip, "localhost", "127.0.0.1"].map(str::to_owned).to_vec()
}

/// Who a verified client certificate names: its CommonName as the user and its
/// Organizations as the groups, as the API server reads them.
pub fn user_of(certificate: &CertificateDer<'_>) -> Option<User> {
    let (_, parsed) = x509_parser::parse_x509_certificate(certificate.as_ref()).ok()?;
    let subject = parsed.subject();
    let name = subject.iter_common_name().next()?.as_str().ok()?.to_owned();
    let groups = subject.iter_organization().filter_map(|o| o.as_str().ok().map(str::to_owned)).collect();
    Some(User { name, groups })
}
