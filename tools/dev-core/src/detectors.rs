//! Periodic checks (iexec-core `WorkerLostDetector`, `ContributionTimeoutTaskDetector`,
//! `FinalDeadlineTaskDetector`, `RevealTimeoutDetector`, `ReplicateResultUploadTimeoutDetector`,
//! and the chain detectors that re-examine running tasks).

use std::time::Instant;

use pew_iexec::model::ReplicateStatusUpdate;
use pew_iexec::status::{ReplicateStatus, StatusCause};
use pew_poco::B256;

use crate::clock::unix_secs;
use crate::core::Core;
use crate::replicate::pool_manager_update;
use crate::replicates::update_replicate_status;
use crate::task::TaskStatus;
use crate::task_updates::{on_contribution_timeout, on_task_failed, transition};

/// Runs every periodic check until the double stops.
pub(crate) async fn run(core: &Core) {
    tokio::join!(
        run_worker_lost(core),
        run_task_checks(core),
        run_session_reaper(core)
    );
}

/// Runs the lost-worker detector every `worker_lost_check_every`.
async fn run_worker_lost(core: &Core) {
    let mut ticks = tokio::time::interval(core.timing.worker_lost_check_every);
    loop {
        ticks.tick().await;
        detect_lost_workers(core).await;
    }
}

/// Runs the task detectors every `task_check_every`.
async fn run_task_checks(core: &Core) {
    let mut ticks = tokio::time::interval(core.timing.task_check_every);
    loop {
        ticks.tick().await;
        check_tasks(core).await;
    }
}

/// Closes idle SockJS sessions every disconnect delay.
async fn run_session_reaper(core: &Core) {
    let mut ticks = tokio::time::interval(core.timing.sockjs_disconnect_delay);
    loop {
        ticks.tick().await;
        core.push.reap(Instant::now());
    }
}

/// Every task detector once, then a fresh look at each task still in progress, as upstream's
/// chain detectors do (queued, so that one task is never moved by two steps at once).
pub(crate) async fn check_tasks(core: &Core) {
    detect_contribution_timeouts(core);
    detect_final_deadlines(core);
    detect_reveal_timeouts(core).await;
    detect_result_upload_timeouts(core).await;
    let in_progress: Vec<B256> = core
        .state()
        .tasks
        .values()
        .filter(|task| !task.status.is_final())
        .map(|task| task.task_id)
        .collect();
    for task_id in in_progress {
        core.request_task_update(task_id);
    }
}

/// `WorkerLostDetector`: replicates of workers silent for longer than `worker_lost_after` become
/// `WORKER_LOST`, unless their task is past its final deadline.
pub(crate) async fn detect_lost_workers(core: &Core) {
    let now = Instant::now();
    let threshold = core.timing.worker_lost_after;
    let clock_now = core.now();
    let lost: Vec<(B256, String)> = {
        let state = core.state();
        state
            .workers
            .values()
            .filter(|worker| {
                state
                    .stats
                    .get(&worker.wallet_address)
                    .and_then(|stats| stats.last_alive)
                    .is_some_and(|alive| now.saturating_duration_since(alive) >= threshold)
            })
            .flat_map(|worker| {
                let wallet = worker.wallet_address.clone();
                worker
                    .participating
                    .iter()
                    .map(move |task_id| (*task_id, wallet.clone()))
            })
            .filter(|(task_id, wallet)| {
                let expired = state
                    .tasks
                    .get(task_id)
                    .is_none_or(|task| clock_now > task.final_deadline);
                let status = state
                    .replicate(*task_id, wallet)
                    .map(|replicate| replicate.current_status());
                !expired
                    && status.is_some_and(|status| {
                        status != ReplicateStatus::WorkerLost && !status.is_final()
                    })
            })
            .collect()
    };
    for (task_id, wallet) in lost {
        let update = pool_manager_update(ReplicateStatus::WorkerLost, core.now_millis());
        if let Err(error) = update_replicate_status(core, task_id, &wallet, update).await {
            tracing::warn!(task = %task_id, worker = wallet, %error, "not marked WORKER_LOST");
        }
    }
}

/// Tasks matching `filter`, by id.
fn tasks_where(
    core: &Core,
    filter: impl Fn(&crate::task::Task) -> bool,
) -> Vec<(B256, TaskStatus)> {
    core.state()
        .tasks
        .values()
        .filter(|task| filter(task))
        .map(|task| (task.task_id, task.status))
        .collect()
}

/// `ContributionTimeoutTaskDetector`: still waiting for contributions after the deadline (but
/// before the final one).
fn detect_contribution_timeouts(core: &Core) {
    let now = core.now();
    let timed_out = tasks_where(core, |task| {
        task.status.in_contribution_phase()
            && task.contribution_deadline <= now
            && task.final_deadline > now
    });
    for (task_id, status) in timed_out {
        if transition(
            core,
            task_id,
            status,
            &[TaskStatus::ContributionTimeout, TaskStatus::Failed],
        ) {
            on_contribution_timeout(core, task_id);
        }
    }
}

/// `FinalDeadlineTaskDetector`.
fn detect_final_deadlines(core: &Core) {
    let now = core.now();
    let expired = tasks_where(core, |task| {
        !task.status.final_deadline_is_moot() && task.final_deadline <= now
    });
    for (task_id, status) in expired {
        if transition(
            core,
            task_id,
            status,
            &[TaskStatus::FinalDeadlineReached, TaskStatus::Failed],
        ) {
            on_task_failed(core, task_id);
        }
    }
}

/// `RevealTimeoutDetector`: after the reveal deadline, winners that did not reveal fail with
/// `REVEAL_TIMEOUT`.
async fn detect_reveal_timeouts(core: &Core) {
    let now = unix_secs(core.now());
    let late: Vec<(B256, String)> = {
        let state = core.state();
        state
            .tasks
            .values()
            .filter(|task| {
                matches!(
                    task.status,
                    TaskStatus::ConsensusReached
                        | TaskStatus::AtLeastOneRevealed
                        | TaskStatus::ResultUploading
                        | TaskStatus::ResultUploaded
                ) && task.reveal_deadline.is_some_and(|deadline| now > deadline)
            })
            .flat_map(|task| {
                state
                    .replicates
                    .get(&task.task_id)
                    .into_iter()
                    .flatten()
                    .filter(|replicate| {
                        matches!(
                            replicate.last_relevant_status(),
                            ReplicateStatus::Revealing | ReplicateStatus::Contributed
                        )
                    })
                    .map(|replicate| (task.task_id, replicate.worker.clone()))
            })
            .collect()
    };
    for (task_id, worker) in late {
        let update = ReplicateStatusUpdate {
            details: Some(pew_iexec::model::ReplicateStatusDetails {
                cause: Some(StatusCause::RevealTimeout),
                ..Default::default()
            }),
            ..pool_manager_update(ReplicateStatus::Failed, core.now_millis())
        };
        if let Err(error) = update_replicate_status(core, task_id, &worker, update).await {
            tracing::debug!(task = %task_id, worker, %error, "reveal timeout not recorded");
        }
    }
}

/// `ReplicateResultUploadTimeoutDetector`: an uploader silent for `result_upload_timeout` is
/// marked `RESULT_UPLOAD_FAILED`, so that another revealer is asked.
async fn detect_result_upload_timeouts(core: &Core) {
    let now = core.now();
    let timeout = core.timing.result_upload_timeout;
    let stalled: Vec<(B256, String, bool)> = {
        let state = core.state();
        state
            .tasks
            .values()
            .filter(|task| task.status == TaskStatus::ResultUploading)
            .filter(|task| {
                task.status_date()
                    .is_some_and(|since| now > since + timeout)
            })
            .filter_map(|task| {
                let worker = task.uploading_worker.clone()?;
                let already_failed = state
                    .replicate(task.task_id, &worker)?
                    .contains(ReplicateStatus::ResultUploadFailed);
                Some((task.task_id, worker, already_failed))
            })
            .collect()
    };
    for (task_id, worker, already_failed) in stalled {
        if !already_failed {
            let update =
                pool_manager_update(ReplicateStatus::ResultUploadFailed, core.now_millis());
            if let Err(error) = update_replicate_status(core, task_id, &worker, update).await {
                tracing::debug!(task = %task_id, worker, %error, "upload timeout not recorded");
            }
        }
        core.request_task_update(task_id);
    }
}
