//! Power modes and the state machine that chooses them.
//!
//! Every observation names the mode the numbers call for. Getting worse uses the entry
//! thresholds; getting better needs the exit thresholds (entry plus a hysteresis margin), so
//! a state of charge wobbling around a threshold cannot make the node flap. On top of that, a
//! change must be called for continuously for `debounce_s` before it happens: a single bad
//! sample (a voltage sag when a task starts, a glitch on the bus) never switches modes and
//! never shuts the node down.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::Timestamp;
use crate::chemistry::ConfigError;

/// How much the node may do, from everything to nothing.
///
/// Ordered by severity: `Normal < Eco < Critical < Shutdown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Energy to spare: tasks run within the budget.
    Normal,
    /// Energy is tight (little or nothing spendable): only short tasks that fit the budget.
    Eco,
    /// The battery itself is low: no tasks, essential services only.
    Critical,
    /// The battery is nearly empty: halt and wait for the wake alarm.
    Shutdown,
}

impl Mode {
    /// All modes from the least to the most severe.
    pub const ALL: [Mode; 4] = [Mode::Normal, Mode::Eco, Mode::Critical, Mode::Shutdown];

    /// The name used in configuration, on D-Bus and in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Normal => "normal",
            Mode::Eco => "eco",
            Mode::Critical => "critical",
            Mode::Shutdown => "shutdown",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// A string that names no [`Mode`].
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
#[error("unknown power mode {0:?}, expected normal, eco, critical or shutdown")]
pub struct UnknownMode(pub String);

impl FromStr for Mode {
    type Err = UnknownMode;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Mode::ALL
            .into_iter()
            .find(|mode| mode.as_str() == name)
            .ok_or_else(|| UnknownMode(name.to_owned()))
    }
}

/// Longest accepted debounce: waiting longer than this before a shutdown would let the
/// battery run well past the shutdown threshold.
const MAX_DEBOUNCE_S: i64 = 3600;

/// When to change modes; TOML section `[modes]`. State-of-charge thresholds apply to the low
/// estimate (SoC minus its uncertainty), so an unsure estimator errs towards saving energy.
///
/// Only the state of charge can make the node Critical or shut it down. A thin budget makes it
/// Eco at worst: when nothing is spendable the budget refuses every request anyway, and a node
/// whose battery is healthy but whose reserve is spoken for still has to keep its services up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case", default)]
pub struct ModeThresholds {
    /// Below this state of charge the node shuts down.
    pub shutdown_soc: f64,
    /// Below this state of charge the node runs essential services only.
    pub critical_soc: f64,
    /// Below this state of charge the node only takes short tasks.
    pub eco_soc: f64,
    /// Added to a state-of-charge threshold to leave the mode it guards.
    pub soc_hysteresis: f64,
    /// Below this spendable budget (Wh) the node only takes short tasks.
    pub eco_budget_wh: f64,
    /// Added to the eco budget threshold to leave Eco, Wh.
    pub budget_hysteresis_wh: f64,
    /// How long a change must be called for without interruption before it happens.
    pub debounce_s: i64,
}

impl Default for ModeThresholds {
    fn default() -> Self {
        Self {
            // 8 % of the seed's 185 Wh is ~15 Wh: about five hours of idle Pi 4, left so the
            // cells are not driven to the protection cutoff while the node is halted.
            shutdown_soc: 0.08,
            critical_soc: 0.20,
            eco_soc: 0.40,
            soc_hysteresis: 0.05,
            // About an hour of a Pi 4 computing at ~5 W.
            eco_budget_wh: 5.0,
            budget_hysteresis_wh: 2.0,
            // Sleepy Pi's low-voltage example waits 30 s; twice that with 10 s sampling still
            // reacts within a minute, long before a Pi 4 can drain a percent of 185 Wh.
            debounce_s: 60,
        }
    }
}

impl ModeThresholds {
    /// Rejects thresholds that are out of range or out of order, naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        ConfigError::require_within("modes.shutdown_soc", self.shutdown_soc, 0.0, 1.0)?;
        ConfigError::require_within("modes.critical_soc", self.critical_soc, 0.0, 1.0)?;
        ConfigError::require_within("modes.eco_soc", self.eco_soc, 0.0, 1.0)?;
        require_above(
            "modes.critical_soc",
            self.critical_soc,
            "modes.shutdown_soc",
            self.shutdown_soc,
        )?;
        require_above(
            "modes.eco_soc",
            self.eco_soc,
            "modes.critical_soc",
            self.critical_soc,
        )?;
        ConfigError::require_positive("modes.soc_hysteresis", self.soc_hysteresis)?;
        if self.eco_soc + self.soc_hysteresis >= 1.0 {
            return Err(ConfigError::new(
                "modes.soc_hysteresis",
                format!(
                    "must keep modes.eco_soc + modes.soc_hysteresis below 1 or normal mode is \
                     unreachable, got {} + {}",
                    self.eco_soc, self.soc_hysteresis
                ),
            ));
        }
        if !(self.eco_budget_wh.is_finite() && self.eco_budget_wh >= 0.0) {
            return Err(ConfigError::new(
                "modes.eco_budget_wh",
                format!("must be >= 0, got {}", self.eco_budget_wh),
            ));
        }
        ConfigError::require_positive("modes.budget_hysteresis_wh", self.budget_hysteresis_wh)?;
        if !(0..=MAX_DEBOUNCE_S).contains(&self.debounce_s) {
            return Err(ConfigError::new(
                "modes.debounce_s",
                format!(
                    "must be between 0 and {MAX_DEBOUNCE_S}, got {}",
                    self.debounce_s
                ),
            ));
        }
        Ok(())
    }
}

fn require_above(key: &str, value: f64, lower_key: &str, lower: f64) -> Result<(), ConfigError> {
    if value > lower {
        Ok(())
    } else {
        Err(ConfigError::new(
            key,
            format!("must be above {lower_key} ({lower}), got {value}"),
        ))
    }
}

/// What the mode machine looks at in one observation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModeInputs {
    /// State of charge minus its uncertainty, 0..=1.
    pub soc_low: f64,
    /// Energy that may be spent now, Wh (see [`crate::budget::Budget::spendable_wh`]).
    pub spendable_wh: f64,
}

/// A change of mode and the number that caused it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    /// Mode before the change.
    pub from: Mode,
    /// Mode after the change.
    pub to: Mode,
    /// Human-readable cause naming the measured value and the threshold it crossed.
    pub reason: String,
}

/// A mode that has been called for (or a mode beyond it in the same direction) since `since`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PendingChange {
    /// The mode that would be entered.
    pub to: Mode,
    /// Start of the uninterrupted run of observations calling for it.
    pub since: Timestamp,
}

/// The persisted part of a [`ModeMachine`]. Pending changes are kept so that a daemon that
/// restarts repeatedly cannot postpone a shutdown forever.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModeState {
    /// The current mode.
    pub mode: Mode,
    /// Debounce timers, least severe mode first.
    pub pending: Vec<PendingChange>,
}

impl Default for ModeState {
    /// A node without history starts in `Normal`; real numbers take over after the first
    /// debounce period.
    fn default() -> Self {
        Self {
            mode: Mode::Normal,
            pending: Vec::new(),
        }
    }
}

/// Chooses the mode from successive observations with hysteresis and debounce.
#[derive(Debug, Clone, PartialEq)]
pub struct ModeMachine {
    thresholds: ModeThresholds,
    state: ModeState,
}

impl ModeMachine {
    /// A machine continuing from `restored`, or starting in `Normal`.
    pub fn new(thresholds: ModeThresholds, restored: Option<ModeState>) -> Self {
        Self {
            thresholds,
            state: restored.unwrap_or_default(),
        }
    }

    /// The current mode.
    pub fn mode(&self) -> Mode {
        self.state.mode
    }

    /// The state to persist.
    pub fn state(&self) -> ModeState {
        self.state.clone()
    }

    /// Feeds one observation; returns the transition if one happens now.
    ///
    /// Non-finite inputs (a broken estimator) are ignored entirely: they neither change the
    /// mode nor reset the debounce timers.
    pub fn observe(&mut self, now: Timestamp, inputs: &ModeInputs) -> Option<Transition> {
        if !(inputs.soc_low.is_finite() && inputs.spendable_wh.is_finite()) {
            return None;
        }
        let current = self.state.mode;
        let wanted = self.wanted_mode(inputs);
        self.state.pending = pending_towards(current, wanted, &self.state.pending, now);

        let debounce_s = self.thresholds.debounce_s;
        let matured = self
            .state
            .pending
            .iter()
            .filter(|change| now - change.since >= debounce_s)
            .map(|change| change.to)
            .max_by_key(|&to| severity(to).abs_diff(severity(current)))?;

        let reason = if matured > current {
            entry_reason(&self.thresholds, matured, inputs)
        } else {
            exit_reason(&self.thresholds, matured, inputs)
        };
        self.state.mode = matured;
        self.state.pending = pending_towards(matured, wanted, &self.state.pending, now);
        Some(Transition {
            from: current,
            to: matured,
            reason,
        })
    }

    /// The mode the numbers call for, given the current mode: worse as soon as an entry
    /// threshold is crossed, better only as far as the exit thresholds allow. Each mode's exit
    /// threshold guards only that mode: Shutdown is left for Critical once the low SoC clears
    /// `shutdown_soc + soc_hysteresis`, without waiting for the critical exit threshold.
    fn wanted_mode(&self, inputs: &ModeInputs) -> Mode {
        let current = self.state.mode;
        let entered = indicated_mode(&triggers(&self.thresholds, Margin::Entry), inputs);
        if entered > current {
            entered
        } else {
            current.min(indicated_mode(
                &triggers(&self.thresholds, Margin::Exit),
                inputs,
            ))
        }
    }
}

fn severity(mode: Mode) -> u8 {
    mode as u8
}

/// The debounce timers for a move from `current` towards `wanted`: one per mode on the way
/// (`wanted` included), keeping the start of those already running. Modes in the other
/// direction, or beyond `wanted`, are no longer called for, so their timers are dropped.
/// A timer that started after `now` (the clock went backwards) restarts now; otherwise it
/// would not run out until the clock caught up.
fn pending_towards(
    current: Mode,
    wanted: Mode,
    running: &[PendingChange],
    now: Timestamp,
) -> Vec<PendingChange> {
    let on_the_way =
        |mode: Mode| (current < mode && mode <= wanted) || (wanted <= mode && mode < current);
    Mode::ALL
        .into_iter()
        .filter(|&mode| on_the_way(mode))
        .map(|to| {
            let since = running
                .iter()
                .find(|change| change.to == to)
                .map_or(now, |change| change.since.min(now));
            PendingChange { to, since }
        })
        .collect()
}

/// Whether thresholds are taken as they are (to enter a worse mode) or with the hysteresis
/// margin added (to decide whether a worse mode may be left).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Margin {
    Entry,
    Exit,
}

/// One condition that calls for a mode.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Trigger {
    /// The low SoC estimate is below `threshold`.
    SocBelow { threshold: f64 },
    /// The spendable budget is below `threshold_wh`.
    BudgetBelow { threshold_wh: f64 },
}

impl Trigger {
    fn holds(self, inputs: &ModeInputs) -> bool {
        match self {
            Trigger::SocBelow { threshold } => inputs.soc_low < threshold,
            Trigger::BudgetBelow { threshold_wh } => inputs.spendable_wh < threshold_wh,
        }
    }
}

/// Every trigger with the mode it calls for, least severe mode first and, within a mode, the
/// state of charge first because it is the number operators look at.
fn triggers(thresholds: &ModeThresholds, margin: Margin) -> [(Mode, Trigger); 4] {
    let (soc_margin, wh_margin) = match margin {
        Margin::Entry => (0.0, 0.0),
        Margin::Exit => (thresholds.soc_hysteresis, thresholds.budget_hysteresis_wh),
    };
    [
        (
            Mode::Eco,
            Trigger::SocBelow {
                threshold: thresholds.eco_soc + soc_margin,
            },
        ),
        (
            Mode::Eco,
            Trigger::BudgetBelow {
                threshold_wh: thresholds.eco_budget_wh + wh_margin,
            },
        ),
        (
            Mode::Critical,
            Trigger::SocBelow {
                threshold: thresholds.critical_soc + soc_margin,
            },
        ),
        (
            Mode::Shutdown,
            Trigger::SocBelow {
                threshold: thresholds.shutdown_soc + soc_margin,
            },
        ),
    ]
}

/// The most severe mode any holding trigger calls for.
fn indicated_mode(triggers: &[(Mode, Trigger)], inputs: &ModeInputs) -> Mode {
    triggers
        .iter()
        .filter(|(_, trigger)| trigger.holds(inputs))
        .map(|&(mode, _)| mode)
        .max()
        .unwrap_or(Mode::Normal)
}

fn percent(fraction: f64) -> String {
    // Thresholds print as configured ("20 %", "12.5 %"), without float noise.
    format!("{}", (fraction * 1000.0).round() / 10.0)
}

/// Why `to` was entered: the least severe holding trigger that calls for `to` or worse, so a
/// move to Critical at 6 % cites the critical threshold rather than the shutdown one.
fn entry_reason(thresholds: &ModeThresholds, to: Mode, inputs: &ModeInputs) -> String {
    let cause = triggers(thresholds, Margin::Entry)
        .into_iter()
        .find(|&(mode, trigger)| mode >= to && trigger.holds(inputs));
    match cause {
        Some((mode, Trigger::SocBelow { threshold })) => format!(
            "state of charge {:.1} % (low estimate) below {mode} threshold {} %",
            inputs.soc_low * 100.0,
            percent(threshold)
        ),
        Some((mode, Trigger::BudgetBelow { threshold_wh })) => format!(
            "spendable budget {:.2} Wh below {mode} threshold {threshold_wh} Wh",
            inputs.spendable_wh
        ),
        // Unreachable for a debounced move, which only happens while a trigger holds.
        None => format!("{to} called for"),
    }
}

/// Why the node may leave the mode just above `to`: all of that mode's triggers have cleared
/// their exit thresholds (which also clears every more severe trigger).
fn exit_reason(thresholds: &ModeThresholds, to: Mode, inputs: &ModeInputs) -> String {
    let left = Mode::ALL
        .into_iter()
        .find(|&mode| mode > to)
        .unwrap_or(Mode::Shutdown);
    let cleared: Vec<String> = triggers(thresholds, Margin::Exit)
        .into_iter()
        .filter(|&(mode, _)| mode == left)
        .map(|(_, trigger)| match trigger {
            Trigger::SocBelow { threshold } => format!(
                "state of charge {:.1} % (low estimate) at or above {left} exit threshold {} %",
                inputs.soc_low * 100.0,
                percent(threshold)
            ),
            Trigger::BudgetBelow { threshold_wh } => format!(
                "spendable budget {:.2} Wh at or above {left} exit threshold {threshold_wh} Wh",
                inputs.spendable_wh
            ),
        })
        .collect();
    cleared.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Timestamp = 1_750_000_000;
    /// Sampling period of the daemon.
    const STEP_S: i64 = 10;

    fn machine() -> ModeMachine {
        ModeMachine::new(ModeThresholds::default(), None)
    }

    /// Plenty of budget: only the SoC decides.
    fn soc(soc_low: f64) -> ModeInputs {
        ModeInputs {
            soc_low,
            spendable_wh: 50.0,
        }
    }

    /// Feeds `inputs` every `STEP_S` from `start` for `duration_s` (exclusive), returning the
    /// transitions with their times.
    fn run(
        machine: &mut ModeMachine,
        start: Timestamp,
        duration_s: i64,
        inputs: ModeInputs,
    ) -> Vec<(Timestamp, Transition)> {
        (start..start + duration_s)
            .step_by(STEP_S as usize)
            .filter_map(|now| machine.observe(now, &inputs).map(|change| (now, change)))
            .collect()
    }

    #[test]
    fn mode_names_round_trip() {
        for mode in Mode::ALL {
            assert_eq!(mode.as_str().parse(), Ok(mode));
            assert_eq!(mode.to_string(), mode.as_str());
            assert_eq!(
                serde_json::to_string(&mode).ok(),
                Some(format!("\"{mode}\""))
            );
        }
        assert_eq!(
            "Normal".parse::<Mode>(),
            Err(UnknownMode("Normal".to_owned()))
        );
    }

    #[test]
    fn sustained_dip_switches_after_exactly_the_debounce_time() {
        let mut machine = machine();
        let changes = run(&mut machine, T0, 300, soc(0.35));
        assert_eq!(changes.len(), 1);
        let (at, change) = &changes[0];
        assert_eq!(*at, T0 + 60);
        assert_eq!((change.from, change.to), (Mode::Normal, Mode::Eco));
        assert_eq!(
            change.reason,
            "state of charge 35.0 % (low estimate) below eco threshold 40 %"
        );
    }

    #[test]
    fn short_dips_and_single_bad_samples_are_ignored() {
        let mut machine = machine();
        // 50 s below the eco threshold, then one good sample: the timer starts over.
        assert!(run(&mut machine, T0, 50, soc(0.35)).is_empty());
        assert!(run(&mut machine, T0 + 50, 10, soc(0.60)).is_empty());
        assert!(run(&mut machine, T0 + 60, 50, soc(0.35)).is_empty());
        // A single sample at 1 % (a sag on the bus) must not shut the node down.
        assert_eq!(machine.observe(T0 + 110, &soc(0.01)), None);
        assert!(run(&mut machine, T0 + 120, 600, soc(0.60)).is_empty());
        assert_eq!(machine.mode(), Mode::Normal);
    }

    #[test]
    fn soc_oscillating_around_a_threshold_does_not_flap() {
        let mut machine = machine();
        run(&mut machine, T0, 60 + STEP_S, soc(0.38));
        assert_eq!(machine.mode(), Mode::Eco);
        // Swinging ±3 % around the 40 % entry threshold for an hour, slowly enough that each
        // side lasts longer than the debounce: Eco is only left at 45 %.
        let mut now = T0 + 60 + STEP_S;
        for soc_low in [0.43, 0.37].repeat(6) {
            assert!(run(&mut machine, now, 300, soc(soc_low)).is_empty());
            now += 300;
        }
        assert_eq!(machine.mode(), Mode::Eco);
    }

    #[test]
    fn recovery_needs_the_exit_thresholds() {
        let mut machine = machine();
        run(&mut machine, T0, 60 + STEP_S, soc(0.15));
        assert_eq!(machine.mode(), Mode::Critical);

        // Above the 20 % entry threshold but below the 25 % exit threshold: stay Critical.
        assert!(run(&mut machine, T0 + 70, 600, soc(0.24)).is_empty());
        let changes = run(&mut machine, T0 + 670, 600, soc(0.30));
        let (at, change) = &changes[0];
        assert_eq!(*at, T0 + 730);
        assert_eq!((change.from, change.to), (Mode::Critical, Mode::Eco));
        assert_eq!(
            change.reason,
            "state of charge 30.0 % (low estimate) at or above critical exit threshold 25 %"
        );

        // Normal needs 45 % and a budget of at least 7 Wh.
        let poor = ModeInputs {
            spendable_wh: 6.0,
            ..soc(0.60)
        };
        assert!(run(&mut machine, T0 + 1270, 600, poor).is_empty());
        let changes = run(&mut machine, T0 + 1870, 600, soc(0.46));
        assert_eq!(
            changes.last().map(|(_, change)| change.to),
            Some(Mode::Normal)
        );
    }

    #[test]
    fn falling_soc_escalates_through_every_mode() {
        let mut machine = machine();
        let mut modes = Vec::new();
        // 1 % lost every 10 minutes, sampled every 10 s, from 50 % to 3 %.
        for step in 0..(47 * 60) {
            let now = T0 + step * STEP_S;
            let soc_low = 0.50 - step as f64 / 6000.0;
            if let Some(change) = machine.observe(now, &soc(soc_low)) {
                modes.push((change.to, soc_low));
            }
        }
        let entered: Vec<Mode> = modes.iter().map(|&(mode, _)| mode).collect();
        assert_eq!(entered, [Mode::Eco, Mode::Critical, Mode::Shutdown]);
        // Each switch lands one debounce period (0.1 %) after the first sample below its
        // threshold, which is at most one step (1/60 %) past the threshold.
        for ((_, soc_low), threshold) in modes.iter().zip([0.40, 0.20, 0.08]) {
            let past_threshold = threshold - soc_low;
            assert!(
                (0.001 - 1e-9..=0.001 + 1.0 / 6000.0 + 1e-9).contains(&past_threshold),
                "{soc_low}"
            );
        }
    }

    #[test]
    fn a_sudden_drop_goes_straight_to_the_mode_it_calls_for() {
        let mut machine = machine();
        let changes = run(&mut machine, T0, 120, soc(0.05));
        let summary: Vec<(Mode, Mode)> = changes
            .iter()
            .map(|(_, change)| (change.from, change.to))
            .collect();
        assert_eq!(summary, [(Mode::Normal, Mode::Shutdown)]);
        assert_eq!(
            changes[0].1.reason,
            "state of charge 5.0 % (low estimate) below shutdown threshold 8 %"
        );
    }

    #[test]
    fn a_worsening_dip_matures_each_mode_on_its_own_timer() {
        let mut machine = machine();
        // Eco-level for 30 s, then Critical-level: "Eco or worse" has lasted 60 s at T0 + 60,
        // "Critical" only at T0 + 90.
        assert!(run(&mut machine, T0, 30, soc(0.30)).is_empty());
        let changes = run(&mut machine, T0 + 30, 90, soc(0.10));
        let summary: Vec<(Timestamp, Mode)> = changes
            .iter()
            .map(|(at, change)| (*at, change.to))
            .collect();
        assert_eq!(summary, [(T0 + 60, Mode::Eco), (T0 + 90, Mode::Critical)]);
        assert_eq!(
            changes[0].1.reason,
            "state of charge 10.0 % (low estimate) below eco threshold 40 %"
        );
    }

    #[test]
    fn an_empty_budget_is_eco_never_critical() {
        let mut machine = machine();
        // A healthy battery whose energy is all spoken for by the reserve: tasks are refused by
        // the budget, but the node keeps its services up in Eco for as long as it likes.
        let nothing_spendable = ModeInputs {
            soc_low: 0.70,
            spendable_wh: 0.0,
        };
        let changes = run(&mut machine, T0, 6 * 3600, nothing_spendable);
        let summary: Vec<(Mode, Mode)> = changes
            .iter()
            .map(|(_, change)| (change.from, change.to))
            .collect();
        assert_eq!(summary, [(Mode::Normal, Mode::Eco)]);
        assert_eq!(
            changes[0].1.reason,
            "spendable budget 0.00 Wh below eco threshold 5 Wh"
        );

        // Back to Normal only once the budget clears 5 + 2 Wh.
        let thin_budget = ModeInputs {
            soc_low: 0.70,
            spendable_wh: 6.5,
        };
        assert!(run(&mut machine, T0 + 6 * 3600, 600, thin_budget).is_empty());
        let recovered = ModeInputs {
            soc_low: 0.70,
            spendable_wh: 7.0,
        };
        let changes = run(&mut machine, T0 + 6 * 3600 + 600, 600, recovered);
        assert_eq!(changes.len(), 1);
        assert_eq!(
            (changes[0].1.from, changes[0].1.to),
            (Mode::Eco, Mode::Normal)
        );
    }

    #[test]
    fn shutdown_is_left_at_its_own_exit_threshold() {
        let mut machine = machine();
        run(&mut machine, T0, 60 + STEP_S, soc(0.05));
        assert_eq!(machine.mode(), Mode::Shutdown);

        // 12 % clears the 8 % entry but not the 13 % exit threshold: still Shutdown.
        assert!(run(&mut machine, T0 + 70, 600, soc(0.12)).is_empty());
        // 13.5 % is enough for Critical, although the critical exit threshold (25 %) is far.
        let changes = run(&mut machine, T0 + 670, 600, soc(0.135));
        assert_eq!(changes.len(), 1);
        let (at, change) = &changes[0];
        assert_eq!(*at, T0 + 730);
        assert_eq!((change.from, change.to), (Mode::Shutdown, Mode::Critical));
        assert_eq!(
            change.reason,
            "state of charge 13.5 % (low estimate) at or above shutdown exit threshold 13 %"
        );
    }

    #[test]
    fn non_finite_inputs_neither_switch_nor_reset_the_timer() {
        let mut machine = machine();
        assert!(run(&mut machine, T0, 40, soc(0.30)).is_empty());
        assert_eq!(machine.observe(T0 + 40, &soc(f64::NAN)), None);
        assert_eq!(
            machine.observe(T0 + 60, &soc(0.30)).map(|change| change.to),
            Some(Mode::Eco)
        );
    }

    #[test]
    fn a_clock_set_back_restarts_running_timers() {
        let mut machine = machine();
        assert!(run(&mut machine, T0, 30, soc(0.30)).is_empty());
        // The RTC lost a year: the timer restarts at the new "now" instead of waiting for the
        // clock to catch up with T0.
        let back = T0 - 365 * 86_400;
        assert!(run(&mut machine, back, 60, soc(0.30)).is_empty());
        assert_eq!(
            machine
                .observe(back + 60, &soc(0.30))
                .map(|change| change.to),
            Some(Mode::Eco)
        );
    }

    #[test]
    fn restored_state_keeps_the_mode_and_running_timers() {
        let mut before = machine();
        run(&mut before, T0, 60 + STEP_S, soc(0.15));
        assert!(run(&mut before, T0 + 70, 30, soc(0.05)).is_empty());

        let saved = serde_json::to_string(&before.state()).ok();
        let restored: Option<ModeState> = saved.and_then(|json| serde_json::from_str(&json).ok());
        assert_eq!(restored.as_ref(), Some(&before.state()));
        let mut after = ModeMachine::new(ModeThresholds::default(), restored);
        assert_eq!(after.mode(), Mode::Critical);
        // The shutdown timer started at T0 + 70 keeps running through the restart.
        assert_eq!(
            after.observe(T0 + 130, &soc(0.05)).map(|change| change.to),
            Some(Mode::Shutdown)
        );
    }

    #[test]
    fn defaults_validate_and_bad_thresholds_are_named() {
        assert_eq!(ModeThresholds::default().validate(), Ok(()));
        let cases = [
            (
                ModeThresholds {
                    critical_soc: 0.05,
                    ..ModeThresholds::default()
                },
                "modes.critical_soc must be above modes.shutdown_soc (0.08), got 0.05",
            ),
            (
                ModeThresholds {
                    eco_soc: 1.5,
                    ..ModeThresholds::default()
                },
                "modes.eco_soc must be between 0 and 1, got 1.5",
            ),
            (
                ModeThresholds {
                    soc_hysteresis: 0.0,
                    ..ModeThresholds::default()
                },
                "modes.soc_hysteresis must be > 0, got 0",
            ),
            (
                ModeThresholds {
                    eco_soc: 0.97,
                    ..ModeThresholds::default()
                },
                "modes.soc_hysteresis must keep modes.eco_soc + modes.soc_hysteresis below 1 \
                 or normal mode is unreachable, got 0.97 + 0.05",
            ),
            (
                ModeThresholds {
                    eco_budget_wh: f64::NAN,
                    ..ModeThresholds::default()
                },
                "modes.eco_budget_wh must be >= 0, got NaN",
            ),
            (
                ModeThresholds {
                    debounce_s: -1,
                    ..ModeThresholds::default()
                },
                "modes.debounce_s must be between 0 and 3600, got -1",
            ),
        ];
        for (thresholds, message) in cases {
            assert_eq!(
                thresholds.validate().map_err(|error| error.to_string()),
                Err(message.to_owned())
            );
        }
    }
}
