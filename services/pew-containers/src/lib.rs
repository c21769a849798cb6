//! Task containers for pew-workerd, through the Docker Engine API.
//!
//! On the node the engine is podman's Docker-compatible service (`/run/podman/podman.sock`,
//! socket-activated, so it costs nothing between tasks; see docs/image-notes.md §6). An iExec
//! standard task runs as one container ([`Engine::run`]): locked down (no privileges, every
//! capability dropped, no privilege escalation, non-root user, no network by default), with CPU,
//! memory and process limits, stopped at its deadline, its logs collected and the container
//! removed whatever happens.

mod args;
mod engine;
mod error;
mod logs;
mod spec;
pub mod testapp;
#[cfg(feature = "testing")]
pub mod testing;

pub use args::{UnbalancedQuotes, split_args, translate_commandline};
pub use engine::Engine;
pub use error::EngineError;
pub use logs::MAX_LOG_CHARS;
pub use spec::{Limits, Network, OUTPUT_MOUNT, RunOutcome, TaskContainer, UserId};
