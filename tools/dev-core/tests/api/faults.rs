//! Scripted HTTP faults for the worker's resilience tests.

use std::time::Duration;

use dev_core::Fault;

use crate::harness::{Harness, WORKER_KEY, wallet};

#[tokio::test]
async fn next_requests_fail_with_the_scripted_status_then_recover() {
    let harness = Harness::start().await;
    let worker = harness.login(wallet(WORKER_KEY)).await;
    harness
        .core
        .inject_fault(Fault::status("/workers/ping", 503, 2));
    assert_eq!(worker.ping().await.status(), 503);
    assert_eq!(
        harness
            .http
            .get(harness.url("/version"))
            .send()
            .await
            .unwrap()
            .status(),
        200,
        "other paths spared"
    );
    assert_eq!(worker.ping().await.status(), 503);
    assert_eq!(worker.ping().await.status(), 200);
}

#[tokio::test]
async fn faulted_request_does_not_reach_the_handler() {
    let harness = Harness::start().await;
    let worker = harness.login(wallet(WORKER_KEY)).await;
    harness
        .core
        .inject_fault(Fault::status("/workers/register", 500, 1));
    assert_eq!(worker.register(1, false).await.status(), 500);
    assert!(harness.core.worker(&worker.address).is_none());
    harness.core.inject_fault(Fault::status("", 401, 5));
    harness.core.clear_faults();
    assert_eq!(worker.register(1, false).await.status(), 200);
}

#[tokio::test]
async fn delayed_request_is_still_answered() {
    let harness = Harness::start().await;
    harness
        .core
        .inject_fault(Fault::delay("/version", Duration::from_millis(1), 1));
    let response = harness
        .http
        .get(harness.url("/version"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "9.3.0");
}
