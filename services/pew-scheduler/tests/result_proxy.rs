//! `ResultProxyClient` against a local double of iexec-result-proxy v9 (§3.6): the token is
//! granted only to the worker whose signature over the authorization hash recovers, the upload
//! only with that raw token.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use pew_iexec::model::{SignatureValue, WorkerpoolAuthorization};
use pew_poco::{Address, B256, Signature65, Wallet, authorization_hash, eth_signed_hash};
use pew_scheduler::{ResultProxyClient, ResultProxyError, UploadStep};
use serde_json::Value;

use common::serve;

const TASK: &str = "0x5125c4ca7176e40d8c5386072a6f262029609a5d3a896fbf592cd965e65098d9";
const DEAL: &str = "0x3c0ad8ba2e7d8e3bb6cd8bfa83dd27e5ccd4f3479ad8a1e1b69fc2bc25b7f9c5";
const TOKEN: &str = "eyJhbGciOiJIUzI1NiJ9.proxy.token";
const IPFS_HASH: &str = "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG";

struct FakeProxy {
    refuse_uploads: bool,
    token_requests: Mutex<Vec<WorkerpoolAuthorization>>,
    /// Raw bodies of accepted uploads.
    uploads: Mutex<Vec<String>>,
}

async fn token(
    State(proxy): State<Arc<FakeProxy>>,
    headers: HeaderMap,
    axum::Json(authorization): axum::Json<WorkerpoolAuthorization>,
) -> Response {
    let worker: Address = authorization.worker_wallet.parse().unwrap();
    let hash = authorization_hash(
        worker,
        authorization.chain_task_id.parse().unwrap(),
        Address::ZERO,
    );
    let signer = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<Signature65>().ok())
        .and_then(|signature| signature.recover(eth_signed_hash(hash)).ok());
    proxy.token_requests.lock().unwrap().push(authorization);
    if signer == Some(worker) {
        (StatusCode::OK, TOKEN).into_response()
    } else {
        StatusCode::UNAUTHORIZED.into_response()
    }
}

async fn upload(State(proxy): State<Arc<FakeProxy>>, headers: HeaderMap, body: String) -> Response {
    let authorized = headers
        .get(header::AUTHORIZATION)
        .is_some_and(|value| value == TOKEN);
    if !authorized || proxy.refuse_uploads {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    proxy.uploads.lock().unwrap().push(body);
    (StatusCode::OK, format!("/ipfs/{IPFS_HASH}")).into_response()
}

async fn ipfs_hash(State(proxy): State<Arc<FakeProxy>>, Path(task): Path<String>) -> Response {
    let uploaded = proxy
        .uploads
        .lock()
        .unwrap()
        .iter()
        .any(|body| body.contains(&task));
    if uploaded {
        (StatusCode::OK, IPFS_HASH).into_response()
    } else {
        StatusCode::NOT_FOUND.into_response()
    }
}

async fn start(refuse_uploads: bool) -> (Arc<FakeProxy>, String) {
    let proxy = Arc::new(FakeProxy {
        refuse_uploads,
        token_requests: Mutex::default(),
        uploads: Mutex::default(),
    });
    let router = Router::new()
        .route("/v1/results/token", post(token))
        .route("/v1/results", post(upload))
        .route("/v1/results/{task}/ipfshash", get(ipfs_hash))
        .with_state(Arc::clone(&proxy));
    (proxy, serve(router).await)
}

fn authorization_for(worker: &Wallet) -> WorkerpoolAuthorization {
    WorkerpoolAuthorization {
        chain_task_id: TASK.into(),
        deal_id: DEAL.into(),
        task_index: 3,
        worker_wallet: format!("{:#x}", worker.address()),
        enclave_challenge: format!("{:#x}", Address::ZERO),
        signature: SignatureValue {
            value: format!("0x{}1c", "5a".repeat(64)),
        },
    }
}

fn client() -> ResultProxyClient {
    ResultProxyClient::new(Duration::from_secs(10)).unwrap()
}

#[tokio::test]
async fn upload_trades_the_authorization_for_a_token_and_returns_the_ipfs_hash() {
    let (proxy, base) = start(false).await;
    let wallet = Wallet::random();
    let authorization = authorization_for(&wallet);
    let zip = b"PK\x03\x04 not really a zip, but bytes that must survive base64".to_vec();
    let digest: B256 = "0x0a1b2c3d4e5f60718293a4b5c6d7e8f9000102030405060708090a0b0c0d0e0f"
        .parse()
        .unwrap();

    let hash = client()
        .upload(&base, &wallet, &authorization, &zip, digest)
        .await
        .unwrap();
    assert_eq!(hash, IPFS_HASH);

    assert_eq!(
        proxy.token_requests.lock().unwrap().as_slice(),
        [authorization]
    );
    let uploads = proxy.uploads.lock().unwrap();
    assert!(
        uploads[0].starts_with(r#"{"chainTaskId":"#),
        "Java property order: {}",
        uploads[0]
    );
    let model: Value = serde_json::from_str(&uploads[0]).unwrap();
    assert_eq!(model["chainTaskId"], TASK);
    assert_eq!(model["dealId"], DEAL);
    assert_eq!(model["taskIndex"], 3);
    assert_eq!(
        (&model["image"], &model["cmd"]),
        (&Value::Null, &Value::Null)
    );
    assert_eq!(BASE64.decode(model["zip"].as_str().unwrap()).unwrap(), zip);
    assert_eq!(
        model["deterministHash"],
        "0x0a1b2c3d4e5f60718293a4b5c6d7e8f9000102030405060708090a0b0c0d0e0f"
    );
    assert_eq!(model["enclaveSignature"], format!("0x{}", "0".repeat(130)));
}

#[tokio::test]
async fn a_token_refused_to_another_wallet_names_the_token_step() {
    let (proxy, base) = start(false).await;
    let authorized_worker = Wallet::random();
    let impostor = Wallet::random();
    let error = client()
        .upload(
            &base,
            &impostor,
            &authorization_for(&authorized_worker),
            b"zip",
            B256::ZERO,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            ResultProxyError::Rejected {
                step: UploadStep::Token,
                status: 401,
                ..
            }
        ),
        "{error}"
    );
    assert!(
        error.to_string().contains("POST /v1/results/token"),
        "{error}"
    );
    assert!(!error.is_retryable());
    assert!(proxy.uploads.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_refused_upload_names_the_upload_step() {
    let (_, base) = start(true).await;
    let wallet = Wallet::random();
    let error = client()
        .upload(
            &base,
            &wallet,
            &authorization_for(&wallet),
            b"zip",
            B256::ZERO,
        )
        .await
        .unwrap_err();
    assert_eq!(error.step(), Some(UploadStep::Upload), "{error}");
    assert!(error.to_string().contains("POST /v1/results:"), "{error}");
}

#[tokio::test]
async fn an_authorization_without_a_task_id_is_refused_before_any_request() {
    let (proxy, base) = start(false).await;
    let wallet = Wallet::random();
    let authorization = WorkerpoolAuthorization {
        chain_task_id: "task-7".into(),
        ..authorization_for(&wallet)
    };
    let error = client()
        .upload(&base, &wallet, &authorization, b"zip", B256::ZERO)
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            ResultProxyError::InvalidAuthorization {
                field: "chainTaskId",
                ..
            }
        ),
        "{error}"
    );
    assert_eq!(error.step(), None);
    assert!(proxy.token_requests.lock().unwrap().is_empty());
}
