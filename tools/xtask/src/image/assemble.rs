//! From the cached base root filesystem and pew's .debs to the disk image: install pew, split
//! the tree into the read-only system, the boot partition and the data partition's seed, make
//! each filesystem with the pinned tools, and lay them out on the disk.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use pew_image::bootscript::{self, DTB_DIRECTORY, INITRD_FILE, KERNEL_FILE};
use pew_image::bootstate::{BootState, ENV_FILE_NAME, Slot};
use pew_image::firmware;
use pew_image::layout::PartitionRole;
use pew_image::provisioning::PROVISION_DIRECTORY;
use pew_image::recipe::{CheckedRecipe, Debian};

use super::tools::ToolsTree;
use crate::process;

/// The trees and filesystems of one assembly, in its own work directory.
pub struct Assembly<'a> {
    pub recipe: &'a CheckedRecipe,
    pub tools: &'a ToolsTree,
    pub work: PathBuf,
    pub source_date_epoch: u64,
    /// The local repository the base was built from (its path leaks into the base).
    pub repository: PathBuf,
}

/// The filesystems an assembly produced.
pub struct Filesystems {
    pub system: PathBuf,
    pub boot: PathBuf,
    pub data: PathBuf,
    /// One slot's boot payload directory (kernel, initramfs, DTBs), as on the boot partition.
    pub slot_payload: PathBuf,
}

impl Assembly<'_> {
    fn root(&self) -> PathBuf {
        self.work.join("root")
    }

    fn boot_tree(&self) -> PathBuf {
        self.work.join("boot")
    }

    /// Slot A's kernel, initramfs and DTBs on the boot partition.
    fn slot_payload(&self) -> PathBuf {
        let directory = self.recipe.boot_script_config().payload.directory(Slot::A);
        self.boot_tree().join(directory.trim_start_matches('/'))
    }

    fn data_tree(&self) -> PathBuf {
        self.work.join("data")
    }

    /// Extracts the base and installs pew's packages into it with dpkg, like any package.
    pub fn install(&self, base: &Path, debs: &[PathBuf]) -> Result<()> {
        if self.work.exists() {
            fs::remove_dir_all(&self.work)?;
        }
        let root = self.root();
        fs::create_dir_all(&root)?;
        process::run(
            Command::new("tar")
                .args(["--numeric-owner", "--xattrs", "--xattrs-include=*", "-xpf"])
                .arg(base)
                .arg("-C")
                .arg(&root),
        )?;
        let staging = root.join("tmp/pew-debs");
        fs::create_dir_all(&staging)?;
        let mut inside = Vec::new();
        for deb in debs {
            let name = deb.file_name().context("a .deb path without a file name")?;
            fs::copy(deb, staging.join(name))?;
            inside.push(Path::new("/tmp/pew-debs").join(name));
        }
        process::run(
            Command::new("chroot")
                .arg(&root)
                .args(["dpkg", "--install", "--force-confold"])
                .args(&inside)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .env("LC_ALL", "C.UTF-8"),
        )
        .context("installing pew's packages into the image")?;
        fs::remove_dir_all(&staging)?;
        // dpkg logs with the wall clock (mmdebstrap removes its own logs the same way).
        for log in ["var/log/dpkg.log", "var/log/alternatives.log"] {
            let _ = fs::remove_file(root.join(log));
        }
        Ok(())
    }

    /// Splits the installed tree: kernel, initramfs and DTBs to slot A's directory on the boot
    /// partition (U-Boot cannot read EROFS), the Pi firmware and U-Boot to its root, and
    /// /var to the data partition's seed (the node bind-mounts /data/var on /var).
    pub fn split(&self) -> Result<()> {
        let root = self.root();
        configure_read_only_root(&root, &self.recipe.recipe.debian)?;
        remove_mount_point(&root, &self.repository)?;
        let boot = self.boot_tree();
        let kernel_release = kernel_release(&root)?;

        let config = self.recipe.boot_script_config();
        // A card ships one system, in slot A (BootState::factory gives B no attempts); slot B is
        // written by the first update. Two identical copies would double the download.
        let payload = self.slot_payload();
        fs::create_dir_all(payload.join(DTB_DIRECTORY))?;
        copy(
            &root.join(format!("boot/vmlinuz-{kernel_release}")),
            &payload.join(KERNEL_FILE),
        )?;
        copy(
            &root.join(format!("boot/initrd.img-{kernel_release}")),
            &payload.join(INITRD_FILE),
        )?;
        let dtbs = root.join(format!("usr/lib/linux-image-{kernel_release}/broadcom"));
        let target = payload.join(DTB_DIRECTORY).join("broadcom");
        fs::create_dir_all(&target)?;
        for entry in
            fs::read_dir(&dtbs).with_context(|| format!("no DTBs in {}", dtbs.display()))?
        {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "dtb") {
                copy(&path, &target.join(path.file_name().context("dtb name")?))?;
            }
        }
        for file in firmware::boot_files() {
            let source = root.join(file.source_path(&kernel_release).trim_start_matches('/'));
            copy(&source, &boot.join(file.destination))?;
        }
        fs::write(
            boot.join("config.txt"),
            firmware::config_txt(&self.recipe.recipe.boot.dtoverlays),
        )?;
        let script = boot.join("boot.cmd");
        fs::write(&script, bootscript::boot_cmd(&config))?;
        process::run(
            self.tools
                .command("mkimage")?
                .args([
                    "-A",
                    "arm64",
                    "-O",
                    "linux",
                    "-T",
                    "script",
                    "-C",
                    "none",
                    "-n",
                    "pew A/B boot",
                    "-d",
                ])
                .arg(&script)
                .arg(boot.join("boot.scr"))
                // The legacy image header carries a timestamp.
                .env("SOURCE_DATE_EPOCH", self.source_date_epoch.to_string())
                .stdout(std::process::Stdio::null()),
        )?;
        fs::remove_file(&script)?;
        let state = BootState::factory(config.attempts);
        fs::write(boot.join(ENV_FILE_NAME), state.to_env_text())?;
        fs::create_dir_all(boot.join(PROVISION_DIRECTORY))?;

        // The slot's kernel lives on the boot partition; the copies in / and the raspi-firmware
        // hook's /boot/firmware would only take space in the read-only system.
        for entry in fs::read_dir(root.join("boot"))? {
            let path = entry?.path();
            if path.is_dir() {
                fs::remove_dir_all(&path)?;
                fs::create_dir(&path)?;
            } else {
                fs::remove_file(&path)?;
            }
        }

        let data = self.data_tree();
        fs::create_dir_all(&data)?;
        fs::rename(root.join("var"), data.join("var"))?;
        fs::create_dir(root.join("var"))?;
        // Units started before var.mount (systemd-resolved, in sysinit) with PrivateTmp need
        // /var/tmp to exist on the read-only root to mount their private one over it.
        let early_tmp = root.join("var/tmp");
        fs::create_dir(&early_tmp)?;
        fs::set_permissions(
            &early_tmp,
            std::os::unix::fs::PermissionsExt::from_mode(0o1777),
        )?;
        fs::create_dir_all(root.join("data"))?;
        Ok(())
    }

    /// Makes the three filesystems from the trees, every timestamp clamped.
    pub fn make_filesystems(&self) -> Result<Filesystems> {
        let epoch = self.source_date_epoch.to_string();
        for tree in [self.root(), self.boot_tree(), self.data_tree()] {
            process::run(Command::new("find").arg(&tree).args([
                "-exec",
                "touch",
                "--no-dereference",
                "--date",
                &format!("@{epoch}"),
                "{}",
                "+",
            ]))?;
        }
        let partitions = &self.recipe.recipe.partitions;
        let layout = &self.recipe.layout;

        let system = self.work.join("system.erofs");
        process::run(
            self.tools
                .command("mkfs.erofs")?
                .args([
                    "-zlz4hc",
                    "-T",
                    &epoch,
                    "-U",
                    &partitions.system.uuid.to_string(),
                    "-L",
                    &partitions.system.label,
                    "--quiet",
                ])
                .arg(&system)
                .arg(self.root()),
        )?;
        let system_bytes = fs::metadata(&system)?.len();
        self.recipe
            .check_system_image(system_bytes)
            .context("the system does not fit its slot")?;

        let boot = self.work.join("boot.vfat");
        let boot_bytes = layout.partition(PartitionRole::Boot).size_bytes();
        create_sized(&boot, boot_bytes)?;
        process::run(
            self.tools
                .command("mkfs.vfat")?
                // --invariant must come before -i (image-findings §3).
                .args([
                    "-F",
                    "32",
                    "--invariant",
                    "-i",
                    &format!("{:08X}", partitions.boot.volume_id.0),
                    "-n",
                    &partitions.boot.label,
                ])
                .arg(&boot)
                .stdout(std::process::Stdio::null()),
        )?;
        let mut entries: Vec<PathBuf> = fs::read_dir(self.boot_tree())?
            .map(|entry| entry.map(|e| e.path()))
            .collect::<std::io::Result<_>>()?;
        entries.sort();
        process::run(
            self.tools
                .command("mcopy")?
                .arg("-i")
                .arg(&boot)
                .args(["-s", "-p", "-m"])
                .args(&entries)
                .arg("::/")
                .env("MTOOLS_SKIP_CHECK", "1")
                .env("SOURCE_DATE_EPOCH", &epoch),
        )?;

        let data = self.work.join("data.ext4");
        create_sized(&data, layout.partition(PartitionRole::Data).size_bytes())?;
        let data_partition = &partitions.data;
        process::run(
            self.tools
                .command("mke2fs")?
                .args([
                    "-q",
                    "-t",
                    "ext4",
                    "-T",
                    "default",
                    "-L",
                    &data_partition.label,
                    "-U",
                    &data_partition.uuid.to_string(),
                ])
                .arg("-E")
                .arg(format!(
                    "hash_seed={},root_owner=0:0",
                    data_partition.hash_seed
                ))
                .arg("-d")
                .arg(self.data_tree())
                .arg(&data)
                .env("SOURCE_DATE_EPOCH", &epoch)
                .env("E2FSPROGS_FAKE_TIME", &epoch),
        )?;

        let slot_payload = self.slot_payload();
        Ok(Filesystems {
            system,
            boot,
            data,
            slot_payload,
        })
    }

    /// Lays the filesystems out on a sparse disk image behind the recipe's partition table;
    /// slot B stays empty (zeros, not stored: the image is sparse and the bmap skips it).
    pub fn disk(&self, filesystems: &Filesystems, image: &Path) -> Result<()> {
        let layout = &self.recipe.layout;
        if image.exists() {
            fs::remove_file(image)?;
        }
        create_sized(image, layout.image_bytes())?;
        let mut sfdisk = self.tools.command("sfdisk")?;
        sfdisk
            .args(["--quiet", "--no-reread", "--no-tell-kernel"])
            .arg(image)
            .stdin(std::process::Stdio::piped());
        process::run_with_input(&mut sfdisk, layout.sfdisk_script().as_bytes())?;
        for (role, filesystem) in [
            (PartitionRole::Boot, &filesystems.boot),
            (PartitionRole::SystemA, &filesystems.system),
            (PartitionRole::Data, &filesystems.data),
        ] {
            let partition = layout.partition(role);
            let bytes = fs::metadata(filesystem)?.len();
            ensure!(
                bytes <= partition.size_bytes(),
                "{} ({bytes} bytes) does not fit partition {}",
                filesystem.display(),
                partition.number()
            );
            process::run(
                Command::new("dd")
                    .arg(format!("if={}", filesystem.display()))
                    .arg(format!("of={}", image.display()))
                    .args([
                        "bs=1M",
                        "oflag=seek_bytes",
                        "conv=notrunc,sparse",
                        "status=none",
                    ])
                    .arg(format!("seek={}", partition.start_bytes())),
            )?;
        }
        Ok(())
    }
}

/// Where the image's debian-archive-keyring package puts Debian's archive keys.
const NODE_ARCHIVE_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// The few files a read-only root needs that no package provides.
fn configure_read_only_root(root: &Path, debian: &Debian) -> Result<()> {
    use std::os::unix::fs::{PermissionsExt, symlink};
    // mmdebstrap left the build's local repository here; the node knows the real archive:
    // the release, its updates and its security fixes, each signed by Debian's keys.
    let one_line_sources = root.join("etc/apt/sources.list");
    if one_line_sources.exists() {
        fs::remove_file(one_line_sources)?;
    }
    fs::create_dir_all(root.join("etc/apt/sources.list.d"))?;
    fs::write(
        root.join("etc/apt/sources.list.d/debian.sources"),
        debian.node_sources_deb822(NODE_ARCHIVE_KEYRING),
    )?;
    // systemd-resolved's stub, which follows whatever DHCP says; /etc itself stays read-only.
    let resolv = root.join("etc/resolv.conf");
    let _ = fs::remove_file(&resolv);
    symlink("../run/systemd/resolve/stub-resolv.conf", &resolv)?;
    // mmdebstrap leaves the host's mode on it.
    fs::set_permissions(root.join("etc/hostname"), fs::Permissions::from_mode(0o644))?;
    Ok(())
}

/// mmdebstrap's file-mirror hook bind-mounts the local repository inside the root and leaves the
/// empty mount point directories behind: they would name the build host's checkout.
fn remove_mount_point(root: &Path, repository: &Path) -> Result<()> {
    let inside = root.join(repository.strip_prefix("/").unwrap_or(repository));
    for directory in inside
        .ancestors()
        .take_while(|directory| *directory != root)
    {
        if fs::remove_dir(directory).is_err() {
            break;
        }
    }
    Ok(())
}

/// The one kernel the base holds (`/boot/vmlinuz-<release>`).
fn kernel_release(root: &Path) -> Result<String> {
    let mut releases: Vec<String> = fs::read_dir(root.join("boot"))?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter_map(|name| name.strip_prefix("vmlinuz-").map(str::to_owned))
        .collect();
    match (releases.pop(), releases.is_empty()) {
        (Some(release), true) => Ok(release),
        (Some(_), false) => bail!("the base holds more than one kernel"),
        (None, _) => bail!("the base holds no kernel (is linux-image-arm64 in the recipe?)"),
    }
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    if let Some(parent) = to.parent() {
        fs::create_dir_all(parent)?;
    }
    fs::copy(from, to)
        .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
    Ok(())
}

/// A sparse file of exactly `bytes`.
fn create_sized(path: &Path, bytes: u64) -> Result<()> {
    let file =
        fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    file.set_len(bytes)?;
    Ok(())
}
