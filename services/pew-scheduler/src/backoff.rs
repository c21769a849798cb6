//! Retry pacing for every network loop of the worker.
//!
//! A fleet of solar workers tends to lose the core at the same instant (a core restart, an
//! uplink outage at dusk), so retries are randomised: without jitter they would all come back
//! in lockstep and hammer the core. The type is pure: it only computes delays, the caller
//! sleeps.

use std::time::Duration;

use rand_core::{OsRng, RngCore};

/// How successive delays are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jitter {
    /// Uniform in `[0, min(cap, base·2^attempt)]`: the widest spread, but a delay may be 0.
    Full,
    /// Uniform in `[base, 3·previous]`, capped: grows about as fast as the exponential and never
    /// drops below `base`, so a loop cannot spin on a dead peer.
    Decorrelated,
}

/// Exponential backoff with jitter; [`Backoff::reset`] after a success.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    jitter: Jitter,
    attempt: u32,
    previous: Duration,
    rng: SplitMix64,
}

impl Backoff {
    /// A backoff seeded from the operating system's entropy source. `cap` is raised to `base`
    /// if it is smaller.
    pub fn new(base: Duration, cap: Duration, jitter: Jitter) -> Self {
        Self::with_seed(base, cap, jitter, entropy_u64())
    }

    /// A backoff with a fixed seed: the same seed yields the same sequence of delays.
    pub fn with_seed(base: Duration, cap: Duration, jitter: Jitter, seed: u64) -> Self {
        Self {
            base,
            cap: cap.max(base),
            jitter,
            attempt: 0,
            previous: base,
            rng: SplitMix64(seed),
        }
    }

    /// The delay to wait before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let base = nanos(self.base);
        let cap = nanos(self.cap);
        let delay = match self.jitter {
            Jitter::Full => {
                let growth = 1u64.checked_shl(self.attempt).unwrap_or(u64::MAX);
                self.rng.uniform(0, base.saturating_mul(growth).min(cap))
            }
            Jitter::Decorrelated => {
                let widest = nanos(self.previous).saturating_mul(3).max(base);
                self.rng.uniform(base, widest).min(cap)
            }
        };
        self.attempt = self.attempt.saturating_add(1);
        self.previous = Duration::from_nanos(delay);
        self.previous
    }

    /// Forget past failures: the next delay is drawn as for a first attempt.
    pub fn reset(&mut self) {
        self.attempt = 0;
        self.previous = self.base;
    }

    /// Delays handed out since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// Random bits for values that must differ between workers and runs but need not be secret
/// (jitter, SockJS session ids). A failing OS source degrades to the clock rather than stopping
/// the worker.
pub(crate) fn entropy_u64() -> u64 {
    let mut bytes = [0u8; 8];
    match OsRng.try_fill_bytes(&mut bytes) {
        Ok(()) => u64::from_le_bytes(bytes),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, nanos),
    }
}

/// SplitMix64 (Steele, Lea & Flood 2014): a tiny, well-mixed generator, ample for jitter.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64(pub(crate) u64);

impl SplitMix64 {
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[low, high]` (both inclusive); the modulo bias is below 2^-30 for any delay
    /// shorter than a year, far under what jitter cares about.
    fn uniform(&mut self, low: u64, high: u64) -> u64 {
        match (high - low).checked_add(1) {
            Some(span) => low + self.next_u64() % span,
            None => self.next_u64(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: Duration = Duration::from_millis(500);
    const CAP: Duration = Duration::from_secs(30);

    fn delays(backoff: &mut Backoff, count: usize) -> Vec<Duration> {
        (0..count).map(|_| backoff.next_delay()).collect()
    }

    #[test]
    fn full_jitter_stays_inside_the_exponential_envelope() {
        for seed in 0..200 {
            let mut backoff = Backoff::with_seed(BASE, CAP, Jitter::Full, seed);
            for (attempt, delay) in delays(&mut backoff, 12).into_iter().enumerate() {
                let ceiling = (BASE * 2u32.pow(attempt as u32)).min(CAP);
                assert!(
                    delay <= ceiling,
                    "seed {seed} attempt {attempt}: {delay:?} > {ceiling:?}"
                );
            }
        }
    }

    #[test]
    fn full_jitter_spreads_over_the_whole_window() {
        // Attempt 3 draws from [0, 4 s]: across many seeds both ends of the window are reached.
        let fourth: Vec<Duration> = (0..500)
            .map(|seed| delays(&mut Backoff::with_seed(BASE, CAP, Jitter::Full, seed), 4)[3])
            .collect();
        let window = BASE * 8;
        assert!(fourth.iter().any(|d| *d < window / 10));
        assert!(fourth.iter().any(|d| *d > window * 9 / 10));
    }

    #[test]
    fn decorrelated_never_below_base_nor_above_cap_nor_three_times_previous() {
        for seed in 0..200 {
            let mut backoff = Backoff::with_seed(BASE, CAP, Jitter::Decorrelated, seed);
            let mut previous = BASE;
            for delay in delays(&mut backoff, 40) {
                assert!(delay >= BASE && delay <= CAP, "seed {seed}: {delay:?}");
                assert!(
                    delay <= (previous * 3).max(BASE),
                    "seed {seed}: {delay:?} after {previous:?}"
                );
                previous = delay;
            }
        }
    }

    #[test]
    fn decorrelated_reaches_the_cap_after_repeated_failures() {
        // A random walk in log space with upward drift: from 0.5 s, nine in ten sequences (198 of
        // these 200) touch the 30 s cap within 40 failures, though not every one.
        let reaching = (0..200)
            .filter(|&seed| {
                delays(
                    &mut Backoff::with_seed(BASE, CAP, Jitter::Decorrelated, seed),
                    40,
                )
                .contains(&CAP)
            })
            .count();
        assert!(
            reaching >= 180,
            "{reaching} of 200 sequences reached the cap"
        );
    }

    #[test]
    fn reset_restarts_from_the_first_window() {
        let mut backoff = Backoff::with_seed(BASE, CAP, Jitter::Full, 3);
        delays(&mut backoff, 20);
        assert_eq!(backoff.attempts(), 20);
        backoff.reset();
        assert_eq!(backoff.attempts(), 0);
        assert!(backoff.next_delay() <= BASE);
    }

    #[test]
    fn same_seed_same_sequence_different_seed_different_sequence() {
        let sequence = |seed| {
            delays(
                &mut Backoff::with_seed(BASE, CAP, Jitter::Decorrelated, seed),
                10,
            )
        };
        assert_eq!(sequence(42), sequence(42));
        assert_ne!(sequence(42), sequence(43));
    }

    #[test]
    fn cap_below_base_is_raised_to_base() {
        let mut backoff =
            Backoff::with_seed(BASE, Duration::from_millis(1), Jitter::Decorrelated, 1);
        assert!(delays(&mut backoff, 10).iter().all(|d| *d == BASE));
    }

    #[test]
    fn thousands_of_failures_do_not_overflow() {
        let huge = Duration::from_secs(u64::MAX);
        for jitter in [Jitter::Full, Jitter::Decorrelated] {
            let mut backoff = Backoff::with_seed(Duration::from_secs(3600), huge, jitter, 9);
            for delay in delays(&mut backoff, 5000) {
                assert!(delay <= huge);
            }
            assert_eq!(backoff.attempts(), 5000);
        }
    }
}
