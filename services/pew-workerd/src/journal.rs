//! The replicate journal: one small JSON file per replicate the worker holds, rewritten
//! atomically at every step, so that after a crash or a power cut the worker knows which tasks it
//! was working on, what it last told the scheduler, and where their results are.

use std::fs;
use std::path::{Path, PathBuf};

use pew_daemon::state::{Loaded, StateError, StateFile};
use pew_iexec::model::WorkerpoolAuthorization;
use pew_iexec::status::ReplicateStatus;
use serde::{Deserialize, Serialize};

/// What the worker must remember about one replicate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicateRecord {
    pub chain_task_id: String,
    pub authorization: WorkerpoolAuthorization,
    /// The app's image once the task description has been read.
    pub app: Option<String>,
    /// The last status the scheduler accepted.
    pub reported: Option<ReplicateStatus>,
    /// 0x-hex result digest once post-compute has produced it.
    pub result_digest: Option<String>,
    /// The energy lease held for this replicate.
    pub lease_id: Option<String>,
    /// Seconds since the Unix epoch when the scheduler handed the replicate out.
    pub received_at: i64,
    /// Energy measured while computing, watt-hours.
    pub energy_wh: f64,
}

impl ReplicateRecord {
    pub fn new(authorization: WorkerpoolAuthorization, received_at: i64) -> Self {
        Self {
            chain_task_id: authorization.chain_task_id.clone(),
            authorization,
            app: None,
            reported: None,
            result_digest: None,
            lease_id: None,
            received_at,
            energy_wh: 0.0,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("cannot create the replicate journal {}: {source}", dir.display())]
    Create {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Save(#[from] StateError),
    #[error("{0:?} is not a task id (0x and 64 hex digits)")]
    BadTaskId(String),
}

#[derive(Debug, Clone)]
pub struct Journal {
    dir: PathBuf,
}

impl Journal {
    pub fn open(dir: &Path) -> Result<Self, JournalError> {
        fs::create_dir_all(dir).map_err(|source| JournalError::Create {
            dir: dir.to_owned(),
            source,
        })?;
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    fn file(&self, chain_task_id: &str) -> Result<StateFile, JournalError> {
        // Task ids come from the scheduler: never let one name a path outside the journal.
        let valid = chain_task_id.len() == 66
            && chain_task_id.starts_with("0x")
            && chain_task_id[2..].bytes().all(|b| b.is_ascii_hexdigit());
        if !valid {
            return Err(JournalError::BadTaskId(chain_task_id.to_owned()));
        }
        Ok(StateFile::new(self.dir.join(format!(
            "{}.json",
            chain_task_id.to_ascii_lowercase()
        ))))
    }

    pub fn save(&self, record: &ReplicateRecord) -> Result<(), JournalError> {
        Ok(self.file(&record.chain_task_id)?.save(record)?)
    }

    pub fn remove(&self, chain_task_id: &str) -> Result<(), JournalError> {
        let file = self.file(chain_task_id)?;
        match fs::remove_file(file.path()) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(JournalError::Save(StateError::Write {
                    path: file.path().to_owned(),
                    source: e,
                }))
            }
            _ => Ok(()),
        }
    }

    pub fn get(&self, chain_task_id: &str) -> Option<ReplicateRecord> {
        self.file(chain_task_id).ok()?.load().into_option()
    }

    /// Every replicate the worker held when it stopped. Unreadable records are reported and
    /// set aside by [`StateFile::load`]; the scheduler's recovery still lists their tasks.
    pub fn all(&self) -> Vec<ReplicateRecord> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.extension().is_some_and(|e| e == "json"))
            .collect();
        paths.sort();
        paths
            .into_iter()
            .filter_map(|path| match StateFile::new(&path).load() {
                Loaded::Found(record) => Some(record),
                Loaded::Missing => None,
                Loaded::Corrupt(reason) => {
                    tracing::warn!("replicate journal: {reason}");
                    None
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pew_iexec::model::SignatureValue;

    fn authorization(task: &str) -> WorkerpoolAuthorization {
        WorkerpoolAuthorization {
            chain_task_id: task.into(),
            deal_id: format!("0x{}", "11".repeat(32)),
            task_index: 0,
            worker_wallet: "0xd154ef7ed41a66d8d1d01227388b2f904c436d70".into(),
            enclave_challenge: "0x0000000000000000000000000000000000000000".into(),
            signature: SignatureValue {
                value: format!("0x{}", "ab".repeat(65)),
            },
        }
    }

    #[test]
    fn records_survive_a_restart_and_are_removed_when_done() {
        let dir = tempfile::tempdir().unwrap();
        let task = format!("0x{}", "e0".repeat(32));
        let mut record = ReplicateRecord::new(authorization(&task), 1_700_000_000);
        record.reported = Some(ReplicateStatus::Computed);
        record.result_digest = Some(format!("0x{}", "cc".repeat(32)));
        Journal::open(dir.path()).unwrap().save(&record).unwrap();

        let reopened = Journal::open(dir.path()).unwrap();
        assert_eq!(reopened.all(), vec![record.clone()]);
        assert_eq!(reopened.get(&task), Some(record));
        reopened.remove(&task).unwrap();
        assert!(reopened.all().is_empty());
        reopened.remove(&task).unwrap();
    }

    #[test]
    fn a_task_id_cannot_escape_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path()).unwrap();
        let record = ReplicateRecord::new(authorization("../../etc/passwd"), 0);
        assert!(matches!(
            journal.save(&record),
            Err(JournalError::BadTaskId(_))
        ));
    }

    #[test]
    fn a_torn_record_is_set_aside_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let task = format!("0x{}", "aa".repeat(32));
        fs::write(dir.path().join(format!("{task}.json")), b"{\"chain_task").unwrap();
        let journal = Journal::open(dir.path()).unwrap();
        assert!(journal.all().is_empty());
        assert!(dir.path().join(format!("{task}.corrupt")).exists());
    }
}
