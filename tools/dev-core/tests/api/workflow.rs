//! Whole replicate workflows: a scripted worker, the chain's part played on the in-memory hub,
//! notifications received through a real STOMP-over-SockJS session.

use std::time::Duration;

use dev_core::TaskStatus as T;
use pew_iexec::model::{ReplicateStatusDetails, ReplicateStatusUpdate};
use pew_iexec::status::{NextAction, ReplicateStatus as S, TaskAbortCause};
use pew_poco::B256;

use crate::harness::{Harness, PATIENCE, StompClient, WORKER_KEY, result_zip};

const OTHER_KEYS: [&str; 3] = [
    "0x0123456789012345678901234567890123456789012345678901234567890123",
    "0x1111111111111111111111111111111111111111111111111111111111111111",
    "0x2222222222222222222222222222222222222222222222222222222222222222",
];

fn uploaded(link: &str) -> ReplicateStatusUpdate {
    ReplicateStatusUpdate::with_details(
        S::ResultUploaded,
        ReplicateStatusDetails {
            result_link: Some(link.to_owned()),
            ..Default::default()
        },
    )
}

#[tokio::test]
async fn standard_task_goes_from_deal_to_completion() {
    let harness = Harness::start().await;
    let worker = harness.worker(WORKER_KEY, 1).await;
    let stomp = StompClient::connect(&harness, "worker-session").await;
    let task = harness.deal(B256::repeat_byte(0xc1), 1, 1).await[0];
    assert_eq!(
        harness.core.task_statuses(task),
        [T::Received, T::Initializing, T::Initialized]
    );

    let summary = worker.take_task().await;
    stomp.subscribe(task).await;
    assert_eq!(harness.core.subscribers(task), 1);

    let (zip, digest) = result_zip(b"42\n");
    let contribution_block = harness.contribute(&worker, task, digest).await;

    let reveal = stomp.next_notification().await;
    assert_eq!(reveal.chain_task_id, task.to_string());
    assert_eq!(reveal.task_notification_type, NextAction::PleaseReveal);
    assert_eq!(
        reveal.workers_address,
        std::slice::from_ref(&worker.address)
    );
    assert_eq!(
        reveal.task_notification_extra.unwrap().block_number,
        Some(contribution_block)
    );
    assert!(
        harness
            .core
            .task_statuses(task)
            .contains(&T::ConsensusReached)
    );

    harness.reveal(&worker, task, digest).await;
    let upload = stomp.next_notification().await;
    assert_eq!(upload.task_notification_type, NextAction::PleaseUpload);
    assert_eq!(
        upload.workers_address,
        std::slice::from_ref(&worker.address)
    );
    assert_eq!(
        harness
            .core
            .replicate(task, &worker.address)
            .unwrap()
            .current_status(),
        S::ResultUploadRequested
    );
    assert_eq!(
        harness.core.task(task).unwrap().uploading_worker.as_deref(),
        Some(worker.address.as_str())
    );

    worker
        .walk(task, &[(S::ResultUploading, "PLEASE_CONTINUE")])
        .await;
    let link_before_upload = pew_iexec::model::result_link("ipfs", "/ipfs/QmNothing");
    assert_eq!(
        worker.update(task, &uploaded(&link_before_upload)).await,
        (202, "\"PLEASE_ABORT\"".into())
    );

    let link = harness
        .upload(&worker, &summary.workerpool_authorization, &zip)
        .await;
    assert_eq!(
        worker.update(task, &uploaded(&link)).await,
        (200, "\"PLEASE_WAIT\"".into())
    );

    let complete = stomp.next_notification().await;
    assert_eq!(complete.task_notification_type, NextAction::PleaseComplete);
    assert!(
        complete.workers_address.is_empty(),
        "every worker of the task"
    );
    assert_eq!(
        harness.chain.finalized_results(task),
        Some(link.clone().into_bytes())
    );
    assert_eq!(
        harness.core.task_statuses(task),
        [
            T::Received,
            T::Initializing,
            T::Initialized,
            T::Running,
            T::ConsensusReached,
            T::AtLeastOneRevealed,
            T::ResultUploading,
            T::ResultUploaded,
            T::Finalizing,
            T::Finalized,
            T::Completed,
        ]
    );
    assert_eq!(harness.core.task(task).unwrap().result_link, Some(link));
    assert!(
        harness
            .core
            .worker(&worker.address)
            .unwrap()
            .participating
            .is_empty()
    );

    worker
        .walk(
            task,
            &[
                (S::Completing, "PLEASE_CONTINUE"),
                (S::Completed, "PLEASE_WAIT"),
            ],
        )
        .await;
    assert_eq!(
        harness.core.replicate_statuses(task, &worker.address),
        [
            S::Created,
            S::Starting,
            S::Started,
            S::AppDownloading,
            S::AppDownloaded,
            S::DataDownloading,
            S::DataDownloaded,
            S::Computing,
            S::Computed,
            S::Contributing,
            S::Contributed,
            S::Revealing,
            S::Revealed,
            S::ResultUploadRequested,
            S::ResultUploading,
            S::ResultUploaded,
            S::Completing,
            S::Completed,
        ]
    );
}

#[tokio::test]
async fn trust_three_hands_out_more_replicates_on_disagreement_and_aborts_the_loser() {
    let harness = Harness::start().await;
    let first = harness.worker(WORKER_KEY, 1).await;
    let dissenter = harness.worker(OTHER_KEYS[0], 1).await;
    let third = harness.worker(OTHER_KEYS[1], 1).await;
    let fourth = harness.worker(OTHER_KEYS[2], 1).await;
    let task = harness.deal(B256::repeat_byte(0xc2), 3, 1).await[0];
    let stomp = StompClient::connect(&harness, "observer").await;
    stomp.subscribe(task).await;

    let good = B256::repeat_byte(0x60);
    first.take_task().await;
    dissenter.take_task().await;
    assert_eq!(
        third.ask(1).await.status(),
        204,
        "two pending replicates may reach trust 3"
    );
    harness.contribute(&first, task, good).await;
    harness
        .contribute(&dissenter, task, B256::repeat_byte(0x66))
        .await;
    // 2 against 2: another replicate is needed, then one more (PoCo: 4·3 > 7·2 is false).
    third.take_task().await;
    harness.contribute(&third, task, good).await;
    assert_eq!(harness.core.task(task).unwrap().status, T::Running);
    fourth.take_task().await;
    harness.contribute(&fourth, task, good).await;

    let mut received = [
        stomp.next_notification().await,
        stomp.next_notification().await,
    ];
    received.sort_by_key(|notification| notification.task_notification_type);
    let (reveal, abort) = (&received[0], &received[1]);
    assert_eq!(reveal.task_notification_type, NextAction::PleaseReveal);
    let mut winners = reveal.workers_address.clone();
    winners.sort();
    let mut expected = vec![
        first.address.clone(),
        third.address.clone(),
        fourth.address.clone(),
    ];
    expected.sort();
    assert_eq!(winners, expected);
    assert_eq!(abort.task_notification_type, NextAction::PleaseAbort);
    assert_eq!(
        abort.workers_address,
        std::slice::from_ref(&dissenter.address)
    );
    assert_eq!(abort.task_abort_cause(), TaskAbortCause::ConsensusReached);
}

#[tokio::test]
async fn contribution_timeout_aborts_every_participant() {
    let harness = Harness::start().await;
    let worker = harness.worker(WORKER_KEY, 1).await;
    let stomp = StompClient::connect(&harness, "s").await;
    let task = harness.deal(B256::repeat_byte(0xc3), 1, 1).await[0];
    worker.take_task().await;
    stomp.subscribe(task).await;
    worker.walk(task, &crate::harness::TO_COMPUTED[..2]).await;
    harness
        .core
        .wait_for_task_status(task, T::Running, PATIENCE)
        .await
        .unwrap();

    harness.core.advance_clock(Duration::from_secs(7 * 300 + 1));
    harness.core.run_detectors().await;
    let abort = stomp.next_notification().await;
    assert_eq!(abort.task_notification_type, NextAction::PleaseAbort);
    assert_eq!(abort.workers_address, std::slice::from_ref(&worker.address));
    assert_eq!(
        abort.task_abort_cause(),
        TaskAbortCause::ContributionTimeout
    );
    assert!(
        harness
            .core
            .task_statuses(task)
            .ends_with(&[T::ContributionTimeout, T::Failed])
    );
    assert!(
        harness
            .core
            .worker(&worker.address)
            .unwrap()
            .computing
            .is_empty()
    );
    assert_eq!(
        worker.ask(1).await.status(),
        204,
        "nothing left to hand out"
    );
}

#[tokio::test]
async fn final_deadline_fails_the_task_and_aborts_without_cause() {
    let harness = Harness::start().await;
    let worker = harness.worker(WORKER_KEY, 1).await;
    let stomp = StompClient::connect(&harness, "s").await;
    let task = harness.deal(B256::repeat_byte(0xc4), 1, 1).await[0];
    worker.take_task().await;
    stomp.subscribe(task).await;
    let digest = B256::repeat_byte(0x61);
    harness.contribute(&worker, task, digest).await;
    assert_eq!(
        stomp.next_notification().await.task_notification_type,
        NextAction::PleaseReveal
    );

    harness
        .core
        .advance_clock(Duration::from_secs(10 * 300 + 1));
    harness.core.run_detectors().await;
    let abort = stomp.next_notification().await;
    assert_eq!(abort.task_notification_type, NextAction::PleaseAbort);
    assert!(abort.workers_address.is_empty());
    assert_eq!(abort.task_notification_extra, None);
    assert_eq!(abort.task_abort_cause(), TaskAbortCause::Unknown);
    assert!(
        harness
            .core
            .task_statuses(task)
            .ends_with(&[T::FinalDeadlineReached, T::Failed])
    );
}

#[tokio::test]
async fn silent_worker_is_lost_then_recovers() {
    let harness =
        Harness::start_with(|config| config.timing.worker_lost_after = Duration::ZERO).await;
    let worker = harness.worker(WORKER_KEY, 1).await;
    let task = harness.deal(B256::repeat_byte(0xc5), 1, 1).await[0];
    worker.take_task().await;
    worker.walk(task, &crate::harness::TO_COMPUTED[..2]).await;

    harness.core.run_detectors().await;
    assert_eq!(
        harness
            .core
            .replicate(task, &worker.address)
            .unwrap()
            .current_status(),
        S::WorkerLost
    );

    let missed = worker
        .interrupted(harness.chain.current_block() as i64)
        .await;
    assert_eq!(missed.len(), 1);
    assert_eq!(
        missed[0].task_notification_type,
        NextAction::PleaseContribute
    );
    assert_eq!(
        missed[0].workers_address,
        std::slice::from_ref(&worker.address)
    );
    let authorization = missed[0]
        .task_notification_extra
        .as_ref()
        .unwrap()
        .workerpool_authorization
        .as_ref();
    assert_eq!(authorization.unwrap().chain_task_id, task.to_string());
    assert_eq!(
        harness.core.replicate_statuses(task, &worker.address),
        [
            S::Created,
            S::Starting,
            S::Started,
            S::WorkerLost,
            S::Recovering
        ]
    );
    // From RECOVERING the worker may jump ahead to where it really is.
    worker
        .walk(task, &[(S::AppDownloading, "PLEASE_CONTINUE")])
        .await;
}

#[tokio::test]
async fn unreported_contribution_is_found_on_chain_at_recovery() {
    let harness = Harness::start().await;
    let worker = harness.worker(WORKER_KEY, 1).await;
    let task = harness.deal(B256::repeat_byte(0xc6), 1, 1).await[0];
    worker.take_task().await;
    worker.walk(task, crate::harness::TO_COMPUTED).await;
    worker
        .walk(task, &[(S::Contributing, "PLEASE_CONTINUE")])
        .await;
    let digest = B256::repeat_byte(0x62);
    let block = harness
        .chain
        .contribute(
            task,
            worker.wallet.address(),
            pew_poco::result_hash(task, digest),
        )
        .unwrap();

    let missed = worker.interrupted(block as i64).await;
    assert_eq!(missed.len(), 1);
    assert_eq!(missed[0].task_notification_type, NextAction::PleaseReveal);
    let statuses = harness.core.replicate_statuses(task, &worker.address);
    assert!(
        statuses.ends_with(&[S::Contributing, S::Contributed, S::Recovering]),
        "{statuses:?}"
    );
    let replicate = harness.core.replicate(task, &worker.address).unwrap();
    let contributed = &replicate.history()[10];
    assert_eq!(contributed.status, S::Contributed);
    assert_eq!(
        contributed.modifier,
        Some(pew_iexec::status::StatusModifier::PoolManager)
    );
    harness
        .core
        .wait_for_task_status(task, T::ConsensusReached, PATIENCE)
        .await
        .unwrap();
    // The reveal can go on from RECOVERING.
    harness.reveal(&worker, task, digest).await;
    harness
        .core
        .wait_for_task_status(task, T::ResultUploading, PATIENCE)
        .await
        .unwrap();
    let again = worker.interrupted(block as i64).await;
    assert_eq!(again[0].task_notification_type, NextAction::PleaseUpload);
}
