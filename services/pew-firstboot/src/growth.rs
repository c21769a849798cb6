//! Growing the data partition to the end of the card, then its ext4 filesystem, while mounted.
//!
//! Every boot checks both and does only what is left, so a power cut at any point is finished
//! by the next boot: after the table was rewritten but before the kernel heard of it, the
//! partition is already at the end and only `partx` and `resize2fs` remain to be run; after
//! that, only `resize2fs`. The start of the partition is never changed (sfdisk is given it
//! again), so the filesystem always stays where it is.

use std::path::Path;

use pew_image::layout::{DataGrowth, LayoutError, Partition, PartitionRole, SECTOR_BYTES};
use tracing::info;

use crate::block::{BlockError, BlockPartition, Sysfs};
use crate::command::{CommandError, Invocation, Runner};
use crate::data::DataPartition;

/// Why the data partition or its filesystem was not grown.
#[derive(Debug, thiserror::Error)]
pub enum GrowthError {
    #[error(
        "{other} starts after the data partition {data}: growing would overwrite it, so the \
         card is left as it is"
    )]
    NotLastPartition { data: String, other: String },
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error(transparent)]
    Block(#[from] BlockError),
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error("the kernel still sees {partition} as {found} sectors after partx, not {expected}")]
    KernelKeptOldSize {
        partition: String,
        expected: u64,
        found: u64,
    },
    #[error("dumpe2fs output lacks {0:?}")]
    Dumpe2fs(&'static str),
}

/// What [`grow`] did, in bytes, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GrowthReport {
    /// Partition size before and after, when it was grown.
    pub partition: Option<(u64, u64)>,
    /// Filesystem size before and after, when it was grown.
    pub filesystem: Option<(u64, u64)>,
}

/// Grows the partition if the card has room after it, then the filesystem if the partition
/// has room for it.
pub fn grow(
    runner: &dyn Runner,
    sysfs: &Sysfs,
    data: &DataPartition,
) -> Result<GrowthReport, GrowthError> {
    let (partition, partition_growth) = grow_partition(runner, sysfs, data)?;
    let filesystem_growth = grow_filesystem(runner, &partition)?;
    Ok(GrowthReport {
        partition: partition_growth,
        filesystem: filesystem_growth,
    })
}

/// Returns the partition as the kernel now sees it, and its old and new size if it grew.
fn grow_partition(
    runner: &dyn Runner,
    sysfs: &Sysfs,
    data: &DataPartition,
) -> Result<(BlockPartition, Option<(u64, u64)>), GrowthError> {
    let partition = &data.partition;
    if let Some(other) = sysfs
        .partitions_of(&data.disk)?
        .into_iter()
        .find(|other| other.start_sector > partition.start_sector)
    {
        return Err(GrowthError::NotLastPartition {
            data: partition.name.clone(),
            other: other.name,
        });
    }
    let table_entry = Partition {
        role: PartitionRole::Data,
        start_sector: partition.start_sector,
        sectors: partition.sectors,
    };
    let Some(growth) = DataGrowth::to_card_end(&table_entry, data.disk.sectors)? else {
        return Ok((partition.clone(), None));
    };
    runner.run(&rewrite_table_entry(data, &growth))?;
    runner.run(&tell_kernel(data, &growth))?;
    let (grown, _) = sysfs.partition(data.device)?;
    if grown.sectors != growth.target_sectors {
        return Err(GrowthError::KernelKeptOldSize {
            partition: grown.name,
            expected: growth.target_sectors,
            found: grown.sectors,
        });
    }
    let sizes = (
        growth.current_sectors * SECTOR_BYTES,
        growth.target_sectors * SECTOR_BYTES,
    );
    info!(
        "data partition {} grown from {} MiB to {} MiB (card {} MiB)",
        grown.name,
        mib(sizes.0),
        mib(sizes.1),
        mib(data.disk.sectors * SECTOR_BYTES),
    );
    Ok((grown, Some(sizes)))
}

/// Returns the filesystem's old and new size if it grew.
fn grow_filesystem(
    runner: &dyn Runner,
    partition: &BlockPartition,
) -> Result<Option<(u64, u64)>, GrowthError> {
    let device = partition.device_path();
    let before = filesystem_size(runner, &device)?;
    if !before.can_grow_into(partition.sectors * SECTOR_BYTES) {
        return Ok(None);
    }
    // Given no size, resize2fs fills the partition; on a mounted ext4 it grows online.
    runner.run(&Invocation::new("resize2fs", [&device]))?;
    let after = filesystem_size(runner, &device)?;
    info!(
        "data filesystem on {} grown from {} MiB to {} MiB",
        partition.name,
        mib(before.bytes()),
        mib(after.bytes())
    );
    Ok(Some((before.bytes(), after.bytes())))
}

/// sfdisk rewriting only the data partition's entry. The disk is in use (its partitions are
/// mounted), so it must not ask the kernel to re-read the whole table, which would fail;
/// [`tell_kernel`] updates that one partition instead. Wiping is off explicitly: sfdisk may
/// otherwise clear signatures it finds in a partition it changes, here the live ext4.
fn rewrite_table_entry(data: &DataPartition, growth: &DataGrowth) -> Invocation {
    Invocation::new(
        "sfdisk",
        [
            "--no-reread".as_ref(),
            "--no-tell-kernel".as_ref(),
            "--wipe=never".as_ref(),
            "--wipe-partitions=never".as_ref(),
            "-N".as_ref(),
            growth.partition.to_string().as_ref(),
            data.disk.device_path().as_os_str(),
        ],
    )
    .with_stdin(growth.sfdisk_line())
}

/// partx updating the kernel's idea of one partition's size (BLKPG), which works while it is
/// mounted, unlike a full re-read.
fn tell_kernel(data: &DataPartition, growth: &DataGrowth) -> Invocation {
    Invocation::new(
        "partx",
        [
            "--update".as_ref(),
            "--nr".as_ref(),
            growth.partition.to_string().as_ref(),
            data.disk.device_path().as_os_str(),
        ],
    )
}

/// An ext4 filesystem's size as its superblock states it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FilesystemSize {
    block_count: u64,
    block_size: u64,
}

impl FilesystemSize {
    fn bytes(&self) -> u64 {
        self.block_count * self.block_size
    }

    /// Whether at least one more block fits in a partition of `partition_bytes`.
    fn can_grow_into(&self, partition_bytes: u64) -> bool {
        self.bytes() + self.block_size <= partition_bytes
    }
}

/// The filesystem's size from its superblock (`dumpe2fs -h`).
fn filesystem_size(runner: &dyn Runner, device: &Path) -> Result<FilesystemSize, GrowthError> {
    let output = runner.run(&Invocation::new(
        "dumpe2fs",
        ["-h".as_ref(), device.as_os_str()],
    ))?;
    parse_dumpe2fs(&output)
}

/// Reads `Block count:` and `Block size:`.
fn parse_dumpe2fs(dumpe2fs: &str) -> Result<FilesystemSize, GrowthError> {
    let field = |name: &'static str| -> Result<u64, GrowthError> {
        dumpe2fs
            .lines()
            .find_map(|line| {
                let (key, value) = line.split_once(':')?;
                (key.trim() == name).then(|| value.trim().parse().ok())?
            })
            .ok_or(GrowthError::Dumpe2fs(name))
    };
    Ok(FilesystemSize {
        block_count: field("Block count")?,
        block_size: field("Block size")?,
    })
}

fn mib(bytes: u64) -> u64 {
    bytes / (1024 * 1024)
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;
    use crate::block::testing::FakeSysfs;
    use crate::command::testing::{RecordingRunner, failure};
    use crate::mountinfo;

    /// A "32 GB" card (62,333,952 sectors) flashed with the image: data starts at 2564 MiB
    /// minus its 256 MiB, i.e. sector 4,726,784, and is 524,288 sectors long.
    const CARD: u64 = 62_333_952;
    const DATA_START: u64 = 4_726_784;
    const IMAGE_DATA: u64 = 524_288;

    fn dumpe2fs(blocks: u64) -> String {
        format!(
            "dumpe2fs 1.47.2 (1-Jan-2025)\nFilesystem volume name:   pew-data\n\
             Block count:              {blocks}\nReserved block count:     3276\n\
             Block size:               4096\nFragment size:            4096\n"
        )
    }

    fn data(card: &FakeSysfs) -> DataPartition {
        let mounts = mountinfo::parse("31 22 179:4 / /data rw - ext4 /dev/mmcblk0p4 rw\n").unwrap();
        DataPartition::find(&mounts, &card.sysfs()).unwrap()
    }

    fn card(dir: &Path, data_sectors: u64) -> FakeSysfs {
        let card = FakeSysfs::card(dir, "mmcblk0", CARD);
        card.partition("mmcblk0p1", 1, 8192, 1_048_576).partition(
            "mmcblk0p4",
            4,
            DATA_START,
            data_sectors,
        );
        card
    }

    /// Plays the kernel and e2fsprogs: partx makes sysfs show the new size, resize2fs fills
    /// the partition.
    fn system<'a>(
        card: &'a FakeSysfs,
        filesystem_blocks: &'a Cell<u64>,
    ) -> RecordingRunner<impl Fn(&Invocation) -> Result<String, CommandError> + 'a> {
        RecordingRunner::new(move |invocation: &Invocation| {
            match invocation.program {
                "partx" => card.set("mmcblk0p4", "size", CARD - DATA_START),
                "resize2fs" => filesystem_blocks.set((CARD - DATA_START) * 512 / 4096),
                "dumpe2fs" => return Ok(dumpe2fs(filesystem_blocks.get())),
                _ => {}
            }
            Ok(String::new())
        })
    }

    #[test]
    fn first_boot_grows_the_partition_keeping_its_start_then_the_filesystem() {
        let dir = tempfile::tempdir().unwrap();
        let card = card(dir.path(), IMAGE_DATA);
        let blocks = Cell::new(IMAGE_DATA * 512 / 4096);
        let runner = system(&card, &blocks);
        let report = grow(&runner, &card.sysfs(), &data(&card)).unwrap();
        assert_eq!(
            runner.command_lines(),
            [
                "sfdisk --no-reread --no-tell-kernel --wipe=never --wipe-partitions=never -N 4 /dev/mmcblk0",
                "partx --update --nr 4 /dev/mmcblk0",
                "dumpe2fs -h /dev/mmcblk0p4",
                "resize2fs /dev/mmcblk0p4",
                "dumpe2fs -h /dev/mmcblk0p4",
            ]
        );
        assert_eq!(
            runner.log.borrow()[0].stdin.as_deref(),
            Some("start=4726784, size=57607168\n")
        );
        // 256 MiB to 28128.5 MiB: the whole rest of the card.
        assert_eq!(
            report,
            GrowthReport {
                partition: Some((256 << 20, 57_607_168 * 512)),
                filesystem: Some((256 << 20, 57_607_168 * 512)),
            }
        );
    }

    #[test]
    fn a_later_boot_only_reads_the_superblock() {
        let dir = tempfile::tempdir().unwrap();
        let card = card(dir.path(), CARD - DATA_START);
        // resize2fs rounds down to whole 4 KiB blocks: 57,607,168 sectors hold 7,200,896.
        let blocks = Cell::new(7_200_896);
        let runner = system(&card, &blocks);
        let report = grow(&runner, &card.sysfs(), &data(&card)).unwrap();
        assert_eq!(runner.command_lines(), ["dumpe2fs -h /dev/mmcblk0p4"]);
        assert_eq!(report, GrowthReport::default());
    }

    #[test]
    fn a_boot_after_a_power_cut_before_resize2fs_only_grows_the_filesystem() {
        let dir = tempfile::tempdir().unwrap();
        let card = card(dir.path(), CARD - DATA_START);
        let blocks = Cell::new(IMAGE_DATA * 512 / 4096);
        let runner = system(&card, &blocks);
        let report = grow(&runner, &card.sysfs(), &data(&card)).unwrap();
        assert_eq!(
            runner.command_lines(),
            [
                "dumpe2fs -h /dev/mmcblk0p4",
                "resize2fs /dev/mmcblk0p4",
                "dumpe2fs -h /dev/mmcblk0p4"
            ]
        );
        assert_eq!(report.partition, None);
        assert_eq!(report.filesystem, Some((256 << 20, 7_200_896 * 4096)));
    }

    #[test]
    fn a_partition_after_data_stops_everything() {
        let dir = tempfile::tempdir().unwrap();
        let card = card(dir.path(), IMAGE_DATA);
        card.partition("mmcblk0p3", 3, DATA_START + IMAGE_DATA, 1000);
        let blocks = Cell::new(0);
        let runner = system(&card, &blocks);
        let error = grow(&runner, &card.sysfs(), &data(&card)).unwrap_err();
        assert!(
            matches!(error, GrowthError::NotLastPartition { ref other, .. } if other == "mmcblk0p3")
        );
        assert!(runner.log.borrow().is_empty());
    }

    #[test]
    fn a_kernel_that_ignores_partx_is_reported_and_resize2fs_not_run() {
        let dir = tempfile::tempdir().unwrap();
        let card = card(dir.path(), IMAGE_DATA);
        let runner = RecordingRunner::new(|_: &Invocation| Ok(String::new()));
        let error = grow(&runner, &card.sysfs(), &data(&card)).unwrap_err();
        assert!(matches!(
            error,
            GrowthError::KernelKeptOldSize {
                expected: 57_607_168,
                found: IMAGE_DATA,
                ..
            }
        ));
        assert_eq!(runner.log.borrow().len(), 2);
    }

    #[test]
    fn a_failing_sfdisk_stops_before_the_kernel_is_told() {
        let dir = tempfile::tempdir().unwrap();
        let card = card(dir.path(), IMAGE_DATA);
        let runner = RecordingRunner::new(|invocation: &Invocation| {
            Err(failure(invocation, "sfdisk: cannot open /dev/mmcblk0"))
        });
        let error = grow(&runner, &card.sysfs(), &data(&card)).unwrap_err();
        assert!(
            error.to_string().contains("cannot open /dev/mmcblk0"),
            "{error}"
        );
        assert_eq!(runner.log.borrow().len(), 1);
    }

    #[test]
    fn dumpe2fs_output_is_read_and_a_missing_field_named() {
        assert_eq!(
            parse_dumpe2fs(&dumpe2fs(65_536)).unwrap(),
            FilesystemSize {
                block_count: 65_536,
                block_size: 4096
            }
        );
        assert!(matches!(
            parse_dumpe2fs("Block count: 12\n"),
            Err(GrowthError::Dumpe2fs("Block size"))
        ));
        let fs = FilesystemSize {
            block_count: 10,
            block_size: 4096,
        };
        assert!(!fs.can_grow_into(10 * 4096 + 4095));
        assert!(fs.can_grow_into(11 * 4096));
    }
}
