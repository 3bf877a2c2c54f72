//! `staticlet plugins`: every plugin the agent loaded, with its kind, WIT version, digest,
//! health and call counts; `staticlet plugins push` and `pull` move plugins through registries.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};

use super::client::{Client, JSON, SocketArgs, block_on};
use super::get::render;
use crate::config::{Config, RunFlags};

/// Arguments of `staticlet plugins`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct PluginsArgs {
    #[command(subcommand)]
    command: Option<PluginsCommand>,

    /// Output format: `wide` adds where each plugin's code came from (its file, or its image
    /// pinned to the digest in use).
    #[arg(short, long, value_enum)]
    output: Option<Output>,

    #[command(flatten)]
    socket: SocketArgs,
}

/// `-o`.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Output {
    Wide,
}

/// What `staticlet plugins` does besides listing.
#[derive(Debug, Subcommand)]
enum PluginsCommand {
    /// Push a built component to a registry as an OCI artifact (`application/wasm`, the CNCF
    /// layout), with the registry credentials of the docker config files; prints REF@sha256:...
    /// to pin in the agent config.
    Push(PushArgs),
    /// Pull a plugin into the agent's store, checking its digest (and signature, with --key),
    /// without running the agent; prints REF@sha256:.... A tag is resolved again: an agent
    /// using that tag loads the new digest within a second.
    Pull(PullArgs),
}

/// Arguments of `staticlet plugins push`.
#[derive(Debug, Args)]
struct PushArgs {
    /// The component (`.wasm`).
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// Where to push it: `registry/repository:tag`.
    #[arg(value_name = "REF")]
    reference: String,
    #[command(flatten)]
    state: StateArgs,
}

/// Arguments of `staticlet plugins pull`.
#[derive(Debug, Args)]
struct PullArgs {
    /// What to pull: `registry/repository:tag`, `...@sha256:...` or both.
    #[arg(value_name = "REF")]
    reference: String,
    /// A cosign public key: the artifact must carry a signature it verifies.
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    #[command(flatten)]
    state: StateArgs,
}

/// The agent config and state directory whose credentials and store a push or pull uses.
#[derive(Debug, Args)]
struct StateArgs {
    /// Agent config file: its rootDir and credential providers.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The agent's state directory; its `config.json` holds registry logins, as the kubelet's
    /// does, and pulled plugins are stored under it. [default: the config's rootDir]
    #[arg(long, value_name = "DIR")]
    root_dir: Option<PathBuf>,
}

impl StateArgs {
    fn config(&self) -> anyhow::Result<Config> {
        let flags = RunFlags { config: self.config.clone(), root_dir: self.root_dir.clone(), ..RunFlags::default() };
        Ok(Config::resolve(&flags)?)
    }
}

pub fn run(args: PluginsArgs) -> anyhow::Result<()> {
    match args.command {
        Some(PluginsCommand::Push(push)) => self::push(push),
        Some(PluginsCommand::Pull(pull)) => self::pull(pull),
        None => list(&args.socket, args.output),
    }
}

fn push(args: PushArgs) -> anyhow::Result<()> {
    let config = args.state.config()?;
    let reference: staticlet_oci::Reference =
        args.reference.parse().with_context(|| format!("{:?} is not an image reference", args.reference))?;
    let wasm = std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let created = time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339)?;
    let registry = crate::daemon::plugin_registry(&config);
    let digest =
        tokio()?.block_on(registry.push(&reference, wasm, &created)).map_err(|e| anyhow::anyhow!("{}: {e}", args.file.display()))?;
    println!("{}@{digest}", reference.whole().split('@').next().unwrap_or_default());
    Ok(())
}

fn pull(args: PullArgs) -> anyhow::Result<()> {
    let config = args.state.config()?;
    let image = staticlet_oci::Image::parse(&args.reference, args.key.clone()).map_err(anyhow::Error::msg)?;
    let artifacts = crate::daemon::plugin_artifacts(&config, false);
    let artifact = tokio()?.block_on(artifacts.pull(&image)).map_err(anyhow::Error::msg)?;
    eprintln!("stored in {}", artifacts.store().dir().display());
    println!("{}", artifact.reference);
    Ok(())
}

fn tokio() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the async runtime")
}

fn list(socket: &SocketArgs, output: Option<Output>) -> anyhow::Result<()> {
    let list = block_on(Client::new(socket).get_json("/staticlet/v1/plugins", JSON))?;
    let text = |v: &Value| v.as_str().map_or_else(|| "<none>".to_owned(), str::to_owned);
    let rows: Vec<Value> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            // An image plugin shows its artifact's digest, the one a config pins; a file, its
            // component's.
            let artifact = p["image"].as_str().and_then(|image| image.rsplit_once("@sha256:")).map(|(_, hex)| hex);
            let digest =
                artifact.or(p["digest"].as_str()).map_or_else(|| "<none>".to_owned(), |d| format!("sha256:{}", &d[..d.len().min(12)]));
            let code = p["image"].as_str().or(p["code"].as_str()).unwrap_or("<none>");
            json!({"cells": [text(&p["name"]), text(&p["kind"]), text(&p["witVersion"]), digest, text(&p["health"]),
                p["calls"].as_u64().unwrap_or(0).to_string(), p["failedCalls"].as_u64().unwrap_or(0).to_string(),
                p["message"].as_str().unwrap_or_default(), code]})
        })
        .collect();
    if rows.is_empty() {
        eprintln!("No plugins loaded");
        return Ok(());
    }
    let columns: Vec<Value> =
        [("Name", 0), ("Kind", 0), ("WIT", 0), ("Digest", 0), ("Health", 0), ("Calls", 0), ("Failed", 0), ("Message", 0), ("Code", 1)]
            .iter()
            .map(|(name, priority)| json!({"name": name, "priority": priority}))
            .collect();
    print!("{}", render(&json!({"columnDefinitions": columns, "rows": rows}), output.is_some(), false));
    Ok(())
}
