//! Prometheus metrics, served on `/metrics` in the Prometheus text format, or OpenMetrics
//! when a scraper asks for it ([`exposition`]).
//!
//! Counters and histograms are updated where things happen; the pod gauges (pods by phase,
//! container restarts) are computed from the status store at scrape time, so they can never
//! drift from what the API shows.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use futures::stream::BoxStream;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use staticlet_runtime::{
    Container, ContainerConfig, ContainerStatus, Duplex, ExecResult, Image, LabelFilter, LogOptions, PodSandbox, PodSandboxConfig,
    PodSandboxStatus, PullProgressSender, RegistryAuth, Runtime, RuntimeError, RuntimeEvent, RuntimeVersion, StreamOptions, StreamSession,
};

use crate::status::StatusSnapshot;

pub mod exposition;

pub use exposition::Format;

/// A pod phase.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    phase: String,
}

/// One container of one pod.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ContainerLabels {
    namespace: String,
    pod: String,
    container: String,
}

/// A validator.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ValidatorLabels {
    validator: String,
}

/// A runtime call.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuntimeCallLabels {
    runtime: String,
    call: String,
}

/// A call into a plugin.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginCallLabels {
    plugin: String,
    call: String,
}

/// A manifest source.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    source: String,
}

fn latency_histogram() -> Histogram {
    // 100 µs to ~6.5 s: a plugin call at the fast end, an image pull at the slow one.
    Histogram::new(exponential_buckets(0.0001, 2.0, 17))
}

/// The kubelet's buckets for `kubelet_image_pull_duration_seconds`: a second to an hour, since
/// a large image over a slow link takes many minutes.
const IMAGE_PULL_BUCKETS: [f64; 18] =
    [1.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 180.0, 240.0, 300.0, 360.0, 480.0, 600.0, 900.0, 1200.0, 1800.0, 2700.0, 3600.0];

fn image_pull_histogram() -> Histogram {
    Histogram::new(IMAGE_PULL_BUCKETS)
}

/// A pull's runtime and outcome.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PullLabels {
    runtime: String,
    /// `success` or `failure`.
    result: &'static str,
}

/// The agent's metrics. Cloning shares them.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    pods: Family<PhaseLabels, Gauge>,
    container_restarts: Family<ContainerLabels, Gauge>,
    admission_rejections: Family<ValidatorLabels, Counter>,
    pod_sync_duration: Histogram,
    runtime_call_duration: Family<RuntimeCallLabels, Histogram, fn() -> Histogram>,
    runtime_call_errors: Family<RuntimeCallLabels, Counter>,
    image_pull_duration: Family<PullLabels, Histogram, fn() -> Histogram>,
    plugin_call_duration: Family<PluginCallLabels, Histogram, fn() -> Histogram>,
    plugin_call_failures: Family<PluginCallLabels, Counter>,
    source_poll_errors: Family<SourceLabels, Counter>,
    source_last_success: Family<SourceLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Every metric, registered under the `staticlet_` prefix.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("staticlet");
        let metrics = Metrics {
            registry: Arc::default(),
            pods: Family::default(),
            container_restarts: Family::default(),
            admission_rejections: Family::default(),
            pod_sync_duration: latency_histogram(),
            runtime_call_duration: Family::new_with_constructor(latency_histogram),
            runtime_call_errors: Family::default(),
            image_pull_duration: Family::new_with_constructor(image_pull_histogram),
            plugin_call_duration: Family::new_with_constructor(latency_histogram),
            plugin_call_failures: Family::default(),
            source_poll_errors: Family::default(),
            source_last_success: Family::default(),
        };
        registry.register("pods", "Pods by phase, rejected pods included (as Failed)", metrics.pods.clone());
        registry.register("container_restarts", "Restart count of each container", metrics.container_restarts.clone());
        registry.register(
            "admission_rejections",
            "Pod versions rejected, by the validator that rejected them",
            metrics.admission_rejections.clone(),
        );
        registry.register_with_unit(
            "pod_sync_duration",
            "Time one pod worker takes to observe, plan and act",
            prometheus_client::registry::Unit::Seconds,
            metrics.pod_sync_duration.clone(),
        );
        registry.register_with_unit(
            "runtime_call_duration",
            "Container runtime call latency",
            prometheus_client::registry::Unit::Seconds,
            metrics.runtime_call_duration.clone(),
        );
        registry.register("runtime_call_errors", "Container runtime calls that failed", metrics.runtime_call_errors.clone());
        registry.register_with_unit(
            "image_pull_duration",
            "Image pull duration, by runtime and result (one per pull attempt: each candidate credential is one)",
            prometheus_client::registry::Unit::Seconds,
            metrics.image_pull_duration.clone(),
        );
        registry.register_with_unit(
            "plugin_call_duration",
            "Plugin call latency",
            prometheus_client::registry::Unit::Seconds,
            metrics.plugin_call_duration.clone(),
        );
        registry.register(
            "plugin_call_failures",
            "Plugin calls that failed (the plugin's error, a trap, a deadline, the memory cap)",
            metrics.plugin_call_failures.clone(),
        );
        registry.register("source_poll_errors", "Failed polls or listings of a manifest source", metrics.source_poll_errors.clone());
        registry.register_with_unit(
            "source_last_success_timestamp",
            "When a manifest source was last polled or listed successfully, Unix time",
            prometheus_client::registry::Unit::Seconds,
            metrics.source_last_success.clone(),
        );
        Metrics { registry: Arc::new(registry), ..metrics }
    }

    /// The metrics in `format`, the pod gauges computed from `pods`.
    pub fn encode(&self, pods: &StatusSnapshot, format: Format) -> String {
        self.pods.clear();
        self.container_restarts.clear();
        for phase in ["Pending", "Running", "Succeeded", "Failed", "Unknown"] {
            self.pods.get_or_create(&PhaseLabels { phase: phase.into() }).set(0);
        }
        for view in pods.by_uid.values().map(|s| &s.view) {
            let phase = view.status.phase.clone().unwrap_or_else(|| "Pending".into());
            self.pods.get_or_create(&PhaseLabels { phase }).inc();
            let statuses = view.status.init_container_statuses.iter().chain(&view.status.container_statuses).flatten();
            for status in statuses {
                let labels = ContainerLabels {
                    namespace: view.pod.namespace().to_owned(),
                    pod: view.pod.name().to_owned(),
                    container: status.name.clone(),
                };
                self.container_restarts.get_or_create(&labels).set(i64::from(status.restart_count));
            }
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        match format {
            Format::OpenMetrics => text,
            Format::Prometheus => exposition::to_prometheus_text(&text),
        }
    }

    /// Counts a pod version a validator rejected.
    pub fn rejected_by(&self, validator: &str) {
        self.admission_rejections.get_or_create(&ValidatorLabels { validator: validator.to_owned() }).inc();
    }

    /// Records one image pull attempt.
    pub fn image_pulled(&self, runtime: &str, took: Duration, failed: bool) {
        let labels = PullLabels { runtime: runtime.to_owned(), result: if failed { "failure" } else { "success" } };
        self.image_pull_duration.get_or_create(&labels).observe(took.as_secs_f64());
    }

    /// Records how long one pod sync took.
    pub fn pod_synced(&self, took: Duration) {
        self.pod_sync_duration.observe(took.as_secs_f64());
    }

    /// Records one plugin call and whether it failed.
    pub fn plugin_called(&self, plugin: &str, call: &str, took: Duration, failed: bool) {
        let labels = PluginCallLabels { plugin: plugin.to_owned(), call: call.to_owned() };
        self.plugin_call_duration.get_or_create(&labels).observe(took.as_secs_f64());
        // Created on the first call, failed or not, so a scraper sees the zero before the first
        // failure rather than a series that appears from nowhere.
        let failures = self.plugin_call_failures.get_or_create(&labels);
        if failed {
            failures.inc();
        }
    }

    /// The health handle of one manifest source (`file`, `http`, `plugin:<name>`).
    pub fn source(&self, source: &str) -> SourceHealth {
        let labels = SourceLabels { source: source.to_owned() };
        // The zero shows before the first error, as for plugin and runtime calls.
        drop(self.source_poll_errors.get_or_create(&labels));
        SourceHealth { metrics: self.clone(), labels }
    }

    fn runtime_call(&self, runtime: &str, call: &str, took: Duration, failed: bool) {
        let labels = RuntimeCallLabels { runtime: runtime.to_owned(), call: call.to_owned() };
        self.runtime_call_duration.get_or_create(&labels).observe(took.as_secs_f64());
        let errors = self.runtime_call_errors.get_or_create(&labels);
        if failed {
            errors.inc();
        }
    }
}

/// What a manifest source reports of its polls.
#[derive(Debug, Clone)]
pub struct SourceHealth {
    metrics: Metrics,
    labels: SourceLabels,
}

impl SourceHealth {
    /// A poll or listing succeeded.
    pub fn succeeded(&self) {
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        self.metrics.source_last_success.get_or_create(&self.labels).set(now.as_secs_f64());
    }

    /// A poll or listing failed.
    pub fn failed(&self) {
        self.metrics.source_poll_errors.get_or_create(&self.labels).inc();
    }
}

/// A runtime whose every call is timed and counted: the agent runs on this, whatever the
/// runtime underneath.
pub struct Instrumented {
    inner: Arc<dyn Runtime>,
    metrics: Metrics,
}

impl Instrumented {
    /// `inner`, measured into `metrics`.
    pub fn new(inner: Arc<dyn Runtime>, metrics: Metrics) -> Instrumented {
        Instrumented { inner, metrics }
    }

    /// Runs one call of the runtime's, timing it into the metrics and logging it at debug
    /// level, with `subject` (what it was about: a list's label filter, an object's ID or
    /// name, an image). The debug line is how a pod's start is broken down by stage (the
    /// start-latency benchmarks read it): it is written when the call returns, with how long
    /// the call took, so each call's start and end are both known.
    async fn timed<T>(
        &self,
        call: &str,
        subject: &(dyn std::fmt::Display + Sync),
        future: impl Future<Output = Result<T, RuntimeError>>,
    ) -> Result<T, RuntimeError> {
        let started = Instant::now();
        let result = future.await;
        let took = started.elapsed();
        self.metrics.runtime_call(self.inner.name(), call, took, result.is_err());
        tracing::debug!(runtime = self.inner.name(), call, subject = %subject, took_us = took.as_micros() as u64, failed = result.is_err(), "runtime call");
        result
    }
}

/// A label filter as `key=value,...`, for the debug line of a list call; formatted only when
/// that line is written.
struct Labels<'a>(&'a LabelFilter);

impl std::fmt::Display for Labels<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (key, value)) in self.0.0.iter().enumerate() {
            write!(f, "{}{key}={value}", if i == 0 { "" } else { "," })?;
        }
        Ok(())
    }
}

/// A container as `<pod>/<container>`, for the debug line of its creation.
struct InPod<'a>(&'a str, &'a str);

impl std::fmt::Display for InPod<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.0, self.1)
    }
}

#[async_trait]
impl Runtime for Instrumented {
    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn version(&self) -> Result<RuntimeVersion, RuntimeError> {
        self.timed("Version", &"", self.inner.version()).await
    }

    async fn run_pod_sandbox(&self, config: &PodSandboxConfig) -> Result<String, RuntimeError> {
        self.timed("RunPodSandbox", &config.metadata.name, self.inner.run_pod_sandbox(config)).await
    }

    async fn stop_pod_sandbox(&self, sandbox_id: &str) -> Result<(), RuntimeError> {
        self.timed("StopPodSandbox", &sandbox_id, self.inner.stop_pod_sandbox(sandbox_id)).await
    }

    async fn remove_pod_sandbox(&self, sandbox_id: &str) -> Result<(), RuntimeError> {
        self.timed("RemovePodSandbox", &sandbox_id, self.inner.remove_pod_sandbox(sandbox_id)).await
    }

    async fn list_pod_sandboxes(&self, filter: &LabelFilter) -> Result<Vec<PodSandbox>, RuntimeError> {
        self.timed("ListPodSandbox", &Labels(filter), self.inner.list_pod_sandboxes(filter)).await
    }

    async fn pod_sandbox_status(&self, sandbox_id: &str) -> Result<PodSandboxStatus, RuntimeError> {
        self.timed("PodSandboxStatus", &sandbox_id, self.inner.pod_sandbox_status(sandbox_id)).await
    }

    async fn create_container(
        &self,
        sandbox_id: &str,
        config: &ContainerConfig,
        sandbox_config: &PodSandboxConfig,
    ) -> Result<String, RuntimeError> {
        self.timed(
            "CreateContainer",
            &InPod(&sandbox_config.metadata.name, &config.metadata.name),
            self.inner.create_container(sandbox_id, config, sandbox_config),
        )
        .await
    }

    async fn start_container(&self, container_id: &str) -> Result<(), RuntimeError> {
        self.timed("StartContainer", &container_id, self.inner.start_container(container_id)).await
    }

    async fn stop_container(&self, container_id: &str, grace: Duration) -> Result<(), RuntimeError> {
        self.timed("StopContainer", &container_id, self.inner.stop_container(container_id, grace)).await
    }

    async fn remove_container(&self, container_id: &str) -> Result<(), RuntimeError> {
        self.timed("RemoveContainer", &container_id, self.inner.remove_container(container_id)).await
    }

    async fn list_containers(&self, filter: &LabelFilter) -> Result<Vec<Container>, RuntimeError> {
        self.timed("ListContainers", &Labels(filter), self.inner.list_containers(filter)).await
    }

    async fn container_status(&self, container_id: &str) -> Result<ContainerStatus, RuntimeError> {
        self.timed("ContainerStatus", &container_id, self.inner.container_status(container_id)).await
    }

    async fn exec_sync(&self, container_id: &str, cmd: &[String], timeout: Duration) -> Result<ExecResult, RuntimeError> {
        self.timed("ExecSync", &container_id, self.inner.exec_sync(container_id, cmd, timeout)).await
    }

    async fn logs(
        &self,
        container_id: &str,
        options: &LogOptions,
    ) -> Result<BoxStream<'static, Result<Vec<u8>, RuntimeError>>, RuntimeError> {
        self.timed("Logs", &container_id, self.inner.logs(container_id, options)).await
    }

    async fn exec(&self, container_id: &str, cmd: &[String], options: StreamOptions) -> Result<StreamSession, RuntimeError> {
        self.timed("Exec", &container_id, self.inner.exec(container_id, cmd, options)).await
    }

    async fn attach(&self, container_id: &str, options: StreamOptions) -> Result<StreamSession, RuntimeError> {
        self.timed("Attach", &container_id, self.inner.attach(container_id, options)).await
    }

    async fn port_forward(&self, sandbox_id: &str, port: u16) -> Result<Box<dyn Duplex>, RuntimeError> {
        self.timed("PortForward", &sandbox_id, self.inner.port_forward(sandbox_id, port)).await
    }

    async fn image_status(&self, image: &str) -> Result<Option<Image>, RuntimeError> {
        self.timed("ImageStatus", &image, self.inner.image_status(image)).await
    }

    async fn pull_image(&self, image: &str, auth: Option<&RegistryAuth>, progress: &PullProgressSender) -> Result<String, RuntimeError> {
        let started = Instant::now();
        let result = self.timed("PullImage", &image, self.inner.pull_image(image, auth, progress)).await;
        self.metrics.image_pulled(self.inner.name(), started.elapsed(), result.is_err());
        result
    }

    /// Not timed: for most runtimes it is a setting, not a call (the CRI asks its `Status`
    /// once a minute at most).
    async fn sandbox_image(&self) -> Result<Option<String>, RuntimeError> {
        self.inner.sandbox_image().await
    }

    async fn events(&self, filter: &LabelFilter) -> Result<BoxStream<'static, Result<RuntimeEvent, RuntimeError>>, RuntimeError> {
        self.inner.events(filter).await
    }
}
