//! A client for the QEMU guest agent (Debian's `qemu-guest-agent` inside the image), over the
//! unix socket QEMU serves for the agent's virtio port.
//!
//! The protocol is one JSON object per line each way: `{"execute": …, "arguments": …}` in,
//! `{"return": …}` or `{"error": {"class", "desc"}}` out. The socket carries no session: QEMU
//! holds what the host writes until the agent opens its port, and the agent then answers every
//! request queued so far, including ones from an earlier connection. So a conversation starts
//! with `guest-sync-delimited` carrying an id nobody else used; the agent puts a 0xFF byte
//! before that answer, and everything up to the answer with our id is stale and skipped.

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};

use super::base64;

/// The byte that resets the agent's JSON parser when sent and marks a sync answer when received.
const SENTINEL: u8 = 0xff;
/// How long one plain command may take; the agent answers from its own loop at once.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a running `guest-exec` is asked whether it has finished.
const EXEC_POLL: Duration = Duration::from_millis(250);

/// A command's result as qemu-ga reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// None when the process was killed by a signal.
    pub exit_code: Option<i64>,
    pub signal: Option<i64>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl ExecOutput {
    pub fn succeeded(&self) -> bool {
        self.exit_code == Some(0)
    }

    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// How the command ended, with its error output, for messages.
    pub fn failure(&self) -> String {
        let how = match (self.exit_code, self.signal) {
            (_, Some(signal)) => format!("killed by signal {signal}"),
            (Some(code), None) => format!("exit code {code}"),
            (None, None) => "no exit status".to_owned(),
        };
        let stderr = String::from_utf8_lossy(&self.stderr);
        match stderr.trim() {
            "" => how,
            text => format!("{how}: {text}"),
        }
    }
}

/// A connection to the guest agent.
pub struct Agent {
    stream: UnixStream,
    /// Bytes received but not yet consumed.
    received: Vec<u8>,
    next_sync_id: u64,
}

impl Agent {
    /// Connects to QEMU's end of the agent port; the agent itself may not run yet.
    pub fn connect(socket: &Path) -> Result<Self> {
        let stream = UnixStream::connect(socket)
            .with_context(|| format!("cannot connect to {}", socket.display()))?;
        stream.set_write_timeout(Some(COMMAND_TIMEOUT))?;
        Ok(Self {
            stream,
            received: Vec::new(),
            next_sync_id: random_sync_id()?,
        })
    }

    /// One `guest-sync-delimited` round: true once the agent answered it within `wait`, after
    /// which the stream holds nothing stale. False if it did not answer (not started yet).
    pub fn sync(&mut self, wait: Duration) -> Result<bool> {
        let id = self.next_sync_id;
        self.next_sync_id += 1;
        let mut request = vec![SENTINEL];
        request.extend(encode_request(
            "guest-sync-delimited",
            Some(json!({ "id": id })),
        ));
        self.stream.write_all(&request)?;
        let deadline = Instant::now() + wait;
        loop {
            match scan_for_sync(&self.received, id) {
                SyncScan::Synced { consumed } => {
                    self.received.drain(..consumed);
                    return Ok(true);
                }
                SyncScan::Pending { consumed } => {
                    self.received.drain(..consumed);
                }
            }
            if !self.receive(deadline)? {
                return Ok(false);
            }
        }
    }

    /// `guest-ping`: the agent is up and executing commands.
    pub fn ping(&mut self) -> Result<()> {
        self.call("guest-ping", None).map(drop)
    }

    /// Runs `program` (an absolute path) with `args` in the guest and returns its output once it
    /// has exited, failing if that takes past `deadline`.
    pub fn exec(&mut self, program: &str, args: &[&str], deadline: Instant) -> Result<ExecOutput> {
        self.exec_with_input(program, args, &[], deadline)
    }

    /// [`Agent::exec`] with `input` on the program's standard input. qemu-ga takes it in the one
    /// request line, so it suits files of a few megabytes, not more.
    pub fn exec_with_input(
        &mut self,
        program: &str,
        args: &[&str],
        input: &[u8],
        deadline: Instant,
    ) -> Result<ExecOutput> {
        let mut request = json!({ "path": program, "arg": args, "capture-output": true });
        if !input.is_empty() {
            request["input-data"] = base64::encode(input).into();
        }
        let started = self.call("guest-exec", Some(request))?;
        let pid = started
            .get("pid")
            .and_then(Value::as_i64)
            .ok_or_else(|| anyhow!("guest-exec answered {started} without a pid"))?;
        loop {
            let status = self.call("guest-exec-status", Some(json!({ "pid": pid })))?;
            if let Some(output) = parse_exec_status(&status)? {
                return Ok(output);
            }
            if Instant::now() >= deadline {
                bail!(
                    "{program} {} was still running at the deadline",
                    args.join(" ")
                );
            }
            thread::sleep(EXEC_POLL);
        }
    }

    /// Asks the guest to power off. The agent does not answer this command when it succeeds;
    /// QEMU exiting is the confirmation.
    pub fn shutdown(&mut self) -> Result<()> {
        let request = encode_request("guest-shutdown", Some(json!({ "mode": "powerdown" })));
        self.stream
            .write_all(&request)
            .context("cannot send guest-shutdown")
    }

    fn call(&mut self, command: &str, arguments: Option<Value>) -> Result<Value> {
        self.stream.write_all(&encode_request(command, arguments))?;
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        loop {
            if let Some(newline) = self.received.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.received.drain(..=newline).collect();
                return match parse_reply(&line)? {
                    Reply::Return(value) => Ok(value),
                    Reply::Error { class, description } => {
                        bail!("the guest agent refused {command}: {class}: {description}")
                    }
                };
            }
            if !self.receive(deadline)? {
                bail!(
                    "the guest agent did not answer {command} within {} s",
                    COMMAND_TIMEOUT.as_secs()
                );
            }
        }
    }

    /// Appends what arrives before `deadline`; false if nothing did.
    fn receive(&mut self, deadline: Instant) -> Result<bool> {
        let Some(wait) = deadline
            .checked_duration_since(Instant::now())
            .filter(|w| !w.is_zero())
        else {
            return Ok(false);
        };
        self.stream.set_read_timeout(Some(wait))?;
        let mut buffer = [0u8; 4096];
        match self.stream.read(&mut buffer) {
            Ok(0) => bail!("QEMU closed the guest agent socket"),
            Ok(count) => {
                self.received.extend_from_slice(&buffer[..count]);
                Ok(true)
            }
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                Ok(false)
            }
            Err(error) => Err(error).context("cannot read from the guest agent socket"),
        }
    }
}

/// A sync id no earlier connection used, so its answer cannot be mistaken for ours.
fn random_sync_id() -> Result<u64> {
    let mut bytes = [0u8; 4];
    File::open("/dev/urandom")
        .and_then(|mut random| random.read_exact(&mut bytes))
        .context("cannot read /dev/urandom")?;
    // 32 bits leave room to count up while staying an exact JSON number.
    Ok(u64::from(u32::from_le_bytes(bytes)))
}

/// One request line.
fn encode_request(command: &str, arguments: Option<Value>) -> Vec<u8> {
    let mut request = json!({ "execute": command });
    if let Some(arguments) = arguments {
        request["arguments"] = arguments;
    }
    let mut line = request.to_string().into_bytes();
    line.push(b'\n');
    line
}

/// An answer line.
#[derive(Debug, PartialEq)]
enum Reply {
    Return(Value),
    Error { class: String, description: String },
}

fn parse_reply(line: &[u8]) -> Result<Reply> {
    let shown = || String::from_utf8_lossy(line).trim().to_owned();
    let value: Value = serde_json::from_slice(line).with_context(|| {
        format!(
            "the guest agent sent something that is not JSON: {:?}",
            shown()
        )
    })?;
    if let Some(returned) = value.get("return") {
        return Ok(Reply::Return(returned.clone()));
    }
    if let Some(error) = value.get("error") {
        let text = |key| {
            error
                .get(key)
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_owned()
        };
        return Ok(Reply::Error {
            class: text("class"),
            description: text("desc"),
        });
    }
    bail!(
        "the guest agent sent neither a return nor an error: {}",
        shown()
    )
}

/// Where the search for our sync answer stands in the received bytes.
#[derive(Debug, PartialEq, Eq)]
enum SyncScan {
    /// Our answer ends at `consumed`; everything before it is stale.
    Synced { consumed: usize },
    /// Not there yet; the first `consumed` bytes can be dropped, the rest may be the start of it.
    Pending { consumed: usize },
}

/// Looks for `<0xFF>{"return": id}\n`. A line without a sentinel before it answers some earlier
/// request and is skipped; so is a sync answer with another id.
fn scan_for_sync(received: &[u8], id: u64) -> SyncScan {
    let mut position = 0;
    loop {
        let rest = &received[position..];
        let Some(newline) = rest.iter().position(|&b| b == b'\n') else {
            let consumed = match rest.iter().rposition(|&b| b == SENTINEL) {
                Some(sentinel) => position + sentinel,
                None => received.len(),
            };
            return SyncScan::Pending { consumed };
        };
        let line = &rest[..newline];
        if let Some(sentinel) = line.iter().rposition(|&b| b == SENTINEL)
            && parse_reply(&line[sentinel + 1..]).ok() == Some(Reply::Return(json!(id)))
        {
            return SyncScan::Synced {
                consumed: position + newline + 1,
            };
        }
        position += newline + 1;
    }
}

/// A `guest-exec-status` answer: None while the process runs.
fn parse_exec_status(status: &Value) -> Result<Option<ExecOutput>> {
    let exited = status
        .get("exited")
        .and_then(Value::as_bool)
        .ok_or_else(|| anyhow!("guest-exec-status answered {status} without \"exited\""))?;
    if !exited {
        return Ok(None);
    }
    let data = |key: &str| -> Result<Vec<u8>> {
        match status.get(key).and_then(Value::as_str) {
            Some(text) => {
                base64::decode(text).with_context(|| format!("{key} of guest-exec-status"))
            }
            None => Ok(Vec::new()),
        }
    };
    let truncated = ["out-truncated", "err-truncated"]
        .into_iter()
        .any(|key| status.get(key).and_then(Value::as_bool) == Some(true));
    if truncated {
        bail!("the guest agent truncated a command's output");
    }
    Ok(Some(ExecOutput {
        exit_code: status.get("exitcode").and_then(Value::as_i64),
        signal: status.get("signal").and_then(Value::as_i64),
        stdout: data("out-data")?,
        stderr: data("err-data")?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_one_json_line_with_arguments_only_when_given() {
        assert_eq!(
            encode_request("guest-ping", None),
            b"{\"execute\":\"guest-ping\"}\n"
        );
        let exec = encode_request(
            "guest-exec",
            Some(
                json!({ "path": "/usr/bin/pewctl", "arg": ["--json", "status"], "capture-output": true }),
            ),
        );
        assert_eq!(exec.last(), Some(&b'\n'));
        assert_eq!(exec.iter().filter(|&&b| b == b'\n').count(), 1);
        let parsed: Value = serde_json::from_slice(&exec).unwrap();
        assert_eq!(parsed["execute"], "guest-exec");
        assert_eq!(parsed["arguments"]["arg"], json!(["--json", "status"]));
        assert_eq!(parsed["arguments"]["capture-output"], true);
    }

    #[test]
    fn replies_are_returns_or_errors() {
        assert_eq!(
            parse_reply(b"{\"return\": {\"pid\": 812}}\n").unwrap(),
            Reply::Return(json!({ "pid": 812 }))
        );
        assert_eq!(
            parse_reply(b"{\"error\": {\"class\": \"GenericError\", \"desc\": \"Guest agent command failed\"}}\n")
                .unwrap(),
            Reply::Error {
                class: "GenericError".into(),
                description: "Guest agent command failed".into()
            }
        );
        assert!(parse_reply(b"{\"greeting\": 1}\n").is_err());
        assert!(parse_reply(b"{\"return\": \n").is_err());
    }

    #[test]
    fn sync_skips_stale_answers_and_other_ids() {
        // What arrives after a restart: answers queued for an earlier client, the parser's
        // complaint about the 0xFF we sent, an older sync, then ours.
        let mut received = b"{\"return\": {}}\n{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error\"}}\n".to_vec();
        received.extend(b"\xff{\"return\": 41}\n\xff{\"return\": 42}\n{\"return\": {}}\n");
        let end = received.len() - b"{\"return\": {}}\n".len();
        assert_eq!(
            scan_for_sync(&received, 42),
            SyncScan::Synced { consumed: end }
        );
        // The id must match exactly, not as a prefix.
        let other = b"\xff{\"return\": 420}\n";
        assert_eq!(
            scan_for_sync(other, 42),
            SyncScan::Pending {
                consumed: other.len()
            }
        );
    }

    #[test]
    fn a_sync_answer_split_across_reads_is_kept_from_its_sentinel() {
        let first = b"{\"return\": {}}\n\xff{\"retu";
        assert_eq!(scan_for_sync(first, 7), SyncScan::Pending { consumed: 15 });
        let mut rest = first[15..].to_vec();
        rest.extend(b"rn\": 7}\n");
        assert_eq!(
            scan_for_sync(&rest, 7),
            SyncScan::Synced {
                consumed: rest.len()
            }
        );
    }

    #[test]
    fn nothing_but_noise_is_dropped_whole() {
        let noise = b"garbage without a sentinel";
        assert_eq!(
            scan_for_sync(noise, 1),
            SyncScan::Pending {
                consumed: noise.len()
            }
        );
        // Two sentinels in a row: the answer follows the last one.
        let doubled = b"\xff\xff{\"return\": 1}\n";
        assert_eq!(
            scan_for_sync(doubled, 1),
            SyncScan::Synced {
                consumed: doubled.len()
            }
        );
    }

    #[test]
    fn exec_status_decodes_output_once_exited() {
        assert_eq!(
            parse_exec_status(&json!({ "exited": false })).unwrap(),
            None
        );
        let output = parse_exec_status(&json!({
            "exited": true, "exitcode": 3, "out-data": "ZGVncmFkZWQK", "err-data": "b29wcw=="
        }))
        .unwrap()
        .unwrap();
        assert_eq!(output.stdout, b"degraded\n");
        assert!(!output.succeeded());
        assert_eq!(output.failure(), "exit code 3: oops");
        let killed = parse_exec_status(&json!({ "exited": true, "signal": 9 }))
            .unwrap()
            .unwrap();
        assert_eq!(
            (killed.exit_code, killed.failure().as_str()),
            (None, "killed by signal 9")
        );
    }

    #[test]
    fn exec_status_refuses_truncated_or_malformed_answers() {
        assert!(parse_exec_status(&json!({ "pid": 3 })).is_err());
        assert!(
            parse_exec_status(&json!({ "exited": true, "exitcode": 0, "out-data": "!!" })).is_err()
        );
        assert!(
            parse_exec_status(&json!({ "exited": true, "exitcode": 0, "out-truncated": true }))
                .is_err()
        );
    }
}
