//! A validator that misbehaves on purpose, for the plugin host's tests. It admits every pod
//! except those annotated `testing.staticlet.dev/misbehave: "true"`; on those it does what its
//! settings' `mode` says:
//!
//! - `trap`: panics (a trap in the host);
//! - `loop`: spins forever (the call deadline must end it);
//! - `alloc`: allocates without bound (the memory cap must end it);
//! - `fetch`: sends `GET` to the settings' `url` and rejects the pod with what came back, so a
//!   test can see which requests the egress policy let through;
//! - `read`: reads the file at the settings' `path` and rejects the pod with its text or the
//!   error, so a test can see what the filesystem grants allow;
//! - `env`: rejects the pod with the names of the environment variables it can see;
//! - `connect`: opens a TCP connection to the settings' `address` (`host:port`, a name is
//!   looked up first) and rejects the pod with what happened, so a test can see that raw
//!   sockets and name lookups are out of reach;
//! - `reject`: rejects the pod with a violation on `metadata.annotations`.

use staticlet_plugin_sdk::{Config, Context, Pod, Validator, Verdict};

const MARK: &str = "testing.staticlet.dev/misbehave";

enum Mode {
    Trap,
    Loop,
    Alloc,
    Fetch(String),
    Read(String),
    Env,
    Connect(String),
    Reject,
}

struct Hostile {
    mode: Mode,
}

impl Validator for Hostile {
    fn validate(&self, _ctx: &Context, pod: &Pod) -> Verdict {
        let mut verdict = Verdict::default();
        let marked = pod.metadata.annotations.as_ref().and_then(|a| a.get(MARK)).is_some_and(|v| v == "true");
        if !marked {
            return verdict;
        }
        match &self.mode {
            Mode::Trap => panic!("hostile plugin: trapping as asked"),
            Mode::Loop => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            Mode::Alloc => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            Mode::Fetch(url) => verdict.reject("metadata.annotations", fetch(url)),
            Mode::Read(path) => verdict.reject(
                "metadata.annotations",
                match std::fs::read_to_string(path) {
                    Ok(text) => format!("read: {text}"),
                    Err(e) => format!("error: {e}"),
                },
            ),
            Mode::Env => {
                let names: Vec<String> = std::env::vars_os().map(|(name, _)| name.to_string_lossy().into_owned()).collect();
                verdict.reject("metadata.annotations", format!("env: [{}]", names.join(",")))
            }
            Mode::Connect(address) => verdict.reject(
                "metadata.annotations",
                match std::net::TcpStream::connect(address) {
                    Ok(_) => "connected".to_owned(),
                    Err(e) => format!("error: {e}"),
                },
            ),
            Mode::Reject => verdict.reject(format!("metadata.annotations[{MARK}]"), "rejected as asked"),
        }
        verdict
    }
}

/// `GET url`: `"status 200: <body>"`, or `"error: <error code>"`.
fn fetch(url: &str) -> String {
    use wasip2::http::outgoing_handler;
    use wasip2::http::types::{Fields, Method, OutgoingRequest, Scheme};

    let Some((scheme, rest)) = url.split_once("://") else { return format!("error: bad url {url}") };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let request = OutgoingRequest::new(Fields::new());
    let _ = request.set_method(&Method::Get);
    let _ = request.set_scheme(Some(&if scheme == "https" { Scheme::Https } else { Scheme::Http }));
    let _ = request.set_authority(Some(authority));
    let _ = request.set_path_with_query(Some(path));
    let response = match outgoing_handler::handle(request, None) {
        Ok(future) => {
            future.subscribe().block();
            match future.get() {
                Some(Ok(Ok(response))) => response,
                Some(Ok(Err(code))) => return format!("error: {code:?}"),
                _ => return "error: no response".into(),
            }
        }
        Err(code) => return format!("error: {code:?}"),
    };
    let status = response.status();
    let mut body = Vec::new();
    if let Ok(incoming) = response.consume()
        && let Ok(stream) = incoming.stream()
    {
        while let Ok(chunk) = stream.blocking_read(4096) {
            body.extend_from_slice(&chunk);
        }
    }
    format!("status {status}: {}", String::from_utf8_lossy(&body))
}

fn build(config: Config) -> Result<Hostile, String> {
    let mode = match config.get("mode").and_then(|m| m.as_str()) {
        Some("trap") => Mode::Trap,
        Some("loop") => Mode::Loop,
        Some("alloc") => Mode::Alloc,
        Some("reject") => Mode::Reject,
        Some("read") => Mode::Read(config.get("path").and_then(|p| p.as_str()).ok_or("mode read needs a path")?.to_owned()),
        Some("fetch") => Mode::Fetch(config.get("url").and_then(|u| u.as_str()).ok_or("mode fetch needs a url")?.to_owned()),
        Some("env") => Mode::Env,
        Some("connect") => Mode::Connect(config.get("address").and_then(|a| a.as_str()).ok_or("mode connect needs an address")?.to_owned()),
        other => return Err(format!("mode must be trap, loop, alloc, fetch, read, env, connect or reject, not {other:?}")),
    };
    Ok(Hostile { mode })
}

staticlet_plugin_sdk::export_validator!(Hostile, build);
