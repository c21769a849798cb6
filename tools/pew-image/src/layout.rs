//! Partition layout of the SD card image: an MBR disk with four primary partitions.
//!
//! | # | role      | MBR type        | content                                       |
//! |---|-----------|-----------------|-----------------------------------------------|
//! | 1 | boot      | 0x0C FAT32 LBA  | Pi firmware, U-Boot, boot script, slot state, provisioning area |
//! | 2 | system A  | 0x83 Linux      | read-only EROFS root                          |
//! | 3 | system B  | 0x83 Linux      | read-only EROFS root                          |
//! | 4 | data      | 0x83 Linux      | ext4, grown to the end of the card on first boot |
//!
//! MBR rather than GPT because the Pi 3 / Zero 2 W boot ROM reads only MBR, and because Pi 4/5
//! bootloaders have known GPT bugs (image.md §2.7). Four primaries are enough because U-Boot,
//! not the firmware's tryboot, chooses the slot, so only one FAT partition is needed. Data is
//! last so it can grow into the rest of the card. The fixed disk signature makes every PARTUUID
//! (`<signature>-0N`) known at build time, which the boot script and fstab rely on.

use std::fmt;

/// Bytes per sector of an SD card and of the image file: the unit of every MBR field.
pub const SECTOR_BYTES: u64 = 512;
const SECTORS_PER_MIB: u64 = 1024 * 1024 / SECTOR_BYTES;
/// An MBR stores start and length as 32-bit sector counts.
const MBR_MAX_SECTORS: u64 = u32::MAX as u64;

/// The MBR disk signature (sfdisk `label-id`). Linux derives each partition's PARTUUID from it.
#[derive(Clone, Copy, PartialEq, Eq, Debug, serde::Deserialize)]
pub struct DiskSignature(pub u32);

impl DiskSignature {
    /// The PARTUUID Linux gives MBR partition `number`: `%08x-%02x`, as in `root=PARTUUID=…`.
    pub fn partuuid(self, number: u8) -> String {
        format!("{:08x}-{number:02x}", self.0)
    }
}

impl fmt::Display for DiskSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:08x}", self.0)
    }
}

/// What a partition is for; its position in [`PartitionRole::ALL`] is its MBR number.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum PartitionRole {
    Boot,
    SystemA,
    SystemB,
    Data,
}

impl PartitionRole {
    /// In partition-table order.
    pub const ALL: [PartitionRole; 4] = [Self::Boot, Self::SystemA, Self::SystemB, Self::Data];

    /// The 1-based MBR partition number (`mmcblk0p<N>`, U-Boot `${devnum}:<N>`).
    pub fn number(self) -> u8 {
        match self {
            Self::Boot => 1,
            Self::SystemA => 2,
            Self::SystemB => 3,
            Self::Data => 4,
        }
    }

    /// MBR partition type: FAT32 with LBA addressing for the partition the Pi firmware reads
    /// (the Pi 4 ROM does not recognise 0xEF as FAT, image.md §2.7), Linux for the rest.
    pub fn mbr_type(self) -> u8 {
        match self {
            Self::Boot => 0x0c,
            Self::SystemA | Self::SystemB | Self::Data => 0x83,
        }
    }
}

impl fmt::Display for PartitionRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Boot => "boot",
            Self::SystemA => "system A",
            Self::SystemB => "system B",
            Self::Data => "data",
        })
    }
}

/// What the layout is computed from (the recipe's `[disk]` and `[partitions]`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct LayoutSpec {
    pub signature: DiskSignature,
    /// Every partition starts on a multiple of this; SD cards erase in 4 MiB units, and a
    /// filesystem block that straddles two erase units costs two erases.
    pub align_mib: u32,
    pub boot_mib: u32,
    /// Size of each system slot; both slots are the same size so either can take any update.
    pub system_mib: u32,
    /// Size in the image; the partition grows to the end of the card on first boot.
    pub data_mib: u32,
}

/// Why a layout cannot be built or used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error("the disk signature must not be 0 (tools treat 0 as \"no signature\" and invent one)")]
    ZeroSignature,
    #[error("the alignment must be a power of two MiB, got {0} MiB")]
    Alignment(u32),
    #[error("the {0} partition has size 0")]
    ZeroSize(PartitionRole),
    #[error(
        "the {0} partition does not fit an MBR (start and length are 32-bit sector counts, 2 TiB)"
    )]
    BeyondMbr(PartitionRole),
    #[error(
        "a {image_bytes}-byte system image plus {headroom_percent}% headroom for later updates needs \
         {needed_mib} MiB, but a system slot is {slot_mib} MiB"
    )]
    SystemSlotTooSmall {
        image_bytes: u64,
        headroom_percent: u32,
        needed_mib: u64,
        slot_mib: u64,
    },
    #[error("the card has {card_sectors} sectors but the image needs {image_sectors}")]
    CardTooSmall {
        card_sectors: u64,
        image_sectors: u64,
    },
}

/// One partition, in 512-byte sectors from the start of the disk.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Partition {
    pub role: PartitionRole,
    pub start_sector: u64,
    pub sectors: u64,
}

impl Partition {
    pub fn number(&self) -> u8 {
        self.role.number()
    }

    /// Where the filesystem image goes in the disk image (`dd seek=… oflag=seek_bytes`).
    pub fn start_bytes(&self) -> u64 {
        self.start_sector * SECTOR_BYTES
    }

    pub fn size_bytes(&self) -> u64 {
        self.sectors * SECTOR_BYTES
    }

    /// First sector after the partition.
    pub fn end_sector(&self) -> u64 {
        self.start_sector + self.sectors
    }
}

/// The computed partition table.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct DiskLayout {
    signature: DiskSignature,
    partitions: [Partition; 4],
}

impl DiskLayout {
    /// Places the partitions in table order, each on the next alignment boundary. The first one
    /// starts one alignment unit in (at least 1 MiB), leaving the MBR and the gap that
    /// partitioning tools expect before it.
    pub fn plan(spec: &LayoutSpec) -> Result<Self, LayoutError> {
        if spec.signature.0 == 0 {
            return Err(LayoutError::ZeroSignature);
        }
        if !spec.align_mib.is_power_of_two() {
            return Err(LayoutError::Alignment(spec.align_mib));
        }
        let align = u64::from(spec.align_mib) * SECTORS_PER_MIB;
        let mut next_start = align;
        let partitions = PartitionRole::ALL.map(|role| {
            let mib = match role {
                PartitionRole::Boot => spec.boot_mib,
                PartitionRole::SystemA | PartitionRole::SystemB => spec.system_mib,
                PartitionRole::Data => spec.data_mib,
            };
            let partition = Partition {
                role,
                start_sector: next_start,
                sectors: u64::from(mib) * SECTORS_PER_MIB,
            };
            next_start = partition.end_sector().next_multiple_of(align);
            partition
        });
        for partition in &partitions {
            if partition.sectors == 0 {
                return Err(LayoutError::ZeroSize(partition.role));
            }
            if partition.start_sector > MBR_MAX_SECTORS || partition.sectors > MBR_MAX_SECTORS {
                return Err(LayoutError::BeyondMbr(partition.role));
            }
        }
        Ok(Self {
            signature: spec.signature,
            partitions,
        })
    }

    pub fn signature(&self) -> DiskSignature {
        self.signature
    }

    pub fn partitions(&self) -> &[Partition; 4] {
        &self.partitions
    }

    pub fn partition(&self, role: PartitionRole) -> &Partition {
        &self.partitions[usize::from(role.number() - 1)]
    }

    pub fn partuuid(&self, role: PartitionRole) -> String {
        self.signature.partuuid(role.number())
    }

    /// The image file ends where the data partition ends: nothing after it to flash.
    pub fn image_sectors(&self) -> u64 {
        self.partition(PartitionRole::Data).end_sector()
    }

    pub fn image_bytes(&self) -> u64 {
        self.image_sectors() * SECTOR_BYTES
    }

    /// Input for `sfdisk <image>`: the whole table, fixed signature included, so the partition
    /// table bytes depend on nothing but the recipe.
    pub fn sfdisk_script(&self) -> String {
        let mut script = format!(
            "label: dos\nlabel-id: {}\nunit: sectors\n\n",
            self.signature
        );
        for partition in &self.partitions {
            script += &format!(
                "start={}, size={}, type={:x}",
                partition.start_sector,
                partition.sectors,
                partition.role.mbr_type()
            );
            // U-Boot's distro boot looks for boot.scr on bootable partitions first.
            if partition.role == PartitionRole::Boot {
                script += ", bootable";
            }
            script += "\n";
        }
        script
    }

    /// Checks that a system image of `image_bytes` fits a slot with `headroom_percent` to spare.
    /// The slots can never be resized on a deployed card, so every later update must fit too.
    pub fn check_system_image(
        &self,
        image_bytes: u64,
        headroom_percent: u32,
    ) -> Result<(), LayoutError> {
        let slot_bytes = self.partition(PartitionRole::SystemA).size_bytes();
        let needed = u128::from(image_bytes) * (100 + u128::from(headroom_percent)) / 100;
        if needed <= u128::from(slot_bytes) {
            return Ok(());
        }
        let mib = u128::from(SECTORS_PER_MIB * SECTOR_BYTES);
        Err(LayoutError::SystemSlotTooSmall {
            image_bytes,
            headroom_percent,
            needed_mib: u64::try_from(needed.div_ceil(mib)).unwrap_or(u64::MAX),
            slot_mib: slot_bytes / (SECTORS_PER_MIB * SECTOR_BYTES),
        })
    }

    /// What first boot does to the data partition on a card of `card_sectors` sectors: `None`
    /// when it already reaches the end of the card (or the MBR's 2 TiB limit).
    pub fn data_growth(&self, card_sectors: u64) -> Result<Option<DataGrowth>, LayoutError> {
        DataGrowth::to_card_end(self.partition(PartitionRole::Data), card_sectors)
    }
}

/// Growing the data partition in place: same start, larger length; then the filesystem
/// (`resize2fs`) follows.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct DataGrowth {
    pub partition: u8,
    pub start_sector: u64,
    pub current_sectors: u64,
    pub target_sectors: u64,
}

impl DataGrowth {
    /// Growing `partition` (the last one on the card) up to the end of a card of
    /// `card_sectors` sectors, capped by the MBR's 32-bit length: `None` when it already ends
    /// there. The image build plans it from the recipe ([`DiskLayout::data_growth`]); the node
    /// computes it from the partition table it actually finds, which is the one that counts.
    pub fn to_card_end(
        partition: &Partition,
        card_sectors: u64,
    ) -> Result<Option<DataGrowth>, LayoutError> {
        if card_sectors < partition.end_sector() {
            return Err(LayoutError::CardTooSmall {
                card_sectors,
                image_sectors: partition.end_sector(),
            });
        }
        let target_sectors = (card_sectors - partition.start_sector).min(MBR_MAX_SECTORS);
        Ok((target_sectors > partition.sectors).then_some(DataGrowth {
            partition: partition.number(),
            start_sector: partition.start_sector,
            current_sectors: partition.sectors,
            target_sectors,
        }))
    }

    /// Input for `sfdisk --no-reread -N <partition> <card>`, which rewrites only that entry. The
    /// start is repeated so a mistake cannot move the partition and lose the data on it.
    pub fn sfdisk_line(&self) -> String {
        format!(
            "start={}, size={}\n",
            self.start_sector, self.target_sectors
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> LayoutSpec {
        LayoutSpec {
            signature: DiskSignature(0x7065_7701),
            align_mib: 4,
            boot_mib: 256,
            system_mib: 1024,
            data_mib: 256,
        }
    }

    #[test]
    fn partitions_follow_each_other_on_4_mib_boundaries() {
        let layout = DiskLayout::plan(&spec()).unwrap();
        // Hand-computed: 4 MiB = 8192 sectors; 256 MiB = 524288; 1024 MiB = 2097152.
        let expected = [
            (8192, 524_288),
            (532_480, 2_097_152),
            (2_629_632, 2_097_152),
            (4_726_784, 524_288),
        ];
        for (partition, (start, sectors)) in layout.partitions().iter().zip(expected) {
            assert_eq!(
                (partition.start_sector, partition.sectors),
                (start, sectors),
                "{}",
                partition.role
            );
            assert_eq!(partition.start_sector % 8192, 0);
        }
        assert_eq!(layout.image_sectors(), 5_251_072);
        // 4 + 256 + 1024 + 1024 + 256 MiB.
        assert_eq!(layout.image_bytes(), 2564 * 1024 * 1024);
        assert_eq!(
            layout.partition(PartitionRole::SystemB).start_bytes(),
            2_629_632 * 512
        );
    }

    #[test]
    fn sizes_that_are_not_alignment_multiples_leave_a_gap_not_a_misaligned_start() {
        let layout = DiskLayout::plan(&LayoutSpec {
            boot_mib: 33,
            ..spec()
        })
        .unwrap();
        let boot = layout.partition(PartitionRole::Boot);
        assert_eq!(boot.end_sector(), 8192 + 33 * 2048);
        // 4 + 33 = 37 MiB, rounded up to 40 MiB.
        assert_eq!(
            layout.partition(PartitionRole::SystemA).start_sector,
            40 * 2048
        );
    }

    #[test]
    fn one_mib_alignment_starts_at_one_mib() {
        let layout = DiskLayout::plan(&LayoutSpec {
            align_mib: 1,
            ..spec()
        })
        .unwrap();
        assert_eq!(layout.partition(PartitionRole::Boot).start_sector, 2048);
    }

    #[test]
    fn partuuids_are_signature_and_hex_number() {
        let layout = DiskLayout::plan(&spec()).unwrap();
        assert_eq!(layout.partuuid(PartitionRole::SystemA), "70657701-02");
        assert_eq!(layout.partuuid(PartitionRole::Data), "70657701-04");
        assert_eq!(DiskSignature(0xab).partuuid(12), "000000ab-0c");
    }

    #[test]
    fn sfdisk_script_is_exact() {
        let layout = DiskLayout::plan(&spec()).unwrap();
        assert_eq!(
            layout.sfdisk_script(),
            "label: dos\nlabel-id: 0x70657701\nunit: sectors\n\n\
             start=8192, size=524288, type=c, bootable\n\
             start=532480, size=2097152, type=83\n\
             start=2629632, size=2097152, type=83\n\
             start=4726784, size=524288, type=83\n"
        );
    }

    #[test]
    fn invalid_specs_are_rejected_with_the_reason() {
        assert_eq!(
            DiskLayout::plan(&LayoutSpec {
                signature: DiskSignature(0),
                ..spec()
            }),
            Err(LayoutError::ZeroSignature)
        );
        assert_eq!(
            DiskLayout::plan(&LayoutSpec {
                align_mib: 3,
                ..spec()
            }),
            Err(LayoutError::Alignment(3))
        );
        assert_eq!(
            DiskLayout::plan(&LayoutSpec {
                align_mib: 0,
                ..spec()
            }),
            Err(LayoutError::Alignment(0))
        );
        assert_eq!(
            DiskLayout::plan(&LayoutSpec {
                data_mib: 0,
                ..spec()
            }),
            Err(LayoutError::ZeroSize(PartitionRole::Data))
        );
        // 2 TiB is 2^32 sectors, one more than an MBR length can say.
        assert_eq!(
            DiskLayout::plan(&LayoutSpec {
                system_mib: 2 * 1024 * 1024,
                ..spec()
            }),
            Err(LayoutError::BeyondMbr(PartitionRole::SystemA))
        );
    }

    #[test]
    fn system_image_must_fit_with_headroom() {
        let layout = DiskLayout::plan(&spec()).unwrap();
        let mib = 1024 * 1024;
        assert_eq!(layout.check_system_image(682 * mib, 50), Ok(()));
        assert_eq!(layout.check_system_image(1024 * mib, 0), Ok(()));
        assert_eq!(
            layout.check_system_image(700 * mib, 50),
            Err(LayoutError::SystemSlotTooSmall {
                image_bytes: 700 * mib,
                headroom_percent: 50,
                needed_mib: 1050,
                slot_mib: 1024
            })
        );
    }

    #[test]
    fn data_grows_to_the_card_end_keeping_its_start() {
        let layout = DiskLayout::plan(&spec()).unwrap();
        // A "32 GB" card: 62,333,952 sectors (a common SDHC size).
        let growth = layout.data_growth(62_333_952).unwrap().unwrap();
        assert_eq!(growth.start_sector, 4_726_784);
        assert_eq!(growth.current_sectors, 524_288);
        assert_eq!(growth.target_sectors, 62_333_952 - 4_726_784);
        assert_eq!(growth.sfdisk_line(), "start=4726784, size=57607168\n");
        assert_eq!(growth.partition, 4);
    }

    #[test]
    fn data_growth_is_nothing_on_an_exact_fit_and_an_error_on_a_small_card() {
        let layout = DiskLayout::plan(&spec()).unwrap();
        assert_eq!(layout.data_growth(layout.image_sectors()), Ok(None));
        assert_eq!(
            layout.data_growth(4_000_000),
            Err(LayoutError::CardTooSmall {
                card_sectors: 4_000_000,
                image_sectors: 5_251_072
            })
        );
    }

    #[test]
    fn growth_from_the_table_found_on_a_card_keeps_start_and_number() {
        // What a node reads back after an earlier growth was cut short by a power loss: the
        // partition already reaches further than the image's, but not to the card's end.
        let data = Partition {
            role: PartitionRole::Data,
            start_sector: 4_726_784,
            sectors: 10_000_000,
        };
        let growth = DataGrowth::to_card_end(&data, 62_333_952).unwrap().unwrap();
        assert_eq!(
            growth,
            DataGrowth {
                partition: 4,
                start_sector: 4_726_784,
                current_sectors: 10_000_000,
                target_sectors: 57_607_168,
            }
        );
        let at_end = Partition {
            sectors: 57_607_168,
            ..data
        };
        assert_eq!(DataGrowth::to_card_end(&at_end, 62_333_952), Ok(None));
        // A table claiming more than the card holds is refused, never "shrunk" to fit.
        assert!(matches!(
            DataGrowth::to_card_end(&at_end, 62_333_951),
            Err(LayoutError::CardTooSmall { .. })
        ));
    }

    #[test]
    fn data_growth_stops_at_the_mbr_limit_on_huge_cards() {
        let layout = DiskLayout::plan(&spec()).unwrap();
        let growth = layout
            .data_growth(8 * 1024 * 1024 * 1024 * 2)
            .unwrap()
            .unwrap();
        assert_eq!(growth.target_sectors, u64::from(u32::MAX));
    }
}
