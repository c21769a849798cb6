//! REST client of the core (§1.3, §1.4 of the protocol notes).

use std::sync::Arc;
use std::time::Duration;

use pew_iexec::model::{
    PublicChainConfig, PublicConfiguration, ReplicateStatusUpdate, ReplicateTaskSummary,
    SignatureValue, TaskNotification, WorkerModel,
};
use pew_iexec::status::NextAction;
use pew_poco::Wallet;
use pew_poco::challenge::sign_login;
use reqwest::{RequestBuilder, StatusCode, Url};
use serde::de::DeserializeOwned;
use tokio::sync::Mutex;
use tracing::{debug, info};

use crate::error::SchedulerError;
use crate::http::{self, Reply, exchange, join_segments, strip_json_quotes};

const VERSION: &str = "GET /version";
const CONFIG: &str = "GET /workers/config";
const CHAIN_CONFIG: &str = "GET /config/chain";
const CHALLENGE: &str = "GET /workers/challenge";
const LOGIN: &str = "POST /workers/login";
const REGISTER: &str = "POST /workers/register";
const PING: &str = "POST /workers/ping";
const COMPUTING: &str = "GET /workers/computing";
const AVAILABLE: &str = "GET /replicates/available";
const INTERRUPTED: &str = "GET /replicates/interrupted";
const UPDATE_STATUS: &str = "POST /replicates/{chainTaskId}/updateStatus";

/// Client of one core. Cheap to clone: clones share the HTTP connection pool and the session
/// token, so a re-login done by one task serves all of them.
#[derive(Clone)]
pub struct SchedulerClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base_url: Url,
    wallet: Arc<Wallet>,
    /// Lowercase `0x` hex, as the Java worker sends it: the core keys everything on this exact
    /// string (challenge cache, JWT subject, replicate owner, notification recipients).
    wallet_address: String,
    /// The JWT of the current session. Held across a login so that concurrent callers hitting
    /// a 401 together log in once: the core keeps a single challenge per wallet, and a second
    /// challenge request would invalidate the first one mid-login.
    token: Mutex<Option<Arc<str>>>,
}

/// How the core took a status update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateOutcome {
    /// 200: the status was recorded.
    Recorded,
    /// 202: refused (unknown replicate, transition not allowed, checks failed); the core
    /// answers `PLEASE_ABORT`.
    Refused,
    /// 208: the replicate already has this status; the core answers `PLEASE_WAIT`.
    AlreadyReported,
}

/// The core's answer to a status update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusReply {
    /// Which of the accepted HTTP statuses came back.
    pub outcome: UpdateOutcome,
    /// What the core wants the worker to do next. The core sends no action for final
    /// statuses (an empty body, Java's null); that reads as `PLEASE_WAIT`: nothing to do.
    pub next_action: NextAction,
}

impl SchedulerClient {
    /// A client for the core at `base_url` (e.g. `http://core:13000`), identified by `wallet`.
    /// `timeout` bounds each request from connection to the end of the body. Installs rustls'
    /// ring provider as the process default if no provider is installed yet.
    pub fn new(
        base_url: &str,
        wallet: Arc<Wallet>,
        timeout: Duration,
    ) -> Result<Self, SchedulerError> {
        let base_url =
            http::parse_base_url(base_url).map_err(|reason| SchedulerError::InvalidUrl {
                url: base_url.to_owned(),
                reason,
            })?;
        let http = http::json_client(timeout).map_err(SchedulerError::Client)?;
        let wallet_address = format!("{:#x}", wallet.address());
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                base_url,
                wallet,
                wallet_address,
                token: Mutex::new(None),
            }),
        })
    }

    /// Our identity towards the core: the wallet address in lowercase `0x` hex.
    pub fn wallet_address(&self) -> String {
        self.inner.wallet_address.clone()
    }

    /// The core's version string, as sent (e.g. `9.3.0`).
    pub async fn version(&self) -> Result<String, SchedulerError> {
        let reply = self.send(VERSION, self.get(&["version"])?).await?;
        expect_ok(VERSION, reply)
    }

    /// The workerpool's public configuration.
    pub async fn public_config(&self) -> Result<PublicConfiguration, SchedulerError> {
        let reply = self.send(CONFIG, self.get(&["workers", "config"])?).await?;
        decode_json(CONFIG, &expect_ok(CONFIG, reply)?)
    }

    /// The chain description published by the config server named in
    /// [`PublicConfiguration`]'s `configServerUrl`.
    pub async fn chain_config(
        &self,
        config_server_url: &str,
    ) -> Result<PublicChainConfig, SchedulerError> {
        let server = http::parse_base_url(config_server_url).map_err(|reason| {
            SchedulerError::InvalidUrl {
                url: config_server_url.to_owned(),
                reason,
            }
        })?;
        let url = segments_url(&server, &["config", "chain"])?;
        let reply = self.send(CHAIN_CONFIG, self.inner.http.get(url)).await?;
        decode_json(CHAIN_CONFIG, &expect_ok(CHAIN_CONFIG, reply)?)
    }

    /// Logs in (challenge, signature, token) and keeps the token for the authenticated calls,
    /// which also log in by themselves when they have no token or the core rejects it.
    pub async fn login(&self) -> Result<(), SchedulerError> {
        let mut token = self.inner.token.lock().await;
        *token = Some(self.fetch_token().await?);
        Ok(())
    }

    /// Registers the worker's capabilities; the core sizes our task slots from them.
    pub async fn register(&self, model: &WorkerModel) -> Result<(), SchedulerError> {
        let url = self.url(&["workers", "register"])?;
        let reply = self
            .authorized(REGISTER, || self.inner.http.post(url.clone()).json(model))
            .await?;
        // The reply is the core's `Worker` record, which the Java worker ignores too (any 2xx).
        if reply.status.is_success() {
            Ok(())
        } else {
            Err(SchedulerError::unexpected(REGISTER, &reply))
        }
    }

    /// Keeps the worker alive on the core; returns the core's session id, which changes when
    /// the core restarts.
    pub async fn ping(&self) -> Result<String, SchedulerError> {
        let url = self.url(&["workers", "ping"])?;
        let reply = self
            .authorized(PING, || self.inner.http.post(url.clone()))
            .await?;
        expect_ok(PING, reply)
    }

    /// The ids of the tasks the core believes we are computing.
    pub async fn computing(&self) -> Result<Vec<String>, SchedulerError> {
        let url = self.url(&["workers", "computing"])?;
        let reply = self
            .authorized(COMPUTING, || self.inner.http.get(url.clone()))
            .await?;
        decode_json(COMPUTING, &expect_ok(COMPUTING, reply)?)
    }

    /// Asks for a new replicate; `None` when the core has nothing for us (or we asked too soon).
    pub async fn available_replicate(
        &self,
        block_number: u64,
    ) -> Result<Option<ReplicateTaskSummary>, SchedulerError> {
        let url = self.url(&["replicates", "available"])?;
        let reply = self
            .authorized(AVAILABLE, || {
                self.inner
                    .http
                    .get(url.clone())
                    .query(&[("blockNumber", block_number)])
            })
            .await?;
        match reply.status {
            StatusCode::NO_CONTENT => Ok(None),
            // Feign hands the Java worker `null` for an empty 200, which it reads as "no work".
            StatusCode::OK if reply.body.trim().is_empty() => Ok(None),
            StatusCode::OK => decode_json(AVAILABLE, &reply.body).map(Some),
            _ => Err(SchedulerError::unexpected(AVAILABLE, &reply)),
        }
    }

    /// The notifications we missed while away. The core marks every listed replicate
    /// `RECOVERING`, so this is a start-up call, not something to poll.
    pub async fn interrupted_replicates(
        &self,
        block_number: u64,
    ) -> Result<Vec<TaskNotification>, SchedulerError> {
        let url = self.url(&["replicates", "interrupted"])?;
        let reply = self
            .authorized(INTERRUPTED, || {
                self.inner
                    .http
                    .get(url.clone())
                    .query(&[("blockNumber", block_number)])
            })
            .await?;
        decode_json(INTERRUPTED, &expect_ok(INTERRUPTED, reply)?)
    }

    /// Reports a replicate status. 200, 202 and 208 all carry the next action; any other status
    /// is an error.
    pub async fn update_status(
        &self,
        chain_task_id: &str,
        update: &ReplicateStatusUpdate,
    ) -> Result<StatusReply, SchedulerError> {
        let url = self.url(&["replicates", chain_task_id, "updateStatus"])?;
        let reply = self
            .authorized(UPDATE_STATUS, || {
                self.inner.http.post(url.clone()).json(update)
            })
            .await?;
        let outcome = match reply.status {
            StatusCode::OK => UpdateOutcome::Recorded,
            StatusCode::ACCEPTED => UpdateOutcome::Refused,
            StatusCode::ALREADY_REPORTED => UpdateOutcome::AlreadyReported,
            _ => return Err(SchedulerError::unexpected(UPDATE_STATUS, &reply)),
        };
        let action = strip_json_quotes(&reply.body).trim();
        let next_action = if action.is_empty() || action == "null" {
            NextAction::PleaseWait
        } else {
            action
                .parse::<NextAction>()
                .map_err(|error| SchedulerError::decode(UPDATE_STATUS, error, &reply.body))?
        };
        Ok(StatusReply {
            outcome,
            next_action,
        })
    }

    /// Challenge, signature, token (§1.3). The caller stores the token.
    async fn fetch_token(&self) -> Result<Arc<str>, SchedulerError> {
        let address = [("walletAddress", self.inner.wallet_address.as_str())];
        let challenge_url = self.url(&["workers", "challenge"])?;
        let reply = self
            .send(
                CHALLENGE,
                self.inner.http.get(challenge_url).query(&address),
            )
            .await?;
        // Signed exactly as received: the core hashes its own copy of the string.
        let challenge = expect_ok(CHALLENGE, reply)?;
        let signature = SignatureValue {
            value: sign_login(&self.inner.wallet, &challenge).to_string(),
        };
        let login_url = self.url(&["workers", "login"])?;
        let reply = self
            .send(
                LOGIN,
                self.inner
                    .http
                    .post(login_url)
                    .query(&address)
                    .json(&signature),
            )
            .await?;
        let token = expect_ok(LOGIN, reply)?;
        if token.trim().is_empty() {
            return Err(SchedulerError::decode(LOGIN, "empty token", &token));
        }
        info!(worker = %self.inner.wallet_address, "logged in to the core");
        Ok(token.into())
    }

    /// The current token, logging in first if there is none.
    async fn current_token(&self) -> Result<Arc<str>, SchedulerError> {
        let mut token = self.inner.token.lock().await;
        match token.as_ref() {
            Some(current) => Ok(Arc::clone(current)),
            None => {
                let fresh = self.fetch_token().await?;
                *token = Some(Arc::clone(&fresh));
                Ok(fresh)
            }
        }
    }

    /// A token other than `rejected`: the one another caller already obtained, or a new login.
    async fn replace_token(&self, rejected: &Arc<str>) -> Result<Arc<str>, SchedulerError> {
        let mut token = self.inner.token.lock().await;
        if let Some(current) = token.as_ref()
            && !Arc::ptr_eq(current, rejected)
        {
            return Ok(Arc::clone(current));
        }
        *token = None;
        let fresh = self.fetch_token().await?;
        *token = Some(Arc::clone(&fresh));
        Ok(fresh)
    }

    /// Sends an authenticated request; on 401 logs in again once and resends once (the core
    /// forgets tokens when it restarts, and they expire after an hour).
    async fn authorized(
        &self,
        endpoint: &'static str,
        request: impl Fn() -> RequestBuilder,
    ) -> Result<Reply, SchedulerError> {
        let token = self.current_token().await?;
        let reply = self.send(endpoint, request().bearer_auth(&token)).await?;
        if reply.status != StatusCode::UNAUTHORIZED {
            return Ok(reply);
        }
        debug!(endpoint, "the core rejected our token, logging in again");
        let token = self.replace_token(&token).await?;
        self.send(endpoint, request().bearer_auth(&token)).await
    }

    async fn send(
        &self,
        endpoint: &'static str,
        request: RequestBuilder,
    ) -> Result<Reply, SchedulerError> {
        exchange(request)
            .await
            .map_err(|error| SchedulerError::transport(endpoint, error))
    }

    fn url(&self, segments: &[&str]) -> Result<Url, SchedulerError> {
        segments_url(&self.inner.base_url, segments)
    }

    fn get(&self, segments: &[&str]) -> Result<RequestBuilder, SchedulerError> {
        Ok(self.inner.http.get(self.url(segments)?))
    }
}

fn segments_url(base: &Url, segments: &[&str]) -> Result<Url, SchedulerError> {
    join_segments(base, segments).ok_or_else(|| SchedulerError::InvalidUrl {
        url: base.to_string(),
        reason: "cannot append a path".to_owned(),
    })
}

/// The body of a 200 reply, or the error matching its status.
fn expect_ok(endpoint: &'static str, reply: Reply) -> Result<String, SchedulerError> {
    if reply.status == StatusCode::OK {
        Ok(reply.body)
    } else {
        Err(SchedulerError::unexpected(endpoint, &reply))
    }
}

fn decode_json<T: DeserializeOwned>(
    endpoint: &'static str,
    body: &str,
) -> Result<T, SchedulerError> {
    serde_json::from_str(body).map_err(|error| SchedulerError::decode(endpoint, error, body))
}
