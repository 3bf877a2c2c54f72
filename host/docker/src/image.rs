//! Image presence and pulls.

use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::query_parameters::CreateImageOptions;
use futures::StreamExt;
use serde_json::json;
use sha2::{Digest, Sha256};
use staticlet_runtime::{Image, RuntimeError};

/// The image as Docker has it, or `None`.
pub async fn status(docker: &Docker, image: &str) -> Result<Option<Image>, RuntimeError> {
    match docker.inspect_image(image).await {
        Ok(inspect) => Ok(Some(Image { id: inspect.id.unwrap_or_default(), size: inspect.size.unwrap_or(0).max(0) as u64 })),
        Err(DockerError::DockerResponseServerError { status_code: 404, .. }) => Ok(None),
        Err(e) => Err(crate::map_error("image_status", image, e)),
    }
}

/// Pulls `image`. An untagged reference is pulled as `:latest`: Docker would pull every tag.
pub async fn pull(docker: &Docker, image: &str) -> Result<String, RuntimeError> {
    let reference = with_default_tag(image);
    let options = CreateImageOptions { from_image: Some(reference.clone()), ..Default::default() };
    let mut progress = docker.create_image(Some(options), None, None);
    while let Some(step) = progress.next().await {
        let info = step.map_err(|e| RuntimeError::ImagePull { image: image.to_owned(), message: docker_message(e) })?;
        if let Some(error) = info.error_detail.and_then(|d| d.message) {
            return Err(RuntimeError::ImagePull { image: image.to_owned(), message: error });
        }
    }
    Ok(reference)
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
    use super::with_default_tag;

    #[test]
    fn default_tag() {
        assert_eq!(with_default_tag("busybox"), "busybox:latest");
        assert_eq!(with_default_tag("127.0.0.1:5000/busybox"), "127.0.0.1:5000/busybox:latest");
        assert_eq!(with_default_tag("127.0.0.1:5000/busybox:1"), "127.0.0.1:5000/busybox:1");
        assert_eq!(with_default_tag("busybox@sha256:ab"), "busybox@sha256:ab");
    }
}
