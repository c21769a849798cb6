//! Helpers shared by the integration tests: a local HTTP server and a failure guard.

#![allow(dead_code)] // each test binary uses its own subset

use std::future::Future;
use std::time::Duration;

use axum::Router;

/// Only a guard against a hung test: nothing waits for it to elapse when the code works.
pub const GUARD: Duration = Duration::from_secs(20);

/// Serves `router` on an ephemeral local port; returns the base URL.
pub async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a local port");
    let address = listener.local_addr().expect("local address");
    tokio::spawn(async move { axum::serve(listener, router).await.expect("test server") });
    format!("http://{address}")
}

/// Awaits `future`, failing the test instead of hanging if it never completes.
pub async fn within<F: Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(GUARD, future)
        .await
        .unwrap_or_else(|_| panic!("gave up waiting for {what}"))
}
