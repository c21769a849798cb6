//! [`SchedulerChain`] on a real PoCo hub, through `pew-chain`: three primitive operations
//! (block number, `eth_call`, transaction), everything else decoded here.

use std::path::PathBuf;

use pew_chain::{Chain, ChainError};
use pew_poco::abi::{self, ChainCategory, ChainContribution, ChainDeal, ChainTask};
use pew_poco::{Address, B256, Wallet};

use crate::chain::{
    ChainContributionView, ChainDealView, ChainFault, ChainFuture, ChainTaskStatus, ChainTaskView,
    ContributionStatus, SchedulerChain, weight_from_score,
};

/// The hub of a PoCo deployment, with the scheduler's wallet as transaction sender.
#[derive(Debug, Clone)]
pub struct PocoChain {
    chain: Chain,
}

fn fault(error: ChainError) -> ChainFault {
    match error {
        ChainError::Reverted { .. } => ChainFault::TransactionFailed(error.to_string()),
        other => ChainFault::Unreachable(other.to_string()),
    }
}

fn undecodable(error: abi::AbiError) -> ChainFault {
    ChainFault::Unreachable(format!("undecodable answer: {error}"))
}

impl PocoChain {
    /// Connects to `rpc_url` and the hub at `hub`; `scheduler` signs `initialize` and
    /// `finalize`, with its nonce kept in `nonce_file` if given.
    pub async fn connect(
        rpc_url: &str,
        hub: Address,
        scheduler: &Wallet,
        nonce_file: Option<PathBuf>,
    ) -> Result<Self, ChainFault> {
        Chain::connect(rpc_url, hub, Some(scheduler), nonce_file)
            .await
            .map(Self::new)
            .map_err(fault)
    }

    /// Wraps an existing client (it must have the scheduler's wallet to send transactions).
    pub fn new(chain: Chain) -> Self {
        Self { chain }
    }

    async fn block(&self) -> Result<u64, ChainFault> {
        self.chain.block_number().await.map_err(fault)
    }

    async fn view(&self, calldata: Vec<u8>) -> Result<Vec<u8>, ChainFault> {
        self.chain
            .call(self.chain.hub(), calldata)
            .await
            .map(|bytes| bytes.to_vec())
            .map_err(fault)
    }

    /// Sends a transaction to the hub and returns the block that included it.
    async fn send(&self, calldata: Vec<u8>, gas: u64) -> Result<u64, ChainFault> {
        self.chain
            .send(self.chain.hub(), calldata, gas)
            .await
            .map(|receipt| receipt.block_number)
            .map_err(fault)
    }
}

fn task_status(status: abi::TaskStatus) -> ChainTaskStatus {
    match status {
        abi::TaskStatus::Unset => ChainTaskStatus::Unset,
        abi::TaskStatus::Active => ChainTaskStatus::Active,
        abi::TaskStatus::Revealing => ChainTaskStatus::Revealing,
        abi::TaskStatus::Completed => ChainTaskStatus::Completed,
        abi::TaskStatus::Failed => ChainTaskStatus::Failed,
    }
}

fn contribution_status(status: abi::ContributionStatus) -> ContributionStatus {
    match status {
        abi::ContributionStatus::Unset => ContributionStatus::Unset,
        abi::ContributionStatus::Contributed => ContributionStatus::Contributed,
        abi::ContributionStatus::Proved => ContributionStatus::Revealed,
        abi::ContributionStatus::Rejected => ContributionStatus::Rejected,
    }
}

impl SchedulerChain for PocoChain {
    fn block_number(&self) -> ChainFuture<'_, u64> {
        Box::pin(self.block())
    }

    fn deal(&self, deal_id: B256) -> ChainFuture<'_, ChainDealView> {
        Box::pin(async move {
            let deal = ChainDeal::decode(&self.view(abi::view_deal_calldata(deal_id)).await?)
                .map_err(undecodable)?;
            let category = ChainCategory::decode(
                &self
                    .view(abi::view_category_calldata(deal.category))
                    .await?,
            )
            .map_err(undecodable)?;
            Ok(ChainDealView {
                workerpool: deal.workerpool.pointer,
                workerpool_owner: deal.workerpool.owner,
                trust: deal.trust,
                category_time_ref: category.work_clock_time_ref,
                tag: deal.tag,
                callback: deal.callback,
                params: deal.params,
                start_time: deal.start_time,
                bot_first: deal.bot_first,
                bot_size: deal.bot_size,
            })
        })
    }

    fn task(&self, task_id: B256) -> ChainFuture<'_, ChainTaskView> {
        Box::pin(async move {
            let task = ChainTask::decode(&self.view(abi::view_task_calldata(task_id)).await?)
                .map_err(undecodable)?;
            Ok(ChainTaskView {
                status: task_status(task.status),
                deal_id: task.deal_id,
                contribution_deadline: task.contribution_deadline,
                reveal_deadline: task.reveal_deadline,
                final_deadline: task.final_deadline,
                consensus_value: task.consensus_value,
                reveal_counter: task.reveal_counter,
                winner_counter: task.winner_counter,
            })
        })
    }

    fn contribution(
        &self,
        task_id: B256,
        worker: Address,
    ) -> ChainFuture<'_, ChainContributionView> {
        Box::pin(async move {
            let contribution = ChainContribution::decode(
                &self
                    .view(abi::view_contribution_calldata(task_id, worker))
                    .await?,
            )
            .map_err(undecodable)?;
            Ok(ChainContributionView {
                status: contribution_status(contribution.status),
                result_hash: contribution.result_hash,
            })
        })
    }

    fn worker_weight(&self, worker: Address) -> ChainFuture<'_, u64> {
        Box::pin(async move {
            let score = abi::decode_score(&self.view(abi::view_score_calldata(worker)).await?)
                .map_err(undecodable)?;
            Ok(weight_from_score(u64::try_from(score).unwrap_or(u64::MAX)))
        })
    }

    fn consensus_block(&self, _task_id: B256, _from_block: u64) -> ChainFuture<'_, Option<u64>> {
        // pew-chain offers no log query; the scheduler then falls back on the contribution
        // receipts it was sent, which name the block where consensus was reached.
        Box::pin(async move { Ok(None) })
    }

    fn initialize(&self, deal_id: B256, index: u64) -> ChainFuture<'_, u64> {
        Box::pin(async move {
            self.send(
                abi::initialize_calldata(deal_id, index),
                abi::INITIALIZE_GAS,
            )
            .await
        })
    }

    fn finalize(
        &self,
        task_id: B256,
        results: Vec<u8>,
        callback_data: Vec<u8>,
    ) -> ChainFuture<'_, u64> {
        Box::pin(async move {
            self.send(
                abi::finalize_calldata(task_id, &results, &callback_data),
                abi::FINALIZE_GAS,
            )
            .await
        })
    }
}
