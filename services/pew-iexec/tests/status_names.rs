//! Wire names of the enums: Java declaration order, exact constant names, and the per-type
//! tolerance of unknown names.

use pew_iexec::status::{
    NextAction, ReplicateStatus, StatusCause, StatusModifier, TaskAbortCause, UnknownVariant,
};

#[test]
fn replicate_status_has_the_33_java_constants_in_order() {
    let names: Vec<_> = ReplicateStatus::ALL.iter().map(|s| s.as_str()).collect();
    assert_eq!(
        names,
        [
            "CREATED",
            "STARTING",
            "START_FAILED",
            "STARTED",
            "APP_DOWNLOADING",
            "APP_DOWNLOAD_FAILED",
            "APP_DOWNLOADED",
            "DATA_DOWNLOADING",
            "DATA_DOWNLOAD_FAILED",
            "DATA_DOWNLOADED",
            "COMPUTING",
            "COMPUTE_FAILED",
            "COMPUTED",
            "CONTRIBUTING",
            "CONTRIBUTE_FAILED",
            "CONTRIBUTED",
            "REVEALING",
            "REVEAL_FAILED",
            "REVEALED",
            "RESULT_UPLOAD_REQUESTED",
            "RESULT_UPLOADING",
            "RESULT_UPLOAD_FAILED",
            "RESULT_UPLOADED",
            "CONTRIBUTE_AND_FINALIZE_ONGOING",
            "CONTRIBUTE_AND_FINALIZE_FAILED",
            "CONTRIBUTE_AND_FINALIZE_DONE",
            "COMPLETING",
            "COMPLETE_FAILED",
            "COMPLETED",
            "FAILED",
            "ABORTED",
            "RECOVERING",
            "WORKER_LOST",
        ]
    );
    assert!(
        ReplicateStatus::ALL
            .windows(2)
            .all(|pair| pair[0] < pair[1]),
        "Ord follows the ordinal"
    );
}

#[test]
fn next_action_has_the_12_java_constants_in_order() {
    let names: Vec<_> = NextAction::ALL.iter().map(|a| a.to_string()).collect();
    assert_eq!(
        names,
        [
            "PLEASE_CONTINUE",
            "PLEASE_WAIT",
            "PLEASE_START",
            "PLEASE_DOWNLOAD_APP",
            "PLEASE_DOWNLOAD_DATA",
            "PLEASE_COMPUTE",
            "PLEASE_CONTRIBUTE",
            "PLEASE_REVEAL",
            "PLEASE_UPLOAD",
            "PLEASE_CONTRIBUTE_AND_FINALIZE",
            "PLEASE_COMPLETE",
            "PLEASE_ABORT",
        ]
    );
}

#[test]
fn every_name_round_trips_through_text_and_json() {
    fn check<T>(all: &[T])
    where
        T: Copy
            + PartialEq
            + std::fmt::Debug
            + std::fmt::Display
            + std::str::FromStr
            + serde::Serialize,
        T: serde::de::DeserializeOwned,
        <T as std::str::FromStr>::Err: std::fmt::Debug,
    {
        for &value in all {
            let name = value.to_string();
            assert_eq!(name.parse::<T>().unwrap(), value);
            let json = serde_json::to_string(&value).unwrap();
            assert_eq!(json, format!("\"{name}\""));
            assert_eq!(serde_json::from_str::<T>(&json).unwrap(), value);
        }
    }
    check(ReplicateStatus::ALL);
    check(StatusCause::ALL);
    check(NextAction::ALL);
    check(TaskAbortCause::ALL);
    check(StatusModifier::ALL);
}

#[test]
fn causes_a_standard_task_meets_are_all_there() {
    for name in [
        "CHAIN_UNREACHABLE",
        "STAKE_TOO_LOW",
        "OUT_OF_GAS",
        "TASK_NOT_ACTIVE",
        "TASK_DESCRIPTION_INVALID",
        "CONTRIBUTION_ALREADY_SET",
        "CONTRIBUTION_TIMEOUT",
        "CHAIN_RECEIPT_NOT_VALID",
        "CONSENSUS_BLOCK_MISSING",
        "BLOCK_NOT_REACHED",
        "CANNOT_REVEAL",
        "APP_IMAGE_DOWNLOAD_FAILED",
        "INPUT_FILES_DOWNLOAD_FAILED",
        "DATASET_FILE_DOWNLOAD_FAILED",
        "DATASET_FILE_BAD_CHECKSUM",
        "APP_NOT_FOUND_LOCALLY",
        "APP_COMPUTE_FAILED",
        "APP_COMPUTE_TIMEOUT",
        "POST_COMPUTE_COMPUTED_FILE_NOT_FOUND",
        "POST_COMPUTE_RESULT_DIGEST_COMPUTATION_FAILED",
        "POST_COMPUTE_OUT_FOLDER_ZIP_FAILED",
        "POST_COMPUTE_TOO_LONG_RESULT_FILE_NAME",
        "POST_COMPUTE_SEND_COMPUTED_FILE_FAILED",
        "POST_COMPUTE_FAILED_UNKNOWN_ISSUE",
        "DETERMINISM_HASH_NOT_FOUND",
        "WORKERPOOL_AUTHORIZATION_NOT_FOUND",
        "RESULT_LINK_MISSING",
        "ABORTED_BY_WORKER",
        "UNKNOWN",
        "CONSENSUS_REACHED",
        "REVEAL_TIMEOUT",
    ] {
        let cause: StatusCause = name.parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cause.as_str(), name);
    }
}

#[test]
fn unknown_names_strict_or_tolerated_per_type() {
    // Text parsing is always strict and names the type.
    assert_eq!(
        "SLEEPING".parse::<ReplicateStatus>(),
        Err(UnknownVariant {
            kind: "ReplicateStatus",
            value: "SLEEPING".to_owned()
        })
    );
    assert_eq!(
        "completed"
            .parse::<ReplicateStatus>()
            .unwrap_err()
            .to_string(),
        "unknown ReplicateStatus \"completed\""
    );
    // JSON: the open-ended causes fall back to UNKNOWN.
    let tee_cause = r#""TEE_SESSION_GENERATION_SECURE_SESSION_NO_TEE_FRAMEWORK""#;
    assert_eq!(
        serde_json::from_str::<StatusCause>(tee_cause).unwrap(),
        StatusCause::Unknown
    );
    assert_eq!(
        serde_json::from_str::<TaskAbortCause>(r#""FINAL_DEADLINE""#).unwrap(),
        TaskAbortCause::Unknown
    );
    for strict in [
        serde_json::from_str::<ReplicateStatus>(r#""SLEEPING""#).map(|_| ()),
        serde_json::from_str::<NextAction>(r#""PLEASE_SLEEP""#).map(|_| ()),
        serde_json::from_str::<StatusModifier>(r#""ROBOT""#).map(|_| ()),
    ] {
        assert!(strict.unwrap_err().to_string().starts_with("unknown "));
    }
    // Not a string at all is refused everywhere.
    assert!(serde_json::from_str::<StatusCause>("3").is_err());
}

#[test]
fn abort_causes_map_to_status_causes() {
    assert_eq!(
        TaskAbortCause::ConsensusReached.to_status_cause(),
        StatusCause::ConsensusReached
    );
    assert_eq!(
        TaskAbortCause::ContributionTimeout.to_status_cause(),
        StatusCause::ContributionTimeout
    );
    assert_eq!(
        TaskAbortCause::Unknown.to_status_cause(),
        StatusCause::Unknown
    );
}
