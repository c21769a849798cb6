//! The whole on-chain PoCo path of a standard task with the real contracts: deal, initialize
//! (scheduler), contribute with a WorkerpoolAuthorization (worker), consensus at trust 1,
//! reveal (worker), finalize (scheduler).

use std::time::Instant;

use dev_chain::{DevChain, WORKERPOOL_PRICE_NRLC};
use pew_chain::{Chain, ChainError};
use pew_poco::abi::{
    self, CONTRIBUTE_GAS, ContributionStatus, FINALIZE_GAS, INITIALIZE_GAS, REVEAL_GAS,
    TASK_CONSENSUS_TOPIC, TASK_CONTRIBUTE_TOPIC, TASK_FINALIZE_TOPIC, TASK_INITIALIZE_TOPIC,
    TASK_REVEAL_TOPIC, TaskStatus,
};
use pew_poco::{
    Address, B256, U256, Wallet, authorization_hash, result_hash, result_seal, sha256, task_id,
};

const IMAGE: &str = "docker.io/pew/test-app:1.0.0";
const PARAMS: &str = r#"{"iexec_args":"hello pew"}"#;

#[tokio::test]
async fn task_goes_from_deal_to_completed_through_contribute_reveal_finalize() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let chain = DevChain::start(dir.path()).await.unwrap();
    eprintln!(
        "dev chain started and PoCo deployed in {:?}",
        started.elapsed()
    );

    // Categories XS..XL as PoCo's default config.
    let reader = Chain::connect(&chain.rpc_url, chain.hub, None, None)
        .await
        .unwrap();
    let xs = reader.category(0).await.unwrap();
    assert_eq!((xs.name.as_str(), xs.work_clock_time_ref), ("XS", 300));
    assert_eq!(
        reader.category(4).await.unwrap().work_clock_time_ref,
        36_000
    );
    assert!(matches!(
        reader.category(5).await,
        Err(ChainError::Rpc { .. })
    ));
    assert_eq!(
        reader.owner_of(chain.workerpool).await.unwrap(),
        chain.scheduler.address()
    );

    let checksum = sha256(b"test app image");
    let app = chain.deploy_app(IMAGE, checksum).await.unwrap();
    assert_eq!(
        chain.deploy_app(IMAGE, checksum).await.unwrap(),
        app,
        "registering twice gives the same app"
    );
    let app_info = reader.app(app).await.unwrap();
    assert_eq!(
        (
            app_info.multiaddr.as_str(),
            app_info.checksum,
            app_info.app_type.as_str()
        ),
        (IMAGE, checksum, "DOCKER")
    );

    let worker = Wallet::random();
    chain.fund_worker(worker.address()).await.unwrap();
    let deposited = reader.account(worker.address()).await.unwrap();
    assert_eq!(
        deposited.stake,
        U256::from(1_000_000_000u64),
        "1 coin = 10^9 nRLC of stake"
    );

    let deal_started = Instant::now();
    let deal_id = chain.create_deal(app, 0, PARAMS, 1, 1).await.unwrap();
    eprintln!("deal created in {:?}", deal_started.elapsed());
    let deal = reader.deal(deal_id).await.unwrap();
    assert_eq!(
        (
            deal.app.pointer,
            deal.workerpool.pointer,
            deal.workerpool.owner
        ),
        (app, chain.workerpool, chain.scheduler.address())
    );
    assert_eq!(
        (
            deal.trust,
            deal.category,
            deal.bot_size,
            deal.params.as_str()
        ),
        (1, 0, 1, PARAMS)
    );
    // Workerpool policy: workers stake 30 % of the task price.
    assert_eq!(
        deal.worker_stake,
        U256::from(WORKERPOOL_PRICE_NRLC * 30 / 100)
    );

    let task = task_id(deal_id, 0);
    assert_eq!(reader.task(task).await.unwrap().status, TaskStatus::Unset);

    let worker_chain = Chain::connect(
        &chain.rpc_url,
        chain.hub,
        Some(&worker),
        Some(dir.path().join("worker.nonce")),
    )
    .await
    .unwrap();
    let digest = sha256(b"result of the task");
    let authorization =
        chain
            .scheduler
            .sign_eth_signed(authorization_hash(worker.address(), task, Address::ZERO));
    let contribute = abi::contribute_calldata(
        task,
        result_hash(task, digest),
        result_seal(worker.address(), task, digest),
        &authorization,
    );

    // Before initialize the task is not ACTIVE: PoCo reverts, and the client says so.
    let early = worker_chain
        .send(chain.hub, contribute.clone(), CONTRIBUTE_GAS)
        .await;
    assert!(
        matches!(early, Err(ChainError::Reverted { block_number, .. }) if block_number > 0),
        "{early:?}"
    );

    let scheduler_chain = Chain::connect(&chain.rpc_url, chain.hub, Some(&chain.scheduler), None)
        .await
        .unwrap();
    let initialized = scheduler_chain
        .send(
            chain.hub,
            abi::initialize_calldata(deal_id, 0),
            INITIALIZE_GAS,
        )
        .await
        .unwrap();
    assert!(initialized.find_log(TASK_INITIALIZE_TOPIC, task).is_some());
    let active = reader.task(task).await.unwrap();
    assert_eq!(
        (active.status, active.deal_id, active.index),
        (TaskStatus::Active, deal_id, 0)
    );
    assert_eq!(active.contribution_deadline, deal.start_time + 7 * 300);

    let contributed = worker_chain
        .send(chain.hub, contribute, CONTRIBUTE_GAS)
        .await
        .unwrap();
    let contribute_block = contributed
        .find_log(TASK_CONTRIBUTE_TOPIC, task)
        .expect("TaskContribute log");
    assert!(contribute_block > 0);
    assert!(
        contributed.find_log(TASK_CONSENSUS_TOPIC, task).is_some(),
        "trust 1: consensus at the first contribution"
    );
    let revealing = reader.task(task).await.unwrap();
    assert_eq!(revealing.status, TaskStatus::Revealing);
    assert_eq!(revealing.consensus_value, result_hash(task, digest));
    assert_eq!(revealing.contributors, vec![worker.address()]);
    assert_eq!(
        reader
            .contribution(task, worker.address())
            .await
            .unwrap()
            .status,
        ContributionStatus::Contributed
    );
    assert_eq!(
        reader.account(worker.address()).await.unwrap().locked,
        deal.worker_stake
    );

    let revealed = worker_chain
        .send(chain.hub, abi::reveal_calldata(task, digest), REVEAL_GAS)
        .await
        .unwrap();
    assert!(revealed.find_log(TASK_REVEAL_TOPIC, task).is_some());

    let results = br#"{ "storage": "ipfs", "location": "/ipfs/QmPew" }"#;
    let finalized = scheduler_chain
        .send(
            chain.hub,
            abi::finalize_calldata(task, results, &[]),
            FINALIZE_GAS,
        )
        .await
        .unwrap();
    assert!(finalized.find_log(TASK_FINALIZE_TOPIC, task).is_some());

    let completed = reader.task(task).await.unwrap();
    assert_eq!(completed.status, TaskStatus::Completed);
    assert_eq!(completed.results, results.to_vec());
    assert_eq!(
        reader
            .contribution(task, worker.address())
            .await
            .unwrap()
            .status,
        ContributionStatus::Proved
    );
    let paid = reader.account(worker.address()).await.unwrap();
    assert_eq!(paid.locked, U256::ZERO, "the stake is released");
    assert!(
        paid.stake > deposited.stake,
        "the worker is rewarded: {} > {}",
        paid.stake,
        deposited.stake
    );

    // Three transactions from the worker: the persisted next nonce is 3.
    let nonce = std::fs::read_to_string(dir.path().join("worker.nonce")).unwrap();
    assert_eq!(nonce.trim(), "3");
    assert_ne!(B256::ZERO, deal_id);
}
