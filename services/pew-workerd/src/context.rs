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
