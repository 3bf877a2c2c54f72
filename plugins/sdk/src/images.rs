//! Container images: every one of a pod with its field path, and the registry each comes from,
//! for the policies most validators start with (allowed registries, pinned tags).

use crate::Pod;

/// Every container's image (init, app and ephemeral containers, in that order) with its field
/// path: `("spec.containers[1].image", "busybox")`. An absent image is `""`.
pub fn container_images(pod: &Pod) -> impl Iterator<Item = (String, &str)> {
    let spec = pod.spec.as_ref();
    let init = spec.and_then(|s| s.init_containers.as_deref()).unwrap_or_default();
    let app = spec.map(|s| s.containers.as_slice()).unwrap_or_default();
    let ephemeral = spec.and_then(|s| s.ephemeral_containers.as_deref()).unwrap_or_default();
    numbered("initContainers", init.iter().map(|c| c.image.as_deref()))
        .chain(numbered("containers", app.iter().map(|c| c.image.as_deref())))
        .chain(numbered("ephemeralContainers", ephemeral.iter().map(|c| c.image.as_deref())))
}

// Init and app containers are `Container`s but ephemeral ones are `EphemeralContainer`s, so each
// list is reduced to its images before the three are numbered alike.
fn numbered<'a>(kind: &'static str, images: impl Iterator<Item = Option<&'a str>>) -> impl Iterator<Item = (String, &'a str)> {
    images.enumerate().map(move |(i, image)| (format!("spec.{kind}[{i}].image"), image.unwrap_or_default()))
}

/// The image with its registry host made explicit, as a container runtime reads it: a first
/// path segment with a `.` or a `:`, or `localhost`, is a registry host, and an image without
/// one is Docker Hub's (`busybox` is `docker.io/busybox`).
pub fn normalize_image(image: &str) -> String {
    match image.split_once('/') {
        Some((host, _)) if host.contains(['.', ':']) || host == "localhost" => image.to_owned(),
        _ => format!("docker.io/{image}"),
    }
}

/// Whether the image comes from one of `registries`, each a registry host with an optional path
/// (`registry.internal:5000`, `ghcr.io/acme`; a trailing `/` is ignored). `docker.io` covers
/// images without a registry host.
pub fn in_registries(image: &str, registries: &[impl AsRef<str>]) -> bool {
    let image = normalize_image(image);
    registries.iter().any(|r| image.strip_prefix(r.as_ref().trim_end_matches('/')).is_some_and(|rest| rest.starts_with('/')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_of_container_is_listed_with_its_field_path() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "spec": {
                "initContainers": [{"name": "i", "image": "init:1"}],
                "containers": [{"name": "a", "image": "a"}, {"name": "b"}],
                "ephemeralContainers": [{"name": "e", "image": "debug"}],
            }
        }))
        .unwrap();
        let images: Vec<(String, &str)> = container_images(&pod).collect();
        assert_eq!(
            images,
            [
                ("spec.initContainers[0].image".to_owned(), "init:1"),
                ("spec.containers[0].image".to_owned(), "a"),
                ("spec.containers[1].image".to_owned(), ""),
                ("spec.ephemeralContainers[0].image".to_owned(), "debug"),
            ]
        );
        assert_eq!(container_images(&Pod::default()).count(), 0);
    }

    #[test]
    fn an_image_without_a_registry_host_is_docker_hubs() {
        assert_eq!(normalize_image("busybox"), "docker.io/busybox");
        assert_eq!(normalize_image("library/nginx:1"), "docker.io/library/nginx:1");
        assert_eq!(normalize_image("registry.internal:5000/app:1"), "registry.internal:5000/app:1");
        assert_eq!(normalize_image("reg:5000/app"), "reg:5000/app");
        assert_eq!(normalize_image("localhost/app"), "localhost/app");
        assert_eq!(normalize_image("ghcr.io/acme/app"), "ghcr.io/acme/app");
    }

    #[test]
    fn registries_match_whole_path_segments_with_or_without_a_trailing_slash() {
        assert!(in_registries("busybox", &["docker.io"]));
        assert!(in_registries("ghcr.io/acme/app:1", &["quay.io".to_owned(), "ghcr.io/acme/".to_owned()]));
        assert!(!in_registries("ghcr.io/acmeco/app:1", &["ghcr.io/acme"]));
        assert!(!in_registries("docker.io.evil.example/app", &["docker.io"]));
        assert!(!in_registries("busybox", &["registry.internal:5000"]));
    }
}
