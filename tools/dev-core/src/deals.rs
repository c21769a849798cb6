//! Turning a deal into tasks (iexec-core `DealWatcherService.handleDeal` and
//! `TaskService.addTask`). Upstream watches `SchedulerNotice` events; the double is told about
//! deals explicitly.

use pew_poco::B256;
use pew_poco::abi::DealParams;

use crate::chain::{CONTRIBUTION_DEADLINE_RATIO, ChainDealView, FINAL_DEADLINE_RATIO};
use crate::clock::from_unix_secs;
use crate::core::Core;
use crate::task::{Task, TaskDescription, is_tee_tag};

/// Why a deal was not scheduled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DealError {
    /// The deal could not be read.
    #[error("deal unreadable: {0}")]
    Unreadable(String),
    /// The deal is for another workerpool.
    #[error("deal is for workerpool {0}, not this one")]
    OtherWorkerpool(String),
    /// The contribution deadline of the deal passed.
    #[error("deal expired")]
    Expired,
    /// A TEE deal asks for a trust other than 0 or 1.
    #[error("TEE deal with trust {0}")]
    TeeTrust(u64),
    /// More tasks asked than the deal has.
    #[error("deal has {bot_size} tasks, {asked} asked")]
    TooManyTasks {
        /// Tasks in the deal.
        bot_size: u64,
        /// Tasks asked for.
        asked: u64,
    },
}

/// What the scheduler keeps from the deal for each of its tasks.
fn describe(deal: &ChainDealView) -> TaskDescription {
    TaskDescription {
        trust: deal.trust,
        max_execution_time_secs: deal.category_time_ref,
        tag: deal.tag,
        callback: deal.callback,
        result_storage_provider: DealParams::parse(&deal.params).iexec_result_storage_provider,
    }
}

/// Schedules the first `tasks` tasks of the deal (from `botFirst`): reads the deal, checks it
/// like `shouldProcessDeal`, creates the tasks not known yet and starts their initialization.
/// Returns the ids of the tasks created.
pub(crate) async fn publish_deal(
    core: &Core,
    deal_id: B256,
    tasks: u64,
) -> Result<Vec<B256>, DealError> {
    let deal = core
        .chain
        .deal(deal_id)
        .await
        .map_err(|error| DealError::Unreadable(error.to_string()))?;
    if deal.workerpool != core.workerpool {
        return Err(DealError::OtherWorkerpool(format!(
            "{:#x}",
            deal.workerpool
        )));
    }
    if tasks > deal.bot_size {
        return Err(DealError::TooManyTasks {
            bot_size: deal.bot_size,
            asked: tasks,
        });
    }
    let contribution_deadline =
        from_unix_secs(deal.start_time + CONTRIBUTION_DEADLINE_RATIO * deal.category_time_ref);
    let final_deadline =
        from_unix_secs(deal.start_time + FINAL_DEADLINE_RATIO * deal.category_time_ref);
    let now = core.now();
    if contribution_deadline <= now {
        return Err(DealError::Expired);
    }
    if is_tee_tag(deal.tag) && deal.trust > 1 {
        return Err(DealError::TeeTrust(deal.trust));
    }
    let description = describe(&deal);
    let created: Vec<B256> = {
        let mut state = core.state();
        (deal.bot_first..deal.bot_first + tasks)
            .filter_map(|index| {
                let task = Task::received(
                    deal_id,
                    index,
                    description.clone(),
                    contribution_deadline,
                    final_deadline,
                    now,
                );
                let task_id = task.task_id;
                (!state.tasks.contains_key(&task_id)).then(|| {
                    state.tasks.insert(task_id, task);
                    task_id
                })
            })
            .collect()
    };
    for &task_id in &created {
        tracing::info!(deal = %deal_id, task = %task_id, "task received");
        core.request_task_update(task_id);
    }
    core.changed();
    Ok(created)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pew_poco::Address;

    #[test]
    fn description_reads_the_storage_provider_from_the_params() {
        let deal = ChainDealView {
            workerpool: Address::ZERO,
            workerpool_owner: Address::ZERO,
            trust: 3,
            category_time_ref: 300,
            tag: B256::ZERO,
            callback: Address::ZERO,
            params: r#"{"iexec_args":"a b","iexec_result_storage_provider":"ipfs"}"#.into(),
            start_time: 0,
            bot_first: 0,
            bot_size: 1,
        };
        let description = describe(&deal);
        assert_eq!(description.trust, 3);
        assert_eq!(description.max_execution_time_secs, 300);
        assert_eq!(description.result_storage_provider.as_deref(), Some("ipfs"));
        assert!(description.result_goes_to_proxy());
        // Non-JSON params are arguments only: no provider, nothing goes to the proxy.
        let description = describe(&ChainDealView {
            params: "a b".into(),
            ..deal
        });
        assert_eq!(description.result_storage_provider, None);
    }
}
