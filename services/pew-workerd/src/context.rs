//! What every replicate shares: the clients of the scheduler, the chain, the container engine,
//! the result proxy and the power manager, the journal, and the [`Board`].

use std::path::PathBuf;
use std::sync::Arc;

use pew_chain::Chain;
use pew_containers::Engine;
use pew_iexec::model::PublicConfiguration;
use pew_poco::{Address, Wallet};
use pew_scheduler::{ResultProxyClient, SchedulerClient};

use crate::board::Board;
use crate::config::WorkerdConfig;
use crate::journal::Journal;
use crate::power::PowerLink;

pub struct Context {
    pub config: WorkerdConfig,
    pub wallet: Arc<Wallet>,
    pub scheduler: SchedulerClient,
    pub result_proxy: ResultProxyClient,
    pub chain: Chain,
    pub engine: Engine,
    /// For inputs and datasets.
    pub http: reqwest::Client,
    pub public: PublicConfiguration,
    pub workerpool: Address,
    pub hub: Address,
    pub journal: Journal,
    pub tasks_dir: PathBuf,
    pub power: Option<PowerLink>,
    pub board: Arc<Board>,
}

pub struct ContextParts {
    pub config: WorkerdConfig,
    pub wallet: Arc<Wallet>,
    pub scheduler: SchedulerClient,
    pub result_proxy: ResultProxyClient,
    pub chain: Chain,
    pub engine: Engine,
    pub http: reqwest::Client,
    pub public: PublicConfiguration,
    pub workerpool: Address,
    pub hub: Address,
    pub power: Option<PowerLink>,
    pub board: Arc<Board>,
}

impl Context {
    pub fn new(parts: ContextParts) -> Result<Arc<Self>, crate::journal::JournalError> {
        let data = parts.config.data_dir.clone();
        let journal = Journal::open(&data.join("replicates"))?;
        let context = Self {
            tasks_dir: data.join("tasks"),
            config: parts.config,
            wallet: parts.wallet,
            scheduler: parts.scheduler,
            result_proxy: parts.result_proxy,
            chain: parts.chain,
            engine: parts.engine,
            http: parts.http,
            public: parts.public,
            workerpool: parts.workerpool,
            hub: parts.hub,
            journal,
            power: parts.power,
            board: parts.board,
        };
        Ok(Arc::new(context))
    }
}
