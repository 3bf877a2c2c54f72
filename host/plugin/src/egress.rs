//! Outbound HTTP for plugins (`wasi:http/outgoing-handler`), only to the hosts their grants
//! list. The host sends every request itself: it checks the authority against the grants,
//! resolves the name, refuses special addresses (loopback, link-local and so the cloud metadata
//! service, unspecified, multicast) unless a grant names that very IP, and then connects to the
//! address it vetted, so a name that resolves differently a moment later (DNS rebinding) gains
//! nothing. A refused request is an error the plugin sees, and a warning in the agent's log.
//!
//! A grant with TLS settings makes the host speak TLS to that host with them: its CA instead of
//! the public roots, its client certificate (read at each connection, so a renewed one is used
//! at once), and plain `http://` to it is refused, so the plugin cannot send in clear what the
//! grant meant to protect. A Unix socket is reached the same way, named as the URL's host with
//! each `/` written as `~` (`http://~run~podman~podman.sock/...`), and only if granted by its
//! exact path.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::uri::Scheme;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tracing::warn;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use crate::spec::{HostGrant, TlsGrant};

type ResponseFuture = Box<dyn Future<Output = Result<(), Error>> + Send>;
type SendResult = wasmtime_wasi_http::Result<(http::Response<WasiBody>, ResponseFuture)>;

/// The egress policy of one plugin instance; cloning shares it.
#[derive(Clone)]
pub(crate) struct Egress {
    plugin: Arc<str>,
    grants: Arc<[HostGrant]>,
    sockets: Arc<[PathBuf]>,
    /// The end of the call in progress: it bounds resolving, connecting and waiting for the
    /// response head, whatever the plugin asks for.
    deadline: Instant,
}

impl Egress {
    pub(crate) fn new(plugin: String, grants: Vec<HostGrant>, sockets: Vec<PathBuf>) -> Self {
        Egress { plugin: plugin.into(), grants: grants.into(), sockets: sockets.into(), deadline: Instant::now() }
    }

    pub(crate) fn set_deadline(&mut self, deadline: Instant) {
        self.deadline = deadline;
    }

    /// What is left of the call's time.
    fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
}

/// Whether an address is one a plugin reaches only by a grant naming it.
pub(crate) fn is_special(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                // Alibaba Cloud's metadata service lives outside link-local.
                || v4.octets() == [100, 100, 100, 200]
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_special(IpAddr::V4(v4));
            }
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || v6.is_unicast_link_local()
                // AWS's IPv6 metadata address.
                || v6.segments()[..4] == [0xfd00, 0x0ec2, 0, 0]
        }
    }
}

impl Egress {
    fn refuse(&self, authority: &str, why: &str, error: Error) -> Error {
        warn!(plugin = %self.plugin, destination = authority, "refused an outbound HTTP request: {why}");
        error
    }

    /// The grants covering `host:port`.
    fn covering(&self, host: &str, port: u16) -> Vec<&HostGrant> {
        self.grants.iter().filter(|g| g.covers(host, port)).collect()
    }

    /// The addresses a request to `host:port` may connect to, in resolver order.
    async fn vet(&self, host: &str, port: u16, grants: &[&HostGrant]) -> Result<Vec<SocketAddr>, Error> {
        let authority = format!("{host}:{port}");
        if grants.is_empty() {
            return Err(self.refuse(&authority, "the host is not in the plugin's allowedHosts", Error::HttpRequestDenied));
        }
        let resolved: Vec<SocketAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => match tokio::time::timeout(self.remaining(), tokio::net::lookup_host((host, port))).await {
                Ok(Ok(addrs)) => addrs.collect(),
                Ok(Err(_)) => return Err(Error::DnsError { rcode: None, info_code: None }),
                Err(_) => return Err(Error::DnsTimeout),
            },
        };
        let allowed: Vec<SocketAddr> = resolved
            .iter()
            .copied()
            .filter(|addr| !is_special(addr.ip()) || grants.iter().any(|g| g.explicit_ip() == Some(addr.ip())))
            .collect();
        if allowed.is_empty() {
            let why = format!(
                "{host} resolves only to special addresses ({}); list the address itself in allowedHosts to allow it",
                resolved.iter().map(|a| a.ip().to_string()).collect::<Vec<_>>().join(", ")
            );
            return Err(self.refuse(&authority, &why, Error::DestinationIpProhibited));
        }
        Ok(allowed)
    }

    /// The granted socket the host names, if it names one: a socket's path with each `/`
    /// written as `~` (`~run~podman~podman.sock`), since a URL's host cannot hold a `/` nor, in
    /// the HTTP stack the host uses, a percent-encoded one. No host name starts with `~`.
    fn socket(&self, host: &str) -> Option<Result<PathBuf, Error>> {
        if !host.starts_with('~') {
            return None;
        }
        let path = host.replace('~', "/");
        // Compared as written: grants are plain paths (no `..`, no `~`), so only a grant's own
        // path matches.
        match self.sockets.iter().find(|granted| granted.as_os_str() == path.as_str()) {
            Some(granted) => Some(Ok(granted.clone())),
            None => Some(Err(self.refuse(&path, "the socket is not in the plugin's allowedSockets", Error::HttpRequestDenied))),
        }
    }

    async fn send(self, mut request: http::Request<WasiBody>, options: Option<RequestOptions>) -> SendResult {
        let uri = request.uri().clone();
        let authority = uri.authority().ok_or(Error::HttpRequestUriInvalid)?;
        let tls = uri.scheme() == Some(&Scheme::HTTPS);
        let remaining = self.remaining();
        let connect_timeout = options.as_ref().and_then(|o| o.connect_timeout).unwrap_or(remaining).min(remaining);
        let first_byte_timeout = options.as_ref().and_then(|o| o.first_byte_timeout).unwrap_or(remaining).min(remaining);
        // The request line carries only the path; the Host header (set by wasi-http) keeps the
        // name the plugin asked for.
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        *request.uri_mut() = http::Uri::try_from(path).map_err(|_| Error::HttpRequestUriInvalid)?;

        if let Some(socket) = self.socket(authority.host()) {
            let socket = socket?;
            if tls {
                // The socket's file permissions are its protection; asking for TLS on it is a
                // mistake better told than silently ignored.
                return Err(self.refuse(&socket.display().to_string(), "a Unix socket speaks plain http://", Error::HttpRequestDenied));
            }
            // A socket has no host name; servers want one all the same, and Docker's clients
            // send this one.
            request.headers_mut().insert(http::header::HOST, http::HeaderValue::from_static("localhost"));
            let stream = match tokio::time::timeout(connect_timeout, tokio::net::UnixStream::connect(&socket)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => return Err(Error::Connect(e)),
                Err(_) => return Err(Error::ConnectionTimeout),
            };
            let response = exchange(TokioIo::new(stream), request, first_byte_timeout).await?;
            return Ok(finish(response));
        }

        let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
        let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let grants = self.covering(&host, port);
        let tls_grant = grants.iter().find_map(|g| g.tls());
        if tls_grant.is_some() && !tls {
            let why = "its grant in allowedHosts has TLS settings, so only https:// may be sent to it";
            return Err(self.refuse(&format!("{host}:{port}"), why, Error::HttpRequestDenied));
        }
        let addrs = self.vet(&host, port, &grants).await?;
        let stream = connect(&addrs, connect_timeout).await?;

        let response = if tls {
            let config = client_config(tls_grant)
                .map_err(|why| self.refuse(&format!("{host}:{port}"), &why, Error::InternalError(Some(why.clone()))))?;
            let name = tls_grant.and_then(|t| t.server_name.clone()).unwrap_or_else(|| host.clone());
            let name = ServerName::try_from(name).map_err(|_| Error::HttpRequestUriInvalid)?;
            let stream = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, stream).await.map_err(Error::Tls)?;
            exchange(TokioIo::new(stream), request, first_byte_timeout).await?
        } else {
            exchange(TokioIo::new(stream), request, first_byte_timeout).await?
        };
        Ok(finish(response))
    }
}

/// The response as wasi-http hands it to the guest.
fn finish(response: http::Response<hyper::body::Incoming>) -> (http::Response<WasiBody>, ResponseFuture) {
    let response = response.map(|body| body.map_err(Error::from).boxed_unsync());
    (response, Box::new(async { Ok(()) }))
}

async fn connect(addrs: &[SocketAddr], timeout: Duration) -> Result<TcpStream, Error> {
    let mut last = Error::ConnectionRefused;
    for addr in addrs {
        match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(e)) => last = Error::Connect(e),
            Err(_) => last = Error::ConnectionTimeout,
        }
    }
    Err(last)
}

/// The TLS client for a connection: the public web roots and no client certificate, or what the
/// host's grant says. An error names the file at fault.
fn client_config(grant: Option<&TlsGrant>) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions");
    let roots = match grant.and_then(|g| g.ca_file.as_deref()) {
        None => rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.into() },
        Some(ca_file) => {
            let mut roots = rustls::RootCertStore::empty();
            for certificate in certificates(ca_file)? {
                roots.add(certificate).map_err(|e| format!("caFile {}: {e}", ca_file.display()))?;
            }
            roots
        }
    };
    let builder = builder.with_root_certificates(roots);
    match grant.map(|g| (g.cert_file.as_deref(), g.key_file.as_deref())) {
        Some((Some(cert_file), Some(key_file))) => {
            use rustls::pki_types::PrivateKeyDer;
            use rustls::pki_types::pem::PemObject;
            let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| format!("keyFile {}: no private key: {e}", key_file.display()))?;
            builder.with_client_auth_cert(certificates(cert_file)?, key).map_err(|e| format!("certFile {}: {e}", cert_file.display()))
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}

/// The PEM certificates of `path`, at least one.
fn certificates(path: &Path) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let certificates = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certificates.is_empty() {
        return Err(format!("{}: no PEM certificate in it", path.display()));
    }
    Ok(certificates)
}

/// Sends one request on a fresh HTTP/1.1 connection; the connection is driven by its own task
/// for as long as the plugin reads the body.
async fn exchange<S>(
    io: S,
    request: http::Request<WasiBody>,
    first_byte_timeout: Duration,
) -> Result<http::Response<hyper::body::Incoming>, Error>
where
    S: hyper::rt::Read + hyper::rt::Write + Send + Unpin + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(connection);
    match tokio::time::timeout(first_byte_timeout, sender.send_request(request)).await {
        Ok(response) => Ok(response?),
        Err(_) => Err(Error::ConnectionReadTimeout),
    }
}

impl WasiHttpHooks for Egress {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _response_errors: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        Box::new(self.clone().send(request, options))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_addresses_are_refused_unless_named() {
        for ip in ["127.0.0.1", "169.254.169.254", "0.0.0.0", "::1", "fe80::1", "::ffff:127.0.0.1", "fd00:ec2::254", "100.100.100.200"] {
            assert!(is_special(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["10.0.0.5", "192.0.2.1", "2001:db8::1"] {
            assert!(!is_special(ip.parse().unwrap()), "{ip}");
        }
    }

    #[tokio::test]
    async fn a_name_resolving_to_loopback_is_refused_but_the_listed_address_is_not() {
        let grants = vec!["localhost:8080".parse().unwrap(), "127.0.0.1:9090".parse().unwrap()];
        let mut egress = Egress::new("p".into(), grants, Vec::new());
        egress.set_deadline(Instant::now() + Duration::from_secs(1));
        let vet = |host: &'static str, port| {
            let egress = egress.clone();
            async move { egress.vet(host, port, &egress.covering(host, port)).await }
        };
        assert!(matches!(vet("localhost", 8080).await, Err(Error::DestinationIpProhibited)));
        assert!(matches!(vet("example.org", 80).await, Err(Error::HttpRequestDenied)));
        assert_eq!(vet("127.0.0.1", 9090).await.unwrap(), vec!["127.0.0.1:9090".parse().unwrap()]);
    }

    #[test]
    fn a_socket_is_reached_only_by_its_exact_granted_path() {
        let egress = Egress::new("p".into(), Vec::new(), vec!["/run/podman/podman.sock".into()]);
        assert!(egress.socket("podman.example").is_none(), "a host name is not a socket");
        assert_eq!(egress.socket("~run~podman~podman.sock").unwrap().unwrap(), Path::new("/run/podman/podman.sock"));
        for other in [
            "~run~docker.sock",
            "~run~podman~..~..~run~docker.sock",
            "~run~podman~.~podman.sock",
            "~RUN~podman~podman.sock",
            "~run~podman~podman.sock~",
        ] {
            assert!(matches!(egress.socket(other), Some(Err(Error::HttpRequestDenied))), "{other}");
        }
    }
}
