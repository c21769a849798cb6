//! Why the node is up. Power HAT users' most common complaint is a wake-up that silently stopped
//! working; knowing, on every boot, whether the RTC alarm fired, power came back or someone
//! rebooted is how an operator finds out.

use pew_power::Timestamp;
use serde::{Deserialize, Serialize};

/// How the previous run of pew-powerd ended, persisted with the power state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "state")]
pub enum LastRun {
    /// Still marked running: the service never stopped cleanly, so power was lost (a brownout,
    /// a pulled cable) or the kernel hung.
    Running,
    /// Stopped by systemd (reboot, update, operator) without a planned power-off.
    Stopped,
    /// Powered off by the power manager with the wake alarm armed for `wake_at`.
    PoweredOff { wake_at: Timestamp },
}

/// The `WakeReason` property's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WakeReason {
    FirstBoot,
    RtcAlarm,
    PowerRestored,
    Reboot,
}

impl WakeReason {
    pub fn as_str(self) -> &'static str {
        match self {
            WakeReason::FirstBoot => "first-boot",
            WakeReason::RtcAlarm => "rtc-alarm",
            WakeReason::PowerRestored => "power-restored",
            WakeReason::Reboot => "reboot",
        }
    }
}

/// RTCs with minute-resolution alarms (PCF8523) and slow boots put the start a little before or
/// after the alarm; within this window it is the alarm that woke us.
const ALARM_TOLERANCE_S: i64 = 120;

/// Classifies the start at `now` after a previous run that ended as `last`.
pub fn classify(last: Option<LastRun>, now: Timestamp) -> WakeReason {
    match last {
        None => WakeReason::FirstBoot,
        Some(LastRun::Running) => WakeReason::PowerRestored,
        Some(LastRun::Stopped) => WakeReason::Reboot,
        // Up well before the alarm: the HAT restored power (charge, button) before it fired.
        Some(LastRun::PoweredOff { wake_at }) if now + ALARM_TOLERANCE_S < wake_at => {
            WakeReason::PowerRestored
        }
        Some(LastRun::PoweredOff { .. }) => WakeReason::RtcAlarm,
    }
}

/// Wake alarms are set on whole minutes, later rather than earlier: some RTCs only compare
/// minutes, and an alarm that reads back different from what was written is reported as a
/// failure.
pub fn alarm_time(at: Timestamp) -> Timestamp {
    at.div_euclid(60) * 60 + if at.rem_euclid(60) == 0 { 0 } else { 60 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_follow_how_the_last_run_ended() {
        assert_eq!(classify(None, 1000), WakeReason::FirstBoot);
        assert_eq!(
            classify(Some(LastRun::Running), 1000),
            WakeReason::PowerRestored
        );
        assert_eq!(classify(Some(LastRun::Stopped), 1000), WakeReason::Reboot);
    }

    #[test]
    fn planned_power_off_distinguishes_alarm_from_early_power() {
        let off = Some(LastRun::PoweredOff { wake_at: 10_000 });
        assert_eq!(classify(off, 10_030), WakeReason::RtcAlarm);
        assert_eq!(
            classify(off, 9_900),
            WakeReason::RtcAlarm,
            "booting a little early still counts"
        );
        assert_eq!(classify(off, 5_000), WakeReason::PowerRestored);
        assert_eq!(
            classify(off, 50_000),
            WakeReason::RtcAlarm,
            "a late boot after the alarm is still the alarm"
        );
    }

    #[test]
    fn alarms_round_up_to_whole_minutes() {
        assert_eq!(alarm_time(120), 120);
        assert_eq!(alarm_time(121), 180);
        assert_eq!(alarm_time(179), 180);
    }

    #[test]
    fn last_run_round_trips() {
        let json = serde_json::to_string(&LastRun::PoweredOff { wake_at: 5 }).unwrap();
        assert_eq!(json, r#"{"state":"powered-off","wake_at":5}"#);
        assert_eq!(
            serde_json::from_str::<LastRun>(&json).unwrap(),
            LastRun::PoweredOff { wake_at: 5 }
        );
    }
}
