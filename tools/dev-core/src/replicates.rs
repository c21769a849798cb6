//! Replicate status updates (iexec-core `ReplicatesService.updateReplicateStatus`) and what
//! follows an accepted one (`ReplicateListeners`).
//!
//! The same path serves workers (`POST /replicates/{id}/updateStatus`) and the scheduler's own
//! updates (`WORKER_LOST`, `RECOVERING`, `RESULT_UPLOAD_REQUESTED`…), as upstream.

use std::future::Future;

use pew_iexec::model::ReplicateStatusUpdate;
use pew_iexec::status::{NextAction, ReplicateStatus, StatusCause};
use pew_iexec::workflow::{self, UpdateRefusal};
use pew_poco::B256;

use crate::auth::parse_address;
use crate::chain::{ChainContributionView, ChainTaskStatus, ContributionStatus};
use crate::core::Core;
use crate::task::TaskDescription;

use ReplicateStatus as S;

/// Why an update was not applied (`ReplicateStatusUpdateError`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpdateError {
    /// Refused by the workflow (unknown replicate, repeat, bad transition, refused status).
    #[error(transparent)]
    Workflow(#[from] UpdateRefusal),
    /// `COMPUTED` for a task the scheduler cannot describe.
    #[error("unknown task")]
    UnknownTask,
    /// The chain or the result proxy does not confirm what the worker claims.
    #[error("cannot update: {0}")]
    NotConfirmed(String),
}

impl UpdateError {
    /// HTTP status of the reply: 208 for a repeat, 202 otherwise.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::Workflow(refusal) => refusal.http_status(),
            _ => 202,
        }
    }

    /// Body of the reply: `PLEASE_WAIT` for a repeat, `PLEASE_ABORT` otherwise.
    pub fn reply(&self) -> NextAction {
        match self {
            Self::Workflow(refusal) => refusal.reply(),
            _ => NextAction::PleaseAbort,
        }
    }
}

/// What the chain said, gathered before applying the update.
#[derive(Debug, Default)]
struct Evidence {
    contribution: Option<ChainContributionView>,
    worker_weight: u64,
}

/// Applies `update` to the worker's replicate of `task_id` and returns the next action
/// (`None` where upstream answers an empty body).
pub(crate) async fn update_replicate_status(
    core: &Core,
    task_id: B256,
    worker: &str,
    mut update: ReplicateStatusUpdate,
) -> Result<Option<NextAction>, UpdateError> {
    let new = update.status;
    let description = {
        let state = core.state();
        let replicate = state
            .replicate(task_id, worker)
            .ok_or(UpdateRefusal::UnknownReplicate)?;
        workflow::check_update(&replicate.statuses(), new)?;
        state
            .tasks
            .get(&task_id)
            .map(|task| task.description.clone())
    };
    if new == S::Computed && description.is_none() {
        return Err(UpdateError::UnknownTask);
    }

    let evidence = gather_evidence(core, task_id, worker, &update, description.as_ref()).await?;

    let cause = update.details.as_ref().and_then(|details| details.cause);
    {
        let mut state = core.state();
        let replicate = state
            .replicate_mut(task_id, worker)
            .ok_or(UpdateRefusal::UnknownReplicate)?;
        // The replicate may have moved while the chain was read.
        workflow::check_update(&replicate.statuses(), new)?;
        if matches!(new, S::Contributed | S::ContributeAndFinalizeDone) {
            replicate.contribution_hash = evidence
                .contribution
                .as_ref()
                .map(|contribution| contribution.result_hash);
            replicate.worker_weight = evidence.worker_weight;
        }
        if matches!(new, S::ResultUploaded | S::ContributeAndFinalizeDone) {
            let details = update.details.as_ref();
            replicate.result_link = details.and_then(|details| details.result_link.clone());
            replicate.callback_data =
                details.and_then(|details| details.chain_callback_data.clone());
        }
        let keeps_logs = new == S::Computed
            || (new == S::ComputeFailed && cause == Some(StatusCause::AppComputeFailed));
        let logs = if keeps_logs {
            update
                .details
                .as_mut()
                .and_then(|details| details.compute_logs.take())
        } else {
            None
        };
        replicate.push(update);
        if let Some(logs) = logs {
            let tailed = pew_iexec::model::ComputeLogs {
                wallet_address: logs.wallet_address,
                ..pew_iexec::model::ComputeLogs::tailed(&logs.stdout, &logs.stderr)
            };
            state
                .compute_logs
                .insert((task_id, worker.to_owned()), tailed);
        }
        after_update(&mut state, core, task_id, worker, new);
    }
    tracing::info!(task = %task_id, worker, status = %new, "replicate updated");
    core.changed();
    Ok(workflow::next_action(new, cause))
}

/// `ReplicateListeners.onReplicateUpdatedEvent`.
fn after_update(
    state: &mut crate::core::State,
    core: &Core,
    task_id: B256,
    worker: &str,
    new: ReplicateStatus,
) {
    if matches!(
        new,
        S::Started
            | S::ContributeAndFinalizeDone
            | S::Contributed
            | S::Revealed
            | S::ResultUploaded
    ) || new.is_failed_before_computed()
    {
        core.request_task_update(task_id);
    }
    if new.is_failed_before_computed() || new == S::Computed {
        state.release_computing_slot(task_id, worker);
    }
    if new.is_final() {
        state.release_task(task_id, worker);
    }
}

/// The chain and proxy checks of `canUpdateReplicateStatus` for statuses that claim something
/// happened elsewhere.
async fn gather_evidence(
    core: &Core,
    task_id: B256,
    worker: &str,
    update: &ReplicateStatusUpdate,
    description: Option<&TaskDescription>,
) -> Result<Evidence, UpdateError> {
    let not_confirmed = |why: &str| UpdateError::NotConfirmed(why.to_owned());
    match update.status {
        S::Contributed => {
            require_receipt_block(core, update).await?;
            let contribution = contribution_reaching(core, task_id, worker, |status| {
                matches!(
                    status,
                    ContributionStatus::Contributed | ContributionStatus::Revealed
                )
            })
            .await
            .ok_or_else(|| not_confirmed("no contribution on-chain"))?;
            if contribution.result_hash == B256::ZERO {
                return Err(not_confirmed("contribution without result hash"));
            }
            let worker_weight = worker_weight(core, worker).await;
            if worker_weight == 0 {
                return Err(not_confirmed("worker weight unavailable"));
            }
            Ok(Evidence {
                contribution: Some(contribution),
                worker_weight,
            })
        }
        S::Revealed => {
            require_receipt_block(core, update).await?;
            contribution_reaching(core, task_id, worker, |status| {
                status == ContributionStatus::Revealed
            })
            .await
            .ok_or_else(|| not_confirmed("no reveal on-chain"))?;
            Ok(Evidence::default())
        }
        S::ResultUploaded => {
            let description =
                description.ok_or_else(|| not_confirmed("missing task description"))?;
            if !is_result_uploaded(core, task_id, description) {
                return Err(not_confirmed("result not on the result proxy"));
            }
            let details = update.details.as_ref();
            let present = |value: Option<&String>| value.is_some_and(|value| !value.is_empty());
            let has_link = if description.has_callback() {
                present(details.and_then(|details| details.chain_callback_data.as_ref()))
            } else {
                present(details.and_then(|details| details.result_link.as_ref()))
            };
            if !has_link {
                return Err(not_confirmed("missing result link or callback data"));
            }
            Ok(Evidence::default())
        }
        S::ResultUploadFailed => match description {
            Some(description) if is_result_uploaded(core, task_id, description) => {
                Err(not_confirmed("result is on the result proxy"))
            }
            _ => Ok(Evidence::default()),
        },
        S::ContributeAndFinalizeDone => {
            let revealed = contribution_reaching(core, task_id, worker, |status| {
                status == ContributionStatus::Revealed
            })
            .await;
            let uploaded = description
                .is_some_and(|description| is_result_uploaded(core, task_id, description));
            let completed = core
                .chain
                .task(task_id)
                .await
                .is_ok_and(|task| task.status == ChainTaskStatus::Completed);
            match revealed {
                Some(contribution) if uploaded && completed => Ok(Evidence {
                    contribution: Some(contribution),
                    worker_weight: worker_weight(core, worker).await,
                }),
                _ => Err(not_confirmed("contribute-and-finalize not confirmed")),
            }
        }
        _ => Ok(Evidence::default()),
    }
}

/// `ReplicatesService.isResultUploaded`: results outside the proxy (callback, other storage)
/// count as uploaded.
pub(crate) fn is_result_uploaded(
    core: &Core,
    task_id: B256,
    description: &TaskDescription,
) -> bool {
    !description.result_goes_to_proxy() || core.state().proxy.result(task_id).is_some()
}

/// `Web3jService.isBlockAvailable` on the receipt's block: a missing or zero block fails; a block
/// the node has not reached yet is waited for, within the chain-check budget.
async fn require_receipt_block(
    core: &Core,
    update: &ReplicateStatusUpdate,
) -> Result<(), UpdateError> {
    let block = update
        .details
        .as_ref()
        .and_then(|details| details.chain_receipt.as_ref())
        .map_or(0, |receipt| receipt.block_number);
    if block == 0 {
        return Err(UpdateError::NotConfirmed(
            "missing chain receipt block".into(),
        ));
    }
    let reached = retry(core, || async {
        core.chain
            .block_number()
            .await
            .ok()
            .filter(|&latest| latest >= block)
    })
    .await;
    reached
        .map(|_| ())
        .ok_or_else(|| UpdateError::NotConfirmed(format!("block {block} not reached")))
}

/// `repeatIsContributedTrue`/`repeatIsRevealedTrue`: the worker's contribution once its status
/// satisfies `accept`, re-read a few times because the scheduler's node may lag.
async fn contribution_reaching(
    core: &Core,
    task_id: B256,
    worker: &str,
    accept: impl Fn(ContributionStatus) -> bool,
) -> Option<ChainContributionView> {
    let address = parse_address(worker)?;
    retry(core, || async {
        core.chain
            .contribution(task_id, address)
            .await
            .ok()
            .filter(|contribution| accept(contribution.status))
    })
    .await
}

/// The worker's weight, 0 when unknown (`IexecHubService.getWorkerWeight`).
pub(crate) async fn worker_weight(core: &Core, worker: &str) -> u64 {
    match parse_address(worker) {
        Some(address) => core.chain.worker_weight(address).await.unwrap_or(0),
        None => 0,
    }
}

/// Runs `attempt` up to the configured number of times, waiting between tries.
async fn retry<T, F, Fut>(core: &Core, attempt: F) -> Option<T>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let attempts = core.timing.chain_check_attempts.max(1);
    for tried in 1..=attempts {
        if let Some(value) = attempt().await {
            return Some(value);
        }
        if tried < attempts {
            tokio::time::sleep(core.timing.chain_check_interval).await;
        }
    }
    None
}
