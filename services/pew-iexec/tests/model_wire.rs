//! Wire JSON of every model, both directions: upstream test vectors (iexec-core-library,
//! iexec-common) and bodies as the core, the config server and the Java worker send them.

use std::time::Duration;

use pew_iexec::model::*;
use pew_iexec::status::{NextAction, ReplicateStatus, StatusCause, StatusModifier, TaskAbortCause};

const TASK: &str = "0x5125c4ca7176e40d8c5386072a6f262029609a5d3a896fbf592cd965e65098d9";
const DEAL: &str = "0x2f6c3a0a39a8bde4fe4c1a0d8b4d4e4a9ef9a8ca6c7b0cbbb0ffab4d1f0a4e33";
const WORKER: &str = "0x1a69b2eb604db8eba185df03ea4f5288dcbbd248";
const SIGNATURE: &str = "0x63f2c959ed7dfc11619e1e0b5ba8a4bf56f81ce81d0b6e6ec7ed1d3ea0d1d7f35e4ebbf6e6bf2b5d4e1e8a3c2b1a09f8e7d6c5b4a39281706f5e4d3c2b1a0918271b";

fn authorization() -> WorkerpoolAuthorization {
    WorkerpoolAuthorization {
        chain_task_id: TASK.to_owned(),
        deal_id: DEAL.to_owned(),
        task_index: 0,
        worker_wallet: WORKER.to_owned(),
        enclave_challenge: "0x0000000000000000000000000000000000000000".to_owned(),
        signature: SignatureValue {
            value: SIGNATURE.to_owned(),
        },
    }
}

fn authorization_json() -> String {
    format!(
        r#"{{"chainTaskId":"{TASK}","dealId":"{DEAL}","taskIndex":0,"workerWallet":"{WORKER}","enclaveChallenge":"0x0000000000000000000000000000000000000000","signature":{{"value":"{SIGNATURE}"}}}}"#
    )
}

// ---- PublicConfiguration -------------------------------------------------------------------

#[test]
fn public_configuration_as_the_core_writes_it() {
    let config = PublicConfiguration {
        worker_pool_address: "0xc0c288ec5242e7f53f6594dc7bade4ac3c9fc1c8".to_owned(),
        scheduler_public_address: "0x8c5e4a0d5c35f0cd25a6b2b0c7c6bdc2ebb4fb9d".to_owned(),
        config_server_url: "http://core:13000".to_owned(),
        result_repository_url: "http://result-proxy:13200".to_owned(),
        ask_for_replicate_period_ms: 5000,
        required_worker_version: String::new(),
    };
    let json = r#"{"workerPoolAddress":"0xc0c288ec5242e7f53f6594dc7bade4ac3c9fc1c8","schedulerPublicAddress":"0x8c5e4a0d5c35f0cd25a6b2b0c7c6bdc2ebb4fb9d","configServerUrl":"http://core:13000","resultRepositoryURL":"http://result-proxy:13200","askForReplicatePeriod":5000,"requiredWorkerVersion":""}"#;
    assert_eq!(serde_json::to_string(&config).unwrap(), json);
    assert_eq!(
        serde_json::from_str::<PublicConfiguration>(json).unwrap(),
        config
    );
}

#[test]
fn public_configuration_period_as_a_string_like_the_worker_test_stub() {
    let json = r#"{"workerPoolAddress":"0x365e7bABAa85eC6BE3A0E9ae1A6E8C9Ff4b79a1b","schedulerPublicAddress":"0x8c5e4a0d5c35f0cd25a6b2b0c7c6bdc2ebb4fb9d","configServerUrl":"http://localhost:8080","resultRepositoryURL":"http://localhost:13200","askForReplicatePeriod":"5000","requiredWorkerVersion":""}"#;
    let config: PublicConfiguration = serde_json::from_str(json).unwrap();
    assert_eq!(config.ask_for_replicate_period_ms, 5000);
    // Checksum casing is kept: the model never rewrites an address.
    assert_eq!(
        config.worker_pool_address,
        "0x365e7bABAa85eC6BE3A0E9ae1A6E8C9Ff4b79a1b"
    );
    assert_eq!(config.config_server_url, "http://localhost:8080");
}

#[test]
fn public_configuration_upstream_vectors_with_nulls_and_missing_config_server() {
    // PublicConfigurationTests: Java's empty builder, and the same without configServerUrl.
    let with_nulls = r#"{"workerPoolAddress":null,"schedulerPublicAddress":null,"configServerUrl":null,"resultRepositoryURL":null,"askForReplicatePeriod":0,"requiredWorkerVersion":null}"#;
    let without_config_server = r#"{"workerPoolAddress":null,"schedulerPublicAddress":null,"resultRepositoryURL":null,"askForReplicatePeriod":0,"requiredWorkerVersion":null}"#;
    for json in [with_nulls, without_config_server] {
        assert_eq!(
            serde_json::from_str::<PublicConfiguration>(json).unwrap(),
            PublicConfiguration::default()
        );
    }
}

#[test]
fn public_configuration_ignores_unknown_properties() {
    // v8 cores still sent blockchainAdapterUrl.
    let json = r#"{"workerPoolAddress":"0xabc","blockchainAdapterUrl":"http://adapter:13010","askForReplicatePeriod":15000}"#;
    let config: PublicConfiguration = serde_json::from_str(json).unwrap();
    assert_eq!(config.ask_for_replicate_period_ms, 15000);
    assert_eq!(config.worker_pool_address, "0xabc");
}

#[test]
fn public_configuration_bad_period_names_the_value() {
    let error =
        serde_json::from_str::<PublicConfiguration>(r#"{"askForReplicatePeriod":"five seconds"}"#)
            .unwrap_err()
            .to_string();
    assert!(error.contains("five seconds"), "{error}");
    let error = serde_json::from_str::<PublicConfiguration>(r#"{"askForReplicatePeriod":-1}"#)
        .unwrap_err()
        .to_string();
    assert!(error.contains("-1 does not fit in u64"), "{error}");
    let error = serde_json::from_str::<PublicConfiguration>(r#"{"askForReplicatePeriod":2.5}"#)
        .unwrap_err()
        .to_string();
    assert!(error.contains("2.5"), "{error}");
}

// ---- PublicChainConfig ---------------------------------------------------------------------

fn chain_config_json(block_time: &str) -> String {
    format!(
        r#"{{"chainId":65535,"sidechain":true,"chainNodeUrl":"http://localhost:8545","iexecHubContractAddress":"0xc4b11f41746D3Ad8504da5B383E1aB9aa969AbC7","blockTime":{block_time}}}"#
    )
}

#[test]
fn chain_config_block_time_in_every_spelling() {
    for (spelling, expected) in [
        (r#""PT5S""#, Duration::from_secs(5)),
        (r#""PT5s""#, Duration::from_secs(5)),
        (r#""PT0.5S""#, Duration::from_millis(500)),
        ("5.000000000", Duration::from_secs(5)),
        (r#""5.000000000""#, Duration::from_secs(5)),
        ("5", Duration::from_secs(5)),
        ("0.25", Duration::from_millis(250)),
    ] {
        let config: PublicChainConfig = serde_json::from_str(&chain_config_json(spelling)).unwrap();
        assert_eq!(config.block_time, expected, "{spelling}");
        assert_eq!(config.chain_id, 65535);
        assert!(config.sidechain);
        assert_eq!(
            config.iexec_hub_contract_address,
            "0xc4b11f41746D3Ad8504da5B383E1aB9aa969AbC7"
        );
    }
}

#[test]
fn chain_config_written_like_spring_boot() {
    let config = PublicChainConfig {
        chain_id: 421614,
        sidechain: false,
        chain_node_url: "https://sepolia-rollup.arbitrum.io/rpc".to_owned(),
        iexec_hub_contract_address: "0xB2157BF2fAb286b2A4170E3491Ac39770111Da3E".to_owned(),
        block_time: Duration::from_millis(250),
    };
    let json = r#"{"chainId":421614,"sidechain":false,"chainNodeUrl":"https://sepolia-rollup.arbitrum.io/rpc","iexecHubContractAddress":"0xB2157BF2fAb286b2A4170E3491Ac39770111Da3E","blockTime":"PT0.25S"}"#;
    assert_eq!(serde_json::to_string(&config).unwrap(), json);
    assert_eq!(
        serde_json::from_str::<PublicChainConfig>(json).unwrap(),
        config
    );
}

#[test]
fn chain_config_numbers_and_booleans_as_strings() {
    let json = r#"{"chainId":"65535","sidechain":"true","chainNodeUrl":"http://chain:8545","iexecHubContractAddress":"0x1","blockTime":"PT5S"}"#;
    let config: PublicChainConfig = serde_json::from_str(json).unwrap();
    assert_eq!(config.chain_id, 65535);
    assert!(config.sidechain);
    let json = json.replace(r#""sidechain":"true""#, r#""sidechain":"FALSE""#);
    assert!(
        !serde_json::from_str::<PublicChainConfig>(&json)
            .unwrap()
            .sidechain
    );
}

#[test]
fn chain_config_errors_name_what_is_wrong() {
    let missing =
        r#"{"chainId":1,"sidechain":false,"chainNodeUrl":"x","iexecHubContractAddress":"0x1"}"#;
    let error = serde_json::from_str::<PublicChainConfig>(missing)
        .unwrap_err()
        .to_string();
    assert!(error.contains("missing field `blockTime`"), "{error}");

    let error = serde_json::from_str::<PublicChainConfig>(&chain_config_json(r#""5 seconds""#))
        .unwrap_err()
        .to_string();
    assert!(error.contains("\"5 seconds\""), "{error}");

    let error = serde_json::from_str::<PublicChainConfig>(&chain_config_json("-5"))
        .unwrap_err()
        .to_string();
    assert!(error.contains("-5"), "{error}");

    let bad_flag = chain_config_json(r#""PT5S""#).replace("true", r#""yes""#);
    let error = serde_json::from_str::<PublicChainConfig>(&bad_flag)
        .unwrap_err()
        .to_string();
    assert!(error.contains("\"yes\""), "{error}");
}

// ---- WorkerModel ---------------------------------------------------------------------------

#[test]
fn worker_model_as_a_non_tee_pi_registers() {
    let model = WorkerModel {
        name: "pew-solar-01".to_owned(),
        wallet_address: WORKER.to_owned(),
        os: "Linux".to_owned(),
        cpu: "aarch64".to_owned(),
        cpu_nb: 3,
        memory_size: 7,
        gpu_enabled: false,
        tee_enabled: false,
        tdx_enabled: false,
    };
    let json = format!(
        r#"{{"name":"pew-solar-01","walletAddress":"{WORKER}","os":"Linux","cpu":"aarch64","cpuNb":3,"memorySize":7,"gpuEnabled":false,"teeEnabled":false,"tdxEnabled":false}}"#
    );
    assert_eq!(serde_json::to_string(&model).unwrap(), json);
    assert_eq!(serde_json::from_str::<WorkerModel>(&json).unwrap(), model);
}

#[test]
fn worker_model_upstream_vector_and_java_worker_body() {
    // WorkerModelTests: the empty builder.
    let empty = r#"{"name":null,"walletAddress":null,"os":null,"cpu":null,"cpuNb":0,"memorySize":0,"gpuEnabled":false,"teeEnabled":false,"tdxEnabled":false}"#;
    assert_eq!(
        serde_json::from_str::<WorkerModel>(empty).unwrap(),
        WorkerModel::default()
    );
    // The v9.2 Java worker hard-codes tdxEnabled=true.
    let java = r#"{"name":"worker1","walletAddress":"0xabc","os":"Linux","cpu":"amd64","cpuNb":"7","memorySize":0,"gpuEnabled":"false","teeEnabled":false,"tdxEnabled":true}"#;
    let model: WorkerModel = serde_json::from_str(java).unwrap();
    assert_eq!(
        (model.cpu_nb, model.tdx_enabled, model.gpu_enabled),
        (7, true, false)
    );
}

// ---- login, authorization, task summary -----------------------------------------------------

#[test]
fn login_body_is_only_the_signature_value() {
    let signature = SignatureValue {
        value: SIGNATURE.to_owned(),
    };
    assert_eq!(
        serde_json::to_string(&signature).unwrap(),
        format!(r#"{{"value":"{SIGNATURE}"}}"#)
    );
}

#[test]
fn replicate_task_summary_of_a_standard_task() {
    let json = format!(
        r#"{{"workerpoolAuthorization":{},"smsUrl":null}}"#,
        authorization_json()
    );
    let summary = ReplicateTaskSummary {
        workerpool_authorization: authorization(),
        sms_url: None,
    };
    assert_eq!(serde_json::to_string(&summary).unwrap(), json);
    assert_eq!(
        serde_json::from_str::<ReplicateTaskSummary>(&json).unwrap(),
        summary
    );
}

#[test]
fn workerpool_authorization_lenient_index_and_required_signature() {
    let json = authorization_json().replace(r#""taskIndex":0"#, r#""taskIndex":"3""#);
    assert_eq!(
        serde_json::from_str::<WorkerpoolAuthorization>(&json)
            .unwrap()
            .task_index,
        3
    );

    let unsigned =
        authorization_json().replace(&format!(r#","signature":{{"value":"{SIGNATURE}"}}"#), "");
    let error = serde_json::from_str::<WorkerpoolAuthorization>(&unsigned)
        .unwrap_err()
        .to_string();
    assert!(error.contains("missing field `signature`"), "{error}");

    let error = serde_json::from_str::<ReplicateTaskSummary>(r#"{"smsUrl":null}"#)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("missing field `workerpoolAuthorization`"),
        "{error}"
    );
}

// ---- ReplicateStatusUpdate -----------------------------------------------------------------

#[test]
fn status_update_upstream_vector() {
    // ReplicateStatusUpdateTests: poolManagerRequest(CREATED), date = epoch millis.
    let json = r#"{"status":"CREATED","modifier":"POOL_MANAGER","date":1715600000123,"details":null,"success":true}"#;
    let update = ReplicateStatusUpdate {
        status: ReplicateStatus::Created,
        modifier: Some(StatusModifier::PoolManager),
        date: Some(1_715_600_000_123),
        details: None,
    };
    assert_eq!(
        serde_json::from_str::<ReplicateStatusUpdate>(json).unwrap(),
        update
    );
    assert_eq!(serde_json::to_string(&update).unwrap(), json);
}

#[test]
fn status_update_bare_as_a_worker_sends_it() {
    let update = ReplicateStatusUpdate::new(ReplicateStatus::Starting);
    assert_eq!(
        serde_json::to_string(&update).unwrap(),
        r#"{"status":"STARTING","modifier":null,"date":null,"details":null,"success":true}"#
    );
}

#[test]
fn status_update_computed_with_logs_and_exit_code() {
    let details = ReplicateStatusDetails {
        compute_logs: Some(ComputeLogs::tailed("hello from the sun\n", "")),
        exit_code: Some(0),
        ..Default::default()
    };
    let update = ReplicateStatusUpdate::with_details(ReplicateStatus::Computed, details);
    let json = r#"{"status":"COMPUTED","modifier":null,"date":null,"details":{"chainReceipt":null,"resultLink":null,"chainCallbackData":null,"errorMessage":null,"cause":null,"computeLogs":{"stdout":"hello from the sun\n"},"exitCode":0,"teeSessionGenerationError":null},"success":true}"#;
    assert_eq!(serde_json::to_string(&update).unwrap(), json);
    assert_eq!(
        serde_json::from_str::<ReplicateStatusUpdate>(json).unwrap(),
        update
    );
}

#[test]
fn status_update_contributed_with_receipt() {
    let tx = "0x9c1a2e3f4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6";
    let update = ReplicateStatusUpdate::with_details(
        ReplicateStatus::Contributed,
        ReplicateStatusDetails {
            chain_receipt: Some(ChainReceipt {
                block_number: 123,
                tx_hash: tx.to_owned(),
            }),
            ..Default::default()
        },
    );
    let json = serde_json::to_string(&update).unwrap();
    assert!(
        json.contains(&format!(
            r#""chainReceipt":{{"blockNumber":123,"txHash":"{tx}"}}"#
        )),
        "{json}"
    );
    assert_eq!(
        serde_json::from_str::<ReplicateStatusUpdate>(&json).unwrap(),
        update
    );
}

#[test]
fn status_update_result_uploaded_with_link() {
    let link = result_link(
        "ipfs",
        "/ipfs/QmVkWj6n3qV9Fn4MCqkmQ3BzVRj2sGBqA2fT7wMvmHg3bN",
    );
    let update = ReplicateStatusUpdate::with_details(
        ReplicateStatus::ResultUploaded,
        ReplicateStatusDetails {
            result_link: Some(link),
            ..Default::default()
        },
    );
    let json = serde_json::to_string(&update).unwrap();
    assert!(
        json.contains(r#""resultLink":"{ \"storage\": \"ipfs\", \"location\": \"/ipfs/QmVkWj6n3qV9Fn4MCqkmQ3BzVRj2sGBqA2fT7wMvmHg3bN\" }""#),
        "{json}"
    );
    assert_eq!(
        serde_json::from_str::<ReplicateStatusUpdate>(&json).unwrap(),
        update
    );
}

#[test]
fn status_update_failure_is_not_a_success() {
    let update = ReplicateStatusUpdate::with_cause(
        ReplicateStatus::AppDownloadFailed,
        StatusCause::AppImageDownloadFailed,
    );
    assert!(!update.success());
    let json = serde_json::to_string(&update).unwrap();
    assert!(
        json.contains(r#""cause":"APP_IMAGE_DOWNLOAD_FAILED""#),
        "{json}"
    );
    assert!(json.ends_with(r#""success":false}"#), "{json}");
    // ABORTED is neither a success nor a failure in Java; it is written as not a success.
    assert!(
        !ReplicateStatusUpdate::with_cause(ReplicateStatus::Aborted, StatusCause::ConsensusReached)
            .success()
    );
}

#[test]
fn status_update_read_by_the_core_from_a_java_worker() {
    // A TEE cause our enum does not list still yields the status; `success` is ignored.
    let json = r#"{"status":"START_FAILED","details":{"cause":"TEE_SESSION_GENERATION_UNKNOWN_ISSUE","exitCode":"1","computeLogs":{"walletAddress":"0xabc","stdout":"","stderr":"boom"}},"success":true}"#;
    let update: ReplicateStatusUpdate = serde_json::from_str(json).unwrap();
    assert_eq!(update.status, ReplicateStatus::StartFailed);
    assert!(!update.success());
    let details = update.details.unwrap();
    assert_eq!(details.cause, Some(StatusCause::Unknown));
    assert_eq!(details.exit_code, Some(1));
    let logs = details.compute_logs.unwrap();
    assert_eq!(
        (logs.wallet_address.as_deref(), logs.stderr.as_str()),
        (Some("0xabc"), "boom")
    );
}

#[test]
fn status_update_unknown_status_is_refused_by_name() {
    let error = serde_json::from_str::<ReplicateStatusUpdate>(r#"{"status":"PONDERING"}"#)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("unknown ReplicateStatus \"PONDERING\""),
        "{error}"
    );
    let error = serde_json::from_str::<ReplicateStatusUpdate>(r#"{"details":null}"#)
        .unwrap_err()
        .to_string();
    assert!(error.contains("missing field `status`"), "{error}");
}

#[test]
fn compute_logs_keep_the_last_hundred_thousand_characters() {
    let head = "x".repeat(5);
    let body = "é".repeat(ComputeLogs::MAX_LOG_CHARS - 1);
    let logs = ComputeLogs::tailed(&format!("{head}{body}!"), "short");
    assert_eq!(logs.stdout.chars().count(), ComputeLogs::MAX_LOG_CHARS);
    assert!(logs.stdout.starts_with('é') && logs.stdout.ends_with('!'));
    assert_eq!(logs.stderr, "short");
    let exact = "y".repeat(ComputeLogs::MAX_LOG_CHARS);
    assert_eq!(ComputeLogs::tailed(&exact, "").stdout, exact);
}

#[test]
fn compute_logs_leave_out_empty_properties_like_java() {
    let logs = ComputeLogs::default();
    assert_eq!(serde_json::to_string(&logs).unwrap(), "{}");
    let logs = ComputeLogs {
        wallet_address: Some("0xabc".into()),
        stdout: "o".into(),
        stderr: "e".into(),
    };
    assert_eq!(
        serde_json::to_string(&logs).unwrap(),
        r#"{"walletAddress":"0xabc","stdout":"o","stderr":"e"}"#
    );
}

// ---- TaskNotification ----------------------------------------------------------------------

fn reveal_notification_json() -> String {
    format!(
        r#"{{"chainTaskId":"{TASK}","workersAddress":["{WORKER}"],"taskNotificationType":"PLEASE_REVEAL","taskNotificationExtra":{{"workerpoolAuthorization":null,"smsUrl":null,"blockNumber":4567,"taskAbortCause":null}},"taskAbortCause":"UNKNOWN"}}"#
    )
}

#[test]
fn notification_please_reveal_both_directions() {
    let notification = TaskNotification {
        chain_task_id: TASK.to_owned(),
        workers_address: vec![WORKER.to_owned()],
        task_notification_type: NextAction::PleaseReveal,
        task_notification_extra: Some(TaskNotificationExtra {
            block_number: Some(4567),
            ..Default::default()
        }),
    };
    let json = reveal_notification_json();
    assert_eq!(
        serde_json::from_str::<TaskNotification>(&json).unwrap(),
        notification
    );
    assert_eq!(serde_json::to_string(&notification).unwrap(), json);
}

#[test]
fn notification_please_abort_carries_its_cause_twice() {
    let notification = TaskNotification {
        chain_task_id: TASK.to_owned(),
        workers_address: vec![],
        task_notification_type: NextAction::PleaseAbort,
        task_notification_extra: Some(TaskNotificationExtra {
            task_abort_cause: Some(TaskAbortCause::ConsensusReached),
            ..Default::default()
        }),
    };
    let json = serde_json::to_string(&notification).unwrap();
    assert_eq!(
        json,
        format!(
            r#"{{"chainTaskId":"{TASK}","workersAddress":[],"taskNotificationType":"PLEASE_ABORT","taskNotificationExtra":{{"workerpoolAuthorization":null,"smsUrl":null,"blockNumber":0,"taskAbortCause":"CONSENSUS_REACHED"}},"taskAbortCause":"CONSENSUS_REACHED"}}"#
        )
    );
    let parsed: TaskNotification = serde_json::from_str(&json).unwrap();
    assert_eq!(parsed, notification);
    assert_eq!(
        parsed.task_abort_cause().to_status_cause(),
        StatusCause::ConsensusReached
    );
}

#[test]
fn notification_without_extra_aborts_for_an_unknown_cause() {
    let json = format!(
        r#"{{"chainTaskId":"{TASK}","workersAddress":[],"taskNotificationType":"PLEASE_COMPLETE","taskNotificationExtra":null}}"#
    );
    let notification: TaskNotification = serde_json::from_str(&json).unwrap();
    assert_eq!(notification.task_notification_extra, None);
    assert_eq!(notification.task_abort_cause(), TaskAbortCause::Unknown);
    assert!(
        serde_json::to_string(&notification)
            .unwrap()
            .ends_with(r#""taskNotificationExtra":null,"taskAbortCause":"UNKNOWN"}"#)
    );
}

#[test]
fn notification_tolerates_a_new_abort_cause_but_not_a_new_type() {
    let json = reveal_notification_json()
        .replace("PLEASE_REVEAL", "PLEASE_ABORT")
        .replace(
            r#""taskAbortCause":null"#,
            r#""taskAbortCause":"FINAL_DEADLINE_REACHED""#,
        );
    let notification: TaskNotification = serde_json::from_str(&json).unwrap();
    assert_eq!(notification.task_abort_cause(), TaskAbortCause::Unknown);

    let json = reveal_notification_json().replace("PLEASE_REVEAL", "PLEASE_DANCE");
    let error = serde_json::from_str::<TaskNotification>(&json)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("unknown TaskNotificationType \"PLEASE_DANCE\""),
        "{error}"
    );
}

#[test]
fn notification_block_number_zero_means_unset() {
    let json = reveal_notification_json().replace("4567", "0");
    let notification: TaskNotification = serde_json::from_str(&json).unwrap();
    assert_eq!(
        notification.task_notification_extra.unwrap().block_number,
        None
    );
    let json = reveal_notification_json().replace("4567", r#""4567""#);
    let notification: TaskNotification = serde_json::from_str(&json).unwrap();
    assert_eq!(
        notification.task_notification_extra.unwrap().block_number,
        Some(4567)
    );
}

#[test]
fn notification_with_authorization_from_interrupted_replicates() {
    let json = format!(
        r#"[{{"chainTaskId":"{TASK}","workersAddress":["{WORKER}"],"taskNotificationType":"PLEASE_CONTRIBUTE","taskNotificationExtra":{{"workerpoolAuthorization":{},"smsUrl":null,"blockNumber":0,"taskAbortCause":null}},"taskAbortCause":"UNKNOWN"}}]"#,
        authorization_json()
    );
    let notifications: Vec<TaskNotification> = serde_json::from_str(&json).unwrap();
    let extra = notifications[0].task_notification_extra.as_ref().unwrap();
    assert_eq!(extra.workerpool_authorization, Some(authorization()));
    assert_eq!(serde_json::to_string(&notifications).unwrap(), json);
}

#[test]
fn notification_targets_listed_workers_or_everyone() {
    let mut notification: TaskNotification =
        serde_json::from_str(&reveal_notification_json()).unwrap();
    assert!(notification.concerns(WORKER));
    assert!(notification.concerns("0x1A69B2EB604DB8EBA185DF03EA4F5288DCBBD248"));
    assert!(!notification.concerns("0x0000000000000000000000000000000000000001"));
    notification.workers_address.clear();
    assert!(notification.concerns("0x0000000000000000000000000000000000000001"));

    let missing =
        reveal_notification_json().replace(&format!(r#""workersAddress":["{WORKER}"],"#), "");
    let error = serde_json::from_str::<TaskNotification>(&missing)
        .unwrap_err()
        .to_string();
    assert!(error.contains("missing field `workersAddress`"), "{error}");
}

// ---- replies and result links --------------------------------------------------------------

#[test]
fn update_status_reply_is_a_json_string() {
    assert_eq!(
        serde_json::from_str::<NextAction>(r#""PLEASE_CONTINUE""#).unwrap(),
        NextAction::PleaseContinue
    );
    assert_eq!(
        serde_json::to_string(&NextAction::PleaseAbort).unwrap(),
        r#""PLEASE_ABORT""#
    );
}

#[test]
fn result_link_keeps_java_format_and_spaces() {
    assert_eq!(
        result_link("ipfs", "/ipfs/QmHash"),
        "{ \"storage\": \"ipfs\", \"location\": \"/ipfs/QmHash\" }"
    );
    assert_eq!(
        result_link("ethereum", "0x0000000000000000000000000000000000000abc"),
        r#"{ "storage": "ethereum", "location": "0x0000000000000000000000000000000000000abc" }"#
    );
}
