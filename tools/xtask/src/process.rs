//! Running cargo and the workspace's own binaries from xtask.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, ensure};

/// The repository root (xtask lives in tools/xtask).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| PathBuf::from("."))
}

/// `cargo <args>` in the workspace root, for callers that add environment before running it.
pub fn cargo_command(args: &[&str]) -> Command {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command.args(args).current_dir(workspace_root());
    command
}

/// Runs `cargo <args>` in the workspace root and fails if it fails.
pub fn cargo(args: &[&str]) -> Result<()> {
    run(&mut cargo_command(args))
}

/// Runs a prepared command and fails unless it exits successfully.
pub fn run(command: &mut Command) -> Result<()> {
    let status = command
        .status()
        .with_context(|| format!("cannot run {:?}", command.get_program()))?;
    ensure!(status.success(), "{command:?} failed: {status}");
    Ok(())
}

/// Runs a prepared command and returns its standard output, failing unless it succeeds.
pub fn output(command: &mut Command) -> Result<String> {
    let output = command
        .output()
        .with_context(|| format!("cannot run {:?}", command.get_program()))?;
    ensure!(
        output.status.success(),
        "{command:?} failed: {}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
    String::from_utf8(output.stdout).with_context(|| format!("{command:?} printed non-UTF-8"))
}

/// Where cargo puts its builds: `CARGO_TARGET_DIR`, or `target/` in the workspace.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace_root().join("target"), PathBuf::from)
}

/// Builds the given binaries with `profile` ("dev" or "release") and returns their directory.
pub fn build_binaries(binaries: &[&str], profile: &str) -> Result<PathBuf> {
    let mut args = vec!["build", "--profile", profile];
    for binary in binaries {
        args.extend(["--bin", binary]);
    }
    cargo(&args)?;
    let dir = if profile == "dev" { "debug" } else { profile };
    Ok(target_dir().join(dir))
}

/// SHA-256 of each of `names` (relative to `dir`), in order, computed by `sha256sum`.
pub fn sha256_files(dir: &Path, names: &[&str]) -> Result<Vec<pew_image::digest::Sha256Digest>> {
    let mut digests = Vec::with_capacity(names.len());
    // Bounded batches keep the command line short however large the lock grows.
    for batch in names.chunks(500) {
        let text = output(
            Command::new("sha256sum")
                .arg("--")
                .args(batch)
                .current_dir(dir),
        )?;
        for line in text.lines() {
            let hex = line.split_whitespace().next().unwrap_or_default();
            digests.push(
                hex.parse()
                    .with_context(|| format!("sha256sum printed {line:?}"))?,
            );
        }
    }
    ensure!(
        digests.len() == names.len(),
        "sha256sum skipped files in {}",
        dir.display()
    );
    Ok(digests)
}

/// SHA-256 of one file.
pub fn sha256_file(path: &Path) -> Result<pew_image::digest::Sha256Digest> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .and_then(|name| name.to_str())
        .with_context(|| format!("{} has no UTF-8 file name", path.display()))?;
    Ok(sha256_files(dir, &[name])?[0])
}

/// Runs a prepared command (whose stdin is piped) with `input` on its standard input.
pub fn run_with_input(command: &mut Command, input: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut child = command
        .stdin(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {:?}", command.get_program()))?;
    child
        .stdin
        .take()
        .context("stdin was not piped")?
        .write_all(input)
        .with_context(|| format!("cannot write to {:?}", command.get_program()))?;
    let status = child.wait()?;
    ensure!(status.success(), "{command:?} failed: {status}");
    Ok(())
}

/// Hard-links `from` to `to`, or copies it where a link cannot be made (another filesystem):
/// the big files a build passes around (`.deb`s, the system image) are never copied twice on
/// one disk.
pub fn link_or_copy(from: &Path, to: &Path) -> Result<()> {
    std::fs::hard_link(from, to)
        .or_else(|_| std::fs::copy(from, to).map(|_| ()))
        .with_context(|| format!("cannot link or copy {} to {}", from.display(), to.display()))
}
