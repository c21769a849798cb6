//! The worker service: connects to everything, registers, recovers what it held, then pings,
//! asks for work when the operator and the energy allow, routes the scheduler's pushes to the
//! replicates, and follows the power manager's mode.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use pew_chain::Chain;
use pew_containers::Engine;
use pew_daemon::systemd;
use pew_iexec::model::{TaskNotification, WorkerModel};
use pew_iexec::status::{NextAction, StatusCause};
use pew_poco::{Address, Wallet};
use pew_scheduler::{
    Backoff, Jitter, Notifications, NotificationsHandle, ResultProxyClient, SchedulerClient,
};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::activity::{PowerMode, Registration, Situation};
use crate::board::Board;
use crate::config::{CriticalPolicy, WorkerdConfig};
use crate::context::Context;
use crate::interface::WorkerInterface;
use crate::journal::{Journal, ReplicateRecord};
use crate::power::{Grant, PowerEvent, PowerEvents, PowerLink};
use crate::replicate::{Command, Exit, Replicate, now};

/// The scheduler's liveness limit is 60 s; ping well inside it (§1.2).
const PING_PERIOD: Duration = Duration::from_secs(10);
/// One replicate at a time: a Pi's energy budget is planned per task.
const CAPACITY: usize = 1;

/// Runs the worker until SIGTERM.
pub async fn run(config: WorkerdConfig, bus_address: Option<String>) -> Result<()> {
    let wallet = Arc::new(crate::wallet::load(&config.wallet)?);
    let address = format!("{:#x}", wallet.address());
    tracing::info!(wallet = %address, scheduler = %config.scheduler_url, "pew-workerd starting");

    let board = Arc::new(Board::new(&config.data_dir, config.energy.compute_power_w));
    board.publish(|p| p.state = "registering".into());
    let connection = pew_bus::serve(
        bus_address.as_deref(),
        &pew_bus::worker::SERVICE,
        WorkerInterface::new(board.clone()),
    )
    .await
    .context("cannot serve org.pew.Worker1")?;
    let interface = connection
        .object_server()
        .interface::<_, WorkerInterface>(pew_bus::worker::SERVICE.object_path)
        .await?;
    let power = match PowerLink::connect(&connection).await {
        Ok(power) => Some(power),
        Err(e) => {
            tracing::warn!("no power manager on the bus ({e}); no work will be taken");
            None
        }
    };
    // Ready once on the bus: registration can take as long as the network needs.
    systemd::ready("registering with the scheduler");

    let scheduler =
        SchedulerClient::new(&config.scheduler_url, wallet.clone(), config.http_timeout())?;
    let shutdown = pew_daemon::shutdown_signal();
    tokio::pin!(shutdown);
    let watchdog_period = systemd::watchdog_interval().unwrap_or(Duration::from_secs(30));
    let mut watchdog = tokio::time::interval(watchdog_period);
    // The network may take long to come up; the process is alive meanwhile.
    let connect = connect_peers(&config, &wallet, &scheduler, &board);
    tokio::pin!(connect);
    let (public, chain, hub, engine) = loop {
        tokio::select! {
            peers = &mut connect => break peers?,
            _ = watchdog.tick() => systemd::watchdog(),
            _ = &mut shutdown => return Ok(()),
        }
    };
    let http = reqwest::Client::builder()
        .timeout(config.http_timeout())
        .build()
        .context("cannot build the HTTP client")?;
    let workerpool: Address = public.worker_pool_address.parse().with_context(|| {
        format!(
            "the scheduler's workerPoolAddress {:?} is not an address",
            public.worker_pool_address
        )
    })?;
    let ctx = Arc::new(Context {
        result_proxy: ResultProxyClient::new(config.http_timeout())?,
        journal: Journal::open(&config.data_dir.join("replicates"))?,
        tasks_dir: config.data_dir.join("tasks"),
        config: config.clone(),
        wallet: wallet.clone(),
        scheduler: scheduler.clone(),
        chain,
        engine,
        http,
        public,
        workerpool,
        hub,
        power: power.clone(),
        board: board.clone(),
    });

    let (notifications, notes) = Notifications::spawn(&config.scheduler_url, &address)?;
    let mut worker = Worker {
        ctx,
        notifications,
        running: HashMap::new(),
        tasks: JoinSet::new(),
        registration: Registration::Pending,
        session: None,
        power_mode: PowerMode::Unknown,
        energy_refused: false,
        standing_lease: None,
    };
    let mut published = board.watch_published();
    let mut controls = board.watch_controls();
    let mut last_announced = board.published();
    let mut notes = notes;
    let mut power_events = match &power {
        Some(power) => {
            worker.power_mode = PowerMode::parse(&power.mode().await);
            Some(PowerEvents::subscribe(power).await?)
        }
        None => None,
    };
    let mut ping = tokio::time::interval(PING_PERIOD);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let ask_period = Duration::from_millis(worker.ctx.public.ask_for_replicate_period_ms.max(1000));
    let mut next_ask = tokio::time::Instant::now();
    let mut ask_backoff = Backoff::new(ask_period, Duration::from_secs(60), Jitter::Decorrelated);

    loop {
        worker.publish_state();
        tokio::select! {
            _ = ping.tick() => worker.ping().await,
            _ = tokio::time::sleep_until(next_ask) => {
                next_ask = tokio::time::Instant::now() + match worker.ask().await {
                    Ok(()) => { ask_backoff.reset(); ask_period }
                    Err(e) => {
                        let delay = ask_backoff.next_delay();
                        tracing::warn!("asking for work failed ({e}); next try in {delay:?}");
                        delay
                    }
                };
            }
            Some(note) = notes.recv() => worker.route(note).await,
            Some(done) = worker.tasks.join_next(), if !worker.tasks.is_empty() => {
                if let Ok((task, exit)) = done {
                    tracing::info!(task, ?exit, "replicate finished");
                    worker.running.remove(&task);
                    worker.notifications.unsubscribe(&task);
                }
            }
            Ok(()) = controls.changed() => {}
            Some(event) = async { match power_events.as_mut() { Some(events) => events.next().await, None => None } } => {
                match event {
                    PowerEvent::Mode(mode) => worker.power_changed(mode).await,
                    PowerEvent::LeaseExpired(lease) => worker.lease_expired(&lease),
                    PowerEvent::Restarted => worker.power_manager_restarted().await,
                }
            }
            Ok(()) = published.changed() => {
                let now_published = published.borrow_and_update().clone();
                if let Err(e) = interface.get().await.announce(interface.signal_emitter(), &last_announced, &now_published).await {
                    tracing::warn!("cannot announce worker changes: {e}");
                }
                last_announced = now_published;
            }
            _ = watchdog.tick() => systemd::watchdog(),
            result = &mut shutdown => {
                result.context("cannot wait for signals")?;
                break;
            }
        }
    }
    systemd::stopping();
    worker.release_standing_lease().await;
    // Replicates stop where they are; the journal and the results on disk let the next start
    // recover them with the scheduler.
    worker.running.clear();
    worker.tasks.shutdown().await;
    tracing::info!("pew-workerd stopped");
    Ok(())
}

/// The scheduler's public configuration, then the chain and the container engine, each retried
/// until it answers (a node may boot long before its network is up).
async fn connect_peers(
    config: &WorkerdConfig,
    wallet: &Wallet,
    scheduler: &SchedulerClient,
    board: &Board,
) -> Result<Peers> {
    let mut backoff = Backoff::new(
        Duration::from_secs(2),
        Duration::from_secs(120),
        Jitter::Decorrelated,
    );
    loop {
        match try_connect_peers(config, wallet, scheduler).await {
            Ok(peers) => return Ok(peers),
            Err(e) => {
                let delay = backoff.next_delay();
                tracing::warn!("{e:#}; retrying in {delay:?}");
                board.publish(|p| p.detail = format!("{e:#}"));
                tokio::time::sleep(delay).await;
            }
        }
    }
}

type Peers = (
    pew_iexec::model::PublicConfiguration,
    Chain,
    Address,
    Engine,
);

async fn try_connect_peers(
    config: &WorkerdConfig,
    wallet: &Wallet,
    scheduler: &SchedulerClient,
) -> Result<Peers> {
    let public = scheduler
        .public_config()
        .await
        .context("scheduler configuration")?;
    let chain_config = scheduler
        .chain_config(&public.config_server_url)
        .await
        .context("chain configuration")?;
    let rpc = if config.chain.rpc_url.is_empty() {
        chain_config.chain_node_url.clone()
    } else {
        config.chain.rpc_url.clone()
    };
    let hub: Address = chain_config
        .iexec_hub_contract_address
        .parse()
        .context("the published hub address")?;
    let chain = Chain::connect(&rpc, hub, Some(wallet), Some(config.data_dir.join("nonce")))
        .await
        .with_context(|| format!("chain node {rpc}"))?;
    if !chain_config.sidechain {
        let balance = chain
            .balance(wallet.address())
            .await
            .context("wallet balance")?;
        let one_transaction = pew_poco::U256::from(1_000_000u64)
            * pew_poco::U256::from((config.chain.gas_price_cap_gwei * 1e9) as u64);
        if balance < one_transaction {
            bail!("the wallet holds {balance} wei, less than one transaction at the gas price cap");
        }
    }
    let engine = Engine::connect(&config.engine.socket)
        .await
        .with_context(|| format!("container engine at {}", config.engine.socket.display()))?;
    Ok((public, chain, hub, engine))
}

struct Worker {
    ctx: Arc<Context>,
    notifications: NotificationsHandle,
    running: HashMap<String, mpsc::Sender<Command>>,
    tasks: JoinSet<(String, Exit)>,
    registration: Registration,
    session: Option<String>,
    power_mode: PowerMode,
    energy_refused: bool,
    standing_lease: Option<StandingLease>,
}

/// Energy reserved while idle for the next replicate.
struct StandingLease {
    id: String,
    wh: f64,
    renew_at: tokio::time::Instant,
}

impl Worker {
    fn situation(&self) -> Situation {
        let controls = self.ctx.board.controls();
        Situation {
            registration: self.registration.clone(),
            paused: controls.paused,
            draining: controls.draining,
            power: self.power_mode,
            energy_refused: self.energy_refused,
            running: self.running.len(),
            capacity: CAPACITY,
        }
    }

    /// Publishes the state; systemd hears of it only when it changes (the loop runs at every
    /// event, the state changes rarely).
    fn publish_state(&self) {
        let state = self.situation().state().to_string();
        let changed = self.ctx.board.published().state != state;
        let registration = self.registration.clone();
        self.ctx.board.publish(|p| {
            p.state = state.clone();
            if let Registration::Failing(reason) = registration {
                p.detail = reason;
            }
        });
        if changed {
            systemd::status(&state);
        }
    }

    /// Pings, and registers first when not registered or when the scheduler restarted (its
    /// session id changed).
    async fn ping(&mut self) {
        if self.registration != Registration::Registered {
            if let Err(e) = self.register().await {
                tracing::warn!("registration failed: {e:#}");
                self.registration = Registration::Failing(format!("registration: {e:#}"));
            }
            return;
        }
        match self.ctx.scheduler.ping().await {
            Ok(session) => {
                let restarted = self.session.as_ref().is_some_and(|s| *s != session);
                self.session = Some(session);
                if restarted {
                    tracing::warn!("the scheduler restarted; registering again");
                    self.registration = Registration::Pending;
                    if let Err(e) = self.register().await {
                        self.registration = Registration::Failing(format!("registration: {e:#}"));
                    }
                }
            }
            Err(e) => tracing::warn!("ping failed: {e}"),
        }
    }

    async fn register(&mut self) -> Result<()> {
        let scheduler = &self.ctx.scheduler;
        scheduler.login().await.context("login")?;
        match scheduler.version().await {
            Ok(version) => tracing::info!(%version, "scheduler version"),
            Err(e) => tracing::debug!("no scheduler version: {e}"),
        }
        let required = &self.ctx.public.required_worker_version;
        if !required.is_empty() && required != env!("CARGO_PKG_VERSION") {
            bail!("the scheduler requires worker version {required}");
        }
        scheduler
            .register(&WorkerModel {
                name: self.ctx.config.name.clone(),
                wallet_address: scheduler.wallet_address(),
                os: "Linux".into(),
                cpu: std::env::consts::ARCH.into(),
                cpu_nb: CAPACITY as u32,
                memory_size: 0,
                gpu_enabled: false,
                tee_enabled: false,
                tdx_enabled: false,
            })
            .await
            .context("register")?;
        self.session = Some(scheduler.ping().await.context("first ping")?);
        self.registration = Registration::Registered;
        self.ctx.board.publish(|p| p.detail.clear());
        tracing::info!("registered");
        self.recover().await;
        Ok(())
    }

    /// Resumes the replicates the scheduler says were interrupted, when their journal entry is
    /// here; forgets journal entries the scheduler no longer lists.
    async fn recover(&mut self) {
        let block = match self.ctx.chain.block_number().await {
            Ok(block) => block,
            Err(e) => {
                tracing::warn!("cannot recover without the chain: {e}");
                return;
            }
        };
        let notifications = match self.ctx.scheduler.interrupted_replicates(block).await {
            Ok(notifications) => notifications,
            Err(e) => {
                tracing::warn!("cannot list interrupted replicates: {e}");
                return;
            }
        };
        let listed: Vec<String> = notifications
            .iter()
            .map(|n| n.chain_task_id.to_ascii_lowercase())
            .collect();
        for record in self.ctx.journal.all() {
            let task = record.chain_task_id.to_ascii_lowercase();
            if !listed.contains(&task) && !self.running.contains_key(&task) {
                tracing::info!(task, "forgetting a replicate the scheduler no longer lists");
                let _ = self.ctx.journal.remove(&task);
                if let Ok(id) = task.parse() {
                    let _ = crate::task::TaskFiles::new(&self.ctx.tasks_dir, id).purge();
                }
            }
        }
        for notification in notifications {
            let task = notification.chain_task_id.to_ascii_lowercase();
            if self.running.contains_key(&task) {
                continue;
            }
            let Some(record) = self.ctx.journal.get(&task) else {
                tracing::warn!(
                    task,
                    "interrupted replicate without a journal entry; it will time out"
                );
                continue;
            };
            tracing::info!(task, action = %notification.task_notification_type, "recovering");
            let block = notification
                .task_notification_extra
                .as_ref()
                .and_then(|extra| extra.block_number);
            self.spawn(record, notification.task_notification_type, block);
        }
    }

    /// Asks the scheduler for a replicate when allowed, with energy reserved first.
    async fn ask(&mut self) -> Result<()> {
        if !self.situation().may_ask() {
            self.release_standing_lease().await;
            return Ok(());
        }
        let Some(lease) = self.hold_energy().await else {
            return Ok(());
        };
        let block = self.ctx.chain.block_number().await?;
        if block == 0 {
            return Ok(());
        }
        let Some(summary) = self.ctx.scheduler.available_replicate(block).await? else {
            return Ok(());
        };
        // The energy held for asking now belongs to this replicate.
        self.standing_lease = None;
        let mut record = ReplicateRecord::new(summary.workerpool_authorization, now());
        record.lease_id = Some(lease);
        if let Err(e) = self.ctx.journal.save(&record) {
            tracing::error!("cannot journal a new replicate: {e}");
        }
        tracing::info!(task = %record.chain_task_id, at_ms = crate::replicate::unix_millis(std::time::SystemTime::now()), "replicate received");
        self.spawn(record, NextAction::PleaseStart, None);
        Ok(())
    }

    /// The standing lease's id: energy for the next task, held across asks and renewed at half
    /// its life or when the need grew, so that an idle worker talks to the power manager once
    /// every few minutes instead of twice per ask. None when the power manager refuses.
    async fn hold_energy(&mut self) -> Option<String> {
        let Some(power) = self.ctx.power.clone() else {
            self.energy_refused = true;
            self.ctx
                .board
                .publish(|p| p.detail = "no power manager".into());
            return None;
        };
        let need = self.ctx.board.profiles().need(
            None,
            self.ctx.config.energy.expected_task_s,
            self.ctx.config.energy.margin,
        );
        let now = tokio::time::Instant::now();
        if let Some(held) = &self.standing_lease
            && now < held.renew_at
            && held.wh >= need.wh
        {
            return Some(held.id.clone());
        }
        // Released first, so that a renewal on a tight budget can reuse the energy it held.
        self.release_standing_lease().await;
        let grant = power
            .request(need.wh, need.seconds, "iExec task (asking)")
            .await;
        match grant {
            Grant::Granted { lease_id } => {
                if self.energy_refused {
                    self.ctx.board.publish(|p| p.detail.clear());
                }
                self.energy_refused = false;
                self.standing_lease = Some(StandingLease {
                    id: lease_id.clone(),
                    wh: need.wh,
                    renew_at: now + Duration::from_secs(u64::from(need.seconds) / 2),
                });
                Some(lease_id)
            }
            Grant::Refused { reason } => {
                self.energy_refused = true;
                self.ctx
                    .board
                    .publish(|p| p.detail = format!("energy refused: {reason}"));
                None
            }
        }
    }

    async fn release_standing_lease(&mut self) {
        if let Some(held) = self.standing_lease.take() {
            self.release(&held.id).await;
        }
    }

    /// A lease ran out on the power manager's clock (which a simulation may run fast): the
    /// standing one is requested again at the next ask.
    fn lease_expired(&mut self, lease: &str) {
        if self
            .standing_lease
            .as_ref()
            .is_some_and(|held| held.id == lease)
        {
            self.standing_lease = None;
        }
    }

    /// The power manager restarted (or appeared): its leases are gone, and a mode change may
    /// have been missed meanwhile.
    async fn power_manager_restarted(&mut self) {
        self.standing_lease = None;
        if let Some(power) = &self.ctx.power {
            let mode = PowerMode::parse(&power.mode().await);
            if mode != self.power_mode {
                self.power_changed(mode).await;
            }
        }
    }

    async fn release(&self, lease: &str) {
        if let Some(power) = &self.ctx.power {
            power.release(lease).await;
        }
    }

    fn spawn(&mut self, record: ReplicateRecord, first: NextAction, block: Option<u64>) {
        let task = record.chain_task_id.to_ascii_lowercase();
        let (sender, inbox) = mpsc::channel(16);
        let replicate = match Replicate::new(self.ctx.clone(), record, inbox) {
            Ok(replicate) => replicate,
            Err(e) => {
                tracing::error!("{e}");
                return;
            }
        };
        self.notifications.subscribe(&task);
        self.running.insert(task.clone(), sender);
        self.tasks
            .spawn(async move { (task, replicate.run(first, block).await) });
    }

    async fn route(&mut self, notification: TaskNotification) {
        let task = notification.chain_task_id.to_ascii_lowercase();
        match self.running.get(&task) {
            Some(sender) => {
                let _ = sender
                    .send(Command::Notification(Box::new(notification)))
                    .await;
            }
            None => tracing::debug!(task, "notification for a task not held here"),
        }
    }

    async fn power_changed(&mut self, mode: PowerMode) {
        tracing::info!(?mode, "power mode changed");
        self.power_mode = mode;
        self.energy_refused = false;
        let abort = match mode {
            PowerMode::Shutdown => true,
            PowerMode::Critical => self.ctx.config.energy.critical == CriticalPolicy::Abort,
            _ => false,
        };
        if abort {
            for (task, sender) in &self.running {
                tracing::warn!(task, ?mode, "aborting running work");
                let _ = sender
                    .send(Command::Abort(StatusCause::AbortedByWorker))
                    .await;
            }
        }
    }
}
