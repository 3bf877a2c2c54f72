//! The kubelet port's self-signed serving pair, made on first use when no certificate is
//! configured, as the kubelet makes its own under `/var/lib/kubelet/pki`.

use std::path::PathBuf;

use super::write_atomic;

/// The self-signed pair could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SelfSignedError {
    /// rcgen could not make the certificate.
    #[error("making a self-signed serving certificate: {0}")]
    Generate(String),
    /// A file of the pair could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Makes the self-signed pair (certificate, key) for `names` unless both files are there; the
/// key is written 0600, as every file [`write_atomic`] makes.
///
/// # Errors
///
/// [`SelfSignedError`] naming the file that could not be written.
pub fn ensure_self_signed((cert, key): &(PathBuf, PathBuf), names: &[String]) -> Result<(), SelfSignedError> {
    if cert.exists() && key.exists() {
        return Ok(());
    }
    let made = rcgen::generate_simple_self_signed(names.to_vec()).map_err(|e| SelfSignedError::Generate(e.to_string()))?;
    let write = |path: &PathBuf, pem: String| {
        write_atomic(path, pem.as_bytes()).map_err(|source| SelfSignedError::Io { path: path.clone(), source })
    };
    write(key, made.signing_key.serialize_pem())?;
    write(cert, made.cert.pem())
}
