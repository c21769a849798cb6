//! JSON bodies of the core's REST API and of its push notifications (§1.4 of the protocol notes).
//!
//! Property names and order match the Java classes, so what `serde_json` writes is what Jackson
//! writes for the same values. Reading is lenient like Jackson's defaults: unknown properties are
//! ignored, integers and booleans may come as strings, `null` fills a primitive with its zero,
//! and a duration may be ISO-8601 or seconds. A property is required only where the message
//! would be meaningless without it; its absence is then reported by name.
//!
//! Addresses and ids stay strings, exactly as received: the core identifies a worker by the very
//! string it logged in with (lowercase hex), so re-casing one would break that identity.

use std::time::Duration;

use serde::ser::SerializeStruct;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::lenient;
use crate::status::{NextAction, ReplicateStatus, StatusCause, StatusModifier, TaskAbortCause};

/// `GET /workers/config`: what the core tells every worker before login.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PublicConfiguration {
    /// The workerpool this core schedules for.
    #[serde(deserialize_with = "lenient::string")]
    pub worker_pool_address: String,
    /// The core's wallet, i.e. the workerpool owner that signs workerpool authorizations.
    #[serde(deserialize_with = "lenient::string")]
    pub scheduler_public_address: String,
    /// Base URL of the config server serving `GET /config/chain`.
    #[serde(deserialize_with = "lenient::string")]
    pub config_server_url: String,
    /// Default result proxy, used when a deal names none.
    #[serde(rename = "resultRepositoryURL", deserialize_with = "lenient::string")]
    pub result_repository_url: String,
    /// Minimum delay between two `GET /replicates/available`, in milliseconds.
    #[serde(
        rename = "askForReplicatePeriod",
        deserialize_with = "lenient::integer"
    )]
    pub ask_for_replicate_period_ms: u64,
    /// Exact worker version the core requires; empty when any will do.
    #[serde(deserialize_with = "lenient::string")]
    pub required_worker_version: String,
}

/// `GET {configServerUrl}/config/chain`: the chain the workerpool lives on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PublicChainConfig {
    /// EIP-155 chain id the worker signs its transactions for.
    #[serde(default, deserialize_with = "lenient::integer")]
    pub chain_id: u64,
    /// A gas-free sidechain: the worker then skips its balance checks.
    #[serde(default, deserialize_with = "lenient::boolean")]
    pub sidechain: bool,
    /// JSON-RPC endpoint, unless the worker overrides it.
    #[serde(default, deserialize_with = "lenient::string")]
    pub chain_node_url: String,
    /// The PoCo hub (diamond proxy) all task calls go to.
    #[serde(default, deserialize_with = "lenient::string")]
    pub iexec_hub_contract_address: String,
    /// Average block interval. Required: every chain timeout of the worker derives from it.
    #[serde(
        deserialize_with = "lenient::duration",
        serialize_with = "lenient::serialize_duration"
    )]
    pub block_time: Duration,
}

/// `POST /workers/register`: the worker's description. The core computes the worker's task
/// slots from it (`cpuNb`, or 1 when `gpuEnabled`) and ignores `walletAddress` (the JWT names the
/// worker).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct WorkerModel {
    #[serde(deserialize_with = "lenient::string")]
    pub name: String,
    #[serde(deserialize_with = "lenient::string")]
    pub wallet_address: String,
    /// Operating system name, e.g. `Linux`.
    #[serde(deserialize_with = "lenient::string")]
    pub os: String,
    /// CPU architecture, e.g. `aarch64`.
    #[serde(deserialize_with = "lenient::string")]
    pub cpu: String,
    /// Number of tasks the worker runs at once.
    #[serde(deserialize_with = "lenient::integer")]
    pub cpu_nb: u32,
    /// Memory in GiB (unused by the core).
    #[serde(deserialize_with = "lenient::integer")]
    pub memory_size: u64,
    #[serde(deserialize_with = "lenient::boolean")]
    pub gpu_enabled: bool,
    /// SGX support; false makes the core keep TEE tasks away.
    #[serde(deserialize_with = "lenient::boolean")]
    pub tee_enabled: bool,
    #[serde(deserialize_with = "lenient::boolean")]
    pub tdx_enabled: bool,
}

/// A 65-byte ECDSA signature `r‖s‖v` as 0x-hex, wrapped like Java's `Signature` class. Also the
/// body of `POST /workers/login`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignatureValue {
    #[serde(default, deserialize_with = "lenient::string")]
    pub value: String,
}

/// The workerpool owner's permission for one worker to contribute to one task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkerpoolAuthorization {
    #[serde(default, deserialize_with = "lenient::string")]
    pub chain_task_id: String,
    #[serde(default, deserialize_with = "lenient::string")]
    pub deal_id: String,
    #[serde(default, deserialize_with = "lenient::integer")]
    pub task_index: u64,
    /// The worker, as the core knows it (the login address).
    #[serde(default, deserialize_with = "lenient::string")]
    pub worker_wallet: String,
    /// Zero address for standard tasks.
    #[serde(default, deserialize_with = "lenient::string")]
    pub enclave_challenge: String,
    /// Required: an authorization without its signature authorizes nothing.
    pub signature: SignatureValue,
}

/// `200` body of `GET /replicates/available`: a task handed to this worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicateTaskSummary {
    pub workerpool_authorization: WorkerpoolAuthorization,
    /// Secret management service, TEE tasks only.
    #[serde(default)]
    pub sms_url: Option<String>,
}

/// Body of `POST /replicates/{chainTaskId}/updateStatus`, and a status record on the core.
///
/// Written with a trailing `success` property (Java's derived `isSuccess()`, computed from the
/// status) and read ignoring it, so it can never disagree with the status.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ReplicateStatusUpdate {
    pub status: ReplicateStatus,
    /// Overwritten by the core (`WORKER`); a worker sends `null`.
    #[serde(default)]
    pub modifier: Option<StatusModifier>,
    /// Epoch milliseconds, set by the core; a worker sends `null`.
    #[serde(default, deserialize_with = "lenient::optional_integer")]
    pub date: Option<i64>,
    #[serde(default)]
    pub details: Option<ReplicateStatusDetails>,
}

impl ReplicateStatusUpdate {
    /// A bare update, as a worker sends it.
    pub fn new(status: ReplicateStatus) -> Self {
        Self {
            status,
            modifier: None,
            date: None,
            details: None,
        }
    }

    /// An update explaining a failure or an abort.
    pub fn with_cause(status: ReplicateStatus, cause: StatusCause) -> Self {
        Self::with_details(
            status,
            ReplicateStatusDetails {
                cause: Some(cause),
                ..Default::default()
            },
        )
    }

    /// An update carrying details (receipt, logs, result link…).
    pub fn with_details(status: ReplicateStatus, details: ReplicateStatusDetails) -> Self {
        Self {
            details: Some(details),
            ..Self::new(status)
        }
    }

    /// The `success` property Java derives from the status.
    pub fn success(&self) -> bool {
        self.status.is_success()
    }
}

impl Serialize for ReplicateStatusUpdate {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut out = serializer.serialize_struct("ReplicateStatusUpdate", 5)?;
        out.serialize_field("status", &self.status)?;
        out.serialize_field("modifier", &self.modifier)?;
        out.serialize_field("date", &self.date)?;
        out.serialize_field("details", &self.details)?;
        out.serialize_field("success", &self.success())?;
        out.end()
    }
}

/// What comes with a status; every property is optional and written as `null` when unset.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ReplicateStatusDetails {
    /// With `CONTRIBUTED`, `REVEALED`, `CONTRIBUTE_AND_FINALIZE_DONE`.
    pub chain_receipt: Option<ChainReceipt>,
    /// With `RESULT_UPLOADED`; see [`result_link`].
    pub result_link: Option<String>,
    /// With `RESULT_UPLOADED` when the deal has a callback.
    pub chain_callback_data: Option<String>,
    pub error_message: Option<String>,
    /// With failures and `ABORTED`.
    pub cause: Option<StatusCause>,
    /// With `COMPUTED`.
    pub compute_logs: Option<ComputeLogs>,
    /// With `COMPUTED`: the app's exit code.
    #[serde(deserialize_with = "lenient::optional_integer")]
    pub exit_code: Option<i32>,
    pub tee_session_generation_error: Option<String>,
}

/// Where a transaction landed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ChainReceipt {
    /// The core waits until its own node has reached this block before checking the chain.
    #[serde(deserialize_with = "lenient::integer")]
    pub block_number: u64,
    #[serde(deserialize_with = "lenient::string")]
    pub tx_hash: String,
}

/// The app's output streams. Like the Java class (`@JsonInclude(NON_EMPTY)`), empty streams and
/// an unset wallet are left out when written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ComputeLogs {
    /// Filled in by the core with the JWT's wallet, whatever the worker sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wallet_address: Option<String>,
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "lenient::string"
    )]
    pub stdout: String,
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "lenient::string"
    )]
    pub stderr: String,
}

impl ComputeLogs {
    /// The core stores at most this many characters of each stream; the Java worker keeps the end.
    pub const MAX_LOG_CHARS: usize = 100_000;

    /// Logs of a finished app, each stream cut to its last [`Self::MAX_LOG_CHARS`] characters.
    pub fn tailed(stdout: &str, stderr: &str) -> Self {
        Self {
            wallet_address: None,
            stdout: tail(stdout).to_owned(),
            stderr: tail(stderr).to_owned(),
        }
    }
}

/// The last `MAX_LOG_CHARS` characters (Unicode scalar values; Java counts UTF-16 units, which
/// only differs for text outside the BMP).
fn tail(log: &str) -> &str {
    match log.char_indices().rev().nth(ComputeLogs::MAX_LOG_CHARS - 1) {
        Some((start, _)) => &log[start..],
        None => log,
    }
}

/// A push from the core (STOMP `/topic/task/{chainTaskId}`), and an item of
/// `GET /replicates/interrupted`.
///
/// Written with the extra top-level `taskAbortCause` property Java's public getter adds; read
/// ignoring it (the cause inside `taskNotificationExtra` is the real one).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskNotification {
    /// The task this is about.
    #[serde(default, deserialize_with = "lenient::string")]
    pub chain_task_id: String,
    /// Workers concerned; empty means every worker of the task. Required: the Java worker treats
    /// a missing list as "not for me", which dropping the message reproduces.
    pub workers_address: Vec<String>,
    /// What the worker is asked to do.
    pub task_notification_type: NextAction,
    #[serde(default)]
    pub task_notification_extra: Option<TaskNotificationExtra>,
}

impl TaskNotification {
    /// Whether this notification is for `worker` (the Java worker's `isWorkerInvolved`).
    /// Addresses compare case-insensitively: both are hex, and a checksum-cased copy on either
    /// side must not make a worker miss its reveal.
    pub fn concerns(&self, worker: &str) -> bool {
        self.workers_address.is_empty()
            || self
                .workers_address
                .iter()
                .any(|a| a.eq_ignore_ascii_case(worker))
    }

    /// The abort cause, `UNKNOWN` when none is given (Java `getTaskAbortCause`).
    pub fn task_abort_cause(&self) -> TaskAbortCause {
        self.task_notification_extra
            .as_ref()
            .and_then(|extra| extra.task_abort_cause)
            .unwrap_or(TaskAbortCause::Unknown)
    }
}

impl Serialize for TaskNotification {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut out = serializer.serialize_struct("TaskNotification", 5)?;
        out.serialize_field("chainTaskId", &self.chain_task_id)?;
        out.serialize_field("workersAddress", &self.workers_address)?;
        out.serialize_field("taskNotificationType", &self.task_notification_type)?;
        out.serialize_field("taskNotificationExtra", &self.task_notification_extra)?;
        out.serialize_field("taskAbortCause", &self.task_abort_cause())?;
        out.end()
    }
}

/// Data some notifications carry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TaskNotificationExtra {
    pub workerpool_authorization: Option<WorkerpoolAuthorization>,
    pub sms_url: Option<String>,
    /// `PLEASE_REVEAL`: the consensus block, which the worker's node must reach before revealing.
    /// Java holds a primitive `long`, so "unset" travels as `0`; it is read back as `None`.
    #[serde(
        serialize_with = "block_number_as_java",
        deserialize_with = "block_number_from_java"
    )]
    pub block_number: Option<u64>,
    /// `PLEASE_ABORT`: why.
    pub task_abort_cause: Option<TaskAbortCause>,
}

fn block_number_as_java<S: Serializer>(
    block: &Option<u64>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_u64(block.unwrap_or(0))
}

fn block_number_from_java<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<u64>, D::Error> {
    Ok(lenient::optional_integer::<D, u64>(deserializer)?.filter(|&block| block != 0))
}

/// The `resultLink` of `RESULT_UPLOADED`, byte for byte as the Java worker formats it (the core
/// later writes these bytes on chain in `finalize`). No escaping, as in Java's `String.format`.
pub fn result_link(storage: &str, location: &str) -> String {
    format!("{{ \"storage\": \"{storage}\", \"location\": \"{location}\" }}")
}
