//! The SockJS endpoint at `/connect` (§1.5).

use std::time::Duration;

use pew_iexec::stomp;

use crate::harness::{Harness, StompClient};

#[tokio::test]
async fn info_says_websocket_is_off() {
    let harness = Harness::start().await;
    let response = harness
        .http
        .get(harness.url("/connect/info"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let info: serde_json::Value = response.json().await.unwrap();
    assert_eq!(info["websocket"], false);
    assert_eq!(info["origins"], serde_json::json!(["*:*"]));
    assert_eq!(info["cookie_needed"], true);
    assert!(info["entropy"].is_u64());
    let greeting = harness
        .http
        .get(harness.url("/connect"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(greeting, "Welcome to SockJS!\n");
}

#[tokio::test]
async fn xhr_opens_then_heartbeats_and_xhr_send_needs_a_session() {
    let harness =
        Harness::start_with(|config| config.timing.sockjs_heartbeat = Duration::from_millis(20))
            .await;
    let send = |session: &str, body: &'static str| {
        harness
            .http
            .post(harness.url(&format!("/connect/000/{session}/xhr_send")))
            .body(body)
            .send()
    };
    assert_eq!(send("unknown", r#"["x"]"#).await.unwrap().status(), 404);
    let poll = || async {
        let response = harness
            .http
            .post(harness.url("/connect/000/abc/xhr"))
            .send()
            .await
            .unwrap();
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/javascript")
        );
        response.text().await.unwrap()
    };
    assert_eq!(poll().await, "o\n");
    assert_eq!(poll().await, "h\n", "nothing to say within the heartbeat");
    assert_eq!(send("abc", "").await.unwrap().status(), 500);
    assert_eq!(send("abc", "[not json").await.unwrap().status(), 500);
    assert_eq!(send("abc", r#"[]"#).await.unwrap().status(), 204);
}

#[tokio::test]
async fn stomp_connect_receipt_and_notifications_only_on_subscribed_topics() {
    let harness = Harness::start().await;
    let client = StompClient::connect(&harness, "s1").await;
    let watched = pew_poco::B256::repeat_byte(1);
    client
        .send(&[
            stomp::subscribe("sub-0", &stomp::task_topic(&watched.to_string()))
                .with_header("receipt", "r1"),
        ])
        .await;
    let receipt = client.next_frame().await;
    assert_eq!(receipt.command, "RECEIPT");
    assert_eq!(receipt.header("receipt-id"), Some("r1"));
    assert_eq!(harness.core.subscribers(watched), 1);

    // A deal on another task id publishes nothing here; a SEND on the watched topic arrives.
    let send = stomp::Frame::new(stomp::command::SEND)
        .with_header("destination", &stomp::task_topic(&watched.to_string()))
        .with_body(
            "application/json",
            r#"{"chainTaskId":"x","workersAddress":[],"taskNotificationType":"PLEASE_WAIT"}"#,
        );
    client.send(&[send]).await;
    let message = client.next_frame().await;
    assert_eq!(message.command, "MESSAGE");
    assert_eq!(message.header("subscription"), Some("sub-0"));
    assert_eq!(message.header("message-id"), Some("s1-1"));

    client.send(&[stomp::unsubscribe("sub-0")]).await;
    assert_eq!(harness.core.subscribers(watched), 0);
}

#[tokio::test]
async fn closed_sessions_must_reconnect_and_resubscribe() {
    let harness = Harness::start().await;
    let client = StompClient::connect(&harness, "s1").await;
    let task = pew_poco::B256::repeat_byte(2);
    client.subscribe(task).await;
    assert_eq!(harness.core.subscribers(task), 1);
    harness.core.close_push_sessions();
    assert_eq!(harness.core.subscribers(task), 0);
    assert_eq!(
        client.poll().await,
        pew_iexec::sockjs::Frame::Close(3000, "Go away!".into())
    );
    let again = StompClient::connect(&harness, "s1").await;
    again.subscribe(task).await;
    assert_eq!(harness.core.subscribers(task), 1);
}
