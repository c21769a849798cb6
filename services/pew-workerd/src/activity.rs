//! What the worker is doing, and whether it may ask the scheduler for more work: a pure function
//! of the operator's controls, registration, the power mode and the running replicates.

use std::fmt;

/// The `State` property of `org.pew.Worker1` (names in `pew_bus::worker::STATES`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerState {
    Registering,
    Idle,
    Computing,
    Paused,
    PausedForEnergy,
    Draining,
    Error,
}

impl WorkerState {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerState::Registering => "registering",
            WorkerState::Idle => "idle",
            WorkerState::Computing => "computing",
            WorkerState::Paused => "paused",
            WorkerState::PausedForEnergy => "paused-for-energy",
            WorkerState::Draining => "draining",
            WorkerState::Error => "error",
        }
    }
}

impl fmt::Display for WorkerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The power manager's mode as the worker acts on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerMode {
    Normal,
    Eco,
    Critical,
    Shutdown,
    /// The power manager does not answer: without it nobody vouches for the battery.
    Unknown,
}

impl PowerMode {
    pub fn parse(mode: &str) -> Self {
        match mode {
            "normal" => PowerMode::Normal,
            "eco" => PowerMode::Eco,
            "critical" => PowerMode::Critical,
            "shutdown" => PowerMode::Shutdown,
            _ => PowerMode::Unknown,
        }
    }

    /// Whether new work may be taken at all (energy permitting).
    pub fn admits_work(self) -> bool {
        matches!(self, PowerMode::Normal | PowerMode::Eco)
    }
}

/// Where registration with the scheduler stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registration {
    Pending,
    Registered,
    /// Registration keeps failing; the reason is shown to the operator.
    Failing(String),
}

/// Everything the state depends on.
#[derive(Debug, Clone, PartialEq)]
pub struct Situation {
    pub registration: Registration,
    pub paused: bool,
    pub draining: bool,
    pub power: PowerMode,
    /// The last energy request was refused and nothing has changed since.
    pub energy_refused: bool,
    pub running: usize,
    pub capacity: usize,
}

impl Situation {
    pub fn state(&self) -> WorkerState {
        match &self.registration {
            Registration::Pending => return WorkerState::Registering,
            Registration::Failing(_) => return WorkerState::Error,
            Registration::Registered => {}
        }
        if self.draining {
            return WorkerState::Draining;
        }
        if self.running > 0 {
            return WorkerState::Computing;
        }
        if self.paused {
            return WorkerState::Paused;
        }
        if !self.power.admits_work() || self.energy_refused {
            return WorkerState::PausedForEnergy;
        }
        WorkerState::Idle
    }

    /// Whether the worker may ask the scheduler for a replicate now (energy still to be granted).
    pub fn may_ask(&self) -> bool {
        self.registration == Registration::Registered
            && !self.paused
            && !self.draining
            && self.power.admits_work()
            && self.running < self.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idle() -> Situation {
        Situation {
            registration: Registration::Registered,
            paused: false,
            draining: false,
            power: PowerMode::Normal,
            energy_refused: false,
            running: 0,
            capacity: 1,
        }
    }

    #[test]
    fn a_registered_idle_worker_asks_for_work() {
        assert_eq!(idle().state(), WorkerState::Idle);
        assert!(idle().may_ask());
        assert!(
            Situation {
                power: PowerMode::Eco,
                ..idle()
            }
            .may_ask()
        );
    }

    #[test]
    fn critical_shutdown_and_a_silent_power_manager_stop_new_work() {
        for power in [PowerMode::Critical, PowerMode::Shutdown, PowerMode::Unknown] {
            let situation = Situation { power, ..idle() };
            assert!(!situation.may_ask(), "{power:?}");
            assert_eq!(situation.state(), WorkerState::PausedForEnergy);
        }
    }

    #[test]
    fn running_work_is_shown_even_when_energy_is_short() {
        let situation = Situation {
            power: PowerMode::Critical,
            running: 1,
            ..idle()
        };
        assert_eq!(situation.state(), WorkerState::Computing);
    }

    #[test]
    fn operator_controls_win_over_power_and_stop_asking() {
        let paused = Situation {
            paused: true,
            ..idle()
        };
        assert_eq!(paused.state(), WorkerState::Paused);
        assert!(!paused.may_ask());
        let draining = Situation {
            draining: true,
            running: 1,
            ..idle()
        };
        assert_eq!(draining.state(), WorkerState::Draining);
        assert!(!draining.may_ask());
    }

    #[test]
    fn a_full_worker_does_not_ask() {
        assert!(
            !Situation {
                running: 1,
                ..idle()
            }
            .may_ask()
        );
    }

    #[test]
    fn registration_comes_first() {
        let pending = Situation {
            registration: Registration::Pending,
            ..idle()
        };
        assert_eq!(pending.state(), WorkerState::Registering);
        assert!(!pending.may_ask());
        let failing = Situation {
            registration: Registration::Failing("401".into()),
            ..idle()
        };
        assert_eq!(failing.state(), WorkerState::Error);
    }

    #[test]
    fn every_state_is_in_the_bus_contract() {
        for state in [
            WorkerState::Registering,
            WorkerState::Idle,
            WorkerState::Computing,
            WorkerState::Paused,
            WorkerState::PausedForEnergy,
            WorkerState::Draining,
            WorkerState::Error,
        ] {
            assert!(pew_bus::worker::STATES.contains(&state.as_str()), "{state}");
        }
    }
}
