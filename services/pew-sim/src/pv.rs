//! A small PV panel behind an MPPT charge controller, PVWatts-style:
//! `P = P_rated · G/1000 · (1 + γ·(T_cell − 25 °C)) · derate`.
//!
//! Simplification: the panel is taken as horizontal and fed global horizontal irradiance. A
//! panel tilted towards the equator collects more in winter and less in summer, so this is
//! pessimistic exactly when energy is scarce — the right side to err on for a survival study.

/// Irradiance at standard test conditions, W/m².
const STC_IRRADIANCE_W_M2: f64 = 1000.0;
/// Cell temperature at standard test conditions, °C.
const STC_CELL_C: f64 = 25.0;
/// Irradiance and ambient temperature at which the nominal operating cell temperature is rated.
const NOCT_IRRADIANCE_W_M2: f64 = 800.0;
const NOCT_AMBIENT_C: f64 = 20.0;

/// A PV panel and the losses between it and the battery.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PvPanel {
    /// Rated power at standard test conditions, W.
    pub rated_w: f64,
    /// Relative power change per °C of cell temperature above 25 °C (negative for silicon).
    pub temperature_coefficient_per_c: f64,
    /// Nominal operating cell temperature, °C (800 W/m², 20 °C ambient, 1 m/s wind).
    pub noct_c: f64,
    /// Fraction left after MPPT tracking and conversion, wiring and soiling losses.
    pub system_derate: f64,
}

impl PvPanel {
    /// A crystalline-silicon panel of `rated_w` with typical small-system losses.
    pub fn new(rated_w: f64) -> Self {
        Self {
            rated_w,
            temperature_coefficient_per_c: -0.004,
            noct_c: 45.0,
            system_derate: 0.85,
        }
    }

    /// Cell temperature, °C: the NOCT model heats the cell above ambient in proportion to the
    /// irradiance it absorbs.
    pub fn cell_temperature_c(&self, irradiance_w_m2: f64, ambient_c: f64) -> f64 {
        ambient_c + (self.noct_c - NOCT_AMBIENT_C) * irradiance_w_m2 / NOCT_IRRADIANCE_W_M2
    }

    /// Power delivered to the battery side, W, for an irradiance on the panel and an ambient
    /// temperature. Never negative: a dark panel is disconnected by the controller.
    pub fn power_w(&self, irradiance_w_m2: f64, ambient_c: f64) -> f64 {
        let irradiance = irradiance_w_m2.max(0.0);
        let cell_c = self.cell_temperature_c(irradiance, ambient_c);
        let temperature_factor = 1.0 + self.temperature_coefficient_per_c * (cell_c - STC_CELL_C);
        (self.rated_w * irradiance / STC_IRRADIANCE_W_M2 * temperature_factor * self.system_derate)
            .max(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ambient temperature at which a panel's cells sit at 25 °C under 1000 W/m².
    fn ambient_for_stc_cell(panel: &PvPanel) -> f64 {
        STC_CELL_C - (panel.noct_c - NOCT_AMBIENT_C) * STC_IRRADIANCE_W_M2 / NOCT_IRRADIANCE_W_M2
    }

    #[test]
    fn standard_test_conditions_give_rated_power_times_derate() {
        let panel = PvPanel::new(60.0);
        let ambient = ambient_for_stc_cell(&panel);
        assert!((panel.cell_temperature_c(1000.0, ambient) - 25.0).abs() < 1e-9);
        assert!((panel.power_w(1000.0, ambient) - 60.0 * 0.85).abs() < 1e-9);
    }

    #[test]
    fn noct_conditions_heat_the_cell_to_noct() {
        let panel = PvPanel::new(60.0);
        assert!((panel.cell_temperature_c(800.0, 20.0) - 45.0).abs() < 1e-9);
        // 45 °C cell: 20 K above STC at −0.4 %/K loses 8 %.
        let expected = 60.0 * 0.8 * 0.92 * 0.85;
        assert!((panel.power_w(800.0, 20.0) - expected).abs() < 1e-9);
    }

    #[test]
    fn heat_lowers_output_and_cold_raises_it() {
        let panel = PvPanel::new(60.0);
        let mild = panel.power_w(600.0, 15.0);
        assert!(panel.power_w(600.0, 35.0) < mild);
        assert!(panel.power_w(600.0, -10.0) > mild);
    }

    #[test]
    fn darkness_and_bad_irradiance_give_zero() {
        let panel = PvPanel::new(60.0);
        assert_eq!(panel.power_w(0.0, 20.0), 0.0);
        assert_eq!(panel.power_w(-5.0, 20.0), 0.0);
    }
}
