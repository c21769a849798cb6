//! `SchedulerClient` against a local double of the core that behaves as iexec-core v9 does on
//! the wire (§1.3, §1.4): raw-string and JSON bodies, challenge login checked with the core's
//! own rule, 401 on unknown tokens, 204/503 on task supply, 200/202/208 on status updates.

mod common;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use pew_iexec::model::{
    ChainReceipt, ReplicateStatusDetails, ReplicateStatusUpdate, SignatureValue, WorkerModel,
};
use pew_iexec::status::{NextAction, ReplicateStatus, TaskAbortCause};
use pew_poco::challenge::login_signature_matches;
use pew_poco::{Address, Signature65, Wallet};
use pew_scheduler::{SchedulerClient, SchedulerError, StatusReply, UpdateOutcome};
use rand_core::{OsRng, RngCore};
use serde_json::{Value, json};

use common::serve;

const TASK: &str = "0x5125c4ca7176e40d8c5386072a6f262029609a5d3a896fbf592cd965e65098d9";
const DEAL: &str = "0x3c0ad8ba2e7d8e3bb6cd8bfa83dd27e5ccd4f3479ad8a1e1b69fc2bc25b7f9c5";

/// One request as the double saw it.
#[derive(Debug, Clone)]
struct Seen {
    /// `METHOD /path?query`.
    line: String,
    content_type: Option<String>,
    authorization: Option<String>,
}

/// The core double. Scripted replies are popped per route; a route without script answers
/// like a healthy core.
struct FakeCore {
    worker: Address,
    challenge: Mutex<Option<String>>,
    tokens: Mutex<HashSet<String>>,
    tokens_issued: AtomicUsize,
    reject_every_token: AtomicBool,
    scripts: Mutex<HashMap<&'static str, VecDeque<(u16, String)>>>,
    seen: Mutex<Vec<Seen>>,
    registered: Mutex<Option<WorkerModel>>,
    updates: Mutex<Vec<(String, Value)>>,
}

impl FakeCore {
    fn new(worker: Address) -> Arc<Self> {
        Arc::new(Self {
            worker,
            challenge: Mutex::new(None),
            tokens: Mutex::new(HashSet::new()),
            tokens_issued: AtomicUsize::new(0),
            reject_every_token: AtomicBool::new(false),
            scripts: Mutex::new(HashMap::new()),
            seen: Mutex::new(Vec::new()),
            registered: Mutex::new(None),
            updates: Mutex::new(Vec::new()),
        })
    }

    fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/version", get(|| async { "9.3.0" }))
            .route(
                "/workers/config",
                get(|State(core): State<Arc<FakeCore>>| async move { core.scripted("config") }),
            )
            .route(
                "/config/chain",
                get(|State(core): State<Arc<FakeCore>>| async move { core.scripted("chain") }),
            )
            .route("/workers/challenge", get(challenge))
            .route("/workers/login", post(login))
            .route("/workers/register", post(register))
            .route(
                "/workers/ping",
                post(
                    |State(core): State<Arc<FakeCore>>, headers: HeaderMap| async move {
                        core.authenticated(&headers, || {
                            (StatusCode::OK, "7f3a-session").into_response()
                        })
                    },
                ),
            )
            .route(
                "/workers/computing",
                get(
                    |State(core): State<Arc<FakeCore>>, headers: HeaderMap| async move {
                        core.authenticated(&headers, || core.scripted("computing"))
                    },
                ),
            )
            .route(
                "/replicates/available",
                get(
                    |State(core): State<Arc<FakeCore>>, headers: HeaderMap| async move {
                        core.authenticated(&headers, || core.scripted("available"))
                    },
                ),
            )
            .route(
                "/replicates/interrupted",
                get(
                    |State(core): State<Arc<FakeCore>>, headers: HeaderMap| async move {
                        core.authenticated(&headers, || core.scripted("interrupted"))
                    },
                ),
            )
            .route("/replicates/{task}/updateStatus", post(update_status))
            .layer(middleware::from_fn_with_state(Arc::clone(self), record))
            .with_state(Arc::clone(self))
    }

    fn script(&self, route: &'static str, status: u16, body: &str) {
        self.scripts
            .lock()
            .unwrap()
            .entry(route)
            .or_default()
            .push_back((status, body.to_owned()));
    }

    fn scripted(&self, route: &'static str) -> Response {
        let (status, body) = self
            .scripts
            .lock()
            .unwrap()
            .get_mut(route)
            .and_then(VecDeque::pop_front)
            .unwrap_or((200, "[]".into()));
        let status = StatusCode::from_u16(status).unwrap();
        (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
    }

    /// Runs `reply` for a known bearer token; 401 otherwise, as `JwtTokenProvider` does.
    fn authenticated(&self, headers: &HeaderMap, reply: impl FnOnce() -> Response) -> Response {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "));
        let known = token.is_some_and(|token| self.tokens.lock().unwrap().contains(token));
        if known && !self.reject_every_token.load(Ordering::SeqCst) {
            reply()
        } else {
            StatusCode::UNAUTHORIZED.into_response()
        }
    }

    /// What a core restart does to the tokens it issued.
    fn forget_tokens(&self) {
        self.tokens.lock().unwrap().clear();
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn lines(&self) -> Vec<String> {
        self.seen().into_iter().map(|seen| seen.line).collect()
    }
}

async fn record(State(core): State<Arc<FakeCore>>, request: Request, next: Next) -> Response {
    core.seen.lock().unwrap().push(Seen {
        line: format!("{} {}", request.method(), request.uri()),
        content_type: header_text(request.headers(), header::CONTENT_TYPE),
        authorization: header_text(request.headers(), header::AUTHORIZATION),
    });
    next.run(request).await
}

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

async fn challenge(
    State(core): State<Arc<FakeCore>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    // The core compares the exact string (whitelist, challenge cache): lowercase is the identity.
    if query.get("walletAddress") != Some(&format!("{:#x}", core.worker)) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let mut seed = [0u8; 32];
    OsRng.fill_bytes(&mut seed);
    let challenge = BASE64.encode(seed);
    *core.challenge.lock().unwrap() = Some(challenge.clone());
    challenge.into_response()
}

async fn login(
    State(core): State<Arc<FakeCore>>,
    Query(query): Query<HashMap<String, String>>,
    Json(signature): Json<SignatureValue>,
) -> Response {
    let Some(challenge) = core.challenge.lock().unwrap().take() else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let Ok(signature) = signature.value.parse::<Signature65>() else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let claimed: Address = query
        .get("walletAddress")
        .and_then(|a| a.parse().ok())
        .unwrap_or(Address::ZERO);
    if claimed != core.worker || !login_signature_matches(&challenge, &signature, claimed) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let token = format!(
        "jwt-{}",
        core.tokens_issued.fetch_add(1, Ordering::SeqCst) + 1
    );
    core.tokens.lock().unwrap().insert(token.clone());
    token.into_response()
}

async fn register(
    State(core): State<Arc<FakeCore>>,
    headers: HeaderMap,
    Json(model): Json<WorkerModel>,
) -> Response {
    core.authenticated(&headers, || {
        *core.registered.lock().unwrap() = Some(model);
        Json(json!({ "walletAddress": format!("{:#x}", core.worker), "maxNbTasks": 3 }))
            .into_response()
    })
}

async fn update_status(
    State(core): State<Arc<FakeCore>>,
    Path(task): Path<String>,
    headers: HeaderMap,
    Json(update): Json<Value>,
) -> Response {
    core.authenticated(&headers, || {
        core.updates.lock().unwrap().push((task, update));
        core.scripted("update")
    })
}

struct Harness {
    core: Arc<FakeCore>,
    client: SchedulerClient,
    wallet: Arc<Wallet>,
    base_url: String,
}

async fn start() -> Harness {
    let wallet = Arc::new(Wallet::random());
    let core = FakeCore::new(wallet.address());
    let base_url = serve(core.router()).await;
    let client =
        SchedulerClient::new(&base_url, Arc::clone(&wallet), Duration::from_secs(10)).unwrap();
    Harness {
        core,
        client,
        wallet,
        base_url,
    }
}

#[tokio::test]
async fn login_signs_the_challenge_and_later_calls_carry_the_token() {
    let Harness {
        core,
        client,
        wallet,
        ..
    } = start().await;
    let identity = client.wallet_address();
    assert_eq!(identity, format!("{:#x}", wallet.address()));
    assert!(identity.starts_with("0x") && identity.len() == 42);
    assert_eq!(identity, identity.to_ascii_lowercase());

    client.login().await.unwrap();
    let model = WorkerModel {
        name: "pew-pi".into(),
        wallet_address: identity.clone(),
        os: "Linux".into(),
        cpu: "aarch64".into(),
        cpu_nb: 3,
        ..WorkerModel::default()
    };
    client.register(&model).await.unwrap();
    assert_eq!(client.ping().await.unwrap(), "7f3a-session");

    assert_eq!(core.registered.lock().unwrap().as_ref(), Some(&model));
    let seen = core.seen();
    assert_eq!(
        seen[0].line,
        format!("GET /workers/challenge?walletAddress={identity}")
    );
    assert_eq!(
        seen[1].line,
        format!("POST /workers/login?walletAddress={identity}")
    );
    assert_eq!(seen[0].authorization, None, "login needs no token");
    for authenticated in &seen[2..] {
        assert_eq!(
            authenticated.authorization.as_deref(),
            Some("Bearer jwt-1"),
            "{}",
            authenticated.line
        );
    }
    for request in &seen {
        assert_eq!(
            request.content_type.as_deref(),
            Some("application/json"),
            "{}",
            request.line
        );
    }
}

#[tokio::test]
async fn an_authenticated_call_logs_in_by_itself() {
    let Harness { core, client, .. } = start().await;
    core.script("computing", 200, &format!(r#"["{TASK}"]"#));
    assert_eq!(client.computing().await.unwrap(), vec![TASK.to_owned()]);
    assert_eq!(core.tokens_issued.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_forgotten_token_costs_one_login_and_one_retry() {
    let Harness { core, client, .. } = start().await;
    client.login().await.unwrap();
    core.forget_tokens();

    assert_eq!(client.ping().await.unwrap(), "7f3a-session");
    let lines = core.lines();
    assert_eq!(lines.len(), 6, "{lines:?}");
    assert!(lines[2].starts_with("POST /workers/ping"));
    assert!(lines[3].starts_with("GET /workers/challenge"));
    assert!(lines[4].starts_with("POST /workers/login"));
    assert!(lines[5].starts_with("POST /workers/ping"));
    assert_eq!(
        core.seen()[5].authorization.as_deref(),
        Some("Bearer jwt-2")
    );

    // The fresh token is kept: the next call needs no login.
    client.ping().await.unwrap();
    assert_eq!(core.tokens_issued.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_token_refused_twice_is_unauthorized_without_looping() {
    let Harness { core, client, .. } = start().await;
    core.reject_every_token.store(true, Ordering::SeqCst);

    let error = client.ping().await.unwrap_err();
    assert!(
        matches!(
            error,
            SchedulerError::Unauthorized {
                endpoint: "POST /workers/ping"
            }
        ),
        "{error}"
    );
    assert!(!error.is_retryable());
    let pings = core
        .lines()
        .iter()
        .filter(|line| line.starts_with("POST /workers/ping"))
        .count();
    assert_eq!((pings, core.tokens_issued.load(Ordering::SeqCst)), (2, 2));
}

#[tokio::test]
async fn a_refused_login_is_unauthorized() {
    let wallet = Arc::new(Wallet::random());
    let core = FakeCore::new(Wallet::random().address()); // whitelists somebody else
    let client =
        SchedulerClient::new(&serve(core.router()).await, wallet, Duration::from_secs(10)).unwrap();

    let error = client.login().await.unwrap_err();
    assert!(
        matches!(
            error,
            SchedulerError::Unauthorized {
                endpoint: "GET /workers/challenge"
            }
        ),
        "{error}"
    );
    let error = client.computing().await.unwrap_err();
    assert!(
        matches!(error, SchedulerError::Unauthorized { .. }),
        "{error}"
    );
}

#[tokio::test]
async fn available_replicate_maps_204_200_and_503() {
    let Harness {
        core,
        client,
        wallet,
        ..
    } = start().await;
    core.script("available", 204, "");
    let summary = json!({
        "workerpoolAuthorization": {
            "chainTaskId": TASK, "dealId": DEAL, "taskIndex": 0,
            "workerWallet": format!("{:#x}", wallet.address()),
            "enclaveChallenge": "0x0000000000000000000000000000000000000000",
            "signature": { "value": format!("0x{}1b", "ab".repeat(64)) }
        },
        "smsUrl": null
    });
    core.script("available", 200, &summary.to_string());
    core.script("available", 200, "");
    core.script("available", 503, "");

    assert_eq!(client.available_replicate(1234).await.unwrap(), None);
    let handed_out = client
        .available_replicate(1235)
        .await
        .unwrap()
        .expect("a replicate");
    assert_eq!(handed_out.workerpool_authorization.chain_task_id, TASK);
    assert_eq!(handed_out.workerpool_authorization.deal_id, DEAL);
    assert_eq!(handed_out.sms_url, None);
    assert_eq!(
        client.available_replicate(1236).await.unwrap(),
        None,
        "an empty 200 is no work"
    );
    let error = client.available_replicate(1237).await.unwrap_err();
    assert!(
        matches!(
            error,
            SchedulerError::ChainUnavailable {
                endpoint: "GET /replicates/available"
            }
        ),
        "{error}"
    );
    assert!(error.is_retryable());

    let asked: Vec<String> = core
        .lines()
        .into_iter()
        .filter(|line| line.starts_with("GET /replicates/available"))
        .collect();
    assert_eq!(asked[0], "GET /replicates/available?blockNumber=1234");
    assert_eq!(asked.len(), 4);
}

#[tokio::test]
async fn status_updates_read_the_next_action_from_200_202_and_208() {
    let Harness { core, client, .. } = start().await;
    core.script("update", 200, r#""PLEASE_CONTINUE""#);
    core.script("update", 208, r#""PLEASE_WAIT""#);
    core.script("update", 202, r#""PLEASE_ABORT""#);
    core.script("update", 500, "");
    core.script("update", 200, r#""PLEASE_DANCE""#);

    let contributed = ReplicateStatusUpdate::with_details(
        ReplicateStatus::Contributed,
        ReplicateStatusDetails {
            chain_receipt: Some(ChainReceipt {
                block_number: 4567,
                tx_hash: "0xfeed".into(),
            }),
            ..ReplicateStatusDetails::default()
        },
    );
    let reply = |outcome, next_action| StatusReply {
        outcome,
        next_action,
    };
    assert_eq!(
        client.update_status(TASK, &contributed).await.unwrap(),
        reply(UpdateOutcome::Recorded, NextAction::PleaseContinue)
    );
    assert_eq!(
        client.update_status(TASK, &contributed).await.unwrap(),
        reply(UpdateOutcome::AlreadyReported, NextAction::PleaseWait)
    );
    assert_eq!(
        client.update_status(TASK, &contributed).await.unwrap(),
        reply(UpdateOutcome::Refused, NextAction::PleaseAbort)
    );
    let error = client.update_status(TASK, &contributed).await.unwrap_err();
    assert!(
        matches!(error, SchedulerError::Server { status: 500, .. }),
        "{error}"
    );
    assert!(error.is_retryable());
    let error = client.update_status(TASK, &contributed).await.unwrap_err();
    assert!(matches!(error, SchedulerError::Decode { .. }), "{error}");
    assert!(
        error
            .to_string()
            .contains("POST /replicates/{chainTaskId}/updateStatus"),
        "{error}"
    );
    assert!(error.to_string().contains("PLEASE_DANCE"), "{error}");

    let updates = core.updates.lock().unwrap();
    let (task, body) = &updates[0];
    assert_eq!(task, TASK);
    assert_eq!(body["status"], "CONTRIBUTED");
    assert_eq!(
        body["details"]["chainReceipt"],
        json!({ "blockNumber": 4567, "txHash": "0xfeed" })
    );
}

#[tokio::test]
async fn raw_strings_come_back_untouched_and_unauthenticated_calls_carry_no_token() {
    let Harness { core, client, .. } = start().await;
    assert_eq!(client.version().await.unwrap(), "9.3.0");
    assert_eq!(core.seen()[0].authorization, None);
    assert_eq!(core.tokens_issued.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn configurations_are_read_leniently() {
    let Harness {
        core,
        client,
        base_url,
        ..
    } = start().await;
    // The Java worker's own test stub sends the period as a string.
    core.script(
        "config",
        200,
        &json!({
            "workerPoolAddress": "0x1111111111111111111111111111111111111111",
            "schedulerPublicAddress": "0x2222222222222222222222222222222222222222",
            "configServerUrl": base_url,
            "resultRepositoryURL": "http://result-proxy:13200",
            "askForReplicatePeriod": "5000",
            "requiredWorkerVersion": ""
        })
        .to_string(),
    );
    core.script(
        "chain",
        200,
        r#"{"chainId":"65535","sidechain":"true","chainNodeUrl":"http://chain:8545",
            "iexecHubContractAddress":"0xC129e7917b7c7DeDfAa5Fff1FB18d5D7050fE8ca","blockTime":"PT5S"}"#,
    );
    core.script(
        "chain",
        200,
        r#"{"chainId":421614,"sidechain":false,"chainNodeUrl":"http://chain:8545",
            "iexecHubContractAddress":"0xB2157BF2fAb286b2A4170E3491Ac39770111Da3E","blockTime":0.250000000}"#,
    );

    let config = client.public_config().await.unwrap();
    assert_eq!(config.ask_for_replicate_period_ms, 5000);
    assert_eq!(config.result_repository_url, "http://result-proxy:13200");

    let chain = client
        .chain_config(&config.config_server_url)
        .await
        .unwrap();
    assert_eq!(
        (chain.chain_id, chain.sidechain, chain.block_time),
        (65535, true, Duration::from_secs(5))
    );
    let chain = client
        .chain_config(&format!("{}/", config.config_server_url))
        .await
        .unwrap();
    assert_eq!(
        (chain.chain_id, chain.sidechain, chain.block_time),
        (421614, false, Duration::from_millis(250))
    );
}

#[tokio::test]
async fn an_undecodable_reply_names_the_endpoint_and_the_body() {
    let Harness { core, client, .. } = start().await;
    core.script(
        "config",
        200,
        "<html><body>Whitelabel Error Page</body></html>",
    );
    let error = client.public_config().await.unwrap_err();
    assert!(
        matches!(
            error,
            SchedulerError::Decode {
                endpoint: "GET /workers/config",
                ..
            }
        ),
        "{error}"
    );
    assert!(
        error.to_string().contains("Whitelabel Error Page"),
        "{error}"
    );
    assert!(!error.is_retryable());
}

#[tokio::test]
async fn interrupted_replicates_are_read_with_the_extra_abort_cause_property() {
    let Harness { core, client, .. } = start().await;
    core.script(
        "interrupted",
        200,
        &json!([{
            "chainTaskId": TASK,
            "workersAddress": [],
            "taskNotificationType": "PLEASE_ABORT",
            "taskNotificationExtra": { "workerpoolAuthorization": null, "smsUrl": null, "blockNumber": 0,
                                       "taskAbortCause": "CONTRIBUTION_TIMEOUT" },
            "taskAbortCause": "CONTRIBUTION_TIMEOUT"
        }])
        .to_string(),
    );
    let missed = client.interrupted_replicates(99).await.unwrap();
    assert_eq!(missed.len(), 1);
    assert_eq!(missed[0].task_notification_type, NextAction::PleaseAbort);
    assert_eq!(
        missed[0].task_abort_cause(),
        TaskAbortCause::ContributionTimeout
    );
    assert!(
        core.lines()
            .iter()
            .any(|line| line == "GET /replicates/interrupted?blockNumber=99")
    );
}

#[tokio::test]
async fn an_unreachable_core_is_a_retryable_transport_error() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let client =
        SchedulerClient::new(&closed, Arc::new(Wallet::random()), Duration::from_secs(10)).unwrap();
    let error = client.version().await.unwrap_err();
    assert!(
        matches!(
            error,
            SchedulerError::Transport {
                endpoint: "GET /version",
                ..
            }
        ),
        "{error}"
    );
    assert!(error.is_retryable());
}

#[tokio::test]
async fn a_core_that_never_answers_is_a_retryable_timeout() {
    let router = Router::new().route("/version", get(std::future::pending::<&'static str>));
    let base = serve(router).await;
    let client = SchedulerClient::new(
        &base,
        Arc::new(Wallet::random()),
        Duration::from_millis(100),
    )
    .unwrap();
    let error = client.version().await.unwrap_err();
    assert!(
        matches!(
            error,
            SchedulerError::Timeout {
                endpoint: "GET /version"
            }
        ),
        "{error}"
    );
    assert!(error.is_retryable());
}

#[test]
fn unusable_base_urls_are_refused() {
    let wallet = Arc::new(Wallet::random());
    for url in ["core:13000", "ftp://core", "not a url"] {
        let error = SchedulerClient::new(url, Arc::clone(&wallet), Duration::from_secs(1)).err();
        assert!(
            matches!(error, Some(SchedulerError::InvalidUrl { .. })),
            "{url}: {error:?}"
        );
    }
}
