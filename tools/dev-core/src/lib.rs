//! `dev-core`: a test double of the iExec v9 scheduler (iexec-core 9.3) and of the result proxy
//! (iexec-result-proxy 9.1), written from the protocol reference
//! (`shared/reference/iexec-protocol.md`) and upstream's sources.
//!
//! One HTTP server answers everything a worker talks to apart from the chain: the worker REST API
//! (§1.4), the config server's `GET /config/chain`, STOMP over SockJS XHR polling at `/connect`
//! (§1.5), and the result proxy (§3.6). Behind it runs upstream's scheduling logic: replicate
//! supply and consensus prediction, the replicate workflow with its on-chain checks, the task
//! state machine that initializes and finalizes tasks on-chain with the scheduler's wallet, and
//! the lost-worker and deadline detectors.
//!
//! The chain is reached through [`SchedulerChain`]: [`PocoChain`] talks to a real PoCo
//! deployment, [`MemoryChain`] simulates the part of PoCo the scheduler relies on.
//!
//! Tests steer and observe the double through [`DevCore`]: publish deals, read task and replicate
//! histories, inject HTTP faults, move the clock past deadlines, run the detectors on demand.

mod api;
mod auth;
mod chain;
mod chain_poco;
mod clock;
mod config;
mod consensus;
mod core;
mod deals;
mod detectors;
mod faults;
mod jwt;
mod memory_chain;
mod proxy;
mod push;
mod replicate;
mod replicates;
mod supply;
mod task;
mod task_updates;

use std::net::SocketAddr;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use pew_iexec::model::{ComputeLogs, PublicConfiguration, TaskNotification};
use pew_iexec::status::ReplicateStatus;
use pew_poco::{Address, B256};
use rand_core::{OsRng, RngCore};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use crate::chain::{
    CONTRIBUTION_DEADLINE_RATIO, ChainContributionView, ChainDealView, ChainFault, ChainFuture,
    ChainTaskStatus, ChainTaskView, ContributionStatus, FINAL_DEADLINE_RATIO,
    REVEAL_DEADLINE_RATIO, SchedulerChain, weight_from_score,
};
pub use crate::chain_poco::PocoChain;
pub use crate::clock::Clock;
pub use crate::config::{ChainSettings, Config, Timing};
pub use crate::core::Worker;
pub use crate::deals::DealError;
pub use crate::faults::{Fault, FaultAction};
pub use crate::memory_chain::MemoryChain;
pub use crate::proxy::{StoredResult, fake_ipfs_hash};
pub use crate::replicate::Replicate;
pub use crate::task::{Task, TaskDescription, TaskStatus, TaskStatusChange};

use crate::core::Core;

/// The double could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The listen address is unusable.
    #[error("cannot listen on {address}: {source}")]
    Listen {
        /// Address asked for.
        address: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// A wait for a condition on the double ran out of time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("condition not met within {0:?}")]
pub struct WaitTimeout(pub Duration);

/// A running double. Dropping it stops the server and the background loops.
pub struct DevCore {
    core: Arc<Core>,
    address: SocketAddr,
    base_url: String,
    background: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for DevCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevCore")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

/// `PublicConfiguration.toString()` as Lombok writes it; its keccak is upstream's session id.
fn lombok_text(configuration: &PublicConfiguration) -> String {
    format!(
        "PublicConfiguration(workerPoolAddress={}, schedulerPublicAddress={}, configServerUrl={}, \
         resultRepositoryURL={}, askForReplicatePeriod={}, requiredWorkerVersion={})",
        configuration.worker_pool_address,
        configuration.scheduler_public_address,
        configuration.config_server_url,
        configuration.result_repository_url,
        configuration.ask_for_replicate_period_ms,
        configuration.required_worker_version
    )
}

/// Upstream's session id (`Hash.sha3String` of the configuration text), salted per start unless
/// `stable` (see [`Config::stable_session_id`]).
fn session_id(configuration: &PublicConfiguration, stable: bool) -> String {
    let mut text = lombok_text(configuration);
    if !stable {
        text.push_str(&format!("\ninstance={:016x}", OsRng.next_u64()));
    }
    pew_poco::keccak256(text.as_bytes()).to_string()
}

impl DevCore {
    /// Binds `config.listen`, then serves and schedules on the current Tokio runtime until
    /// dropped.
    pub async fn start(config: Config, chain: Arc<dyn SchedulerChain>) -> Result<Self, StartError> {
        let listen_error = |source| StartError::Listen {
            address: config.listen,
            source,
        };
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(listen_error)?;
        let address = listener.local_addr().map_err(listen_error)?;
        let base_url = config
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{address}"));
        let public_configuration = PublicConfiguration {
            worker_pool_address: format!("{:#x}", config.workerpool),
            scheduler_public_address: format!("{:#x}", config.scheduler.address()),
            config_server_url: base_url.clone(),
            result_repository_url: base_url.clone(),
            ask_for_replicate_period_ms: u64::try_from(config.ask_for_replicate_period.as_millis())
                .unwrap_or(u64::MAX),
            required_worker_version: config.required_worker_version.clone(),
        };
        let session_id = session_id(&public_configuration, config.stable_session_id);
        let (updates_sender, updates) = mpsc::unbounded_channel();
        let core = Arc::new(Core::new(
            &config,
            public_configuration,
            session_id,
            chain,
            updates_sender,
        ));

        let router = api::router(Arc::clone(&core));
        let server = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, router).await {
                tracing::error!(%error, "HTTP server stopped");
            }
        });
        let task_loop = {
            let core = Arc::clone(&core);
            tokio::spawn(async move { task_updates::run(&core, updates).await })
        };
        let detector_loops = {
            let core = Arc::clone(&core);
            tokio::spawn(async move { detectors::run(&core).await })
        };
        let background = vec![server, task_loop, detector_loops];
        tracing::info!(%base_url, scheduler = %config.scheduler.address(), "dev-core listening");
        Ok(Self {
            core,
            address,
            base_url,
            background,
        })
    }

    /// Base URL of the core, the config server and the result proxy, e.g. `http://127.0.0.1:40123`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Address the server is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.address
    }

    /// The scheduler's wallet address (the workerpool owner).
    pub fn scheduler_address(&self) -> Address {
        self.core.scheduler.address()
    }

    /// Answer of `POST /workers/ping`.
    pub fn session_id(&self) -> &str {
        &self.core.session_id
    }

    /// Schedules the first `tasks` tasks of a deal made with this workerpool: the scheduler
    /// initializes them on-chain, then offers them to workers. Returns the new task ids.
    pub async fn publish_deal(&self, deal_id: B256, tasks: u64) -> Result<Vec<B256>, DealError> {
        deals::publish_deal(&self.core, deal_id, tasks).await
    }

    /// The scheduler's record of a task.
    pub fn task(&self, task_id: B256) -> Option<Task> {
        self.core.state().tasks.get(&task_id).cloned()
    }

    /// Every status the task went through, oldest first.
    pub fn task_statuses(&self, task_id: B256) -> Vec<TaskStatus> {
        self.task(task_id)
            .map(|task| task.history.iter().map(|change| change.status).collect())
            .unwrap_or_default()
    }

    /// A worker's replicate of a task.
    pub fn replicate(&self, task_id: B256, worker: &str) -> Option<Replicate> {
        self.core.state().replicate(task_id, worker).cloned()
    }

    /// Every status of a worker's replicate, oldest first.
    pub fn replicate_statuses(&self, task_id: B256, worker: &str) -> Vec<ReplicateStatus> {
        self.replicate(task_id, worker)
            .map(|replicate| replicate.statuses())
            .unwrap_or_default()
    }

    /// A registered worker.
    pub fn worker(&self, wallet: &str) -> Option<Worker> {
        self.core.state().workers.get(wallet).cloned()
    }

    /// Every notification published on STOMP, oldest first.
    pub fn notifications(&self) -> Vec<TaskNotification> {
        self.core.state().notifications.clone()
    }

    /// Compute logs a worker sent with `COMPUTED`.
    pub fn compute_logs(&self, task_id: B256, worker: &str) -> Option<ComputeLogs> {
        self.core
            .state()
            .compute_logs
            .get(&(task_id, worker.to_owned()))
            .cloned()
    }

    /// The result uploaded to the result proxy for a task.
    pub fn stored_result(&self, task_id: B256) -> Option<StoredResult> {
        self.core.state().proxy.result(task_id).cloned()
    }

    /// Number of SockJS sessions subscribed to the task's topic.
    pub fn subscribers(&self, task_id: B256) -> usize {
        self.core
            .push
            .subscribers(&pew_iexec::stomp::task_topic(&task_id.to_string()))
    }

    /// Adds a scripted HTTP fault.
    pub fn inject_fault(&self, fault: Fault) {
        self.core
            .faults
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .add(fault);
    }

    /// Drops every pending fault.
    pub fn clear_faults(&self) {
        self.core
            .faults
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// Closes every SockJS session (`c[3000,"Go away!"]`), as a restarted core would: workers
    /// must reconnect and subscribe again to keep receiving notifications.
    pub fn close_push_sessions(&self) {
        self.core.push.close_all();
    }

    /// Makes the scheduler believe its chain connection is down (`true`): `available` and
    /// `updateStatus` then answer 503.
    pub fn set_chain_down(&self, down: bool) {
        self.core.force_chain_down(down);
    }

    /// Moves the double's wall clock forward (deadlines, token expiry).
    pub fn advance_clock(&self, by: Duration) {
        self.core.clock.advance(by);
    }

    /// Runs the lost-worker and task detectors now instead of waiting for their period.
    pub async fn run_detectors(&self) {
        detectors::detect_lost_workers(&self.core).await;
        detectors::check_tasks(&self.core).await;
    }

    /// Waits until `condition` holds, re-checking after every change of the double's state.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        condition: impl Fn(&Self) -> bool,
    ) -> Result<(), WaitTimeout> {
        let mut changes = self.core.subscribe_changes();
        let wait = async {
            while !condition(self) {
                if changes.changed().await.is_err() {
                    // The double is gone; the condition cannot change any more.
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .map_err(|_| WaitTimeout(timeout))
    }

    /// Waits until the task reaches `status`.
    pub async fn wait_for_task_status(
        &self,
        task_id: B256,
        status: TaskStatus,
        timeout: Duration,
    ) -> Result<(), WaitTimeout> {
        self.wait_until(timeout, |core| {
            core.task_statuses(task_id).contains(&status)
        })
        .await
    }

    /// Waits until the worker's replicate of the task went through `status`.
    pub async fn wait_for_replicate_status(
        &self,
        task_id: B256,
        worker: &str,
        status: ReplicateStatus,
        timeout: Duration,
    ) -> Result<(), WaitTimeout> {
        self.wait_until(timeout, |core| {
            core.replicate_statuses(task_id, worker).contains(&status)
        })
        .await
    }
}

impl DevCore {
    /// Stops the server and the background loops and waits until they are gone, so that the
    /// listening port is free for a restarted double.
    pub async fn shutdown(mut self) {
        for task in std::mem::take(&mut self.background) {
            task.abort();
            // Cancellation is the expected outcome; a loop that ended on its own is fine too.
            let _ = task.await;
        }
    }
}

impl Drop for DevCore {
    fn drop(&mut self) {
        for task in &self.background {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lombok_text_matches_the_java_to_string() {
        let configuration = PublicConfiguration {
            worker_pool_address: "0xpool".into(),
            scheduler_public_address: "0xscheduler".into(),
            config_server_url: "http://c".into(),
            result_repository_url: "http://r".into(),
            ask_for_replicate_period_ms: 5000,
            required_worker_version: String::new(),
        };
        assert_eq!(
            lombok_text(&configuration),
            "PublicConfiguration(workerPoolAddress=0xpool, schedulerPublicAddress=0xscheduler, \
             configServerUrl=http://c, resultRepositoryURL=http://r, askForReplicatePeriod=5000, requiredWorkerVersion=)"
        );
        let stable = session_id(&configuration, true);
        assert_eq!(
            stable,
            pew_poco::keccak256(lombok_text(&configuration).as_bytes()).to_string()
        );
        assert_eq!(
            session_id(&configuration, true),
            stable,
            "same configuration, same id"
        );
        assert_ne!(
            session_id(&configuration, false),
            session_id(&configuration, false),
            "salted per start"
        );
    }
}
