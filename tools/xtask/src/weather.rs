//! `cargo xtask weather`: regenerates the compact weather files under
//! `services/pew-sim/weather/` from the NREL TMY3 files shipped in a pinned, checksummed pvlib
//! wheel, so the simulator's input is real data whose origin anyone can re-derive.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use pew_sim::weather::SiteName;
use pew_sim::weather_file::{Provenance, render};

use crate::process::workspace_root;

const PVLIB_VERSION: &str = "0.16.1";
const WHEEL_FILE: &str = "pvlib-0.16.1-py3-none-any.whl";
/// SHA-256 of the wheel as published on PyPI; a mismatch means the download is not the file
/// the committed weather was derived from.
const WHEEL_SHA256: &str = "4e61b5228a13f782413d7cf8cc48eb6e62e7bf55d155958fa9fd72420b63603d";
/// Where the compact files live, relative to the workspace root.
const OUT_DIR: &str = "services/pew-sim/weather";

/// The TMY3 file inside the wheel for each shipped site.
const SOURCES: [(SiteName, &str); 2] = [
    (SiteName::Greensboro, "pvlib/data/723170TYA.CSV"),
    (SiteName::SandPoint, "pvlib/data/703165TY.csv"),
];

/// Downloads the pinned wheel, verifies it, and rewrites every compact weather file.
pub fn refresh() -> Result<()> {
    let out_dir = workspace_root().join(OUT_DIR);
    let scratch = tempfile::tempdir().context("creating a scratch directory")?;
    let wheel = download_wheel(scratch.path())?;
    let wheel_sha256 = sha256_hex(&wheel)?;
    ensure!(
        wheel_sha256 == WHEEL_SHA256,
        "{WHEEL_FILE} has sha256 {wheel_sha256}, expected {WHEEL_SHA256}: refusing to use it"
    );
    let extracted = scratch.path().join("wheel");
    python(&[
        "-m",
        "zipfile",
        "-e",
        path_str(&wheel)?,
        path_str(&extracted)?,
    ])?;

    for (site, source_file) in SOURCES {
        let source = extracted.join(source_file);
        let text = std::fs::read_to_string(&source)
            .with_context(|| format!("reading {source_file} from {WHEEL_FILE}"))?;
        let table =
            pew_sim::tmy3::convert(&text).with_context(|| format!("converting {source_file}"))?;
        let provenance = Provenance {
            package: format!("pvlib {PVLIB_VERSION}"),
            archive: WHEEL_FILE.to_owned(),
            archive_sha256: wheel_sha256.clone(),
            source_file: source_file.to_owned(),
            source_sha256: sha256_hex(&source)?,
        };
        let file_name = format!("{site}.csv");
        std::fs::write(out_dir.join(&file_name), render(&table, &provenance))
            .with_context(|| format!("writing {OUT_DIR}/{file_name}"))?;
        println!(
            "{site}: {} hours from {source_file} -> {OUT_DIR}/{file_name}",
            table.hours.len()
        );
    }
    Ok(())
}

fn download_wheel(dir: &Path) -> Result<PathBuf> {
    let requirement = format!("pvlib=={PVLIB_VERSION}");
    python(&[
        "-m",
        "pip",
        "download",
        &requirement,
        "--no-deps",
        "--only-binary=:all:",
        "--quiet",
        "-d",
        path_str(dir)?,
    ])?;
    let wheel = dir.join(WHEEL_FILE);
    ensure!(
        wheel.is_file(),
        "pip did not produce {WHEEL_FILE} in {}",
        dir.display()
    );
    Ok(wheel)
}

/// SHA-256 via Python's hashlib: Python is already required for pip, and the workspace has no
/// hashing crate.
fn sha256_hex(path: &Path) -> Result<String> {
    const HASH: &str =
        "import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], 'rb').read()).hexdigest())";
    Ok(python(&["-c", HASH, path_str(path)?])?.trim().to_owned())
}

/// Runs `python3` with `args` and returns its standard output, failing on a non-zero exit.
fn python(args: &[&str]) -> Result<String> {
    let output = Command::new("python3")
        .args(args)
        .output()
        .context("running python3 (needed for pip and the wheel)")?;
    if !output.status.success() {
        bail!(
            "python3 {} failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    String::from_utf8(output.stdout).context("python3 printed non-UTF-8 output")
}

fn path_str(path: &Path) -> Result<&str> {
    path.to_str()
        .with_context(|| format!("path {} is not UTF-8", path.display()))
}
