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

/// Puts the worker's wallet into the card's provisioning area, for first boot to install
/// where the image's workerd.toml reads it.
pub fn provision(pool: &DevWorkerpool, fat: &BootFat, scratch: &Path) -> Result<()> {
    fat.make_directory(PROVISION_DIRECTORY)?;
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
