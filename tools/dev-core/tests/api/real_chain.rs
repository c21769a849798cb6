//! End to end on the real PoCo contracts (anvil + `@iexec/poco`): the double initializes and
//! finalizes with the workerpool owner's wallet, its authorization passes PoCo's `contribute`
//! check, and its result proxy reads the real contribution.

use std::sync::Arc;
use std::time::Duration;

use dev_chain::DevChain;
use dev_core::{ChainSettings, Config, DevCore, PocoChain, TaskStatus as T};
use pew_chain::Chain;
use pew_iexec::model::{ReplicateStatusDetails, ReplicateStatusUpdate};
use pew_iexec::status::{NextAction, ReplicateStatus as S};
use pew_poco::abi::{self, TASK_CONTRIBUTE_TOPIC, TASK_REVEAL_TOPIC};
use pew_poco::{Address, B256, Wallet};

use crate::harness::{
    FakeWorker, Harness, PATIENCE, StompClient, TO_COMPUTED, http_client, result_zip, with_receipt,
};

const PARAMS: &str = r#"{"iexec_args":"pew","iexec_result_storage_provider":"ipfs"}"#;

/// A harness whose chain is a real dev chain; the in-memory one stays unused.
async fn harness_on(chain: &DevChain) -> Harness {
    let client = Chain::connect(&chain.rpc_url, chain.hub, Some(&chain.scheduler), None)
        .await
        .unwrap();
    let settings = ChainSettings {
        chain_id: chain.chain_id,
        sidechain: true,
        node_url: chain.rpc_url.clone(),
        hub: chain.hub,
        block_time: Duration::from_secs(1),
    };
    let mut config = Config::new(chain.scheduler.clone(), chain.workerpool, settings);
    config.ask_for_replicate_period = Duration::ZERO;
    let clock = config.clock.clone();
    let core = DevCore::start(config, Arc::new(PocoChain::new(client)))
        .await
        .unwrap();
    Harness {
        core,
        chain: Arc::new(dev_core::MemoryChain::new(clock.clone())),
        clock,
        http: http_client(),
    }
}

/// Sends a worker transaction to the hub and returns the block of its `topic` event.
async fn transact(
    worker_chain: &Chain,
    hub: Address,
    calldata: Vec<u8>,
    gas: u64,
    topic: B256,
    task: B256,
) -> u64 {
    let receipt = worker_chain.send(hub, calldata, gas).await.unwrap();
    receipt.find_log(topic, task).expect("event of the task")
}

#[tokio::test]
async fn standard_task_completes_on_the_real_contracts() {
    let dir = tempfile::tempdir().unwrap();
    let chain = DevChain::start(dir.path()).await.unwrap();
    let app = chain
        .deploy_app("docker.io/pew/test-app:1.0.0", pew_poco::sha256(b"image"))
        .await
        .unwrap();
    let deal_id = chain.create_deal(app, 0, PARAMS, 1, 1).await.unwrap();
    let harness = harness_on(&chain).await;

    let worker_wallet = Wallet::random();
    chain.fund_worker(worker_wallet.address()).await.unwrap();
    let worker: FakeWorker = harness.login(worker_wallet.clone()).await;
    assert_eq!(worker.register(1, false).await.status(), 200);
    let stomp = StompClient::connect(&harness, "real").await;

    let task = harness.core.publish_deal(deal_id, 1).await.unwrap()[0];
    harness
        .core
        .wait_for_task_status(task, T::Initialized, PATIENCE)
        .await
        .unwrap();
    let authorization = worker.take_task().await.workerpool_authorization;
    stomp.subscribe(task).await;

    worker.walk(task, TO_COMPUTED).await;
    worker
        .walk(task, &[(S::Contributing, "PLEASE_CONTINUE")])
        .await;
    let (zip, digest) = result_zip(b"computed on a pi\n");
    let worker_chain = Chain::connect(&chain.rpc_url, chain.hub, Some(&worker_wallet), None)
        .await
        .unwrap();
    let signature: pew_poco::Signature65 = authorization.signature.value.parse().unwrap();
    let contribute = abi::contribute_calldata(
        task,
        pew_poco::result_hash(task, digest),
        pew_poco::result_seal(worker_wallet.address(), task, digest),
        &signature,
    );
    let block = transact(
        &worker_chain,
        chain.hub,
        contribute,
        abi::CONTRIBUTE_GAS,
        TASK_CONTRIBUTE_TOPIC,
        task,
    )
    .await;
    assert_eq!(
        worker
            .update(task, &with_receipt(S::Contributed, block))
            .await,
        (200, "\"PLEASE_WAIT\"".into())
    );

    let reveal = stomp.next_notification().await;
    assert_eq!(reveal.task_notification_type, NextAction::PleaseReveal);
    assert_eq!(
        reveal.task_notification_extra.unwrap().block_number,
        Some(block)
    );

    worker
        .walk(task, &[(S::Revealing, "PLEASE_CONTINUE")])
        .await;
    let reveal = abi::reveal_calldata(task, digest);
    let block = transact(
        &worker_chain,
        chain.hub,
        reveal,
        abi::REVEAL_GAS,
        TASK_REVEAL_TOPIC,
        task,
    )
    .await;
    assert_eq!(
        worker.update(task, &with_receipt(S::Revealed, block)).await,
        (200, "\"PLEASE_WAIT\"".into())
    );
    assert_eq!(
        stomp.next_notification().await.task_notification_type,
        NextAction::PleaseUpload
    );

    worker
        .walk(task, &[(S::ResultUploading, "PLEASE_CONTINUE")])
        .await;
    let link = harness.upload(&worker, &authorization, &zip).await;
    let uploaded = ReplicateStatusUpdate::with_details(
        S::ResultUploaded,
        ReplicateStatusDetails {
            result_link: Some(link.clone()),
            ..Default::default()
        },
    );
    assert_eq!(
        worker.update(task, &uploaded).await,
        (200, "\"PLEASE_WAIT\"".into())
    );
    assert_eq!(
        stomp.next_notification().await.task_notification_type,
        NextAction::PleaseComplete
    );

    let reader = Chain::connect(&chain.rpc_url, chain.hub, None, None)
        .await
        .unwrap();
    let on_chain = reader.task(task).await.unwrap();
    assert_eq!(on_chain.status, abi::TaskStatus::Completed);
    assert_eq!(on_chain.results, link.into_bytes());
    assert!(harness.core.task_statuses(task).ends_with(&[
        T::Finalizing,
        T::Finalized,
        T::Completed
    ]));
}
