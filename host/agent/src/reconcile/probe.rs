//! Liveness, readiness and startup probes, run as the kubelet's prober workers run them: one
//! task per container and probe, first after `initialDelaySeconds`, then every `periodSeconds`,
//! each run bounded by `timeoutSeconds`; a result changes only after `successThreshold` or
//! `failureThreshold` runs in a row. Readiness starts as failure, liveness as success, startup
//! as unknown; while a startup probe has not passed, the other two wait.
//!
//! Results go to a table the pod worker reads; a change pokes the worker, which recomputes the
//! pod status and, for a failed liveness or startup probe, kills the container.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::{Container, Probe};
use staticlet_model::status::ProbeResults;
use staticlet_runtime::{Clock, Runtime};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::container_action::{self, Runner};
use super::plan::Unhealthy;
use crate::events::PodEvents;

/// Which probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    /// Restarts the container when it fails.
    Liveness,
    /// Gates the container's Ready state.
    Readiness,
    /// Holds the other two back until it passes; restarts the container when it fails.
    Startup,
}

impl ProbeKind {
    fn name(self) -> &'static str {
        match self {
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
            ProbeKind::Startup => "Startup",
        }
    }
}

#[derive(Debug, Clone, Default)]
struct ContainerResults {
    results: ProbeResults,
    unhealthy: Option<Unhealthy>,
}

/// One running container to probe.
pub struct Target<'a> {
    /// The runtime's ID.
    pub container_id: &'a str,
    /// Its spec.
    pub container: &'a Container,
    /// When it was created: initial delays count from here.
    pub created_at: SystemTime,
    /// The default host for httpGet and tcpSocket.
    pub pod_ip: &'a str,
}

/// The probes of one pod.
pub struct Prober {
    runtime: Arc<dyn Runtime>,
    clock: Clock,
    runner: Runner,
    poke: Arc<Notify>,
    results: Arc<Mutex<HashMap<String, ContainerResults>>>,
    tasks: HashMap<String, Vec<JoinHandle<()>>>,
    events: PodEvents,
}

impl Prober {
    /// Probes for one pod, whose events go to `events`; result changes poke `poke`. Initial
    /// delays are measured on `clock`.
    pub fn new(runtime: Arc<dyn Runtime>, clock: Clock, runner: Runner, poke: Arc<Notify>, events: PodEvents) -> Self {
        Prober { runtime, clock, runner, poke, results: Arc::default(), tasks: HashMap::new(), events }
    }

    /// Sends the events of probes started from now on to `events`.
    pub fn set_events(&mut self, events: PodEvents) {
        self.events = events;
    }

    /// Starts probes for new containers and stops those of containers no longer running.
    pub fn sync(&mut self, running: &[Target<'_>]) {
        self.tasks.retain(|id, handles| {
            let keep = running.iter().any(|t| t.container_id == id);
            if !keep {
                handles.iter().for_each(JoinHandle::abort);
            }
            keep
        });
        self.results.lock().unwrap().retain(|id, _| running.iter().any(|t| t.container_id == id));
        for target in running {
            if self.tasks.contains_key(target.container_id) {
                continue;
            }
            let c = target.container;
            let probes = [
                (ProbeKind::Startup, &c.startup_probe),
                (ProbeKind::Liveness, &c.liveness_probe),
                (ProbeKind::Readiness, &c.readiness_probe),
            ];
            let has_startup = c.startup_probe.is_some();
            let mut handles = Vec::new();
            for (kind, probe) in probes {
                let Some(probe) = probe.clone() else { continue };
                let action = match container_action::from_probe(&probe, c, target.pod_ip) {
                    Ok(action) => action,
                    Err(e) => {
                        self.events.warning(Some(&c.name), "Unhealthy", format!("{} probe cannot run: {e}", kind.name()));
                        continue;
                    }
                };
                let task = ProbeTask {
                    kind,
                    probe,
                    action,
                    has_startup,
                    container_id: target.container_id.to_owned(),
                    container: c.name.clone(),
                    created_at: target.created_at,
                    clock: self.clock,
                    events: self.events.clone(),
                    runtime: self.runtime.clone(),
                    runner: self.runner.clone(),
                    poke: self.poke.clone(),
                    results: self.results.clone(),
                };
                handles.push(tokio::spawn(task.run()));
            }
            self.tasks.insert(target.container_id.to_owned(), handles);
        }
    }

    /// Results by container ID, for the status.
    pub fn results(&self) -> HashMap<String, ProbeResults> {
        self.results.lock().unwrap().iter().map(|(id, r)| (id.clone(), r.results)).collect()
    }

    /// Containers that failed their liveness or startup probe.
    pub fn unhealthy(&self) -> HashMap<String, Unhealthy> {
        self.results.lock().unwrap().iter().filter_map(|(id, r)| Some((id.clone(), r.unhealthy.clone()?))).collect()
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.tasks.values().flatten().for_each(JoinHandle::abort);
    }
}

struct ProbeTask {
    kind: ProbeKind,
    probe: Probe,
    action: container_action::ContainerAction,
    has_startup: bool,
    container_id: String,
    container: String,
    created_at: SystemTime,
    clock: Clock,
    events: PodEvents,
    runtime: Arc<dyn Runtime>,
    runner: Runner,
    poke: Arc<Notify>,
    results: Arc<Mutex<HashMap<String, ContainerResults>>>,
}

/// A probe field in seconds, with the API's default: the model has already defaulted every
/// probe, so the fallback only guards a pod that did not come through it.
fn seconds(value: Option<i32>, default: i32) -> Duration {
    Duration::from_secs(value.unwrap_or(default).max(0) as u64)
}

impl ProbeTask {
    async fn run(self) {
        let initial_delay = seconds(self.probe.initial_delay_seconds, 0);
        let period = seconds(self.probe.period_seconds, 10).max(Duration::from_secs(1));
        let timeout = seconds(self.probe.timeout_seconds, 1).max(Duration::from_secs(1));
        let success_threshold = self.probe.success_threshold.unwrap_or(1).max(1);
        let failure_threshold = self.probe.failure_threshold.unwrap_or(3).max(1);
        if let Ok(wait) = (self.created_at + initial_delay).duration_since(self.clock.now()) {
            tokio::time::sleep(wait).await;
        }
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last: Option<bool> = None;
        let mut run = 0;
        loop {
            ticker.tick().await;
            let started = self.current().results.started;
            match self.kind {
                ProbeKind::Startup if started == Some(true) => return,
                ProbeKind::Liveness | ProbeKind::Readiness if self.has_startup && started != Some(true) => continue,
                _ => {}
            }
            let outcome = self.runner.probe(&self.action, self.runtime.as_ref(), &self.container_id, timeout).await;
            let success = outcome.is_ok();
            if let Err(message) = &outcome {
                self.events.warning(Some(&self.container), "Unhealthy", format!("{} probe failed: {message}", self.kind.name()));
            }
            run = if last == Some(success) { run + 1 } else { 1 };
            last = Some(success);
            let threshold = if success { success_threshold } else { failure_threshold };
            if run < threshold {
                continue;
            }
            if self.record(success) {
                self.poke.notify_one();
            }
            if !success && matches!(self.kind, ProbeKind::Liveness | ProbeKind::Startup) {
                // On hold: the worker restarts the container, which brings new probes.
                return;
            }
        }
    }

    fn current(&self) -> ContainerResults {
        self.results.lock().unwrap().get(&self.container_id).cloned().unwrap_or_default()
    }

    /// Records a settled result; returns whether it changed anything.
    fn record(&self, success: bool) -> bool {
        let mut table = self.results.lock().unwrap();
        let entry = table.entry(self.container_id.clone()).or_default();
        let before = (entry.results, entry.unhealthy.clone());
        match (self.kind, success) {
            (ProbeKind::Readiness, ready) => entry.results.ready = Some(ready),
            (ProbeKind::Startup, true) => entry.results.started = Some(true),
            (ProbeKind::Liveness, true) => {}
            (kind, false) => {
                if kind == ProbeKind::Startup {
                    entry.results.started = Some(false);
                }
                let reason = format!("failed {} probe", kind.name().to_lowercase());
                self.events.normal(Some(&self.container), "Killing", format!("Container {} {reason}, will be restarted", self.container));
                entry.unhealthy = Some(Unhealthy { reason, grace_seconds: self.probe.termination_grace_period_seconds });
            }
        }
        before != (entry.results, entry.unhealthy.clone())
    }
}

#[cfg(test)]
mod tests;
