//! `Notifications` against a local SockJS `xhr` endpoint speaking STOMP like the core's simple
//! broker (§1.5). The test drives the server frame by frame, so every step is awaited on an
//! event, never on time.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use pew_iexec::model::{TaskNotification, TaskNotificationExtra};
use pew_iexec::sockjs::{self, Frame as SockJsFrame};
use pew_iexec::status::NextAction;
use pew_iexec::stomp::{self, command};
use pew_scheduler::{Backoff, Jitter, Notifications, NotificationsConfig, NotificationsHandle};
use tokio::sync::mpsc;

use common::{serve, within};

const WORKER: &str = "0x9a5c2f0e8c5e0b6bd9d4f4a4c1e1b2b0f1c2d3e4";
const OTHER_WORKER: &str = "0x1111111111111111111111111111111111111111";
const TASK_A: &str = "0xaaaa000000000000000000000000000000000000000000000000000000000001";
const TASK_B: &str = "0xbbbb000000000000000000000000000000000000000000000000000000000002";

/// What the SockJS endpoint saw.
#[derive(Debug)]
enum Event {
    /// A receive request for a session id never seen before.
    Opened(String),
    /// A STOMP frame sent on a session.
    Received(String, stomp::Frame),
}

struct Session {
    outbox: mpsc::UnboundedSender<String>,
    inbox: tokio::sync::Mutex<mpsc::UnboundedReceiver<String>>,
}

/// A SockJS endpoint whose receive requests answer only what the test pushes.
struct SockJsCore {
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    events: mpsc::UnboundedSender<Event>,
}

impl SockJsCore {
    fn push(&self, session: &str, body: String) {
        let sessions = self.sessions.lock().unwrap();
        sessions[session].outbox.send(body).unwrap();
    }

    fn push_stomp(&self, session: &str, frames: &[stomp::Frame]) {
        let messages: Vec<String> = frames.iter().map(stomp::Frame::encode).collect();
        self.push(
            session,
            sockjs::http_frame(&SockJsFrame::Messages(messages)),
        );
    }
}

async fn receive(
    State(core): State<Arc<SockJsCore>>,
    Path((_server, id)): Path<(String, String)>,
) -> Response {
    let session = {
        let mut sessions = core.sessions.lock().unwrap();
        Arc::clone(sessions.entry(id.clone()).or_insert_with(|| {
            core.events.send(Event::Opened(id.clone())).unwrap();
            let (outbox, inbox) = mpsc::unbounded_channel();
            Arc::new(Session {
                outbox,
                inbox: tokio::sync::Mutex::new(inbox),
            })
        }))
    };
    let body = session.inbox.lock().await.recv().await;
    (StatusCode::OK, body.unwrap_or_default()).into_response()
}

async fn send(
    State(core): State<Arc<SockJsCore>>,
    Path((_server, id)): Path<(String, String)>,
    body: String,
) -> Response {
    if !core.sessions.lock().unwrap().contains_key(&id) {
        return StatusCode::NOT_FOUND.into_response();
    }
    for message in sockjs::parse_messages(&body).unwrap() {
        for frame in stomp::parse_frames(&message).unwrap() {
            core.events
                .send(Event::Received(id.clone(), frame))
                .unwrap();
        }
    }
    StatusCode::NO_CONTENT.into_response()
}

struct Harness {
    core: Arc<SockJsCore>,
    events: mpsc::UnboundedReceiver<Event>,
    handle: NotificationsHandle,
    notifications: mpsc::Receiver<TaskNotification>,
}

async fn start() -> Harness {
    let (events_sender, events) = mpsc::unbounded_channel();
    let core = Arc::new(SockJsCore {
        sessions: Mutex::new(HashMap::new()),
        events: events_sender,
    });
    let router = Router::new()
        .route("/connect/{server}/{session}/xhr", post(receive))
        .route("/connect/{server}/{session}/xhr_send", post(send))
        .with_state(Arc::clone(&core));
    let base = serve(router).await;
    let config = NotificationsConfig {
        // Reconnect at once so that the test never waits on a real delay.
        reconnect: Backoff::with_seed(Duration::ZERO, Duration::ZERO, Jitter::Full, 1),
        ..NotificationsConfig::default()
    };
    let (handle, notifications) = Notifications::spawn_with(&base, WORKER, config).unwrap();
    Harness {
        core,
        events,
        handle,
        notifications,
    }
}

impl Harness {
    async fn next_event(&mut self) -> Event {
        within("an event from the SockJS endpoint", self.events.recv())
            .await
            .expect("endpoint alive")
    }

    async fn expect_opened(&mut self) -> String {
        match self.next_event().await {
            Event::Opened(session) => session,
            other => panic!("expected a new session, got {other:?}"),
        }
    }

    async fn expect_frame(&mut self, session: &str) -> stomp::Frame {
        match self.next_event().await {
            Event::Received(on, frame) if on == session => frame,
            other => panic!("expected a STOMP frame on {session}, got {other:?}"),
        }
    }

    /// Opens the SockJS session and answers the STOMP handshake.
    async fn accept_session(&mut self, session: &str) {
        self.core
            .push(session, sockjs::http_frame(&SockJsFrame::Open));
        let connect = self.expect_frame(session).await;
        assert_eq!(connect.command, command::CONNECT);
        assert!(
            connect
                .header("accept-version")
                .is_some_and(|versions| versions.contains("1.2"))
        );
        self.core.push_stomp(session, &[stomp::connected()]);
    }

    /// Collects SUBSCRIBE frames until `count` arrived; (id, destination) pairs.
    async fn expect_subscriptions(
        &mut self,
        session: &str,
        count: usize,
    ) -> BTreeSet<(String, String)> {
        let mut subscriptions = BTreeSet::new();
        while subscriptions.len() < count {
            let frame = self.expect_frame(session).await;
            assert_eq!(frame.command, command::SUBSCRIBE);
            let header = |name| frame.header(name).unwrap().to_owned();
            subscriptions.insert((header("id"), header("destination")));
        }
        subscriptions
    }

    async fn next_notification(&mut self) -> TaskNotification {
        within("a notification", self.notifications.recv())
            .await
            .expect("notification task alive")
    }
}

fn notification(task: &str, recipients: &[&str], action: NextAction, block: Option<u64>) -> String {
    let notification = TaskNotification {
        chain_task_id: task.to_owned(),
        workers_address: recipients.iter().map(|r| (*r).to_owned()).collect(),
        task_notification_type: action,
        task_notification_extra: Some(TaskNotificationExtra {
            block_number: block,
            ..TaskNotificationExtra::default()
        }),
    };
    serde_json::to_string(&notification).unwrap()
}

fn message(task: &str, subscription: &str, id: &str, json: &str) -> stomp::Frame {
    stomp::message(&stomp::task_topic(task), subscription, id, json)
}

fn pair(id: &str, task: &str) -> (String, String) {
    (id.to_owned(), stomp::task_topic(task))
}

#[tokio::test]
async fn notifications_are_filtered_deduplicated_and_survive_a_closed_session() {
    let mut harness = start().await;
    harness.handle.subscribe(TASK_A);
    let mut connected = harness.handle.connected();

    let first = harness.expect_opened().await;
    assert!(!harness.handle.is_connected());
    harness.accept_session(&first).await;
    assert_eq!(
        harness.expect_subscriptions(&first, 1).await,
        BTreeSet::from([pair("sub-0", TASK_A)])
    );
    within("connected", connected.wait_for(|up| *up))
        .await
        .unwrap();

    let ours_in_checksum_case = WORKER.to_ascii_uppercase().replacen("0X", "0x", 1);
    let reveal = notification(
        TASK_A,
        &[OTHER_WORKER, &ours_in_checksum_case],
        NextAction::PleaseReveal,
        Some(4567),
    );
    let core = Arc::clone(&harness.core);
    core.push(&first, sockjs::http_frame(&SockJsFrame::Heartbeat));
    core.push_stomp(
        &first,
        &[message(
            TASK_A,
            "sub-0",
            "m-1",
            &notification(TASK_A, &[OTHER_WORKER], NextAction::PleaseAbort, None),
        )],
    );
    core.push_stomp(&first, &[message(TASK_A, "sub-0", "m-2", &reveal)]);
    core.push_stomp(&first, &[message(TASK_A, "sub-0", "m-2", &reveal)]);
    core.push_stomp(
        &first,
        &[message(
            TASK_A,
            "sub-0",
            "m-3",
            &notification(TASK_A, &[], NextAction::PleaseComplete, None),
        )],
    );
    core.push(
        &first,
        sockjs::http_frame(&SockJsFrame::Close(3000, "Go away!".into())),
    );

    let delivered = harness.next_notification().await;
    assert_eq!(
        delivered.task_notification_type,
        NextAction::PleaseReveal,
        "the other worker's abort is filtered"
    );
    assert_eq!(delivered.chain_task_id, TASK_A);
    assert_eq!(
        delivered
            .task_notification_extra
            .and_then(|extra| extra.block_number),
        Some(4567)
    );
    let delivered = harness.next_notification().await;
    assert_eq!(
        delivered.task_notification_type,
        NextAction::PleaseComplete,
        "the duplicate of m-2 is dropped"
    );

    // The close frame ends the session; the client comes back on a new one and re-subscribes,
    // including a task followed while it was away.
    let second = harness.expect_opened().await;
    assert_ne!(second, first);
    assert!(!harness.handle.is_connected());
    harness.handle.subscribe(TASK_B);
    harness.accept_session(&second).await;
    assert_eq!(
        harness.expect_subscriptions(&second, 2).await,
        BTreeSet::from([pair("sub-0", TASK_A), pair("sub-1", TASK_B)])
    );
    within("reconnected", connected.wait_for(|up| *up))
        .await
        .unwrap();

    harness.handle.unsubscribe(TASK_A);
    let unsubscribe = harness.expect_frame(&second).await;
    assert_eq!(
        (unsubscribe.command.as_str(), unsubscribe.header("id")),
        (command::UNSUBSCRIBE, Some("sub-0"))
    );
    core.push_stomp(
        &second,
        &[
            message(
                TASK_A,
                "sub-0",
                "n-1",
                &notification(TASK_A, &[], NextAction::PleaseAbort, None),
            ),
            message(
                TASK_B,
                "sub-1",
                "n-2",
                &notification(TASK_B, &[WORKER], NextAction::PleaseUpload, None),
            ),
        ],
    );
    let delivered = harness.next_notification().await;
    assert_eq!(
        (
            delivered.chain_task_id.as_str(),
            delivered.task_notification_type
        ),
        (TASK_B, NextAction::PleaseUpload),
        "the unsubscribed task's abort is dropped"
    );

    // Letting go of the handle stops the task, which closes the notification stream.
    drop(harness.handle);
    assert!(
        within("the end of the stream", harness.notifications.recv())
            .await
            .is_none()
    );
}

#[tokio::test]
async fn a_stomp_error_during_the_handshake_starts_a_new_session() {
    let mut harness = start().await;
    let first = harness.expect_opened().await;
    harness
        .core
        .push(&first, sockjs::http_frame(&SockJsFrame::Open));
    assert_eq!(harness.expect_frame(&first).await.command, command::CONNECT);
    harness
        .core
        .push_stomp(&first, &[stomp::error("Broker unavailable", "try later")]);

    let second = harness.expect_opened().await;
    assert_ne!(second, first);
    assert!(!harness.handle.is_connected());
    harness.accept_session(&second).await;
    within("connected", harness.handle.connected().wait_for(|up| *up))
        .await
        .unwrap();
}
