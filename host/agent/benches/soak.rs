//! Soak: N pods (100 by default) under churn — pod files created, edited and deleted several
//! times a second for ten minutes — then quiet, on a real Docker engine. It measures whether
//! the agent comes back to where it was: its RSS, open file descriptors and tasks (threads)
//! after the quiet against a baseline taken before the churn, and whether the engine holds
//! exactly what the manifest directory asks for: no orphan containers (anything of a removed
//! pod), no duplicates (a second sandbox, a second running app container, more than the one
//! exited instance kept for `kubectl logs --previous`), no stuck pod (every file's pod reported
//! Running by the API with its current spec). It prints a figures table and fails (exits
//! non-zero) when a figure is off its limit.
//!
//! `cargo bench -p staticlet --bench soak` or `scripts/soak` (needs a running Docker engine).
//! Overrides: `STATICLET_SOAK_PODS` (100), `STATICLET_SOAK_SECS` (600 s of churn),
//! `STATICLET_SOAK_OPS_PER_SEC` (4), `STATICLET_SOAK_SEED` (the churn's PRNG seed).

#[allow(dead_code)]
#[path = "../../../tests/e2e/support/mod.rs"]
mod support;

// Each benchmark uses some of what it reads.
#[allow(dead_code)]
#[path = "common/process.rs"]
mod process;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::models::ContainerSummary;
use support::images::BUSYBOX;
use support::{Agent, docker, name};

/// Bounds for the engine to hold every pod after the initial start and after the churn.
const START_TIMEOUT: Duration = Duration::from_secs(600);
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(120);
/// After the initial start: the last status updates and image-cache warm-up settle.
const SETTLE: Duration = Duration::from_secs(10);
/// After convergence: idle blocking-pool threads (10 s keep-alive) and connections wind down.
const QUIET: Duration = Duration::from_secs(20);
const PROGRESS_EVERY: Duration = Duration::from_secs(30);
/// Tolerances over the baseline: a few descriptors and threads may be in flight when sampled;
/// the allocator keeps some memory it freed.
const FD_SLACK: usize = 5;
const TASK_SLACK: usize = 4;
const RSS_SLACK_RATIO: f64 = 0.20;
const RSS_SLACK_KIB: u64 = 10 * 1024;

struct Config {
    pods: usize,
    churn: Duration,
    ops_per_sec: f64,
    seed: u64,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(value) => value.parse().unwrap_or_else(|_| panic!("{name}={value:?} is not a number")),
        Err(_) => default,
    }
}

impl Config {
    fn from_env() -> Config {
        let config = Config {
            pods: env_or("STATICLET_SOAK_PODS", 100),
            churn: Duration::from_secs(env_or("STATICLET_SOAK_SECS", 600)),
            ops_per_sec: env_or("STATICLET_SOAK_OPS_PER_SEC", 4.0),
            seed: env_or("STATICLET_SOAK_SEED", 0x5eed_5eed_5eed_5eed),
        };
        assert!(config.pods >= 2 && config.ops_per_sec > 0.0, "STATICLET_SOAK_PODS ≥ 2 and STATICLET_SOAK_OPS_PER_SEC > 0");
        config
    }
}

/// xorshift64: a reproducible churn without a dependency on a `rand` crate.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// The generation is the shell's `$0`, so it shows in Docker's command line of the container
/// and every edit changes the container's hash, which replaces it. The trap makes a stop quick.
fn manifest(name: &str, generation: u32) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  terminationGracePeriodSeconds: 5\n  containers:\n  - name: main\n    image: {BUSYBOX}\n    command: [sh, -c, 'trap \"exit 0\" TERM; sleep 100000 & wait', gen-{generation}]\n"
    )
}

fn file(name: &str) -> String {
    format!("{name}.yaml")
}

/// The manifest directory as the bench wants it: pod name → generation.
#[derive(Default)]
struct Churn {
    wanted: BTreeMap<String, u32>,
    /// Deleted pods by their last generation: some creates bring one back under the same
    /// name (so the same UID) while its teardown may still be running.
    removed: BTreeMap<String, u32>,
    next: usize,
    creates: usize,
    edits: usize,
    deletes: usize,
}

impl Churn {
    fn create(&mut self, agent: &Agent, rng: &mut Rng) {
        let (name, generation) = if !self.removed.is_empty() && rng.below(3) == 0 {
            let name = self.removed.keys().nth(rng.below(self.removed.len())).unwrap().clone();
            let generation = self.removed.remove(&name).unwrap() + 1;
            (name, generation)
        } else {
            self.next += 1;
            (format!("churn-{}", self.next), 0)
        };
        agent.write(&file(&name), &manifest(&name, generation));
        self.wanted.insert(name, generation);
        self.creates += 1;
    }

    fn edit(&mut self, agent: &Agent, rng: &mut Rng) {
        let name = self.pick(rng);
        let generation = self.wanted[&name] + 1;
        agent.write(&file(&name), &manifest(&name, generation));
        self.wanted.insert(name, generation);
        self.edits += 1;
    }

    fn delete(&mut self, agent: &Agent, rng: &mut Rng) {
        let name = self.pick(rng);
        agent.remove(&file(&name));
        let generation = self.wanted.remove(&name).unwrap();
        self.removed.insert(name, generation);
        self.deletes += 1;
    }

    fn pick(&self, rng: &mut Rng) -> String {
        self.wanted.keys().nth(rng.below(self.wanted.len())).unwrap().clone()
    }

    /// One random operation, steered back when the pod count drifts out of N ± 10 %.
    fn step(&mut self, agent: &Agent, rng: &mut Rng, pods: usize) {
        let (low, high) = (pods - pods / 10, pods + pods / 10);
        match rng.below(3) {
            _ if self.wanted.len() <= low.min(pods - 1) => self.create(agent, rng),
            _ if self.wanted.len() >= high.max(pods + 1) => self.delete(agent, rng),
            0 => self.create(agent, rng),
            1 => self.edit(agent, rng),
            _ => self.delete(agent, rng),
        }
    }

    fn ops(&self) -> usize {
        self.creates + self.edits + self.deletes
    }
}

/// The agent's footprint at one instant.
#[derive(Clone, Copy, Default)]
struct Usage {
    rss_kib: u64,
    fds: usize,
    tasks: usize,
}

impl Usage {
    fn of(pid: u32) -> Usage {
        let rss_kib = process::status_kib(&pid.to_string(), "VmRSS");
        let count = |dir: &str| std::fs::read_dir(format!("/proc/{pid}/{dir}")).map(|d| d.count()).unwrap_or(0);
        Usage { rss_kib, fds: count("fd"), tasks: count("task") }
    }

    /// The median of each figure over a few seconds, so one in-flight request does not count.
    async fn median(pid: u32) -> Usage {
        let mut samples = Vec::new();
        for _ in 0..5 {
            samples.push(Usage::of(pid));
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        fn mid<T: Ord + Copy>(mut values: Vec<T>) -> T {
            values.sort_unstable();
            values[values.len() / 2]
        }
        Usage {
            rss_kib: mid(samples.iter().map(|s| s.rss_kib).collect()),
            fds: mid(samples.iter().map(|s| s.fds).collect()),
            tasks: mid(samples.iter().map(|s| s.tasks).collect()),
        }
    }

    fn max(self, other: Usage) -> Usage {
        Usage { rss_kib: self.rss_kib.max(other.rss_kib), fds: self.fds.max(other.fds), tasks: self.tasks.max(other.tasks) }
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// What the engine and the API hold against what the manifest directory asks for.
#[derive(Default)]
struct Check {
    /// Containers of pods with no file: `name (pod)`.
    orphans: Vec<String>,
    /// Containers beyond one sandbox, one running app and one exited previous app per pod.
    duplicates: Vec<String>,
    /// Pods not (yet) as their file says, with the reason; and pods still reported without a file.
    stuck: Vec<String>,
}

impl Check {
    async fn run(agent: &Agent, docker: &Docker, wanted: &BTreeMap<String, u32>) -> Check {
        let mut check = Check::default();
        let label = |c: &ContainerSummary, key: &str| c.labels.as_ref().and_then(|l| l.get(key)).cloned().unwrap_or_default();
        let is_running = |c: &ContainerSummary| c.state.as_ref().map(|s| s.as_ref()) == Some("running");
        let mut by_pod: HashMap<String, Vec<ContainerSummary>> = HashMap::new();
        for c in support::containers(docker, &agent.node, &[]).await {
            by_pod.entry(label(&c, "io.kubernetes.pod.name")).or_default().push(c);
        }
        let full_names: BTreeMap<String, &str> = wanted.keys().map(|n| (agent.pod(n), n.as_str())).collect();
        for (pod, containers) in &by_pod {
            if !full_names.contains_key(pod) {
                check
                    .orphans
                    .extend(containers.iter().map(|c| format!("{} ({})", name(c), if is_running(c) { "running" } else { "exited" })));
            }
        }

        let reported: HashMap<String, serde_json::Value> = match agent.api("GET", "/api/v1/pods").await {
            Some((200, list)) => list["items"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| (p["metadata"]["name"].as_str().unwrap_or_default().to_owned(), p.clone()))
                .collect(),
            _ => HashMap::new(),
        };
        for pod in reported.keys().filter(|p| !full_names.contains_key(*p)) {
            check.stuck.push(format!("{pod}: still reported, its file is gone"));
        }

        for (full, short) in &full_names {
            let generation = wanted[*short];
            let containers = by_pod.get(full).map(Vec::as_slice).unwrap_or_default();
            let current = format!(" gen-{generation}");
            let is_current = |c: &ContainerSummary| c.command.as_deref().is_some_and(|cmd| cmd.ends_with(&current));
            let (mut sandboxes, apps): (Vec<&ContainerSummary>, Vec<_>) =
                containers.iter().partition(|c| label(c, "io.kubernetes.docker.type") == "podsandbox");
            let (mut running_apps, exited_apps): (Vec<&ContainerSummary>, Vec<_>) = apps.into_iter().partition(|c| is_running(c));
            // The one that belongs goes first, so the duplicates named are the extra ones.
            sandboxes.sort_by_key(|c| !is_running(c));
            running_apps.sort_by_key(|c| !is_current(c));
            let extra = sandboxes.iter().skip(1).chain(running_apps.iter().skip(1)).chain(exited_apps.iter().skip(1));
            check.duplicates.extend(extra.map(|c| name(c)));

            let app = running_apps.first().filter(|c| is_current(c));
            let reported_id = reported.get(full).and_then(|p| {
                let statuses = p["status"]["containerStatuses"].as_array()?;
                let main = statuses.iter().find(|s| s["name"] == "main" && s["state"]["running"].is_object())?;
                main["containerID"].as_str().map(|id| id.rsplit("://").next().unwrap_or(id).to_owned())
            });
            let reason = match reported.get(full) {
                _ if !sandboxes.iter().any(|c| is_running(c)) => "no running sandbox".to_owned(),
                _ if app.is_none() => format!("no running app container at gen-{generation}"),
                None => "not reported by the API".to_owned(),
                Some(p) if p["status"]["phase"] != "Running" => format!("reported {}", p["status"]["phase"]),
                Some(_) if reported_id.as_deref() != app.and_then(|c| c.id.as_deref()) => {
                    format!("the API reports app container {reported_id:?}, not the running gen-{generation} one")
                }
                Some(_) => continue,
            };
            check.stuck.push(format!("{full}: {reason}"));
        }
        check.orphans.sort();
        check.duplicates.sort();
        check.stuck.sort();
        check
    }

    fn converged(&self) -> bool {
        self.orphans.is_empty() && self.duplicates.is_empty() && self.stuck.is_empty()
    }
}

/// Polls until the engine and the API match the files, or `timeout`; the last check either way.
async fn converge(agent: &Agent, docker: &Docker, wanted: &BTreeMap<String, u32>, timeout: Duration) -> (Check, Duration) {
    let started = Instant::now();
    loop {
        let check = Check::run(agent, docker, wanted).await;
        if check.converged() || started.elapsed() >= timeout {
            return (check, started.elapsed());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Everything the table is built from.
struct Outcome {
    ops: (usize, usize, usize),
    churned: Duration,
    pods_after: usize,
    baseline: Usage,
    peak: Usage,
    after: Usage,
    converged_in: Duration,
    check: Check,
}

async fn soak(agent: &mut Agent, docker: &Docker, config: &Config) -> Outcome {
    let mut rng = Rng(config.seed.max(1));
    let mut churn = Churn::default();
    let started = Instant::now();
    for _ in 0..config.pods {
        churn.next += 1;
        let name = format!("churn-{}", churn.next);
        agent.write(&file(&name), &manifest(&name, 0));
        churn.wanted.insert(name, 0);
    }
    let (check, took) = converge(agent, docker, &churn.wanted, START_TIMEOUT).await;
    assert!(check.converged(), "{} pods did not start within {took:?}: {}", config.pods, check.stuck.join("; "));
    println!("soak: {} pods running {:.1} s after the files were written", config.pods, started.elapsed().as_secs_f64());
    tokio::time::sleep(SETTLE).await;

    let pid = agent.pid();
    let baseline = Usage::median(pid).await;
    println!("soak: baseline rss {:.1} MiB, fds {}, tasks {}", mib(baseline.rss_kib), baseline.fds, baseline.tasks);

    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / config.ops_per_sec));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let started = Instant::now();
    let mut next_progress = PROGRESS_EVERY;
    let mut peak = baseline;
    while started.elapsed() < config.churn {
        tick.tick().await;
        churn.step(agent, &mut rng, config.pods);
        let now = Usage::of(pid);
        peak = peak.max(now);
        if started.elapsed() >= next_progress {
            next_progress += PROGRESS_EVERY;
            assert!(agent.is_running(), "the agent exited during the churn:\n{}", agent.log());
            println!(
                "soak: {:4.0} s  ops {:5} (+{} ~{} -{})  pods {:3}  rss {:6.1} MiB  fds {:4}  tasks {:3}",
                started.elapsed().as_secs_f64(),
                churn.ops(),
                churn.creates,
                churn.edits,
                churn.deletes,
                churn.wanted.len(),
                mib(now.rss_kib),
                now.fds,
                now.tasks
            );
        }
    }
    let churned = started.elapsed();

    let (check, converged_in) = converge(agent, docker, &churn.wanted, CONVERGE_TIMEOUT).await;
    println!("soak: churn over; converged: {} after {:.1} s", check.converged(), converged_in.as_secs_f64());
    tokio::time::sleep(QUIET).await;
    let after = Usage::median(pid).await;
    // The figures are of the quiet state: a pod that converged late still counts as stuck.
    let check = if check.converged() { Check::run(agent, docker, &churn.wanted).await } else { check };
    Outcome {
        ops: (churn.creates, churn.edits, churn.deletes),
        churned,
        pods_after: churn.wanted.len(),
        baseline,
        peak,
        after,
        converged_in,
        check,
    }
}

/// The figures table (Markdown, so it can go into a report as is) and whether all passed.
fn table(config: &Config, outcome: &Outcome) -> (String, bool) {
    let Outcome { ops: (creates, edits, deletes), baseline, peak, after, check, .. } = outcome;
    let rss_limit = baseline.rss_kib + RSS_SLACK_KIB.max((baseline.rss_kib as f64 * RSS_SLACK_RATIO) as u64);
    let rows = [
        (
            "RSS (MiB)",
            format!("{:.1}", mib(baseline.rss_kib)),
            format!("{:.1}", mib(after.rss_kib)),
            format!("{:.1}", mib(peak.rss_kib)),
            format!("≤ {:.1}", mib(rss_limit)),
            after.rss_kib <= rss_limit,
        ),
        (
            "open fds",
            baseline.fds.to_string(),
            after.fds.to_string(),
            peak.fds.to_string(),
            format!("≤ {}", baseline.fds + FD_SLACK),
            after.fds <= baseline.fds + FD_SLACK,
        ),
        (
            "tasks",
            baseline.tasks.to_string(),
            after.tasks.to_string(),
            peak.tasks.to_string(),
            format!("≤ {}", baseline.tasks + TASK_SLACK),
            after.tasks <= baseline.tasks + TASK_SLACK,
        ),
        ("orphan containers", String::new(), check.orphans.len().to_string(), String::new(), "0".into(), check.orphans.is_empty()),
        ("duplicate containers", String::new(), check.duplicates.len().to_string(), String::new(), "0".into(), check.duplicates.is_empty()),
        ("stuck pods", String::new(), check.stuck.len().to_string(), String::new(), "0".into(), check.stuck.is_empty()),
    ];
    let mut out = String::new();
    let ops = creates + edits + deletes;
    let _ = writeln!(
        out,
        "{} pods, {:.0} s of churn at {} ops/s (seed {:#x}): {ops} ops ({creates} creates, {edits} edits, {deletes} deletes), {} pods at the end; converged {:.1} s after the churn stopped.\n",
        config.pods,
        outcome.churned.as_secs_f64(),
        config.ops_per_sec,
        config.seed,
        outcome.pods_after,
        outcome.converged_in.as_secs_f64()
    );
    let _ = writeln!(out, "| figure | before churn | after quiet | peak in churn | limit | verdict |");
    let _ = writeln!(out, "| --- | ---: | ---: | ---: | ---: | --- |");
    for (figure, before, after, peak, limit, ok) in &rows {
        let _ = writeln!(out, "| {figure} | {before} | {after} | {peak} | {limit} | {} |", if *ok { "ok" } else { "FAIL" });
    }
    for (what, list) in [("orphan", &check.orphans), ("duplicate", &check.duplicates), ("stuck", &check.stuck)] {
        for item in list {
            let _ = writeln!(out, "{what}: {item}");
        }
    }
    (out, rows.iter().all(|row| row.5))
}

#[tokio::main]
async fn main() {
    let config = Config::from_env();
    let docker = docker().await;
    let mut agent = Agent::new("soak");
    agent.start();
    println!("soak: node {}, {} pods, {} s of churn at {} ops/s", agent.node, config.pods, config.churn.as_secs(), config.ops_per_sec);
    // On Ctrl-C, still leave the engine clean: `Agent`'s drop removes the node's containers.
    let outcome = tokio::select! {
        outcome = soak(&mut agent, &docker, &config) => Some(outcome),
        _ = tokio::signal::ctrl_c() => None,
    };
    let Some(outcome) = outcome else {
        eprintln!("soak: interrupted; removing the agent's containers");
        drop(agent);
        std::process::exit(130);
    };
    let (figures, passed) = table(&config, &outcome);
    println!("\n{figures}");
    let log = agent.log();
    let count = |level: &str| log.lines().filter(|l| l.contains(level)).count();
    println!("agent log: {} lines, {} WARN, {} ERROR", log.lines().count(), count(" WARN "), count(" ERROR "));
    if !passed {
        // The agent's directory goes with it; keep its log for the post-mortem.
        let kept = std::env::temp_dir().join(format!("staticlet-soak-{}.log", agent.node));
        std::fs::write(&kept, &log).unwrap();
        drop(agent);
        panic!("soak failed (see the table above); the agent's log is in {}", kept.display());
    }
}
