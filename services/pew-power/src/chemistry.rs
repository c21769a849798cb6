//! Cell chemistry knowledge (open-circuit voltage curves and charge limits), the battery
//! description read from `[battery]`, and the configuration error shared by every config
//! section of this crate.
//!
//! The OCV tables are per cell, rested, at about 25 °C (research notes §3.2). They are generic
//! curves, not one datasheet: good enough to anchor a coulomb counter, not to replace it.

use serde::{Deserialize, Serialize};

/// A configuration value that cannot be used. `Display` names the offending key in TOML
/// notation, e.g. `battery.capacity_wh must be > 0, got -3`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{key} {requirement}")]
pub struct ConfigError {
    key: String,
    requirement: String,
}

impl ConfigError {
    /// An error for `key` (dotted TOML path) with a human-readable requirement that includes
    /// the rejected value.
    pub fn new(key: impl Into<String>, requirement: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            requirement: requirement.into(),
        }
    }

    /// The dotted TOML key that was rejected, e.g. `battery.capacity_wh`.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// What the value must be, with the rejected value, e.g. `must be > 0, got -3`.
    pub fn requirement(&self) -> &str {
        &self.requirement
    }

    /// Accepts finite values strictly above zero. NaN is rejected too, because every
    /// comparison with it is false.
    pub fn require_positive(key: &str, value: f64) -> Result<(), Self> {
        if value.is_finite() && value > 0.0 {
            Ok(())
        } else {
            Err(Self::new(key, format!("must be > 0, got {value}")))
        }
    }

    /// Accepts finite values in `min..=max`.
    pub fn require_within(key: &str, value: f64, min: f64, max: f64) -> Result<(), Self> {
        if value.is_finite() && (min..=max).contains(&value) {
            Ok(())
        } else {
            Err(Self::new(
                key,
                format!("must be between {min} and {max}, got {value}"),
            ))
        }
    }
}

/// Cell chemistry of the pack. TOML values: `"li-ion"`, `"lifepo4"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum Chemistry {
    /// Generic NMC/LCO lithium-ion or lithium-polymer (power banks, 18650 packs).
    #[default]
    #[serde(rename = "li-ion")]
    LiIon,
    /// Lithium iron phosphate.
    #[serde(rename = "lifepo4")]
    LiFePo4,
}

/// State-of-charge breakpoints shared by both OCV tables.
const OCV_SOC_POINTS: [f64; 12] = [
    0.0, 0.05, 0.10, 0.20, 0.30, 0.40, 0.50, 0.60, 0.70, 0.80, 0.90, 1.0,
];

/// Generic NMC/LCO cell, rested, 25 °C (research notes §3.2).
const LI_ION_OCV_V: [f64; 12] = [
    3.00, 3.45, 3.68, 3.74, 3.77, 3.79, 3.82, 3.87, 3.92, 3.98, 4.06, 4.20,
];

/// LiFePO4 cell, rested (community charts, research notes §3.2). The 5 % point is not in the
/// source; it is the midpoint of the 0–10 % segment so both tables share breakpoints.
const LIFEPO4_OCV_V: [f64; 12] = [
    2.50, 2.75, 3.00, 3.20, 3.22, 3.25, 3.26, 3.27, 3.30, 3.32, 3.35, 3.40,
];

/// Half-width of the SoC window over which the OCV slope is measured. The tables are
/// piecewise linear, so a point slope would jump at every breakpoint; a centred difference
/// over ±5 % gives a slope that varies continuously.
const SLOPE_HALF_WINDOW: f64 = 0.05;

/// An OCV reading whose SoC error (1 σ) reaches this value carries no useful information:
/// one day of coulomb counting with a cheap shunt monitor is about as good.
const USELESS_OCV_SOC_SIGMA: f64 = 0.10;

impl Chemistry {
    fn ocv_table(self) -> &'static [f64; 12] {
        match self {
            Self::LiIon => &LI_ION_OCV_V,
            Self::LiFePo4 => &LIFEPO4_OCV_V,
        }
    }

    /// Rested cell voltage in volts at state of charge `soc` (clamped to 0..=1).
    pub fn open_circuit_voltage(self, soc: f64) -> f64 {
        interpolate(&OCV_SOC_POINTS, self.ocv_table(), soc)
    }

    /// State of charge (0..=1) of a rested cell at `cell_v` volts; the inverse of
    /// [`Self::open_circuit_voltage`], clamped to the table's ends.
    pub fn soc_from_open_circuit_voltage(self, cell_v: f64) -> f64 {
        interpolate(self.ocv_table(), &OCV_SOC_POINTS, cell_v)
    }

    /// Local slope of the OCV curve around `soc`, in volts per unit SoC.
    pub fn ocv_slope(self, soc: f64) -> f64 {
        let low = (soc - SLOPE_HALF_WINDOW).clamp(0.0, 1.0 - 2.0 * SLOPE_HALF_WINDOW);
        let high = low + 2.0 * SLOPE_HALF_WINDOW;
        (self.open_circuit_voltage(high) - self.open_circuit_voltage(low)) / (high - low)
    }

    /// Uncertainty (1 σ, volts per cell) of a rested voltage as a stand-in for the true OCV:
    /// ADC error and residual relaxation for Li-ion; LiFePO4 adds its charge/discharge
    /// hysteresis of a few tens of millivolts, which dominates.
    pub fn rested_voltage_sigma_v(self) -> f64 {
        match self {
            Self::LiIon => 0.010,
            Self::LiFePo4 => 0.030,
        }
    }

    /// SoC uncertainty (1 σ) of an SoC read off the OCV curve at `soc` from a cell voltage known
    /// to within `voltage_sigma_v`: a voltage error maps to an SoC error through the slope.
    pub fn soc_sigma_from_voltage_sigma(self, soc: f64, voltage_sigma_v: f64) -> f64 {
        voltage_sigma_v / self.ocv_slope(soc)
    }

    /// How much a rested voltage tells about the SoC around `soc`, from 0 (nothing: flat part
    /// of the curve) to 1 (the voltage pins the SoC down). It falls linearly with the SoC error
    /// a rested reading implies, reaching 0 at ±10 % SoC; LiFePO4 between 30 and 90 % is 0.
    pub fn ocv_confidence(self, soc: f64) -> f64 {
        let sigma = self.soc_sigma_from_voltage_sigma(soc, self.rested_voltage_sigma_v());
        (1.0 - sigma / USELESS_OCV_SOC_SIGMA).clamp(0.0, 1.0)
    }

    /// Seconds without significant current before the terminal voltage is close enough to the
    /// OCV to be read as one. LiFePO4 relaxes more slowly.
    pub fn rest_before_ocv_s(self) -> i64 {
        match self {
            Self::LiIon => 1800,
            Self::LiFePo4 => 7200,
        }
    }

    /// Charger constant-voltage set point per cell; reaching it with a tapered current means full.
    pub fn full_charge_cell_v(self) -> f64 {
        match self {
            Self::LiIon => 4.20,
            Self::LiFePo4 => 3.60,
        }
    }

    /// Discharge cut-off voltage per cell: the OCV table's 0 %.
    pub fn cutoff_cell_v(self) -> f64 {
        self.ocv_table()[0]
    }

    /// Nominal cell voltage, used to convert between Ah and Wh.
    pub fn nominal_cell_v(self) -> f64 {
        match self {
            Self::LiIon => 3.7,
            Self::LiFePo4 => 3.2,
        }
    }

    /// Fraction of the charge current that ends up stored.
    pub fn coulombic_efficiency(self) -> f64 {
        0.99
    }
}

/// Piecewise-linear interpolation of `ys` over strictly increasing `xs`, clamped to the ends.
fn interpolate(xs: &[f64], ys: &[f64], x: f64) -> f64 {
    let last = xs.len() - 1;
    if x.is_nan() || x <= xs[0] {
        return ys[0];
    }
    if x >= xs[last] {
        return ys[last];
    }
    // `x` is strictly inside the table, so the first breakpoint not below it is in 1..=last.
    let upper = xs.partition_point(|&breakpoint| breakpoint < x);
    let lower = upper - 1;
    let fraction = (x - xs[lower]) / (xs[upper] - xs[lower]);
    ys[lower] + fraction * (ys[upper] - ys[lower])
}

/// The battery as configured in the `[battery]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case", default)]
pub struct BatterySpec {
    /// Cell chemistry.
    pub chemistry: Chemistry,
    /// Cells in series on the measured side (1 for a power bank measured at its cells).
    pub cells_in_series: u32,
    /// Nominal capacity in Wh; the SoC estimator learns the real one from here.
    pub capacity_wh: f64,
    /// Pack internal resistance in ohms, to estimate the OCV under load (V − I·R).
    pub internal_resistance_ohm: f64,
}

impl Default for BatterySpec {
    /// The seed hardware: a 50,000 mAh (185 Wh) single-cell-equivalent Li-ion power bank.
    fn default() -> Self {
        Self {
            chemistry: Chemistry::LiIon,
            cells_in_series: 1,
            capacity_wh: 185.0,
            // About a dozen parallel cells of ~50 mΩ, plus protection FETs and wiring.
            internal_resistance_ohm: 0.03,
        }
    }
}

/// More cells in series than any pack a Raspberry Pi node would run from (a 48 V LiFePO4
/// system has 16); a larger number is a typing error.
const MAX_CELLS_IN_SERIES: u32 = 24;

/// An internal resistance this high would be a dead pack; above it is a unit error (mΩ for Ω).
const MAX_INTERNAL_RESISTANCE_OHM: f64 = 5.0;

impl BatterySpec {
    /// Nominal pack voltage.
    pub fn nominal_v(&self) -> f64 {
        self.chemistry.nominal_cell_v() * f64::from(self.cells_in_series)
    }

    /// Nominal capacity in Ah at the nominal voltage.
    pub fn capacity_ah(&self) -> f64 {
        self.capacity_wh / self.nominal_v()
    }

    /// Best estimate of the per-cell open-circuit voltage from a terminal measurement:
    /// a charging current (`pack_a` > 0) raises the terminal voltage by I·R, a discharge lowers it.
    pub fn compensated_cell_v(&self, pack_v: f64, pack_a: f64) -> f64 {
        (pack_v - pack_a * self.internal_resistance_ohm) / f64::from(self.cells_in_series)
    }

    /// Rejects values that cannot describe a real pack, naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=MAX_CELLS_IN_SERIES).contains(&self.cells_in_series) {
            return Err(ConfigError::new(
                "battery.cells_in_series",
                format!(
                    "must be between 1 and {MAX_CELLS_IN_SERIES}, got {}",
                    self.cells_in_series
                ),
            ));
        }
        ConfigError::require_positive("battery.capacity_wh", self.capacity_wh)?;
        ConfigError::require_within(
            "battery.internal_resistance_ohm",
            self.internal_resistance_ohm,
            0.0,
            MAX_INTERNAL_RESISTANCE_OHM,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOTH: [Chemistry; 2] = [Chemistry::LiIon, Chemistry::LiFePo4];

    #[test]
    fn ocv_tables_hit_the_reference_points() {
        assert_eq!(Chemistry::LiIon.open_circuit_voltage(0.5), 3.82);
        assert_eq!(Chemistry::LiIon.open_circuit_voltage(1.0), 4.20);
        assert_eq!(Chemistry::LiFePo4.open_circuit_voltage(0.9), 3.35);
        assert_eq!(Chemistry::LiFePo4.open_circuit_voltage(0.0), 2.50);
        // Halfway between 3.82 V (50 %) and 3.87 V (60 %).
        assert!((Chemistry::LiIon.open_circuit_voltage(0.55) - 3.845).abs() < 1e-12);
    }

    #[test]
    fn ocv_ends_match_cutoff_and_rested_full() {
        for chemistry in BOTH {
            assert_eq!(
                chemistry.open_circuit_voltage(0.0),
                chemistry.cutoff_cell_v()
            );
            // A rested full cell sits at or below the charger's CV set point.
            assert!(chemistry.open_circuit_voltage(1.0) <= chemistry.full_charge_cell_v());
        }
    }

    #[test]
    fn ocv_is_strictly_increasing_and_inverse_round_trips() {
        for chemistry in BOTH {
            let mut previous = f64::NEG_INFINITY;
            for step in 0..=1000 {
                let soc = f64::from(step) / 1000.0;
                let volts = chemistry.open_circuit_voltage(soc);
                assert!(volts > previous, "{chemistry:?} not increasing at {soc}");
                previous = volts;
                let back = chemistry.soc_from_open_circuit_voltage(volts);
                assert!(
                    (back - soc).abs() < 1e-9,
                    "{chemistry:?}: {soc} -> {volts} V -> {back}"
                );
            }
        }
    }

    #[test]
    fn inverse_clamps_outside_the_table() {
        for chemistry in BOTH {
            assert_eq!(chemistry.soc_from_open_circuit_voltage(0.0), 0.0);
            assert_eq!(chemistry.soc_from_open_circuit_voltage(5.0), 1.0);
            assert_eq!(chemistry.soc_from_open_circuit_voltage(f64::NAN), 0.0);
        }
        assert_eq!(Chemistry::LiIon.open_circuit_voltage(-0.2), 3.00);
        assert_eq!(Chemistry::LiIon.open_circuit_voltage(1.3), 4.20);
    }

    #[test]
    fn lifepo4_plateau_gives_no_confidence() {
        for percent in 30..=85 {
            let soc = f64::from(percent) / 100.0;
            let confidence = Chemistry::LiFePo4.ocv_confidence(soc);
            assert!(confidence < 1e-9, "LiFePO4 at {percent} %: {confidence}");
        }
        // Only the knees are worth trusting (research notes §3.1: below 20 %, above 90 %),
        // the lower one being much steeper.
        assert!(Chemistry::LiFePo4.ocv_confidence(0.90) < 0.3);
        assert!(Chemistry::LiFePo4.ocv_confidence(0.97) > 0.3);
        assert!(Chemistry::LiFePo4.ocv_confidence(0.12) > 0.8);
    }

    #[test]
    fn li_ion_voltage_is_informative_everywhere() {
        for percent in 0..=100 {
            let soc = f64::from(percent) / 100.0;
            let confidence = Chemistry::LiIon.ocv_confidence(soc);
            assert!(
                confidence >= 0.4,
                "Li-ion at {percent} %: confidence {confidence}"
            );
            assert!(confidence <= 1.0);
        }
        // The steep tail near empty is far more telling than the 30–40 % shoulder.
        assert!(Chemistry::LiIon.ocv_confidence(0.05) > Chemistry::LiIon.ocv_confidence(0.35));
    }

    #[test]
    fn chemistry_names_in_toml_are_kebab_case() {
        assert_eq!(
            serde_json::to_string(&Chemistry::LiIon).ok().as_deref(),
            Some("\"li-ion\"")
        );
        assert_eq!(
            serde_json::to_string(&Chemistry::LiFePo4).ok().as_deref(),
            Some("\"lifepo4\"")
        );
        let parsed: Result<Chemistry, _> = serde_json::from_str("\"lifepo4\"");
        assert_eq!(parsed.ok(), Some(Chemistry::LiFePo4));
    }

    #[test]
    fn seed_power_bank_is_50_ah() {
        let spec = BatterySpec::default();
        assert_eq!(spec.validate(), Ok(()));
        assert!((spec.capacity_ah() - 50.0).abs() < 1e-9);
        let four_s = BatterySpec {
            chemistry: Chemistry::LiFePo4,
            cells_in_series: 4,
            ..spec
        };
        assert!((four_s.nominal_v() - 12.8).abs() < 1e-9);
    }

    #[test]
    fn ir_compensation_removes_the_drop_under_load() {
        let spec = BatterySpec {
            cells_in_series: 2,
            internal_resistance_ohm: 0.1,
            ..BatterySpec::default()
        };
        // Discharging 2 A through 0.1 Ω hides 0.2 V across the pack, 0.1 V per cell.
        assert!((spec.compensated_cell_v(7.4, -2.0) - 3.8).abs() < 1e-12);
        assert!((spec.compensated_cell_v(8.6, 2.0) - 4.2).abs() < 1e-12);
    }

    #[test]
    fn validation_names_the_key() {
        let negative = BatterySpec {
            capacity_wh: -3.0,
            ..BatterySpec::default()
        };
        let error = negative.validate().err();
        assert_eq!(
            error.as_ref().map(ConfigError::key),
            Some("battery.capacity_wh")
        );
        assert_eq!(
            error.map(|e| e.to_string()).as_deref(),
            Some("battery.capacity_wh must be > 0, got -3")
        );

        let no_cells = BatterySpec {
            cells_in_series: 0,
            ..BatterySpec::default()
        };
        assert_eq!(
            no_cells
                .validate()
                .err()
                .map(|e| e.key().to_owned())
                .as_deref(),
            Some("battery.cells_in_series")
        );

        let nan_resistance = BatterySpec {
            internal_resistance_ohm: f64::NAN,
            ..BatterySpec::default()
        };
        assert_eq!(
            nan_resistance
                .validate()
                .err()
                .map(|e| e.key().to_owned())
                .as_deref(),
            Some("battery.internal_resistance_ohm")
        );
    }
}
