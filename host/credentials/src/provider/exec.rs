//! The kubelet's exec credential provider protocol: the provider's executable gets a
//! `CredentialProviderRequest` on stdin and writes a `CredentialProviderResponse` on stdout,
//! within a minute. Existing providers (ecr-credential-provider and the others) run unchanged.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use staticlet_model::duration::GoDuration;
use staticlet_runtime::RegistryAuth;
use tokio::io::AsyncWriteExt;

use super::config::ProviderConfig;
use super::{CacheKeyType, Provided, Provider, ProviderError};

/// The kubelet's fixed deadline for one run of a provider.
pub const EXEC_TIMEOUT: Duration = Duration::from_secs(60);
/// How much of a provider's stderr an error quotes.
const STDERR_QUOTED: usize = 1024;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Response {
    kind: String,
    #[serde(rename = "apiVersion")]
    _api_version: String,
    #[serde(default)]
    cache_key_type: String,
    cache_duration: Option<GoDuration>,
    #[serde(default)]
    auth: BTreeMap<String, AuthEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthEntry {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

/// One provider executable, as the config describes it.
#[derive(Debug, Clone)]
pub struct ExecProvider {
    config: ProviderConfig,
    executable: PathBuf,
    timeout: Duration,
}

impl ExecProvider {
    /// The provider `config` names, in `bin_dir`.
    ///
    /// # Errors
    ///
    /// When the executable is not there: the kubelet does not start then either.
    pub fn new(config: ProviderConfig, bin_dir: &Path) -> Result<Self, ProviderError> {
        let executable = bin_dir.join(&config.name);
        if !executable.is_file() {
            let message = format!("plugin binary executable {} did not exist", executable.display());
            return Err(ProviderError { provider: config.name.clone(), message });
        }
        Ok(ExecProvider { config, executable, timeout: EXEC_TIMEOUT })
    }

    /// The same provider with another deadline per run, for tests.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    fn error(&self, message: String) -> ProviderError {
        ProviderError { provider: self.config.name.clone(), message }
    }

    async fn run(&self, repository: &str) -> Result<Vec<u8>, ProviderError> {
        let request = serde_json::json!({"kind": "CredentialProviderRequest", "apiVersion": self.config.api_version, "image": repository});
        let mut child = tokio::process::Command::new(&self.executable)
            .args(&self.config.args)
            .envs(self.config.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| self.error(format!("error execing credential provider plugin for image {repository}: {e}")))?;
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let body = format!("{request}\n");
        let output = async move {
            // A provider that exits without reading its request is not an error of ours.
            let _ = stdin.write_all(body.as_bytes()).await;
            drop(stdin);
            child.wait_with_output().await
        };
        let output = match tokio::time::timeout(self.timeout, output).await {
            Err(_) => {
                return Err(self.error(format!(
                    "error execing credential provider plugin for image {repository}: no answer within {}s",
                    self.timeout.as_secs()
                )));
            }
            Ok(Err(e)) => return Err(self.error(format!("error execing credential provider plugin for image {repository}: {e}"))),
            Ok(Ok(output)) => output,
        };
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let stderr: String = stderr.trim().chars().take(STDERR_QUOTED).collect();
            return Err(self.error(format!("error execing credential provider plugin for image {repository}: {}: {stderr}", output.status)));
        }
        Ok(output.stdout)
    }

    fn decode(&self, stdout: &[u8]) -> Result<Provided, ProviderError> {
        // The version is checked before the body is decoded, as the kubelet does; neither
        // error quotes the body, which holds the credentials.
        let version =
            serde_json::from_slice::<serde_json::Value>(stdout).ok().and_then(|v| v.get("apiVersion")?.as_str().map(str::to_owned));
        if version.as_deref() != Some(self.config.api_version.as_str()) {
            let actual = version.unwrap_or_default();
            return Err(self.error(format!(
                "apiVersion from credential plugin response did not match expected apiVersion:{}, actual apiVersion:{actual}",
                self.config.api_version
            )));
        }
        let decoding_failed = || self.error("error decoding credential provider plugin response from stdout".into());
        let response: Response = serde_json::from_slice(stdout).map_err(|_| decoding_failed())?;
        if response.kind != "CredentialProviderResponse" {
            return Err(decoding_failed());
        }
        let cache_key_type = match response.cache_key_type.as_str() {
            "Image" => CacheKeyType::Image,
            "Registry" => CacheKeyType::Registry,
            "Global" => CacheKeyType::Global,
            other => return Err(self.error(format!("credential provider plugin did not return a valid cacheKeyType: {other:?}"))),
        };
        let auth = response.auth.into_iter().map(|(location, e)| (location, RegistryAuth::basic("", e.username, e.password))).collect();
        Ok(Provided { cache_key_type, cache_duration: response.cache_duration.map(|d| d.0), auth })
    }
}

#[async_trait]
impl Provider for ExecProvider {
    fn name(&self) -> &str {
        &self.config.name
    }

    async fn provide(&self, repository: &str) -> Result<Provided, ProviderError> {
        let stdout = self.run(repository).await?;
        self.decode(&stdout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(dir: &Path, script: &str) -> ExecProvider {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join("test-provider");
        std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        let config = ProviderConfig {
            name: "test-provider".into(),
            match_images: vec!["*.example.com".into()],
            default_cache_duration: Duration::from_secs(60),
            api_version: "credentialprovider.kubelet.k8s.io/v1".into(),
            args: vec!["get-credentials".into()],
            env: vec![("TEST_USER".into(), "alice".into())],
            requires_service_account: false,
        };
        ExecProvider::new(config, dir).unwrap()
    }

    #[tokio::test]
    async fn the_request_goes_to_stdin_and_the_response_is_read_from_stdout() {
        let dir = tempfile::tempdir().unwrap();
        // Echoes the image it was asked about back as the password, with its argument and env.
        let p = provider(
            dir.path(),
            r#"image=$(sed -n 's/.*"image":"\([^"]*\)".*/\1/p'); printf '{"kind":"CredentialProviderResponse","apiVersion":"credentialprovider.kubelet.k8s.io/v1","cacheKeyType":"Registry","cacheDuration":"5m0s","auth":{"*.example.com":{"username":"%s-%s","password":"%s"}}}' "$TEST_USER" "$1" "$image""#,
        );
        let provided = p.provide("reg.example.com/team/app").await.unwrap();
        assert_eq!(provided.cache_key_type, CacheKeyType::Registry);
        assert_eq!(provided.cache_duration, Some(Duration::from_secs(300)));
        assert_eq!(
            provided.auth,
            [("*.example.com".to_owned(), RegistryAuth::basic("", "alice-get-credentials", "reg.example.com/team/app"))]
        );
    }

    #[tokio::test]
    async fn failures_say_why_and_never_quote_the_answer() {
        let dir = tempfile::tempdir().unwrap();
        let e = provider(dir.path(), "echo 'token endpoint refused us' >&2; exit 3").provide("reg.example.com/app").await.unwrap_err();
        assert!(e.to_string().contains("exit status: 3: token endpoint refused us"), "{e}");

        let wrong_version = r#"echo '{"kind":"CredentialProviderResponse","apiVersion":"credentialprovider.kubelet.k8s.io/v1beta1","cacheKeyType":"Image","auth":{}}'"#;
        let e = provider(dir.path(), wrong_version).provide("reg.example.com/app").await.unwrap_err();
        assert!(e.to_string().contains("actual apiVersion:credentialprovider.kubelet.k8s.io/v1beta1"), "{e}");

        let bad_body = r#"echo '{"kind":"CredentialProviderResponse","apiVersion":"credentialprovider.kubelet.k8s.io/v1","cacheKeyType":"Image","auth":{"r":{"username":"u","password":"hunter2","extra":1}}}'"#;
        let e = provider(dir.path(), bad_body).provide("reg.example.com/app").await.unwrap_err();
        assert_eq!(e.message, "error decoding credential provider plugin response from stdout");

        let bad_key =
            r#"echo '{"kind":"CredentialProviderResponse","apiVersion":"credentialprovider.kubelet.k8s.io/v1","cacheKeyType":"Forever"}'"#;
        let e = provider(dir.path(), bad_key).provide("reg.example.com/app").await.unwrap_err();
        assert!(e.to_string().contains("did not return a valid cacheKeyType: \"Forever\""), "{e}");
    }

    #[tokio::test]
    async fn a_hung_provider_is_killed_at_its_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let p = provider(dir.path(), "sleep 30").with_timeout(Duration::from_millis(300));
        let started = std::time::Instant::now();
        let e = p.provide("reg.example.com/app").await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(e.to_string().contains("no answer within"), "{e}");
    }

    #[test]
    fn a_missing_executable_is_refused_up_front() {
        let dir = tempfile::tempdir().unwrap();
        let config = ProviderConfig {
            name: "absent".into(),
            match_images: vec!["x".into()],
            default_cache_duration: Duration::ZERO,
            api_version: "credentialprovider.kubelet.k8s.io/v1".into(),
            args: vec![],
            env: vec![],
            requires_service_account: false,
        };
        let e = ExecProvider::new(config, dir.path()).unwrap_err();
        assert!(e.to_string().contains("plugin binary executable") && e.to_string().contains("did not exist"), "{e}");
    }
}
