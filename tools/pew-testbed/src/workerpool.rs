//! The workerpool's side of a worker node: the real PoCo contracts on anvil (dev-chain), dev-core
//! as the pool's scheduler and result proxy, and the static test app registered on-chain as an
//! app. A worker on this host (the testbed, the dev node) or in emulation (`cargo xtask qemu`)
//! works for it.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use dev_chain::DevChain;
use dev_core::{ChainSettings, Config, DevCore, PocoChain};
use pew_containers::testing::PodmanService;
use pew_iexec::status::ReplicateStatus;
use pew_poco::{Address, B256, Wallet};

/// The test app's image name, on-chain and in the worker's engine.
pub const APP_IMAGE: &str = "localhost/pew-test-app:1";
/// PoCo's XS category (300 s).
pub const XS: u64 = 0;

/// How the pool is reached and what its app runs on.
#[derive(Debug, Clone)]
pub struct WorkerpoolSettings {
    /// Where dev-core listens; port 0 picks a free one.
    pub listen: SocketAddr,
    /// The name the worker reaches this host by, in the URLs the scheduler publishes (an emulated
    /// node reaches the host's loopback as 10.0.2.2); `None`: the addresses bound here.
    pub advertised_host: Option<String>,
    /// The worker's CPU architecture, as Rust names it (`x86_64`, `aarch64`).
    pub app_architecture: String,
}

impl WorkerpoolSettings {
    /// A pool for a worker on this host, on free ports.
    pub fn local() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            advertised_host: None,
            app_architecture: std::env::consts::ARCH.to_owned(),
        }
    }
}

pub struct Workerpool {
    pub chain: DevChain,
    pub core: DevCore,
    /// The test app, registered on-chain as [`APP_IMAGE`].
    pub app: Address,
    /// The test app's image as `docker save` writes it, for the worker's engine to load.
    pub app_archive: Vec<u8>,
    /// A category of 5 s, for apps that overrun.
    pub short_category: u64,
}

impl Workerpool {
    /// Starts the chain (its files in `dir`) and the scheduler, builds the test app for the
    /// worker's architecture and registers it.
    pub async fn start(dir: &Path, settings: &WorkerpoolSettings) -> Result<Self> {
        if settings.advertised_host.is_some() && settings.listen.port() == 0 {
            bail!("a pool advertised under another host name needs a fixed port");
        }
        let architecture = settings.app_architecture.as_str();
        let Some(oci_architecture) = pew_containers::testapp::oci_architecture(architecture) else {
            bail!("no OCI name for the architecture {architecture}");
        };
        let binary =
            pew_containers::testing::build_test_app(&format!("{architecture}-unknown-linux-gnu"))
                .context("building the test app")?;
        let app_archive = pew_containers::testapp::docker_archive(
            &std::fs::read(&binary)?,
            APP_IMAGE,
            oci_architecture,
        );

        let chain = DevChain::start(dir).await.context("dev chain")?;
        // The chain is new, so an earlier run's scheduler nonce would stall every transaction.
        let nonce_file = dir.join("scheduler-nonce");
        if nonce_file.exists() {
            std::fs::remove_file(&nonce_file)
                .with_context(|| format!("removing {}", nonce_file.display()))?;
        }
        let app = chain.deploy_app(APP_IMAGE, B256::ZERO).await?;
        let short_category = chain.create_category("TEST-5S", 5).await?;
        let scheduler_chain = PocoChain::connect(
            &chain.rpc_url,
            chain.hub,
            &chain.scheduler,
            Some(nonce_file),
        )
        .await
        .map_err(|e| anyhow::anyhow!("scheduler chain: {e:?}"))?;
        let node_url = match &settings.advertised_host {
            Some(host) => with_host(&chain.rpc_url, host)?,
            None => chain.rpc_url.clone(),
        };
        let mut config = Config::new(
            chain.scheduler.clone(),
            chain.workerpool,
            ChainSettings {
                chain_id: chain.chain_id,
                sidechain: true,
                node_url,
                hub: chain.hub,
                block_time: Duration::from_secs(1),
            },
        );
        config.listen = settings.listen;
        config.public_url = settings
            .advertised_host
            .as_ref()
            .map(|host| format!("http://{host}:{}", settings.listen.port()));
        // A dev pool answers quickly: one ask a second, running tasks re-examined every 2 s.
        config.ask_for_replicate_period = Duration::from_secs(1);
        config.timing.task_check_every = Duration::from_secs(2);
        config.timing.chain_check_interval = Duration::from_secs(1);
        let core = DevCore::start(config, Arc::new(scheduler_chain)).await?;
        Ok(Self {
            chain,
            core,
            app,
            app_archive,
            short_category,
        })
    }

    /// A private podman API service with the test app loaded, for a worker on this host.
    pub async fn engine_with_app(&self) -> Result<PodmanService> {
        let podman = PodmanService::start().context("podman API service")?;
        podman
            .engine()
            .await?
            .load(self.app_archive.clone())
            .await
            .context("loading the test app")?;
        Ok(podman)
    }

    /// A new worker wallet with gas money and its stake deposited.
    pub async fn enroll_worker(&self) -> Result<Wallet> {
        let wallet = Wallet::random();
        self.chain.fund_worker(wallet.address()).await?;
        Ok(wallet)
    }

    /// A deal of `tasks` tasks of the test app with `args`, published to the scheduler.
    pub async fn deal(&self, category: u64, args: &str, tasks: u32) -> Result<Vec<B256>> {
        let params = format!("{{\"iexec_args\":{args:?}}}");
        let deal = self
            .chain
            .create_deal(self.app, category, &params, tasks, 1)
            .await?;
        Ok(self.core.publish_deal(deal, u64::from(tasks)).await?)
    }

    /// Waits until `worker`'s replicate of `task` went through `status`; the error carries the
    /// replicate's history.
    pub async fn wait_replicate(
        &self,
        task: B256,
        worker: &str,
        status: ReplicateStatus,
        within: Duration,
    ) -> Result<()> {
        if self
            .core
            .wait_for_replicate_status(task, worker, status, within)
            .await
            .is_err()
        {
            bail!(
                "task {task} never reached {status} within {within:?}: replicate {:?}",
                self.core.replicate_statuses(task, worker),
            );
        }
        Ok(())
    }
}

/// `url` (`http://host:port[/path]`) with its host replaced.
fn with_host(url: &str, host: &str) -> Result<String> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("{url} is not an http:// URL"))?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let port = authority
        .rsplit_once(':')
        .map(|(_, port)| port)
        .with_context(|| format!("{url} names no port"))?;
    Ok(format!("http://{host}:{port}{path}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_is_replaced_and_port_and_path_kept() {
        assert_eq!(
            with_host("http://127.0.0.1:8545", "10.0.2.2").unwrap(),
            "http://10.0.2.2:8545"
        );
        assert_eq!(
            with_host("http://localhost:13000/rpc/", "10.0.2.2").unwrap(),
            "http://10.0.2.2:13000/rpc/"
        );
        assert!(with_host("https://127.0.0.1:8545", "h").is_err());
        assert!(with_host("http://127.0.0.1/", "h").is_err());
    }
}
