//! The pause image staticlet carries, for nodes that have no pause image and cannot pull one
//! (an air-gapped edge host, a registry that is down at boot). It holds one static binary built
//! from `host/pause` by this crate's build script, and is imported into the engine from memory,
//! so no registry is ever involved.

use std::collections::HashMap;

use bollard::Docker;
use bollard::query_parameters::ImportImageOptions;
use futures::StreamExt;
use serde_json::json;
use sha2::{Digest, Sha256};
use staticlet_runtime::RuntimeError;

use crate::image::{save_archive, tar_of};

/// The static pause binary.
const BINARY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/pause"));

/// The built-in image's name. Its tag is the binary's digest, so another binary is another
/// image and an engine never runs a stale one under the same name.
pub fn image_name() -> String {
    format!("staticlet.local/pause:{}", &hex::encode(Sha256::digest(BINARY))[..12])
}

/// Imports the built-in image unless the engine has it; returns its name.
pub async fn ensure_loaded(docker: &Docker) -> Result<String, RuntimeError> {
    let name = image_name();
    if crate::image::status(docker, &name).await?.is_some() {
        return Ok(name);
    }
    let body = bollard::body_full(archive(&name).into());
    let mut progress = docker.import_image(ImportImageOptions { quiet: true, ..Default::default() }, body, None::<HashMap<_, _>>);
    while let Some(step) = progress.next().await {
        let failed = |message: String| RuntimeError::ImagePull {
            image: name.clone(),
            message: format!("loading the built-in pause image: {message}"),
        };
        let info = step.map_err(|e| failed(e.to_string()))?;
        if let Some(message) = info.error_detail.and_then(|d| d.message) {
            return Err(failed(message));
        }
    }
    Ok(name)
}

/// The image as a `docker save` archive: one layer holding `/pause`, which is the entrypoint.
fn archive(tag: &str) -> Vec<u8> {
    let layer = tar_of([("pause", BINARY, 0o755)]);
    save_archive(tag, json!({"Entrypoint": ["/pause"], "User": "65535:65535"}), &layer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_binary_is_static_and_the_name_follows_its_digest() {
        // A static binary has no interpreter (PT_INTERP): it runs in an image with nothing else.
        assert_eq!(&BINARY[..4], b"\x7fELF");
        assert!(!BINARY.windows(b"/lib64/ld-linux".len()).any(|w| w == b"/lib64/ld-linux"));
        assert!(image_name().starts_with("staticlet.local/pause:"));
        assert!(archive("t").len() > BINARY.len());
    }
}
