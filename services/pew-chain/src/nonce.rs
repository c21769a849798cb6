//! The sender's next nonce, persisted so a restart never reuses one.
//!
//! `eth_getTransactionCount(pending)` alone is not enough: a node that restarted (or another
//! node behind a load balancer) may have forgotten our pending transactions, and re-using a
//! nonce would replace or collide with them. The file remembers the highest nonce we handed out.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Failure to read or write the nonce file.
#[derive(Debug, thiserror::Error)]
pub enum NonceFileError {
    /// The file could not be read, written or synced.
    #[error("nonce file {path}: {source}")]
    Io {
        /// The nonce file.
        path: PathBuf,
        /// What the OS reported.
        source: io::Error,
    },
    /// The file holds something other than a decimal nonce. Writes are atomic, so this means
    /// someone else wrote it: refuse rather than guess a nonce.
    #[error("nonce file {path} does not hold a decimal nonce: {content:?}")]
    Corrupt {
        /// The nonce file.
        path: PathBuf,
        /// Its content, as read.
        content: String,
    },
}

/// The nonce to use first: the larger of what we persisted and what the node counts as pending.
pub fn starting_nonce(persisted: Option<u64>, pending_count: u64) -> u64 {
    persisted.map_or(pending_count, |stored| stored.max(pending_count))
}

/// A file holding the next nonce to use, as decimal text.
#[derive(Debug, Clone)]
pub struct NonceFile {
    path: PathBuf,
}

impl NonceFile {
    /// A nonce file at `path` (created on the first [`NonceFile::store`]).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// Where the nonce is kept.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The persisted next nonce, or `None` when nothing was persisted yet.
    pub fn load(&self) -> Result<Option<u64>, NonceFileError> {
        let content = match fs::read_to_string(&self.path) {
            Ok(content) => content,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(self.io_error(source)),
        };
        content
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| NonceFileError::Corrupt {
                path: self.path.clone(),
                content,
            })
    }

    /// Persists `next` atomically: a crash leaves either the old or the new value, never a
    /// torn one.
    pub fn store(&self, next: u64) -> Result<(), NonceFileError> {
        pew_daemon::state::write_atomic(&self.path, format!("{next}\n").as_bytes())
            .map_err(|source| self.io_error(source))
    }

    fn io_error(&self, source: io::Error) -> NonceFileError {
        NonceFileError::Io {
            path: self.path.clone(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_count_wins_when_nothing_was_persisted() {
        assert_eq!(starting_nonce(None, 7), 7);
    }

    #[test]
    fn persisted_nonce_wins_when_the_node_forgot_pending_transactions() {
        assert_eq!(starting_nonce(Some(12), 9), 12);
    }

    #[test]
    fn node_count_wins_when_the_wallet_was_used_elsewhere() {
        assert_eq!(starting_nonce(Some(3), 40), 40);
    }

    #[test]
    fn missing_file_means_nothing_persisted() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            NonceFile::new(dir.path().join("nonce")).load().unwrap(),
            None
        );
    }

    #[test]
    fn store_then_load_round_trips_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = NonceFile::new(dir.path().join("nonce"));
        file.store(41).unwrap();
        file.store(42).unwrap();
        assert_eq!(file.load().unwrap(), Some(42));
        assert_eq!(fs::read_to_string(file.path()).unwrap(), "42\n");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("nonce")]);
    }

    #[test]
    fn stale_temporary_file_from_a_crash_is_ignored_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let file = NonceFile::new(dir.path().join("nonce"));
        file.store(5).unwrap();
        fs::write(dir.path().join("nonce.tmp"), "garbage").unwrap();
        assert_eq!(file.load().unwrap(), Some(5));
        file.store(6).unwrap();
        assert_eq!(file.load().unwrap(), Some(6));
        assert!(!dir.path().join("nonce.tmp").exists());
    }

    #[test]
    fn corrupt_content_is_an_error_not_a_guess() {
        let dir = tempfile::tempdir().unwrap();
        let file = NonceFile::new(dir.path().join("nonce"));
        fs::write(file.path(), "0x2a\n").unwrap();
        assert!(
            matches!(file.load(), Err(NonceFileError::Corrupt { content, .. }) if content == "0x2a\n")
        );
    }

    #[test]
    fn a_missing_directory_is_created_and_an_unwritable_one_is_reported_with_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent").join("nonce");
        NonceFile::new(&path).store(1).unwrap();
        assert_eq!(NonceFile::new(&path).load().unwrap(), Some(1));

        let blocker = dir.path().join("a-file");
        fs::write(&blocker, "").unwrap();
        let error = NonceFile::new(blocker.join("nonce")).store(1).unwrap_err();
        assert!(error.to_string().contains("a-file"), "{error}");
    }
}
