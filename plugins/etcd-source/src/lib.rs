//! A `manifest-source` plugin that reads this node's static pods from etcd, so a fleet can hand
//! each node its pods from one etcd cluster: every key under `/staticlet/<node>/` (the prefix is
//! configurable) is one Pod manifest, YAML or JSON, its id the rest of the key.
//!
//! It speaks etcd's v3 JSON gateway, which every etcd since 3.3 serves on its client port,
//! through the agent's outbound HTTP: the agent config must grant the endpoints in
//! `allowedHosts`, with the cluster's CA and this node's client certificate for `https://`
//! endpoints (mutual TLS; the agent makes the connection, the plugin never sees the key).
//! Endpoints are tried in order, the last one that answered first.
//!
//! A poll reads every key under the prefix (`POST /v3/kv/range`) and answers `none` when no key
//! changed (same keys, same `mod_revision`s), so an unchanged set costs the agent nothing.
//! Between polls the agent waits in `wait-for-change`, where the plugin follows a watch on the
//! prefix (`POST /v3/watch`, a stream of JSON lines) from the revision its last read was
//! complete up to: a put is seen as it happens, and the poll that follows answers from what the
//! watch told, without a read. When the watch breaks (its member died, a proxy cut it) or etcd
//! cancels it because its history was compacted past that revision, the next poll reads the
//! whole prefix again and the watch resumes from that read's revision: no change is missed or
//! applied twice. While no watch can be opened (etcd is down), the agent's interval polls carry on
//! and the plugin tries again every second; the first watch that opens asks the agent to poll at
//! once, so a cluster that comes back is caught up with in about a second.
//!
//! With `username` and `password` it authenticates (`/v3/auth/authenticate`) and renews an
//! expired token once per request.
//!
//! ```yaml
//! plugins:
//! - name: etcd
//!   kind: manifest-source
//!   path: etcd_source.wasm
//!   interval: 5s
//!   config: {endpoints: ["https://10.0.0.5:2379", "https://10.0.0.6:2379"]}
//!   allowedHosts:
//!   - {host: "10.0.0.5:2379", caFile: /etc/staticlet/etcd/ca.crt, certFile: /etc/staticlet/etcd/node.crt, keyFile: /etc/staticlet/etcd/node.key}
//!   - {host: "10.0.0.6:2379", caFile: /etc/staticlet/etcd/ca.crt, certFile: /etc/staticlet/etcd/node.crt, keyFile: /etc/staticlet/etcd/node.key}
//! ```

mod etcd;
mod http;

use std::time::Duration;

use staticlet_plugin_sdk::source::{Error, Manifest, ManifestSource};
use staticlet_plugin_sdk::{Config, log_debug, log_info, log_warn, node_name};
use wasip2::clocks::monotonic_clock;

use etcd::{Known, Range, Settings, WatchMessage};

struct State {
    settings: Settings,
    prefix: String,
    /// The endpoint that answered last, tried first.
    preferred: usize,
    token: Option<String>,
    /// The keys and revisions of the set returned last.
    last: Option<Vec<(String, i64)>>,
    /// The keys as the last read and the watch since have told them.
    known: Option<Known>,
    /// The watch in progress, if one is open.
    watch: Option<Watch>,
    /// Whether `known` was brought up to date since the last poll (by the watch, or by a wait's
    /// read), so that the poll answers from it without reading again.
    fresh: bool,
    /// Why the last attempt to follow etcd failed, to log a failure once rather than at
    /// every wait.
    watch_failure: Option<String>,
}

/// An open watch: its stream, where it runs, and the part of a line read so far.
struct Watch {
    stream: http::Stream,
    endpoint: String,
    pending: Vec<u8>,
}

fn error(code: &str, message: impl Into<String>) -> Error {
    Error::new(code, message)
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

    fn range(&mut self, endpoint: &str) -> Result<Range, Failure> {
        let answer = self.call(endpoint, "/v3/kv/range", &etcd::range_request(&self.prefix))?;
        if answer.status != 200 {
            let message = format!("{endpoint}: etcd answered {}: {}", answer.status, etcd::error_message(&answer.body));
            return Err(Failure::of_answer(answer.status, message));
        }
        etcd::parse_range(&self.prefix, &answer.body).map_err(|e| Failure::Refused(format!("{endpoint}: {e}")))
    }

    /// Reads the whole prefix from the first endpoint that answers.
    fn read(&mut self) -> Result<Known, Error> {
        let (count, first) = (self.settings.endpoints.len(), self.preferred);
        let mut unreachable = Vec::new();
        for i in (0..count).map(|i| (first + i) % count) {
            let endpoint = self.settings.endpoints[i].clone();
            match self.range(&endpoint) {
                Ok(range) => {
                    if i != self.preferred {
                        log_info(&format!("reading manifests from {endpoint} now"));
                        self.preferred = i;
                    }
                    return Ok(Known::from_range(range));
                }
                Err(Failure::Refused(message)) => return Err(error("etcd", message)),
                Err(Failure::Unreachable(message)) => unreachable.push(message),
            }
        }
        Err(error("unavailable", format!("no etcd endpoint answered: {}", unreachable.join("; "))))
    }

    /// The set: from what the watch (or a wait's read) told since the last poll, else read
    /// afresh (which also catches anything a watch that died silently missed).
    fn poll_set(&mut self) -> Result<Option<Vec<Manifest>>, Error> {
        if !std::mem::take(&mut self.fresh) || self.known.is_none() {
            self.known = Some(self.read()?);
        }
        let known = self.known.as_ref().expect("read above, or brought up to date since the last poll");
        let revisions: Vec<(String, i64)> = known.entries.values().map(|e| (e.id.clone(), e.mod_revision)).collect();
        if self.last.as_ref() == Some(&revisions) {
            return Ok(None);
        }
        self.last = Some(revisions);
        Ok(Some(known.entries.values().map(|e| Manifest { id: e.id.clone(), content: e.value.clone() }).collect()))
    }

    /// Follows the watch until it shows a change (`true`) or `timeout` passes (`false`); while
    /// etcd is away, tries every second to read (when nothing was read yet) or to watch again.
    fn wait(&mut self, timeout: Duration) -> Result<bool, Error> {
        let deadline = monotonic_clock::now().saturating_add(u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX));
        let Some(from) = self.known.as_ref().map(|k| k.revision + 1) else {
            // Nothing read yet (etcd was away when the agent started), so no revision to watch
            // from: once etcd answers, the agent polls at once and gets what was read.
            let known = retry_until(deadline, || self.read())?;
            self.known = Some(known);
            self.fresh = true;
            return Ok(true);
        };
        if self.watch.is_none() {
            let watch = retry_until(deadline, || {
                self.open_watch(from).map_err(|message| {
                    if self.watch_failure.is_none() {
                        log_warn(&format!("cannot watch {}: {message}; polling at the agent's interval until a watch opens", self.prefix));
                    }
                    self.watch_failure = Some(message.clone());
                    error("unavailable", message)
                })
            })?;
            let endpoint = watch.endpoint.clone();
            self.watch = Some(watch);
            if self.watch_failure.take().is_some() {
                // Back after an outage: the agent polls at once, and the read catches up on
                // what the outage hid, rather than at its interval.
                log_info(&format!("watching {} on {endpoint} again", self.prefix));
                return Ok(true);
            }
        }
        match self.follow(deadline) {
            Ok(changed) => Ok(changed),
            Err(message) => {
                // The next poll reads the prefix whole, and the next wait watches from there.
                let endpoint = self.watch.take().map(|w| w.endpoint).unwrap_or_default();
                log_info(&format!("the watch on {endpoint} ended: {message}; reading {} again", self.prefix));
                Ok(true)
            }
        }
    }

    /// A watch from revision `from`, on the first endpoint that opens one.
    fn open_watch(&mut self, from: i64) -> Result<Watch, String> {
        let (count, first) = (self.settings.endpoints.len(), self.preferred);
        let mut failures = Vec::new();
        let body = etcd::watch_request(&self.prefix, from);
        for i in (0..count).map(|i| (first + i) % count) {
            let endpoint = self.settings.endpoints[i].clone();
            if self.settings.username.is_some() && self.token.is_none() {
                if let Err(Failure::Refused(m) | Failure::Unreachable(m)) = self.authenticate(&endpoint) {
                    failures.push(m);
                    continue;
                }
            }
            let token = self.token.clone().unwrap_or_default();
            let headers: &[(&str, &str)] = if self.settings.username.is_some() { &[("authorization", &token)] } else { &[] };
            match http::Stream::open(&format!("{endpoint}/v3/watch"), headers, &body) {
                Ok(Ok(stream)) => return Ok(Watch { stream, endpoint, pending: Vec::new() }),
                Ok(Err(answer)) => {
                    if answer.status == 401 {
                        // An expired token: the next attempt authenticates afresh.
                        self.token = None;
                    }
                    failures.push(format!("{endpoint}: etcd answered {}: {}", answer.status, etcd::error_message(&answer.body)));
                }
                Err(e) => failures.push(format!("{endpoint}: {e}")),
            }
        }
        Err(failures.join("; "))
    }

    /// Reads the watch until a change or `deadline`; an error ends the watch.
    fn follow(&mut self, deadline: u64) -> Result<bool, String> {
        let watch = self.watch.as_mut().expect("a watch is open");
        let known = self.known.as_mut().expect("a watch starts from a read");
        loop {
            let chunk = match watch.stream.read(deadline)? {
                http::Read::Data(chunk) => chunk,
                http::Read::Timeout => return Ok(false),
                http::Read::Closed => return Err("etcd closed the stream".to_owned()),
            };
            watch.pending.extend_from_slice(&chunk);
            let mut changed = false;
            while let Some(end) = watch.pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = watch.pending.drain(..=end).collect();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                match etcd::parse_watch_line(&self.prefix, &line)? {
                    WatchMessage::Quiet => {}
                    WatchMessage::Events(events) => changed |= known.apply(events),
                    WatchMessage::Canceled(why) => return Err(why),
                }
            }
            if watch.pending.len() > MAX_WATCH_LINE {
                return Err(format!("a watch message is longer than {MAX_WATCH_LINE} bytes"));
            }
            if changed {
                self.fresh = true;
                return Ok(true);
            }
        }
    }
}

/// How often a read or a watch that failed is tried again within one wait.
const RETRY_NS: u64 = 1_000_000_000;

/// `attempt`, every second until it succeeds; its last error once `deadline` (monotonic
/// nanoseconds) has come.
fn retry_until<T>(deadline: u64, mut attempt: impl FnMut() -> Result<T, Error>) -> Result<T, Error> {
    loop {
        let failed = match attempt() {
            Ok(done) => return Ok(done),
            Err(e) => e,
        };
        let retry = monotonic_clock::now().saturating_add(RETRY_NS);
        if retry >= deadline {
            monotonic_clock::subscribe_instant(deadline).block();
            return Err(failed);
        }
        monotonic_clock::subscribe_instant(retry).block();
    }
}

/// The longest watch message read: far above any node's set of manifests.
const MAX_WATCH_LINE: usize = 16 * 1024 * 1024;

impl State {
    /// The source for the plugin's settings, on the node the agent names.
    fn new(config: Config) -> Result<State, String> {
        let settings = Settings::parse(&config.to_string())?;
        let prefix = settings.prefix_for(&node_name());
        log_debug(&format!("reading manifests under {prefix} from {}", settings.endpoints.join(", ")));
        Ok(State { settings, prefix, preferred: 0, token: None, last: None, known: None, watch: None, fresh: false, watch_failure: None })
    }
}

impl ManifestSource for State {
    fn poll(&mut self) -> Result<Option<Vec<Manifest>>, Error> {
        self.poll_set()
    }

    fn wait_for_change(&mut self, timeout: Duration) -> Result<bool, Error> {
        self.wait(timeout)
    }
}

staticlet_plugin_sdk::export_source!(State, State::new);
