//! One replicate from the scheduler's offer to COMPLETED or ABORTED: each next action the
//! scheduler returns (or pushes) is carried out, reported, and journaled before the next one.
//!
//! Every report is retried with backoff until the task's final deadline, so a scheduler that
//! restarts or a network that drops loses nothing; the result stays on disk until the task is
//! complete, so a worker that restarts can still contribute, reveal or upload it.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pew_bus::worker::TaskRecord;
use pew_containers::{Limits, Network, RunOutcome, TaskContainer, UserId};
use pew_iexec::model::{
    ChainReceipt, ComputeLogs, ReplicateStatusDetails, ReplicateStatusUpdate, TaskNotification,
};
use pew_iexec::status::{NextAction, ReplicateStatus, StatusCause};
use pew_poco::abi::{self, ContributionStatus, TaskStatus};
use pew_poco::{Address, B256, Signature65};
use pew_scheduler::{Backoff, Jitter, SchedulerError};
use tokio::sync::mpsc;

use crate::board::Counter;
use crate::config::ContainerNetwork;
use crate::context::Context;
use crate::energy::RunMeasurement;
use crate::journal::ReplicateRecord;
use crate::power::{EnergyMeter, Grant};
use crate::task::{self, StageFailure, TaskDescription, TaskFiles};

/// How long to wait for a notification before checking the chain and deadlines again.
const NOTIFICATION_WAIT: Duration = Duration::from_secs(30);

/// What the service tells a running replicate.
#[derive(Debug, Clone)]
pub enum Command {
    Notification(Box<TaskNotification>),
    /// Stop now (shutdown, critical energy, operator): abort with this cause.
    Abort(StatusCause),
}

/// Why a replicate stopped being driven.
#[derive(Debug, Clone, PartialEq)]
pub enum Exit {
    Completed,
    Aborted(StatusCause),
    /// The worker is stopping; the journal keeps the replicate for recovery.
    Suspended,
}

pub struct Replicate {
    ctx: Arc<Context>,
    record: ReplicateRecord,
    files: TaskFiles,
    task_id: B256,
    task: Option<TaskDescription>,
    inbox: mpsc::Receiver<Command>,
    /// Consensus block from the last PLEASE_REVEAL.
    consensus_block: Option<u64>,
    abort_cause: Option<StatusCause>,
}

impl Replicate {
    pub fn new(
        ctx: Arc<Context>,
        record: ReplicateRecord,
        inbox: mpsc::Receiver<Command>,
    ) -> Result<Self, String> {
        let task_id: B256 = record
            .chain_task_id
            .parse()
            .map_err(|_| format!("{:?} is not a task id", record.chain_task_id))?;
        Ok(Self {
            files: TaskFiles::new(&ctx.tasks_dir, task_id),
            ctx,
            record,
            task_id,
            task: None,
            inbox,
            consensus_block: None,
            abort_cause: None,
        })
    }

    pub fn task_id(&self) -> B256 {
        self.task_id
    }

    /// Drives the replicate from `first` (PLEASE_START for a new offer, the recovery
    /// notification's action after a restart).
    pub async fn run(mut self, first: NextAction, extra_block: Option<u64>) -> Exit {
        self.consensus_block = extra_block;
        self.ctx
            .board
            .publish(|p| p.current_task = self.record.chain_task_id.clone());
        let mut action = first;
        loop {
            if let Some(cause) = self.abort_cause.take() {
                action = NextAction::PleaseAbort;
                self.abort_cause = Some(cause);
            }
            let next = match action {
                NextAction::PleaseStart => self.start().await,
                NextAction::PleaseDownloadApp => self.download_app().await,
                NextAction::PleaseDownloadData => self.download_data().await,
                NextAction::PleaseCompute => self.compute().await,
                NextAction::PleaseContribute => self.contribute().await,
                NextAction::PleaseReveal => self.reveal().await,
                NextAction::PleaseUpload => self.upload().await,
                NextAction::PleaseComplete => return self.complete().await,
                NextAction::PleaseAbort => {
                    let cause = self.abort_cause.unwrap_or(StatusCause::Unknown);
                    return self.abort(cause).await;
                }
                NextAction::PleaseContinue | NextAction::PleaseWait => self.wait().await,
                NextAction::PleaseContributeAndFinalize => {
                    // Only TEE tasks with trust 1 are sent this; this worker runs no TEE task.
                    Ok(NextAction::PleaseAbort)
                }
            };
            action = match next {
                Ok(action) => action,
                Err(exit) => return exit,
            };
        }
    }

    // ---- stages ---------------------------------------------------------------------------

    async fn start(&mut self) -> Result<NextAction, Exit> {
        reply_or_return!(self.report(ReplicateStatus::Starting, None).await?);
        let failed = match self.check_authorization().await {
            Err(cause) => Some(cause),
            Ok(()) => match self.describe().await {
                Err(cause) => Some(cause),
                Ok(()) => self.reserve_energy().await.err(),
            },
        };
        if let Some(cause) = failed {
            return self
                .report(
                    ReplicateStatus::StartFailed,
                    Some(details_with_cause(cause)),
                )
                .await;
        }
        self.report(ReplicateStatus::Started, None).await
    }

    async fn download_app(&mut self) -> Result<NextAction, Exit> {
        reply_or_return!(self.report(ReplicateStatus::AppDownloading, None).await?);
        match self.fetch_app().await {
            Ok(()) => self.report(ReplicateStatus::AppDownloaded, None).await,
            Err(failure) => self.report_download_failure(failure).await,
        }
    }

    async fn download_data(&mut self) -> Result<NextAction, Exit> {
        reply_or_return!(self.report(ReplicateStatus::DataDownloading, None).await?);
        match self.fetch_data().await {
            Ok(()) => self.report(ReplicateStatus::DataDownloaded, None).await,
            Err(failure) => self.report_download_failure(failure).await,
        }
    }

    async fn compute(&mut self) -> Result<NextAction, Exit> {
        reply_or_return!(self.report(ReplicateStatus::Computing, None).await?);
        let outcome = self.run_app().await?;
        let mut details = ReplicateStatusDetails {
            exit_code: outcome.exit_code.map(|code| code as i32),
            compute_logs: Some(ComputeLogs::tailed(&outcome.stdout, &outcome.stderr)),
            ..Default::default()
        };
        if outcome.timed_out {
            details.cause = Some(StatusCause::AppComputeTimeout);
        } else if outcome.exit_code != Some(0) {
            details.cause = Some(StatusCause::AppComputeFailed);
        }
        // COMPUTED is always reported (the Java worker's rule): a failed app has no result
        // digest and is stopped at contribution.
        self.report(ReplicateStatus::Computed, Some(details)).await
    }

    async fn contribute(&mut self) -> Result<NextAction, Exit> {
        if self.digest().is_none()
            && self
                .record
                .reported
                .is_none_or(|status| status < ReplicateStatus::Computed)
        {
            // Recovery of a replicate interrupted before its result existed: compute again,
            // silently (the scheduler already has these statuses), then contribute.
            if let Err(cause) = self.recompute_silently().await? {
                return self
                    .report(
                        ReplicateStatus::ContributeFailed,
                        Some(details_with_cause(cause)),
                    )
                    .await;
            }
        }
        match self.digest() {
            Some(digest) => self.contribute_digest(digest).await,
            // The app produced no result (it failed, or overran its time): nothing to prove.
            None => {
                self.report(
                    ReplicateStatus::ContributeFailed,
                    Some(details_with_cause(StatusCause::DeterminismHashNotFound)),
                )
                .await
            }
        }
    }

    async fn contribute_digest(&mut self, digest: B256) -> Result<NextAction, Exit> {
        self.prove(Proof::Contribution, digest).await
    }

    async fn reveal(&mut self) -> Result<NextAction, Exit> {
        let Some(digest) = self.digest() else {
            return Ok(NextAction::PleaseAbort);
        };
        self.prove(Proof::Reveal, digest).await
    }

    /// Reports the proof as ongoing, sends its transaction (waiting out an unreachable chain),
    /// then reports it done with its receipt, or failed with the cause.
    async fn prove(&mut self, proof: Proof, digest: B256) -> Result<NextAction, Exit> {
        reply_or_return!(self.report(proof.ongoing(), None).await?);
        let mut backoff = chain_backoff();
        let sent = loop {
            let attempt = match proof {
                Proof::Contribution => self.send_contribution(digest).await,
                Proof::Reveal => self.send_reveal(digest).await,
            };
            match attempt {
                Err(StatusCause::ChainUnreachable) if !self.past_final_deadline() => {
                    self.wait_for_chain(&mut backoff).await?;
                }
                sent => break sent,
            }
        };
        match sent {
            Ok(receipt) => {
                let details = ReplicateStatusDetails {
                    chain_receipt: Some(receipt),
                    ..Default::default()
                };
                let next = self.report(proof.done(), Some(details)).await;
                self.ctx.board.count(proof.counter());
                next
            }
            Err(cause) => {
                self.report(proof.failed(), Some(details_with_cause(cause)))
                    .await
            }
        }
    }

    async fn upload(&mut self) -> Result<NextAction, Exit> {
        reply_or_return!(self.report(ReplicateStatus::ResultUploading, None).await?);
        match self.upload_result().await {
            Ok(details) => {
                self.report(ReplicateStatus::ResultUploaded, Some(details))
                    .await
            }
            Err((cause, message)) => {
                tracing::warn!(task = %self.record.chain_task_id, "result upload failed: {message}");
                self.report(
                    ReplicateStatus::ResultUploadFailed,
                    Some(details_with_cause(cause)),
                )
                .await
            }
        }
    }

    async fn complete(mut self) -> Exit {
        if let Err(exit) = self.report(ReplicateStatus::Completing, None).await {
            return exit;
        }
        self.purge().await;
        if let Err(exit) = self.report(ReplicateStatus::Completed, None).await {
            return exit;
        }
        self.finish("COMPLETED");
        Exit::Completed
    }

    async fn abort(mut self, cause: StatusCause) -> Exit {
        self.purge().await;
        // An abort the scheduler refuses (already final) is still an abort here.
        let _ = self
            .report(ReplicateStatus::Aborted, Some(details_with_cause(cause)))
            .await;
        self.finish("ABORTED");
        Exit::Aborted(cause)
    }

    /// Waits for the scheduler's next push (reveal, upload, complete, abort).
    async fn wait(&mut self) -> Result<NextAction, Exit> {
        loop {
            let received = tokio::time::timeout(NOTIFICATION_WAIT, self.inbox.recv()).await;
            match received {
                Ok(Some(Command::Notification(notification))) => {
                    let notification = *notification;
                    if let Some(block) = notification
                        .task_notification_extra
                        .as_ref()
                        .and_then(|extra| extra.block_number)
                    {
                        self.consensus_block = Some(block);
                    }
                    if notification.task_notification_type == NextAction::PleaseAbort {
                        self.abort_cause = Some(notification.task_abort_cause().to_status_cause());
                    }
                    return Ok(notification.task_notification_type);
                }
                Ok(Some(Command::Abort(cause))) => {
                    self.abort_cause = Some(cause);
                    return Ok(NextAction::PleaseAbort);
                }
                Ok(None) => return Err(Exit::Suspended),
                Err(_elapsed) => {
                    if self.past_final_deadline() {
                        tracing::warn!(task = %self.record.chain_task_id, "final deadline passed while waiting");
                        self.abort_cause = Some(StatusCause::Unknown);
                        return Ok(NextAction::PleaseAbort);
                    }
                }
            }
        }
    }

    // ---- work -----------------------------------------------------------------------------

    async fn check_authorization(&self) -> Result<(), StatusCause> {
        let authorization = &self.record.authorization;
        let parse = || -> Option<(Address, Address, Signature65)> {
            Some((
                authorization.worker_wallet.parse().ok()?,
                authorization.enclave_challenge.parse().ok()?,
                authorization.signature.value.parse().ok()?,
            ))
        };
        let Some((worker, enclave, signature)) = parse() else {
            return Err(StatusCause::WorkerpoolAuthorizationNotFound);
        };
        if worker != self.ctx.wallet.address() {
            return Err(StatusCause::WorkerpoolAuthorizationNotFound);
        }
        let owner = self
            .ctx
            .chain
            .owner_of(self.ctx.workerpool)
            .await
            .map_err(|_| StatusCause::ChainUnreachable)?;
        let hash =
            pew_poco::eth_signed_hash(pew_poco::authorization_hash(worker, self.task_id, enclave));
        match signature.recover(hash) {
            Ok(signer) if signer == owner => Ok(()),
            _ => {
                tracing::warn!(task = %self.record.chain_task_id, "the authorization is not signed by the workerpool owner {owner}");
                Err(StatusCause::WorkerpoolAuthorizationNotFound)
            }
        }
    }

    async fn describe(&mut self) -> Result<(), StatusCause> {
        if self.task.is_some() {
            return Ok(());
        }
        let task = TaskDescription::read(&self.ctx.chain, self.task_id)
            .await
            .map_err(|e| {
                tracing::warn!("{e}");
                StatusCause::TaskDescriptionInvalid
            })?;
        if task.is_tee || task.params.iexec_result_encryption {
            return Err(StatusCause::TaskDescriptionInvalid);
        }
        self.record.app = Some(task.app_uri.clone());
        self.save();
        self.task = Some(task);
        Ok(())
    }

    /// Tops the lease taken before asking up to what this task's category and app need.
    async fn reserve_energy(&mut self) -> Result<(), StatusCause> {
        let Some(power) = &self.ctx.power else {
            return Ok(());
        };
        let Some(task) = &self.task else {
            return Err(StatusCause::TaskDescriptionInvalid);
        };
        let need = self.ctx.board.profiles().need(
            Some(&task.app_uri),
            task.max_execution_time.as_secs(),
            self.ctx.config.energy.margin,
        );
        let reason = format!("iExec task {}", self.record.chain_task_id);
        match power.request(need.wh, need.seconds, &reason).await {
            Grant::Granted { lease_id } => {
                if let Some(old) = self.record.lease_id.replace(lease_id) {
                    power.release(&old).await;
                }
                self.save();
                Ok(())
            }
            Grant::Refused { reason } => {
                tracing::info!(task = %self.record.chain_task_id, "no energy for this task: {reason}");
                self.ctx
                    .board
                    .publish(|p| p.detail = format!("energy refused: {reason}"));
                Err(StatusCause::AbortedByWorker)
            }
        }
    }

    async fn fetch_app(&mut self) -> Result<(), StageFailure> {
        let failure = |message: String| StageFailure {
            status: ReplicateStatus::AppDownloadFailed,
            cause: StatusCause::AppImageDownloadFailed,
            message,
        };
        self.describe()
            .await
            .map_err(|cause| failure(format!("task description: {cause}")))?;
        let Some(task) = &self.task else {
            return Err(failure("no task description".into()));
        };
        let engine = &self.ctx.engine;
        match engine.has_image(&task.app_uri).await {
            Ok(true) => Ok(()),
            Ok(false) => engine
                .pull(
                    &task.app_uri,
                    pull_timeout(task.max_execution_time, &self.ctx),
                )
                .await
                .map_err(|e| failure(e.to_string())),
            Err(e) => Err(failure(e.to_string())),
        }
    }

    async fn fetch_data(&mut self) -> Result<(), StageFailure> {
        let Some(task) = &self.task else {
            return Err(StageFailure {
                status: ReplicateStatus::DataDownloadFailed,
                cause: StatusCause::InputFilesDownloadFailed,
                message: "no task description".into(),
            });
        };
        self.files
            .prepare(self.app_user())
            .map_err(|e| StageFailure {
                status: ReplicateStatus::DataDownloadFailed,
                cause: StatusCause::InputFilesDownloadFailed,
                message: format!("cannot prepare the task's folders: {e}"),
            })?;
        task::download_data(&self.ctx.http, task, &self.files).await
    }

    /// Runs the app, measures its energy, writes its logs and the post-compute result.
    async fn run_app(&mut self) -> Result<RunOutcome, Exit> {
        let Some(task) = self.task.clone() else {
            return Err(Exit::Aborted(StatusCause::TaskDescriptionInvalid));
        };
        let spec = self.container(&task);
        let started = Instant::now();
        let meter = self.ctx.power.clone().map(EnergyMeter::start);
        let interrupted = {
            let ctx = self.ctx.clone();
            let run = ctx.engine.run(&spec);
            tokio::pin!(run);
            loop {
                tokio::select! {
                    outcome = &mut run => break Ok(outcome),
                    command = self.inbox.recv() => match command {
                        Some(Command::Abort(cause)) => break Err(Some(cause)),
                        Some(Command::Notification(n)) if n.task_notification_type == NextAction::PleaseAbort => {
                            break Err(Some(n.task_abort_cause().to_status_cause()));
                        }
                        Some(Command::Notification(_)) => {}
                        None => break Err(None),
                    },
                }
            }
        };
        let duration = started.elapsed().as_secs_f64();
        let measured_wh = match meter {
            Some(meter) => meter.stop().await,
            None => 0.0,
        };
        let outcome = match interrupted {
            Ok(outcome) => outcome,
            Err(Some(cause)) => return Err(self.abort_now(cause).await),
            // The worker is stopping: the container goes, the journal stays for recovery.
            Err(None) => {
                let _ = self
                    .ctx
                    .engine
                    .remove_containers_named(&self.record.chain_task_id)
                    .await;
                return Err(Exit::Suspended);
            }
        };
        let outcome = match outcome {
            Ok(outcome) => {
                tracing::info!(
                    task = %self.record.chain_task_id,
                    exit_code = ?outcome.exit_code,
                    timed_out = outcome.timed_out,
                    started_ms = unix_millis(outcome.started_at),
                    finished_ms = unix_millis(outcome.finished_at),
                    "app ran"
                );
                outcome
            }
            Err(e) => {
                // With its causes: the engine's own message is what explains it.
                let message = format!("{:#}", anyhow::Error::new(e));
                tracing::warn!(task = %self.record.chain_task_id, "the container engine failed: {message}");
                let now = SystemTime::now();
                RunOutcome {
                    exit_code: None,
                    timed_out: false,
                    oom_killed: false,
                    stdout: String::new(),
                    stderr: message,
                    started_at: now,
                    finished_at: now,
                }
            }
        };
        let succeeded = outcome.exit_code == Some(0) && !outcome.timed_out;
        if succeeded {
            self.write_logs(&outcome);
        }
        match task::post_compute(&self.files, task.callback.is_some()) {
            Ok(digest) => self.record.result_digest = Some(format!("{digest:#x}")),
            Err(failure) => {
                tracing::warn!(task = %self.record.chain_task_id, cause = %failure.cause, "post-compute: {}", failure.message);
                self.record.result_digest = None;
            }
        }
        let energy_wh = if measured_wh > 0.0 {
            measured_wh
        } else {
            duration * self.ctx.board.profiles().compute_power_w / 3600.0
        };
        self.record.energy_wh = energy_wh;
        self.save();
        self.ctx.board.learn(
            &task.app_uri,
            RunMeasurement {
                duration_s: duration,
                energy_wh,
                succeeded,
                finished_at: now(),
            },
        );
        self.release_energy().await;
        Ok(outcome)
    }

    fn container(&self, task: &TaskDescription) -> TaskContainer {
        let engine = &self.ctx.config.engine;
        let cpus = if engine.cpus > 0.0 {
            engine.cpus
        } else {
            std::thread::available_parallelism()
                .map(|n| (n.get().saturating_sub(1)).max(1) as f64)
                .unwrap_or(1.0)
        };
        TaskContainer {
            name: format!("{}-{}", self.ctx.config.name, self.record.chain_task_id),
            image: task.app_uri.clone(),
            cmd: task
                .params
                .iexec_args
                .as_deref()
                .map(pew_containers::split_args)
                .unwrap_or_default(),
            env: task.compute_env(),
            binds: vec![
                (self.files.input(), task::CONTAINER_IN.to_owned()),
                (self.files.iexec_out(), task::CONTAINER_OUT.to_owned()),
            ],
            limits: Limits {
                nano_cpus: Some((cpus * 1e9) as u64),
                memory_bytes: Some(engine.memory_mib * 1024 * 1024),
                pids: Some(engine.pids),
            },
            timeout: task.max_execution_time,
            network: match engine.network {
                ContainerNetwork::None => Network::None,
                ContainerNetwork::Bridge => Network::Bridge,
            },
            user: Some(UserId {
                uid: engine.app_uid,
                gid: engine.app_gid,
            }),
            read_only_rootfs: true,
        }
    }

    /// The Java worker writes non-empty logs into iexec_out after a successful run; apps whose
    /// deterministic output is the whole folder depend on it for consensus.
    fn write_logs(&self, outcome: &RunOutcome) {
        for (name, text) in [
            ("stdout.txt", &outcome.stdout),
            ("stderr.txt", &outcome.stderr),
        ] {
            if !text.is_empty()
                && let Err(e) = std::fs::write(self.files.iexec_out().join(name), text)
            {
                tracing::warn!("cannot write {name}: {e}");
            }
        }
    }

    /// After a restart that lost the result: download and compute again without reporting.
    async fn recompute_silently(&mut self) -> Result<Result<(), StatusCause>, Exit> {
        if let Err(cause) = self.describe().await {
            return Ok(Err(cause));
        }
        let prepared = match self.fetch_app().await {
            Ok(()) => self.fetch_data().await,
            Err(failure) => Err(failure),
        };
        match prepared {
            Ok(()) => {
                self.run_app().await?;
            }
            Err(failure) => {
                if let Ok(digest) = task::error_result(&self.files, &failure, self.app_user()) {
                    self.record.result_digest = Some(format!("{digest:#x}"));
                    self.save();
                }
            }
        }
        Ok(Ok(()))
    }

    async fn send_contribution(&mut self, digest: B256) -> Result<ChainReceipt, StatusCause> {
        let chain = &self.ctx.chain;
        let worker = self.ctx.wallet.address();
        let task = chain
            .task(self.task_id)
            .await
            .map_err(|_| StatusCause::ChainUnreachable)?;
        let contribution = chain
            .contribution(self.task_id, worker)
            .await
            .map_err(|_| StatusCause::ChainUnreachable)?;
        if contribution.status != ContributionStatus::Unset {
            // Sent before a restart: the chain has it, report it with the current block.
            return self.current_receipt().await;
        }
        if task.status != TaskStatus::Active {
            return Err(StatusCause::TaskNotActive);
        }
        if task.contribution_deadline <= now() as u64 {
            return Err(StatusCause::ContributionTimeout);
        }
        let deal = chain
            .deal(task.deal_id)
            .await
            .map_err(|_| StatusCause::ChainUnreachable)?;
        let account = chain
            .account(worker)
            .await
            .map_err(|_| StatusCause::ChainUnreachable)?;
        if account.stake < deal.worker_stake {
            return Err(StatusCause::StakeTooLow);
        }
        let signature: Signature65 = self
            .record
            .authorization
            .signature
            .value
            .parse()
            .map_err(|_| StatusCause::WorkerpoolAuthorizationNotFound)?;
        let calldata = abi::contribute_calldata(
            self.task_id,
            pew_poco::result_hash(self.task_id, digest),
            pew_poco::result_seal(worker, self.task_id, digest),
            &signature,
        );
        self.send_and_find(calldata, abi::CONTRIBUTE_GAS, abi::TASK_CONTRIBUTE_TOPIC)
            .await
    }

    async fn send_reveal(&mut self, digest: B256) -> Result<ChainReceipt, StatusCause> {
        let chain = &self.ctx.chain;
        let worker = self.ctx.wallet.address();
        if let Some(block) = self.consensus_block {
            let mut backoff = Backoff::new(
                Duration::from_secs(1),
                Duration::from_secs(10),
                Jitter::Full,
            );
            for _ in 0..20 {
                match chain.block_number().await {
                    Ok(current) if current >= block => break,
                    _ => tokio::time::sleep(backoff.next_delay()).await,
                }
            }
        }
        let contribution = chain
            .contribution(self.task_id, worker)
            .await
            .map_err(|_| StatusCause::ChainUnreachable)?;
        if contribution.status == ContributionStatus::Proved {
            return self.current_receipt().await;
        }
        let task = chain
            .task(self.task_id)
            .await
            .map_err(|_| StatusCause::ChainUnreachable)?;
        if task.status != TaskStatus::Revealing
            || task.reveal_deadline <= now() as u64
            || contribution.status != ContributionStatus::Contributed
            || contribution.result_hash != task.consensus_value
            || contribution.result_hash != pew_poco::result_hash(self.task_id, digest)
        {
            return Err(StatusCause::CannotReveal);
        }
        self.send_and_find(
            abi::reveal_calldata(self.task_id, digest),
            abi::REVEAL_GAS,
            abi::TASK_REVEAL_TOPIC,
        )
        .await
    }

    async fn send_and_find(
        &self,
        calldata: Vec<u8>,
        gas: u64,
        topic: B256,
    ) -> Result<ChainReceipt, StatusCause> {
        tracing::info!(task = %self.record.chain_task_id, at_ms = unix_millis(SystemTime::now()), gas, "sending a transaction");
        let receipt = self
            .ctx
            .chain
            .send(self.ctx.hub, calldata, gas)
            .await
            .map_err(|e| {
                tracing::warn!(task = %self.record.chain_task_id, "transaction failed: {e}");
                StatusCause::ChainReceiptNotValid
            })?;
        match receipt.find_log(topic, self.task_id) {
            Some(block) if block > 0 => Ok(ChainReceipt {
                block_number: block,
                tx_hash: format!("{:#x}", receipt.tx_hash),
            }),
            _ => Err(StatusCause::ChainReceiptNotValid),
        }
    }

    async fn current_receipt(&self) -> Result<ChainReceipt, StatusCause> {
        let block = self
            .ctx
            .chain
            .block_number()
            .await
            .map_err(|_| StatusCause::ChainUnreachable)?;
        Ok(ChainReceipt {
            block_number: block,
            tx_hash: String::new(),
        })
    }

    async fn upload_result(&mut self) -> Result<ReplicateStatusDetails, (StatusCause, String)> {
        self.describe()
            .await
            .map_err(|cause| (cause, "task description".to_owned()))?;
        let Some(task) = &self.task else {
            return Err((StatusCause::ResultLinkMissing, "no task".into()));
        };
        if let Some(callback) = task.callback {
            let computed: pew_poco::result::ComputedFile =
                std::fs::read_to_string(self.files.computed_json())
                    .ok()
                    .and_then(|text| serde_json::from_str(&text).ok())
                    .ok_or((
                        StatusCause::ResultLinkMissing,
                        "computed.json is missing".to_owned(),
                    ))?;
            return Ok(ReplicateStatusDetails {
                result_link: Some(pew_iexec::model::result_link(
                    "ethereum",
                    &format!("{callback:#x}"),
                )),
                chain_callback_data: computed.callback_data,
                ..Default::default()
            });
        }
        let provider = task
            .params
            .iexec_result_storage_provider
            .as_deref()
            .unwrap_or("ipfs");
        if provider != "ipfs" {
            return Err((
                StatusCause::ResultLinkMissing,
                format!("storage provider {provider:?} needs a TEE task"),
            ));
        }
        let proxy = task
            .params
            .iexec_result_storage_proxy
            .clone()
            .filter(|url| !url.is_empty())
            .unwrap_or_else(|| self.ctx.public.result_repository_url.clone());
        let digest = self
            .digest()
            .ok_or((StatusCause::ResultLinkMissing, "no result digest".into()))?;
        let zip = std::fs::read(self.files.zip())
            .map_err(|e| (StatusCause::ResultLinkMissing, format!("result zip: {e}")))?;
        let hash = self
            .ctx
            .result_proxy
            .upload(
                &proxy,
                &self.ctx.wallet,
                &self.record.authorization,
                &zip,
                digest,
            )
            .await
            .map_err(|e| (StatusCause::ResultLinkMissing, e.to_string()))?;
        Ok(ReplicateStatusDetails {
            result_link: Some(pew_iexec::model::result_link(
                "ipfs",
                &format!("/ipfs/{hash}"),
            )),
            ..Default::default()
        })
    }

    async fn report_download_failure(&mut self, failure: StageFailure) -> Result<NextAction, Exit> {
        tracing::warn!(task = %self.record.chain_task_id, cause = %failure.cause, "{}", failure.message);
        // The scheduler answers PLEASE_CONTRIBUTE for download failures: the error result is
        // what gets contributed.
        match task::error_result(&self.files, &failure, self.app_user()) {
            Ok(digest) => self.record.result_digest = Some(format!("{digest:#x}")),
            Err(e) => tracing::warn!("cannot write the error result: {}", e.message),
        }
        self.save();
        self.report(failure.status, Some(details_with_cause(failure.cause)))
            .await
    }

    // ---- reporting and bookkeeping --------------------------------------------------------

    /// Reports `status` until the scheduler answers or the final deadline passes, and returns
    /// its next action.
    async fn report(
        &mut self,
        status: ReplicateStatus,
        details: Option<ReplicateStatusDetails>,
    ) -> Result<NextAction, Exit> {
        self.ctx.board.publish(|p| {
            p.current_task = self.record.chain_task_id.clone();
            p.stage = status.to_string();
        });
        let update = match details {
            Some(details) => ReplicateStatusUpdate::with_details(status, details),
            None => ReplicateStatusUpdate::new(status),
        };
        let mut backoff = Backoff::new(
            Duration::from_secs(1),
            Duration::from_secs(60),
            Jitter::Decorrelated,
        );
        loop {
            match self
                .ctx
                .scheduler
                .update_status(&self.record.chain_task_id, &update)
                .await
            {
                Ok(reply) => {
                    self.record.reported = Some(status);
                    self.save();
                    tracing::info!(task = %self.record.chain_task_id, %status, next = %reply.next_action, "reported");
                    return Ok(reply.next_action);
                }
                Err(e) if retryable(&e) && !self.past_final_deadline() => {
                    let delay = backoff.next_delay();
                    tracing::warn!(task = %self.record.chain_task_id, %status, "cannot report ({e}); retrying in {delay:?}");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        command = self.inbox.recv() => match command {
                            Some(Command::Abort(cause)) => self.abort_cause = Some(cause),
                            Some(Command::Notification(_)) => {}
                            None => return Err(Exit::Suspended),
                        },
                    }
                }
                Err(e) => {
                    tracing::error!(task = %self.record.chain_task_id, %status, "giving up reporting: {e}");
                    return Err(self.give_up().await);
                }
            }
        }
    }

    /// The chain cannot be reached (a node restarting, the link down): giving up would abort the
    /// replicate and lose its result, so wait and let the caller try again, unless told to
    /// abort or stop meanwhile.
    async fn wait_for_chain(&mut self, backoff: &mut Backoff) -> Result<(), Exit> {
        let delay = backoff.next_delay();
        tracing::warn!(task = %self.record.chain_task_id, "the chain does not answer; retrying in {delay:?}");
        tokio::select! {
            _ = tokio::time::sleep(delay) => Ok(()),
            command = self.inbox.recv() => match command {
                Some(Command::Abort(cause)) => Err(self.abort_now(cause).await),
                Some(Command::Notification(n)) if n.task_notification_type == NextAction::PleaseAbort => {
                    Err(self.abort_now(n.task_abort_cause().to_status_cause()).await)
                }
                Some(Command::Notification(_)) => Ok(()),
                None => Err(Exit::Suspended),
            },
        }
    }

    async fn abort_now(&mut self, cause: StatusCause) -> Exit {
        self.purge().await;
        let update = ReplicateStatusUpdate::with_cause(ReplicateStatus::Aborted, cause);
        let _ = self
            .ctx
            .scheduler
            .update_status(&self.record.chain_task_id, &update)
            .await;
        self.finish("ABORTED");
        Exit::Aborted(cause)
    }

    async fn give_up(&mut self) -> Exit {
        self.purge().await;
        self.finish("FAILED");
        Exit::Aborted(StatusCause::Unknown)
    }

    async fn purge(&mut self) {
        let _ = self
            .ctx
            .engine
            .remove_containers_named(&self.record.chain_task_id)
            .await;
        if let Err(e) = self.files.purge() {
            tracing::warn!(task = %self.record.chain_task_id, "cannot delete the task's files: {e}");
        }
        self.release_energy().await;
    }

    async fn release_energy(&mut self) {
        if let (Some(power), Some(lease)) = (&self.ctx.power, self.record.lease_id.take()) {
            power.release(&lease).await;
            self.save();
        }
    }

    fn finish(&mut self, status: &str) {
        if let Err(e) = self.ctx.journal.remove(&self.record.chain_task_id) {
            tracing::warn!("{e}");
        }
        self.ctx.board.finished(TaskRecord {
            task_id: self.record.chain_task_id.clone(),
            app: self.record.app.clone().unwrap_or_default(),
            status: status.to_owned(),
            finished_at: now(),
            energy_wh: self.record.energy_wh,
        });
    }

    fn save(&self) {
        if let Err(e) = self.ctx.journal.save(&self.record) {
            tracing::error!("cannot journal the replicate: {e}");
        }
    }

    fn app_user(&self) -> (u32, u32) {
        let engine = &self.ctx.config.engine;
        (engine.app_uid, engine.app_gid)
    }

    fn digest(&self) -> Option<B256> {
        self.record
            .result_digest
            .as_deref()
            .and_then(|digest| digest.parse().ok())
            .filter(|_| self.files.result_available())
    }

    fn past_final_deadline(&self) -> bool {
        self.task
            .as_ref()
            .is_some_and(|task| task.final_deadline > 0 && task.final_deadline <= now() as u64)
    }
}

/// The two on-chain proofs of Proof-of-Contribution, with the statuses and counter of each.
#[derive(Debug, Clone, Copy)]
enum Proof {
    Contribution,
    Reveal,
}

impl Proof {
    fn ongoing(self) -> ReplicateStatus {
        match self {
            Proof::Contribution => ReplicateStatus::Contributing,
            Proof::Reveal => ReplicateStatus::Revealing,
        }
    }

    fn done(self) -> ReplicateStatus {
        match self {
            Proof::Contribution => ReplicateStatus::Contributed,
            Proof::Reveal => ReplicateStatus::Revealed,
        }
    }

    fn failed(self) -> ReplicateStatus {
        match self {
            Proof::Contribution => ReplicateStatus::ContributeFailed,
            Proof::Reveal => ReplicateStatus::RevealFailed,
        }
    }

    fn counter(self) -> Counter {
        match self {
            Proof::Contribution => Counter::Contributed,
            Proof::Reveal => Counter::Revealed,
        }
    }
}

/// Returns early with the scheduler's action unless it says to go on with the stage.
macro_rules! reply_or_return {
    ($action:expr) => {{
        let action = $action;
        if !matches!(action, NextAction::PleaseContinue | NextAction::PleaseWait) {
            return Ok(action);
        }
    }};
}
use reply_or_return;

fn details_with_cause(cause: StatusCause) -> ReplicateStatusDetails {
    ReplicateStatusDetails {
        cause: Some(cause),
        ..Default::default()
    }
}

fn chain_backoff() -> Backoff {
    Backoff::new(
        Duration::from_secs(1),
        Duration::from_secs(30),
        Jitter::Decorrelated,
    )
}

fn retryable(error: &SchedulerError) -> bool {
    error.is_retryable()
}

fn pull_timeout(max_execution_time: Duration, ctx: &Context) -> Duration {
    // §3.2: 10·log10(minutes/10) minutes, within [5 min, the configured maximum].
    let minutes = max_execution_time.as_secs_f64() / 60.0;
    let computed = (10.0 * (minutes / 10.0).log10()).round().max(0.0) * 60.0;
    Duration::from_secs_f64(computed.clamp(300.0, ctx.config.engine.pull_timeout_s as f64))
}

/// Milliseconds since the Unix epoch, for the timing fields of the log (read by the benchmark).
pub fn unix_millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
