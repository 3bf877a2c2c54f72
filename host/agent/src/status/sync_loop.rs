//! Whether the controller's loop still goes round: the kubelet's `syncloop` health check,
//! behind `/healthz` and systemd's watchdog.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// The controller's loop marks a round at least this often when nothing else wakes it.
pub const PERIOD: Duration = Duration::from_secs(1);

/// A loop that has not gone round for this long is stuck. The controller's rounds are short
/// (workers do the runtime calls), so a minute leaves room for a starved machine without
/// leaving a wedged agent unnoticed for long.
pub const LIMIT: Duration = Duration::from_secs(60);

/// When the loop last went round. Cloning shares it.
#[derive(Debug, Clone)]
pub struct SyncLoop {
    last: Arc<Mutex<Instant>>,
}

impl Default for SyncLoop {
    fn default() -> Self {
        SyncLoop { last: Arc::new(Mutex::new(Instant::now())) }
    }
}

impl SyncLoop {
    /// Marks a round.
    pub fn went_round(&self) {
        *self.last.lock().expect("sync loop lock") = Instant::now();
    }

    /// How long since the last round.
    pub fn since_last_round(&self) -> Duration {
        self.last.lock().expect("sync loop lock").elapsed()
    }

    /// `Err` with the kubelet's words when the loop has not gone round within [`LIMIT`].
    pub fn check(&self) -> Result<(), String> {
        let since = self.since_last_round();
        if since > LIMIT {
            return Err(format!("sync loop took longer than expected: last round {}s ago, limit {}s", since.as_secs(), LIMIT.as_secs()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_loop_that_stops_going_round_fails_the_check_after_the_limit() {
        let sync_loop = SyncLoop::default();
        tokio::time::advance(LIMIT).await;
        assert_eq!(sync_loop.check(), Ok(()));
        tokio::time::advance(Duration::from_secs(1)).await;
        let failed = sync_loop.check().unwrap_err();
        assert!(failed.contains("last round 61s ago"), "{failed}");
        sync_loop.went_round();
        assert_eq!(sync_loop.check(), Ok(()));
    }
}
