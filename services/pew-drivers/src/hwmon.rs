//! Readings from the kernel's `ina2xx` hwmon driver, for nodes where the monitor is bound to the
//! kernel (device-tree overlay or `new_device`) instead of being driven from user space.
//!
//! The kernel numbers `hwmonN` directories in probe order, which changes between boots, so the
//! device is found by its `name` attribute and, when several monitors share a name, by the I2C
//! device its `device` link points at.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::Reading;
use crate::sysfs::{self, Prefix, SysfsError};

/// Where the kernel lists hwmon devices.
pub const DEFAULT_ROOT: &str = "/sys/class/hwmon";

/// An I2C client as the kernel names it: `<bus>-<address as 4 hex digits>`, e.g. `1-0040`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct I2cClient {
    /// Adapter number (the N of `/dev/i2c-N`).
    pub bus: u32,
    /// 7-bit device address.
    pub address: u16,
}

impl fmt::Display for I2cClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{:04x}", self.bus, self.address)
    }
}

/// The hwmon device could not be located.
#[derive(Debug, thiserror::Error)]
pub enum HwmonError {
    /// The hwmon class directory could not be listed.
    #[error("cannot list {}: {source}", root.display())]
    ListRoot {
        /// The directory searched.
        root: PathBuf,
        /// What the OS reported.
        source: io::Error,
    },
    /// No hwmon device matches.
    #[error("no hwmon device named {name:?}{} under {}", describe_client(client.as_ref()), root.display())]
    NotFound {
        /// The directory searched.
        root: PathBuf,
        /// The `name` looked for.
        name: String,
        /// The I2C client looked for, if any.
        client: Option<I2cClient>,
    },
    /// Several devices match and no I2C client was given to choose between them.
    #[error("several hwmon devices named {name:?}: {candidates:?}; give the I2C bus and address")]
    Ambiguous {
        /// The `name` looked for.
        name: String,
        /// The matching directories.
        candidates: Vec<PathBuf>,
    },
    /// An attribute of a candidate could not be read.
    #[error(transparent)]
    Sysfs(#[from] SysfsError),
}

fn describe_client(client: Option<&I2cClient>) -> String {
    client.map_or_else(String::new, |client| format!(" at I2C {client}"))
}

/// One `hwmonN` directory of an `ina2xx`-driven monitor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HwmonIna2xx {
    dir: PathBuf,
}

impl HwmonIna2xx {
    /// Finds the device under `root` whose `name` is `name` (e.g. `"ina219"`), and, if `client`
    /// is given, whose `device` link ends in that client (e.g. `1-0040`).
    pub fn find(root: &Path, name: &str, client: Option<I2cClient>) -> Result<Self, HwmonError> {
        let list_error = |source| HwmonError::ListRoot {
            root: root.to_owned(),
            source,
        };
        let mut candidates = Vec::new();
        for entry in fs::read_dir(root).map_err(list_error)? {
            let dir = entry.map_err(list_error)?.path();
            if sysfs::read_trimmed(&dir.join("name"))? == name
                && client.is_none_or(|client| is_bound_to(&dir, client))
            {
                candidates.push(dir);
            }
        }
        candidates.sort();
        match <[PathBuf; 1]>::try_from(candidates) {
            Ok([dir]) => Ok(Self { dir }),
            Err(candidates) if candidates.is_empty() => Err(HwmonError::NotFound {
                root: root.to_owned(),
                name: name.to_owned(),
                client,
            }),
            Err(candidates) => Err(HwmonError::Ambiguous {
                name: name.to_owned(),
                candidates,
            }),
        }
    }

    /// The `hwmonN` directory in use.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Reads shunt (`in0_input`, mV), bus (`in1_input`, mV), current (`curr1_input`, mA,
    /// signed) and power (`power1_input`, µW).
    pub fn read(&self) -> Result<Reading, SysfsError> {
        let attribute = |name: &str, prefix| sysfs::read_si(&self.dir.join(name), prefix);
        Ok(Reading {
            bus_v: attribute("in1_input", Prefix::Milli)?,
            shunt_v: attribute("in0_input", Prefix::Milli)?,
            current_a: attribute("curr1_input", Prefix::Milli)?,
            power_w: attribute("power1_input", Prefix::Micro)?,
        })
    }
}

/// Whether the hwmon device's `device` link points at `client`. Compares the whole final path
/// component, so `11-0040` does not pass for `1-0040`.
fn is_bound_to(hwmon_dir: &Path, client: I2cClient) -> bool {
    fs::read_link(hwmon_dir.join("device")).is_ok_and(|target| {
        target
            .file_name()
            .is_some_and(|component| component.to_string_lossy() == client.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{SysfsTree, assert_close};

    /// A Pi with the CPU thermal sensor and two INA219s on bus 1 (0x40 and 0x41) plus one on
    /// bus 11, bound the way the kernel binds them.
    fn pi_with_three_monitors() -> SysfsTree {
        let tree = SysfsTree::new(&[("hwmon0/name", "cpu_thermal\n")]);
        for (hwmon, client, bus_mv) in [
            ("hwmon1", "1-0040", "8112"),
            ("hwmon2", "1-0041", "5080"),
            ("hwmon3", "11-0040", "12000"),
        ] {
            tree.write(&format!("{hwmon}/name"), "ina219\n");
            tree.symlink(&format!("{hwmon}/device"), &format!("../../../{client}"));
            tree.write(&format!("{hwmon}/in0_input"), "-26\n");
            tree.write(&format!("{hwmon}/in1_input"), &format!("{bus_mv}\n"));
            tree.write(&format!("{hwmon}/curr1_input"), "-260\n");
            tree.write(&format!("{hwmon}/power1_input"), "2110000\n");
        }
        tree
    }

    const BUS1_ADDRESS_41: I2cClient = I2cClient {
        bus: 1,
        address: 0x41,
    };

    #[test]
    fn client_names_like_the_kernel() {
        assert_eq!(BUS1_ADDRESS_41.to_string(), "1-0041");
    }

    #[test]
    fn finds_device_by_name_and_client_and_converts_units() {
        let tree = pi_with_three_monitors();
        let hwmon = HwmonIna2xx::find(tree.root(), "ina219", Some(BUS1_ADDRESS_41)).unwrap();
        assert_eq!(hwmon.dir(), tree.path("hwmon2"));
        let reading = hwmon.read().unwrap();
        assert_close(reading.bus_v, 5.08);
        assert_close(reading.shunt_v, -0.026);
        assert_close(reading.current_a, -0.26);
        assert_close(reading.power_w, 2.11);
    }

    #[test]
    fn bus_number_is_matched_whole() {
        let tree = pi_with_three_monitors();
        let bus1 = I2cClient {
            bus: 1,
            address: 0x40,
        };
        let hwmon = HwmonIna2xx::find(tree.root(), "ina219", Some(bus1)).unwrap();
        assert_eq!(hwmon.dir(), tree.path("hwmon1"));
    }

    #[test]
    fn same_name_without_client_is_ambiguous() {
        let tree = pi_with_three_monitors();
        let error = HwmonIna2xx::find(tree.root(), "ina219", None).unwrap_err();
        assert!(matches!(error, HwmonError::Ambiguous { candidates, .. } if candidates.len() == 3));
    }

    #[test]
    fn unique_name_needs_no_client() {
        let tree = pi_with_three_monitors();
        tree.write("hwmon4/name", "ina226\n");
        let hwmon = HwmonIna2xx::find(tree.root(), "ina226", None).unwrap();
        assert_eq!(hwmon.dir(), tree.path("hwmon4"));
    }

    #[test]
    fn absent_device_is_reported_with_what_was_sought() {
        let tree = pi_with_three_monitors();
        let wanted = I2cClient {
            bus: 1,
            address: 0x45,
        };
        let error = HwmonIna2xx::find(tree.root(), "ina219", Some(wanted)).unwrap_err();
        assert!(
            error.to_string().contains("\"ina219\" at I2C 1-0045"),
            "{error}"
        );
    }

    #[test]
    fn unparsable_attribute_names_file_and_content() {
        let tree = pi_with_three_monitors();
        tree.write("hwmon1/curr1_input", "\n");
        let hwmon = HwmonIna2xx::find(
            tree.root(),
            "ina219",
            Some(I2cClient {
                bus: 1,
                address: 0x40,
            }),
        )
        .unwrap();
        let error = hwmon.read().unwrap_err();
        assert!(matches!(
            &error,
            SysfsError::Parse { path, content, .. }
                if path == &tree.path("hwmon1/curr1_input") && content.is_empty()
        ));
    }

    #[test]
    fn missing_root_is_reported() {
        let tree = SysfsTree::new(&[]);
        let missing = tree.path("class/hwmon");
        assert!(matches!(
            HwmonIna2xx::find(&missing, "ina219", None),
            Err(HwmonError::ListRoot { root, .. }) if root == missing
        ));
    }
}
