//! Errors of the container engine client.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

/// Why an engine operation failed.
#[derive(Debug, Error)]
pub enum EngineError {
    /// The engine's socket path cannot be passed to the client.
    #[error("engine socket path {0:?} is not UTF-8")]
    SocketPath(PathBuf),
    /// The engine refused a request, or could not be reached where nothing waits for it (outside
    /// a run, or before its container started).
    #[error("container engine: {operation} failed")]
    Api {
        /// What was being done, e.g. "create container".
        operation: &'static str,
        /// The client's error, with the engine's message when it sent one.
        #[source]
        source: bollard::errors::Error,
    },
    /// The engine did not answer for longer than a run waits for it (see [`crate::Engine::run`]).
    #[error("the container engine did not answer for {for_:?} (to {what})")]
    Unreachable {
        /// What was being done when the run gave up, e.g. "wait for container".
        what: &'static str,
        /// How long the engine had been unreachable.
        for_: Duration,
    },
    /// The task container disappeared while it ran (removed by someone else, or lost by the
    /// engine while it was away): its outcome is unknown.
    #[error("container {name} is gone from the engine")]
    ContainerLost {
        /// The container's name.
        name: String,
    },
    /// A container was still running after SIGKILL and the time it was given to stop (a
    /// process stuck in the kernel, typically on slow storage).
    #[error("container {name} still runs {after:?} after SIGKILL")]
    StillRunning {
        /// The container's name.
        name: String,
        /// How long it was given.
        after: Duration,
    },
    /// An image pull overran its deadline.
    #[error("pulling {image} did not finish within {timeout:?}")]
    PullTimeout {
        /// The image being pulled.
        image: String,
        /// The deadline it overran.
        timeout: Duration,
    },
    /// A bind mount would be misread by the engine.
    #[error("bind {host:?} -> {target:?}: {reason}")]
    InvalidBind {
        /// Host side.
        host: PathBuf,
        /// Container side.
        target: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A limit does not fit the engine's signed 64-bit fields.
    #[error("{limit} = {value} is beyond what the engine accepts")]
    LimitOutOfRange {
        /// Which limit.
        limit: &'static str,
        /// The value asked for.
        value: u64,
    },
    /// No user was given and there is no output bind whose owner could be used.
    #[error(
        "no user given and no bind at {} to take the owner of",
        crate::OUTPUT_MOUNT
    )]
    NoDefaultUser,
    /// The owner of the output directory could not be read.
    #[error("reading the owner of {path:?}")]
    OutputOwner {
        /// The output directory.
        path: PathBuf,
        /// Why it could not be read.
        #[source]
        source: io::Error,
    },
    /// Task containers never run as root.
    #[error("refusing to run a task container as root (uid 0)")]
    RootUser,
    /// An empty fragment would match, and remove, every container.
    #[error("an empty container name fragment matches every container")]
    EmptyNameFragment,
}

/// Wraps a client error with what was being done.
pub(crate) fn api(operation: &'static str) -> impl FnOnce(bollard::errors::Error) -> EngineError {
    move |source| EngineError::Api { operation, source }
}
