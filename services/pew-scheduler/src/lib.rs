//! The worker's network side towards the iExec scheduler (iexec-core v9) and the result proxy.
//!
//! - [`SchedulerClient`]: the core's REST API (login, registration, ping, task supply, status
//!   updates), with transparent re-login when the core forgets our token.
//! - [`Notifications`]: the core's push channel (STOMP over SockJS polling), reconnecting on
//!   its own.
//! - [`ResultProxyClient`]: upload of a task's result for IPFS pinning.
//! - [`Backoff`]: jittered retry pacing for every loop that talks to these peers.
//!
//! Message shapes and framings come from `pew-iexec`, signatures and hashes from `pew-poco`;
//! this crate only moves them over HTTP. Section numbers (§) refer to
//! `shared/reference/iexec-protocol.md`.

mod backoff;
mod client;
mod error;
mod http;
mod notifications;
mod result_proxy;

pub use backoff::{Backoff, Jitter};
pub use client::{SchedulerClient, StatusReply, UpdateOutcome};
pub use error::SchedulerError;
pub use notifications::{Notifications, NotificationsConfig, NotificationsHandle};
pub use result_proxy::{ResultProxyClient, ResultProxyError, UploadStep};
