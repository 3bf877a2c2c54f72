//! A certificate authority of a test's own, as an etcd cluster on a private CA has: member
//! certificates (server and peer) and a client certificate per node, written as PEM files.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};

/// The CA and the directory its files are written to.
pub struct Pki {
    issuer: CertifiedIssuer<'static, KeyPair>,
    dir: PathBuf,
}

/// A certificate and its key, as files.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The PEM certificate.
    pub cert: PathBuf,
    /// Its PEM private key.
    pub key: PathBuf,
}

impl Pki {
    /// A fresh CA, `ca.crt` in `dir`.
    pub fn new(dir: &Path) -> Pki {
        std::fs::create_dir_all(dir).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, "staticlet-test-etcd-ca");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        std::fs::write(dir.join("ca.crt"), issuer.pem()).unwrap();
        Pki { issuer, dir: dir.to_owned() }
    }

    /// The CA's certificate.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// A member's certificate for 127.0.0.1 and localhost, good for serving and for the
    /// connections etcd makes itself (its peers, its own gateway).
    pub fn member(&self, name: &str) -> Issued {
        self.issue(name, &["127.0.0.1", "localhost"], &[ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth])
    }

    /// A client certificate whose common name is `name` (a node, or the test's own `root`).
    pub fn client(&self, name: &str) -> Issued {
        self.issue(name, &[], &[ExtendedKeyUsagePurpose::ClientAuth])
    }

    fn issue(&self, name: &str, sans: &[&str], usages: &[ExtendedKeyUsagePurpose]) -> Issued {
        let mut params = CertificateParams::new(sans.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = usages.to_vec();
        let key = KeyPair::generate().unwrap();
        let certificate = params.signed_by(&key, &self.issuer).unwrap();
        let issued = Issued { cert: self.dir.join(format!("{name}.crt")), key: self.dir.join(format!("{name}.key")) };
        std::fs::write(&issued.cert, certificate.pem()).unwrap();
        std::fs::write(&issued.key, key.serialize_pem()).unwrap();
        issued
    }
}
