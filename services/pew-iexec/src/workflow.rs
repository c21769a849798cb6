//! The core's replicate state machine (iexec-core `ReplicateWorkflow`, read at commit
//! `fa704ab37aab5af5874effe7dfbcc0cfad713975`) and its checks on a status update
//! (`ReplicatesService.canUpdateReplicateStatus`, same commit).
//!
//! `dev-core` uses it to answer `updateStatus` exactly like the real core; the worker uses it to
//! know which statuses the core will accept next.

use crate::status::{NextAction, ReplicateStatus, StatusCause};

use ReplicateStatus as S;

/// Whether the core accepts moving a replicate from `from` to `to`.
pub fn can_transition(from: ReplicateStatus, to: ReplicateStatus) -> bool {
    // The Java workflow is a list of edges built in five passes; each arm below is one pass.
    default_path_edge(from, to)
        || (to == S::Failed
            && (from.is_failable() || matches!(from, S::WorkerLost | S::Recovering)))
        || worker_lost_edge(from, to)
        || recovering_edge(from, to)
        || aborted_edge(from, to)
}

/// Every status the core accepts after `from`, in declaration order.
pub fn transitions_from(from: ReplicateStatus) -> Vec<ReplicateStatus> {
    ReplicateStatus::ALL
        .iter()
        .copied()
        .filter(|&to| can_transition(from, to))
        .collect()
}

/// Edges of the normal life of a replicate, failures included.
fn default_path_edge(from: ReplicateStatus, to: ReplicateStatus) -> bool {
    matches!(
        (from, to),
        (S::Created, S::Starting)
            | (S::Starting, S::Started | S::StartFailed)
            | (S::Started, S::AppDownloading)
            | (S::AppDownloading, S::AppDownloaded | S::AppDownloadFailed)
            // A download failure is contributed as an error result so that the task can still
            // reach consensus.
            | (S::AppDownloadFailed, S::Contributing)
            | (S::AppDownloaded, S::DataDownloading)
            | (S::DataDownloading, S::DataDownloaded | S::DataDownloadFailed)
            | (S::DataDownloadFailed, S::Contributing)
            | (S::DataDownloaded, S::Computing)
            | (S::Computing, S::Computed | S::ComputeFailed)
            | (S::Computed, S::Contributing | S::ContributeAndFinalizeOngoing)
            | (S::Contributing, S::Contributed | S::ContributeFailed)
            | (S::Contributed, S::Revealing)
            | (S::Revealing, S::Revealed | S::RevealFailed)
            | (S::Revealed, S::ResultUploadRequested | S::Completing)
            | (S::ResultUploadRequested, S::ResultUploading)
            | (S::ResultUploading, S::ResultUploaded | S::ResultUploadFailed)
            | (S::ResultUploadFailed | S::ResultUploaded, S::Completing)
            | (S::ContributeAndFinalizeOngoing, S::ContributeAndFinalizeDone | S::ContributeAndFinalizeFailed)
            | (S::ContributeAndFinalizeDone, S::Completing)
            | (S::Completing, S::Completed | S::CompleteFailed)
    )
}

/// A lost worker can come back at any point of the default workflow.
fn worker_lost_edge(from: ReplicateStatus, to: ReplicateStatus) -> bool {
    if to == S::WorkerLost {
        return from.in_non_final_workflow() || matches!(from, S::Recovering | S::Aborted);
    }
    from == S::WorkerLost
        && (to.in_non_final_workflow()
            || matches!(to, S::Completed | S::Failed | S::Recovering | S::Aborted))
}

/// From `RECOVERING` the core may jump to whatever the chain shows, except back to the start.
fn recovering_edge(from: ReplicateStatus, to: ReplicateStatus) -> bool {
    (to == S::Recovering && (from.is_recoverable() || from == S::WorkerLost))
        || (from == S::Recovering && !matches!(to, S::Created | S::Starting))
}

fn aborted_edge(from: ReplicateStatus, to: ReplicateStatus) -> bool {
    (to == S::Aborted && from.is_abortable())
        || (from == S::Aborted && matches!(to, S::Completed | S::Failed))
}

/// The core's reply to an accepted update to `status` (`ReplicateWorkflow.getNextAction`), for a
/// standard task. `None` where the Java map has no entry (the core then replies with an empty
/// body).
///
/// The real core answers `PLEASE_CONTRIBUTE_AND_FINALIZE` to `COMPUTED` for TEE tasks with
/// trust 1; standard tasks never take that path, so it is not modelled.
pub fn next_action(status: ReplicateStatus, cause: Option<StatusCause>) -> Option<NextAction> {
    use NextAction as A;
    use StatusCause as C;

    // A failed download still leads to a contribution (of an error result) when the failure
    // is the app's or the requester's fault rather than the worker's.
    match (status, cause) {
        (S::AppDownloadFailed, Some(C::AppImageDownloadFailed)) => {
            return Some(A::PleaseContribute);
        }
        (
            S::DataDownloadFailed,
            Some(
                C::DatasetFileDownloadFailed
                | C::DatasetFileBadChecksum
                | C::InputFilesDownloadFailed,
            ),
        ) => return Some(A::PleaseContribute),
        _ => {}
    }
    match status {
        S::Starting
        | S::AppDownloading
        | S::DataDownloading
        | S::Computing
        | S::Contributing
        | S::Revealing
        | S::ResultUploading
        | S::ContributeAndFinalizeOngoing
        | S::Completing => Some(A::PleaseContinue),
        S::Started => Some(A::PleaseDownloadApp),
        S::AppDownloaded => Some(A::PleaseDownloadData),
        S::DataDownloaded => Some(A::PleaseCompute),
        S::Computed => Some(A::PleaseContribute),
        S::Contributed
        | S::Revealed
        | S::ResultUploaded
        | S::ContributeAndFinalizeDone
        | S::Completed => Some(A::PleaseWait),
        S::StartFailed
        | S::AppDownloadFailed
        | S::DataDownloadFailed
        | S::ComputeFailed
        | S::ContributeFailed
        | S::RevealFailed
        | S::ResultUploadFailed
        | S::ContributeAndFinalizeFailed
        | S::CompleteFailed => Some(A::PleaseAbort),
        S::Created
        | S::ResultUploadRequested
        | S::Failed
        | S::Aborted
        | S::Recovering
        | S::WorkerLost => None,
    }
}

/// Why the core turns a status update down, before any chain check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UpdateRefusal {
    /// The worker has no replicate of this task.
    #[error("no replicate of this task for this worker")]
    UnknownReplicate,
    /// The replicate already went through this status.
    #[error("status {0} already reported")]
    AlreadyReported(ReplicateStatus),
    /// The workflow has no edge from the current status to the new one.
    #[error("transition {from} -> {to} is not allowed")]
    BadTransition {
        /// Current status of the replicate.
        from: ReplicateStatus,
        /// Status the worker asked for.
        to: ReplicateStatus,
    },
    /// A status the core never accepts from a worker since 9.2, although the workflow has an edge
    /// to it: a failed transaction must end in `ABORTED` instead.
    #[error("status {0} is refused by the core; the worker must abort")]
    Refused(ReplicateStatus),
}

impl UpdateRefusal {
    /// HTTP status of the core's reply: 208 for a repeat, 202 otherwise.
    pub const fn http_status(self) -> u16 {
        match self {
            Self::AlreadyReported(_) => 208,
            _ => 202,
        }
    }

    /// Body of the core's reply: a repeat is harmless, anything else ends the replicate.
    pub const fn reply(self) -> NextAction {
        match self {
            Self::AlreadyReported(_) => NextAction::PleaseWait,
            _ => NextAction::PleaseAbort,
        }
    }
}

/// The core's workflow checks on an update to `new`, given the replicate's status history
/// (oldest first). Chain-dependent checks (`CONTRIBUTED`, `REVEALED`, `RESULT_UPLOADED` need
/// on-chain evidence) are the caller's.
pub fn check_update(
    history: &[ReplicateStatus],
    new: ReplicateStatus,
) -> Result<(), UpdateRefusal> {
    let Some(&current) = history.last() else {
        return Err(UpdateRefusal::UnknownReplicate);
    };
    if history.contains(&new) {
        return Err(UpdateRefusal::AlreadyReported(new));
    }
    if !can_transition(current, new) {
        return Err(UpdateRefusal::BadTransition {
            from: current,
            to: new,
        });
    }
    if matches!(new, S::ContributeFailed | S::RevealFailed) {
        return Err(UpdateRefusal::Refused(new));
    }
    Ok(())
}
