//! The task state machine (iexec-core `TaskUpdateManager`) and the notifications its events send
//! (`TaskListeners`).
//!
//! Update requests are processed one at a time, in order, like upstream's queue. Each step reads
//! the chain outside the state lock, then moves the task only if it is still in the status the
//! step started from.

use pew_iexec::model::TaskNotificationExtra;
use pew_iexec::status::{NextAction, ReplicateStatus, TaskAbortCause};
use pew_poco::{Address, B256};
use rand_core::{OsRng, RngCore};
use tokio::sync::mpsc;

use crate::chain::{ChainTaskStatus, ChainTaskView};
use crate::clock::unix_secs;
use crate::consensus::is_consensus_reached;
use crate::core::Core;
use crate::replicate::pool_manager_update;
use crate::replicates::update_replicate_status;
use crate::task::{Task, TaskStatus};

use TaskStatus as T;

/// More steps than any task can take in one go; guards against a livelock.
const MAX_STEPS_PER_REQUEST: usize = 32;

/// Consumes update requests until the double stops.
pub(crate) async fn run(core: &Core, mut requests: mpsc::UnboundedReceiver<B256>) {
    while let Some(task_id) = requests.recv().await {
        update_task(core, task_id).await;
    }
}

/// Moves the task as far as it can go now (`updateTask`, which upstream calls recursively).
async fn update_task(core: &Core, task_id: B256) {
    for _ in 0..MAX_STEPS_PER_REQUEST {
        if !step(core, task_id).await {
            return;
        }
    }
}

/// One transition; `true` if the task moved.
async fn step(core: &Core, task_id: B256) -> bool {
    let Some(task) = core.state().tasks.get(&task_id).cloned() else {
        return false;
    };
    let chain_task = if task.status == T::Initialized || task.status >= T::Running {
        match core.chain.task(task_id).await {
            Ok(chain_task) => Some(chain_task),
            Err(error) => {
                tracing::warn!(task = %task_id, %error, "on-chain task unreadable");
                return false;
            }
        }
    } else {
        None
    };
    let past_final_deadline =
        !task.status.final_deadline_is_moot() && core.now() > task.final_deadline;
    let status = if past_final_deadline {
        T::FinalDeadlineReached
    } else {
        task.status
    };
    match (status, chain_task) {
        (T::Received, _) => received_to_initializing(core, &task).await,
        (T::Initializing, _) => initializing_to_initialized(core, &task).await,
        (T::Initialized, Some(chain_task)) => initialized_to_running(core, &task, &chain_task),
        (T::Running, Some(chain_task)) => {
            running_to_consensus_reached(core, &task, &chain_task).await
        }
        (T::ConsensusReached, _) => consensus_reached_to_at_least_one_revealed(core, &task).await,
        (T::AtLeastOneRevealed, _) => request_upload(core, &task).await,
        (T::ResultUploading, _) => result_uploading_to_uploaded(core, &task).await,
        (T::ResultUploaded, Some(chain_task)) => {
            result_uploaded_to_finalizing(core, &task, &chain_task).await
        }
        (T::Finalizing, Some(chain_task)) => finalizing_to_completed(core, &task, &chain_task),
        (T::Finalized, _) => {
            let moved = transition(core, task_id, T::Finalized, &[T::Completed]);
            if moved {
                on_task_completed(core, task_id);
            }
            moved
        }
        (T::InitializeFailed | T::RunningFailed | T::ContributionTimeout | T::ReopenFailed, _)
        | (T::ResultUploadTimeout | T::FinalizeFailed, _) => to_failed(core, &task, None),
        (T::FinalDeadlineReached, _) => to_failed(core, &task, Some(T::FinalDeadlineReached)),
        _ => false,
    }
}

/// Moves the task from `expected` through `statuses` (the last becomes current); does nothing if
/// the task is no longer in `expected`.
pub(crate) fn transition(
    core: &Core,
    task_id: B256,
    expected: TaskStatus,
    statuses: &[TaskStatus],
) -> bool {
    let now = core.now();
    let moved = {
        let mut state = core.state();
        match state.tasks.get_mut(&task_id) {
            Some(task) if task.status == expected => {
                task.enter(now, statuses);
                true
            }
            _ => false,
        }
    };
    if moved {
        tracing::info!(task = %task_id, from = ?expected, to = ?statuses, "task status");
        core.changed();
    }
    moved
}

/// `toFailed`: `[reason,] FAILED`, then everyone aborts.
fn to_failed(core: &Core, task: &Task, reason: Option<TaskStatus>) -> bool {
    let statuses: Vec<TaskStatus> = reason.into_iter().chain([T::Failed]).collect();
    let moved = transition(core, task.task_id, task.status, &statuses);
    if moved {
        on_task_failed(core, task.task_id);
    }
    moved
}

async fn received_to_initializing(core: &Core, task: &Task) -> bool {
    match core.chain.initialize(task.deal_id, task.index).await {
        Ok(block) => {
            if let Some(stored) = core.state().tasks.get_mut(&task.task_id) {
                stored.initialization_block = block;
            }
            transition(core, task.task_id, T::Received, &[T::Initializing])
        }
        Err(error) => {
            // A task already initialized (by an earlier run of the double) is taken as is.
            let on_chain = core.chain.task(task.task_id).await;
            if on_chain.is_ok_and(|chain_task| chain_task.deal_id == task.deal_id) {
                tracing::info!(task = %task.task_id, "already initialized on-chain");
                return transition(core, task.task_id, T::Received, &[T::Initializing]);
            }
            tracing::error!(task = %task.task_id, %error, "initialize failed");
            to_failed(core, task, Some(T::InitializeFailed))
        }
    }
}

async fn initializing_to_initialized(core: &Core, task: &Task) -> bool {
    let chain_task = match core.chain.task(task.task_id).await {
        Ok(chain_task) => chain_task,
        Err(_) => return false,
    };
    if chain_task.status == ChainTaskStatus::Unset {
        return to_failed(core, task, Some(T::InitializeFailed));
    }
    {
        let mut state = core.state();
        if let Some(stored) = state.tasks.get_mut(&task.task_id) {
            // Standard tasks: no SMS, so the enclave challenge is the zero address.
            stored.enclave_challenge = Some(Address::ZERO);
        }
        state.replicates.entry(task.task_id).or_default();
    }
    transition(core, task.task_id, T::Initializing, &[T::Initialized])
}

/// Whether the contribution deadline passed without consensus on-chain.
fn contribution_timed_out(core: &Core, task: &Task, chain_task: &ChainTaskView) -> bool {
    chain_task.status < ChainTaskStatus::Revealing && core.now() > task.contribution_deadline
}

fn contribution_timeout(core: &Core, task: &Task) -> bool {
    let moved = transition(
        core,
        task.task_id,
        task.status,
        &[T::ContributionTimeout, T::Failed],
    );
    if moved {
        on_contribution_timeout(core, task.task_id);
    }
    moved
}

fn initialized_to_running(core: &Core, task: &Task, chain_task: &ChainTaskView) -> bool {
    if contribution_timed_out(core, task, chain_task) {
        return contribution_timeout(core, task);
    }
    let started = core
        .state()
        .replicates
        .get(&task.task_id)
        .is_some_and(|replicates| {
            // START_FAILED does not count: it may mean the task itself is broken.
            replicates.iter().any(|replicate| {
                use ReplicateStatus as S;
                matches!(
                    replicate.last_relevant_status(),
                    S::Started
                        | S::AppDownloading
                        | S::AppDownloadFailed
                        | S::AppDownloaded
                        | S::DataDownloading
                        | S::DataDownloadFailed
                        | S::DataDownloaded
                        | S::Computing
                        | S::ComputeFailed
                        | S::Computed
                        | S::Contributing
                        | S::ContributeFailed
                        | S::Contributed
                        | S::ContributeAndFinalizeOngoing
                        | S::ContributeAndFinalizeFailed
                        | S::ContributeAndFinalizeDone
                )
            })
        });
    started && transition(core, task.task_id, T::Initialized, &[T::Running])
}

async fn running_to_consensus_reached(
    core: &Core,
    task: &Task,
    chain_task: &ChainTaskView,
) -> bool {
    if contribution_timed_out(core, task, chain_task) {
        return contribution_timeout(core, task);
    }
    let replicates = core
        .state()
        .replicates
        .get(&task.task_id)
        .cloned()
        .unwrap_or_default();
    if !is_consensus_reached(chain_task, &replicates) {
        return false;
    }
    let consensus_block = match core
        .chain
        .consensus_block(task.task_id, task.initialization_block)
        .await
    {
        Ok(Some(block)) => block,
        _ => last_winning_contribution_block(&replicates, chain_task.consensus_value),
    };
    {
        let mut state = core.state();
        let Some(stored) = state.tasks.get_mut(&task.task_id) else {
            return false;
        };
        stored.consensus = Some(chain_task.consensus_value);
        stored.reveal_deadline = Some(chain_task.reveal_deadline);
        stored.consensus_block = consensus_block;
    }
    let moved = transition(core, task.task_id, T::Running, &[T::ConsensusReached]);
    if moved {
        on_consensus_reached(
            core,
            task.task_id,
            chain_task.consensus_value,
            consensus_block,
        );
    }
    moved
}

/// Block of the last winning contribution the workers reported: PoCo reaches consensus inside
/// the `contribute` transaction that completes the winning group, and accepts no contribution
/// after it, so this is the block of the `TaskConsensus` event.
fn last_winning_contribution_block(
    replicates: &[crate::replicate::Replicate],
    consensus: B256,
) -> u64 {
    replicates
        .iter()
        .filter(|replicate| replicate.contribution_hash == Some(consensus))
        .flat_map(|replicate| replicate.history())
        .filter(|update| update.status == ReplicateStatus::Contributed)
        .filter_map(|update| {
            update
                .details
                .as_ref()?
                .chain_receipt
                .as_ref()
                .map(|receipt| receipt.block_number)
        })
        .max()
        .unwrap_or(0)
}

async fn consensus_reached_to_at_least_one_revealed(core: &Core, task: &Task) -> bool {
    let any_revealed = core
        .state()
        .replicates
        .get(&task.task_id)
        .is_some_and(|replicates| {
            replicates
                .iter()
                .any(|replicate| replicate.current_status() == ReplicateStatus::Revealed)
        });
    if !any_revealed
        || !transition(
            core,
            task.task_id,
            T::ConsensusReached,
            &[T::AtLeastOneRevealed],
        )
    {
        return false;
    }
    request_upload(
        core,
        &Task {
            status: T::AtLeastOneRevealed,
            ..task.clone()
        },
    )
    .await;
    true
}

/// `requestUpload`: unless someone is already uploading, picks a random revealer, marks it
/// `RESULT_UPLOAD_REQUESTED` and asks it to upload.
async fn request_upload(core: &Core, task: &Task) -> bool {
    let worker = {
        let state = core.state();
        let Some(replicates) = state.replicates.get(&task.task_id) else {
            return false;
        };
        let uploading = replicates.iter().any(|replicate| {
            matches!(
                replicate.current_status(),
                ReplicateStatus::ResultUploading | ReplicateStatus::ResultUploadRequested
            )
        });
        if uploading {
            return false;
        }
        let revealers: Vec<&str> = replicates
            .iter()
            .filter(|replicate| replicate.current_status() == ReplicateStatus::Revealed)
            .map(|replicate| replicate.worker.as_str())
            .collect();
        if revealers.is_empty() {
            return false;
        }
        revealers[OsRng.next_u32() as usize % revealers.len()].to_owned()
    };
    if let Some(stored) = core.state().tasks.get_mut(&task.task_id) {
        stored.uploading_worker = Some(worker.clone());
    }
    let moved = transition(core, task.task_id, task.status, &[T::ResultUploading]);
    let requested = pool_manager_update(ReplicateStatus::ResultUploadRequested, core.now_millis());
    if let Err(error) = update_replicate_status(core, task.task_id, &worker, requested).await {
        tracing::warn!(task = %task.task_id, worker, %error, "upload request not recorded");
    }
    core.notify(task.task_id, vec![worker], NextAction::PleaseUpload, None);
    moved
}

async fn result_uploading_to_uploaded(core: &Core, task: &Task) -> bool {
    if core.now() > task.final_deadline {
        return to_failed(core, task, Some(T::ResultUploadTimeout));
    }
    enum Next {
        Uploaded {
            link: Option<String>,
            callback: Option<String>,
        },
        AskAgain,
        Wait,
    }
    let next = {
        let state = core.state();
        let replicates = state
            .replicates
            .get(&task.task_id)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let uploaded = replicates.iter().find(|replicate| {
            replicate.current_status() == ReplicateStatus::ResultUploaded
                || replicate.lost_right_after(ReplicateStatus::ResultUploaded)
        });
        let uploader = task
            .uploading_worker
            .as_deref()
            .and_then(|worker| state.replicate(task.task_id, worker));
        match (uploaded, uploader) {
            (Some(replicate), _) => Next::Uploaded {
                link: replicate.result_link.clone(),
                callback: replicate.callback_data.clone(),
            },
            (None, None) => Next::AskAgain,
            (None, Some(uploader)) => {
                let current = uploader.current_status();
                let still_uploading = current == ReplicateStatus::ResultUploading
                    || (current == ReplicateStatus::Recovering
                        && uploader.last_relevant_status() == ReplicateStatus::ResultUploading);
                if still_uploading {
                    Next::Wait
                } else {
                    Next::AskAgain
                }
            }
        }
    };
    match next {
        Next::Uploaded { link, callback } => {
            if let Some(stored) = core.state().tasks.get_mut(&task.task_id) {
                stored.result_link = link;
                stored.callback_data = callback;
            }
            transition(core, task.task_id, T::ResultUploading, &[T::ResultUploaded])
        }
        Next::AskAgain => request_upload(core, task).await,
        Next::Wait => false,
    }
}

async fn result_uploaded_to_finalizing(
    core: &Core,
    task: &Task,
    chain_task: &ChainTaskView,
) -> bool {
    let now = unix_secs(core.now());
    let off_chain_reveals = core
        .state()
        .replicates
        .get(&task.task_id)
        .map_or(0, |replicates| {
            replicates
                .iter()
                .filter(|replicate| replicate.contains(ReplicateStatus::Revealed))
                .count() as u64
        });
    let not_enough_reveals = chain_task.winner_counter != chain_task.reveal_counter
        && (chain_task.reveal_counter == 0 || now < chain_task.reveal_deadline);
    if chain_task.status != ChainTaskStatus::Revealing
        || chain_task.final_deadline < now
        || not_enough_reveals
        || chain_task.reveal_counter != off_chain_reveals
    {
        tracing::info!(task = %task.task_id, "cannot finalize yet: on-chain and off-chain data disagree");
        return false;
    }
    let results = task.result_link.clone().unwrap_or_default().into_bytes();
    let callback = task
        .callback_data
        .as_deref()
        .map(pew_poco::challenge::java_hex_bytes)
        .unwrap_or_default();
    match core.chain.finalize(task.task_id, results, callback).await {
        Ok(_) => transition(core, task.task_id, T::ResultUploaded, &[T::Finalizing]),
        Err(error) => {
            tracing::error!(task = %task.task_id, %error, "finalize failed");
            to_failed(core, task, Some(T::FinalizeFailed))
        }
    }
}

fn finalizing_to_completed(core: &Core, task: &Task, chain_task: &ChainTaskView) -> bool {
    if chain_task.status != ChainTaskStatus::Completed {
        return false;
    }
    let moved = transition(
        core,
        task.task_id,
        T::Finalizing,
        &[T::Finalized, T::Completed],
    );
    if moved {
        on_task_completed(core, task.task_id);
    }
    moved
}

// ----- TaskListeners -----

/// Removes the task from every participant (`TaskListeners.purgeTask`).
fn purge(core: &Core, task_id: B256) {
    let mut state = core.state();
    for worker in state.replicate_owners(task_id) {
        state.release_task(task_id, &worker);
    }
}

/// `onTaskContributionTimeout`: every participant aborts.
pub(crate) fn on_contribution_timeout(core: &Core, task_id: B256) {
    let owners = core.state().replicate_owners(task_id);
    purge(core, task_id);
    core.notify_abort(task_id, owners, Some(TaskAbortCause::ContributionTimeout));
}

/// `onTaskConsensusReached`: winners reveal, the others abort.
fn on_consensus_reached(core: &Core, task_id: B256, consensus: B256, block: u64) {
    let (winners, losers): (Vec<String>, Vec<String>) = {
        let state = core.state();
        let replicates = state
            .replicates
            .get(&task_id)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let (winners, losers): (Vec<_>, Vec<_>) = replicates
            .iter()
            .partition(|replicate| replicate.contribution_hash == Some(consensus));
        (
            winners
                .into_iter()
                .map(|replicate| replicate.worker.clone())
                .collect(),
            losers
                .into_iter()
                .map(|replicate| replicate.worker.clone())
                .collect(),
        )
    };
    if !winners.is_empty() {
        let extra = TaskNotificationExtra {
            block_number: Some(block),
            ..Default::default()
        };
        core.notify(task_id, winners, NextAction::PleaseReveal, Some(extra));
    }
    if !losers.is_empty() {
        core.notify_abort(task_id, losers, Some(TaskAbortCause::ConsensusReached));
    }
}

/// `onTaskCompletedEvent`: everyone completes.
fn on_task_completed(core: &Core, task_id: B256) {
    core.notify(task_id, Vec::new(), NextAction::PleaseComplete, None);
    purge(core, task_id);
}

/// `onTaskFailedEvent`: everyone aborts, cause unknown.
pub(crate) fn on_task_failed(core: &Core, task_id: B256) {
    core.notify_abort(task_id, Vec::new(), None);
    purge(core, task_id);
}
