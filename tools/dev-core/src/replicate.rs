//! One worker's replicate of a task, as the scheduler records it (`com.iexec.core.replicate.Replicate`).

use std::time::Instant;

use pew_iexec::model::ReplicateStatusUpdate;
use pew_iexec::status::{ReplicateStatus, StatusModifier};
use pew_poco::B256;

/// A replicate: the history of its statuses plus what the chain and the uploader told about it.
#[derive(Debug, Clone)]
pub struct Replicate {
    /// The worker, as the string it logged in with.
    pub worker: String,
    history: Vec<ReplicateStatusUpdate>,
    /// On-chain result hash, once `CONTRIBUTED` was accepted.
    pub contribution_hash: Option<B256>,
    /// Worker weight read from the chain, for the consensus prediction.
    pub worker_weight: u64,
    /// Result link reported with `RESULT_UPLOADED`.
    pub result_link: Option<String>,
    /// Callback data reported with `RESULT_UPLOADED`.
    pub callback_data: Option<String>,
    created: Instant,
}

impl Replicate {
    /// A replicate handed to `worker`, in `CREATED` (set by the pool manager).
    pub(crate) fn created(
        worker: String,
        worker_weight: u64,
        now: Instant,
        date_millis: i64,
    ) -> Self {
        Self {
            worker,
            history: vec![pool_manager_update(ReplicateStatus::Created, date_millis)],
            contribution_hash: None,
            worker_weight,
            result_link: None,
            callback_data: None,
            created: now,
        }
    }

    /// Every status update accepted, oldest first; never empty.
    pub fn history(&self) -> &[ReplicateStatusUpdate] {
        &self.history
    }

    /// The statuses of [`Self::history`].
    pub fn statuses(&self) -> Vec<ReplicateStatus> {
        self.history.iter().map(|update| update.status).collect()
    }

    /// Latest status.
    pub fn current_status(&self) -> ReplicateStatus {
        self.history
            .last()
            .map_or(ReplicateStatus::Created, |update| update.status)
    }

    /// Latest status ignoring `WORKER_LOST` and `RECOVERING`, which say nothing of the progress
    /// (`getLastRelevantStatus`).
    pub fn last_relevant_status(&self) -> ReplicateStatus {
        self.history
            .iter()
            .rev()
            .map(|update| update.status)
            .find(|status| {
                !matches!(
                    status,
                    ReplicateStatus::WorkerLost | ReplicateStatus::Recovering
                )
            })
            .unwrap_or(ReplicateStatus::Created)
    }

    /// Whether the replicate ever went through `status`.
    pub fn contains(&self, status: ReplicateStatus) -> bool {
        self.history.iter().any(|update| update.status == status)
    }

    /// Whether the last relevant status comes before `status` in the enum order (`isBeforeStatus`).
    pub fn is_before(&self, status: ReplicateStatus) -> bool {
        self.last_relevant_status() < status
    }

    /// Whether the replicate was lost right after `status` (`isStatusBeforeWorkerLostEqualsTo`).
    pub fn lost_right_after(&self, status: ReplicateStatus) -> bool {
        matches!(
            self.history.as_slice(),
            [.., before, last] if last.status == ReplicateStatus::WorkerLost && before.status == status
        )
    }

    /// When the core created the replicate.
    pub(crate) fn created_at(&self) -> Instant {
        self.created
    }

    /// Appends an accepted update.
    pub(crate) fn push(&mut self, update: ReplicateStatusUpdate) {
        self.history.push(update);
    }
}

/// An update the scheduler makes itself (`ReplicateStatusUpdate.poolManagerRequest`).
pub(crate) fn pool_manager_update(
    status: ReplicateStatus,
    date_millis: i64,
) -> ReplicateStatusUpdate {
    ReplicateStatusUpdate {
        modifier: Some(StatusModifier::PoolManager),
        date: Some(date_millis),
        ..ReplicateStatusUpdate::new(status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ReplicateStatus as S;

    fn replicate_through(statuses: &[ReplicateStatus]) -> Replicate {
        let mut replicate = Replicate::created("0xw".into(), 2, Instant::now(), 0);
        for &status in statuses {
            replicate.push(ReplicateStatusUpdate::new(status));
        }
        replicate
    }

    #[test]
    fn last_relevant_status_skips_lost_and_recovering() {
        let replicate = replicate_through(&[S::Starting, S::Started, S::WorkerLost, S::Recovering]);
        assert_eq!(replicate.current_status(), S::Recovering);
        assert_eq!(replicate.last_relevant_status(), S::Started);
        assert!(replicate.is_before(S::Contributing));
        assert!(!replicate.is_before(S::Started));
    }

    #[test]
    fn new_replicate_is_created_by_the_pool_manager() {
        let replicate = Replicate::created("0xw".into(), 2, Instant::now(), 1234);
        assert_eq!(replicate.statuses(), vec![S::Created]);
        assert_eq!(
            replicate.history()[0].modifier,
            Some(StatusModifier::PoolManager)
        );
        assert_eq!(replicate.history()[0].date, Some(1234));
    }

    #[test]
    fn lost_right_after_looks_at_the_last_two_statuses_only() {
        let replicate = replicate_through(&[S::ResultUploading, S::ResultUploaded, S::WorkerLost]);
        assert!(replicate.lost_right_after(S::ResultUploaded));
        assert!(!replicate.lost_right_after(S::ResultUploading));
        let replicate = replicate_through(&[S::ResultUploaded]);
        assert!(!replicate.lost_right_after(S::ResultUploaded));
    }
}
