//! A writable `/var` when the data partition's cannot be had, so that a node with a damaged
//! card still boots to the network and can be reached and repaired, instead of stopping in
//! emergency mode (which on a headless node means lost until someone visits it).
//!
//! Run by `pew-state-fallback.service` after `data.mount` and `var.mount`, whatever their
//! outcome, only when `/var` is not mounted:
//!
//! - `/data` did not mount (unrepairable filesystem, missing partition): a RAM filesystem
//!   takes its place. The node runs with fresh SSH host keys and a transient machine ID,
//!   loses its logs at power-off, and pew-firstboot refuses to install or grow anything.
//! - `/data` mounted but has no `var/` (it was reformatted by hand to repair it): an empty one
//!   is created there, and systemd-tmpfiles fills in the standard directories.

use std::io;
use std::path::{Path, PathBuf};

use tracing::warn;

use crate::atomic;
use crate::command::{CommandError, Invocation, Runner};
use crate::data::{DATA_MOUNT_POINT, VAR_MOUNT_POINT};
use crate::mountinfo::{self, MountEntry};
use crate::under;

/// What the fallback did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// `/var` was mounted already; nothing to do.
    NotNeeded,
    /// `/data` and `/var` are in RAM.
    InMemory,
    /// `/var` is a new, empty directory on the data partition.
    EmptyVarOnData,
}

/// Why even the fallback failed.
#[derive(Debug, thiserror::Error)]
pub enum FallbackError {
    #[error("cannot create {}: {source}", path.display())]
    CreateDirectory {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Command(#[from] CommandError),
}

/// Provides a writable `/var` if there is none. `mounts` is the mount table before; `root` is
/// `/` on the node.
pub fn ensure_writable_var(
    root: &Path,
    mounts: &[MountEntry],
    runner: &dyn Runner,
) -> Result<Fallback, FallbackError> {
    if mountinfo::visible_at(mounts, VAR_MOUNT_POINT).is_some() {
        return Ok(Fallback::NotNeeded);
    }
    let data = under(root, DATA_MOUNT_POINT);
    let outcome = if mountinfo::visible_at(mounts, DATA_MOUNT_POINT).is_some() {
        warn!(
            "{DATA_MOUNT_POINT} has no var/ (reformatted?): starting an empty {VAR_MOUNT_POINT} on it"
        );
        Fallback::EmptyVarOnData
    } else {
        warn!(
            "the data partition is not mounted: {DATA_MOUNT_POINT} and {VAR_MOUNT_POINT} are in \
             RAM for this boot, nothing the node does now is kept"
        );
        // A quarter of RAM bounds what runaway logs or containers can take; tmpfs only uses
        // what is written.
        runner.run(&Invocation::new(
            "mount",
            [
                "-t".as_ref(),
                "tmpfs".as_ref(),
                "-o".as_ref(),
                "mode=0755,nosuid,nodev,size=25%".as_ref(),
                "tmpfs".as_ref(),
                data.as_os_str(),
            ],
        ))?;
        Fallback::InMemory
    };
    let data_var = data.join("var");
    atomic::create_directory(&data_var).map_err(|source| FallbackError::CreateDirectory {
        path: data_var.clone(),
        source,
    })?;
    runner.run(&Invocation::new(
        "mount",
        [
            "--bind".as_ref(),
            data_var.as_os_str(),
            under(root, VAR_MOUNT_POINT).as_os_str(),
        ],
    ))?;
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::command::testing::silent;

    const ROOT_ONLY: &str = "22 1 179:2 / / ro - erofs /dev/mmcblk0p2 ro\n";
    const DATA: &str = "31 22 179:4 / /data rw - ext4 /dev/mmcblk0p4 rw\n";
    const VAR: &str = "32 22 179:4 /var /var rw - ext4 /dev/mmcblk0p4 rw\n";

    fn node() -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("data")).unwrap();
        fs::create_dir_all(root.path().join("var")).unwrap();
        root
    }

    #[test]
    fn nothing_happens_when_var_is_mounted() {
        let root = node();
        let mounts = mountinfo::parse(&format!("{ROOT_ONLY}{DATA}{VAR}")).unwrap();
        let runner = silent();
        assert_eq!(
            ensure_writable_var(root.path(), &mounts, &runner).unwrap(),
            Fallback::NotNeeded
        );
        assert!(runner.log.borrow().is_empty());
    }

    #[test]
    fn without_data_both_go_to_ram() {
        let root = node();
        let mounts = mountinfo::parse(ROOT_ONLY).unwrap();
        let runner = silent();
        assert_eq!(
            ensure_writable_var(root.path(), &mounts, &runner).unwrap(),
            Fallback::InMemory
        );
        let (data, var) = (root.path().join("data"), root.path().join("var"));
        assert_eq!(
            runner.command_lines(),
            [
                format!(
                    "mount -t tmpfs -o mode=0755,nosuid,nodev,size=25% tmpfs {}",
                    data.display()
                ),
                format!("mount --bind {}/var {}", data.display(), var.display()),
            ]
        );
        assert!(data.join("var").is_dir());
    }

    #[test]
    fn a_reformatted_data_partition_gets_an_empty_var() {
        let root = node();
        let mounts = mountinfo::parse(&format!("{ROOT_ONLY}{DATA}")).unwrap();
        let runner = silent();
        assert_eq!(
            ensure_writable_var(root.path(), &mounts, &runner).unwrap(),
            Fallback::EmptyVarOnData
        );
        assert_eq!(runner.log.borrow().len(), 1);
        assert!(runner.command_lines()[0].starts_with("mount --bind"));
        // Run again after a failed bind: the directory exists already, which is fine.
        ensure_writable_var(root.path(), &mounts, &runner).unwrap();
    }
}
