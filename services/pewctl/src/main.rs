//! `pewctl`: one screen for the whole node, and the operator's handle on each service.

mod power;
mod properties;
mod status;
mod worker;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "pewctl",
    version,
    about = "Show and drive the pew services of this node"
)]
struct Cli {
    /// Bus address to use instead of the system bus (also PEW_BUS_ADDRESS).
    #[arg(long, global = true)]
    bus: Option<String>,
    /// Print JSON for scripts instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Every service's state on one screen.
    Status,
    /// The power manager: battery, solar, energy budget, leases.
    Power {
        #[command(subcommand)]
        command: Option<power::Command>,
    },
    /// The iExec worker: state, current task, counters; pause, resume, drain.
    Worker {
        #[command(subcommand)]
        command: Option<worker::Command>,
    },
}

/// Fails with the service's unit named when `service` is not on the bus.
async fn require_running(connection: &zbus::Connection, service: &pew_bus::Service) -> Result<()> {
    if !pew_bus::is_running(connection, service).await? {
        anyhow::bail!(
            "{} is not running ({} not on the bus)",
            service.unit,
            service.bus_name
        );
    }
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let connection = pew_bus::connect(cli.bus.as_deref()).await?;
    match cli.command {
        Command::Status => status::run(&connection, cli.json).await,
        Command::Power { command } => {
            power::run(&connection, command.unwrap_or_default(), cli.json).await
        }
        Command::Worker { command } => {
            worker::run(&connection, command.unwrap_or_default(), cli.json).await
        }
    }
}
