//! Hot reload of plugin code, whatever the plugin's kind (validator, manifest source, runtime
//! adapter): one check and one way of reporting it, used by each stage that holds plugins, so no
//! stage reaches into another's module for it.

use std::time::Duration;

use staticlet_plugin::{Plugin, Refresh};
use tracing::{error, info};

/// How often plugin files are checked for changes (a `stat` each; the file is read only when
/// its size, times or inode changed).
pub const RELOAD_PERIOD: Duration = Duration::from_secs(1);

/// Loads `plugin`'s code again if its file changed, and logs what happened: a reload with
/// `consequence` (what the agent does next), a failure with the note that the old code stays.
/// Whether new code was loaded.
pub async fn reload(plugin: &Plugin, consequence: &str) -> bool {
    let spec = plugin.spec();
    match plugin.refresh().await {
        Refresh::Unchanged => false,
        Refresh::Loaded { digest, from_cache } => {
            info!(plugin = %spec.name, code = %spec.code, digest = %&digest[..12], from_cache, "plugin reloaded; {consequence}");
            true
        }
        Refresh::Failed(e) => {
            error!(plugin = %spec.name, "{e}; the code loaded before stays in use");
            false
        }
    }
}
