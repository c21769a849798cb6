//! `dev-core`: runs the scheduler and result-proxy double against a PoCo chain, for the dev node
//! and manual tests. Deals are scheduled with `POST /dev/deals/{dealId}?tasks=N`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use dev_core::{ChainSettings, Config, DevCore, PocoChain};
use pew_poco::{Address, B256, Wallet};
use tracing_subscriber::EnvFilter;

/// Test double of the iExec v9 scheduler (iexec-core) and result proxy.
#[derive(Debug, Parser)]
#[command(name = "dev-core", version)]
struct Args {
    /// Address to serve the core, config server, SockJS endpoint and result proxy on.
    #[arg(long, default_value = "127.0.0.1:13000")]
    listen: SocketAddr,
    /// Base URL advertised to workers (config server, result proxy); default `http://<listen>`.
    #[arg(long)]
    public_url: Option<String>,
    /// JSON-RPC endpoint of the chain.
    #[arg(long)]
    chain_rpc: String,
    /// JSON-RPC URL advertised to workers in `/config/chain`; default `--chain-rpc`.
    #[arg(long)]
    worker_chain_rpc: Option<String>,
    /// iExec hub (PoCo proxy) address.
    #[arg(long)]
    hub: Address,
    /// Workerpool the scheduler serves; its owner must be the scheduler key.
    #[arg(long)]
    workerpool: Address,
    /// Scheduler key: a keystore v3 JSON file, or a file holding a hex private key.
    #[arg(long)]
    scheduler_key_file: PathBuf,
    /// Keystore password; default `$DEV_CORE_SCHEDULER_PASSWORD`, or empty.
    #[arg(long)]
    scheduler_key_password: Option<String>,
    /// Where to persist the scheduler's transaction nonce.
    #[arg(long)]
    nonce_file: Option<PathBuf>,
    /// Average block interval announced to workers, in seconds.
    #[arg(long, default_value_t = 5)]
    block_time_secs: u64,
    /// Announce a gas-free sidechain (workers skip balance checks).
    #[arg(long)]
    sidechain: bool,
    /// Minimum delay between two replicate asks of a worker, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    ask_period_ms: u64,
    /// Worker version required (empty accepts any).
    #[arg(long, default_value = "")]
    required_worker_version: String,
    /// Wallets allowed to log in (exact strings, comma-separated); empty allows everyone.
    #[arg(long, value_delimiter = ',')]
    whitelist: Vec<String>,
    /// Answer ping with upstream's restart-stable session id.
    #[arg(long)]
    stable_session_id: bool,
}

fn load_scheduler(path: &PathBuf, password: &str) -> anyhow::Result<Wallet> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let text = text.trim();
    if text.starts_with('{') {
        return pew_poco::keystore::decrypt(text, password)
            .context("decrypting the scheduler keystore");
    }
    let key: B256 = text.parse().with_context(|| {
        format!(
            "{} holds neither a keystore nor a 32-byte hex key",
            path.display()
        )
    })?;
    Wallet::from_private_key(&key.0).context("invalid scheduler key")
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::from_default_env().add_directive("info".parse()?))
        .init();
    let args = Args::parse();
    let password = args
        .scheduler_key_password
        .clone()
        .unwrap_or_else(|| std::env::var("DEV_CORE_SCHEDULER_PASSWORD").unwrap_or_default());
    let scheduler = load_scheduler(&args.scheduler_key_file, &password)?;
    let chain = pew_chain::Chain::connect(
        &args.chain_rpc,
        args.hub,
        Some(&scheduler),
        args.nonce_file.clone(),
    )
    .await
    .with_context(|| format!("connecting to {}", args.chain_rpc))?;
    let settings = ChainSettings {
        chain_id: chain.chain_id(),
        sidechain: args.sidechain,
        node_url: args
            .worker_chain_rpc
            .clone()
            .unwrap_or_else(|| args.chain_rpc.clone()),
        hub: args.hub,
        block_time: Duration::from_secs(args.block_time_secs),
    };
    let mut config = Config::new(scheduler, args.workerpool, settings);
    config.listen = args.listen;
    config.public_url = args.public_url;
    config.ask_for_replicate_period = Duration::from_millis(args.ask_period_ms);
    config.required_worker_version = args.required_worker_version;
    config.whitelist = args.whitelist;
    config.stable_session_id = args.stable_session_id;
    let core = DevCore::start(config, Arc::new(PocoChain::new(chain))).await?;
    tracing::info!(
        url = core.base_url(),
        "ready; schedule deals with POST /dev/deals/{{dealId}}?tasks=N"
    );
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "2a46e8c1535792f6689b10d5c882c9363910c30751ec193ae71ec71630077909";
    const ADDRESS: &str = "0x2d29bfbec903479fe4ba991918bab99b494f2bef";

    fn key_file(content: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scheduler.key");
        std::fs::write(&path, content).unwrap();
        (dir, path)
    }

    #[test]
    fn hex_key_files_load_with_or_without_prefix() {
        for content in [KEY.to_owned(), format!("0x{KEY}\n")] {
            let (_dir, path) = key_file(&content);
            let wallet = load_scheduler(&path, "").unwrap();
            assert_eq!(format!("{:#x}", wallet.address()), ADDRESS);
        }
    }

    #[test]
    fn keystore_files_need_their_password() {
        let wallet = load_scheduler(&key_file(KEY).1, "").unwrap();
        let (_dir, path) = key_file(&pew_poco::keystore::encrypt(&wallet, "whatever", 4).unwrap());
        assert_eq!(
            load_scheduler(&path, "whatever").unwrap().address(),
            wallet.address()
        );
        assert!(load_scheduler(&path, "wrong").is_err());
    }

    #[test]
    fn anything_else_is_refused() {
        assert!(load_scheduler(&key_file("0x1234").1, "").is_err());
        assert!(load_scheduler(&PathBuf::from("/nonexistent/key"), "").is_err());
    }
}
