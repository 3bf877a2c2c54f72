//! Crash-loop back-off, with the kubelet's exact semantics (`flowcontrol.Backoff` as used by
//! `doBackOff`): the first restart after a crash is immediate; each further crash waits the
//! current delay, which starts at 10 s and doubles up to 300 s; an entry untouched for twice the
//! cap (10 minutes) is forgotten, so a container that ran that long starts again at 10 s.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// The first delay.
pub const INITIAL: Duration = Duration::from_secs(10);
/// The cap.
pub const MAX: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    delay: Duration,
    last_update: SystemTime,
}

/// Back-off state per container name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BackoffTable {
    entries: HashMap<String, Entry>,
}

fn expired(event: SystemTime, last_update: SystemTime) -> bool {
    event.duration_since(last_update).is_ok_and(|d| d > 2 * MAX)
}

impl BackoffTable {
    /// When the container whose run ended at `finished` may restart, if it must still wait
    /// at `now`; `None` if it may restart now.
    pub fn waiting_until(&self, key: &str, finished: SystemTime, now: SystemTime) -> Option<SystemTime> {
        let entry = self.entries.get(key)?;
        if expired(finished, entry.last_update) {
            return None;
        }
        let until = finished + entry.delay;
        (now < until).then_some(until)
    }

    /// When the back-off started by the last [`BackoffTable::next`] on `key` ends, if that is
    /// after `now`: how image pulls are held back after a failure.
    pub fn waiting_since_update(&self, key: &str, now: SystemTime) -> Option<SystemTime> {
        let entry = self.entries.get(key)?;
        let until = entry.last_update + entry.delay;
        (now < until).then_some(until)
    }

    /// Records a restart after the run that ended at `finished`, growing the delay.
    pub fn next(&mut self, key: &str, finished: SystemTime) {
        let delay = match self.entries.get(key) {
            Some(entry) if !expired(finished, entry.last_update) => (entry.delay * 2).min(MAX),
            _ => INITIAL,
        };
        self.entries.insert(key.to_owned(), Entry { delay, last_update: finished });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + secs)
    }

    #[test]
    fn first_restart_is_immediate_then_doubles_to_the_cap() {
        let mut table = BackoffTable::default();
        // Crash 1 at t=0: restart at once.
        assert_eq!(table.waiting_until("c", at(0), at(0)), None);
        table.next("c", at(0));
        // Crash 2 at t=1: wait 10 s.
        assert_eq!(table.waiting_until("c", at(1), at(1)), Some(at(11)));
        assert_eq!(table.waiting_until("c", at(1), at(11)), None);
        table.next("c", at(1));
        // Crash 3 at t=12: wait 20 s.
        assert_eq!(table.waiting_until("c", at(12), at(12)), Some(at(32)));
        let mut finished = 12;
        for _ in 0..10 {
            table.next("c", at(finished));
            finished += 1;
        }
        let until = table.waiting_until("c", at(finished), at(finished)).unwrap();
        assert_eq!(until.duration_since(at(finished)).unwrap(), MAX);
    }

    #[test]
    fn ten_quiet_minutes_reset_the_delay() {
        let mut table = BackoffTable::default();
        table.next("c", at(0));
        table.next("c", at(1));
        assert_eq!(table.waiting_until("c", at(602), at(602)), None);
        table.next("c", at(602));
        assert_eq!(table.waiting_until("c", at(603), at(603)), Some(at(613)));
    }
}
