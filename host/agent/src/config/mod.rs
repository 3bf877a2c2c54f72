//! Flags and the config file, merged into one [`Config`].
//!
//! Every setting has a kubelet-style flag and, where the kubelet has one, the kubelet's config
//! file name (`staticPodPath`, `fileCheckFrequency`, ...). Flags override the file; the file
//! overrides the defaults. Loading has two phases, as ripgrep's flags do: [`RunFlags`] is only
//! parsed, [`Config::resolve`] reads the file and fills the defaults.

pub mod plugins;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use serde::Deserialize;

pub use plugins::{AdapterConfig, PluginEntry};
pub use staticlet_model::duration::{DurationError, GoDuration};

use plugins::{ValidatorConfig, static_pod_policy};
use staticlet_runtime::handler::{CRI, DOCKER};

/// The default manifest directory, the kubelet's.
pub const DEFAULT_MANIFEST_PATH: &str = "/etc/kubernetes/manifests";
/// The default sandbox image, the kubelet's.
pub const DEFAULT_POD_INFRA_IMAGE: &str = "registry.k8s.io/pause:3.10";
/// The default state directory.
pub const DEFAULT_ROOT_DIR: &str = "/var/lib/staticlet";
/// The kubelet port, the kubelet's own.
pub const DEFAULT_KUBELET_PORT: u16 = 10250;
/// The kubelet's healthz port.
pub const DEFAULT_HEALTHZ_PORT: u16 = 10248;
/// Where the read-only API listens.
pub const DEFAULT_API_SOCKET: &str = "/run/staticlet/staticlet.sock";
const DEFAULT_FILE_CHECK_FREQUENCY: Duration = Duration::from_secs(20);

/// The flags of `staticlet run`.
#[derive(Debug, Clone, Default, Args)]
pub struct RunFlags {
    /// Agent config file (YAML), with the kubelet's config names (staticPodPath,
    /// fileCheckFrequency, ...). Flags given on the command line override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Directory (or single file) of static pod manifests. Only *.yaml, *.yml and *.json files
    /// are read; dotfiles and subdirectories are skipped. [config: staticPodPath]
    /// [default: /etc/kubernetes/manifests]
    #[arg(long, value_name = "PATH")]
    pub pod_manifest_path: Option<PathBuf>,

    /// How often the manifest directory is re-listed, on top of inotify, which misses some
    /// changes (a symlink's target, for one). [config: fileCheckFrequency] [default: 20s]
    #[arg(long, value_name = "DURATION")]
    pub file_check_frequency: Option<GoDuration>,

    /// The node name pods are bound to and named after (`<pod>-<node>`), instead of the
    /// machine's hostname. [config: nodeName]
    #[arg(long, value_name = "NAME")]
    pub hostname_override: Option<String>,

    /// The node's IP address, reported as `status.hostIP` and used as the pod address of
    /// host-network pods. [default: the source address of the default route]
    #[arg(long, value_name = "IP")]
    pub node_ip: Option<std::net::IpAddr>,

    /// The image each pod's sandbox (pause) container runs. [config: podInfraContainerImage]
    /// [default: registry.k8s.io/pause:3.10]
    #[arg(long, value_name = "IMAGE")]
    pub pod_infra_container_image: Option<String>,

    /// The kubelet's credential provider config (`CredentialProviderConfig`, a file or a
    /// directory of them): executables in --image-credential-provider-bin-dir that return
    /// registry credentials for the images they match. [config: imageCredentialProviderConfig]
    #[arg(long, value_name = "PATH")]
    pub image_credential_provider_config: Option<PathBuf>,

    /// Where the credential providers' executables are. [config: imageCredentialProviderBinDir]
    #[arg(long, value_name = "DIR")]
    pub image_credential_provider_bin_dir: Option<PathBuf>,

    /// Directory for the agent's state: emptyDir volumes and records it keeps between runs.
    /// [config: rootDir] [default: /var/lib/staticlet]
    #[arg(long, value_name = "DIR")]
    pub root_dir: Option<PathBuf>,

    /// The Unix socket the read-only API listens on (mode 0600). [default:
    /// /run/staticlet/staticlet.sock]
    #[arg(long, value_name = "PATH")]
    pub api_socket: Option<PathBuf>,

    /// The Docker engine to run pods on. [config: dockerEndpoint] [default: $DOCKER_HOST, or
    /// unix:///var/run/docker.sock]
    #[arg(long, value_name = "URL")]
    pub docker_endpoint: Option<String>,

    /// The CRI endpoint (containerd, CRI-O) to run pods on, as the kubelet's flag names it:
    /// pods run there unless a runtime class says otherwise (Docker is then not used).
    /// [config: containerRuntimeEndpoint] [default: unix:///run/containerd/containerd.sock for
    /// a runtime class whose handler is `cri`]
    #[arg(long, value_name = "URL")]
    pub container_runtime_endpoint: Option<String>,

    /// A URL serving static pods: one Pod or a PodList, YAML or JSON, polled every
    /// --http-check-frequency. [config: staticPodURL]
    #[arg(long, value_name = "URL")]
    pub manifest_url: Option<String>,

    /// Headers for the manifest URL, in the kubelet's syntax: 'a:hello,b:again'; repeatable.
    /// [config: staticPodURLHeader]
    #[arg(long, value_name = "HEADERS")]
    pub manifest_url_header: Vec<String>,

    /// How often the manifest URL is polled. [config: httpCheckFrequency] [default: 20s]
    #[arg(long, value_name = "DURATION")]
    pub http_check_frequency: Option<GoDuration>,

    /// A PEM file of CAs to trust for an HTTPS manifest URL, besides the system's.
    /// [config: staticPodURLCAFile]
    #[arg(long, value_name = "FILE")]
    pub manifest_url_ca_file: Option<PathBuf>,

    /// Also serve the read-only API over plain HTTP on this TCP port (the kubelet's read-only
    /// port; `kubectl --server http://ADDRESS:PORT` works against it). Off unless given.
    /// [config: readOnlyPort]
    #[arg(long, value_name = "PORT")]
    pub read_only_port: Option<u16>,

    /// The address the read-only port listens on. Unlike the kubelet's, it stays on loopback
    /// unless asked: the API shows every pod's spec. [config: address] [default: 127.0.0.1]
    #[arg(long, value_name = "IP")]
    pub address: Option<std::net::IpAddr>,

    /// A kubeconfig for the cluster's API server: turns mirror pods on, so the cluster shows
    /// this node's static pods. Without it staticlet is standalone and never dials out.
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,

    /// Register this node's Node object with the API server (and keep its Lease) when it does
    /// not exist. Only with --kubeconfig. [default: false]
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub register_node: Option<bool>,

    /// The kubelet port: container logs, exec, attach and port-forward over TLS, as the
    /// cluster's API server reaches them (and clients with a certificate of --client-ca-file).
    /// Served with --kubeconfig or when given; 0 turns it off. It listens on --address when
    /// given, else on every address, as the kubelet's does. [config: port] [default: 10250]
    #[arg(long, value_name = "PORT")]
    pub port: Option<u16>,

    /// The kubelet port's serving certificate (PEM, with its chain). Without it a self-signed
    /// pair is made under --root-dir/pki. [config: tlsCertFile]
    #[arg(long, value_name = "FILE")]
    pub tls_cert_file: Option<PathBuf>,

    /// The key of --tls-cert-file. [config: tlsPrivateKeyFile]
    #[arg(long, value_name = "FILE")]
    pub tls_private_key_file: Option<PathBuf>,

    /// Clients of the kubelet port presenting a certificate signed by one of these CAs are
    /// authenticated as its CommonName and Organizations, as the API server presents itself.
    /// [config: authentication.x509.clientCAFile]
    #[arg(long, value_name = "FILE")]
    pub client_ca_file: Option<PathBuf>,

    /// Authenticate bearer tokens on the kubelet port with the API server's TokenReview. Only
    /// with --kubeconfig. [config: authentication.webhook.enabled] [default: false]
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub authentication_token_webhook: Option<bool>,

    /// How requests to the kubelet port are authorized: AlwaysAllow, or Webhook (the API
    /// server's SubjectAccessReview on nodes/proxy, nodes/log, ...). [config:
    /// authorization.mode] [default: Webhook with --kubeconfig, else AlwaysAllow]
    #[arg(long, value_name = "MODE", value_enum)]
    pub authorization_mode: Option<AuthorizationMode>,

    /// The port of the kubelet's healthz endpoint: `GET /healthz` answers `ok` while the
    /// agent's sync loop goes round; 0 turns it off. [config: healthzPort] [default: 10248]
    #[arg(long, value_name = "PORT")]
    pub healthz_port: Option<u16>,

    /// The address the healthz endpoint listens on. [config: healthzBindAddress] [default:
    /// 127.0.0.1]
    #[arg(long, value_name = "IP")]
    pub healthz_bind_address: Option<std::net::IpAddr>,

    /// Log lines as human-readable text or as JSON objects, one per line. [default: text]
    #[arg(long, visible_alias = "logging-format", value_name = "FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,

    /// Log verbosity, in the kubelet's levels: up to 2 logs what happens (info), 3 and 4 add
    /// the agent's debug lines, 5 its trace lines, 6 and more the libraries' debug lines too.
    /// `STATICLET_LOG` (a `tracing` filter) wins over it. [default: 0]
    #[arg(short = 'v', long = "v", value_name = "LEVEL")]
    pub verbosity: Option<u8>,
}

/// How the kubelet port authorizes what an authenticated client asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Deserialize)]
pub enum AuthorizationMode {
    /// Every authenticated client may do everything.
    AlwaysAllow,
    /// Ask the API server with a SubjectAccessReview, as the kubelet does.
    Webhook,
}

/// The kubelet port's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeletServer {
    /// Where it listens.
    pub address: std::net::SocketAddr,
    /// The serving certificate and key, when given.
    pub tls_pair: Option<(PathBuf, PathBuf)>,
    /// The CA bundle client certificates are checked against.
    pub client_ca_file: Option<PathBuf>,
    /// Bearer tokens are checked with TokenReview.
    pub token_webhook: bool,
    /// How requests are authorized.
    pub authorization: AuthorizationMode,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for journald or a log shipper.
    Json,
}

/// The config file, in the kubelet's naming.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FileConfig {
    static_pod_path: Option<PathBuf>,
    file_check_frequency: Option<GoDuration>,
    node_name: Option<String>,
    pod_infra_container_image: Option<String>,
    /// Relative to the config file, as the kubelet's config file paths are.
    image_credential_provider_config: Option<PathBuf>,
    image_credential_provider_bin_dir: Option<PathBuf>,
    root_dir: Option<PathBuf>,
    docker_endpoint: Option<String>,
    container_runtime_endpoint: Option<String>,
    read_only_port: Option<u16>,
    address: Option<std::net::IpAddr>,
    healthz_port: Option<u16>,
    healthz_bind_address: Option<std::net::IpAddr>,
    port: Option<u16>,
    tls_cert_file: Option<PathBuf>,
    tls_private_key_file: Option<PathBuf>,
    /// The kubelet's `authentication` block: `x509.clientCAFile`, `webhook.enabled`.
    #[serde(default)]
    authentication: FileAuthentication,
    /// The kubelet's `authorization` block: `mode`.
    #[serde(default)]
    authorization: FileAuthorization,
    #[serde(rename = "staticPodURL")]
    static_pod_url: Option<String>,
    /// The kubelet's shape: each header name with its values.
    #[serde(rename = "staticPodURLHeader", default)]
    static_pod_url_header: BTreeMap<String, Vec<String>>,
    http_check_frequency: Option<GoDuration>,
    #[serde(rename = "staticPodURLCAFile")]
    static_pod_url_ca_file: Option<PathBuf>,
    /// Whether the built-in static pod policy runs first in the admission chain (default true).
    static_pod_policy: Option<bool>,
    /// `--kubeconfig`; the kubelet has it only as a flag. Relative to the config file.
    kubeconfig: Option<PathBuf>,
    /// `--register-node`, as the kubelet's config file names it.
    register_node: Option<bool>,
    /// WebAssembly plugins, in order.
    #[serde(default)]
    plugins: Vec<PluginEntry>,
    /// `spec.runtimeClassName` → a built-in runtime (`docker`, `cri`) or a runtime-adapter plugin.
    #[serde(default)]
    runtime_classes: BTreeMap<String, String>,
    /// The class of pods that name none (default `cri` with a containerRuntimeEndpoint, else
    /// `docker`).
    default_runtime_class: Option<String>,
    /// `apiVersion` and `kind`, so a KubeletConfiguration header is accepted.
    #[serde(rename = "apiVersion")]
    _api_version: Option<String>,
    #[serde(rename = "kind")]
    _kind: Option<String>,
    /// Everything else: reported, not fatal, since a kubelet config carries many settings
    /// staticlet has no use for.
    #[serde(flatten)]
    unknown: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Default, Deserialize)]
struct FileAuthentication {
    #[serde(default)]
    x509: FileX509,
    #[serde(default)]
    webhook: FileWebhook,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FileX509 {
    #[serde(rename = "clientCAFile")]
    client_ca_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
struct FileWebhook {
    enabled: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
struct FileAuthorization {
    mode: Option<AuthorizationMode>,
}

/// How long one poll of the manifest URL may take, body included.
pub const MANIFEST_URL_TIMEOUT: Duration = Duration::from_secs(10);

/// The manifest URL as the flags and the config file give it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestUrl {
    /// `--manifest-url` (`staticPodURL`).
    pub url: String,
    /// `--manifest-url-header` (`staticPodURLHeader`), in order.
    pub headers: Vec<(String, String)>,
    /// `--http-check-frequency`.
    pub check_frequency: Duration,
    /// A PEM bundle of CAs to trust besides the system's, for an HTTPS URL.
    pub ca_file: Option<PathBuf>,
}

/// Parses the kubelet's header syntax: `'a:hello,b:again'`, one flag value or several.
///
/// # Errors
///
/// The pair that has no `:`.
fn parse_headers<'a>(values: impl IntoIterator<Item = &'a str>) -> Result<Vec<(String, String)>, String> {
    let mut headers = Vec::new();
    for value in values {
        for pair in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once(':').ok_or_else(|| format!("{pair:?} is not name:value"))?;
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }
    Ok(headers)
}

/// The kubelet's credential provider executables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialProviders {
    /// Where their executables are.
    pub bin_dir: PathBuf,
    /// Each provider's settings, in the config's order.
    pub providers: Vec<staticlet_credentials::provider::config::ProviderConfig>,
}

impl CredentialProviders {
    /// The providers the flags (over the config file) name, checked as the kubelet checks
    /// them at start: the config must be valid and every executable present.
    fn resolve(flags: &RunFlags, file: &FileConfig, config_dir: &Path) -> Result<Option<Self>, ConfigError> {
        let from_file = |path: &Option<PathBuf>| path.as_ref().map(|p| config_dir.join(p));
        let config = flags.image_credential_provider_config.clone().or_else(|| from_file(&file.image_credential_provider_config));
        let bin_dir = flags.image_credential_provider_bin_dir.clone().or_else(|| from_file(&file.image_credential_provider_bin_dir));
        let fail = |message: String| ConfigError::CredentialProviders(message);
        let (config, bin_dir) = match (config, bin_dir) {
            (None, None) => return Ok(None),
            (None, Some(_)) => return Err(fail("credential provider config path is empty".into())),
            (Some(_), None) => return Err(fail("--image-credential-provider-bin-dir is required with it".into())),
            (Some(config), Some(bin_dir)) => (config, bin_dir),
        };
        if !bin_dir.is_dir() {
            return Err(fail(format!("plugin binary directory {} did not exist", bin_dir.display())));
        }
        let providers = staticlet_credentials::provider::config::load(&config).map_err(|e| fail(e.to_string()))?;
        for provider in &providers {
            if !bin_dir.join(&provider.name).is_file() {
                return Err(fail(format!("plugin binary executable {} did not exist", bin_dir.join(&provider.name).display())));
            }
        }
        Ok(Some(CredentialProviders { bin_dir, providers }))
    }
}

/// The agent's settings, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Manifest directory or file.
    pub static_pod_path: PathBuf,
    /// Re-list period of the manifest directory.
    pub file_check_frequency: Duration,
    /// Node name, lowercased.
    pub node_name: String,
    /// The node's address.
    pub node_ip: String,
    /// Sandbox image.
    pub pod_infra_container_image: String,
    /// The credential provider executables, checked.
    pub credential_providers: Option<CredentialProviders>,
    /// State directory.
    pub root_dir: PathBuf,
    /// Docker endpoint.
    pub docker_endpoint: String,
    /// The socket of the `cri` handler's endpoint.
    pub cri_socket: PathBuf,
    /// The API's Unix socket.
    pub api_socket: PathBuf,
    /// The manifest URL source, if one is configured.
    pub manifest_url: Option<ManifestUrl>,
    /// Where the read-only API listens on TCP, if anywhere.
    pub read_only_address: Option<std::net::SocketAddr>,
    /// Where the healthz endpoint listens, if anywhere.
    pub healthz_address: Option<std::net::SocketAddr>,
    /// The kubelet port, if served.
    pub kubelet_server: Option<KubeletServer>,
    /// The admission chain's validators, in order: the built-in policy (unless turned off),
    /// then the configured ones.
    pub validators: Vec<ValidatorConfig>,
    /// The source plugins, in config order.
    pub source_plugins: Vec<plugins::SourceConfig>,
    /// The runtime class of pods that name none; a key of `runtime_classes`.
    pub default_runtime_class: String,
    /// Runtime class → handler: [`staticlet_runtime::handler::DOCKER`], [`staticlet_runtime::handler::CRI`] or a runtime adapter's name.
    pub runtime_classes: BTreeMap<String, String>,
    /// The runtime-adapter plugins, in config order.
    pub runtime_adapters: Vec<AdapterConfig>,
    /// The credential-provider plugins, in config order (asked after the executables).
    pub credential_plugins: Vec<plugins::CredentialPluginConfig>,
    /// The API server's kubeconfig: mirror pods are on when it is set.
    pub kubeconfig: Option<PathBuf>,
    /// Whether to register the Node object (only with a kubeconfig).
    pub register_node: bool,
    /// Config file keys that were not understood, for a warning.
    pub ignored_keys: Vec<String>,
}

/// Why the configuration could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("reading config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The config file is not valid.
    #[error("config file {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, with line and column.
        source: staticlet_model::yaml::YamlError,
    },
    /// A plugin entry is not valid.
    #[error("config file {path}: {message}")]
    Plugin {
        /// The file.
        path: PathBuf,
        /// Which entry and field, and what is wrong.
        message: String,
    },
    /// `runtimeClasses` or `defaultRuntimeClass` is not valid.
    #[error("config file {path}: {message}")]
    RuntimeClasses {
        /// The file.
        path: PathBuf,
        /// Which key, and what is wrong.
        message: String,
    },
    /// The CRI endpoint is not one staticlet can dial.
    #[error("--container-runtime-endpoint (containerRuntimeEndpoint): {0}")]
    CriEndpoint(String),
    /// A `--manifest-url-header` value is not in the kubelet's syntax.
    #[error("--manifest-url-header: {0}")]
    Header(String),
    /// Only one of the serving certificate and its key is given.
    #[error("--tls-cert-file and --tls-private-key-file (tlsCertFile, tlsPrivateKeyFile) are given together or not at all")]
    TlsPair,
    /// The credential provider config or bin dir cannot be used: the agent does not start, as
    /// the kubelet does not.
    #[error("--image-credential-provider-config: {0}")]
    CredentialProviders(String),
    /// No node name given and the hostname could not be read.
    #[error("cannot work out the node name: {0}; pass --hostname-override")]
    NodeName(String),
}

impl Config {
    /// Merges flags over the config file (if `--config` names one) over the defaults.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the config file and what is wrong with it.
    pub fn resolve(flags: &RunFlags) -> Result<Config, ConfigError> {
        let file = match &flags.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let config_dir = flags.config.as_deref().and_then(Path::parent).unwrap_or(Path::new("/"));
        let kubelet_server = kubelet_server(flags, &file, config_dir)?;
        let plugin_error = |message| ConfigError::Plugin { path: flags.config.clone().unwrap_or_default(), message };
        let configured = plugins::resolve(&file.plugins, config_dir).map_err(plugin_error)?;
        let manifest_url = manifest_url(flags, &file)?;
        let runtimes = RuntimeSettings::resolve(flags, &file, &configured.adapters)?;
        let node_name = node_name(flags, &file)?;
        let credential_providers = CredentialProviders::resolve(flags, &file, config_dir)?;
        let read_only_address = read_only_address(flags, &file);
        let healthz_address = healthz_address(flags, &file);
        Ok(Config {
            static_pod_path: flags.pod_manifest_path.clone().or(file.static_pod_path).unwrap_or_else(|| DEFAULT_MANIFEST_PATH.into()),
            file_check_frequency: flags.file_check_frequency.or(file.file_check_frequency).map_or(DEFAULT_FILE_CHECK_FREQUENCY, |d| d.0),
            node_name,
            node_ip: flags.node_ip.map_or_else(default_node_ip, |ip| ip.to_string()),
            pod_infra_container_image: flags
                .pod_infra_container_image
                .clone()
                .or(file.pod_infra_container_image)
                .unwrap_or_else(|| DEFAULT_POD_INFRA_IMAGE.to_owned()),
            credential_providers,
            // Absolute, since paths under it are bind-mounted into containers.
            root_dir: absolute(flags.root_dir.clone().or(file.root_dir).unwrap_or_else(|| DEFAULT_ROOT_DIR.into())),
            docker_endpoint: flags
                .docker_endpoint
                .clone()
                .or(file.docker_endpoint)
                .unwrap_or_else(staticlet_docker::DockerRuntime::default_endpoint),
            cri_socket: runtimes.cri_socket,
            api_socket: flags.api_socket.clone().unwrap_or_else(|| DEFAULT_API_SOCKET.into()),
            manifest_url,
            read_only_address,
            healthz_address,
            kubelet_server,
            validators: validators(file.static_pod_policy, configured.validators),
            source_plugins: configured.sources,
            default_runtime_class: runtimes.default_class,
            runtime_classes: runtimes.classes,
            runtime_adapters: configured.adapters,
            credential_plugins: configured.credential_providers,
            kubeconfig: flags.kubeconfig.clone().or_else(|| file.kubeconfig.map(|path| config_dir.join(path))),
            register_node: flags.register_node.or(file.register_node).unwrap_or(false),
            ignored_keys: file.unknown.into_keys().collect(),
        })
    }
}

/// The admission chain: the built-in static pod policy first unless the file turns it off,
/// then the configured validators.
fn validators(static_pod_policy_on: Option<bool>, configured: Vec<ValidatorConfig>) -> Vec<ValidatorConfig> {
    let mut validators = Vec::new();
    if static_pod_policy_on.unwrap_or(true) {
        validators.push(static_pod_policy());
    }
    validators.extend(configured);
    validators
}

/// The manifest URL source, when a URL is given: the file's headers, then the flags'.
fn manifest_url(flags: &RunFlags, file: &FileConfig) -> Result<Option<ManifestUrl>, ConfigError> {
    let Some(url) = flags.manifest_url.clone().or(file.static_pod_url.clone()) else { return Ok(None) };
    let mut headers: Vec<(String, String)> =
        file.static_pod_url_header.iter().flat_map(|(k, vs)| vs.iter().map(move |v| (k.clone(), v.clone()))).collect();
    headers.extend(parse_headers(flags.manifest_url_header.iter().map(String::as_str)).map_err(ConfigError::Header)?);
    Ok(Some(ManifestUrl {
        url,
        headers,
        check_frequency: flags.http_check_frequency.or(file.http_check_frequency).map_or(DEFAULT_FILE_CHECK_FREQUENCY, |d| d.0),
        ca_file: flags.manifest_url_ca_file.clone().or(file.static_pod_url_ca_file.clone()),
    }))
}

/// Where pods run: the CRI endpoint's socket, and the runtime classes with their default.
struct RuntimeSettings {
    /// The socket of the `cri` handler's endpoint.
    cri_socket: PathBuf,
    /// The class of pods that name none.
    default_class: String,
    /// Runtime class → handler.
    classes: BTreeMap<String, String>,
}

impl RuntimeSettings {
    /// The CRI endpoint from the flags or the file (else containerd's), and the runtime
    /// classes checked against the built-in runtimes and the runtime `adapters`. The built-in
    /// default class is `cri` when a CRI endpoint is given, else `docker`.
    fn resolve(flags: &RunFlags, file: &FileConfig, adapters: &[AdapterConfig]) -> Result<RuntimeSettings, ConfigError> {
        let cri_endpoint = flags.container_runtime_endpoint.clone().or(file.container_runtime_endpoint.clone());
        let cri_socket = staticlet_cri::socket_of(cri_endpoint.as_deref().unwrap_or(staticlet_cri::DEFAULT_ENDPOINT))
            .map_err(ConfigError::CriEndpoint)?;
        let builtin_default = if cri_endpoint.is_some() { CRI } else { DOCKER };
        let (default_class, classes) =
            runtime_classes(file.runtime_classes.clone(), file.default_runtime_class.clone(), builtin_default, adapters)
                .map_err(|message| ConfigError::RuntimeClasses { path: flags.config.clone().unwrap_or_default(), message })?;
        Ok(RuntimeSettings { cri_socket, default_class, classes })
    }
}

/// The node name from the flags or the file, else the hostname; trimmed and lowercased.
fn node_name(flags: &RunFlags, file: &FileConfig) -> Result<String, ConfigError> {
    let name = match flags.hostname_override.clone().or(file.node_name.clone()) {
        Some(name) => name,
        None => hostname().map_err(ConfigError::NodeName)?,
    };
    Ok(name.trim().to_lowercase())
}

/// The read-only port's address: on loopback unless an address is given, and off without a
/// port or with port 0, which the kubelet's config calls "off".
fn read_only_address(flags: &RunFlags, file: &FileConfig) -> Option<std::net::SocketAddr> {
    flags.read_only_port.or(file.read_only_port).filter(|port| *port != 0).map(|port| {
        let ip = flags.address.or(file.address).unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
        std::net::SocketAddr::new(ip, port)
    })
}

/// The healthz endpoint's address: the kubelet's port 10248 on loopback unless told
/// otherwise; port 0 turns it off.
fn healthz_address(flags: &RunFlags, file: &FileConfig) -> Option<std::net::SocketAddr> {
    let port = flags.healthz_port.or(file.healthz_port).unwrap_or(DEFAULT_HEALTHZ_PORT);
    let ip = flags.healthz_bind_address.or(file.healthz_bind_address).unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
    (port != 0).then_some(std::net::SocketAddr::new(ip, port))
}

/// Checks the runtime classes: names a RuntimeClass could have, handlers that exist, and a
/// default that is a class. The built-in default (`docker`, or `cri` when a CRI endpoint is
/// given) is a class of its own when it is the default and no class of that name is listed.
fn runtime_classes(
    mut classes: BTreeMap<String, String>,
    default: Option<String>,
    builtin_default: &str,
    adapters: &[AdapterConfig],
) -> Result<(String, BTreeMap<String, String>), String> {
    let handlers = || [DOCKER, CRI].into_iter().chain(adapters.iter().map(|a| a.spec.name.as_str())).collect::<Vec<_>>().join(", ");
    for (class, handler) in &classes {
        if !is_dns_subdomain(class) {
            return Err(format!("runtimeClasses: {class:?} is not a RuntimeClass name (lowercase letters, digits, '-' and '.')"));
        }
        if handler != DOCKER && handler != CRI && !adapters.iter().any(|a| &a.spec.name == handler) {
            return Err(format!(
                "runtimeClasses.{class}: {handler:?} is neither a built-in runtime nor a runtime-adapter plugin in plugins:; the handlers are {}",
                handlers()
            ));
        }
    }
    let default = default.unwrap_or_else(|| builtin_default.to_owned());
    if !classes.contains_key(&default) {
        if default != builtin_default {
            let known = classes.keys().cloned().collect::<Vec<_>>().join(", ");
            return Err(format!("defaultRuntimeClass: {default:?} is not in runtimeClasses (it has: {known})"));
        }
        classes.insert(default.clone(), default.clone());
    }
    Ok((default, classes))
}

/// The kubelet port: on with a kubeconfig (the API server reaches the node there) or when a
/// port is given; the file's paths are relative to the file.
fn kubelet_server(flags: &RunFlags, file: &FileConfig, config_dir: &Path) -> Result<Option<KubeletServer>, ConfigError> {
    let with_kubeconfig = flags.kubeconfig.is_some() || file.kubeconfig.is_some();
    let Some(port) = flags.port.or(file.port).or(with_kubeconfig.then_some(DEFAULT_KUBELET_PORT)).filter(|port| *port != 0) else {
        return Ok(None);
    };
    let ip = flags.address.or(file.address).unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
    let from_file = |path: &Option<PathBuf>| path.as_ref().map(|p| config_dir.join(p));
    let cert = flags.tls_cert_file.clone().or_else(|| from_file(&file.tls_cert_file));
    let key = flags.tls_private_key_file.clone().or_else(|| from_file(&file.tls_private_key_file));
    if cert.is_some() != key.is_some() {
        return Err(ConfigError::TlsPair);
    }
    Ok(Some(KubeletServer {
        address: std::net::SocketAddr::new(ip, port),
        tls_pair: cert.zip(key),
        client_ca_file: flags.client_ca_file.clone().or_else(|| from_file(&file.authentication.x509.client_ca_file)),
        token_webhook: flags.authentication_token_webhook.or(file.authentication.webhook.enabled).unwrap_or(false),
        authorization: flags.authorization_mode.or(file.authorization.mode).unwrap_or(if with_kubeconfig {
            AuthorizationMode::Webhook
        } else {
            AuthorizationMode::AlwaysAllow
        }),
    }))
}

fn is_dns_subdomain(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// The source address of the default route, as the kubelet picks a node address when none is
/// given; loopback on a host with no route.
fn default_node_ip() -> String {
    std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| {
            // Connecting a UDP socket sends nothing; it only picks the route and source address.
            s.connect("192.0.2.1:9")?;
            s.local_addr()
        })
        .map_or_else(|_| "127.0.0.1".to_owned(), |a| a.ip().to_string())
}

fn absolute(path: PathBuf) -> PathBuf {
    std::path::absolute(&path).unwrap_or(path)
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
    if text.trim().is_empty() {
        return Ok(FileConfig::default());
    }
    staticlet_model::yaml::from_str(&text).map_err(|source| ConfigError::Parse { path: path.to_owned(), source })
}

fn hostname() -> Result<String, String> {
    let text = std::fs::read_to_string("/proc/sys/kernel/hostname").map_err(|e| e.to_string())?;
    let name = text.trim();
    if name.is_empty() { Err("the hostname is empty".to_owned()) } else { Ok(name.to_owned()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_use_the_kubelets_syntax() {
        let headers = parse_headers(["a:hello,b:again", "b: beautiful"]).unwrap();
        assert_eq!(headers, [("a", "hello"), ("b", "again"), ("b", "beautiful")].map(|(k, v)| (k.to_owned(), v.to_owned())));
        assert!(parse_headers(["novalue"]).unwrap_err().contains("novalue"));
    }

    fn write(text: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        file
    }

    #[test]
    fn flags_override_file_override_defaults() {
        let file = write(
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nstaticPodPath: /srv/pods\nfileCheckFrequency: 1m30s\nnodeName: Edge-1\ncgroupDriver: systemd\n",
        );
        let flags =
            RunFlags { config: Some(file.path().to_owned()), file_check_frequency: Some("5s".parse().unwrap()), ..Default::default() };
        let config = Config::resolve(&flags).unwrap();
        assert_eq!(config.static_pod_path, PathBuf::from("/srv/pods"));
        assert_eq!(config.file_check_frequency, Duration::from_secs(5));
        assert_eq!(config.node_name, "edge-1");
        assert_eq!(config.pod_infra_container_image, DEFAULT_POD_INFRA_IMAGE);
        assert_eq!(config.root_dir, PathBuf::from(DEFAULT_ROOT_DIR));
        assert_eq!(config.ignored_keys, vec!["cgroupDriver".to_owned()]);
    }

    #[test]
    fn file_durations_use_kubelet_syntax() {
        let file = write("fileCheckFrequency: 1m30s\nnodeName: node-1\n");
        let config = Config::resolve(&RunFlags { config: Some(file.path().to_owned()), ..Default::default() }).unwrap();
        assert_eq!(config.file_check_frequency, Duration::from_secs(90));
        let bad = write("fileCheckFrequency: 90\n");
        let err = Config::resolve(&RunFlags { config: Some(bad.path().to_owned()), ..Default::default() }).unwrap_err();
        assert!(err.to_string().contains(&bad.path().display().to_string()), "{err}");
    }

    #[test]
    fn runtime_classes_map_to_docker_or_an_adapter_and_name_a_default() {
        let plain = Config::resolve(&RunFlags { hostname_override: Some("n".into()), ..Default::default() }).unwrap();
        assert_eq!(plain.default_runtime_class, "docker");
        assert_eq!(plain.runtime_classes, BTreeMap::from([("docker".to_owned(), "docker".to_owned())]));

        let adapter = "plugins:\n- {name: podman, kind: runtime-adapter, path: p.wasm, allowedHosts: [127.0.0.1:8888]}\n";
        let file = write(&format!("nodeName: node-1\n{adapter}runtimeClasses: {{podman: podman}}\n"));
        let both = Config::resolve(&RunFlags { config: Some(file.path().to_owned()), ..Default::default() }).unwrap();
        assert_eq!(both.runtime_classes.keys().collect::<Vec<_>>(), ["docker", "podman"], "docker stays the default class");
        assert_eq!(both.runtime_adapters[0].spec.name, "podman");

        let file = write(&format!("nodeName: node-1\n{adapter}runtimeClasses: {{podman: podman}}\ndefaultRuntimeClass: podman\n"));
        let only = Config::resolve(&RunFlags { config: Some(file.path().to_owned()), ..Default::default() }).unwrap();
        assert_eq!((only.default_runtime_class.as_str(), only.runtime_classes.len()), ("podman", 1), "no Docker unless named");

        for (yaml, wanted) in [
            ("runtimeClasses: {podman: podmn}\n", "runtimeClasses.podman: \"podmn\" is neither"),
            ("runtimeClasses: {Podman: docker}\n", "runtimeClasses: \"Podman\" is not a RuntimeClass name"),
            ("defaultRuntimeClass: kata\n", "defaultRuntimeClass: \"kata\" is not in runtimeClasses"),
        ] {
            let file = write(&format!("nodeName: node-1\n{yaml}"));
            let err = Config::resolve(&RunFlags { config: Some(file.path().to_owned()), ..Default::default() }).unwrap_err().to_string();
            assert!(err.contains(wanted), "{yaml}: {err}");
        }
    }

    #[test]
    fn the_kubelet_port_is_served_with_a_kubeconfig_or_when_asked_as_the_kubelet_configures_it() {
        let standalone = Config::resolve(&RunFlags { hostname_override: Some("n".into()), ..Default::default() }).unwrap();
        assert_eq!(standalone.kubelet_server, None);

        let file = write(
            "nodeName: node-1\nkubeconfig: node.kubeconfig\nauthentication:\n  x509: {clientCAFile: ca.crt}\n  webhook: {enabled: true}\n",
        );
        let cluster =
            Config::resolve(&RunFlags { config: Some(file.path().to_owned()), ..Default::default() }).unwrap().kubelet_server.unwrap();
        assert_eq!(cluster.address, "0.0.0.0:10250".parse().unwrap(), "the kubelet's port, on every address");
        assert_eq!(cluster.client_ca_file, Some(file.path().parent().unwrap().join("ca.crt")));
        assert!(cluster.token_webhook);
        assert_eq!(cluster.authorization, AuthorizationMode::Webhook, "the API server decides, when there is one");

        let flags = RunFlags {
            hostname_override: Some("n".into()),
            port: Some(10443),
            address: Some("127.0.0.1".parse().unwrap()),
            ..Default::default()
        };
        let local = Config::resolve(&flags).unwrap().kubelet_server.unwrap();
        assert_eq!((local.address, local.authorization), ("127.0.0.1:10443".parse().unwrap(), AuthorizationMode::AlwaysAllow));

        let off = RunFlags { config: Some(file.path().to_owned()), port: Some(0), ..Default::default() };
        assert_eq!(Config::resolve(&off).unwrap().kubelet_server, None, "port 0 is off");
        let half =
            RunFlags { port: Some(10250), tls_cert_file: Some("c.crt".into()), hostname_override: Some("n".into()), ..Default::default() };
        assert!(matches!(Config::resolve(&half), Err(ConfigError::TlsPair)));
    }

    #[test]
    fn mirror_pods_are_off_unless_a_kubeconfig_is_given() {
        let standalone = Config::resolve(&RunFlags { hostname_override: Some("n".into()), ..Default::default() }).unwrap();
        assert_eq!((standalone.kubeconfig, standalone.register_node), (None, false));

        let file = write("nodeName: node-1\nkubeconfig: node.kubeconfig\nregisterNode: true\n");
        let from_file = Config::resolve(&RunFlags { config: Some(file.path().to_owned()), ..Default::default() }).unwrap();
        assert_eq!(from_file.kubeconfig, Some(file.path().parent().unwrap().join("node.kubeconfig")), "relative to the config file");
        assert!(from_file.register_node);

        let flags = RunFlags { config: Some(file.path().to_owned()), register_node: Some(false), ..Default::default() };
        assert!(!Config::resolve(&flags).unwrap().register_node, "--register-node=false overrides the file");
    }
}
