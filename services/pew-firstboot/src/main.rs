use std::path::Path;

use anyhow::{Result, bail};
use clap::{Parser, Subcommand};
use pew_firstboot::command::SystemRunner;
use pew_firstboot::fallback::{self, Fallback};
use pew_firstboot::provision::Provisioned;
use pew_firstboot::{first_boot, machine_id, read_mount_table};
use tracing::{error, info};

/// Makes a flashed card a node of its own; run by systemd units at every boot.
#[derive(Parser)]
#[command(name = "pew-firstboot", version)]
struct Args {
    #[command(subcommand)]
    step: Option<Step>,
}

#[derive(Subcommand)]
enum Step {
    /// Grow the data partition and install the provisioning area (the default).
    Run,
    /// Keep the machine ID on the data partition (early boot).
    MachineId,
    /// Give /var a writable place when the data partition's could not be mounted.
    StateFallback,
}

fn main() -> Result<()> {
    let args = Args::parse();
    pew_daemon::logging::init("pew-firstboot");
    let root = Path::new("/");
    match args.step.unwrap_or(Step::Run) {
        Step::MachineId => {
            machine_id::keep(root, &SystemRunner)?;
        }
        Step::StateFallback => {
            let mounts = read_mount_table(root)?;
            match fallback::ensure_writable_var(root, &mounts, &SystemRunner)? {
                Fallback::NotNeeded => info!("/var is mounted, no fallback needed"),
                Fallback::InMemory => info!("/data and /var are in RAM for this boot"),
                Fallback::EmptyVarOnData => info!("/var is a new empty directory on /data"),
            }
        }
        Step::Run => {
            let outcome = first_boot(root, &SystemRunner)?;
            let mut failed = 0;
            match outcome.growth {
                Ok(report) if report == Default::default() => {
                    info!("data partition and filesystem already fill the card")
                }
                Ok(_) => {}
                Err(growth_error) => {
                    failed += 1;
                    error!("growing the data partition: {growth_error}");
                }
            }
            match outcome.provisioning {
                Ok(Provisioned::NothingToDo) => {
                    info!("no provisioning files on the boot partition")
                }
                Ok(Provisioned::Installed {
                    written,
                    already_installed,
                }) => info!(
                    "provisioning area installed: {written} file(s) written, \
                     {already_installed} found installed by an interrupted earlier run"
                ),
                Err(provision_error) => {
                    failed += 1;
                    error!("installing the provisioning area: {provision_error}");
                }
            }
            if failed > 0 {
                bail!(
                    "{failed} of 2 first-boot steps failed (see above); the next boot tries again"
                );
            }
        }
    }
    Ok(())
}
