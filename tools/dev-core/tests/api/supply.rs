//! `GET /replicates/available`: every reason for 204, 503, and the signed authorization.

use std::time::Duration;

use pew_iexec::model::ReplicateTaskSummary;
use pew_poco::B256;

use crate::harness::{Harness, SCHEDULER_KEY, WORKER_KEY, lower, wallet};

const OTHER_WORKER_KEY: &str = "0x0123456789012345678901234567890123456789012345678901234567890123";

/// §2.6.2 derived vector: deal 0xa0b0…8e66, task 0, worker key 0x6dac…, scheduler key 0x2a46….
const DEAL: &str = "0xa0b0fd396b0f79f14e4d6b34af7180bd9e80e2d86afda91c6127c5c17a268e66";
const TASK: &str = "0xe06c86d6bb750dbd9be9e002482854b3b3f21550dbe37236767b9cac29e3ce28";
const AUTHORIZATION_SIGNATURE: &str = "0x6fefa6943a091b0e640dfb78425587868f7277029d024a3019b3495074378dd87eecff336d2cd0941d67477b442a58469edcff600eff706d52b0036bf4ca3d161b";

#[tokio::test]
async fn authorization_is_the_derived_vector_and_verifies_against_the_scheduler() {
    let harness = Harness::start().await;
    let worker = harness.worker(WORKER_KEY, 1).await;
    assert_eq!(worker.address, "0xd154ef7ed41a66d8d1d01227388b2f904c436d70");
    let tasks = harness.deal(DEAL.parse().unwrap(), 1, 1).await;
    assert_eq!(tasks, vec![TASK.parse::<B256>().unwrap()]);

    let response = worker.ask(1).await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        body,
        serde_json::json!({
            "workerpoolAuthorization": {
                "chainTaskId": TASK,
                "dealId": DEAL,
                "taskIndex": 0,
                "workerWallet": worker.address,
                "enclaveChallenge": "0x0000000000000000000000000000000000000000",
                "signature": { "value": AUTHORIZATION_SIGNATURE },
            },
            "smsUrl": null,
        })
    );
    let summary: ReplicateTaskSummary = serde_json::from_value(body).unwrap();
    let signature: pew_poco::Signature65 = summary
        .workerpool_authorization
        .signature
        .value
        .parse()
        .unwrap();
    let hash = pew_poco::authorization_hash(
        wallet(WORKER_KEY).address(),
        TASK.parse().unwrap(),
        pew_poco::Address::ZERO,
    );
    assert_eq!(
        signature.recover(pew_poco::eth_signed_hash(hash)).unwrap(),
        wallet(SCHEDULER_KEY).address()
    );
}

#[tokio::test]
async fn no_work_without_registration_block_or_task() {
    let harness = Harness::start().await;
    let worker = harness.login(wallet(WORKER_KEY)).await;
    assert_eq!(worker.ask(1).await.status(), 204, "not registered");
    worker.register(1, false).await;
    assert_eq!(worker.ask(1).await.status(), 204, "no task");
    harness.deal(B256::repeat_byte(0xa1), 1, 1).await;
    assert_eq!(
        worker.ask(0).await.status(),
        204,
        "block 0: node not synchronized"
    );
    assert_eq!(worker.ask(-5).await.status(), 204);
    assert_eq!(worker.ask(1).await.status(), 200);
    assert_eq!(
        worker.ask(1).await.status(),
        204,
        "already participating, and full"
    );
}

#[tokio::test]
async fn capacity_is_max_nb_tasks() {
    let harness = Harness::start().await;
    let worker = harness.worker(WORKER_KEY, 2).await;
    harness.deal(B256::repeat_byte(0xa2), 1, 3).await;
    assert_eq!(worker.ask(1).await.status(), 200);
    assert_eq!(worker.ask(1).await.status(), 200);
    assert_eq!(worker.ask(1).await.status(), 204, "two slots taken");
    assert_eq!(
        harness
            .core
            .worker(&worker.address)
            .unwrap()
            .computing
            .len(),
        2
    );
}

#[tokio::test]
async fn trust_one_gives_one_replicate_trust_three_two() {
    let harness = Harness::start().await;
    let first = harness.worker(WORKER_KEY, 4).await;
    let second = harness.worker(OTHER_WORKER_KEY, 4).await;
    let third = harness
        .worker(
            "0x1111111111111111111111111111111111111111111111111111111111111111",
            4,
        )
        .await;
    let single = harness.deal(B256::repeat_byte(0xa3), 1, 1).await[0];
    assert_eq!(
        first
            .take_task()
            .await
            .workerpool_authorization
            .chain_task_id,
        single.to_string()
    );
    assert_eq!(
        second.ask(1).await.status(),
        204,
        "trust 1: one replicate is enough"
    );

    let replicated = harness.deal(B256::repeat_byte(0xa4), 3, 1).await[0];
    assert_eq!(
        first
            .take_task()
            .await
            .workerpool_authorization
            .chain_task_id,
        replicated.to_string()
    );
    assert_eq!(
        second
            .take_task()
            .await
            .workerpool_authorization
            .chain_task_id,
        replicated.to_string()
    );
    assert_eq!(
        third.ask(1).await.status(),
        204,
        "two pending replicates of weight 2 can reach trust 3"
    );
}

#[tokio::test]
async fn running_tasks_come_before_initialized_ones() {
    let harness = Harness::start().await;
    let worker = harness.worker(WORKER_KEY, 4).await;
    let other = harness.worker(OTHER_WORKER_KEY, 4).await;
    let tasks = harness.deal(B256::repeat_byte(0xa5), 3, 2).await;
    // Equal deadlines: the scan order decides; `other` gets both, and starts only the second.
    let first: B256 = other
        .take_task()
        .await
        .workerpool_authorization
        .chain_task_id
        .parse()
        .unwrap();
    let second: B256 = other
        .take_task()
        .await
        .workerpool_authorization
        .chain_task_id
        .parse()
        .unwrap();
    assert_ne!(first, second);
    assert!(tasks.contains(&first) && tasks.contains(&second));
    use pew_iexec::status::ReplicateStatus as S;
    other
        .walk(
            second,
            &[
                (S::Starting, "PLEASE_CONTINUE"),
                (S::Started, "PLEASE_DOWNLOAD_APP"),
            ],
        )
        .await;
    harness
        .core
        .wait_for_task_status(
            second,
            dev_core::TaskStatus::Running,
            crate::harness::PATIENCE,
        )
        .await
        .unwrap();
    assert_eq!(
        worker
            .take_task()
            .await
            .workerpool_authorization
            .chain_task_id,
        second.to_string()
    );
}

#[tokio::test]
async fn asking_faster_than_the_period_gets_204() {
    let harness =
        Harness::start_with(|config| config.ask_for_replicate_period = Duration::from_secs(3600))
            .await;
    let worker = harness.worker(WORKER_KEY, 1).await;
    harness.deal(B256::repeat_byte(0xa6), 1, 1).await;
    assert_eq!(worker.ask(1).await.status(), 200);
    let too_early = harness.deal(B256::repeat_byte(0xa7), 1, 1).await;
    worker.register(2, false).await;
    assert_eq!(worker.ask(1).await.status(), 204, "within the period");
    assert!(
        harness
            .core
            .replicate(too_early[0], &worker.address)
            .is_none()
    );
}

#[tokio::test]
async fn chain_down_means_503() {
    let harness = Harness::start().await;
    let worker = harness.worker(WORKER_KEY, 1).await;
    harness.deal(B256::repeat_byte(0xa8), 1, 1).await;
    harness.chain.set_reachable(false);
    assert_eq!(worker.ask(1).await.status(), 503);
    harness.chain.set_reachable(true);
    harness.core.set_chain_down(true);
    assert_eq!(worker.ask(1).await.status(), 503);
    harness.core.set_chain_down(false);
    assert_eq!(worker.ask(1).await.status(), 200);
}

#[tokio::test]
async fn interrupted_is_empty_for_a_worker_without_tasks() {
    let harness = Harness::start().await;
    let worker = harness.worker(WORKER_KEY, 1).await;
    assert!(worker.interrupted(1).await.is_empty());
    assert_eq!(lower(wallet(WORKER_KEY).address()), worker.address);
}
