//! CPU frequency caps through `/sys/devices/system/cpu/cpufreq/policy*/scaling_max_freq`, the
//! cheapest lever on a Pi's power draw that needs no reboot.
//!
//! A cap is snapped down to a frequency the driver lists in `scaling_available_frequencies`:
//! the governor only ever runs table frequencies, so a cap between two steps behaves exactly
//! like the lower step, and writing that step makes the reported cap what the CPU really does.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::sysfs::{self, SysfsError};

/// Where the kernel lists cpufreq policies.
pub const DEFAULT_ROOT: &str = "/sys/devices/system/cpu/cpufreq";

/// Listing policies or applying a cap failed.
#[derive(Debug, thiserror::Error)]
pub enum CpufreqError {
    /// The cpufreq directory could not be listed.
    #[error("cannot list {}: {source}", root.display())]
    ListRoot {
        /// The directory searched.
        root: PathBuf,
        /// What the OS reported.
        source: io::Error,
    },
    /// No `policyN` directory exists (no cpufreq driver loaded).
    #[error("no cpufreq policy under {}", root.display())]
    NoPolicies {
        /// The directory searched.
        root: PathBuf,
    },
    /// `scaling_max_freq` reads back something other than what was written, e.g. because
    /// another request (thermal cooling, another process) holds it lower.
    #[error("{} reads back {read_back} kHz after writing {written} kHz", path.display())]
    CapNotApplied {
        /// The `scaling_max_freq` file.
        path: PathBuf,
        /// Value written, in kHz.
        written: u32,
        /// Value read back, in kHz.
        read_back: u32,
    },
    /// Reading or writing an attribute failed.
    #[error(transparent)]
    Sysfs(#[from] SysfsError),
}

/// The hardware limits of one cpufreq policy (a group of CPUs that share a clock).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The policy directory.
    pub dir: PathBuf,
    /// `cpuinfo_min_freq` in kHz.
    pub min_khz: u32,
    /// `cpuinfo_max_freq` in kHz.
    pub max_khz: u32,
    /// `scaling_available_frequencies` in kHz, ascending; empty when the driver has no table.
    pub available_khz: Vec<u32>,
}

impl Policy {
    fn read(dir: PathBuf) -> Result<Self, SysfsError> {
        let mut available_khz =
            sysfs::absent_as_none(sysfs::read_list(&dir.join("scaling_available_frequencies")))?
                .unwrap_or_default();
        available_khz.sort_unstable();
        Ok(Self {
            min_khz: sysfs::read_value(&dir.join("cpuinfo_min_freq"))?,
            max_khz: sysfs::read_value(&dir.join("cpuinfo_max_freq"))?,
            available_khz,
            dir,
        })
    }

    /// The `scaling_max_freq` to write for a requested cap: `None` lifts the cap to the hardware
    /// maximum; a value is clamped into the hardware range, then lowered to the nearest listed
    /// frequency.
    pub fn effective_cap(&self, requested_khz: Option<u32>) -> u32 {
        // `clamp` panics when min > max; a driver reporting inverted limits must not take the
        // daemon down, so the upper bound is never allowed below the lower one.
        let clamped = requested_khz.map_or(self.max_khz, |khz| {
            khz.clamp(self.min_khz, self.max_khz.max(self.min_khz))
        });
        self.available_khz
            .iter()
            .rev()
            .find(|&&khz| khz <= clamped)
            .copied()
            .unwrap_or(clamped)
    }

    /// The policy's name, e.g. `policy0`.
    pub fn name(&self) -> String {
        self.dir
            .file_name()
            .map_or_else(String::new, |name| name.to_string_lossy().into_owned())
    }
}

/// A cap as applied to one policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedCap {
    /// The policy directory.
    pub dir: PathBuf,
    /// The `scaling_max_freq` now in force, in kHz.
    pub max_khz: u32,
}

/// The cpufreq policies under one root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cpufreq {
    root: PathBuf,
}

impl Cpufreq {
    /// Policies under `root` (normally [`DEFAULT_ROOT`]).
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_owned(),
        }
    }

    /// Every `policyN`, in CPU order.
    pub fn policies(&self) -> Result<Vec<Policy>, CpufreqError> {
        let list_error = |source| CpufreqError::ListRoot {
            root: self.root.clone(),
            source,
        };
        let mut numbered = Vec::new();
        for entry in fs::read_dir(&self.root).map_err(list_error)? {
            let entry = entry.map_err(list_error)?;
            if let Some(number) = policy_number(&entry.file_name().to_string_lossy()) {
                numbered.push((number, entry.path()));
            }
        }
        if numbered.is_empty() {
            return Err(CpufreqError::NoPolicies {
                root: self.root.clone(),
            });
        }
        // Numeric, so policy10 follows policy2.
        numbered.sort_unstable();
        numbered
            .into_iter()
            .map(|(_, dir)| Policy::read(dir).map_err(CpufreqError::from))
            .collect()
    }

    /// Caps every policy at `max_khz` (see [`Policy::effective_cap`]), or lifts the cap with
    /// `None`, verifying each write by reading it back. Stops at the first failure; policies
    /// before it keep their new cap.
    pub fn cap(&self, max_khz: Option<u32>) -> Result<Vec<AppliedCap>, CpufreqError> {
        self.policies()?
            .into_iter()
            .map(|policy| {
                let cap = policy.effective_cap(max_khz);
                let path = policy.dir.join("scaling_max_freq");
                sysfs::write_value(&path, &cap.to_string())?;
                let read_back = sysfs::read_value(&path)?;
                confirm(policy.dir, path, cap, read_back)
            })
            .collect()
    }
}

/// Accepts a cap only if `scaling_max_freq` reads back what was written.
fn confirm(
    dir: PathBuf,
    path: PathBuf,
    written: u32,
    read_back: u32,
) -> Result<AppliedCap, CpufreqError> {
    if read_back == written {
        Ok(AppliedCap {
            dir,
            max_khz: written,
        })
    } else {
        Err(CpufreqError::CapNotApplied {
            path,
            written,
            read_back,
        })
    }
}

/// `Some(N)` for a directory named `policyN`.
fn policy_number(name: &str) -> Option<u32> {
    name.strip_prefix("policy")?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::SysfsTree;

    /// A Pi 4: one policy for all four cores, 600–1500 MHz in 100 MHz steps, plus the
    /// governor directory the kernel puts beside the policies.
    fn pi4() -> SysfsTree {
        SysfsTree::new(&[
            ("ondemand/up_threshold", "50\n"),
            ("policy0/cpuinfo_min_freq", "600000\n"),
            ("policy0/cpuinfo_max_freq", "1500000\n"),
            (
                "policy0/scaling_available_frequencies",
                "600000 700000 800000 900000 1000000 1100000 1200000 1300000 1400000 1500000 \n",
            ),
            ("policy0/scaling_max_freq", "1500000\n"),
        ])
    }

    fn pi4_policy() -> Policy {
        Policy {
            dir: PathBuf::from("policy0"),
            min_khz: 600_000,
            max_khz: 1_500_000,
            available_khz: (6..=15).map(|step| step * 100_000).collect(),
        }
    }

    #[test]
    fn effective_cap_clamps_and_snaps_down() {
        let policy = pi4_policy();
        assert_eq!(policy.effective_cap(None), 1_500_000);
        assert_eq!(policy.effective_cap(Some(1_000_000)), 1_000_000);
        assert_eq!(policy.effective_cap(Some(1_050_000)), 1_000_000);
        assert_eq!(policy.effective_cap(Some(100_000)), 600_000);
        assert_eq!(policy.effective_cap(Some(2_000_000)), 1_500_000);
        assert_eq!(policy.effective_cap(Some(0)), 600_000);
    }

    #[test]
    fn effective_cap_without_frequency_table_only_clamps() {
        let policy = Policy {
            available_khz: Vec::new(),
            ..pi4_policy()
        };
        assert_eq!(policy.effective_cap(Some(1_050_000)), 1_050_000);
        assert_eq!(policy.effective_cap(Some(10)), 600_000);
    }

    #[test]
    fn lists_policies_in_numeric_order() {
        let tree = pi4();
        for policy in ["policy2", "policy10"] {
            tree.write(&format!("{policy}/cpuinfo_min_freq"), "408000\n");
            tree.write(&format!("{policy}/cpuinfo_max_freq"), "1800000\n");
        }
        let policies = Cpufreq::new(tree.root()).policies().unwrap();
        let names: Vec<_> = policies.iter().map(Policy::name).collect();
        assert_eq!(names, ["policy0", "policy2", "policy10"]);
        assert_eq!(
            policies[0],
            Policy {
                dir: tree.path("policy0"),
                ..pi4_policy()
            }
        );
        assert!(policies[2].available_khz.is_empty());
    }

    #[test]
    fn cap_writes_and_restores_every_policy() {
        let tree = pi4();
        tree.write("policy4/cpuinfo_min_freq", "408000\n");
        tree.write("policy4/cpuinfo_max_freq", "1800000\n");
        tree.write("policy4/scaling_max_freq", "1800000\n");
        let cpufreq = Cpufreq::new(tree.root());

        let applied = cpufreq.cap(Some(700_000)).unwrap();
        assert_eq!(
            applied,
            [
                AppliedCap {
                    dir: tree.path("policy0"),
                    max_khz: 700_000
                },
                AppliedCap {
                    dir: tree.path("policy4"),
                    max_khz: 700_000
                },
            ]
        );
        assert_eq!(tree.content("policy0/scaling_max_freq"), "700000");
        assert_eq!(tree.content("policy4/scaling_max_freq"), "700000");

        cpufreq.cap(None).unwrap();
        assert_eq!(tree.content("policy0/scaling_max_freq"), "1500000");
        assert_eq!(tree.content("policy4/scaling_max_freq"), "1800000");
    }

    #[test]
    fn read_back_must_match_what_was_written() {
        let path = PathBuf::from("policy0/scaling_max_freq");
        assert_eq!(
            confirm(PathBuf::from("policy0"), path.clone(), 700_000, 700_000).unwrap(),
            AppliedCap {
                dir: PathBuf::from("policy0"),
                max_khz: 700_000
            }
        );
        // Thermal cooling holding the policy at 600 MHz.
        let error = confirm(PathBuf::from("policy0"), path, 700_000, 600_000).unwrap_err();
        assert_eq!(
            error.to_string(),
            "policy0/scaling_max_freq reads back 600000 kHz after writing 700000 kHz"
        );
    }

    #[test]
    fn missing_scaling_max_freq_is_a_write_error_naming_it() {
        let tree = pi4();
        let path = tree.path("policy0/scaling_max_freq");
        fs::remove_file(&path).unwrap();
        assert!(matches!(
            Cpufreq::new(tree.root()).cap(Some(800_000)),
            Err(CpufreqError::Sysfs(SysfsError::Write { path: failed, .. })) if failed == path
        ));
    }

    #[test]
    fn empty_root_has_no_policies() {
        let tree = SysfsTree::new(&[("ondemand/up_threshold", "50\n")]);
        assert!(matches!(
            Cpufreq::new(tree.root()).policies(),
            Err(CpufreqError::NoPolicies { .. })
        ));
    }

    #[test]
    fn garbage_limit_names_the_file() {
        let tree = pi4();
        tree.write("policy0/cpuinfo_max_freq", "<unknown>\n");
        let error = Cpufreq::new(tree.root()).policies().unwrap_err();
        assert!(error.to_string().contains("cpuinfo_max_freq"), "{error}");
    }
}
