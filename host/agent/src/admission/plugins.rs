//! Validators that are WebAssembly plugins: the built-in static pod policy and those the agent
//! config lists, loaded into one engine and reloaded when their `.wasm` changes.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use staticlet_plugin::artifacts;
use staticlet_plugin::{Plugin, PluginEngine, PluginError, PluginSpec, PodContext, Verdict};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{Chain, FailurePolicy, Validator};
use crate::metrics::Metrics;
use crate::reload::{RELOAD_PERIOD, reload};

/// The name of the built-in validator.
pub const STATIC_POD_POLICY: &str = artifacts::STATIC_POD_POLICY_NAME;

/// A validator plugin as the agent config declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatorConfig {
    /// The plugin.
    pub spec: PluginSpec,
    /// What a failure to judge means for the pod.
    pub failure_policy: FailurePolicy,
}

/// The spec of the built-in static pod policy.
pub fn static_pod_policy() -> ValidatorConfig {
    ValidatorConfig { spec: artifacts::static_pod_policy(), failure_policy: FailurePolicy::Fail }
}

/// A validator plugin whose calls are timed and counted.
struct Measured {
    plugin: Arc<Plugin>,
    metrics: Metrics,
}

#[async_trait]
impl Validator for Measured {
    fn name(&self) -> &str {
        &self.plugin.spec().name
    }

    async fn validate(&self, ctx: &PodContext, pod_json: &str) -> Result<Verdict, PluginError> {
        let started = Instant::now();
        let result = self.plugin.validate(ctx, pod_json).await;
        self.metrics.plugin_called(self.name(), "validate", started.elapsed(), result.is_err());
        result
    }
}

/// The loaded validator plugins and the chain built from them.
pub struct Validators {
    plugins: Vec<Arc<Plugin>>,
    chain: Arc<Chain>,
    generation: watch::Sender<u64>,
}

impl Validators {
    /// Loads every validator, in order, their calls measured into `metrics`, behind the check
    /// that a pod's runtime class is one of `runtime_classes`. A validator that fails to load is
    /// kept: its failure policy applies to every pod until its file is fixed.
    pub async fn load(engine: &PluginEngine, configs: &[ValidatorConfig], runtime_classes: Vec<String>, metrics: &Metrics) -> Validators {
        let mut chain = Chain::default();
        chain.check_runtime_classes(runtime_classes);
        let mut plugins = Vec::new();
        for config in configs {
            let plugin = Arc::new(Plugin::load(engine, config.spec.clone()).await);
            chain.push(Arc::new(Measured { plugin: plugin.clone(), metrics: metrics.clone() }), config.failure_policy);
            plugins.push(plugin);
        }
        Validators { plugins, chain: Arc::new(chain), generation: watch::Sender::new(0) }
    }

    /// The chain, in config order.
    pub fn chain(&self) -> Arc<Chain> {
        self.chain.clone()
    }

    /// The plugins.
    pub fn plugins(&self) -> &[Arc<Plugin>] {
        &self.plugins
    }

    /// Bumped whenever a validator's code changes: every pod must be judged again.
    pub fn generation(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// Checks the plugin files every [`RELOAD_PERIOD`] until `shutdown`, reloading those that
    /// changed.
    pub async fn watch(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(RELOAD_PERIOD) => {}
            }
            let mut changed = false;
            for plugin in &self.plugins {
                changed |= reload(plugin, "judging every pod again").await;
            }
            if changed {
                self.generation.send_modify(|g| *g += 1);
            }
        }
    }
}
