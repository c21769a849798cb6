//! `POST /replicates/{id}/updateStatus`: next actions, 208, 202, and the on-chain checks.

use pew_iexec::model::{ComputeLogs, ReplicateStatusDetails, ReplicateStatusUpdate};
use pew_iexec::status::{ReplicateStatus as S, StatusCause, StatusModifier};
use pew_poco::B256;

use crate::harness::{FakeWorker, Harness, TO_COMPUTED, WORKER_KEY, with_receipt};

/// A registered worker holding the single task of a trust-1 deal.
async fn holding_a_task(harness: &Harness, deal: u8) -> (FakeWorker, B256) {
    let worker = harness.worker(WORKER_KEY, 1).await;
    let task = harness.deal(B256::repeat_byte(deal), 1, 1).await[0];
    worker.take_task().await;
    (worker, task)
}

#[tokio::test]
async fn unknown_task_or_replicate_is_told_to_abort() {
    let harness = Harness::start().await;
    let (worker, task) = holding_a_task(&harness, 0xb1).await;
    assert_eq!(
        worker.report(B256::repeat_byte(0x99), S::Starting).await,
        (202, "\"PLEASE_ABORT\"".into())
    );
    let upper = format!("0x{}", task.to_string()[2..].to_uppercase());
    let response = worker
        .http
        .post(harness.url(&format!("/replicates/{upper}/updateStatus")))
        .header("Authorization", format!("Bearer {}", worker.token))
        .json(&ReplicateStatusUpdate::new(S::Starting))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202, "task ids are exact strings");
}

#[tokio::test]
async fn repeats_get_208_and_bad_transitions_202() {
    let harness = Harness::start().await;
    let (worker, task) = holding_a_task(&harness, 0xb2).await;
    assert_eq!(
        worker.report(task, S::Starting).await,
        (200, "\"PLEASE_CONTINUE\"".into())
    );
    assert_eq!(
        worker.report(task, S::Starting).await,
        (208, "\"PLEASE_WAIT\"".into())
    );
    assert_eq!(
        worker.report(task, S::Computed).await,
        (202, "\"PLEASE_ABORT\"".into())
    );
    assert_eq!(
        worker.report(task, S::Created).await,
        (208, "\"PLEASE_WAIT\"".into()),
        "CREATED is in the history"
    );
    assert_eq!(
        harness.core.replicate_statuses(task, &worker.address),
        vec![S::Created, S::Starting]
    );
}

#[tokio::test]
async fn the_core_stamps_modifier_date_and_wallet() {
    let harness = Harness::start().await;
    let (worker, task) = holding_a_task(&harness, 0xb3).await;
    worker.walk(task, &TO_COMPUTED[..7]).await;
    let logs = ComputeLogs {
        wallet_address: Some("0xliar".into()),
        stdout: "out".into(),
        stderr: String::new(),
    };
    let computed = ReplicateStatusUpdate {
        modifier: Some(StatusModifier::PoolManager),
        date: Some(1),
        ..ReplicateStatusUpdate::with_details(
            S::Computed,
            ReplicateStatusDetails {
                compute_logs: Some(logs),
                exit_code: Some(0),
                ..Default::default()
            },
        )
    };
    assert_eq!(
        worker.update(task, &computed).await,
        (200, "\"PLEASE_CONTRIBUTE\"".into())
    );
    let replicate = harness.core.replicate(task, &worker.address).unwrap();
    let stored = replicate.history().last().unwrap();
    assert_eq!(stored.modifier, Some(StatusModifier::Worker));
    assert!(
        stored.date.unwrap() > 1_600_000_000_000,
        "epoch milliseconds of now"
    );
    assert_eq!(
        stored.details.as_ref().unwrap().compute_logs,
        None,
        "logs are kept apart"
    );
    let logs = harness.core.compute_logs(task, &worker.address).unwrap();
    assert_eq!(
        logs.wallet_address.as_deref(),
        Some(worker.address.as_str())
    );
    assert_eq!(logs.stdout, "out");
}

#[tokio::test]
async fn download_failures_contribute_or_abort_by_cause() {
    let harness = Harness::start().await;
    let (worker, task) = holding_a_task(&harness, 0xb4).await;
    worker.walk(task, &TO_COMPUTED[..3]).await;
    let failed = ReplicateStatusUpdate::with_cause(
        S::AppDownloadFailed,
        StatusCause::AppImageDownloadFailed,
    );
    assert_eq!(
        worker.update(task, &failed).await,
        (200, "\"PLEASE_CONTRIBUTE\"".into())
    );
    assert!(
        harness
            .core
            .worker(&worker.address)
            .unwrap()
            .computing
            .is_empty(),
        "early failure frees the slot"
    );

    let harness = Harness::start().await;
    let (worker, task) = holding_a_task(&harness, 0xb5).await;
    worker.walk(task, &TO_COMPUTED[..5]).await;
    let failed =
        ReplicateStatusUpdate::with_cause(S::DataDownloadFailed, StatusCause::ChainUnreachable);
    assert_eq!(
        worker.update(task, &failed).await,
        (200, "\"PLEASE_ABORT\"".into())
    );
}

#[tokio::test]
async fn contributed_needs_a_reached_block_and_the_contribution_on_chain() {
    let harness = Harness::start().await;
    let (worker, task) = holding_a_task(&harness, 0xb6).await;
    worker.walk(task, TO_COMPUTED).await;
    worker
        .walk(task, &[(S::Contributing, "PLEASE_CONTINUE")])
        .await;
    let abort = (202, "\"PLEASE_ABORT\"".to_owned());
    assert_eq!(
        worker.report(task, S::Contributed).await,
        abort,
        "no receipt"
    );
    assert_eq!(
        worker.update(task, &with_receipt(S::Contributed, 0)).await,
        abort,
        "block 0"
    );
    let ahead = harness.chain.current_block() + 100;
    assert_eq!(
        worker
            .update(task, &with_receipt(S::Contributed, ahead))
            .await,
        abort,
        "block not reached"
    );
    let now = harness.chain.current_block();
    assert_eq!(
        worker
            .update(task, &with_receipt(S::Contributed, now))
            .await,
        abort,
        "nothing on-chain"
    );

    let address = worker.wallet.address();
    let hash = pew_poco::result_hash(task, B256::repeat_byte(0x5e));
    let block = harness.chain.contribute(task, address, hash).unwrap();
    assert_eq!(
        worker
            .update(task, &with_receipt(S::Contributed, block))
            .await,
        (200, "\"PLEASE_WAIT\"".into())
    );
    let replicate = harness.core.replicate(task, &worker.address).unwrap();
    assert_eq!(replicate.contribution_hash, Some(hash));
    assert_eq!(replicate.worker_weight, 2);
}

#[tokio::test]
async fn failed_transactions_are_refused_so_that_the_worker_aborts() {
    let harness = Harness::start().await;
    let (worker, task) = holding_a_task(&harness, 0xb7).await;
    worker.walk(task, TO_COMPUTED).await;
    worker
        .walk(task, &[(S::Contributing, "PLEASE_CONTINUE")])
        .await;
    assert_eq!(
        worker.report(task, S::ContributeFailed).await,
        (202, "\"PLEASE_ABORT\"".into())
    );
    let aborted = ReplicateStatusUpdate::with_cause(S::Aborted, StatusCause::AbortedByWorker);
    // ABORTED has no next action: 200 with an empty body.
    assert_eq!(worker.update(task, &aborted).await, (200, String::new()));
}

#[tokio::test]
async fn chain_down_means_503_and_a_body_must_be_json() {
    let harness = Harness::start().await;
    let (worker, task) = holding_a_task(&harness, 0xb8).await;
    harness.core.set_chain_down(true);
    assert_eq!(worker.report(task, S::Starting).await.0, 503);
    harness.core.set_chain_down(false);
    let response = worker
        .http
        .post(harness.url(&format!("/replicates/{task}/updateStatus")))
        .header("Authorization", format!("Bearer {}", worker.token))
        .body(r#"{"status":"STARTING"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    let response = worker
        .http
        .post(harness.url(&format!("/replicates/{task}/updateStatus")))
        .header("Authorization", format!("Bearer {}", worker.token))
        .json(&serde_json::json!({"status": "NOT_A_STATUS"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
}
