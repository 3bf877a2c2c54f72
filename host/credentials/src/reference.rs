//! Image references as the kubelet hands them to its keyring: the repository, normalized the
//! way Docker names it (`busybox:1` → `docker.io/library/busybox`), without tag or digest.

/// Docker Hub's name in a normalized reference.
pub const DOCKER_HUB: &str = "docker.io";

/// The normalized repository of `image`: the registry host first (`docker.io` when the first
/// component is not a host: no `.` or `:` in it and not `localhost`), `library/` for Docker Hub's
/// one-component names, and no tag or digest.
pub fn repository(image: &str) -> String {
    let without_digest = image.split_once('@').map_or(image, |(name, _)| name);
    // A tag is a `:` after the last `/`; a `:` before it is a registry's port.
    let last_slash = without_digest.rfind('/').map_or(0, |i| i + 1);
    let name = match without_digest[last_slash..].rfind(':') {
        Some(colon) => &without_digest[..last_slash + colon],
        None => without_digest,
    };
    match name.split_once('/') {
        Some((first, _)) if is_host(first) => {
            let rest = &name[first.len() + 1..];
            if first == "index.docker.io" { normalize_hub(rest) } else { name.to_owned() }
        }
        _ => normalize_hub(name),
    }
}

/// The registry host of a normalized repository.
pub fn registry(repository: &str) -> &str {
    repository.split('/').next().unwrap_or(repository)
}

fn is_host(component: &str) -> bool {
    component.contains(['.', ':']) || component == "localhost"
}

fn normalize_hub(path: &str) -> String {
    if path.contains('/') { format!("{DOCKER_HUB}/{path}") } else { format!("{DOCKER_HUB}/library/{path}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_normalize_as_docker_names_them() {
        for (image, repo) in [
            ("busybox", "docker.io/library/busybox"),
            ("busybox:1.36", "docker.io/library/busybox"),
            ("library/busybox@sha256:abcd", "docker.io/library/busybox"),
            ("myorg/app:v1", "docker.io/myorg/app"),
            ("docker.io/myorg/app", "docker.io/myorg/app"),
            ("index.docker.io/myorg/app:v1", "docker.io/myorg/app"),
            ("registry.k8s.io/pause:3.10", "registry.k8s.io/pause"),
            ("127.0.0.1:5000/team/app:t1", "127.0.0.1:5000/team/app"),
            ("localhost/app", "localhost/app"),
            ("localhost:5000/app@sha256:ab", "localhost:5000/app"),
            ("123456789012.dkr.ecr.us-east-1.amazonaws.com/app:1", "123456789012.dkr.ecr.us-east-1.amazonaws.com/app"),
        ] {
            assert_eq!(repository(image), repo, "{image}");
        }
        assert_eq!(registry("127.0.0.1:5000/team/app"), "127.0.0.1:5000");
    }
}
