//! What the scheduler and the result proxy need from the chain, behind one small port.
//!
//! Production and end-to-end tests use [`PocoChain`](crate::PocoChain) (PoCo through JSON-RPC);
//! the workflow tests use [`MemoryChain`](crate::MemoryChain), an in-memory PoCo subset, so that
//! the scheduler's logic can be exercised without a node.

use std::future::Future;
use std::pin::Pin;

use pew_poco::{Address, B256};

/// PoCo `CONTRIBUTION_DEADLINE_RATIO`: contributions close `7 · timeref` after the deal start.
pub const CONTRIBUTION_DEADLINE_RATIO: u64 = 7;
/// PoCo `REVEAL_DEADLINE_RATIO`: reveals close `2 · timeref` after consensus.
pub const REVEAL_DEADLINE_RATIO: u64 = 2;
/// PoCo `FINAL_DEADLINE_RATIO`: the task can be claimed `10 · timeref` after the deal start.
pub const FINAL_DEADLINE_RATIO: u64 = 10;

/// A boxed future, so that [`SchedulerChain`] can be used as a trait object.
pub type ChainFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, ChainFault>> + Send + 'a>>;

/// A chain call that did not give an answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainFault {
    /// The node did not answer, or answered something undecodable.
    #[error("chain unreachable: {0}")]
    Unreachable(String),
    /// A transaction was mined but reverted, or could not be sent.
    #[error("transaction failed: {0}")]
    TransactionFailed(String),
}

/// On-chain task status (PoCo `IexecLibCore_v5.TaskStatusEnum`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ChainTaskStatus {
    /// Not initialized.
    Unset,
    /// Initialized, accepting contributions.
    Active,
    /// Consensus reached, accepting reveals.
    Revealing,
    /// Finalized.
    Completed,
    /// Claimed after the final deadline.
    Failed,
}

/// On-chain contribution status (PoCo `ContributionStatusEnum`; `PROVED` is iExec's `REVEALED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContributionStatus {
    /// No contribution.
    Unset,
    /// Contributed, not revealed.
    Contributed,
    /// Revealed (`PROVED`).
    Revealed,
    /// Contributed a hash other than the consensus.
    Rejected,
}

/// The fields of `viewTaskABILegacy` the scheduler reads. Times are Unix seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainTaskView {
    /// Task status.
    pub status: ChainTaskStatus,
    /// Deal of the task, zero while not initialized.
    pub deal_id: B256,
    /// No contribution accepted after it.
    pub contribution_deadline: u64,
    /// No reveal accepted after it; zero before consensus.
    pub reveal_deadline: u64,
    /// The task can be claimed after it.
    pub final_deadline: u64,
    /// Winning result hash, zero before consensus.
    pub consensus_value: B256,
    /// Winners that revealed.
    pub reveal_counter: u64,
    /// Contributors of the consensus value.
    pub winner_counter: u64,
}

/// The fields of `viewDeal` (and its category) the scheduler and the proxy read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainDealView {
    /// Workerpool contract of the deal.
    pub workerpool: Address,
    /// Owner of that workerpool when the deal was made: the key that signs authorizations.
    pub workerpool_owner: Address,
    /// Requested trust.
    pub trust: u64,
    /// Category `workClockTimeRef`, seconds.
    pub category_time_ref: u64,
    /// Deal tag.
    pub tag: B256,
    /// Callback contract, zero for none.
    pub callback: Address,
    /// Deal parameters as stored (usually JSON).
    pub params: String,
    /// Unix seconds the deal started.
    pub start_time: u64,
    /// First task index of the deal.
    pub bot_first: u64,
    /// Number of tasks of the deal.
    pub bot_size: u64,
}

/// The fields of `viewContribution` the scheduler and the proxy read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainContributionView {
    /// Contribution status.
    pub status: ContributionStatus,
    /// `keccak(taskId ‖ digest)` contributed.
    pub result_hash: B256,
}

/// The chain, as seen by the scheduler (whose wallet sends `initialize` and `finalize`).
pub trait SchedulerChain: Send + Sync + 'static {
    /// Latest block number; also the scheduler's health check.
    fn block_number(&self) -> ChainFuture<'_, u64>;

    /// `viewDeal` and `viewCategory` of its category.
    fn deal(&self, deal_id: B256) -> ChainFuture<'_, ChainDealView>;

    /// `viewTaskABILegacy`.
    fn task(&self, task_id: B256) -> ChainFuture<'_, ChainTaskView>;

    /// `viewContribution`.
    fn contribution(
        &self,
        task_id: B256,
        worker: Address,
    ) -> ChainFuture<'_, ChainContributionView>;

    /// Worker weight in the consensus, `max(score / 3, 3) − 1` (`IexecHubService.getWorkerWeight`).
    fn worker_weight(&self, worker: Address) -> ChainFuture<'_, u64>;

    /// Block of the task's `TaskConsensus` event, searched from `from_block`; `None` if absent.
    fn consensus_block(&self, task_id: B256, from_block: u64) -> ChainFuture<'_, Option<u64>>;

    /// Sends `initialize(dealId, index)` and waits for it; returns the block it was mined in.
    fn initialize(&self, deal_id: B256, index: u64) -> ChainFuture<'_, u64>;

    /// Sends `finalize(taskId, results, resultsCallback)` and waits for it; returns its block.
    fn finalize(
        &self,
        task_id: B256,
        results: Vec<u8>,
        callback_data: Vec<u8>,
    ) -> ChainFuture<'_, u64>;
}

/// `IexecHubService.getWorkerWeight`: `max(score / 3, 3) − 1`, so at least 2.
pub fn weight_from_score(score: u64) -> u64 {
    (score / 3).max(3) - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_is_at_least_two_and_grows_with_score() {
        assert_eq!(weight_from_score(0), 2);
        assert_eq!(weight_from_score(11), 2);
        assert_eq!(weight_from_score(12), 3);
        assert_eq!(weight_from_score(300), 99);
    }
}
