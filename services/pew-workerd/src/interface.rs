//! The `org.pew.Worker1` object: the board's published snapshot as properties, the operator's
//! controls as methods.

use std::sync::Arc;

use pew_bus::worker::{AppProfile, TaskRecord};
use zbus::object_server::SignalEmitter;

use crate::board::{Board, Published};

pub struct WorkerInterface {
    board: Arc<Board>,
}

impl WorkerInterface {
    pub fn new(board: Arc<Board>) -> Self {
        Self { board }
    }
}

#[zbus::interface(name = "org.pew.Worker1")]
impl WorkerInterface {
    async fn pause(&self) {
        tracing::info!("paused by the operator");
        self.board.control(|c| c.paused = true);
    }

    async fn resume(&self) {
        tracing::info!("resumed by the operator");
        self.board.control(|c| {
            c.paused = false;
            c.draining = false;
        });
    }

    async fn drain(&self) {
        tracing::info!("draining on the operator's request");
        self.board.control(|c| c.draining = true);
    }

    async fn recent_history(&self) -> Vec<TaskRecord> {
        self.board.published().history.into_iter().collect()
    }

    async fn app_profiles(&self) -> Vec<AppProfile> {
        self.board
            .profiles()
            .apps
            .into_iter()
            .map(|(app, profile)| AppProfile {
                app,
                runs: profile.energy_wh.count,
                failures: profile.failures,
                mean_duration_s: profile.duration_s.mean,
                mean_energy_wh: profile.energy_wh.mean,
                energy_std_wh: profile.energy_wh.std_dev(),
            })
            .collect()
    }

    #[zbus(property)]
    async fn state(&self) -> String {
        self.board.published().state
    }

    #[zbus(property)]
    async fn detail(&self) -> String {
        self.board.published().detail
    }

    #[zbus(property)]
    async fn current_task(&self) -> String {
        self.board.published().current_task
    }

    #[zbus(property)]
    async fn stage(&self) -> String {
        self.board.published().stage
    }

    #[zbus(property)]
    async fn completed(&self) -> u64 {
        self.board.published().completed
    }

    #[zbus(property)]
    async fn failed(&self) -> u64 {
        self.board.published().failed
    }

    #[zbus(property)]
    async fn contributed(&self) -> u64 {
        self.board.published().contributed
    }

    #[zbus(property)]
    async fn revealed(&self) -> u64 {
        self.board.published().revealed
    }

    #[zbus(signal)]
    pub async fn task_finished(
        emitter: &SignalEmitter<'_>,
        task_id: &str,
        status: &str,
    ) -> zbus::Result<()>;
}

impl WorkerInterface {
    /// Emits PropertiesChanged for what changed between two snapshots, and TaskFinished for
    /// every task that entered the history.
    pub async fn announce(
        &self,
        emitter: &SignalEmitter<'_>,
        old: &Published,
        new: &Published,
    ) -> zbus::Result<()> {
        if old.state != new.state {
            self.state_changed(emitter).await?;
        }
        if old.detail != new.detail {
            self.detail_changed(emitter).await?;
        }
        if old.current_task != new.current_task {
            self.current_task_changed(emitter).await?;
        }
        if old.stage != new.stage {
            self.stage_changed(emitter).await?;
        }
        if old.completed != new.completed {
            self.completed_changed(emitter).await?;
        }
        if old.failed != new.failed {
            self.failed_changed(emitter).await?;
        }
        if old.contributed != new.contributed {
            self.contributed_changed(emitter).await?;
        }
        if old.revealed != new.revealed {
            self.revealed_changed(emitter).await?;
        }
        let finished = (new.completed + new.failed).saturating_sub(old.completed + old.failed);
        for record in new.history.iter().take(finished as usize).rev() {
            Self::task_finished(emitter, &record.task_id, &record.status).await?;
        }
        Ok(())
    }
}
