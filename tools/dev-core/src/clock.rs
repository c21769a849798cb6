//! Wall-clock time that tests can move forward.
//!
//! Deadlines in iExec are Unix times written on-chain (contribution, reveal, final). A test that
//! wants the scheduler to see a deadline pass cannot wait minutes; it advances this clock instead.
//! The real chain keeps its own time, so only the off-chain deadlines the scheduler checks itself
//! move (which is what makes it send `PLEASE_ABORT`).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// System time plus an offset; clones share the offset.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    offset: Arc<Mutex<Duration>>,
}

impl Clock {
    /// The system clock, not moved yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Current time as seen by the double.
    pub fn now(&self) -> SystemTime {
        SystemTime::now() + *self.offset.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Current time in Unix seconds.
    pub fn unix_secs(&self) -> u64 {
        unix_secs(self.now())
    }

    /// Moves the clock forward by `by`, for every clone.
    pub fn advance(&self, by: Duration) {
        *self.offset.lock().unwrap_or_else(PoisonError::into_inner) += by;
    }
}

/// Unix seconds of `time`; times before the epoch read as 0.
pub fn unix_secs(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// The `SystemTime` of Unix second `secs`.
pub fn from_unix_secs(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// Unix milliseconds of `time`, the `date` unit of Java's `Date` on the wire.
pub fn unix_millis(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since| {
        i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advancing_one_clone_moves_all() {
        let clock = Clock::new();
        let other = clock.clone();
        let before = other.unix_secs();
        clock.advance(Duration::from_secs(3600));
        let after = other.unix_secs();
        // The call itself may straddle a second boundary.
        assert!(
            (3600..=3601).contains(&(after - before)),
            "{before} -> {after}"
        );
    }

    #[test]
    fn unix_conversions_round_trip() {
        assert_eq!(unix_secs(from_unix_secs(1_700_000_000)), 1_700_000_000);
        assert_eq!(unix_millis(from_unix_secs(2)), 2000);
        assert_eq!(unix_secs(UNIX_EPOCH - Duration::from_secs(5)), 0);
    }
}
