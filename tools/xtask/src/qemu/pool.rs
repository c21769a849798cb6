//! The emulated node's workerpool: `dev-workerpool` on the host, reached from the guest at
//! 10.0.2.2 where the image's workerd.toml looks for it. The card is provisioned with the
//! worker wallet the pool enrolled; once the node is up, the arm64 test app is loaded into the
//! node's engine (it reaches no registry) and tasks are published.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use pew_image::provisioning::{MANIFEST_FILE, Manifest, PROVISION_DIRECTORY, ProvisionedFile};

use super::agent::Agent;
use super::bootfat::BootFat;
use crate::process;
use crate::workerpool::{DevWorkerpool, PoolOptions};

/// Loading the ~1.6 MB app archive through qemu-ga into podman under TCG.
const APP_LOAD_TIMEOUT: Duration = Duration::from_secs(180);

/// Starts the pool for a guest: dev-core on the port the image's workerd.toml names.
pub fn start(dir: &Path) -> Result<DevWorkerpool> {
    DevWorkerpool::start(
        dir,
        &PoolOptions {
            listen: "127.0.0.1:13000",
            advertised_host: Some("10.0.2.2"),
            app_architecture: "aarch64",
            engine: false,
        },
    )
}

/// Puts the worker's wallet into the card's provisioning area (an empty `provision/` in the
/// image), for first boot to install where the image's workerd.toml reads it.
pub fn provision(pool: &DevWorkerpool, fat: &BootFat, scratch: &Path) -> Result<()> {
    let enrolled = &pool.enrolled;
    let mut files = Vec::new();
    for (file_name, source, destination) in [
        (
            "worker-keystore.json",
            &enrolled.keystore,
            "/var/lib/pew/wallet/keystore.json",
        ),
        (
            "worker-password",
            &enrolled.password,
            "/var/lib/pew/wallet/password",
        ),
    ] {
        fat.copy_in(source, &format!("{PROVISION_DIRECTORY}/{file_name}"))?;
        files.push(ProvisionedFile {
            source: file_name.to_owned(),
            destination: destination.to_owned(),
            owner: "root".to_owned(),
            group: "root".to_owned(),
            mode: 0o600,
            secret: true,
            sha256: process::sha256_file(source)?,
        });
    }
    let manifest = scratch.join(MANIFEST_FILE);
    std::fs::write(&manifest, Manifest::new(files).to_text())?;
    fat.copy_in(&manifest, &format!("{PROVISION_DIRECTORY}/{MANIFEST_FILE}"))
}

/// Loads the test app into the running node's engine; returns how long that took.
pub fn load_app(pool: &DevWorkerpool, agent: &mut Agent) -> Result<Duration> {
    let started = Instant::now();
    let path = &pool.enrolled.app_archive;
    let archive = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let output = agent.exec_with_input(
        "/usr/bin/podman",
        &["load", "--quiet"],
        &archive,
        started + APP_LOAD_TIMEOUT,
    )?;
    if !output.succeeded() {
        bail!("podman load in the guest failed: {}", output.failure());
    }
    Ok(started.elapsed())
}

/// What the test app's `probe` must report from inside its container on the node, given the
/// image's workerd.toml (apps as nobody, no capabilities, no network, a read-only root, 512 MiB
/// and 256 processes on a cgroup v2 kernel).
const SANDBOX: [&str; 9] = [
    "uid=65534",
    "gid=65534",
    "cap_eff=0000000000000000",
    "no_new_privs=1",
    "net_interfaces=lo",
    "rootfs_writable=false",
    "cgroup:memory.max=536870912",
    "cgroup:memory.swap.max=0",
    "cgroup:pids.max=256",
];

/// The expected `probe` lines missing from `report`.
pub fn sandbox_deviations(report: &str) -> Vec<&'static str> {
    SANDBOX
        .into_iter()
        .filter(|expected| !report.lines().any(|line| line.trim() == *expected))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_locked_down_app_passes_and_a_missing_or_different_line_is_named() {
        let report = SANDBOX.join("\n") + "\ncgroup:cpu.max=100000 100000\n";
        assert!(sandbox_deviations(&report).is_empty());
        let rooted = report.replace("uid=65534", "uid=0");
        assert_eq!(sandbox_deviations(&rooted), ["uid=65534"]);
        assert_eq!(sandbox_deviations("").len(), SANDBOX.len());
    }
}
