//! Partitions and disks as the kernel describes them in sysfs.
//!
//! `/sys/dev/block/<major>:<minor>` links to the device's directory; a partition's directory
//! sits inside its disk's and holds `partition` (its number), `start` and `size`, both in
//! 512-byte sectors whatever the card's own block size. The disk's directory holds `size`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::mountinfo::DeviceNumber;

/// A disk: the SD card on a Pi, the virtio disk under QEMU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockDisk {
    /// Kernel name: `mmcblk0`, `vda`.
    pub name: String,
    pub sectors: u64,
    sysfs_directory: PathBuf,
}

/// A partition of a [`BlockDisk`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockPartition {
    /// Kernel name: `mmcblk0p4`, `vda4`.
    pub name: String,
    pub number: u8,
    pub start_sector: u64,
    pub sectors: u64,
}

impl BlockDisk {
    /// Its device node.
    pub fn device_path(&self) -> PathBuf {
        device_path(&self.name)
    }
}

impl BlockPartition {
    pub fn device_path(&self) -> PathBuf {
        device_path(&self.name)
    }
}

/// The node udev and devtmpfs create: the kernel name, with `!` standing for `/` in sysfs.
fn device_path(kernel_name: &str) -> PathBuf {
    Path::new("/dev").join(kernel_name.replace('!', "/"))
}

/// Why sysfs did not describe a partition.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} holds {text:?}, not a number", path.display())]
    NotANumber { path: PathBuf, text: String },
    #[error("block device {0} is not a partition")]
    NotAPartition(DeviceNumber),
}

/// The sysfs tree (`/sys` on the node, a directory of files in tests).
#[derive(Debug, Clone)]
pub struct Sysfs {
    root: PathBuf,
}

impl Sysfs {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The partition with device number `device`, and the disk holding it.
    pub fn partition(
        &self,
        device: DeviceNumber,
    ) -> Result<(BlockPartition, BlockDisk), BlockError> {
        let link = self.root.join("dev/block").join(device.to_string());
        let directory = fs::canonicalize(&link).map_err(|source| BlockError::Read {
            path: link.clone(),
            source,
        })?;
        if !directory.join("partition").exists() {
            return Err(BlockError::NotAPartition(device));
        }
        let partition = read_partition(&directory)?;
        let disk_directory = directory
            .parent()
            .ok_or(BlockError::NotAPartition(device))?;
        let disk = BlockDisk {
            name: file_name(disk_directory),
            sectors: read_number(&disk_directory.join("size"))?,
            sysfs_directory: disk_directory.to_owned(),
        };
        Ok((partition, disk))
    }

    /// Every partition of `disk`, in number order.
    pub fn partitions_of(&self, disk: &BlockDisk) -> Result<Vec<BlockPartition>, BlockError> {
        let read_error = |source| BlockError::Read {
            path: disk.sysfs_directory.clone(),
            source,
        };
        let mut partitions = Vec::new();
        for entry in fs::read_dir(&disk.sysfs_directory).map_err(read_error)? {
            let directory = entry.map_err(read_error)?.path();
            if directory.join("partition").exists() {
                partitions.push(read_partition(&directory)?);
            }
        }
        partitions.sort_by_key(|partition| partition.number);
        Ok(partitions)
    }
}

fn read_partition(directory: &Path) -> Result<BlockPartition, BlockError> {
    let number_path = directory.join("partition");
    let number = read_number(&number_path)?;
    Ok(BlockPartition {
        name: file_name(directory),
        // An MBR has at most 4 primaries and logical partitions stay far below 256.
        number: u8::try_from(number).map_err(|_| BlockError::NotANumber {
            path: number_path,
            text: number.to_string(),
        })?,
        start_sector: read_number(&directory.join("start"))?,
        sectors: read_number(&directory.join("size"))?,
    })
}

fn read_number(path: &Path) -> Result<u64, BlockError> {
    let text = fs::read_to_string(path).map_err(|source| BlockError::Read {
        path: path.to_owned(),
        source,
    })?;
    text.trim().parse().map_err(|_| BlockError::NotANumber {
        path: path.to_owned(),
        text: text.trim().to_owned(),
    })
}

fn file_name(directory: &Path) -> String {
    directory
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
pub(crate) mod testing {
    use std::os::unix::fs::symlink;

    use super::*;

    /// Builds the part of sysfs a Pi's SD card shows, under `root`.
    pub struct FakeSysfs {
        pub root: PathBuf,
        disk: PathBuf,
    }

    impl FakeSysfs {
        pub fn card(root: &Path, disk_name: &str, disk_sectors: u64) -> Self {
            let disk = root
                .join("devices/platform/emmc2bus/fe340000.mmc/mmc_host/mmc0/mmc0:aaaa/block")
                .join(disk_name);
            fs::create_dir_all(&disk).unwrap();
            fs::write(disk.join("size"), format!("{disk_sectors}\n")).unwrap();
            fs::create_dir_all(root.join("dev/block")).unwrap();
            Self {
                root: root.to_owned(),
                disk,
            }
        }

        /// Adds partition `number` as device `179:<number>`.
        pub fn partition(&self, name: &str, number: u8, start: u64, sectors: u64) -> &Self {
            let directory = self.disk.join(name);
            fs::create_dir_all(&directory).unwrap();
            fs::write(directory.join("partition"), format!("{number}\n")).unwrap();
            fs::write(directory.join("start"), format!("{start}\n")).unwrap();
            self.set(name, "size", sectors);
            let link = self.root.join(format!("dev/block/179:{number}"));
            let _ = fs::remove_file(&link);
            symlink(&directory, link).unwrap();
            self
        }

        /// Rewrites an attribute of partition `name`, as the kernel does once told of a new
        /// partition size.
        pub fn set(&self, name: &str, attribute: &str, value: impl std::fmt::Display) {
            fs::write(self.disk.join(name).join(attribute), format!("{value}\n")).unwrap();
        }

        /// The disk's own directory, for links a test adds.
        pub fn disk_directory(&self) -> &Path {
            &self.disk
        }

        pub fn sysfs(&self) -> Sysfs {
            Sysfs::new(&self.root)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::FakeSysfs;
    use super::*;

    #[test]
    fn a_partition_is_found_with_its_disk_and_siblings() {
        let dir = tempfile::tempdir().unwrap();
        let card = FakeSysfs::card(dir.path(), "mmcblk0", 62_333_952);
        card.partition("mmcblk0p4", 4, 4_726_784, 524_288)
            .partition("mmcblk0p1", 1, 8192, 1_048_576);
        let (partition, disk) = card
            .sysfs()
            .partition(DeviceNumber {
                major: 179,
                minor: 4,
            })
            .unwrap();
        assert_eq!(
            partition,
            BlockPartition {
                name: "mmcblk0p4".into(),
                number: 4,
                start_sector: 4_726_784,
                sectors: 524_288
            }
        );
        assert_eq!((disk.name.as_str(), disk.sectors), ("mmcblk0", 62_333_952));
        assert_eq!(disk.device_path(), Path::new("/dev/mmcblk0"));
        assert_eq!(partition.device_path(), Path::new("/dev/mmcblk0p4"));
        let numbers: Vec<u8> = card
            .sysfs()
            .partitions_of(&disk)
            .unwrap()
            .iter()
            .map(|p| p.number)
            .collect();
        assert_eq!(numbers, [1, 4]);
    }

    #[test]
    fn a_whole_disk_or_an_unknown_device_is_not_a_partition() {
        let dir = tempfile::tempdir().unwrap();
        let card = FakeSysfs::card(dir.path(), "mmcblk0", 1000);
        std::os::unix::fs::symlink(card.disk_directory(), card.root.join("dev/block/179:0"))
            .unwrap();
        let whole = DeviceNumber {
            major: 179,
            minor: 0,
        };
        assert!(matches!(
            card.sysfs().partition(whole),
            Err(BlockError::NotAPartition(number)) if number == whole
        ));
        assert!(matches!(
            card.sysfs().partition(DeviceNumber { major: 8, minor: 1 }),
            Err(BlockError::Read { .. })
        ));
    }

    #[test]
    fn garbage_in_a_size_file_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let card = FakeSysfs::card(dir.path(), "vda", 1000);
        card.partition("vda4", 4, 100, 200);
        card.set("vda4", "size", "lots");
        let error = card
            .sysfs()
            .partition(DeviceNumber {
                major: 179,
                minor: 4,
            })
            .unwrap_err();
        assert!(
            error
                .to_string()
                .ends_with("vda4/size holds \"lots\", not a number"),
            "{error}"
        );
    }
}
