//! The image recipe, `image/pew.toml`: what goes into the image and how the card is laid out.
//!
//! Errors name the file, the line and the dotted key ([`pew_daemon::config`]): unknown keys and
//! malformed values while parsing, then the checks that involve several keys (unique ids, the
//! image fitting the smallest supported card, components needed by the packages).

use std::fmt;
use std::path::Path;

use pew_daemon::config::{self, ConfigError};
use serde::Deserialize;

use crate::bootscript::{
    BoardArgs, BootScriptConfig, DtbSource, KernelArgs, PayloadLocation, Watchdog,
};
use crate::bootstate::Attempts;
use crate::digest::decode_lowercase_hex;
use crate::layout::{DiskLayout, DiskSignature, LayoutError, LayoutSpec, PartitionRole};
use crate::lock::check_name;

/// Packages without which the image cannot boot its A/B chain at all.
const REQUIRED_PACKAGES: [&str; 5] = [
    "linux-image-arm64",
    "raspi-firmware",
    "u-boot-rpi",
    "initramfs-tools",
    "systemd-sysv",
];
/// Packages that live in Debian's `non-free-firmware` component.
const NON_FREE_FIRMWARE_PACKAGES: [&str; 3] =
    ["raspi-firmware", "firmware-brcm80211", "bluez-firmware"];
/// pew's services, each packaged as a `.deb` of the same name.
pub const PEW_SERVICES: [&str; 4] = ["pew-powerd", "pew-sensord", "pew-workerd", "pew-updated"];
/// FAT stores dates from 1980 on; an earlier epoch cannot be represented on the boot partition.
const FAT_EPOCH: u64 = 315_532_800;
/// FAT32 needs at least 65,525 clusters; with 512-byte clusters plus two FATs that is 33 MiB.
const FAT32_MIN_MIB: u32 = 33;

/// The whole recipe, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    pub debian: Debian,
    pub tools: Tools,
    pub services: Services,
    pub reproducibility: Reproducibility,
    pub disk: Disk,
    pub partitions: Partitions,
    pub boot: Boot,
}

/// The Debian system in the slots.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Debian {
    /// The release's codename; its `-updates` and `-security` suites come with it.
    pub suite: String,
    pub architecture: Architecture,
    pub components: Vec<String>,
    /// Where the release and its `-updates` suite are published.
    pub mirror: String,
    /// Where its `-security` suite is published.
    pub security_mirror: String,
    /// A snapshot-style archive to read every suite from as it was at one moment, instead of
    /// the mirrors (which keep only current versions). The node's own sources still name the
    /// mirrors.
    #[serde(default)]
    pub snapshot: Option<Snapshot>,
    /// Installed on top of the minbase variant.
    pub packages: Vec<String>,
}

/// An archive laid out as Debian's snapshot service is: `<url>/archive/debian/<timestamp>/`
/// and `<url>/archive/debian-security/<timestamp>/`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    pub url: String,
    /// `YYYYMMDDTHHMMSSZ`, as the service names its moments.
    pub timestamp: String,
}

/// One suite of the archive and where the build reads it from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AptSource {
    pub uri: String,
    pub suite: String,
}

impl Debian {
    /// The release, its updates and its security fixes, in the order a suite is credited with
    /// a file they share.
    pub fn suites(&self) -> Vec<String> {
        ["", "-updates", "-security"]
            .iter()
            .map(|suffix| format!("{}{suffix}", self.suite))
            .collect()
    }

    /// Where the build resolves and fetches each suite: the snapshot when the recipe names
    /// one, the mirrors otherwise.
    pub fn build_sources(&self) -> Vec<AptSource> {
        match &self.snapshot {
            Some(snapshot) => {
                let base = snapshot.url.trim_end_matches('/');
                self.sources_from(
                    &format!("{base}/archive/debian/{}", snapshot.timestamp),
                    &format!("{base}/archive/debian-security/{}", snapshot.timestamp),
                )
            }
            None => self.node_sources(),
        }
    }

    /// What the node's apt names: the mirrors.
    pub fn node_sources(&self) -> Vec<AptSource> {
        self.sources_from(&self.mirror, &self.security_mirror)
    }

    fn sources_from(&self, mirror: &str, security_mirror: &str) -> Vec<AptSource> {
        self.suites()
            .into_iter()
            .map(|suite| AptSource {
                uri: if suite.ends_with("-security") {
                    security_mirror
                } else {
                    mirror
                }
                .trim_end_matches('/')
                .to_owned(),
                suite,
            })
            .collect()
    }

    /// The node's `/etc/apt/sources.list.d/debian.sources` (deb822), each suite signed-by
    /// `keyring`.
    pub fn node_sources_deb822(&self, keyring: &str) -> String {
        let sources = self.node_sources();
        let mut text = String::new();
        for uri in [&self.mirror, &self.security_mirror] {
            let uri = uri.trim_end_matches('/');
            let suites: Vec<&str> = sources
                .iter()
                .filter(|source| source.uri == uri)
                .map(|source| source.suite.as_str())
                .collect();
            if suites.is_empty() || text.contains(&format!("URIs: {uri}\n")) {
                continue;
            }
            if !text.is_empty() {
                text.push('\n');
            }
            text += &format!(
                "Types: deb\nURIs: {uri}\nSuites: {}\nComponents: {}\nSigned-By: {keyring}\n",
                suites.join(" "),
                self.components.join(" ")
            );
        }
        text
    }
}

/// The boot chain (Pi firmware, u-boot-rpi, `booti`) is arm64 only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Architecture {
    Arm64,
}

impl fmt::Display for Architecture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("arm64")
    }
}

/// The pinned tools tree the assembly steps run from (host architecture, same lock), so the
/// bytes of the filesystems do not depend on the build host's tool versions.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tools {
    pub packages: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Services {
    /// pew services installed and enabled, from [`PEW_SERVICES`].
    pub include: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reproducibility {
    pub source_date_epoch: SourceDateEpoch,
}

/// The time every timestamp in the image is clamped to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceDateEpoch {
    /// The commit time of the repository's HEAD (`git log -1 --format=%ct`), so a new commit
    /// gives a new date and the same commit always the same image.
    LastCommit,
    /// A fixed number of seconds since 1970 (not before 1980: FAT cannot store it).
    Fixed(u64),
}

impl SourceDateEpoch {
    /// The epoch to export, given HEAD's commit time.
    pub fn resolve(self, last_commit_time: u64) -> u64 {
        match self {
            Self::LastCommit => last_commit_time,
            Self::Fixed(epoch) => epoch,
        }
    }
}

impl<'de> Deserialize<'de> for SourceDateEpoch {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EpochVisitor;
        impl serde::de::Visitor<'_> for EpochVisitor {
            type Value = SourceDateEpoch;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(
                    f,
                    "\"last-commit\" or seconds since 1970 from {FAT_EPOCH} (1980, FAT's first date) on"
                )
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
                match text {
                    "last-commit" => Ok(SourceDateEpoch::LastCommit),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Str(text), &self)),
                }
            }
            fn visit_i64<E: serde::de::Error>(self, seconds: i64) -> Result<Self::Value, E> {
                match u64::try_from(seconds) {
                    Ok(seconds) if seconds >= FAT_EPOCH => Ok(SourceDateEpoch::Fixed(seconds)),
                    _ => Err(E::invalid_value(
                        serde::de::Unexpected::Signed(seconds),
                        &self,
                    )),
                }
            }
        }
        deserializer.deserialize_any(EpochVisitor)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Disk {
    /// MBR disk signature; PARTUUIDs are `<signature>-0N`.
    pub signature: NonZeroId,
    pub align_mib: u32,
    /// The smallest card the image must fit on, before the data partition grows.
    pub min_card_mib: u64,
}

/// A 32-bit id that tools would replace by a random one if it were 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "u32")]
pub struct NonZeroId(pub u32);

impl TryFrom<u32> for NonZeroId {
    type Error = &'static str;
    fn try_from(id: u32) -> Result<Self, Self::Error> {
        if id == 0 {
            Err("must not be 0: tools replace 0 with a random id")
        } else {
            Ok(Self(id))
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Partitions {
    pub boot: BootPartition,
    pub system: SystemPartitions,
    pub data: DataPartition,
}

/// FAT32 partition read by the firmware and U-Boot.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootPartition {
    pub size_mib: u32,
    /// FAT volume label (`mkfs.vfat -n`): up to 11 characters, uppercase.
    pub label: String,
    /// FAT volume id (`mkfs.vfat -i`).
    pub volume_id: NonZeroId,
}

/// The two system slots, the same size so either can take any update.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemPartitions {
    pub size_mib: u32,
    /// Room a slot keeps for later, larger systems: slots cannot be resized on a deployed card.
    pub headroom_percent: u32,
    /// EROFS volume label (`mkfs.erofs -L`), at most 15 bytes.
    pub label: String,
    /// EROFS UUID (`mkfs.erofs -U`). One for both slots: an update is the same image whichever
    /// slot receives it, so slots are told apart by PARTUUID, never by filesystem UUID.
    pub uuid: Uuid,
}

/// The ext4 data partition, small in the image and grown on first boot.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataPartition {
    pub size_mib: u32,
    /// ext4 label (`mke2fs -L`), at most 16 bytes.
    pub label: String,
    /// `mke2fs -U`.
    pub uuid: Uuid,
    /// `mke2fs -E hash_seed=`: the directory hash seed, random unless given.
    pub hash_seed: Uuid,
}

/// A UUID written `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` in lowercase hex.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Uuid([u8; 16]);

impl TryFrom<String> for Uuid {
    type Error = String;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        let groups: Vec<&str> = text.split('-').collect();
        let lengths: Vec<usize> = groups.iter().map(|group| group.len()).collect();
        let mut bytes = [0u8; 16];
        if lengths == [8, 4, 4, 4, 12] && decode_lowercase_hex(&groups.concat(), &mut bytes) {
            return Ok(Self(bytes));
        }
        Err(format!(
            "{text:?} is not a UUID in lowercase 8-4-4-4-12 hex form"
        ))
    }
}

impl fmt::Display for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, byte) in self.0.iter().enumerate() {
            if matches!(index, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Boot {
    #[serde(default)]
    pub attempts: Attempts,
    pub payload: PayloadLocation,
    pub dtb: DtbSource,
    /// Added to every kernel command line after the slot's own arguments.
    pub cmdline: KernelArgs,
    /// Extra arguments by U-Boot `${board}` name.
    #[serde(default)]
    pub board_cmdline: std::collections::BTreeMap<String, KernelArgs>,
    /// `dtoverlay=` lines for `config.txt`.
    #[serde(default)]
    pub dtoverlays: Vec<String>,
    pub watchdog: Option<Watchdog>,
}

impl<'de> Deserialize<'de> for Attempts {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Attempts::new(i64::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}

impl<'de> Deserialize<'de> for KernelArgs {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        KernelArgs::new(&String::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}

/// A recipe that passed every check, with the partition layout it implies.
#[derive(Debug, Clone)]
pub struct CheckedRecipe {
    pub recipe: Recipe,
    pub layout: DiskLayout,
}

impl Recipe {
    /// Reads and checks `image/pew.toml`.
    pub fn load(path: &Path) -> Result<CheckedRecipe, ConfigError> {
        let text = config::read(path, false)?;
        Self::parse(path, &text)
    }

    /// Parses and checks recipe text that came from `path`.
    pub fn parse(path: &Path, text: &str) -> Result<CheckedRecipe, ConfigError> {
        let recipe: Recipe = config::parse(path, text)?;
        let reject = |key: &str, message: String| config::rejected(path, text, key, message);
        let layout = recipe.check(&reject)?;
        Ok(CheckedRecipe { recipe, layout })
    }

    fn layout_spec(&self) -> LayoutSpec {
        LayoutSpec {
            signature: DiskSignature(self.disk.signature.0),
            align_mib: self.disk.align_mib,
            boot_mib: self.partitions.boot.size_mib,
            system_mib: self.partitions.system.size_mib,
            data_mib: self.partitions.data.size_mib,
        }
    }

    /// The checks that span keys or need more than a type; the first failure is returned.
    fn check(
        &self,
        reject: &dyn Fn(&str, String) -> ConfigError,
    ) -> Result<DiskLayout, ConfigError> {
        self.check_debian(reject)?;
        check_package_list(&self.tools.packages, "tools.packages", reject)?;
        check_unique(&self.services.include, "services.include", reject)?;
        if let Some(unknown) = self
            .services
            .include
            .iter()
            .find(|s| !PEW_SERVICES.contains(&s.as_str()))
        {
            return Err(reject(
                "services.include",
                format!("{unknown:?} is not a pew service (one of {PEW_SERVICES:?})"),
            ));
        }
        self.check_filesystem_ids(reject)?;
        if self.partitions.boot.size_mib < FAT32_MIN_MIB {
            let message = format!(
                "FAT32 needs at least {FAT32_MIN_MIB} MiB, got {}",
                self.partitions.boot.size_mib
            );
            return Err(reject("partitions.boot.size_mib", message));
        }
        let layout = DiskLayout::plan(&self.layout_spec())
            .map_err(|error| reject(layout_key(&error), error.to_string()))?;
        let image_mib = layout.image_bytes() / (1024 * 1024);
        if image_mib > self.disk.min_card_mib {
            let message = format!(
                "the image is {image_mib} MiB, larger than the smallest supported card ({} MiB)",
                self.disk.min_card_mib
            );
            return Err(reject("disk.min_card_mib", message));
        }
        for board in self.boot.board_cmdline.keys() {
            if !is_token(board, |c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_'
            }) {
                return Err(reject(
                    "boot.board_cmdline",
                    format!("{board:?} is not a U-Boot board name"),
                ));
            }
        }
        if let Some(overlay) = self
            .boot
            .dtoverlays
            .iter()
            .find(|o| !is_token(o, |c| c.is_ascii_alphanumeric() || ",_.=-".contains(c)))
        {
            return Err(reject(
                "boot.dtoverlays",
                format!("{overlay:?} is not an overlay name with parameters"),
            ));
        }
        if let Some(watchdog) = &self.boot.watchdog {
            if !is_token(&watchdog.device, |c| {
                c.is_ascii_alphanumeric() || "@_.,-".contains(c)
            }) {
                return Err(reject(
                    "boot.watchdog.device",
                    format!("{:?} is not a U-Boot device name", watchdog.device),
                ));
            }
            if watchdog.timeout_ms < 1000 {
                let message = format!(
                    "{} ms would reset the board before the kernel is loaded",
                    watchdog.timeout_ms
                );
                return Err(reject("boot.watchdog.timeout_ms", message));
            }
        }
        Ok(layout)
    }

    fn check_debian(
        &self,
        reject: &dyn Fn(&str, String) -> ConfigError,
    ) -> Result<(), ConfigError> {
        let debian = &self.debian;
        if !is_token(&debian.suite, |c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
        }) {
            return Err(reject(
                "debian.suite",
                format!("{:?} is not a Debian suite name", debian.suite),
            ));
        }
        let urls = [
            ("debian.mirror", Some(&debian.mirror)),
            ("debian.security_mirror", Some(&debian.security_mirror)),
            (
                "debian.snapshot.url",
                debian.snapshot.as_ref().map(|snapshot| &snapshot.url),
            ),
        ];
        for (key, url) in urls {
            if let Some(url) = url.filter(|url| !is_archive_url(url)) {
                return Err(reject(
                    key,
                    format!("{url:?} is not an http(s) or file URL"),
                ));
            }
        }
        if let Some(snapshot) = debian
            .snapshot
            .as_ref()
            .filter(|snapshot| !is_snapshot_timestamp(&snapshot.timestamp))
        {
            return Err(reject(
                "debian.snapshot.timestamp",
                format!(
                    "{:?} is not a snapshot moment like \"20261208T000000Z\"",
                    snapshot.timestamp
                ),
            ));
        }
        check_unique(&debian.components, "debian.components", reject)?;
        if !debian.components.iter().any(|c| c == "main") {
            return Err(reject(
                "debian.components",
                "must include \"main\"".to_owned(),
            ));
        }
        check_package_list(&debian.packages, "debian.packages", reject)?;
        if let Some(missing) = REQUIRED_PACKAGES
            .iter()
            .find(|p| !debian.packages.iter().any(|q| q == *p))
        {
            return Err(reject(
                "debian.packages",
                format!("{missing} is required to boot the image"),
            ));
        }
        let needs_non_free = debian
            .packages
            .iter()
            .find(|p| NON_FREE_FIRMWARE_PACKAGES.contains(&p.as_str()));
        if let Some(package) =
            needs_non_free.filter(|_| !debian.components.iter().any(|c| c == "non-free-firmware"))
        {
            return Err(reject(
                "debian.components",
                format!("{package} is in non-free-firmware, which is not listed"),
            ));
        }
        Ok(())
    }

    fn check_filesystem_ids(
        &self,
        reject: &dyn Fn(&str, String) -> ConfigError,
    ) -> Result<(), ConfigError> {
        let boot = &self.partitions.boot;
        if boot.label.is_empty()
            || boot.label.len() > 11
            || !boot
                .label
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(reject(
                "partitions.boot.label",
                format!("{:?}: a FAT label is 1-11 of A-Z 0-9 _", boot.label),
            ));
        }
        for (key, label, max) in [
            ("partitions.system.label", &self.partitions.system.label, 15),
            ("partitions.data.label", &self.partitions.data.label, 16),
        ] {
            if label.is_empty()
                || label.len() > max
                || !is_token(label, |c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(reject(
                    key,
                    format!("{label:?}: a label is 1-{max} of letters, digits, - and _"),
                ));
            }
        }
        if boot.volume_id == self.disk.signature {
            return Err(reject(
                "partitions.boot.volume_id",
                "equals disk.signature; give every id its own value".to_owned(),
            ));
        }
        let uuids = [
            ("partitions.system.uuid", self.partitions.system.uuid),
            ("partitions.data.uuid", self.partitions.data.uuid),
            ("partitions.data.hash_seed", self.partitions.data.hash_seed),
        ];
        for (index, (key, uuid)) in uuids.iter().enumerate() {
            if let Some((first, _)) = uuids[..index].iter().find(|(_, earlier)| earlier == uuid) {
                return Err(reject(key, format!("{uuid} is already used by {first}")));
            }
        }
        Ok(())
    }
}

impl CheckedRecipe {
    /// Checks that a built system image fits a slot with the recipe's headroom.
    pub fn check_system_image(&self, image_bytes: u64) -> Result<(), LayoutError> {
        self.layout
            .check_system_image(image_bytes, self.recipe.partitions.system.headroom_percent)
    }

    /// The boot script's parameters.
    pub fn boot_script_config(&self) -> BootScriptConfig<'_> {
        let boot = &self.recipe.boot;
        BootScriptConfig {
            layout: &self.layout,
            attempts: boot.attempts,
            payload: boot.payload,
            dtb: boot.dtb,
            cmdline: boot.cmdline.clone(),
            board_args: boot
                .board_cmdline
                .iter()
                .map(|(board, args)| BoardArgs {
                    board: board.clone(),
                    args: args.clone(),
                })
                .collect(),
            watchdog: boot.watchdog.clone(),
        }
    }
}

fn layout_key(error: &LayoutError) -> &'static str {
    match error {
        LayoutError::ZeroSignature => "disk.signature",
        LayoutError::Alignment(_) => "disk.align_mib",
        LayoutError::ZeroSize(role) | LayoutError::BeyondMbr(role) => match role {
            PartitionRole::Boot => "partitions.boot.size_mib",
            PartitionRole::SystemA | PartitionRole::SystemB => "partitions.system.size_mib",
            PartitionRole::Data => "partitions.data.size_mib",
        },
        LayoutError::SystemSlotTooSmall { .. } => "partitions.system.size_mib",
        LayoutError::CardTooSmall { .. } => "disk.min_card_mib",
    }
}

fn is_archive_url(url: &str) -> bool {
    ["http://", "https://", "file:///"]
        .iter()
        .any(|scheme| url.starts_with(scheme) && url.len() > scheme.len())
        && !url.contains(char::is_whitespace)
}

/// `YYYYMMDDTHHMMSSZ`.
fn is_snapshot_timestamp(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 16
        && bytes[8] == b'T'
        && bytes[15] == b'Z'
        && bytes[..8]
            .iter()
            .chain(&bytes[9..15])
            .all(u8::is_ascii_digit)
}

fn is_token(text: &str, allowed: impl Fn(char) -> bool) -> bool {
    !text.is_empty() && text.chars().all(allowed)
}

fn check_unique(
    items: &[String],
    key: &str,
    reject: &dyn Fn(&str, String) -> ConfigError,
) -> Result<(), ConfigError> {
    match items
        .iter()
        .enumerate()
        .find(|(index, item)| items[..*index].contains(item))
    {
        Some((_, duplicate)) => Err(reject(key, format!("{duplicate:?} is listed twice"))),
        None => Ok(()),
    }
}

fn check_package_list(
    packages: &[String],
    key: &str,
    reject: &dyn Fn(&str, String) -> ConfigError,
) -> Result<(), ConfigError> {
    if packages.is_empty() {
        return Err(reject(key, "must list at least one package".to_owned()));
    }
    if let Some(error) = packages
        .iter()
        .find_map(|package| check_name(package).err())
    {
        return Err(reject(key, error.to_string()));
    }
    check_unique(packages, key, reject)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bootscript::boot_cmd;

    const SHIPPED: &str = include_str!("../../../image/pew.toml");

    fn parse(text: &str) -> Result<CheckedRecipe, ConfigError> {
        Recipe::parse(Path::new("image/pew.toml"), text)
    }

    /// The shipped recipe with one piece replaced; the piece must occur exactly once.
    fn edited(old: &str, new: &str) -> String {
        assert_eq!(
            SHIPPED.matches(old).count(),
            1,
            "pew.toml must hold {old:?} once"
        );
        SHIPPED.replacen(old, new, 1)
    }

    fn rejection(text: &str) -> (Option<usize>, Option<String>, String) {
        match parse(text) {
            Err(ConfigError::Invalid { location, message }) => {
                (location.line, location.key, message)
            }
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    fn line_of(text: &str, needle: &str) -> usize {
        text.lines()
            .position(|line| line.starts_with(needle))
            .map(|index| index + 1)
            .unwrap_or_default()
    }

    #[test]
    fn the_shipped_recipe_is_valid_and_fits_a_4_gb_card() {
        let checked = parse(SHIPPED).unwrap();
        let recipe = &checked.recipe;
        assert_eq!(recipe.debian.suite, "trixie");
        assert_eq!(recipe.debian.architecture, Architecture::Arm64);
        assert_eq!(recipe.boot.attempts, Attempts::DEFAULT);
        assert_eq!(recipe.services.include, ["pew-powerd", "pew-workerd"]);
        assert_eq!(
            recipe.reproducibility.source_date_epoch,
            SourceDateEpoch::LastCommit
        );
        assert_eq!(
            checked.layout.partuuid(PartitionRole::SystemB),
            "70657701-03"
        );
        // 4 + 512 + 2 × 1024 + 256 MiB.
        assert_eq!(checked.layout.image_bytes(), 2820 * 1024 * 1024);
        assert!(checked.layout.image_bytes() / (1024 * 1024) <= recipe.disk.min_card_mib);
        assert_eq!(
            recipe.partitions.system.uuid.to_string(),
            "9fd721f3-ef58-4c69-9a78-61a2b414a239"
        );
    }

    #[test]
    fn the_build_and_the_node_use_the_release_its_updates_and_its_security_fixes() {
        let debian = parse(SHIPPED).unwrap().recipe.debian;
        assert_eq!(
            debian.suites(),
            ["trixie", "trixie-updates", "trixie-security"]
        );
        let sources = debian.build_sources();
        assert_eq!(sources, debian.node_sources());
        assert_eq!(sources[1].uri, "http://deb.debian.org/debian");
        assert_eq!(sources[2].uri, "http://security.debian.org/debian-security");
        assert_eq!(
            debian.node_sources_deb822("/usr/share/keyrings/debian-archive-keyring.gpg"),
            "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: trixie trixie-updates\n\
             Components: main non-free-firmware\n\
             Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n\
             Types: deb\nURIs: http://security.debian.org/debian-security\n\
             Suites: trixie-security\nComponents: main non-free-firmware\n\
             Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        );
    }

    #[test]
    fn a_snapshot_serves_every_suite_to_the_build_but_not_to_the_node() {
        let text = edited(
            "# snapshot = { url",
            "snapshot = { url = \"file:///srv/snap/\", timestamp = \"20261208T000000Z\" }\n# x = { url",
        );
        let debian = parse(&text).unwrap().recipe.debian;
        let uris: Vec<String> = debian
            .build_sources()
            .into_iter()
            .map(|source| format!("{} {}", source.uri, source.suite))
            .collect();
        assert_eq!(
            uris,
            [
                "file:///srv/snap/archive/debian/20261208T000000Z trixie",
                "file:///srv/snap/archive/debian/20261208T000000Z trixie-updates",
                "file:///srv/snap/archive/debian-security/20261208T000000Z trixie-security",
            ]
        );
        assert_eq!(debian.node_sources()[0].uri, "http://deb.debian.org/debian");

        let bad = text.replace("20261208T000000Z", "2026-12-08");
        let (line, key, message) = rejection(&bad);
        assert_eq!(key.as_deref(), Some("debian.snapshot.timestamp"));
        assert_eq!(line, Some(line_of(&bad, "snapshot = ")));
        assert!(message.contains("2026-12-08"), "{message}");
        let (_, key, _) = rejection(&edited(
            "security_mirror = \"http://security.debian.org/debian-security\"",
            "security_mirror = \"ftp://security.debian.org/debian-security\"",
        ));
        assert_eq!(key.as_deref(), Some("debian.security_mirror"));
    }

    #[test]
    fn the_shipped_recipe_generates_a_boot_script_for_both_boards() {
        let checked = parse(SHIPPED).unwrap();
        let script = boot_cmd(&checked.boot_script_config());
        assert!(script.contains("setenv pew_dir /slot-a\n\tsetenv pew_root 70657701-02"));
        assert!(script.contains(
            "if test \"${board}\" = \"qemu-arm\"; then setenv pew_board_args \"pew.simulate\"; fi"
        ));
        assert!(
            script.contains(
                "rootfstype=erofs ro console=ttyAMA0,115200 console=ttyS1,115200 rootwait"
            )
        );
    }

    #[test]
    fn system_image_check_uses_the_recipe_headroom() {
        let checked = parse(SHIPPED).unwrap();
        let mib = 1024 * 1024;
        // 1024 MiB slot, 50% headroom: 682 MiB fits, 683 does not.
        assert!(checked.check_system_image(682 * mib).is_ok());
        assert!(checked.check_system_image(683 * mib).is_err());
    }

    #[test]
    fn unknown_keys_are_located() {
        let text = edited("align_mib = 4\n", "align_mib = 4\nalign_kib = 4\n");
        let (line, key, message) = rejection(&text);
        assert_eq!(key.as_deref(), Some("disk.align_kib"));
        assert_eq!(line, Some(line_of(&text, "align_kib")));
        assert!(message.contains("unknown field"), "{message}");
    }

    #[test]
    fn malformed_values_are_rejected_by_key_while_parsing() {
        for (old, new, key) in [
            ("attempts = 3", "attempts = 12", "boot.attempts"),
            ("attempts = 3", "attempts = 0", "boot.attempts"),
            (
                "architecture = \"arm64\"",
                "architecture = \"armhf\"",
                "debian.architecture",
            ),
            ("signature = 0x70657701", "signature = 0", "disk.signature"),
            (
                "uuid = \"9fd721f3-ef58-4c69-9a78-61a2b414a239\"",
                "uuid = \"9FD721F3-ef58-4c69-9a78-61a2b414a239\"",
                "partitions.system.uuid",
            ),
            (
                "source_date_epoch = \"last-commit\"",
                "source_date_epoch = 86400",
                "reproducibility.source_date_epoch",
            ),
            (
                "source_date_epoch = \"last-commit\"",
                "source_date_epoch = \"now\"",
                "reproducibility.source_date_epoch",
            ),
            (
                "payload = \"boot-partition\"",
                "payload = \"fat\"",
                "boot.payload",
            ),
            (
                "cmdline = \"console",
                "cmdline = \"root=/dev/mmcblk0p2 console",
                "boot.cmdline",
            ),
        ] {
            let text = edited(old, new);
            let (line, reported, message) = rejection(&text);
            assert_eq!(reported.as_deref(), Some(key), "{new}: {message}");
            assert_eq!(
                line,
                Some(line_of(&text, new.split(" =").next().unwrap_or(new))),
                "{new}"
            );
        }
    }

    #[test]
    fn a_fixed_epoch_is_accepted_from_1980_on() {
        let text = edited(
            "source_date_epoch = \"last-commit\"",
            "source_date_epoch = 1767225600",
        );
        let epoch = parse(&text)
            .unwrap()
            .recipe
            .reproducibility
            .source_date_epoch;
        assert_eq!(epoch, SourceDateEpoch::Fixed(1_767_225_600));
        assert_eq!(epoch.resolve(42), 1_767_225_600);
        assert_eq!(
            SourceDateEpoch::LastCommit.resolve(1_800_000_000),
            1_800_000_000
        );
    }

    #[test]
    fn cross_key_checks_name_the_key_and_line() {
        for (old, new, key, reason) in [
            (
                "size_mib = 256\nlabel = \"pew-data\"",
                "size_mib = 0\nlabel = \"pew-data\"",
                "partitions.data.size_mib",
                "size 0",
            ),
            (
                "align_mib = 4",
                "align_mib = 3",
                "disk.align_mib",
                "power of two",
            ),
            (
                "size_mib = 512",
                "size_mib = 16",
                "partitions.boot.size_mib",
                "FAT32",
            ),
            (
                "min_card_mib = 3781",
                "min_card_mib = 2000",
                "disk.min_card_mib",
                "smallest supported card",
            ),
            (
                "hash_seed = \"3e3dedd1-7640-499d-8266-cf19eb363a5b\"",
                "hash_seed = \"48370abf-03f3-4f7b-bca2-6e63eae090dc\"",
                "partitions.data.hash_seed",
                "already used by partitions.data.uuid",
            ),
            (
                "volume_id = 0x7065b007",
                "volume_id = 0x70657701",
                "partitions.boot.volume_id",
                "disk.signature",
            ),
            (
                "label = \"PEWBOOT\"",
                "label = \"pewboot\"",
                "partitions.boot.label",
                "FAT label",
            ),
            (
                "label = \"pew-system\"",
                "label = \"pew-system-slot-a\"",
                "partitions.system.label",
                "1-15",
            ),
            (
                "components = [\"main\", \"non-free-firmware\"]",
                "components = [\"main\"]",
                "debian.components",
                "raspi-firmware is in non-free-firmware",
            ),
            (
                "components = [\"main\", \"non-free-firmware\"]",
                "components = [\"main\", \"main\", \"non-free-firmware\"]",
                "debian.components",
                "twice",
            ),
            (
                "    \"u-boot-rpi\",\n",
                "",
                "debian.packages",
                "u-boot-rpi is required",
            ),
            (
                "    \"udev\",\n",
                "    \"udev\",\n    \"udev\",\n",
                "debian.packages",
                "\"udev\" is listed twice",
            ),
            (
                "    \"udev\",\n",
                "    \"Udev\",\n",
                "debian.packages",
                "not a Debian package name",
            ),
            (
                "include = [\"pew-powerd\", \"pew-workerd\"]",
                "include = [\"pew-powerd\", \"pew-weatherd\"]",
                "services.include",
                "not a pew service",
            ),
            (
                "mirror = \"http://deb.debian.org/debian\"",
                "mirror = \"deb.debian.org\"",
                "debian.mirror",
                "URL",
            ),
            (
                "dtoverlays = []",
                "dtoverlays = [\"i2c-rtc, ds3231\"]",
                "boot.dtoverlays",
                "overlay name",
            ),
        ] {
            let text = edited(old, new);
            let (line, reported, message) = rejection(&text);
            assert_eq!(reported.as_deref(), Some(key), "{new}: {message}");
            assert!(message.contains(reason), "{new}: {message}");
            assert!(line.is_some(), "{new}: no line");
        }
    }

    #[test]
    fn watchdog_settings_are_checked() {
        let with = |device: &str, timeout: u32| {
            edited(
                "# [boot.watchdog]\n",
                &format!("[boot.watchdog]\ndevice = \"{device}\"\ntimeout_ms = {timeout}\n"),
            )
        };
        let checked = parse(&with("watchdog@7e100000", 15000)).unwrap();
        assert_eq!(
            checked.recipe.boot.watchdog.map(|w| w.timeout_ms),
            Some(15000)
        );
        assert_eq!(
            rejection(&with("watchdog@7e100000", 500)).1.as_deref(),
            Some("boot.watchdog.timeout_ms")
        );
        assert_eq!(
            rejection(&with("wdt; reset", 15000)).1.as_deref(),
            Some("boot.watchdog.device")
        );
    }
}
