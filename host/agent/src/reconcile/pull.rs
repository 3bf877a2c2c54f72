//! Image pulls with the node's credentials: every candidate the keyring offers, in the
//! kubelet's order, until one works; a long pull reported every [`PROGRESS_PERIOD`] as the
//! kubelet's `Pulling` events, with the layers and bytes the runtime reports.

use std::time::Duration;

use staticlet_credentials::Credentials;
use staticlet_runtime::{PullProgress, Runtime};
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::events::PodEvents;

/// How often a pull still under way is reported.
pub const PROGRESS_PERIOD: Duration = Duration::from_secs(10);

/// How long a sandbox image found present is taken to still be there.
const SANDBOX_IMAGE_RECHECK: Duration = Duration::from_secs(60);

/// When each handler's sandbox image was last found present: a burst of new pods looks it up
/// once, not once per pod (the runtime looks again itself when it makes the sandbox).
#[derive(Debug, Default)]
pub struct SandboxImages(std::sync::Mutex<std::collections::HashMap<String, Instant>>);

impl SandboxImages {
    /// Whether `handler`'s sandbox image was found present lately.
    pub fn recently_present(&self, handler: &str) -> bool {
        let seen = self.0.lock().expect("sandbox images lock");
        seen.get(handler).is_some_and(|at| at.elapsed() < SANDBOX_IMAGE_RECHECK)
    }

    /// Notes that `handler`'s sandbox image is present now.
    pub fn present(&self, handler: &str) {
        self.0.lock().expect("sandbox images lock").insert(handler.to_owned(), Instant::now());
    }
}

/// Pulls `image` for `container` (none: for the sandbox) on `runtime`, trying each credential
/// `credentials` has for it, or none when it has none (as the kubelet, it does not fall back to
/// an anonymous pull once credentials matched). Providers that failed are reported on the pod.
///
/// # Errors
///
/// The runtime's words for each attempt that failed: one message, or several as the kubelet
/// aggregates them (`[first, second]`).
pub async fn pull(
    runtime: &dyn Runtime,
    credentials: &Credentials,
    image: &str,
    events: &PodEvents,
    container: Option<&str>,
) -> Result<(), String> {
    let lookup = credentials.lookup(image).await;
    for failure in &lookup.failures {
        warn!(image, "{failure}; pulling without its credentials");
        events.warning(container, "CredentialProviderFailed", format!("Failed getting credentials for image \"{image}\": {failure}"));
    }
    if lookup.candidates.is_empty() {
        debug!(image, "pulling image without credentials");
        return with_progress(runtime, image, None, events, container).await;
    }
    let mut errors: Vec<String> = Vec::new();
    for candidate in &lookup.candidates {
        match with_progress(runtime, image, Some(&candidate.auth), events, container).await {
            Ok(()) => {
                debug!(image, credentials = %candidate.source, "pulled");
                return Ok(());
            }
            Err(message) => {
                debug!(image, credentials = %candidate.source, "pull with these credentials failed: {message}");
                if !errors.contains(&message) {
                    errors.push(message);
                }
            }
        }
    }
    Err(if errors.len() == 1 { errors.remove(0) } else { format!("[{}]", errors.join(", ")) })
}

/// One pull attempt, with a `Pulling` event every [`PROGRESS_PERIOD`] while it lasts.
async fn with_progress(
    runtime: &dyn Runtime,
    image: &str,
    auth: Option<&staticlet_runtime::RegistryAuth>,
    events: &PodEvents,
    container: Option<&str>,
) -> Result<(), String> {
    let (progress, seen) = tokio::sync::watch::channel(PullProgress::default());
    let started = Instant::now();
    let pulling = runtime.pull_image(image, auth, &progress);
    tokio::pin!(pulling);
    let mut ticks = tokio::time::interval_at(started + PROGRESS_PERIOD, PROGRESS_PERIOD);
    loop {
        tokio::select! {
            result = &mut pulling => return result.map(drop).map_err(|e| e.to_string()),
            _ = ticks.tick() => {
                let message = progress_message(image, &seen.borrow(), started.elapsed());
                events.normal(container, "Pulling", message);
            }
        }
    }
}

/// `Pulling image "x": 3 of 7 layers, 45.2 MB of 120.0 MB (30s)`; only the time when the
/// runtime reports nothing (the CRI).
fn progress_message(image: &str, progress: &PullProgress, elapsed: Duration) -> String {
    let elapsed = format!("{}s", elapsed.as_secs());
    if progress.layers == 0 {
        return format!("Pulling image \"{image}\": still pulling after {elapsed}");
    }
    let mb = |bytes: u64| bytes as f64 / 1e6;
    format!(
        "Pulling image \"{image}\": {} of {} layers, {:.1} MB of {:.1} MB ({elapsed})",
        progress.layers_done,
        progress.layers,
        mb(progress.bytes_done),
        mb(progress.bytes_total)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_reads_as_layers_and_megabytes() {
        let progress = PullProgress { layers: 7, layers_done: 3, bytes_total: 120_000_000, bytes_done: 45_200_000 };
        assert_eq!(
            progress_message("reg:5000/app:1", &progress, Duration::from_secs(30)),
            "Pulling image \"reg:5000/app:1\": 3 of 7 layers, 45.2 MB of 120.0 MB (30s)"
        );
        assert_eq!(
            progress_message("app", &PullProgress::default(), Duration::from_secs(20)),
            "Pulling image \"app\": still pulling after 20s"
        );
    }
}
