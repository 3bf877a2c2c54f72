//! A `manifest-source` plugin that reads this node's static pods from etcd, so a fleet can hand
//! each node its pods from one etcd cluster: every key under `/staticlet/<node>/` (the prefix is
//! configurable) is one Pod manifest, YAML or JSON, its id the rest of the key.
//!
//! It speaks etcd's v3 JSON gateway (`POST /v3/kv/range`), which every etcd since 3.3 serves on
//! its client port, through the agent's outbound HTTP: the agent config must grant the
//! endpoints in `allowedHosts`. Endpoints are tried in order, the last one that answered first;
//! a poll answers `none` when no key under the prefix changed (same keys, same
//! `mod_revision`s), so an unchanged set costs the agent nothing. With `username` and
//! `password` it authenticates (`/v3/auth/authenticate`) and renews an expired token once per
//! poll.
//!
//! ```yaml
//! plugins:
//! - name: etcd
//!   kind: manifest-source
//!   path: etcd_source.wasm
//!   interval: 5s
//!   config: {endpoints: ["http://10.0.0.5:2379", "http://10.0.0.6:2379"]}
//!   allowedHosts: [10.0.0.5:2379, 10.0.0.6:2379]
//! ```

mod etcd;
mod http;

use std::cell::RefCell;

// wit-bindgen's export glue is `unsafe extern "C"` by nature; the lint stays on elsewhere.
#[allow(unsafe_code)]
mod bindings {
    wit_bindgen::generate!({
        path: "../../wit/since_v0.2.0",
        world: "manifest-source",
    });

    use super::EtcdSource;
    export!(EtcdSource);
}

use bindings::Guest;
use bindings::exports::staticlet::plugin::source::{Guest as Source, Manifest};
use bindings::staticlet::plugin::host;
use bindings::staticlet::plugin::types::{Error, LogLevel};
use etcd::{Entry, Settings};

struct State {
    settings: Settings,
    prefix: String,
    /// The endpoint that answered last, tried first.
    preferred: usize,
    token: Option<String>,
    /// The keys and revisions of the set returned last.
    last: Option<Vec<(String, i64)>>,
}

thread_local! {
    static STATE: RefCell<Option<State>> = const { RefCell::new(None) };
}

fn error(code: &str, message: impl Into<String>) -> Error {
    Error { code: code.into(), message: message.into() }
}

/// Why one endpoint gave no set.
enum Failure {
    /// It could not be reached, or answered with a server error (a member without a leader):
    /// the next endpoint may do better.
    Unreachable(String),
    /// It answered, with an error every member would give.
    Refused(String),
}

/// `POST url`; a transport error is the endpoint being unreachable.
fn post(url: &str, headers: &[(&str, &str)], body: &str) -> Result<http::Response, Failure> {
    http::post_json(url, headers, body).map_err(|e| Failure::Unreachable(format!("{url}: {e}")))
}

impl Failure {
    fn of_answer(status: u16, message: String) -> Failure {
        if status >= 500 { Failure::Unreachable(message) } else { Failure::Refused(message) }
    }
}

impl State {
    /// One request to `endpoint`, authenticated when the settings say so.
    fn call(&mut self, endpoint: &str, path: &str, body: &str) -> Result<http::Response, Failure> {
        let url = format!("{endpoint}{path}");
        if self.settings.username.is_none() {
            return post(&url, &[], body);
        }
        if self.token.is_none() {
            self.authenticate(endpoint)?;
        }
        let answer = self.post_with_token(&url, body)?;
        // A token expires (etcd's default simple token after 5 minutes): a 401 gets one more
        // try with a fresh token.
        if answer.status != 401 {
            return Ok(answer);
        }
        self.authenticate(endpoint)?;
        self.post_with_token(&url, body)
    }

    fn post_with_token(&self, url: &str, body: &str) -> Result<http::Response, Failure> {
        let token = self.token.as_deref().unwrap_or_default();
        post(url, &[("authorization", token)], body)
    }

    fn authenticate(&mut self, endpoint: &str) -> Result<(), Failure> {
        let (Some(username), Some(password)) = (&self.settings.username, &self.settings.password) else { return Ok(()) };
        let url = format!("{endpoint}/v3/auth/authenticate");
        let answer = post(&url, &[], &etcd::authenticate_request(username, password))?;
        if answer.status != 200 {
            let message = format!("{endpoint}: authenticating as {username}: {}", etcd::error_message(&answer.body));
            return Err(Failure::of_answer(answer.status, message));
        }
        self.token = Some(etcd::parse_token(&answer.body).map_err(|e| Failure::Refused(format!("{endpoint}: {e}")))?);
        Ok(())
    }

    fn range(&mut self, endpoint: &str) -> Result<Vec<Entry>, Failure> {
        let answer = self.call(endpoint, "/v3/kv/range", &etcd::range_request(&self.prefix))?;
        if answer.status != 200 {
            let message = format!("{endpoint}: etcd answered {}: {}", answer.status, etcd::error_message(&answer.body));
            return Err(Failure::of_answer(answer.status, message));
        }
        etcd::parse_range(&self.prefix, &answer.body).map_err(|e| Failure::Refused(format!("{endpoint}: {e}")))
    }

    fn poll(&mut self) -> Result<Option<Vec<Manifest>>, Error> {
        let (count, first) = (self.settings.endpoints.len(), self.preferred);
        let mut unreachable = Vec::new();
        for i in (0..count).map(|i| (first + i) % count) {
            let endpoint = self.settings.endpoints[i].clone();
            match self.range(&endpoint) {
                Ok(entries) => {
                    if i != self.preferred {
                        host::log(LogLevel::Info, &format!("reading manifests from {endpoint} now"));
                        self.preferred = i;
                    }
                    let revisions: Vec<(String, i64)> = entries.iter().map(|e| (e.id.clone(), e.mod_revision)).collect();
                    if self.last.as_ref() == Some(&revisions) {
                        return Ok(None);
                    }
                    self.last = Some(revisions);
                    return Ok(Some(entries.into_iter().map(|e| Manifest { id: e.id, content: e.value }).collect()));
                }
                Err(Failure::Refused(message)) => return Err(error("etcd", message)),
                Err(Failure::Unreachable(message)) => unreachable.push(message),
            }
        }
        Err(error("unavailable", format!("no etcd endpoint answered: {}", unreachable.join("; "))))
    }
}

struct EtcdSource;

impl Guest for EtcdSource {
    fn init(config: String) -> Result<(), Error> {
        let settings = Settings::parse(&config).map_err(|e| error("config", e))?;
        let prefix = settings.prefix_for(&host::node_name());
        host::log(LogLevel::Debug, &format!("reading manifests under {prefix} from {}", settings.endpoints.join(", ")));
        STATE.with(|s| *s.borrow_mut() = Some(State { settings, prefix, preferred: 0, token: None, last: None }));
        Ok(())
    }
}

impl Source for EtcdSource {
    fn poll() -> Result<Option<Vec<Manifest>>, Error> {
        STATE.with(|s| match s.borrow_mut().as_mut() {
            Some(state) => state.poll(),
            None => Err(error("internal", "poll was called before init")),
        })
    }
}
