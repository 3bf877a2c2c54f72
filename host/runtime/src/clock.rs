//! The wall clock that runtime timestamps and the agent's time-based decisions (back-offs,
//! probe delays) are read from.

use std::time::SystemTime;

/// Wall-clock time. The agent reads the system clock; unit tests read one that follows tokio's
/// clock, so that with paused time a back-off of five minutes passes in an instant, for the
/// planner's decisions and the fake runtime's timestamps alike.
#[derive(Debug, Clone, Copy, Default)]
pub struct Clock {
    /// Set for a clock that follows tokio's: the wall time and tokio instant it started at.
    follows_tokio: Option<(SystemTime, tokio::time::Instant)>,
}

impl Clock {
    /// The system clock.
    pub const SYSTEM: Clock = Clock { follows_tokio: None };

    /// A clock that starts at the system's time now and from then on advances with tokio's
    /// clock (which a test may pause and advance).
    pub fn following_tokio() -> Clock {
        Clock { follows_tokio: Some((SystemTime::now(), tokio::time::Instant::now())) }
    }

    /// The time now.
    pub fn now(&self) -> SystemTime {
        match self.follows_tokio {
            None => SystemTime::now(),
            Some((wall, instant)) => wall + instant.elapsed(),
        }
    }
}
