//! `cargo xtask`: pew's one entry point for building, running, simulating, benchmarking and testing.

mod sim;
mod weather;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Build, run, simulate, benchmark and test pew")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run simulations of a node against real measured weather.
    Sim {
        #[command(subcommand)]
        what: SimCommand,
    },
    /// Fetch the pinned pvlib wheel, verify it, and regenerate the compact weather files.
    Weather,
}

#[derive(Subcommand)]
enum SimCommand {
    /// Drive pew-powerd's logic through every hour of a typical meteorological year.
    Power(sim::PowerArgs),
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Sim { what: SimCommand::Power(args) } => sim::power(args),
        Command::Weather => weather::refresh(),
    }
}
