//! STOMP-level state of the notification session, free of I/O: which task topics we want,
//! which messages we already delivered, and which notifications concern this worker.

use std::collections::{BTreeMap, HashSet, VecDeque};

use pew_iexec::model::TaskNotification;
use pew_iexec::stomp::{self, command};

/// How many message ids are remembered to drop duplicates. The core pushes a handful of
/// notifications per task, so this covers far more than any redelivery window.
const REMEMBERED_MESSAGE_IDS: usize = 256;

/// A request from a [`super::NotificationsHandle`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Command {
    Subscribe(String),
    Unsubscribe(String),
}

/// What a STOMP frame received from the core calls for.
#[derive(Debug)]
pub(super) enum Inbound {
    /// The STOMP session is up; send these SUBSCRIBE frames (one per wanted task).
    Connected(Vec<stomp::Frame>),
    /// A notification for this worker (boxed: it dwarfs the other variants).
    Deliver(Box<TaskNotification>),
    /// Nothing to do; the reason is worth a debug line.
    Skipped(&'static str),
    /// A MESSAGE we cannot read; the session itself is fine.
    Malformed(String),
    /// The broker reported an error; STOMP closes the connection after an ERROR frame.
    Refused(String),
}

pub(super) struct Router {
    /// Compared case-insensitively with the recipients of each notification.
    worker_address: String,
    /// Task id → subscription id. Ids stay with their task across reconnections, so a log line
    /// names the same subscription before and after.
    subscriptions: BTreeMap<String, String>,
    next_subscription: u64,
    recent_message_ids: RecentIds,
    /// Whether the current session got CONNECTED; SUBSCRIBE before that is a protocol error.
    connected: bool,
}

impl Router {
    pub(super) fn new(worker_address: &str) -> Self {
        Self {
            worker_address: worker_address.to_owned(),
            subscriptions: BTreeMap::new(),
            next_subscription: 0,
            recent_message_ids: RecentIds::new(REMEMBERED_MESSAGE_IDS),
            connected: false,
        }
    }

    pub(super) fn is_connected(&self) -> bool {
        self.connected
    }

    /// The SockJS session is gone; STOMP state starts over with the next one.
    pub(super) fn disconnected(&mut self) {
        self.connected = false;
    }

    /// Records the command; returns the frame to send now if the session is up.
    pub(super) fn apply(&mut self, command: Command) -> Option<stomp::Frame> {
        match command {
            Command::Subscribe(task) => {
                if self.subscriptions.contains_key(&task) {
                    return None;
                }
                let id = format!("sub-{}", self.next_subscription);
                self.next_subscription += 1;
                let frame = self
                    .connected
                    .then(|| stomp::subscribe(&id, &stomp::task_topic(&task)));
                self.subscriptions.insert(task, id);
                frame
            }
            Command::Unsubscribe(task) => {
                let id = self.subscriptions.remove(&task)?;
                self.connected.then(|| stomp::unsubscribe(&id))
            }
        }
    }

    /// Reacts to one STOMP frame from the core.
    pub(super) fn on_frame(&mut self, frame: &stomp::Frame) -> Inbound {
        match frame.command.as_str() {
            command::CONNECTED => {
                self.connected = true;
                Inbound::Connected(
                    self.subscriptions
                        .iter()
                        .map(|(task, id)| stomp::subscribe(id, &stomp::task_topic(task)))
                        .collect(),
                )
            }
            command::MESSAGE => self.on_message(frame),
            command::ERROR => Inbound::Refused(frame.header("message").map_or_else(
                || String::from_utf8_lossy(&frame.body).into_owned(),
                str::to_owned,
            )),
            _ => Inbound::Skipped("STOMP frame without meaning for a subscriber"),
        }
    }

    fn on_message(&mut self, frame: &stomp::Frame) -> Inbound {
        if let Some(id) = frame.header("message-id")
            && !self.recent_message_ids.insert(id)
        {
            return Inbound::Skipped("duplicate message");
        }
        let notification: TaskNotification = match serde_json::from_slice(&frame.body) {
            Ok(notification) => notification,
            Err(error) => return Inbound::Malformed(format!("task notification: {error}")),
        };
        if !self.subscriptions.contains_key(&notification.chain_task_id) {
            // In flight when we unsubscribed: the worker is done with that task.
            return Inbound::Skipped("notification for a task we no longer follow");
        }
        if !notification.concerns(&self.worker_address) {
            return Inbound::Skipped("notification for other workers");
        }
        Inbound::Deliver(Box::new(notification))
    }
}

/// The last `capacity` distinct ids, oldest forgotten first.
struct RecentIds {
    order: VecDeque<String>,
    members: HashSet<String>,
    capacity: usize,
}

impl RecentIds {
    fn new(capacity: usize) -> Self {
        Self {
            order: VecDeque::with_capacity(capacity),
            members: HashSet::with_capacity(capacity),
            capacity,
        }
    }

    /// Remembers `id`; false if it was already remembered.
    fn insert(&mut self, id: &str) -> bool {
        if self.members.contains(id) {
            return false;
        }
        if self.order.len() == self.capacity
            && let Some(oldest) = self.order.pop_front()
        {
            self.members.remove(&oldest);
        }
        self.order.push_back(id.to_owned());
        self.members.insert(id.to_owned());
        true
    }
}

#[cfg(test)]
mod tests {
    use pew_iexec::status::NextAction;

    use super::*;

    const WORKER: &str = "0x9a5c2f0e8c5e0b6bd9d4f4a4c1e1b2b0f1c2d3e4";
    const TASK: &str = "0xaaaa000000000000000000000000000000000000000000000000000000000001";

    fn message(id: &str, json: &str) -> stomp::Frame {
        stomp::message(&stomp::task_topic(TASK), "sub-0", id, json)
    }

    fn broadcast(action: &str) -> String {
        format!(
            r#"{{"chainTaskId":"{TASK}","workersAddress":[],"taskNotificationType":"{action}"}}"#
        )
    }

    fn connected_router() -> Router {
        let mut router = Router::new(WORKER);
        router.apply(Command::Subscribe(TASK.into()));
        assert!(
            matches!(router.on_frame(&stomp::connected()), Inbound::Connected(frames) if frames.len() == 1)
        );
        router
    }

    #[test]
    fn subscriptions_wait_for_connected_then_go_out_at_once() {
        let mut router = Router::new(WORKER);
        assert_eq!(
            router.apply(Command::Subscribe(TASK.into())),
            None,
            "no SUBSCRIBE before CONNECTED"
        );
        let Inbound::Connected(frames) = router.on_frame(&stomp::connected()) else {
            panic!("not connected")
        };
        assert_eq!(
            frames,
            [stomp::subscribe("sub-0", &stomp::task_topic(TASK))]
        );

        let later = "0xbb";
        assert_eq!(
            router.apply(Command::Subscribe(later.into())),
            Some(stomp::subscribe("sub-1", "/topic/task/0xbb"))
        );
        assert_eq!(
            router.apply(Command::Subscribe(later.into())),
            None,
            "already subscribed"
        );
        assert_eq!(
            router.apply(Command::Unsubscribe(later.into())),
            Some(stomp::unsubscribe("sub-1"))
        );
        assert_eq!(
            router.apply(Command::Unsubscribe(later.into())),
            None,
            "not subscribed any more"
        );
    }

    #[test]
    fn a_task_dropped_while_offline_is_not_resubscribed() {
        let mut router = connected_router();
        router.disconnected();
        assert_eq!(router.apply(Command::Unsubscribe(TASK.into())), None);
        assert!(
            matches!(router.on_frame(&stomp::connected()), Inbound::Connected(frames) if frames.is_empty())
        );
    }

    #[test]
    fn messages_are_delivered_once_per_message_id() {
        let mut router = connected_router();
        let json = broadcast("PLEASE_COMPLETE");
        let Inbound::Deliver(notification) = router.on_frame(&message("m-1", &json)) else {
            panic!("not delivered")
        };
        assert_eq!(
            notification.task_notification_type,
            NextAction::PleaseComplete
        );
        assert!(matches!(
            router.on_frame(&message("m-1", &json)),
            Inbound::Skipped(_)
        ));
        assert!(matches!(
            router.on_frame(&message("m-2", &json)),
            Inbound::Deliver(_)
        ));
    }

    #[test]
    fn unreadable_notifications_and_broker_errors_are_told_apart() {
        let mut router = connected_router();
        assert!(matches!(
            router.on_frame(&message("m-1", "{not json")),
            Inbound::Malformed(_)
        ));
        let refused = router.on_frame(&stomp::error("Session closed", "details"));
        assert!(matches!(refused, Inbound::Refused(reason) if reason == "Session closed"));
        assert!(matches!(
            router.on_frame(&stomp::Frame::new(command::RECEIPT)),
            Inbound::Skipped(_)
        ));
    }

    #[test]
    fn recent_ids_forget_the_oldest_beyond_capacity() {
        let mut recent = RecentIds::new(2);
        assert!(recent.insert("a") && recent.insert("b"));
        assert!(!recent.insert("a"));
        assert!(recent.insert("c"), "evicts a");
        assert!(recent.insert("a"), "a was forgotten");
        assert!(!recent.insert("c"));
    }
}
