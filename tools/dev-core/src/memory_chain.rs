//! An in-memory subset of PoCo v6, for testing the scheduler's workflow without a node.
//!
//! It keeps the rules the scheduler relies on (§2.5 of the protocol reference): `initialize`
//! deadlines, `contribute` weights and the consensus test, `reveal` checks against the consensus
//! value, and `finalize` preconditions. Tests play the worker's on-chain part with
//! [`MemoryChain::contribute`] and [`MemoryChain::reveal`]. Signatures, stakes and gas are not
//! modelled: they are the worker's and the contracts' business, not the scheduler's.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use pew_poco::{Address, B256};

use crate::chain::{
    CONTRIBUTION_DEADLINE_RATIO, ChainContributionView, ChainDealView, ChainFault, ChainFuture,
    ChainTaskStatus, ChainTaskView, ContributionStatus, FINAL_DEADLINE_RATIO,
    REVEAL_DEADLINE_RATIO, SchedulerChain, weight_from_score,
};
use crate::clock::Clock;

#[derive(Debug, Clone)]
struct Contribution {
    status: ContributionStatus,
    result_hash: B256,
}

#[derive(Debug, Clone)]
struct TaskRecord {
    view: ChainTaskView,
    time_ref: u64,
    trust: u64,
    contributions: HashMap<Address, Contribution>,
    /// Consensus groups: result hash → weight (PoCo `m_group`).
    groups: HashMap<B256, u64>,
    /// PoCo `m_total`, starting at 1.
    total: u64,
    consensus_block: Option<u64>,
    results: Vec<u8>,
}

#[derive(Debug, Default)]
struct Ledger {
    block: u64,
    deals: HashMap<B256, ChainDealView>,
    tasks: HashMap<B256, TaskRecord>,
    scores: HashMap<Address, u64>,
    unreachable: bool,
}

/// An in-memory PoCo hub; see the module documentation.
#[derive(Debug)]
pub struct MemoryChain {
    ledger: Mutex<Ledger>,
    clock: Clock,
}

impl MemoryChain {
    /// An empty hub at block 1 whose timestamps come from `clock`.
    pub fn new(clock: Clock) -> Self {
        Self {
            ledger: Mutex::new(Ledger {
                block: 1,
                ..Ledger::default()
            }),
            clock,
        }
    }

    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn reachable_ledger(&self) -> Result<MutexGuard<'_, Ledger>, ChainFault> {
        let ledger = self.ledger();
        if ledger.unreachable {
            return Err(ChainFault::Unreachable("memory chain switched off".into()));
        }
        Ok(ledger)
    }

    /// Records a deal, as `matchOrders` would.
    pub fn add_deal(&self, deal_id: B256, deal: ChainDealView) {
        self.ledger().deals.insert(deal_id, deal);
    }

    /// Sets a worker's score (the weight is derived from it).
    pub fn set_score(&self, worker: Address, score: u64) {
        self.ledger().scores.insert(worker, score);
    }

    /// Makes every call fail as if the node were down (`false`), or back up (`true`).
    pub fn set_reachable(&self, reachable: bool) {
        self.ledger().unreachable = !reachable;
    }

    /// Current block number.
    pub fn current_block(&self) -> u64 {
        self.ledger().block
    }

    /// The worker's `contribute`: checks PoCo's preconditions, adds the weight and tests
    /// consensus. Returns the block of the transaction.
    pub fn contribute(
        &self,
        task_id: B256,
        worker: Address,
        result_hash: B256,
    ) -> Result<u64, ChainFault> {
        let now = self.clock.unix_secs();
        let mut ledger = self.reachable_ledger()?;
        let score = ledger.scores.get(&worker).copied().unwrap_or(0);
        ledger.block += 1;
        let block = ledger.block;
        let task = ledger
            .tasks
            .get_mut(&task_id)
            .ok_or_else(|| revert("task not initialized"))?;
        if task.view.status != ChainTaskStatus::Active {
            return Err(revert("task not active"));
        }
        if task.view.contribution_deadline <= now {
            return Err(revert("contribution deadline passed"));
        }
        if task.contributions.contains_key(&worker) {
            return Err(revert("already contributed"));
        }
        task.contributions.insert(
            worker,
            Contribution {
                status: ContributionStatus::Contributed,
                result_hash,
            },
        );
        let weight = weight_from_score(score);
        let group = task.groups.get(&result_hash).copied().unwrap_or(0);
        let delta = group.max(1) * weight - group;
        task.groups.insert(result_hash, group + delta);
        task.total += delta;
        check_consensus(task, result_hash, now, block);
        Ok(block)
    }

    /// The worker's `reveal`: checks PoCo's preconditions. Returns the block of the transaction.
    pub fn reveal(&self, task_id: B256, worker: Address, digest: B256) -> Result<u64, ChainFault> {
        let now = self.clock.unix_secs();
        let mut ledger = self.reachable_ledger()?;
        ledger.block += 1;
        let block = ledger.block;
        let task = ledger
            .tasks
            .get_mut(&task_id)
            .ok_or_else(|| revert("task not initialized"))?;
        if task.view.status != ChainTaskStatus::Revealing || task.view.reveal_deadline <= now {
            return Err(revert("task not revealing"));
        }
        let consensus = task.view.consensus_value;
        let contribution = task
            .contributions
            .get_mut(&worker)
            .ok_or_else(|| revert("no contribution"))?;
        if contribution.status != ContributionStatus::Contributed
            || contribution.result_hash != consensus
        {
            return Err(revert("not a winner"));
        }
        if pew_poco::result_hash(task_id, digest) != contribution.result_hash {
            return Err(revert("digest does not match the contribution"));
        }
        contribution.status = ContributionStatus::Revealed;
        task.view.reveal_counter += 1;
        Ok(block)
    }

    /// Results passed to `finalize`, once finalized.
    pub fn finalized_results(&self, task_id: B256) -> Option<Vec<u8>> {
        let ledger = self.ledger();
        let task = ledger.tasks.get(&task_id)?;
        (task.view.status == ChainTaskStatus::Completed).then(|| task.results.clone())
    }
}

fn revert(reason: &str) -> ChainFault {
    ChainFault::TransactionFailed(reason.to_owned())
}

/// PoCo `checkConsensus`: the group of `hash` wins when `group · trust > total · (trust − 1)`.
fn check_consensus(task: &mut TaskRecord, hash: B256, now: u64, block: u64) {
    let group = task.groups.get(&hash).copied().unwrap_or(0);
    let trust = task.trust.max(1);
    if group * trust > task.total * (trust - 1) {
        task.view.status = ChainTaskStatus::Revealing;
        task.view.consensus_value = hash;
        task.view.reveal_deadline = now + REVEAL_DEADLINE_RATIO * task.time_ref;
        task.view.reveal_counter = 0;
        task.view.winner_counter = task
            .contributions
            .values()
            .filter(|contribution| contribution.result_hash == hash)
            .count() as u64;
        task.consensus_block = Some(block);
        for contribution in task.contributions.values_mut() {
            if contribution.result_hash != hash {
                contribution.status = ContributionStatus::Rejected;
            }
        }
    }
}

fn unset_task() -> ChainTaskView {
    ChainTaskView {
        status: ChainTaskStatus::Unset,
        deal_id: B256::ZERO,
        contribution_deadline: 0,
        reveal_deadline: 0,
        final_deadline: 0,
        consensus_value: B256::ZERO,
        reveal_counter: 0,
        winner_counter: 0,
    }
}

impl SchedulerChain for MemoryChain {
    fn block_number(&self) -> ChainFuture<'_, u64> {
        let result = self.reachable_ledger().map(|ledger| ledger.block);
        Box::pin(async move { result })
    }

    fn deal(&self, deal_id: B256) -> ChainFuture<'_, ChainDealView> {
        let result = self.reachable_ledger().and_then(|ledger| {
            ledger
                .deals
                .get(&deal_id)
                .cloned()
                .ok_or_else(|| ChainFault::Unreachable("unknown deal".into()))
        });
        Box::pin(async move { result })
    }

    fn task(&self, task_id: B256) -> ChainFuture<'_, ChainTaskView> {
        let result = self.reachable_ledger().map(|ledger| {
            ledger
                .tasks
                .get(&task_id)
                .map_or_else(unset_task, |task| task.view.clone())
        });
        Box::pin(async move { result })
    }

    fn contribution(
        &self,
        task_id: B256,
        worker: Address,
    ) -> ChainFuture<'_, ChainContributionView> {
        let result = self.reachable_ledger().map(|ledger| {
            ledger
                .tasks
                .get(&task_id)
                .and_then(|task| task.contributions.get(&worker))
                .map_or(
                    ChainContributionView {
                        status: ContributionStatus::Unset,
                        result_hash: B256::ZERO,
                    },
                    |contribution| ChainContributionView {
                        status: contribution.status,
                        result_hash: contribution.result_hash,
                    },
                )
        });
        Box::pin(async move { result })
    }

    fn worker_weight(&self, worker: Address) -> ChainFuture<'_, u64> {
        let result = self
            .reachable_ledger()
            .map(|ledger| weight_from_score(ledger.scores.get(&worker).copied().unwrap_or(0)));
        Box::pin(async move { result })
    }

    fn consensus_block(&self, task_id: B256, from_block: u64) -> ChainFuture<'_, Option<u64>> {
        let result = self.reachable_ledger().map(|ledger| {
            ledger
                .tasks
                .get(&task_id)
                .and_then(|task| task.consensus_block)
                .filter(|&block| block >= from_block)
        });
        Box::pin(async move { result })
    }

    fn initialize(&self, deal_id: B256, index: u64) -> ChainFuture<'_, u64> {
        let result = self.reachable_ledger().and_then(|mut ledger| {
            let deal = ledger
                .deals
                .get(&deal_id)
                .cloned()
                .ok_or_else(|| revert("unknown deal"))?;
            if index < deal.bot_first || index >= deal.bot_first + deal.bot_size {
                return Err(revert("index outside the deal"));
            }
            let task_id = pew_poco::task_id(deal_id, index);
            if ledger.tasks.contains_key(&task_id) {
                return Err(revert("task already initialized"));
            }
            ledger.block += 1;
            let view = ChainTaskView {
                status: ChainTaskStatus::Active,
                deal_id,
                contribution_deadline: deal.start_time
                    + CONTRIBUTION_DEADLINE_RATIO * deal.category_time_ref,
                final_deadline: deal.start_time + FINAL_DEADLINE_RATIO * deal.category_time_ref,
                ..unset_task()
            };
            let record = TaskRecord {
                view,
                time_ref: deal.category_time_ref,
                trust: deal.trust,
                contributions: HashMap::new(),
                groups: HashMap::new(),
                total: 1,
                consensus_block: None,
                results: Vec::new(),
            };
            ledger.tasks.insert(task_id, record);
            Ok(ledger.block)
        });
        Box::pin(async move { result })
    }

    fn finalize(
        &self,
        task_id: B256,
        results: Vec<u8>,
        _callback_data: Vec<u8>,
    ) -> ChainFuture<'_, u64> {
        let now = self.clock.unix_secs();
        let result = self.reachable_ledger().and_then(|mut ledger| {
            ledger.block += 1;
            let block = ledger.block;
            let task = ledger
                .tasks
                .get_mut(&task_id)
                .ok_or_else(|| revert("task not initialized"))?;
            let view = &mut task.view;
            let enough_reveals = view.reveal_counter == view.winner_counter
                || (view.reveal_counter > 0 && view.reveal_deadline <= now);
            if view.status != ChainTaskStatus::Revealing
                || view.final_deadline <= now
                || !enough_reveals
            {
                return Err(revert("task cannot be finalized"));
            }
            view.status = ChainTaskStatus::Completed;
            task.results = results;
            Ok(block)
        });
        Box::pin(async move { result })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deal(trust: u64, start_time: u64) -> ChainDealView {
        ChainDealView {
            workerpool: Address::repeat_byte(0x0a),
            workerpool_owner: Address::repeat_byte(0x0b),
            trust,
            category_time_ref: 300,
            tag: B256::ZERO,
            callback: Address::ZERO,
            params: String::new(),
            start_time,
            bot_first: 0,
            bot_size: 2,
        }
    }

    fn block_on<T>(future: ChainFuture<'_, T>) -> Result<T, ChainFault> {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(future)
    }

    fn initialized(trust: u64) -> (MemoryChain, B256) {
        let clock = Clock::new();
        let chain = MemoryChain::new(clock.clone());
        let deal_id = B256::repeat_byte(0xde);
        chain.add_deal(deal_id, deal(trust, clock.unix_secs()));
        block_on(chain.initialize(deal_id, 0)).unwrap();
        (chain, pew_poco::task_id(deal_id, 0))
    }

    #[test]
    fn initialize_sets_deadlines_from_the_category() {
        let clock = Clock::new();
        let chain = MemoryChain::new(clock.clone());
        let deal_id = B256::repeat_byte(0xde);
        chain.add_deal(deal_id, deal(1, 1_000));
        assert_eq!(block_on(chain.initialize(deal_id, 1)).unwrap(), 2);
        let task = block_on(chain.task(pew_poco::task_id(deal_id, 1))).unwrap();
        assert_eq!(task.status, ChainTaskStatus::Active);
        assert_eq!(task.contribution_deadline, 1_000 + 7 * 300);
        assert_eq!(task.final_deadline, 1_000 + 10 * 300);
        assert!(block_on(chain.initialize(deal_id, 1)).is_err(), "twice");
        assert!(
            block_on(chain.initialize(deal_id, 2)).is_err(),
            "outside the bag of tasks"
        );
    }

    #[test]
    fn trust_one_reaches_consensus_on_the_first_contribution() {
        let (chain, task_id) = initialized(1);
        let worker = Address::repeat_byte(1);
        let digest = B256::repeat_byte(0x42);
        let block = chain
            .contribute(task_id, worker, pew_poco::result_hash(task_id, digest))
            .unwrap();
        let task = block_on(chain.task(task_id)).unwrap();
        assert_eq!(task.status, ChainTaskStatus::Revealing);
        assert_eq!(task.winner_counter, 1);
        assert_eq!(
            block_on(chain.consensus_block(task_id, 0)).unwrap(),
            Some(block)
        );
        assert_eq!(
            block_on(chain.consensus_block(task_id, block + 1)).unwrap(),
            None
        );
    }

    #[test]
    fn trust_three_needs_two_agreeing_default_weight_workers() {
        // weight 2 each: after one, group 2, total 1 + 2 = 3: 2·3 > 3·2 is false.
        // after two agreeing, group 4, total 5: 4·3 = 12 > 5·2 = 10.
        let (chain, task_id) = initialized(3);
        let hash = pew_poco::result_hash(task_id, B256::repeat_byte(0x42));
        chain
            .contribute(task_id, Address::repeat_byte(1), hash)
            .unwrap();
        assert_eq!(
            block_on(chain.task(task_id)).unwrap().status,
            ChainTaskStatus::Active
        );
        chain
            .contribute(task_id, Address::repeat_byte(2), hash)
            .unwrap();
        let task = block_on(chain.task(task_id)).unwrap();
        assert_eq!(task.status, ChainTaskStatus::Revealing);
        assert_eq!(task.winner_counter, 2);
    }

    #[test]
    fn disagreeing_contribution_delays_consensus_and_is_rejected() {
        let (chain, task_id) = initialized(3);
        let good = pew_poco::result_hash(task_id, B256::repeat_byte(0x42));
        let bad = pew_poco::result_hash(task_id, B256::repeat_byte(0x66));
        chain
            .contribute(task_id, Address::repeat_byte(1), good)
            .unwrap();
        chain
            .contribute(task_id, Address::repeat_byte(2), bad)
            .unwrap();
        // group(good) = 2, total = 1 + 2 + 2 = 5: 6 > 8 false.
        chain
            .contribute(task_id, Address::repeat_byte(3), good)
            .unwrap();
        // group(good) = 4, total = 7: 12 > 14 false: still active.
        assert_eq!(
            block_on(chain.task(task_id)).unwrap().status,
            ChainTaskStatus::Active
        );
        chain
            .contribute(task_id, Address::repeat_byte(4), good)
            .unwrap();
        // group(good) = 8, total = 11: 24 > 22.
        let task = block_on(chain.task(task_id)).unwrap();
        assert_eq!(task.status, ChainTaskStatus::Revealing);
        assert_eq!(task.winner_counter, 3);
        let loser = block_on(chain.contribution(task_id, Address::repeat_byte(2))).unwrap();
        assert_eq!(loser.status, ContributionStatus::Rejected);
    }

    #[test]
    fn reveal_requires_the_matching_digest_then_finalize_completes() {
        let (chain, task_id) = initialized(1);
        let worker = Address::repeat_byte(1);
        let digest = B256::repeat_byte(0x42);
        chain
            .contribute(task_id, worker, pew_poco::result_hash(task_id, digest))
            .unwrap();
        assert!(
            block_on(chain.finalize(task_id, b"link".to_vec(), Vec::new())).is_err(),
            "no reveal yet"
        );
        assert!(
            chain
                .reveal(task_id, worker, B256::repeat_byte(0x43))
                .is_err()
        );
        chain.reveal(task_id, worker, digest).unwrap();
        assert_eq!(
            block_on(chain.contribution(task_id, worker))
                .unwrap()
                .status,
            ContributionStatus::Revealed
        );
        block_on(chain.finalize(task_id, b"link".to_vec(), Vec::new())).unwrap();
        assert_eq!(chain.finalized_results(task_id), Some(b"link".to_vec()));
    }

    #[test]
    fn switched_off_chain_answers_nothing() {
        let (chain, task_id) = initialized(1);
        chain.set_reachable(false);
        assert!(matches!(
            block_on(chain.block_number()),
            Err(ChainFault::Unreachable(_))
        ));
        assert!(
            chain
                .contribute(task_id, Address::repeat_byte(1), B256::ZERO)
                .is_err()
        );
        chain.set_reachable(true);
        assert!(block_on(chain.block_number()).is_ok());
    }

    #[test]
    fn contribution_after_the_deadline_reverts() {
        let clock = Clock::new();
        let chain = MemoryChain::new(clock.clone());
        let deal_id = B256::repeat_byte(0xde);
        chain.add_deal(deal_id, deal(1, clock.unix_secs()));
        block_on(chain.initialize(deal_id, 0)).unwrap();
        clock.advance(std::time::Duration::from_secs(7 * 300));
        let task_id = pew_poco::task_id(deal_id, 0);
        assert!(
            chain
                .contribute(task_id, Address::repeat_byte(1), B256::ZERO)
                .is_err()
        );
    }
}
