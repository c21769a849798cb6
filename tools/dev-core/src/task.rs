//! The scheduler's off-chain view of a task (`com.iexec.core.task.Task`).

use std::time::SystemTime;

use pew_poco::{Address, B256};
use serde::Serialize;

/// Off-chain task status (`com.iexec.core.task.TaskStatus`), in the Java declaration order so that
/// the derived `Ord` is Java's ordinal, which the task update manager compares against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskStatus {
    /// Created from a deal, not yet initialized on-chain.
    Received,
    /// `initialize` sent.
    Initializing,
    /// Initialized on-chain; replicates may be handed out.
    Initialized,
    /// `initialize` failed.
    InitializeFailed,
    /// At least one replicate started.
    Running,
    /// Every alive worker failed before computing (TEE tasks only upstream).
    RunningFailed,
    /// The contribution deadline passed before consensus.
    ContributionTimeout,
    /// Consensus reached on-chain; winners are asked to reveal.
    ConsensusReached,
    /// Upstream placeholder for re-opening a task (never reached in v9).
    Reopening,
    /// Upstream placeholder for re-opening a task (never reached in v9).
    Reopened,
    /// Upstream placeholder for re-opening a task (never reached in v9).
    ReopenFailed,
    /// At least one winner revealed.
    AtLeastOneRevealed,
    /// One revealer was asked to upload the result.
    ResultUploading,
    /// The result is on the result proxy.
    ResultUploaded,
    /// The final deadline passed while waiting for the upload.
    ResultUploadTimeout,
    /// `finalize` sent.
    Finalizing,
    /// Finalized on-chain.
    Finalized,
    /// `finalize` failed.
    FinalizeFailed,
    /// The final deadline passed.
    FinalDeadlineReached,
    /// Done: workers are told to complete.
    Completed,
    /// Given up: workers are told to abort.
    Failed,
}

impl TaskStatus {
    /// `COMPLETED` or `FAILED`.
    pub const fn is_final(self) -> bool {
        matches!(self, Self::Completed | Self::Failed)
    }

    /// Statuses in which the task still waits for contributions (`getWaitingContributionStatuses`).
    pub const fn in_contribution_phase(self) -> bool {
        matches!(self, Self::Initialized | Self::Running)
    }

    /// Statuses in which winners may still reveal (`getWaitingRevealStatuses`).
    pub const fn in_reveal_phase(self) -> bool {
        matches!(
            self,
            Self::ConsensusReached
                | Self::AtLeastOneRevealed
                | Self::ResultUploading
                | Self::ResultUploaded
        )
    }

    /// Statuses past the upload (`isInCompletionPhase`).
    pub const fn in_completion_phase(self) -> bool {
        matches!(self, Self::Finalizing | Self::Finalized | Self::Completed)
    }

    /// Statuses the final-deadline rule no longer applies to.
    pub const fn final_deadline_is_moot(self) -> bool {
        self.is_final() || matches!(self, Self::FinalDeadlineReached)
    }
}

/// One entry of a task's status history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskStatusChange {
    /// The status entered.
    pub status: TaskStatus,
    /// When.
    pub date: SystemTime,
}

/// What the scheduler reads from the deal once, when it creates the task
/// (`TaskDescription` upstream, restricted to what the scheduler itself uses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskDescription {
    /// Number of matching contributions the requester asked for (`deal.trust`).
    pub trust: u64,
    /// Category `workClockTimeRef`, seconds; one "period" of the consensus arithmetic.
    pub max_execution_time_secs: u64,
    /// Deal tag; a TEE bit excludes non-TEE workers.
    pub tag: B256,
    /// Callback contract of the deal, zero for none.
    pub callback: Address,
    /// `iexec_result_storage_provider` of the deal parameters (no default upstream).
    pub result_storage_provider: Option<String>,
}

impl TaskDescription {
    /// Whether the deal has a callback contract (its result is `callback-data`, not a file).
    pub fn has_callback(&self) -> bool {
        self.callback != Address::ZERO
    }

    /// Whether the result proxy must hold the result before the core accepts `RESULT_UPLOADED`
    /// (`ReplicatesService.isResultUploaded`: standard IPFS deals without callback).
    pub fn result_goes_to_proxy(&self) -> bool {
        !self.has_callback() && self.result_storage_provider.as_deref() == Some("ipfs")
    }

    /// Whether the deal's tag asks for a TEE (`TeeUtils.getTeeFramework(tag) != null`: any of the
    /// Scone, Gramine or TDX bit patterns in the low nibble).
    pub fn is_tee(&self) -> bool {
        is_tee_tag(self.tag)
    }
}

/// `TeeUtils.getTeeFramework(tag) != null`.
pub fn is_tee_tag(tag: B256) -> bool {
    const SCONE: u8 = 0b0011;
    const GRAMINE: u8 = 0b0101;
    const TDX: u8 = 0b1001;
    matches!(tag.0[31] & 0x0f, SCONE | GRAMINE | TDX)
}

/// The scheduler's record of one task.
#[derive(Debug, Clone)]
pub struct Task {
    /// `keccak(dealId ‖ index)`.
    pub task_id: B256,
    /// Deal the task belongs to.
    pub deal_id: B256,
    /// Index of the task in the deal.
    pub index: u64,
    /// Current status (the last entry of `history`).
    pub status: TaskStatus,
    /// Every status entered, oldest first.
    pub history: Vec<TaskStatusChange>,
    /// What the deal says about the task.
    pub description: TaskDescription,
    /// `startTime + 7 · timeref`: no more replicates after it.
    pub contribution_deadline: SystemTime,
    /// `startTime + 10 · timeref`: the task fails after it.
    pub final_deadline: SystemTime,
    /// Block of the `initialize` transaction.
    pub initialization_block: u64,
    /// Enclave challenge handed to workers; the zero address for standard tasks, unset until the
    /// task is initialized (the core hands out no task without one).
    pub enclave_challenge: Option<Address>,
    /// On-chain consensus value, once reached.
    pub consensus: Option<B256>,
    /// Block of the `TaskConsensus` event, sent to winners with `PLEASE_REVEAL`.
    pub consensus_block: u64,
    /// Unix seconds of the reveal deadline, once consensus is reached.
    pub reveal_deadline: Option<u64>,
    /// The worker asked to upload the result.
    pub uploading_worker: Option<String>,
    /// Result link reported by the uploader, passed to `finalize`.
    pub result_link: Option<String>,
    /// Callback data reported by the uploader, passed to `finalize`.
    pub callback_data: Option<String>,
}

impl Task {
    /// A task freshly read from its deal, in `RECEIVED`.
    pub(crate) fn received(
        deal_id: B256,
        index: u64,
        description: TaskDescription,
        contribution_deadline: SystemTime,
        final_deadline: SystemTime,
        now: SystemTime,
    ) -> Self {
        Self {
            task_id: pew_poco::task_id(deal_id, index),
            deal_id,
            index,
            status: TaskStatus::Received,
            history: vec![TaskStatusChange {
                status: TaskStatus::Received,
                date: now,
            }],
            description,
            contribution_deadline,
            final_deadline,
            initialization_block: 0,
            enclave_challenge: None,
            consensus: None,
            consensus_block: 0,
            reveal_deadline: None,
            uploading_worker: None,
            result_link: None,
            callback_data: None,
        }
    }

    /// Appends `statuses` to the history in order; the last one becomes current.
    pub(crate) fn enter(&mut self, now: SystemTime, statuses: &[TaskStatus]) {
        for &status in statuses {
            self.status = status;
            self.history.push(TaskStatusChange { status, date: now });
        }
    }

    /// Date the current status was entered.
    pub(crate) fn status_date(&self) -> Option<SystemTime> {
        self.history.last().map(|change| change.date)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag_with_low_byte(byte: u8) -> B256 {
        let mut tag = B256::ZERO;
        tag.0[31] = byte;
        tag
    }

    #[test]
    fn tee_tags_are_the_three_framework_patterns() {
        assert!(!is_tee_tag(B256::ZERO));
        assert!(is_tee_tag(tag_with_low_byte(0x03)), "Scone");
        assert!(is_tee_tag(tag_with_low_byte(0x05)), "Gramine");
        assert!(is_tee_tag(tag_with_low_byte(0x09)), "TDX");
        // The TEE bit alone names no framework: upstream treats it as a standard task.
        assert!(!is_tee_tag(tag_with_low_byte(0x01)));
        // GPU bit (0x10 region) does not make a task TEE.
        assert!(!is_tee_tag(tag_with_low_byte(0x10)));
    }

    #[test]
    fn status_order_is_java_ordinal() {
        assert!(TaskStatus::Initialized < TaskStatus::Running);
        assert!(TaskStatus::Running < TaskStatus::ConsensusReached);
        assert!(TaskStatus::FinalDeadlineReached < TaskStatus::Completed);
        assert_eq!(
            serde_json::to_string(&TaskStatus::AtLeastOneRevealed).unwrap(),
            "\"AT_LEAST_ONE_REVEALED\""
        );
    }

    #[test]
    fn result_goes_to_proxy_only_for_ipfs_without_callback() {
        let mut description = TaskDescription {
            trust: 1,
            max_execution_time_secs: 300,
            tag: B256::ZERO,
            callback: Address::ZERO,
            result_storage_provider: Some("ipfs".into()),
        };
        assert!(description.result_goes_to_proxy());
        description.result_storage_provider = Some("dropbox".into());
        assert!(!description.result_goes_to_proxy());
        description.result_storage_provider = None;
        assert!(
            !description.result_goes_to_proxy(),
            "upstream has no default provider"
        );
        description.result_storage_provider = Some("ipfs".into());
        description.callback = Address::repeat_byte(0x11);
        assert!(!description.result_goes_to_proxy());
    }
}
