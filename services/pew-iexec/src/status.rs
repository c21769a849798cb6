//! Replicate statuses, their causes, and the actions the core asks a worker to take.
//!
//! Tolerance of unknown names, decided per type:
//! - [`ReplicateStatus`], [`NextAction`], [`StatusModifier`]: strict. These enums are complete;
//!   an unknown name means a protocol mismatch, and Jackson on the Java side rejects it too.
//! - [`StatusCause`]: unknown names read as [`StatusCause::Unknown`]. We list only the causes a
//!   standard task can produce, while a Java worker may report any of ~110 (TEE ones included);
//!   losing the precise cause is better than refusing the status update carrying it.
//! - [`TaskAbortCause`]: unknown names read as [`TaskAbortCause::Unknown`], which is also what
//!   the Java getter answers when the cause is absent. An abort must never be dropped because a
//!   newer core explains it differently.

use crate::wire_enum::wire_enum;

pub use crate::wire_enum::UnknownVariant;

wire_enum! {
    /// Lifecycle status of one worker's replicate of a task (`com.iexec.common.replicate.ReplicateStatus`).
    pub enum ReplicateStatus as "ReplicateStatus" {
        /// Replicate created by the core when it handed the task out.
        Created = "CREATED",
        Starting = "STARTING",
        StartFailed = "START_FAILED",
        Started = "STARTED",
        AppDownloading = "APP_DOWNLOADING",
        AppDownloadFailed = "APP_DOWNLOAD_FAILED",
        AppDownloaded = "APP_DOWNLOADED",
        DataDownloading = "DATA_DOWNLOADING",
        DataDownloadFailed = "DATA_DOWNLOAD_FAILED",
        DataDownloaded = "DATA_DOWNLOADED",
        Computing = "COMPUTING",
        ComputeFailed = "COMPUTE_FAILED",
        Computed = "COMPUTED",
        Contributing = "CONTRIBUTING",
        ContributeFailed = "CONTRIBUTE_FAILED",
        Contributed = "CONTRIBUTED",
        Revealing = "REVEALING",
        RevealFailed = "REVEAL_FAILED",
        Revealed = "REVEALED",
        /// Set by the core on the one revealer it picks to upload the result.
        ResultUploadRequested = "RESULT_UPLOAD_REQUESTED",
        ResultUploading = "RESULT_UPLOADING",
        ResultUploadFailed = "RESULT_UPLOAD_FAILED",
        ResultUploaded = "RESULT_UPLOADED",
        ContributeAndFinalizeOngoing = "CONTRIBUTE_AND_FINALIZE_ONGOING",
        ContributeAndFinalizeFailed = "CONTRIBUTE_AND_FINALIZE_FAILED",
        ContributeAndFinalizeDone = "CONTRIBUTE_AND_FINALIZE_DONE",
        Completing = "COMPLETING",
        CompleteFailed = "COMPLETE_FAILED",
        Completed = "COMPLETED",
        /// Set by the core at the end of a task on replicates that did not complete.
        Failed = "FAILED",
        Aborted = "ABORTED",
        /// Set by the core when a worker asks for its interrupted replicates.
        Recovering = "RECOVERING",
        /// Set by the core when the worker stopped pinging.
        WorkerLost = "WORKER_LOST",
    }
}

impl ReplicateStatus {
    /// `COMPLETED` or `FAILED`: nothing follows (Java `getFinalStatuses`). `ABORTED` is not final
    /// for the core, which later moves it to one of these two.
    pub const fn is_final(self) -> bool {
        matches!(self, Self::Completed | Self::Failed)
    }

    /// Whether a worker reports this status. The core sets the others itself and refuses
    /// nothing on that ground, so a worker that sent them would corrupt its own replicate.
    pub const fn set_by_worker(self) -> bool {
        !matches!(
            self,
            Self::Created
                | Self::ResultUploadRequested
                | Self::Recovering
                | Self::WorkerLost
                | Self::Failed
        )
    }

    /// Java `getSuccessStatuses`; serialized as the `success` property of a status update.
    pub const fn is_success(self) -> bool {
        matches!(
            self,
            Self::Created
                | Self::Starting
                | Self::Started
                | Self::AppDownloading
                | Self::AppDownloaded
                | Self::DataDownloading
                | Self::DataDownloaded
                | Self::Computing
                | Self::Computed
                | Self::Contributing
                | Self::Contributed
                | Self::Revealing
                | Self::Revealed
                | Self::ContributeAndFinalizeOngoing
                | Self::ContributeAndFinalizeDone
                | Self::Completing
                | Self::Completed
        )
    }

    /// Java `getFailureStatuses`: every `*_FAILED` status and `FAILED`.
    pub const fn is_failure(self) -> bool {
        matches!(
            self,
            Self::StartFailed
                | Self::AppDownloadFailed
                | Self::DataDownloadFailed
                | Self::ComputeFailed
                | Self::ContributeFailed
                | Self::RevealFailed
                | Self::ResultUploadFailed
                | Self::ContributeAndFinalizeFailed
                | Self::CompleteFailed
                | Self::Failed
        )
    }

    /// A failure before `COMPUTED`; like `COMPUTED` itself, it frees the worker's computing slot
    /// on the core.
    pub fn is_failed_before_computed(self) -> bool {
        self < Self::Computed && self.is_failure()
    }

    /// Java `getNonFinalWorkflowStatuses`: the default path from `CREATED` to `COMPLETE_FAILED`,
    /// i.e. everything before `COMPLETED` in declaration order.
    pub(crate) fn in_non_final_workflow(self) -> bool {
        self < Self::Completed
    }

    /// Java `getFailableStatuses`: statuses the core moves to `FAILED` when the task ends.
    pub fn is_failable(self) -> bool {
        self <= Self::RevealFailed
            || matches!(
                self,
                Self::ContributeAndFinalizeOngoing
                    | Self::ContributeAndFinalizeFailed
                    | Self::Aborted
            )
    }

    /// Java `getAbortableStatuses`: statuses a worker may leave for `ABORTED`.
    pub fn is_abortable(self) -> bool {
        self.in_non_final_workflow() || self == Self::WorkerLost
    }

    /// Java `getRecoverableStatuses`: statuses the core may move to `RECOVERING`.
    pub fn is_recoverable(self) -> bool {
        !matches!(
            self,
            Self::StartFailed
                | Self::ComputeFailed
                | Self::ContributeFailed
                | Self::RevealFailed
                | Self::CompleteFailed
                | Self::Completed
                | Self::Failed
                | Self::Aborted
                | Self::WorkerLost
        )
    }
}

wire_enum! {
    /// Why a replicate status was reached (`com.iexec.common.replicate.ReplicateStatusCause`),
    /// restricted to the causes of standard tasks; unknown names read as [`StatusCause::Unknown`].
    pub enum StatusCause as "ReplicateStatusCause", fallback = Unknown {
        ChainUnreachable = "CHAIN_UNREACHABLE",
        BlockNotReached = "BLOCK_NOT_REACHED",
        StakeTooLow = "STAKE_TOO_LOW",
        OutOfGas = "OUT_OF_GAS",
        TaskNotActive = "TASK_NOT_ACTIVE",
        TaskDescriptionInvalid = "TASK_DESCRIPTION_INVALID",
        TaskDescriptionNotFound = "TASK_DESCRIPTION_NOT_FOUND",
        ContributionAlreadySet = "CONTRIBUTION_ALREADY_SET",
        /// Set by the core on losers once consensus is reached without them.
        ConsensusReached = "CONSENSUS_REACHED",
        ChainReceiptNotValid = "CHAIN_RECEIPT_NOT_VALID",
        ConsensusBlockMissing = "CONSENSUS_BLOCK_MISSING",
        AppImageDownloadFailed = "APP_IMAGE_DOWNLOAD_FAILED",
        InputFilesDownloadFailed = "INPUT_FILES_DOWNLOAD_FAILED",
        DatasetFileDownloadFailed = "DATASET_FILE_DOWNLOAD_FAILED",
        DatasetFileBadChecksum = "DATASET_FILE_BAD_CHECKSUM",
        AppNotFoundLocally = "APP_NOT_FOUND_LOCALLY",
        AppComputeFailed = "APP_COMPUTE_FAILED",
        AppComputeTimeout = "APP_COMPUTE_TIMEOUT",
        PostComputeComputedFileNotFound = "POST_COMPUTE_COMPUTED_FILE_NOT_FOUND",
        PostComputeResultDigestComputationFailed = "POST_COMPUTE_RESULT_DIGEST_COMPUTATION_FAILED",
        PostComputeOutFolderZipFailed = "POST_COMPUTE_OUT_FOLDER_ZIP_FAILED",
        PostComputeTooLongResultFileName = "POST_COMPUTE_TOO_LONG_RESULT_FILE_NAME",
        PostComputeSendComputedFileFailed = "POST_COMPUTE_SEND_COMPUTED_FILE_FAILED",
        PostComputeFailedUnknownIssue = "POST_COMPUTE_FAILED_UNKNOWN_ISSUE",
        /// Reported by a worker without TEE support that was handed a TEE task.
        TeeNotSupported = "TEE_NOT_SUPPORTED",
        DeterminismHashNotFound = "DETERMINISM_HASH_NOT_FOUND",
        WorkerpoolAuthorizationNotFound = "WORKERPOOL_AUTHORIZATION_NOT_FOUND",
        ResultLinkMissing = "RESULT_LINK_MISSING",
        /// Set by the core when the contribution deadline passed.
        ContributionTimeout = "CONTRIBUTION_TIMEOUT",
        /// Set by the core when the reveal deadline passed.
        RevealTimeout = "REVEAL_TIMEOUT",
        AbortedByWorker = "ABORTED_BY_WORKER",
        CannotReveal = "CANNOT_REVEAL",
        Unknown = "UNKNOWN",
    }
}

wire_enum! {
    /// What the core asks a worker to do next (`com.iexec.core.notification.TaskNotificationType`):
    /// the reply to a status update and the type of a pushed notification.
    pub enum NextAction as "TaskNotificationType" {
        PleaseContinue = "PLEASE_CONTINUE",
        /// Keep the task and wait for a notification.
        PleaseWait = "PLEASE_WAIT",
        PleaseStart = "PLEASE_START",
        PleaseDownloadApp = "PLEASE_DOWNLOAD_APP",
        PleaseDownloadData = "PLEASE_DOWNLOAD_DATA",
        PleaseCompute = "PLEASE_COMPUTE",
        /// Contribute the result if there is one, otherwise compute first.
        PleaseContribute = "PLEASE_CONTRIBUTE",
        PleaseReveal = "PLEASE_REVEAL",
        PleaseUpload = "PLEASE_UPLOAD",
        /// TEE tasks with trust 1 only.
        PleaseContributeAndFinalize = "PLEASE_CONTRIBUTE_AND_FINALIZE",
        PleaseComplete = "PLEASE_COMPLETE",
        PleaseAbort = "PLEASE_ABORT",
    }
}

wire_enum! {
    /// Why the core asks for an abort (`com.iexec.core.notification.TaskAbortCause`); unknown
    /// names read as [`TaskAbortCause::Unknown`].
    pub enum TaskAbortCause as "TaskAbortCause", fallback = Unknown {
        ContributionTimeout = "CONTRIBUTION_TIMEOUT",
        ConsensusReached = "CONSENSUS_REACHED",
        Unknown = "UNKNOWN",
    }
}

impl TaskAbortCause {
    /// The cause a worker reports with `ABORTED` after this abort notification.
    pub const fn to_status_cause(self) -> StatusCause {
        match self {
            Self::ContributionTimeout => StatusCause::ContributionTimeout,
            Self::ConsensusReached => StatusCause::ConsensusReached,
            Self::Unknown => StatusCause::Unknown,
        }
    }
}

wire_enum! {
    /// Who set a replicate status (`com.iexec.common.replicate.ReplicateStatusModifier`). The core
    /// stamps `WORKER` on every update a worker sends, whatever the body said.
    pub enum StatusModifier as "ReplicateStatusModifier" {
        Worker = "WORKER",
        PoolManager = "POOL_MANAGER",
    }
}
