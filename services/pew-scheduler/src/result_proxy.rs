//! Upload of a standard task's result to the iExec result proxy, which pins it on IPFS
//! (§3.6 of the protocol notes).

use std::fmt;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use pew_iexec::model::WorkerpoolAuthorization;
use pew_poco::{Address, B256, Wallet, authorization_hash};
use reqwest::{RequestBuilder, StatusCode, Url};
use serde::Serialize;
use tracing::info;

use crate::http::{self, Reply, excerpt, exchange, join_segments};

/// A standard task has no enclave: the proxy expects 65 zero bytes in place of its signature.
const NO_ENCLAVE_SIGNATURE: &str = concat!(
    "0x",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "00"
);

/// The three requests of an upload, named in errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadStep {
    /// `POST /v1/results/token`: trade the workerpool authorization for a proxy token.
    Token,
    /// `POST /v1/results`: send the zipped result.
    Upload,
    /// `GET /v1/results/{chainTaskId}/ipfshash`: read back where it was pinned.
    IpfsHash,
}

impl fmt::Display for UploadStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Token => "POST /v1/results/token",
            Self::Upload => "POST /v1/results",
            Self::IpfsHash => "GET /v1/results/{chainTaskId}/ipfshash",
        })
    }
}

/// Why an upload failed.
#[derive(Debug, thiserror::Error)]
pub enum ResultProxyError {
    /// The proxy URL (from the deal or the core's configuration) cannot be used.
    #[error("invalid result proxy URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// The authorization from the core does not carry a usable task id, worker or enclave.
    #[error("workerpool authorization has an invalid {field}: {value:?}")]
    InvalidAuthorization { field: &'static str, value: String },
    /// The proxy answered with an unexpected status (a 401 on the upload means the proxy did
    /// not find our contribution revealed on chain, or the digest does not match it).
    #[error("result proxy {step}: HTTP {status}: {body}")]
    Rejected {
        step: UploadStep,
        status: u16,
        /// The start of the body.
        body: String,
    },
    /// A 200 reply without the expected token or hash.
    #[error("result proxy {step}: empty reply")]
    EmptyReply { step: UploadStep },
    /// No complete reply within the client's timeout.
    #[error("result proxy {step}: timed out")]
    Timeout { step: UploadStep },
    /// The connection could not be made or broke.
    #[error("result proxy {step}: {source}")]
    Transport {
        step: UploadStep,
        #[source]
        source: reqwest::Error,
    },
    /// The HTTP client could not be built (TLS initialisation).
    #[error("cannot build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

impl ResultProxyError {
    /// The request that failed, if the failure happened on the wire.
    pub fn step(&self) -> Option<UploadStep> {
        match self {
            Self::Rejected { step, .. }
            | Self::EmptyReply { step }
            | Self::Timeout { step }
            | Self::Transport { step, .. } => Some(*step),
            Self::InvalidUrl { .. } | Self::InvalidAuthorization { .. } | Self::Client(_) => None,
        }
    }

    /// Whether trying the whole upload again later may succeed: network trouble or a proxy
    /// error (5xx), as opposed to a refusal that will be repeated.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Timeout { .. } | Self::Transport { .. } => true,
            Self::Rejected { status, .. } => *status >= 500,
            Self::InvalidUrl { .. }
            | Self::InvalidAuthorization { .. }
            | Self::EmptyReply { .. }
            | Self::Client(_) => false,
        }
    }
}

/// Body of `POST /v1/results` (iexec-common `ResultModel`), properties in Java order.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResultModel<'a> {
    chain_task_id: &'a str,
    deal_id: String,
    task_index: u64,
    /// Only meaningful for TEE results; the Java worker leaves them null.
    image: Option<&'a str>,
    cmd: Option<&'a str>,
    zip: String,
    determinist_hash: String,
    enclave_signature: &'static str,
}

/// Client of result proxies. The proxy URL comes with each upload since a deal may name its
/// own (`iexec_result_storage_proxy`).
#[derive(Debug, Clone)]
pub struct ResultProxyClient {
    http: reqwest::Client,
}

impl ResultProxyClient {
    /// `timeout` bounds each request; the upload carries the whole zip, so allow for a slow
    /// uplink.
    pub fn new(timeout: Duration) -> Result<Self, ResultProxyError> {
        Ok(Self {
            http: http::json_client(timeout).map_err(ResultProxyError::Client)?,
        })
    }

    /// Uploads `zip` (the task's `iexec_out.zip`) and returns its IPFS hash (`Qm…`), from which
    /// the result link `/ipfs/<hash>` is built. `result_digest` is the digest contributed on
    /// chain; the proxy recomputes it from the zip and refuses a mismatch.
    pub async fn upload(
        &self,
        proxy_url: &str,
        wallet: &Wallet,
        authorization: &WorkerpoolAuthorization,
        zip: &[u8],
        result_digest: B256,
    ) -> Result<String, ResultProxyError> {
        let proxy =
            http::parse_base_url(proxy_url).map_err(|reason| ResultProxyError::InvalidUrl {
                url: proxy_url.to_owned(),
                reason,
            })?;
        let task_id = &authorization.chain_task_id;

        let token_url = segments_url(&proxy, &["v1", "results", "token"])?;
        let signature = wallet.sign_eth_signed(signed_authorization_hash(authorization)?);
        let request = self
            .http
            .post(token_url)
            .header("Authorization", signature.to_string())
            .json(authorization);
        let token = non_empty(UploadStep::Token, call(UploadStep::Token, request).await?)?;

        let model = ResultModel {
            chain_task_id: task_id,
            deal_id: deal_id_or_default(&authorization.deal_id),
            task_index: authorization.task_index,
            image: None,
            cmd: None,
            zip: BASE64.encode(zip),
            determinist_hash: format!("{result_digest:#x}"),
            enclave_signature: NO_ENCLAVE_SIGNATURE,
        };
        let upload_url = segments_url(&proxy, &["v1", "results"])?;
        // The proxy's own token goes raw, without "Bearer".
        call(
            UploadStep::Upload,
            self.http
                .post(upload_url)
                .header("Authorization", token)
                .json(&model),
        )
        .await?;

        let hash_url = segments_url(&proxy, &["v1", "results", task_id, "ipfshash"])?;
        let hash = non_empty(
            UploadStep::IpfsHash,
            call(UploadStep::IpfsHash, self.http.get(hash_url)).await?,
        )?;
        info!(task = %task_id, %hash, bytes = zip.len(), "result uploaded to the result proxy");
        Ok(hash)
    }
}

/// The hash the worker signs to prove to the proxy that it is the authorized worker:
/// keccak(worker ‖ task ‖ enclave), over the authorization as the core sent it.
fn signed_authorization_hash(
    authorization: &WorkerpoolAuthorization,
) -> Result<B256, ResultProxyError> {
    let worker: Address = parse_field("workerWallet", &authorization.worker_wallet)?;
    let task: B256 = parse_field("chainTaskId", &authorization.chain_task_id)?;
    let enclave: Address = parse_field("enclaveChallenge", &authorization.enclave_challenge)?;
    Ok(authorization_hash(worker, task, enclave))
}

fn parse_field<T: std::str::FromStr>(
    field: &'static str,
    value: &str,
) -> Result<T, ResultProxyError> {
    value
        .parse()
        .map_err(|_| ResultProxyError::InvalidAuthorization {
            field,
            value: value.to_owned(),
        })
}

/// The Java `ResultModel` defaults `dealId` to 32 zero bytes; the authorization names the
/// real deal, which the proxy records with the result.
fn deal_id_or_default(deal_id: &str) -> String {
    if deal_id.is_empty() {
        format!("{:#x}", B256::ZERO)
    } else {
        deal_id.to_owned()
    }
}

fn segments_url(base: &Url, segments: &[&str]) -> Result<Url, ResultProxyError> {
    join_segments(base, segments).ok_or_else(|| ResultProxyError::InvalidUrl {
        url: base.to_string(),
        reason: "cannot append a path".to_owned(),
    })
}

/// Sends one request of the upload; the body of a 200 reply.
async fn call(step: UploadStep, request: RequestBuilder) -> Result<String, ResultProxyError> {
    let Reply { status, body } = exchange(request).await.map_err(|source| {
        if source.is_timeout() {
            ResultProxyError::Timeout { step }
        } else {
            ResultProxyError::Transport { step, source }
        }
    })?;
    if status == StatusCode::OK {
        Ok(body)
    } else {
        Err(ResultProxyError::Rejected {
            step,
            status: status.as_u16(),
            body: excerpt(&body),
        })
    }
}

/// Tokens and hashes are plain text; surrounding whitespace would corrupt a header or a link.
fn non_empty(step: UploadStep, body: String) -> Result<String, ResultProxyError> {
    let trimmed = body.trim();
    if trimmed.is_empty() {
        Err(ResultProxyError::EmptyReply { step })
    } else {
        Ok(trimmed.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enclave_placeholder_is_65_zero_bytes() {
        let hex = NO_ENCLAVE_SIGNATURE.strip_prefix("0x").unwrap();
        assert_eq!(hex.len(), 130);
        assert!(hex.bytes().all(|b| b == b'0'));
    }

    #[test]
    fn missing_deal_id_becomes_32_zero_bytes() {
        assert_eq!(deal_id_or_default(""), format!("0x{}", "0".repeat(64)));
        assert_eq!(deal_id_or_default("0xabc"), "0xabc");
    }
}
