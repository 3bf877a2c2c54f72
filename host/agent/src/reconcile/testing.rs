//! What the reconcile stage's unit tests share: a [`Context`] over the in-memory runtime, with a
//! clock that follows tokio's so tests run on paused time, and pods loaded from YAML as the
//! agent loads them.

use std::sync::Arc;

use staticlet_credentials::Credentials;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ContainerStatus, PodStatus};
use staticlet_model::{NodeContext, Origin, SourceKind, StaticPod};
use staticlet_runtime::{Clock, FakeRuntime, Runtime};

use super::Context;
use super::container_action::Runner;
use super::podconfig::{self, Addresses, Owner};
use crate::events::Recorder;
use crate::metrics::Metrics;
use crate::runtimes::Runtimes;
use crate::state::Layout;
use crate::status::StatusStore;

/// The handler the fake runtime is registered under.
pub const HANDLER: &str = "fake";
/// The node the tests' pods run on.
pub const NODE: &str = "node-1";

/// A reconcile context over a fake runtime, with its root directory.
pub struct Harness {
    /// The runtime, to inspect and to inject faults into.
    pub fake: Arc<FakeRuntime>,
    /// What workers and the controller share.
    pub ctx: Arc<Context>,
    root: tempfile::TempDir,
}

impl Harness {
    /// A context over a fake runtime that has `images`. Must run on a tokio runtime (paused or
    /// not): its clock follows tokio's.
    pub fn new(images: &[&str]) -> Harness {
        let clock = Clock::following_tokio();
        let fake = Arc::new(FakeRuntime::with_images(images.iter().copied()).with_clock(clock));
        let root = tempfile::tempdir().unwrap();
        let ctx = Arc::new(Context {
            runtimes: Runtimes::single(HANDLER, fake.clone()),
            node: NODE.into(),
            layout: Layout::new(root.path()),
            host_ip: "192.0.2.10".into(),
            status: StatusStore::default(),
            runner: Runner::default(),
            events: Recorder::new(NODE),
            metrics: Metrics::new(),
            clock,
            credentials: Arc::new(Credentials::new(root.path(), Vec::new())),
            sandbox_images: Default::default(),
        });
        Harness { fake, ctx, root }
    }

    /// Creates and starts `pod`'s sandbox and first container on the fake runtime, as its
    /// worker would have (the agent's labels, hashes and annotations); returns the container's
    /// ID.
    pub async fn start_objects(&self, pod: &StaticPod) -> String {
        let owner = Owner { node: NODE, handler: HANDLER };
        let sandbox_config = podconfig::sandbox_config(pod, 0, owner);
        let sandbox = self.fake.run_pod_sandbox(&sandbox_config).await.unwrap();
        let spec = &pod.pod.spec.as_ref().unwrap().containers[0];
        let addresses = Addresses { pod_ip: Some("10.88.0.2"), host_ip: &self.ctx.host_ip };
        let config = podconfig::container_config(pod, spec, 0, owner, &self.ctx.layout, addresses).unwrap();
        let id = self.fake.create_container(&sandbox, &config, &sandbox_config).await.unwrap();
        self.fake.start_container(&id).await.unwrap();
        id
    }

    /// The status published for `pod`, if any.
    pub fn status(&self, pod: &StaticPod) -> Option<PodStatus> {
        self.ctx.status.snapshot().by_uid.get(&pod.uid).map(|stored| stored.view.status.clone())
    }

    /// The status of `pod`'s container `name`.
    pub fn container_status(&self, pod: &StaticPod, name: &str) -> Option<ContainerStatus> {
        let status = self.status(pod)?;
        status.init_container_statuses.into_iter().flatten().chain(status.container_statuses.into_iter().flatten()).find(|c| c.name == name)
    }

    /// The agent's `--root-dir`, where the node's docker config file is looked for first.
    pub fn root(&self) -> &std::path::Path {
        self.root.path()
    }

    /// The reason `pod`'s container `name` is waiting for, if it is.
    pub fn waiting_reason(&self, pod: &StaticPod, name: &str) -> Option<String> {
        self.container_status(pod, name)?.state?.waiting?.reason
    }

    /// Every event recorded, as `(reason, message)`, oldest first.
    pub fn events(&self) -> Vec<(String, String)> {
        let events = self.ctx.events.events(None);
        events.into_iter().map(|e| (e.reason.unwrap_or_default(), e.message.unwrap_or_default())).collect()
    }

    /// Whether an event with `reason` whose message contains `text` was recorded.
    pub fn has_event(&self, reason: &str, text: &str) -> bool {
        self.events().iter().any(|(r, m)| r == reason && m.contains(text))
    }
}

/// A pod as the desired stage hands it over, from a manifest's YAML.
pub fn pod(yaml: &str) -> Arc<StaticPod> {
    let origin = Origin { kind: SourceKind::File, uri: "/etc/kubernetes/manifests/test.yaml".into() };
    Arc::new(staticlet_model::load(yaml.as_bytes(), &origin, &NodeContext { node_name: NODE.into() }).unwrap().pod)
}

/// The image the tests' pods run, present on the fake runtime when a test says so.
pub const IMAGE: &str = "registry.example/app:1";

/// Pod `name` with one container, `app`, running [`IMAGE`], with `extra` fields (indented YAML)
/// for that container.
pub fn app_pod(name: &str, extra: &str) -> Arc<StaticPod> {
    pod(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  containers:
  - name: app
    image: {IMAGE}
{extra}"#
    ))
}

/// Lets every task that can run do so, then moves tokio's (paused) clock on by `by`.
pub async fn advance(by: Duration) {
    tokio::time::sleep(by).await;
}

/// Sleeps until `secs` seconds after `start` on tokio's (paused) clock.
pub async fn at(start: tokio::time::Instant, secs: f64) {
    tokio::time::sleep_until(start + Duration::from_secs_f64(secs)).await;
}
