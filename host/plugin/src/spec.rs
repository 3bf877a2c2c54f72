//! What the agent config says about one plugin: its code, its settings, what it is granted and
//! its limits. The plugin host never reads the agent config itself; the agent builds these.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The default deadline of one call into a plugin.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(1);
/// The default cap on an instance's linear memory.
pub const DEFAULT_MEMORY_LIMIT: u64 = 64 * 1024 * 1024;

/// The kinds of plugin, one WIT world each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// The `admission-validator` world.
    AdmissionValidator,
    /// The `manifest-source` world.
    ManifestSource,
    /// The `runtime-adapter` world.
    RuntimeAdapter,
    /// The `credential-provider` world (since WIT 0.2.0).
    CredentialProvider,
}

impl Kind {
    /// The WIT world's name.
    pub fn world(self) -> &'static str {
        match self {
            Kind::AdmissionValidator => "admission-validator",
            Kind::ManifestSource => "manifest-source",
            Kind::RuntimeAdapter => "runtime-adapter",
            Kind::CredentialProvider => "credential-provider",
        }
    }

    /// The world's name with its article, for messages: "an admission-validator".
    pub(crate) fn with_article(self) -> String {
        match self {
            Kind::AdmissionValidator => format!("an {self}"),
            Kind::ManifestSource | Kind::RuntimeAdapter | Kind::CredentialProvider => format!("a {self}"),
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.world())
    }
}

/// Where a plugin's component comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Code {
    /// A `.wasm` file, watched for changes.
    File(PathBuf),
    /// A component pulled from an OCI registry into the agent's store, loaded from there (and
    /// pulled again only if the store lacks it).
    Image(staticlet_oci::Image),
    /// A component built into the `staticlet` binary.
    Builtin {
        /// What logs and errors call it, `builtin:<name>`.
        name: &'static str,
        /// The component.
        wasm: &'static [u8],
        /// Its code as the build compiled it, used when it fits the running engine.
        precompiled: Option<&'static [u8]>,
    },
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Code::File(path) => write!(f, "{}", path.display()),
            Code::Image(image) => write!(f, "{image}"),
            Code::Builtin { name, .. } => write!(f, "builtin:{name}"),
        }
    }
}

/// One plugin as the agent config declares it. Its `Debug` leaves the settings out: they may
/// hold a plugin's secrets (a token, a password).
#[derive(Clone, PartialEq, Eq)]
pub struct PluginSpec {
    /// The name the config gives it; unique among plugins.
    pub name: String,
    /// Which world it must implement.
    pub kind: Kind,
    /// Its component.
    pub code: Code,
    /// The plugin's own settings, as JSON text, handed to its `init`.
    pub settings: String,
    /// What it may reach beyond its own memory.
    pub grants: Grants,
    /// Its CPU and memory bounds.
    pub limits: Limits,
}

impl fmt::Debug for PluginSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginSpec")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("code", &self.code)
            .field("settings", &format_args!("<{} bytes>", self.settings.len()))
            .field("grants", &self.grants)
            .field("limits", &self.limits)
            .finish()
    }
}

impl PluginSpec {
    /// A plugin with no settings (`{}`), nothing granted and the default limits.
    pub fn new(name: impl Into<String>, kind: Kind, code: Code) -> PluginSpec {
        PluginSpec { name: name.into(), kind, code, settings: "{}".into(), grants: Grants::default(), limits: Limits::default() }
    }
}

/// Capabilities granted to a plugin. Anything not listed is denied: no filesystem, no
/// environment, no sockets, no outbound HTTP.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// Hosts the plugin may send HTTP requests to (`wasi:http/outgoing-handler`).
    pub http_hosts: Vec<HostGrant>,
    /// Unix sockets the plugin may send HTTP requests to (Podman's API socket), each an
    /// absolute path of letters, digits, `.`, `_`, `-` and `/`. A plugin names one as the host
    /// of an `http://` URL with each `/` written as `~`:
    /// `http://~run~podman~podman.sock/v4.0.0/libpod/_ping`.
    pub unix_sockets: Vec<PathBuf>,
    /// Host directories the plugin may read, and where it sees them.
    pub read_only_dirs: Vec<DirGrant>,
}

/// A directory granted read-only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirGrant {
    /// The directory on the host.
    pub host_path: PathBuf,
    /// The path the plugin opens it by.
    pub guest_path: String,
}

/// CPU and memory bounds of every instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// How long one call may run, host calls included.
    pub call_timeout: Duration,
    /// The most linear memory one instance may hold, in bytes.
    pub memory_bytes: u64,
    /// How many calls may run at once, each on its own instance. One (the default) serializes
    /// calls on a single instance, which keeps its state between them; a runtime adapter takes
    /// more, so that one pod's long image pull never holds up another pod.
    pub concurrency: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { call_timeout: DEFAULT_CALL_TIMEOUT, memory_bytes: DEFAULT_MEMORY_LIMIT, concurrency: 1 }
    }
}

/// A host a plugin may reach over HTTP: `name`, `name:port`, `*.suffix[:port]`, or an IP literal
/// (`10.0.0.5`, `[fd00::1]:8443`). Without a port, any port is allowed.
///
/// A name is resolved by the agent and every address it resolves to is checked: loopback,
/// link-local (which holds the cloud metadata address), unspecified and other special addresses
/// are refused unless the grant is that very address written as an IP literal.
///
/// A grant may carry [`TlsGrant`] settings: the CA to trust for that host and the client
/// certificate to present to it. The agent makes the TLS connection; the plugin never sees the
/// key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostGrant {
    host: HostPattern,
    port: Option<u16>,
    tls: Option<TlsGrant>,
}

/// How the agent speaks TLS to one granted host: whom it trusts and who it is. Files are read
/// at each connection, so renewed certificates are used as soon as they are on disk.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct TlsGrant {
    /// PEM CA certificates trusted for this host instead of the public web roots.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (chain) presented to the host: mutual TLS.
    pub cert_file: Option<PathBuf>,
    /// The PEM private key of `cert_file`.
    pub key_file: Option<PathBuf>,
    /// The name the server's certificate must carry, when it is not the host the plugin asks
    /// for (a certificate for `etcd-1` served at `10.0.0.5`).
    pub server_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum HostPattern {
    Exact(String),
    Suffix(String),
    Ip(IpAddr),
}

/// A host grant that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a host grant: want `name`, `name:port`, `*.domain` or an IP address, with an optional port")]
pub struct HostGrantError(String);

impl FromStr for HostGrant {
    type Err = HostGrantError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || HostGrantError(text.to_owned());
        let text = text.trim();
        if let Ok(addr) = text.parse::<std::net::SocketAddr>() {
            return Ok(HostGrant { host: HostPattern::Ip(addr.ip()), port: Some(addr.port()), tls: None });
        }
        let unbracketed = text.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = unbracketed.parse::<IpAddr>() {
            return Ok(HostGrant { host: HostPattern::Ip(ip), port: None, tls: None });
        }
        let (host, port) = match text.rsplit_once(':') {
            Some((host, port)) => (host, Some(port.parse::<u16>().map_err(|_| error())?)),
            None => (text, None),
        };
        let host = host.to_ascii_lowercase();
        let valid_name = |name: &str| {
            !name.is_empty() && name.split('.').all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        };
        let pattern = match host.strip_prefix("*.") {
            Some(suffix) if valid_name(suffix) => HostPattern::Suffix(format!(".{suffix}")),
            None if valid_name(&host) => HostPattern::Exact(host),
            _ => return Err(error()),
        };
        Ok(HostGrant { host: pattern, port, tls: None })
    }
}

impl fmt::Display for HostGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.host, self.port) {
            (HostPattern::Exact(name), _) => f.write_str(name)?,
            (HostPattern::Suffix(suffix), _) => write!(f, "*{suffix}")?,
            (HostPattern::Ip(IpAddr::V6(ip)), Some(_)) => write!(f, "[{ip}]")?,
            (HostPattern::Ip(ip), _) => write!(f, "{ip}")?,
        }
        match self.port {
            Some(port) => write!(f, ":{port}"),
            None => Ok(()),
        }
    }
}

impl HostGrant {
    /// This grant, with the agent speaking TLS to its host as `tls` says.
    pub fn with_tls(mut self, tls: TlsGrant) -> HostGrant {
        self.tls = Some(tls);
        self
    }

    /// Its TLS settings, if it has any.
    pub fn tls(&self) -> Option<&TlsGrant> {
        self.tls.as_ref()
    }

    /// Whether a request to `host:port` (host lowercased, without brackets) is covered.
    pub fn covers(&self, host: &str, port: u16) -> bool {
        let host_matches = match &self.host {
            HostPattern::Exact(name) => name == host,
            HostPattern::Suffix(suffix) => host.ends_with(suffix.as_str()),
            HostPattern::Ip(ip) => host.parse::<IpAddr>().is_ok_and(|h| h == *ip),
        };
        host_matches && self.port.is_none_or(|p| p == port)
    }

    /// The address this grant names explicitly, if it is an IP literal: such an address is
    /// allowed even when it is loopback or link-local.
    pub fn explicit_ip(&self) -> Option<IpAddr> {
        match self.host {
            HostPattern::Ip(ip) => Some(ip),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_grants_parse_and_match() {
        let grant: HostGrant = "Policy.Example.com:8443".parse().unwrap();
        assert!(grant.covers("policy.example.com", 8443));
        assert!(!grant.covers("policy.example.com", 443));
        assert!(!grant.covers("evil.example.com", 8443));
        let any_port: HostGrant = "registry.internal".parse().unwrap();
        assert!(any_port.covers("registry.internal", 5000));
        let wildcard: HostGrant = "*.corp.example".parse().unwrap();
        assert!(wildcard.covers("a.b.corp.example", 443));
        assert!(!wildcard.covers("corp.example", 443));
        let ip: HostGrant = "127.0.0.1:9000".parse().unwrap();
        assert_eq!(ip.explicit_ip(), Some("127.0.0.1".parse().unwrap()));
        assert!(ip.covers("127.0.0.1", 9000));
        let v6: HostGrant = "[fd00::1]:8443".parse().unwrap();
        assert_eq!(v6.to_string(), "[fd00::1]:8443");
        for bad in ["", "host:port", "a..b", "*.", "ht tp"] {
            assert!(bad.parse::<HostGrant>().is_err(), "{bad:?}");
        }
    }
}
