//! The node's docker config file, found where the kubelet looks for it and read as the kubelet
//! reads it.
//!
//! The kubelet takes the first valid `config.json` of `<root-dir>`, the working directory,
//! `$HOME/.docker` and `/.docker`; only when there is none, the first valid legacy `.dockercfg`
//! of `<root-dir>`, the working directory, `$HOME` and `/`. Files are not merged, and an
//! unreadable or malformed one is passed over. Unlike the kubelet, which keeps what it read for
//! five minutes, the files are read again for every pull, so an edit counts from the next one.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use base64::Engine as _;
use serde::Deserialize;
use staticlet_runtime::RegistryAuth;

use crate::keyring::Keyring;

/// The kubelet's limit on a config file's size.
const MAX_FILE_SIZE: u64 = 10 << 20;

/// One entry of a docker config: the fields the kubelet reads, and the two token fields
/// Docker writes, which the kubelet ignores and staticlet passes on.
#[derive(Deserialize, Default)]
#[serde(default)]
struct Entry {
    username: String,
    password: String,
    auth: String,
    identitytoken: String,
    registrytoken: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ConfigJson {
    auths: BTreeMap<String, Entry>,
}

/// Why a file was passed over. Never holds a secret: the JSON error names a position only.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// It could not be read.
    #[error("cannot read it: {0}")]
    Read(std::io::Error),
    /// It is over the kubelet's 10 MiB limit.
    #[error("it is over 10 MiB")]
    TooLarge,
    /// It is not JSON of the expected shape.
    #[error("it is not a docker config: {0}")]
    Json(String),
    /// An `auth` field is not `base64(username:password)`.
    #[error("the auth field of {location:?} is not base64 of username:password")]
    Auth {
        /// The registry it is keyed by.
        location: String,
    },
}

/// A file's credentials by registry location, in the file's order.
pub type Entries = Vec<(String, RegistryAuth)>;

/// The search, in the kubelet's order.
#[derive(Debug)]
pub struct DockerConfigFiles {
    root_dir: PathBuf,
    /// Files whose problems were told, with the version told about: each is logged once.
    told: Mutex<HashSet<(PathBuf, Option<SystemTime>)>>,
}

impl DockerConfigFiles {
    /// The search of an agent whose `--root-dir` is `root_dir`.
    pub fn new(root_dir: impl Into<PathBuf>) -> Self {
        DockerConfigFiles { root_dir: root_dir.into(), told: Mutex::default() }
    }

    /// Every path looked at, in order: the `config.json` candidates, then the `.dockercfg` ones.
    /// The working directory and `$HOME` are taken as they are now.
    pub fn search_paths(&self) -> (Vec<PathBuf>, Vec<PathBuf>) {
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        let home = std::env::var_os("HOME").filter(|h| !h.is_empty()).map(PathBuf::from);
        let json_dirs = [Some(self.root_dir.clone()), Some(cwd.clone()), home.as_ref().map(|h| h.join(".docker")), Some("/.docker".into())];
        let legacy_dirs = [Some(self.root_dir.clone()), Some(cwd), home, Some("/".into())];
        let paths = |dirs: [Option<PathBuf>; 4], name: &str| dirs.into_iter().flatten().map(|d| d.join(name)).collect();
        (paths(json_dirs, "config.json"), paths(legacy_dirs, ".dockercfg"))
    }

    /// The credentials of the first valid file, as a keyring, with that file's path; an empty
    /// keyring when there is none.
    pub fn read(&self) -> (Keyring, Option<PathBuf>) {
        let (json, legacy) = self.search_paths();
        let found = json
            .iter()
            .find_map(|path| self.try_read(path, parse_config_json).map(|entries| (entries, path)))
            .or_else(|| legacy.iter().find_map(|path| self.try_read(path, parse_dockercfg).map(|entries| (entries, path))));
        let Some((entries, path)) = found else { return (Keyring::default(), None) };
        let mut keyring = Keyring::default();
        let origin = path.display().to_string();
        for (location, auth) in entries {
            keyring.add(&location, auth, &origin);
        }
        (keyring, Some(path.clone()))
    }

    /// The file's entries, or `None` when it is absent or passed over (and said why, once).
    fn try_read(&self, path: &Path, parse: fn(&[u8]) -> Result<Entries, FileError>) -> Option<Entries> {
        let meta = match std::fs::metadata(path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => return self.pass_over(path, None, &FileError::Read(e)),
        };
        let version = meta.modified().ok();
        if meta.len() > MAX_FILE_SIZE {
            return self.pass_over(path, version, &FileError::TooLarge);
        }
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) => return self.pass_over(path, version, &FileError::Read(e)),
        };
        let entries = match parse(&bytes) {
            Ok(entries) => entries,
            Err(e) => return self.pass_over(path, version, &e),
        };
        self.check_mode(path, version, &meta);
        Some(entries)
    }

    fn pass_over<T>(&self, path: &Path, version: Option<SystemTime>, error: &FileError) -> Option<T> {
        if self.first_time(path, version) {
            tracing::warn!(file = %path.display(), "passing over this docker config file: {error}");
        }
        None
    }

    /// Credentials readable by other users are used, as the kubelet uses them, but said once:
    /// refusing them would stop pulls that work under the kubelet.
    fn check_mode(&self, path: &Path, version: Option<SystemTime>, meta: &std::fs::Metadata) {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 && self.first_time(path, version) {
            tracing::warn!(
                file = %path.display(),
                mode = format_args!("{:o}", mode & 0o777),
                "this docker config file holds registry credentials and is readable by other users than its owner; chmod 600 it"
            );
        }
    }

    fn first_time(&self, path: &Path, version: Option<SystemTime>) -> bool {
        self.told.lock().expect("told lock").insert((path.to_owned(), version))
    }
}

/// `config.json`: `{"auths": {location: entry}}`; other keys (`credsStore`, `HttpHeaders`) are
/// not the kubelet's business and are ignored.
pub fn parse_config_json(bytes: &[u8]) -> Result<Entries, FileError> {
    let config: ConfigJson = serde_json::from_slice(bytes).map_err(|e| FileError::Json(position_only(&e)))?;
    entries(config.auths)
}

/// The legacy `.dockercfg`: `{location: entry}`.
pub fn parse_dockercfg(bytes: &[u8]) -> Result<Entries, FileError> {
    let config: BTreeMap<String, Entry> = serde_json::from_slice(bytes).map_err(|e| FileError::Json(position_only(&e)))?;
    entries(config)
}

/// A JSON error's kind and place, without the text around it (which may be a password).
fn position_only(e: &serde_json::Error) -> String {
    let kind = match e.classify() {
        serde_json::error::Category::Io => "unreadable",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "unexpected value",
        serde_json::error::Category::Eof => "unexpected end",
    };
    format!("{kind} at line {} column {}", e.line(), e.column())
}

fn entries(config: BTreeMap<String, Entry>) -> Result<Entries, FileError> {
    config
        .into_iter()
        .map(|(location, entry)| {
            let (username, password) = if entry.auth.is_empty() {
                (entry.username, entry.password)
            } else {
                decode_auth(&entry.auth).ok_or_else(|| FileError::Auth { location: location.clone() })?
            };
            let auth = RegistryAuth {
                username,
                password,
                identity_token: entry.identitytoken,
                registry_token: entry.registrytoken,
                ..Default::default()
            };
            Ok((location, auth))
        })
        .collect()
}

/// `base64(username:password)`, padded or not; the password may hold `:`.
fn decode_auth(field: &str) -> Option<(String, String)> {
    let engine = if field.trim().ends_with('=') {
        &base64::engine::general_purpose::STANDARD
    } else {
        &base64::engine::general_purpose::STANDARD_NO_PAD
    };
    let decoded = String::from_utf8(engine.decode(field).ok()?).ok()?;
    let (username, password) = decoded.split_once(':')?;
    Some((username.to_owned(), password.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users(keyring: &Keyring, repository: &str) -> Vec<(String, String)> {
        keyring.lookup(repository).into_iter().map(|c| (c.auth.username, c.auth.password)).collect()
    }

    #[test]
    fn auth_wins_over_username_and_password_and_may_hold_colons() {
        // base64("user:pa:ss") and the same without padding.
        let parsed = parse_config_json(
            br#"{"auths": {"reg.example.com": {"auth": "dXNlcjpwYTpzcw==", "username": "other", "password": "x"},
                          "unpadded.example.com": {"auth": "dXNlcjpwYTpzcw"}},
                 "credsStore": "desktop"}"#,
        )
        .unwrap();
        for (_, auth) in &parsed {
            assert_eq!((auth.username.as_str(), auth.password.as_str()), ("user", "pa:ss"));
            assert!(auth.auth.is_empty(), "decoded, as the kubelet decodes it");
        }
    }

    #[test]
    fn tokens_and_plain_fields_are_read() {
        let parsed =
            parse_dockercfg(br#"{"https://reg.example.com": {"username": "u", "password": "p", "email": "u@x", "identitytoken": "tok"}}"#)
                .unwrap();
        assert_eq!(parsed[0].0, "https://reg.example.com");
        assert_eq!((parsed[0].1.username.as_str(), parsed[0].1.identity_token.as_str()), ("u", "tok"));
    }

    #[test]
    fn a_bad_auth_field_rejects_the_file_without_showing_it() {
        let e = parse_config_json(br#"{"auths": {"reg.example.com": {"auth": "bm9jb2xvbg=="}}}"#).unwrap_err();
        assert_eq!(e.to_string(), r#"the auth field of "reg.example.com" is not base64 of username:password"#);
        let e = parse_config_json(br#"{"auths": {"reg": {"password": hunter2}}}"#).unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }

    #[test]
    fn the_first_valid_file_wins_and_config_json_comes_before_dockercfg() {
        let root = tempfile::tempdir().unwrap();
        let files = DockerConfigFiles::new(root.path());
        let write = |name: &str, body: &str| std::fs::write(root.path().join(name), body).unwrap();
        write(".dockercfg", r#"{"reg:5000": {"username": "legacy", "password": "p"}}"#);
        assert_eq!(users(&files.read().0, "reg:5000/app"), [("legacy".to_owned(), "p".to_owned())]);
        // A malformed config.json is passed over: the legacy file still counts.
        write("config.json", "{not json");
        assert_eq!(users(&files.read().0, "reg:5000/app")[0].0, "legacy");
        write("config.json", r#"{"auths": {"reg:5000": {"username": "json", "password": "p"}}}"#);
        let (keyring, path) = files.read();
        assert_eq!(users(&keyring, "reg:5000/app")[0].0, "json");
        assert_eq!(path.unwrap(), root.path().join("config.json"));
        // A valid file without `auths` still ends the search, as for the kubelet.
        write("config.json", r#"{"credsStore": "pass"}"#);
        assert!(files.read().0.is_empty());
    }

    #[test]
    fn the_search_is_the_kubelets() {
        let files = DockerConfigFiles::new("/var/lib/kubelet");
        let (json, legacy) = files.search_paths();
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(json.first().unwrap(), Path::new("/var/lib/kubelet/config.json"));
        assert_eq!(json[1], cwd.join("config.json"));
        assert_eq!(json.last().unwrap(), Path::new("/.docker/config.json"));
        assert_eq!(legacy.first().unwrap(), Path::new("/var/lib/kubelet/.dockercfg"));
        assert_eq!(legacy.last().unwrap(), Path::new("/.dockercfg"));
        if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
            assert_eq!(json[2], Path::new(&home).join(".docker/config.json"));
            assert_eq!(legacy[2], Path::new(&home).join(".dockercfg"));
        }
    }
}
