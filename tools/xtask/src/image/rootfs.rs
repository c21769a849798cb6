//! The two root filesystems mmdebstrap builds from the local repositories: the image's base
//! (arm64, under qemu-user; the slow step, ~15 min, so it is cached by everything that goes
//! into it) and the native tools tree.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use pew_image::lock::PackageLock;
use pew_image::recipe::Recipe;

use crate::process;

/// Files written before any package is unpacked, so that the one initramfs the kernel's
/// postinst builds already has what the read-only slots need (image.md §8.1): the EROFS root
/// and the disks of both the Pi (built in) and QEMU's virt machine. `update_initramfs=no`
/// stops initramfs-tools' trigger from building it a second time.
const PRESEEDED_FILES: [(&str, &str); 3] = [
    (
        "etc/initramfs-tools/update-initramfs.conf",
        "update_initramfs=no\nbackup_initramfs=no\n",
    ),
    (
        "etc/initramfs-tools/modules",
        "erofs\next4\nvirtio_blk\nvirtio_pci\nvirtio_mmio\n",
    ),
    // Without zstd configured initramfs-tools falls back to gzip.
    ("etc/initramfs-tools/conf.d/compress", "COMPRESS=zstd\n"),
];

/// Left over by mmdebstrap or package scripts, or unique per node (created on first boot).
const PER_NODE_FILES: &str = "rm -f \"$1/etc/resolv.conf\" \"$1\"/etc/ssh/ssh_host_* \"$1/var/lib/dbus/machine-id\"; \
     : > \"$1/etc/machine-id\"; echo pew > \"$1/etc/hostname\"";

/// Where mmdebstrap reads a flat local repository from.
const FILE_MIRROR_HOOKS: &str = "/usr/share/mmdebstrap/hooks/file-mirror-automount";

/// What a cached root filesystem was built from, so a cache hit is an exact match.
fn cache_key(
    lock: &PackageLock,
    arguments: &[String],
    source_date_epoch: u64,
    cache: &Path,
    name: &str,
) -> Result<String> {
    let mmdebstrap = process::output(Command::new("mmdebstrap").arg("--version"))?;
    let input = format!(
        "{}\n{}\nSOURCE_DATE_EPOCH={source_date_epoch}\n{}",
        lock.to_text(),
        arguments.join("\n"),
        mmdebstrap
    );
    let key_file = cache.join(format!("{name}.key-input"));
    fs::write(&key_file, input)?;
    let digest = process::sha256_file(&key_file)?;
    Ok(digest.to_string()[..16].to_owned())
}

/// Runs mmdebstrap with `arguments` for `suite` into `target` from the flat repository `repo`,
/// every timestamp at `source_date_epoch`.
fn mmdebstrap(
    arguments: &[String],
    suite: &str,
    target: &Path,
    repo: &Path,
    source_date_epoch: u64,
) -> Result<()> {
    process::run(
        Command::new("mmdebstrap")
            .args(arguments)
            .arg(suite)
            .arg(target)
            .arg(format!("deb [trusted=yes] file://{} ./", repo.display()))
            .env("SOURCE_DATE_EPOCH", source_date_epoch.to_string())
            .env("TZ", "UTC")
            .env("LC_ALL", "C.UTF-8"),
    )
}

/// The image's base root filesystem as a tarball, built once per lock and recipe.
pub fn base(
    cache: &Path,
    recipe: &Recipe,
    lock: &PackageLock,
    repo: &Path,
    source_date_epoch: u64,
) -> Result<PathBuf> {
    let mut arguments = vec![
        "--mode=root".to_owned(),
        format!("--arch={}", recipe.debian.architecture),
        "--variant=minbase".to_owned(),
        // The output's name ends in .partial until it is complete, so name the format.
        "--format=tar".to_owned(),
        // The preseeded files are conffiles: keep ours without a prompt (image.md §8.1).
        "--dpkgopt=force-confdef".to_owned(),
        "--dpkgopt=force-confold".to_owned(),
        format!("--include={}", recipe.debian.packages.join(",")),
    ];
    for (path, content) in PRESEEDED_FILES {
        let directory = Path::new(path)
            .parent()
            .map_or(String::new(), |d| d.display().to_string());
        arguments.push(format!(
            "--essential-hook=mkdir -p \"$1/{directory}\" && printf '{}' > \"$1/{path}\"",
            content.replace('\n', "\\n")
        ));
    }
    arguments.push(format!("--customize-hook={PER_NODE_FILES}"));
    // The list goes next to the cache, not next to "$1": with tar output "$1" is a temporary
    // directory.
    let listing = cache.join("base.packages.partial");
    arguments.push(format!(
        "--customize-hook=chroot \"$1\" dpkg-query -W -f='${{Package}}\\t${{Version}}\\t${{Architecture}}\\n' > \"{}\"",
        listing.display()
    ));
    arguments.push(format!("--hook-dir={FILE_MIRROR_HOOKS}"));

    let key = cache_key(lock, &arguments, source_date_epoch, cache, "base")?;
    let tarball = cache.join(format!("base-{key}.tar"));
    if tarball.exists() {
        println!("base root filesystem: cached {}", tarball.display());
        return Ok(tarball);
    }
    let partial = cache.join(format!("base-{key}.tar.partial"));
    let _ = fs::remove_file(&partial);
    println!("building the base root filesystem under qemu-user (about 15 minutes)");
    let started = Instant::now();
    mmdebstrap(
        &arguments,
        &recipe.debian.suite,
        &partial,
        repo,
        source_date_epoch,
    )?;
    let installed =
        fs::read_to_string(&listing).context("mmdebstrap did not list the installed packages")?;
    check_installed(&installed, lock, &recipe.debian.architecture.to_string())?;
    fs::rename(&listing, format!("{}.packages", tarball.display()))?;
    fs::rename(&partial, &tarball)?;
    println!("base root filesystem built in {:.0?}", started.elapsed());
    Ok(tarball)
}

/// The native tools tree, built once per lock; `cache/tools` points at the current one.
pub fn tools_tree(
    cache: &Path,
    recipe: &Recipe,
    lock: &PackageLock,
    repo: &Path,
    architecture: &str,
    source_date_epoch: u64,
) -> Result<PathBuf> {
    let arguments = vec![
        "--mode=root".to_owned(),
        format!("--arch={architecture}"),
        "--variant=essential".to_owned(),
        "--format=directory".to_owned(),
        format!("--include={}", recipe.tools.packages.join(",")),
        format!("--hook-dir={FILE_MIRROR_HOOKS}"),
    ];
    let key = cache_key(lock, &arguments, source_date_epoch, cache, "tools")?;
    let tree = cache.join(format!("tools-{key}"));
    if !tree.exists() {
        println!("building the tools tree");
        let partial = cache.join(format!("tools-{key}.partial"));
        remove_partial(&partial)?;
        mmdebstrap(
            &arguments,
            &recipe.debian.suite,
            &partial,
            repo,
            source_date_epoch,
        )?;
        fs::rename(&partial, &tree)?;
    }
    let link = cache.join("tools");
    let _ = fs::remove_file(&link);
    std::os::unix::fs::symlink(tree.file_name().context("tools tree path")?, &link)?;
    Ok(tree)
}

/// Removes what an interrupted mmdebstrap left, including the bind mounts its file-mirror hook
/// makes inside the target (they stay when mmdebstrap is killed).
fn remove_partial(partial: &Path) -> Result<()> {
    if !partial.exists() {
        return Ok(());
    }
    let mounts = fs::read_to_string("/proc/mounts")?;
    let prefix = format!("{}/", partial.display());
    let mut below: Vec<&str> = mounts
        .lines()
        .filter_map(|line| line.split(' ').nth(1))
        .filter(|point| point.starts_with(&prefix))
        .collect();
    // Deepest first.
    below.sort_by_key(|point| std::cmp::Reverse(point.len()));
    for point in below {
        process::run(Command::new("umount").arg(point))?;
    }
    fs::remove_dir_all(partial).with_context(|| format!("cannot remove {}", partial.display()))
}

/// Every installed package must be locked at the installed version: the build used only the lock.
fn check_installed(dpkg_query: &str, lock: &PackageLock, architecture: &str) -> Result<()> {
    let installed: BTreeMap<(&str, &str), &str> = dpkg_query
        .lines()
        .filter_map(|line| match line.split('\t').collect::<Vec<_>>()[..] {
            [name, version, architecture] => Some(((name, architecture), version)),
            _ => None,
        })
        .collect();
    let mut problems = Vec::new();
    for ((name, arch), version) in &installed {
        match lock
            .packages()
            .iter()
            .find(|p| p.name == *name && p.architecture == *arch)
        {
            Some(locked) if locked.version == *version => {}
            Some(locked) => problems.push(format!(
                "{name} {version} installed, {} locked",
                locked.version
            )),
            None => problems.push(format!("{name}:{arch} {version} installed but not locked")),
        }
    }
    // apt resolves alternatives (`a | b`) in one pass at --update-lock but in stages inside
    // mmdebstrap, so the lock may hold a package the build did not need: harmless, but said.
    let unused: Vec<String> = lock
        .packages()
        .iter()
        .filter(|p| p.architecture == architecture)
        .filter(|p| !installed.contains_key(&(p.name.as_str(), p.architecture.as_str())))
        .map(|p| p.qualified_name())
        .collect();
    if !unused.is_empty() {
        println!("locked but not needed by the base: {}", unused.join(", "));
    }
    if !problems.is_empty() {
        bail!(
            "the base root filesystem does not match the lock:\n  {}",
            problems.join("\n  ")
        );
    }
    Ok(())
}
