//! Helpers shared by the unit tests: float comparison and fake sysfs trees in a tempdir.

use std::fs;
use std::path::{Path, PathBuf};

use embedded_hal_mock::eh1::i2c::Transaction;
use tempfile::TempDir;

/// Asserts `actual` equals `expected` to within floating-point rounding of the scaling maths.
#[track_caller]
pub fn assert_close(actual: f64, expected: f64) {
    let tolerance = 1e-9 * expected.abs().max(1.0);
    assert!(
        (actual - expected).abs() <= tolerance,
        "{actual} is not {expected}"
    );
}

/// The I2C transfer of a 16-bit register read: pointer write, repeated start, two bytes MSB first.
pub fn read_register(address: u8, register: u8, value: u16) -> Transaction {
    Transaction::write_read(address, vec![register], value.to_be_bytes().to_vec())
}

/// The I2C transfer of a 16-bit register write: pointer, then MSB and LSB.
pub fn write_register(address: u8, register: u8, value: u16) -> Transaction {
    let [high, low] = value.to_be_bytes();
    Transaction::write(address, vec![register, high, low])
}

/// A directory tree laid out like a piece of sysfs, removed when dropped.
pub struct SysfsTree {
    dir: TempDir,
}

impl SysfsTree {
    /// Creates the tree with the given files (parent directories are made as needed).
    pub fn new(files: &[(&str, &str)]) -> Self {
        let tree = Self {
            dir: TempDir::new().expect("create tempdir"),
        };
        for (relative, content) in files {
            tree.write(relative, content);
        }
        tree
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    pub fn write(&self, relative: &str, content: &str) {
        let path = self.path(relative);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("create parent directories");
        }
        fs::write(&path, content).expect("write fake attribute");
    }

    /// Makes `relative` a symlink to `target`, as sysfs does for `device` links.
    pub fn symlink(&self, relative: &str, target: &str) {
        let path = self.path(relative);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("create parent directories");
        }
        std::os::unix::fs::symlink(target, path).expect("create symlink");
    }

    pub fn content(&self, relative: &str) -> String {
        fs::read_to_string(self.path(relative)).expect("read fake attribute")
    }
}
