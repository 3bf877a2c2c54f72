//! The kubelet's keyring: credentials keyed by registry location, looked up by an image's
//! repository. A location is a host, optionally with a port and a path (`*.example.com`,
//! `registry:5000/team`); the most specific locations are tried first, and every location that
//! matches contributes its credentials, in that order.

use staticlet_runtime::RegistryAuth;

use crate::reference::DOCKER_HUB;

/// Docker Hub as docker config files name it (`https://index.docker.io/v1/`).
const DOCKER_HUB_INDEX: &str = "index.docker.io";

/// One credential the keyring may offer, with where it came from (never the secret itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// What to present to the registry.
    pub auth: RegistryAuth,
    /// Where it came from, for messages: the file or provider, and the location it was keyed by.
    pub source: String,
}

/// Credentials by registry location.
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    /// `(key, candidates)`, most specific key first.
    entries: Vec<(String, Vec<Candidate>)>,
}

impl Keyring {
    /// Adds the credential for `location` (as a docker config keys it: with or without
    /// `https://`, with `/v1/` or `/v2/` meaning the host itself). A location that is not a
    /// host name is ignored, as the kubelet ignores it, with a warning naming `origin`.
    pub fn add(&mut self, location: &str, auth: RegistryAuth, origin: &str) {
        let Some(key) = key_of(location) else {
            tracing::warn!(origin, location, "ignoring credentials for a location that is not a registry host");
            return;
        };
        let candidate = Candidate { auth, source: format!("{origin} ({location})") };
        match self.entries.binary_search_by(|(k, _)| key.cmp(k)) {
            Ok(i) => self.entries[i].1.push(candidate),
            Err(i) => self.entries.insert(i, (key, vec![candidate])),
        }
    }

    /// Every candidate for images of `repository` (normalized, as
    /// [`reference::repository`](crate::reference::repository) gives it), most specific
    /// location first. Docker Hub images fall back to credentials keyed `index.docker.io`.
    pub fn lookup(&self, repository: &str) -> Vec<Candidate> {
        let found: Vec<Candidate> =
            self.entries.iter().filter(|(key, _)| location_matches(key, repository)).flat_map(|(_, c)| c.iter().cloned()).collect();
        if !found.is_empty() {
            return found;
        }
        if crate::reference::registry(repository) == DOCKER_HUB {
            let hub = self.entries.iter().find(|(key, _)| key == DOCKER_HUB_INDEX);
            return hub.map(|(_, c)| c.clone()).unwrap_or_default();
        }
        Vec::new()
    }

    /// Whether it holds no credentials.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The key a docker config location is stored under: host and path, without scheme, and
/// without a `/v1/` or `/v2/` API prefix.
fn key_of(location: &str) -> Option<String> {
    let rest = location.strip_prefix("https://").or_else(|| location.strip_prefix("http://")).unwrap_or(location);
    let (host, path) = split(rest);
    if host.is_empty() || host.contains(char::is_whitespace) {
        return None;
    }
    let path =
        ["/v1/", "/v2/"].iter().find_map(|api| path.strip_prefix(api).map(|p| &path[api.len() - 1..][..p.len() + 1])).unwrap_or(path);
    Some(if path.is_empty() || path == "/" { host.to_owned() } else { format!("{host}{path}") })
}

/// `host[:port]` and the path after it (starting with `/`, or empty).
fn split(location: &str) -> (&str, &str) {
    match location.find('/') {
        Some(i) => (&location[..i], &location[i..]),
        None => (location, ""),
    }
}

/// Whether `target` (a repository or image, without scheme) is under `glob`, a location whose
/// host labels may be globs (`*.example.com`): the same port, as many host labels each matching
/// its glob, and the glob's path a prefix of the target's.
pub fn location_matches(glob: &str, target: &str) -> bool {
    let (glob_host, glob_path) = split(glob);
    let (target_host, target_path) = split(target);
    let (glob_name, glob_port) = host_port(glob_host);
    let (target_name, target_port) = host_port(target_host);
    if glob_port != target_port || !target_path.starts_with(glob_path) {
        return false;
    }
    let (glob_labels, target_labels): (Vec<&str>, Vec<&str>) = (glob_name.split('.').collect(), target_name.split('.').collect());
    glob_labels.len() == target_labels.len()
        && glob_labels.iter().zip(&target_labels).all(|(g, t)| glob::Pattern::new(g).is_ok_and(|p| p.matches(t)))
}

/// A host and its port (empty when none). A bracketed IPv6 address keeps its brackets.
fn host_port(host: &str) -> (&str, &str) {
    match host.rsplit_once(':') {
        Some((name, port)) if !name.is_empty() && (!name.contains(':') || name.ends_with(']')) => (name, port),
        _ => (host, ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(user: &str) -> RegistryAuth {
        RegistryAuth::basic("", user, "pw")
    }

    fn users(found: Vec<Candidate>) -> Vec<String> {
        found.into_iter().map(|c| c.auth.username).collect()
    }

    #[test]
    fn keys_drop_the_scheme_and_the_api_version() {
        for (location, key) in [
            ("https://index.docker.io/v1/", "index.docker.io"),
            ("http://registry:5000/v2/", "registry:5000"),
            ("registry.example.com", "registry.example.com"),
            ("registry.example.com/team/", "registry.example.com/team/"),
            ("https://registry.example.com/v1/team", "registry.example.com/team"),
        ] {
            assert_eq!(key_of(location).as_deref(), Some(key), "{location}");
        }
        assert_eq!(key_of("https://"), None);
    }

    /// Cases from the kubelet's `TestURLsMatch` (pkg/credentialprovider/keyring_test.go).
    #[test]
    fn locations_match_as_the_kubelets_keyring_matches_them() {
        for (glob, target, matches) in [
            ("*.kubernetes.io", "prefix.kubernetes.io", true),
            ("prefix.*.io", "prefix.kubernetes.io", true),
            ("prefix.kubernetes.*", "prefix.kubernetes.io", true),
            ("*-good.kubernetes.io", "prefix-good.kubernetes.io", true),
            ("*.kubernetes.io", "kubernetes.io", false),
            ("*.*.kubernetes.io", "prefix.kubernetes.io", false),
            ("prefix.kubernetes.io", "kubernetes.io", false),
            ("*.kubernetes.io", "prefix.kubernetes.io/path", true),
            ("*.kubernetes.io/path", "prefix.kubernetes.io/path", true),
            ("*.kubernetes.io/path", "prefix.kubernetes.io/otherpath", false),
            ("*.kubernetes.io/path", "prefix.kubernetes.io/path/sub", true),
            ("*.kubernetes.io:443", "prefix.kubernetes.io:443", true),
            ("*.kubernetes.io", "prefix.kubernetes.io:443", false),
            ("*.kubernetes.io:443", "prefix.kubernetes.io", false),
            ("*.kubernetes.io:444", "prefix.kubernetes.io:443", false),
            ("prefix.kubernetes.io", "prefix.kubernetes.io:443", false),
            ("127.0.0.1:5001", "127.0.0.1:5001/team/app", true),
            ("*.dkr.ecr.*.amazonaws.com", "123456789012.dkr.ecr.us-east-1.amazonaws.com/app", true),
            ("*.dkr.ecr.*.amazonaws.com", "123456789012.dkr.ecr.us-east-1.amazonaws.com.cn/app", false),
        ] {
            assert_eq!(location_matches(glob, target), matches, "{glob} vs {target}");
        }
    }

    #[test]
    fn the_most_specific_location_is_tried_first_and_all_matching_ones_after() {
        let mut keyring = Keyring::default();
        keyring.add("quay.io", auth("host"), "f");
        keyring.add("quay.io/coreos", auth("org"), "f");
        keyring.add("https://quay.io/coreos/etcd", auth("repo"), "f");
        keyring.add("gcr.io", auth("other"), "f");
        assert_eq!(users(keyring.lookup("quay.io/coreos/etcd")), ["repo", "org", "host"]);
        assert_eq!(users(keyring.lookup("quay.io/coreos/flannel")), ["org", "host"]);
        assert_eq!(users(keyring.lookup("quay.io/other/app")), ["host"]);
        assert!(keyring.lookup("registry.k8s.io/pause").is_empty());
    }

    #[test]
    fn two_spellings_of_one_location_are_both_tried() {
        let mut keyring = Keyring::default();
        keyring.add("https://registry:5000", auth("first"), "f");
        keyring.add("registry:5000", auth("second"), "f");
        assert_eq!(users(keyring.lookup("registry:5000/app")), ["first", "second"]);
    }

    #[test]
    fn docker_hub_images_use_the_index_credentials() {
        let mut keyring = Keyring::default();
        keyring.add("https://index.docker.io/v1/", auth("hub"), "f");
        assert_eq!(users(keyring.lookup("docker.io/library/busybox")), ["hub"]);
        assert_eq!(users(keyring.lookup("docker.io/myorg/app")), ["hub"]);
        assert!(keyring.lookup("quay.io/myorg/app").is_empty());
    }

    #[test]
    fn a_candidate_names_its_origin_and_location_but_no_secret() {
        let mut keyring = Keyring::default();
        keyring.add("registry:5000", RegistryAuth::basic("", "alice", "s3cret"), "/root/.docker/config.json");
        let found = keyring.lookup("registry:5000/app");
        assert_eq!(found[0].source, "/root/.docker/config.json (registry:5000)");
    }
}
