//! Which partition is the data partition, found from what is mounted rather than from names:
//! the partition really mounted on `/data` (ext4, partition 4 of its disk), and the boot
//! partition as partition 1 of that same disk. No disk name or PARTUUID is built in, so the
//! same binary works on `mmcblk0` (a Pi) and `vda` (QEMU), and on a USB-booted Pi.

use pew_image::layout::PartitionRole;

use crate::block::{BlockDisk, BlockError, BlockPartition, Sysfs};
use crate::mountinfo::{self, DeviceNumber, MountEntry};

/// Where `data.mount` mounts the data partition.
pub const DATA_MOUNT_POINT: &str = "/data";
/// Where `var.mount` binds the data partition's `var` directory.
pub const VAR_MOUNT_POINT: &str = "/var";
/// The data partition's filesystem; anything else on `/data` is the RAM fallback or a mistake.
const DATA_FS_TYPE: &str = "ext4";

/// Why the data partition was not found where first boot may work on it.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("nothing is mounted on {DATA_MOUNT_POINT}")]
    NotMounted,
    #[error(
        "{DATA_MOUNT_POINT} holds {fs_type} from {device} (directory {root}), not the ext4 data \
         partition: the node runs on its RAM fallback, see `systemctl status data.mount`"
    )]
    NotTheDataPartition {
        fs_type: String,
        device: String,
        root: String,
    },
    #[error("{name} is mounted on {DATA_MOUNT_POINT} but is partition {number}, not {expected}")]
    WrongPartition {
        name: String,
        number: u8,
        expected: u8,
    },
    #[error(
        "{VAR_MOUNT_POINT} is not the data partition's var directory (it is {root} of device \
         {device}), so files installed there would not be kept"
    )]
    VarNotOnData { device: String, root: String },
    #[error("the disk {disk} has no partition {number}")]
    MissingPartition { disk: String, number: u8 },
    #[error(transparent)]
    Block(#[from] BlockError),
}

/// The data partition as mounted, and the disk it is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataPartition {
    pub device: DeviceNumber,
    pub partition: BlockPartition,
    pub disk: BlockDisk,
}

impl DataPartition {
    /// Finds it from the mount table and sysfs.
    pub fn find(mounts: &[MountEntry], sysfs: &Sysfs) -> Result<Self, DataError> {
        let entry = mountinfo::visible_at(mounts, DATA_MOUNT_POINT).ok_or(DataError::NotMounted)?;
        if entry.fs_type != DATA_FS_TYPE || entry.root != "/" {
            return Err(DataError::NotTheDataPartition {
                fs_type: entry.fs_type.clone(),
                device: entry.source.clone(),
                root: entry.root.clone(),
            });
        }
        let (partition, disk) = sysfs.partition(entry.device)?;
        let expected = PartitionRole::Data.number();
        if partition.number != expected {
            return Err(DataError::WrongPartition {
                name: partition.name,
                number: partition.number,
                expected,
            });
        }
        Ok(Self {
            device: entry.device,
            partition,
            disk,
        })
    }

    /// Checks that `/var` is this partition's `var` directory: what is installed below it
    /// must survive a reboot.
    pub fn check_var(&self, mounts: &[MountEntry]) -> Result<(), DataError> {
        match mountinfo::visible_at(mounts, VAR_MOUNT_POINT) {
            Some(var) if var.device == self.device && var.root == VAR_MOUNT_POINT => Ok(()),
            Some(var) => Err(DataError::VarNotOnData {
                device: var.device.to_string(),
                root: var.root.clone(),
            }),
            None => Err(DataError::VarNotOnData {
                device: "the read-only root".to_owned(),
                root: VAR_MOUNT_POINT.to_owned(),
            }),
        }
    }

    /// The boot partition on the same disk.
    pub fn boot_partition(&self, sysfs: &Sysfs) -> Result<BlockPartition, DataError> {
        let number = PartitionRole::Boot.number();
        sysfs
            .partitions_of(&self.disk)?
            .into_iter()
            .find(|partition| partition.number == number)
            .ok_or_else(|| DataError::MissingPartition {
                disk: self.disk.name.clone(),
                number,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::testing::FakeSysfs;

    const MOUNTED: &str = "\
22 1 179:2 / / ro,relatime shared:1 - erofs /dev/mmcblk0p2 ro
31 22 179:4 / /data rw,noatime shared:12 - ext4 /dev/mmcblk0p4 rw,commit=60
32 22 179:4 /var /var rw,noatime shared:12 - ext4 /dev/mmcblk0p4 rw,commit=60
";

    fn card(dir: &std::path::Path) -> FakeSysfs {
        let card = FakeSysfs::card(dir, "mmcblk0", 62_333_952);
        card.partition("mmcblk0p1", 1, 8192, 1_048_576)
            .partition("mmcblk0p2", 2, 1_056_768, 2_097_152)
            .partition("mmcblk0p4", 4, 5_251_072, 524_288);
        card
    }

    #[test]
    fn the_mounted_ext4_partition_4_is_the_data_partition_and_1_the_boot_partition() {
        let dir = tempfile::tempdir().unwrap();
        let sysfs = card(dir.path()).sysfs();
        let mounts = mountinfo::parse(MOUNTED).unwrap();
        let data = DataPartition::find(&mounts, &sysfs).unwrap();
        assert_eq!(data.partition.name, "mmcblk0p4");
        assert_eq!(data.disk.name, "mmcblk0");
        data.check_var(&mounts).unwrap();
        assert_eq!(data.boot_partition(&sysfs).unwrap().name, "mmcblk0p1");
    }

    #[test]
    fn the_ram_fallback_on_data_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let sysfs = card(dir.path()).sysfs();
        let fallback = "\
22 1 179:2 / / ro,relatime shared:1 - erofs /dev/mmcblk0p2 ro
31 22 0:40 / /data rw shared:12 - tmpfs tmpfs rw,mode=755
32 22 0:40 /var /var rw shared:12 - tmpfs tmpfs rw,mode=755
";
        let mounts = mountinfo::parse(fallback).unwrap();
        let error = DataPartition::find(&mounts, &sysfs).unwrap_err();
        assert!(
            matches!(error, DataError::NotTheDataPartition { ref fs_type, .. } if fs_type == "tmpfs")
        );
        assert!(matches!(
            DataPartition::find(&mounts[..1], &sysfs),
            Err(DataError::NotMounted)
        ));
    }

    #[test]
    fn another_partition_on_data_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let sysfs = card(dir.path()).sysfs();
        let wrong = "31 22 179:2 / /data rw - ext4 /dev/mmcblk0p2 rw\n";
        let mounts = mountinfo::parse(wrong).unwrap();
        assert!(matches!(
            DataPartition::find(&mounts, &sysfs),
            Err(DataError::WrongPartition {
                number: 2,
                expected: 4,
                ..
            })
        ));
    }

    #[test]
    fn var_must_be_the_data_partitions_var_directory() {
        let dir = tempfile::tempdir().unwrap();
        let sysfs = card(dir.path()).sysfs();
        let mounts = mountinfo::parse(MOUNTED).unwrap();
        let data = DataPartition::find(&mounts, &sysfs).unwrap();
        assert!(matches!(
            data.check_var(&mounts[..2]),
            Err(DataError::VarNotOnData { .. })
        ));
        let var_in_ram =
            mountinfo::parse(&format!("{MOUNTED}40 22 0:41 / /var rw - tmpfs tmpfs rw\n")).unwrap();
        let error = data.check_var(&var_in_ram).unwrap_err();
        assert!(error.to_string().contains("device 0:41"), "{error}");
    }

    #[test]
    fn a_disk_without_partition_1_has_no_boot_partition() {
        let dir = tempfile::tempdir().unwrap();
        let card = FakeSysfs::card(dir.path(), "vda", 10_000_000);
        card.partition("vda4", 4, 5_251_072, 524_288);
        let mounts = mountinfo::parse("31 22 179:4 / /data rw - ext4 /dev/vda4 rw\n").unwrap();
        let data = DataPartition::find(&mounts, &card.sysfs()).unwrap();
        assert!(matches!(
            data.boot_partition(&card.sysfs()),
            Err(DataError::MissingPartition { number: 1, .. })
        ));
    }
}
