//! The battery as the hardware sees it: a true charge state, a terminal voltage from
//! pew-power's open-circuit-voltage tables plus an ohmic drop, a charger that tapers its current
//! near full, and a protection circuit that cuts the load when the pack is empty.
//!
//! Charging follows the usual CC/CV profile. An OCV table plus a series resistance cannot
//! reproduce the polarisation that makes a real cell reach its CV set point at 80–90 % SoC, so
//! the charger is modelled by what it does rather than by the cell: constant current up to
//! [`ChargeAcceptance::taper_start_soc`], then an accepted current falling linearly to zero at
//! full, with the terminal held at the CV set point. The current therefore drops below C/20
//! just short of 100 % — the signature pew-power's end-of-charge detection waits for.

use pew_power::chemistry::BatterySpec;

/// Seconds per hour, to turn A·s into Ah.
const S_PER_H: f64 = 3600.0;
/// Resolution of the stored-energy integral over the OCV curve; the tables' breakpoints are
/// multiples of 5 %, so they fall on this grid and the trapezoidal sum is exact.
const ENERGY_INTEGRAL_STEPS: u32 = 1000;

/// How much charge current the charger lets into the pack.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ChargeAcceptance {
    /// Constant-current limit as a multiple of the capacity in Ah (0.5 = C/2).
    pub max_c_rate: f64,
    /// State of charge (0..1) where the constant-voltage phase begins and the current tapers.
    pub taper_start_soc: f64,
}

impl Default for ChargeAcceptance {
    /// A typical Li-ion charger: C/2 constant current, tapering from 85 %.
    fn default() -> Self {
        Self {
            max_c_rate: 0.5,
            taper_start_soc: 0.85,
        }
    }
}

/// What happened at the pack terminals during one step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatteryStep {
    /// Mean current over the step, A; positive while charging.
    pub current_a: f64,
    /// Terminal voltage of the pack, V.
    pub terminal_v: f64,
    /// Surplus power the pack could not accept (the charge controller backs off), W.
    pub curtailed_w: f64,
    /// Load power that could not be delivered, W; non-zero only with `brownout`.
    pub unsupplied_w: f64,
    /// Power turned into heat inside the pack (ohmic, coulombic and charge polarisation), W.
    pub loss_w: f64,
    /// The pack could not supply the demanded power: empty, or its voltage under that load
    /// fell below the cut-off, and the protection circuit opened.
    pub brownout: bool,
}

/// A simulated battery pack with a true state of charge.
#[derive(Clone, Debug, PartialEq)]
pub struct BatteryModel {
    spec: BatterySpec,
    acceptance: ChargeAcceptance,
    capacity_ah: f64,
    charge_ah: f64,
}

impl BatteryModel {
    /// A pack built to `spec` at true state of charge `initial_soc` (clamped to 0..=1), with a
    /// typical charger.
    pub fn new(spec: BatterySpec, initial_soc: f64) -> Self {
        let capacity_ah = spec.capacity_ah();
        Self {
            spec,
            acceptance: ChargeAcceptance::default(),
            capacity_ah,
            charge_ah: initial_soc.clamp(0.0, 1.0) * capacity_ah,
        }
    }

    /// The same pack behind a different charger.
    pub fn with_acceptance(self, acceptance: ChargeAcceptance) -> Self {
        Self { acceptance, ..self }
    }

    /// The pack's description.
    pub fn spec(&self) -> &BatterySpec {
        &self.spec
    }

    /// True state of charge, 0..=1.
    pub fn soc(&self) -> f64 {
        self.charge_ah / self.capacity_ah
    }

    /// Rested pack voltage at the present state of charge, V.
    pub fn open_circuit_v(&self) -> f64 {
        self.pack_ocv(self.soc())
    }

    /// Energy the pack would release from now to empty at a vanishing current, Wh: the charge
    /// integrated against the OCV curve.
    pub fn stored_energy_wh(&self) -> f64 {
        let soc = self.soc();
        let step = soc / f64::from(ENERGY_INTEGRAL_STEPS);
        let mean_ocv = (0..ENERGY_INTEGRAL_STEPS)
            .map(|k| {
                let low = f64::from(k) * step;
                (self.pack_ocv(low) + self.pack_ocv(low + step)) / 2.0
            })
            .sum::<f64>()
            / f64::from(ENERGY_INTEGRAL_STEPS);
        mean_ocv * self.charge_ah
    }

    /// Advances the pack by `dt_s` seconds with `net_power_w` offered at its terminals
    /// (positive: surplus to charge with; negative: load to supply).
    pub fn step(&mut self, dt_s: f64, net_power_w: f64) -> BatteryStep {
        if dt_s <= 0.0 {
            return self.idle();
        }
        if net_power_w > 0.0 {
            self.charge(dt_s, net_power_w)
        } else if net_power_w < 0.0 {
            self.discharge(dt_s, -net_power_w)
        } else {
            self.idle()
        }
    }

    fn idle(&self) -> BatteryStep {
        BatteryStep {
            current_a: 0.0,
            terminal_v: self.open_circuit_v(),
            curtailed_w: 0.0,
            unsupplied_w: 0.0,
            loss_w: 0.0,
            brownout: false,
        }
    }

    fn pack_ocv(&self, soc: f64) -> f64 {
        self.spec.chemistry.open_circuit_voltage(soc) * f64::from(self.spec.cells_in_series)
    }

    fn full_charge_v(&self) -> f64 {
        self.spec.chemistry.full_charge_cell_v() * f64::from(self.spec.cells_in_series)
    }

    fn cutoff_v(&self) -> f64 {
        self.spec.chemistry.cutoff_cell_v() * f64::from(self.spec.cells_in_series)
    }

    /// Current the charger lets in at the present state of charge, A.
    fn acceptance_a(&self, dt_s: f64) -> f64 {
        let ChargeAcceptance {
            max_c_rate,
            taper_start_soc,
        } = self.acceptance;
        let taper = ((1.0 - self.soc()) / (1.0 - taper_start_soc)).clamp(0.0, 1.0);
        let efficiency = self.spec.chemistry.coulombic_efficiency();
        // A long step must not carry the pack past full on the acceptance of its start.
        let room_a = (self.capacity_ah - self.charge_ah) * S_PER_H / (efficiency * dt_s);
        (max_c_rate * self.capacity_ah * taper).min(room_a).max(0.0)
    }

    fn charge(&mut self, dt_s: f64, offered_w: f64) -> BatteryStep {
        let ocv = self.open_circuit_v();
        let resistance = self.spec.internal_resistance_ohm;
        let full_v = self.full_charge_v();
        // Current that would absorb all of the offered power: R·I² + OCV·I = P.
        let unlimited_a =
            2.0 * offered_w / (ocv + (ocv * ocv + 4.0 * resistance * offered_w).sqrt());
        let acceptance_a = self.acceptance_a(dt_s);
        let ohmic_v = ocv + unlimited_a * resistance;
        let (current_a, terminal_v, absorbed_w) =
            if unlimited_a <= acceptance_a && ohmic_v <= full_v {
                (unlimited_a, ohmic_v, offered_w)
            } else {
                // The charger regulates at its CV set point and the pack takes what it accepts.
                let current_a = acceptance_a.min(offered_w / full_v);
                (current_a, full_v, current_a * full_v)
            };
        let stored_ah = current_a * self.spec.chemistry.coulombic_efficiency() * dt_s / S_PER_H;
        let stored_w = self.advance_charge(stored_ah) * stored_ah * S_PER_H / dt_s;
        BatteryStep {
            current_a,
            terminal_v,
            curtailed_w: (offered_w - absorbed_w).max(0.0),
            unsupplied_w: 0.0,
            loss_w: absorbed_w - stored_w,
            brownout: false,
        }
    }

    fn discharge(&mut self, dt_s: f64, demand_w: f64) -> BatteryStep {
        let ocv = self.open_circuit_v();
        let resistance = self.spec.internal_resistance_ohm;
        // Current delivering the demand: OCV·I − R·I² = P; no real root means more than the
        // pack's maximum power OCV²/4R.
        let discriminant = ocv * ocv - 4.0 * resistance * demand_w;
        let required_a =
            (discriminant >= 0.0).then(|| 2.0 * demand_w / (ocv + discriminant.sqrt()));
        let Some(required_a) = required_a.filter(|&a| ocv - a * resistance >= self.cutoff_v())
        else {
            return self.protection_trip(demand_w);
        };
        let terminal_v = ocv - required_a * resistance;
        let required_ah = required_a * dt_s / S_PER_H;
        // An empty pack delivers what is left, then the protection opens for the rest of the step.
        let delivered_fraction = if required_ah > 0.0 {
            (self.charge_ah / required_ah).min(1.0)
        } else {
            1.0
        };
        let drawn_ah = required_ah * delivered_fraction;
        let released_w = self.advance_charge(-drawn_ah) * drawn_ah * S_PER_H / dt_s;
        let delivered_w = demand_w * delivered_fraction;
        BatteryStep {
            current_a: -required_a * delivered_fraction,
            terminal_v,
            curtailed_w: 0.0,
            unsupplied_w: demand_w - delivered_w,
            loss_w: released_w - delivered_w,
            brownout: delivered_fraction < 1.0,
        }
    }

    fn protection_trip(&self, demand_w: f64) -> BatteryStep {
        BatteryStep {
            unsupplied_w: demand_w,
            brownout: true,
            ..self.idle()
        }
    }

    /// Moves `delta_ah` of charge into (positive) or out of the pack and returns the mean pack
    /// OCV over the move, V, so the energy moved is `OCV · ΔQ`. The tables are piecewise linear,
    /// so the midpoint value is the exact mean within a segment.
    fn advance_charge(&mut self, delta_ah: f64) -> f64 {
        let before = self.soc();
        self.charge_ah = (self.charge_ah + delta_ah).clamp(0.0, self.capacity_ah);
        self.pack_ocv((before + self.soc()) / 2.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pew_power::chemistry::Chemistry;

    fn seed_pack(soc: f64) -> BatteryModel {
        BatteryModel::new(BatterySpec::default(), soc)
    }

    fn lifepo4_pack(soc: f64) -> BatteryModel {
        let spec = BatterySpec {
            chemistry: Chemistry::LiFePo4,
            cells_in_series: 4,
            capacity_wh: 256.0,
            internal_resistance_ohm: 0.05,
        };
        BatteryModel::new(spec, soc)
    }

    #[test]
    fn full_seed_pack_stores_about_its_rated_energy() {
        // 50 Ah at a mean OCV of ~3.8 V: a little above the 185 Wh rated at 3.7 V nominal.
        let energy = seed_pack(1.0).stored_energy_wh();
        assert!((185.0..195.0).contains(&energy), "{energy} Wh");
        assert_eq!(seed_pack(0.0).stored_energy_wh(), 0.0);
    }

    #[test]
    fn charge_then_discharge_returns_the_coulombic_efficiency_less_ohmic_losses() {
        let mut pack = seed_pack(0.3);
        let start_ah = pack.charge_ah;
        let (power_w, dt_s) = (10.0, 60.0);
        let mut energy_in_wh = 0.0;
        for _ in 0..300 {
            let step = pack.step(dt_s, power_w);
            assert_eq!(step.curtailed_w, 0.0, "no taper expected below 85 %");
            energy_in_wh += power_w * dt_s / S_PER_H;
        }
        let mut energy_out_wh = 0.0;
        while pack.charge_ah > start_ah {
            let step = pack.step(dt_s, -power_w);
            energy_out_wh += (power_w - step.unsupplied_w) * dt_s / S_PER_H;
        }
        let efficiency = Chemistry::LiIon.coulombic_efficiency();
        // 10 W at ~3.85 V is 2.6 A; 2.6² × 0.03 Ω ≈ 0.2 W lost each way, ~2 %.
        let ratio = energy_out_wh / energy_in_wh;
        assert!(
            ratio < efficiency,
            "round trip {ratio} beats η = {efficiency}"
        );
        assert!(ratio > efficiency - 0.05, "round trip {ratio} too lossy");
    }

    #[test]
    fn accounted_energy_matches_the_ocv_integral() {
        let mut pack = seed_pack(0.5);
        let initial_wh = pack.stored_energy_wh();
        let mut balance_wh = initial_wh;
        // A day-like profile: morning load, midday surplus that reaches the taper, evening load.
        let profile = [(-6.0, 80), (40.0, 200), (-8.0, 120)];
        for (net_w, steps) in profile {
            for _ in 0..steps {
                let step = pack.step(60.0, net_w);
                let at_terminals_w = if net_w > 0.0 {
                    net_w - step.curtailed_w
                } else {
                    net_w + step.unsupplied_w
                };
                balance_wh += (at_terminals_w - step.loss_w) * 60.0 / S_PER_H;
            }
        }
        let final_wh = pack.stored_energy_wh();
        assert!(
            (balance_wh - final_wh).abs() < 0.05,
            "ledger {balance_wh} vs pack {final_wh}"
        );
        assert!(final_wh > initial_wh);
    }

    #[test]
    fn terminal_voltage_stays_within_the_chemistry_limits() {
        for mut pack in [seed_pack(0.02), lifepo4_pack(0.02)] {
            let cells = f64::from(pack.spec.cells_in_series);
            let full_v = pack.spec.chemistry.full_charge_cell_v() * cells;
            let cutoff_v = pack.spec.chemistry.cutoff_cell_v() * cells;
            for net_w in [60.0, 25.0, 3.0, -2.7, -6.0, -20.0] {
                for _ in 0..2000 {
                    let step = pack.step(300.0, net_w);
                    assert!(
                        step.terminal_v <= full_v + 1e-9,
                        "{} V above CV set point",
                        step.terminal_v
                    );
                    if !step.brownout {
                        assert!(
                            step.terminal_v >= cutoff_v,
                            "{} V below cut-off",
                            step.terminal_v
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn charge_current_tapers_below_c_over_20_only_close_to_full() {
        for mut pack in [seed_pack(0.8), lifepo4_pack(0.8)] {
            let full_v = pack.full_charge_v();
            let c_over_20 = pack.capacity_ah / 20.0;
            let mut previous_a = f64::INFINITY;
            let mut tapered_at = None;
            for _ in 0..2000 {
                // A panel far stronger than the pack accepts near full.
                let step = pack.step(60.0, 500.0);
                if pack.soc() > pack.acceptance.taper_start_soc + 0.01 {
                    assert!(step.current_a <= previous_a, "taper current rose");
                    assert_eq!(step.terminal_v, full_v, "charger not at its CV set point");
                    previous_a = step.current_a;
                }
                if tapered_at.is_none() && step.current_a < c_over_20 {
                    tapered_at = Some(pack.soc());
                }
            }
            let tapered_at = tapered_at.expect("current fell below C/20");
            assert!(
                (0.97..1.0).contains(&tapered_at),
                "C/20 reached at SoC {tapered_at}"
            );
            assert!(pack.soc() <= 1.0);
        }
    }

    #[test]
    fn full_pack_curtails_the_whole_surplus() {
        let mut pack = seed_pack(1.0);
        let step = pack.step(300.0, 30.0);
        assert_eq!(step.current_a, 0.0);
        assert_eq!(step.curtailed_w, 30.0);
        assert_eq!(pack.soc(), 1.0);
    }

    #[test]
    fn empty_pack_browns_out_and_never_goes_below_empty() {
        let mut pack = seed_pack(0.001);
        let mut browned_out = false;
        for _ in 0..100 {
            let step = pack.step(300.0, -5.0);
            assert!(pack.soc() >= 0.0);
            if step.brownout {
                browned_out = true;
                assert!(step.unsupplied_w > 0.0);
            } else {
                assert_eq!(step.unsupplied_w, 0.0);
            }
        }
        assert!(browned_out);
        let step = seed_pack(0.0).step(300.0, -0.1);
        assert!(step.brownout);
        assert_eq!((step.current_a, step.unsupplied_w), (0.0, 0.1));
    }

    #[test]
    fn demand_beyond_the_pack_maximum_power_browns_out() {
        // OCV²/4R at 50 % is 3.82² / 0.12 ≈ 122 W, but the terminal would sag below 3.0 V first.
        let mut pack = seed_pack(0.5);
        let before = pack.soc();
        let step = pack.step(1.0, -100.0);
        assert!(step.brownout);
        assert_eq!(step.unsupplied_w, 100.0);
        assert_eq!(pack.soc(), before);
    }
}
