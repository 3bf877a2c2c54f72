//! The kubelet's `CredentialProviderConfig` (`--image-credential-provider-config`), read and
//! checked by its rules: a file, or since Kubernetes 1.34 a directory of `.json`, `.yaml` and
//! `.yml` files read in name order.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use staticlet_model::duration::GoDuration;

/// The `apiVersion`s of the config file the kubelet reads.
const CONFIG_API_VERSIONS: [&str; 3] = ["kubelet.config.k8s.io/v1", "kubelet.config.k8s.io/v1beta1", "kubelet.config.k8s.io/v1alpha1"];
/// The exec protocol versions a provider may speak.
pub const PROTOCOL_API_VERSIONS: [&str; 3] =
    ["credentialprovider.kubelet.k8s.io/v1", "credentialprovider.kubelet.k8s.io/v1beta1", "credentialprovider.kubelet.k8s.io/v1alpha1"];

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct File {
    api_version: String,
    kind: String,
    #[serde(default)]
    providers: Vec<RawProvider>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawProvider {
    #[serde(default)]
    name: String,
    #[serde(default)]
    match_images: Vec<String>,
    default_cache_duration: Option<GoDuration>,
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: Vec<EnvVar>,
    token_attributes: Option<TokenAttributes>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EnvVar {
    name: String,
    value: String,
}

/// Service account token settings. Static pods have no service account, so only whether one
/// is required matters here.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TokenAttributes {
    require_service_account: Option<bool>,
}

/// One provider of the config, checked. Its `Debug` shows the names of its environment
/// variables, not their values, which may be secrets.
#[derive(Clone, PartialEq, Eq)]
pub struct ProviderConfig {
    /// Its name: the executable's in the bin dir.
    pub name: String,
    /// The images it is asked about.
    pub match_images: Vec<String>,
    /// How long answers without a `cacheDuration` are kept.
    pub default_cache_duration: Duration,
    /// The exec protocol version it speaks.
    pub api_version: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Environment on top of the agent's.
    pub env: Vec<(String, String)>,
    /// It wants a pod's service account token and cannot do without one: never asked for a
    /// static pod, as the kubelet never asks it for a pod without a service account.
    pub requires_service_account: bool,
}

impl std::fmt::Debug for ProviderConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderConfig")
            .field("name", &self.name)
            .field("match_images", &self.match_images)
            .field("default_cache_duration", &self.default_cache_duration)
            .field("api_version", &self.api_version)
            .field("args", &self.args)
            .field("env", &self.env.iter().map(|(name, _)| name).collect::<Vec<_>>())
            .field("requires_service_account", &self.requires_service_account)
            .finish()
    }
}

/// Why the config cannot be used. The agent does not start with it, as the kubelet does not.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file or directory could not be read.
    #[error("credential provider config {path}: {message}")]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// A rule is broken.
    #[error("credential provider config {path}: {field}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The field at fault (`providers[0].matchImages`).
        field: String,
        /// The rule.
        message: String,
    },
}

/// Reads and checks the config at `path`, a file or a directory.
///
/// # Errors
///
/// The first unreadable file or broken rule, naming the file and field.
pub fn load(path: &Path) -> Result<Vec<ProviderConfig>, ConfigError> {
    let read_error = |path: &Path, message: String| ConfigError::Read { path: path.to_owned(), message };
    let files = if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| read_error(path, e.to_string()))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && p.extension().is_some_and(|ext| ext == "json" || ext == "yaml" || ext == "yml"))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(read_error(path, "no configuration files found in the directory".into()));
        }
        files
    } else {
        vec![path.to_owned()]
    };
    let mut providers = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).map_err(|e| read_error(file, e.to_string()))?;
        for provider in parse(file, &text)? {
            if providers.iter().any(|p: &ProviderConfig| p.name == provider.name) {
                let message = format!("duplicate provider name {:?} found in configuration file(s)", provider.name);
                return Err(ConfigError::Invalid { path: file.clone(), field: "providers".into(), message });
            }
            providers.push(provider);
        }
    }
    Ok(providers)
}

/// Checks one file's text (`path` names it in errors).
///
/// # Errors
///
/// As [`load`].
pub fn parse(path: &Path, text: &str) -> Result<Vec<ProviderConfig>, ConfigError> {
    let invalid = |field: &str, message: String| ConfigError::Invalid { path: path.to_owned(), field: field.to_owned(), message };
    let file: File = serde_saphyr::from_str(text).map_err(|e| ConfigError::Read { path: path.to_owned(), message: e.to_string() })?;
    if file.kind != "CredentialProviderConfig" {
        return Err(invalid("kind", format!("{:?}: the kind must be CredentialProviderConfig", file.kind)));
    }
    if !CONFIG_API_VERSIONS.contains(&file.api_version.as_str()) {
        return Err(invalid("apiVersion", format!("{:?}: supported values: {}", file.api_version, CONFIG_API_VERSIONS.join(", "))));
    }
    if file.providers.is_empty() {
        return Err(invalid("providers", "at least 1 item in plugins is required".into()));
    }
    file.providers
        .into_iter()
        .enumerate()
        .map(|(i, raw)| check(raw, &|field, message| invalid(&format!("providers[{i}].{field}"), message)))
        .collect()
}

fn check(raw: RawProvider, invalid: &dyn Fn(&str, String) -> ConfigError) -> Result<ProviderConfig, ConfigError> {
    if raw.name.is_empty() {
        return Err(invalid("name", "required".into()));
    }
    if raw.name.contains('/') {
        return Err(invalid("name", "provider name cannot contain '/'".into()));
    }
    if raw.name.contains(' ') {
        return Err(invalid("name", "provider name cannot contain spaces".into()));
    }
    if raw.name == "." || raw.name == ".." {
        return Err(invalid("name", "provider name cannot be '.' or '..'".into()));
    }
    if !PROTOCOL_API_VERSIONS.contains(&raw.api_version.as_str()) {
        let message = if raw.api_version.is_empty() {
            "required".to_owned()
        } else {
            format!("{:?}: supported values: {}", raw.api_version, PROTOCOL_API_VERSIONS.join(", "))
        };
        return Err(invalid("apiVersion", message));
    }
    if raw.match_images.is_empty() {
        return Err(invalid("matchImages", "at least 1 item in matchImages is required".into()));
    }
    if let Some(bad) = raw.match_images.iter().find(|m| m.is_empty() || m.contains(char::is_whitespace) || m.contains("://")) {
        return Err(invalid("matchImages", format!("match image is invalid: {bad:?}")));
    }
    let Some(default_cache_duration) = raw.default_cache_duration else {
        return Err(invalid("defaultCacheDuration", "required".into()));
    };
    if raw.token_attributes.is_some() && raw.api_version != PROTOCOL_API_VERSIONS[0] {
        return Err(invalid("tokenAttributes", format!("tokenAttributes is only supported for {} API version", PROTOCOL_API_VERSIONS[0])));
    }
    Ok(ProviderConfig {
        name: raw.name,
        match_images: raw.match_images,
        default_cache_duration: default_cache_duration.0,
        api_version: raw.api_version,
        args: raw.args,
        env: raw.env.into_iter().map(|e| (e.name, e.value)).collect(),
        requires_service_account: raw.token_attributes.and_then(|t| t.require_service_account).unwrap_or(false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the kubelet's documentation ("Configure a kubelet image credential
    /// provider", kubernetes.io), ECR's provider as its README configures it.
    const ECR: &str = r#"
apiVersion: kubelet.config.k8s.io/v1
kind: CredentialProviderConfig
providers:
  - name: ecr-credential-provider
    matchImages:
      - "*.dkr.ecr.*.amazonaws.com"
      - "*.dkr.ecr.*.amazonaws.com.cn"
      - "*.dkr.ecr-fips.*.amazonaws.com"
      - "*.dkr.ecr.us-iso-east-1.c2s.ic.gov"
      - "*.dkr.ecr.us-isob-east-1.sc2s.sgov.gov"
    defaultCacheDuration: "12h"
    apiVersion: credentialprovider.kubelet.k8s.io/v1
    args:
      - get-credentials
    env:
      - name: AWS_PROFILE
        value: node
"#;

    #[test]
    fn ecr_s_config_reads_as_the_kubelet_reads_it() {
        let providers = parse(Path::new("ecr.yaml"), ECR).unwrap();
        assert_eq!(providers.len(), 1);
        let ecr = &providers[0];
        assert_eq!(ecr.name, "ecr-credential-provider");
        assert_eq!(ecr.match_images.len(), 5);
        assert_eq!(ecr.default_cache_duration, Duration::from_secs(12 * 3600));
        assert_eq!(ecr.args, ["get-credentials"]);
        assert_eq!(ecr.env, [("AWS_PROFILE".to_owned(), "node".to_owned())]);
        assert!(!ecr.requires_service_account);
        assert!(!format!("{ecr:?}").contains("node"), "env values stay out of Debug");
    }

    #[test]
    fn broken_rules_name_the_file_and_field() {
        for (change, field, message) in [
            (("    defaultCacheDuration: \"12h\"\n", ""), "providers[0].defaultCacheDuration", "required"),
            (("name: ecr-credential-provider", "name: bin/ecr"), "providers[0].name", "provider name cannot contain '/'"),
            (
                ("apiVersion: credentialprovider.kubelet.k8s.io/v1", "apiVersion: credentialprovider.kubelet.k8s.io/v2"),
                "providers[0].apiVersion",
                "supported values",
            ),
            (("kind: CredentialProviderConfig", "kind: KubeletConfiguration"), "kind", "must be CredentialProviderConfig"),
        ] {
            let text = ECR.replace(change.0, change.1);
            let e = parse(Path::new("/etc/staticlet/providers.yaml"), &text).unwrap_err().to_string();
            assert!(e.starts_with(&format!("credential provider config /etc/staticlet/providers.yaml: {field}: ")), "{e}");
            assert!(e.contains(message), "{e}");
        }
        let e = parse(Path::new("p.yaml"), &ECR.replace("    args:", "    argz:")).unwrap_err().to_string();
        assert!(e.contains("argz"), "unknown fields are refused, as the kubelet's strict decoding does: {e}");
    }

    #[test]
    fn a_directory_is_read_in_name_order_and_names_stay_unique() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.yaml"), ECR.replace("ecr-credential-provider", "second")).unwrap();
        std::fs::write(dir.path().join("a.json"), r#"{"apiVersion": "kubelet.config.k8s.io/v1", "kind": "CredentialProviderConfig", "providers": [{"name": "first", "matchImages": ["reg:5000"], "defaultCacheDuration": "0s", "apiVersion": "credentialprovider.kubelet.k8s.io/v1"}]}"#).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not read").unwrap();
        let names: Vec<String> = load(dir.path()).unwrap().into_iter().map(|p| p.name).collect();
        assert_eq!(names, ["first", "second"]);
        std::fs::write(dir.path().join("c.yml"), ECR.replace("ecr-credential-provider", "first")).unwrap();
        assert!(load(dir.path()).unwrap_err().to_string().contains("duplicate provider name \"first\""));
    }
}
