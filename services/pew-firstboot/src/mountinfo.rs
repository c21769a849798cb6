//! `/proc/self/mountinfo`: which device and filesystem are really mounted where.
//!
//! First boot trusts this rather than the units: the data partition may have failed to mount
//! and been replaced by RAM (see `pew-state-fallback.service`), and nothing may be installed
//! into or grown on a filesystem that is not the data partition.

use std::fmt;
use std::str::FromStr;

/// A block device's `major:minor` number, the key of `/sys/dev/block/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceNumber {
    pub major: u32,
    pub minor: u32,
}

impl FromStr for DeviceNumber {
    type Err = ();

    fn from_str(text: &str) -> Result<Self, ()> {
        let (major, minor) = text.split_once(':').ok_or(())?;
        Ok(Self {
            major: major.parse().map_err(drop)?,
            minor: minor.parse().map_err(drop)?,
        })
    }
}

impl fmt::Display for DeviceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.major, self.minor)
    }
}

/// One line of mountinfo (proc(5)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    pub device: DeviceNumber,
    /// The directory of the filesystem that is mounted: `/` for a whole filesystem, `/var` for
    /// a bind mount of its `var` directory.
    pub root: String,
    pub mount_point: String,
    pub fs_type: String,
    pub source: String,
}

/// A mountinfo line the kernel would not write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("mountinfo line {line} is not understood: {text:?}")]
pub struct MountInfoError {
    pub line: usize,
    pub text: String,
}

/// Every mount, in the order they were made.
pub fn parse(text: &str) -> Result<Vec<MountEntry>, MountInfoError> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(index, line)| {
            parse_line(line).ok_or_else(|| MountInfoError {
                line: index + 1,
                text: line.to_owned(),
            })
        })
        .collect()
}

/// What is visible at `mount_point`: the last mount made there hides the earlier ones.
pub fn visible_at<'a>(entries: &'a [MountEntry], mount_point: &str) -> Option<&'a MountEntry> {
    entries
        .iter()
        .rev()
        .find(|entry| entry.mount_point == mount_point)
}

/// `id parent major:minor root mount-point options [optional fields…] - type source super-options`
fn parse_line(line: &str) -> Option<MountEntry> {
    let (before, after) = line.split_once(" - ")?;
    let mut fields = before.split(' ');
    let _id = fields.next()?;
    let _parent = fields.next()?;
    let device = fields.next()?.parse().ok()?;
    let root = unescape(fields.next()?);
    let mount_point = unescape(fields.next()?);
    let mut after = after.split(' ');
    let fs_type = after.next()?.to_owned();
    let source = unescape(after.next()?);
    Some(MountEntry {
        device,
        root,
        mount_point,
        fs_type,
        source,
    })
}

/// The kernel writes space, tab, newline and backslash in paths as `\` and three octal digits.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let octal = bytes
            .get(index + 1..index + 4)
            .filter(|digits| {
                bytes[index] == b'\\' && digits.iter().all(|d| (b'0'..=b'7').contains(d))
            })
            .map(|digits| {
                digits
                    .iter()
                    .fold(0u32, |value, d| value * 8 + u32::from(d - b'0'))
            });
        match octal.and_then(|value| u8::try_from(value).ok()) {
            Some(byte) => {
                out.push(byte);
                index += 4;
            }
            None => {
                out.push(bytes[index]);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Abridged from a Pi 4 running the image: EROFS root, the transient machine ID, data,
    /// `/var` bound from it, then a second mount stacked on `/etc/machine-id`.
    const PI: &str = "\
22 1 179:2 / / ro,relatime shared:1 - erofs /dev/mmcblk0p2 ro,user_xattr,acl,cache_strategy=readaround
23 22 0:21 / /run rw,nosuid,nodev shared:5 - tmpfs tmpfs rw,size=188060k,mode=755
24 22 0:21 /machine-id /etc/machine-id ro shared:5 - tmpfs tmpfs rw,size=188060k,mode=755
31 22 179:4 / /data rw,noatime shared:12 - ext4 /dev/mmcblk0p4 rw,commit=60,errors=remount-ro
32 22 179:4 /var /var rw,noatime shared:12 - ext4 /dev/mmcblk0p4 rw,commit=60,errors=remount-ro
40 22 0:21 /pew-machine-id /etc/machine-id ro shared:5 - tmpfs tmpfs rw,size=188060k,mode=755
41 31 0:40 / /data/with\\040space rw master:3 unbindable - tmpfs my\\011tmp rw
";

    #[test]
    fn finds_the_data_partition_and_the_bind_mount_of_its_var() {
        let entries = parse(PI).unwrap();
        let data = visible_at(&entries, "/data").unwrap();
        assert_eq!(
            (
                data.device,
                data.fs_type.as_str(),
                data.source.as_str(),
                data.root.as_str()
            ),
            (
                DeviceNumber {
                    major: 179,
                    minor: 4
                },
                "ext4",
                "/dev/mmcblk0p4",
                "/"
            )
        );
        let var = visible_at(&entries, "/var").unwrap();
        assert_eq!((var.device, var.root.as_str()), (data.device, "/var"));
        assert_eq!(visible_at(&entries, "/boot"), None);
    }

    #[test]
    fn the_last_of_stacked_mounts_is_the_visible_one() {
        let entries = parse(PI).unwrap();
        assert_eq!(
            visible_at(&entries, "/etc/machine-id").unwrap().root,
            "/pew-machine-id"
        );
    }

    #[test]
    fn optional_fields_and_octal_escapes_are_handled() {
        let entries = parse(PI).unwrap();
        let escaped = visible_at(&entries, "/data/with space").unwrap();
        assert_eq!(escaped.source, "my\ttmp");
        assert_eq!(escaped.fs_type, "tmpfs");
        assert_eq!(unescape("a\\134b\\0"), "a\\b\\0");
    }

    #[test]
    fn a_truncated_line_is_an_error_naming_it() {
        let error = parse("22 1 179:2 / / ro\n23 22 x / /run rw - tmpfs tmpfs rw\n").unwrap_err();
        assert_eq!(error.line, 1);
        let error =
            parse("22 1 179:2 / / ro - erofs /dev/x ro\n23 22 x / /run rw - tmpfs tmpfs rw\n")
                .unwrap_err();
        assert_eq!(error.line, 2);
    }
}
