use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;

/// The pew iExec worker.
#[derive(Parser)]
#[command(name = "pew-workerd", version)]
struct Args {
    /// Configuration file.
    #[arg(long, default_value = pew_workerd::config::DEFAULT_PATH)]
    config: PathBuf,
    /// Bus address instead of the system bus (also PEW_BUS_ADDRESS).
    #[arg(long)]
    bus: Option<String>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    pew_daemon::logging::init("pew-workerd");
    let config = pew_workerd::config::WorkerdConfig::load(&args.config)?;
    pew_workerd::service::run(config, args.bus).await
}
