//! What the plugin says to etcd's v3 JSON gateway and how it reads the answers; no I/O here, so
//! it is tested natively.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;

/// The plugin's settings, from the `config:` of its entry in the agent config.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Settings {
    /// etcd client URLs (`http://10.0.0.5:2379`), tried in order until one answers.
    pub endpoints: Vec<String>,
    /// The key prefix this node's manifests live under; `{node}` is replaced by the node's name.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// An etcd user, when etcd has authentication enabled.
    #[serde(default)]
    pub username: Option<String>,
    /// That user's password.
    #[serde(default)]
    pub password: Option<String>,
}

fn default_prefix() -> String {
    "/staticlet/{node}/".to_owned()
}

impl Settings {
    /// Parses and checks the settings.
    pub fn parse(json: &str) -> Result<Settings, String> {
        let mut settings: Settings = serde_json::from_str(json).map_err(|e| format!("settings: {e}"))?;
        if settings.endpoints.is_empty() {
            return Err("settings: endpoints: list at least one etcd client URL".to_owned());
        }
        for (i, endpoint) in settings.endpoints.iter_mut().enumerate() {
            if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                return Err(format!("settings: endpoints[{i}]: {endpoint:?} is not an http:// or https:// URL"));
            }
            *endpoint = endpoint.trim_end_matches('/').to_owned();
        }
        if settings.prefix.is_empty() {
            return Err("settings: prefix: must not be empty, or every key in etcd would be a manifest".to_owned());
        }
        if settings.username.is_some() != settings.password.is_some() {
            return Err("settings: username and password go together".to_owned());
        }
        Ok(settings)
    }

    /// The prefix for `node`.
    pub fn prefix_for(&self, node: &str) -> String {
        self.prefix.replace("{node}", node)
    }
}

/// The end of the key range holding every key that starts with `prefix`: the prefix with its
/// last byte that is not 0xff incremented (etcd's own rule).
pub fn range_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every byte was 0xff: "\0" means "to the end of the keyspace".
    vec![0]
}

/// The body of a `/v3/kv/range` request for every key under `prefix`.
pub fn range_request(prefix: &str) -> String {
    serde_json::json!({
        "key": BASE64.encode(prefix),
        "range_end": BASE64.encode(range_end(prefix.as_bytes())),
    })
    .to_string()
}

/// The body of a `/v3/auth/authenticate` request.
pub fn authenticate_request(username: &str, password: &str) -> String {
    serde_json::json!({"name": username, "password": password}).to_string()
}

/// One key and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The key, less the prefix: the manifest's id.
    pub id: String,
    /// The revision of its last change, to tell a changed set without comparing values.
    pub mod_revision: i64,
    /// The value: the manifest text.
    pub value: String,
}

#[derive(Deserialize)]
struct RangeResponse {
    #[serde(default)]
    kvs: Vec<KeyValue>,
}

// The gateway writes int64 fields as strings, as proto3's JSON mapping does.
#[derive(Deserialize)]
struct KeyValue {
    key: String,
    #[serde(default)]
    value: String,
    #[serde(default)]
    mod_revision: Option<String>,
}

/// The entries of a range response, keys under `prefix` only; a key equal to the prefix (a
/// "directory" marker some tools write) is skipped.
pub fn parse_range(prefix: &str, body: &[u8]) -> Result<Vec<Entry>, String> {
    let response: RangeResponse = serde_json::from_slice(body).map_err(|e| format!("etcd's answer is not a range response: {e}"))?;
    let decode = |what: &str, text: &str| BASE64.decode(text).map_err(|e| format!("etcd's answer has a {what} that is not base64: {e}"));
    let mut entries = Vec::with_capacity(response.kvs.len());
    for kv in response.kvs {
        let key = String::from_utf8_lossy(&decode("key", &kv.key)?).into_owned();
        let Some(id) = key.strip_prefix(prefix).filter(|id| !id.is_empty()) else { continue };
        let mod_revision = kv.mod_revision.as_deref().unwrap_or("0").parse().map_err(|_| format!("{key}: mod_revision is not a number"))?;
        // A value that is not UTF-8 is passed on as it reads; the agent reports it as a
        // manifest that does not parse, naming its id.
        let value = String::from_utf8_lossy(&decode("value", &kv.value)?).into_owned();
        entries.push(Entry { id: id.to_owned(), mod_revision, value });
    }
    Ok(entries)
}

/// The token of an `/v3/auth/authenticate` response.
pub fn parse_token(body: &[u8]) -> Result<String, String> {
    #[derive(Deserialize)]
    struct Authenticated {
        token: String,
    }
    serde_json::from_slice::<Authenticated>(body).map(|a| a.token).map_err(|e| format!("etcd's answer to authenticate has no token: {e}"))
}

/// What an error answer says: the gateway's `message` (or `error`), else the body itself.
pub fn error_message(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v.get("message").or_else(|| v.get("error")).and_then(|m| m.as_str()).map(str::to_owned))
        .unwrap_or_else(|| text.trim().chars().take(200).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked_and_the_prefix_names_the_node() {
        let settings = Settings::parse(r#"{"endpoints": ["http://10.0.0.5:2379/"]}"#).unwrap();
        assert_eq!(settings.endpoints, ["http://10.0.0.5:2379"]);
        assert_eq!(settings.prefix_for("node-1"), "/staticlet/node-1/");
        for (bad, says) in [
            (r#"{"endpoints": []}"#, "endpoints"),
            (r#"{"endpoints": ["10.0.0.5:2379"]}"#, "endpoints[0]"),
            (r#"{"endpoints": ["http://e"], "prefix": ""}"#, "prefix"),
            (r#"{"endpoints": ["http://e"], "username": "u"}"#, "password"),
            (r#"{"endpoints": ["http://e"], "prefx": "/a/"}"#, "prefx"),
        ] {
            let err = Settings::parse(bad).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn the_range_covers_exactly_the_prefix() {
        assert_eq!(range_end(b"/staticlet/n/"), b"/staticlet/n0");
        assert_eq!(range_end(b"a\xff"), b"b");
        assert_eq!(range_end(b"\xff\xff"), b"\0");
        let request: serde_json::Value = serde_json::from_str(&range_request("/s/")).unwrap();
        assert_eq!(request["key"], BASE64.encode("/s/"));
        assert_eq!(request["range_end"], BASE64.encode("/s0"));
    }

    #[test]
    fn a_range_response_becomes_entries_by_id() {
        let kv = |k: &str, v: &str, rev: &str| serde_json::json!({"key": BASE64.encode(k), "value": BASE64.encode(v), "mod_revision": rev});
        let body = serde_json::json!({
            "header": {"revision": "9"},
            "kvs": [kv("/s/", "", "2"), kv("/s/web.yaml", "kind: Pod", "5"), kv("/s/db", "{}", "7")],
            "count": "3",
        });
        let entries = parse_range("/s/", body.to_string().as_bytes()).unwrap();
        assert_eq!(
            entries,
            [
                Entry { id: "web.yaml".into(), mod_revision: 5, value: "kind: Pod".into() },
                Entry { id: "db".into(), mod_revision: 7, value: "{}".into() },
            ]
        );
        // An empty range has no `kvs` at all.
        assert!(parse_range("/s/", br#"{"header": {"revision": "9"}}"#).unwrap().is_empty());
        assert!(parse_range("/s/", b"<html>").unwrap_err().contains("not a range response"));
    }

    #[test]
    fn error_answers_say_what_etcd_said() {
        assert_eq!(
            error_message(br#"{"error": "etcdserver: invalid auth token", "code": 16, "message": "etcdserver: invalid auth token"}"#),
            "etcdserver: invalid auth token"
        );
        assert_eq!(error_message(b"bad gateway\n"), "bad gateway");
        assert_eq!(parse_token(br#"{"header": {}, "token": "abc.1"}"#).unwrap(), "abc.1");
    }
}
