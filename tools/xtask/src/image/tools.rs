//! The pinned tools tree: a native trixie root filesystem, built by mmdebstrap from the same
//! package lock as the image, whose mkfs.*, mtools, sfdisk, mkimage, bmaptool and zstd do the
//! assembly. The image's bytes then depend on the lock, not on the build host's tool versions
//! (bookworm's mke2fs 1.47.0 leaks host inode times into the image; trixie's 1.47.2 does not).
//!
//! The tools run without chroot, through the tree's own dynamic loader and libraries, so they
//! see the host's paths unchanged.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Result, bail};

/// Directories searched for a program, in order.
const PROGRAM_DIRECTORIES: [&str; 4] = ["usr/sbin", "usr/bin", "sbin", "bin"];

/// A built tools tree.
#[derive(Debug, Clone)]
pub struct ToolsTree {
    root: PathBuf,
}

impl ToolsTree {
    /// A tree at `root` (which must have been built by the image pipeline).
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    /// A file of the tree, e.g. `usr/lib/u-boot/qemu_arm64/u-boot.bin`.
    pub fn path(&self, relative: &str) -> PathBuf {
        self.root.join(relative.trim_start_matches('/'))
    }

    /// `program` from the tree, run by the tree's loader with the tree's libraries. Python
    /// programs (bmaptool) get the tree's interpreter and standard library.
    pub fn command(&self, program: &str) -> Result<Command> {
        let Some(executable) = PROGRAM_DIRECTORIES
            .iter()
            .map(|directory| self.root.join(directory).join(program))
            .find(|path| path.is_file())
        else {
            bail!(
                "{program} is not in the tools tree {} (is it in image/pew.toml's [tools] packages?)",
                self.root.display()
            );
        };
        let mut command = Command::new(self.path("lib64/ld-linux-x86-64.so.2"));
        command.arg("--library-path").arg(self.library_path());
        if starts_with_python_shebang(&executable) {
            command
                .arg(self.path("usr/bin/python3"))
                .env("PYTHONHOME", self.path("usr"))
                .env("PYTHONDONTWRITEBYTECODE", "1");
        }
        command.arg(executable);
        Ok(command)
    }

    fn library_path(&self) -> std::ffi::OsString {
        let directories = ["usr/lib/x86_64-linux-gnu", "lib/x86_64-linux-gnu"];
        std::env::join_paths(directories.iter().map(|d| self.root.join(d)))
            .unwrap_or_else(|_| OsStr::new("").to_owned())
    }
}

fn starts_with_python_shebang(path: &Path) -> bool {
    let Ok(bytes) = std::fs::read(path) else {
        return false;
    };
    let first_line = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    first_line.starts_with(b"#!") && first_line.windows(6).any(|word| word == b"python")
}
