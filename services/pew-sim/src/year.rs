//! The year simulation behind `cargo xtask sim power`: a simulated node replays a typical year
//! of real weather while the real [`PowerManager`] decides its mode, grants its compute
//! budget and schedules its sleep — exactly as pew-powerd does on the hardware.
//!
//! Each step: a synthetic worker asks the manager for budget for 30-minute compute tasks and
//! runs them in Normal (full power) or Eco (CPU capped, about half the compute power); the node
//! draws idle plus compute power; the manager observes the step's readings. In Shutdown the node
//! halts, drawing only the halt power, until the wake time the manager chose; then it boots,
//! restores the manager from its persisted state and observes afresh. If the battery cannot
//! carry the load the node browns out and stays dark until the charger has lifted the pack.

use std::fmt;

use pew_power::Timestamp;
use pew_power::chemistry::{BatterySpec, Chemistry, ConfigError};
use pew_power::forecast::{Forecaster, SlotAverage, SolarPredictor};
use pew_power::manager::{Policy, PowerConfig, PowerManager, PowerState, SolarConfig};
use pew_power::mode::Mode;
use pew_power::solar::Site;

use crate::battery::BatteryModel;
use crate::calendar::{DAY_S, HOUR_S};
use crate::node::{NodeStep, SimulatedNode};
use crate::pv::PvPanel;
use crate::weather::Weather;
use pew_power::calendar::days_from_civil;

/// A common (non-leap) year, so the typical year maps onto it day for day.
const SIM_YEAR: i64 = 2025;
/// Length of one synthetic compute task.
const TASK_S: u32 = 1800;
/// Share of the compute power a task draws in Eco, where the CPU is capped.
const ECO_COMPUTE_SHARE: f64 = 0.5;
/// True state of charge at which the pack's protection re-connects the load after a brownout:
/// the charger must have put some charge back first.
const REBOOT_SOC: f64 = 0.02;
/// Days with less potential harvest than this many hours at the panel's rated power are left
/// out of the forecast error: a percentage of almost nothing says nothing.
const MIN_SCORED_DAY_PANEL_HOURS: f64 = 0.25;

/// What to simulate.
#[derive(Clone, Debug, PartialEq)]
pub struct YearConfig {
    /// Rated panel power, W.
    pub panel_w: f64,
    /// The battery pack (also the manager's `[battery]` configuration).
    pub battery: BatterySpec,
    /// The Pi's draw while computing, W.
    pub load_w: f64,
    /// The Pi's draw when idle (essential services only), W.
    pub idle_w: f64,
    /// The draw of a halted node waiting for its wake alarm, W.
    pub halt_w: f64,
    /// Simulation step, s.
    pub step_s: i64,
    /// True state of charge at the start, 0..=1.
    pub initial_soc: f64,
    /// Days to simulate from January 1, local time.
    pub days: i64,
}

impl Default for YearConfig {
    /// The thesis hardware: Pi 4 (5 W computing, 2.7 W idle headless, ~0.1 W halted), a 60 W
    /// panel and the 185 Wh Li-ion power bank, simulated in 5-minute steps for a year.
    fn default() -> Self {
        Self {
            panel_w: 60.0,
            battery: BatterySpec::default(),
            load_w: 5.0,
            idle_w: 2.7,
            halt_w: 0.1,
            step_s: 300,
            initial_soc: 0.8,
            days: 365,
        }
    }
}

/// Why a simulation could not start.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SimError {
    /// The power manager rejects the configuration derived from the simulation's.
    #[error("power manager configuration: {0}")]
    Config(#[from] ConfigError),
    /// A simulation parameter is out of range.
    #[error("{0}")]
    Parameter(String),
}

/// Minimum, mean and maximum of a quantity over one day.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Band {
    /// Smallest value of the day.
    pub min: f64,
    /// Time-weighted mean of the day.
    pub mean: f64,
    /// Largest value of the day.
    pub max: f64,
}

/// One local day of the simulation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DaySummary {
    /// True state of charge, %.
    pub soc_pct: Band,
    /// Solar power harvested, W.
    pub solar_w: Band,
    /// Load power supplied, W.
    pub load_w: Band,
}

/// Mean absolute percentage error of day-ahead forecasts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ForecastScore {
    /// Mean |forecast − actual| / actual over the scored days, %.
    pub mape_pct: f64,
    /// Days that entered the mean.
    pub days: usize,
}

/// The outcome of a simulation.
#[derive(Clone, Debug, PartialEq)]
pub struct YearReport {
    /// The simulated configuration.
    pub config: YearConfig,
    /// Hours spent in each mode, in [`Mode::ALL`] order. Shutdown counts the time asleep plus
    /// the boot checks that found the battery still too low.
    pub mode_hours: [f64; 4],
    /// Hours the node was off: asleep or browned out.
    pub downtime_hours: f64,
    /// How often the node halted on the manager's decision.
    pub shutdowns: u32,
    /// How often the battery failed to carry the running node: what must never happen.
    pub brownout_events: u32,
    /// How often the battery went flat under a halted node, losing its wake alarm.
    pub power_lost_asleep: u32,
    /// Hours dark after the battery failed, running or halted.
    pub brownout_hours: f64,
    /// Lowest true state of charge, %.
    pub min_true_soc_pct: f64,
    /// Lowest state of charge the manager estimated, %.
    pub min_estimated_soc_pct: f64,
    /// Largest |estimated − true| state of charge while running, percentage points.
    pub max_soc_error_pct: f64,
    /// Compute tasks the manager granted budget for.
    pub tasks_granted: u32,
    /// Budget requests the manager refused.
    pub tasks_refused: u32,
    /// Energy drawn by compute on top of idle, Wh.
    pub compute_wh: f64,
    /// Energy the panel could have delivered, Wh.
    pub available_solar_wh: f64,
    /// Energy harvested into the node, Wh.
    pub harvested_wh: f64,
    /// Energy thrown away with the battery full, Wh.
    pub curtailed_wh: f64,
    /// Energy delivered to the load, Wh.
    pub consumed_wh: f64,
    /// Energy dissipated in the battery, Wh.
    pub battery_loss_wh: f64,
    /// Energy stored in the battery at the start, Wh.
    pub initial_energy_wh: f64,
    /// Energy stored in the battery at the end, Wh.
    pub final_energy_wh: f64,
    /// True state of charge at the end, 0..=1.
    pub final_soc: f64,
    /// Day-ahead forecast error of pew-power's forecaster.
    pub forecaster_score: ForecastScore,
    /// Day-ahead forecast error of the plain per-slot average.
    pub baseline_score: ForecastScore,
    /// One summary per simulated day.
    pub days: Vec<DaySummary>,
}

impl YearReport {
    /// Initial energy + harvest − consumption − battery losses − final energy, Wh: zero when
    /// the simulation neither creates nor loses energy.
    pub fn energy_balance_error_wh(&self) -> f64 {
        self.initial_energy_wh + self.harvested_wh
            - self.consumed_wh
            - self.battery_loss_wh
            - self.final_energy_wh
    }

    /// The node ended the year with at least the energy it started with.
    pub fn positive_energy(&self) -> bool {
        self.final_energy_wh >= self.initial_energy_wh
    }

    /// A report with nothing counted yet for a run starting with `node`.
    fn empty(config: YearConfig, node: &SimulatedNode) -> Self {
        let initial_energy_wh = node.battery().stored_energy_wh();
        let unscored = ForecastScore {
            mape_pct: f64::NAN,
            days: 0,
        };
        Self {
            days: Vec::with_capacity(usize::try_from(config.days).unwrap_or_default()),
            config,
            mode_hours: [0.0; 4],
            downtime_hours: 0.0,
            shutdowns: 0,
            brownout_events: 0,
            power_lost_asleep: 0,
            brownout_hours: 0.0,
            min_true_soc_pct: node.battery().soc() * 100.0,
            min_estimated_soc_pct: f64::INFINITY,
            max_soc_error_pct: 0.0,
            tasks_granted: 0,
            tasks_refused: 0,
            compute_wh: 0.0,
            available_solar_wh: 0.0,
            harvested_wh: 0.0,
            curtailed_wh: 0.0,
            consumed_wh: 0.0,
            battery_loss_wh: 0.0,
            initial_energy_wh,
            final_energy_wh: initial_energy_wh,
            final_soc: node.battery().soc(),
            forecaster_score: unscored,
            baseline_score: unscored,
        }
    }
}

/// What the Pi is doing.
enum NodeState {
    /// Powered and managed.
    Running(Box<PowerManager>),
    /// Halted by the manager; the RTC wakes it at `wake_at`.
    Asleep {
        wake_at: Timestamp,
        saved: Box<PowerState>,
    },
    /// The battery protection cut the power.
    BrownedOut { saved: Box<PowerState> },
}

/// The synthetic worker: one 30-minute compute task at a time, each under a lease.
struct Worker {
    /// Compute power on top of idle at full speed, W.
    full_compute_w: f64,
    task: Option<Task>,
    granted: u32,
    refused: u32,
}

/// A compute task holding a lease.
struct Task {
    lease_id: String,
    ends_at: Timestamp,
}

impl Worker {
    fn new(full_compute_w: f64) -> Self {
        Self {
            full_compute_w,
            task: None,
            granted: 0,
            refused: 0,
        }
    }

    /// Finishes or abandons the task as the mode requires, asks for budget for a new one when
    /// allowed, and returns the compute power drawn this step, W.
    fn run(&mut self, manager: &mut PowerManager, now: Timestamp) -> f64 {
        let compute_w = match manager.mode() {
            Mode::Normal => self.full_compute_w,
            Mode::Eco => self.full_compute_w * ECO_COMPUTE_SHARE,
            Mode::Critical | Mode::Shutdown => 0.0,
        };
        if let Some(task) = self
            .task
            .take_if(|task| now >= task.ends_at || compute_w == 0.0)
        {
            manager.release_budget(now, &task.lease_id);
        }
        if self.task.is_none() && compute_w > 0.0 {
            let task_wh = compute_w * f64::from(TASK_S) / 3600.0;
            match manager.request_budget(now, task_wh, TASK_S, "simulated compute task") {
                Ok(lease) => {
                    self.granted += 1;
                    self.task = Some(Task {
                        lease_id: lease.id,
                        ends_at: now + i64::from(TASK_S),
                    });
                }
                Err(_) => self.refused += 1,
            }
        }
        if self.task.is_some() { compute_w } else { 0.0 }
    }

    /// Stops the task before a graceful halt, returning its lease.
    fn stop(&mut self, manager: &mut PowerManager, now: Timestamp) {
        if let Some(task) = self.task.take() {
            manager.release_budget(now, &task.lease_id);
        }
    }

    /// Forgets the task after a power loss: its lease is never released and expires.
    fn lose(&mut self) {
        self.task = None;
    }
}

/// Accumulates one day's min/mean/max.
#[derive(Default)]
struct BandAccumulator {
    min: f64,
    max: f64,
    sum: f64,
    count: u32,
}

impl BandAccumulator {
    fn add(&mut self, value: f64) {
        if self.count == 0 {
            (self.min, self.max) = (value, value);
        }
        self.min = self.min.min(value);
        self.max = self.max.max(value);
        self.sum += value;
        self.count += 1;
    }

    fn finish(&self) -> Band {
        let mean = if self.count > 0 {
            self.sum / f64::from(self.count)
        } else {
            0.0
        };
        Band {
            min: self.min,
            mean,
            max: self.max,
        }
    }
}

/// The day in progress.
#[derive(Default)]
struct Day {
    soc_pct: BandAccumulator,
    solar_w: BandAccumulator,
    load_w: BandAccumulator,
    /// Energy the panel could deliver today, Wh.
    potential_wh: f64,
    /// pew-power's day-ahead forecast made at midnight, Wh.
    forecaster_wh: f64,
    /// The baseline's day-ahead forecast made at midnight, Wh.
    baseline_wh: f64,
}

impl Day {
    fn summary(&self) -> DaySummary {
        DaySummary {
            soc_pct: self.soc_pct.finish(),
            solar_w: self.solar_w.finish(),
            load_w: self.load_w.finish(),
        }
    }
}

/// Absolute percentage errors of one predictor's day-ahead forecasts.
struct ForecastJudge<P> {
    predictor: P,
    errors: Vec<f64>,
}

impl<P: SolarPredictor> ForecastJudge<P> {
    fn new(predictor: P) -> Self {
        Self {
            predictor,
            errors: Vec::new(),
        }
    }

    fn day_ahead_wh(&self, midnight: Timestamp) -> f64 {
        self.predictor
            .forecast(midnight, DAY_S)
            .iter()
            .map(|slot| slot.wh)
            .sum()
    }

    fn judge(&mut self, forecast_wh: f64, actual_wh: f64) {
        self.errors
            .push((forecast_wh - actual_wh).abs() / actual_wh);
    }

    fn score(&self) -> ForecastScore {
        let days = self.errors.len();
        let mape_pct = if days > 0 {
            self.errors.iter().sum::<f64>() / days as f64 * 100.0
        } else {
            f64::NAN
        };
        ForecastScore { mape_pct, days }
    }
}

/// Runs the simulation of `config` against `weather`.
pub fn simulate(weather: &Weather, config: &YearConfig) -> Result<YearReport, SimError> {
    let mut simulation = Simulation::new(weather, config)?;
    let steps_per_day = DAY_S / config.step_s;
    for day_number in 0..config.days {
        simulation.start_day();
        for _ in 0..steps_per_day {
            simulation.step();
        }
        simulation.end_day(day_number);
    }
    Ok(simulation.finish())
}

/// Runs the year twice and reports the second run, which starts from the battery charge the
/// first run ended with. A year is a cycle, so an arbitrary starting charge would make the
/// start-versus-end energy comparison say more about the guess than about the node.
pub fn simulate_steady(weather: &Weather, config: &YearConfig) -> Result<YearReport, SimError> {
    let spin_up = simulate(weather, config)?;
    simulate(
        weather,
        &YearConfig {
            initial_soc: spin_up.final_soc,
            ..config.clone()
        },
    )
}

/// The simulation in progress.
struct Simulation {
    config: YearConfig,
    power_config: PowerConfig,
    node: SimulatedNode,
    state: NodeState,
    worker: Worker,
    forecaster: ForecastJudge<Forecaster>,
    baseline: ForecastJudge<SlotAverage>,
    /// Days of history both forecasts average over; days before this many are not scored.
    history_days: i64,
    day: Day,
    report: YearReport,
    /// How long a woken node on its way out of Shutdown stays up before it acts on a Shutdown
    /// mode, s: pew-powerd's grace after boot, twice the mode debounce.
    shutdown_grace_s: i64,
    /// The first observation since the node (re)started; the grace runs from there.
    observing_since: Option<Timestamp>,
}

impl Simulation {
    fn new(weather: &Weather, config: &YearConfig) -> Result<Self, SimError> {
        validate(config)?;
        let station = weather.station();
        let site = Site {
            latitude: station.latitude,
            longitude: station.longitude,
        };
        let defaults = PowerConfig::default();
        let power_config = PowerConfig {
            battery: config.battery.clone(),
            solar: SolarConfig {
                latitude: site.latitude,
                longitude: site.longitude,
                panel_w: config.panel_w,
                ..defaults.solar
            },
            policy: Policy {
                essential_load_w: config.idle_w,
                sleep_load_w: config.halt_w,
                ..defaults.policy
            },
            ..defaults
        };
        power_config.validate()?;

        // Local standard midnight of January 1, so simulated days are the site's days.
        let start =
            days_from_civil(SIM_YEAR, 1, 1) * DAY_S - i64::from(station.utc_offset_h) * HOUR_S;
        let battery = BatteryModel::new(config.battery.clone(), config.initial_soc);
        let node = SimulatedNode::new(
            weather.clone(),
            PvPanel::new(config.panel_w),
            battery,
            start,
        );
        let manager = PowerManager::new(power_config.clone(), None, start);
        // The same tuning the manager's forecaster runs with; the baseline averages as many
        // days as its WCMA does, for a fair comparison.
        let forecast_config = power_config.solar.forecast.clone();
        let history_days = forecast_config.days;
        let forecaster = Forecaster::with_config(site, config.panel_w, forecast_config, None);
        let report = YearReport::empty(config.clone(), &node);
        Ok(Self {
            config: config.clone(),
            shutdown_grace_s: 2 * power_config.modes.debounce_s,
            power_config,
            state: NodeState::Running(Box::new(manager)),
            worker: Worker::new(config.load_w - config.idle_w),
            forecaster: ForecastJudge::new(forecaster),
            baseline: ForecastJudge::new(SlotAverage::new(history_days)),
            history_days: i64::try_from(history_days).unwrap_or(i64::MAX),
            observing_since: None,
            day: Day::default(),
            node,
            report,
        })
    }

    /// Local midnight: the forecasts for the day ahead are made now, as the node would.
    fn start_day(&mut self) {
        let midnight = self.node.clock();
        self.day = Day {
            forecaster_wh: self.forecaster.day_ahead_wh(midnight),
            baseline_wh: self.baseline.day_ahead_wh(midnight),
            ..Day::default()
        };
    }

    fn step(&mut self) {
        let now = self.node.clock();
        let step_h = self.config.step_s as f64 / 3600.0;
        self.boot_if_due(now);
        let (load_w, compute_w) = self.demand(now, step_h);
        let step = self.node.step(now, self.config.step_s, load_w);
        self.record(&step, compute_w, step_h);
        self.react(&step);
    }

    /// Wakes a sleeping node at its alarm, or reboots a browned-out one once the pack has
    /// recovered; either way the manager restarts from its persisted state.
    fn boot_if_due(&mut self, now: Timestamp) {
        let saved = match &self.state {
            NodeState::Asleep { wake_at, saved } if now >= *wake_at => saved,
            NodeState::BrownedOut { saved } if self.node.battery().soc() >= REBOOT_SOC => saved,
            _ => return,
        };
        let manager = PowerManager::new(self.power_config.clone(), Some((**saved).clone()), now);
        self.state = NodeState::Running(Box::new(manager));
        self.observing_since = None;
    }

    /// The node's draw for the step starting at `now`, and its compute share, W.
    fn demand(&mut self, now: Timestamp, step_h: f64) -> (f64, f64) {
        let report = &mut self.report;
        match &mut self.state {
            NodeState::Running(manager) => {
                report.mode_hours[mode_index(manager.mode())] += step_h;
                let compute_w = self.worker.run(manager, now);
                (self.config.idle_w + compute_w, compute_w)
            }
            NodeState::Asleep { .. } => {
                report.mode_hours[mode_index(Mode::Shutdown)] += step_h;
                report.downtime_hours += step_h;
                (self.config.halt_w, 0.0)
            }
            NodeState::BrownedOut { .. } => {
                report.downtime_hours += step_h;
                report.brownout_hours += step_h;
                (0.0, 0.0)
            }
        }
    }

    fn record(&mut self, step: &NodeStep, compute_w: f64, step_h: f64) {
        let report = &mut self.report;
        report.available_solar_wh += step.available_solar_w * step_h;
        report.harvested_wh += step.measurement.solar_w * step_h;
        report.curtailed_wh += step.curtailed_w * step_h;
        report.consumed_wh += step.measurement.load_w * step_h;
        report.battery_loss_wh += step.battery_loss_w * step_h;
        if !step.brownout {
            report.compute_wh += compute_w * step_h;
        }
        let true_soc_pct = self.node.battery().soc() * 100.0;
        report.min_true_soc_pct = report.min_true_soc_pct.min(true_soc_pct);

        let end = self.node.clock();
        // The forecasts are scored on what the panel could deliver, not on the harvest, which
        // a full battery curtails: the score should measure forecasting, not the battery.
        self.forecaster
            .predictor
            .record(end, step.available_solar_w);
        self.baseline.predictor.record(end, step.available_solar_w);
        self.day.potential_wh += step.available_solar_w * step_h;
        self.day.soc_pct.add(true_soc_pct);
        self.day.solar_w.add(step.measurement.solar_w);
        self.day.load_w.add(step.measurement.load_w);
    }

    /// What the node does after a step: a running node reports to its manager and halts when
    /// told to, unless it has just booted and is on its way out of Shutdown; any node whose
    /// power failed is dark until the pack recovers.
    ///
    /// pew-powerd acts on a Shutdown mode only after a grace of twice the debounce since boot,
    /// sampling every few seconds meanwhile, so a woken node whose battery has recovered leaves
    /// Shutdown within the grace. A simulation step is longer than the grace, and a single
    /// observation cannot complete a debounce: a woken node whose manager has started leaving
    /// Shutdown (a change to a milder mode pending) is therefore kept up for the grace,
    /// counted from its first observation, while one whose battery is still low halts after
    /// one step, as it would after the daemon's grace.
    fn react(&mut self, step: &NodeStep) {
        let end = self.node.clock();
        let next = match &mut self.state {
            NodeState::Running(manager) if step.brownout => {
                self.worker.lose();
                self.report.brownout_events += 1;
                Some(NodeState::BrownedOut {
                    saved: Box::new(manager.state()),
                })
            }
            NodeState::Running(manager) => {
                manager.observe(end, step.measurement);
                let observing_since = *self.observing_since.get_or_insert(end);
                let estimated_pct = manager.status().soc_percent;
                let true_pct = self.node.battery().soc() * 100.0;
                let report = &mut self.report;
                report.min_estimated_soc_pct = report.min_estimated_soc_pct.min(estimated_pct);
                report.max_soc_error_pct = report
                    .max_soc_error_pct
                    .max((estimated_pct - true_pct).abs());
                let in_grace = end - observing_since < self.shutdown_grace_s;
                let halting = manager.mode() == Mode::Shutdown
                    && !(in_grace && is_leaving_shutdown(&manager.state()));
                halting.then(|| {
                    self.worker.stop(manager, end);
                    self.report.shutdowns += 1;
                    let wake_at = manager.wake_time(end);
                    manager.record_wake_alarm(wake_at);
                    NodeState::Asleep {
                        wake_at,
                        saved: Box::new(manager.state()),
                    }
                })
            }
            // Even the halted node's trickle could not be carried: the wake alarm is lost.
            NodeState::Asleep { saved, .. } if step.brownout => {
                self.report.power_lost_asleep += 1;
                Some(NodeState::BrownedOut {
                    saved: saved.clone(),
                })
            }
            NodeState::Asleep { .. } | NodeState::BrownedOut { .. } => None,
        };
        if let Some(next) = next {
            self.state = next;
        }
    }

    /// Scores the day's forecasts against the day's potential harvest and closes its summary.
    fn end_day(&mut self, day_number: i64) {
        let min_scored_wh = self.config.panel_w * MIN_SCORED_DAY_PANEL_HOURS;
        let actual_wh = self.day.potential_wh;
        // The baseline needs its window of history before its forecasts mean anything.
        if actual_wh >= min_scored_wh && day_number >= self.history_days {
            self.forecaster.judge(self.day.forecaster_wh, actual_wh);
            self.baseline.judge(self.day.baseline_wh, actual_wh);
        }
        self.report.days.push(self.day.summary());
    }

    fn finish(mut self) -> YearReport {
        let report = &mut self.report;
        report.final_energy_wh = self.node.battery().stored_energy_wh();
        report.final_soc = self.node.battery().soc();
        report.tasks_granted = self.worker.granted;
        report.tasks_refused = self.worker.refused;
        report.forecaster_score = self.forecaster.score();
        report.baseline_score = self.baseline.score();
        if !report.min_estimated_soc_pct.is_finite() {
            // The manager never observed anything (the node never ran).
            report.min_estimated_soc_pct = f64::NAN;
        }
        self.report
    }
}

fn validate(config: &YearConfig) -> Result<(), SimError> {
    let parameter = |message: String| Err(SimError::Parameter(message));
    if config.step_s <= 0 || DAY_S % config.step_s != 0 {
        return parameter(format!(
            "step must divide a day into whole steps, got {} s",
            config.step_s
        ));
    }
    if config.days <= 0 {
        return parameter(format!("days must be > 0, got {}", config.days));
    }
    if !(config.idle_w >= 0.0 && config.load_w >= config.idle_w) {
        return parameter(format!(
            "load ({} W) must be at least the idle draw ({} W) >= 0",
            config.load_w, config.idle_w
        ));
    }
    if !(config.halt_w >= 0.0 && config.halt_w.is_finite()) {
        return parameter(format!("halt draw must be >= 0, got {} W", config.halt_w));
    }
    if !(0.0..=1.0).contains(&config.initial_soc) {
        return parameter(format!(
            "initial state of charge must be within 0..=1, got {}",
            config.initial_soc
        ));
    }
    Ok(())
}

/// Whether the mode machine has started the debounce of a change out of Shutdown.
fn is_leaving_shutdown(state: &PowerState) -> bool {
    state
        .mode
        .pending
        .iter()
        .any(|change| change.to < Mode::Shutdown)
}

fn mode_index(mode: Mode) -> usize {
    match mode {
        Mode::Normal => 0,
        Mode::Eco => 1,
        Mode::Critical => 2,
        Mode::Shutdown => 3,
    }
}

/// The chemistry as spelled in configuration.
fn chemistry_name(chemistry: Chemistry) -> &'static str {
    match chemistry {
        Chemistry::LiIon => "li-ion",
        Chemistry::LiFePo4 => "lifepo4",
    }
}

impl fmt::Display for YearReport {
    /// A table of the headline figures.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let config = &self.config;
        let row = |f: &mut fmt::Formatter<'_>, label: &str, value: String| {
            writeln!(f, "  {label:<38} {value:>14}")
        };
        writeln!(
            f,
            "{} days, {} W panel, {} Wh {} x{}, load {} W (idle {} W, halted {} W), step {} s",
            config.days,
            config.panel_w,
            config.battery.capacity_wh,
            chemistry_name(config.battery.chemistry),
            config.battery.cells_in_series,
            config.load_w,
            config.idle_w,
            config.halt_w,
            config.step_s
        )?;
        writeln!(f, "Modes")?;
        for (mode, hours) in Mode::ALL.iter().zip(self.mode_hours) {
            row(f, &format!("{mode} (h)"), format!("{hours:.1}"))?;
        }
        row(
            f,
            "downtime, asleep or browned out (h)",
            format!("{:.1}", self.downtime_hours),
        )?;
        row(f, "shutdowns", self.shutdowns.to_string())?;
        row(
            f,
            "brownouts while running",
            self.brownout_events.to_string(),
        )?;
        row(
            f,
            "battery flat while halted",
            self.power_lost_asleep.to_string(),
        )?;
        row(
            f,
            "hours dark after a brownout",
            format!("{:.1}", self.brownout_hours),
        )?;
        writeln!(f, "State of charge")?;
        row(
            f,
            "minimum, true (%)",
            format!("{:.1}", self.min_true_soc_pct),
        )?;
        row(
            f,
            "minimum, estimated (%)",
            format!("{:.1}", self.min_estimated_soc_pct),
        )?;
        row(
            f,
            "largest estimation error (points)",
            format!("{:.1}", self.max_soc_error_pct),
        )?;
        writeln!(f, "Energy")?;
        row(
            f,
            "compute tasks granted / refused",
            format!("{} / {}", self.tasks_granted, self.tasks_refused),
        )?;
        row(f, "compute energy (Wh)", format!("{:.0}", self.compute_wh))?;
        row(
            f,
            "solar available (Wh)",
            format!("{:.0}", self.available_solar_wh),
        )?;
        row(
            f,
            "solar harvested (Wh)",
            format!("{:.0}", self.harvested_wh),
        )?;
        row(
            f,
            "solar curtailed, battery full (Wh)",
            format!("{:.0}", self.curtailed_wh),
        )?;
        row(
            f,
            "consumed by the node (Wh)",
            format!("{:.0}", self.consumed_wh),
        )?;
        row(
            f,
            "battery losses (Wh)",
            format!("{:.0}", self.battery_loss_wh),
        )?;
        row(
            f,
            "battery energy initial -> final (Wh)",
            format!(
                "{:.1} -> {:.1}",
                self.initial_energy_wh, self.final_energy_wh
            ),
        )?;
        row(
            f,
            "positive energy",
            if self.positive_energy() { "yes" } else { "NO" }.to_owned(),
        )?;
        row(
            f,
            "energy balance error (Wh)",
            format!("{:.3}", self.energy_balance_error_wh()),
        )?;
        writeln!(f, "Day-ahead solar forecast at local midnight")?;
        for (name, score) in [
            ("pew-power Forecaster", self.forecaster_score),
            ("SlotAverage baseline", self.baseline_score),
        ] {
            row(
                f,
                &format!("{name}, MAPE (%)"),
                format!("{:.1} over {} d", score.mape_pct, score.days),
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plot::render_svg;
    use crate::weather::SiteName;
    use pew_power::mode::ModeState;

    fn three_days(site: SiteName, config: YearConfig) -> YearReport {
        let weather = Weather::site(site).expect("shipped weather parses");
        simulate(&weather, &YearConfig { days: 3, ..config }).expect("valid configuration")
    }

    #[test]
    fn steady_run_starts_where_the_spin_up_ended() {
        let weather = Weather::site(SiteName::Greensboro).expect("shipped weather parses");
        let config = YearConfig {
            days: 3,
            initial_soc: 0.3,
            ..YearConfig::default()
        };
        let spin_up = simulate(&weather, &config).expect("valid configuration");
        let steady = simulate_steady(&weather, &config).expect("valid configuration");
        assert!((steady.config.initial_soc - spin_up.final_soc).abs() < 1e-12);
        assert!((steady.initial_energy_wh - spin_up.final_energy_wh).abs() < 1e-9);
        assert_physically_sane(&steady);
    }

    fn assert_physically_sane(report: &YearReport) {
        let hours = report.config.days as f64 * 24.0;
        let accounted_h: f64 = report.mode_hours.iter().sum::<f64>() + report.brownout_hours;
        assert!(
            (accounted_h - hours).abs() < 1e-6,
            "{accounted_h} h accounted of {hours}"
        );
        let error = report.energy_balance_error_wh();
        assert!(error.abs() < 0.1, "energy balance off by {error} Wh");
        assert!(report.harvested_wh <= report.available_solar_wh + 1e-9);
        assert!(
            (report.available_solar_wh - report.harvested_wh - report.curtailed_wh).abs() < 1e-6,
            "available = harvested + curtailed"
        );
        assert!(report.battery_loss_wh > 0.0);
        assert_eq!(report.days.len(), report.config.days as usize);
        for day in &report.days {
            for band in [day.soc_pct, day.solar_w, day.load_w] {
                assert!(
                    band.min <= band.mean + 1e-9 && band.mean <= band.max + 1e-9,
                    "{band:?}"
                );
            }
            assert!(day.soc_pct.min >= 0.0 && day.soc_pct.max <= 100.0);
        }
    }

    #[test]
    fn seed_node_in_greensboro_winter_keeps_running_and_closes_its_energy_balance() {
        let report = three_days(SiteName::Greensboro, YearConfig::default());
        assert_physically_sane(&report);
        assert_eq!(report.brownout_events, 0);
        assert!(
            report.tasks_granted > 0,
            "an 80 % battery must fund some compute"
        );
        let compute_w = report.config.load_w - report.config.idle_w;
        let running_h: f64 = report.mode_hours[..2].iter().sum();
        assert!(report.compute_wh > 0.0 && report.compute_wh <= compute_w * running_h + 1e-9);
        // Idle draw alone over three days is a floor on what the node consumed.
        assert!(report.consumed_wh >= report.config.idle_w * 72.0 - 1e-6);
    }

    #[test]
    fn starved_node_sleeps_instead_of_browning_out() {
        // A 20 Wh pack and a 10 W panel in an Alaskan January (~3 Wh a day) cannot keep a Pi
        // up for three days (~65 Wh a day idle), but can keep it halted (~2.4 Wh a day).
        let config = YearConfig {
            panel_w: 10.0,
            battery: BatterySpec {
                capacity_wh: 20.0,
                ..BatterySpec::default()
            },
            initial_soc: 0.5,
            ..YearConfig::default()
        };
        let report = three_days(SiteName::SandPoint, config);
        assert_physically_sane(&report);
        assert!(report.shutdowns > 0);
        assert!(report.downtime_hours > 0.0);
        assert_eq!(
            report.brownout_events, 0,
            "the manager must halt before the pack is empty"
        );
        assert_eq!(
            report.power_lost_asleep, 0,
            "sleeping must outlast the night"
        );
        assert!(report.mode_hours[mode_index(Mode::Shutdown)] > 0.0);
    }

    #[test]
    fn woken_node_with_a_recovered_battery_leaves_shutdown_instead_of_halting_again() {
        let weather = Weather::site(SiteName::Greensboro).expect("shipped weather parses");
        let config = YearConfig {
            initial_soc: 0.6,
            ..YearConfig::default()
        };
        let mut simulation = Simulation::new(&weather, &config).expect("valid configuration");
        for _ in 0..12 {
            simulation.step();
        }
        // Put the node to sleep as if it had shut down, with an alarm due now; the battery it
        // wakes up to is at 60 %, far above the shutdown exit level.
        let NodeState::Running(manager) = &simulation.state else {
            panic!("a 60 % battery keeps the node running");
        };
        let mut saved = manager.state();
        saved.mode = ModeState {
            mode: Mode::Shutdown,
            pending: Vec::new(),
        };
        simulation.state = NodeState::Asleep {
            wake_at: simulation.node.clock(),
            saved: Box::new(saved),
        };

        // One observation cannot complete the debounce out of Shutdown, yet the node must stay
        // up, as pew-powerd does during its grace; the next observation leaves Shutdown.
        simulation.step();
        let NodeState::Running(manager) = &simulation.state else {
            panic!("the woken node halted again at its first observation");
        };
        assert_eq!(manager.mode(), Mode::Shutdown);
        simulation.step();
        let NodeState::Running(manager) = &simulation.state else {
            panic!("the woken node halted during its grace");
        };
        assert!(manager.mode() < Mode::Shutdown, "{}", manager.mode());
        assert_eq!(simulation.report.shutdowns, 0);
    }

    #[test]
    fn chart_of_a_run_is_small_and_has_three_panels() {
        let report = three_days(SiteName::Greensboro, YearConfig::default());
        let svg = render_svg(&report, "smoke <test>");
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 3);
        assert_eq!(svg.matches("<polygon").count(), 3);
        assert!(svg.contains("smoke &lt;test&gt;"));
        assert!(svg.len() < 1_000_000);
    }

    #[test]
    fn step_that_does_not_divide_a_day_is_rejected() {
        let weather = Weather::site(SiteName::Greensboro).expect("shipped weather parses");
        let config = YearConfig {
            step_s: 7,
            ..YearConfig::default()
        };
        assert!(matches!(
            simulate(&weather, &config),
            Err(SimError::Parameter(_))
        ));
        let config = YearConfig {
            load_w: 1.0,
            ..YearConfig::default()
        };
        assert!(matches!(
            simulate(&weather, &config),
            Err(SimError::Parameter(_))
        ));
    }
}
