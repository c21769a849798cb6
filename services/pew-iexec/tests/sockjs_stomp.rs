//! SockJS and STOMP framing, separately and nested the way the core's Spring broker and a
//! worker exchange them.

use pew_iexec::model::TaskNotification;
use pew_iexec::sockjs::{self, Frame as SockJsFrame, ServerSession, SockJsError, StreamDecoder};
use pew_iexec::status::NextAction;
use pew_iexec::stomp::{self, Frame, StompError};

const TASK: &str = "0x5125c4ca7176e40d8c5386072a6f262029609a5d3a896fbf592cd965e65098d9";
const WORKER: &str = "0x1a69b2eb604db8eba185df03ea4f5288dcbbd248";

fn notification_json() -> String {
    format!(
        r#"{{"chainTaskId":"{TASK}","workersAddress":["{WORKER}"],"taskNotificationType":"PLEASE_REVEAL","taskNotificationExtra":{{"workerpoolAuthorization":null,"smsUrl":null,"blockNumber":4567,"taskAbortCause":null}},"taskAbortCause":"UNKNOWN"}}"#
    )
}

/// An `xhr` poll response carrying a notification, as Spring writes it: the STOMP frame inside a
/// JSON string, its newlines as `\n`, its quotes as `\"` and its NUL as `\u0000`.
fn spring_message_poll_body() -> String {
    let json = notification_json();
    let escaped_json = json.replace('"', "\\\"");
    format!(
        "a[\"MESSAGE\\ndestination:/topic/task/{TASK}\\ncontent-type:application/json\\nsubscription:sub-0\\nmessage-id:ak3m2sd1-0\\ncontent-length:{}\\n\\n{escaped_json}\\u0000\"]\n",
        json.len()
    )
}

// ---- SockJS --------------------------------------------------------------------------------

#[test]
fn sockjs_control_frames() {
    assert_eq!(sockjs::parse_frame("o\n").unwrap(), SockJsFrame::Open);
    assert_eq!(sockjs::parse_frame("o").unwrap(), SockJsFrame::Open);
    assert_eq!(sockjs::parse_frame("h\n").unwrap(), SockJsFrame::Heartbeat);
    assert_eq!(
        sockjs::parse_frame("c[3000,\"Go away!\"]\n").unwrap(),
        SockJsFrame::Close(3000, "Go away!".to_owned())
    );
    assert_eq!(
        sockjs::parse_frame("a[]").unwrap(),
        SockJsFrame::Messages(vec![])
    );
}

#[test]
fn sockjs_frames_encode_as_spring_writes_them() {
    assert_eq!(sockjs::http_frame(&SockJsFrame::Open), "o\n");
    assert_eq!(sockjs::http_frame(&SockJsFrame::Heartbeat), "h\n");
    let (code, reason) = sockjs::GO_AWAY;
    assert_eq!(
        sockjs::http_frame(&SockJsFrame::Close(code, reason.to_owned())),
        "c[3000,\"Go away!\"]\n"
    );
    let (code, reason) = sockjs::ANOTHER_CONNECTION_OPEN;
    assert_eq!(
        sockjs::encode_frame(&SockJsFrame::Close(code, reason.to_owned())),
        "c[2010,\"Another connection still open\"]"
    );
    assert_eq!(
        sockjs::encode_frame(&SockJsFrame::Messages(vec!["a".into(), "b".into()])),
        r#"a["a","b"]"#
    );
}

#[test]
fn sockjs_frame_errors_name_the_problem() {
    assert!(matches!(sockjs::parse_frame(""), Err(SockJsError::Empty)));
    assert!(matches!(sockjs::parse_frame("\n"), Err(SockJsError::Empty)));
    assert!(matches!(
        sockjs::parse_frame("x[]"),
        Err(SockJsError::UnknownType('x'))
    ));
    let error = sockjs::parse_frame("ohai").unwrap_err();
    assert_eq!(
        error.to_string(),
        "SockJS 'o' frame followed by unexpected data \"hai\""
    );
    assert!(matches!(
        sockjs::parse_frame("a[1,2]"),
        Err(SockJsError::BadMessages(_))
    ));
    assert!(matches!(
        sockjs::parse_frame("a[\"unterminated]"),
        Err(SockJsError::BadMessages(_))
    ));
    assert!(matches!(
        sockjs::parse_frame("c[\"Go away!\",3000]"),
        Err(SockJsError::BadClose(_))
    ));
    assert!(matches!(
        sockjs::parse_frame("c[70000,\"too big\"]"),
        Err(SockJsError::BadClose(_))
    ));
}

#[test]
fn sockjs_escapes_like_spring_and_reads_back() {
    // Jackson quoting (short escapes, upper-case \u00XX) then SockJS escapes in lower case,
    // non-BMP characters as surrogate pairs.
    let message = "q\"b\\n\n\t\u{1b}\0\u{2028}\u{200d}\u{fff9}é☀\u{1F31E}";
    let encoded = sockjs::encode_messages(&[message]);
    assert_eq!(
        encoded,
        r#"["q\"b\\n\n\t\u001B\u0000\u2028\u200d\ufff9é☀\ud83c\udf1e"]"#
    );
    assert_eq!(sockjs::parse_messages(&encoded).unwrap(), [message]);
}

#[test]
fn sockjs_server_session_answers_polls_in_protocol_order() {
    let mut session = ServerSession::new();
    assert_eq!(session.poll(), Some(SockJsFrame::Open));
    assert_eq!(
        session.poll(),
        None,
        "nothing to say: hold the request, then heartbeat"
    );
    session.push("first".into());
    session.push("second".into());
    assert_eq!(
        session.poll(),
        Some(SockJsFrame::Messages(vec!["first".into(), "second".into()]))
    );
    assert_eq!(session.poll(), None);
    session.push("last words".into());
    session.close(sockjs::GO_AWAY.0, sockjs::GO_AWAY.1);
    assert!(session.is_closed());
    assert_eq!(
        session.poll(),
        Some(SockJsFrame::Messages(vec!["last words".into()]))
    );
    assert_eq!(
        session.poll(),
        Some(SockJsFrame::Close(3000, "Go away!".into()))
    );
    assert_eq!(
        session.poll(),
        Some(SockJsFrame::Close(3000, "Go away!".into())),
        "every later poll too"
    );
}

#[test]
fn sockjs_streaming_decoder_skips_the_prelude_and_joins_chunks() {
    let prelude = sockjs::streaming_prelude();
    assert_eq!(prelude.len(), 2049);
    let stream = format!(
        "{prelude}o\nh\n{}c[3000,\"Go away!\"]\n",
        spring_message_poll_body()
    );
    // Cut the stream at awkward places, including inside a multi-byte character.
    let bytes = stream.as_bytes();
    let mut decoder = StreamDecoder::new();
    let mut frames = Vec::new();
    for chunk in bytes.chunks(7) {
        frames.extend(decoder.feed(chunk).unwrap());
    }
    assert_eq!(frames.len(), 4);
    assert_eq!(frames[0], SockJsFrame::Open);
    assert_eq!(frames[1], SockJsFrame::Heartbeat);
    assert!(matches!(&frames[2], SockJsFrame::Messages(m) if m.len() == 1));
    assert_eq!(frames[3], SockJsFrame::Close(3000, "Go away!".into()));

    // "é" is bytes 6 and 7 of this line; the first chunk ends between them.
    let line = "a[\"café\"]\n".as_bytes();
    let mut decoder = StreamDecoder::new();
    assert_eq!(decoder.feed(&line[..7]).unwrap(), []);
    assert_eq!(
        decoder.feed(&line[7..]).unwrap(),
        [SockJsFrame::Messages(vec!["café".into()])]
    );
    assert!(matches!(
        StreamDecoder::new().feed(b"\xff\n"),
        Err(SockJsError::NotUtf8)
    ));
}

// ---- STOMP ---------------------------------------------------------------------------------

#[test]
fn client_frames_are_byte_exact() {
    assert_eq!(
        stomp::connect().encode(),
        "CONNECT\naccept-version:1.1,1.2\nheart-beat:0,0\n\n\0"
    );
    assert_eq!(
        stomp::subscribe("sub-0", &stomp::task_topic(TASK)).encode(),
        format!("SUBSCRIBE\nid:sub-0\ndestination:/topic/task/{TASK}\n\n\0")
    );
    assert_eq!(
        stomp::unsubscribe("sub-0").encode(),
        "UNSUBSCRIBE\nid:sub-0\n\n\0"
    );
    assert_eq!(stomp::disconnect().encode(), "DISCONNECT\n\n\0");
}

#[test]
fn xhr_send_body_of_a_connect() {
    assert_eq!(
        sockjs::encode_messages(&[stomp::connect().encode()]),
        r#"["CONNECT\naccept-version:1.1,1.2\nheart-beat:0,0\n\n\u0000"]"#
    );
}

#[test]
fn broker_frames_are_byte_exact() {
    assert_eq!(
        stomp::connected().encode(),
        "CONNECTED\nversion:1.2\nheart-beat:0,0\n\n\0"
    );
    assert_eq!(
        stomp::error("Session closed.", "no such subscription").encode(),
        "ERROR\nmessage:Session closed.\ncontent-type:text/plain\ncontent-length:20\n\nno such subscription\0"
    );
}

#[test]
fn a_real_spring_notification_poll_down_to_the_task_notification() {
    let SockJsFrame::Messages(messages) = sockjs::parse_frame(&spring_message_poll_body()).unwrap()
    else {
        panic!("not a message frame");
    };
    let frame = Frame::parse(&messages[0]).unwrap();
    assert_eq!(frame.command, stomp::command::MESSAGE);
    assert_eq!(
        frame.header("destination"),
        Some(format!("/topic/task/{TASK}").as_str())
    );
    assert_eq!(frame.header("subscription"), Some("sub-0"));
    assert_eq!(frame.header("content-type"), Some("application/json"));
    let notification: TaskNotification = serde_json::from_str(frame.body_text().unwrap()).unwrap();
    assert_eq!(
        notification.task_notification_type,
        NextAction::PleaseReveal
    );
    assert!(notification.concerns(WORKER));
}

#[test]
fn our_broker_writes_the_same_poll_body_as_spring() {
    let json = notification_json();
    let frame = stomp::message(&stomp::task_topic(TASK), "sub-0", "ak3m2sd1-0", &json);
    assert_eq!(
        sockjs::http_frame(&SockJsFrame::Messages(vec![frame.encode()])),
        spring_message_poll_body()
    );
}

#[test]
fn header_escaping_round_trips() {
    let frame = Frame::new(stomp::command::SEND)
        .with_header("destination", "/queue/a:b")
        .with_header("odd\\name", "line1\nline2\r:end\\")
        .with_body("text/plain", "body");
    let text = frame.encode();
    assert!(
        text.starts_with(
            "SEND\ndestination:/queue/a\\cb\nodd\\\\name:line1\\nline2\\r\\cend\\\\\n"
        ),
        "{text:?}"
    );
    assert_eq!(Frame::parse(&text).unwrap(), frame);
}

#[test]
fn connect_headers_are_not_escaped() {
    // STOMP 1.2 keeps CONNECT/CONNECTED unescaped for STOMP 1.0 peers: a colon in a value is
    // taken literally, and a backslash is not an escape.
    let frame = Frame::parse("CONNECT\nlogin:a:b\\c\naccept-version:1.2\n\n\0").unwrap();
    assert_eq!(frame.header("login"), Some("a:b\\c"));
    let frame = Frame::new(stomp::command::CONNECTED).with_header("server", "pew:1.0");
    assert_eq!(frame.encode(), "CONNECTED\nserver:pew:1.0\n\n\0");
}

#[test]
fn first_repeated_header_wins() {
    let frame = Frame::parse("MESSAGE\nfoo:first\nfoo:second\n\n\0").unwrap();
    assert_eq!(frame.header("foo"), Some("first"));
    assert_eq!(frame.headers.len(), 2);
    assert_eq!(frame.header("bar"), None);
}

#[test]
fn content_length_allows_nul_in_the_body() {
    let text = "MESSAGE\ndestination:/topic/x\ncontent-length:5\n\na\0b\0c\0";
    let frame = Frame::parse(text).unwrap();
    assert_eq!(frame.body, b"a\0b\0c");
    // Without content-length the first NUL ends the body, and the rest is another frame's.
    assert_eq!(
        Frame::parse("MESSAGE\n\na\0b\0c\0"),
        Err(StompError::TrailingData(4))
    );
}

#[test]
fn content_length_counts_bytes_not_characters() {
    let frame = stomp::message("/topic/x", "sub-0", "m-1", "{\"sun\":\"☀\"}");
    assert_eq!(frame.header("content-length"), Some("13"));
    assert_eq!(
        Frame::parse(&frame.encode()).unwrap().body_text().unwrap(),
        "{\"sun\":\"☀\"}"
    );
}

#[test]
fn crlf_lines_and_heartbeats_between_frames() {
    let text = "\n\r\nCONNECTED\r\nversion:1.2\r\nheart-beat:0,0\r\n\r\n\0\n\nMESSAGE\ndestination:/a\n\nhi\0\r\n\n";
    let frames = stomp::parse_frames(text).unwrap();
    assert_eq!(frames.len(), 2);
    assert_eq!(frames[0].header("version"), Some("1.2"));
    assert_eq!(frames[1].body, b"hi");
    assert_eq!(stomp::parse_frames("\n\n").unwrap(), []);
    assert_eq!(Frame::parse("\n"), Err(StompError::Empty));
}

#[test]
fn several_frames_round_trip() {
    let frames = vec![
        stomp::connected(),
        stomp::message("/topic/a", "sub-1", "m-1", "{}"),
        stomp::error("bad", ""),
    ];
    let text: String = frames.iter().map(|f| f.encode() + "\n").collect();
    assert_eq!(stomp::parse_frames(&text).unwrap(), frames);
}

#[test]
fn malformed_frames_are_refused_with_the_reason() {
    let cases: [(&str, StompError); 9] = [
        ("HELLO\n\n\0", StompError::UnknownCommand("HELLO".into())),
        ("MESSAGE", StompError::Truncated("command line")),
        (
            "MESSAGE\ndestination:/a\n",
            StompError::Truncated("headers"),
        ),
        (
            "MESSAGE\nno-colon\n\n\0",
            StompError::MalformedHeader("no-colon".into()),
        ),
        (
            "MESSAGE\nk:tab\\there\n\n\0",
            StompError::InvalidEscape {
                line: "k:tab\\there".into(),
                sequence: "\\t".into(),
            },
        ),
        (
            "MESSAGE\nk:ends\\\n\n\0",
            StompError::InvalidEscape {
                line: "k:ends\\".into(),
                sequence: "\\".into(),
            },
        ),
        (
            "MESSAGE\ncontent-length:ten\n\n0123456789\0",
            StompError::InvalidContentLength("ten".into()),
        ),
        (
            "MESSAGE\ncontent-length:10\n\n0123\0",
            StompError::BodyTruncated {
                declared: 10,
                available: 5,
            },
        ),
        (
            "MESSAGE\ncontent-length:2\n\n0123\0",
            StompError::NoNulAfterContentLength { declared: 2 },
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(Frame::parse(text), Err(expected), "{text:?}");
    }
    assert_eq!(
        Frame::parse("MESSAGE\n\nno terminator"),
        Err(StompError::MissingNul)
    );
    assert_eq!(
        Frame::parse("MESSAGE\nk:tab\\there\n\n\0")
            .unwrap_err()
            .to_string(),
        "STOMP header line \"k:tab\\\\there\" has an invalid escape sequence \"\\\\t\""
    );
}
