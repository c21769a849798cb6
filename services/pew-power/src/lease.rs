//! Energy leases: promises of energy to running tasks.
//!
//! A task asks for energy before it starts; while its lease is outstanding that energy is taken
//! out of the spendable budget, so two tasks can never be promised the same watt-hours. A lease
//! ends when the task releases it or when it expires, which protects the budget from clients
//! that crash without releasing.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

use crate::Timestamp;

/// Energy promised to one task.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Lease {
    /// Unique for the lifetime of the node, even across restarts, e.g. `lease-17`.
    pub id: String,
    /// Energy promised, Wh.
    pub wh: f64,
    /// When the lease was granted.
    pub granted_at: Timestamp,
    /// When the promise lapses if the task has not released it.
    pub expires_at: Timestamp,
    /// What the client said the energy is for, for logs and status.
    pub reason: String,
}

/// Why a lease was not granted.
#[derive(thiserror::Error, Debug, Clone, PartialEq)]
pub enum LeaseError {
    /// The requested energy is not a positive finite number.
    #[error("requested energy must be a positive number of Wh, got {0}")]
    InvalidEnergy(f64),
    /// The requested duration is zero or longer than the longest lease allowed.
    #[error("lease duration must be between 1 and {max_s} s, got {requested_s} s")]
    InvalidDuration {
        /// Requested duration, seconds.
        requested_s: u32,
        /// Longest lease allowed, seconds.
        max_s: u32,
    },
    /// More energy was requested than the budget allows now.
    #[error("requested {requested_wh:.2} Wh but only {available_wh:.2} Wh can be spent now")]
    InsufficientEnergy {
        /// Energy requested, Wh.
        requested_wh: f64,
        /// Energy spendable at the time of the request, Wh.
        available_wh: f64,
    },
}

/// The persisted part of a [`LeaseBook`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct LeaseState {
    /// Number of the next lease id. Persisted so that ids are never reused after a restart:
    /// a client still holding an old id must not be able to release somebody else's lease.
    pub next_id: u64,
    /// Outstanding leases, oldest first.
    pub leases: Vec<Lease>,
}

/// Longest reason kept with a lease: reasons come from bus callers and end up in the state
/// file, which must stay small on an SD card.
pub const MAX_REASON_CHARS: usize = 160;

/// The outstanding leases and the id counter.
#[derive(Clone, Debug, PartialEq)]
pub struct LeaseBook {
    max_duration_s: u32,
    state: LeaseState,
}

impl LeaseBook {
    /// A book refusing leases longer than `max_duration_s`, continuing from `restored` if given.
    pub fn new(max_duration_s: u32, restored: Option<LeaseState>) -> Self {
        Self {
            max_duration_s,
            state: restored.unwrap_or_default(),
        }
    }

    /// Checks that a request is well-formed, whatever the budget: a positive finite energy
    /// and a duration between 1 s and the longest lease.
    pub fn check_request(&self, wh: f64, duration_s: u32) -> Result<(), LeaseError> {
        if !(wh.is_finite() && wh > 0.0) {
            return Err(LeaseError::InvalidEnergy(wh));
        }
        if duration_s == 0 || duration_s > self.max_duration_s {
            return Err(LeaseError::InvalidDuration {
                requested_s: duration_s,
                max_s: self.max_duration_s,
            });
        }
        Ok(())
    }

    /// Grants `wh` for `duration_s` if the request is well-formed and fits in `available_wh`.
    pub fn grant(
        &mut self,
        now: Timestamp,
        wh: f64,
        duration_s: u32,
        reason: &str,
        available_wh: f64,
    ) -> Result<Lease, LeaseError> {
        self.check_request(wh, duration_s)?;
        // An unknown (NaN) availability is incomparable and refuses rather than grants.
        let fits = matches!(
            wh.partial_cmp(&available_wh),
            Some(Ordering::Less | Ordering::Equal)
        );
        if !fits {
            return Err(LeaseError::InsufficientEnergy {
                requested_wh: wh,
                available_wh,
            });
        }
        let lease = Lease {
            id: format!("lease-{}", self.state.next_id),
            wh,
            granted_at: now,
            expires_at: now + i64::from(duration_s),
            reason: reason.chars().take(MAX_REASON_CHARS).collect(),
        };
        self.state.next_id += 1;
        self.state.leases.push(lease.clone());
        Ok(lease)
    }

    /// Ends the lease `id`; false if no such lease is outstanding.
    pub fn release(&mut self, id: &str) -> bool {
        let before = self.state.leases.len();
        self.state.leases.retain(|lease| lease.id != id);
        self.state.leases.len() != before
    }

    /// Removes and returns the leases whose time is up at `now`.
    ///
    /// A lease granted after `now` means the clock went backwards (an RTC that lost its time
    /// in a brown-out): its end can no longer be judged, and keeping it would block its energy
    /// until the clock caught up, possibly years later, so it ends now.
    pub fn expire(&mut self, now: Timestamp) -> Vec<Lease> {
        let (expired, outstanding) = std::mem::take(&mut self.state.leases)
            .into_iter()
            .partition(|lease| lease.expires_at <= now || lease.granted_at > now);
        self.state.leases = outstanding;
        expired
    }

    /// Total energy promised and not yet returned, Wh.
    pub fn outstanding_wh(&self) -> f64 {
        self.state.leases.iter().map(|lease| lease.wh).sum()
    }

    /// The outstanding leases, oldest first.
    pub fn leases(&self) -> &[Lease] {
        &self.state.leases
    }

    /// The state to persist.
    pub fn state(&self) -> LeaseState {
        self.state.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = 1_750_000_000;
    const MAX_DURATION_S: u32 = 6 * 3600;

    fn book() -> LeaseBook {
        LeaseBook::new(MAX_DURATION_S, None)
    }

    #[test]
    fn granted_lease_counts_until_released() {
        let mut book = book();
        let first = book.grant(NOW, 5.0, 3600, "inference", 20.0);
        let second = book.grant(NOW, 2.5, 600, "upload", 15.0);
        let (Ok(first), Ok(second)) = (first, second) else {
            panic!("both requests fit");
        };
        assert_eq!(first.expires_at, NOW + 3600);
        assert_eq!(first.reason, "inference");
        assert_ne!(first.id, second.id);
        assert_eq!(book.outstanding_wh(), 7.5);

        assert!(book.release(&first.id));
        assert!(!book.release(&first.id), "a lease is released only once");
        assert!(!book.release("lease-999"));
        assert_eq!(book.outstanding_wh(), 2.5);
        assert_eq!(book.leases(), std::slice::from_ref(&second));
    }

    #[test]
    fn long_reasons_from_callers_are_cut() {
        let mut book = book();
        let lease = book.grant(NOW, 1.0, 60, &"é".repeat(10_000), 5.0).unwrap();
        assert_eq!(lease.reason.chars().count(), MAX_REASON_CHARS);
    }

    #[test]
    fn expiry_returns_exactly_the_leases_whose_time_is_up() {
        let mut book = book();
        let short = book.grant(NOW, 1.0, 60, "short", 10.0);
        let long = book.grant(NOW, 2.0, 120, "long", 10.0);
        let (Ok(short), Ok(long)) = (short, long) else {
            panic!("both requests fit");
        };

        assert!(book.expire(NOW + 59).is_empty());
        assert_eq!(book.expire(NOW + 60), vec![short]);
        assert_eq!(book.outstanding_wh(), 2.0);
        assert_eq!(book.expire(NOW + 500), vec![long]);
        assert_eq!(book.outstanding_wh(), 0.0);
    }

    #[test]
    fn a_clock_set_back_ends_leases_instead_of_freezing_them() {
        let mut book = book();
        let lease = book.grant(NOW, 3.0, 3600, "task", 10.0);
        // The RTC lost its time and restarted from its epoch a year earlier.
        let expired = book.expire(NOW - 365 * 86_400);
        assert_eq!(expired.into_iter().next().map(Ok), Some(lease));
        assert_eq!(book.outstanding_wh(), 0.0);
    }

    #[test]
    fn ids_stay_unique_across_a_restart() {
        let mut before = book();
        let granted: Vec<String> = (0..3)
            .filter_map(|_| before.grant(NOW, 1.0, 60, "task", 10.0).ok())
            .map(|lease| lease.id)
            .collect();
        let mut after = LeaseBook::new(MAX_DURATION_S, Some(before.state()));
        assert_eq!(after.leases(), before.leases());

        let next = after
            .grant(NOW + 10, 1.0, 60, "task", 10.0)
            .map(|lease| lease.id);
        assert_eq!(granted, ["lease-0", "lease-1", "lease-2"]);
        assert_eq!(next.as_deref(), Ok("lease-3"));
    }

    #[test]
    fn malformed_or_unaffordable_requests_are_refused_and_change_nothing() {
        let mut book = book();
        for wh in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(matches!(
                book.grant(NOW, wh, 60, "bad", 10.0),
                Err(LeaseError::InvalidEnergy(_))
            ));
        }
        for duration_s in [0, MAX_DURATION_S + 1] {
            assert_eq!(
                book.grant(NOW, 1.0, duration_s, "bad", 10.0),
                Err(LeaseError::InvalidDuration {
                    requested_s: duration_s,
                    max_s: MAX_DURATION_S
                })
            );
        }
        assert_eq!(
            book.grant(NOW, 10.5, 60, "greedy", 10.0),
            Err(LeaseError::InsufficientEnergy {
                requested_wh: 10.5,
                available_wh: 10.0
            })
        );
        assert!(
            book.grant(NOW, 1.0, 60, "unknown budget", f64::NAN)
                .is_err()
        );
        assert!(book.leases().is_empty());
        assert_eq!(book.state().next_id, 0, "refusals consume no ids");

        // The limits themselves are allowed.
        assert!(book.grant(NOW, 10.0, MAX_DURATION_S, "exact", 10.0).is_ok());
    }
}
