//! Validators that are WebAssembly plugins: the built-in static pod policy and those the agent
//! config lists, loaded into one engine and reloaded when their `.wasm` changes.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use staticlet_plugin::{Plugin, PluginEngine, PluginError, PodContext, Verdict};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{Chain, Validator};
use crate::config::plugins::ValidatorConfig;
use crate::metrics::Metrics;

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

    /// Checks the plugin files every [`RELOAD_PERIOD`](staticlet_plugin::reload::RELOAD_PERIOD)
    /// until `shutdown`, reloading those that changed; each reload counts up the generation, so
    /// every pod is judged again.
    pub async fn watch(self: Arc<Self>, shutdown: CancellationToken) {
        let consequence = "judging every pod again";
        staticlet_plugin::reload::watch(self.plugins.clone(), consequence, self.generation.clone(), shutdown).await;
    }
}
