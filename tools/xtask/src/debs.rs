//! `cargo xtask debs`: cross-compiles pew's binaries for the Pi and packages them, with their
//! units, policies and configuration, as the .debs that pew_image::deb defines.
//!
//! Reproducible: the build paths are remapped, every timestamp is HEAD's commit time, modes and
//! owners are set explicitly, and dpkg-deb compresses single-threaded, so one commit gives the
//! same bytes on any host with the same toolchain and dpkg.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use pew_image::deb::{self, Commit, Package};

use crate::host;
use crate::process::{self, workspace_root};

/// The Pi's target: Pi 3, 4, 400 and Zero 2 W run a 64-bit kernel and Debian arm64.
const TARGET: &str = "aarch64-unknown-linux-gnu";

#[derive(clap::Args)]
pub struct DebsArgs {
    /// Directory for the .debs and their SHA256SUMS, relative to the workspace root.
    #[arg(long, default_value = "out/debs")]
    out: PathBuf,
}

/// HEAD as the packages need it.
struct Head {
    /// Seconds since 1970: SOURCE_DATE_EPOCH.
    time: u64,
    hash: String,
    utc_time: String,
}

/// Builds, checks and packages every package; writes the .debs and SHA256SUMS to `args.out`.
pub fn run(args: DebsArgs) -> Result<()> {
    build_packages(
        &workspace_root().join(&args.out),
        &deb::PACKAGES.iter().collect::<Vec<_>>(),
    )?;
    Ok(())
}

/// HEAD's commit time and pew's version string at HEAD (what every package and the image carry).
pub fn head_version() -> Result<(u64, String)> {
    let head = head(&workspace_root())?;
    let version = deb::version(
        env!("CARGO_PKG_VERSION"),
        Commit {
            hash: &head.hash,
            utc_time: &head.utc_time,
        },
    )?;
    Ok((head.time, version))
}

/// Cross-compiles, checks and packages `packages` into `out` (with SHA256SUMS); returns the
/// .deb paths.
pub fn build_packages(out: &Path, packages: &[&Package]) -> Result<Vec<PathBuf>> {
    let root = workspace_root();
    let (source_date_epoch, version) = head_version()?;
    host::ensure_cross_toolchain(TARGET)?;

    let started = Instant::now();
    let names = deb::binaries(packages);
    let binaries = build(&root, &names, source_date_epoch)?;
    println!("built {TARGET} binaries in {:.0?}", started.elapsed());
    check_glibc(&binaries, &names)?;

    fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    remove_earlier_builds(out)?;
    let staging = tempfile::tempdir().context("cannot create a staging directory")?;
    let mut written = Vec::new();
    for package in packages {
        let tree = staging.path().join(package.name);
        stage(package, &version, &binaries, &root.join("overlays"), &tree)?;
        clamp_tree(&tree, source_date_epoch)?;
        let file_name = package.file_name(&version);
        build_deb(&tree, &out.join(&file_name), source_date_epoch)?;
        println!("wrote {}", out.join(&file_name).display());
        written.push(file_name);
    }
    let sums = process::output(Command::new("sha256sum").args(&written).current_dir(out))?;
    fs::write(out.join("SHA256SUMS"), sums).context("cannot write SHA256SUMS")?;
    Ok(written.iter().map(|name| out.join(name)).collect())
}

/// Commit time of the last commit that changed any of `paths` (HEAD's when none did).
pub fn last_change_time(paths: &[&str]) -> Result<u64> {
    let text = process::output(
        Command::new("git")
            .args(["log", "-1", "--format=%ct", "HEAD", "--"])
            .args(paths)
            .current_dir(workspace_root()),
    )?;
    match text.trim() {
        "" => Ok(head(&workspace_root())?.time),
        time => time
            .parse()
            .with_context(|| format!("commit time {time:?}")),
    }
}

/// Whether tracked files are as HEAD has them (then HEAD's version names the build exactly).
pub fn tree_is_clean() -> Result<bool> {
    let status = process::output(
        Command::new("git")
            .args(["status", "--porcelain", "--untracked-files=no"])
            .current_dir(workspace_root()),
    )?;
    Ok(status.is_empty())
}

fn head(root: &Path) -> Result<Head> {
    let text = process::output(
        Command::new("git")
            .args([
                "log",
                "-1",
                "--format=%ct%n%H%n%cd",
                "--date=format-local:%Y%m%d%H%M%S",
            ])
            .env("TZ", "UTC")
            .current_dir(root),
    )?;
    if !tree_is_clean()? {
        println!("warning: uncommitted changes are packaged under HEAD's version");
    }
    let mut lines = text.lines();
    let (Some(time), Some(hash), Some(utc_time)) = (lines.next(), lines.next(), lines.next())
    else {
        bail!("unexpected `git log` output {text:?}");
    };
    Ok(Head {
        time: time
            .parse()
            .with_context(|| format!("commit time {time:?}"))?,
        hash: hash.to_owned(),
        utc_time: utc_time.to_owned(),
    })
}

/// Builds the packaged binaries for the Pi and returns their directory.
fn build(root: &Path, binaries: &[&str], source_date_epoch: u64) -> Result<PathBuf> {
    let cargo_home = match std::env::var_os("CARGO_HOME") {
        Some(home) => PathBuf::from(home),
        None => {
            PathBuf::from(std::env::var_os("HOME").context("neither CARGO_HOME nor HOME is set")?)
                .join(".cargo")
        }
    };
    // The binaries' panic messages and debug paths name sources; remapped, they do not depend
    // on where the repository or the crate registry is. CARGO_ENCODED_RUSTFLAGS (separated by
    // 0x1f) keeps paths with spaces whole.
    let rustflags = [
        format!("--remap-path-prefix={}=/build", root.display()),
        format!("--remap-path-prefix={}=/cargo", cargo_home.display()),
    ]
    .join("\x1f");
    let mut args = vec!["build", "--release", "--locked", "--target", TARGET];
    for binary in binaries {
        args.extend(["--bin", binary]);
    }
    process::run(
        process::cargo_command(&args)
            .env("CARGO_ENCODED_RUSTFLAGS", rustflags)
            .env("SOURCE_DATE_EPOCH", source_date_epoch.to_string()),
    )?;
    Ok(process::target_dir().join(TARGET).join("release"))
}

/// Fails if a binary needs a newer glibc than the packages declare: the node would refuse to
/// start it after installing it without complaint.
fn check_glibc(binaries: &Path, names: &[&str]) -> Result<()> {
    for binary in names {
        let symbols = process::output(
            Command::new("aarch64-linux-gnu-objdump")
                .arg("-T")
                .arg(binaries.join(binary)),
        )?;
        if let Some(needed) = deb::newest_glibc(&symbols).filter(|needed| *needed > deb::GLIBC) {
            bail!(
                "{binary} needs glibc {needed}, the packages declare {}: raise deb::GLIBC",
                deb::GLIBC
            );
        }
    }
    Ok(())
}

/// Removes .debs of our packages left by builds of other commits, so the directory holds one
/// version of each.
fn remove_earlier_builds(out: &Path) -> Result<()> {
    for entry in fs::read_dir(out).with_context(|| format!("cannot list {}", out.display()))? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|name| name.to_str()) else {
            continue;
        };
        let ours = deb::PACKAGES
            .iter()
            .any(|package| name.starts_with(&format!("{}_", package.name)));
        if ours && name.ends_with(".deb") {
            fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
        }
    }
    Ok(())
}

/// Lays out `package`'s files and `DEBIAN/` metadata in `tree`.
fn stage(
    package: &Package,
    version: &str,
    binaries: &Path,
    overlays: &Path,
    tree: &Path,
) -> Result<()> {
    let mut sizes = Vec::new();
    for file in package.files {
        let source = file.source(binaries, overlays);
        let destination = tree.join(file.destination().trim_start_matches('/'));
        if let Some(parent) = destination.parent() {
            fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        let size = fs::copy(&source, &destination)
            .with_context(|| format!("cannot copy {} for {}", source.display(), package.name))?;
        set_mode(&destination, file.mode())?;
        sizes.push(size);
    }
    let metadata = tree.join("DEBIAN");
    fs::create_dir_all(&metadata)?;
    let control = package.control(version, deb::installed_size_kib(sizes));
    write(&metadata.join("control"), &control, 0o644)?;
    if let Some(conffiles) = package.conffiles() {
        write(&metadata.join("conffiles"), &conffiles, 0o644)?;
    }
    if let Some(postinst) = package.postinst() {
        write(&metadata.join("postinst"), &postinst, 0o755)?;
    }
    Ok(())
}

fn write(path: &Path, text: &str, mode: u32) -> Result<()> {
    fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    set_mode(path, mode)
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot set the mode of {}", path.display()))
}

/// Sets every directory from `path` down to 0755 and every mtime to `epoch`, so neither the
/// umask nor the time of the build reaches the archive (older dpkg-deb clamps neither).
fn clamp_tree(path: &Path, epoch: u64) -> Result<()> {
    if path.is_dir() {
        for entry in
            fs::read_dir(path).with_context(|| format!("cannot list {}", path.display()))?
        {
            clamp_tree(&entry?.path(), epoch)?;
        }
        set_mode(path, 0o755)?;
    }
    set_mtime(path, epoch)
}

fn set_mtime(path: &Path, epoch: u64) -> Result<()> {
    let time = SystemTime::UNIX_EPOCH + Duration::from_secs(epoch);
    fs::File::open(path)
        .and_then(|file| file.set_modified(time))
        .with_context(|| format!("cannot set the mtime of {}", path.display()))
}

fn build_deb(tree: &Path, deb: &Path, source_date_epoch: u64) -> Result<()> {
    process::run(
        Command::new("dpkg-deb")
            // One thread: multi-threaded xz splits the stream into blocks, and the thread count
            // would otherwise follow the host's cores.
            .args(["--root-owner-group", "-Zxz", "--threads-max=1", "--build"])
            .arg(tree)
            .arg(deb)
            .env("SOURCE_DATE_EPOCH", source_date_epoch.to_string()),
    )
}
