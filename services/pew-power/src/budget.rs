//! The energy budget: how much energy the node may spend on compute right now.
//!
//! The battery is projected slot by slot over the forecast horizon with only the essential
//! load drawn; `e(t)` is the projected energy, clipped at full charge. Spending `x` Wh now
//! lowers every later point by `x` until the battery would have overflowed. Spending `x` is
//! allowed when either rule holds:
//!
//! * **Reserve rule.** `x ≤ e_now − reserve` and `x ≤ min_t (e(t) − floor)`: if the sun
//!   vanished right after this work, the node would still survive `reserve_days` at its
//!   essential load, and the forecast, as it stands, never runs it down to the floor. The
//!   reserve is checked once, now, rather than at every projected point: a point in the
//!   middle of a forecast night already has that night's darkness subtracted, so demanding the
//!   full sunless-days reserve there as well would count the same darkness twice.
//! * **Free-energy rule.** While the battery is charging towards a full charge, `x ≤` the
//!   surplus the projection throws away in its first clipping episode (the first run of
//!   slots in which the full battery cannot take the sun), and `x ≤ min (e(t) − floor)` up
//!   to the end of that episode: the spending only delays the battery's fill, and after the
//!   episode the trajectory is the same as without it. Energy that would otherwise be
//!   curtailed is never worth keeping. The rule applies only when the projection rises all
//!   the way from now to the episode, i.e. the sun that fills the battery is already
//!   shining: an episode beyond a night is a bet on tomorrow's weather (the day-ahead
//!   forecast is off by a third on average), and spending the reserve on it overnight leaves
//!   a node facing a cloudy spell with an empty battery. Across a night only the reserve rule
//!   spends.
//!
//! The spendable budget is the larger allowance, less the energy already leased, and never
//! negative.

use std::ops::Range;

use crate::Timestamp;
use crate::forecast::ForecastSlot;

const SECONDS_PER_HOUR: f64 = 3600.0;
const HOURS_PER_DAY: f64 = 24.0;

/// Everything [`energy_budget`] needs; energies in Wh, powers in W.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetInputs<'a> {
    /// Energy in the battery now, measured from empty (0 % state of charge).
    pub energy_now_wh: f64,
    /// Usable capacity; the projection never rises above it.
    pub capacity_wh: f64,
    /// Energy below the shutdown threshold: never usable, so always part of the reserve.
    pub floor_wh: f64,
    /// The load the node cannot avoid while it is up (headless idle plus sensors).
    pub essential_load_w: f64,
    /// How many days of essential load the reserve must cover without any sun.
    pub reserve_days: f64,
    /// Predicted solar energy per slot, starting now; the first slot may be partial.
    pub forecast: &'a [ForecastSlot],
    /// Energy already promised to running tasks and not yet returned.
    pub leased_wh: f64,
}

/// The result of [`energy_budget`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    /// Energy that can be leased out now, already net of outstanding leases; never negative.
    pub spendable_wh: f64,
    /// Energy kept for `reserve_days` without sun plus the unusable floor.
    pub reserve_wh: f64,
    /// What the reserve rule alone allows before leases; negative when the battery is
    /// already into its reserve or the forecast runs it below the floor.
    pub reserve_rule_wh: f64,
    /// What the free-energy rule alone allows before leases: the surplus of the first clipping
    /// episode, limited by the headroom above the floor until its end; 0 without clipping,
    /// negative when the battery is projected below the floor before the episode.
    pub free_wh: f64,
    /// Lowest projected energy over the horizon (with no spending), which may be below zero
    /// when the forecast says the battery would run flat.
    pub projected_min_wh: f64,
    /// When the lowest projected energy is reached; `None` for an empty forecast.
    pub projected_min_at: Option<Timestamp>,
    /// When the battery is next projected full (the start of the forecast if it is full now);
    /// `None` if not within the horizon.
    pub next_full_at: Option<Timestamp>,
}

/// The projected battery energy at the end of one forecast slot.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProjectedEnergy {
    /// End of the slot.
    pub at: Timestamp,
    /// Energy in the battery at `at`, capped at the capacity.
    pub energy_wh: f64,
    /// Surplus the full battery could not take during this slot.
    pub clipped_wh: f64,
}

/// Projects the battery energy slot by slot while it feeds a constant `load_w` and takes in
/// the forecast solar energy, clipping at `capacity_wh`. The load is charged for each slot's
/// actual length, so a partial first slot (starting now) costs only the time left in it.
///
/// The projection is deliberately not clamped at zero: how far below empty it would go tells
/// how large the deficit is.
pub fn project_energy(
    energy_now_wh: f64,
    capacity_wh: f64,
    load_w: f64,
    forecast: &[ForecastSlot],
) -> impl Iterator<Item = ProjectedEnergy> + '_ {
    forecast
        .iter()
        .scan(energy_now_wh.min(capacity_wh), move |energy_wh, slot| {
            let end = slot.end();
            let hours = (end - slot.start) as f64 / SECONDS_PER_HOUR;
            let unclipped_wh = *energy_wh + slot.wh - load_w * hours;
            *energy_wh = unclipped_wh.min(capacity_wh);
            Some(ProjectedEnergy {
                at: end,
                energy_wh: *energy_wh,
                clipped_wh: (unclipped_wh - capacity_wh).max(0.0),
            })
        })
}

/// Energy that must stay in the battery: `reserve_days` of essential load plus the floor.
pub fn reserve_wh(essential_load_w: f64, reserve_days: f64, floor_wh: f64) -> f64 {
    reserve_days * HOURS_PER_DAY * essential_load_w + floor_wh
}

/// Computes how much energy may be spent now; see the module documentation for the two rules.
pub fn energy_budget(inputs: &BudgetInputs<'_>) -> Budget {
    let reserve_wh = reserve_wh(
        inputs.essential_load_w,
        inputs.reserve_days,
        inputs.floor_wh,
    );
    let energy_now_wh = inputs.energy_now_wh.min(inputs.capacity_wh);
    let forecast_start = inputs.forecast.first().map(|slot| slot.start);
    let projection: Vec<ProjectedEnergy> = project_energy(
        energy_now_wh,
        inputs.capacity_wh,
        inputs.essential_load_w,
        inputs.forecast,
    )
    .collect();
    // Lowest energy from now through `points`, "now" included so that an empty or partial
    // projection still checks the battery as it is.
    let lowest_wh = |points: &[ProjectedEnergy]| {
        points
            .iter()
            .map(|point| point.energy_wh)
            .fold(energy_now_wh, f64::min)
    };

    let reserve_rule_wh =
        (energy_now_wh - reserve_wh).min(lowest_wh(&projection) - inputs.floor_wh);
    let free_wh = first_clipping_episode(&projection)
        .filter(|episode| charges_until(energy_now_wh, &projection[..episode.start]))
        .map_or(0.0, |episode| {
            let curtailed_wh: f64 = projection[episode.clone()]
                .iter()
                .map(|point| point.clipped_wh)
                .sum();
            curtailed_wh.min(lowest_wh(&projection[..episode.end]) - inputs.floor_wh)
        });

    let (projected_min_wh, projected_min_at) =
        projection
            .iter()
            .fold((energy_now_wh, forecast_start), |lowest, point| {
                if point.energy_wh < lowest.0 {
                    (point.energy_wh, Some(point.at))
                } else {
                    lowest
                }
            });
    let next_full_at = if energy_now_wh >= inputs.capacity_wh {
        forecast_start
    } else {
        projection
            .iter()
            .find(|point| point.energy_wh >= inputs.capacity_wh)
            .map(|point| point.at)
    };

    // `f64::min` and `max` ignore a NaN operand, so a broken energy estimate would otherwise
    // pass for a full battery above.
    let allowance_wh = if inputs.energy_now_wh.is_nan() {
        0.0
    } else {
        reserve_rule_wh.max(free_wh).max(0.0)
    };
    Budget {
        spendable_wh: (allowance_wh - inputs.leased_wh).max(0.0),
        reserve_wh,
        reserve_rule_wh,
        free_wh,
        projected_min_wh,
        projected_min_at,
        next_full_at,
    }
}

/// Whether the projection never falls from `energy_now_wh` through `points`: the battery is
/// charging all the way, so the sun that will fill it is already shining.
fn charges_until(energy_now_wh: f64, points: &[ProjectedEnergy]) -> bool {
    points
        .iter()
        .try_fold(energy_now_wh, |previous_wh, point| {
            (point.energy_wh >= previous_wh).then_some(point.energy_wh)
        })
        .is_some()
}

/// Indices of the first run of consecutive points at which the full battery throws surplus
/// away.
fn first_clipping_episode(projection: &[ProjectedEnergy]) -> Option<Range<usize>> {
    let start = projection.iter().position(|point| point.clipped_wh > 0.0)?;
    let length = projection[start..]
        .iter()
        .take_while(|point| point.clipped_wh > 0.0)
        .count();
    Some(start..start + length)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forecast::SLOT_S;

    /// A slot-aligned instant, so every test slot is a full 30 minutes.
    const T0: Timestamp = 1_750_000_000 - 1_750_000_000 % SLOT_S;
    /// Test battery: 100 Wh, 10 Wh floor, 1 W essential load, so every slot costs 0.5 Wh.
    /// One day of reserve: 24 + 10 = 34 Wh.
    const CAPACITY_WH: f64 = 100.0;
    const FLOOR_WH: f64 = 10.0;
    const RESERVE_WH: f64 = 34.0;

    /// Consecutive slots from `T0` carrying the given solar energies.
    fn forecast(solar_wh: &[f64]) -> Vec<ForecastSlot> {
        solar_wh
            .iter()
            .zip((0..).map(|index| T0 + index * SLOT_S))
            .map(|(&wh, start)| ForecastSlot { start, wh })
            .collect()
    }

    fn inputs(energy_now_wh: f64, forecast: &[ForecastSlot], leased_wh: f64) -> BudgetInputs<'_> {
        BudgetInputs {
            energy_now_wh,
            capacity_wh: CAPACITY_WH,
            floor_wh: FLOOR_WH,
            essential_load_w: 1.0,
            reserve_days: 1.0,
            forecast,
            leased_wh,
        }
    }

    fn repeat(wh: f64, slots: usize) -> impl Iterator<Item = f64> {
        std::iter::repeat_n(wh, slots)
    }

    fn projected(energy_now_wh: f64, slots: &[ForecastSlot]) -> Vec<f64> {
        project_energy(energy_now_wh, CAPACITY_WH, 1.0, slots)
            .map(|point| point.energy_wh)
            .collect()
    }

    #[test]
    fn seed_reserve_is_two_days_of_idle_pi_plus_floor() {
        // 2 days × 24 h × 2.7 W = 129.6 Wh; 8 % of 185 Wh = 14.8 Wh never usable.
        let reserve = reserve_wh(2.7, 2.0, 0.08 * 185.0);
        assert!((reserve - 144.4).abs() < 1e-9, "{reserve}");
    }

    #[test]
    fn sunless_night_above_the_reserve_may_spend_the_headroom_now() {
        // 12 dark hours from 90 Wh end at 78 Wh, far above the floor: the reserve rule allows
        // 90 − 34 = 56 Wh, the darkness of the night is not subtracted a second time.
        let night = forecast(&repeat(0.0, 24).collect::<Vec<_>>());
        let budget = energy_budget(&inputs(90.0, &night, 0.0));
        assert_eq!(budget.reserve_wh, RESERVE_WH);
        assert_eq!(budget.reserve_rule_wh, 56.0);
        assert_eq!(budget.free_wh, 0.0);
        assert_eq!(budget.spendable_wh, 56.0);
        assert_eq!(budget.projected_min_wh, 78.0);
        assert_eq!(budget.projected_min_at, Some(T0 + 24 * SLOT_S));
        assert_eq!(budget.next_full_at, None);
    }

    #[test]
    fn below_the_reserve_without_sun_nothing_is_spendable() {
        let dark = forecast(&repeat(0.0, 96).collect::<Vec<_>>());
        for energy_now_wh in [FLOOR_WH, 30.0, RESERVE_WH] {
            let budget = energy_budget(&inputs(energy_now_wh, &dark, 0.0));
            assert_eq!(budget.spendable_wh, 0.0, "from {energy_now_wh} Wh");
            assert!(budget.reserve_rule_wh <= 0.0);
        }
    }

    #[test]
    fn a_forecast_that_runs_the_battery_down_limits_spending_to_the_floor() {
        // 48 dark hours draw 48 Wh. From 70 Wh the projection ends at 22 Wh: 12 Wh above the
        // floor, although the battery holds 36 Wh above the reserve now.
        let dark = forecast(&repeat(0.0, 96).collect::<Vec<_>>());
        let budget = energy_budget(&inputs(70.0, &dark, 0.0));
        assert_eq!(budget.reserve_rule_wh, 12.0);
        assert_eq!(budget.spendable_wh, 12.0);
        // From 50 Wh the forecast itself goes 8 Wh below the floor: nothing to spend.
        let budget = energy_budget(&inputs(50.0, &dark, 0.0));
        assert_eq!(budget.reserve_rule_wh, -8.0);
        assert_eq!(budget.spendable_wh, 0.0);
    }

    #[test]
    fn full_battery_at_noon_may_spend_the_surplus_it_would_curtail() {
        // Two and a half days of reserve (60 + 10 = 70 Wh) leave the reserve rule 30 Wh of a
        // full battery; eight sunny slots each clip 10 Wh of surplus, then 96 dark slots.
        let slots = forecast(
            &[
                repeat(10.5, 8).collect::<Vec<_>>(),
                repeat(0.0, 96).collect(),
            ]
            .concat(),
        );
        let budget = energy_budget(&BudgetInputs {
            reserve_days: 2.5,
            ..inputs(CAPACITY_WH, &slots, 0.0)
        });
        assert_eq!(budget.reserve_rule_wh, 30.0);
        assert_eq!(budget.free_wh, 80.0);
        assert_eq!(budget.spendable_wh, 80.0);
        assert_eq!(budget.next_full_at, Some(T0));

        // Spending it only delays the fill: full again at the end of the episode, and the
        // trajectory from there on is the one without spending.
        let without = projected(CAPACITY_WH, &slots);
        let with = projected(CAPACITY_WH - budget.spendable_wh, &slots);
        assert_eq!(with[7], CAPACITY_WH);
        assert_eq!(with[7..], without[7..]);
    }

    #[test]
    fn free_energy_in_the_morning_is_limited_by_the_floor_until_the_battery_fills() {
        // 30 Wh in the morning, below the 34 Wh reserve, charging at +20 Wh a slot: full in
        // the fourth slot, clipping 10 + 5 × 20 = 110 Wh. More than 30 − 10 = 20 Wh spent now
        // would cross the floor before the sun has made up for it.
        let slots = forecast(&repeat(20.5, 9).collect::<Vec<_>>());
        let budget = energy_budget(&inputs(30.0, &slots, 0.0));
        assert_eq!(budget.reserve_rule_wh, -4.0);
        assert_eq!(budget.free_wh, 20.0);
        assert_eq!(budget.spendable_wh, 20.0);
        assert_eq!(budget.next_full_at, Some(T0 + 4 * SLOT_S));

        let with = projected(30.0 - budget.spendable_wh, &slots);
        assert_eq!(with[..5], [30.0, 50.0, 70.0, 90.0, CAPACITY_WH]);
    }

    #[test]
    fn surplus_beyond_a_night_is_not_free() {
        // 80 Wh in the evening: 24 dark slots take it to 68 Wh, then the sun would clip 128 Wh
        // tomorrow. Spending on that forecast overnight would be a bet on tomorrow's weather:
        // only the reserve rule's 80 − 34 = 46 Wh are spendable.
        let slots = forecast(
            &[
                repeat(0.0, 24).collect::<Vec<_>>(),
                repeat(20.5, 8).collect(),
            ]
            .concat(),
        );
        let budget = energy_budget(&inputs(80.0, &slots, 0.0));
        assert_eq!(budget.free_wh, 0.0);
        assert_eq!(budget.reserve_rule_wh, 46.0);
        assert_eq!(budget.spendable_wh, 46.0);
        assert!(budget.next_full_at.is_some());
    }

    #[test]
    fn only_the_first_clipping_episode_is_free() {
        // Full now; one slot clips 5 Wh, a cloudy slot draws 0.5 Wh and ends the episode, then
        // a slot that would clip 39.5 Wh more. Spending the later surplus would leave the
        // battery short after the first episode, so only its 5 Wh are free.
        let slots = forecast(&[5.5, 0.0, 40.5]);
        let budget = energy_budget(&BudgetInputs {
            reserve_days: 3.75,
            ..inputs(CAPACITY_WH, &slots, 0.0)
        });
        // Reserve 90 + 10 = 100 Wh: the reserve rule allows nothing from a full battery.
        assert_eq!(budget.reserve_rule_wh, 0.0);
        assert_eq!(budget.free_wh, 5.0);
        assert_eq!(budget.spendable_wh, 5.0);
    }

    #[test]
    fn leases_lower_the_budget_by_exactly_their_energy() {
        let night = forecast(&repeat(0.0, 24).collect::<Vec<_>>());
        assert_eq!(
            energy_budget(&inputs(90.0, &night, 10.5)).spendable_wh,
            45.5
        );
        assert_eq!(energy_budget(&inputs(90.0, &night, 60.0)).spendable_wh, 0.0);
    }

    #[test]
    fn broken_energy_estimate_spends_nothing() {
        let night = forecast(&repeat(0.0, 24).collect::<Vec<_>>());
        assert_eq!(
            energy_budget(&inputs(f64::NAN, &night, 0.0)).spendable_wh,
            0.0
        );
    }

    #[test]
    fn partial_first_slot_draws_load_only_for_its_remaining_time() {
        // Starting 20 minutes into a slot leaves 10 minutes: 1/6 Wh at 1 W.
        let slots = [ForecastSlot {
            start: T0 + 1200,
            wh: 0.0,
        }];
        let point = project_energy(50.0, CAPACITY_WH, 1.0, &slots)
            .next()
            .map(|point| (point.at, point.energy_wh));
        assert_eq!(point, Some((T0 + SLOT_S, 50.0 - 1.0 / 6.0)));
    }

    #[test]
    fn empty_forecast_budgets_the_headroom_now() {
        let budget = energy_budget(&inputs(50.0, &[], 0.0));
        assert_eq!(budget.spendable_wh, 16.0);
        assert_eq!(budget.projected_min_at, None);
        assert_eq!(budget.next_full_at, None);
    }
}
