//! `staticlet run`.

use anyhow::Context as _;
use clap::Args;
use staticlet_plugin::PluginEngine;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::{Config, LogFormat, RunFlags};
use crate::mirror::Mirror;
use crate::runtimes::Runtimes;
use crate::state::Layout;

/// Arguments of `staticlet run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    flags: RunFlags,
}

impl RunArgs {
    /// How log lines are written.
    pub fn log_format(&self) -> LogFormat {
        self.flags.log_format.unwrap_or_default()
    }
}

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let config = Config::resolve(&args.flags)?;
    for key in &config.ignored_keys {
        warn!(file = ?args.flags.config, key, "config key is not used by staticlet; ignored");
    }
    std::fs::create_dir_all(&config.root_dir).with_context(|| format!("creating --root-dir {}", config.root_dir.display()))?;
    let engine = PluginEngine::new(&config.node_name, Some(Layout::new(&config.root_dir).plugin_cache()))
        .map_err(|e| anyhow::anyhow!("setting up the WebAssembly engine for plugins: {e:#}"))?;
    let tokio = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")?;
    tokio.block_on(async {
        let shutdown = CancellationToken::new();
        let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
        let on_signal = shutdown.clone();
        tokio::spawn(async move {
            let name = tokio::select! { _ = term.recv() => "SIGTERM", _ = int.recv() => "SIGINT" };
            info!(signal = name, "shutting down; pods keep running");
            on_signal.cancel();
        });
        let mirror = match &config.kubeconfig {
            Some(path) => Some(Mirror::connect(path, &config.node_name).await?),
            None => {
                if config.register_node {
                    warn!("--register-node does nothing without --kubeconfig");
                }
                None
            }
        };
        let (runtimes, adapters) = Runtimes::from_config(&config, &engine).await;
        crate::daemon::run(&config, runtimes, adapters, engine, mirror, shutdown).await;
        anyhow::Ok(())
    })
}
