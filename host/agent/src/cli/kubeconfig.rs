//! `staticlet kubeconfig`: prints the kubeconfig the agent keeps for its local API, so that
//! `kubectl exec`, `port-forward` and `cp` work against it.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::Args;

use crate::config::DEFAULT_ROOT_DIR;
use crate::state::Layout;

/// Arguments of `staticlet kubeconfig`.
#[derive(Debug, Args)]
pub struct KubeconfigArgs {
    /// The agent's --root-dir.
    #[arg(long, value_name = "DIR", env = "STATICLET_ROOT_DIR", default_value = DEFAULT_ROOT_DIR)]
    root_dir: PathBuf,
}

/// Prints the kubeconfig.
///
/// # Errors
///
/// When the agent has written none (it serves no TCP port) or it cannot be read.
pub fn run(args: KubeconfigArgs) -> anyhow::Result<()> {
    let path = Layout::new(&args.root_dir).kubeconfig();
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            print!("{text}");
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "no kubeconfig at {}: the agent writes it when it serves the kubelet port (--port 10250, or --kubeconfig), since kubectl sends its token over TLS only",
            path.display()
        ),
        Err(e) => Err(e).with_context(|| format!("reading {} (it is readable by the agent's user only)", path.display())),
    }
}
