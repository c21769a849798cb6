//! The boot partition (FAT), mounted only while first boot looks at it.
//!
//! FAT has no journal and the same partition holds U-Boot, the kernels and the A/B slot state,
//! so it is mounted read-only: a boot without provisioning files writes nothing to it, not even
//! FAT's dirty flag. Only after everything is installed does it become writable, for the
//! removals. The unit mounts it in a private mount namespace (`PrivateMounts=yes`), so no
//! other program sees it and it disappears with the process even if unmounting fails.

use std::fs;
use std::path::{Path, PathBuf};

use tracing::warn;

use crate::command::{CommandError, Invocation, Runner};
use crate::provision::{ProvisionError, ProvisioningArea};

/// The boot partition mounted at a directory of its own.
pub struct MountedBootPartition<'a> {
    runner: &'a dyn Runner,
    mount_point: PathBuf,
    mounted: bool,
}

impl<'a> MountedBootPartition<'a> {
    /// Mounts `device` read-only at `mount_point`, creating that directory.
    pub fn mount(
        runner: &'a dyn Runner,
        device: &Path,
        mount_point: &Path,
    ) -> Result<Self, ProvisionError> {
        fs::create_dir_all(mount_point).map_err(|source| ProvisionError::Io {
            action: "create",
            path: mount_point.to_owned(),
            source,
        })?;
        runner.run(&Invocation::new(
            "mount",
            [
                "-t".as_ref(),
                "vfat".as_ref(),
                // Files readable by root only: it may hold secrets.
                "-o".as_ref(),
                "ro,nodev,nosuid,noexec,umask=0077".as_ref(),
                device.as_os_str(),
                mount_point.as_os_str(),
            ],
        ))?;
        Ok(Self {
            runner,
            mount_point: mount_point.to_owned(),
            mounted: true,
        })
    }

    /// Unmounts it, which also writes out whatever the removals changed.
    pub fn unmount(mut self) -> Result<(), CommandError> {
        self.mounted = false;
        self.runner.run(&umount(&self.mount_point)).map(drop)
    }
}

impl ProvisioningArea for MountedBootPartition<'_> {
    fn directory(&self) -> &Path {
        &self.mount_point
    }

    fn make_writable(&mut self) -> Result<(), CommandError> {
        self.runner
            .run(&Invocation::new(
                "mount",
                [
                    "-o".as_ref(),
                    "remount,rw".as_ref(),
                    self.mount_point.as_os_str(),
                ],
            ))
            .map(drop)
    }
}

impl Drop for MountedBootPartition<'_> {
    /// After an error: unmount anyway, so a failed run does not leave it mounted.
    fn drop(&mut self) {
        if self.mounted
            && let Err(error) = self.runner.run(&umount(&self.mount_point))
        {
            warn!("{error}");
        }
    }
}

fn umount(mount_point: &Path) -> Invocation {
    Invocation::new("umount", [mount_point])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::testing::silent;

    #[test]
    fn mounted_read_only_made_writable_on_request_and_unmounted() {
        let dir = tempfile::tempdir().unwrap();
        let mount_point = dir.path().join("boot");
        let runner = silent();
        let mut boot =
            MountedBootPartition::mount(&runner, Path::new("/dev/mmcblk0p1"), &mount_point)
                .unwrap();
        assert!(mount_point.is_dir());
        assert_eq!(boot.directory(), mount_point);
        boot.make_writable().unwrap();
        boot.unmount().unwrap();
        let at = mount_point.display();
        assert_eq!(
            runner.command_lines(),
            [
                format!("mount -t vfat -o ro,nodev,nosuid,noexec,umask=0077 /dev/mmcblk0p1 {at}"),
                format!("mount -o remount,rw {at}"),
                format!("umount {at}"),
            ]
        );
    }

    #[test]
    fn dropped_after_an_error_it_is_still_unmounted_once() {
        let dir = tempfile::tempdir().unwrap();
        let runner = silent();
        let boot =
            MountedBootPartition::mount(&runner, Path::new("/dev/vda1"), dir.path()).unwrap();
        drop(boot);
        let lines = runner.command_lines();
        assert_eq!(lines.len(), 2);
        assert!(lines[1].starts_with("umount "));
    }
}
