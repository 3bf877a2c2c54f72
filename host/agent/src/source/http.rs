//! The HTTP source (`--manifest-url`), as spec §3 has it: polled every `httpCheckFrequency`
//! with a 10 s timeout and a 10 MiB cap; the body is one Pod or a PodList, YAML or JSON. Any
//! failure (transport, time-out, a status other than 200, an empty body or one that is not a
//! Pod or a list of them) is reported and the pods of the last good body keep running.
//!
//! The body is split into its items here (`list::split`, which reads every encoding a manifest
//! file may use) and published as one [`List`](super::Manifests::List) under the URL, each item at
//! `<url>#<index>`; the items are not decoded here. The desired stage loads each once, and one
//! invalid item rejects the whole body there, the pods of the body accepted before running on.
//!
//! Better than the kubelet: conditional requests (`If-None-Match`, `If-Modified-Since`) so an
//! unchanged body costs the server nothing; an empty body is an error, not "no pods" (an empty
//! PodList says that); and the last body the desired stage accepted is checkpointed under
//! `--root-dir` ([`super::checkpoint`]), so an agent restarted while the server is down, or
//! serves a bad body, runs the same pods.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use reqwest::StatusCode;
use reqwest::header::{ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED};
use staticlet_model::SourceKind;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::checkpoint::LastRead;
use super::{Source, SourceSnapshot};
use crate::config::{MANIFEST_URL_TIMEOUT as TIMEOUT, ManifestUrl};
use crate::metrics::SourceHealth;
use crate::state::checkpoint::Item;

/// The largest body read.
pub const MAX_BODY_BYTES: usize = 10 * 1024 * 1024;

/// The manifest URL at work: its settings, and where its checkpoint is.
pub struct UrlSource {
    settings: ManifestUrl,
    checkpoint: PathBuf,
}

impl UrlSource {
    /// The URL of `settings`, its last good body restored from `checkpoint` at start.
    pub fn new(settings: ManifestUrl, checkpoint: PathBuf) -> UrlSource {
        UrlSource { settings, checkpoint }
    }
}

#[async_trait]
impl Source for UrlSource {
    fn kind(&self) -> SourceKind {
        SourceKind::Http
    }

    fn checkpoint(&self) -> Option<&Path> {
        Some(&self.checkpoint)
    }

    /// Publishes the checkpointed set at once if there is one, then every successful poll's
    /// set; every poll's outcome goes to `health`.
    async fn run(self: Box<Self>, out: watch::Sender<SourceSnapshot>, health: SourceHealth, shutdown: CancellationToken) {
        let UrlSource { settings, checkpoint } = *self;
        let mut last = LastRead::restore(checkpoint, SourceKind::Http, out, health);
        if let Some(items) = last.current() {
            info!(url = %settings.url, pods = items.len(), checkpoint = %last.path().display(), "restored the manifest URL's last good pods from the checkpoint");
        }
        let client = settings.client();
        // Those of the body last read: the set restored from the checkpoint is fetched again.
        let mut conditions = Conditions::default();
        loop {
            let polled = match &client {
                Ok(client) => settings.poll(client, &conditions).await,
                Err(e) => Err(e.clone()),
            };
            settings.settle(polled, &mut last, &mut conditions);
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(settings.check_frequency) => {}
            }
        }
    }
}

/// What a conditional request sends back to ask whether the body changed.
#[derive(Debug, Clone, Default)]
struct Conditions {
    /// The body's `ETag`, for `If-None-Match`.
    etag: Option<String>,
    /// The body's `Last-Modified`, for `If-Modified-Since`.
    last_modified: Option<String>,
}

/// What one poll found.
enum Polled {
    Unchanged,
    Changed(Vec<Item>, Conditions),
}

/// How the URL is polled; its settings come from the config.
impl ManifestUrl {
    fn client(&self) -> Result<reqwest::Client, String> {
        let mut builder = reqwest::Client::builder().timeout(TIMEOUT).user_agent(concat!("staticlet/", env!("CARGO_PKG_VERSION")));
        if let Some(ca_file) = &self.ca_file {
            let pem = std::fs::read(ca_file).map_err(|e| format!("cannot read the CA file {}: {e}", ca_file.display()))?;
            for certificate in reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| format!("CA file {}: {e}", ca_file.display()))? {
                builder = builder.add_root_certificate(certificate);
            }
        }
        builder.build().map_err(|e| format!("cannot set up the HTTP client: {e}"))
    }

    /// Folds one poll's outcome into the set last read, and logs what changed or failed.
    fn settle(&self, polled: Result<Polled, String>, last: &mut LastRead, conditions: &mut Conditions) {
        match polled {
            Ok(Polled::Unchanged) => last.unchanged(),
            Ok(Polled::Changed(items, new_conditions)) => {
                *conditions = new_conditions;
                let pods = items.len();
                if last.replace(items) {
                    info!(url = %self.url, pods, "manifest URL changed");
                }
            }
            Err(e) => {
                let kept = last.failed();
                warn!(url = %self.url, kept, "manifest URL: {e}; the pods of the last good body keep running");
            }
        }
    }

    async fn poll(&self, client: &reqwest::Client, conditions: &Conditions) -> Result<Polled, String> {
        let mut request = client.get(&self.url);
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        if let Some(etag) = &conditions.etag {
            request = request.header(IF_NONE_MATCH, etag);
        }
        if let Some(modified) = &conditions.last_modified {
            request = request.header(IF_MODIFIED_SINCE, modified);
        }
        let mut response = request.send().await.map_err(|e| describe(&e))?;
        let conditional = conditions.etag.is_some() || conditions.last_modified.is_some();
        match response.status() {
            StatusCode::NOT_MODIFIED if conditional => return Ok(Polled::Unchanged),
            StatusCode::OK => {}
            status => return Err(format!("the server answered {status}")),
        }
        let header = |name| response.headers().get(name).and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok()).map(str::to_owned);
        let (etag, last_modified) = (header(ETAG), header(LAST_MODIFIED));
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| describe(&e))? {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(format!("the body is larger than the {MAX_BODY_BYTES}-byte limit"));
            }
            body.extend_from_slice(&chunk);
        }
        let items = parse_body(&self.url, &body)?;
        Ok(Polled::Changed(items, Conditions { etag, last_modified }))
    }
}

fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return format!("no complete answer within {}s", TIMEOUT.as_secs());
    }
    crate::error_chain(e)
}

/// The body's items, each a manifest at `<url>#<index>`, unparsed beyond the split.
fn parse_body(url: &str, body: &[u8]) -> Result<Vec<Item>, String> {
    let manifests = staticlet_model::list::split(body).map_err(|e| e.to_string())?;
    let item = |(i, content)| Item { place: format!("{url}#{i}"), uri: url.to_owned(), content };
    Ok(manifests.into_iter().enumerate().map(item).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Manifests;

    #[test]
    fn a_pod_list_becomes_raw_items_judged_downstream() {
        let list = "kind: PodList\napiVersion: v1\nitems:\n- metadata: {name: a}\n  spec: {containers: [{name: c, image: i}]}\n- metadata: {name: b}\n  spec: {containers: [{name: c, image: i}]}\n";
        let items = parse_body("http://h/pods", list.as_bytes()).unwrap();
        assert_eq!(items.iter().map(|i| i.place.as_str()).collect::<Vec<_>>(), ["http://h/pods#0", "http://h/pods#1"]);
        assert!(items[0].content.contains("\"kind\":\"Pod\""));

        // An invalid item is no business of the source's: the desired stage rejects the body.
        let bad = list.replace("{name: b}", "{name: B_}");
        assert_eq!(parse_body("http://h/pods", bad.as_bytes()).unwrap().len(), 2);
        assert!(parse_body("http://h/pods", b"  \n").unwrap_err().contains("empty"));
        assert!(parse_body("http://h/pods", b"{\"kind\": \"PodList\", \"apiVersion\": \"v1\", \"items\": []}").unwrap().is_empty());
        assert!(parse_body("http://h/pods", b"kind: Deployment\n").unwrap_err().contains("Deployment"));
    }

    #[test]
    fn a_body_is_published_as_one_list_under_the_url() {
        let items = parse_body("http://h/pods", b"kind: List\nitems: [{metadata: {name: a}}, {metadata: {name: b}}]\n").unwrap();
        let snapshot = crate::source::checkpoint::snapshot(&SourceKind::Http, &items);
        assert!(snapshot.ready);
        assert_eq!(snapshot.items.keys().collect::<Vec<_>>(), ["http://h/pods"]);
        let Ok(Manifests::List(list)) = &snapshot.items["http://h/pods"] else { panic!("one list under the URL") };
        assert_eq!(list.iter().map(|(place, _)| place.as_str()).collect::<Vec<_>>(), ["http://h/pods#0", "http://h/pods#1"]);
        assert!(list.iter().all(|(_, raw)| raw.origin.kind == SourceKind::Http && raw.origin.uri == "http://h/pods"));
        assert!(std::str::from_utf8(&list[1].1.bytes).unwrap().contains("\"name\":\"b\""));
    }
}
