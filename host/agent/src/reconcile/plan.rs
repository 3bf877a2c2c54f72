//! The planner: pure functions from (wanted pod, observed runtime objects, back-off, requests,
//! now) to the actions that bring the runtime to the wanted state, and from (pull policy, image
//! presence, image back-off, now) to what to do about an image. It decides; the worker observes,
//! acts and owns every clock and side effect, so these rules are tested without a runtime or a
//! timer.

use std::collections::BTreeMap;
use std::time::SystemTime;

use k8s_openapi::api::core::v1::{Container as ContainerSpec, PodSpec};
use staticlet_model::StaticPod;
use staticlet_model::status::{ERR_IMAGE_PULL, IMAGE_PULL_BACK_OFF};
use staticlet_runtime::{Container, ContainerState, ContainerStatus, PodSandbox, SandboxState};

use staticlet_model::backoff::BackoffTable;
use staticlet_runtime::labels::{CONTAINER_HASH, SANDBOX_HASH};

/// A running container that must be stopped: it failed its liveness or startup probe, or its
/// `postStart` hook. The restart policy and back-off decide what follows once it has exited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unhealthy {
    /// For the log: `failed liveness probe`.
    pub reason: String,
    /// The probe's own `terminationGracePeriodSeconds`, which overrides the pod's.
    pub grace_seconds: Option<i64>,
}

/// A container as observed, with its status once it has exited.
#[derive(Debug, Clone, PartialEq)]
pub struct ObservedContainer {
    /// What the list call returned.
    pub container: Container,
    /// The detailed status, fetched once per state.
    pub status: Option<ContainerStatus>,
    /// Set when a running container failed its liveness or startup probe or its `postStart`
    /// hook.
    pub unhealthy: Option<Unhealthy>,
    /// A running container whose startup probe has not passed yet: a sidecar in this state
    /// holds back the init containers after it.
    pub starting: bool,
}

/// Everything the runtime holds for one pod UID.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ObservedPod {
    /// Its sandboxes, current and old.
    pub sandboxes: Vec<PodSandbox>,
    /// Its containers, in any sandbox.
    pub containers: Vec<ObservedContainer>,
}

impl ObservedPod {
    /// Nothing left in the runtime.
    pub fn is_empty(&self) -> bool {
        self.sandboxes.is_empty() && self.containers.is_empty()
    }
}

/// One step for the worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Stop every container (with the grace period) and sandbox of the pod, then remove them.
    KillPod {
        /// Why, for the log.
        reason: String,
    },
    /// Create a sandbox with this attempt number.
    CreateSandbox {
        /// The sandbox attempt.
        attempt: u32,
    },
    /// Create and start a container in the current (or just created) sandbox.
    StartContainer {
        /// The container's name in the spec.
        name: String,
        /// Its attempt, which is its restart count.
        attempt: u32,
    },
    /// Stop a container with the grace period; it stays, exited, for its logs.
    KillContainer {
        /// The runtime's ID.
        id: String,
        /// The container's name in the spec, for the log.
        name: String,
        /// Why, for the log.
        reason: String,
        /// A grace period that overrides the pod's (a probe's `terminationGracePeriodSeconds`).
        grace_seconds: Option<i64>,
    },
    /// Remove an exited container.
    RemoveContainer {
        /// The runtime's ID.
        id: String,
    },
    /// Stop and remove an old sandbox with its containers.
    RemoveSandbox {
        /// The runtime's ID.
        id: String,
    },
}

/// A container waiting out its crash-loop back-off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    /// The container's name.
    pub name: String,
    /// When it may restart.
    pub until: SystemTime,
    /// The back-off it is waiting out.
    pub delay: std::time::Duration,
}

/// What to do for one pod now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Actions, in order.
    pub actions: Vec<Action>,
    /// Back-off to record for containers restarted after a crash: (name, when the run ended).
    pub backoff_next: Vec<(String, SystemTime)>,
    /// Containers in `CrashLoopBackOff`.
    pub waiting: Vec<Waiting>,
    /// The pod failed and will not be restarted (`restartPolicy: Never`).
    pub failed: bool,
    /// Nothing of the pod is left and nothing is wanted: the worker may stop.
    pub gone: bool,
    /// A requested restart: once the actions are done the pod starts afresh, with no back-off,
    /// a new start time and restart counts from zero.
    pub afresh: bool,
}

impl Plan {
    /// The earliest time the pod must be looked at again, if a back-off is running.
    pub fn requeue_at(&self) -> Option<SystemTime> {
        self.waiting.iter().map(|w| w.until).min()
    }
}

/// What someone asked of a pod, beside its manifest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Requests {
    /// `staticlet restart`: stop every container and start the pod afresh.
    pub restart: bool,
}

/// Plans one pod. `wanted` is `None` when its manifest is gone.
pub fn plan(wanted: Option<&StaticPod>, observed: &ObservedPod, backoff: &BackoffTable, requests: Requests, now: SystemTime) -> Plan {
    match wanted {
        None if observed.is_empty() => Plan { gone: true, ..Plan::default() },
        None => Plan { actions: vec![Action::KillPod { reason: "its manifest was removed".into() }], ..Plan::default() },
        Some(_) if requests.restart => Plan {
            actions: (!observed.is_empty()).then(|| Action::KillPod { reason: "a restart was requested".into() }).into_iter().collect(),
            afresh: true,
            ..Plan::default()
        },
        // The kubelet stops a pod being deleted and starts nothing of it; so does a manifest
        // that carries a deletionTimestamp. The worker stays, to report the pod.
        Some(pod) if pod.pod.metadata.deletion_timestamp.is_some() => Plan {
            actions: (!observed.is_empty())
                .then(|| Action::KillPod { reason: "its manifest sets metadata.deletionTimestamp".into() })
                .into_iter()
                .collect(),
            ..Plan::default()
        },
        Some(pod) => Planner { pod, observed, backoff, now, plan: Plan::default() }.run(),
    }
}

/// What to do about a container's image before creating the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageStep {
    /// Use the image present on the node.
    Use,
    /// Pull it first.
    Pull,
    /// Do not create the container now: the status's waiting reason, its message, and when to
    /// try again if a back-off is running.
    Refuse {
        /// `ErrImageNeverPull` or `ImagePullBackOff`.
        reason: &'static str,
        /// The kubelet's words.
        message: String,
        /// The end of the image's pull back-off.
        retry_at: Option<SystemTime>,
    },
}

/// The image step for `image` under pull `policy`, as the kubelet's image manager decides it:
/// `Never` uses what is there or refuses, `IfNotPresent` pulls only what is missing, `Always`
/// pulls every time; a pull that failed holds later pulls of the image back (the image's entry
/// in `image_backoff`), and the back-off's message keeps the failed pull's words
/// (`last_error`), as the kubelet's does since 1.34.
pub fn image_step(
    image: &str,
    policy: &str,
    present: bool,
    image_backoff: &BackoffTable,
    last_error: Option<&str>,
    now: SystemTime,
) -> ImageStep {
    match policy {
        "Never" if !present => {
            return ImageStep::Refuse {
                reason: "ErrImageNeverPull",
                message: format!("Container image \"{image}\" is not present with pull policy of Never"),
                retry_at: None,
            };
        }
        "IfNotPresent" | "Never" if present => return ImageStep::Use,
        _ => {}
    }
    match image_backoff.waiting_since_update(image, now) {
        Some(until) => {
            let cause = last_error.map(|e| format!(": {ERR_IMAGE_PULL}: {e}")).unwrap_or_default();
            ImageStep::Refuse {
                reason: IMAGE_PULL_BACK_OFF,
                message: format!("Back-off pulling image \"{image}\"{cause}"),
                retry_at: Some(until),
            }
        }
        None => ImageStep::Pull,
    }
}

/// The instances of each container in one sandbox, by name, newest first.
type Instances<'a> = BTreeMap<&'a str, Vec<&'a ObservedContainer>>;

struct Planner<'a> {
    pod: &'a StaticPod,
    observed: &'a ObservedPod,
    backoff: &'a BackoffTable,
    now: SystemTime,
    plan: Plan,
}

fn restart_policy(pod: &StaticPod) -> &str {
    pod.pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()).unwrap_or("Always")
}

fn should_restart(policy: &str, exit_code: i32) -> bool {
    match policy {
        "Never" => false,
        "OnFailure" => exit_code != 0,
        _ => true,
    }
}

impl<'a> Planner<'a> {
    /// The pod's spec, which defaulting always fills in.
    fn spec(&self) -> &'a PodSpec {
        self.pod.pod.spec.as_ref().expect("defaulted pods have a spec")
    }

    fn run(mut self) -> Plan {
        let newest = self.observed.sandboxes.iter().max_by_key(|s| (s.metadata.attempt, s.created_at));
        // The sandbox carries the pod's name too: when another manifest takes over a UID (two
        // files with one explicit UID, and the winner removed), the pod is made anew under the
        // name it now has, so nothing runs on under the old one.
        let matches_spec = |s: &PodSandbox| {
            s.labels.get(SANDBOX_HASH) == Some(&self.pod.sandbox_hash)
                && s.metadata.name == self.pod.name()
                && s.metadata.namespace == self.pod.namespace()
        };
        match newest {
            Some(sandbox) if sandbox.state == SandboxState::Ready && matches_spec(sandbox) => self.in_sandbox(sandbox),
            _ => self.new_sandbox(newest, newest.is_some_and(matches_spec)),
        }
        self.plan
    }

    /// No usable sandbox: (re)create the pod, unless it ran to its end under `Never`.
    fn new_sandbox(&mut self, newest: Option<&PodSandbox>, same_spec: bool) {
        if newest.is_some() && same_spec && restart_policy(self.pod) == "Never" && !self.observed.containers.is_empty() {
            self.plan.failed = self.observed.containers.iter().any(|c| c.status.as_ref().is_some_and(|s| s.exit_code != 0));
            return;
        }
        if !self.observed.is_empty() {
            let reason = match newest {
                Some(_) if !same_spec => "its sandbox settings (network, ports, volumes or DNS) or its name changed",
                Some(_) => "its sandbox is not running",
                None => "its containers have no sandbox",
            };
            self.plan.actions.push(Action::KillPod { reason: reason.into() });
        }
        let attempt = newest.map_or(0, |s| s.metadata.attempt + 1);
        self.plan.actions.push(Action::CreateSandbox { attempt });
        let spec = self.spec();
        match spec.init_containers.as_ref().and_then(|c| c.first()) {
            Some(first) => self.start(&first.name),
            None => spec.containers.iter().for_each(|c| self.start(&c.name)),
        }
    }

    /// A usable sandbox: old sandboxes go, then the init containers run in order, the app
    /// containers once every init container is done, and old instances of each are collected.
    fn in_sandbox(&mut self, sandbox: &PodSandbox) {
        for old in self.observed.sandboxes.iter().filter(|s| s.id != sandbox.id) {
            self.plan.actions.push(Action::RemoveSandbox { id: old.id.clone() });
        }
        let by_name = self.instances_in(sandbox);
        if self.init_containers(&by_name) {
            self.app_containers(&by_name);
        }
        self.collect_old_instances(&by_name);
    }

    /// The containers in `sandbox` by name, newest instance first. Containers whose sandbox is
    /// gone altogether are killed and removed on the way.
    fn instances_in(&mut self, sandbox: &PodSandbox) -> Instances<'a> {
        let known_sandboxes: Vec<&str> = self.observed.sandboxes.iter().map(|s| s.id.as_str()).collect();
        let mut by_name: Instances<'a> = BTreeMap::new();
        for c in &self.observed.containers {
            if c.container.pod_sandbox_id == sandbox.id {
                by_name.entry(c.container.metadata.name.as_str()).or_default().push(c);
            } else if !known_sandboxes.contains(&c.container.pod_sandbox_id.as_str()) {
                // A container whose sandbox is gone: nothing can run in it any more.
                self.kill_and_remove(c, "its sandbox is gone");
            }
        }
        for instances in by_name.values_mut() {
            instances.sort_by_key(|c| std::cmp::Reverse((c.container.metadata.attempt, c.container.created_at)));
        }
        by_name
    }

    /// Steps the init containers in order, stopping at the first that is not done. Returns
    /// whether all are done, so the app containers may run.
    fn init_containers(&mut self, by_name: &Instances<'a>) -> bool {
        let spec = self.spec();
        for init in spec.init_containers.iter().flatten() {
            let latest = by_name.get(init.name.as_str()).and_then(|v| v.first().copied());
            if !self.init_container(init, latest) {
                return false;
            }
        }
        true
    }

    /// One init container, given its newest instance: started, restarted or replaced as its
    /// state asks. Returns whether it is done: exited successfully, or for a sidecar, running
    /// unchanged and past its startup probe.
    fn init_container(&mut self, init: &ContainerSpec, latest: Option<&ObservedContainer>) -> bool {
        let sidecar = init.restart_policy.as_deref() == Some("Always");
        match latest.map(|c| c.container.state) {
            None => {
                self.start(&init.name);
                false
            }
            Some(ContainerState::Running) if sidecar => self.keep_or_replace(latest.unwrap()) && !latest.unwrap().starting,
            Some(ContainerState::Running) => false,
            Some(ContainerState::Exited) => {
                let status = latest.and_then(|c| c.status.as_ref());
                let exit_code = status.map_or(0, |s| s.exit_code);
                if !sidecar && exit_code == 0 {
                    true
                } else if !sidecar && restart_policy(self.pod) == "Never" {
                    self.plan.failed = true;
                    false
                } else {
                    self.restart_after_exit(latest.unwrap());
                    false
                }
            }
            Some(ContainerState::Created | ContainerState::Unknown) => {
                self.kill_and_remove(latest.unwrap(), "it never started");
                self.start(&init.name);
                false
            }
        }
    }

    /// Each app container, given its newest instance: started, kept, replaced if its spec
    /// changed, or restarted as the restart policy says once it has exited.
    fn app_containers(&mut self, by_name: &Instances<'a>) {
        let spec = self.spec();
        for container in &spec.containers {
            let latest = by_name.get(container.name.as_str()).and_then(|v| v.first().copied());
            match latest {
                None => self.start(&container.name),
                Some(c) => match c.container.state {
                    ContainerState::Running => {
                        self.keep_or_replace(c);
                    }
                    ContainerState::Exited => {
                        let exit_code = c.status.as_ref().map_or(0, |s| s.exit_code);
                        if !self.hash_matches(c) {
                            self.start(&container.name);
                        } else if should_restart(restart_policy(self.pod), exit_code) {
                            self.restart_after_exit(c);
                        }
                    }
                    ContainerState::Created | ContainerState::Unknown => {
                        self.kill_and_remove(c, "it never started");
                        self.start(&container.name);
                    }
                },
            }
        }
    }

    /// Garbage collection: every instance of a container no longer in the spec goes; of the
    /// others, the newest instance and the newest exited one before it (its logs are
    /// `--previous`) stay, and anything older goes.
    fn collect_old_instances(&mut self, by_name: &Instances<'a>) {
        let spec = self.spec();
        let in_spec = |name: &str| spec.containers.iter().chain(spec.init_containers.iter().flatten()).any(|c| c.name == name);
        for (name, instances) in by_name {
            if !in_spec(name) {
                for c in instances {
                    self.kill_and_remove(c, "it was removed from the manifest");
                }
                continue;
            }
            let mut kept_previous = false;
            for c in instances.iter().skip(1) {
                if c.container.state == ContainerState::Exited && !kept_previous {
                    kept_previous = true;
                } else if c.container.state == ContainerState::Exited {
                    self.plan.actions.push(Action::RemoveContainer { id: c.container.id.clone() });
                } else {
                    self.kill_and_remove(c, "a newer instance of it exists");
                }
            }
        }
    }

    fn hash_matches(&self, c: &ObservedContainer) -> bool {
        let wanted = self.pod.container_hashes.get(&c.container.metadata.name);
        wanted.is_some() && c.container.annotations.get(CONTAINER_HASH) == wanted
    }

    /// A running container: kept if its spec is unchanged, replaced otherwise. Returns whether
    /// it was kept.
    /// A container that failed its liveness or startup probe is killed instead; the restart
    /// policy and back-off decide on the next pass, once it has exited.
    fn keep_or_replace(&mut self, c: &ObservedContainer) -> bool {
        let name = c.container.metadata.name.clone();
        if let Some(unhealthy) = &c.unhealthy {
            self.plan.actions.push(Action::KillContainer {
                id: c.container.id.clone(),
                name,
                reason: unhealthy.reason.clone(),
                grace_seconds: unhealthy.grace_seconds,
            });
            return false;
        }
        if self.hash_matches(c) {
            return true;
        }
        self.plan.actions.push(Action::KillContainer {
            id: c.container.id.clone(),
            name: name.clone(),
            reason: "its spec changed".into(),
            grace_seconds: None,
        });
        self.start(&name);
        false
    }

    /// An exited container that the restart policy restarts: now, or after its back-off.
    fn restart_after_exit(&mut self, c: &ObservedContainer) {
        let name = &c.container.metadata.name;
        let finished = c.status.as_ref().and_then(|s| s.finished_at).unwrap_or(c.container.created_at);
        match self.backoff.waiting_until(name, finished, self.now) {
            Some(until) => {
                let delay = until.duration_since(finished).unwrap_or_default();
                self.plan.waiting.push(Waiting { name: name.clone(), until, delay });
            }
            None => {
                self.plan.backoff_next.push((name.clone(), finished));
                self.start(name);
            }
        }
    }

    fn kill_and_remove(&mut self, c: &ObservedContainer, reason: &str) {
        if c.container.state == ContainerState::Running {
            self.plan.actions.push(Action::KillContainer {
                id: c.container.id.clone(),
                name: c.container.metadata.name.clone(),
                reason: reason.into(),
                grace_seconds: None,
            });
        }
        self.plan.actions.push(Action::RemoveContainer { id: c.container.id.clone() });
    }

    /// Starts the next attempt of `name`: one more than any instance seen, so restart counts
    /// carry across sandboxes and names never collide.
    fn start(&mut self, name: &str) {
        let attempt = self
            .observed
            .containers
            .iter()
            .filter(|c| c.container.metadata.name == name)
            .map(|c| c.container.metadata.attempt + 1)
            .max()
            .unwrap_or(0);
        self.plan.actions.push(Action::StartContainer { name: name.to_owned(), attempt });
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use staticlet_model::{NodeContext, Origin, SourceKind};
    use staticlet_runtime::{ContainerMetadata, PodSandboxMetadata};

    use super::*;

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + secs)
    }

    fn pod(extra_spec: &str, containers: &str) -> StaticPod {
        let text = format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n{extra_spec}  containers:\n{containers}");
        let origin = Origin { kind: SourceKind::File, uri: "/m/p.yaml".into() };
        staticlet_model::load(text.as_bytes(), &origin, &NodeContext { node_name: "n".into() }).unwrap().pod
    }

    const ONE: &str = "  - name: app\n    image: i:1\n";

    fn sandbox(pod: &StaticPod, id: &str, attempt: u32, state: SandboxState) -> PodSandbox {
        PodSandbox {
            id: id.into(),
            metadata: PodSandboxMetadata { name: pod.name().into(), namespace: "default".into(), uid: pod.uid.clone(), attempt },
            state,
            created_at: t(attempt.into()),
            labels: BTreeMap::from([(SANDBOX_HASH.to_owned(), pod.sandbox_hash.clone())]),
            annotations: BTreeMap::new(),
        }
    }

    fn container(
        pod: &StaticPod,
        id: &str,
        name: &str,
        attempt: u32,
        state: ContainerState,
        exit: Option<(i32, u64)>,
    ) -> ObservedContainer {
        let container = Container {
            id: id.into(),
            pod_sandbox_id: "sb".into(),
            metadata: ContainerMetadata { name: name.into(), attempt },
            image: "i:1".into(),
            state,
            created_at: t(u64::from(attempt) * 100),
            labels: BTreeMap::new(),
            annotations: BTreeMap::from([(CONTAINER_HASH.to_owned(), pod.container_hashes.get(name).cloned().unwrap_or_default())]),
        };
        let status = exit.map(|(code, at)| ContainerStatus {
            container: container.clone(),
            started_at: Some(t(0)),
            finished_at: Some(t(at)),
            exit_code: code,
            reason: String::new(),
            message: String::new(),
        });
        ObservedContainer { container, status, unhealthy: None, starting: false }
    }

    fn start(name: &str, attempt: u32) -> Action {
        Action::StartContainer { name: name.into(), attempt }
    }

    #[test]
    fn a_new_pod_gets_a_sandbox_and_its_containers() {
        let pod = pod("", "  - name: a\n    image: i:1\n  - name: b\n    image: i:1\n");
        let plan = plan(Some(&pod), &ObservedPod::default(), &BackoffTable::default(), Requests::default(), t(0));
        assert_eq!(plan.actions, vec![Action::CreateSandbox { attempt: 0 }, start("a", 0), start("b", 0)]);
    }

    #[test]
    fn a_matching_pod_is_left_alone() {
        let pod = pod("", ONE);
        let observed = ObservedPod {
            sandboxes: vec![sandbox(&pod, "sb", 0, SandboxState::Ready)],
            containers: vec![container(&pod, "c0", "app", 0, ContainerState::Running, None)],
        };
        assert_eq!(plan(Some(&pod), &observed, &BackoffTable::default(), Requests::default(), t(5)), Plan::default());
    }

    #[test]
    fn a_changed_container_is_replaced_alone() {
        let old = pod("", "  - name: a\n    image: i:1\n  - name: b\n    image: i:1\n");
        let new = pod("", "  - name: a\n    image: i:1\n  - name: b\n    image: i:1\n    env:\n    - name: X\n      value: changed\n");
        let observed = ObservedPod {
            sandboxes: vec![sandbox(&old, "sb", 0, SandboxState::Ready)],
            containers: vec![
                container(&old, "ca", "a", 0, ContainerState::Running, None),
                container(&old, "cb", "b", 0, ContainerState::Running, None),
            ],
        };
        let plan = plan(Some(&new), &observed, &BackoffTable::default(), Requests::default(), t(5));
        assert_eq!(
            plan.actions,
            vec![
                Action::KillContainer { id: "cb".into(), name: "b".into(), reason: "its spec changed".into(), grace_seconds: None },
                start("b", 1)
            ]
        );
    }

    #[test]
    fn a_sandbox_change_recreates_the_pod() {
        let old = pod("", ONE);
        let new = pod("  hostNetwork: true\n", ONE);
        let observed = ObservedPod {
            sandboxes: vec![sandbox(&old, "sb", 0, SandboxState::Ready)],
            containers: vec![container(&old, "c0", "app", 0, ContainerState::Running, None)],
        };
        let plan = plan(Some(&new), &observed, &BackoffTable::default(), Requests::default(), t(5));
        assert!(matches!(&plan.actions[0], Action::KillPod { .. }));
        assert_eq!(plan.actions[1..], [Action::CreateSandbox { attempt: 1 }, start("app", 1)]);
    }

    #[test]
    fn a_dead_sandbox_is_replaced() {
        let pod = pod("", ONE);
        let observed = ObservedPod { sandboxes: vec![sandbox(&pod, "sb", 2, SandboxState::NotReady)], containers: vec![] };
        let plan = plan(Some(&pod), &observed, &BackoffTable::default(), Requests::default(), t(5));
        assert_eq!(
            plan.actions,
            vec![Action::KillPod { reason: "its sandbox is not running".into() }, Action::CreateSandbox { attempt: 3 }, start("app", 0)]
        );
    }

    #[test]
    fn crashes_restart_with_back_off() {
        let pod = pod("", ONE);
        let mut backoff = BackoffTable::default();
        let crashed = |attempt, at| ObservedPod {
            sandboxes: vec![sandbox(&pod, "sb", 0, SandboxState::Ready)],
            containers: vec![container(&pod, &format!("c{attempt}"), "app", attempt, ContainerState::Exited, Some((1, at)))],
        };
        // First crash: restart at once.
        let first = plan(Some(&pod), &crashed(0, 10), &backoff, Requests::default(), t(10));
        assert_eq!(first.actions, vec![start("app", 1)]);
        assert_eq!(first.backoff_next, vec![("app".to_owned(), t(10))]);
        backoff.next("app", t(10));
        // Second crash: wait 10 s.
        let second = plan(Some(&pod), &crashed(1, 12), &backoff, Requests::default(), t(12));
        assert!(second.actions.is_empty());
        assert_eq!(second.requeue_at(), Some(t(22)));
        let after = plan(Some(&pod), &crashed(1, 12), &backoff, Requests::default(), t(22));
        assert_eq!(after.actions, vec![start("app", 2)]);
    }

    #[test]
    fn restart_policies() {
        for (policy, code, restarts) in [("Always", 0, true), ("OnFailure", 0, false), ("OnFailure", 3, true), ("Never", 3, false)] {
            let pod = pod(&format!("  restartPolicy: {policy}\n"), ONE);
            let observed = ObservedPod {
                sandboxes: vec![sandbox(&pod, "sb", 0, SandboxState::Ready)],
                containers: vec![container(&pod, "c0", "app", 0, ContainerState::Exited, Some((code, 1)))],
            };
            let plan = plan(Some(&pod), &observed, &BackoffTable::default(), Requests::default(), t(5));
            assert_eq!(plan.actions == vec![start("app", 1)], restarts, "{policy} exit {code}");
        }
    }

    #[test]
    fn init_containers_run_in_order_before_apps() {
        let pod = pod("  initContainers:\n  - name: i1\n    image: i:1\n  - name: i2\n    image: i:1\n", ONE);
        let sb = || sandbox(&pod, "sb", 0, SandboxState::Ready);
        let fresh = plan(Some(&pod), &ObservedPod::default(), &BackoffTable::default(), Requests::default(), t(0));
        assert_eq!(fresh.actions, vec![Action::CreateSandbox { attempt: 0 }, start("i1", 0)]);
        let running = ObservedPod { sandboxes: vec![sb()], containers: vec![container(&pod, "x", "i1", 0, ContainerState::Running, None)] };
        assert!(plan(Some(&pod), &running, &BackoffTable::default(), Requests::default(), t(1)).actions.is_empty());
        let first_done =
            ObservedPod { sandboxes: vec![sb()], containers: vec![container(&pod, "x", "i1", 0, ContainerState::Exited, Some((0, 1)))] };
        assert_eq!(plan(Some(&pod), &first_done, &BackoffTable::default(), Requests::default(), t(2)).actions, vec![start("i2", 0)]);
        let both_done = ObservedPod {
            sandboxes: vec![sb()],
            containers: vec![
                container(&pod, "x", "i1", 0, ContainerState::Exited, Some((0, 1))),
                container(&pod, "y", "i2", 0, ContainerState::Exited, Some((0, 2))),
            ],
        };
        assert_eq!(plan(Some(&pod), &both_done, &BackoffTable::default(), Requests::default(), t(3)).actions, vec![start("app", 0)]);
    }

    #[test]
    fn a_failed_liveness_probe_kills_then_the_restart_policy_decides() {
        let pod = pod("", ONE);
        let mut running = container(&pod, "c0", "app", 0, ContainerState::Running, None);
        running.unhealthy = Some(Unhealthy { reason: "failed liveness probe".into(), grace_seconds: Some(5) });
        let observed = ObservedPod { sandboxes: vec![sandbox(&pod, "sb", 0, SandboxState::Ready)], containers: vec![running] };
        let plan = plan(Some(&pod), &observed, &BackoffTable::default(), Requests::default(), t(5));
        assert_eq!(
            plan.actions,
            vec![Action::KillContainer {
                id: "c0".into(),
                name: "app".into(),
                reason: "failed liveness probe".into(),
                grace_seconds: Some(5)
            }]
        );
        let killed = ObservedPod {
            sandboxes: vec![sandbox(&pod, "sb", 0, SandboxState::Ready)],
            containers: vec![container(&pod, "c0", "app", 0, ContainerState::Exited, Some((137, 6)))],
        };
        assert_eq!(plan_for(&pod, &killed).actions, vec![start("app", 1)]);
        let never = self::pod("  restartPolicy: Never\n", ONE);
        assert!(plan_for(&never, &killed).actions.is_empty());
    }

    fn plan_for(pod: &StaticPod, observed: &ObservedPod) -> Plan {
        plan(Some(pod), observed, &BackoffTable::default(), Requests::default(), t(7))
    }

    #[test]
    fn a_failing_init_container_is_retried_with_back_off_or_fails_the_pod() {
        let init = "  initContainers:\n  - name: i1\n    image: i:1\n";
        let failed = |pod: &StaticPod, attempt: u32| ObservedPod {
            sandboxes: vec![sandbox(pod, "sb", 0, SandboxState::Ready)],
            containers: vec![container(pod, "x", "i1", attempt, ContainerState::Exited, Some((1, 4)))],
        };
        let always = pod(init, ONE);
        let mut backoff = BackoffTable::default();
        assert_eq!(plan(Some(&always), &failed(&always, 0), &backoff, Requests::default(), t(5)).actions, vec![start("i1", 1)]);
        backoff.next("i1", t(4));
        let waiting = plan(Some(&always), &failed(&always, 1), &backoff, Requests::default(), t(5));
        assert!(waiting.actions.is_empty(), "the app never starts while init fails");
        assert_eq!(waiting.requeue_at(), Some(t(14)));
        let never = pod(&format!("  restartPolicy: Never\n{init}"), ONE);
        let plan = plan(Some(&never), &failed(&never, 0), &BackoffTable::default(), Requests::default(), t(5));
        assert!(plan.failed && plan.actions.is_empty());
    }

    #[test]
    fn a_sidecar_holds_back_what_follows_until_it_has_started() {
        let pod = pod("  initContainers:\n  - name: proxy\n    image: i:1\n    restartPolicy: Always\n", ONE);
        let mut proxy = container(&pod, "p", "proxy", 0, ContainerState::Running, None);
        proxy.starting = true;
        let observed = ObservedPod { sandboxes: vec![sandbox(&pod, "sb", 0, SandboxState::Ready)], containers: vec![proxy.clone()] };
        assert!(plan_for(&pod, &observed).actions.is_empty(), "the app waits for the sidecar's startup probe");
        proxy.starting = false;
        let observed = ObservedPod { sandboxes: vec![sandbox(&pod, "sb", 0, SandboxState::Ready)], containers: vec![proxy] };
        assert_eq!(plan_for(&pod, &observed).actions, vec![start("app", 0)]);
    }

    #[test]
    fn old_instances_are_collected_keeping_the_previous_one() {
        let pod = pod("", ONE);
        let observed = ObservedPod {
            sandboxes: vec![sandbox(&pod, "sb", 0, SandboxState::Ready)],
            containers: vec![
                container(&pod, "c0", "app", 0, ContainerState::Exited, Some((1, 1))),
                container(&pod, "c1", "app", 1, ContainerState::Exited, Some((1, 2))),
                container(&pod, "c2", "app", 2, ContainerState::Running, None),
            ],
        };
        let plan = plan(Some(&pod), &observed, &BackoffTable::default(), Requests::default(), t(5));
        assert_eq!(plan.actions, vec![Action::RemoveContainer { id: "c0".into() }]);
    }

    #[test]
    fn removed_containers_and_removed_pods_go() {
        let pod = pod("", ONE);
        let observed = ObservedPod {
            sandboxes: vec![sandbox(&pod, "sb", 0, SandboxState::Ready)],
            containers: vec![
                container(&pod, "c0", "app", 0, ContainerState::Running, None),
                container(&pod, "old", "gone", 0, ContainerState::Running, None),
            ],
        };
        let plan_kept = plan(Some(&pod), &observed, &BackoffTable::default(), Requests::default(), t(5));
        assert_eq!(
            plan_kept.actions,
            vec![
                Action::KillContainer {
                    id: "old".into(),
                    name: "gone".into(),
                    reason: "it was removed from the manifest".into(),
                    grace_seconds: None
                },
                Action::RemoveContainer { id: "old".into() },
            ]
        );
        let plan_none = plan(None, &observed, &BackoffTable::default(), Requests::default(), t(5));
        assert!(matches!(plan_none.actions[..], [Action::KillPod { .. }]));
        assert!(plan(None, &ObservedPod::default(), &BackoffTable::default(), Requests::default(), t(5)).gone);
    }

    #[test]
    fn a_requested_restart_stops_everything_and_starts_afresh() {
        let pod = pod("", ONE);
        let restart = Requests { restart: true };
        let running = ObservedPod {
            sandboxes: vec![sandbox(&pod, "sb", 0, SandboxState::Ready)],
            containers: vec![container(&pod, "c0", "app", 0, ContainerState::Running, None)],
        };
        let plan_running = plan(Some(&pod), &running, &BackoffTable::default(), restart, t(5));
        assert_eq!(plan_running.actions, vec![Action::KillPod { reason: "a restart was requested".into() }]);
        assert!(plan_running.afresh);
        let plan_nothing = plan(Some(&pod), &ObservedPod::default(), &BackoffTable::default(), restart, t(5));
        assert!(plan_nothing.actions.is_empty() && plan_nothing.afresh, "{plan_nothing:?}");
        // A pod whose manifest is gone is torn down, not restarted.
        assert!(!plan(None, &running, &BackoffTable::default(), restart, t(5)).afresh);
    }

    #[test]
    fn a_container_whose_post_start_hook_failed_is_stopped_then_restarted_by_its_policy() {
        let pod = pod("", ONE);
        let mut observed = ObservedPod {
            sandboxes: vec![sandbox(&pod, "sb", 0, SandboxState::Ready)],
            containers: vec![container(&pod, "c0", "app", 0, ContainerState::Running, None)],
        };
        observed.containers[0].unhealthy = Some(Unhealthy { reason: "its postStart hook failed".into(), grace_seconds: None });
        assert_eq!(
            plan_for(&pod, &observed).actions,
            vec![Action::KillContainer {
                id: "c0".into(),
                name: "app".into(),
                reason: "its postStart hook failed".into(),
                grace_seconds: None
            }]
        );
    }

    #[test]
    fn images_are_pulled_as_their_policy_says_and_held_back_after_a_failed_pull() {
        let none = BackoffTable::default();
        assert_eq!(image_step("i:1", "IfNotPresent", true, &none, None, t(0)), ImageStep::Use);
        assert_eq!(image_step("i:1", "IfNotPresent", false, &none, None, t(0)), ImageStep::Pull);
        assert_eq!(image_step("i:1", "Always", true, &none, None, t(0)), ImageStep::Pull);
        assert_eq!(image_step("i:1", "Never", true, &none, None, t(0)), ImageStep::Use);
        assert_eq!(
            image_step("i:1", "Never", false, &none, None, t(0)),
            ImageStep::Refuse {
                reason: "ErrImageNeverPull",
                message: "Container image \"i:1\" is not present with pull policy of Never".into(),
                retry_at: None
            }
        );
        let mut failed = BackoffTable::default();
        failed.next("i:1", t(0));
        assert_eq!(
            image_step("i:1", "Always", true, &failed, None, t(5)),
            ImageStep::Refuse { reason: IMAGE_PULL_BACK_OFF, message: "Back-off pulling image \"i:1\"".into(), retry_at: Some(t(10)) }
        );
        let ImageStep::Refuse { message, .. } = image_step("i:1", "Always", true, &failed, Some("401 Unauthorized"), t(5)) else {
            panic!("refused")
        };
        assert_eq!(message, "Back-off pulling image \"i:1\": ErrImagePull: 401 Unauthorized", "the registry's words stay");
        assert_eq!(image_step("i:1", "IfNotPresent", true, &failed, None, t(5)), ImageStep::Use, "a present image needs no pull");
        assert_eq!(image_step("i:1", "IfNotPresent", false, &failed, None, t(10)), ImageStep::Pull, "the back-off is over");
        assert_eq!(image_step("other:1", "Always", false, &failed, None, t(5)), ImageStep::Pull, "back-off is per image");
    }
}
