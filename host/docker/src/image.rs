//! Image presence and pulls.

use std::collections::BTreeMap;

use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::errors::Error as DockerError;
use bollard::models::CreateImageInfo;
use bollard::query_parameters::CreateImageOptions;
use futures::StreamExt;
use serde_json::json;
use sha2::{Digest, Sha256};
use staticlet_runtime::{Image, PullProgress, PullProgressSender, RegistryAuth, RuntimeError};

/// The image as Docker has it, or `None`.
pub async fn status(docker: &Docker, image: &str) -> Result<Option<Image>, RuntimeError> {
    match docker.inspect_image(image).await {
        Ok(inspect) => Ok(Some(Image { id: inspect.id.unwrap_or_default(), size: inspect.size.unwrap_or(0).max(0) as u64 })),
        Err(DockerError::DockerResponseServerError { status_code: 404, .. }) => Ok(None),
        Err(e) => Err(crate::map_error("image_status", image, e)),
    }
}

/// Pulls `image` presenting `auth` (the engine's `X-Registry-Auth`), reporting each layer's
/// progress. An untagged reference is pulled as `:latest`: Docker would pull every tag.
pub async fn pull(
    docker: &Docker,
    image: &str,
    auth: Option<&RegistryAuth>,
    progress: &PullProgressSender,
) -> Result<String, RuntimeError> {
    let reference = with_default_tag(image);
    let options = CreateImageOptions { from_image: Some(reference.clone()), ..Default::default() };
    let mut steps = docker.create_image(Some(options), None, auth.map(credentials));
    let mut layers = Layers::default();
    while let Some(step) = steps.next().await {
        let info = step.map_err(|e| RuntimeError::ImagePull { image: image.to_owned(), message: docker_message(e) })?;
        if let Some(error) = info.error_detail.as_ref().and_then(|d| d.message.clone()) {
            return Err(RuntimeError::ImagePull { image: image.to_owned(), message: error });
        }
        if layers.note(&info) {
            progress.send_replace(layers.progress());
        }
    }
    Ok(reference)
}

fn credentials(auth: &RegistryAuth) -> DockerCredentials {
    let field = |value: &str| Some(value.to_owned()).filter(|v| !v.is_empty());
    DockerCredentials {
        username: field(&auth.username),
        password: field(&auth.password),
        auth: field(&auth.auth),
        email: None,
        serveraddress: field(&auth.server_address),
        identitytoken: field(&auth.identity_token),
        registrytoken: field(&auth.registry_token),
    }
}

/// Each layer's download as the engine's progress messages tell it.
#[derive(Default)]
struct Layers(BTreeMap<String, Layer>);

#[derive(Default)]
struct Layer {
    done: bool,
    current: u64,
    total: u64,
}

impl Layers {
    /// Takes one progress message; says whether anything changed. Messages without a layer ID
    /// (`Pulling from ...`, `Digest: ...`, `Status: ...`) are about the whole image.
    fn note(&mut self, info: &CreateImageInfo) -> bool {
        let (Some(id), Some(status)) = (&info.id, &info.status) else { return false };
        if status.starts_with("Pulling from") {
            return false;
        }
        let layer = self.0.entry(id.clone()).or_default();
        match status.as_str() {
            "Pull complete" | "Already exists" => layer.done = true,
            "Download complete" | "Verifying Checksum" => layer.current = layer.total,
            "Downloading" => {
                let detail = info.progress_detail.as_ref();
                layer.current = detail.and_then(|d| d.current).unwrap_or(0).max(0) as u64;
                layer.total = detail.and_then(|d| d.total).unwrap_or(0).max(0) as u64;
            }
            _ => {}
        }
        true
    }

    fn progress(&self) -> PullProgress {
        PullProgress {
            layers: self.0.len() as u32,
            layers_done: self.0.values().filter(|l| l.done).count() as u32,
            bytes_total: self.0.values().map(|l| l.total).sum(),
            bytes_done: self.0.values().map(|l| if l.done { l.total } else { l.current }).sum(),
        }
    }
}

/// A `docker save` archive (what `docker load` takes) of one image tagged `tag`, with `config`
/// as its run config (`Entrypoint`, `Cmd`, `Env`, `User`, ...) and `layer` (a tar) as its one
/// layer: how images are made here without a registry or a build.
pub fn save_archive(tag: &str, config: serde_json::Value, layer: &[u8]) -> Vec<u8> {
    let layer_digest = hex::encode(Sha256::digest(layer));
    let image = serde_json::to_vec(&json!({
        "architecture": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{layer_digest}")]},
    }))
    .expect("JSON values always serialize");
    let image_digest = hex::encode(Sha256::digest(&image));
    let manifest = serde_json::to_vec(&json!([{
        "Config": format!("{image_digest}.json"),
        "RepoTags": [tag],
        "Layers": [format!("{layer_digest}/layer.tar")],
    }]))
    .expect("JSON values always serialize");
    tar_of([
        ("manifest.json", manifest.as_slice(), 0o644),
        (&format!("{image_digest}.json"), image.as_slice(), 0o644),
        (&format!("{layer_digest}/layer.tar"), layer, 0o644),
    ])
}

/// A tar of regular files, each with its path, bytes and mode.
pub(crate) fn tar_of<'a>(files: impl IntoIterator<Item = (&'a str, &'a [u8], u32)>) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, data, mode) in files {
        let mut header = tar::Header::new_gnu();
        header.set_mode(mode);
        header.set_size(data.len() as u64);
        builder.append_data(&mut header, path, data).expect("writing to memory");
    }
    builder.into_inner().expect("writing to memory")
}

fn docker_message(error: DockerError) -> String {
    match error {
        DockerError::DockerResponseServerError { message, .. } => message,
        DockerError::DockerStreamError { error } => error,
        other => other.to_string(),
    }
}

/// `busybox` → `busybox:latest`; tagged and digested references are kept.
pub fn with_default_tag(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    if image.contains('@') || last.contains(':') { image.to_owned() } else { format!("{image}:latest") }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(id: &str, status: &str, detail: Option<(i64, i64)>) -> CreateImageInfo {
        CreateImageInfo {
            id: Some(id.to_owned()),
            status: Some(status.to_owned()),
            progress_detail: detail.map(|(current, total)| bollard::models::ProgressDetail { current: Some(current), total: Some(total) }),
            ..Default::default()
        }
    }

    #[test]
    fn progress_counts_layers_and_bytes_as_the_engine_reports_them() {
        let mut layers = Layers::default();
        assert!(!layers.note(&step("1", "Pulling from library/busybox", None)));
        for (id, status, detail) in [
            ("a", "Pulling fs layer", None),
            ("b", "Already exists", None),
            ("c", "Pulling fs layer", None),
            ("a", "Downloading", Some((300, 1000))),
            ("c", "Downloading", Some((50, 200))),
        ] {
            assert!(layers.note(&step(id, status, detail)));
        }
        assert_eq!(layers.progress(), PullProgress { layers: 3, layers_done: 1, bytes_total: 1200, bytes_done: 350 });
        layers.note(&step("c", "Download complete", None));
        layers.note(&step("c", "Pull complete", None));
        assert_eq!(layers.progress(), PullProgress { layers: 3, layers_done: 2, bytes_total: 1200, bytes_done: 500 });
    }

    #[test]
    fn credentials_carry_only_the_fields_set() {
        let sent = credentials(&RegistryAuth::basic("127.0.0.1:5001", "user", "pw"));
        assert_eq!((sent.username.as_deref(), sent.password.as_deref()), (Some("user"), Some("pw")));
        assert_eq!(sent.serveraddress.as_deref(), Some("127.0.0.1:5001"));
        assert_eq!((sent.auth, sent.identitytoken, sent.registrytoken), (None, None, None));
    }

    #[test]
    fn default_tag() {
        assert_eq!(with_default_tag("busybox"), "busybox:latest");
        assert_eq!(with_default_tag("127.0.0.1:5000/busybox"), "127.0.0.1:5000/busybox:latest");
        assert_eq!(with_default_tag("127.0.0.1:5000/busybox:1"), "127.0.0.1:5000/busybox:1");
        assert_eq!(with_default_tag("busybox@sha256:ab"), "busybox@sha256:ab");
    }
}
