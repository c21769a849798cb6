use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;

/// The pew power manager.
#[derive(Parser)]
#[command(name = "pew-powerd", version)]
struct Args {
    /// Configuration file.
    #[arg(long, default_value = pew_powerd::config::DEFAULT_PATH)]
    config: PathBuf,
    /// Bus address instead of the system bus (also PEW_BUS_ADDRESS).
    #[arg(long)]
    bus: Option<String>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    pew_daemon::logging::init("pew-powerd");
    let config = pew_powerd::config::PowerdConfig::load(&args.config)?;
    pew_powerd::service::run(config, args.bus).await
}
