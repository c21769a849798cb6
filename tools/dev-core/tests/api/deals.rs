//! Scheduling deals: the library call and the dev node's admin endpoint.

use std::time::Duration;

use dev_core::{ChainDealView, DealError, TaskStatus};
use pew_poco::{Address, B256};

use crate::harness::{Harness, PATIENCE};

async fn admin(harness: &Harness, path: &str) -> (u16, String) {
    let response = harness.http.post(harness.url(path)).send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn admin_endpoint_schedules_all_tasks_by_default() {
    let harness = Harness::start().await;
    let deal = B256::repeat_byte(0xf1);
    harness.add_deal(deal, 1, 3);
    let (status, body) = admin(&harness, &format!("/dev/deals/{deal}")).await;
    assert_eq!(status, 200);
    let tasks: Vec<B256> = serde_json::from_str(&body).unwrap();
    assert_eq!(
        tasks,
        (0..3)
            .map(|index| pew_poco::task_id(deal, index))
            .collect::<Vec<_>>()
    );
    for task in tasks {
        harness
            .core
            .wait_for_task_status(task, TaskStatus::Initialized, PATIENCE)
            .await
            .unwrap();
    }
    // Known tasks are not created twice.
    assert_eq!(
        admin(&harness, &format!("/dev/deals/{deal}?tasks=2")).await,
        (200, "[]".into())
    );
}

#[tokio::test]
async fn admin_endpoint_refuses_what_upstream_would_not_schedule() {
    let harness = Harness::start().await;
    assert_eq!(admin(&harness, "/dev/deals/0x12").await.0, 400);
    assert_eq!(
        admin(&harness, &format!("/dev/deals/{}", B256::repeat_byte(0xf2)))
            .await
            .0,
        502,
        "unknown deal"
    );

    let deal = B256::repeat_byte(0xf3);
    harness.add_deal(deal, 1, 2);
    assert_eq!(
        admin(&harness, &format!("/dev/deals/{deal}?tasks=3"))
            .await
            .0,
        422,
        "more than the deal has"
    );

    let foreign = B256::repeat_byte(0xf4);
    let view = ChainDealView {
        workerpool: Address::repeat_byte(0x01),
        workerpool_owner: Address::repeat_byte(0x01),
        trust: 1,
        category_time_ref: 300,
        tag: B256::ZERO,
        callback: Address::ZERO,
        params: String::new(),
        start_time: harness.clock.unix_secs(),
        bot_first: 0,
        bot_size: 1,
    };
    harness.chain.add_deal(foreign, view.clone());
    let refused = harness.core.publish_deal(foreign, 1).await;
    assert!(
        matches!(refused, Err(DealError::OtherWorkerpool(_))),
        "{refused:?}"
    );

    let expired = B256::repeat_byte(0xf5);
    harness.chain.add_deal(
        expired,
        ChainDealView {
            workerpool: crate::harness::workerpool(),
            ..view
        },
    );
    harness.core.advance_clock(Duration::from_secs(7 * 300));
    assert_eq!(
        harness.core.publish_deal(expired, 1).await,
        Err(DealError::Expired)
    );
}

#[tokio::test]
async fn failed_initialize_fails_the_task_and_tells_workers_to_abort() {
    let harness = Harness::start().await;
    let stomp = crate::harness::StompClient::connect(&harness, "s").await;
    let deal = B256::repeat_byte(0xf6);
    harness.add_deal(deal, 1, 1);
    let task = pew_poco::task_id(deal, 0);
    stomp.subscribe(task).await;
    assert_eq!(harness.core.publish_deal(deal, 1).await.unwrap(), [task]);
    // The test runs on a single-threaded runtime: the update loop has not run yet, so the
    // scheduler's `initialize` meets a dead node.
    harness.chain.set_reachable(false);
    harness
        .core
        .wait_for_task_status(task, TaskStatus::Failed, PATIENCE)
        .await
        .unwrap();
    assert_eq!(
        harness.core.task_statuses(task),
        [
            TaskStatus::Received,
            TaskStatus::InitializeFailed,
            TaskStatus::Failed
        ]
    );
    let abort = stomp.next_notification().await;
    assert_eq!(
        abort.task_notification_type,
        pew_iexec::status::NextAction::PleaseAbort
    );
    assert!(abort.workers_address.is_empty());
}
