//! The boot FAT partition inside a disk image, reached with mtools at its byte offset (no loop
//! device, no mount, no root), and the slot state file on it.

use std::fs;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, ensure};
use pew_image::bootstate::{BootState, ENV_FILE_NAME, ReadState, Slot};

use crate::image::ToolsTree;

/// Where the mtools programs come from.
pub enum Mtools {
    /// The host's: for scratch disks whose bytes do not matter (`uboot-check`).
    Host,
    /// The pinned tools tree's: for the image, whose FAT the image build wrote with it.
    Tree(ToolsTree),
}

impl Mtools {
    fn command(&self, program: &str) -> Result<Command> {
        match self {
            Mtools::Host => Ok(Command::new(program)),
            Mtools::Tree(tree) => tree.command(program),
        }
    }
}

/// A FAT filesystem at `offset` bytes into a disk image.
pub struct BootFat {
    /// `image@@offset`, mtools' notation for a filesystem inside a larger file.
    location: String,
    mtools: Mtools,
}

impl BootFat {
    pub fn new(image: &Path, offset: u64, mtools: Mtools) -> Self {
        Self {
            location: format!("{}@@{offset}", image.display()),
            mtools,
        }
    }

    /// Copies a host file to `destination` (`/dir/name`), replacing what is there.
    pub fn copy_in(&self, source: &Path, destination: &str) -> Result<()> {
        let source = source.to_str().context("host path is not UTF-8")?;
        self.run("mcopy", &["-o", source, &format!("::{destination}")])
            .map(drop)
    }

    /// Copies the host directory `source` with everything in it to the root of the FAT, under
    /// its own name, replacing files already there.
    pub fn copy_directory_in(&self, source: &Path) -> Result<()> {
        let source = source.to_str().context("host path is not UTF-8")?;
        self.run("mcopy", &["-s", "-o", source, "::/"]).map(drop)
    }

    pub fn make_directory(&self, directory: &str) -> Result<()> {
        self.run("mmd", &[&format!("::{directory}")]).map(drop)
    }

    /// The slot state file's bytes, exactly as stored.
    pub fn read_state_bytes(&self) -> Result<Vec<u8>> {
        self.run("mtype", &[&format!("::/{ENV_FILE_NAME}")])
            .with_context(|| format!("cannot read {ENV_FILE_NAME} from the boot partition"))
    }

    /// The slot state as the boot script will read it.
    pub fn read_state(&self) -> Result<ReadState> {
        Ok(BootState::from_env_text(&self.read_state_bytes()?))
    }

    /// Replaces the slot state file, as pew-updated will; `scratch` holds the file on its way in.
    pub fn write_state(&self, state: &BootState, scratch: &Path) -> Result<()> {
        let file = scratch.join(ENV_FILE_NAME);
        fs::write(&file, state.to_env_text())
            .with_context(|| format!("cannot write {}", file.display()))?;
        self.copy_in(&file, &format!("/{ENV_FILE_NAME}"))
    }

    fn run(&self, program: &str, args: &[&str]) -> Result<Vec<u8>> {
        let output = self
            .mtools
            .command(program)?
            .arg("-i")
            .arg(&self.location)
            .args(args)
            .output()
            .with_context(|| format!("cannot run {program}"))?;
        ensure!(
            output.status.success(),
            "{program} -i {} {} failed: {}",
            self.location,
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
        Ok(output.stdout)
    }
}

/// `AB 2/3`: the boot order, then the attempts A and B have left.
pub fn describe(state: &BootState) -> String {
    format!(
        "{} {}/{}",
        state.order().map(Slot::letter).concat(),
        state.attempts_left(Slot::A),
        state.attempts_left(Slot::B)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use pew_image::bootstate::Attempts;

    #[test]
    fn describes_order_then_counters() {
        let factory = BootState::factory(Attempts::DEFAULT);
        assert_eq!(describe(&factory), "AB 3/0");
        let trial = factory.activate(Slot::B, Attempts::DEFAULT);
        assert_eq!(describe(&trial), "BA 3/3");
        assert_eq!(describe(&trial.select(Attempts::DEFAULT).state), "BA 3/2");
    }
}
