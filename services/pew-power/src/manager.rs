//! The power manager: one object that `pew-powerd` and the year simulation feed with
//! measurements and ask for decisions.
//!
//! Each observation flows through the same pipeline: the state-of-charge estimator takes the
//! battery voltage and current, the forecaster learns from the solar power, expired leases
//! return their energy, the budget is projected over the next 48 hours, and the mode machine
//! decides from the result. Budget requests are answered from the last observation.

use serde::{Deserialize, Serialize};

use crate::Timestamp;
use crate::budget::{Budget, BudgetInputs, energy_budget, project_energy};
use crate::chemistry::{BatterySpec, ConfigError};
use crate::forecast::{ForecastConfig, ForecastSlot, ForecastState, Forecaster, SolarPredictor};
use crate::lease::{Lease, LeaseBook, LeaseError, LeaseState};
use crate::mode::{Mode, ModeInputs, ModeMachine, ModeState, ModeThresholds, Transition};
use crate::soc::{SocEstimator, SocState};
use crate::solar::Site;

/// How far ahead the budget looks: two days, the span the reserve is sized for.
pub const FORECAST_HORIZON_S: i64 = 48 * 3600;

/// Longest sleep accepted in configuration. The HAT RTCs take alarms further out, but a node
/// asleep for a week is indistinguishable from a dead one.
const MAX_SLEEP_LIMIT_S: i64 = 7 * 24 * 3600;

/// One reading of the power sensors.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Measurement {
    /// Battery terminal voltage, V.
    pub battery_v: f64,
    /// Battery current, A; positive while charging.
    pub battery_a: f64,
    /// Power delivered by the panel, W.
    pub solar_w: f64,
    /// Power drawn by the node, W.
    pub load_w: f64,
}

/// Where the panel is and how big it is; TOML section `[solar]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case", default)]
pub struct SolarConfig {
    /// Degrees, north positive.
    pub latitude: f64,
    /// Degrees, east positive.
    pub longitude: f64,
    /// Rated panel power at standard test conditions, W.
    pub panel_w: f64,
    /// Forecaster tuning, TOML section `[solar.forecast]`.
    pub forecast: ForecastConfig,
}

impl Default for SolarConfig {
    /// The seed worker's 60 W panel in Tunis, where the project started.
    fn default() -> Self {
        Self {
            latitude: 36.8,
            longitude: 10.18,
            panel_w: 60.0,
            forecast: ForecastConfig::default(),
        }
    }
}

impl SolarConfig {
    /// The panel's location.
    pub fn site(&self) -> Site {
        Site {
            latitude: self.latitude,
            longitude: self.longitude,
        }
    }

    /// Rejects coordinates off the globe, non-positive panel power and unusable forecaster
    /// tuning, naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.site().validate()?;
        ConfigError::require_positive("solar.panel_w", self.panel_w)?;
        self.forecast.validate()
    }
}

/// How cautiously energy is spent; TOML section `[policy]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case", default)]
pub struct Policy {
    /// Days of essential load the battery keeps for sunless weather.
    pub reserve_days: f64,
    /// Load the node cannot shed while it is up, W.
    pub essential_load_w: f64,
    /// Load while halted and waiting for the wake alarm, W.
    pub sleep_load_w: f64,
    /// Shortest sleep after a shutdown, s: a wake-up costs a boot, so waking to find the
    /// battery still empty must not happen every few minutes.
    pub min_sleep_s: i64,
    /// Longest sleep after a shutdown, s: the node checks in at least this often even when the
    /// forecast sees no sun, because forecasts are wrong.
    pub max_sleep_s: i64,
    /// Longest task accepted in eco mode, s.
    pub eco_max_task_s: u32,
    /// Longest lease granted at all, s.
    pub max_lease_s: u32,
}

impl Default for Policy {
    /// The seed hardware: a headless Pi 4 idles at ~2.7 W with the Sense HAT; halted behind a
    /// power HAT it draws about 0.1 W.
    fn default() -> Self {
        Self {
            reserve_days: 2.0,
            essential_load_w: 2.7,
            sleep_load_w: 0.1,
            min_sleep_s: 900,
            max_sleep_s: 6 * 3600,
            eco_max_task_s: 1800,
            max_lease_s: 6 * 3600,
        }
    }
}

impl Policy {
    /// Rejects values that make no physical sense or contradict each other, naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        ConfigError::require_within("policy.reserve_days", self.reserve_days, 0.0, 30.0)?;
        ConfigError::require_positive("policy.essential_load_w", self.essential_load_w)?;
        ConfigError::require_within(
            "policy.sleep_load_w",
            self.sleep_load_w,
            0.0,
            self.essential_load_w,
        )?;
        if self.min_sleep_s <= 0 {
            return Err(ConfigError::new(
                "policy.min_sleep_s",
                format!("must be > 0, got {}", self.min_sleep_s),
            ));
        }
        if !(self.min_sleep_s..=MAX_SLEEP_LIMIT_S).contains(&self.max_sleep_s) {
            return Err(ConfigError::new(
                "policy.max_sleep_s",
                format!(
                    "must be between policy.min_sleep_s ({}) and {MAX_SLEEP_LIMIT_S}, got {}",
                    self.min_sleep_s, self.max_sleep_s
                ),
            ));
        }
        if self.max_lease_s == 0 {
            return Err(ConfigError::new("policy.max_lease_s", "must be > 0, got 0"));
        }
        if !(1..=self.max_lease_s).contains(&self.eco_max_task_s) {
            return Err(ConfigError::new(
                "policy.eco_max_task_s",
                format!(
                    "must be between 1 and policy.max_lease_s ({}), got {}",
                    self.max_lease_s, self.eco_max_task_s
                ),
            ));
        }
        Ok(())
    }
}

/// Everything the power manager is configured with: the `[battery]`, `[solar]`, `[policy]`
/// and `[modes]` sections of `/etc/pew/powerd.toml`. Missing keys take the seed defaults.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case", default)]
pub struct PowerConfig {
    /// The battery pack.
    pub battery: BatterySpec,
    /// The panel.
    pub solar: SolarConfig,
    /// Spending policy.
    pub policy: Policy,
    /// Mode thresholds.
    pub modes: ModeThresholds,
}

impl PowerConfig {
    /// Validates every section; the error names the first offending key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.battery.validate()?;
        self.solar.validate()?;
        self.policy.validate()?;
        self.modes.validate()
    }
}

/// Everything the manager must remember across restarts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PowerState {
    /// State-of-charge estimator.
    pub soc: SocState,
    /// Learned solar profile.
    pub forecast: ForecastState,
    /// Outstanding leases and the lease id counter.
    pub leases: LeaseState,
    /// Current mode and running debounce timers.
    pub mode: ModeState,
    /// The last wake alarm armed, so that a node that comes up can tell a scheduled wake from
    /// a power-on.
    pub last_wake_alarm: Option<Timestamp>,
}

/// Something the daemon must act on or report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Event {
    /// The power mode changed.
    ModeChanged(Transition),
    /// A lease ran out without being released; its energy is back in the budget.
    LeaseExpired(Lease),
}

/// Why a budget request was refused.
#[derive(thiserror::Error, Debug, Clone, PartialEq)]
pub enum Refusal {
    /// The current mode does not take this request.
    #[error("{}", mode_refusal(*.0))]
    Mode(Mode),
    /// The request is well-formed but larger than what may be spent now.
    #[error(
        "not enough energy budget: {requested_wh:.2} Wh requested, {available_wh:.2} Wh available"
    )]
    InsufficientBudget {
        /// Energy requested, Wh.
        requested_wh: f64,
        /// Energy spendable at the time of the request, Wh.
        available_wh: f64,
    },
    /// The request itself is malformed (energy or duration out of range).
    #[error("invalid budget request: {0}")]
    InvalidRequest(String),
}

fn mode_refusal(mode: Mode) -> &'static str {
    match mode {
        Mode::Normal => "refused in normal mode",
        Mode::Eco => "eco mode only takes short tasks",
        Mode::Critical => "critical mode takes no tasks until the battery recovers",
        Mode::Shutdown => "the node is shutting down",
    }
}

impl From<LeaseError> for Refusal {
    fn from(error: LeaseError) -> Self {
        match error {
            LeaseError::InsufficientEnergy {
                requested_wh,
                available_wh,
            } => Refusal::InsufficientBudget {
                requested_wh,
                available_wh,
            },
            invalid @ (LeaseError::InvalidEnergy(_) | LeaseError::InvalidDuration { .. }) => {
                Refusal::InvalidRequest(invalid.to_string())
            }
        }
    }
}

/// A snapshot for `pewctl status` and the D-Bus interface.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PowerStatus {
    /// Estimated state of charge, %.
    pub soc_percent: f64,
    /// 1 σ of the estimate, percentage points.
    pub soc_uncertainty_percent: f64,
    /// Last battery voltage, V (0 before the first measurement).
    pub battery_v: f64,
    /// Last battery current, A, positive charging.
    pub battery_a: f64,
    /// Last panel power, W.
    pub solar_w: f64,
    /// Last node load, W.
    pub load_w: f64,
    /// Current power mode.
    pub mode: Mode,
    /// Energy that may be leased now, Wh.
    pub budget_wh: f64,
    /// Energy kept back for sunless days and below the shutdown threshold, Wh.
    pub reserve_wh: f64,
    /// Learned usable battery capacity, Wh.
    pub capacity_wh: f64,
    /// Predicted solar energy per slot over the next 48 hours.
    pub forecast: Vec<ForecastSlot>,
}

/// The power manager. See the module documentation.
#[derive(Debug, Clone)]
pub struct PowerManager {
    config: PowerConfig,
    soc: SocEstimator,
    forecaster: Forecaster,
    leases: LeaseBook,
    modes: ModeMachine,
    last_wake_alarm: Option<Timestamp>,
    /// The last measurement since this process started; `None` means the SoC may still be a
    /// placeholder, so nothing is spendable yet.
    last_measurement: Option<Measurement>,
    /// Forecast as of the last observation (or of start-up).
    forecast: Vec<ForecastSlot>,
}

impl PowerManager {
    /// A manager continuing from `restored` (or starting afresh) at `now`.
    pub fn new(config: PowerConfig, restored: Option<PowerState>, now: Timestamp) -> Self {
        let (soc, forecast, leases, mode, last_wake_alarm) = match restored {
            Some(state) => (
                Some(state.soc),
                Some(state.forecast),
                Some(state.leases),
                Some(state.mode),
                state.last_wake_alarm,
            ),
            None => (None, None, None, None, None),
        };
        let forecaster = Forecaster::with_config(
            config.solar.site(),
            config.solar.panel_w,
            config.solar.forecast.clone(),
            forecast,
        );
        let forecast = forecaster.forecast(now, FORECAST_HORIZON_S);
        Self {
            soc: SocEstimator::new(config.battery.clone(), soc),
            leases: LeaseBook::new(config.policy.max_lease_s, leases),
            modes: ModeMachine::new(config.modes.clone(), mode),
            forecaster,
            forecast,
            last_wake_alarm,
            last_measurement: None,
            config,
        }
    }

    /// Takes one measurement: updates the SoC and the forecast, expires leases, recomputes
    /// the budget and steps the mode machine. Returns what the daemon must act on.
    pub fn observe(&mut self, now: Timestamp, measurement: Measurement) -> Vec<Event> {
        self.soc
            .update(now, measurement.battery_v, measurement.battery_a);
        self.forecaster.record(now, measurement.solar_w);
        self.last_measurement = Some(measurement);
        self.forecast = self.forecaster.forecast(now, FORECAST_HORIZON_S);

        let mut events: Vec<Event> = self
            .leases
            .expire(now)
            .into_iter()
            .map(Event::LeaseExpired)
            .collect();

        // The mode reflects the battery, not the bookkeeping: a lease the node has granted
        // must not push it into eco and throttle the very task the energy was promised to.
        let budget = self.budget(0.0);
        let inputs = ModeInputs {
            soc_low: self.soc_low(),
            spendable_wh: budget.spendable_wh,
        };
        events.extend(self.modes.observe(now, &inputs).map(Event::ModeChanged));
        events
    }

    /// The current readings and decisions.
    pub fn status(&self) -> PowerStatus {
        let budget = self.budget(self.leases.outstanding_wh());
        let last = self.last_measurement.unwrap_or_default();
        PowerStatus {
            soc_percent: self.soc.soc() * 100.0,
            soc_uncertainty_percent: self.soc.uncertainty() * 100.0,
            battery_v: last.battery_v,
            battery_a: last.battery_a,
            solar_w: last.solar_w,
            load_w: last.load_w,
            mode: self.modes.mode(),
            budget_wh: budget.spendable_wh,
            reserve_wh: budget.reserve_wh,
            capacity_wh: self.soc.capacity_wh(),
            forecast: self.forecast.clone(),
        }
    }

    /// The current power mode.
    pub fn mode(&self) -> Mode {
        self.modes.mode()
    }

    /// Asks for `wh` to run a task for `duration_s`. Critical and shutdown take nothing, eco
    /// only tasks no longer than `policy.eco_max_task_s`; the energy must fit the budget left
    /// after outstanding leases. A granted lease lowers the budget at once.
    pub fn request_budget(
        &mut self,
        now: Timestamp,
        wh: f64,
        duration_s: u32,
        reason: &str,
    ) -> Result<Lease, Refusal> {
        self.leases.check_request(wh, duration_s)?;
        match self.modes.mode() {
            Mode::Normal => {}
            Mode::Eco if duration_s <= self.config.policy.eco_max_task_s => {}
            refusing => return Err(Refusal::Mode(refusing)),
        }
        let available_wh = self.budget(self.leases.outstanding_wh()).spendable_wh;
        Ok(self
            .leases
            .grant(now, wh, duration_s, reason, available_wh)?)
    }

    /// Ends lease `lease_id` early, returning its energy to the budget. False if no such
    /// lease is outstanding at `now`; a lease past its end is left for [`Self::observe`] to
    /// report as expired.
    pub fn release_budget(&mut self, now: Timestamp, lease_id: &str) -> bool {
        let outstanding = self
            .leases
            .leases()
            .iter()
            .any(|lease| lease.id == lease_id && lease.expires_at > now);
        outstanding && self.leases.release(lease_id)
    }

    /// The outstanding leases, oldest first.
    pub fn leases(&self) -> &[Lease] {
        self.leases.leases()
    }

    /// When a node shutting down at `now` should be woken: the end of the first forecast slot
    /// at which the battery, drawing only the sleep load, is projected back above the
    /// shutdown exit threshold (the level at which the mode machine lets it leave Shutdown);
    /// clamped to the policy's sleep limits, and the longest sleep if the forecast never gets
    /// there.
    pub fn wake_time(&self, now: Timestamp) -> Timestamp {
        let capacity_wh = self.soc.capacity_wh();
        let modes = &self.config.modes;
        let policy = &self.config.policy;
        let recovered_at = first_time_above(
            self.soc_low() * capacity_wh,
            (modes.shutdown_soc + modes.soc_hysteresis) * capacity_wh,
            capacity_wh,
            policy.sleep_load_w,
            &self.forecaster.forecast(now, FORECAST_HORIZON_S),
        );
        let earliest = now + policy.min_sleep_s;
        let latest = now + policy.max_sleep_s;
        // max-then-min rather than `clamp`, which panics if a bad config inverts the bounds.
        recovered_at.map_or(latest, |at| at.max(earliest).min(latest))
    }

    /// Remembers the wake alarm the daemon armed, so it survives in [`PowerState`].
    pub fn record_wake_alarm(&mut self, at: Timestamp) {
        self.last_wake_alarm = Some(at);
    }

    /// The last wake alarm recorded with [`Self::record_wake_alarm`].
    pub fn last_wake_alarm(&self) -> Option<Timestamp> {
        self.last_wake_alarm
    }

    /// The state to persist.
    pub fn state(&self) -> PowerState {
        PowerState {
            soc: self.soc.state(),
            forecast: self.forecaster.state(),
            leases: self.leases.state(),
            mode: self.modes.state(),
            last_wake_alarm: self.last_wake_alarm,
        }
    }

    /// The SoC the decisions use: the estimate minus its uncertainty.
    fn soc_low(&self) -> f64 {
        (self.soc.soc() - self.soc.uncertainty()).max(0.0)
    }

    /// The budget as of the last observation with `leased_wh` outstanding; nothing is
    /// spendable before the first measurement of this run.
    fn budget(&self, leased_wh: f64) -> Budget {
        let capacity_wh = self.soc.capacity_wh();
        let policy = &self.config.policy;
        let budget = energy_budget(&BudgetInputs {
            energy_now_wh: self.soc.energy_wh(),
            capacity_wh,
            floor_wh: self.config.modes.shutdown_soc * capacity_wh,
            essential_load_w: policy.essential_load_w,
            reserve_days: policy.reserve_days,
            forecast: &self.forecast,
            leased_wh,
        });
        if self.last_measurement.is_some() {
            budget
        } else {
            Budget {
                spendable_wh: 0.0,
                ..budget
            }
        }
    }
}

/// End of the first slot at which the projected energy reaches `target_wh`.
fn first_time_above(
    energy_now_wh: f64,
    target_wh: f64,
    capacity_wh: f64,
    load_w: f64,
    forecast: &[ForecastSlot],
) -> Option<Timestamp> {
    project_energy(energy_now_wh, capacity_wh, load_w, forecast)
        .find(|point| point.energy_wh >= target_wh)
        .map(|point| point.at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forecast::SLOT_S;

    /// 2024-12-21 17:00 UTC: an hour after sunset in Tunis, the longest night of the year.
    const WINTER_EVENING: Timestamp = 1_734_800_400;
    /// The daemon's sampling period.
    const STEP_S: i64 = 10;
    /// A Pi 4 running tasks.
    const COMPUTE_W: f64 = 4.0;
    /// The small test node idling with only its sensors.
    const ESSENTIAL_W: f64 = 1.2;

    /// A node small enough to run flat in one night: a 40 Wh pack, a Zero 2 W-class node
    /// idling at 1.2 W (research notes §3.4) and a quarter day of reserve
    /// (0.25 × 24 h × 1.2 W = 7.2 Wh, plus the 8 % floor of 3.2 Wh).
    fn small_node() -> PowerConfig {
        PowerConfig {
            battery: BatterySpec {
                capacity_wh: 40.0,
                ..BatterySpec::default()
            },
            policy: Policy {
                essential_load_w: ESSENTIAL_W,
                reserve_days: 0.25,
                ..Policy::default()
            },
            ..PowerConfig::default()
        }
    }

    /// The battery the tests measure: it stores charge, and its terminal voltage is the
    /// chemistry's open-circuit voltage plus the I·R drop, as the estimator assumes.
    struct TestBattery {
        spec: BatterySpec,
        charge_ah: f64,
    }

    impl TestBattery {
        fn new(spec: &BatterySpec, soc: f64) -> Self {
            Self {
                spec: spec.clone(),
                charge_ah: soc * spec.capacity_ah(),
            }
        }

        fn soc(&self) -> f64 {
            self.charge_ah / self.spec.capacity_ah()
        }

        fn open_circuit_v(&self) -> f64 {
            self.spec.chemistry.open_circuit_voltage(self.soc())
                * f64::from(self.spec.cells_in_series)
        }

        /// Runs `duration_s` with the panel delivering `solar_w` and the node drawing
        /// `load_w`; returns what the sensors read at the end.
        fn run(&mut self, duration_s: i64, solar_w: f64, load_w: f64) -> Measurement {
            let battery_a = (solar_w - load_w) / self.open_circuit_v();
            self.charge_ah = (self.charge_ah + battery_a * duration_s as f64 / 3600.0)
                .clamp(0.0, self.spec.capacity_ah());
            Measurement {
                battery_v: self.open_circuit_v() + battery_a * self.spec.internal_resistance_ohm,
                battery_a,
                solar_w,
                load_w,
            }
        }
    }

    fn mode_changes(events: &[Event]) -> impl Iterator<Item = &Transition> {
        events.iter().filter_map(|event| match event {
            Event::ModeChanged(transition) => Some(transition),
            Event::LeaseExpired(_) => None,
        })
    }

    #[test]
    fn a_night_of_computing_steps_down_through_every_mode() {
        let config = small_node();
        let mut battery = TestBattery::new(&config.battery, 1.0);
        let mut manager = PowerManager::new(config, None, WINTER_EVENING);
        let mut transitions = Vec::new();
        let mut previous_soc = f64::INFINITY;
        let mut now = WINTER_EVENING;

        while manager.mode() != Mode::Shutdown && now < WINTER_EVENING + 14 * 3600 {
            now += STEP_S;
            // Tasks run until the node turns critical, then only the essentials.
            let load_w = if manager.mode() < Mode::Critical {
                COMPUTE_W
            } else {
                ESSENTIAL_W
            };
            let events = manager.observe(now, battery.run(STEP_S, 0.0, load_w));
            for transition in mode_changes(&events) {
                transitions.push((now, transition.clone(), battery.soc()));
            }
            let soc = manager.status().soc_percent;
            assert!(soc <= previous_soc + 1e-9, "SoC rose in the dark at {now}");
            previous_soc = soc;

            // Every half hour a client asks for an hour-long task and a ten-minute one.
            if (now - WINTER_EVENING) % SLOT_S == 0 {
                let budget_wh = manager.status().budget_wh;
                let long = manager.request_budget(now, 0.5, 3600, "hourly job");
                let short = manager.request_budget(now, 0.2, 600, "quick job");
                match manager.mode() {
                    Mode::Normal => {
                        assert_eq!(long.is_ok(), budget_wh >= 0.5, "{long:?}");
                    }
                    Mode::Eco => {
                        assert_eq!(long, Err(Refusal::Mode(Mode::Eco)));
                        assert_eq!(short.is_ok(), budget_wh >= 0.2, "{short:?}");
                    }
                    refusing => {
                        assert_eq!(long, Err(Refusal::Mode(refusing)));
                        assert_eq!(short, Err(Refusal::Mode(refusing)));
                    }
                }
            }
        }

        let steps: Vec<(Mode, Mode)> = transitions
            .iter()
            .map(|(_, transition, _)| (transition.from, transition.to))
            .collect();
        assert_eq!(
            steps,
            [
                (Mode::Normal, Mode::Eco),
                (Mode::Eco, Mode::Critical),
                (Mode::Critical, Mode::Shutdown)
            ]
        );
        // Decisions use the low SoC estimate, so the battery is never below the shutdown
        // threshold when the node goes down, and each mode lasted at least the debounce.
        let (_, _, soc_at_shutdown) = transitions[2];
        assert!(soc_at_shutdown > 0.08, "{soc_at_shutdown}");
        for pair in transitions.windows(2) {
            assert!(pair[1].0 - pair[0].0 >= 60, "{pair:?}");
        }
    }

    #[test]
    fn expired_lease_returns_its_energy_to_the_budget() {
        let config = small_node();
        let mut battery = TestBattery::new(&config.battery, 1.0);
        let mut manager = PowerManager::new(config, None, WINTER_EVENING);
        // An idle, resting battery at night: the energy stays put, only the lease changes.
        let resting = battery.run(0, 0.0, 0.0);
        manager.observe(WINTER_EVENING, resting);
        let before_wh = manager.status().budget_wh;
        let lease = manager.request_budget(WINTER_EVENING, 2.0, 600, "job");
        let Ok(lease) = lease else {
            panic!("a full battery grants 2 Wh: {lease:?}");
        };
        assert!((manager.status().budget_wh - (before_wh - 2.0)).abs() < 1e-9);

        let events = manager.observe(WINTER_EVENING + 590, resting);
        assert!(events.is_empty(), "{events:?}");
        assert_eq!(manager.leases(), std::slice::from_ref(&lease));

        let events = manager.observe(WINTER_EVENING + 600, resting);
        assert_eq!(events, [Event::LeaseExpired(lease.clone())]);
        assert!(manager.leases().is_empty());
        // The projection moved ten minutes on, which frees 10 min × 1.2 W = 0.2 Wh of night.
        let returned_wh = manager.status().budget_wh - (before_wh - 2.0);
        assert!(
            (2.0..2.0 + 0.2 + 1e-6).contains(&returned_wh),
            "{returned_wh}"
        );
        assert!(!manager.release_budget(WINTER_EVENING + 600, &lease.id));
    }

    #[test]
    fn released_lease_frees_its_energy_at_once() {
        let config = small_node();
        let mut battery = TestBattery::new(&config.battery, 1.0);
        let mut manager = PowerManager::new(config, None, WINTER_EVENING);
        manager.observe(WINTER_EVENING, battery.run(0, 0.0, 0.0));
        let before_wh = manager.status().budget_wh;
        let lease = manager.request_budget(WINTER_EVENING, 1.5, 600, "job");
        let Ok(lease) = lease else {
            panic!("a full battery grants 1.5 Wh: {lease:?}");
        };
        assert!(manager.release_budget(WINTER_EVENING + 60, &lease.id));
        assert!(!manager.release_budget(WINTER_EVENING + 60, &lease.id));
        assert_eq!(manager.status().budget_wh, before_wh);
    }

    #[test]
    fn malformed_requests_are_refused_before_looking_at_the_budget() {
        let mut manager = PowerManager::new(small_node(), None, WINTER_EVENING);
        let Err(Refusal::InvalidRequest(message)) =
            manager.request_budget(WINTER_EVENING, f64::NAN, 600, "broken client")
        else {
            panic!("NaN energy must be an invalid request");
        };
        assert_eq!(
            message,
            "requested energy must be a positive number of Wh, got NaN"
        );
        assert!(matches!(
            manager.request_budget(WINTER_EVENING, 1.0, 7 * 3600, "too long"),
            Err(Refusal::InvalidRequest(_))
        ));
        // Before the first measurement the SoC is unknown: nothing is spendable.
        assert_eq!(
            manager.request_budget(WINTER_EVENING, 1.0, 600, "early"),
            Err(Refusal::InsufficientBudget {
                requested_wh: 1.0,
                available_wh: 0.0
            })
        );
    }

    #[test]
    fn restart_from_saved_state_continues_where_it_left_off() {
        let config = small_node();
        let mut battery = TestBattery::new(&config.battery, 1.0);
        let mut original = PowerManager::new(config.clone(), None, WINTER_EVENING);
        let mut now = WINTER_EVENING;
        while original.mode() != Mode::Eco {
            now += STEP_S;
            original.observe(now, battery.run(STEP_S, 0.0, COMPUTE_W));
        }
        let lease = original.request_budget(now, 0.2, 600, "quick job");
        assert!(lease.is_ok(), "{lease:?}");
        original.record_wake_alarm(now + 3600);

        let saved = serde_json::to_string(&original.state()).ok();
        let restored: Option<PowerState> = saved.and_then(|json| serde_json::from_str(&json).ok());
        assert_eq!(restored.as_ref(), Some(&original.state()));
        let mut copy = PowerManager::new(config, restored, now);
        assert_eq!(copy.mode(), Mode::Eco);
        assert_eq!(copy.leases(), original.leases());
        assert_eq!(copy.last_wake_alarm(), Some(now + 3600));
        assert_eq!(copy.status().soc_percent, original.status().soc_percent);

        // Fed the same measurements, both make the same decisions for the rest of the night.
        for _ in 0..(4 * 3600 / STEP_S) {
            now += STEP_S;
            let measurement = battery.run(STEP_S, 0.0, COMPUTE_W);
            assert_eq!(
                copy.observe(now, measurement),
                original.observe(now, measurement)
            );
        }
        assert_eq!(copy.state(), original.state());
    }

    /// Consecutive full slots from a slot boundary with the given solar energies.
    fn slots(start: Timestamp, solar_wh: &[f64]) -> Vec<ForecastSlot> {
        solar_wh
            .iter()
            .zip((0..).map(|index| start + index * SLOT_S))
            .map(|(&wh, start)| ForecastSlot { start, wh })
            .collect()
    }

    #[test]
    fn wake_target_is_reached_at_the_end_of_the_slot_that_crosses_it() {
        let start = WINTER_EVENING;
        // Asleep at 0.1 W (0.05 Wh a slot): 4 dark slots take 10 Wh to 9.8, then 1.05 Wh
        // slots add 1 Wh each; 12 Wh is reached after 3 sunny slots (12.8).
        let forecast = slots(start, &[0.0, 0.0, 0.0, 0.0, 1.05, 1.05, 1.05, 1.05]);
        assert_eq!(
            first_time_above(10.0, 12.0, 40.0, 0.1, &forecast),
            Some(start + 7 * SLOT_S)
        );
        assert_eq!(first_time_above(10.0, 20.0, 40.0, 0.1, &forecast), None);
        // Already above the target: the first slot end.
        assert_eq!(
            first_time_above(15.0, 12.0, 40.0, 0.1, &forecast),
            Some(start + SLOT_S)
        );
    }

    #[test]
    fn wake_time_is_clamped_to_the_sleep_limits() {
        let config = small_node();
        let policy = config.policy.clone();

        // An almost empty battery at 17:00 in December: no sun before the six-hour limit.
        let mut empty = TestBattery::new(&config.battery, 0.05);
        let mut manager = PowerManager::new(config.clone(), None, WINTER_EVENING);
        manager.observe(WINTER_EVENING, empty.run(0, 0.0, ESSENTIAL_W));
        assert_eq!(
            manager.wake_time(WINTER_EVENING),
            WINTER_EVENING + policy.max_sleep_s
        );

        // A full battery at 17:20 is above the target at the end of the current slot
        // (17:30), which is sooner than the shortest sleep allows.
        let now = WINTER_EVENING + 1200;
        let mut full = TestBattery::new(&config.battery, 1.0);
        let mut manager = PowerManager::new(config, None, now);
        manager.observe(now, full.run(0, 0.0, ESSENTIAL_W));
        assert_eq!(manager.wake_time(now), now + policy.min_sleep_s);
    }

    #[test]
    fn a_halted_node_is_woken_once_it_may_leave_shutdown() {
        // The seed node, halted at 5 % on a December evening, allowed to sleep for two days.
        let config = PowerConfig {
            policy: Policy {
                max_sleep_s: 2 * 86_400,
                ..Policy::default()
            },
            ..PowerConfig::default()
        };
        let mut empty = TestBattery::new(&config.battery, 0.05);
        let mut manager = PowerManager::new(config.clone(), None, WINTER_EVENING);
        manager.observe(WINTER_EVENING, empty.run(0, 0.0, 0.0));
        let wake_at = manager.wake_time(WINTER_EVENING);

        // Replaying the forecast from the low SoC estimate (0: a cold start knows the SoC only
        // to ±15 %) at the sleep load: the alarm is the first slot end at or above the
        // shutdown exit level (8 + 5 = 13 %), well before the battery would clear the critical
        // exit level (25 %).
        let status = manager.status();
        let low_wh = (status.soc_percent - status.soc_uncertainty_percent).max(0.0) / 100.0
            * status.capacity_wh;
        let level_at = |soc: f64| {
            first_time_above(
                low_wh,
                soc * status.capacity_wh,
                status.capacity_wh,
                config.policy.sleep_load_w,
                &status.forecast,
            )
        };
        assert_eq!(Some(wake_at), level_at(0.13));
        assert!(level_at(0.25).is_some_and(|critical_exit_at| critical_exit_at > wake_at));
        // Through the night and into the morning: not before sunrise, not at the limit.
        assert!(wake_at > WINTER_EVENING + 12 * 3600, "{wake_at}");
        assert!(wake_at < WINTER_EVENING + config.policy.max_sleep_s);
    }

    #[test]
    fn seed_defaults_validate_and_sections_can_be_partial() {
        assert_eq!(PowerConfig::default().validate(), Ok(()));
        let parsed: Result<PowerConfig, _> = serde_json::from_str(
            r#"{"policy": {"reserve_days": 1.5}, "modes": {"debounce_s": 30}}"#,
        );
        let Ok(parsed) = parsed else {
            panic!("partial sections parse: {parsed:?}");
        };
        assert_eq!(parsed.policy.reserve_days, 1.5);
        assert_eq!(parsed.policy.essential_load_w, 2.7);
        assert_eq!(parsed.modes.debounce_s, 30);
        assert_eq!(parsed.battery, BatterySpec::default());

        let misspelt: Result<PowerConfig, _> =
            serde_json::from_str(r#"{"policy": {"reserve_day": 1.5}}"#);
        assert!(misspelt.is_err(), "unknown keys are rejected");
    }

    #[test]
    fn inconsistent_policy_is_rejected_naming_the_key() {
        let cases = [
            (
                Policy {
                    max_sleep_s: 600,
                    ..Policy::default()
                },
                "policy.max_sleep_s must be between policy.min_sleep_s (900) and 604800, got 600",
            ),
            (
                Policy {
                    sleep_load_w: 3.0,
                    ..Policy::default()
                },
                "policy.sleep_load_w must be between 0 and 2.7, got 3",
            ),
            (
                Policy {
                    eco_max_task_s: 7 * 3600,
                    ..Policy::default()
                },
                "policy.eco_max_task_s must be between 1 and policy.max_lease_s (21600), got 25200",
            ),
            (
                Policy {
                    essential_load_w: -2.7,
                    ..Policy::default()
                },
                "policy.essential_load_w must be > 0, got -2.7",
            ),
        ];
        for (policy, message) in cases {
            let config = PowerConfig {
                policy,
                ..PowerConfig::default()
            };
            assert_eq!(
                config.validate().map_err(|error| error.to_string()),
                Err(message.to_owned())
            );
        }
        let off_the_globe = PowerConfig {
            solar: SolarConfig {
                latitude: 97.0,
                ..SolarConfig::default()
            },
            ..PowerConfig::default()
        };
        assert_eq!(
            off_the_globe
                .validate()
                .map_err(|error| error.key().to_owned()),
            Err("solar.latitude".to_owned())
        );
    }
}
