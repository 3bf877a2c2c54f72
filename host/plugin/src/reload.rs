//! Hot reload: every plugin's file is checked for changes on one schedule, and changed code is
//! loaded for the next call, whatever kind of plugin it is. Admission, runtime adapters and
//! source plugins all run this one loop and differ only in what a reload means to them.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::plugin::{Plugin, Refresh};

/// How often plugin files are checked for changes (a `stat` each; the file is read only when
/// its size, times or inode changed).
pub const RELOAD_PERIOD: Duration = Duration::from_secs(1);

/// Loads `plugin`'s code again if its file changed, and logs what happened: a reload with
/// `consequence` (what the agent does next), a failure with the note that the old code stays.
/// Returns whether new code was loaded.
async fn reload(plugin: &Plugin, consequence: &str) -> bool {
    let spec = plugin.spec();
    match plugin.refresh().await {
        Refresh::Unchanged => false,
        Refresh::Loaded { digest, origin } => {
            info!(plugin = %spec.name, code = %spec.code, digest = %&digest[..12], %origin, "plugin reloaded; {consequence}");
            true
        }
        Refresh::Failed(e) => {
            error!(plugin = %spec.name, "{e}; the code loaded before stays in use");
            false
        }
    }
}

/// Checks `plugins`' files every [`RELOAD_PERIOD`] until `shutdown`, reloading those that
/// changed (logged with `consequence`); after each check that loaded new code, `generation` is
/// counted up, so whoever depends on the plugins' verdicts or answers can act on it.
pub async fn watch(plugins: Vec<Arc<Plugin>>, consequence: &str, generation: watch::Sender<u64>, shutdown: CancellationToken) {
    if plugins.is_empty() {
        return;
    }
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(RELOAD_PERIOD) => {}
        }
        let mut changed = false;
        for plugin in &plugins {
            changed |= reload(plugin, consequence).await;
        }
        if changed {
            generation.send_modify(|g| *g += 1);
        }
    }
}
