//! SockJS 0.3 framing over the HTTP transports, both directions.
//!
//! The core serves STOMP through Spring's SockJS endpoint with WebSocket disabled, so a worker
//! talks to it with plain HTTP: it POSTs to `…/xhr` (one frame per response) or `…/xhr_streaming`
//! (a prelude then one frame per line) to receive, and POSTs JSON arrays of strings to
//! `…/xhr_send` to send. Everything here is the text of those bodies.

/// One SockJS frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// `o`: the session is open; always the first frame.
    Open,
    /// `h`: keep-alive, every 5 s on the core.
    Heartbeat,
    /// `a[…]`: messages, each one a STOMP frame here.
    Messages(Vec<String>),
    /// `c[code,"reason"]`: the session is over.
    Close(u16, String),
}

/// The close frame Spring sends on a session it has closed.
pub const GO_AWAY: (u16, &str) = (3000, "Go away!");

/// The close frame Spring sends when a second receive request arrives while one is pending.
pub const ANOTHER_CONNECTION_OPEN: (u16, &str) = (2010, "Another connection still open");

/// Length of the run of `h` that opens an `xhr_streaming` response, so that proxies and
/// browsers start delivering the stream at once.
pub const STREAMING_PRELUDE_LEN: usize = 2048;

/// Why a SockJS body was refused.
#[derive(Debug, thiserror::Error)]
pub enum SockJsError {
    #[error("empty SockJS frame")]
    Empty,
    #[error("unknown SockJS frame type {0:?} (expected o, h, a or c)")]
    UnknownType(char),
    #[error("SockJS {frame:?} frame followed by unexpected data {extra:?}")]
    UnexpectedData {
        /// `o` or `h`.
        frame: char,
        /// What came after it.
        extra: String,
    },
    #[error("SockJS messages are not a JSON array of strings: {0}")]
    BadMessages(#[source] serde_json::Error),
    #[error("SockJS close frame is not [code,\"reason\"]: {0}")]
    BadClose(#[source] serde_json::Error),
    #[error("SockJS stream line is not UTF-8")]
    NotUtf8,
}

/// Parses one frame: a polling response, or one line of a streaming response. The newline that
/// terminates a frame on the wire may be present or not.
pub fn parse_frame(body: &str) -> Result<Frame, SockJsError> {
    let frame = body.strip_suffix('\n').unwrap_or(body);
    let mut chars = frame.chars();
    let kind = chars.next().ok_or(SockJsError::Empty)?;
    let payload = chars.as_str();
    match kind {
        'o' | 'h' if !payload.is_empty() => Err(SockJsError::UnexpectedData {
            frame: kind,
            extra: payload.to_owned(),
        }),
        'o' => Ok(Frame::Open),
        'h' => Ok(Frame::Heartbeat),
        'a' => parse_messages(payload).map(Frame::Messages),
        'c' => serde_json::from_str::<(u16, String)>(payload)
            .map(|(code, reason)| Frame::Close(code, reason))
            .map_err(SockJsError::BadClose),
        other => Err(SockJsError::UnknownType(other)),
    }
}

/// Parses a JSON array of strings: the payload of an `a` frame, or an `xhr_send` body.
pub fn parse_messages(json: &str) -> Result<Vec<String>, SockJsError> {
    serde_json::from_str(json).map_err(SockJsError::BadMessages)
}

/// Writes messages as a JSON array of strings the way Spring does: Jackson's quoting, then the
/// SockJS protocol's extra escapes (so NUL, which ends every STOMP frame, becomes `\u0000`).
/// This is the body of an `xhr_send` and the payload of an `a` frame.
pub fn encode_messages<S: AsRef<str>>(messages: &[S]) -> String {
    let mut out = String::from("[");
    for (index, message) in messages.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        push_json_string(&mut out, message.as_ref());
    }
    out.push(']');
    out
}

/// Writes a frame without its terminating newline.
pub fn encode_frame(frame: &Frame) -> String {
    match frame {
        Frame::Open => "o".to_owned(),
        Frame::Heartbeat => "h".to_owned(),
        Frame::Messages(messages) => format!("a{}", encode_messages(messages)),
        Frame::Close(code, reason) => {
            let mut out = format!("c[{code},");
            push_json_string(&mut out, reason);
            out.push(']');
            out
        }
    }
}

/// A frame as an HTTP transport sends it: the body of an `xhr` poll response, or one line of an
/// `xhr_streaming` response.
pub fn http_frame(frame: &Frame) -> String {
    let mut out = encode_frame(frame);
    out.push('\n');
    out
}

/// What an `xhr_streaming` response starts with, before its first frame.
pub fn streaming_prelude() -> String {
    let mut prelude = "h".repeat(STREAMING_PRELUDE_LEN);
    prelude.push('\n');
    prelude
}

/// Appends `text` as a quoted JSON string, escaped exactly like Spring's
/// `Jackson2SockJsMessageCodec`.
fn push_json_string(out: &mut String, text: &str) {
    out.push('"');
    for ch in text.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            // Jackson's own escape for the other control characters, with upper-case hex.
            '\0'..='\u{1f}' => out.push_str(&format!("\\u{:04X}", u32::from(ch))),
            // SockJS requires these escaped too; Spring writes them in lower-case hex, and
            // characters outside the BMP as their escaped UTF-16 surrogates.
            _ if is_sockjs_special(ch) => {
                for unit in ch.encode_utf16(&mut [0; 2]) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            _ => out.push(ch),
        }
    }
    out.push('"');
}

/// The SockJS protocol's "escapable by server" characters beyond the JSON control characters.
fn is_sockjs_special(ch: char) -> bool {
    matches!(ch, '\u{200C}'..='\u{200F}' | '\u{2028}'..='\u{202F}' | '\u{2060}'..='\u{206F}' | '\u{FFF0}'..='\u{FFFF}')
        || u32::from(ch) > 0xFFFF
}

/// Splits an `xhr_streaming` response into frames as its bytes arrive, skipping the prelude.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    partial_line: Vec<u8>,
}

impl StreamDecoder {
    /// A decoder at the start of a response.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the next chunk of the response and returns the frames it completed.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<Frame>, SockJsError> {
        self.partial_line.extend_from_slice(chunk);
        let Some(last_newline) = self.partial_line.iter().rposition(|&b| b == b'\n') else {
            return Ok(Vec::new());
        };
        let rest = self.partial_line.split_off(last_newline + 1);
        let complete = std::mem::replace(&mut self.partial_line, rest);
        let text = std::str::from_utf8(&complete).map_err(|_| SockJsError::NotUtf8)?;
        text.lines()
            .filter(|line| !is_prelude(line))
            .map(parse_frame)
            .collect()
    }
}

fn is_prelude(line: &str) -> bool {
    line.len() > 1 && line.bytes().all(|b| b == b'h')
}

/// The server side of one SockJS session on the HTTP transports: decides what each receive
/// request gets. The caller holds a request for which [`ServerSession::poll`] returned `None`
/// until a message is pushed, or answers it with [`Frame::Heartbeat`] when the heartbeat
/// interval runs out.
#[derive(Debug, Default)]
pub struct ServerSession {
    opened: bool,
    queued: Vec<String>,
    closed: Option<(u16, String)>,
}

impl ServerSession {
    /// A session no receive request has reached yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues a message for the next receive request.
    pub fn push(&mut self, message: String) {
        self.queued.push(message);
    }

    /// Ends the session; receive requests get the close frame from now on.
    pub fn close(&mut self, code: u16, reason: &str) {
        self.closed = Some((code, reason.to_owned()));
    }

    /// Whether [`ServerSession::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.closed.is_some()
    }

    /// The frame for a receive request now: `o` first, then everything queued in one `a`
    /// frame, then the close frame once closed; `None` when there is nothing to say yet.
    pub fn poll(&mut self) -> Option<Frame> {
        if !self.opened {
            self.opened = true;
            return Some(Frame::Open);
        }
        if !self.queued.is_empty() {
            return Some(Frame::Messages(std::mem::take(&mut self.queued)));
        }
        self.closed
            .as_ref()
            .map(|(code, reason)| Frame::Close(*code, reason.clone()))
    }
}
