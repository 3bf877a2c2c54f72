//! A registry that requires a login: Debian's `docker-registry` with an htpasswd file, on
//! [`ADDRESS`] (Docker and containerd pull from loopback over plain HTTP; `.ci/run` tells
//! Podman to), started on first use and stopped by its PID when the test process is gone.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::query_parameters::{PushImageOptions, RemoveImageOptions, TagImageOptions};
use futures::StreamExt;
use tokio::sync::OnceCell;

use super::images::{BUSYBOX, PAUSE};
use super::wait_for;

/// Where it listens: a port of its own, fixed because Podman must be told (in
/// `registries.conf.d`, by `.ci/run`) that it speaks plain HTTP.
pub const ADDRESS: &str = "127.0.0.1:5001";

/// The registry's one user.
pub const USER: &str = "staticlet-e2e";
/// Its password: distinctive, so a test can grep logs for it, and with a `:` in it, which only
/// the first `:` of `base64(user:password)` separates.
pub const PASSWORD: &str = "e2e-Pa55:w0rd-7c1f9a";

/// The running registry.
#[derive(Debug, Clone)]
pub struct AuthRegistry {
    /// `127.0.0.1:<port>`.
    pub address: String,
    dir: PathBuf,
}

static SERVICE: OnceCell<AuthRegistry> = OnceCell::const_new();

/// The tests' registry with logins, started on first use.
pub async fn auth_registry() -> AuthRegistry {
    SERVICE
        .get_or_init(|| async {
            let dir = std::env::temp_dir().join(format!("staticlet-e2e-auth-registry-{}", std::process::id()));
            let registry = AuthRegistry { address: ADDRESS.to_owned(), dir };
            registry.start().await;
            registry
        })
        .await
        .clone()
}

impl AuthRegistry {
    async fn start(&self) {
        std::fs::create_dir_all(&self.dir).unwrap();
        let htpasswd = Command::new("htpasswd").args(["-Bbn", USER, PASSWORD]).output().expect("htpasswd (apache2-utils) is installed");
        assert!(htpasswd.status.success());
        std::fs::write(self.dir.join("htpasswd"), htpasswd.stdout).unwrap();
        let config = format!(
            "version: 0.1\nlog: {{level: warn}}\nstorage:\n  filesystem: {{rootdirectory: {dir}/data}}\n  delete: {{enabled: true}}\n\
             http:\n  addr: {address}\nauth:\n  htpasswd:\n    realm: staticlet-e2e\n    path: {dir}/htpasswd\n",
            dir = self.dir.display(),
            address = self.address,
        );
        std::fs::write(self.dir.join("config.yml"), config).unwrap();
        let script = format!(
            r#"docker-registry serve '{dir}/config.yml' >>'{dir}/registry.log' 2>&1 & r=$!
while kill -0 {tests} 2>/dev/null && kill -0 $r 2>/dev/null; do sleep 1; done
kill $r"#,
            dir = self.dir.display(),
            tests = std::process::id(),
        );
        let mut watchdog =
            Command::new("sh").arg("-c").arg(script).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        std::thread::spawn(move || watchdog.wait());
        let url = format!("http://{}/v2/", self.address);
        wait_for(Duration::from_secs(30), "the registry with logins to answer", || async {
            let status = reqwest::get(&url).await.ok()?.status();
            (status == reqwest::StatusCode::UNAUTHORIZED).then_some(())
        })
        .await;
    }

    /// The login, as Docker's API takes it.
    pub fn credentials(&self) -> DockerCredentials {
        DockerCredentials {
            username: Some(USER.into()),
            password: Some(PASSWORD.into()),
            serveraddress: Some(self.address.clone()),
            ..Default::default()
        }
    }

    /// Pushes the busybox test image as `repo:tag` (logged in), then removes it from the
    /// engine, so the only way back is a pull with the login.
    pub async fn publish(&self, docker: &Docker, repo: &str, tag: &str) -> String {
        self.publish_image(docker, BUSYBOX, repo, tag).await
    }

    /// The same with the pause test image, for sandbox images.
    pub async fn publish_pause(&self, docker: &Docker, repo: &str, tag: &str) -> String {
        self.publish_image(docker, PAUSE, repo, tag).await
    }

    async fn publish_image(&self, docker: &Docker, source: &str, repo: &str, tag: &str) -> String {
        let reference = format!("{}/{repo}", self.address);
        docker.tag_image(source, Some(TagImageOptions { repo: Some(reference.clone()), tag: Some(tag.to_owned()) })).await.unwrap();
        let options = PushImageOptions { tag: Some(tag.to_owned()), ..Default::default() };
        let mut push = docker.push_image(&reference, Some(options), Some(self.credentials()));
        while let Some(step) = push.next().await {
            let info = step.unwrap_or_else(|e| panic!("pushing to the registry at {}: {e}", self.address));
            assert!(info.error_detail.is_none(), "{info:?}");
        }
        let image = format!("{reference}:{tag}");
        docker.remove_image(&image, Some(RemoveImageOptions { force: true, ..Default::default() }), None).await.unwrap();
        image
    }

    /// A docker `config.json` with the login for this registry, as `docker login` writes it
    /// (`auth` is base64 of `user:password`).
    pub fn config_json(&self) -> String {
        serde_json::json!({"auths": {self.address.clone(): {"auth": self.auth_field()}}}).to_string()
    }

    /// A legacy `.dockercfg` with the login, keyed with a scheme as old clients wrote it.
    pub fn dockercfg(&self) -> String {
        serde_json::json!({format!("https://{}", self.address): {"username": USER, "password": PASSWORD, "email": "e2e@example.com"}})
            .to_string()
    }

    fn auth_field(&self) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
    }
}
