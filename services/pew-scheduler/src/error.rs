//! Errors of the core (scheduler) client.

use reqwest::StatusCode;

use crate::http::{Reply, excerpt};

/// Why a call to the core failed. Every variant names the endpoint (`"GET /workers/config"`).
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// The core refused our credentials, even after a fresh login (or the login itself was
    /// refused: wrong signature, wallet not whitelisted).
    #[error("{endpoint}: unauthorized (401)")]
    Unauthorized { endpoint: &'static str },
    /// 503: the core has lost its blockchain node and hands out nothing until it is back.
    #[error("{endpoint}: the core's chain connection is down (503)")]
    ChainUnavailable { endpoint: &'static str },
    /// Any other unexpected status.
    #[error("{endpoint}: HTTP {status}: {body}")]
    Server {
        endpoint: &'static str,
        status: u16,
        /// The start of the body.
        body: String,
    },
    /// No complete reply within the client's timeout.
    #[error("{endpoint}: timed out")]
    Timeout { endpoint: &'static str },
    /// The connection could not be made or broke.
    #[error("{endpoint}: {source}")]
    Transport {
        endpoint: &'static str,
        #[source]
        source: reqwest::Error,
    },
    /// A 2xx reply whose body is not what the endpoint promises.
    #[error("{endpoint}: cannot decode reply ({reason}): {body:?}")]
    Decode {
        endpoint: &'static str,
        reason: String,
        /// The start of the body.
        body: String,
    },
    /// The configured URL cannot be used.
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// The HTTP client could not be built (TLS initialisation).
    #[error("cannot build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

impl SchedulerError {
    /// Whether the same call may succeed later without any change on our side: the network or
    /// the core's chain link came back, or the core recovered from an internal error. A refused
    /// login, a 4xx or an undecodable reply will fail the same way again.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::ChainUnavailable { .. } | Self::Timeout { .. } | Self::Transport { .. } => true,
            Self::Server { status, .. } => {
                *status >= 500 || *status == StatusCode::TOO_MANY_REQUESTS.as_u16()
            }
            Self::Unauthorized { .. }
            | Self::Decode { .. }
            | Self::InvalidUrl { .. }
            | Self::Client(_) => false,
        }
    }

    pub(crate) fn transport(endpoint: &'static str, source: reqwest::Error) -> Self {
        if source.is_timeout() {
            Self::Timeout { endpoint }
        } else {
            Self::Transport { endpoint, source }
        }
    }

    /// The error for a reply whose status the endpoint does not accept.
    pub(crate) fn unexpected(endpoint: &'static str, reply: &Reply) -> Self {
        match reply.status {
            StatusCode::UNAUTHORIZED => Self::Unauthorized { endpoint },
            StatusCode::SERVICE_UNAVAILABLE => Self::ChainUnavailable { endpoint },
            status => Self::Server {
                endpoint,
                status: status.as_u16(),
                body: excerpt(&reply.body),
            },
        }
    }

    pub(crate) fn decode(endpoint: &'static str, reason: impl ToString, body: &str) -> Self {
        Self::Decode {
            endpoint,
            reason: reason.to_string(),
            body: excerpt(body),
        }
    }
}
