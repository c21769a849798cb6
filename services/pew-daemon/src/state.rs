//! State that matters, written so that a power cut at any instant leaves either the complete old
//! file or the complete new one: write a temporary file beside it, fsync it, rename it over the
//! old one, fsync the directory. A file that is missing or does not parse is reported and treated
//! as "no state" (a cold start), never as a reason to crash: a node that cannot boot because of a
//! bad state file is bricked.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Serialize, de::DeserializeOwned};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot write state file {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot encode state for {}: {source}", path.display())]
    Encode {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// A JSON state file on the data partition.
#[derive(Debug, Clone)]
pub struct StateFile {
    path: PathBuf,
}

/// What [`StateFile::load`] found.
#[derive(Debug, PartialEq)]
pub enum Loaded<T> {
    Found(T),
    /// No file: first boot, or the data partition was wiped.
    Missing,
    /// The file exists but cannot be used; the reason is for the log. The file is moved aside to
    /// `<name>.corrupt` so it can be examined and the next save does not overwrite the evidence.
    Corrupt(String),
}

impl<T> Loaded<T> {
    pub fn into_option(self) -> Option<T> {
        match self {
            Loaded::Found(value) => Some(value),
            Loaded::Missing | Loaded::Corrupt(_) => None,
        }
    }
}

impl StateFile {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn load<T: DeserializeOwned>(&self) -> Loaded<T> {
        let bytes = match fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Loaded::Missing,
            Err(e) => return Loaded::Corrupt(format!("cannot read {}: {e}", self.path.display())),
        };
        match serde_json::from_slice(&bytes) {
            Ok(value) => Loaded::Found(value),
            Err(e) => {
                let aside = self.path.with_extension("corrupt");
                let moved = fs::rename(&self.path, &aside).is_ok();
                Loaded::Corrupt(format!(
                    "{} does not parse ({e}){}",
                    self.path.display(),
                    if moved {
                        format!("; kept as {}", aside.display())
                    } else {
                        String::new()
                    }
                ))
            }
        }
    }

    /// Writes `value` atomically and durably.
    pub fn save<T: Serialize>(&self, value: &T) -> Result<(), StateError> {
        let bytes = serde_json::to_vec_pretty(value).map_err(|source| StateError::Encode {
            path: self.path.clone(),
            source,
        })?;
        write_atomic(&self.path, &bytes).map_err(|source| StateError::Write {
            path: self.path.clone(),
            source,
        })
    }
}

/// Replaces `path` with `bytes` so that readers and power cuts see the old or the new content.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".tmp");
    let temporary = dir.join(name);
    {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    fs::rename(&temporary, path)?;
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Counter {
        count: u32,
    }

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::new(dir.path().join("nested/state.json"));
        file.save(&Counter { count: 7 }).unwrap();
        assert_eq!(file.load::<Counter>(), Loaded::Found(Counter { count: 7 }));
        assert!(!dir.path().join("nested/state.json.tmp").exists());
    }

    #[test]
    fn missing_file_is_a_cold_start() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            StateFile::new(dir.path().join("x.json")).load::<Counter>(),
            Loaded::Missing
        );
    }

    #[test]
    fn corrupt_file_is_moved_aside_and_replaced_on_next_save() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        // What a torn write without rename would leave behind.
        fs::write(&path, b"{\"count\": 4").unwrap();
        let file = StateFile::new(&path);
        match file.load::<Counter>() {
            Loaded::Corrupt(reason) => assert!(reason.contains("does not parse"), "{reason}"),
            other => panic!("expected corrupt, got {other:?}"),
        }
        assert_eq!(
            fs::read(dir.path().join("state.corrupt")).unwrap(),
            b"{\"count\": 4"
        );
        file.save(&Counter { count: 5 }).unwrap();
        assert_eq!(
            file.load::<Counter>().into_option(),
            Some(Counter { count: 5 })
        );
    }

    #[test]
    fn leftover_temporary_from_a_power_cut_does_not_hide_the_last_good_state() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let file = StateFile::new(&path);
        file.save(&Counter { count: 1 }).unwrap();
        // Power failed after the temporary was half written, before the rename.
        fs::write(dir.path().join("state.json.tmp"), b"{\"cou").unwrap();
        assert_eq!(
            file.load::<Counter>().into_option(),
            Some(Counter { count: 1 })
        );
        file.save(&Counter { count: 2 }).unwrap();
        assert_eq!(
            file.load::<Counter>().into_option(),
            Some(Counter { count: 2 })
        );
    }
}
