//! First boot of a pew node, and what every later boot checks again: the same image is flashed
//! on every card, and this makes each one a node of its own without a network.
//!
//! Three entry points, each run by its own unit (overlays/usr/lib/systemd/system):
//!
//! - [`machine_id::keep`] (`pew-machine-id.service`, early): a machine ID that is stable
//!   across boots on a read-only root.
//! - [`fallback::ensure_writable_var`] (`pew-state-fallback.service`, only when `/var` did not
//!   mount): a node whose data partition is broken still boots to the network.
//! - [`first_boot`] (`pew-firstboot.service`, before the pew services): grows the data
//!   partition to the end of the card ([`growth`]) and installs the per-node files dropped on
//!   the boot partition ([`provision`]).
//!
//! Each step checks what is already done and does only the rest, so a power cut at any point
//! is finished by the next boot. Everything touching the system goes through a root directory
//! (`/` on the node) and a [`command::Runner`], so tests run on directories as any user.

pub mod accounts;
pub mod atomic;
pub mod block;
pub mod boot_partition;
pub mod command;
pub mod data;
pub mod fallback;
pub mod growth;
pub mod machine_id;
pub mod mountinfo;
pub mod provision;

use std::fs;
use std::path::{Path, PathBuf};

use block::Sysfs;
use boot_partition::MountedBootPartition;
use command::Runner;
use data::{DataError, DataPartition};
use growth::{GrowthError, GrowthReport};
use mountinfo::{MountEntry, MountInfoError};
use provision::{ProvisionError, Provisioned};

/// Where the boot partition is mounted while first boot reads it (the unit's
/// `RuntimeDirectory=`).
pub const BOOT_MOUNT_POINT: &str = "/run/pew-firstboot/boot";

/// Why first boot could not even start.
#[derive(Debug, thiserror::Error)]
pub enum FirstBootError {
    #[error("cannot read {}: {source}", path.display())]
    MountTable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    MountInfo(#[from] MountInfoError),
    #[error(transparent)]
    Data(#[from] DataError),
}

/// What each step of [`first_boot`] did; one failing does not stop the other.
#[derive(Debug)]
pub struct FirstBoot {
    pub growth: Result<GrowthReport, GrowthError>,
    pub provisioning: Result<Provisioned, ProvisionError>,
}

/// Grows the data partition, then installs the provisioning area. Refuses both unless the
/// data partition really is mounted on `/data` (not the RAM fallback).
pub fn first_boot(root: &Path, runner: &dyn Runner) -> Result<FirstBoot, FirstBootError> {
    let mounts = read_mount_table(root)?;
    let sysfs = Sysfs::new(under(root, "/sys"));
    let data = DataPartition::find(&mounts, &sysfs)?;
    Ok(FirstBoot {
        growth: growth::grow(runner, &sysfs, &data),
        provisioning: provision_from_boot_partition(root, runner, &mounts, &sysfs, &data),
    })
}

fn provision_from_boot_partition(
    root: &Path,
    runner: &dyn Runner,
    mounts: &[MountEntry],
    sysfs: &Sysfs,
    data: &DataPartition,
) -> Result<Provisioned, ProvisionError> {
    data.check_var(mounts)?;
    let boot = data.boot_partition(sysfs)?;
    let mut area =
        MountedBootPartition::mount(runner, &boot.device_path(), &under(root, BOOT_MOUNT_POINT))?;
    let provisioned = provision::consume(&mut area, root, runner)?;
    area.unmount()?;
    Ok(provisioned)
}

/// `/proc/self/mountinfo` under `root`, parsed.
pub fn read_mount_table(root: &Path) -> Result<Vec<MountEntry>, FirstBootError> {
    let path = under(root, "/proc/self/mountinfo");
    let text =
        fs::read_to_string(&path).map_err(|source| FirstBootError::MountTable { path, source })?;
    Ok(mountinfo::parse(&text)?)
}

/// `absolute` (a path on the node) inside `root`.
pub(crate) fn under(root: &Path, absolute: &str) -> PathBuf {
    root.join(absolute.trim_start_matches('/'))
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;
    use crate::block::testing::FakeSysfs;
    use crate::command::Invocation;
    use crate::command::testing::RecordingRunner;

    fn node(mountinfo: &str) -> (tempfile::TempDir, FakeSysfs) {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("proc/self")).unwrap();
        fs::write(root.path().join("proc/self/mountinfo"), mountinfo).unwrap();
        let card = FakeSysfs::card(&root.path().join("sys"), "mmcblk0", 62_333_952);
        card.partition("mmcblk0p1", 1, 8192, 1_048_576).partition(
            "mmcblk0p4",
            4,
            4_726_784,
            524_288,
        );
        (root, card)
    }

    const DATA: &str = "31 22 179:4 / /data rw - ext4 /dev/mmcblk0p4 rw\n";
    const VAR: &str = "32 22 179:4 /var /var rw - ext4 /dev/mmcblk0p4 rw\n";

    #[test]
    fn an_empty_card_is_grown_and_its_boot_partition_looked_at_read_only() {
        let (root, card) = node(&format!("{DATA}{VAR}"));
        let blocks = Cell::new(65_536);
        let runner = RecordingRunner::new(|invocation: &Invocation| {
            match invocation.program {
                "partx" => card.set("mmcblk0p4", "size", 57_607_168),
                "resize2fs" => blocks.set(7_200_896),
                "dumpe2fs" => {
                    return Ok(format!("Block count: {}\nBlock size: 4096\n", blocks.get()));
                }
                _ => {}
            }
            Ok(String::new())
        });
        let outcome = first_boot(root.path(), &runner).unwrap();
        assert_eq!(
            outcome.growth.unwrap().filesystem,
            Some((256 << 20, 7_200_896 * 4096))
        );
        assert_eq!(outcome.provisioning.unwrap(), Provisioned::NothingToDo);
        let boot = root.path().join("run/pew-firstboot/boot");
        let lines = runner.command_lines();
        assert_eq!(
            lines[lines.len() - 2..],
            [
                format!(
                    "mount -t vfat -o ro,nodev,nosuid,noexec,umask=0077 /dev/mmcblk0p1 {}",
                    boot.display()
                ),
                format!("umount {}", boot.display()),
            ]
        );
    }

    #[test]
    fn without_var_on_data_nothing_is_provisioned_but_data_still_grows() {
        let (root, _card) = node(DATA);
        let runner = RecordingRunner::new(|invocation: &Invocation| {
            Err(command::testing::failure(invocation, "not in this test"))
        });
        let outcome = first_boot(root.path(), &runner).unwrap();
        assert!(matches!(outcome.growth, Err(GrowthError::Command(_))));
        assert!(matches!(
            outcome.provisioning,
            Err(ProvisionError::NotOnData(DataError::VarNotOnData { .. }))
        ));
        assert!(
            !runner
                .command_lines()
                .iter()
                .any(|line| line.contains("vfat"))
        );
    }

    #[test]
    fn the_ram_fallback_stops_first_boot_before_any_command() {
        let (root, _card) = node("31 22 0:40 / /data rw - tmpfs tmpfs rw\n");
        let runner = command::testing::silent();
        assert!(matches!(
            first_boot(root.path(), &runner),
            Err(FirstBootError::Data(DataError::NotTheDataPartition { .. }))
        ));
        assert!(runner.log.borrow().is_empty());
    }
}
