//! Readings from a kernel `power_supply` device (a fuel gauge such as bq27xxx or max17040) at
//! `/sys/class/power_supply/<name>/`. Units are fixed by the class: µV and µA.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::sysfs::{self, Prefix, SysfsError};

/// Where the kernel lists power supplies.
pub const DEFAULT_ROOT: &str = "/sys/class/power_supply";

/// How the driver signs `current_now`. The ABI documents positive as charging, but several
/// fuel-gauge drivers report discharge as positive, so the convention is per device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CurrentSign {
    /// Positive `current_now` means charging (the documented ABI).
    PositiveWhenCharging,
    /// Positive `current_now` means discharging.
    PositiveWhenDischarging,
}

/// The `status` attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChargeStatus {
    /// Current flows into the battery.
    Charging,
    /// The battery supplies the load.
    Discharging,
    /// Charging has stopped because the battery is full.
    Full,
    /// External power is present but the charger is not charging (temperature, timer, …).
    NotCharging,
    /// The driver cannot tell.
    Unknown,
}

/// `status` content the kernel's class does not define.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not one of Charging, Discharging, Full, Not charging, Unknown")]
pub struct UnknownStatus;

impl FromStr for ChargeStatus {
    type Err = UnknownStatus;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "Charging" => Ok(ChargeStatus::Charging),
            "Discharging" => Ok(ChargeStatus::Discharging),
            "Full" => Ok(ChargeStatus::Full),
            "Not charging" => Ok(ChargeStatus::NotCharging),
            "Unknown" => Ok(ChargeStatus::Unknown),
            _ => Err(UnknownStatus),
        }
    }
}

/// The `capacity` attribute, which the class limits to 0–100 %.
struct Capacity(u8);

impl FromStr for Capacity {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.parse::<u8>() {
            Ok(percent) if percent <= 100 => Ok(Capacity(percent)),
            Ok(_) => Err("capacity above 100 %".to_owned()),
            Err(error) => Err(error.to_string()),
        }
    }
}

/// One reading of a power supply.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SupplyReading {
    /// Battery voltage in volts.
    pub voltage_v: f64,
    /// Battery current in amperes, positive when charging whatever the driver's convention.
    pub current_a: f64,
    /// Charger state.
    pub status: ChargeStatus,
    /// State of charge estimated by the gauge, if the driver provides one.
    pub capacity_percent: Option<u8>,
    /// Whether external power is connected, if the driver provides `online` (mains and USB
    /// supplies do; most battery gauges do not).
    pub online: Option<bool>,
}

/// One `/sys/class/power_supply/<name>` device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PowerSupply {
    dir: PathBuf,
    current_sign: CurrentSign,
}

impl PowerSupply {
    /// The supply `name` under `root` (normally [`DEFAULT_ROOT`]).
    pub fn new(root: &Path, name: &str, current_sign: CurrentSign) -> Self {
        Self {
            dir: root.join(name),
            current_sign,
        }
    }

    /// Reads `voltage_now`, `current_now`, `status` and, where present, `capacity` and `online`.
    pub fn read(&self) -> Result<SupplyReading, SysfsError> {
        let voltage_v = sysfs::read_si(&self.dir.join("voltage_now"), Prefix::Micro)?;
        let current_a = sysfs::read_si(&self.dir.join("current_now"), Prefix::Micro)?;
        // `online` is 0 for offline; USB supplies use 1 and 2 for fixed and programmable.
        let online: Option<u8> =
            sysfs::absent_as_none(sysfs::read_value(&self.dir.join("online")))?;
        Ok(SupplyReading {
            voltage_v,
            current_a: match self.current_sign {
                CurrentSign::PositiveWhenCharging => current_a,
                CurrentSign::PositiveWhenDischarging => -current_a,
            },
            status: sysfs::read_value(&self.dir.join("status"))?,
            capacity_percent: sysfs::absent_as_none(sysfs::read_value(&self.dir.join("capacity")))?
                .map(|Capacity(percent)| percent),
            online: online.map(|state| state != 0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{SysfsTree, assert_close};

    /// A bq27xxx-style battery gauge, discharging at 350 mA: the documented ABI reports that
    /// as negative.
    fn gauge(current_now: &str) -> SysfsTree {
        SysfsTree::new(&[
            ("bq27546-0/type", "Battery\n"),
            ("bq27546-0/status", "Discharging\n"),
            ("bq27546-0/voltage_now", "3712000\n"),
            ("bq27546-0/current_now", current_now),
            ("bq27546-0/capacity", "64\n"),
        ])
    }

    #[test]
    fn reads_gauge_in_si_units() {
        let tree = gauge("-350000\n");
        let supply = PowerSupply::new(tree.root(), "bq27546-0", CurrentSign::PositiveWhenCharging);
        let reading = supply.read().unwrap();
        assert_close(reading.voltage_v, 3.712);
        assert_close(reading.current_a, -0.35);
        assert_eq!(reading.status, ChargeStatus::Discharging);
        assert_eq!(reading.capacity_percent, Some(64));
        assert_eq!(reading.online, None);
    }

    #[test]
    fn inverted_driver_convention_is_normalised() {
        let tree = gauge("350000\n");
        let supply = PowerSupply::new(
            tree.root(),
            "bq27546-0",
            CurrentSign::PositiveWhenDischarging,
        );
        assert_close(supply.read().unwrap().current_a, -0.35);
    }

    #[test]
    fn every_class_status_parses() {
        let cases = [
            ("Charging", ChargeStatus::Charging),
            ("Discharging", ChargeStatus::Discharging),
            ("Full", ChargeStatus::Full),
            ("Not charging", ChargeStatus::NotCharging),
            ("Unknown", ChargeStatus::Unknown),
        ];
        for (text, status) in cases {
            assert_eq!(text.parse(), Ok(status));
        }
        assert_eq!("charging".parse::<ChargeStatus>(), Err(UnknownStatus));
    }

    #[test]
    fn unknown_status_names_file_and_content() {
        let tree = gauge("0\n");
        tree.write("bq27546-0/status", "Topping up\n");
        let supply = PowerSupply::new(tree.root(), "bq27546-0", CurrentSign::PositiveWhenCharging);
        let error = supply.read().unwrap_err();
        let message = error.to_string();
        assert!(message.contains("bq27546-0/status"), "{message}");
        assert!(message.contains("\"Topping up\""), "{message}");
    }

    #[test]
    fn capacity_above_100_is_refused() {
        let tree = gauge("0\n");
        tree.write("bq27546-0/capacity", "104\n");
        let supply = PowerSupply::new(tree.root(), "bq27546-0", CurrentSign::PositiveWhenCharging);
        assert!(matches!(
            supply.read(),
            Err(SysfsError::Parse { content, .. }) if content == "104"
        ));
    }

    #[test]
    fn online_and_full_from_a_combined_charger_gauge() {
        let tree = gauge("0\n");
        tree.write("bq27546-0/status", "Full\n");
        tree.write("bq27546-0/online", "1\n");
        let supply = PowerSupply::new(tree.root(), "bq27546-0", CurrentSign::PositiveWhenCharging);
        let reading = supply.read().unwrap();
        assert_eq!(reading.status, ChargeStatus::Full);
        assert_eq!(reading.online, Some(true));

        tree.write("bq27546-0/online", "0\n");
        assert_eq!(supply.read().unwrap().online, Some(false));
    }

    #[test]
    fn missing_voltage_is_an_error_naming_the_file() {
        let tree = SysfsTree::new(&[("ac/online", "1\n"), ("ac/type", "Mains\n")]);
        let supply = PowerSupply::new(tree.root(), "ac", CurrentSign::PositiveWhenCharging);
        assert!(matches!(
            supply.read(),
            Err(SysfsError::Read { path, .. }) if path == tree.path("ac/voltage_now")
        ));
    }
}
