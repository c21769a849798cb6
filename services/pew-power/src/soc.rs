//! State-of-charge estimation for a small Li-ion or LiFePO4 pack (research notes §3.1).
//!
//! Coulomb counting carries the estimate from sample to sample; three anchors pull it back to
//! the truth:
//! * a rested open-circuit voltage, fused with the counted SoC by inverse-variance weighting,
//!   so a voltage on a flat stretch of the OCV curve barely moves it;
//! * the end of a charge (charger at its CV set point, current tapered below C/20), which
//!   resets the SoC to 100 %;
//! * after a stretch we did not observe, the IR-compensated voltage of the first sample. A gap
//!   longer than the chemistry's rest time means the node was halted, the pack resting at a
//!   trickle, so that sample is read as an OCV taken under the Pi's boot load and anchors the
//!   estimate like a rested voltage; after a shorter gap (daemon restarted) the pack may still
//!   be polarised and the voltage gets a deliberately pessimistic uncertainty.
//!
//! The SoC change counted between two anchors that are far apart re-learns the capacity.
//! Uncertainty is a 1 σ figure in SoC units; it grows with every ampere-hour counted and with
//! time (current-sensor offset), and shrinks at anchors.

use serde::{Deserialize, Serialize};

use crate::Timestamp;
use crate::chemistry::BatterySpec;

/// Below C/100 the pack is resting: the terminal voltage relaxes towards the OCV.
const REST_C_RATE: f64 = 0.01;
/// A charger in constant-voltage phase whose current has fallen below C/20 has finished.
const TAPER_C_RATE: f64 = 0.05;
/// How far below the CV set point (per cell) still counts as "at the set point": shunt
/// monitors read a few tens of mV low, and a Li-ion cell at 4.17 V rested is ≥ 98 % full.
const FULL_CHARGE_TOLERANCE_CELL_V: f64 = 0.03;
/// The taper must last this long so a momentary load drop at high voltage is not taken for
/// the end of charge.
const FULL_CHARGE_HOLD_S: i64 = 300;
/// SoC uncertainty right after a full-charge anchor (the tolerance above spans ~2 %).
const FULL_ANCHOR_UNCERTAINTY: f64 = 0.02;

/// Longest interval across which a current is integrated. Beyond it the samples do not show
/// what happened in between (daemon stopped, node off while the panel charged the battery).
const MAX_INTEGRATION_GAP_S: i64 = 900;
/// How fast the SoC may have changed while unobserved: C/10, i.e. a panel charging or a
/// node running flat out, either way.
const UNOBSERVED_SOC_RATE_PER_S: f64 = 0.1 / 3600.0;

/// Relative gain error of a cheap shunt monitor; every counted Ah carries this much doubt.
const COUNTING_GAIN_ERROR: f64 = 0.02;
/// SoC drift from an uncalibrated current offset, 1 %/day (research notes §3.1: 1–3 %/day).
const OFFSET_DRIFT_PER_S: f64 = 0.01 / 86_400.0;
/// Standard deviation of a uniform distribution on 0..=1: an estimate worse than this knows
/// less than "somewhere between empty and full".
const MAX_UNCERTAINTY: f64 = 0.288_675_134_594_812_9;

/// Extra voltage error (per cell) of a terminal voltage under load or just after it, once the
/// I·R drop is removed: diffusion polarisation that only a long rest lets decay.
const UNRESTED_POLARISATION_SIGMA_V: f64 = 0.03;
/// Floor for the uncertainty of a voltage-only estimate (cold start, after a short gap): the
/// load history before the first sample is unknown, so even a steep OCV region gets no better.
const VOLTAGE_ESTIMATE_MIN_UNCERTAINTY: f64 = 0.15;
/// Extra voltage error (per cell) of the first sample after a power-off, once the I·R drop is
/// removed: the pack rested while the node was halted, but the sample is taken with the Pi
/// booting (~1.4 A from the seed bank, C/37), whose polarisation has had seconds to build.
const BOOT_LOAD_POLARISATION_SIGMA_V: f64 = 0.02;

/// A voltage whose implied SoC is at least this trustworthy may end or start a capacity
/// measurement.
const CAPACITY_ANCHOR_MIN_CONFIDENCE: f64 = 0.5;
/// Capacity is re-learned only over SoC spans larger than this: over a short span the anchor
/// errors dominate the Ah counted.
const CAPACITY_MIN_SOC_SPAN: f64 = 0.4;
/// Fraction of the gap between learned and measured capacity closed per measurement.
const CAPACITY_LEARNING_GAIN: f64 = 0.2;
/// Learned capacity bounds as fractions of nominal: an aged pack at half capacity is due for
/// replacement; no pack holds much more than its rating.
const CAPACITY_MIN_FRACTION: f64 = 0.5;
const CAPACITY_MAX_FRACTION: f64 = 1.1;

/// Cell voltages outside these multiples of the chemistry's limits are sensor faults, not
/// batteries (a disconnected monitor reads 0 V).
const PLAUSIBLE_CELL_V_LOW_FRACTION: f64 = 0.5;
const PLAUSIBLE_CELL_V_HIGH_FRACTION: f64 = 1.2;

/// Everything the estimator must remember across restarts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SocState {
    /// State of charge, 0..=1.
    soc: f64,
    /// 1 σ of `soc`.
    uncertainty: f64,
    /// Learned usable capacity.
    capacity_ah: f64,
    /// The last accepted sample; `None` until the first one (cold start pending).
    last_sample: Option<Sample>,
    /// The current rest period, if the pack is resting.
    rest: Option<Rest>,
    /// Since when the charger has held the CV set point with a tapered current.
    taper_since: Option<Timestamp>,
    /// Ah counted since the last anchor whose SoC was known well, for capacity learning.
    capacity_span: Option<CapacitySpan>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Sample {
    at: Timestamp,
    pack_a: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Rest {
    since: Timestamp,
    /// The OCV of this rest has been used; one rest is one measurement.
    anchored: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct CapacitySpan {
    start_soc: f64,
    /// Net stored charge (charging counted after coulombic losses).
    counted_ah: f64,
}

/// Coulomb counter with OCV, full-charge and after-gap anchors. See the module documentation.
#[derive(Debug, Clone)]
pub struct SocEstimator {
    spec: BatterySpec,
    state: SocState,
}

impl SocEstimator {
    /// An estimator for `spec`. `restored` state that does not fit `spec` (for instance a
    /// learned capacity far from the configured one after a battery swap) or holds
    /// non-finite numbers is discarded. Without state, the first [`Self::update`] initialises
    /// the SoC from the IR-compensated voltage with a large uncertainty; until then
    /// [`Self::soc`] is 0.5 with maximal uncertainty.
    pub fn new(spec: BatterySpec, restored: Option<SocState>) -> Self {
        let state = restored
            .filter(|state| state.is_consistent_with(&spec))
            .unwrap_or_else(|| SocState::unknown(&spec));
        Self { spec, state }
    }

    /// Feeds one measurement of pack voltage and current (`pack_a` > 0 charging) taken at `now`.
    /// Samples with non-finite values or a voltage no pack of this kind can have are ignored.
    pub fn update(&mut self, now: Timestamp, pack_v: f64, pack_a: f64) {
        if !self.is_plausible(pack_v, pack_a) {
            return;
        }
        let previous = self.state.last_sample.replace(Sample { at: now, pack_a });
        match previous {
            None => self.start_from_voltage(pack_v, pack_a),
            // Saturating: a corrupt restored timestamp must read as a gap, not overflow.
            Some(previous) => match now.saturating_sub(previous.at) {
                // A repeated timestamp carries no new interval.
                0 => return,
                elapsed_s @ 1..=MAX_INTEGRATION_GAP_S => {
                    self.count(elapsed_s, previous.pack_a, pack_a)
                }
                elapsed_s => self.recover_from_gap(elapsed_s, pack_v, pack_a),
            },
        }
        self.track_rest(now, pack_v, pack_a);
        self.track_end_of_charge(now, pack_v, pack_a);
    }

    /// State of charge, 0..=1.
    pub fn soc(&self) -> f64 {
        self.state.soc
    }

    /// 1 σ uncertainty of [`Self::soc`], in SoC units (0.05 = ±5 percentage points). Decisions
    /// that must not run the battery flat should use `soc() - uncertainty()`.
    pub fn uncertainty(&self) -> f64 {
        self.state.uncertainty
    }

    /// Learned usable capacity in Wh at the nominal voltage.
    pub fn capacity_wh(&self) -> f64 {
        self.state.capacity_ah * self.spec.nominal_v()
    }

    /// Energy left until empty, in Wh.
    pub fn energy_wh(&self) -> f64 {
        self.soc() * self.capacity_wh()
    }

    /// The state to persist.
    pub fn state(&self) -> SocState {
        self.state.clone()
    }

    fn is_plausible(&self, pack_v: f64, pack_a: f64) -> bool {
        let chemistry = self.spec.chemistry;
        let cell_v = pack_v / f64::from(self.spec.cells_in_series);
        pack_a.is_finite()
            && cell_v >= PLAUSIBLE_CELL_V_LOW_FRACTION * chemistry.cutoff_cell_v()
            && cell_v <= PLAUSIBLE_CELL_V_HIGH_FRACTION * chemistry.full_charge_cell_v()
    }

    fn start_from_voltage(&mut self, pack_v: f64, pack_a: f64) {
        (self.state.soc, self.state.uncertainty) = self.voltage_estimate(pack_v, pack_a);
    }

    /// The SoC a terminal voltage implies once I·R is removed, with its 1 σ.
    fn voltage_estimate(&self, pack_v: f64, pack_a: f64) -> (f64, f64) {
        let chemistry = self.spec.chemistry;
        let soc =
            chemistry.soc_from_open_circuit_voltage(self.spec.compensated_cell_v(pack_v, pack_a));
        let voltage_sigma = chemistry
            .rested_voltage_sigma_v()
            .hypot(UNRESTED_POLARISATION_SIGMA_V);
        let uncertainty = chemistry
            .soc_sigma_from_voltage_sigma(soc, voltage_sigma)
            .clamp(VOLTAGE_ESTIMATE_MIN_UNCERTAINTY, MAX_UNCERTAINTY);
        (soc, uncertainty)
    }

    /// After an unobserved interval the counted SoC is stale by an unknown amount: widen its
    /// uncertainty by what could have happened, then let the voltage pull it. After a gap long
    /// enough for the pack to have rested, the voltage is an OCV reading; where the OCV curve
    /// is too flat to tell anything (LiFePO4 plateau), or after a short gap, it is only the
    /// pessimistic voltage estimate.
    fn recover_from_gap(&mut self, elapsed_s: i64, pack_v: f64, pack_a: f64) {
        let unobserved = if elapsed_s > 0 {
            elapsed_s as f64 * UNOBSERVED_SOC_RATE_PER_S
        } else {
            // The clock went backwards: how long we were away is unknowable.
            MAX_UNCERTAINTY
        };
        self.widen(unobserved);
        // Ah counted across a hole are not a measurement of anything.
        self.state.capacity_span = None;
        self.state.rest = None;
        self.state.taper_since = None;
        let rested = elapsed_s > self.spec.chemistry.rest_before_ocv_s();
        let boot_voltage_sigma_v = self
            .spec
            .chemistry
            .rested_voltage_sigma_v()
            .hypot(BOOT_LOAD_POLARISATION_SIGMA_V);
        if rested && self.anchor_on_open_circuit_voltage(pack_v, pack_a, boot_voltage_sigma_v) {
            return;
        }
        let (soc, uncertainty) = self.voltage_estimate(pack_v, pack_a);
        self.fuse(soc, uncertainty);
    }

    /// Trapezoidal integration of the current over `elapsed_s`.
    fn count(&mut self, elapsed_s: i64, previous_a: f64, pack_a: f64) {
        let mean_a = 0.5 * (previous_a + pack_a);
        let hours = elapsed_s as f64 / 3600.0;
        let efficiency = if mean_a > 0.0 {
            self.spec.chemistry.coulombic_efficiency()
        } else {
            1.0
        };
        let stored_ah = efficiency * mean_a * hours;
        let capacity_ah = self.state.capacity_ah;
        self.state.soc = (self.state.soc + stored_ah / capacity_ah).clamp(0.0, 1.0);
        if let Some(span) = &mut self.state.capacity_span {
            span.counted_ah += stored_ah;
        }
        self.widen(
            COUNTING_GAIN_ERROR * mean_a.abs() * hours / capacity_ah
                + OFFSET_DRIFT_PER_S * elapsed_s as f64,
        );
    }

    fn widen(&mut self, extra_uncertainty: f64) {
        self.state.uncertainty = (self.state.uncertainty + extra_uncertainty).min(MAX_UNCERTAINTY);
    }

    /// Inverse-variance fusion of the current estimate with an independent one.
    fn fuse(&mut self, measured_soc: f64, measured_uncertainty: f64) {
        let prior_variance = self.state.uncertainty.powi(2);
        let measured_variance = measured_uncertainty.powi(2);
        let total_variance = prior_variance + measured_variance;
        if total_variance <= 0.0 {
            return;
        }
        let weight = prior_variance / total_variance;
        self.state.soc =
            (self.state.soc + weight * (measured_soc - self.state.soc)).clamp(0.0, 1.0);
        self.state.uncertainty = (prior_variance * measured_variance / total_variance).sqrt();
    }

    fn track_rest(&mut self, now: Timestamp, pack_v: f64, pack_a: f64) {
        if pack_a.abs() >= REST_C_RATE * self.state.capacity_ah {
            self.state.rest = None;
            return;
        }
        let rest = self.state.rest.get_or_insert(Rest {
            since: now,
            anchored: false,
        });
        if rest.anchored || now.saturating_sub(rest.since) < self.spec.chemistry.rest_before_ocv_s()
        {
            return;
        }
        rest.anchored = true;
        let rested_sigma_v = self.spec.chemistry.rested_voltage_sigma_v();
        self.anchor_on_open_circuit_voltage(pack_v, pack_a, rested_sigma_v);
    }

    /// Reads the IR-compensated voltage as an OCV known to within `voltage_sigma_v` per cell
    /// and fuses the SoC it implies, unless the chemistry says a rested voltage tells nothing
    /// there. A confident reading also ends the running capacity measurement and starts the
    /// next. Returns whether the voltage was used.
    fn anchor_on_open_circuit_voltage(
        &mut self,
        pack_v: f64,
        pack_a: f64,
        voltage_sigma_v: f64,
    ) -> bool {
        let chemistry = self.spec.chemistry;
        let ocv_soc =
            chemistry.soc_from_open_circuit_voltage(self.spec.compensated_cell_v(pack_v, pack_a));
        let confidence = chemistry.ocv_confidence(ocv_soc);
        if confidence <= 0.0 {
            return false;
        }
        let ocv_uncertainty = chemistry
            .soc_sigma_from_voltage_sigma(ocv_soc, voltage_sigma_v)
            .min(MAX_UNCERTAINTY);
        self.fuse(ocv_soc, ocv_uncertainty);
        if confidence >= CAPACITY_ANCHOR_MIN_CONFIDENCE {
            self.close_capacity_span(ocv_soc);
        }
        true
    }

    fn track_end_of_charge(&mut self, now: Timestamp, pack_v: f64, pack_a: f64) {
        let cells = f64::from(self.spec.cells_in_series);
        let at_set_point = pack_v
            >= (self.spec.chemistry.full_charge_cell_v() - FULL_CHARGE_TOLERANCE_CELL_V) * cells;
        let tapered = pack_a.abs() < TAPER_C_RATE * self.state.capacity_ah;
        if !(at_set_point && tapered) {
            self.state.taper_since = None;
            return;
        }
        let since = *self.state.taper_since.get_or_insert(now);
        if now.saturating_sub(since) < FULL_CHARGE_HOLD_S {
            return;
        }
        self.close_capacity_span(1.0);
        self.state.soc = 1.0;
        self.state.uncertainty = FULL_ANCHOR_UNCERTAINTY;
    }

    /// An anchor at `anchor_soc` ends the running capacity measurement and starts the next one.
    fn close_capacity_span(&mut self, anchor_soc: f64) {
        if let Some(span) = self.state.capacity_span
            && let Some(measured_ah) = span.measured_capacity_ah(anchor_soc)
        {
            let nominal_ah = self.spec.capacity_ah();
            let bounded_ah = measured_ah.clamp(
                CAPACITY_MIN_FRACTION * nominal_ah,
                CAPACITY_MAX_FRACTION * nominal_ah,
            );
            self.state.capacity_ah +=
                CAPACITY_LEARNING_GAIN * (bounded_ah - self.state.capacity_ah);
        }
        self.state.capacity_span = Some(CapacitySpan {
            start_soc: anchor_soc,
            counted_ah: 0.0,
        });
    }
}

impl CapacitySpan {
    /// Capacity implied by the Ah counted from `start_soc` to `end_soc`, if the span is long
    /// enough and the charge went the way the SoC did.
    fn measured_capacity_ah(&self, end_soc: f64) -> Option<f64> {
        let soc_change = end_soc - self.start_soc;
        let consistent =
            soc_change.abs() > CAPACITY_MIN_SOC_SPAN && self.counted_ah * soc_change > 0.0;
        consistent.then(|| self.counted_ah / soc_change)
    }
}

impl SocState {
    fn unknown(spec: &BatterySpec) -> Self {
        Self {
            soc: 0.5,
            uncertainty: MAX_UNCERTAINTY,
            capacity_ah: spec.capacity_ah(),
            last_sample: None,
            rest: None,
            taper_since: None,
            capacity_span: None,
        }
    }

    /// Restored state is only trusted if every number is in range for this battery.
    fn is_consistent_with(&self, spec: &BatterySpec) -> bool {
        let nominal_ah = spec.capacity_ah();
        let capacity_range =
            CAPACITY_MIN_FRACTION * nominal_ah..=CAPACITY_MAX_FRACTION * nominal_ah;
        let span_ok = self.capacity_span.is_none_or(|span| {
            (0.0..=1.0).contains(&span.start_soc) && span.counted_ah.is_finite()
        });
        (0.0..=1.0).contains(&self.soc)
            && self.uncertainty > 0.0
            && self.uncertainty <= MAX_UNCERTAINTY
            && capacity_range.contains(&self.capacity_ah)
            && self
                .last_sample
                .is_none_or(|sample| sample.pack_a.is_finite())
            && span_ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chemistry::Chemistry;

    const T0: Timestamp = 1_718_841_600;
    const STEP_S: i64 = 10;

    /// A battery that behaves exactly like the OCV table plus a pure internal resistance.
    #[derive(Clone)]
    struct SimulatedPack {
        spec: BatterySpec,
        true_capacity_ah: f64,
        soc: f64,
        now: Timestamp,
    }

    impl SimulatedPack {
        fn new(spec: BatterySpec, true_capacity_ah: f64, soc: f64) -> Self {
            Self {
                spec,
                true_capacity_ah,
                soc,
                now: T0,
            }
        }

        fn terminal_v(&self, pack_a: f64) -> f64 {
            let cells = f64::from(self.spec.cells_in_series);
            self.spec.chemistry.open_circuit_voltage(self.soc) * cells
                + pack_a * self.spec.internal_resistance_ohm
        }

        /// Runs `pack_a` for `duration_s`, feeding `estimator` every `STEP_S`.
        fn run(&mut self, estimator: &mut SocEstimator, pack_a: f64, duration_s: i64) {
            for _ in 0..duration_s / STEP_S {
                let efficiency = if pack_a > 0.0 {
                    self.spec.chemistry.coulombic_efficiency()
                } else {
                    1.0
                };
                self.soc = (self.soc
                    + efficiency * pack_a * STEP_S as f64 / 3600.0 / self.true_capacity_ah)
                    .clamp(0.0, 1.0);
                self.now += STEP_S;
                estimator.update(self.now, self.terminal_v(pack_a), pack_a);
            }
        }

        /// CC charge then a CV phase whose current tapers to C/50: what a real charger does.
        fn charge_to_full(&mut self, estimator: &mut SocEstimator, cc_a: f64) {
            while self.soc < 0.97 {
                self.run(estimator, cc_a, 60);
            }
            self.soc = 1.0;
            let taper_a = self.true_capacity_ah / 50.0;
            let cv_v =
                self.spec.chemistry.full_charge_cell_v() * f64::from(self.spec.cells_in_series);
            for _ in 0..(600 / STEP_S) {
                self.now += STEP_S;
                estimator.update(self.now, cv_v, taper_a);
            }
        }
    }

    fn li_ion() -> BatterySpec {
        BatterySpec::default()
    }

    fn lifepo4() -> BatterySpec {
        BatterySpec {
            chemistry: Chemistry::LiFePo4,
            cells_in_series: 4,
            capacity_wh: 128.0,
            internal_resistance_ohm: 0.05,
        }
    }

    fn started_at(spec: BatterySpec, soc: f64) -> (SimulatedPack, SocEstimator) {
        let pack = SimulatedPack::new(spec.clone(), spec.capacity_ah(), soc);
        let mut estimator = SocEstimator::new(spec, None);
        estimator.update(pack.now, pack.terminal_v(0.0), 0.0);
        (pack, estimator)
    }

    #[test]
    fn cold_start_reads_the_voltage_with_large_uncertainty() {
        let (_, estimator) = started_at(li_ion(), 0.5);
        assert!((estimator.soc() - 0.5).abs() < 1e-9);
        assert!(estimator.uncertainty() >= VOLTAGE_ESTIMATE_MIN_UNCERTAINTY);

        // Under a 10 A discharge the terminal sags by 0.3 V; IR compensation recovers the OCV.
        let spec = li_ion();
        let mut loaded = SocEstimator::new(spec.clone(), None);
        loaded.update(
            T0,
            spec.chemistry.open_circuit_voltage(0.7) - 10.0 * spec.internal_resistance_ohm,
            -10.0,
        );
        assert!((loaded.soc() - 0.7).abs() < 1e-9);
    }

    #[test]
    fn before_any_sample_nothing_is_known() {
        let estimator = SocEstimator::new(li_ion(), None);
        assert_eq!(estimator.soc(), 0.5);
        assert!((estimator.uncertainty() - 1.0 / 12f64.sqrt()).abs() < 1e-12);
    }

    #[test]
    fn counts_charge_with_coulombic_losses() {
        let (mut pack, mut estimator) = started_at(li_ion(), 0.5);
        // 10 A for 2 h out of 50 Ah: −40 %. The trapezoid ramps the first 10 s from 0 A.
        let ramp = 5.0 * STEP_S as f64 / 3600.0 / 50.0;
        pack.run(&mut estimator, -10.0, 7200);
        assert!(
            (estimator.soc() - (0.1 + ramp)).abs() < 1e-9,
            "{}",
            estimator.soc()
        );
        // 10 A for 2 h in, 1 % lost: +39.6 %, the first 10 s averaging −10 A and +10 A.
        pack.run(&mut estimator, 10.0, 7200);
        let expected = 0.1 + ramp + 0.396 - 0.99 * 10.0 * STEP_S as f64 / 3600.0 / 50.0;
        assert!(
            (estimator.soc() - expected).abs() < 1e-9,
            "{}",
            estimator.soc()
        );
        assert!((estimator.energy_wh() - expected * 185.0).abs() < 1e-6);
    }

    #[test]
    fn unobserved_hours_are_not_integrated() {
        let (mut pack, mut estimator) = started_at(li_ion(), 0.5);
        pack.charge_to_full(&mut estimator, 10.0);
        pack.run(&mut estimator, -5.0, 3 * 3600);
        let before = estimator.soc();
        // Three hours later, same current and same voltage: had the 5 A been integrated over
        // the gap, the SoC would have fallen by 30 %.
        pack.now += 3 * 3600;
        estimator.update(pack.now, pack.terminal_v(-5.0), -5.0);
        assert!(
            (estimator.soc() - before).abs() < 0.01,
            "{before} -> {}",
            estimator.soc()
        );
    }

    /// The Pi 4 booting draws ~5 W from the seed bank's 3.7 V cell side.
    const BOOT_A: f64 = -1.35;

    #[test]
    fn after_a_power_off_the_first_sample_is_a_rested_reading() {
        let spec = li_ion();
        let (mut pack, mut estimator) = started_at(spec.clone(), 0.5);
        pack.charge_to_full(&mut estimator, 10.0);
        // 40 Ah out of 50: the count says 20 % when the node halts.
        pack.run(&mut estimator, -5.0, 8 * 3600);
        let counted = estimator.soc();
        assert!((counted - 0.2).abs() < 0.01, "{counted}");

        // Ten hours halted, during which the pack lost 5 % more than counted; the first sample
        // is taken under the boot load.
        pack.soc = 0.15;
        pack.now += 10 * 3600;
        estimator.update(pack.now, pack.terminal_v(BOOT_A), BOOT_A);

        // The widened count knows nothing any more; the voltage, read on the steep part of the
        // Li-ion curve, is worth a few points.
        let voltage_sigma_v = spec
            .chemistry
            .rested_voltage_sigma_v()
            .hypot(BOOT_LOAD_POLARISATION_SIGMA_V);
        let ocv_sigma = spec
            .chemistry
            .soc_sigma_from_voltage_sigma(0.15, voltage_sigma_v);
        let weight = MAX_UNCERTAINTY.powi(2) / (MAX_UNCERTAINTY.powi(2) + ocv_sigma.powi(2));
        let expected = counted + weight * (0.15 - counted);
        assert!(
            (estimator.soc() - expected).abs() < 1e-6,
            "{} vs {expected}",
            estimator.soc()
        );
        assert!((estimator.soc() - 0.15).abs() < 0.002);
        let uncertainty = estimator.uncertainty();
        assert!((0.02..0.05).contains(&uncertainty), "{uncertainty}");
        // A reading this good starts a new capacity measurement.
        let span_start = estimator.state().capacity_span.map(|span| span.start_soc);
        assert!(
            span_start.is_some_and(|soc| (soc - 0.15).abs() < 1e-6),
            "{span_start:?}"
        );
    }

    #[test]
    fn after_a_power_off_the_lifepo4_plateau_still_tells_little() {
        let (mut pack, mut estimator) = started_at(lifepo4(), 0.3);
        pack.charge_to_full(&mut estimator, 5.0);
        // 3 Ah out of 10: the count says 70 % when the node halts.
        pack.run(&mut estimator, -3.0, 3600);
        assert!((estimator.soc() - 0.7).abs() < 0.01);
        // Halted overnight; the pack is really at 50 %, like the count in the plateau.
        pack.soc = 0.5;
        pack.now += 10 * 3600;
        estimator.update(pack.now, pack.terminal_v(BOOT_A), BOOT_A);
        assert!(
            estimator.uncertainty() > VOLTAGE_ESTIMATE_MIN_UNCERTAINTY,
            "{}",
            estimator.uncertainty()
        );
        // The voltage barely pulls: the estimate stays nearer the count than the truth.
        assert!(estimator.soc() > 0.55, "{}", estimator.soc());
        assert_eq!(estimator.state().capacity_span, None);
    }

    #[test]
    fn after_a_short_gap_the_voltage_is_only_a_pessimistic_estimate() {
        let (mut pack, mut estimator) = started_at(li_ion(), 0.3);
        pack.charge_to_full(&mut estimator, 10.0);
        pack.run(&mut estimator, -5.0, 3 * 3600);
        let counted = estimator.soc();
        assert!((counted - 0.7).abs() < 0.01);
        // The daemon restarted after 20 minutes, shorter than the 30-minute rest: the pack may
        // still be polarised, so the voltage only counts with the pessimistic floor.
        let gap_s = 1200;
        let prior_sigma = (estimator.uncertainty() + gap_s as f64 * UNOBSERVED_SOC_RATE_PER_S)
            .min(MAX_UNCERTAINTY);
        pack.soc = 0.6;
        pack.now += gap_s;
        estimator.update(pack.now, pack.terminal_v(-5.0), -5.0);
        let prior_variance = prior_sigma.powi(2);
        let voltage_variance = VOLTAGE_ESTIMATE_MIN_UNCERTAINTY.powi(2);
        let expected =
            counted + prior_variance / (prior_variance + voltage_variance) * (0.6 - counted);
        assert!(
            (estimator.soc() - expected).abs() < 1e-6,
            "{} vs {expected}",
            estimator.soc()
        );
        assert!(estimator.uncertainty() < prior_sigma);
        assert!(estimator.uncertainty() > 0.05);
    }

    #[test]
    fn clock_going_backwards_is_a_gap_not_a_negative_integral() {
        let (mut pack, mut estimator) = started_at(li_ion(), 0.6);
        pack.charge_to_full(&mut estimator, 10.0);
        pack.run(&mut estimator, -20.0, 600);
        assert!(estimator.state().capacity_span.is_some());
        let soc = estimator.soc();
        estimator.update(pack.now - 86_400, pack.terminal_v(-20.0), -20.0);
        assert!((estimator.soc() - soc).abs() < 0.02);
        // Ah counted across the jump would teach a wrong capacity.
        assert_eq!(estimator.state().capacity_span, None);
    }

    #[test]
    fn rested_voltage_corrects_drift_only_after_the_rest_time() {
        let spec = li_ion();
        let (mut pack, mut estimator) = started_at(spec.clone(), 0.5);
        pack.charge_to_full(&mut estimator, 10.0);
        // The estimator believes it is at 100 % (σ 2 %); the true pack is 10 % lower, as if the
        // shunt had under-read the charge.
        pack.soc = 0.9;
        pack.run(&mut estimator, -10.0, 1800);
        pack.run(&mut estimator, 0.0, 1790);
        let counted = estimator.soc();
        assert!(
            (counted - 0.9).abs() < 1e-3,
            "no correction before 30 min of rest: {counted}"
        );

        let prior_sigma = estimator.uncertainty();
        pack.run(&mut estimator, 0.0, 20);
        let ocv_sigma = spec
            .chemistry
            .soc_sigma_from_voltage_sigma(0.8, spec.chemistry.rested_voltage_sigma_v());
        let weight = prior_sigma.powi(2) / (prior_sigma.powi(2) + ocv_sigma.powi(2));
        let expected = counted + weight * (0.8 - counted);
        assert!(
            (estimator.soc() - expected).abs() < 1e-3,
            "{} vs {expected}",
            estimator.soc()
        );
        assert!(estimator.uncertainty() < prior_sigma.min(ocv_sigma));
        // The same rest is one measurement: staying rested does not pull further.
        let after_anchor = estimator.soc();
        pack.run(&mut estimator, 0.0, 3600);
        assert!((estimator.soc() - after_anchor).abs() < 1e-6);
    }

    #[test]
    fn voltage_under_load_never_corrects() {
        let (mut pack, mut estimator) = started_at(li_ion(), 0.8);
        pack.run(&mut estimator, -2.0, 3600);
        let counted = estimator.soc();
        // C/25 is not rest: an hour of it, plus a voltage 0.1 V low, changes nothing but the count.
        for _ in 0..360 {
            pack.now += STEP_S;
            estimator.update(pack.now, pack.terminal_v(-2.0) - 0.1, -2.0);
        }
        assert!((estimator.soc() - (counted - 0.04)).abs() < 1e-6);
    }

    #[test]
    fn lifepo4_plateau_voltage_does_not_move_the_estimate() {
        let spec = lifepo4();
        let (mut pack, mut estimator) = started_at(spec.clone(), 0.3);
        pack.charge_to_full(&mut estimator, 5.0);
        pack.soc = 0.8;
        pack.run(&mut estimator, -3.0, 3600);
        let counted = estimator.soc();
        assert!((counted - 0.7).abs() < 1e-3);
        // Rest three hours at 50 % true SoC while the count says 70 %: both on the plateau.
        pack.run(&mut estimator, 0.0, 3 * 3600);
        // Only the first 10 s of rest, averaging −3 A and 0 A, are counted (0.04 %).
        assert!(
            (estimator.soc() - counted).abs() < 1e-3,
            "{counted} -> {}",
            estimator.soc()
        );
    }

    #[test]
    fn end_of_charge_needs_set_point_taper_and_time() {
        let spec = li_ion();
        let (mut pack, mut estimator) = started_at(spec.clone(), 0.5);
        pack.run(&mut estimator, -10.0, 3600);
        let full_v = spec.chemistry.full_charge_cell_v();
        let soc_before = estimator.soc();

        // CC phase at the set point (10 A = C/5): not full.
        for _ in 0..60 {
            pack.now += STEP_S;
            estimator.update(pack.now, full_v, 10.0);
        }
        assert!(estimator.soc() < 0.99);
        // Tapered below C/20 (2.5 A), 30 samples spanning 4 min 50 s: not yet.
        for _ in 0..30 {
            pack.now += STEP_S;
            estimator.update(pack.now, full_v, 1.0);
        }
        assert!(estimator.soc() < 0.99);
        // The sample that completes five minutes of taper: 100 %.
        pack.now += STEP_S;
        estimator.update(pack.now, full_v, 1.0);
        assert_eq!(estimator.soc(), 1.0);
        assert_eq!(estimator.uncertainty(), FULL_ANCHOR_UNCERTAINTY);
        assert!(soc_before < 0.5);
    }

    #[test]
    fn uncertainty_grows_with_throughput_and_time() {
        let (mut pack, mut estimator) = started_at(li_ion(), 0.5);
        pack.charge_to_full(&mut estimator, 10.0);
        let at_anchor = estimator.uncertainty();
        // 25 Ah out of 50: 2 % of half the capacity (1 %) plus 2.5 h of offset drift.
        pack.run(&mut estimator, -10.0, 9000);
        let expected = at_anchor + 0.02 * 0.5 + 0.01 * 9000.0 / 86_400.0;
        assert!(
            (estimator.uncertainty() - expected).abs() < 1e-4,
            "{}",
            estimator.uncertainty()
        );
        // Idle time alone grows it by the offset drift.
        pack.run(&mut estimator, -1.0, 86_400);
        assert!(estimator.uncertainty() > expected + 0.01);
    }

    /// Full charge, discharge deep, rest; repeated. The real pack has aged to 40 of 50 Ah.
    fn cycle(pack: &mut SimulatedPack, estimator: &mut SocEstimator) {
        pack.charge_to_full(estimator, 10.0);
        while pack.soc > 0.15 {
            pack.run(estimator, -8.0, 60);
        }
        pack.run(estimator, 0.0, 2 * 3600);
    }

    #[test]
    fn capacity_is_relearned_slowly_from_deep_cycles() {
        let spec = li_ion();
        let mut pack = SimulatedPack::new(spec.clone(), 40.0, 0.5);
        let mut estimator = SocEstimator::new(spec.clone(), None);
        cycle(&mut pack, &mut estimator);
        // One full→rest span (~85 % deep) measured ~40 Ah: a fifth of the way from 50.
        let after_one = estimator.state().capacity_ah;
        assert!((after_one - (50.0 - 0.2 * 10.0)).abs() < 0.5, "{after_one}");
        for _ in 0..15 {
            cycle(&mut pack, &mut estimator);
        }
        let learned = estimator.state().capacity_ah;
        assert!((learned - 40.0).abs() < 1.0, "{learned}");
        assert!((estimator.capacity_wh() - learned * 3.7).abs() < 1e-9);
    }

    #[test]
    fn shallow_spans_and_absurd_measurements_do_not_teach_capacity() {
        let spec = li_ion();
        let nominal_ah = spec.capacity_ah();
        let (mut pack, mut estimator) = started_at(spec.clone(), 0.9);
        pack.charge_to_full(&mut estimator, 10.0);
        // 30 % deep, then rest: too short a span.
        pack.run(&mut estimator, -15.0, 3600);
        pack.run(&mut estimator, 0.0, 3600);
        assert_eq!(estimator.state().capacity_ah, nominal_ah);

        // A span that implies a 500 Ah pack moves the capacity towards the 110 % bound only.
        let mut span = SocEstimator::new(spec, None);
        span.state.capacity_span = Some(CapacitySpan {
            start_soc: 0.1,
            counted_ah: 450.0,
        });
        span.close_capacity_span(1.0);
        let expected =
            nominal_ah + CAPACITY_LEARNING_GAIN * (CAPACITY_MAX_FRACTION - 1.0) * nominal_ah;
        assert!((span.state.capacity_ah - expected).abs() < 1e-9);
    }

    #[test]
    fn implausible_samples_are_ignored() {
        let (mut pack, mut estimator) = started_at(li_ion(), 0.5);
        let state = estimator.state();
        pack.now += STEP_S;
        estimator.update(pack.now, 0.0, -1.0);
        estimator.update(pack.now, f64::NAN, -1.0);
        estimator.update(pack.now, 3.8, f64::INFINITY);
        assert_eq!(estimator.state(), state);
    }

    #[test]
    fn state_round_trips_and_resumes() {
        let spec = li_ion();
        let (mut pack, mut estimator) = started_at(spec.clone(), 0.5);
        pack.charge_to_full(&mut estimator, 10.0);
        pack.run(&mut estimator, -5.0, 1800);
        let json = serde_json::to_string(&estimator.state()).expect("state serialises");
        let restored: SocState = serde_json::from_str(&json).expect("state deserialises");
        // serde_json's fast float parser may round the last bit differently.
        let original = estimator.state();
        assert!((restored.soc - original.soc).abs() < 1e-12);
        assert!((restored.uncertainty - original.uncertainty).abs() < 1e-12);
        assert_eq!(restored.capacity_ah, original.capacity_ah);
        assert_eq!(
            (restored.last_sample, restored.rest, restored.taper_since),
            (original.last_sample, original.rest, original.taper_since)
        );
        assert_eq!(restored.capacity_span.map(|span| span.start_soc), Some(1.0));
        // The restarted estimator continues where the running one is.
        let mut resumed = SocEstimator::new(spec, Some(restored));
        let mut same_pack = pack.clone();
        pack.run(&mut estimator, 0.0, 3600);
        same_pack.run(&mut resumed, 0.0, 3600);
        assert!((resumed.soc() - estimator.soc()).abs() < 1e-12);
        assert!((resumed.uncertainty() - estimator.uncertainty()).abs() < 1e-12);
        assert!(
            resumed.soc() > 0.9,
            "the OCV rest kept a counted SoC the voltage confirms"
        );
    }

    #[test]
    fn restored_state_for_another_battery_is_discarded() {
        let small = BatterySpec {
            capacity_wh: 37.0,
            ..li_ion()
        };
        let (mut pack, mut estimator) = started_at(small, 0.5);
        pack.run(&mut estimator, -1.0, 600);
        // The 10 Ah state does not fit a 50 Ah battery: start over from the voltage.
        let swapped = SocEstimator::new(li_ion(), Some(estimator.state()));
        assert_eq!(swapped.state(), SocState::unknown(&li_ion()));
    }

    #[test]
    fn corrupt_restored_timestamp_reads_as_a_gap() {
        let (mut pack, mut estimator) = started_at(li_ion(), 0.5);
        pack.run(&mut estimator, -5.0, 600);
        let mut corrupt = estimator.state();
        corrupt.last_sample = Some(Sample {
            at: Timestamp::MIN,
            pack_a: -5.0,
        });
        let mut restored = SocEstimator::new(li_ion(), Some(corrupt));
        restored.update(pack.now + STEP_S, pack.terminal_v(-5.0), -5.0);
        // No integration over the impossible interval, only a voltage-weighted correction.
        assert!((restored.soc() - estimator.soc()).abs() < 0.01);
    }
}
