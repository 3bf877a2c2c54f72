//! A pod's start broken down by stage, from the file written to the container started, for
//! staticlet and for the minimal client it is compared with.
//!
//! Staticlet's side is read from its own log, run as JSON at debug level for `staticlet`
//! ([`AGENT_LOG_FILTER`]): the desired stage logs when it gets a snapshot from the sources,
//! decoding logs "accepted pod", admission "admitted", and
//! every runtime call is logged when it returns, with how long it took (`metrics.rs`,
//! `Instrumented`), which gives each call's start and end. The engine's own clock gives when the
//! sandbox and the container were created and started, for both sides alike. The minimal
//! client's side is timed by the benchmark around its calls.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::report::percentile;

/// `STATICLET_LOG` for an agent whose start is broken down: debug for the agent's own modules
/// (a handful of lines per pod, so its timing is not disturbed), info for everything else.
pub const AGENT_LOG_FILTER: &str = "info,staticlet=debug,wasmtime_wasi_http=error";

/// The milestones of a pod's start, in order, each with what the stage ending at it covers.
/// A side has the ones it goes through: the minimal client starts at [`SANDBOX_CALLED`].
pub const STAGES: [(&str, &str); 14] = [
    (SNAPSHOT, "file written → the desired stage has the source's snapshot (inotify, debounce, re-list, read)"),
    (DECODED, "→ decoded, defaulted, validated (\"accepted pod\")"),
    (ADMITTED, "→ admitted by the built-in policy"),
    (WORKER, "→ the pod's worker makes its first runtime call (the desired set published, the worker spawned)"),
    (OBSERVED, "→ its lists answered (ListPodSandbox, ListContainers)"),
    (SANDBOX_CALLED, "→ RunPodSandbox called (the minimal client: its first call)"),
    (SANDBOX_CREATED, "→ sandbox created (engine's clock)"),
    (SANDBOX_STARTED, "→ sandbox started (engine's clock)"),
    (SANDBOX_RETURNED, "→ RunPodSandbox returned"),
    (CREATE_CALLED, "→ CreateContainer called (ImageStatus and what else the client does first)"),
    (CREATED, "→ container created (engine's clock)"),
    (CREATE_RETURNED, "→ CreateContainer returned"),
    (START_CALLED, "→ StartContainer called"),
    (STARTED, "→ container started (engine's clock): the figure"),
];

/// The desired stage got the snapshot holding the new file.
pub const SNAPSHOT: &str = "snapshot";
/// The manifest was decoded into a pod.
pub const DECODED: &str = "decoded";
/// The policy admitted the pod.
pub const ADMITTED: &str = "admitted";
/// The pod's worker started its first runtime call.
pub const WORKER: &str = "worker";
/// The worker's list calls returned.
pub const OBSERVED: &str = "observed";
/// The sandbox's first call started.
pub const SANDBOX_CALLED: &str = "sandbox called";
/// The engine created the sandbox.
pub const SANDBOX_CREATED: &str = "sandbox created";
/// The engine started the sandbox.
pub const SANDBOX_STARTED: &str = "sandbox started";
/// The sandbox's calls returned.
pub const SANDBOX_RETURNED: &str = "sandbox returned";
/// CreateContainer started.
pub const CREATE_CALLED: &str = "create called";
/// The engine created the container.
pub const CREATED: &str = "created";
/// CreateContainer returned.
pub const CREATE_RETURNED: &str = "create returned";
/// StartContainer started.
pub const START_CALLED: &str = "start called";
/// The engine started the container: the end of the measurement.
pub const STARTED: &str = "started";

/// One pod's start: its milestones, in milliseconds after `t0`, and the runtime calls made for
/// it, each with how long it took.
#[derive(Debug, Clone)]
pub struct Start {
    t0: SystemTime,
    at: BTreeMap<&'static str, f64>,
    calls: Vec<(String, f64)>,
}

impl Start {
    /// A start timed from `t0`: the file written, or the minimal client's first call.
    pub fn new(t0: SystemTime) -> Start {
        Start { t0, at: BTreeMap::new(), calls: Vec::new() }
    }

    /// When this start began.
    pub fn t0(&self) -> SystemTime {
        self.t0
    }

    /// Records `milestone` at `at`.
    pub fn mark(&mut self, milestone: &'static str, at: SystemTime) {
        self.at.insert(milestone, ms_between(self.t0, at));
    }

    /// `milestone`, in milliseconds after `t0`, if it was recorded.
    pub fn at(&self, milestone: &str) -> Option<f64> {
        self.at.get(milestone).copied()
    }

    /// The figure: milliseconds from `t0` to the container started.
    ///
    /// # Panics
    ///
    /// When [`STARTED`] was not recorded.
    pub fn total(&self) -> f64 {
        self.at(STARTED).expect("the container's start was recorded")
    }

    /// Records one runtime call made for the pod.
    pub fn call(&mut self, name: &str, took: Duration) {
        self.calls.push((name.to_owned(), took.as_secs_f64() * 1000.0));
    }

    /// Runs `call`, recording how long it took under `name`.
    pub async fn timed<T>(&mut self, name: &str, call: impl Future<Output = T>) -> T {
        let started = Instant::now();
        let result = call.await;
        self.call(name, started.elapsed());
        result
    }
}

/// Milliseconds from `from` to `to`, negative when `to` is earlier.
pub fn ms_between(from: SystemTime, to: SystemTime) -> f64 {
    match to.duration_since(from) {
        Ok(after) => after.as_secs_f64() * 1000.0,
        Err(before) => -before.duration().as_secs_f64() * 1000.0,
    }
}

/// Parses an RFC 3339 time, as the engines and the agent's JSON log write them.
pub fn parse_time(text: &str) -> Option<SystemTime> {
    OffsetDateTime::parse(text, &Rfc3339).ok().map(SystemTime::from)
}

/// Prints, for each side (a label and its starts), the p50 of each stage's own duration and
/// the p50 time since `t0` at its end; then the runtime calls each side made per pod, with
/// the p50 of each call's duration. A stage's duration is taken in each start, from the
/// milestone before it that this start has, so a side without the first stages (the minimal
/// client) counts from its own `t0`.
pub fn print(bench: &str, sides: &[(&str, &[Start])]) {
    let n = sides.iter().map(|(_, starts)| starts.len()).max().unwrap_or(0);
    let width = STAGES.iter().map(|(_, what)| what.chars().count()).max().unwrap_or(0);
    println!("{bench}: where the time goes, p50 over {n} pods: each stage's own time (and the time since t0 at its end), in ms");
    print!("{bench}:   {:<width$}", "stage");
    for (label, _) in sides {
        print!(" {label:>24}");
    }
    println!();
    for (i, (milestone, what)) in STAGES.iter().enumerate() {
        if sides.iter().all(|(_, starts)| starts.iter().all(|s| s.at(milestone).is_none())) {
            continue;
        }
        print!("{bench}:   {what:<width$}");
        for (_, starts) in sides {
            let mut own = Vec::new();
            let mut since_t0 = Vec::new();
            for start in starts.iter() {
                let Some(at) = start.at(milestone) else { continue };
                let before = STAGES[..i].iter().rev().find_map(|(m, _)| start.at(m)).unwrap_or(0.0);
                own.push(at - before);
                since_t0.push(at);
            }
            if own.is_empty() {
                print!(" {:>24}", "—");
            } else {
                print!(" {:>24}", format!("{:7.1} (at {:6.1})", percentile(&own, 50.0), percentile(&since_t0, 50.0)));
            }
        }
        println!();
    }
    println!("{bench}: runtime calls per pod: how many, and the p50 of each call's time in ms");
    let mut names: Vec<&str> = Vec::new();
    for (_, starts) in sides {
        for start in starts.iter() {
            for (name, _) in &start.calls {
                if !names.contains(&name.as_str()) {
                    names.push(name);
                }
            }
        }
    }
    for name in names {
        print!("{bench}:   {name:<width$}");
        for (_, starts) in sides {
            let took: Vec<f64> = starts.iter().flat_map(|s| s.calls.iter().filter(|(c, _)| c == name).map(|(_, t)| *t)).collect();
            if took.is_empty() {
                print!(" {:>24}", "—");
            } else {
                let per_pod = took.len() as f64 / starts.len().max(1) as f64;
                print!(" {:>24}", format!("{per_pod:.1} × {:6.2}", percentile(&took, 50.0)));
            }
        }
        println!();
    }
}

/// One line of the agent's JSON log.
#[derive(Debug, Clone)]
pub struct Line {
    /// When it was written, by the agent's clock (the machine's).
    pub at: SystemTime,
    /// The message.
    pub message: String,
    /// The fields (the JSON format flattens them into the line's object).
    pub fields: Map<String, Value>,
}

impl Line {
    /// Field `name` as text, if it is a string.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).and_then(Value::as_str)
    }

    /// For a "runtime call" line: when the call started (the line is written when it returns).
    fn call_started(&self) -> SystemTime {
        let took = self.fields.get("took_us").and_then(Value::as_u64).unwrap_or(0);
        self.at - Duration::from_micros(took)
    }
}

/// The agent's log file, read as it grows.
#[derive(Debug)]
pub struct AgentLog {
    path: PathBuf,
    offset: u64,
    partial: Vec<u8>,
    lines: Vec<Line>,
}

impl AgentLog {
    /// The log at `path`, which the agent writes in JSON (`--log-format json`).
    pub fn new(path: PathBuf) -> AgentLog {
        AgentLog { path, offset: 0, partial: Vec::new(), lines: Vec::new() }
    }

    /// Reads what was written since the last read; lines that are not JSON (a panic's message)
    /// are passed over.
    fn read(&mut self) {
        let Ok(mut file) = std::fs::File::open(&self.path) else { return };
        if file.seek(SeekFrom::Start(self.offset)).is_err() {
            return;
        }
        let mut fresh = Vec::new();
        let Ok(read) = file.read_to_end(&mut fresh) else { return };
        self.offset += read as u64;
        self.partial.extend_from_slice(&fresh);
        let Some(end) = self.partial.iter().rposition(|b| *b == b'\n') else { return };
        let whole: Vec<u8> = self.partial.drain(..=end).collect();
        for text in whole.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let Ok(Value::Object(mut fields)) = serde_json::from_slice::<Value>(text) else { continue };
            let at = fields.get("timestamp").and_then(Value::as_str).and_then(parse_time);
            let message = fields.remove("message").and_then(|m| m.as_str().map(str::to_owned));
            if let (Some(at), Some(message)) = (at, message) {
                self.lines.push(Line { at, message, fields });
            }
        }
    }

    /// Waits (polling the file every few milliseconds, which costs the agent nothing) until a
    /// line with `message` and the `field` = `value` pair is written at or after `since`.
    ///
    /// # Panics
    ///
    /// After `timeout`.
    pub async fn wait_for(&mut self, since: SystemTime, message: &str, (field, value): (&str, &str), timeout: Duration) -> Line {
        let deadline = Instant::now() + timeout;
        loop {
            self.read();
            if let Some(line) = self.lines.iter().find(|l| l.at >= since && l.message == message && l.field(field) == Some(value)).cloned()
            {
                return line;
            }
            assert!(Instant::now() < deadline, "the agent did not log {message:?} with {field}={value} within {timeout:?}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Adds to `start` staticlet's milestones and runtime calls for pod `pod` (its static pod
    /// name, `<name>-<node>`, in namespace `default`), whose objects have the IDs `ids` (the
    /// sandbox's and the container's, so other pods' calls in the same moment are told apart).
    /// Call after the engine's milestones are in `start`: the container's start ends the window
    /// of calls that count.
    ///
    /// # Panics
    ///
    /// When the agent did not log the pod's way through (it was not started by this agent).
    pub fn pipeline(&mut self, start: &mut Start, pod: &str, ids: &[&str]) {
        self.read();
        let t0 = start.t0();
        let full_name = format!("default/{pod}");
        let lines = &self.lines;
        let accepted = lines
            .iter()
            .find(|l| l.at >= t0 && l.message == "accepted pod" && l.field("pod") == Some(&full_name))
            .unwrap_or_else(|| panic!("the agent logged no \"accepted pod\" for {full_name}"));
        let uid = accepted.field("uid").unwrap_or_default().to_owned();
        if let Some(snapshot) = lines.iter().rfind(|l| l.at >= t0 && l.at <= accepted.at && l.message == "source snapshot received") {
            start.mark(SNAPSHOT, snapshot.at);
        }
        start.mark(DECODED, accepted.at);
        let admitted = lines
            .iter()
            .find(|l| l.at >= accepted.at && l.message == "admitted" && l.field("pod") == Some(&full_name))
            .unwrap_or_else(|| panic!("the agent logged no \"admitted\" for {full_name}"));
        start.mark(ADMITTED, admitted.at);
        let ended = start.t0 + Duration::from_secs_f64(start.total().max(0.0) / 1000.0);
        let calls: Vec<&Line> = lines
            .iter()
            .filter(|l| l.message == "runtime call" && l.call_started() >= admitted.at && l.call_started() <= ended)
            .filter(|l| {
                let subject = l.field("subject").unwrap_or_default();
                match l.field("call").unwrap_or_default() {
                    // The worker lists by the pod's UID; the runtime's watcher lists the node's
                    // every object, which is not this pod's way.
                    "ListPodSandbox" | "ListContainers" => subject.contains(&uid),
                    "RunPodSandbox" => subject == pod,
                    "CreateContainer" => subject.starts_with(&format!("{pod}/")),
                    "ImageStatus" | "PullImage" => true,
                    _ => ids.iter().any(|id| !id.is_empty() && subject.starts_with(id)),
                }
            })
            .collect();
        if let Some(first) = calls.iter().map(|l| l.call_started()).min() {
            start.mark(WORKER, first);
        }
        let first_of = |name: &str| calls.iter().find(|l| l.field("call") == Some(name));
        let sandbox = first_of("RunPodSandbox");
        if let Some(observed) = calls
            .iter()
            .filter(|l| matches!(l.field("call"), Some("ListPodSandbox" | "ListContainers")))
            .filter(|l| sandbox.is_none_or(|s| l.at <= s.call_started()))
            .map(|l| l.at)
            .max()
        {
            start.mark(OBSERVED, observed);
        }
        if let Some(sandbox) = sandbox {
            start.mark(SANDBOX_CALLED, sandbox.call_started());
            start.mark(SANDBOX_RETURNED, sandbox.at);
        }
        if let Some(create) = first_of("CreateContainer") {
            start.mark(CREATE_CALLED, create.call_started());
            start.mark(CREATE_RETURNED, create.at);
        }
        if let Some(started) = first_of("StartContainer") {
            start.mark(START_CALLED, started.call_started());
        }
        for call in calls {
            let took = call.fields.get("took_us").and_then(Value::as_u64).unwrap_or(0);
            start.call(call.field("call").unwrap_or_default(), Duration::from_micros(took));
        }
    }
}
