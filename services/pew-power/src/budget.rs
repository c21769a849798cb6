//! The energy budget: how much energy the node may spend on compute right now without the
//! forecast saying it will ever have to dip into the reserve that carries it through two
//! sunless days.
//!
//! The battery is projected slot by slot over the forecast horizon with only the essential
//! load drawn. Energy spent now lowers every later projected level by the same amount, except
//! that a battery projected to be full would have thrown surplus away: whatever the projection
//! clips off at full charge is "refunded" to an earlier spender. The budget is therefore
//! positive only when the forecast says that spending will come back before it is needed.

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
    /// Energy kept for two sunless days plus the unusable floor.
    pub reserve_wh: f64,
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

/// Computes how much energy may be spent now.
///
/// Spending `x` Wh now lowers the projected energy at time `t` by `max(0, x − clipped(t))`,
/// where `clipped(t)` is the surplus the projection threw away at full charge before `t`.
/// Each projected point therefore allows `max(0, e(t) − reserve) + clipped(t)`: before the
/// first full charge that is the plain headroom above the reserve; afterwards, spending is
/// refunded only as far as the battery actually overflowed. A point already below the
/// reserve allows no spending that would push it further down. The budget is the smallest
/// allowance over the horizon (now included) minus the outstanding leases.
pub fn energy_budget(inputs: &BudgetInputs) -> Budget {
    let reserve_wh = reserve_wh(
        inputs.essential_load_w,
        inputs.reserve_days,
        inputs.floor_wh,
    );
    let energy_now_wh = inputs.energy_now_wh.min(inputs.capacity_wh);
    let forecast_start = inputs.forecast.first().map(|slot| slot.start);

    let mut allowance_wh = (energy_now_wh - reserve_wh).max(0.0);
    let mut clipped_so_far_wh = 0.0;
    let mut projected_min_wh = energy_now_wh;
    let mut projected_min_at = forecast_start;
    let mut next_full_at = forecast_start.filter(|_| energy_now_wh >= inputs.capacity_wh);

    for point in project_energy(
        energy_now_wh,
        inputs.capacity_wh,
        inputs.essential_load_w,
        inputs.forecast,
    ) {
        clipped_so_far_wh += point.clipped_wh;
        allowance_wh =
            allowance_wh.min((point.energy_wh - reserve_wh).max(0.0) + clipped_so_far_wh);
        if point.energy_wh < projected_min_wh {
            projected_min_wh = point.energy_wh;
            projected_min_at = Some(point.at);
        }
        if next_full_at.is_none() && point.energy_wh >= inputs.capacity_wh {
            next_full_at = Some(point.at);
        }
    }

    Budget {
        // `max` also turns a NaN from a broken input into "nothing to spend".
        spendable_wh: (allowance_wh - inputs.leased_wh).max(0.0),
        reserve_wh,
        projected_min_wh,
        projected_min_at,
        next_full_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forecast::SLOT_S;

    /// A slot-aligned instant, so every test slot is a full 30 minutes.
    const T0: Timestamp = 1_750_000_000 - 1_750_000_000 % SLOT_S;
    /// Test battery: 100 Wh, 10 Wh floor, 1 W essential load and one day of reserve, so the
    /// reserve is 24 + 10 = 34 Wh and every slot costs 0.5 Wh.
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

    #[test]
    fn seed_reserve_is_two_days_of_idle_pi_plus_floor() {
        // 2 days × 24 h × 2.7 W = 129.6 Wh; 8 % of 185 Wh = 14.8 Wh never usable.
        let reserve = reserve_wh(2.7, 2.0, 0.08 * 185.0);
        assert!((reserve - 144.4).abs() < 1e-9, "{reserve}");
    }

    #[test]
    fn full_battery_under_sunny_days_may_spend_everything_above_reserve() {
        // 12 h of 10 Wh slots (far above the 0.5 Wh load), 12 h dark, twice.
        let day: Vec<f64> = repeat(10.0, 24).chain(repeat(0.0, 24)).collect();
        let slots = forecast(&[day.clone(), day].concat());
        let budget = energy_budget(&inputs(CAPACITY_WH, &slots, 0.0));

        assert_eq!(budget.reserve_wh, RESERVE_WH);
        assert_eq!(budget.spendable_wh, CAPACITY_WH - RESERVE_WH);
        // Each night draws 24 × 0.5 = 12 Wh from a full battery; the first night is reported.
        assert_eq!(budget.projected_min_wh, 88.0);
        assert_eq!(budget.projected_min_at, Some(T0 + 48 * SLOT_S));
        assert_eq!(budget.next_full_at, Some(T0));
    }

    #[test]
    fn sunless_forecast_spends_nothing_once_the_reserve_is_reached() {
        let dark = forecast(&repeat(0.0, 96).collect::<Vec<_>>());
        for energy_now_wh in [RESERVE_WH, 50.0, 81.0] {
            // 48 h × 1 W = 48 Wh drawn: from 81 Wh or less the projection ends at or below 33.
            let budget = energy_budget(&inputs(energy_now_wh, &dark, 0.0));
            assert_eq!(budget.spendable_wh, 0.0, "from {energy_now_wh} Wh");
            assert_eq!(budget.projected_min_wh, energy_now_wh - 48.0);
            assert_eq!(budget.projected_min_at, Some(T0 + 96 * SLOT_S));
            assert_eq!(budget.next_full_at, None);
        }
        // From 90 Wh the sunless horizon ends at 42 Wh, 8 Wh above the reserve.
        assert_eq!(energy_budget(&inputs(90.0, &dark, 0.0)).spendable_wh, 8.0);
    }

    #[test]
    fn leases_lower_the_budget_by_exactly_their_energy() {
        let night = forecast(&repeat(0.0, 24).collect::<Vec<_>>());
        // 12 dark hours from 90 Wh end at 78 Wh: 44 Wh above the reserve.
        assert_eq!(energy_budget(&inputs(90.0, &night, 0.0)).spendable_wh, 44.0);
        assert_eq!(
            energy_budget(&inputs(90.0, &night, 10.5)).spendable_wh,
            33.5
        );
        assert_eq!(energy_budget(&inputs(90.0, &night, 60.0)).spendable_wh, 0.0);
    }

    #[test]
    fn clipped_surplus_refunds_spending_only_as_far_as_it_overflowed() {
        // One bright slot takes 95 Wh to 114.5, clipping 14.5 Wh; then 90 dark slots (45 Wh)
        // end at 55 Wh. Headroom now is 61 Wh, but spending it would not be refunded by the
        // 14.5 Wh overflow: the night allows 55 − 34 + 14.5 = 35.5 Wh.
        let slots = forecast(&[vec![20.0], repeat(0.0, 90).collect()].concat());
        let budget = energy_budget(&inputs(95.0, &slots, 0.0));
        assert_eq!(budget.spendable_wh, 35.5);
        assert_eq!(budget.next_full_at, Some(T0 + SLOT_S));

        // Spending exactly the budget leaves the projection touching the reserve, never below.
        let after_spending = project_energy(95.0 - budget.spendable_wh, CAPACITY_WH, 1.0, &slots)
            .map(|point| point.energy_wh)
            .fold(f64::INFINITY, f64::min);
        assert!(
            (after_spending - RESERVE_WH).abs() < 1e-9,
            "{after_spending}"
        );
    }

    #[test]
    fn large_overflow_makes_later_dips_irrelevant() {
        // The bright slot clips 55 Wh, more than the night dip needs: only the energy above
        // the reserve now (95 − 34) limits spending.
        let slots = forecast(&[vec![60.5], repeat(0.0, 90).collect()].concat());
        assert_eq!(energy_budget(&inputs(95.0, &slots, 0.0)).spendable_wh, 61.0);
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
