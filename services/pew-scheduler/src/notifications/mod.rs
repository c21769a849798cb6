//! Push notifications from the core: STOMP 1.2 over a SockJS `xhr` polling session on
//! `<core>/connect` (§1.5). `PLEASE_REVEAL`, `PLEASE_UPLOAD`, `PLEASE_COMPLETE` and most aborts
//! only ever arrive this way.
//!
//! One background task owns the session. It reconnects with backoff whenever the session
//! breaks (transport error, close frame, STOMP ERROR, no CONNECTED in time) and re-subscribes
//! every task topic the worker still follows.

mod link;
mod router;

use std::time::Duration;

use pew_iexec::model::TaskNotification;
use pew_iexec::{sockjs, stomp};
use reqwest::Url;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use crate::backoff::{Backoff, Jitter};
use crate::error::SchedulerError;
use crate::http::{self, join_segments};
use link::Link;
use router::{Command, Inbound, Router};

/// Tuning of the notification session; [`Default`] suits a real core.
#[derive(Debug, Clone)]
pub struct NotificationsConfig {
    /// Pacing of reconnections; reset once a session reaches STOMP CONNECTED.
    pub reconnect: Backoff,
    /// Longest a single HTTP request may take. The core answers a pending receive with a
    /// heartbeat every 5 s, so a receive much older than that means the link is dead.
    pub request_timeout: Duration,
    /// Longest wait from opening a session to STOMP CONNECTED.
    pub handshake_timeout: Duration,
    /// Notifications buffered for the worker before the session waits for it to catch up.
    pub queue_capacity: usize,
}

impl Default for NotificationsConfig {
    fn default() -> Self {
        Self {
            reconnect: Backoff::new(
                Duration::from_secs(1),
                Duration::from_secs(60),
                Jitter::Decorrelated,
            ),
            request_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(30),
            queue_capacity: 64,
        }
    }
}

/// Controls the notification task. Cheap to clone; the task stops when every handle is
/// dropped or when the notification receiver is.
#[derive(Debug, Clone)]
pub struct NotificationsHandle {
    commands: mpsc::UnboundedSender<Command>,
    connected: watch::Receiver<bool>,
}

impl NotificationsHandle {
    /// Follows the task's topic, now if the session is up, otherwise as soon as it is.
    pub fn subscribe(&self, chain_task_id: &str) {
        self.command(Command::Subscribe(chain_task_id.to_owned()));
    }

    /// Stops following the task's topic; its notifications still in flight are dropped.
    pub fn unsubscribe(&self, chain_task_id: &str) {
        self.command(Command::Unsubscribe(chain_task_id.to_owned()));
    }

    /// Whether the STOMP session is up right now.
    pub fn is_connected(&self) -> bool {
        *self.connected.borrow()
    }

    /// Follows the session state, e.g. `connected().wait_for(|up| *up).await` before reporting
    /// a status whose follow-up only comes as a notification.
    pub fn connected(&self) -> watch::Receiver<bool> {
        self.connected.clone()
    }

    fn command(&self, command: Command) {
        // Sending only fails once the task has stopped, which happens when the worker dropped
        // the receiver: nobody is listening for that task's notifications any more.
        if self.commands.send(command).is_err() {
            debug!("notification task stopped; subscription change ignored");
        }
    }
}

/// The background task that owns the notification session.
pub struct Notifications {
    http: reqwest::Client,
    /// `<core>/connect`.
    endpoint: Url,
    config: NotificationsConfig,
    router: Router,
    commands: mpsc::UnboundedReceiver<Command>,
    deliveries: mpsc::Sender<TaskNotification>,
    connected: watch::Sender<bool>,
}

/// How a session ended.
enum Ended {
    /// The worker let go of the handles or of the receiver.
    Shutdown,
    /// The session broke; try again.
    Lost(String),
}

impl Notifications {
    /// Starts the task with the default configuration. `worker_address` is our identity
    /// towards the core (see [`crate::SchedulerClient::wallet_address`]). Must be called
    /// within a Tokio runtime.
    pub fn spawn(
        base_url: &str,
        worker_address: &str,
    ) -> Result<(NotificationsHandle, mpsc::Receiver<TaskNotification>), SchedulerError> {
        Self::spawn_with(base_url, worker_address, NotificationsConfig::default())
    }

    /// Starts the task with an explicit configuration.
    pub fn spawn_with(
        base_url: &str,
        worker_address: &str,
        config: NotificationsConfig,
    ) -> Result<(NotificationsHandle, mpsc::Receiver<TaskNotification>), SchedulerError> {
        let invalid = |reason: String| SchedulerError::InvalidUrl {
            url: base_url.to_owned(),
            reason,
        };
        let base = http::parse_base_url(base_url).map_err(invalid)?;
        let endpoint = join_segments(&base, &["connect"])
            .ok_or_else(|| invalid("cannot append a path".to_owned()))?;
        let http = http::json_client(config.request_timeout).map_err(SchedulerError::Client)?;
        let (command_sender, commands) = mpsc::unbounded_channel();
        let (deliveries, notifications) = mpsc::channel(config.queue_capacity.max(1));
        let (connected, connected_receiver) = watch::channel(false);
        let task = Self {
            http,
            endpoint,
            config,
            router: Router::new(worker_address),
            commands,
            deliveries,
            connected,
        };
        tokio::spawn(task.run());
        Ok((
            NotificationsHandle {
                commands: command_sender,
                connected: connected_receiver,
            },
            notifications,
        ))
    }

    async fn run(mut self) {
        loop {
            let ended = self.session().await;
            self.router.disconnected();
            let was_connected = self.connected.send_replace(false);
            let reason = match ended {
                Ended::Shutdown => {
                    debug!("notification task stopping");
                    return;
                }
                Ended::Lost(reason) => reason,
            };
            let delay = self.config.reconnect.next_delay();
            if was_connected {
                info!(%reason, ?delay, "notifications: disconnected from the core; reconnecting");
            } else {
                debug!(%reason, ?delay, "notifications: cannot reach the core; retrying");
            }
            if !self.pause(delay).await {
                return;
            }
        }
    }

    /// One SockJS session, from opening to its end.
    async fn session(&mut self) -> Ended {
        let link = match Link::new(&self.http, &self.endpoint) {
            Ok(link) => link,
            Err(error) => return Ended::Lost(error.to_string()),
        };
        match link.receive().await {
            Ok(sockjs::Frame::Open) => {}
            Ok(other) => {
                return Ended::Lost(format!("expected the SockJS open frame, got {other:?}"));
            }
            Err(error) => return Ended::Lost(error.to_string()),
        }
        if let Err(error) = link.send(&[stomp::connect()]).await {
            return Ended::Lost(error.to_string());
        }

        let handshake_deadline = tokio::time::sleep(self.config.handshake_timeout);
        tokio::pin!(handshake_deadline);
        let receive = link.receive();
        tokio::pin!(receive);
        loop {
            tokio::select! {
                received = &mut receive => {
                    receive.set(link.receive());
                    let messages = match received {
                        Ok(sockjs::Frame::Messages(messages)) => messages,
                        Ok(sockjs::Frame::Open | sockjs::Frame::Heartbeat) => continue,
                        Ok(sockjs::Frame::Close(code, reason)) => {
                            return Ended::Lost(format!("closed by the core: {code} {reason}"));
                        }
                        Err(error) => return Ended::Lost(error.to_string()),
                    };
                    for message in &messages {
                        if let Some(ended) = self.on_message(&link, message).await {
                            return ended;
                        }
                    }
                }
                command = self.commands.recv() => {
                    let Some(command) = command else { return Ended::Shutdown };
                    if let Some(frame) = self.router.apply(command)
                        && let Err(error) = link.send(&[frame]).await
                    {
                        return Ended::Lost(error.to_string());
                    }
                }
                () = &mut handshake_deadline, if !self.router.is_connected() => {
                    return Ended::Lost("no STOMP CONNECTED in time".to_owned());
                }
                () = self.deliveries.closed() => return Ended::Shutdown,
            }
        }
    }

    /// Handles one SockJS message (STOMP frames, or only heart-beats); `Some` ends the session.
    async fn on_message(&mut self, link: &Link, message: &str) -> Option<Ended> {
        let frames = match stomp::parse_frames(message) {
            Ok(frames) => frames,
            Err(error) => {
                warn!(%error, "notifications: unreadable STOMP message ignored");
                return None;
            }
        };
        for frame in &frames {
            if let Some(ended) = self.on_frame(link, frame).await {
                return Some(ended);
            }
        }
        None
    }

    async fn on_frame(&mut self, link: &Link, frame: &stomp::Frame) -> Option<Ended> {
        match self.router.on_frame(frame) {
            Inbound::Connected(subscriptions) => {
                self.config.reconnect.reset();
                self.connected.send_replace(true);
                info!(endpoint = %self.endpoint, topics = subscriptions.len(), "notifications: connected to the core");
                if !subscriptions.is_empty()
                    && let Err(error) = link.send(&subscriptions).await
                {
                    return Some(Ended::Lost(error.to_string()));
                }
            }
            Inbound::Deliver(notification) => {
                if self.deliveries.send(*notification).await.is_err() {
                    return Some(Ended::Shutdown);
                }
            }
            Inbound::Skipped(reason) => debug!(reason, "notifications: frame skipped"),
            Inbound::Malformed(reason) => warn!(%reason, "notifications: message ignored"),
            Inbound::Refused(reason) => {
                return Some(Ended::Lost(format!("STOMP ERROR from the core: {reason}")));
            }
        }
        None
    }

    /// Waits out a reconnection delay while still taking subscription changes; false once the
    /// worker let go of the handles or of the receiver.
    async fn pause(&mut self, delay: Duration) -> bool {
        let wake = tokio::time::sleep(delay);
        tokio::pin!(wake);
        loop {
            tokio::select! {
                () = &mut wake => return true,
                command = self.commands.recv() => match command {
                    // Offline, the router only records the change: nothing to send.
                    Some(command) => { self.router.apply(command); }
                    None => return false,
                },
                () = self.deliveries.closed() => return false,
            }
        }
    }
}
