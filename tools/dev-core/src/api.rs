//! The HTTP surface: iexec-core's worker API, the config server's `/config/chain`, the SockJS
//! endpoint, the result proxy, and the double's own admin routes.
//!
//! Status codes and body kinds follow Spring's behaviour for the upstream controllers:
//! `String` results are raw `text/plain`, everything else JSON; a missing required header or
//! query parameter, or an unreadable body, is 400; a body that is not JSON is 415.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, head, post};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use pew_iexec::model::{
    PublicChainConfig, ReplicateStatusUpdate, SignatureValue, WorkerModel, WorkerpoolAuthorization,
};
use pew_iexec::status::StatusModifier;
use pew_poco::B256;
use rand_core::{OsRng, RngCore};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::auth::login_signature_matches;
use crate::core::{Core, Worker};
use crate::faults::FaultAction;
use crate::proxy::{check_execution_authorized, check_upload, check_worker_signature};
use crate::{deals, replicates, supply};

/// The router, with every route and the fault-injection layer.
pub(crate) fn router(core: Arc<Core>) -> Router {
    Router::new()
        .route("/version", get(version))
        .route("/workers/config", get(public_configuration))
        .route("/config/chain", get(chain_configuration))
        .route("/workers/challenge", get(challenge))
        .route("/workers/login", post(login))
        .route("/workers/register", post(register))
        .route("/workers/ping", post(ping))
        .route("/workers/computing", get(computing))
        .route("/replicates/available", get(available))
        .route("/replicates/interrupted", get(interrupted))
        .route(
            "/replicates/{chain_task_id}/updateStatus",
            post(update_status),
        )
        .route("/connect", get(sockjs_greeting))
        .route("/connect/info", get(sockjs_info))
        .route("/connect/{server}/{session}/xhr", post(sockjs_poll))
        .route("/connect/{server}/{session}/xhr_send", post(sockjs_send))
        .route("/v1/results/token", post(proxy_token))
        .route("/v1/results", post(proxy_upload))
        .route("/v1/results/{chain_task_id}", head(proxy_has_result))
        .route("/v1/results/{chain_task_id}/ipfshash", get(proxy_ipfs_hash))
        .route("/dev/deals/{deal_id}", post(admin_publish_deal))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&core),
            inject_faults,
        ))
        .with_state(core)
}

type Shared = State<Arc<Core>>;

// ----- response helpers -----

fn raw(status: StatusCode, body: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain;charset=UTF-8")],
        body.into(),
    )
        .into_response()
}

fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_string(value) {
        Ok(body) => (status, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// A handler's answer: a response, or a bare status when the request is turned down.
type Reply = Result<Response, StatusCode>;

/// The raw `Authorization` header; Spring answers 400 when a required header is missing.
fn authorization_header(headers: &HeaderMap) -> Result<&str, StatusCode> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .ok_or(StatusCode::BAD_REQUEST)
}

/// The worker named by the bearer token, or 401.
fn authenticated(core: &Core, headers: &HeaderMap) -> Result<String, StatusCode> {
    let header = authorization_header(headers)?;
    let now = core.clock.unix_secs();
    core.state()
        .tokens
        .wallet_of_bearer(header, now)
        .ok_or(StatusCode::UNAUTHORIZED)
}

/// A `@RequestBody`: JSON only (415 otherwise), readable (400 otherwise).
fn body<T: DeserializeOwned>(headers: &HeaderMap, bytes: &Bytes) -> Result<T, StatusCode> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            value
                .trim_start()
                .to_ascii_lowercase()
                .starts_with("application/json")
        });
    if !is_json {
        return Err(StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }
    serde_json::from_slice(bytes).map_err(|_| StatusCode::BAD_REQUEST)
}

fn status_code(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

// ----- fault injection -----

async fn inject_faults(State(core): Shared, request: Request, next: Next) -> Response {
    let action = core
        .faults
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take(request.uri().path());
    match action {
        Some(FaultAction::Status(code)) => status_code(code).into_response(),
        Some(FaultAction::Delay(delay)) => {
            tokio::time::sleep(delay).await;
            next.run(request).await
        }
        None => next.run(request).await,
    }
}

// ----- configuration -----

async fn version(State(core): Shared) -> Response {
    raw(StatusCode::OK, core.version.clone())
}

async fn public_configuration(State(core): Shared) -> Response {
    json(StatusCode::OK, &core.public_configuration)
}

async fn chain_configuration(State(core): Shared) -> Response {
    let settings = &core.chain_settings;
    json(
        StatusCode::OK,
        &PublicChainConfig {
            chain_id: settings.chain_id,
            sidechain: settings.sidechain,
            chain_node_url: settings.node_url.clone(),
            iexec_hub_contract_address: format!("{:#x}", settings.hub),
            block_time: settings.block_time,
        },
    )
}

// ----- authentication -----

#[derive(Deserialize)]
struct WalletQuery {
    #[serde(rename = "walletAddress")]
    wallet_address: String,
}

fn is_allowed_to_join(core: &Core, wallet: &str) -> bool {
    core.whitelist.is_empty() || core.whitelist.iter().any(|allowed| allowed == wallet)
}

async fn challenge(State(core): Shared, Query(query): Query<WalletQuery>) -> Response {
    if !is_allowed_to_join(&core, &query.wallet_address) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let challenge = core
        .state()
        .challenges
        .get_or_create(&query.wallet_address, std::time::Instant::now());
    raw(StatusCode::OK, challenge)
}

async fn login(
    State(core): Shared,
    Query(query): Query<WalletQuery>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Reply {
    let signature: SignatureValue = body(&headers, &bytes)?;
    let wallet = query.wallet_address;
    if !is_allowed_to_join(&core, &wallet) {
        return Err(StatusCode::UNAUTHORIZED);
    }
    let now_secs = core.clock.unix_secs();
    let mut state = core.state();
    let challenge = state
        .challenges
        .get_or_create(&wallet, std::time::Instant::now());
    if !login_signature_matches(&challenge, &signature.value, &wallet) {
        return Err(StatusCode::UNAUTHORIZED);
    }
    state.challenges.remove(&wallet, &challenge);
    Ok(raw(
        StatusCode::OK,
        state.tokens.get_or_create(&wallet, now_secs),
    ))
}

// ----- workers -----

/// A stable 24-hex-digit id for the worker document, like a MongoDB ObjectId.
fn worker_id(wallet: &str) -> String {
    let hash = pew_poco::keccak256(wallet.as_bytes());
    hash.as_slice()[..12]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// `WorkerController.registerWorker`: the worker's slots are `gpuEnabled ? 1 : cpuNb`; tasks it
/// already takes part in survive a new registration.
async fn register(State(core): Shared, headers: HeaderMap, bytes: Bytes) -> Reply {
    let wallet = authenticated(&core, &headers)?;
    let model: WorkerModel = body(&headers, &bytes)?;
    let mut state = core.state();
    state.stats.entry(wallet.clone()).or_default().last_alive = Some(std::time::Instant::now());
    let (participating, computing) = state
        .workers
        .get(&wallet)
        .map(|known| (known.participating.clone(), known.computing.clone()))
        .unwrap_or_default();
    let worker = Worker {
        id: worker_id(&wallet),
        name: model.name,
        wallet_address: wallet.clone(),
        os: model.os,
        cpu: model.cpu,
        cpu_nb: model.cpu_nb,
        max_nb_tasks: if model.gpu_enabled { 1 } else { model.cpu_nb },
        memory_size: model.memory_size,
        gpu_enabled: model.gpu_enabled,
        tee_enabled: model.tee_enabled,
        tdx_enabled: model.tdx_enabled,
        participating,
        computing,
        last_alive_date: None,
        last_replicate_demand_date: None,
    };
    state.workers.insert(wallet.clone(), worker.clone());
    drop(state);
    tracing::info!(
        worker = wallet,
        slots = worker.max_nb_tasks,
        "worker registered"
    );
    core.changed();
    Ok(json(StatusCode::OK, &worker))
}

async fn ping(State(core): Shared, headers: HeaderMap) -> Reply {
    let wallet = authenticated(&core, &headers)?;
    core.state().stats.entry(wallet).or_default().last_alive = Some(std::time::Instant::now());
    Ok(raw(StatusCode::OK, core.session_id.clone()))
}

async fn computing(State(core): Shared, headers: HeaderMap) -> Reply {
    let wallet = authenticated(&core, &headers)?;
    let computing = core
        .state()
        .workers
        .get(&wallet)
        .map(|worker| worker.computing.clone())
        .unwrap_or_default();
    Ok(json(StatusCode::OK, &computing))
}

// ----- replicates -----

#[derive(Deserialize)]
struct BlockQuery {
    #[serde(rename = "blockNumber")]
    block_number: i64,
}

/// `isWorkerAllowedToAskReplicate` then `updateLastReplicateDemandDate`: at most one ask per
/// period, with 500 ms of slack for timer jitter.
fn may_ask_now(core: &Core, wallet: &str) -> bool {
    let now = std::time::Instant::now();
    let slack = std::time::Duration::from_millis(500);
    let mut state = core.state();
    let stats = state.stats.entry(wallet.to_owned()).or_default();
    let allowed = stats.last_replicate_demand.is_none_or(|last| {
        now.saturating_duration_since(last) + slack > core.ask_for_replicate_period
    });
    if allowed {
        stats.last_replicate_demand = Some(now);
    }
    allowed
}

async fn available(
    State(core): Shared,
    headers: HeaderMap,
    Query(query): Query<BlockQuery>,
) -> Reply {
    let wallet = authenticated(&core, &headers)?;
    if !core.chain_is_up().await {
        return Err(StatusCode::SERVICE_UNAVAILABLE);
    }
    if !may_ask_now(&core, &wallet) {
        return Err(StatusCode::NO_CONTENT);
    }
    let summary = supply::available_replicate(&core, &wallet, query.block_number).await;
    summary
        .map(|summary| json(StatusCode::OK, &summary))
        .ok_or(StatusCode::NO_CONTENT)
}

async fn interrupted(
    State(core): Shared,
    headers: HeaderMap,
    Query(query): Query<BlockQuery>,
) -> Reply {
    let wallet = authenticated(&core, &headers)?;
    let block = u64::try_from(query.block_number).unwrap_or(0);
    Ok(json(
        StatusCode::OK,
        &supply::missed_notifications(&core, &wallet, block).await,
    ))
}

async fn update_status(
    State(core): Shared,
    Path(chain_task_id): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Reply {
    let wallet = authenticated(&core, &headers)?;
    let mut update: ReplicateStatusUpdate = body(&headers, &bytes)?;
    if !core.chain_is_up().await {
        return Err(StatusCode::SERVICE_UNAVAILABLE);
    }
    update.modifier = Some(StatusModifier::Worker);
    update.date = Some(core.now_millis());
    if let Some(logs) = update
        .details
        .as_mut()
        .and_then(|details| details.compute_logs.as_mut())
    {
        // The worker's word for its own address is not trusted.
        logs.wallet_address = Some(wallet.clone());
    }
    // Task ids are matched as exact strings upstream: only the canonical lowercase form exists.
    let task_id = chain_task_id
        .parse::<B256>()
        .ok()
        .filter(|id| id.to_string() == chain_task_id);
    let result = match task_id {
        Some(task_id) => replicates::update_replicate_status(&core, task_id, &wallet, update).await,
        None => Err(pew_iexec::workflow::UpdateRefusal::UnknownReplicate.into()),
    };
    Ok(match result {
        Ok(Some(action)) => json(StatusCode::OK, &action),
        Ok(None) => StatusCode::OK.into_response(),
        Err(error) => {
            tracing::info!(task = chain_task_id, worker = wallet, %error, "status update refused");
            json(status_code(error.http_status()), &error.reply())
        }
    })
}

// ----- SockJS -----

async fn sockjs_greeting() -> Response {
    raw(StatusCode::OK, "Welcome to SockJS!\n")
}

#[derive(Serialize)]
struct SockJsInfo {
    entropy: u32,
    origins: [&'static str; 1],
    cookie_needed: bool,
    websocket: bool,
}

async fn sockjs_info() -> Response {
    let info = SockJsInfo {
        entropy: OsRng.next_u32() >> 1,
        origins: ["*:*"],
        cookie_needed: true,
        websocket: false,
    };
    let mut response = json(StatusCode::OK, &info);
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store, no-cache, must-revalidate, max-age=0"),
    );
    response
}

fn sockjs_body(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/javascript;charset=UTF-8")],
        body,
    )
        .into_response()
}

async fn sockjs_poll(
    State(core): Shared,
    Path((_server, session)): Path<(String, String)>,
) -> Response {
    sockjs_body(StatusCode::OK, core.push.poll(&session).await)
}

async fn sockjs_send(
    State(core): Shared,
    Path((_server, session)): Path<(String, String)>,
    bytes: Bytes,
) -> Response {
    let body = String::from_utf8_lossy(&bytes);
    match core.push.send(&session, &body) {
        Ok(()) => raw(StatusCode::NO_CONTENT, ""),
        Err(crate::push::SendRefusal::UnknownSession) => StatusCode::NOT_FOUND.into_response(),
        Err(refusal) => raw(StatusCode::INTERNAL_SERVER_ERROR, refusal.to_string()),
    }
}

// ----- result proxy -----

/// `POST /v1/results` body (iexec-common `ResultModel`); only what a standard upload needs.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResultModel {
    chain_task_id: String,
    /// Base64 of `iexec_out.zip` (Jackson's `byte[]`).
    #[serde(default)]
    zip: Option<String>,
}

/// `POST /v1/results/token`: a proxy JWT for a worker holding a valid workerpool authorization.
async fn proxy_token(State(core): Shared, headers: HeaderMap, bytes: Bytes) -> Reply {
    let signature = authorization_header(&headers)?.to_owned();
    let authorization: WorkerpoolAuthorization = body(&headers, &bytes)?;
    let hash =
        check_worker_signature(&authorization, &signature).map_err(|_| StatusCode::UNAUTHORIZED)?;
    let task_id = authorization
        .chain_task_id
        .parse::<B256>()
        .map_err(|_| StatusCode::UNAUTHORIZED)?;
    let task = core
        .chain
        .task(task_id)
        .await
        .map_err(|_| StatusCode::UNAUTHORIZED)?;
    let deal = core
        .chain
        .deal(task.deal_id)
        .await
        .map_err(|_| StatusCode::UNAUTHORIZED)?;
    let now = core.clock.unix_secs();
    if let Err(refusal) = check_execution_authorized(&authorization, hash, &task, &deal, now) {
        tracing::info!(task = %task_id, %refusal, "result proxy login refused");
        return Err(StatusCode::UNAUTHORIZED);
    }
    Ok(raw(
        StatusCode::OK,
        core.state()
            .proxy
            .token_for(&authorization.worker_wallet, now),
    ))
}

/// `POST /v1/results`: stores a standard task's result once the chain vouches for it.
async fn proxy_upload(State(core): Shared, headers: HeaderMap, bytes: Bytes) -> Reply {
    let token = authorization_header(&headers)?.to_owned();
    let model: ResultModel = body(&headers, &bytes)?;
    let wallet = core
        .state()
        .proxy
        .wallet_of(&token)
        .ok_or(StatusCode::UNAUTHORIZED)?;
    let task_id = model
        .chain_task_id
        .parse::<B256>()
        .map_err(|_| StatusCode::UNAUTHORIZED)?;
    let address = crate::auth::parse_address(&wallet).ok_or(StatusCode::UNAUTHORIZED)?;
    let zip = model
        .zip
        .as_deref()
        .map(|zip| STANDARD.decode(zip))
        .and_then(Result::ok)
        .ok_or(StatusCode::BAD_REQUEST)?;
    if core.state().proxy.result(task_id).is_some() {
        return Err(StatusCode::UNAUTHORIZED);
    }
    let verdict = async {
        let task = core
            .chain
            .task(task_id)
            .await
            .map_err(|error| error.to_string())?;
        let deal = core
            .chain
            .deal(task.deal_id)
            .await
            .map_err(|error| error.to_string())?;
        let contribution = core
            .chain
            .contribution(task_id, address)
            .await
            .map_err(|error| error.to_string())?;
        check_upload(task_id, &zip, &task, &deal, &contribution)
            .map_err(|refusal| refusal.to_string())
    }
    .await;
    if let Err(reason) = verdict {
        tracing::info!(task = %task_id, uploader = wallet, reason, "result refused");
        return Err(StatusCode::UNAUTHORIZED);
    }
    let link = core.state().proxy.store(task_id, zip, wallet);
    core.changed();
    Ok(raw(StatusCode::OK, link))
}

/// `HEAD /v1/results/{id}`: 204 if stored, 404 otherwise, for holders of a proxy token.
async fn proxy_has_result(
    State(core): Shared,
    Path(chain_task_id): Path<String>,
    headers: HeaderMap,
) -> StatusCode {
    let token = match authorization_header(&headers) {
        Ok(token) => token,
        Err(status) => return status,
    };
    let state = core.state();
    if state.proxy.wallet_of(token).is_none() {
        return StatusCode::UNAUTHORIZED;
    }
    let found = chain_task_id
        .parse::<B256>()
        .ok()
        .is_some_and(|task_id| state.proxy.result(task_id).is_some());
    if found {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_FOUND
    }
}

async fn proxy_ipfs_hash(State(core): Shared, Path(chain_task_id): Path<String>) -> Response {
    let hash = chain_task_id.parse::<B256>().ok().and_then(|task_id| {
        core.state()
            .proxy
            .result(task_id)
            .map(|result| result.ipfs_hash.clone())
    });
    match hash {
        Some(hash) => raw(StatusCode::OK, hash),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

// ----- admin -----

#[derive(Deserialize)]
struct TasksQuery {
    tasks: Option<u64>,
}

/// `POST /dev/deals/{dealId}?tasks=N`: schedules the deal's first N tasks (all by default).
async fn admin_publish_deal(
    State(core): Shared,
    Path(deal_id): Path<String>,
    Query(query): Query<TasksQuery>,
) -> Response {
    let Ok(deal_id) = deal_id.parse::<B256>() else {
        return raw(StatusCode::BAD_REQUEST, "deal id must be 32 bytes of hex");
    };
    let tasks = match query.tasks {
        Some(tasks) => tasks,
        None => match core.chain.deal(deal_id).await {
            Ok(deal) => deal.bot_size,
            Err(error) => return raw(StatusCode::BAD_GATEWAY, error.to_string()),
        },
    };
    match deals::publish_deal(&core, deal_id, tasks).await {
        Ok(task_ids) => json(StatusCode::OK, &task_ids),
        Err(error @ deals::DealError::Unreadable(_)) => {
            raw(StatusCode::BAD_GATEWAY, error.to_string())
        }
        Err(error) => raw(StatusCode::UNPROCESSABLE_ENTITY, error.to_string()),
    }
}
