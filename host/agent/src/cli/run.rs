//! `staticlet run`.

use anyhow::Context as _;
use clap::Args;
use staticlet_plugin::PluginEngine;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::api::credential::Credential;
use crate::api::kubelet::tls;
use crate::config::{Config, LogFormat, RunFlags};
use crate::mirror::Mirror;
use crate::runtimes::Runtimes;
use crate::state::{Layout, write_atomic};

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

    /// The log filter `-v`/`--v` asks for, in `tracing`'s syntax.
    pub fn log_filter(&self) -> &'static str {
        verbosity_filter(self.flags.verbosity.unwrap_or(0))
    }
}

/// The kubelet's verbosity levels as a `tracing` filter: the agent's own crates (all named
/// `staticlet*`) get more detail first, the libraries' debug lines only from 6, where the
/// kubelet starts logging its API requests.
fn verbosity_filter(level: u8) -> &'static str {
    match level {
        0..=2 => "info",
        3..=4 => "info,staticlet=debug",
        5 => "info,staticlet=trace",
        _ => "debug,staticlet=trace",
    }
}

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let config = Config::resolve(&args.flags)?;
    for key in &config.ignored_keys {
        warn!(file = ?args.flags.config, key, "config key is not used by staticlet; ignored");
    }
    std::fs::create_dir_all(&config.root_dir).with_context(|| format!("creating --root-dir {}", config.root_dir.display()))?;
    let layout = Layout::new(&config.root_dir);
    let credential = local_credential(&config, &layout)?;
    let artifacts = crate::daemon::plugin_artifacts(&config, false);
    let engine = PluginEngine::with_artifacts(&config.node_name, Some(layout.plugin_cache()), Some(artifacts))
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
        crate::daemon::run(&config, Some(args.flags.clone()), runtimes, adapters, engine, mirror, credential, shutdown).await;
        anyhow::Ok(())
    })
}

/// The local API's token, and the kubeconfig that carries it to kubectl when the agent serves
/// the kubelet port: kubectl sends a token over TLS only, so the kubeconfig points there, with
/// the self-signed certificate as its CA. A kubeconfig of an earlier run without that port is
/// removed rather than left pointing at nothing.
fn local_credential(config: &Config, layout: &Layout) -> anyhow::Result<Credential> {
    let token = layout.api_token();
    let credential = Credential::load_or_create(&token).with_context(|| format!("the API token {}", token.display()))?;
    let kubeconfig = layout.kubeconfig();
    match &config.kubelet_server {
        Some(server) => {
            let certificate_authority = match &server.tls_pair {
                Some(_) => None,
                None => {
                    let pair = layout.serving_pair();
                    crate::state::tls::ensure_self_signed(&pair, &tls::serving_names(&config.node_name, &config.node_ip))?;
                    Some(std::fs::read(&pair.0).with_context(|| format!("reading {}", pair.0.display()))?)
                }
            };
            let address = server.address;
            let ip = if address.ip().is_unspecified() { std::net::Ipv4Addr::LOCALHOST.into() } else { address.ip() };
            let url = format!("https://{}", std::net::SocketAddr::new(ip, address.port()));
            write_atomic(&kubeconfig, credential.kubeconfig(&url, certificate_authority.as_deref(), &config.node_name).as_bytes())
                .with_context(|| format!("writing {}", kubeconfig.display()))?;
        }
        None => match std::fs::remove_file(&kubeconfig) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("removing the stale {}", kubeconfig.display()));
            }
            _ => {}
        },
    }
    Ok(credential)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::{Cli, Command};

    fn filter(args: &[&str]) -> &'static str {
        let cli = Cli::try_parse_from(["staticlet", "run"].iter().chain(args)).unwrap();
        let Command::Run(run) = cli.command else { unreachable!() };
        run.log_filter()
    }

    #[test]
    fn the_kubelets_verbosity_flags_map_onto_the_log_filter() {
        assert_eq!(filter(&[]), "info");
        assert_eq!(filter(&["--v=2"]), "info");
        assert_eq!(filter(&["-v=4"]), "info,staticlet=debug");
        assert_eq!(filter(&["-v", "5"]), "info,staticlet=trace");
        assert_eq!(filter(&["--v", "8"]), "debug,staticlet=trace");
    }
}
