//! Exponential delays, shared by RPC retries and receipt polling.

use std::time::Duration;

/// Delays that double from `first` up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay before the first retry (or the first poll).
    pub first: Duration,
    /// Upper bound of any single delay.
    pub max: Duration,
}

impl Backoff {
    /// The delay before attempt `step + 1` (step 0 is the delay after the first failure).
    pub fn delay(&self, step: u32) -> Duration {
        let factor = 1u32.checked_shl(step).unwrap_or(u32::MAX);
        self.first.saturating_mul(factor).min(self.max)
    }
}

/// How RPC calls are retried when the endpoint cannot be reached.
///
/// Only transport failures (connection refused, timeouts, HTTP 5xx) are retried: an error
/// *response* is an answer from the node and retrying it would only repeat it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total attempts, the first included (at least 1).
    pub attempts: u32,
    /// Delays between attempts.
    pub backoff: Backoff,
}

impl Default for RetryPolicy {
    /// Five attempts over about six seconds: long enough to ride out a node restart or a
    /// Wi-Fi hiccup, short enough that the caller learns about a dead endpoint quickly.
    fn default() -> Self {
        Self {
            attempts: 5,
            backoff: Backoff {
                first: Duration::from_millis(400),
                max: Duration::from_secs(4),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_then_stay_at_the_ceiling() {
        let backoff = Backoff {
            first: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        let delays: Vec<_> = (0..6).map(|step| backoff.delay(step).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
    }

    #[test]
    fn very_late_steps_do_not_overflow() {
        let backoff = Backoff {
            first: Duration::from_secs(1),
            max: Duration::from_secs(30),
        };
        assert_eq!(backoff.delay(31), Duration::from_secs(30));
        assert_eq!(backoff.delay(u32::MAX), Duration::from_secs(30));
    }

    #[test]
    fn default_retries_span_a_few_seconds() {
        let policy = RetryPolicy::default();
        let total: Duration = (0..policy.attempts - 1)
            .map(|step| policy.backoff.delay(step))
            .sum();
        // 0.4 + 0.8 + 1.6 + 3.2 s
        assert_eq!(total, Duration::from_millis(6000));
    }
}
