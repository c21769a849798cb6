//! Installing a slot on the run card from the build's OTA payload, the way pew-updated will on
//! a node: the system image into the slot's partition, the slot's kernel, initramfs and DTBs
//! into its payload directory on the boot partition. The image ships slot B empty, so the check
//! does this before activating B.

use std::fs::{self, File};
use std::io::{self, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, ensure};
use pew_image::bootscript::PayloadLocation;
use pew_image::bootstate::Slot;

use super::bootfat::BootFat;
use super::mbr::MbrPartition;
use crate::image::ToolsTree;

/// How `cargo xtask image` names the raw image; the OTA payload sits beside it under the same
/// `pew-<version>` stem.
const IMAGE_SUFFIX: &str = "-rpi-arm64.img";
const SYSTEM_SUFFIX: &str = "-system.erofs";
const SLOT_BOOT_SUFFIX: &str = "-slot-boot.tar";

/// One slot's update: its EROFS system image and a tar of its boot files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OtaPayload {
    pub system: PathBuf,
    pub slot_boot: PathBuf,
}

impl OtaPayload {
    /// The payload built together with `image`.
    pub fn beside(image: &Path) -> Result<Self> {
        let name = image
            .file_name()
            .and_then(|name| name.to_str())
            .ok_or_else(|| anyhow!("{} has no UTF-8 file name", image.display()))?;
        let stem = name.strip_suffix(IMAGE_SUFFIX).ok_or_else(|| {
            anyhow!("{name} is not named like a built image (pew-<version>{IMAGE_SUFFIX})")
        })?;
        let sibling = |suffix: &str| image.with_file_name(format!("{stem}{suffix}"));
        Ok(Self {
            system: sibling(SYSTEM_SUFFIX),
            slot_boot: sibling(SLOT_BOOT_SUFFIX),
        })
    }

    /// Writes the system into `partition` of `card` (slot `slot`'s) and, when kernels live on
    /// the boot partition, the boot files into the slot's directory there.
    pub fn install(
        &self,
        slot: Slot,
        card: &Path,
        partition: &MbrPartition,
        payload: PayloadLocation,
        fat: &BootFat,
        tools: &ToolsTree,
    ) -> Result<()> {
        write_partition(card, partition, &self.system)?;
        if payload == PayloadLocation::SystemSlot {
            // The boot files are inside the system image just written.
            return Ok(());
        }
        // Unpacked beside the card, under the directory's own name, so that one recursive
        // copy creates or refreshes exactly that directory on the FAT.
        let scratch = tempfile::tempdir_in(card.parent().unwrap_or(Path::new(".")))?;
        let directory = payload.directory(slot);
        let unpacked = scratch.path().join(directory.trim_start_matches('/'));
        fs::create_dir_all(&unpacked)?;
        crate::process::run(
            tools
                .command("tar")?
                .arg("-xf")
                .arg(&self.slot_boot)
                .arg("-C")
                .arg(&unpacked),
        )
        .with_context(|| format!("cannot unpack {}", self.slot_boot.display()))?;
        fat.copy_directory_in(&unpacked)?;
        Ok(())
    }
}

/// Copies `system` to the start of `partition`; the rest of the partition keeps its bytes,
/// which EROFS never reads.
fn write_partition(card: &Path, partition: &MbrPartition, system: &Path) -> Result<()> {
    let mut source =
        File::open(system).with_context(|| format!("cannot open {}", system.display()))?;
    let bytes = source.metadata()?.len();
    ensure!(
        bytes <= partition.size_bytes(),
        "{} ({bytes} bytes) does not fit partition {} ({} bytes)",
        system.display(),
        partition.number,
        partition.size_bytes()
    );
    let mut target = File::options()
        .write(true)
        .open(card)
        .with_context(|| format!("cannot open {}", card.display()))?;
    target.seek(SeekFrom::Start(partition.start_bytes()))?;
    let copied = io::copy(&mut source, &mut target)
        .with_context(|| format!("cannot write partition {}", partition.number))?;
    ensure!(
        copied == bytes,
        "wrote {copied} of {bytes} bytes into partition {}",
        partition.number
    );
    target.sync_data()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_payload_is_found_beside_the_image_by_its_version_stem() {
        let payload =
            OtaPayload::beside(Path::new("/out/image/pew-0.1.0~git2026.49e3-rpi-arm64.img"))
                .unwrap();
        assert_eq!(
            payload.system,
            Path::new("/out/image/pew-0.1.0~git2026.49e3-system.erofs")
        );
        assert_eq!(
            payload.slot_boot,
            Path::new("/out/image/pew-0.1.0~git2026.49e3-slot-boot.tar")
        );
        assert!(OtaPayload::beside(Path::new("/work/image-lab/t4/disk2.img")).is_err());
    }

    #[test]
    fn the_system_lands_at_the_partition_start_and_nothing_else_moves() {
        let dir = tempfile::tempdir().unwrap();
        let card = dir.path().join("card.img");
        fs::write(&card, vec![0xaa_u8; 8 * 512]).unwrap();
        let system = dir.path().join("system.erofs");
        fs::write(&system, vec![0x55_u8; 2 * 512]).unwrap();
        let partition = MbrPartition {
            number: 3,
            kind: 0x83,
            start_sector: 4,
            sectors: 3,
        };
        write_partition(&card, &partition, &system).unwrap();
        let bytes = fs::read(&card).unwrap();
        assert_eq!(bytes.len(), 8 * 512);
        assert!(bytes[..4 * 512].iter().all(|&b| b == 0xaa));
        assert!(bytes[4 * 512..6 * 512].iter().all(|&b| b == 0x55));
        assert!(bytes[6 * 512..].iter().all(|&b| b == 0xaa));

        let small = MbrPartition {
            sectors: 1,
            ..partition
        };
        assert!(write_partition(&card, &small, &system).is_err());
    }
}
