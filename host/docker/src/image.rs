//! Image presence and pulls.

use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::query_parameters::CreateImageOptions;
use futures::StreamExt;
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
