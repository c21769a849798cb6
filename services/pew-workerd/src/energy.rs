//! How much energy a task will take, learned from the tasks already run.
//!
//! Before a replicate is accepted the worker asks the power manager for the energy it may need.
//! Until an app has been seen, that is the category's maximum time at the node's measured
//! computing power; once it has run a few times, it is what the app really took plus two
//! standard deviations (never more than the category allows). Every run updates the app's
//! profile and the node's computing power; the profiles are exposed on the bus for the fleet
//! allocator.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Runs of an app before its own figures replace the category's worst case.
const RUNS_BEFORE_TRUSTING_PROFILE: u64 = 3;

/// Weight of the newest run in the node's computing power.
const COMPUTE_POWER_SMOOTHING: f64 = 0.2;

/// Running mean and variance (Welford), so a profile is a few numbers however many runs it saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct RunningStats {
    pub count: u64,
    pub mean: f64,
    /// Sum of squared differences from the mean.
    m2: f64,
}

impl RunningStats {
    pub fn add(&mut self, value: f64) {
        self.count += 1;
        let delta = value - self.mean;
        self.mean += delta / self.count as f64;
        self.m2 += delta * (value - self.mean);
    }

    /// Sample standard deviation; zero until there are two values.
    pub fn std_dev(&self) -> f64 {
        if self.count < 2 {
            0.0
        } else {
            (self.m2 / (self.count - 1) as f64).sqrt()
        }
    }
}

/// What one app has cost on this node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct AppProfile {
    pub duration_s: RunningStats,
    pub energy_wh: RunningStats,
    /// Runs that ended without a result (failure or timeout); they still cost energy.
    pub failures: u64,
    /// Seconds since the Unix epoch of the last run.
    pub last_run: i64,
}

/// One finished compute stage, as measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunMeasurement {
    pub duration_s: f64,
    pub energy_wh: f64,
    pub succeeded: bool,
    pub finished_at: i64,
}

/// Every app's profile and the node's power while computing; saved on the data partition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileBook {
    pub apps: BTreeMap<String, AppProfile>,
    /// Smoothed node power while a task computes, watts.
    pub compute_power_w: f64,
}

/// The energy to ask for before running a task, and for how long the grant must last.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EnergyNeed {
    pub wh: f64,
    pub seconds: u32,
}

impl ProfileBook {
    pub fn new(initial_compute_power_w: f64) -> Self {
        Self {
            apps: BTreeMap::new(),
            compute_power_w: initial_compute_power_w,
        }
    }

    pub fn record(&mut self, app: &str, run: RunMeasurement) {
        let profile = self.apps.entry(app.to_owned()).or_default();
        profile.duration_s.add(run.duration_s);
        profile.energy_wh.add(run.energy_wh);
        if !run.succeeded {
            profile.failures += 1;
        }
        profile.last_run = run.finished_at;
        // Runs shorter than a few seconds say more about start-up than about computing power.
        if run.duration_s >= 5.0 && run.energy_wh > 0.0 {
            let measured_w = run.energy_wh * 3600.0 / run.duration_s;
            self.compute_power_w += COMPUTE_POWER_SMOOTHING * (measured_w - self.compute_power_w);
        }
    }

    /// The energy for a task of `app` whose category allows `max_time_s`, with `margin` applied.
    pub fn need(&self, app: Option<&str>, max_time_s: u64, margin: f64) -> EnergyNeed {
        let worst_case_wh = max_time_s as f64 * self.compute_power_w / 3600.0;
        let learned = app
            .and_then(|app| self.apps.get(app))
            .filter(|profile| profile.energy_wh.count >= RUNS_BEFORE_TRUSTING_PROFILE);
        let (wh, seconds) = match learned {
            Some(profile) => (
                (profile.energy_wh.mean + 2.0 * profile.energy_wh.std_dev()).min(worst_case_wh),
                (profile.duration_s.mean + 2.0 * profile.duration_s.std_dev())
                    .min(max_time_s as f64),
            ),
            None => (worst_case_wh, max_time_s as f64),
        };
        EnergyNeed {
            wh: wh * margin,
            // The grant must outlive the run: downloads, post-compute and contribution follow.
            seconds: ((seconds * margin).ceil() as u32).saturating_add(120),
        }
    }
}

/// Integrates sampled node power over a compute stage (trapezoids between samples).
#[derive(Debug, Clone, Default)]
pub struct EnergyIntegrator {
    last: Option<(f64, f64)>,
    watt_seconds: f64,
}

impl EnergyIntegrator {
    /// A power sample `watts` taken `at_s` seconds after an arbitrary origin.
    pub fn sample(&mut self, at_s: f64, watts: f64) {
        if !watts.is_finite() || watts < 0.0 {
            return;
        }
        if let Some((last_at, last_watts)) = self.last
            && at_s > last_at
        {
            self.watt_seconds += (at_s - last_at) * (watts + last_watts) / 2.0;
        }
        self.last = Some((at_s, watts));
    }

    pub fn watt_hours(&self) -> f64 {
        self.watt_seconds / 3600.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(duration_s: f64, energy_wh: f64) -> RunMeasurement {
        RunMeasurement {
            duration_s,
            energy_wh,
            succeeded: true,
            finished_at: 1_700_000_000,
        }
    }

    #[test]
    fn running_stats_match_the_textbook_values() {
        let mut stats = RunningStats::default();
        for value in [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0] {
            stats.add(value);
        }
        assert_eq!(stats.count, 8);
        assert!((stats.mean - 5.0).abs() < 1e-12);
        // Sample variance of this classic set is 32/7.
        assert!((stats.std_dev() - (32.0f64 / 7.0).sqrt()).abs() < 1e-12);
    }

    #[test]
    fn an_unknown_app_gets_the_category_worst_case() {
        let book = ProfileBook::new(6.0);
        let need = book.need(Some("docker.io/x/app:1"), 300, 1.0);
        assert!((need.wh - 0.5).abs() < 1e-12, "300 s at 6 W is 0.5 Wh");
        assert_eq!(need.seconds, 300 + 120);
    }

    #[test]
    fn a_known_app_costs_what_it_took_plus_two_deviations() {
        let mut book = ProfileBook::new(6.0);
        for energy in [0.010, 0.012, 0.014] {
            book.record("app", run(4.0, energy));
        }
        let need = book.need(Some("app"), 300, 1.25);
        let expected = (0.012 + 2.0 * 0.002) * 1.25;
        assert!((need.wh - expected).abs() < 1e-9, "{need:?}");
        assert!(need.seconds < 300, "{need:?}");
    }

    #[test]
    fn two_runs_are_not_enough_to_trust_a_profile() {
        let mut book = ProfileBook::new(6.0);
        book.record("app", run(4.0, 0.01));
        book.record("app", run(4.0, 0.01));
        assert!((book.need(Some("app"), 300, 1.0).wh - 0.5).abs() < 1e-12);
    }

    #[test]
    fn a_learned_need_never_exceeds_the_category() {
        let mut book = ProfileBook::new(6.0);
        for energy in [1.0, 5.0, 9.0] {
            book.record("greedy", run(2.0, energy));
        }
        assert!((book.need(Some("greedy"), 60, 1.0).wh - 0.1).abs() < 1e-12);
    }

    #[test]
    fn compute_power_follows_long_runs_only() {
        let mut book = ProfileBook::new(5.0);
        book.record("short", run(1.0, 1.0));
        assert_eq!(book.compute_power_w, 5.0);
        // 60 s at 7 W.
        book.record("long", run(60.0, 7.0 * 60.0 / 3600.0));
        assert!((book.compute_power_w - (5.0 + 0.2 * 2.0)).abs() < 1e-9);
    }

    #[test]
    fn integration_of_constant_and_ramping_power() {
        let mut meter = EnergyIntegrator::default();
        meter.sample(0.0, 3.6);
        meter.sample(1000.0, 3.6);
        assert!((meter.watt_hours() - 1.0).abs() < 1e-12);
        let mut ramp = EnergyIntegrator::default();
        ramp.sample(0.0, 0.0);
        ramp.sample(3600.0, 2.0);
        assert!((ramp.watt_hours() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn bad_samples_do_not_poison_the_integral() {
        let mut meter = EnergyIntegrator::default();
        meter.sample(0.0, 1.0);
        meter.sample(10.0, f64::NAN);
        meter.sample(5.0, -3.0);
        meter.sample(3600.0, 1.0);
        assert!((meter.watt_hours() - 1.0).abs() < 1e-12);
    }
}
