//! Handing out replicates and recovering interrupted ones (iexec-core `ReplicateSupplyService`).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use pew_iexec::model::{
    ReplicateStatusDetails, ReplicateTaskSummary, SignatureValue, TaskNotification,
    TaskNotificationExtra, WorkerpoolAuthorization,
};
use pew_iexec::status::{NextAction, ReplicateStatus, TaskAbortCause};
use pew_poco::{B256, Wallet};

use crate::auth::parse_address;
use crate::chain::ContributionStatus;
use crate::consensus::{is_consensus_reached, needs_more_contributions};
use crate::core::Core;
use crate::replicate::{Replicate, pool_manager_update};
use crate::replicates::{is_result_uploaded, update_replicate_status, worker_weight};
use crate::task::{Task, TaskStatus};

use ReplicateStatus as S;

/// The workerpool authorization of `worker` for `task`, signed by the scheduler.
pub(crate) fn authorization(
    core: &Core,
    task: &Task,
    worker: &str,
) -> Option<WorkerpoolAuthorization> {
    sign_authorization(&core.scheduler, task, worker)
}

/// `SignatureService.createAuthorization`: EIP-191 over `keccak(worker ‖ taskId ‖ enclaveChallenge)`
/// with the scheduler key. `None` before the task has an enclave challenge.
fn sign_authorization(
    scheduler: &Wallet,
    task: &Task,
    worker: &str,
) -> Option<WorkerpoolAuthorization> {
    let enclave_challenge = task.enclave_challenge?;
    let hash =
        pew_poco::authorization_hash(parse_address(worker)?, task.task_id, enclave_challenge);
    Some(WorkerpoolAuthorization {
        chain_task_id: task.task_id.to_string(),
        deal_id: task.deal_id.to_string(),
        task_index: task.index,
        worker_wallet: worker.to_owned(),
        enclave_challenge: format!("{enclave_challenge:#x}"),
        signature: SignatureValue {
            value: scheduler.sign_eth_signed(hash).to_string(),
        },
    })
}

/// `GET /replicates/available` once the worker passed authentication, the chain health check and
/// the ask-period gate: a new replicate of the best task for this worker, if any.
pub(crate) async fn available_replicate(
    core: &Core,
    worker: &str,
    block_number: i64,
) -> Option<ReplicateTaskSummary> {
    if block_number <= 0 {
        return None;
    }
    let _one_at_a_time = core.supply.lock().await;
    let mut scanned = HashSet::new();
    loop {
        let task = next_candidate(core, worker, &scanned)?;
        scanned.insert(task.task_id);
        if let Some(summary) = try_accept(core, &task, worker).await {
            return Some(summary);
        }
    }
}

/// The highest-priority task still taking contributions that the worker may get
/// (`getPrioritizedInitializedOrRunningTask`: `RUNNING` before `INITIALIZED`, then the earliest
/// contribution deadline). `None` also when the worker is unknown or full.
fn next_candidate(core: &Core, worker: &str, scanned: &HashSet<B256>) -> Option<Task> {
    let now = core.now();
    let state = core.state();
    let registered = state.workers.get(worker)?;
    if registered.is_full() {
        return None;
    }
    let excluded_tags = registered.excluded_tags();
    state
        .tasks
        .values()
        .filter(|task| task.status.in_contribution_phase())
        .filter(|task| task.contribution_deadline > now)
        .filter(|task| !excluded_tags.contains(&task.description.tag))
        .filter(|task| !scanned.contains(&task.task_id))
        .min_by_key(|task| (std::cmp::Reverse(task.status), task.contribution_deadline))
        .cloned()
}

/// `acceptOrRejectTask`: creates the worker's replicate if the task still needs one.
async fn try_accept(core: &Core, task: &Task, worker: &str) -> Option<ReplicateTaskSummary> {
    task.enclave_challenge?;
    let period = Duration::from_secs(task.description.max_execution_time_secs);
    let replicates = {
        let state = core.state();
        let replicates = state.replicates.get(&task.task_id)?;
        if replicates
            .iter()
            .any(|replicate| replicate.worker == worker)
            || !needs_more_contributions(replicates, task.description.trust, period, Instant::now())
        {
            return None;
        }
        replicates.clone()
    };
    // Upstream treats an unreadable chain task as "no consensus yet".
    if let Ok(chain_task) = core.chain.task(task.task_id).await
        && is_consensus_reached(&chain_task, &replicates)
    {
        return None;
    }
    let weight = worker_weight(core, worker).await;
    let created_at = core.now_millis();
    {
        let mut state = core.state();
        let registered = state.workers.get_mut(worker)?;
        if registered.is_full() || registered.participating.contains(&task.task_id) {
            return None;
        }
        registered.participating.push(task.task_id);
        registered.computing.push(task.task_id);
        state
            .replicates
            .get_mut(&task.task_id)?
            .push(Replicate::created(
                worker.to_owned(),
                weight,
                Instant::now(),
                created_at,
            ));
    }
    tracing::info!(task = %task.task_id, worker, "replicate created");
    core.changed();
    Some(ReplicateTaskSummary {
        workerpool_authorization: authorization(core, task, worker)?,
        sms_url: None,
    })
}

/// `GET /replicates/interrupted` (`getMissedTaskNotifications`): what each task the worker takes
/// part in expects from it, after which its replicate is marked `RECOVERING`.
pub(crate) async fn missed_notifications(
    core: &Core,
    worker: &str,
    block_number: u64,
) -> Vec<TaskNotification> {
    let task_ids = core
        .state()
        .workers
        .get(worker)
        .map(|w| w.participating.clone())
        .unwrap_or_default();
    let mut notifications = Vec::new();
    for task_id in task_ids {
        let Some(task) = core.state().tasks.get(&task_id).cloned() else {
            continue;
        };
        if core.state().replicate(task_id, worker).is_none() {
            continue;
        }
        let Some(action) = recovery_action(core, &task, worker, block_number).await else {
            continue;
        };
        // Fresh copy: recovery may have moved the task (consensus block, status).
        let task = core.state().tasks.get(&task_id).cloned().unwrap_or(task);
        let extra = TaskNotificationExtra {
            workerpool_authorization: authorization(core, &task, worker),
            block_number: (action == NextAction::PleaseReveal).then_some(task.consensus_block),
            task_abort_cause: (action == NextAction::PleaseAbort).then(|| abort_cause(task.status)),
            ..Default::default()
        };
        notifications.push(TaskNotification {
            chain_task_id: task_id.to_string(),
            workers_address: vec![worker.to_owned()],
            task_notification_type: action,
            task_notification_extra: Some(extra),
        });
        let recovering = pool_manager_update(S::Recovering, core.now_millis());
        if let Err(error) = update_replicate_status(core, task_id, worker, recovering).await {
            tracing::debug!(task = %task_id, worker, %error, "not marked RECOVERING");
        }
    }
    notifications
}

/// `getTaskAbortCause`.
fn abort_cause(status: TaskStatus) -> TaskAbortCause {
    match status {
        TaskStatus::ConsensusReached => TaskAbortCause::ConsensusReached,
        TaskStatus::ContributionTimeout => TaskAbortCause::ContributionTimeout,
        _ => TaskAbortCause::Unknown,
    }
}

fn last_relevant(core: &Core, task_id: B256, worker: &str) -> Option<ReplicateStatus> {
    core.state()
        .replicate(task_id, worker)
        .map(Replicate::last_relevant_status)
}

/// `getTaskNotificationType`: the action a returning worker should take for this task. May
/// record on-chain progress the worker did not report (`CONTRIBUTED`, `REVEALED`).
async fn recovery_action(
    core: &Core,
    task: &Task,
    worker: &str,
    block_number: u64,
) -> Option<NextAction> {
    if task.status.in_contribution_phase() {
        return recover_in_contribution_phase(core, task, worker, block_number).await;
    }
    let contributed = core
        .state()
        .replicate(task.task_id, worker)
        .is_some_and(|r| r.contains(S::Contributed));
    if task.status == TaskStatus::ContributionTimeout
        || (task.status == TaskStatus::ConsensusReached && !contributed)
    {
        return Some(NextAction::PleaseAbort);
    }
    let mut action = None;
    if task.status.in_reveal_phase() {
        action = recover_in_reveal_phase(core, task, worker, block_number).await;
    }
    // Upstream runs this after the reveal-phase recovery and keeps its answer.
    if task.status == TaskStatus::ResultUploading {
        action = recover_in_upload_phase(core, task, worker).await;
    }
    if task.status.in_completion_phase() {
        let revealed = core
            .state()
            .replicate(task.task_id, worker)
            .is_some_and(|r| r.contains(S::Revealed));
        let completed = core
            .state()
            .tasks
            .get(&task.task_id)
            .is_some_and(|t| t.status == TaskStatus::Completed);
        return match (revealed, completed) {
            (true, true) => Some(NextAction::PleaseComplete),
            (true, false) => Some(NextAction::PleaseWait),
            (false, _) => None,
        };
    }
    action
}

async fn contribution_status(
    core: &Core,
    task_id: B256,
    worker: &str,
) -> Option<ContributionStatus> {
    let address = parse_address(worker)?;
    core.chain
        .contribution(task_id, address)
        .await
        .ok()
        .map(|contribution| contribution.status)
}

/// A pool-manager update backed by the worker's latest block, for progress seen on-chain.
async fn record_on_chain_progress(
    core: &Core,
    task_id: B256,
    worker: &str,
    status: ReplicateStatus,
    block: u64,
) {
    let mut update = pool_manager_update(status, core.now_millis());
    update.details = Some(ReplicateStatusDetails {
        chain_receipt: Some(pew_iexec::model::ChainReceipt {
            block_number: block,
            tx_hash: String::new(),
        }),
        ..Default::default()
    });
    if let Err(error) = update_replicate_status(core, task_id, worker, update).await {
        tracing::warn!(task = %task_id, worker, %error, "on-chain progress not recorded");
    }
}

async fn recover_in_contribution_phase(
    core: &Core,
    task: &Task,
    worker: &str,
    block: u64,
) -> Option<NextAction> {
    let last = last_relevant(core, task.task_id, worker)?;
    if last < S::Contributing {
        return Some(NextAction::PleaseContribute);
    }
    if last == S::Contributing {
        let on_chain = matches!(
            contribution_status(core, task.task_id, worker).await,
            Some(ContributionStatus::Contributed | ContributionStatus::Revealed)
        );
        if !on_chain {
            return Some(NextAction::PleaseContribute);
        }
        record_on_chain_progress(core, task.task_id, worker, S::Contributed, block).await;
    }
    if last_relevant(core, task.task_id, worker)? != S::Contributed {
        return None;
    }
    let replicates = core
        .state()
        .replicates
        .get(&task.task_id)
        .cloned()
        .unwrap_or_default();
    let reached = match core.chain.task(task.task_id).await {
        Ok(chain_task) => is_consensus_reached(&chain_task, &replicates),
        Err(_) => false,
    };
    if !reached {
        return Some(NextAction::PleaseWait);
    }
    core.request_task_update(task.task_id);
    Some(NextAction::PleaseReveal)
}

async fn recover_in_reveal_phase(
    core: &Core,
    task: &Task,
    worker: &str,
    block: u64,
) -> Option<NextAction> {
    let last = last_relevant(core, task.task_id, worker)?;
    if last == S::Contributed {
        return Some(NextAction::PleaseReveal);
    }
    if last == S::Revealing {
        let revealed = contribution_status(core, task.task_id, worker).await
            == Some(ContributionStatus::Revealed);
        if !revealed {
            return Some(NextAction::PleaseReveal);
        }
        record_on_chain_progress(core, task.task_id, worker, S::Revealed, block).await;
        core.request_task_update(task.task_id);
    }
    match last_relevant(core, task.task_id, worker)? {
        S::Revealed => Some(NextAction::PleaseWait),
        S::ResultUploadRequested => Some(NextAction::PleaseUpload),
        _ => None,
    }
}

async fn recover_in_upload_phase(core: &Core, task: &Task, worker: &str) -> Option<NextAction> {
    match last_relevant(core, task.task_id, worker)? {
        S::ResultUploadRequested => Some(NextAction::PleaseUpload),
        S::ResultUploading if !is_result_uploaded(core, task.task_id, &task.description) => {
            Some(NextAction::PleaseUpload)
        }
        S::ResultUploading => {
            // Upstream records RESULT_UPLOADED without a result link, which its own checks
            // refuse; the worker is told to wait either way.
            let update = pool_manager_update(S::ResultUploaded, core.now_millis());
            if let Err(error) = update_replicate_status(core, task.task_id, worker, update).await {
                tracing::debug!(task = %task.task_id, worker, %error, "upload not recorded");
            }
            core.request_task_update(task.task_id);
            Some(NextAction::PleaseWait)
        }
        S::ResultUploaded => Some(NextAction::PleaseWait),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::TaskDescription;
    use pew_poco::Address;
    use std::time::SystemTime;

    fn task(task_id: B256, enclave_challenge: Option<Address>) -> Task {
        let description = TaskDescription {
            trust: 1,
            max_execution_time_secs: 300,
            tag: B256::ZERO,
            callback: Address::ZERO,
            result_storage_provider: None,
        };
        let now = SystemTime::now();
        Task {
            task_id,
            enclave_challenge,
            ..Task::received(B256::ZERO, 0, description, now, now, now)
        }
    }

    fn scheduler() -> Wallet {
        let key: B256 = "0x2a46e8c1535792f6689b10d5c882c9363910c30751ec193ae71ec71630077909"
            .parse()
            .unwrap();
        Wallet::from_private_key(&key.0).unwrap()
    }

    #[test]
    fn authorization_matches_upstream_signature_service_vector() {
        // iexec-core SignatureServiceTests: r, s and v = 28.
        let task_id = "0xd94b63fc2d3ec4b96daf84b403bbafdc8c8517e8e2addd51fec0fa4e67801be8"
            .parse()
            .unwrap();
        let enclave: Address = "0x9a43BB008b7A657e1936ebf5d8e28e5c5E021596"
            .parse()
            .unwrap();
        let worker = "0x748e091bf16048cb5103e0e10f9d5a8b7fbdd860";
        let authorization =
            sign_authorization(&scheduler(), &task(task_id, Some(enclave)), worker).unwrap();
        assert_eq!(
            authorization.signature.value,
            "0x63f2c959ed7dfc11619e1e0b5ba8a4bf56f81ce81d0b6e6e9cdeca538cb85d97\
             737747b747bc6c7d42cba859fdd030b1bed8b2513699ba78ac67dab5b785fda5\
             1c"
        );
        assert_eq!(
            authorization.enclave_challenge,
            "0x9a43bb008b7a657e1936ebf5d8e28e5c5e021596"
        );
        assert_eq!(authorization.worker_wallet, worker);
        assert_eq!(
            authorization.chain_task_id,
            "0xd94b63fc2d3ec4b96daf84b403bbafdc8c8517e8e2addd51fec0fa4e67801be8"
        );
    }

    #[test]
    fn standard_task_authorization_names_the_zero_enclave() {
        let task = task(B256::repeat_byte(1), Some(Address::ZERO));
        let authorization = sign_authorization(
            &scheduler(),
            &task,
            "0x748e091bf16048cb5103e0e10f9d5a8b7fbdd860",
        )
        .unwrap();
        assert_eq!(
            authorization.enclave_challenge,
            "0x0000000000000000000000000000000000000000"
        );
    }

    #[test]
    fn no_authorization_before_initialization_or_for_a_malformed_wallet() {
        assert!(
            sign_authorization(
                &scheduler(),
                &task(B256::ZERO, None),
                "0x748e091bf16048cb5103e0e10f9d5a8b7fbdd860"
            )
            .is_none()
        );
        assert!(
            sign_authorization(
                &scheduler(),
                &task(B256::ZERO, Some(Address::ZERO)),
                "worker"
            )
            .is_none()
        );
    }
}
