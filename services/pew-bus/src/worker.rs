//! `org.pew.Worker1`: the iExec worker that runs compute tasks as containers.

use serde::{Deserialize, Serialize};
use zbus::{Type, proxy};

pub const SERVICE: crate::Service = crate::Service {
    short_name: "worker",
    unit: "pew-workerd",
    bus_name: "org.pew.Worker1",
    object_path: "/org/pew/Worker1",
    introspection: include_str!("../interfaces/org.pew.Worker1.xml"),
    read_only_methods: &["RecentHistory", "AppProfiles"],
};

/// Values of the `State` property.
pub const STATES: [&str; 7] = [
    "registering",
    "idle",
    "computing",
    "paused",
    "paused-for-energy",
    "draining",
    "error",
];

/// One finished task in the recent history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Type)]
pub struct TaskRecord {
    pub task_id: String,
    pub app: String,
    /// Final replicate status, e.g. "COMPLETED", "FAILED", "ABORTED".
    pub status: String,
    pub finished_at: i64,
    pub energy_wh: f64,
}

/// What one app has cost on this node, learned from its runs (read by the fleet allocator).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Type)]
pub struct AppProfile {
    /// The app's image, as published on-chain.
    pub app: String,
    pub runs: u64,
    pub failures: u64,
    pub mean_duration_s: f64,
    pub mean_energy_wh: f64,
    /// One standard deviation of the energy per run.
    pub energy_std_wh: f64,
}

#[proxy(
    interface = "org.pew.Worker1",
    default_service = "org.pew.Worker1",
    default_path = "/org/pew/Worker1"
)]
pub trait Worker {
    /// Stops asking for new work; running work continues. Mutating.
    fn pause(&self) -> zbus::Result<()>;
    /// Undoes `Pause` or `Drain`. Mutating.
    fn resume(&self) -> zbus::Result<()>;
    /// Finishes running work, then stays idle (before an update or a shutdown). Mutating.
    fn drain(&self) -> zbus::Result<()>;
    /// The most recent finished tasks, newest first.
    fn recent_history(&self) -> zbus::Result<Vec<TaskRecord>>;
    /// Every app run on this node with its learned duration and energy.
    fn app_profiles(&self) -> zbus::Result<Vec<AppProfile>>;

    /// One of [`STATES`].
    #[zbus(property)]
    fn state(&self) -> zbus::Result<String>;
    /// Why the worker is in its state (the refusal of the power manager, a registration
    /// error...), empty when there is nothing to explain.
    #[zbus(property)]
    fn detail(&self) -> zbus::Result<String>;
    /// The task being worked on, empty when none.
    #[zbus(property)]
    fn current_task(&self) -> zbus::Result<String>;
    /// The replicate stage of the current task, e.g. "COMPUTING", "CONTRIBUTING".
    #[zbus(property)]
    fn stage(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn completed(&self) -> zbus::Result<u64>;
    #[zbus(property)]
    fn failed(&self) -> zbus::Result<u64>;
    #[zbus(property)]
    fn contributed(&self) -> zbus::Result<u64>;
    #[zbus(property)]
    fn revealed(&self) -> zbus::Result<u64>;

    /// A task reached a final status.
    #[zbus(signal)]
    fn task_finished(&self, task_id: String, status: String) -> zbus::Result<()>;
}
