//! The core's push channel: a STOMP simple broker reached through SockJS XHR polling
//! (Spring's `/connect` endpoint with WebSocket disabled and a 5 s heartbeat).
//!
//! Each SockJS session carries one STOMP connection. A worker subscribes to
//! `/topic/task/{chainTaskId}`; the scheduler publishes `TaskNotification`s there.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use pew_iexec::sockjs::{self, ANOTHER_CONNECTION_OPEN, Frame as SockJsFrame, ServerSession};
use pew_iexec::stomp::{self, Frame as StompFrame, command};
use tokio::sync::Notify;

/// Why an `xhr_send` was refused, with Spring's status and message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SendRefusal {
    /// No such session (404).
    #[error("session not found")]
    UnknownSession,
    /// Empty body (500 `Payload expected.`).
    #[error("Payload expected.")]
    EmptyPayload,
    /// Body not a JSON array of strings (500 `Broken JSON encoding.`).
    #[error("Broken JSON encoding.")]
    BrokenJson,
}

#[derive(Debug)]
struct Subscription {
    id: String,
    destination: String,
}

#[derive(Debug)]
struct Session {
    sockjs: ServerSession,
    subscriptions: Vec<Subscription>,
    wake: Arc<Notify>,
    polling: bool,
    /// When the last poll ended, or the session was created.
    idle_since: Instant,
    /// Messages delivered on this session, for STOMP `message-id`s.
    delivered: u64,
}

impl Session {
    fn new(now: Instant) -> Self {
        Self {
            sockjs: ServerSession::new(),
            subscriptions: Vec::new(),
            wake: Arc::new(Notify::new()),
            polling: false,
            idle_since: now,
            delivered: 0,
        }
    }

    fn push(&mut self, frame: &StompFrame) {
        self.sockjs.push(frame.encode());
        if self.polling {
            self.wake.notify_one();
        }
    }
}

/// SockJS sessions and their STOMP subscriptions.
#[derive(Debug)]
pub(crate) struct PushChannel {
    sessions: Mutex<HashMap<String, Session>>,
    heartbeat: Duration,
    disconnect_delay: Duration,
}

/// Clears a session's "poll pending" mark however the poll ends (answered, or dropped because
/// the client went away), so that the session can time out.
struct PendingPoll<'a> {
    channel: &'a PushChannel,
    session_id: &'a str,
}

impl Drop for PendingPoll<'_> {
    fn drop(&mut self) {
        if let Some(session) = self.channel.lock().get_mut(self.session_id) {
            session.polling = false;
            session.idle_since = Instant::now();
        }
    }
}

impl PushChannel {
    pub(crate) fn new(heartbeat: Duration, disconnect_delay: Duration) -> Self {
        Self {
            sessions: Mutex::new(HashMap::new()),
            heartbeat,
            disconnect_delay,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Session>> {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `POST /connect/{server}/{session}/xhr`: opens the session, or returns what is queued, or
    /// waits for a message up to the heartbeat interval. Returns the HTTP body (one frame).
    pub(crate) async fn poll(&self, session_id: &str) -> String {
        let wake = {
            let mut sessions = self.lock();
            let session = match sessions.entry(session_id.to_owned()) {
                Entry::Vacant(vacant) => vacant.insert(Session::new(Instant::now())),
                Entry::Occupied(occupied) => occupied.into_mut(),
            };
            if session.polling {
                let (code, reason) = ANOTHER_CONNECTION_OPEN;
                return sockjs::http_frame(&SockJsFrame::Close(code, reason.to_owned()));
            }
            if let Some(frame) = session.sockjs.poll() {
                if matches!(frame, SockJsFrame::Close(..)) {
                    sessions.remove(session_id);
                }
                return sockjs::http_frame(&frame);
            }
            session.polling = true;
            Arc::clone(&session.wake)
        };
        let pending = PendingPoll {
            channel: self,
            session_id,
        };
        // Whichever comes first: a message (woken) or the heartbeat.
        let _ = tokio::time::timeout(self.heartbeat, wake.notified()).await;
        let frame = self
            .lock()
            .get_mut(session_id)
            .and_then(|session| session.sockjs.poll())
            .unwrap_or(SockJsFrame::Heartbeat);
        drop(pending);
        sockjs::http_frame(&frame)
    }

    /// `POST /connect/{server}/{session}/xhr_send`: feeds the STOMP frames of `body` (a JSON array
    /// of SockJS messages) to the broker.
    pub(crate) fn send(&self, session_id: &str, body: &str) -> Result<(), SendRefusal> {
        if body.is_empty() {
            return Err(SendRefusal::EmptyPayload);
        }
        let messages = sockjs::parse_messages(body).map_err(|_| SendRefusal::BrokenJson)?;
        let mut sessions = self.lock();
        let session = sessions
            .get_mut(session_id)
            .ok_or(SendRefusal::UnknownSession)?;
        let mut published = Vec::new();
        for message in messages {
            match stomp::parse_frames(&message) {
                Ok(frames) => {
                    for frame in frames {
                        if let Some(publication) = handle_client_frame(session, &frame) {
                            published.push(publication);
                        }
                    }
                }
                Err(error) => {
                    // Spring answers a frame it cannot decode with ERROR and closes the session.
                    session.push(&stomp::error("Failed to parse frame", &error.to_string()));
                    let (code, reason) = sockjs::GO_AWAY;
                    session.sockjs.close(code, reason);
                    break;
                }
            }
        }
        for (destination, body) in published {
            deliver(&mut sessions, &destination, &body);
        }
        Ok(())
    }

    /// Publishes a JSON message on `destination` to every subscriber.
    pub(crate) fn publish(&self, destination: &str, json: &str) {
        deliver(&mut self.lock(), destination, json);
    }

    /// Closes every session with `c[3000,"Go away!"]`, as a restarting broker would: clients must
    /// open a new session and subscribe again.
    pub(crate) fn close_all(&self) {
        let (code, reason) = sockjs::GO_AWAY;
        for session in self.lock().values_mut() {
            session.subscriptions.clear();
            session.sockjs.close(code, reason);
            if session.polling {
                session.wake.notify_one();
            }
        }
    }

    /// Closes sessions that had no pending poll for longer than the disconnect delay; their
    /// subscriptions go with them.
    pub(crate) fn reap(&self, now: Instant) {
        let delay = self.disconnect_delay;
        self.lock().retain(|_, session| {
            session.polling || now.saturating_duration_since(session.idle_since) <= delay
        });
    }

    /// Number of live sessions subscribed to `destination`.
    pub(crate) fn subscribers(&self, destination: &str) -> usize {
        self.lock()
            .values()
            .filter(|session| {
                session
                    .subscriptions
                    .iter()
                    .any(|sub| sub.destination == destination)
            })
            .count()
    }
}

/// One client frame, as Spring's `StompSubProtocolHandler` and `SimpleBrokerMessageHandler`
/// treat it. Returns a `(destination, body)` to broadcast for `SEND`.
fn handle_client_frame(session: &mut Session, frame: &StompFrame) -> Option<(String, String)> {
    let receipt = frame.header("receipt").map(str::to_owned);
    let mut publication = None;
    match frame.command.as_str() {
        command::CONNECT | command::STOMP => session.push(&stomp::connected()),
        command::SUBSCRIBE => match (frame.header("id"), frame.header("destination")) {
            (Some(id), Some(destination)) => {
                session.subscriptions.push(Subscription {
                    id: id.to_owned(),
                    destination: destination.to_owned(),
                });
            }
            _ => session.push(&stomp::error("SUBSCRIBE needs id and destination", "")),
        },
        command::UNSUBSCRIBE => {
            if let Some(id) = frame.header("id") {
                session.subscriptions.retain(|sub| sub.id != id);
            }
        }
        command::DISCONNECT => session.subscriptions.clear(),
        command::SEND => {
            if let Some(destination) = frame
                .header("destination")
                .filter(|d| d.starts_with("/topic"))
            {
                publication = Some((
                    destination.to_owned(),
                    String::from_utf8_lossy(&frame.body).into_owned(),
                ));
            }
        }
        // ACK, NACK and transactions mean nothing to a simple broker without acknowledgements.
        _ => {}
    }
    if let Some(receipt) = receipt {
        session.push(&StompFrame::new(command::RECEIPT).with_header("receipt-id", &receipt));
    }
    publication
}

fn deliver(sessions: &mut HashMap<String, Session>, destination: &str, json: &str) {
    for (session_id, session) in sessions.iter_mut() {
        let subscription_ids: Vec<String> = session
            .subscriptions
            .iter()
            .filter(|sub| sub.destination == destination)
            .map(|sub| sub.id.clone())
            .collect();
        for subscription in subscription_ids {
            session.delivered += 1;
            let message_id = format!("{session_id}-{}", session.delivered);
            session.push(&stomp::message(
                destination,
                &subscription,
                &message_id,
                json,
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel() -> PushChannel {
        PushChannel::new(Duration::from_secs(5), Duration::from_secs(5))
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
    }

    fn send_frames(channel: &PushChannel, session: &str, frames: &[StompFrame]) {
        let messages: Vec<String> = frames.iter().map(StompFrame::encode).collect();
        channel
            .send(session, &sockjs::encode_messages(&messages))
            .unwrap();
    }

    /// The STOMP frames of one `a[...]` poll answer.
    fn stomp_frames(body: &str) -> Vec<StompFrame> {
        match sockjs::parse_frame(body).unwrap() {
            SockJsFrame::Messages(messages) => messages
                .iter()
                .flat_map(|message| stomp::parse_frames(message).unwrap())
                .collect(),
            other => panic!("expected messages, got {other:?}"),
        }
    }

    #[test]
    fn first_poll_opens_then_connect_subscribe_and_publish_are_delivered_in_order() {
        let rt = runtime();
        let channel = channel();
        assert_eq!(rt.block_on(channel.poll("s1")), "o\n");
        send_frames(
            &channel,
            "s1",
            &[
                stomp::connect(),
                stomp::subscribe("sub-0", "/topic/task/0xabc"),
            ],
        );
        channel.publish("/topic/task/0xabc", r#"{"n":1}"#);
        channel.publish("/topic/task/0xother", r#"{"n":2}"#);
        let frames = stomp_frames(&rt.block_on(channel.poll("s1")));
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0].command, "CONNECTED");
        assert_eq!(frames[0].header("version"), Some("1.2"));
        assert_eq!(frames[1].command, "MESSAGE");
        assert_eq!(frames[1].header("destination"), Some("/topic/task/0xabc"));
        assert_eq!(frames[1].header("subscription"), Some("sub-0"));
        assert_eq!(frames[1].header("message-id"), Some("s1-1"));
        assert_eq!(frames[1].body_text().unwrap(), r#"{"n":1}"#);
    }

    #[test]
    fn pending_poll_is_woken_by_a_publication() {
        let rt = runtime();
        let channel = Arc::new(PushChannel::new(
            Duration::from_secs(3600),
            Duration::from_secs(5),
        ));
        rt.block_on(channel.poll("s1"));
        send_frames(
            &channel,
            "s1",
            &[stomp::subscribe("sub-0", "/topic/task/0x1")],
        );
        let body = rt.block_on(async {
            let poller = Arc::clone(&channel);
            let poll = tokio::spawn(async move { poller.poll("s1").await });
            // Let the poll register itself, then publish.
            while !channel.lock().get("s1").is_some_and(|s| s.polling) {
                tokio::task::yield_now().await;
            }
            channel.publish("/topic/task/0x1", "{}");
            poll.await.unwrap()
        });
        assert_eq!(stomp_frames(&body)[0].command, "MESSAGE");
    }

    #[test]
    fn idle_poll_answers_a_heartbeat() {
        let rt = runtime();
        let channel = PushChannel::new(Duration::from_millis(1), Duration::from_secs(5));
        rt.block_on(channel.poll("s1"));
        assert_eq!(rt.block_on(channel.poll("s1")), "h\n");
    }

    #[test]
    fn second_concurrent_poll_is_refused_with_2010() {
        let channel = channel();
        runtime().block_on(channel.poll("s1"));
        channel.lock().get_mut("s1").unwrap().polling = true;
        assert_eq!(
            runtime().block_on(channel.poll("s1")),
            "c[2010,\"Another connection still open\"]\n"
        );
    }

    #[test]
    fn send_errors_follow_spring() {
        let channel = channel();
        assert_eq!(
            channel.send("nope", "[\"x\"]"),
            Err(SendRefusal::UnknownSession)
        );
        runtime().block_on(channel.poll("s1"));
        assert_eq!(channel.send("s1", ""), Err(SendRefusal::EmptyPayload));
        assert_eq!(channel.send("s1", "not json"), Err(SendRefusal::BrokenJson));
    }

    #[test]
    fn receipt_unsubscribe_and_send_are_honoured() {
        let rt = runtime();
        let channel = channel();
        rt.block_on(channel.poll("s1"));
        rt.block_on(channel.poll("s2"));
        send_frames(
            &channel,
            "s1",
            &[stomp::subscribe("a", "/topic/t").with_header("receipt", "r-1")],
        );
        send_frames(
            &channel,
            "s2",
            &[stomp::subscribe("b", "/topic/t"), stomp::unsubscribe("b")],
        );
        assert_eq!(channel.subscribers("/topic/t"), 1);
        let send = StompFrame::new(command::SEND)
            .with_header("destination", "/topic/t")
            .with_body("application/json", "{}");
        send_frames(&channel, "s2", &[send]);
        let frames = stomp_frames(&rt.block_on(channel.poll("s1")));
        assert_eq!(frames[0].command, "RECEIPT");
        assert_eq!(frames[0].header("receipt-id"), Some("r-1"));
        assert_eq!(frames[1].command, "MESSAGE");
        assert_eq!(frames[1].body_text().unwrap(), "{}");
    }

    #[test]
    fn undecodable_frame_gets_error_then_go_away() {
        let rt = runtime();
        let channel = channel();
        rt.block_on(channel.poll("s1"));
        channel
            .send("s1", &sockjs::encode_messages(&["BOGUS\n\n\0"]))
            .unwrap();
        let frames = stomp_frames(&rt.block_on(channel.poll("s1")));
        assert_eq!(frames[0].command, "ERROR");
        assert_eq!(rt.block_on(channel.poll("s1")), "c[3000,\"Go away!\"]\n");
        assert_eq!(
            rt.block_on(channel.poll("s1")),
            "o\n",
            "the closed session is gone; a new one opens"
        );
    }

    #[test]
    fn closing_all_sessions_says_go_away_then_forgets_them() {
        let rt = runtime();
        let channel = channel();
        rt.block_on(channel.poll("s1"));
        send_frames(&channel, "s1", &[stomp::subscribe("a", "/topic/t")]);
        channel.close_all();
        assert_eq!(channel.subscribers("/topic/t"), 0);
        assert_eq!(rt.block_on(channel.poll("s1")), "c[3000,\"Go away!\"]\n");
        assert_eq!(rt.block_on(channel.poll("s1")), "o\n");
    }

    #[test]
    fn sessions_without_a_poll_for_the_disconnect_delay_are_reaped() {
        let rt = runtime();
        let channel = channel();
        rt.block_on(channel.poll("s1"));
        send_frames(&channel, "s1", &[stomp::subscribe("a", "/topic/t")]);
        let created = channel.lock()["s1"].idle_since;
        channel.reap(created + Duration::from_secs(5));
        assert_eq!(channel.subscribers("/topic/t"), 1);
        channel.reap(created + Duration::from_secs(6));
        assert_eq!(channel.subscribers("/topic/t"), 0);
    }
}
