//! A real iExec chain for tests and the dev node: anvil (from the pinned npm package) with the
//! real PoCo v6.1.0 contracts deployed from the `@iexec/poco` npm artifacts, a workerpool owned
//! by the scheduler wallet, and helpers to fund workers, register apps and create deals by
//! matching EIP-712 signed orders, exactly as iExec's marketplace does.
//!
//! Roles (anvil's deterministic accounts 0, 1, 2):
//! - `deployer`: PoCo owner, owner of the apps it registers, and the faucet for workers;
//! - `scheduler`: owner of the workerpool, so it signs workerpool orders and the
//!   WorkerpoolAuthorizations that `contribute` checks, and it may `initialize`/`finalize`;
//! - `requester`: buys the deals.
//!
//! After [`DevChain::start`] the dev chain never sends from the scheduler's wallet, so the
//! scheduler double can own that wallet's nonces.

#![warn(missing_docs)]

mod anvil;
mod artifacts;
mod contracts;
mod deploy;
mod npm;
pub mod orders;
mod transact;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::sol_types::{SolCall, SolEvent};
use anyhow::{Context, ensure};
use pew_chain::Chain;
use pew_poco::Wallet;

pub use anvil::{Anvil, AnvilConfig, DEV_CHAIN_ID};
pub use artifacts::{Artifact, ArtifactSource};
pub use deploy::{CATEGORIES, PocoDeployment, deploy_poco};
pub use npm::NpmPackages;
pub use transact::{deploy_contract, transact};

use contracts::{IAppRegistry, IWorkerpoolRegistry, IexecAdmin, IexecEscrowNative, IexecMarket};

/// Wei per nRLC in native mode (`IexecEscrowNativeFacet.nRLCtoWei`).
pub const WEI_PER_NRLC: u64 = 1_000_000_000;

/// Price of one task of the dev workerpool, in nRLC. Non-zero so that the workerpool owner,
/// the requester and the workers really stake: a worker locks 30 % of it per contribution.
pub const WORKERPOOL_PRICE_NRLC: u64 = 1_000_000;

/// Deposited in the hub for the scheduler, the requester and each funded worker, in wei
/// (1 coin = 10⁹ nRLC: a thousand tasks' worth).
pub const STAKE_DEPOSIT_WEI: u128 = 1_000_000_000_000_000_000;

/// Native coin sent to each funded worker for gas, in wei.
pub const WORKER_GAS_FUND_WEI: u128 = 1_000_000_000_000_000_000;

/// Description of the dev workerpool (also its CREATE2 salt in the registry).
const WORKERPOOL_DESCRIPTION: &str = "pew dev workerpool";

/// A running dev chain with PoCo deployed.
pub struct DevChain {
    /// JSON-RPC endpoint.
    pub rpc_url: String,
    /// Chain id ([`DEV_CHAIN_ID`]).
    pub chain_id: u64,
    /// The PoCo hub (diamond proxy).
    pub hub: Address,
    /// Deployed PoCo addresses, the hub included.
    pub poco: PocoDeployment,
    /// The workerpool, owned by `scheduler`.
    pub workerpool: Address,
    /// PoCo owner, app owner, faucet.
    pub deployer: Wallet,
    /// Workerpool owner.
    pub scheduler: Wallet,
    /// Buyer of the deals.
    pub requester: Wallet,
    deployer_chain: Chain,
    requester_chain: Chain,
    next_order_salt: AtomicU64,
    anvil: Anvil,
}

impl DevChain {
    /// Installs the npm packages if needed, starts anvil with its files in `dir`, deploys PoCo,
    /// creates the scheduler's workerpool and deposits the scheduler's and requester's stakes.
    pub async fn start(dir: &Path) -> anyhow::Result<Self> {
        let packages = tokio::task::spawn_blocking(NpmPackages::install)
            .await
            .context("npm install task")??;
        let started = Instant::now();
        let anvil = Anvil::start(&packages.anvil_binary()?, dir, AnvilConfig::default()).await?;
        let [deployer, scheduler, requester] = match anvil.accounts() {
            [deployer, scheduler, requester, ..] => {
                [deployer.clone(), scheduler.clone(), requester.clone()]
            }
            accounts => anyhow::bail!("anvil has {} accounts, 3 are needed", accounts.len()),
        };
        let rpc_url = anvil.rpc_url().to_owned();
        // The hub address is known only after deployment; `with_hub` re-targets this sender.
        let deployer_chain = Chain::connect(&rpc_url, Address::ZERO, Some(&deployer), None).await?;
        let poco = deploy_poco(&deployer_chain, &packages.poco()).await?;
        let deployer_chain = deployer_chain.with_hub(poco.hub);
        tracing::info!(elapsed = ?started.elapsed(), hub = %poco.hub, "PoCo deployed");

        let scheduler_chain = Chain::connect(&rpc_url, poco.hub, Some(&scheduler), None).await?;
        let workerpool = create_workerpool(&scheduler_chain, poco.workerpool_registry).await?;
        deposit(&scheduler_chain, scheduler.address(), STAKE_DEPOSIT_WEI).await?;
        let requester_chain = Chain::connect(&rpc_url, poco.hub, Some(&requester), None).await?;
        deposit(&requester_chain, requester.address(), STAKE_DEPOSIT_WEI).await?;

        Ok(Self {
            chain_id: deployer_chain.chain_id(),
            rpc_url,
            hub: poco.hub,
            poco,
            workerpool,
            deployer,
            scheduler,
            requester,
            deployer_chain,
            requester_chain,
            next_order_salt: AtomicU64::new(1),
            anvil,
        })
    }

    /// Gives `worker` native coin for gas and deposits its stake in the hub.
    pub async fn fund_worker(&self, worker: Address) -> anyhow::Result<()> {
        transact(
            &self.deployer_chain,
            Some(worker),
            U256::from(WORKER_GAS_FUND_WEI),
            Vec::new(),
        )
        .await
        .context("sending gas money to the worker")?;
        deposit(&self.deployer_chain, worker, STAKE_DEPOSIT_WEI).await
    }

    /// Registers a Docker app owned by the deployer (image name as multiaddr) and returns its
    /// address; registering the same image and checksum again returns the same app.
    pub async fn deploy_app(&self, image: &str, checksum: B256) -> anyhow::Result<Address> {
        let owner = self.deployer.address();
        let predict = IAppRegistry::predictAppCall {
            owner,
            name: image.into(),
            appType: "DOCKER".into(),
            multiaddr: Bytes::copy_from_slice(image.as_bytes()),
            checksum,
            mrEnclave: Bytes::new(),
        };
        let app = self
            .deployer_chain
            .call_sol(self.poco.app_registry, &predict)
            .await?;
        if self.deployer_chain.code_at(app).await?.is_empty() {
            let create = IAppRegistry::createAppCall {
                owner,
                name: predict.name,
                appType: predict.appType,
                multiaddr: predict.multiaddr,
                checksum,
                mrEnclave: Bytes::new(),
            };
            transact(
                &self.deployer_chain,
                Some(self.poco.app_registry),
                U256::ZERO,
                create.abi_encode(),
            )
            .await
            .with_context(|| format!("registering app {image}"))?;
        }
        Ok(app)
    }

    /// Creates a deal of `tasks` tasks of `app` (which the deployer must own) on the dev
    /// workerpool: the app owner, the scheduler and the requester sign their orders and the
    /// requester matches them. Returns the deal id; the tasks still need `initialize`.
    pub async fn create_deal(
        &self,
        app: Address,
        category: u64,
        params: &str,
        tasks: u32,
        trust: u64,
    ) -> anyhow::Result<B256> {
        let app_owner = self.deployer_chain.owner_of(app).await?;
        ensure!(
            app_owner == self.deployer.address(),
            "app {app} is owned by {app_owner}, not the deployer"
        );
        let domain = orders::poco_domain(self.chain_id, self.hub);
        let salt = B256::from(U256::from(
            self.next_order_salt.fetch_add(1, Ordering::Relaxed),
        ));
        let volume = U256::from(tasks);
        let price = U256::from(WORKERPOOL_PRICE_NRLC);
        let requester = self.requester.address();

        let app_order = orders::AppOrder {
            app,
            volume,
            salt,
            ..Default::default()
        };
        let workerpool_order = orders::WorkerpoolOrder {
            workerpool: self.workerpool,
            workerpoolprice: price,
            volume,
            category: U256::from(category),
            trust: U256::from(trust),
            salt,
            ..Default::default()
        };
        let request_order = orders::RequestOrder {
            app,
            workerpool: self.workerpool,
            workerpoolmaxprice: price,
            requester,
            volume,
            category: U256::from(category),
            trust: U256::from(trust),
            beneficiary: requester,
            params: params.into(),
            salt,
            ..Default::default()
        };
        let match_orders = IexecMarket::matchOrdersCall {
            apporder: app_order.signed(&domain, &self.deployer),
            datasetorder: IexecMarket::DatasetOrder::default(),
            workerpoolorder: workerpool_order.signed(&domain, &self.scheduler),
            requestorder: request_order.signed(&domain, &self.requester),
        };
        let receipt = transact(
            &self.requester_chain,
            Some(self.hub),
            U256::ZERO,
            match_orders.abi_encode(),
        )
        .await
        .context("matching orders")?;
        receipt
            .logs
            .iter()
            .filter(|log| {
                log.address == self.hub
                    && log.topics.first() == Some(&IexecMarket::OrdersMatched::SIGNATURE_HASH)
            })
            .find_map(|log| {
                IexecMarket::OrdersMatched::decode_raw_log(log.topics.iter().copied(), &log.data)
                    .ok()
            })
            .map(|matched| matched.dealid)
            .context("matchOrders emitted no OrdersMatched event")
    }

    /// Creates a category whose tasks may run `work_clock_time_ref` seconds (the default ones
    /// are XS..XL, 300 s and more; tests need shorter ones) and returns its index.
    pub async fn create_category(
        &self,
        name: &str,
        work_clock_time_ref: u64,
    ) -> anyhow::Result<u64> {
        let index = self
            .deployer_chain
            .call_sol(self.hub, &IexecAdmin::countCategoryCall {})
            .await?;
        let create = IexecAdmin::createCategoryCall {
            name: name.into(),
            description: "\"\"".into(),
            workClockTimeRef: U256::from(work_clock_time_ref),
        };
        transact(
            &self.deployer_chain,
            Some(self.hub),
            U256::ZERO,
            create.abi_encode(),
        )
        .await
        .with_context(|| format!("creating category {name}"))?;
        u64::try_from(index).context("category index")
    }

    /// Stops anvil (also done on drop).
    pub fn stop(&mut self) {
        self.anvil.stop();
    }
}

/// Creates the dev workerpool owned by the sender of `scheduler_chain`.
async fn create_workerpool(scheduler_chain: &Chain, registry: Address) -> anyhow::Result<Address> {
    let owner = scheduler_chain
        .sender_address()
        .context("the scheduler chain has no wallet")?;
    let predict = IWorkerpoolRegistry::predictWorkerpoolCall {
        owner,
        description: WORKERPOOL_DESCRIPTION.into(),
    };
    let workerpool = scheduler_chain.call_sol(registry, &predict).await?;
    let create = IWorkerpoolRegistry::createWorkerpoolCall {
        owner,
        description: WORKERPOOL_DESCRIPTION.into(),
    };
    transact(
        scheduler_chain,
        Some(registry),
        U256::ZERO,
        create.abi_encode(),
    )
    .await
    .context("creating the workerpool")?;
    let actual_owner = scheduler_chain.owner_of(workerpool).await?;
    ensure!(
        actual_owner == owner,
        "workerpool {workerpool} is owned by {actual_owner}, expected {owner}"
    );
    Ok(workerpool)
}

/// Deposits `wei` into `beneficiary`'s hub account (as nRLC stake), paid by the sender.
async fn deposit(payer: &Chain, beneficiary: Address, wei: u128) -> anyhow::Result<()> {
    let input = if payer.sender_address() == Some(beneficiary) {
        IexecEscrowNative::depositCall {}.abi_encode()
    } else {
        IexecEscrowNative::depositForCall {
            target: beneficiary,
        }
        .abi_encode()
    };
    transact(payer, Some(payer.hub()), U256::from(wei), input)
        .await
        .with_context(|| format!("depositing stake for {beneficiary}"))?;
    Ok(())
}
