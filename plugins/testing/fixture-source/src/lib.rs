//! A manifest source for the agent's tests. Its settings say where the manifests come from:
//!
//! - `{"manifests": {"<id>": "<YAML or JSON>", ...}}`: served as given;
//! - `{"dir": "<path>"}`: every regular file in a directory the agent granted read-only, the
//!   file name as its id, so a test changes the set by writing files. A directory that cannot
//!   be read is an `unavailable` error, the outage a source must survive.
//!
//! A poll answers `none` when the set is the one this instance returned last. A wait for a
//! change watches the directory (it reads it every 20 ms) and answers `true` as soon as the set
//! differs from the one last returned; with inline manifests, or `"follow": false`, it just
//! waits out its timeout, as a source that cannot follow its backend does.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

// wit-bindgen's export glue is `unsafe extern "C"` by nature; the lint stays on elsewhere.
#[allow(unsafe_code)]
mod bindings {
    wit_bindgen::generate!({
        path: "../../../wit/since_v0.2.0",
        world: "manifest-source",
    });

    use super::FixtureSource;
    export!(FixtureSource);
}

use bindings::Guest;
use bindings::exports::staticlet::plugin::source::{Guest as Source, Manifest};
use bindings::staticlet::plugin::types::Error;

enum Origin {
    Inline(BTreeMap<String, String>),
    Dir { dir: String, follow: bool },
}

thread_local! {
    static ORIGIN: RefCell<Option<Origin>> = const { RefCell::new(None) };
    static LAST: RefCell<Option<BTreeMap<String, String>>> = const { RefCell::new(None) };
}

fn error(code: &str, message: impl Into<String>) -> Error {
    Error { code: code.into(), message: message.into() }
}

fn parse(config: &str) -> Result<Origin, String> {
    let config: serde_json::Value = serde_json::from_str(config).map_err(|e| format!("settings are not JSON: {e}"))?;
    if let Some(dir) = config.get("dir") {
        let dir = dir.as_str().ok_or("dir: must be a string")?.to_owned();
        let follow = config.get("follow").map_or(Some(true), serde_json::Value::as_bool).ok_or("follow: must be true or false")?;
        return Ok(Origin::Dir { dir, follow });
    }
    let Some(manifests) = config.get("manifests").and_then(|m| m.as_object()) else {
        return Err("set either `dir` or `manifests`".to_owned());
    };
    manifests
        .iter()
        .map(|(id, text)| text.as_str().map(|t| (id.clone(), t.to_owned())).ok_or_else(|| format!("manifests.{id}: must be a string")))
        .collect::<Result<_, _>>()
        .map(Origin::Inline)
}

fn read_dir(dir: &str) -> Result<BTreeMap<String, String>, Error> {
    let unavailable = |e: std::io::Error| error("unavailable", format!("cannot read {dir}: {e}"));
    let mut manifests = BTreeMap::new();
    for entry in std::fs::read_dir(dir).map_err(unavailable)? {
        let entry = entry.map_err(unavailable)?;
        if !entry.file_type().map_err(unavailable)?.is_file() {
            continue;
        }
        let id = entry.file_name().to_string_lossy().into_owned();
        manifests.insert(id, std::fs::read_to_string(entry.path()).map_err(unavailable)?);
    }
    Ok(manifests)
}

struct FixtureSource;

impl Guest for FixtureSource {
    fn init(config: String) -> Result<(), Error> {
        let origin = parse(&config).map_err(|e| error("config", e))?;
        ORIGIN.with(|o| *o.borrow_mut() = Some(origin));
        Ok(())
    }
}

impl Source for FixtureSource {
    fn poll() -> Result<Option<Vec<Manifest>>, Error> {
        let current = ORIGIN.with(|o| match o.borrow().as_ref() {
            Some(Origin::Inline(manifests)) => Ok(manifests.clone()),
            Some(Origin::Dir { dir, .. }) => read_dir(dir),
            None => Err(error("internal", "poll was called before init")),
        })?;
        LAST.with(|last| {
            let mut last = last.borrow_mut();
            if last.as_ref() == Some(&current) {
                return Ok(None);
            }
            let manifests = current.iter().map(|(id, content)| Manifest { id: id.clone(), content: content.clone() }).collect();
            *last = Some(current);
            Ok(Some(manifests))
        })
    }

    fn wait_for_change(timeout_ms: u64) -> Result<bool, Error> {
        let timeout = Duration::from_millis(timeout_ms);
        let Some(dir) = ORIGIN.with(|o| match o.borrow().as_ref() {
            Some(Origin::Dir { dir, follow: true }) => Some(dir.clone()),
            _ => None,
        }) else {
            std::thread::sleep(timeout);
            return Ok(false);
        };
        let started = Instant::now();
        loop {
            // An unreadable directory is left to the next poll to report.
            if let Ok(current) = read_dir(&dir)
                && LAST.with(|last| last.borrow().as_ref() != Some(&current))
            {
                return Ok(true);
            }
            if started.elapsed() >= timeout {
                return Ok(false);
            }
            std::thread::sleep(WATCH_PERIOD.min(timeout.saturating_sub(started.elapsed())));
        }
    }
}

/// How often a wait reads the directory.
const WATCH_PERIOD: Duration = Duration::from_millis(20);
