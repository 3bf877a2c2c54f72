//! Outbound HTTP for plugins (`wasi:http/outgoing-handler`), only to the hosts their grants
//! list. The host sends every request itself: it checks the authority against the grants,
//! resolves the name, refuses special addresses (loopback, link-local and so the cloud metadata
//! service, unspecified, multicast) unless a grant names that very IP, and then connects to the
//! address it vetted, so a name that resolves differently a moment later (DNS rebinding) gains
//! nothing. A refused request is an error the plugin sees, and a warning in the agent's log.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::uri::Scheme;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tracing::warn;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use crate::spec::HostGrant;

type ResponseFuture = Box<dyn Future<Output = Result<(), Error>> + Send>;
type SendResult = wasmtime_wasi_http::Result<(http::Response<WasiBody>, ResponseFuture)>;

/// The egress policy of one plugin instance; cloning shares it.
#[derive(Clone)]
pub(crate) struct Egress {
    plugin: Arc<str>,
    grants: Arc<[HostGrant]>,
    /// The end of the call in progress: it bounds resolving, connecting and waiting for the
    /// response head, whatever the plugin asks for.
    deadline: Instant,
}

impl Egress {
    pub(crate) fn new(plugin: String, grants: Vec<HostGrant>) -> Self {
        Egress { plugin: plugin.into(), grants: grants.into(), deadline: Instant::now() }
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

    /// The addresses a request to `host:port` may connect to, in resolver order.
    async fn vet(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, Error> {
        let authority = format!("{host}:{port}");
        let grants: Vec<&HostGrant> = self.grants.iter().filter(|g| g.covers(host, port)).collect();
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

    async fn send(self, mut request: http::Request<WasiBody>, options: Option<RequestOptions>) -> SendResult {
        let uri = request.uri().clone();
        let authority = uri.authority().ok_or(Error::HttpRequestUriInvalid)?;
        let tls = uri.scheme() == Some(&Scheme::HTTPS);
        let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
        let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let addrs = self.vet(&host, port).await?;

        let remaining = self.remaining();
        let connect_timeout = options.and_then(|o| o.connect_timeout).unwrap_or(remaining).min(remaining);
        let first_byte_timeout = options.and_then(|o| o.first_byte_timeout).unwrap_or(remaining).min(remaining);
        let stream = connect(&addrs, connect_timeout).await?;

        // The request line carries only the path; the Host header (set by wasi-http) keeps the
        // name the plugin asked for.
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        *request.uri_mut() = http::Uri::try_from(path).map_err(|_| Error::HttpRequestUriInvalid)?;

        let response = if tls {
            let name = ServerName::try_from(host.clone()).map_err(|_| Error::HttpRequestUriInvalid)?;
            let stream = tls_connector().connect(name, stream).await.map_err(Error::Tls)?;
            exchange(TokioIo::new(stream), request, first_byte_timeout).await?
        } else {
            exchange(TokioIo::new(stream), request, first_byte_timeout).await?
        };
        let response = response.map(|body| body.map_err(Error::from).boxed_unsync());
        Ok((response, Box::new(async { Ok(()) })))
    }
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

fn tls_connector() -> tokio_rustls::TlsConnector {
    let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.into() };
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
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
        let mut egress = Egress::new("p".into(), grants);
        egress.set_deadline(Instant::now() + Duration::from_secs(1));
        assert!(matches!(egress.vet("localhost", 8080).await, Err(Error::DestinationIpProhibited)));
        assert!(matches!(egress.vet("example.org", 80).await, Err(Error::HttpRequestDenied)));
        assert_eq!(egress.vet("127.0.0.1", 9090).await.unwrap(), vec!["127.0.0.1:9090".parse().unwrap()]);
    }
}
