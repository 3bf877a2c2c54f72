//! What a plugin may reach beyond the plain `allowedHosts` of names and addresses: hosts with
//! TLS settings (a CA of their own and a client certificate: mutual TLS, as etcd runs) and Unix
//! sockets (Podman's API). Each is shown reaching what it grants and nothing else, with the
//! `hostile` test validator making the requests (its verdict carries the answer or the error).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use staticlet_plugin::artifacts::HOSTILE;
use staticlet_plugin::{Code, HostGrant, Kind, Plugin, PluginEngine, PluginSpec, PodContext, TlsGrant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `GET url` from a plugin granted `hosts` and `sockets`: `status <code>: <body>` or
/// `error: <what the plugin saw>`.
async fn fetch(url: &str, hosts: Vec<HostGrant>, sockets: Vec<PathBuf>) -> String {
    let mut spec = PluginSpec::new("hostile", Kind::AdmissionValidator, Code::File(HOSTILE.into()));
    spec.settings = serde_json::json!({"mode": "fetch", "url": url}).to_string();
    spec.grants.http_hosts = hosts;
    spec.grants.unix_sockets = sockets;
    let plugin = Plugin::load(&PluginEngine::new("node-1", None).unwrap(), spec).await;
    let ctx = PodContext { node_name: "node-1".into(), source: "file".into(), source_uri: "p.yaml".into() };
    let pod = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "namespace": "default", "annotations": {"testing.staticlet.dev/misbehave": "true"}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}
    });
    let verdict = plugin.validate(&ctx, &pod.to_string()).await.expect("the plugin answers with a verdict");
    verdict.violations.into_iter().next().map(|v| v.message).expect("the fetch's outcome")
}

/// A CA and what it signs, written as PEM files into a directory.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
    dir: PathBuf,
}

impl Ca {
    fn new(dir: &Path, name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        std::fs::write(dir.join(format!("{name}.crt")), issuer.pem()).unwrap();
        Ca { issuer, dir: dir.to_owned() }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// A certificate for `name` (its SANs: 127.0.0.1 and `name`), and its key: `<name>.crt`,
    /// `<name>.key`.
    fn issue(&self, name: &str, usage: ExtendedKeyUsagePurpose) -> (PathBuf, PathBuf) {
        let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned(), name.to_owned()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let certificate = params.signed_by(&key, &self.issuer).unwrap();
        let (crt, pem_key) = (self.file(&format!("{name}.crt")), self.file(&format!("{name}.key")));
        std::fs::write(&crt, certificate.pem()).unwrap();
        std::fs::write(&pem_key, key.serialize_pem()).unwrap();
        (crt, pem_key)
    }
}

/// An HTTPS server on loopback with `ca`'s certificate for `name`, answering `hello from
/// <name>` — to clients with a certificate from `clients`, when given.
async fn https_server(ca: &Ca, name: &str, clients: Option<&Ca>) -> u16 {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let (crt, key) = ca.issue(name, ExtendedKeyUsagePurpose::ServerAuth);
    let chain: Vec<CertificateDer> = CertificateDer::pem_file_iter(&crt).unwrap().map(Result::unwrap).collect();
    let key = PrivateKeyDer::from_pem_file(&key).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions().unwrap();
    let builder = match clients {
        Some(clients) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(clients.issuer.der().clone()).unwrap();
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider).build().unwrap();
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(builder.with_single_cert(chain, key).unwrap()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let body = format!("hello from {name}");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (acceptor, body) = (acceptor.clone(), body.clone());
            tokio::spawn(async move {
                let Ok(mut stream) = acceptor.accept(stream).await else { return };
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let answer = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
                let _ = stream.write_all(answer.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    port
}

fn grant(host: &str, tls: Option<TlsGrant>) -> HostGrant {
    let grant: HostGrant = host.parse().unwrap();
    match tls {
        Some(tls) => grant.with_tls(tls),
        None => grant,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tls_grant_reaches_its_host_with_its_files_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let (cluster, stranger) = (Ca::new(dir.path(), "cluster-ca"), Ca::new(dir.path(), "stranger-ca"));
    let (node_crt, node_key) = cluster.issue("node-1", ExtendedKeyUsagePurpose::ClientAuth);
    let mutual =
        TlsGrant { ca_file: Some(cluster.file("cluster-ca.crt")), cert_file: Some(node_crt), key_file: Some(node_key), server_name: None };
    // Two members of the cluster, both asking for a client certificate; and an impostor with
    // a certificate from another CA.
    let member = https_server(&cluster, "etcd-1", Some(&cluster)).await;
    let other_member = https_server(&cluster, "etcd-2", Some(&cluster)).await;
    let impostor = https_server(&stranger, "etcd-1", None).await;

    let granted = vec![grant(&format!("127.0.0.1:{member}"), Some(mutual.clone()))];
    assert_eq!(fetch(&format!("https://127.0.0.1:{member}/v3"), granted.clone(), vec![]).await, "status 200: hello from etcd-1");
    // The name the certificate carries can be asked for instead of the address.
    let by_name = TlsGrant { server_name: Some("etcd-1".into()), ..mutual.clone() };
    let named = vec![grant(&format!("127.0.0.1:{member}"), Some(by_name))];
    assert_eq!(fetch(&format!("https://127.0.0.1:{member}/"), named, vec![]).await, "status 200: hello from etcd-1");

    // The grant's files are used for its host only: the other member is not granted.
    let answer = fetch(&format!("https://127.0.0.1:{other_member}/"), granted.clone(), vec![]).await;
    assert_eq!(answer, "error: ErrorCode::HttpRequestDenied");
    // Nor can the plugin send in clear to the host its grant protects.
    assert_eq!(fetch(&format!("http://127.0.0.1:{member}/"), granted, vec![]).await, "error: ErrorCode::HttpRequestDenied");

    // Without the client certificate the member refuses the handshake.
    let ca_only = TlsGrant { cert_file: None, key_file: None, ..mutual.clone() };
    let answer = fetch(&format!("https://127.0.0.1:{member}/"), vec![grant(&format!("127.0.0.1:{member}"), Some(ca_only))], vec![]).await;
    assert!(answer.starts_with("error: "), "{answer}");
    // A host granted without a CA of its own is checked against the public roots, which do not
    // know the cluster's CA.
    let answer = fetch(&format!("https://127.0.0.1:{member}/"), vec![grant(&format!("127.0.0.1:{member}"), None)], vec![]).await;
    assert!(answer.starts_with("error: "), "{answer}");
    // The grant's CA is the only one trusted for its host: the impostor's certificate fails.
    let answer =
        fetch(&format!("https://127.0.0.1:{impostor}/"), vec![grant(&format!("127.0.0.1:{impostor}"), Some(mutual.clone()))], vec![]).await;
    assert!(answer.starts_with("error: ") && answer.contains("Tls"), "{answer}");

    // A missing key file is named in the error the plugin sees.
    let missing = TlsGrant { key_file: Some(dir.path().join("gone.key")), ..mutual };
    let answer = fetch(&format!("https://127.0.0.1:{member}/"), vec![grant(&format!("127.0.0.1:{member}"), Some(missing))], vec![]).await;
    assert!(answer.contains("gone.key"), "{answer}");
}

/// An HTTP server on a Unix socket answering `<name>: host=<Host header>`.
fn unix_server(path: &Path, name: &'static str) {
    let listener = std::os::unix::net::UnixListener::bind(path).unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 4096];
            let n = stream.read(&mut buf).unwrap_or(0);
            let head = String::from_utf8_lossy(&buf[..n]).to_lowercase();
            let host = head.lines().find_map(|l| l.strip_prefix("host: ")).unwrap_or("none").trim().to_owned();
            let body = format!("{name}: host={host}");
            let _ = write!(stream, "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
        }
    });
}

/// The URL host naming the socket at `path`.
fn encoded(path: &Path) -> String {
    path.to_str().unwrap().replace('/', "~")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_socket_grant_reaches_that_socket_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let (podman, docker) = (dir.path().join("podman.sock"), dir.path().join("docker.sock"));
    unix_server(&podman, "podman");
    unix_server(&docker, "docker");
    let sockets = vec![podman.clone()];

    let answer = fetch(&format!("http://{}/v4.0.0/libpod/_ping", encoded(&podman)), vec![], sockets.clone()).await;
    assert_eq!(answer, "status 200: podman: host=localhost");
    // The socket next to it, the same one reached through `..`, and any TCP host are not.
    assert_eq!(fetch(&format!("http://{}/_ping", encoded(&docker)), vec![], sockets.clone()).await, "error: ErrorCode::HttpRequestDenied");
    let around = dir.path().join("x/../docker.sock");
    assert_eq!(fetch(&format!("http://{}/_ping", encoded(&around)), vec![], sockets.clone()).await, "error: ErrorCode::HttpRequestDenied");
    assert_eq!(fetch("http://127.0.0.1:9/", vec![], sockets.clone()).await, "error: ErrorCode::HttpRequestDenied");
    // A socket speaks plain HTTP: TLS asked of it is refused, not silently dropped.
    assert_eq!(fetch(&format!("https://{}/_ping", encoded(&podman)), vec![], sockets).await, "error: ErrorCode::HttpRequestDenied");
    // Without the grant, not even the socket.
    assert_eq!(fetch(&format!("http://{}/_ping", encoded(&podman)), vec![], vec![]).await, "error: ErrorCode::HttpRequestDenied");
}
