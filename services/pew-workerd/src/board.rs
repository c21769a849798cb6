//! The board between the service, its replicates and `org.pew.Worker1`: what is published on
//! the bus, the operator's controls, and the learned app profiles.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Mutex;

use pew_bus::worker::TaskRecord;
use pew_daemon::state::StateFile;
use tokio::sync::watch;

use crate::energy::{ProfileBook, RunMeasurement};

/// Finished tasks kept for `RecentHistory`.
const HISTORY_LENGTH: usize = 20;

/// Everything `org.pew.Worker1` shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Published {
    pub state: String,
    pub detail: String,
    pub current_task: String,
    pub stage: String,
    pub completed: u64,
    pub failed: u64,
    pub contributed: u64,
    pub revealed: u64,
    pub history: VecDeque<TaskRecord>,
}

/// The operator's controls, set over the bus.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Controls {
    pub paused: bool,
    pub draining: bool,
}

/// A counter moved by a replicate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    Contributed,
    Revealed,
}

pub struct Board {
    published: watch::Sender<Published>,
    controls: watch::Sender<Controls>,
    profiles: Mutex<ProfileBook>,
    profiles_file: StateFile,
}

impl Board {
    /// Loads the profiles saved in `data_dir` (or starts from `compute_power_w`).
    pub fn new(data_dir: &Path, compute_power_w: f64) -> Self {
        let profiles_file = StateFile::new(data_dir.join("profiles.json"));
        let profiles = profiles_file
            .load()
            .into_option()
            .unwrap_or_else(|| ProfileBook::new(compute_power_w));
        Self {
            published: watch::channel(Published::default()).0,
            controls: watch::channel(Controls::default()).0,
            profiles: Mutex::new(profiles),
            profiles_file,
        }
    }

    pub fn publish(&self, change: impl FnOnce(&mut Published)) {
        self.published.send_if_modified(|published| {
            let before = published.clone();
            change(published);
            *published != before
        });
    }

    pub fn published(&self) -> Published {
        self.published.borrow().clone()
    }

    pub fn watch_published(&self) -> watch::Receiver<Published> {
        self.published.subscribe()
    }

    pub fn controls(&self) -> Controls {
        *self.controls.borrow()
    }

    pub fn watch_controls(&self) -> watch::Receiver<Controls> {
        self.controls.subscribe()
    }

    pub fn control(&self, change: impl FnOnce(&mut Controls)) {
        self.controls.send_modify(change);
    }

    pub fn count(&self, counter: Counter) {
        self.publish(|p| match counter {
            Counter::Contributed => p.contributed += 1,
            Counter::Revealed => p.revealed += 1,
        });
    }

    /// A replicate reached a final status.
    pub fn finished(&self, record: TaskRecord) {
        self.publish(|p| {
            match record.status.as_str() {
                "COMPLETED" => p.completed += 1,
                _ => p.failed += 1,
            }
            if p.current_task == record.task_id {
                p.current_task.clear();
                p.stage.clear();
            }
            p.history.push_front(record);
            p.history.truncate(HISTORY_LENGTH);
        });
    }

    /// Learns from a compute stage and saves the profiles (a power cut loses at most this run).
    pub fn learn(&self, app: &str, run: RunMeasurement) {
        let snapshot = {
            let mut profiles = self.profiles.lock().unwrap_or_else(|p| p.into_inner());
            profiles.record(app, run);
            profiles.clone()
        };
        if let Err(e) = self.profiles_file.save(&snapshot) {
            tracing::warn!("cannot save app profiles: {e}");
        }
    }

    pub fn profiles(&self) -> ProfileBook {
        self.profiles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
