//! A whole simulated node: real weather on a PV panel, feeding a battery that supplies the
//! Raspberry Pi's load. It produces what pew-powerd's sensors would read, so the power manager
//! can be driven by it exactly as by the hardware.

use pew_power::Timestamp;
use pew_power::manager::Measurement;

use crate::battery::BatteryModel;
use crate::pv::PvPanel;
use crate::weather::{Conditions, Weather};

/// What one step of the node did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NodeStep {
    /// The step's mean readings as the sensors report them: battery terminal voltage and
    /// current, solar power actually harvested (after curtailment), load power actually supplied.
    pub measurement: Measurement,
    /// Weather in the middle of the step.
    pub conditions: Conditions,
    /// Power the panel could have delivered, W.
    pub available_solar_w: f64,
    /// Solar power thrown away because the battery could not take it, W.
    pub curtailed_w: f64,
    /// Load power that could not be supplied, W.
    pub unsupplied_w: f64,
    /// Power dissipated in the battery, W.
    pub battery_loss_w: f64,
    /// The battery could not supply the load: the Pi lost power during this step.
    pub brownout: bool,
}

/// Weather, panel and battery of one node, and the time up to which they have been simulated.
#[derive(Clone, Debug)]
pub struct SimulatedNode {
    weather: Weather,
    panel: PvPanel,
    battery: BatteryModel,
    clock: Timestamp,
}

impl SimulatedNode {
    /// A node whose simulation starts at `start`.
    pub fn new(weather: Weather, panel: PvPanel, battery: BatteryModel, start: Timestamp) -> Self {
        Self {
            weather,
            panel,
            battery,
            clock: start,
        }
    }

    /// End of the last simulated step (the start time before the first).
    pub fn clock(&self) -> Timestamp {
        self.clock
    }

    /// The battery, with its true state of charge.
    pub fn battery(&self) -> &BatteryModel {
        &self.battery
    }

    /// Simulates the interval `now .. now + dt_s` with the Pi drawing `load_w`; the solar
    /// surplus charges the battery and a deficit is drawn from it. The clock moves to the end
    /// of the interval.
    pub fn step(&mut self, now: Timestamp, dt_s: i64, load_w: f64) -> NodeStep {
        let conditions = self.weather.at(now + dt_s / 2);
        let available_solar_w = self.panel.power_w(conditions.ghi_w_m2, conditions.temp_c);
        let load_w = load_w.max(0.0);
        let battery = self.battery.step(dt_s as f64, available_solar_w - load_w);
        self.clock = now + dt_s;
        NodeStep {
            measurement: Measurement {
                battery_v: battery.terminal_v,
                battery_a: battery.current_a,
                solar_w: available_solar_w - battery.curtailed_w,
                load_w: load_w - battery.unsupplied_w,
            },
            conditions,
            available_solar_w,
            curtailed_w: battery.curtailed_w,
            unsupplied_w: battery.unsupplied_w,
            battery_loss_w: battery.loss_w,
            brownout: battery.brownout,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::{DAY_S, HOUR_S};
    use crate::weather::SiteName;
    use pew_power::calendar::days_from_civil;
    use pew_power::chemistry::BatterySpec;

    fn greensboro_node(soc: f64, start: Timestamp) -> SimulatedNode {
        let weather = Weather::site(SiteName::Greensboro).expect("shipped weather parses");
        let battery = BatteryModel::new(BatterySpec::default(), soc);
        SimulatedNode::new(weather, PvPanel::new(60.0), battery, start)
    }

    fn june_noon_utc() -> Timestamp {
        // 17:00 UTC is about local solar noon in Greensboro.
        days_from_civil(2025, 6, 15) * DAY_S + 17 * HOUR_S
    }

    #[test]
    fn night_load_is_drawn_from_the_battery() {
        let midnight = days_from_civil(2025, 6, 15) * DAY_S + 5 * HOUR_S;
        let mut node = greensboro_node(0.5, midnight);
        let step = node.step(midnight, 300, 5.0);
        assert_eq!(step.measurement.solar_w, 0.0);
        assert_eq!(step.measurement.load_w, 5.0);
        assert!(step.measurement.battery_a < 0.0);
        // Power at the terminals is the load: V·I = −5 W.
        assert!((step.measurement.battery_v * step.measurement.battery_a + 5.0).abs() < 1e-9);
        assert_eq!(node.clock(), midnight + 300);
    }

    #[test]
    fn midday_surplus_charges_and_a_full_battery_curtails_it() {
        let noon = june_noon_utc();
        let mut node = greensboro_node(0.5, noon);
        let step = node.step(noon, 300, 3.0);
        assert!(
            step.available_solar_w > 3.0,
            "June noon in Greensboro should beat 3 W"
        );
        assert!(step.measurement.battery_a > 0.0);
        assert_eq!(step.curtailed_w, 0.0);

        let mut full = greensboro_node(1.0, noon);
        let step = full.step(noon, 300, 3.0);
        assert!(
            (step.measurement.solar_w - 3.0).abs() < 1e-9,
            "only the load is harvested"
        );
        assert!((step.curtailed_w - (step.available_solar_w - 3.0)).abs() < 1e-9);
    }

    #[test]
    fn empty_battery_at_night_browns_the_node_out() {
        let night = days_from_civil(2025, 1, 10) * DAY_S + 6 * HOUR_S;
        let mut node = greensboro_node(0.0, night);
        let step = node.step(night, 300, 2.7);
        assert!(step.brownout);
        assert_eq!(step.measurement.load_w, 0.0);
        assert_eq!(step.unsupplied_w, 2.7);
    }
}
