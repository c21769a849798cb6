//! How many replicates the scheduler hands out, and when it believes consensus is reached
//! (iexec-core `ConsensusHelper`, `PredictionHelper`, `ContributionHelper`,
//! `TaskService.isConsensusReached`).
//!
//! The scheduler assumes every pending replicate will agree with the best contributed result and
//! stops handing the task out once that would satisfy PoCo's consensus test
//! `best · trust > (1 + all) · (trust − 1)`. A pending replicate older than one execution period
//! is no longer counted.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use pew_iexec::status::ReplicateStatus;
use pew_poco::B256;

use crate::chain::{ChainTaskStatus, ChainTaskView};
use crate::replicate::Replicate;

/// Combined weight of a group of agreeing workers: `max(group, 1) · weight` for each member,
/// as PoCo accumulates it.
fn combine(group: u64, weight: u64) -> u64 {
    group.max(1) * weight
}

fn is_contributed(replicate: &Replicate) -> bool {
    replicate.last_relevant_status() == ReplicateStatus::Contributed
}

/// Weight of the replicates that contributed `hash` (`getContributedWeight`).
fn contributed_weight(replicates: &[Replicate], hash: B256) -> u64 {
    replicates
        .iter()
        .filter(|replicate| {
            is_contributed(replicate)
                && replicate.contribution_hash == Some(hash)
                && replicate.worker_weight > 0
        })
        .fold(0, |group, replicate| {
            combine(group, replicate.worker_weight)
        })
}

/// Weight of the replicates still expected to contribute (`getPendingWeight`).
fn pending_weight(replicates: &[Replicate], period: Duration, now: Instant) -> u64 {
    replicates
        .iter()
        .filter(|replicate| {
            let recent = now.saturating_duration_since(replicate.created_at()) <= period;
            let status = replicate.last_relevant_status();
            recent
                && status != ReplicateStatus::Contributed
                && status != ReplicateStatus::Failed
                && replicate.worker_weight > 0
        })
        .fold(0, |group, replicate| {
            combine(group, replicate.worker_weight)
        })
}

/// The contributed hash with the highest weight and that weight; ties go to the last one seen,
/// as upstream (`>=` over a hash set, whose order is arbitrary upstream and sorted here).
fn best_contribution(replicates: &[Replicate]) -> (Option<B256>, u64) {
    distinct_contributions(replicates)
        .into_iter()
        .map(|hash| (Some(hash), contributed_weight(replicates, hash)))
        .fold((None, 0), |best, candidate| {
            if candidate.1 >= best.1 {
                candidate
            } else {
                best
            }
        })
}

fn distinct_contributions(replicates: &[Replicate]) -> BTreeSet<B256> {
    replicates
        .iter()
        .filter(|replicate| is_contributed(replicate))
        .filter_map(|r| r.contribution_hash)
        .collect()
}

/// `ConsensusHelper.doesTaskNeedMoreContributionsForConsensus`: whether one more replicate is
/// worth handing out.
pub fn needs_more_contributions(
    replicates: &[Replicate],
    trust: u64,
    period: Duration,
    now: Instant,
) -> bool {
    let trust = trust.max(1);
    let (best_hash, contributed_best) = best_contribution(replicates);
    let pending = pending_weight(replicates, period, now);
    let best = match (pending, contributed_best) {
        (0, weight) | (weight, 0) => weight,
        (pending, contributed) => pending * contributed,
    };
    let worst: u64 = distinct_contributions(replicates)
        .into_iter()
        .filter(|&hash| Some(hash) != best_hash)
        .map(|hash| contributed_weight(replicates, hash))
        .sum();
    let all = worst + best;
    best * trust <= (1 + all) * (trust - 1)
}

/// `TaskService.isConsensusReached`: the chain says `REVEALING` and the scheduler has heard of at
/// least as many winners as the chain counts.
pub fn is_consensus_reached(chain_task: &ChainTaskView, replicates: &[Replicate]) -> bool {
    if chain_task.status != ChainTaskStatus::Revealing {
        return false;
    }
    let off_chain_winners = replicates
        .iter()
        .filter(|replicate| {
            is_contributed(replicate)
                && replicate.contribution_hash == Some(chain_task.consensus_value)
        })
        .count() as u64;
    off_chain_winners >= chain_task.winner_counter
}

#[cfg(test)]
mod tests {
    use super::*;
    use pew_iexec::model::ReplicateStatusUpdate;

    const PERIOD: Duration = Duration::from_secs(300);

    fn pending(now: Instant) -> Replicate {
        Replicate::created("0xp".into(), 2, now, 0)
    }

    fn contributed(now: Instant, hash: B256) -> Replicate {
        let mut replicate = Replicate::created("0xc".into(), 2, now, 0);
        replicate.push(ReplicateStatusUpdate::new(ReplicateStatus::Contributed));
        replicate.contribution_hash = Some(hash);
        replicate
    }

    fn revealing(consensus: B256, winners: u64) -> ChainTaskView {
        ChainTaskView {
            status: ChainTaskStatus::Revealing,
            deal_id: B256::ZERO,
            contribution_deadline: 0,
            reveal_deadline: 0,
            final_deadline: 0,
            consensus_value: consensus,
            reveal_counter: 0,
            winner_counter: winners,
        }
    }

    #[test]
    fn trust_one_hands_out_one_replicate_at_a_time() {
        let now = Instant::now();
        assert!(needs_more_contributions(&[], 1, PERIOD, now));
        assert!(!needs_more_contributions(&[pending(now)], 1, PERIOD, now));
        // trust 0 behaves like trust 1.
        assert!(!needs_more_contributions(&[pending(now)], 0, PERIOD, now));
    }

    #[test]
    fn a_pending_replicate_older_than_one_period_is_replaced() {
        let now = Instant::now();
        let old = Replicate::created("0xold".into(), 2, now, 0);
        assert!(needs_more_contributions(
            &[old],
            1,
            PERIOD,
            now + PERIOD + Duration::from_secs(1)
        ));
    }

    #[test]
    fn trust_three_with_default_weights_needs_two_replicates() {
        // One pending (weight 2): 2·3 = 6 > (1 + 2)·2 = 6 is false: hand out another.
        // Two pending (2·2 = 4): 12 > 10: enough.
        let now = Instant::now();
        assert!(needs_more_contributions(&[pending(now)], 3, PERIOD, now));
        assert!(!needs_more_contributions(
            &[pending(now), pending(now)],
            3,
            PERIOD,
            now
        ));
    }

    #[test]
    fn disagreement_asks_for_more_replicates() {
        let now = Instant::now();
        let a = B256::repeat_byte(0xa);
        let b = B256::repeat_byte(0xb);
        // Two contributions that disagree, trust 3: best = 2, all = 4: 6 > 10 is false.
        let replicates = [contributed(now, a), contributed(now, b)];
        assert!(needs_more_contributions(&replicates, 3, PERIOD, now));
    }

    #[test]
    fn consensus_needs_the_chain_and_every_winner_heard_of() {
        let now = Instant::now();
        let hash = B256::repeat_byte(0xa);
        let replicates = [contributed(now, hash), pending(now)];
        assert!(is_consensus_reached(&revealing(hash, 1), &replicates));
        assert!(
            !is_consensus_reached(&revealing(hash, 2), &replicates),
            "one winner not reported yet"
        );
        let mut active = revealing(hash, 1);
        active.status = ChainTaskStatus::Active;
        assert!(!is_consensus_reached(&active, &replicates));
    }
}
