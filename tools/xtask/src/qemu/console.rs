//! The serial console as QEMU logs it, read as it grows. QEMU writes the log unbuffered, so
//! what the firmware printed is in the file a moment later whether or not a terminal shows it.

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use pew_image::bootscript;
use pew_image::bootstate::Slot;

pub struct ConsoleLog {
    path: PathBuf,
    /// Opened once QEMU has created it.
    file: Option<File>,
    bytes: Vec<u8>,
}

impl ConsoleLog {
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            file: None,
            bytes: Vec::new(),
        }
    }

    /// Reads whatever was appended since the last call.
    pub fn refresh(&mut self) -> Result<()> {
        if self.file.is_none() {
            match File::open(&self.path) {
                Ok(file) => self.file = Some(file),
                Err(error) if error.kind() == ErrorKind::NotFound => return Ok(()),
                Err(error) => {
                    return Err(error)
                        .with_context(|| format!("cannot open {}", self.path.display()));
                }
            }
        }
        if let Some(file) = &mut self.file {
            file.read_to_end(&mut self.bytes)
                .with_context(|| format!("cannot read {}", self.path.display()))?;
        }
        Ok(())
    }

    /// The slot the boot script announced, once it has.
    pub fn booted_slot(&self) -> Option<Slot> {
        bootscript::booted_slot(&String::from_utf8_lossy(&self.bytes))
    }
}

/// The last `count` non-blank lines of the console log at `path`, without terminal control
/// sequences, for error messages; empty if it cannot be read.
pub fn tail(path: &Path, count: usize) -> String {
    let bytes = std::fs::read(path).unwrap_or_default();
    last_lines(&String::from_utf8_lossy(&bytes), count)
}

fn last_lines(text: &str, count: usize) -> String {
    let lines: Vec<String> = text
        .split(['\n', '\r'])
        .map(strip_control_sequences)
        .filter(|line| !line.trim().is_empty())
        .collect();
    lines[lines.len().saturating_sub(count)..].join("\n")
}

/// Drops `ESC [ … final-byte` sequences (systemd's colours, cursor moves) and other control
/// characters.
fn strip_control_sequences(line: &str) -> String {
    let mut plain = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.clone().next() == Some('[') {
                chars.next();
                // Parameters and intermediates run up to the final byte, '@' to '~'.
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
        } else if !c.is_control() {
            plain.push(c);
        }
    }
    plain
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn sees_the_slot_line_only_once_it_is_complete_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.log");
        let mut console = ConsoleLog::new(path.clone());
        console.refresh().unwrap();
        assert_eq!(console.booted_slot(), None, "no file yet");

        let mut log = File::create(&path).unwrap();
        log.write_all(b"U-Boot 2025.01\r\npew: state ORDER=[B A]\r\npew: booting sl")
            .unwrap();
        console.refresh().unwrap();
        assert_eq!(console.booted_slot(), None);
        log.write_all(b"ot B\r\n").unwrap();
        console.refresh().unwrap();
        assert_eq!(console.booted_slot(), Some(Slot::B));
    }

    #[test]
    fn the_tail_is_plain_text() {
        // systemd's status lines as they reach the serial console.
        let text = "Starting kernel ...\r\n\r\n\u{1b}[0;1;31mFAILED\u{1b}[0m] Failed to start \u{1b}[0;1;39mdata.mount\u{1b}[0m.\r\n\u{1b}[K[  OK  ] Reached target\r\n";
        assert_eq!(
            last_lines(text, 2),
            "FAILED] Failed to start data.mount.\n[  OK  ] Reached target"
        );
        assert_eq!(last_lines(text, 10).lines().count(), 3);
        assert_eq!(last_lines("", 5), "");
    }
}
