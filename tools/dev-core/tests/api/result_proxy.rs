//! The result proxy double (§3.6).

use pew_iexec::model::WorkerpoolAuthorization;
use pew_iexec::status::ReplicateStatus as S;
use pew_poco::B256;

use crate::harness::{FakeWorker, Harness, SCHEDULER_KEY, WORKER_KEY, result_zip, wallet};

/// A worker that revealed `digest` for the single task of a fresh trust-1 deal.
async fn revealed(
    harness: &Harness,
    deal: u8,
    digest: B256,
) -> (FakeWorker, WorkerpoolAuthorization) {
    let worker = harness.worker(WORKER_KEY, 1).await;
    let task = harness.deal(B256::repeat_byte(deal), 1, 1).await[0];
    let authorization = worker.take_task().await.workerpool_authorization;
    harness.contribute(&worker, task, digest).await;
    harness
        .core
        .wait_for_task_status(
            task,
            dev_core::TaskStatus::ConsensusReached,
            crate::harness::PATIENCE,
        )
        .await
        .unwrap();
    harness.reveal(&worker, task, digest).await;
    (worker, authorization)
}

#[tokio::test]
async fn token_needs_the_worker_signature_and_the_scheduler_authorization() {
    let harness = Harness::start().await;
    let (worker, authorization) = revealed(&harness, 0xe1, B256::repeat_byte(1)).await;
    assert_eq!(
        harness.proxy_token(&worker, &authorization).await.status(),
        200
    );

    let impostor = harness.login(wallet(SCHEDULER_KEY)).await;
    assert_eq!(
        harness
            .proxy_token(&impostor, &authorization)
            .await
            .status(),
        401,
        "signed by someone else"
    );

    let mut forged = authorization.clone();
    let hash = pew_poco::authorization_hash(
        worker.wallet.address(),
        forged.chain_task_id.parse().unwrap(),
        pew_poco::Address::ZERO,
    );
    forged.signature.value = worker.wallet.sign_eth_signed(hash).to_string();
    assert_eq!(
        harness.proxy_token(&worker, &forged).await.status(),
        401,
        "not signed by the workerpool owner"
    );

    let missing = harness
        .http
        .post(harness.url("/v1/results/token"))
        .json(&authorization)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 400, "Authorization header required");
}

#[tokio::test]
async fn upload_checks_the_zip_against_the_revealed_hash() {
    let harness = Harness::start().await;
    let (zip, digest) = result_zip(b"the answer");
    let (worker, authorization) = revealed(&harness, 0xe2, digest).await;
    let task: B256 = authorization.chain_task_id.parse().unwrap();
    let token = harness
        .proxy_token(&worker, &authorization)
        .await
        .text()
        .await
        .unwrap();

    assert_eq!(
        harness
            .proxy_upload("not-a-token", task, &zip)
            .await
            .status(),
        401
    );
    let (other_zip, _) = result_zip(b"another answer");
    assert_eq!(
        harness
            .proxy_upload(&token, task, &other_zip)
            .await
            .status(),
        401,
        "digest mismatch"
    );
    assert_eq!(
        harness
            .proxy_upload(&token, task, b"not a zip")
            .await
            .status(),
        401
    );
    let hash_url = harness.url(&format!("/v1/results/{task}/ipfshash"));
    assert_eq!(
        harness.http.get(&hash_url).send().await.unwrap().status(),
        404
    );

    let response = harness.proxy_upload(&token, task, &zip).await;
    assert_eq!(response.status(), 200);
    let link = response.text().await.unwrap();
    assert_eq!(link, format!("/ipfs/{}", dev_core::fake_ipfs_hash(&zip)));
    assert_eq!(harness.core.stored_result(task).unwrap().zip, zip);
    assert_eq!(
        harness
            .http
            .get(&hash_url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        &link[6..]
    );
    assert_eq!(
        harness.proxy_upload(&token, task, &zip).await.status(),
        401,
        "only once"
    );
}

#[tokio::test]
async fn upload_before_the_reveal_is_refused() {
    let harness = Harness::start().await;
    let worker = harness.worker(WORKER_KEY, 1).await;
    let task = harness.deal(B256::repeat_byte(0xe3), 1, 1).await[0];
    let authorization = worker.take_task().await.workerpool_authorization;
    let (zip, digest) = result_zip(b"early");
    let token = harness
        .proxy_token(&worker, &authorization)
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(
        harness.proxy_upload(&token, task, &zip).await.status(),
        401,
        "task not revealing"
    );
    harness.contribute(&worker, task, digest).await;
    assert_eq!(
        harness.proxy_upload(&token, task, &zip).await.status(),
        401,
        "contribution not revealed"
    );
    worker
        .walk(task, &[(S::Revealing, "PLEASE_CONTINUE")])
        .await;
}

#[tokio::test]
async fn head_reports_presence_to_token_holders() {
    let harness = Harness::start().await;
    let (zip, digest) = result_zip(b"present");
    let (worker, authorization) = revealed(&harness, 0xe4, digest).await;
    let task: B256 = authorization.chain_task_id.parse().unwrap();
    let token = harness
        .proxy_token(&worker, &authorization)
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(head(&harness, task, "nope").await, 401);
    assert_eq!(head(&harness, task, &token).await, 404);
    harness.proxy_upload(&token, task, &zip).await;
    assert_eq!(head(&harness, task, &token).await, 204);
    let missing = harness
        .http
        .head(harness.url(&format!("/v1/results/{task}")))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 400);
}

async fn head(harness: &Harness, task: B256, token: &str) -> u16 {
    let request = harness
        .http
        .head(harness.url(&format!("/v1/results/{task}")))
        .header("Authorization", token);
    request.send().await.unwrap().status().as_u16()
}
