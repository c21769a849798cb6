//! Unauthenticated configuration endpoints and the worker bookkeeping ones.

use crate::harness::{Harness, SCHEDULER_KEY, WORKER_KEY, lower, wallet, workerpool};

#[tokio::test]
async fn version_is_raw_text() {
    let harness = Harness::start().await;
    let response = harness
        .http
        .get(harness.url("/version"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert_eq!(response.text().await.unwrap(), "9.3.0");
}

#[tokio::test]
async fn public_configuration_has_exactly_the_java_properties() {
    let harness = Harness::start().await;
    let response = harness
        .http
        .get(harness.url("/workers/config"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    // The Java worker fails on unknown properties: nothing more, nothing less.
    assert_eq!(
        body,
        serde_json::json!({
            "workerPoolAddress": lower(workerpool()),
            "schedulerPublicAddress": lower(wallet(SCHEDULER_KEY).address()),
            "configServerUrl": harness.core.base_url(),
            "resultRepositoryURL": harness.core.base_url(),
            "askForReplicatePeriod": 0,
            "requiredWorkerVersion": "",
        })
    );
}

#[tokio::test]
async fn chain_configuration_is_served_on_the_same_host() {
    let harness = Harness::start().await;
    let body: serde_json::Value = harness
        .http
        .get(harness.url("/config/chain"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["chainId"], 65535);
    assert_eq!(body["sidechain"], true);
    assert_eq!(body["chainNodeUrl"], "http://127.0.0.1:8545");
    assert_eq!(
        body["iexecHubContractAddress"],
        "0x4242424242424242424242424242424242424242"
    );
    let config: pew_iexec::model::PublicChainConfig = serde_json::from_value(body).unwrap();
    assert_eq!(config.block_time, std::time::Duration::from_secs(5));
}

#[tokio::test]
async fn ping_answers_the_session_id_which_changes_with_a_restart() {
    let harness = Harness::start().await;
    let worker = harness.login(wallet(WORKER_KEY)).await;
    let first = worker.ping().await.text().await.unwrap();
    assert_eq!(first, harness.core.session_id());
    assert_eq!(worker.ping().await.text().await.unwrap(), first);
    assert_eq!(first.len(), 66, "0x-hex keccak");

    let restarted = Harness::start().await;
    assert_ne!(restarted.core.session_id(), first);

    let stable = |config: &mut dev_core::Config| config.stable_session_id = true;
    let one = Harness::start_with(stable).await;
    let two = Harness::start_with(stable).await;
    // Same public configuration apart from the URL (another port): upstream's hash of it.
    assert_ne!(one.core.session_id(), two.core.session_id());
    assert_eq!(
        one.core.session_id(),
        Harness::start_with(|config| {
            config.stable_session_id = true;
            config.public_url = Some(one.core.base_url().to_owned());
        })
        .await
        .core
        .session_id()
    );
}

#[tokio::test]
async fn register_derives_slots_and_keeps_tasks_across_registrations() {
    let harness = Harness::start().await;
    let worker = harness.login(wallet(WORKER_KEY)).await;
    let response = worker.register(3, false).await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["walletAddress"], worker.address);
    assert_eq!(body["maxNbTasks"], 3);
    assert_eq!(body["cpuNb"], 3);

    let body: serde_json::Value = worker.register(8, true).await.json().await.unwrap();
    assert_eq!(body["maxNbTasks"], 1, "a GPU worker runs one task");
    assert_eq!(
        harness.core.worker(&worker.address).unwrap().max_nb_tasks,
        1
    );

    let task = harness.deal(pew_poco::B256::repeat_byte(0xd1), 1, 1).await[0];
    worker.take_task().await;
    worker.register(2, false).await;
    assert_eq!(
        harness.core.worker(&worker.address).unwrap().participating,
        vec![task]
    );
}

#[tokio::test]
async fn computing_lists_tasks_until_computed() {
    let harness = Harness::start().await;
    let worker = harness.worker(WORKER_KEY, 2).await;
    let computing = || async {
        let response = worker
            .http
            .get(harness.url("/workers/computing"))
            .header("Authorization", format!("Bearer {}", worker.token))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json::<Vec<String>>().await.unwrap()
    };
    assert!(computing().await.is_empty());
    let task = harness.deal(pew_poco::B256::repeat_byte(0xd2), 1, 1).await[0];
    worker.take_task().await;
    assert_eq!(computing().await, vec![task.to_string()]);
    use pew_iexec::status::ReplicateStatus as S;
    worker
        .walk(
            task,
            &[
                (S::Starting, "PLEASE_CONTINUE"),
                (S::Started, "PLEASE_DOWNLOAD_APP"),
                (S::AppDownloading, "PLEASE_CONTINUE"),
                (S::AppDownloaded, "PLEASE_DOWNLOAD_DATA"),
                (S::DataDownloading, "PLEASE_CONTINUE"),
                (S::DataDownloaded, "PLEASE_COMPUTE"),
                (S::Computing, "PLEASE_CONTINUE"),
                (S::Computed, "PLEASE_CONTRIBUTE"),
            ],
        )
        .await;
    assert!(computing().await.is_empty(), "COMPUTED frees the slot");
    assert_eq!(
        harness.core.worker(&worker.address).unwrap().participating,
        vec![task]
    );
}

#[tokio::test]
async fn restarted_core_on_the_same_port_forgets_tokens_and_changes_session() {
    let harness = Harness::start().await;
    let worker = harness.login(wallet(WORKER_KEY)).await;
    let before = worker.ping().await.text().await.unwrap();
    let address = harness.core.local_addr();
    harness.core.shutdown().await;

    let restarted = Harness::start_with(|config| config.listen = address).await;
    assert_eq!(restarted.core.base_url(), worker.base);
    assert_eq!(worker.ping().await.status(), 401, "JWT key is per run");
    let worker = restarted.login(wallet(WORKER_KEY)).await;
    assert_ne!(worker.ping().await.text().await.unwrap(), before);
}
