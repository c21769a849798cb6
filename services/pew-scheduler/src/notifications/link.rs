//! One SockJS session over the `xhr` polling transport (the core disables WebSocket, §1.5).

use pew_iexec::{sockjs, stomp};
use reqwest::{StatusCode, Url};

use crate::backoff::entropy_u64;
use crate::http::{excerpt, exchange, join_segments};

/// Why the session cannot go on.
#[derive(Debug, thiserror::Error)]
pub(super) enum LinkError {
    #[error("{0}")]
    Transport(#[from] reqwest::Error),
    #[error("{operation}: HTTP {status}: {body}")]
    Status {
        operation: &'static str,
        status: u16,
        body: String,
    },
    #[error("unreadable SockJS frame: {0}")]
    Frame(String),
    #[error("cannot build the session URL from {0}")]
    Url(Url),
}

/// The receive and send URLs of a session: `<core>/connect/<server>/<session>/{xhr,xhr_send}`.
pub(super) struct Link {
    http: reqwest::Client,
    receive: Url,
    send: Url,
}

impl Link {
    /// A fresh session under `endpoint` (`<core>/connect`). SockJS sessions are created by the
    /// first receive request; a new id per attempt keeps a half-dead old session from
    /// answering for the new one.
    pub(super) fn new(http: &reqwest::Client, endpoint: &Url) -> Result<Self, LinkError> {
        let (server, session) = session_path();
        let url = |transport| {
            join_segments(endpoint, &[&server, &session, transport])
                .ok_or_else(|| LinkError::Url(endpoint.clone()))
        };
        Ok(Self {
            http: http.clone(),
            receive: url("xhr")?,
            send: url("xhr_send")?,
        })
    }

    /// One receive request. The server answers as soon as it has a frame, and with a heartbeat
    /// after 5 s of silence; it drops sessions left without a pending receive for about 5 s,
    /// so the caller polls again at once.
    pub(super) async fn receive(&self) -> Result<sockjs::Frame, LinkError> {
        let reply = exchange(self.http.post(self.receive.clone())).await?;
        if reply.status != StatusCode::OK {
            return Err(LinkError::Status {
                operation: "receive",
                status: reply.status.as_u16(),
                body: excerpt(&reply.body),
            });
        }
        sockjs::parse_frame(&reply.body)
            .map_err(|error| LinkError::Frame(format!("{error}: {:?}", excerpt(&reply.body))))
    }

    /// Sends STOMP frames as one SockJS message batch (the server answers 204).
    pub(super) async fn send(&self, frames: &[stomp::Frame]) -> Result<(), LinkError> {
        let messages: Vec<String> = frames.iter().map(stomp::Frame::encode).collect();
        let reply = exchange(
            self.http
                .post(self.send.clone())
                .body(sockjs::encode_messages(&messages)),
        )
        .await?;
        if reply.status.is_success() {
            Ok(())
        } else {
            Err(LinkError::Status {
                operation: "send",
                status: reply.status.as_u16(),
                body: excerpt(&reply.body),
            })
        }
    }
}

/// A server id of three digits and a session id of 32 hex digits (Spring uses a dashless UUID).
fn session_path() -> (String, String) {
    let server = format!("{:03}", entropy_u64() % 1000);
    let session = format!("{:016x}{:016x}", entropy_u64(), entropy_u64());
    (server, session)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_paths_have_sockjs_shape_and_differ() {
        let (server, session) = session_path();
        assert_eq!(server.len(), 3);
        assert!(server.bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(session.len(), 32);
        assert!(session.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(session, session_path().1);
    }

    #[test]
    fn urls_sit_under_the_connect_endpoint() {
        let endpoint = Url::parse("http://core:13000/connect").unwrap();
        let http = crate::http::json_client(std::time::Duration::from_secs(1)).unwrap();
        let link = Link::new(&http, &endpoint).unwrap();
        let receive: Vec<&str> = link.receive.path_segments().unwrap().collect();
        let send: Vec<&str> = link.send.path_segments().unwrap().collect();
        assert_eq!((receive[0], receive[3]), ("connect", "xhr"));
        assert_eq!((send[0], send[3]), ("connect", "xhr_send"));
        assert_eq!(receive[1..3], send[1..3]);
    }
}
