//! STOMP 1.2 frames, as carried inside SockJS messages between the core's simple broker and a
//! worker.
//!
//! A frame is a command line, `name:value` header lines, a blank line, the body and a NUL byte.
//! Header names and values escape `\r`, `\n`, `:` and `\` — except in `CONNECT` and `CONNECTED`,
//! which STOMP 1.2 leaves unescaped for 1.0 peers. A `content-length` header, when present,
//! decides where the body ends (so a body may contain NUL); otherwise the first NUL does.
//! Heart-beats are bare end-of-lines between frames.

use std::str::Utf8Error;

/// The commands of STOMP 1.2.
pub mod command {
    pub const CONNECT: &str = "CONNECT";
    pub const STOMP: &str = "STOMP";
    pub const CONNECTED: &str = "CONNECTED";
    pub const SEND: &str = "SEND";
    pub const SUBSCRIBE: &str = "SUBSCRIBE";
    pub const UNSUBSCRIBE: &str = "UNSUBSCRIBE";
    pub const ACK: &str = "ACK";
    pub const NACK: &str = "NACK";
    pub const BEGIN: &str = "BEGIN";
    pub const COMMIT: &str = "COMMIT";
    pub const ABORT: &str = "ABORT";
    pub const DISCONNECT: &str = "DISCONNECT";
    pub const MESSAGE: &str = "MESSAGE";
    pub const RECEIPT: &str = "RECEIPT";
    pub const ERROR: &str = "ERROR";

    pub(crate) const ALL: [&str; 15] = [
        CONNECT,
        STOMP,
        CONNECTED,
        SEND,
        SUBSCRIBE,
        UNSUBSCRIBE,
        ACK,
        NACK,
        BEGIN,
        COMMIT,
        ABORT,
        DISCONNECT,
        MESSAGE,
        RECEIPT,
        ERROR,
    ];
}

/// Destination the core publishes a task's notifications on.
pub fn task_topic(chain_task_id: &str) -> String {
    format!("/topic/task/{chain_task_id}")
}

/// Why STOMP text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StompError {
    #[error("no STOMP frame, only heart-beats or nothing")]
    Empty,
    #[error("STOMP frame cut short in its {0}")]
    Truncated(&'static str),
    #[error("unknown STOMP command {0:?}")]
    UnknownCommand(String),
    #[error("STOMP header line {0:?} has no ':'")]
    MalformedHeader(String),
    #[error("STOMP header line {line:?} has an invalid escape sequence {sequence:?}")]
    InvalidEscape {
        /// The whole header line.
        line: String,
        /// The backslash and what followed it.
        sequence: String,
    },
    #[error("STOMP content-length {0:?} is not a byte count")]
    InvalidContentLength(String),
    #[error(
        "STOMP body shorter than its content-length: {declared} bytes declared, {available} present"
    )]
    BodyTruncated {
        /// The `content-length`.
        declared: usize,
        /// Bytes left after the headers.
        available: usize,
    },
    #[error("STOMP body of {declared} bytes (content-length) is not followed by NUL")]
    NoNulAfterContentLength {
        /// The `content-length`.
        declared: usize,
    },
    #[error("STOMP body is not terminated by NUL")]
    MissingNul,
    #[error("{0} bytes after the STOMP frame; several frames need parse_frames")]
    TrailingData(usize),
}

/// One STOMP frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// One of [`command`]'s names.
    pub command: String,
    /// In wire order; a repeated header keeps every occurrence, the first one counts.
    pub headers: Vec<(String, String)>,
    /// Raw bytes; JSON text for the core's messages.
    pub body: Vec<u8>,
}

impl Frame {
    /// A frame with no headers and no body.
    pub fn new(command: &str) -> Self {
        Self {
            command: command.to_owned(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Appends a header.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sets the body and the `content-type` and `content-length` headers describing it.
    pub fn with_body(self, content_type: &str, body: &str) -> Self {
        self.with_header("content-type", content_type)
            .with_sized_body(body)
    }

    /// Sets the body after a `content-length` header (in bytes), so that it may hold NULs.
    fn with_sized_body(mut self, body: &str) -> Self {
        self = self.with_header("content-length", &body.len().to_string());
        self.body = body.as_bytes().to_vec();
        self
    }

    /// Value of the first header called `name` (STOMP 1.2: the first occurrence wins).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// The body as text (a JSON notification here).
    pub fn body_text(&self) -> Result<&str, Utf8Error> {
        std::str::from_utf8(&self.body)
    }

    /// The frame as text, NUL included. Headers go out as given: constructors that carry a
    /// body add `content-length` themselves. A body that is not UTF-8 is written lossily, as
    /// SockJS can only carry text anyway.
    pub fn encode(&self) -> String {
        let escaped = escapes_headers(&self.command);
        let mut out = String::with_capacity(64 + self.body.len());
        out.push_str(&self.command);
        out.push('\n');
        for (name, value) in &self.headers {
            push_header_part(&mut out, name, escaped);
            out.push(':');
            push_header_part(&mut out, value, escaped);
            out.push('\n');
        }
        out.push('\n');
        out.push_str(&String::from_utf8_lossy(&self.body));
        out.push('\0');
        out
    }

    /// Parses exactly one frame; heart-beat end-of-lines around it are allowed.
    pub fn parse(text: &str) -> Result<Frame, StompError> {
        let (frame, consumed) = parse_next(text)?.ok_or(StompError::Empty)?;
        let rest = skip_heartbeats(&text[consumed..]);
        if !rest.is_empty() {
            return Err(StompError::TrailingData(rest.len()));
        }
        Ok(frame)
    }
}

/// Parses every frame in `text` (one SockJS message may carry several, or only heart-beats).
pub fn parse_frames(text: &str) -> Result<Vec<Frame>, StompError> {
    let mut frames = Vec::new();
    let mut rest = text;
    while let Some((frame, consumed)) = parse_next(rest)? {
        frames.push(frame);
        rest = &rest[consumed..];
    }
    Ok(frames)
}

/// What a client sends first. Heart-beats are off: the SockJS layer already has its own.
pub fn connect() -> Frame {
    Frame::new(command::CONNECT)
        .with_header("accept-version", "1.1,1.2")
        .with_header("heart-beat", "0,0")
}

/// The broker's answer to [`connect`].
pub fn connected() -> Frame {
    Frame::new(command::CONNECTED)
        .with_header("version", "1.2")
        .with_header("heart-beat", "0,0")
}

/// Asks for the messages of `destination`; `id` names the subscription in later frames.
pub fn subscribe(id: &str, destination: &str) -> Frame {
    Frame::new(command::SUBSCRIBE)
        .with_header("id", id)
        .with_header("destination", destination)
}

/// Ends the subscription `id`.
pub fn unsubscribe(id: &str) -> Frame {
    Frame::new(command::UNSUBSCRIBE).with_header("id", id)
}

/// A JSON message delivered to a subscription, with the headers in Spring's order.
pub fn message(destination: &str, subscription: &str, message_id: &str, json: &str) -> Frame {
    Frame::new(command::MESSAGE)
        .with_header("destination", destination)
        .with_header("content-type", "application/json")
        .with_header("subscription", subscription)
        .with_header("message-id", message_id)
        .with_sized_body(json)
}

/// Ends the STOMP session.
pub fn disconnect() -> Frame {
    Frame::new(command::DISCONNECT)
}

/// A broker error; `message` is the short header, `detail` the body.
pub fn error(message: &str, detail: &str) -> Frame {
    Frame::new(command::ERROR)
        .with_header("message", message)
        .with_body("text/plain", detail)
}

/// STOMP 1.2 leaves `CONNECT`/`CONNECTED` headers unescaped so that 1.0 peers read them.
fn escapes_headers(command: &str) -> bool {
    !matches!(
        command,
        command::CONNECT | command::STOMP | command::CONNECTED
    )
}

fn push_header_part(out: &mut String, text: &str, escaped: bool) {
    if !escaped {
        out.push_str(text);
        return;
    }
    for ch in text.chars() {
        match ch {
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            ':' => out.push_str("\\c"),
            '\\' => out.push_str("\\\\"),
            _ => out.push(ch),
        }
    }
}

fn unescape_header_part(part: &str, line: &str) -> Result<String, StompError> {
    let mut out = String::with_capacity(part.len());
    let mut chars = part.chars();
    while let Some(ch) = chars.next() {
        if ch != '\\' {
            out.push(ch);
            continue;
        }
        let escaped = chars.next();
        out.push(match escaped {
            Some('r') => '\r',
            Some('n') => '\n',
            Some('c') => ':',
            Some('\\') => '\\',
            // STOMP 1.2: any other escape is a fatal protocol error.
            _ => {
                let sequence = escaped.map_or_else(|| "\\".to_owned(), |next| format!("\\{next}"));
                return Err(StompError::InvalidEscape {
                    line: line.to_owned(),
                    sequence,
                });
            }
        });
    }
    Ok(out)
}

fn skip_heartbeats(text: &str) -> &str {
    text.trim_start_matches(['\n', '\r'])
}

/// Splits off one line ending in `\n` (a preceding `\r` is dropped, as STOMP 1.2 allows).
fn split_line<'a>(text: &'a str, part: &'static str) -> Result<(&'a str, &'a str), StompError> {
    let (line, rest) = text.split_once('\n').ok_or(StompError::Truncated(part))?;
    Ok((line.strip_suffix('\r').unwrap_or(line), rest))
}

/// Parses the frame at the start of `text`, after any heart-beats. Returns the frame and the
/// number of bytes it used, or `None` when only heart-beats remain.
fn parse_next(text: &str) -> Result<Option<(Frame, usize)>, StompError> {
    let start = skip_heartbeats(text);
    if start.is_empty() {
        return Ok(None);
    }
    let (command, mut rest) = split_line(start, "command line")?;
    if !command::ALL.contains(&command) {
        return Err(StompError::UnknownCommand(command.to_owned()));
    }
    let escaped = escapes_headers(command);
    let mut headers = Vec::new();
    loop {
        let (line, after) = split_line(rest, "headers")?;
        rest = after;
        if line.is_empty() {
            break;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| StompError::MalformedHeader(line.to_owned()))?;
        headers.push(if escaped {
            (
                unescape_header_part(name, line)?,
                unescape_header_part(value, line)?,
            )
        } else {
            (name.to_owned(), value.to_owned())
        });
    }
    let mut frame = Frame {
        command: command.to_owned(),
        headers,
        body: Vec::new(),
    };
    let body_len = body_length(&frame, rest.as_bytes())?;
    frame.body = rest.as_bytes()[..body_len].to_vec();
    let consumed = text.len() - rest.len() + body_len + 1;
    Ok(Some((frame, consumed)))
}

/// Length of the body at the start of `rest`, which must be followed by the NUL terminator.
fn body_length(frame: &Frame, rest: &[u8]) -> Result<usize, StompError> {
    let Some(declared) = frame.header("content-length") else {
        return rest
            .iter()
            .position(|&b| b == 0)
            .ok_or(StompError::MissingNul);
    };
    let declared: usize = declared
        .trim()
        .parse()
        .map_err(|_| StompError::InvalidContentLength(declared.to_owned()))?;
    match rest.get(declared) {
        Some(0) => Ok(declared),
        Some(_) => Err(StompError::NoNulAfterContentLength { declared }),
        None => Err(StompError::BodyTruncated {
            declared,
            available: rest.len(),
        }),
    }
}
