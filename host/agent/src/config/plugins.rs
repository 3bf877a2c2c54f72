//! The `plugins:` list of the agent config.
//!
//! ```yaml
//! plugins:
//! - name: allowed-registries
//!   kind: admission-validator
//!   path: /etc/staticlet/plugins/allowed_registries.wasm   # relative to the config file
//!   failurePolicy: Fail            # or Ignore; validators only
//!   timeout: 1s                    # per call
//!   memoryLimit: 64Mi              # per instance
//!   config: {registries: [registry.internal:5000]}   # the plugin's own settings
//!   allowedHosts: [policy.internal:8443]             # outbound HTTP
//!   readOnlyDirs: [{hostPath: /etc/policy, path: /policy}]
//! - name: no-latest
//!   kind: admission-validator     # from a registry, pinned, and signed with this cosign key
//!   image: registry.internal:5000/policies/no-latest:1.0@sha256:4f1c...
//!   signature: {key: /etc/staticlet/cosign.pub}
//! - name: etcd
//!   kind: manifest-source
//!   path: etcd_source.wasm
//!   interval: 10s                  # how often it is polled; sources only
//!   config: {endpoints: ["https://10.0.0.5:2379"]}
//!   allowedHosts:                  # a host with the TLS files the agent connects with
//!   - {host: "10.0.0.5:2379", caFile: etcd/ca.crt, certFile: etcd/node.crt, keyFile: etcd/node.key}
//! - name: podman
//!   kind: runtime-adapter          # named by a class in runtimeClasses
//!   path: podman_runtime.wasm
//!   timeout: 10s                   # per call; stops and execs get their own time on top
//!   imagePullTimeout: 5m           # per image pull; runtime adapters only
//!   config: {endpoint: "unix:///run/podman/podman.sock"}
//!   allowedSockets: [/run/podman/podman.sock]
//! - name: registry-token
//!   kind: credential-provider      # asked for the images it matches, after the kubelet's
//!   path: token_credential_provider.wasm                     # credential provider executables
//!   matchImages: ["*.registry.internal", "10.0.0.7:5000"]   # as the kubelet's matchImages
//!   defaultCacheDuration: 10m      # for answers without their own duration
//!   timeout: 10s                   # per call
//!   config: {tokenUrl: "http://10.0.0.7:8080/token", token: "..."}
//!   allowedHosts: [10.0.0.7:8080]
//! ```

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use staticlet_plugin::{Code, DirGrant, Grants, HostGrant, Kind, Limits, PluginSpec, TlsGrant, artifacts};

use super::GoDuration;
use staticlet_runtime::handler::{CRI, DOCKER};

/// What to do with a pod when a validator fails to give a verdict (it trapped, overran its
/// deadline or memory cap, returned an error, or never loaded).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum FailurePolicy {
    /// Reject the pod: a broken validator never lets a pod through.
    #[default]
    Fail,
    /// Admit the pod and record a warning.
    Ignore,
}

/// The name of the built-in validator.
pub const STATIC_POD_POLICY: &str = artifacts::STATIC_POD_POLICY_NAME;

/// A validator plugin as the agent config declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatorConfig {
    /// The plugin.
    pub spec: PluginSpec,
    /// What a failure to judge means for the pod.
    pub failure_policy: FailurePolicy,
}

/// The spec of the built-in static pod policy.
pub fn static_pod_policy() -> ValidatorConfig {
    ValidatorConfig { spec: artifacts::static_pod_policy(), failure_policy: FailurePolicy::Fail }
}

/// A source plugin as the agent config declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceConfig {
    /// The plugin.
    pub spec: PluginSpec,
    /// How often it is polled.
    pub interval: Duration,
}

/// How often a source plugin is polled when its entry does not say: the manifest URL's default.
pub const DEFAULT_SOURCE_INTERVAL: Duration = Duration::from_secs(20);

/// How long one poll may take when the entry does not say: as long as a manifest URL request,
/// since a source usually asks a server.
pub const DEFAULT_SOURCE_TIMEOUT: Duration = super::MANIFEST_URL_TIMEOUT;

/// How long one runtime-adapter call may take when the entry does not say: a status call that
/// takes longer than this is a runtime in trouble.
pub const DEFAULT_ADAPTER_TIMEOUT: Duration = Duration::from_secs(10);

/// How many calls a runtime adapter serves at once, each on its own instance, so that one
/// pod's long image pull or stop never holds up another pod.
pub const ADAPTER_CONCURRENCY: usize = 8;

/// A runtime-adapter plugin as the agent config declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdapterConfig {
    /// The plugin.
    pub spec: PluginSpec,
    /// How long one image pull may take.
    pub image_pull_timeout: Duration,
}

/// How long one credential-provider call may take when the entry does not say: a token
/// endpoint's round trip, with room for a slow one.
pub const DEFAULT_CREDENTIAL_PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);

/// A credential-provider plugin as the agent config declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialPluginConfig {
    /// The plugin.
    pub spec: PluginSpec,
    /// The images it is asked about, as the kubelet's `matchImages`.
    pub match_images: Vec<String>,
    /// How long answers without their own duration are kept.
    pub default_cache_duration: Duration,
}

/// One entry of `plugins:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PluginEntry {
    name: String,
    kind: Kind,
    path: Option<PathBuf>,
    /// An OCI artifact instead of a file: `registry/repository[:tag][@sha256:...]`.
    image: Option<String>,
    signature: Option<SignatureEntry>,
    failure_policy: Option<FailurePolicy>,
    interval: Option<GoDuration>,
    timeout: Option<GoDuration>,
    image_pull_timeout: Option<GoDuration>,
    #[serde(default)]
    match_images: Vec<String>,
    default_cache_duration: Option<GoDuration>,
    memory_limit: Option<String>,
    #[serde(default)]
    config: Option<serde_json::Value>,
    /// Each a host (`name:port`) or a host with TLS settings ([`TlsHostEntry`]): YAML allows
    /// both in one list, so they are told apart when the grants are built.
    #[serde(default)]
    allowed_hosts: Vec<serde_json::Value>,
    #[serde(default)]
    allowed_sockets: Vec<PathBuf>,
    #[serde(default)]
    read_only_dirs: Vec<DirEntry>,
}

/// An `allowedHosts` entry with the TLS files the agent connects to that host with. Relative
/// paths are relative to the config file, as `path` is.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TlsHostEntry {
    host: String,
    ca_file: Option<PathBuf>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    server_name: Option<String>,
}

/// How an image plugin's signature is checked: a cosign public key (relative to the config file).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SignatureEntry {
    key: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DirEntry {
    host_path: PathBuf,
    path: String,
}

/// The configured plugins, by kind, in config order.
#[derive(Debug, Default)]
pub(super) struct Resolved {
    pub(super) validators: Vec<ValidatorConfig>,
    pub(super) sources: Vec<SourceConfig>,
    pub(super) adapters: Vec<AdapterConfig>,
    pub(super) credential_providers: Vec<CredentialPluginConfig>,
}

/// Checks every entry and turns it into a spec; errors name the entry and field.
pub(super) fn resolve(entries: &[PluginEntry], config_dir: &Path) -> Result<Resolved, String> {
    let mut names = HashSet::new();
    let mut resolved = Resolved::default();
    for (i, entry) in entries.iter().enumerate() {
        let at = |field: &str| format!("plugins[{i}].{field}");
        entry.check_name(&mut names, &at)?;
        entry.check_kind_fields(&at)?;
        let limits = entry.limits(&at)?;
        let grants = entry.grants(config_dir, &at)?;
        let settings = entry.config.clone().unwrap_or_else(|| serde_json::json!({})).to_string();
        let spec = PluginSpec { name: entry.name.clone(), kind: entry.kind, code: entry.code(config_dir, &at)?, settings, grants, limits };
        resolved.add(entry, spec, &at)?;
    }
    Ok(resolved)
}

/// Names a plugin may not take: a plugin named like a built-in runtime would make
/// `runtimeClasses` ambiguous (a runtime adapter named `cri` would silently take the CRI
/// runtime's place), and one named like the built-in policy would hide it.
const RESERVED_NAMES: [(&str, &str); 3] =
    [(STATIC_POD_POLICY, "the built-in admission policy"), (DOCKER, "the built-in Docker runtime"), (CRI, "the built-in CRI runtime")];

impl PluginEntry {
    /// The name: letters, digits, `-` and `_`, not reserved, and not taken by an earlier entry
    /// (it is added to `names`).
    fn check_name(&self, names: &mut HashSet<String>, at: &dyn Fn(&str) -> String) -> Result<(), String> {
        if self.name.is_empty() || !self.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(format!("{}: {:?} is not a plugin name (letters, digits, - and _)", at("name"), self.name));
        }
        if let Some((_, what)) = RESERVED_NAMES.iter().find(|(name, _)| *name == self.name) {
            return Err(format!("{}: {:?} is reserved: it names {what}", at("name"), self.name));
        }
        if !names.insert(self.name.clone()) {
            return Err(format!("{}: another plugin is already named {:?}", at("name"), self.name));
        }
        Ok(())
    }

    /// Where the component comes from: `path` (relative to the config file) or `image`, one of
    /// the two; `signature` goes with `image`.
    fn code(&self, config_dir: &Path, at: &dyn Fn(&str) -> String) -> Result<Code, String> {
        match (&self.path, &self.image) {
            (Some(path), None) => {
                if self.signature.is_some() {
                    return Err(format!("{}: only a plugin from a registry (image) is signed", at("signature")));
                }
                Ok(Code::File(config_dir.join(path)))
            }
            (None, Some(image)) => {
                let key = self.signature.as_ref().map(|s| config_dir.join(&s.key));
                Ok(Code::Image(staticlet_oci::Image::parse(image, key).map_err(|e| format!("{}: {e}", at("image")))?))
            }
            (Some(_), Some(_)) => Err(format!("{}: give path or image, not both", at("image"))),
            (None, None) => Err(format!("{}: required: the component's file (or image, to pull it from a registry)", at("path"))),
        }
    }

    /// Rejects the fields that only another kind of plugin has.
    fn check_kind_fields(&self, at: &dyn Fn(&str) -> String) -> Result<(), String> {
        if self.kind != Kind::AdmissionValidator && self.failure_policy.is_some() {
            return Err(format!("{}: only admission-validator plugins have one", at("failurePolicy")));
        }
        if self.kind != Kind::ManifestSource && self.interval.is_some() {
            return Err(format!("{}: only manifest-source plugins are polled", at("interval")));
        }
        if self.kind != Kind::RuntimeAdapter && self.image_pull_timeout.is_some() {
            return Err(format!("{}: only runtime-adapter plugins pull images", at("imagePullTimeout")));
        }
        if self.kind != Kind::CredentialProvider && (!self.match_images.is_empty() || self.default_cache_duration.is_some()) {
            let field = if self.match_images.is_empty() { "defaultCacheDuration" } else { "matchImages" };
            return Err(format!("{}: only credential-provider plugins have it", at(field)));
        }
        Ok(())
    }

    /// The call deadline, concurrency and memory cap: the kind's defaults, with the entry's
    /// `timeout` and `memoryLimit` over them.
    fn limits(&self, at: &dyn Fn(&str) -> String) -> Result<Limits, String> {
        let mut limits = Limits::default();
        match self.kind {
            Kind::ManifestSource => limits.call_timeout = DEFAULT_SOURCE_TIMEOUT,
            Kind::RuntimeAdapter => {
                limits.call_timeout = DEFAULT_ADAPTER_TIMEOUT;
                limits.concurrency = ADAPTER_CONCURRENCY;
            }
            Kind::CredentialProvider => limits.call_timeout = DEFAULT_CREDENTIAL_PROVIDER_TIMEOUT,
            Kind::AdmissionValidator => {}
        }
        if let Some(timeout) = self.timeout {
            if timeout.0.is_zero() {
                return Err(format!("{}: must be more than zero", at("timeout")));
            }
            limits.call_timeout = timeout.0;
        }
        if let Some(memory) = &self.memory_limit {
            let bytes = staticlet_model::quantity::parse_quantity(memory)
                .ok()
                .filter(|q| !q.is_negative())
                .map(|q| q.as_units_ceil())
                .filter(|b| *b > 0)
                .ok_or_else(|| format!("{}: {memory:?} is not a memory quantity (like 64Mi)", at("memoryLimit")))?;
            limits.memory_bytes = u64::try_from(bytes).unwrap_or(u64::MAX);
        }
        Ok(limits)
    }

    /// What the plugin may reach: the hosts of `allowedHosts` (with their TLS files), the
    /// `allowedSockets`, and the `readOnlyDirs`, host paths relative to the config file.
    fn grants(&self, config_dir: &Path, at: &dyn Fn(&str) -> String) -> Result<Grants, String> {
        let http_hosts = self
            .allowed_hosts
            .iter()
            .enumerate()
            .map(|(j, entry)| host_grant(entry, config_dir, &|field: &str| at(&format!("allowedHosts[{j}]{field}"))))
            .collect::<Result<Vec<_>, _>>()?;
        let mut unix_sockets = Vec::new();
        for (j, socket) in self.allowed_sockets.iter().enumerate() {
            // Plugins name a socket by its path with `/` written as `~` (a URL's host cannot
            // hold a `/`), so its path must read the same both ways.
            let text = socket.to_str().unwrap_or_default();
            let plain = text.chars().all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c))
                && socket.components().all(|c| matches!(c, std::path::Component::RootDir | std::path::Component::Normal(_)));
            if !socket.is_absolute() || !plain || text.ends_with('/') {
                return Err(format!(
                    "{}: {} is not an absolute path of letters, digits, `.`, `_`, `-` and `/` without `..`",
                    at(&format!("allowedSockets[{j}]")),
                    socket.display()
                ));
            }
            unix_sockets.push(socket.clone());
        }
        let mut read_only_dirs = Vec::new();
        for (j, dir) in self.read_only_dirs.iter().enumerate() {
            if !dir.path.starts_with('/') {
                return Err(format!("{}: the path the plugin sees must be absolute", at(&format!("readOnlyDirs[{j}].path"))));
            }
            read_only_dirs.push(DirGrant { host_path: config_dir.join(&dir.host_path), guest_path: dir.path.clone() });
        }
        Ok(Grants { http_hosts, unix_sockets, read_only_dirs })
    }
}

/// One `allowedHosts` entry: `name:port`, or `{host, caFile, certFile, keyFile, serverName}`.
fn host_grant(entry: &serde_json::Value, config_dir: &Path, at: &dyn Fn(&str) -> String) -> Result<HostGrant, String> {
    let parse = |host: &str, field: &str| host.parse::<HostGrant>().map_err(|e| format!("{}: {e}", at(field)));
    if let Some(host) = entry.as_str() {
        return parse(host, "");
    }
    let entry: TlsHostEntry = serde_json::from_value(entry.clone())
        .map_err(|e| format!("{}: want a host (`name:port`) or {{host, caFile, certFile, keyFile, serverName}}: {e}", at("")))?;
    if entry.cert_file.is_some() != entry.key_file.is_some() {
        return Err(format!("{}: certFile and keyFile go together", at(if entry.cert_file.is_some() { ".keyFile" } else { ".certFile" })));
    }
    if entry.ca_file.is_none() && entry.cert_file.is_none() && entry.server_name.is_none() {
        return Err(format!("{}: say caFile, certFile and keyFile, or serverName; a host without them is written as a string", at("")));
    }
    let file = |path: &Option<PathBuf>| path.as_ref().map(|p| config_dir.join(p));
    let tls = TlsGrant {
        ca_file: file(&entry.ca_file),
        cert_file: file(&entry.cert_file),
        key_file: file(&entry.key_file),
        server_name: entry.server_name.clone(),
    };
    Ok(parse(&entry.host, ".host")?.with_tls(tls))
}

impl Resolved {
    /// Files `spec` under its kind, with the settings only that kind has.
    fn add(&mut self, entry: &PluginEntry, spec: PluginSpec, at: &dyn Fn(&str) -> String) -> Result<(), String> {
        match entry.kind {
            Kind::ManifestSource => {
                let interval = entry.interval.map_or(DEFAULT_SOURCE_INTERVAL, |i| i.0);
                if interval.is_zero() {
                    return Err(format!("{}: must be more than zero", at("interval")));
                }
                self.sources.push(SourceConfig { spec, interval });
            }
            Kind::AdmissionValidator => {
                self.validators.push(ValidatorConfig { spec, failure_policy: entry.failure_policy.unwrap_or_default() });
            }
            Kind::RuntimeAdapter => {
                let image_pull_timeout = entry.image_pull_timeout.map_or(staticlet_plugin::DEFAULT_IMAGE_PULL_TIMEOUT, |t| t.0);
                if image_pull_timeout.is_zero() {
                    return Err(format!("{}: must be more than zero", at("imagePullTimeout")));
                }
                self.adapters.push(AdapterConfig { spec, image_pull_timeout });
            }
            Kind::CredentialProvider => {
                if entry.match_images.is_empty() {
                    return Err(format!("{}: at least 1 item in matchImages is required", at("matchImages")));
                }
                if let Some((j, bad)) = entry
                    .match_images
                    .iter()
                    .enumerate()
                    .find(|(_, m)| m.is_empty() || m.contains(char::is_whitespace) || m.contains("://"))
                {
                    return Err(format!("{}: match image is invalid: {bad:?}", at(&format!("matchImages[{j}]"))));
                }
                let Some(default_cache_duration) = entry.default_cache_duration else {
                    return Err(format!("{}: required, as in the kubelet's provider config", at("defaultCacheDuration")));
                };
                let match_images = entry.match_images.clone();
                self.credential_providers.push(CredentialPluginConfig {
                    spec,
                    match_images,
                    default_cache_duration: default_cache_duration.0,
                });
            }
        }
        Ok(())
    }
}

/// One configured plugin, whatever its kind, for comparing two configs.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Configured {
    Validator(ValidatorConfig),
    Source(SourceConfig),
    Adapter(AdapterConfig),
    Credentials(CredentialPluginConfig),
}

impl Configured {
    fn spec(&self) -> &PluginSpec {
        match self {
            Configured::Validator(c) => &c.spec,
            Configured::Source(c) => &c.spec,
            Configured::Adapter(c) => &c.spec,
            Configured::Credentials(c) => &c.spec,
        }
    }

    fn spec_mut(&mut self) -> &mut PluginSpec {
        match self {
            Configured::Validator(c) => &mut c.spec,
            Configured::Source(c) => &mut c.spec,
            Configured::Adapter(c) => &mut c.spec,
            Configured::Credentials(c) => &mut c.spec,
        }
    }

    fn all(config: &super::Config) -> Vec<Configured> {
        let validators = config.validators.iter().cloned().map(Configured::Validator);
        let sources = config.source_plugins.iter().cloned().map(Configured::Source);
        let adapters = config.runtime_adapters.iter().cloned().map(Configured::Adapter);
        let credentials = config.credential_plugins.iter().cloned().map(Configured::Credentials);
        validators.chain(sources).chain(adapters).chain(credentials).collect()
    }
}

/// How the plugins of a config file changed while the agent ran.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PluginChanges {
    /// Image plugins whose `image:` or `signature:` is all that changed, with their new image:
    /// the running agent follows these.
    pub images: Vec<(String, staticlet_oci::Image)>,
    /// Plugins added, removed or changed in any other way: these take a restart.
    pub others: Vec<String>,
}

/// Compares the plugins of the config the agent runs (`running`) with the file's now (`now`).
pub fn changes(running: &super::Config, now: &super::Config) -> PluginChanges {
    let (before, after) = (Configured::all(running), Configured::all(now));
    let mut changes = PluginChanges::default();
    for new in &after {
        let name = &new.spec().name;
        let Some(old) = before.iter().find(|old| old.spec().name == *name) else {
            changes.others.push(name.clone());
            continue;
        };
        if old == new {
            continue;
        }
        // Only the image changed when the entries are equal with the old image put back.
        let follow = match (&old.spec().code, &new.spec().code) {
            (Code::Image(_), Code::Image(image)) => {
                let mut repinned = new.clone();
                repinned.spec_mut().code = old.spec().code.clone();
                (repinned == *old).then(|| image.clone())
            }
            _ => None,
        };
        match follow {
            Some(image) => changes.images.push((name.clone(), image)),
            None => changes.others.push(name.clone()),
        }
    }
    let gone = before.iter().map(|old| &old.spec().name).filter(|name| !after.iter().any(|new| new.spec().name == **name));
    changes.others.extend(gone.cloned());
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(yaml: &str) -> Vec<PluginEntry> {
        staticlet_model::yaml::from_str(yaml).unwrap()
    }

    fn resolved(yaml: &str) -> Resolved {
        resolve(&entries(yaml), Path::new("/etc/staticlet")).unwrap()
    }

    #[test]
    fn an_entry_becomes_a_spec_relative_to_the_config_file() {
        let resolved = resolved(
            "- name: registries\n  kind: admission-validator\n  path: plugins/r.wasm\n  failurePolicy: Ignore\n  timeout: 250ms\n  memoryLimit: 32Mi\n  config: {registries: [a]}\n  allowedHosts: [policy.internal:8443]\n  readOnlyDirs: [{hostPath: /etc/policy, path: /policy}]\n",
        );
        let v = &resolved.validators[0];
        assert_eq!(v.failure_policy, FailurePolicy::Ignore);
        assert_eq!(v.spec.code, Code::File("/etc/staticlet/plugins/r.wasm".into()));
        assert_eq!(v.spec.limits.call_timeout, std::time::Duration::from_millis(250));
        assert_eq!(v.spec.limits.memory_bytes, 32 << 20);
        assert_eq!(v.spec.settings, r#"{"registries":["a"]}"#);
        assert_eq!(v.spec.grants.http_hosts[0].to_string(), "policy.internal:8443");
        assert_eq!(v.spec.grants.read_only_dirs[0].guest_path, "/policy");
    }

    #[test]
    fn an_image_entry_is_pulled_by_reference_and_checked_with_its_key() {
        let digest = format!("sha256:{}", "ab".repeat(32));
        let resolved = resolved(&format!(
            "- name: r\n  kind: admission-validator\n  image: 127.0.0.1:5000/policies/r:1.0@{digest}\n  signature: {{key: keys/cosign.pub}}\n"
        ));
        let Code::Image(image) = &resolved.validators[0].spec.code else { panic!("{:?}", resolved.validators[0].spec.code) };
        assert_eq!(image.reference.digest(), Some(digest.as_str()));
        assert_eq!(image.reference.tag(), Some("1.0"));
        assert_eq!(image.public_key.as_deref(), Some(Path::new("/etc/staticlet/keys/cosign.pub")));
        for (yaml, error) in [
            ("- {name: r, kind: admission-validator}", "plugins[0].path: required"),
            ("- {name: r, kind: admission-validator, path: a.wasm, image: 'h.io/p:1'}", "plugins[0].image: give path or image, not both"),
            (
                "- {name: r, kind: admission-validator, path: a.wasm, signature: {key: k}}",
                "plugins[0].signature: only a plugin from a registry",
            ),
            ("- {name: r, kind: admission-validator, image: 'policies/r:1'}", "plugins[0].image: \"policies/r:1\" names no registry"),
            (
                "- {name: r, kind: admission-validator, image: 'h.io/p@sha256:ab'}",
                "plugins[0].image: \"h.io/p@sha256:ab\" is not an image reference",
            ),
        ] {
            let e = resolve(&entries(yaml), Path::new("/etc")).unwrap_err();
            assert!(e.starts_with(error), "{yaml}: {e}");
        }
    }

    #[test]
    fn a_changed_pin_is_followed_and_any_other_change_takes_a_restart() {
        let config = |yaml: &str| {
            let resolved = resolved(yaml);
            super::super::Config {
                validators: resolved.validators,
                source_plugins: resolved.sources,
                runtime_adapters: resolved.adapters,
                credential_plugins: resolved.credential_providers,
                ..super::super::Config::resolve(&super::super::RunFlags::default()).unwrap()
            }
        };
        let a = format!("sha256:{}", "a".repeat(64));
        let b = format!("sha256:{}", "b".repeat(64));
        let entry = |digest: &str, timeout: &str| {
            format!(
                "- {{name: p, kind: admission-validator, image: 'h.io/p:1@{digest}', timeout: {timeout}}}\n- {{name: f, kind: manifest-source, path: f.wasm}}\n"
            )
        };
        let running = config(&entry(&a, "1s"));
        assert_eq!(changes(&running, &running), PluginChanges::default());
        let moved = changes(&running, &config(&entry(&b, "1s")));
        assert_eq!(moved.others, Vec::<String>::new());
        let [(name, image)] = &moved.images[..] else { panic!("{moved:?}") };
        assert_eq!((name.as_str(), image.reference.digest()), ("p", Some(b.as_str())));
        assert_eq!(changes(&running, &config(&entry(&b, "2s"))).others, ["p"], "the pin and a setting: a restart");
        let gone = changes(&running, &config(&format!("- {{name: p, kind: admission-validator, image: 'h.io/p:1@{a}', timeout: 1s}}\n")));
        assert_eq!(gone.others, ["f"]);
    }

    #[test]
    fn a_credential_provider_matches_images_as_the_kubelets_do() {
        let resolved = resolved(
            "- name: token\n  kind: credential-provider\n  path: t.wasm\n  matchImages: ['*.registry.internal', '10.0.0.7:5000']\n  defaultCacheDuration: 10m\n",
        );
        let p = &resolved.credential_providers[0];
        assert_eq!(p.match_images, ["*.registry.internal", "10.0.0.7:5000"]);
        assert_eq!(p.default_cache_duration, Duration::from_secs(600));
        assert_eq!(p.spec.limits.call_timeout, DEFAULT_CREDENTIAL_PROVIDER_TIMEOUT);
        for (yaml, error) in [
            ("- name: t\n  kind: credential-provider\n  path: t.wasm\n  defaultCacheDuration: 1m\n", "plugins[0].matchImages: at least 1"),
            ("- name: t\n  kind: credential-provider\n  path: t.wasm\n  matchImages: [r]\n", "plugins[0].defaultCacheDuration: required"),
            (
                "- name: t\n  kind: admission-validator\n  path: t.wasm\n  matchImages: [r]\n",
                "plugins[0].matchImages: only credential-provider",
            ),
        ] {
            let e = resolve(&entries(yaml), Path::new("/etc")).unwrap_err();
            assert!(e.starts_with(error), "{e}");
        }
    }

    #[test]
    fn a_source_is_polled_on_its_interval_with_a_longer_default_deadline() {
        let resolved = resolved(
            "- {name: etcd, kind: manifest-source, path: e.wasm, interval: 5s}\n- {name: other, kind: manifest-source, path: o.wasm}\n",
        );
        assert!(resolved.validators.is_empty());
        let [etcd, other] = &resolved.sources[..] else { panic!("{:?}", resolved.sources) };
        assert_eq!((etcd.spec.name.as_str(), etcd.interval), ("etcd", Duration::from_secs(5)));
        assert_eq!(etcd.spec.limits.call_timeout, DEFAULT_SOURCE_TIMEOUT);
        assert_eq!(other.interval, DEFAULT_SOURCE_INTERVAL);
    }

    #[test]
    fn a_runtime_adapter_gets_runtime_sized_deadlines_and_concurrent_calls() {
        let resolved =
            resolved("- {name: podman, kind: runtime-adapter, path: p.wasm, imagePullTimeout: 10m, allowedHosts: [127.0.0.1:8888]}\n");
        let [podman] = &resolved.adapters[..] else { panic!("{:?}", resolved.adapters) };
        assert_eq!(podman.spec.limits.call_timeout, DEFAULT_ADAPTER_TIMEOUT);
        assert_eq!(podman.spec.limits.concurrency, ADAPTER_CONCURRENCY);
        assert_eq!(podman.image_pull_timeout, Duration::from_secs(600));
    }

    #[test]
    fn hosts_carry_their_tls_files_and_sockets_are_granted_by_path() {
        let resolved = resolved(
            "- name: etcd\n  kind: manifest-source\n  path: e.wasm\n  allowedHosts:\n  - 10.0.0.9:2379\n  - host: 10.0.0.5:2379\n    caFile: etcd/ca.crt\n    certFile: /pki/node.crt\n    keyFile: /pki/node.key\n    serverName: etcd-1\n  allowedSockets: [/run/podman/podman.sock]\n",
        );
        let grants = &resolved.sources[0].spec.grants;
        assert_eq!(grants.http_hosts[0].tls(), None, "the string form has no TLS settings");
        let tls = grants.http_hosts[1].tls().unwrap();
        assert_eq!(grants.http_hosts[1].to_string(), "10.0.0.5:2379");
        assert_eq!(tls.ca_file.as_deref(), Some(Path::new("/etc/staticlet/etcd/ca.crt")));
        assert_eq!(tls.cert_file.as_deref(), Some(Path::new("/pki/node.crt")));
        assert_eq!(tls.key_file.as_deref(), Some(Path::new("/pki/node.key")));
        assert_eq!(tls.server_name.as_deref(), Some("etcd-1"));
        assert_eq!(grants.unix_sockets, [PathBuf::from("/run/podman/podman.sock")]);
    }

    #[test]
    fn errors_name_the_entry_and_field() {
        let cases = [
            (
                "- {name: a, kind: manifest-source, path: a.wasm, allowedHosts: [{host: h, certFile: c}]}",
                "plugins[0].allowedHosts[0].keyFile: certFile and keyFile go together",
            ),
            (
                "- {name: a, kind: manifest-source, path: a.wasm, allowedHosts: [{host: 'bad host', caFile: c}]}",
                "plugins[0].allowedHosts[0].host",
            ),
            ("- {name: a, kind: manifest-source, path: a.wasm, allowedHosts: [{host: h}]}", "plugins[0].allowedHosts[0]: say caFile"),
            (
                "- {name: a, kind: manifest-source, path: a.wasm, allowedHosts: [{host: h, caFlie: c}]}",
                "plugins[0].allowedHosts[0]: want a host",
            ),
            ("- {name: a, kind: manifest-source, path: a.wasm, allowedSockets: [run/podman.sock]}", "plugins[0].allowedSockets[0]"),
            ("- {name: a, kind: manifest-source, path: a.wasm, allowedSockets: [/run/../etc/x.sock]}", "plugins[0].allowedSockets[0]"),
            ("- {name: a, kind: admission-validator, path: a.wasm, allowedHosts: ['bad host']}", "plugins[0].allowedHosts[0]"),
            ("- {name: a, kind: admission-validator, path: a.wasm, memoryLimit: lots}", "plugins[0].memoryLimit"),
            (
                "- {name: a, kind: admission-validator, path: a.wasm}\n- {name: a, kind: admission-validator, path: b.wasm}",
                "plugins[1].name",
            ),
            (
                "- {name: static-pod-policy, kind: admission-validator, path: a.wasm}",
                "plugins[0].name: \"static-pod-policy\" is reserved: it names the built-in admission policy",
            ),
            (
                "- {name: docker, kind: runtime-adapter, path: a.wasm}",
                "plugins[0].name: \"docker\" is reserved: it names the built-in Docker runtime",
            ),
            (
                "- {name: cri, kind: runtime-adapter, path: a.wasm}",
                "plugins[0].name: \"cri\" is reserved: it names the built-in CRI runtime",
            ),
            ("- {name: a, kind: admission-validator, path: a.wasm, imagePullTimeout: 1m}", "plugins[0].imagePullTimeout"),
            ("- {name: a, kind: manifest-source, path: a.wasm, failurePolicy: Ignore}", "plugins[0].failurePolicy"),
            ("- {name: a, kind: admission-validator, path: a.wasm, interval: 5s}", "plugins[0].interval"),
            ("- {name: a, kind: manifest-source, path: a.wasm, interval: 0s}", "plugins[0].interval"),
        ];
        for (yaml, field) in cases {
            let err = resolve(&entries(yaml), Path::new("/")).unwrap_err();
            assert!(err.starts_with(field), "{yaml}: {err}");
        }
    }
}
