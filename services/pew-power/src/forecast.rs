//! Solar harvest forecasting in 30-minute slots (research notes §3.3).
//!
//! [`Forecaster`] learns the *clear-sky index* k of each slot — measured energy divided by what
//! the panel would have produced under a clear sky — and predicts it with WCMA (Recas Piorno,
//! Bergonzini, Atienza, Rosing 2009): the mean of the same slot over the last D days, scaled
//! by GAP, the weighted ratio of the last K slots to their own D-day means ("today is cloudier
//! than usual"), plus a persistence term for the very next slot. Because the sun's geometry is
//! factored out, the learned part carries no seasonal or diurnal shape, a forecast never
//! exceeds the clear-sky envelope, and a prior index gives a usable forecast from day one.
//!
//! [`SlotAverage`] is the textbook baseline: the per-slot mean of measured energy over the
//! last days, without any clear-sky knowledge.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::Timestamp;
use crate::chemistry::ConfigError;
use crate::solar::{Site, clear_sky_wh_per_m2};

/// Slot length in seconds: 48 slots a day.
pub const SLOT_S: i64 = 1800;
const SLOTS_PER_DAY: i64 = 86_400 / SLOT_S;

/// Two samples further apart than this do not show what happened in between; the interval is
/// not integrated (the node was off, the daemon restarted).
const MAX_SAMPLE_GAP_S: i64 = 900;
/// A slot observed for less than half its length says too little to be learned from.
const MIN_COVERED_S: i64 = SLOT_S / 2;
/// Slots whose clear-sky irradiation is below this (sun under ~3°) are twilight: the ratio of
/// two tiny numbers would be noise, so no index is learned for them.
const MIN_DAYLIGHT_WH_PER_M2: f64 = 10.0;
/// A past slot whose D-day mean index is below this cannot give a meaningful GAP ratio.
const MIN_MEAN_INDEX_FOR_GAP: f64 = 0.05;
/// Restored slot numbers beyond ±245,000 years are corruption; rejecting them keeps all slot
/// arithmetic far from overflow.
const PLAUSIBLE_SLOTS: std::ops::RangeInclusive<i64> = -(1 << 32)..=(1 << 32);

/// The forecast for one slot.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ForecastSlot {
    /// Start of the interval: `now` for the first slot of a forecast, a slot boundary for the
    /// others.
    pub start: Timestamp,
    /// Predicted harvest in Wh over the interval.
    pub wh: f64,
}

impl ForecastSlot {
    /// End of the interval: the next slot boundary after `start`.
    pub fn end(&self) -> Timestamp {
        slot_start(slot_index(self.start) + 1)
    }
}

/// Something that learns a site's solar harvest and predicts it.
pub trait SolarPredictor {
    /// Records the measured solar power `solar_w` (W) at `now`. Energy is integrated between
    /// consecutive samples into the slots they span; slots close as time moves past them.
    /// Intervals longer than 15 minutes are not integrated, so a gap leaves slots unlearned
    /// rather than wrong. Negative power counts as zero; non-finite values break the sequence.
    fn record(&mut self, now: Timestamp, solar_w: f64);

    /// Predicted harvest from `now` until at least `now + horizon_s`, one entry per slot: the
    /// first covers `now` to the end of its slot, each following one a whole slot, the last
    /// one being the slot that contains `now + horizon_s − 1`. Empty if `horizon_s <= 0`.
    fn forecast(&self, now: Timestamp, horizon_s: i64) -> Vec<ForecastSlot>;
}

/// Tuning of [`Forecaster`]; TOML section `[solar.forecast]`, every key optional.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case", default)]
pub struct ForecastConfig {
    /// WCMA α: weight of the last slot's index in the next slot's prediction.
    pub alpha: f64,
    /// WCMA D: days averaged per slot.
    pub days: usize,
    /// WCMA K: past slots in the GAP factor.
    pub gap_slots: usize,
    /// Time constant with which the GAP factor's influence fades over the forecast horizon:
    /// a cloudy morning says something about noon, little about the evening.
    pub gap_fade_s: i64,
    /// Clear-sky index assumed for slots with no history yet.
    pub prior_index: f64,
    /// Envelope = panel rating × horizontal clear-sky irradiance / 1000 W/m² × this factor.
    pub envelope_factor: f64,
}

impl Default for ForecastConfig {
    fn default() -> Self {
        Self {
            // Recas Piorno et al. found α ≈ 0.7, D ≈ 4, K ≈ 2–3 best for 48 slots a day.
            alpha: 0.7,
            days: 4,
            gap_slots: 3,
            gap_fade_s: 7200,
            // 0.4 × 1.4 = 0.56 of the horizontal clear-sky yield: a temperate site's mean
            // clear-sky index (~0.65) times a small system's derate (~0.85).
            prior_index: 0.4,
            // A panel tilted towards the equator at about the latitude catches more than the
            // horizontal GHI: under a clear sky ~1.25× at an equinox noon, up to ~1.6× at a
            // mid-latitude winter noon; derating (MPPT, heat, soiling: ~0.85) brings that to
            // ≤ 1.4. Where reality exceeds the bound (high-latitude winter) the index
            // saturates and the forecast errs low, the safe side for a battery-powered node.
            envelope_factor: 1.4,
        }
    }
}

/// Bounds that catch typing errors: a month of history is plenty for a weather-driven slot
/// mean; an envelope below half the horizontal clear sky would describe a panel in shade
/// most of the time, and no tilt triples the clear-sky yield outside polar latitudes.
const MAX_HISTORY_DAYS: usize = 31;
const MIN_ENVELOPE_FACTOR: f64 = 0.5;
const MAX_ENVELOPE_FACTOR: f64 = 3.0;

impl ForecastConfig {
    /// Rejects unusable tuning, naming the `solar.forecast.*` key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        ConfigError::require_within("solar.forecast.alpha", self.alpha, 0.0, 1.0)?;
        if !(1..=MAX_HISTORY_DAYS).contains(&self.days) {
            return Err(ConfigError::new(
                "solar.forecast.days",
                format!(
                    "must be between 1 and {MAX_HISTORY_DAYS}, got {}",
                    self.days
                ),
            ));
        }
        if !(1..=SLOTS_PER_DAY as usize).contains(&self.gap_slots) {
            return Err(ConfigError::new(
                "solar.forecast.gap_slots",
                format!(
                    "must be between 1 and {SLOTS_PER_DAY}, got {}",
                    self.gap_slots
                ),
            ));
        }
        if self.gap_fade_s <= 0 {
            return Err(ConfigError::new(
                "solar.forecast.gap_fade_s",
                format!("must be > 0, got {}", self.gap_fade_s),
            ));
        }
        ConfigError::require_within("solar.forecast.prior_index", self.prior_index, 0.0, 1.0)?;
        ConfigError::require_within(
            "solar.forecast.envelope_factor",
            self.envelope_factor,
            MIN_ENVELOPE_FACTOR,
            MAX_ENVELOPE_FACTOR,
        )
    }

    /// Slots of index history WCMA needs: D days for the means, plus K slots so the GAP
    /// slots have D full days before them.
    fn history_slots(&self) -> usize {
        self.days * SLOTS_PER_DAY as usize + self.gap_slots
    }
}

/// What [`Forecaster`] must remember across restarts: the recent clear-sky indices and the
/// slot being accumulated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForecastState {
    integrator: SlotIntegrator,
    clear_sky_index: SlotHistory,
}

/// WCMA on the clear-sky index, bounded by the clear-sky envelope. See the module docs.
#[derive(Debug, Clone)]
pub struct Forecaster {
    site: Site,
    panel_w: f64,
    config: ForecastConfig,
    state: ForecastState,
}

impl Forecaster {
    /// A forecaster with the default tuning for a panel rated `panel_w` at `site`.
    pub fn new(site: Site, panel_w: f64, restored: Option<ForecastState>) -> Self {
        Self::with_config(site, panel_w, ForecastConfig::default(), restored)
    }

    /// A forecaster with explicit tuning. Restored indices outside 0..=1 are forgotten and the
    /// history is trimmed or padded to what `config` needs.
    pub fn with_config(
        site: Site,
        panel_w: f64,
        config: ForecastConfig,
        restored: Option<ForecastState>,
    ) -> Self {
        let capacity = config.history_slots();
        let state = match restored {
            Some(state) => ForecastState {
                integrator: state.integrator.sanitised(),
                clear_sky_index: state
                    .clear_sky_index
                    .sanitised(capacity, |index| (0.0..=1.0).contains(&index)),
            },
            None => ForecastState {
                integrator: SlotIntegrator::default(),
                clear_sky_index: SlotHistory::default(),
            },
        };
        Self {
            site,
            panel_w,
            config,
            state,
        }
    }

    /// The state to persist.
    pub fn state(&self) -> ForecastState {
        self.state.clone()
    }

    /// The most the panel can deliver between `start` and `end` under a clear sky, in Wh:
    /// the bound no forecast exceeds.
    pub fn envelope_wh(&self, start: Timestamp, end: Timestamp) -> f64 {
        self.envelope_from_irradiation(clear_sky_wh_per_m2(self.site, start, end))
    }

    fn envelope_from_irradiation(&self, wh_per_m2: f64) -> f64 {
        (self.panel_w * wh_per_m2 / 1000.0 * self.config.envelope_factor).max(0.0)
    }

    /// Clear-sky index of a closed slot, if it was observed well enough and in daylight.
    fn clear_sky_index_of(&self, closed: &AccumulatedSlot) -> Option<f64> {
        let daylight_wh_per_m2 = clear_sky_wh_per_m2(
            self.site,
            slot_start(closed.slot),
            slot_start(closed.slot + 1),
        );
        let observed_envelope_wh = self.envelope_from_irradiation(closed.reference);
        let usable = closed.covered_s >= MIN_COVERED_S
            && daylight_wh_per_m2 >= MIN_DAYLIGHT_WH_PER_M2
            && observed_envelope_wh > 0.0;
        usable.then(|| (closed.measured_wh / observed_envelope_wh).clamp(0.0, 1.0))
    }

    /// WCMA's GAP: recency-weighted ratio of the last K slots' indices to their D-day means.
    /// 1 when there is nothing to compare (night, no history).
    fn gap_factor(&self) -> f64 {
        let history = &self.state.clear_sky_index;
        let Some(newest) = history.newest else {
            return 1.0;
        };
        let gap_slots = self.config.gap_slots as i64;
        let (weighted_ratios, weights) = (0..gap_slots)
            .filter_map(|age| {
                let slot = newest - age;
                let index = history.get(slot)?;
                let mean = history.mean_of_recent_days(slot, slot - 1, self.config.days)?;
                // Piorno's θ: the most recent slot weighs K, the oldest 1.
                let weight = (gap_slots - age) as f64;
                (mean >= MIN_MEAN_INDEX_FOR_GAP).then_some((weight * index / mean, weight))
            })
            .fold((0.0, 0.0), |(ratios, weights), (ratio, weight)| {
                (ratios + ratio, weights + weight)
            });
        if weights > 0.0 {
            weighted_ratios / weights
        } else {
            1.0
        }
    }

    /// Predicted clear-sky index of `slot`, given the GAP factor of the last closed slots.
    fn predicted_index(&self, slot: i64, gap_factor: f64) -> f64 {
        let history = &self.state.clear_sky_index;
        let Some(newest) = history.newest else {
            return self.config.prior_index;
        };
        let steps_ahead = slot.saturating_sub(newest).max(1);
        let mean = history
            .mean_of_recent_days(slot, newest, self.config.days)
            .unwrap_or(self.config.prior_index);
        let fade = (-((steps_ahead - 1) * SLOT_S) as f64 / self.config.gap_fade_s as f64).exp();
        let gap_now = 1.0 + (gap_factor - 1.0) * fade;
        let seasonal = gap_now * mean;
        // WCMA's persistence term, α·k(n) for the next slot, decays as α^h further out.
        let predicted = match history.get(newest) {
            Some(last_index) => {
                let persistence = self
                    .config
                    .alpha
                    .powi(i32::try_from(steps_ahead).unwrap_or(i32::MAX));
                persistence * last_index + (1.0 - persistence) * seasonal
            }
            None => seasonal,
        };
        predicted.clamp(0.0, 1.0)
    }
}

impl SolarPredictor for Forecaster {
    fn record(&mut self, now: Timestamp, solar_w: f64) {
        let site = self.site;
        let closed = self.state.integrator.record(now, solar_w, |start, end| {
            clear_sky_wh_per_m2(site, start, end)
        });
        let capacity = self.config.history_slots();
        for slot in closed {
            let index = self.clear_sky_index_of(&slot);
            self.state.clear_sky_index.push(slot.slot, index, capacity);
        }
    }

    fn forecast(&self, now: Timestamp, horizon_s: i64) -> Vec<ForecastSlot> {
        let gap_factor = self.gap_factor();
        forecast_slots(now, horizon_s)
            .map(|(slot, start)| ForecastSlot {
                start,
                wh: self.predicted_index(slot, gap_factor)
                    * self.envelope_wh(start, slot_start(slot + 1)),
            })
            .collect()
    }
}

/// The baseline: per-slot mean of the measured energy over the last `days` days.
#[derive(Debug, Clone, PartialEq)]
pub struct SlotAverage {
    days: usize,
    integrator: SlotIntegrator,
    energy_wh: SlotHistory,
}

impl SlotAverage {
    /// A baseline averaging the last `days` days (at least one). It predicts zero for slots it
    /// has never seen.
    pub fn new(days: usize) -> Self {
        Self {
            days: days.max(1),
            integrator: SlotIntegrator::default(),
            energy_wh: SlotHistory::default(),
        }
    }
}

impl SolarPredictor for SlotAverage {
    fn record(&mut self, now: Timestamp, solar_w: f64) {
        let closed = self.integrator.record(now, solar_w, |_, _| 0.0);
        let capacity = self.days * SLOTS_PER_DAY as usize;
        for slot in closed {
            // A partly observed slot is extrapolated at its mean power.
            let energy = (slot.covered_s >= MIN_COVERED_S)
                .then(|| slot.measured_wh * SLOT_S as f64 / slot.covered_s as f64);
            self.energy_wh.push(slot.slot, energy, capacity);
        }
    }

    fn forecast(&self, now: Timestamp, horizon_s: i64) -> Vec<ForecastSlot> {
        let newest = self.energy_wh.newest;
        forecast_slots(now, horizon_s)
            .map(|(slot, start)| {
                let mean = newest
                    .and_then(|newest| self.energy_wh.mean_of_recent_days(slot, newest, self.days))
                    .unwrap_or(0.0);
                let remaining = (slot_start(slot + 1) - start) as f64 / SLOT_S as f64;
                ForecastSlot {
                    start,
                    wh: mean * remaining,
                }
            })
            .collect()
    }
}

fn slot_index(t: Timestamp) -> i64 {
    t.div_euclid(SLOT_S)
}

fn slot_start(slot: i64) -> Timestamp {
    slot * SLOT_S
}

/// `(slot, start)` of each forecast entry, as documented on [`SolarPredictor::forecast`].
fn forecast_slots(now: Timestamp, horizon_s: i64) -> impl Iterator<Item = (i64, Timestamp)> {
    let first = slot_index(now);
    let slots = if horizon_s > 0 {
        slot_index(now.saturating_add(horizon_s - 1)) - first + 1
    } else {
        0
    };
    (first..first + slots).map(move |slot| (slot, slot_start(slot).max(now)))
}

/// One power sample.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct PowerSample {
    at: Timestamp,
    watts: f64,
}

/// Energy gathered for one slot.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct AccumulatedSlot {
    slot: i64,
    /// Measured energy over the covered part of the slot.
    measured_wh: f64,
    /// A reference quantity integrated over exactly the same covered intervals (the
    /// forecaster's clear-sky irradiation), so partial coverage does not bias a ratio.
    reference: f64,
    /// Seconds of the slot between samples close enough to integrate.
    covered_s: i64,
}

/// Turns power samples into per-slot energy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct SlotIntegrator {
    last_sample: Option<PowerSample>,
    open: Option<AccumulatedSlot>,
}

impl SlotIntegrator {
    /// Adds the interval since the previous sample (trapezoidal, split at slot boundaries) and
    /// returns the slots that `now` has moved past, oldest first. `reference(start, end)` is
    /// integrated over the same intervals.
    fn record(
        &mut self,
        now: Timestamp,
        watts: f64,
        reference: impl Fn(Timestamp, Timestamp) -> f64,
    ) -> Vec<AccumulatedSlot> {
        let mut closed = Vec::new();
        let sample = watts.is_finite().then_some(PowerSample {
            at: now,
            watts: watts.max(0.0),
        });
        if let (Some(previous), Some(current)) = (self.last_sample, sample)
            && current
                .at
                .checked_sub(previous.at)
                .is_some_and(|elapsed_s| (1..=MAX_SAMPLE_GAP_S).contains(&elapsed_s))
        {
            self.integrate(previous, current, &reference, &mut closed);
        }
        match self.open {
            Some(open) if open.slot < slot_index(now) => closed.extend(self.open.take()),
            // The clock went backwards: what was gathered belongs to another timeline.
            Some(open) if open.slot > slot_index(now) => self.open = None,
            _ => {}
        }
        self.last_sample = sample;
        closed
    }

    fn integrate(
        &mut self,
        from: PowerSample,
        to: PowerSample,
        reference: &impl Fn(Timestamp, Timestamp) -> f64,
        closed: &mut Vec<AccumulatedSlot>,
    ) {
        let power_at = |t: Timestamp| {
            from.watts + (to.watts - from.watts) * (t - from.at) as f64 / (to.at - from.at) as f64
        };
        let mut piece_start = from.at;
        while piece_start < to.at {
            let slot = slot_index(piece_start);
            let piece_end = to.at.min(slot_start(slot + 1));
            if self.open.is_some_and(|open| open.slot != slot) {
                closed.extend(self.open.take());
            }
            let open = self.open.get_or_insert(AccumulatedSlot {
                slot,
                measured_wh: 0.0,
                reference: 0.0,
                covered_s: 0,
            });
            let duration_s = piece_end - piece_start;
            open.measured_wh +=
                0.5 * (power_at(piece_start) + power_at(piece_end)) * duration_s as f64 / 3600.0;
            open.reference += reference(piece_start, piece_end);
            open.covered_s += duration_s;
            piece_start = piece_end;
        }
    }

    /// Drops restored numbers that cannot come from real measurements.
    fn sanitised(self) -> Self {
        let sample_ok = self.last_sample.is_none_or(|sample| {
            PLAUSIBLE_SLOTS.contains(&slot_index(sample.at))
                && sample.watts.is_finite()
                && sample.watts >= 0.0
        });
        let open_ok = self.open.is_none_or(|open| {
            PLAUSIBLE_SLOTS.contains(&open.slot)
                && open.measured_wh.is_finite()
                && open.measured_wh >= 0.0
                && open.reference.is_finite()
                && (0..=SLOT_S).contains(&open.covered_s)
        });
        if sample_ok && open_ok {
            self
        } else {
            Self::default()
        }
    }
}

/// One value per slot for the most recent slots, contiguous in time. Slots without a value
/// (night, not observed) hold `None`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct SlotHistory {
    /// The slot of the last value.
    newest: Option<i64>,
    /// Oldest first; the last element belongs to `newest`.
    values: VecDeque<Option<f64>>,
}

impl SlotHistory {
    /// Appends the value of `slot`, keeping at most `capacity` slots. Skipped slots become
    /// `None`; a slot not after the newest means the clock went backwards, and the history,
    /// which belongs to another timeline, is dropped.
    fn push(&mut self, slot: i64, value: Option<f64>, capacity: usize) {
        if let Some(newest) = self.newest {
            let skipped = slot - newest - 1;
            if skipped < 0 || skipped >= capacity as i64 {
                self.values.clear();
            } else {
                self.values.extend((0..skipped).map(|_| None));
            }
        }
        self.values.push_back(value);
        self.newest = Some(slot);
        while self.values.len() > capacity {
            self.values.pop_front();
        }
    }

    fn get(&self, slot: i64) -> Option<f64> {
        let age = usize::try_from(self.newest? - slot).ok()?;
        let position = self.values.len().checked_sub(age + 1)?;
        self.values.get(position).copied().flatten()
    }

    /// Mean of the values at the same time of day as `slot` on the `days` most recent days
    /// that are not after `latest`, ignoring missing ones.
    fn mean_of_recent_days(&self, slot: i64, latest: i64, days: usize) -> Option<f64> {
        let days_back = if slot > latest {
            (slot - latest + SLOTS_PER_DAY - 1) / SLOTS_PER_DAY
        } else {
            0
        };
        let most_recent = slot - days_back * SLOTS_PER_DAY;
        let (sum, count) = (0..days as i64)
            .filter_map(|day| self.get(most_recent - day * SLOTS_PER_DAY))
            .fold((0.0, 0u32), |(sum, count), value| (sum + value, count + 1));
        (count > 0).then(|| sum / f64::from(count))
    }

    /// Keeps only the last `capacity` slots and values `valid` accepts.
    fn sanitised(mut self, capacity: usize, valid: impl Fn(f64) -> bool) -> Self {
        while self.values.len() > capacity {
            self.values.pop_front();
        }
        for value in &mut self.values {
            *value = value.filter(|&v| v.is_finite() && valid(v));
        }
        if !self
            .newest
            .is_some_and(|newest| PLAUSIBLE_SLOTS.contains(&newest))
        {
            return Self::default();
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::solar::clear_sky_ghi;

    /// Las Vegas: solar noon ≈ 19:40 UTC, so a UTC day runs from mid-afternoon to mid-afternoon.
    const SITE: Site = Site {
        latitude: 36.1,
        longitude: -115.1,
    };
    const PANEL_W: f64 = 60.0;
    const DAY_S: i64 = 86_400;
    /// 2024-06-01 00:00 UTC.
    const JUNE_1: Timestamp = 1_717_200_000;
    const SAMPLE_S: i64 = 60;

    fn hour(day: i64, hour: i64) -> Timestamp {
        JUNE_1 + day * DAY_S + hour * 3600
    }

    /// Panel power under a sky of clear-sky index `index` (relative to the envelope).
    fn power(t: Timestamp, index: f64) -> f64 {
        index * PANEL_W * clear_sky_ghi(SITE, t) / 1000.0
            * ForecastConfig::default().envelope_factor
    }

    fn feed(
        predictor: &mut impl SolarPredictor,
        from: Timestamp,
        to: Timestamp,
        index: impl Fn(Timestamp) -> f64,
    ) {
        for t in (from..to).step_by(SAMPLE_S as usize) {
            predictor.record(t, power(t, index(t)));
        }
    }

    fn forecaster_with_days(days: i64, index: f64) -> Forecaster {
        let mut forecaster = Forecaster::new(SITE, PANEL_W, None);
        feed(&mut forecaster, hour(0, 0), hour(days, 0), |_| index);
        forecaster
    }

    fn daylight(forecaster: &Forecaster, slot: &ForecastSlot) -> bool {
        forecaster.envelope_wh(slot.start, slot.end()) > 2.0
    }

    #[test]
    fn day_one_uses_the_prior_index() {
        let forecaster = Forecaster::new(SITE, PANEL_W, None);
        let forecast = forecaster.forecast(hour(0, 0), DAY_S);
        for slot in &forecast {
            let envelope = forecaster.envelope_wh(slot.start, slot.end());
            assert!((slot.wh - 0.4 * envelope).abs() < 1e-9);
        }
        // A 60 W panel on a June day at 36° N: the prior plans on roughly 300 Wh.
        let total: f64 = forecast.iter().map(|slot| slot.wh).sum();
        assert!((250.0..400.0).contains(&total), "{total}");
    }

    #[test]
    fn clear_sky_shaped_history_converges_to_the_learned_index() {
        let forecaster = forecaster_with_days(5, 0.8);
        let forecast = forecaster.forecast(hour(5, 0), DAY_S);
        let mut daylight_slots = 0;
        for slot in forecast.iter().filter(|slot| daylight(&forecaster, slot)) {
            let envelope = forecaster.envelope_wh(slot.start, slot.end());
            assert!(
                (slot.wh / envelope - 0.8).abs() < 0.005,
                "{} of {envelope}",
                slot.wh
            );
            daylight_slots += 1;
        }
        assert!(daylight_slots >= 26, "{daylight_slots}");
    }

    #[test]
    fn cloudy_morning_lowers_the_next_slots_through_gap() {
        let mut forecaster = forecaster_with_days(4, 0.8);
        // Day 5: a clear late afternoon (00:00–03:00 UTC), then a morning at a quarter of usual,
        // recorded up to and including the sample at 18:00 that closes the 17:30 slot.
        feed(&mut forecaster, hour(4, 0), hour(4, 18) + SAMPLE_S, |t| {
            if t < hour(4, 6) { 0.8 } else { 0.2 }
        });
        assert!(
            (forecaster.gap_factor() - 0.25).abs() < 0.01,
            "{}",
            forecaster.gap_factor()
        );

        let forecast = forecaster.forecast(hour(4, 18), 2 * DAY_S);
        let index_at = |at: Timestamp| {
            let slot = forecast
                .iter()
                .find(|slot| slot.start == at)
                .map_or(f64::NAN, |slot| slot.wh);
            slot / forecaster.envelope_wh(at, at + SLOT_S)
        };
        let next = index_at(hour(4, 18));
        assert!((next - 0.2).abs() < 0.02, "{next}");
        // The cloudiness forecast fades over the afternoon back towards the usual 0.8 …
        let in_two_hours = index_at(hour(4, 20));
        let in_five_hours = index_at(hour(4, 23));
        assert!(next < in_two_hours && in_two_hours < in_five_hours && in_five_hours < 0.8);
        assert!(in_five_hours > 0.7, "{in_five_hours}");
        // … and tomorrow morning is an ordinary one.
        assert!((index_at(hour(5, 18)) - 0.8).abs() < 0.005);

        let clear = forecaster_with_days(5, 0.8);
        let clear_next = clear.forecast(hour(4, 18), SLOT_S)[0].wh;
        assert!(forecast[0].wh < 0.3 * clear_next);
    }

    #[test]
    fn forecast_never_exceeds_the_envelope() {
        let mut forecaster = Forecaster::new(SITE, PANEL_W, None);
        // A sensor reading three times the panel rating, day and night.
        for t in (hour(0, 0)..hour(3, 0)).step_by(SAMPLE_S as usize) {
            forecaster.record(t, 3.0 * PANEL_W);
        }
        let forecast = forecaster.forecast(hour(3, 0) + 600, 2 * DAY_S);
        for slot in &forecast {
            let envelope = forecaster.envelope_wh(slot.start, slot.end());
            assert!(slot.wh <= envelope + 1e-9, "{} > {envelope}", slot.wh);
            if daylight(&forecaster, slot) {
                assert!(
                    (slot.wh - envelope).abs() < 1e-9,
                    "saturated index reaches the bound"
                );
            }
        }
    }

    #[test]
    fn night_slots_are_zero() {
        let forecaster = forecaster_with_days(2, 0.9);
        let forecast = forecaster.forecast(hour(2, 0), 2 * DAY_S);
        let night: Vec<_> = forecast
            .iter()
            .filter(|slot| clear_sky_wh_per_m2(SITE, slot.start, slot.end()) == 0.0)
            .collect();
        // About nine and a half hours of June night, twice.
        assert!(night.len() >= 36, "{}", night.len());
        assert!(night.iter().all(|slot| slot.wh == 0.0));
    }

    #[test]
    fn forecast_entries_are_slot_aligned_after_the_first() {
        let forecaster = forecaster_with_days(1, 0.5);
        let now = hour(1, 20) + 600;
        let forecast = forecaster.forecast(now, 2 * DAY_S);
        // The partial current slot plus 96 whole ones reach past now + 48 h.
        assert_eq!(forecast.len(), 97);
        assert_eq!(forecast[0].start, now);
        assert_eq!(forecast[0].end(), hour(1, 20) + SLOT_S);
        let remaining_envelope = forecaster.envelope_wh(now, hour(1, 20) + SLOT_S);
        assert!((forecast[0].wh / remaining_envelope - 0.5).abs() < 0.005);
        for pair in forecast.windows(2) {
            assert_eq!(pair[1].start, pair[0].end());
            assert_eq!(pair[1].start % SLOT_S, 0);
        }
        assert!(
            forecast
                .last()
                .is_some_and(|slot| slot.end() >= now + 2 * DAY_S)
        );
        assert!(forecaster.forecast(now, 0).is_empty());
    }

    #[test]
    fn gaps_in_recording_do_not_corrupt_slots() {
        let mut forecaster = forecaster_with_days(2, 0.6);
        let morning = hour(2, 15);
        // 08:00 local: the sun climbs fast. A 12-minute hole in the 15:00 slot leaves 18
        // minutes covered; a 3-hour hole spans 17:10 to 20:20.
        feed(&mut forecaster, hour(2, 0), morning + 1200, |_| 0.6);
        feed(&mut forecaster, morning + 1920, hour(2, 17) + 600, |_| 0.6);
        feed(&mut forecaster, hour(2, 20) + 1200, hour(3, 0), |_| 0.6);

        let history = &forecaster.state.clear_sky_index;
        let index_at = |t: Timestamp| history.get(slot_index(t));
        // Only the covered 18 minutes are compared with the clear sky, so the ramp of the
        // morning sun does not bias the index.
        assert!(
            index_at(morning).is_some_and(|index| (index - 0.6).abs() < 0.002),
            "{:?}",
            index_at(morning)
        );
        assert!(index_at(hour(2, 16) + 1800).is_some_and(|index| (index - 0.6).abs() < 0.002));
        // Slots seen for ten minutes or not at all are left unknown, not zero.
        for slot_start in (hour(2, 17)..=hour(2, 20)).step_by(SLOT_S as usize) {
            assert_eq!(index_at(slot_start), None, "slot at {slot_start}");
        }
        assert!(index_at(hour(2, 20) + 1800).is_some_and(|index| (index - 0.6).abs() < 0.002));
        // Tomorrow's 18:00 is predicted from the days that saw it.
        let tomorrow = forecaster.forecast(hour(3, 18), SLOT_S)[0];
        assert!(
            (tomorrow.wh / forecaster.envelope_wh(hour(3, 18), hour(3, 18) + SLOT_S) - 0.6).abs()
                < 0.005
        );

        // Away for three days: the missing days are unknown, the older ones still count.
        feed(&mut forecaster, hour(6, 0), hour(6, 2), |_| 0.6);
        let history = &forecaster.state.clear_sky_index;
        assert_eq!(
            history.values.len(),
            ForecastConfig::default().history_slots()
        );
        assert_eq!(history.get(slot_index(hour(4, 18))), None);
        assert!(
            history
                .get(slot_index(hour(2, 19) + 1800 + DAY_S))
                .is_none()
        );
        assert!(history.get(slot_index(hour(2, 21))).is_some());
    }

    #[test]
    fn clock_going_backwards_drops_the_other_timeline() {
        let mut forecaster = forecaster_with_days(3, 0.9);
        feed(
            &mut forecaster,
            hour(-100, 18),
            hour(-100, 20) + SAMPLE_S,
            |_| 0.3,
        );
        let history = &forecaster.state.clear_sky_index;
        assert_eq!(history.newest, Some(slot_index(hour(-100, 20)) - 1));
        assert!(
            history
                .values
                .iter()
                .flatten()
                .all(|&index| (index - 0.3).abs() < 0.01)
        );
    }

    #[test]
    fn state_round_trips_through_serde_json() {
        let mut forecaster = forecaster_with_days(3, 0.7);
        feed(&mut forecaster, hour(3, 0), hour(3, 16) + 700, |_| 0.3);
        let json = serde_json::to_string(&forecaster.state()).expect("state serialises");
        let restored: ForecastState = serde_json::from_str(&json).expect("state deserialises");
        let resumed = Forecaster::new(SITE, PANEL_W, Some(restored));
        let now = hour(3, 16) + 700;
        let before = forecaster.forecast(now, 2 * DAY_S);
        let after = resumed.forecast(now, 2 * DAY_S);
        assert_eq!(before.len(), after.len());
        for (a, b) in before.iter().zip(&after) {
            assert_eq!(a.start, b.start);
            assert!((a.wh - b.wh).abs() < 1e-9);
        }
        // The open slot's accumulator survives too: the slot closes with the same index.
        let mut continued = forecaster.clone();
        let mut resumed = resumed;
        feed(&mut continued, now, hour(3, 17) + SAMPLE_S, |_| 0.3);
        feed(&mut resumed, now, hour(3, 17) + SAMPLE_S, |_| 0.3);
        let slot = slot_index(hour(3, 16) + 1800);
        let (a, b) = (
            continued.state.clear_sky_index.get(slot),
            resumed.state.clear_sky_index.get(slot),
        );
        assert!(
            a.zip(b)
                .is_some_and(|(a, b)| (a - b).abs() < 1e-12 && (a - 0.3).abs() < 0.002)
        );
    }

    #[test]
    fn restored_indices_out_of_range_are_forgotten() {
        let forecaster = forecaster_with_days(2, 0.7);
        let mut json = serde_json::to_value(forecaster.state()).expect("state serialises");
        let values = &mut json["clear_sky_index"]["values"];
        let Some(first_daylight) = values
            .as_array()
            .and_then(|values| values.iter().position(|v| !v.is_null()))
        else {
            panic!("two days of history hold daylight indices");
        };
        values[first_daylight] = serde_json::json!(7.0);
        let restored: ForecastState = serde_json::from_value(json).expect("state deserialises");
        let resumed = Forecaster::new(SITE, PANEL_W, Some(restored));
        let history = &resumed.state.clear_sky_index;
        assert_eq!(history.values[first_daylight], None);
        assert!(
            history
                .values
                .iter()
                .flatten()
                .all(|&index| (0.0..=1.0).contains(&index))
        );
    }

    #[test]
    fn corrupt_restored_slot_numbers_reset_the_history() {
        let forecaster = forecaster_with_days(2, 0.7);
        let mut json = serde_json::to_value(forecaster.state()).expect("state serialises");
        json["clear_sky_index"]["newest"] = serde_json::json!(i64::MIN);
        let restored: ForecastState = serde_json::from_value(json).expect("state deserialises");
        let resumed = Forecaster::new(SITE, PANEL_W, Some(restored));
        assert_eq!(resumed.state.clear_sky_index, SlotHistory::default());
        let now = hour(2, 18);
        let slot = resumed.forecast(now, SLOT_S)[0];
        let envelope = resumed.envelope_wh(now, slot.end());
        assert!((slot.wh - ForecastConfig::default().prior_index * envelope).abs() < 1e-9);
    }

    #[test]
    fn slot_average_is_the_plain_mean_of_recent_days() {
        let constant = |predictor: &mut SlotAverage, day: i64, watts: f64| {
            for t in (hour(day, 0)..hour(day + 1, 0)).step_by(SAMPLE_S as usize) {
                predictor.record(t, watts);
            }
        };
        let mut two_days = SlotAverage::new(2);
        let mut one_day = SlotAverage::new(1);
        for (day, watts) in [(0, 30.0), (1, 10.0), (2, 20.0)] {
            constant(&mut two_days, day, watts);
            constant(&mut one_day, day, watts);
        }
        // Day 0 has aged out of the two-day window.
        let now = hour(3, 0) + 900;
        let two = two_days.forecast(now, DAY_S);
        assert!(
            (two[0].wh - 15.0 * 0.5 * 0.5).abs() < 1e-9,
            "half a slot left at the mean of 10 W and 20 W"
        );
        assert!(
            (two[10].wh - 15.0 * 0.5).abs() < 1e-9,
            "mean of 10 W and 20 W for 30 min"
        );
        // Day 2's last slot is still open, so the two most recent 23:30 slots are days 0 and 1,
        // each ending with a one-minute ramp to the next day's power (trapezoid).
        let day_0_last_wh = (29.0 * 30.0 + 20.0) / 60.0;
        let day_1_last_wh = (29.0 * 10.0 + 15.0) / 60.0;
        assert!((two[47].wh - (day_0_last_wh + day_1_last_wh) / 2.0).abs() < 1e-9);
        assert!((one_day.forecast(now, DAY_S)[10].wh - 20.0 * 0.5).abs() < 1e-9);
        assert!(
            SlotAverage::new(3)
                .forecast(now, DAY_S)
                .iter()
                .all(|slot| slot.wh == 0.0)
        );
    }

    #[test]
    fn config_validation_names_the_key() {
        assert_eq!(ForecastConfig::default().validate(), Ok(()));
        let cases = [
            (
                ForecastConfig {
                    alpha: 1.5,
                    ..ForecastConfig::default()
                },
                "solar.forecast.alpha",
            ),
            (
                ForecastConfig {
                    days: 0,
                    ..ForecastConfig::default()
                },
                "solar.forecast.days",
            ),
            (
                ForecastConfig {
                    gap_slots: 49,
                    ..ForecastConfig::default()
                },
                "solar.forecast.gap_slots",
            ),
            (
                ForecastConfig {
                    gap_fade_s: 0,
                    ..ForecastConfig::default()
                },
                "solar.forecast.gap_fade_s",
            ),
            (
                ForecastConfig {
                    prior_index: -0.1,
                    ..ForecastConfig::default()
                },
                "solar.forecast.prior_index",
            ),
            (
                ForecastConfig {
                    envelope_factor: f64::NAN,
                    ..ForecastConfig::default()
                },
                "solar.forecast.envelope_factor",
            ),
        ];
        for (config, key) in cases {
            assert_eq!(
                config
                    .validate()
                    .err()
                    .map(|e| e.key().to_owned())
                    .as_deref(),
                Some(key)
            );
        }
    }
}
