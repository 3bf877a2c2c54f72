//! What the plugin says to etcd's v3 JSON gateway and how it reads the answers; no I/O here, so
//! it is tested natively.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use std::collections::BTreeMap;

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

/// The keys under the prefix at one revision of the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    /// The store's revision the range was read at.
    pub revision: i64,
    /// The keys, in key order.
    pub entries: Vec<Entry>,
}

#[derive(Deserialize)]
struct RangeResponse {
    #[serde(default)]
    header: Header,
    #[serde(default)]
    kvs: Vec<KeyValue>,
}

#[derive(Default, Deserialize)]
struct Header {
    #[serde(default)]
    revision: Option<String>,
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

fn decode(what: &str, text: &str) -> Result<Vec<u8>, String> {
    BASE64.decode(text).map_err(|e| format!("etcd's answer has a {what} that is not base64: {e}"))
}

fn revision(what: &str, text: Option<&str>) -> Result<i64, String> {
    text.unwrap_or("0").parse().map_err(|_| format!("{what} is not a number"))
}

/// A key-value's id under `prefix` (none for a key outside it or equal to it, a "directory"
/// marker some tools write), its mod revision, and its value.
fn entry(prefix: &str, kv: KeyValue) -> Result<Option<Entry>, String> {
    let key = String::from_utf8_lossy(&decode("key", &kv.key)?).into_owned();
    let Some(id) = key.strip_prefix(prefix).filter(|id| !id.is_empty()) else { return Ok(None) };
    let mod_revision = revision(&format!("{key}: mod_revision"), kv.mod_revision.as_deref())?;
    // A value that is not UTF-8 is passed on as it reads; the agent reports it as a manifest
    // that does not parse, naming its id.
    let value = String::from_utf8_lossy(&decode("value", &kv.value)?).into_owned();
    Ok(Some(Entry { id: id.to_owned(), mod_revision, value }))
}

/// A range response: the keys under `prefix` and the revision they were read at.
pub fn parse_range(prefix: &str, body: &[u8]) -> Result<Range, String> {
    let response: RangeResponse = serde_json::from_slice(body).map_err(|e| format!("etcd's answer is not a range response: {e}"))?;
    let revision = revision("the range's revision", response.header.revision.as_deref())?;
    let mut entries = Vec::with_capacity(response.kvs.len());
    for kv in response.kvs {
        entries.extend(entry(prefix, kv)?);
    }
    Ok(Range { revision, entries })
}

/// The body of a `/v3/watch` request for every key under `prefix`, from `start_revision` on.
pub fn watch_request(prefix: &str, start_revision: i64) -> String {
    serde_json::json!({"create_request": {
        "key": BASE64.encode(prefix),
        "range_end": BASE64.encode(range_end(prefix.as_bytes())),
        "start_revision": start_revision.to_string(),
    }})
    .to_string()
}

/// One change the watch reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The key was written: the entry as it now is.
    Put(Entry),
    /// The key was deleted, at `mod_revision`.
    Delete {
        /// The manifest's id.
        id: String,
        /// The revision of the delete.
        mod_revision: i64,
    },
}

/// One message of the watch stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchMessage {
    /// The watch is in place (or a progress notice): nothing changed.
    Quiet,
    /// Changes, in revision order.
    Events(Vec<Event>),
    /// etcd ended the watch: its history no longer reaches the revision asked for (it was
    /// compacted), or another reason. The keys must be read whole again.
    Canceled(String),
}

#[derive(Deserialize)]
struct WatchLine {
    result: Option<WatchResult>,
    error: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct WatchResult {
    #[serde(default)]
    canceled: bool,
    #[serde(default)]
    compact_revision: Option<String>,
    #[serde(default)]
    cancel_reason: Option<String>,
    #[serde(default)]
    events: Vec<WatchEvent>,
}

#[derive(Deserialize)]
struct WatchEvent {
    // proto3 JSON leaves out the default, PUT.
    #[serde(default, rename = "type")]
    kind: Option<String>,
    kv: KeyValue,
}

/// One line of the watch stream; events outside `prefix` (there are none, but etcd is not
/// trusted to say so) are left out.
pub fn parse_watch_line(prefix: &str, line: &[u8]) -> Result<WatchMessage, String> {
    let line: WatchLine =
        serde_json::from_slice(line).map_err(|e| format!("etcd's watch sent something that is not a watch response: {e}"))?;
    if let Some(error) = line.error {
        let message = error.get("message").and_then(|m| m.as_str()).map_or_else(|| error.to_string(), str::to_owned);
        return Err(format!("etcd ended the watch: {message}"));
    }
    let Some(result) = line.result else { return Ok(WatchMessage::Quiet) };
    if result.canceled {
        let compacted = revision("compact_revision", result.compact_revision.as_deref())?;
        let why = if compacted > 0 {
            format!("etcd compacted its history up to revision {compacted}")
        } else {
            result.cancel_reason.unwrap_or_else(|| "etcd canceled the watch".to_owned())
        };
        return Ok(WatchMessage::Canceled(why));
    }
    if result.events.is_empty() {
        return Ok(WatchMessage::Quiet);
    }
    let mut events = Vec::with_capacity(result.events.len());
    for event in result.events {
        let deleted = event.kind.as_deref() == Some("DELETE");
        let Some(entry) = entry(prefix, event.kv)? else { continue };
        events.push(if deleted { Event::Delete { id: entry.id, mod_revision: entry.mod_revision } } else { Event::Put(entry) });
    }
    Ok(WatchMessage::Events(events))
}

/// The keys under the prefix as this plugin knows them, and the store revision that knowledge
/// is complete up to: a range sets it, watch events move it on. An event at or below that
/// revision is already in it and is not applied twice, so a range read while a watch is
/// running and the watch's own backlog compose without replaying anything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Known {
    /// Complete up to this store revision.
    pub revision: i64,
    /// The entries by id.
    pub entries: BTreeMap<String, Entry>,
}

impl Known {
    /// What a range read.
    pub fn from_range(range: Range) -> Known {
        Known { revision: range.revision, entries: range.entries.into_iter().map(|e| (e.id.clone(), e)).collect() }
    }

    /// Applies the events newer than what is known; whether any changed the keys.
    pub fn apply(&mut self, events: Vec<Event>) -> bool {
        let mut changed = false;
        for event in events {
            let revision = match &event {
                Event::Put(entry) => entry.mod_revision,
                Event::Delete { mod_revision, .. } => *mod_revision,
            };
            if revision <= self.revision {
                continue;
            }
            self.revision = revision;
            changed |= match event {
                Event::Put(entry) => self.entries.insert(entry.id.clone(), entry.clone()).as_ref() != Some(&entry),
                Event::Delete { id, .. } => self.entries.remove(&id).is_some(),
            };
        }
        changed
    }
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
        let range = parse_range("/s/", body.to_string().as_bytes()).unwrap();
        assert_eq!(range.revision, 9);
        assert_eq!(
            range.entries,
            [
                Entry { id: "web.yaml".into(), mod_revision: 5, value: "kind: Pod".into() },
                Entry { id: "db".into(), mod_revision: 7, value: "{}".into() },
            ]
        );
        // An empty range has no `kvs` at all.
        assert!(parse_range("/s/", br#"{"header": {"revision": "9"}}"#).unwrap().entries.is_empty());
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

    /// Lines as etcd 3.4's gateway streams them (captured with curl from Debian's etcd-server
    /// 3.4.23: two puts and a delete under `/s/n/` from revision 2, then the same watch after
    /// `etcdctl compact 4`).
    const CREATED: &str = r#"{"result":{"header":{"cluster_id":"324952591200643719","member_id":"3319814642761637952","revision":"5","raft_term":"2"},"created":true}}"#;
    const EVENTS: &str = r#"{"result":{"header":{"cluster_id":"324952591200643719","member_id":"3319814642761637952","revision":"5","raft_term":"2"},"events":[{"kv":{"key":"L3Mvbi9h","create_revision":"2","mod_revision":"2","version":"1","value":"MQ=="}},{"kv":{"key":"L3Mvbi9i","create_revision":"3","mod_revision":"3","version":"1","value":"Mg=="}},{"type":"DELETE","kv":{"key":"L3Mvbi9h","mod_revision":"5"}}]}}"#;
    const COMPACTED: &str = r#"{"result":{"header":{"cluster_id":"324952591200643719","member_id":"3319814642761637952","raft_term":"2"},"canceled":true,"compact_revision":"4"}}"#;

    fn put(id: &str, rev: i64, value: &str) -> Event {
        Event::Put(Entry { id: id.into(), mod_revision: rev, value: value.into() })
    }

    #[test]
    fn watch_lines_become_events_in_order() {
        assert_eq!(parse_watch_line("/s/n/", CREATED.as_bytes()).unwrap(), WatchMessage::Quiet);
        assert_eq!(
            parse_watch_line("/s/n/", EVENTS.as_bytes()).unwrap(),
            WatchMessage::Events(vec![put("a", 2, "1"), put("b", 3, "2"), Event::Delete { id: "a".into(), mod_revision: 5 }])
        );
        let WatchMessage::Canceled(why) = parse_watch_line("/s/n/", COMPACTED.as_bytes()).unwrap() else { panic!("canceled") };
        assert!(why.contains("compacted") && why.contains('4'), "{why}");
        let error = parse_watch_line("/s/n/", br#"{"error":{"grpc_code":14,"http_code":503,"message":"etcdserver: no leader"}}"#);
        assert!(error.unwrap_err().contains("no leader"));
        let request: serde_json::Value = serde_json::from_str(&watch_request("/s/", 6)).unwrap();
        assert_eq!(request["create_request"]["start_revision"], "6");
        assert_eq!(request["create_request"]["range_end"], BASE64.encode("/s0"));
    }

    #[test]
    fn events_apply_once_whether_a_range_came_before_or_after_them() {
        let WatchMessage::Events(events) = parse_watch_line("/s/n/", EVENTS.as_bytes()).unwrap() else { panic!("events") };
        // From nothing at revision 1: the three events, a ends deleted.
        let mut known = Known { revision: 1, ..Known::default() };
        assert!(known.apply(events.clone()));
        assert_eq!(known.revision, 5);
        assert_eq!(known.entries.keys().collect::<Vec<_>>(), ["b"]);

        // A range at revision 3 (a and b there), then the watch's backlog from 2: only the delete
        // at 5 is news.
        let range = Range {
            revision: 3,
            entries: vec![
                Entry { id: "a".into(), mod_revision: 2, value: "1".into() },
                Entry { id: "b".into(), mod_revision: 3, value: "2".into() },
            ],
        };
        let mut known = Known::from_range(range);
        assert!(known.apply(events.clone()));
        assert_eq!(known.entries.keys().collect::<Vec<_>>(), ["b"]);
        // The same backlog again changes nothing; a later write does, and a delete of a key it
        // never had does not.
        assert!(!known.apply(events));
        assert!(known.apply(vec![put("b", 7, "3")]));
        assert!(!known.apply(vec![Event::Delete { id: "zz".into(), mod_revision: 8 }]));
        assert_eq!(known.revision, 8);
    }
}
