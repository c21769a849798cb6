//! The serial console as QEMU logs it, read as it grows. QEMU writes the log unbuffered, so
//! what the firmware printed is in the file a moment later whether or not a terminal shows it.

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::path::PathBuf;

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
}
