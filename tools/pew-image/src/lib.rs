//! The pure logic of pew's SD card image, one step at a time, for `cargo xtask image` to call:
//! nothing here runs a tool or touches a disk.
//!
//! - [`recipe`]: `image/pew.toml`, what the image is made of, parsed and validated.
//! - [`archive`]: resolving the locked package set from the archive's indexes.
//! - [`lock`]: the package lock (exact versions and .deb hashes) and which .debs must be fetched.
//! - [`layout`]: the MBR partition table, its `sfdisk` script, offsets and first-boot growth.
//! - [`bootstate`]: the A/B slot state file shared by U-Boot and pew-updated, and its rules.
//! - [`bootscript`]: the U-Boot script applying those rules on the Pi and under QEMU.
//! - [`firmware`]: the Pi's `config.txt` and the files the boot partition needs.
//! - [`provisioning`]: the per-node files dropped on the boot partition, and how they install.
//! - [`sbom`]: the image's package manifest (SPDX).
//! - [`deb`]: pew's own Debian packages: their files, control files and maintainer scripts.

pub mod archive;
pub mod bootscript;
pub mod bootstate;
pub mod deb;
pub mod digest;
pub mod firmware;
pub mod layout;
pub mod lock;
pub mod provisioning;
pub mod recipe;
pub mod sbom;
