//! The RTC wake alarm at `/sys/class/rtc/rtcN`: the one-shot timer that powers a halted node
//! back up (Pi 5 built-in RTC, or a HAT's RTC).
//!
//! Kernel behaviour this code is shaped around (drivers/rtc/rtc-sysfs.c): writing a future time
//! to `wakealarm` while an alarm is armed fails with EBUSY, so arming always clears first;
//! writing a past time silently disarms; and RTC chips with minute-resolution alarms (PCF8523)
//! store something other than what was written. The read-back check turns the last two into
//! errors instead of a node that never wakes up.

use std::path::{Path, PathBuf};

use crate::sysfs::{self, SysfsError};

/// Where the kernel lists RTCs.
pub const DEFAULT_ROOT: &str = "/sys/class/rtc";

/// What `wakealarm` accepts as "disarm": any time in the past.
const DISARM: &str = "0";

/// An RTC operation failed or left the alarm in an unexpected state.
#[derive(Debug, thiserror::Error)]
pub enum RtcError {
    /// Reading or writing an attribute failed.
    #[error(transparent)]
    Sysfs(#[from] SysfsError),
    /// `wakealarm` does not hold what was just written.
    #[error(
        "wake alarm at {} reads back {} after writing {requested}",
        path.display(),
        describe_alarm(*read_back)
    )]
    ReadBackMismatch {
        /// The `wakealarm` file.
        path: PathBuf,
        /// Alarm time that was written.
        requested: i64,
        /// What `wakealarm` reads back (`None` = no alarm armed).
        read_back: Option<i64>,
    },
    /// The RTC reports a time before the plausibility floor, i.e. it lost its time.
    #[error(
        "RTC time {now} s since the epoch is before {earliest}: the RTC was probably reset by a power loss"
    )]
    ImplausibleTime {
        /// What `since_epoch` reads.
        now: i64,
        /// The earliest time accepted.
        earliest: i64,
    },
}

fn describe_alarm(alarm: Option<i64>) -> String {
    alarm.map_or_else(
        || "no alarm (a time in the past disarms it)".to_owned(),
        |seconds| seconds.to_string(),
    )
}

/// One RTC device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rtc {
    dir: PathBuf,
}

impl Rtc {
    /// The RTC `name` (e.g. `"rtc0"`) under `root` (normally [`DEFAULT_ROOT`]).
    pub fn new(root: &Path, name: &str) -> Self {
        Self {
            dir: root.join(name),
        }
    }

    fn wakealarm(&self) -> PathBuf {
        self.dir.join("wakealarm")
    }

    /// Arms the alarm for `at` seconds since the epoch (UTC), replacing any armed alarm, and
    /// verifies that the RTC holds exactly that time.
    pub fn arm(&self, at: i64) -> Result<(), RtcError> {
        let path = self.wakealarm();
        self.clear()?;
        sysfs::write_value(&path, &at.to_string())?;
        match self.armed()? {
            Some(read_back) if read_back == at => Ok(()),
            read_back => Err(RtcError::ReadBackMismatch {
                path,
                requested: at,
                read_back,
            }),
        }
    }

    /// Disarms the alarm; a no-op when none is armed.
    pub fn clear(&self) -> Result<(), SysfsError> {
        sysfs::write_value(&self.wakealarm(), DISARM)
    }

    /// The armed alarm in seconds since the epoch; `None` when the file is empty (no alarm).
    pub fn armed(&self) -> Result<Option<i64>, SysfsError> {
        let path = self.wakealarm();
        let content = sysfs::read_trimmed(&path)?;
        if content.is_empty() {
            Ok(None)
        } else {
            sysfs::parse_value(&path, &content).map(Some)
        }
    }

    /// The RTC's time in seconds since the epoch.
    pub fn now(&self) -> Result<i64, SysfsError> {
        sysfs::read_value(&self.dir.join("since_epoch"))
    }

    /// The RTC's time, refused if it lies before `earliest` (e.g. the build date): an RTC whose
    /// backup cell ran flat restarts at 1970 or 2000, and alarms computed from that would be
    /// decades off.
    pub fn plausible_now(&self, earliest: i64) -> Result<i64, RtcError> {
        check_plausible(self.now()?, earliest)
    }
}

fn check_plausible(now: i64, earliest: i64) -> Result<i64, RtcError> {
    if now >= earliest {
        Ok(now)
    } else {
        Err(RtcError::ImplausibleTime { now, earliest })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::SysfsTree;

    /// 2025-01-01T00:00:00Z.
    const EARLIEST: i64 = 1_735_689_600;
    /// 2026-03-01T06:00:00Z, a sunrise wake-up.
    const SUNRISE: i64 = 1_772_344_800;

    fn rtc0(wakealarm: &str) -> (SysfsTree, Rtc) {
        let tree = SysfsTree::new(&[
            ("rtc0/wakealarm", wakealarm),
            ("rtc0/since_epoch", "1772323200\n"),
        ]);
        let rtc = Rtc::new(tree.root(), "rtc0");
        (tree, rtc)
    }

    #[test]
    fn arm_over_existing_alarm_ends_with_the_new_time() {
        // Armed already, as after a previous run: the kernel would refuse a direct write with
        // EBUSY, so the final content must be the new time written after the clear.
        let (tree, rtc) = rtc0("1772300000\n");
        rtc.arm(SUNRISE).unwrap();
        assert_eq!(tree.content("rtc0/wakealarm"), SUNRISE.to_string());
        assert_eq!(rtc.armed().unwrap(), Some(SUNRISE));
    }

    #[test]
    fn alarm_that_does_not_stick_is_an_error() {
        // A wakealarm that always reads back empty, like the kernel after a write of a time
        // in the past.
        let tree = SysfsTree::new(&[("rtc0/since_epoch", "1772323200\n")]);
        tree.symlink("rtc0/wakealarm", "/dev/null");
        let rtc = Rtc::new(tree.root(), "rtc0");
        let error = rtc.arm(SUNRISE).unwrap_err();
        assert!(matches!(
            error,
            RtcError::ReadBackMismatch {
                requested: SUNRISE,
                read_back: None,
                ..
            }
        ));
        assert!(error.to_string().contains("reads back no alarm"), "{error}");
    }

    #[test]
    fn clear_writes_a_past_time() {
        let (tree, rtc) = rtc0("1772300000\n");
        rtc.clear().unwrap();
        assert_eq!(tree.content("rtc0/wakealarm"), "0");
    }

    #[test]
    fn armed_is_none_when_empty() {
        let (_tree, rtc) = rtc0("\n");
        assert_eq!(rtc.armed().unwrap(), None);
    }

    #[test]
    fn garbage_in_wakealarm_names_the_file() {
        let (tree, rtc) = rtc0("soon\n");
        assert!(matches!(
            rtc.armed(),
            Err(SysfsError::Parse { path, content, .. })
                if path == tree.path("rtc0/wakealarm") && content == "soon"
        ));
    }

    #[test]
    fn missing_rtc_is_a_write_error_not_a_new_file() {
        let tree = SysfsTree::new(&[]);
        let rtc = Rtc::new(tree.root(), "rtc1");
        assert!(matches!(
            rtc.arm(SUNRISE),
            Err(RtcError::Sysfs(SysfsError::Write { .. }))
        ));
        assert!(!tree.path("rtc1/wakealarm").exists());
    }

    #[test]
    fn reads_time_and_checks_plausibility() {
        let (tree, rtc) = rtc0("\n");
        assert_eq!(rtc.now().unwrap(), 1_772_323_200);
        assert_eq!(rtc.plausible_now(EARLIEST).unwrap(), 1_772_323_200);

        // After a full discharge: the PCF85063 restarts at 2000-01-01.
        tree.write("rtc0/since_epoch", "946684805\n");
        assert!(matches!(
            rtc.plausible_now(EARLIEST),
            Err(RtcError::ImplausibleTime {
                now: 946_684_805,
                earliest: EARLIEST
            })
        ));
    }

    #[test]
    fn plausibility_boundary_is_inclusive() {
        assert_eq!(check_plausible(EARLIEST, EARLIEST).unwrap(), EARLIEST);
        assert!(check_plausible(EARLIEST - 1, EARLIEST).is_err());
    }
}
