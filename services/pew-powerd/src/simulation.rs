//! The simulated node behind `source.kind = "simulated"` (the dev node, emulation, tests): a
//! battery and panel replaying a real typical meteorological year, on a clock that may run
//! faster than real time and that jumps ahead while the simulated node is powered off.

use std::time::Instant;

use anyhow::{Context, Result};
use pew_power::Timestamp;
use pew_power::chemistry::BatterySpec;
use pew_power::manager::Measurement;
use pew_sim::battery::BatteryModel;
use pew_sim::node::SimulatedNode;
use pew_sim::pv::PvPanel;
use pew_sim::weather::{SiteName, Weather};

use crate::config::SimulationConfig;

/// Longest interval simulated in one battery step, so that a fast clock still follows the
/// weather's hourly changes and the charge taper near full.
const MAX_STEP_S: i64 = 60;

/// Simulated time: `start + speed × elapsed real time + time skipped while powered off`.
#[derive(Debug, Clone)]
pub struct SimClock {
    start: Timestamp,
    started: Instant,
    speed: f64,
    skipped_s: i64,
}

impl SimClock {
    pub fn new(start: Timestamp, speed: f64) -> Self {
        Self {
            start,
            started: Instant::now(),
            speed,
            skipped_s: 0,
        }
    }

    pub fn now(&self) -> Timestamp {
        self.start + (self.started.elapsed().as_secs_f64() * self.speed) as i64 + self.skipped_s
    }

    fn skip_to(&mut self, t: Timestamp) {
        self.skipped_s += (t - self.now()).max(0);
    }
}

pub struct Simulation {
    node: SimulatedNode,
    clock: SimClock,
    idle_w: f64,
    site: (f64, f64),
    last: Option<Measurement>,
}

impl Simulation {
    pub fn new(
        config: &SimulationConfig,
        battery: &BatterySpec,
        panel_w: f64,
        now: Timestamp,
    ) -> Result<Self> {
        let site: SiteName = config
            .site
            .parse()
            .with_context(|| format!("simulation.site = {:?}", config.site))?;
        let weather = Weather::site(site).context("shipped weather file")?;
        let start = if config.start == 0 { now } else { config.start };
        let model = BatteryModel::new(battery.clone(), config.initial_soc);
        let site = (weather.station().latitude, weather.station().longitude);
        Ok(Self {
            node: SimulatedNode::new(weather, PvPanel::new(panel_w), model, start),
            clock: SimClock::new(start, config.speed),
            idle_w: config.idle_w,
            site,
            last: None,
        })
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// The weather site's coordinates, so the forecaster's sun matches the replayed one.
    pub fn site(&self) -> (f64, f64) {
        self.site
    }

    /// Runs the node up to the clock's now with the Pi drawing its idle power plus
    /// `compute_w`, and returns the last step's readings.
    pub fn measure(&mut self, compute_w: f64) -> Measurement {
        let now = self.clock.now();
        self.run_until(now, self.idle_w + compute_w);
        self.last.unwrap_or(Measurement {
            battery_v: 0.0,
            battery_a: 0.0,
            solar_w: 0.0,
            load_w: 0.0,
        })
    }

    /// The node is powered off until `wake_at`, drawing `halt_w` (the HAT's standby), then the
    /// clock resumes from there as the RTC alarm would power it back on.
    pub fn power_off_until(&mut self, wake_at: Timestamp, halt_w: f64) {
        self.run_until(wake_at, halt_w);
        self.clock.skip_to(wake_at);
    }

    fn run_until(&mut self, t: Timestamp, load_w: f64) {
        while self.node.clock() < t {
            let from = self.node.clock();
            let step = self.node.step(from, (t - from).min(MAX_STEP_S), load_w);
            if step.brownout {
                tracing::error!(
                    at = from,
                    "simulated battery is empty: the node browned out"
                );
            }
            self.last = Some(step.measurement);
        }
    }
}
