//! Reads an image's MBR partition table, so the boot partition is found and the data
//! partition's growth predicted from the image actually booted rather than from the recipe it
//! was supposedly built from (the two are compared separately).

use std::fs::File;
use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result, bail};
use pew_image::layout::{DiskLayout, DiskSignature, SECTOR_BYTES};

/// Offsets inside the 512-byte MBR.
const SIGNATURE_OFFSET: usize = 440;
const TABLE_OFFSET: usize = 446;
const ENTRY_BYTES: usize = 16;
const BOOT_MARK_OFFSET: usize = 510;
const BOOT_MARK: [u8; 2] = [0x55, 0xaa];

/// One used entry of the table, sizes in 512-byte sectors.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct MbrPartition {
    /// 1 to 4, as Linux numbers primary partitions.
    pub number: u8,
    pub kind: u8,
    pub start_sector: u64,
    pub sectors: u64,
}

impl MbrPartition {
    pub fn start_bytes(&self) -> u64 {
        self.start_sector * SECTOR_BYTES
    }

    pub fn size_bytes(&self) -> u64 {
        self.sectors * SECTOR_BYTES
    }
}

/// The disk signature and the used primary partitions.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct PartitionTable {
    pub signature: DiskSignature,
    pub partitions: Vec<MbrPartition>,
}

impl PartitionTable {
    /// Reads the first sector of a disk image.
    pub fn read(image: &Path) -> Result<Self> {
        let mut sector = [0u8; 512];
        File::open(image)
            .and_then(|mut file| file.read_exact(&mut sector))
            .with_context(|| format!("cannot read the MBR of {}", image.display()))?;
        Self::parse(&sector).with_context(|| image.display().to_string())
    }

    pub fn parse(sector: &[u8; 512]) -> Result<Self> {
        if sector[BOOT_MARK_OFFSET..] != BOOT_MARK {
            bail!("no MBR: the boot signature 55 aa is missing");
        }
        let signature = DiskSignature(u32::from_le_bytes(le_bytes(sector, SIGNATURE_OFFSET)));
        let partitions = (0..4u8)
            .map(|index| {
                let entry = TABLE_OFFSET + usize::from(index) * ENTRY_BYTES;
                MbrPartition {
                    number: index + 1,
                    kind: sector[entry + 4],
                    start_sector: u64::from(u32::from_le_bytes(le_bytes(sector, entry + 8))),
                    sectors: u64::from(u32::from_le_bytes(le_bytes(sector, entry + 12))),
                }
            })
            .filter(|partition| partition.kind != 0 && partition.sectors != 0)
            .collect();
        Ok(Self {
            signature,
            partitions,
        })
    }

    /// Partition `number` (1-based), if that entry is used.
    pub fn partition(&self, number: u8) -> Result<&MbrPartition> {
        self.partitions
            .iter()
            .find(|partition| partition.number == number)
            .with_context(|| format!("the partition table has no partition {number}"))
    }

    /// Where this table differs from the recipe's layout, in words; empty when identical.
    pub fn differences(&self, layout: &DiskLayout) -> Vec<String> {
        let mut differences = Vec::new();
        if self.signature != layout.signature() {
            differences.push(format!(
                "disk signature {} instead of {}",
                self.signature,
                layout.signature()
            ));
        }
        for planned in layout.partitions() {
            let actual = self
                .partitions
                .iter()
                .find(|partition| partition.number == planned.number());
            let wanted = (
                planned.role.mbr_type(),
                planned.start_sector,
                planned.sectors,
            );
            match actual {
                Some(actual) if (actual.kind, actual.start_sector, actual.sectors) == wanted => {}
                Some(actual) => differences.push(format!(
                    "partition {} is type {:#04x} at sector {} with {} sectors instead of type {:#04x} at {} with {}",
                    actual.number,
                    actual.kind,
                    actual.start_sector,
                    actual.sectors,
                    wanted.0,
                    wanted.1,
                    wanted.2
                )),
                None => differences.push(format!("partition {} is missing", planned.number())),
            }
        }
        differences
    }
}

fn le_bytes(sector: &[u8; 512], offset: usize) -> [u8; 4] {
    [
        sector[offset],
        sector[offset + 1],
        sector[offset + 2],
        sector[offset + 3],
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use pew_image::layout::LayoutSpec;

    fn layout() -> DiskLayout {
        DiskLayout::plan(&LayoutSpec {
            signature: DiskSignature(0x7065_7701),
            align_mib: 4,
            boot_mib: 512,
            system_mib: 1024,
            data_mib: 256,
        })
        .unwrap()
    }

    /// The sector sfdisk writes for `layout` (entries as in the sfdisk script).
    fn sector_for(layout: &DiskLayout) -> [u8; 512] {
        let mut sector = [0u8; 512];
        sector[SIGNATURE_OFFSET..SIGNATURE_OFFSET + 4]
            .copy_from_slice(&layout.signature().0.to_le_bytes());
        for partition in layout.partitions() {
            let entry = TABLE_OFFSET + usize::from(partition.number() - 1) * ENTRY_BYTES;
            sector[entry + 4] = partition.role.mbr_type();
            let start = u32::try_from(partition.start_sector).unwrap();
            let sectors = u32::try_from(partition.sectors).unwrap();
            sector[entry + 8..entry + 12].copy_from_slice(&start.to_le_bytes());
            sector[entry + 12..entry + 16].copy_from_slice(&sectors.to_le_bytes());
        }
        sector[BOOT_MARK_OFFSET..].copy_from_slice(&BOOT_MARK);
        sector
    }

    #[test]
    fn reads_back_the_recipe_layout() {
        let layout = layout();
        let table = PartitionTable::parse(&sector_for(&layout)).unwrap();
        assert_eq!(table.signature, DiskSignature(0x7065_7701));
        assert!(table.differences(&layout).is_empty());
        let boot = table.partition(1).unwrap();
        // One 4 MiB alignment unit in: sector 8192, byte 4 MiB, where mtools must look.
        assert_eq!((boot.kind, boot.start_sector), (0x0c, 8192));
        assert_eq!(boot.start_bytes(), 4 * 1024 * 1024);
        let data = table.partition(4).unwrap();
        assert_eq!(data.size_bytes(), 256 * 1024 * 1024);
        assert_eq!(data.start_sector + data.sectors, layout.image_sectors());
    }

    #[test]
    fn names_every_difference_from_the_recipe() {
        let layout = layout();
        let mut sector = sector_for(&layout);
        // The lab disk's signature, and no data partition.
        sector[SIGNATURE_OFFSET..SIGNATURE_OFFSET + 4]
            .copy_from_slice(&0x6c1b_2d1e_u32.to_le_bytes());
        sector[TABLE_OFFSET + 3 * ENTRY_BYTES..TABLE_OFFSET + 4 * ENTRY_BYTES].fill(0);
        let table = PartitionTable::parse(&sector).unwrap();
        assert_eq!(table.partitions.len(), 3);
        assert!(table.partition(4).is_err());
        assert_eq!(
            table.differences(&layout),
            [
                "disk signature 0x6c1b2d1e instead of 0x70657701",
                "partition 4 is missing"
            ]
        );
    }

    #[test]
    fn a_grown_data_partition_is_a_difference() {
        let layout = layout();
        let mut sector = sector_for(&layout);
        let length = TABLE_OFFSET + 3 * ENTRY_BYTES + 12;
        sector[length..length + 4].copy_from_slice(&1_000_000_u32.to_le_bytes());
        let differences = PartitionTable::parse(&sector).unwrap().differences(&layout);
        assert_eq!(differences.len(), 1);
        assert!(
            differences[0].starts_with("partition 4 is type 0x83"),
            "{differences:?}"
        );
    }

    #[test]
    fn a_sector_without_the_boot_mark_is_not_an_mbr() {
        let mut sector = sector_for(&layout());
        sector[BOOT_MARK_OFFSET] = 0;
        assert!(PartitionTable::parse(&sector).is_err());
    }
}
