//! A registry that requires a login: Debian's `docker-registry` with an htpasswd file, on
//! [`ADDRESS`] (Docker and containerd pull from loopback over plain HTTP; `.ci/run` tells
//! Podman to), started on first use and stopped by its PID when the test process is gone.

use std::path::{Path, PathBuf};
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

/// Writes the config of a registry with [`USER`]'s login, storing under `dir`, on `address`.
fn write_config(dir: &Path, address: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let htpasswd = Command::new("htpasswd").args(["-Bbn", USER, PASSWORD]).output().expect("htpasswd (apache2-utils) is installed");
    assert!(htpasswd.status.success());
    std::fs::write(dir.join("htpasswd"), htpasswd.stdout).unwrap();
    let config = format!(
        "version: 0.1\nlog: {{level: warn}}\nstorage:\n  filesystem: {{rootdirectory: {dir}/data}}\n  delete: {{enabled: true}}\n\
         http:\n  addr: {address}\nauth:\n  htpasswd:\n    realm: staticlet-e2e\n    path: {dir}/htpasswd\n",
        dir = dir.display(),
    );
    std::fs::write(dir.join("config.yml"), config).unwrap();
}

/// Waits until the registry on `address` answers (with 401: it wants the login).
async fn wait_answering(address: &str) {
    let url = format!("http://{address}/v2/");
    wait_for(Duration::from_secs(30), "the registry with logins to answer", || async {
        let status = reqwest::get(&url).await.ok()?.status();
        (status == reqwest::StatusCode::UNAUTHORIZED).then_some(())
    })
    .await;
}

impl AuthRegistry {
    async fn start(&self) {
        write_config(&self.dir, &self.address);
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
        wait_answering(&self.address).await;
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
        auth_field()
    }
}

fn auth_field() -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
}

/// A registry with [`USER`]'s login of one test's own, on a port of its own, that the test
/// stops and starts again (the shared [`AuthRegistry`] serves the other tests meanwhile).
/// Stopped by its PID when dropped.
pub struct OwnRegistry {
    /// `127.0.0.1:<port>`.
    pub address: String,
    dir: tempfile::TempDir,
    child: Option<std::process::Child>,
}

impl OwnRegistry {
    /// Starts one.
    pub async fn start() -> OwnRegistry {
        let dir = tempfile::tempdir().unwrap();
        let address = format!("127.0.0.1:{}", super::free_port());
        write_config(dir.path(), &address);
        let mut registry = OwnRegistry { address, dir, child: None };
        registry.resume().await;
        registry
    }

    /// Starts it again, on the same port and storage.
    pub async fn resume(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.path().join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(self.dir.path().join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("docker-registry is installed");
        self.child = Some(child);
        wait_answering(&self.address).await;
    }

    /// Stops it: connections are refused until [`OwnRegistry::resume`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A docker `config.json` with the login, as `docker login` writes it.
    pub fn config_json(&self) -> String {
        serde_json::json!({"auths": {self.address.clone(): {"auth": auth_field()}}}).to_string()
    }

    /// The manifest `reference` (a tag or digest) of `repository` as the registry serves it to
    /// an OCI client: its `Docker-Content-Digest` and body.
    pub async fn manifest(&self, repository: &str, reference: &str) -> (String, serde_json::Value) {
        let url = format!("http://{}/v2/{repository}/manifests/{reference}", self.address);
        let response = reqwest::Client::new()
            .get(url)
            .basic_auth(USER, Some(PASSWORD))
            .header("Accept", "application/vnd.oci.image.manifest.v1+json")
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap();
        let digest = response.headers()["docker-content-digest"].to_str().unwrap().to_owned();
        (digest, serde_json::from_slice(&response.bytes().await.unwrap()).unwrap())
    }

    /// Uploads a blob (POST, then PUT with the body) and returns its digest.
    pub async fn put_blob(&self, repository: &str, blob: &[u8]) -> String {
        use sha2::Digest as _;
        let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(blob)));
        let client = reqwest::Client::new();
        let started = client
            .post(format!("http://{}/v2/{repository}/blobs/uploads/", self.address))
            .basic_auth(USER, Some(PASSWORD))
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap();
        let location = started.headers()["location"].to_str().unwrap().to_owned();
        let location = if location.starts_with('/') { format!("http://{}{location}", self.address) } else { location };
        let separator = if location.contains('?') { '&' } else { '?' };
        client
            .put(format!("{location}{separator}digest={digest}"))
            .basic_auth(USER, Some(PASSWORD))
            .header("Content-Type", "application/octet-stream")
            .body(blob.to_vec())
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap();
        digest
    }

    /// Puts an OCI manifest at `tag`.
    pub async fn put_manifest(&self, repository: &str, tag: &str, manifest: &serde_json::Value) {
        reqwest::Client::new()
            .put(format!("http://{}/v2/{repository}/manifests/{tag}", self.address))
            .basic_auth(USER, Some(PASSWORD))
            .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
            .body(serde_json::to_vec(manifest).unwrap())
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap();
    }

    /// Signs the artifact `digest` of `repository` in cosign's key-based layout (`cosign sign
    /// --key`, v2's default): a simple-signing payload naming the digest, signed (ECDSA P-256,
    /// SHA-256) by the OpenSSL command line with `key` (a PEM private key), stored as the one
    /// layer of the manifest tagged `sha256-<hex>.sig`, its base64 signature in the layer's
    /// `dev.cosignproject.cosign/signature` annotation.
    pub async fn cosign_sign(&self, repository: &str, digest: &str, key: &Path) {
        let payload = serde_json::json!({
            "critical": {
                "identity": {"docker-reference": format!("{}/{repository}", self.address)},
                "image": {"docker-manifest-digest": digest},
                "type": "cosign container image signature",
            },
            "optional": null,
        });
        let payload = serde_json::to_vec(&payload).unwrap();
        let scratch = tempfile::tempdir().unwrap();
        std::fs::write(scratch.path().join("payload.json"), &payload).unwrap();
        let signed = Command::new("openssl")
            .args(["dgst", "-sha256", "-sign"])
            .arg(key)
            .arg("-out")
            .arg(scratch.path().join("signature.der"))
            .arg(scratch.path().join("payload.json"))
            .output()
            .unwrap();
        assert!(signed.status.success(), "{}", String::from_utf8_lossy(&signed.stderr));
        use base64::Engine as _;
        let signature = base64::engine::general_purpose::STANDARD.encode(std::fs::read(scratch.path().join("signature.der")).unwrap());
        let config = br#"{"architecture":"","config":{},"created":"0001-01-01T00:00:00Z","history":[{"created":"0001-01-01T00:00:00Z"}],"os":"","rootfs":{"type":"layers","diff_ids":[]}}"#;
        let config_digest = self.put_blob(repository, config).await;
        let payload_digest = self.put_blob(repository, &payload).await;
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": config.len(), "digest": config_digest},
            "layers": [{
                "mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
                "size": payload.len(),
                "digest": payload_digest,
                "annotations": {"dev.cosignproject.cosign/signature": signature},
            }],
        });
        self.put_manifest(repository, &format!("{}.sig", digest.replace(':', "-")), &manifest).await;
    }
}

impl Drop for OwnRegistry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A cosign-style key pair made by the OpenSSL command line in `dir`: `cosign.key` (a PEM
/// EC private key on P-256) and `cosign.pub` (its PEM public key, as `cosign.pub` is written).
pub fn openssl_key_pair(dir: &Path) -> (PathBuf, PathBuf) {
    let (key, public) = (dir.join("cosign.key"), dir.join("cosign.pub"));
    let made = Command::new("openssl").args(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out"]).arg(&key).output().unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let made = Command::new("openssl").args(["ec", "-pubout", "-in"]).arg(&key).arg("-out").arg(&public).output().unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    (key, public)
}
