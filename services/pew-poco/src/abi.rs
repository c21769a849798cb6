//! The iExec hub's ABI (PoCo v6, §2.5): calldata for the calls a worker, a scheduler and their
//! test doubles make, decoders from raw return data to plain Rust types, event topics, gas
//! limits, and the deal's `params` string.
//!
//! Callers only move bytes: `eth_call`/transaction data in, return data out.

use std::collections::BTreeMap;
use std::time::Duration;

use alloy_primitives::{Address, B256, Bytes, U256};
use alloy_sol_types::{SolCall, SolEvent, sol};
use serde::{Deserialize, Deserializer, Serialize};

use crate::Signature65;

sol! {
    /// The hub functions and events used around a task's life, with PoCo v6.2.0's layouts.
    #[derive(Debug, PartialEq, Eq)]
    interface IexecHub {
        struct Resource { address pointer; address owner; uint256 price; }
        struct Deal {
            Resource app; Resource dataset; Resource workerpool;
            uint256 trust; uint256 category; bytes32 tag;
            address requester; address beneficiary; address callback; string params;
            uint256 startTime; uint256 botFirst; uint256 botSize;
            uint256 workerStake; uint256 schedulerRewardRatio; address sponsor;
        }
        struct Category { string name; string description; uint256 workClockTimeRef; }
        struct AppInfo {
            address owner; string m_appName; string m_appType;
            bytes m_appMultiaddr; bytes32 m_appChecksum; bytes m_appMREnclave;
        }
        struct DatasetInfo { address owner; string m_datasetName; bytes m_datasetMultiaddr; bytes32 m_datasetChecksum; }
        struct Contribution { uint8 status; bytes32 resultHash; bytes32 resultSeal; address enclaveChallenge; uint256 weight; }
        struct Account { uint256 stake; uint256 locked; }

        function viewTaskABILegacy(bytes32 taskId) external view returns (
            uint8 status, bytes32 dealid, uint256 idx, uint256 timeref,
            uint256 contributionDeadline, uint256 revealDeadline, uint256 finalDeadline,
            bytes32 consensusValue, uint256 revealCounter, uint256 winnerCounter,
            address[] contributors, bytes results);
        function viewDeal(bytes32 dealId) external view returns (Deal deal);
        function viewCategory(uint256 categoryId) external view returns (Category category);
        function viewApp(address app) external view returns (AppInfo info);
        function viewDataset(address dataset) external view returns (DatasetInfo info);
        function viewContribution(bytes32 taskId, address worker) external view returns (Contribution contribution);
        function viewAccount(address account) external view returns (Account balance);
        function viewScore(address worker) external view returns (uint256 score);

        function initialize(bytes32 dealId, uint256 index) external returns (bytes32 taskId);
        function contribute(bytes32 taskId, bytes32 resultHash, bytes32 resultSeal,
                            address enclaveChallenge, bytes enclaveSign, bytes authorizationSign) external;
        function reveal(bytes32 taskId, bytes32 resultDigest) external;
        function finalize(bytes32 taskId, bytes results, bytes resultsCallback) external;
        function contributeAndFinalize(bytes32 taskId, bytes32 resultDigest, bytes results, bytes resultsCallback,
                                       address enclaveChallenge, bytes enclaveSign, bytes authorizationSign) external;

        event TaskInitialize(bytes32 indexed taskid, address indexed workerpool);
        event TaskContribute(bytes32 indexed taskid, address indexed worker, bytes32 hash);
        event TaskConsensus(bytes32 indexed taskid, bytes32 consensus);
        event TaskReveal(bytes32 indexed taskid, address indexed worker, bytes32 digest);
        event TaskFinalize(bytes32 indexed taskid, bytes results);
        event SchedulerNotice(address indexed workerpool, bytes32 dealid);
    }

    /// The workerpool contract; its owner is the scheduler that signs authorizations.
    #[derive(Debug, PartialEq, Eq)]
    interface Ownable {
        function owner() external view returns (address owner);
    }
}

// Gas limits of the Java worker and core (`PoCoDataEncoder`). Fixed limits rather than
// estimates, so a transaction never fails on a stale estimate.
/// Gas limit of `contribute`.
pub const CONTRIBUTE_GAS: u64 = 500_000;
/// Gas limit of `reveal`.
pub const REVEAL_GAS: u64 = 100_000;
/// Gas limit of `initialize` (scheduler).
pub const INITIALIZE_GAS: u64 = 300_000;
/// Gas limit of `finalize` (scheduler).
pub const FINALIZE_GAS: u64 = 500_000;
/// Gas limit of `contributeAndFinalize` (TEE tasks, not used by this worker).
pub const CONTRIBUTE_AND_FINALIZE_GAS: u64 = 700_000;

// topic0 of the hub's events. For the `Task*` events topic1 is the task id.
/// `TaskInitialize(bytes32 indexed taskid, address indexed workerpool)`.
pub const TASK_INITIALIZE_TOPIC: B256 = IexecHub::TaskInitialize::SIGNATURE_HASH;
/// `TaskContribute(bytes32 indexed taskid, address indexed worker, bytes32 hash)`.
pub const TASK_CONTRIBUTE_TOPIC: B256 = IexecHub::TaskContribute::SIGNATURE_HASH;
/// `TaskConsensus(bytes32 indexed taskid, bytes32 consensus)`.
pub const TASK_CONSENSUS_TOPIC: B256 = IexecHub::TaskConsensus::SIGNATURE_HASH;
/// `TaskReveal(bytes32 indexed taskid, address indexed worker, bytes32 digest)`.
pub const TASK_REVEAL_TOPIC: B256 = IexecHub::TaskReveal::SIGNATURE_HASH;
/// `TaskFinalize(bytes32 indexed taskid, bytes results)`.
pub const TASK_FINALIZE_TOPIC: B256 = IexecHub::TaskFinalize::SIGNATURE_HASH;
/// `SchedulerNotice(address indexed workerpool, bytes32 dealid)`: topic1 is the workerpool.
pub const SCHEDULER_NOTICE_TOPIC: B256 = IexecHub::SchedulerNotice::SIGNATURE_HASH;

/// Why return data could not be turned into a plain value.
#[derive(Debug, thiserror::Error)]
pub enum AbiError {
    /// Too short, bad offsets, or a value of the wrong type.
    #[error("malformed return data: {0}")]
    Decode(#[from] alloy_sol_types::Error),
    /// A counter or timestamp beyond `u64`, which no honest contract returns.
    #[error("{field} = {value} does not fit in 64 bits")]
    OutOfRange { field: &'static str, value: U256 },
    /// An enum value PoCo v6 does not define.
    #[error("{field} = {value} is not a known status")]
    UnknownStatus { field: &'static str, value: u8 },
}

fn to_u64(field: &'static str, value: U256) -> Result<u64, AbiError> {
    u64::try_from(value).map_err(|_| AbiError::OutOfRange { field, value })
}

/// `contribute` for a standard (non-TEE) task: no enclave challenge, and 32 zero bytes as
/// the enclave signature, which the contract ignores but the Java worker sends.
pub fn contribute_calldata(
    task: B256,
    result_hash: B256,
    seal: B256,
    authorization_sign: &Signature65,
) -> Vec<u8> {
    IexecHub::contributeCall {
        taskId: task,
        resultHash: result_hash,
        resultSeal: seal,
        enclaveChallenge: Address::ZERO,
        enclaveSign: Bytes::from(vec![0; 32]),
        authorizationSign: Bytes::copy_from_slice(authorization_sign.as_bytes()),
    }
    .abi_encode()
}

/// `reveal(taskId, resultDigest)`.
pub fn reveal_calldata(task: B256, digest: B256) -> Vec<u8> {
    IexecHub::revealCall {
        taskId: task,
        resultDigest: digest,
    }
    .abi_encode()
}

/// `initialize(dealId, index)`, sent by the scheduler before handing out a task.
pub fn initialize_calldata(deal: B256, index: u64) -> Vec<u8> {
    IexecHub::initializeCall {
        dealId: deal,
        index: U256::from(index),
    }
    .abi_encode()
}

/// `finalize(taskId, results, resultsCallback)`, sent by the scheduler after the reveals.
pub fn finalize_calldata(task: B256, results: &[u8], results_callback: &[u8]) -> Vec<u8> {
    IexecHub::finalizeCall {
        taskId: task,
        results: Bytes::copy_from_slice(results),
        resultsCallback: Bytes::copy_from_slice(results_callback),
    }
    .abi_encode()
}

/// `viewTaskABILegacy(taskId)`, decoded by [`ChainTask::decode`].
pub fn view_task_calldata(task: B256) -> Vec<u8> {
    IexecHub::viewTaskABILegacyCall { taskId: task }.abi_encode()
}

/// `viewDeal(dealId)`, decoded by [`ChainDeal::decode`].
pub fn view_deal_calldata(deal: B256) -> Vec<u8> {
    IexecHub::viewDealCall { dealId: deal }.abi_encode()
}

/// `viewCategory(id)`, decoded by [`ChainCategory::decode`].
pub fn view_category_calldata(category: u64) -> Vec<u8> {
    IexecHub::viewCategoryCall {
        categoryId: U256::from(category),
    }
    .abi_encode()
}

/// `viewApp(app)`, decoded by [`ChainApp::decode`].
pub fn view_app_calldata(app: Address) -> Vec<u8> {
    IexecHub::viewAppCall { app }.abi_encode()
}

/// `viewDataset(dataset)`, decoded by [`ChainDataset::decode`].
pub fn view_dataset_calldata(dataset: Address) -> Vec<u8> {
    IexecHub::viewDatasetCall { dataset }.abi_encode()
}

/// `viewContribution(taskId, worker)`, decoded by [`ChainContribution::decode`].
pub fn view_contribution_calldata(task: B256, worker: Address) -> Vec<u8> {
    IexecHub::viewContributionCall {
        taskId: task,
        worker,
    }
    .abi_encode()
}

/// `viewAccount(account)`, decoded by [`ChainAccount::decode`].
pub fn view_account_calldata(account: Address) -> Vec<u8> {
    IexecHub::viewAccountCall { account }.abi_encode()
}

/// `viewScore(worker)`, decoded by [`decode_score`].
pub fn view_score_calldata(worker: Address) -> Vec<u8> {
    IexecHub::viewScoreCall { worker }.abi_encode()
}

/// `owner()`, asked of the workerpool contract.
pub fn owner_calldata() -> Vec<u8> {
    Ownable::ownerCall {}.abi_encode()
}

/// Decodes the return data of `owner()`.
pub fn decode_owner(data: &[u8]) -> Result<Address, AbiError> {
    Ok(Ownable::ownerCall::abi_decode_returns(data)?)
}

/// Decodes the return data of `viewScore`.
pub fn decode_score(data: &[u8]) -> Result<U256, AbiError> {
    Ok(IexecHub::viewScoreCall::abi_decode_returns(data)?)
}

/// A task's on-chain state (`IexecLibCore_v5.TaskStatusEnum`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskStatus {
    /// Not initialized yet.
    Unset,
    /// Open for contributions.
    Active,
    /// Consensus reached, waiting for reveals.
    Revealing,
    Completed,
    Failed,
}

impl TryFrom<u8> for TaskStatus {
    type Error = AbiError;

    fn try_from(value: u8) -> Result<Self, AbiError> {
        Ok(match value {
            0 => Self::Unset,
            1 => Self::Active,
            2 => Self::Revealing,
            3 => Self::Completed,
            4 => Self::Failed,
            _ => {
                return Err(AbiError::UnknownStatus {
                    field: "task.status",
                    value,
                });
            }
        })
    }
}

/// A worker's contribution state (`ContributionStatusEnum`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContributionStatus {
    Unset,
    Contributed,
    /// Revealed.
    Proved,
    Rejected,
}

impl TryFrom<u8> for ContributionStatus {
    type Error = AbiError;

    fn try_from(value: u8) -> Result<Self, AbiError> {
        Ok(match value {
            0 => Self::Unset,
            1 => Self::Contributed,
            2 => Self::Proved,
            3 => Self::Rejected,
            _ => {
                return Err(AbiError::UnknownStatus {
                    field: "contribution.status",
                    value,
                });
            }
        })
    }
}

/// `viewTaskABILegacy`. Times are Unix seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainTask {
    pub status: TaskStatus,
    /// Zero until the task is initialized.
    pub deal_id: B256,
    pub index: u64,
    /// The category's reference duration in seconds; deadlines are multiples of it.
    pub time_ref: u64,
    pub contribution_deadline: u64,
    pub reveal_deadline: u64,
    pub final_deadline: u64,
    /// The winning result hash once consensus is reached.
    pub consensus_value: B256,
    pub reveal_counter: u64,
    pub winner_counter: u64,
    pub contributors: Vec<Address>,
    pub results: Vec<u8>,
}

impl ChainTask {
    /// Decodes the return data of `viewTaskABILegacy`.
    pub fn decode(data: &[u8]) -> Result<Self, AbiError> {
        let task = IexecHub::viewTaskABILegacyCall::abi_decode_returns(data)?;
        Ok(Self {
            status: TaskStatus::try_from(task.status)?,
            deal_id: task.dealid,
            index: to_u64("task.idx", task.idx)?,
            time_ref: to_u64("task.timeref", task.timeref)?,
            contribution_deadline: to_u64("task.contributionDeadline", task.contributionDeadline)?,
            reveal_deadline: to_u64("task.revealDeadline", task.revealDeadline)?,
            final_deadline: to_u64("task.finalDeadline", task.finalDeadline)?,
            consensus_value: task.consensusValue,
            reveal_counter: to_u64("task.revealCounter", task.revealCounter)?,
            winner_counter: to_u64("task.winnerCounter", task.winnerCounter)?,
            contributors: task.contributors,
            results: task.results.to_vec(),
        })
    }

    /// Whether `initialize` has run for this task.
    pub fn is_initialized(&self) -> bool {
        self.deal_id != B256::ZERO
    }
}

/// One party of a deal and what it is paid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DealResource {
    /// The app, dataset or workerpool contract.
    pub pointer: Address,
    pub owner: Address,
    pub price: U256,
}

impl From<IexecHub::Resource> for DealResource {
    fn from(resource: IexecHub::Resource) -> Self {
        Self {
            pointer: resource.pointer,
            owner: resource.owner,
            price: resource.price,
        }
    }
}

/// `viewDeal`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainDeal {
    pub app: DealResource,
    /// Zero pointer when the deal has no dataset.
    pub dataset: DealResource,
    pub workerpool: DealResource,
    pub trust: u64,
    pub category: u64,
    /// Bit 0 of the last byte asks for a TEE.
    pub tag: B256,
    pub requester: Address,
    pub beneficiary: Address,
    /// Zero when the deal has no callback contract.
    pub callback: Address,
    /// Raw; see [`DealParams::parse`].
    pub params: String,
    pub start_time: u64,
    pub bot_first: u64,
    pub bot_size: u64,
    pub worker_stake: U256,
    pub scheduler_reward_ratio: U256,
    pub sponsor: Address,
}

impl ChainDeal {
    /// Decodes the return data of `viewDeal`.
    pub fn decode(data: &[u8]) -> Result<Self, AbiError> {
        let deal = IexecHub::viewDealCall::abi_decode_returns(data)?;
        Ok(Self {
            app: deal.app.into(),
            dataset: deal.dataset.into(),
            workerpool: deal.workerpool.into(),
            trust: to_u64("deal.trust", deal.trust)?,
            category: to_u64("deal.category", deal.category)?,
            tag: deal.tag,
            requester: deal.requester,
            beneficiary: deal.beneficiary,
            callback: deal.callback,
            params: deal.params,
            start_time: to_u64("deal.startTime", deal.startTime)?,
            bot_first: to_u64("deal.botFirst", deal.botFirst)?,
            bot_size: to_u64("deal.botSize", deal.botSize)?,
            worker_stake: deal.workerStake,
            scheduler_reward_ratio: deal.schedulerRewardRatio,
            sponsor: deal.sponsor,
        })
    }

    /// Whether the deal asks for a TEE (`tag[31] & 1`), which this worker does not provide.
    pub fn is_tee(&self) -> bool {
        self.tag[31] & 0x01 != 0
    }

    /// Whether the result digest is the callback data's (see [`crate::result::result_digest`]).
    pub fn has_callback(&self) -> bool {
        self.callback != Address::ZERO
    }

    /// Whether the deal uses a dataset.
    pub fn has_dataset(&self) -> bool {
        self.dataset.pointer != Address::ZERO
    }
}

/// `viewCategory`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainCategory {
    pub name: String,
    pub description: String,
    /// Seconds; also the task's maximum execution time.
    pub work_clock_time_ref: u64,
}

impl ChainCategory {
    /// Decodes the return data of `viewCategory`.
    pub fn decode(data: &[u8]) -> Result<Self, AbiError> {
        let category = IexecHub::viewCategoryCall::abi_decode_returns(data)?;
        Ok(Self {
            name: category.name,
            description: category.description,
            work_clock_time_ref: to_u64("category.workClockTimeRef", category.workClockTimeRef)?,
        })
    }

    /// How long the app may run (`maxExecutionTime` = workClockTimeRef seconds).
    pub fn max_execution_time(&self) -> Duration {
        Duration::from_secs(self.work_clock_time_ref)
    }
}

/// Registry bytes such as a multiaddr or an image name, read as text like Java's `new String`.
fn bytes_to_text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `viewApp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainApp {
    pub owner: Address,
    pub name: String,
    /// `"DOCKER"` for every app a worker can run.
    pub app_type: String,
    /// The Docker image, e.g. `docker.io/org/app:1.0.0`.
    pub multiaddr: String,
    /// `sha256` digest of the image, zero if unset.
    pub checksum: B256,
    /// Empty for a standard app.
    pub mr_enclave: Vec<u8>,
}

impl ChainApp {
    /// Decodes the return data of `viewApp`.
    pub fn decode(data: &[u8]) -> Result<Self, AbiError> {
        let app = IexecHub::viewAppCall::abi_decode_returns(data)?;
        Ok(Self {
            owner: app.owner,
            name: app.m_appName,
            app_type: app.m_appType,
            multiaddr: bytes_to_text(&app.m_appMultiaddr),
            checksum: app.m_appChecksum,
            mr_enclave: app.m_appMREnclave.to_vec(),
        })
    }
}

/// `viewDataset`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainDataset {
    pub owner: Address,
    pub name: String,
    /// Where the dataset lives: an ASCII URL or multiaddr.
    pub multiaddr: String,
    /// `sha256` of the dataset file.
    pub checksum: B256,
}

impl ChainDataset {
    /// Decodes the return data of `viewDataset`.
    pub fn decode(data: &[u8]) -> Result<Self, AbiError> {
        let dataset = IexecHub::viewDatasetCall::abi_decode_returns(data)?;
        Ok(Self {
            owner: dataset.owner,
            name: dataset.m_datasetName,
            multiaddr: bytes_to_text(&dataset.m_datasetMultiaddr),
            checksum: dataset.m_datasetChecksum,
        })
    }
}

/// `viewContribution`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainContribution {
    pub status: ContributionStatus,
    pub result_hash: B256,
    pub result_seal: B256,
    pub enclave_challenge: Address,
    pub weight: u64,
}

impl ChainContribution {
    /// Decodes the return data of `viewContribution`.
    pub fn decode(data: &[u8]) -> Result<Self, AbiError> {
        let contribution = IexecHub::viewContributionCall::abi_decode_returns(data)?;
        Ok(Self {
            status: ContributionStatus::try_from(contribution.status)?,
            result_hash: contribution.resultHash,
            result_seal: contribution.resultSeal,
            enclave_challenge: contribution.enclaveChallenge,
            weight: to_u64("contribution.weight", contribution.weight)?,
        })
    }
}

/// `viewAccount`: the balance deposited in the hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainAccount {
    /// Free to stake on a contribution.
    pub stake: U256,
    /// Locked by running contributions and orders.
    pub locked: U256,
}

impl ChainAccount {
    /// Decodes the return data of `viewAccount`.
    pub fn decode(data: &[u8]) -> Result<Self, AbiError> {
        let account = IexecHub::viewAccountCall::abi_decode_returns(data)?;
        Ok(Self {
            stake: account.stake,
            locked: account.locked,
        })
    }
}

/// A deal's `params` (iexec-commons-poco `DealParams`).
///
/// [`DealParams::parse`] reproduces Jackson's strict defaults: any unknown key, a wrong
/// type or text that is not a JSON object makes the whole string the app's arguments.
/// Scalars are coerced the way Jackson does (a number as `iexec_args`, `"true"` as a flag).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DealParams {
    /// Command-line arguments for the app.
    #[serde(
        default,
        deserialize_with = "scalar_as_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub iexec_args: Option<String>,
    /// URLs the worker downloads into `/iexec_in`.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub iexec_input_files: Vec<String>,
    #[serde(
        default,
        deserialize_with = "jackson_bool",
        skip_serializing_if = "is_false"
    )]
    pub iexec_result_encryption: bool,
    /// `"ipfs"` or `"dropbox"`.
    #[serde(
        default,
        deserialize_with = "scalar_as_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub iexec_result_storage_provider: Option<String>,
    /// The result proxy URL.
    #[serde(
        default,
        deserialize_with = "scalar_as_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub iexec_result_storage_proxy: Option<String>,
    /// TEE only: app secret index → requester secret name.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub iexec_secrets: BTreeMap<String, String>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub bulk_cid: String,
}

impl DealParams {
    /// `DealParams.createFromString`: the JSON form, or else the whole string as arguments.
    pub fn parse(params: &str) -> Self {
        serde_json::from_str(params).unwrap_or_else(|_| Self {
            iexec_args: Some(params.to_owned()),
            ..Self::default()
        })
    }

    /// The on-chain form (`toJsonString`): empty and default fields are left out.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("strings, lists and maps of strings always serialize")
    }
}

fn is_false(flag: &bool) -> bool {
    !flag
}

/// A JSON scalar as Jackson hands it to a `String` field.
#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar {
    Text(String),
    Flag(bool),
    Number(serde_json::Number),
}

fn scalar_as_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    Ok(
        Option::<Scalar>::deserialize(deserializer)?.map(|scalar| match scalar {
            Scalar::Text(text) => text,
            Scalar::Flag(flag) => flag.to_string(),
            Scalar::Number(number) => number.to_string(),
        }),
    )
}

/// Jackson's primitive `boolean`: `null` is false, and "true"/"True"/"TRUE" (and the
/// false forms) and integers are coerced.
fn jackson_bool<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    match Option::<Scalar>::deserialize(deserializer)? {
        None => Ok(false),
        Some(Scalar::Flag(flag)) => Ok(flag),
        Some(Scalar::Text(text)) => match text.as_str() {
            "true" | "True" | "TRUE" => Ok(true),
            "false" | "False" | "FALSE" => Ok(false),
            _ => Err(serde::de::Error::custom(format!(
                "{text:?} is not a boolean"
            ))),
        },
        Some(Scalar::Number(number)) => match number.as_i64() {
            Some(value) => Ok(value != 0),
            None => Err(serde::de::Error::custom(format!(
                "{number} is not a boolean"
            ))),
        },
    }
}

fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{address, b256, hex_bytes, signature};

    #[test]
    fn selectors_match_the_protocol_tables() {
        let selectors: [([u8; 4], &str); 13] = [
            (IexecHub::contributeCall::SELECTOR, "34623484"),
            (IexecHub::revealCall::SELECTOR, "fc334e8c"),
            (IexecHub::contributeAndFinalizeCall::SELECTOR, "5facd761"),
            (IexecHub::initializeCall::SELECTOR, "5b36c66b"),
            (IexecHub::finalizeCall::SELECTOR, "8fc375e5"),
            (IexecHub::viewTaskABILegacyCall::SELECTOR, "248ad6a0"),
            (IexecHub::viewDealCall::SELECTOR, "b74861b2"),
            (IexecHub::viewCategoryCall::SELECTOR, "4f5f44ec"),
            (IexecHub::viewAppCall::SELECTOR, "e1523fb4"),
            (IexecHub::viewDatasetCall::SELECTOR, "1e143ef7"),
            (IexecHub::viewContributionCall::SELECTOR, "e741363b"),
            (IexecHub::viewAccountCall::SELECTOR, "6b55f4a5"),
            (Ownable::ownerCall::SELECTOR, "8da5cb5b"),
        ];
        for (selector, expected) in selectors {
            assert_eq!(alloy_primitives::hex::encode(selector), expected);
        }
        assert_eq!(
            alloy_primitives::hex::encode(IexecHub::viewScoreCall::SELECTOR),
            "db230b52"
        );
    }

    #[test]
    fn event_topics_match_log_topic_tests() {
        for (topic, expected) in [
            (
                TASK_CONTRIBUTE_TOPIC,
                "0x3fdb8d7797562d49a81078dbf7fa1771958ea452f8b13d1148383bd9506aecfb",
            ),
            (
                TASK_CONSENSUS_TOPIC,
                "0xf6d49bf3e05d33a4bc497d3c793fb5756388bb96b947cf51bb60aaecb0e022e3",
            ),
            (
                TASK_REVEAL_TOPIC,
                "0x4b1763d473ac8fa80b4432ba90047e1b92444d8fabc55e6a002d9b1a316d7959",
            ),
            (
                TASK_FINALIZE_TOPIC,
                "0x78ce8a8bc0fcb704e8ba3b3dbb36aa88002df8038128b4af2f27ef65db665044",
            ),
            (
                TASK_INITIALIZE_TOPIC,
                "0x252992fb0468d68d6a5784ec03214f0d0a362083f2d7ebd157af43b017a22e06",
            ),
            (
                SCHEDULER_NOTICE_TOPIC,
                "0x692ad61076dceddd0f1a861f737553dd61fc8501cf4190d29c4e90af6607f765",
            ),
        ] {
            assert_eq!(topic, b256(expected));
        }
    }

    #[test]
    fn gas_limits_match_poco_data_encoder() {
        assert_eq!(
            (
                INITIALIZE_GAS,
                CONTRIBUTE_GAS,
                REVEAL_GAS,
                FINALIZE_GAS,
                CONTRIBUTE_AND_FINALIZE_GAS
            ),
            (300_000, 500_000, 100_000, 500_000, 700_000)
        );
    }

    #[test]
    fn contribute_calldata_is_byte_identical_to_the_java_worker() {
        let calldata = contribute_calldata(
            b256("0xe06c86d6bb750dbd9be9e002482854b3b3f21550dbe37236767b9cac29e3ce28"),
            b256("0x902fdcacc7286e13c6054a37cdc389f9a50c8430fcc4de5b62761b116d949d68"),
            b256("0x9f05ecb1267764de1969e2cf7b88e8a84abbd5b51d75bbe3229666bef4df2070"),
            &signature(
                "0x6fefa6943a091b0e640dfb78425587868f7277029d024a3019b3495074378dd87eecff336d2cd0941d67477b442a58469edcff600eff706d52b0036bf4ca3d161b",
            ),
        );
        let expected = hex_bytes(concat!(
            "0x34623484",
            "e06c86d6bb750dbd9be9e002482854b3b3f21550dbe37236767b9cac29e3ce28",
            "902fdcacc7286e13c6054a37cdc389f9a50c8430fcc4de5b62761b116d949d68",
            "9f05ecb1267764de1969e2cf7b88e8a84abbd5b51d75bbe3229666bef4df2070",
            "0000000000000000000000000000000000000000000000000000000000000000",
            "00000000000000000000000000000000000000000000000000000000000000c0",
            "0000000000000000000000000000000000000000000000000000000000000100",
            "0000000000000000000000000000000000000000000000000000000000000020",
            "0000000000000000000000000000000000000000000000000000000000000000",
            "0000000000000000000000000000000000000000000000000000000000000041",
            "6fefa6943a091b0e640dfb78425587868f7277029d024a3019b3495074378dd8",
            "7eecff336d2cd0941d67477b442a58469edcff600eff706d52b0036bf4ca3d16",
            "1b00000000000000000000000000000000000000000000000000000000000000",
        ));
        assert_eq!(calldata, expected);
    }

    #[test]
    fn reveal_calldata_is_selector_task_digest() {
        assert_eq!(
            reveal_calldata(
                b256("0xe06c86d6bb750dbd9be9e002482854b3b3f21550dbe37236767b9cac29e3ce28"),
                b256("0xcc77508549295dd5de5876a2f4f00d4c3c27a547c6403450e43ab4de191bf1bc"),
            ),
            hex_bytes(concat!(
                "0xfc334e8c",
                "e06c86d6bb750dbd9be9e002482854b3b3f21550dbe37236767b9cac29e3ce28",
                "cc77508549295dd5de5876a2f4f00d4c3c27a547c6403450e43ab4de191bf1bc",
            ))
        );
    }

    #[test]
    fn view_and_scheduler_calldata_carry_their_arguments() {
        let task = b256("0xe06c86d6bb750dbd9be9e002482854b3b3f21550dbe37236767b9cac29e3ce28");
        let worker = address("0xd154ef7ed41a66d8d1d01227388b2f904c436d70");
        assert_eq!(
            view_task_calldata(task),
            [&hex_bytes("0x248ad6a0")[..], task.as_slice()].concat()
        );
        assert_eq!(owner_calldata(), hex_bytes("0x8da5cb5b"));
        let contribution = view_contribution_calldata(task, worker);
        assert_eq!(contribution.len(), 4 + 64);
        assert_eq!(&contribution[36 + 12..], worker.as_slice());
        let category = view_category_calldata(2);
        assert_eq!((category.len(), category[35]), (36, 2));
        let initialize = initialize_calldata(task, 7);
        assert_eq!(
            (&initialize[..4], initialize[67]),
            (&hex_bytes("0x5b36c66b")[..], 7)
        );
        let finalize = finalize_calldata(task, b"{}", &[]);
        let decoded = IexecHub::finalizeCall::abi_decode(&finalize).unwrap();
        assert_eq!(
            (
                decoded.taskId,
                decoded.results.to_vec(),
                decoded.resultsCallback.len()
            ),
            (task, b"{}".to_vec(), 0)
        );
        for calldata in [
            view_deal_calldata(task),
            view_app_calldata(worker),
            view_dataset_calldata(worker),
            view_account_calldata(worker),
            view_score_calldata(worker),
        ] {
            assert_eq!(calldata.len(), 36);
        }
    }

    #[test]
    fn task_return_data_decodes_to_plain_fields() {
        let deal = b256("0xa0b0fd396b0f79f14e4d6b34af7180bd9e80e2d86afda91c6127c5c17a268e66");
        let worker = address("0xd154ef7ed41a66d8d1d01227388b2f904c436d70");
        let data = IexecHub::viewTaskABILegacyCall::abi_encode_returns(
            &IexecHub::viewTaskABILegacyReturn {
                status: 2,
                dealid: deal,
                idx: U256::from(3),
                timeref: U256::from(300),
                contributionDeadline: U256::from(1_700_002_100u64),
                revealDeadline: U256::from(1_700_000_600u64),
                finalDeadline: U256::from(1_700_003_000u64),
                consensusValue: B256::repeat_byte(0x11),
                revealCounter: U256::from(0),
                winnerCounter: U256::from(1),
                contributors: vec![worker],
                results: Bytes::new(),
            },
        );
        let task = ChainTask::decode(&data).unwrap();
        assert_eq!(task.status, TaskStatus::Revealing);
        assert!(task.is_initialized());
        assert_eq!((task.deal_id, task.index, task.time_ref), (deal, 3, 300));
        assert_eq!(task.contribution_deadline, 1_700_002_100);
        assert_eq!(task.contributors, vec![worker]);
        assert!(matches!(
            ChainTask::decode(&data[..64]),
            Err(AbiError::Decode(_))
        ));
    }

    #[test]
    fn an_uninitialized_task_is_all_zeros() {
        let data = IexecHub::viewTaskABILegacyCall::abi_encode_returns(
            &IexecHub::viewTaskABILegacyReturn {
                status: 0,
                dealid: B256::ZERO,
                idx: U256::ZERO,
                timeref: U256::ZERO,
                contributionDeadline: U256::ZERO,
                revealDeadline: U256::ZERO,
                finalDeadline: U256::ZERO,
                consensusValue: B256::ZERO,
                revealCounter: U256::ZERO,
                winnerCounter: U256::ZERO,
                contributors: vec![],
                results: Bytes::new(),
            },
        );
        let task = ChainTask::decode(&data).unwrap();
        assert_eq!(task.status, TaskStatus::Unset);
        assert!(!task.is_initialized());
    }

    #[test]
    fn unknown_status_and_oversized_values_are_errors() {
        let contribution = |status: u8, weight: U256| {
            IexecHub::viewContributionCall::abi_encode_returns(&IexecHub::Contribution {
                status,
                resultHash: B256::ZERO,
                resultSeal: B256::ZERO,
                enclaveChallenge: Address::ZERO,
                weight,
            })
        };
        let decoded = ChainContribution::decode(&contribution(1, U256::from(5))).unwrap();
        assert_eq!(
            (decoded.status, decoded.weight),
            (ContributionStatus::Contributed, 5)
        );
        assert!(matches!(
            ChainContribution::decode(&contribution(9, U256::ZERO)),
            Err(AbiError::UnknownStatus { value: 9, .. })
        ));
        assert!(matches!(
            ChainContribution::decode(&contribution(1, U256::MAX)),
            Err(AbiError::OutOfRange {
                field: "contribution.weight",
                ..
            })
        ));
    }

    fn sample_deal(callback: Address, tag: B256) -> IexecHub::Deal {
        let resource = |byte: u8, price: u64| IexecHub::Resource {
            pointer: Address::repeat_byte(byte),
            owner: Address::repeat_byte(byte + 1),
            price: U256::from(price),
        };
        IexecHub::Deal {
            app: resource(0xa0, 1),
            dataset: IexecHub::Resource {
                pointer: Address::ZERO,
                owner: Address::ZERO,
                price: U256::ZERO,
            },
            workerpool: resource(0xc0, 3),
            trust: U256::from(1),
            category: U256::from(0),
            tag,
            requester: Address::repeat_byte(0xd0),
            beneficiary: Address::repeat_byte(0xd1),
            callback,
            params: r#"{"iexec_args":"hello"}"#.into(),
            startTime: U256::from(1_700_000_000u64),
            botFirst: U256::ZERO,
            botSize: U256::from(1),
            workerStake: U256::from(10),
            schedulerRewardRatio: U256::from(1),
            sponsor: Address::repeat_byte(0xd0),
        }
    }

    #[test]
    fn deal_decodes_with_the_trailing_sponsor() {
        // A struct with a string is returned behind an offset, as `viewDeal` does.
        let data =
            IexecHub::viewDealCall::abi_encode_returns(&sample_deal(Address::ZERO, B256::ZERO));
        let deal = ChainDeal::decode(&data).unwrap();
        assert_eq!(deal.app.pointer, Address::repeat_byte(0xa0));
        assert_eq!(deal.workerpool.owner, Address::repeat_byte(0xc1));
        assert_eq!(deal.params, r#"{"iexec_args":"hello"}"#);
        assert_eq!(
            (deal.start_time, deal.bot_size, deal.worker_stake),
            (1_700_000_000, 1, U256::from(10))
        );
        assert_eq!(deal.sponsor, Address::repeat_byte(0xd0));
        assert!(!deal.has_callback() && !deal.is_tee() && !deal.has_dataset());

        let mut tee_tag = B256::ZERO;
        tee_tag.0[31] = 0x03;
        let deal = ChainDeal::decode(&IexecHub::viewDealCall::abi_encode_returns(&sample_deal(
            Address::repeat_byte(0xee),
            tee_tag,
        )))
        .unwrap();
        assert!(deal.has_callback() && deal.is_tee());
    }

    #[test]
    fn category_app_dataset_and_account_decode() {
        let category = IexecHub::viewCategoryCall::abi_encode_returns(&IexecHub::Category {
            name: "XS".into(),
            description: "{}".into(),
            workClockTimeRef: U256::from(300),
        });
        let category = ChainCategory::decode(&category).unwrap();
        assert_eq!(
            (category.name.as_str(), category.max_execution_time()),
            ("XS", Duration::from_secs(300))
        );

        let app = IexecHub::viewAppCall::abi_encode_returns(&IexecHub::AppInfo {
            owner: Address::repeat_byte(1),
            m_appName: "hello".into(),
            m_appType: "DOCKER".into(),
            m_appMultiaddr: Bytes::from_static(b"docker.io/iexechub/hello:1.0.0"),
            m_appChecksum: B256::repeat_byte(0xcc),
            m_appMREnclave: Bytes::new(),
        });
        let app = ChainApp::decode(&app).unwrap();
        assert_eq!(
            (app.multiaddr.as_str(), app.app_type.as_str()),
            ("docker.io/iexechub/hello:1.0.0", "DOCKER")
        );
        assert!(app.mr_enclave.is_empty());

        let dataset = IexecHub::viewDatasetCall::abi_encode_returns(&IexecHub::DatasetInfo {
            owner: Address::repeat_byte(2),
            m_datasetName: "set".into(),
            m_datasetMultiaddr: Bytes::from_static(b"https://example.org/data.zip"),
            m_datasetChecksum: B256::repeat_byte(0xdd),
        });
        assert_eq!(
            ChainDataset::decode(&dataset).unwrap().multiaddr,
            "https://example.org/data.zip"
        );

        let account = IexecHub::viewAccountCall::abi_encode_returns(&IexecHub::Account {
            stake: U256::from(7),
            locked: U256::from(3),
        });
        assert_eq!(
            ChainAccount::decode(&account).unwrap(),
            ChainAccount {
                stake: U256::from(7),
                locked: U256::from(3)
            }
        );

        let owner = Ownable::ownerCall::abi_encode_returns(&Address::repeat_byte(0x2d));
        assert_eq!(decode_owner(&owner).unwrap(), Address::repeat_byte(0x2d));
        assert!(decode_owner(&[]).is_err());
        assert_eq!(
            decode_score(&IexecHub::viewScoreCall::abi_encode_returns(&U256::from(
                42
            )))
            .unwrap(),
            U256::from(42)
        );
    }

    #[test]
    fn deal_params_json_is_parsed() {
        let params = DealParams::parse(
            r#"{"iexec_args":"--n 3","iexec_input_files":["https://a/b.txt"],"iexec_result_encryption":false,
                "iexec_result_storage_provider":"ipfs","iexec_result_storage_proxy":"https://proxy",
                "iexec_secrets":{},"bulk_cid":""}"#,
        );
        assert_eq!(params.iexec_args.as_deref(), Some("--n 3"));
        assert_eq!(params.iexec_input_files, vec!["https://a/b.txt".to_owned()]);
        assert!(!params.iexec_result_encryption);
        assert_eq!(
            params.iexec_result_storage_provider.as_deref(),
            Some("ipfs")
        );
        assert_eq!(
            params.iexec_result_storage_proxy.as_deref(),
            Some("https://proxy")
        );
    }

    #[test]
    fn a_plain_string_is_entirely_the_arguments() {
        for text in ["hello world", "", "[1,2]", "\"quoted\"", "{not json"] {
            assert_eq!(
                DealParams::parse(text),
                DealParams {
                    iexec_args: Some(text.to_owned()),
                    ..DealParams::default()
                },
                "{text:?}"
            );
        }
    }

    #[test]
    fn unknown_keys_or_wrong_types_fall_back_like_jackson() {
        for text in [
            r#"{"iexec_args":"a","iexec_developer_logger":true}"#,
            r#"{"iexec_input_files":"https://single"}"#,
            r#"{"iexec_result_encryption":"maybe"}"#,
        ] {
            assert_eq!(
                DealParams::parse(text).iexec_args.as_deref(),
                Some(text),
                "{text}"
            );
        }
    }

    #[test]
    fn scalars_and_nulls_are_coerced_like_jackson() {
        let params = DealParams::parse(
            r#"{"iexec_args":42,"iexec_result_encryption":"true","iexec_input_files":null,"iexec_secrets":null,"iexec_result_storage_proxy":null}"#,
        );
        assert_eq!(params.iexec_args.as_deref(), Some("42"));
        assert!(params.iexec_result_encryption);
        assert!(params.iexec_input_files.is_empty());
        assert_eq!(params.iexec_result_storage_proxy, None);
        assert!(DealParams::parse(r#"{"iexec_result_encryption":1}"#).iexec_result_encryption);
        assert_eq!(DealParams::parse("{}"), DealParams::default());
    }

    #[test]
    fn deal_params_serialize_without_empty_fields_and_round_trip() {
        let params = DealParams {
            iexec_args: Some("x y".into()),
            iexec_result_storage_provider: Some("ipfs".into()),
            ..DealParams::default()
        };
        let json = params.to_json();
        assert_eq!(
            json,
            r#"{"iexec_args":"x y","iexec_result_storage_provider":"ipfs"}"#
        );
        assert_eq!(DealParams::parse(&json), params);
        assert_eq!(DealParams::default().to_json(), "{}");
    }
}
