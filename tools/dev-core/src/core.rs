//! The scheduler's shared state and the plumbing every service uses: locking, task update
//! requests, notifications, change signals.
//!
//! Locking rule: `state` is a plain mutex, never held across an `.await`. Chain calls happen
//! between two lock sections, and whatever was read before the call is checked again after it.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use pew_iexec::model::{ComputeLogs, PublicConfiguration, TaskNotification, TaskNotificationExtra};
use pew_iexec::status::{NextAction, TaskAbortCause};
use pew_iexec::stomp;
use pew_poco::{Address, B256, Wallet};
use serde::Serialize;
use tokio::sync::{mpsc, watch};

use crate::auth::{ChallengeStore, SchedulerTokens};
use crate::chain::SchedulerChain;
use crate::clock::{Clock, unix_millis};
use crate::config::{Config, Timing};
use crate::faults::FaultPlan;
use crate::proxy::ResultProxy;
use crate::push::PushChannel;
use crate::replicate::Replicate;
use crate::task::Task;

/// A registered worker (`com.iexec.core.worker.Worker`), serialized as the register reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Worker {
    /// Database id upstream; a stable hex string here.
    pub id: String,
    /// Name the worker gave.
    pub name: String,
    /// Wallet from the JWT (the body's is ignored).
    pub wallet_address: String,
    /// Operating system.
    pub os: String,
    /// CPU architecture.
    pub cpu: String,
    /// CPUs announced.
    pub cpu_nb: u32,
    /// Concurrent tasks allowed: `gpuEnabled ? 1 : cpuNb`.
    pub max_nb_tasks: u32,
    /// Memory announced (GiB).
    pub memory_size: u64,
    /// GPU worker.
    pub gpu_enabled: bool,
    /// SGX worker.
    pub tee_enabled: bool,
    /// TDX worker.
    pub tdx_enabled: bool,
    /// Tasks the worker has a replicate of, until they end.
    #[serde(rename = "participatingChainTaskIds")]
    pub participating: Vec<B256>,
    /// Tasks the worker is computing (released at `COMPUTED` or an early failure).
    #[serde(rename = "computingChainTaskIds")]
    pub computing: Vec<B256>,
    /// Kept in memory upstream, `null` in the stored document.
    pub last_alive_date: Option<i64>,
    /// Kept in memory upstream, `null` in the stored document.
    pub last_replicate_demand_date: Option<i64>,
}

impl Worker {
    /// Whether all computing slots are taken (`hasNoRemainingComputingSlot`).
    pub fn is_full(&self) -> bool {
        self.computing.len() >= self.max_nb_tasks as usize
    }

    /// Tags of tasks this worker must not get (`Worker.getExcludedTags`).
    pub(crate) fn excluded_tags(&self) -> Vec<B256> {
        const SCONE: u8 = 0b0011;
        const GRAMINE: u8 = 0b0101;
        const TDX: u8 = 0b1001;
        let tag = |bits: u8| B256::left_padding_from(&[bits]);
        match (self.tee_enabled, self.tdx_enabled) {
            (false, false) => vec![tag(TDX), tag(SCONE), tag(GRAMINE)],
            (false, true) => vec![tag(SCONE), tag(GRAMINE)],
            (true, false) => vec![tag(TDX)],
            (true, true) => Vec::new(),
        }
    }
}

/// When a wallet was last heard of (`WorkerService.WorkerStats`).
#[derive(Debug, Clone, Default)]
pub(crate) struct WorkerStats {
    pub(crate) last_alive: Option<Instant>,
    pub(crate) last_replicate_demand: Option<Instant>,
}

/// Everything the scheduler and the proxy remember.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) workers: HashMap<String, Worker>,
    pub(crate) stats: HashMap<String, WorkerStats>,
    /// Ordered so that scans are deterministic.
    pub(crate) tasks: BTreeMap<B256, Task>,
    /// Replicates of each initialized task (`ReplicatesList`).
    pub(crate) replicates: HashMap<B256, Vec<Replicate>>,
    pub(crate) challenges: ChallengeStore,
    pub(crate) tokens: SchedulerTokens,
    pub(crate) proxy: ResultProxy,
    /// Every notification published, oldest first.
    pub(crate) notifications: Vec<TaskNotification>,
    /// Compute logs received with `COMPUTED`, by task and worker (`TaskLogsService`).
    pub(crate) compute_logs: HashMap<(B256, String), ComputeLogs>,
}

impl State {
    pub(crate) fn replicate_mut(&mut self, task_id: B256, worker: &str) -> Option<&mut Replicate> {
        self.replicates
            .get_mut(&task_id)?
            .iter_mut()
            .find(|replicate| replicate.worker == worker)
    }

    pub(crate) fn replicate(&self, task_id: B256, worker: &str) -> Option<&Replicate> {
        self.replicates
            .get(&task_id)?
            .iter()
            .find(|replicate| replicate.worker == worker)
    }

    /// Removes the task from the worker's lists (`removeChainTaskIdFromWorker`).
    pub(crate) fn release_task(&mut self, task_id: B256, worker: &str) {
        if let Some(worker) = self.workers.get_mut(worker) {
            worker.participating.retain(|id| *id != task_id);
            worker.computing.retain(|id| *id != task_id);
        }
    }

    /// Frees the worker's computing slot (`removeComputedChainTaskIdFromWorker`).
    pub(crate) fn release_computing_slot(&mut self, task_id: B256, worker: &str) {
        if let Some(worker) = self.workers.get_mut(worker) {
            worker.computing.retain(|id| *id != task_id);
        }
    }

    /// Workers of every replicate of the task.
    pub(crate) fn replicate_owners(&self, task_id: B256) -> Vec<String> {
        self.replicates
            .get(&task_id)
            .map(|replicates| {
                replicates
                    .iter()
                    .map(|replicate| replicate.worker.clone())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The scheduler: shared by the HTTP handlers, the task update loop and the detectors.
pub(crate) struct Core {
    pub(crate) chain: Arc<dyn SchedulerChain>,
    pub(crate) scheduler: Wallet,
    pub(crate) workerpool: Address,
    pub(crate) clock: Clock,
    pub(crate) timing: Timing,
    pub(crate) ask_for_replicate_period: Duration,
    pub(crate) whitelist: Vec<String>,
    pub(crate) version: String,
    pub(crate) public_configuration: PublicConfiguration,
    pub(crate) chain_settings: crate::config::ChainSettings,
    /// Answer of `POST /workers/ping`.
    pub(crate) session_id: String,
    state: Mutex<State>,
    /// Serializes `GET /replicates/available` so two workers never take the last slot of a task
    /// (upstream's per-task `tryLock`).
    pub(crate) supply: tokio::sync::Mutex<()>,
    pub(crate) push: PushChannel,
    pub(crate) faults: Mutex<FaultPlan>,
    chain_forced_down: AtomicBool,
    task_updates: mpsc::UnboundedSender<B256>,
    changes: watch::Sender<u64>,
}

impl Core {
    /// Builds the core; `task_updates` feeds the task update loop.
    pub(crate) fn new(
        config: &Config,
        public_configuration: PublicConfiguration,
        session_id: String,
        chain: Arc<dyn SchedulerChain>,
        task_updates: mpsc::UnboundedSender<B256>,
    ) -> Self {
        let timing = config.timing.clone();
        Self {
            chain,
            scheduler: config.scheduler.clone(),
            workerpool: config.workerpool,
            clock: config.clock.clone(),
            ask_for_replicate_period: config.ask_for_replicate_period,
            whitelist: config.whitelist.clone(),
            version: config.version.clone(),
            public_configuration,
            chain_settings: config.chain.clone(),
            session_id,
            state: Mutex::new(State {
                workers: HashMap::new(),
                stats: HashMap::new(),
                tasks: BTreeMap::new(),
                replicates: HashMap::new(),
                challenges: ChallengeStore::new(
                    timing.challenge_ttl,
                    config.fixed_challenge.clone(),
                ),
                tokens: SchedulerTokens::new(&config.version, timing.jwt_ttl),
                proxy: ResultProxy::new(),
                notifications: Vec::new(),
                compute_logs: HashMap::new(),
            }),
            supply: tokio::sync::Mutex::new(()),
            push: PushChannel::new(timing.sockjs_heartbeat, timing.sockjs_disconnect_delay),
            faults: Mutex::new(FaultPlan::default()),
            chain_forced_down: AtomicBool::new(false),
            task_updates,
            changes: watch::channel(0).0,
            timing,
        }
    }

    /// Locks the state. Never hold the guard across an `.await`.
    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Current wall-clock time of the double.
    pub(crate) fn now(&self) -> SystemTime {
        self.clock.now()
    }

    /// `date` of a status update made now (Java epoch milliseconds).
    pub(crate) fn now_millis(&self) -> i64 {
        unix_millis(self.now())
    }

    /// Asks the task update loop to look at `task_id` (`TaskUpdateRequestManager.publishRequest`).
    pub(crate) fn request_task_update(&self, task_id: B256) {
        // The loop only stops when the double shuts down; a lost request then does not matter.
        let _ = self.task_updates.send(task_id);
    }

    /// Signals waiters that something changed.
    pub(crate) fn changed(&self) {
        self.changes.send_modify(|generation| *generation += 1);
    }

    /// A receiver of change signals.
    pub(crate) fn subscribe_changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Whether the chain answers (`BlockchainConnectionHealthIndicator.isUp`).
    pub(crate) async fn chain_is_up(&self) -> bool {
        !self.chain_forced_down.load(Ordering::Relaxed) && self.chain.block_number().await.is_ok()
    }

    pub(crate) fn force_chain_down(&self, down: bool) {
        self.chain_forced_down.store(down, Ordering::Relaxed);
    }

    /// Sends a notification on the task's topic (`NotificationService.sendTaskNotification`) and
    /// records it.
    pub(crate) fn notify(
        &self,
        task_id: B256,
        workers: Vec<String>,
        action: NextAction,
        extra: Option<TaskNotificationExtra>,
    ) {
        let notification = TaskNotification {
            chain_task_id: task_id.to_string(),
            workers_address: workers,
            task_notification_type: action,
            task_notification_extra: extra,
        };
        match serde_json::to_string(&notification) {
            Ok(json) => self
                .push
                .publish(&stomp::task_topic(&notification.chain_task_id), &json),
            Err(error) => tracing::error!(%error, "notification not serializable"),
        }
        tracing::info!(task = %task_id, ?action, workers = ?notification.workers_address, "notification sent");
        self.state().notifications.push(notification);
        self.changed();
    }

    /// `PLEASE_ABORT` with a cause.
    pub(crate) fn notify_abort(
        &self,
        task_id: B256,
        workers: Vec<String>,
        cause: Option<TaskAbortCause>,
    ) {
        let extra = cause.map(|cause| TaskNotificationExtra {
            task_abort_cause: Some(cause),
            ..Default::default()
        });
        self.notify(task_id, workers, NextAction::PleaseAbort, extra);
    }
}
