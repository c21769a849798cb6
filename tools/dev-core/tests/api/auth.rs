//! Challenge, login and bearer authentication (§1.3).

use std::time::Duration;

use base64::Engine as _;
use pew_iexec::model::SignatureValue;

use crate::harness::{Harness, WORKER_KEY, lower, wallet};

/// `WorkerControllerTests`: a wallet and its signatures of the challenge `"challenge"`.
const WALLET: &str = "0x108ca59d5d0eec2ff66003f8909eb40addd1a67d";
const SIGN: &str = "0xf11e72d3a1d6e13c5187862cfa0342f135909f36c369e01f2392ad19daee781377328a1441ac993f518d7024aafed664508d8dadf42ebdd97394ebfeb5b837121c";
const INVALID_SIGNATURE: &str = "0xab5861286e8ef54febad4e606d7e7f32bec8e017a909bfa54e95ad6a7d42dc3f1cab39bacff7aeb15514d41750a3d7da0b21759063c50db1a8ac378062977ba51b";

async fn login(harness: &Harness, wallet: &str, signature: &str) -> (u16, String) {
    let response = harness
        .http
        .post(harness.url("/workers/login"))
        .query(&[("walletAddress", wallet)])
        .json(&SignatureValue {
            value: signature.into(),
        })
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

async fn challenge(harness: &Harness, wallet: &str) -> reqwest::Response {
    harness
        .http
        .get(harness.url("/workers/challenge"))
        .query(&[("walletAddress", wallet)])
        .send()
        .await
        .unwrap()
}

fn jwt_claims(token: &str) -> serde_json::Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn upstream_login_vector_gets_a_scheduler_jwt() {
    let harness =
        Harness::start_with(|config| config.fixed_challenge = Some("challenge".into())).await;
    let response = challenge(&harness, WALLET).await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert_eq!(response.text().await.unwrap(), "challenge");

    let (status, token) = login(&harness, WALLET, SIGN).await;
    assert_eq!(status, 200);
    let claims = jwt_claims(&token);
    assert_eq!(claims["aud"], "iExec Scheduler v9.3.0");
    assert_eq!(claims["sub"], WALLET);
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        3600
    );
}

#[tokio::test]
async fn upstream_invalid_signature_is_refused() {
    let harness =
        Harness::start_with(|config| config.fixed_challenge = Some("challenge".into())).await;
    assert_eq!(login(&harness, WALLET, INVALID_SIGNATURE).await.0, 401);
    assert_eq!(login(&harness, WALLET, "0x00").await.0, 401, "not 65 bytes");
}

#[tokio::test]
async fn random_challenge_is_base64_of_32_bytes_and_single_use() {
    let harness = Harness::start().await;
    let worker = wallet(WORKER_KEY);
    let address = lower(worker.address());
    let first = challenge(&harness, &address).await.text().await.unwrap();
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(&first)
            .unwrap()
            .len(),
        32
    );
    assert_eq!(
        challenge(&harness, &address).await.text().await.unwrap(),
        first,
        "kept until used"
    );

    let signature = pew_poco::challenge::sign_login(&worker, &first).to_string();
    let (status, token) = login(&harness, &address, &signature).await;
    assert_eq!(status, 200);
    // The same token comes back while it is valid.
    let second = challenge(&harness, &address).await.text().await.unwrap();
    assert_ne!(second, first, "a used challenge is forgotten");
    let signature = pew_poco::challenge::sign_login(&worker, &second).to_string();
    assert_eq!(login(&harness, &address, &signature).await, (200, token));
    // Replaying the old signature fails: its challenge is gone.
    assert_eq!(
        login(
            &harness,
            &address,
            &pew_poco::challenge::sign_login(&worker, &first).to_string()
        )
        .await
        .0,
        401
    );
}

#[tokio::test]
async fn whitelist_is_exact_and_case_sensitive() {
    let harness = Harness::start_with(|config| config.whitelist = vec![WALLET.into()]).await;
    assert_eq!(challenge(&harness, WALLET).await.status(), 200);
    let upper = WALLET.to_uppercase().replacen("0X", "0x", 1);
    assert_eq!(challenge(&harness, &upper).await.status(), 401);
    assert_eq!(
        challenge(&harness, "0x1111111111111111111111111111111111111111")
            .await
            .status(),
        401
    );
    assert_eq!(login(&harness, &upper, SIGN).await.0, 401);
}

#[tokio::test]
async fn login_needs_its_parameter_and_a_json_body() {
    let harness = Harness::start().await;
    let no_query = harness
        .http
        .post(harness.url("/workers/login"))
        .json(&SignatureValue::default())
        .send()
        .await;
    assert_eq!(no_query.unwrap().status(), 400);
    let not_json = harness
        .http
        .post(harness.url("/workers/login"))
        .query(&[("walletAddress", WALLET)])
        .body(r#"{"value":"0x"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), 415);
    let broken = harness
        .http
        .post(harness.url("/workers/login"))
        .query(&[("walletAddress", WALLET)])
        .header("Content-Type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(broken.status(), 400);
    assert_eq!(
        harness
            .http
            .get(harness.url("/workers/challenge"))
            .send()
            .await
            .unwrap()
            .status(),
        400
    );
}

#[tokio::test]
async fn every_authenticated_endpoint_wants_a_valid_bearer_token() {
    let harness = Harness::start().await;
    let task = format!(
        "/replicates/{}/updateStatus",
        pew_poco::B256::repeat_byte(1)
    );
    let requests = [
        harness
            .http
            .post(harness.url("/workers/register"))
            .json(&serde_json::json!({})),
        harness.http.post(harness.url("/workers/ping")),
        harness.http.get(harness.url("/workers/computing")),
        harness
            .http
            .get(harness.url("/replicates/available?blockNumber=1")),
        harness
            .http
            .get(harness.url("/replicates/interrupted?blockNumber=1")),
        harness
            .http
            .post(harness.url(&task))
            .json(&serde_json::json!({"status":"STARTING"})),
    ];
    for request in requests {
        let missing = request.try_clone().unwrap().send().await.unwrap();
        assert_eq!(missing.status(), 400, "missing header: {}", missing.url());
        for header in ["Bearer not-a-jwt", "Bearer a.b.c", "not-bearer"] {
            let response = request
                .try_clone()
                .unwrap()
                .header("Authorization", header)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 401, "{header} on {}", response.url());
        }
    }
}

#[tokio::test]
async fn expired_token_is_refused_then_replaced() {
    let harness = Harness::start().await;
    let worker = harness.login(wallet(WORKER_KEY)).await;
    assert_eq!(worker.ping().await.status(), 200);
    harness.core.advance_clock(Duration::from_secs(3600));
    assert_eq!(worker.ping().await.status(), 401);
    let renewed = harness.login(wallet(WORKER_KEY)).await;
    assert_ne!(renewed.token, worker.token);
    assert_eq!(renewed.ping().await.status(), 200);
}

#[tokio::test]
async fn token_of_a_previous_instance_is_unknown() {
    let first = Harness::start().await;
    let worker = first.login(wallet(WORKER_KEY)).await;
    let second = Harness::start().await;
    let response = second
        .http
        .post(second.url("/workers/ping"))
        .header("Authorization", format!("Bearer {}", worker.token))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}
