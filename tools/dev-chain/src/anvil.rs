//! An anvil node in a child process, on a free loopback port.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use pew_poco::Wallet;
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

/// Chain id of iExec's local PoCo chains (and of the `65535` entry of PoCo's config).
pub const DEV_CHAIN_ID: u64 = 65535;

/// How the node is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnvilConfig {
    /// Chain id.
    pub chain_id: u64,
    /// Gas price, base fee and quoted price 0, like iExec's former Bellecour sidechain.
    pub gas_free: bool,
}

impl Default for AnvilConfig {
    fn default() -> Self {
        Self {
            chain_id: DEV_CHAIN_ID,
            gas_free: false,
        }
    }
}

/// A running anvil; killed when dropped.
#[derive(Debug)]
pub struct Anvil {
    child: Child,
    rpc_url: String,
    accounts: Vec<Wallet>,
}

/// The part of anvil's `--config-out` file we need.
#[derive(Deserialize)]
struct AnvilAccounts {
    private_keys: Vec<String>,
}

/// anvil prints this once its RPC server accepts connections.
const LISTENING: &str = "Listening on ";

impl Anvil {
    /// Starts `binary` with its log and account list in `dir`, and waits until it listens.
    ///
    /// Mining is mixed: every transaction is mined at once (receipts come back immediately)
    /// and an empty block follows every second, so block numbers advance as on a real chain
    /// for code that waits for "N blocks later".
    pub async fn start(binary: &Path, dir: &Path, config: AnvilConfig) -> anyhow::Result<Self> {
        let accounts_file = dir.join("anvil-accounts.json");
        let log_path = dir.join("anvil.log");
        let errors_path = dir.join("anvil.stderr");
        let errors = std::fs::File::create(&errors_path)
            .with_context(|| format!("creating {}", errors_path.display()))?;
        let mut command = Command::new(binary);
        command
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--mixed-mining",
                "--block-time",
                "1",
            ])
            .arg("--chain-id")
            .arg(config.chain_id.to_string())
            .arg("--config-out")
            .arg(&accounts_file)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(errors)
            .kill_on_drop(true);
        if config.gas_free {
            // Without the last flag anvil still quotes a 1 gwei tip in `eth_gasPrice`.
            command.args([
                "--gas-price",
                "0",
                "--base-fee",
                "0",
                "--disable-min-priority-fee",
            ]);
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let stdout = child.stdout.take().context("anvil stdout not captured")?;
        let mut log = tokio::fs::File::create(&log_path)
            .await
            .with_context(|| format!("creating {}", log_path.display()))?;

        let mut lines = BufReader::new(stdout).lines();
        let address = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await? {
                log.write_all(format!("{line}\n").as_bytes()).await?;
                if let Some(address) = line.strip_prefix(LISTENING) {
                    return Ok(Some(address.trim().to_owned()));
                }
            }
            Ok::<_, std::io::Error>(None)
        })
        .await
        .context("anvil did not start listening within 30 s")?
        .context("reading anvil's output")?;
        let Some(address) = address else {
            let message = std::fs::read_to_string(&errors_path).unwrap_or_default();
            bail!("anvil exited before listening: {}", message.trim());
        };
        // anvil logs every call; keep draining its output into the log so it never blocks.
        tokio::spawn(async move {
            let mut rest = lines.into_inner();
            if let Err(error) = tokio::io::copy(&mut rest, &mut log).await {
                tracing::debug!(%error, "anvil log copy ended");
            }
        });

        let accounts = read_accounts(&accounts_file)?;
        Ok(Self {
            child,
            rpc_url: format!("http://{address}"),
            accounts,
        })
    }

    /// JSON-RPC endpoint, `http://127.0.0.1:<port>`.
    pub fn rpc_url(&self) -> &str {
        &self.rpc_url
    }

    /// The pre-funded accounts (anvil's default mnemonic: the same keys on every run).
    pub fn accounts(&self) -> &[Wallet] {
        &self.accounts
    }

    /// Kills the node (also done on drop).
    pub fn stop(&mut self) {
        if let Err(error) = self.child.start_kill() {
            tracing::debug!(%error, "anvil already stopped");
        }
    }
}

fn read_accounts(path: &Path) -> anyhow::Result<Vec<Wallet>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let accounts: AnvilAccounts =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    accounts
        .private_keys
        .iter()
        .map(|key| {
            let bytes: [u8; 32] = alloy::hex::decode(key)
                .ok()
                .and_then(|bytes| bytes.try_into().ok())
                .with_context(|| format!("anvil private key {key:?} is not 32 hex bytes"))?;
            Ok(Wallet::from_private_key(&bytes)?)
        })
        .collect()
}
