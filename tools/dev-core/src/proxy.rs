//! The result proxy double (iexec-result-proxy `ProxyController`, `ProxyService`,
//! `AuthorizationService`, `JwtService`), minus IPFS: results are kept in memory and named by a
//! CIDv0-shaped hash of their bytes.

use std::collections::HashMap;
use std::io::Read as _;
use std::path::Path;

use pew_iexec::model::WorkerpoolAuthorization;
use pew_poco::result::ComputedFile;
use pew_poco::{Address, B256, Signature65};
use rand_core::{OsRng, RngCore};

use crate::auth::parse_address;
use crate::chain::{
    ChainContributionView, ChainDealView, ChainTaskStatus, ChainTaskView, ContributionStatus,
};
use crate::jwt::{Claims, JwtKey};
use crate::task::is_tee_tag;

/// Why the proxy refuses a login or an upload (all answered with 401 upstream).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyRefusal {
    /// The `Authorization` header is not the worker's signature of the authorization hash.
    #[error("authorization not signed by the worker it names")]
    NotSignedByWorker,
    /// The authorization is not signed by the deal's workerpool owner.
    #[error("authorization not signed by the workerpool owner")]
    NotSignedByWorkerpool,
    /// The task's final deadline passed.
    #[error("final deadline reached")]
    FinalDeadlineReached,
    /// TEE authorization for a standard deal, or the reverse.
    #[error("enclave challenge does not match the deal's tag")]
    TeeMismatch,
    /// The on-chain task is not `REVEALING`.
    #[error("task not revealing on-chain")]
    TaskNotRevealing,
    /// The uploader's contribution is not `REVEALED`.
    #[error("contribution not revealed")]
    NotRevealed,
    /// The zip does not reproduce the on-chain result hash.
    #[error("result does not match the on-chain result hash: {0}")]
    HashMismatch(String),
    /// TEE uploads are not modelled.
    #[error("TEE results are not supported by the double")]
    TeeUnsupported,
}

/// A stored result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResult {
    /// Zip of `iexec_out` as uploaded.
    pub zip: Vec<u8>,
    /// Fake but stable IPFS hash of the zip.
    pub ipfs_hash: String,
    /// Wallet that uploaded it.
    pub uploader: String,
}

/// The proxy's state: its JWTs (one per wallet, no expiry) and the results.
#[derive(Debug)]
pub(crate) struct ResultProxy {
    key: JwtKey,
    tokens: HashMap<String, String>,
    results: HashMap<B256, StoredResult>,
}

impl ResultProxy {
    pub(crate) fn new() -> Self {
        Self {
            key: JwtKey::random(),
            tokens: HashMap::new(),
            results: HashMap::new(),
        }
    }

    /// The wallet's token, created on first use (`getOrCreateJwt`): audience = wallet, subject =
    /// a random UUID, no expiry.
    pub(crate) fn token_for(&mut self, wallet: &str, now_secs: u64) -> String {
        let Self { key, tokens, .. } = self;
        tokens
            .entry(wallet.to_owned())
            .or_insert_with(|| {
                key.sign(&Claims {
                    aud: Some(wallet.to_owned()),
                    iat: Some(now_secs),
                    exp: None,
                    sub: Some(random_uuid()),
                })
            })
            .clone()
    }

    /// The wallet of a raw token (`isValidJwt` then `getWalletAddressFromJwtString`).
    pub(crate) fn wallet_of(&self, token: &str) -> Option<String> {
        let wallet = self.key.verify(token, 0).ok()?.aud?;
        (self.tokens.get(&wallet).map(String::as_str) == Some(token)).then_some(wallet)
    }

    pub(crate) fn result(&self, task_id: B256) -> Option<&StoredResult> {
        self.results.get(&task_id)
    }

    /// Stores `zip`; returns the `/ipfs/<hash>` link.
    pub(crate) fn store(&mut self, task_id: B256, zip: Vec<u8>, uploader: String) -> String {
        let ipfs_hash = fake_ipfs_hash(&zip);
        let link = format!("/ipfs/{ipfs_hash}");
        self.results.insert(
            task_id,
            StoredResult {
                zip,
                ipfs_hash,
                uploader,
            },
        );
        link
    }
}

/// A random version-4 UUID in its canonical text form.
fn random_uuid() -> String {
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// The checks of `POST /v1/results/token` that need no chain: the `Authorization` header must be
/// the worker's EIP-191 signature of the authorization hash. Returns the hash.
pub(crate) fn check_worker_signature(
    authorization: &WorkerpoolAuthorization,
    header: &str,
) -> Result<B256, ProxyRefusal> {
    let hash = authorization_hash_of(authorization).ok_or(ProxyRefusal::NotSignedByWorker)?;
    let worker =
        parse_address(&authorization.worker_wallet).ok_or(ProxyRefusal::NotSignedByWorker)?;
    if recover_eth_signed(header, hash) != Some(worker) {
        return Err(ProxyRefusal::NotSignedByWorker);
    }
    Ok(hash)
}

/// `isAuthorizedOnExecutionWithDetailedIssue` once the task and deal are read.
pub(crate) fn check_execution_authorized(
    authorization: &WorkerpoolAuthorization,
    hash: B256,
    task: &ChainTaskView,
    deal: &ChainDealView,
    now_secs: u64,
) -> Result<(), ProxyRefusal> {
    if now_secs > task.final_deadline {
        return Err(ProxyRefusal::FinalDeadlineReached);
    }
    let is_tee = parse_address(&authorization.enclave_challenge) != Some(Address::ZERO);
    if is_tee != is_tee_tag(deal.tag) {
        return Err(ProxyRefusal::TeeMismatch);
    }
    if recover_eth_signed(&authorization.signature.value, hash) != Some(deal.workerpool_owner) {
        return Err(ProxyRefusal::NotSignedByWorkerpool);
    }
    Ok(())
}

/// `keccak(worker ‖ taskId ‖ enclaveChallenge)` of an authorization, if its fields parse.
fn authorization_hash_of(authorization: &WorkerpoolAuthorization) -> Option<B256> {
    Some(pew_poco::authorization_hash(
        parse_address(&authorization.worker_wallet)?,
        authorization.chain_task_id.parse().ok()?,
        parse_address(&authorization.enclave_challenge)?,
    ))
}

/// web3j `signedPrefixedMessageToKey`: recovery with `v`, over the EIP-191 hash.
fn recover_eth_signed(signature: &str, hash: B256) -> Option<Address> {
    let signature: Signature65 = signature.parse().ok()?;
    signature.recover(pew_poco::eth_signed_hash(hash)).ok()
}

/// `ProxyService.canUploadResult` for a standard task, once the chain is read: the task is
/// `REVEALING`, the uploader revealed, and the zip reproduces its on-chain result hash.
pub(crate) fn check_upload(
    task_id: B256,
    zip: &[u8],
    task: &ChainTaskView,
    deal: &ChainDealView,
    contribution: &ChainContributionView,
) -> Result<(), ProxyRefusal> {
    if is_tee_tag(deal.tag) {
        return Err(ProxyRefusal::TeeUnsupported);
    }
    if task.status != ChainTaskStatus::Revealing {
        return Err(ProxyRefusal::TaskNotRevealing);
    }
    if contribution.status != ContributionStatus::Revealed {
        return Err(ProxyRefusal::NotRevealed);
    }
    let digest = digest_of_zip(zip).map_err(ProxyRefusal::HashMismatch)?;
    if pew_poco::result_hash(task_id, digest) != contribution.result_hash {
        return Err(ProxyRefusal::HashMismatch(format!(
            "digest {digest} gives another result hash"
        )));
    }
    Ok(())
}

/// Unzips `iexec_out` like the proxy (`/tmp/<taskId>/iexec_out`) and recomputes the web2 result
/// digest from its `computed.json`.
fn digest_of_zip(zip: &[u8]) -> Result<B256, String> {
    let task_dir = tempfile::tempdir().map_err(|error| format!("temporary directory: {error}"))?;
    let iexec_out = task_dir.path().join("iexec_out");
    unzip(zip, &iexec_out)?;
    let computed_json = std::fs::read_to_string(iexec_out.join("computed.json"))
        .map_err(|error| format!("computed.json: {error}"))?;
    let computed: ComputedFile =
        serde_json::from_str(&computed_json).map_err(|error| format!("computed.json: {error}"))?;
    pew_poco::result::result_digest(task_dir.path(), &computed, false)
        .map_err(|error| error.to_string())
}

/// Extracts `zip` under `destination`, refusing entries that would land outside it.
fn unzip(zip: &[u8], destination: &Path) -> Result<(), String> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip))
        .map_err(|error| format!("not a zip: {error}"))?;
    for index in 0..archive.len() {
        let mut entry = archive
            .by_index(index)
            .map_err(|error| format!("zip entry: {error}"))?;
        let relative = entry
            .enclosed_name()
            .ok_or_else(|| format!("unsafe zip entry {:?}", entry.name()))?;
        let path = destination.join(relative);
        if entry.is_dir() {
            std::fs::create_dir_all(&path).map_err(|error| error.to_string())?;
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|error| error.to_string())?;
        }
        let mut content = Vec::new();
        entry
            .read_to_end(&mut content)
            .map_err(|error| format!("zip entry: {error}"))?;
        std::fs::write(&path, content).map_err(|error| error.to_string())?;
    }
    Ok(())
}

/// A CIDv0-shaped name for `bytes`: base58btc of the sha2-256 multihash (`0x12 0x20 ‖ sha256`),
/// always 46 characters starting with `Qm`. Real IPFS hashes the UnixFS DAG instead, so the
/// value differs from what a node would give, but it is stable and well-formed.
pub fn fake_ipfs_hash(bytes: &[u8]) -> String {
    let mut multihash = vec![0x12, 0x20];
    multihash.extend_from_slice(pew_poco::sha256(bytes).as_slice());
    base58(&multihash)
}

/// Bitcoin-alphabet base58 of `bytes` (leading zero bytes become `1`s).
fn base58(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 58] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
    // Little-endian base-58 digits of the big-endian number, by repeated multiply-and-add.
    let mut digits: Vec<u8> = Vec::new();
    for &byte in bytes {
        let mut carry = u32::from(byte);
        for digit in &mut digits {
            carry += u32::from(*digit) << 8;
            *digit = (carry % 58) as u8;
            carry /= 58;
        }
        while carry > 0 {
            digits.push((carry % 58) as u8);
            carry /= 58;
        }
    }
    let leading_zeros = bytes.iter().take_while(|&&byte| byte == 0).count();
    std::iter::repeat_n(b'1', leading_zeros)
        .chain(
            digits
                .iter()
                .rev()
                .map(|&digit| ALPHABET[usize::from(digit)]),
        )
        .map(char::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base58_known_values() {
        assert_eq!(base58(b""), "");
        assert_eq!(base58(&[0]), "1");
        assert_eq!(base58(&[0, 0, 1]), "112");
        assert_eq!(base58(b"hello world"), "StV1DL6CwTryKyV");
    }

    #[test]
    fn fake_ipfs_hash_of_empty_content_is_the_known_multihash() {
        // base58(0x1220 ‖ sha256("")) is the well-known CIDv0 of raw sha256 of nothing.
        assert_eq!(
            fake_ipfs_hash(b""),
            "QmdfTbBqBPQ7VNxZEYEj14VmRuZBkqFbiwReogJgS1zR1n"
        );
        let hash = fake_ipfs_hash(b"some zip");
        assert_eq!(hash.len(), 46);
        assert!(hash.starts_with("Qm"));
        assert_eq!(fake_ipfs_hash(b"some zip"), hash);
        assert_ne!(fake_ipfs_hash(b"other zip"), hash);
    }

    #[test]
    fn uuid_is_version_4() {
        let uuid = random_uuid();
        assert_eq!(uuid.len(), 36);
        assert_eq!(&uuid[14..15], "4");
        assert!(matches!(&uuid[19..20], "8" | "9" | "a" | "b"));
    }

    #[test]
    fn proxy_token_is_per_wallet_and_never_expires() {
        let mut proxy = ResultProxy::new();
        let token = proxy.token_for("0xabc", 100);
        assert_eq!(proxy.token_for("0xabc", 200), token);
        assert_eq!(proxy.wallet_of(&token).as_deref(), Some("0xabc"));
        assert_eq!(
            ResultProxy::new().wallet_of(&token),
            None,
            "another instance's key"
        );
    }
}
