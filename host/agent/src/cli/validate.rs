//! `staticlet validate FILE...`: the agent's decoding, defaulting, validation and admission
//! chain, offline, for a CI pipeline that checks manifests before they reach a node.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use staticlet_model::{Loaded, NodeContext, Origin, SourceKind};
use staticlet_plugin::PluginEngine;

use crate::admission::Chain;
use crate::admission::plugins::Validators;
use crate::config::{Config, RunFlags};
use crate::source::file::{manifest_files, read_capped};

/// Arguments of `staticlet validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Manifests to check; a directory stands for the manifests the agent would read in it.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,

    /// Agent config file: its `plugins` and `staticPodPolicy` make the same admission chain as
    /// on the node.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// The agent's state directory: plugins from registries are loaded from its store, as
    /// `staticlet plugins pull` left them (validate never pulls). [default: the config's rootDir]
    #[arg(long, value_name = "DIR")]
    root_dir: Option<PathBuf>,

    /// The node name pods are bound to. [default: the hostname]
    #[arg(long, value_name = "NAME")]
    hostname_override: Option<String>,

    /// Reject manifests that draw any warning: unknown fields, keys written twice, documents
    /// after the first, and the API server's warnings. The agent itself only warns, as the
    /// kubelet ignores them; a pipeline that wants no typos passes this.
    #[arg(long)]
    strict: bool,
}

/// The user's cache for compiled plugin code (`$XDG_CACHE_HOME/staticlet/plugins`, else
/// `~/.cache/staticlet/plugins`), so repeated runs in a pipeline compile each plugin once.
fn cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").filter(|d| !d.is_empty()).map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("staticlet").join("plugins"))
}

/// Prints `FILE: field.path: message` for every violation and `FILE: error` for every manifest
/// that does not load (with `--strict`, every warning too); exits 1 when anything was
/// rejected.
pub fn run(args: ValidateArgs) -> anyhow::Result<ExitCode> {
    let flags = RunFlags {
        config: args.config.clone(),
        hostname_override: args.hostname_override.clone(),
        root_dir: args.root_dir.clone(),
        ..RunFlags::default()
    };
    let config = Config::resolve(&flags)?;
    let files = manifests(&args.files)?;
    let artifacts = crate::daemon::plugin_artifacts(&config, true);
    let engine = PluginEngine::with_artifacts(&config.node_name, cache_dir(), Some(artifacts))
        .map_err(|e| anyhow::anyhow!("setting up the WebAssembly engine for plugins: {e:#}"))?;
    let tokio = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the async runtime")?;
    let node = NodeContext { node_name: config.node_name.clone() };
    let rejected = tokio.block_on(async {
        let validators = Validators::load(
            &engine,
            &config.validators,
            config.runtime_classes.keys().cloned().collect(),
            &crate::metrics::Metrics::default(),
        )
        .await;
        let chain = validators.chain();
        let mut stdout = std::io::stdout().lock();
        let mut rejected = 0usize;
        for file in &files {
            if !check(file, &chain, &node, args.strict, &mut stdout).await? {
                rejected += 1;
            }
        }
        anyhow::Ok(rejected)
    })?;
    if rejected > 0 {
        eprintln!("{rejected} of {} manifests rejected", files.len());
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// The manifests to check: each path given, with a directory standing for the manifests the
/// agent would read in it.
fn manifests(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            files.extend(manifest_files(path).with_context(|| format!("reading directory {}", path.display()))?);
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

/// Loads `file` and runs it through the admission `chain`: why it is rejected goes to `out`,
/// warnings to stderr. Returns whether it passed.
async fn check(file: &Path, chain: &Chain, node: &NodeContext, strict: bool, out: &mut impl Write) -> std::io::Result<bool> {
    let Some(loaded) = load(file, node, strict, out)? else { return Ok(false) };
    let name = file.display();
    let decision = chain.admit(&loaded.pod, &node.node_name).await;
    for warning in &decision.warnings {
        eprintln!("{name}: warning: {warning}");
    }
    for reason in decision.violations.iter().chain(&decision.failures) {
        writeln!(out, "{name}: {reason}")?;
    }
    Ok(decision.admitted())
}

/// Reads, decodes, defaults and validates `file` as the agent would. A manifest that does not
/// load (or with `strict`, draws a warning) is `None`, and why goes to `out`; otherwise its
/// warnings go to stderr.
fn load(file: &Path, node: &NodeContext, strict: bool, out: &mut impl Write) -> std::io::Result<Option<Loaded>> {
    let name = file.display();
    let bytes = match read_capped(file) {
        Ok(bytes) => bytes,
        Err(e) => {
            writeln!(out, "{name}: {e}")?;
            return Ok(None);
        }
    };
    let origin = Origin { kind: SourceKind::File, uri: file.display().to_string() };
    let loaded = match staticlet_model::load(&bytes, &origin, node) {
        Ok(loaded) => loaded,
        Err(staticlet_model::LoadError::Invalid(errors)) => {
            for error in errors {
                writeln!(out, "{name}: {error}")?;
            }
            return Ok(None);
        }
        Err(e) => {
            writeln!(out, "{name}: {e}")?;
            return Ok(None);
        }
    };
    if strict && !loaded.warnings.is_empty() {
        for warning in &loaded.warnings {
            writeln!(out, "{name}: {warning} (--strict)")?;
        }
        return Ok(None);
    }
    for warning in &loaded.warnings {
        eprintln!("{name}: warning: {warning}");
    }
    Ok(Some(loaded))
}
