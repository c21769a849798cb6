//! The service: one loop that measures, feeds the manager, acts on what it decides (CPU cap,
//! wake alarm, power-off), publishes on the bus and keeps the state file current.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use pew_bus::power::{Grant, LeaseInfo};
use pew_daemon::state::{Loaded, StateFile};
use pew_daemon::systemd;
use pew_power::Timestamp;
use pew_power::manager::{Event, PowerManager, PowerState};
use pew_power::mode::Mode;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::config::PowerdConfig;
use crate::interface::{PowerInterface, Published};
use crate::platform::{Platform, PowerOff};
use crate::wake::{self, LastRun, WakeReason};

/// What pew-powerd keeps on the data partition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct SavedState {
    power: PowerState,
    last_run: LastRun,
}

/// The guaranteed-wake alarm is pushed forward this often while the node runs, so that a node
/// that dies unexpectedly (brownout, crash) is still woken by its RTC within `max_sleep_s`.
const SAFETY_ALARM_REFRESH_S: i64 = 3600;

/// Everything the loop and the D-Bus methods share.
pub struct Core {
    manager: PowerManager,
    platform: Platform,
    store: StateFile,
    published: Published,
    /// What the bus was last told, so every change is announced exactly once, whether it came
    /// from a sample or from a lease request between samples.
    announced: Published,
    wake_reason: WakeReason,
    last_run: LastRun,
    last_save: Timestamp,
    save_interval_s: i64,
    /// When this boot (or simulated wake) began, for the grace period before re-sleeping.
    awake_since: Timestamp,
    safety_alarm_armed_at: Option<Timestamp>,
    /// Power-off was requested from systemd; the service only waits for SIGTERM now.
    powering_off: bool,
}

impl Core {
    fn now(&self) -> Timestamp {
        self.platform.now()
    }

    pub fn published(&self) -> &Published {
        &self.published
    }

    /// The last announced and the current published values; the current become announced.
    pub fn take_unannounced(&mut self) -> (Published, Published) {
        let old = std::mem::replace(&mut self.announced, self.published.clone());
        (old, self.published.clone())
    }

    pub fn source_name(&self) -> &'static str {
        self.platform.source_name()
    }

    pub fn request_budget(&mut self, wh: f64, seconds: u32, reason: &str, caller: &str) -> Grant {
        let now = self.now();
        let grant = match self.manager.request_budget(now, wh, seconds, reason) {
            Ok(lease) => {
                tracing::info!(lease = %lease.id, wh, seconds, reason, caller, "energy lease granted");
                Grant {
                    granted: true,
                    detail: format!("{wh:.2} Wh until {}", lease.expires_at),
                    lease_id: lease.id,
                }
            }
            Err(refusal) => {
                tracing::info!(wh, seconds, reason, caller, %refusal, "energy lease refused");
                Grant {
                    granted: false,
                    lease_id: String::new(),
                    detail: refusal.to_string(),
                }
            }
        };
        if grant.granted {
            self.publish();
            self.save(now);
        }
        grant
    }

    pub fn release_budget(&mut self, lease_id: &str) -> bool {
        let now = self.now();
        let released = self.manager.release_budget(now, lease_id);
        if released {
            tracing::info!(lease = lease_id, "energy lease released");
            self.publish();
            self.save(now);
        }
        released
    }

    pub fn leases(&self) -> Vec<LeaseInfo> {
        self.manager
            .leases()
            .iter()
            .map(|lease| LeaseInfo {
                id: lease.id.clone(),
                wh: lease.wh,
                granted_at: lease.granted_at,
                expires_at: lease.expires_at,
                reason: lease.reason.clone(),
            })
            .collect()
    }

    /// Power drawn by the leased work, as the simulation needs it: each lease's energy spread
    /// over its duration.
    fn leased_power_w(&self) -> f64 {
        self.manager
            .leases()
            .iter()
            .map(|lease| lease.wh * 3600.0 / (lease.expires_at - lease.granted_at).max(1) as f64)
            .sum()
    }

    fn publish(&mut self) {
        self.published = Published::new(&self.manager.status(), self.wake_reason);
    }

    fn save(&mut self, now: Timestamp) {
        let state = SavedState {
            power: self.manager.state(),
            last_run: self.last_run,
        };
        match self.store.save(&state) {
            Ok(()) => self.last_save = now,
            Err(error) => tracing::error!(%error, "cannot save power state"),
        }
    }

    fn save_if_due(&mut self, now: Timestamp) {
        if now - self.last_save >= self.save_interval_s {
            self.save(now);
        }
    }

    /// Keeps an alarm armed `max_sleep_s` ahead while running, so a sudden death still wakes.
    fn refresh_safety_alarm(&mut self, now: Timestamp, max_sleep_s: i64) {
        if self
            .safety_alarm_armed_at
            .is_some_and(|at| now - at < SAFETY_ALARM_REFRESH_S)
        {
            return;
        }
        match self.platform.arm_wake(now + max_sleep_s) {
            Ok(Some(at)) => tracing::debug!(at, "guaranteed-wake alarm armed"),
            Ok(None) => {}
            Err(error) => tracing::error!(
                error = format!("{error:#}"),
                "cannot arm the guaranteed-wake alarm"
            ),
        }
        self.safety_alarm_armed_at = Some(now);
    }
}

pub async fn run(config: PowerdConfig, bus_address: Option<String>) -> Result<()> {
    let platform = Platform::open(&config)?;
    let mut power_config = config.power();
    if let Some((latitude, longitude)) = platform.simulated_site() {
        power_config.solar.latitude = latitude;
        power_config.solar.longitude = longitude;
    }
    let store = StateFile::new(config.state_dir.join("state.json"));
    let saved: Option<SavedState> = match store.load() {
        Loaded::Found(state) => Some(state),
        Loaded::Missing => {
            tracing::info!(path = %store.path().display(), "no saved power state: cold start");
            None
        }
        Loaded::Corrupt(reason) => {
            tracing::warn!(%reason, "saved power state unusable: cold start");
            None
        }
    };
    let now = platform.now();
    let wake_reason = wake::classify(saved.as_ref().map(|s| s.last_run), now);
    let pending_alarm = platform.armed_wake().unwrap_or_else(|error| {
        tracing::warn!(%error, "cannot read the wake alarm");
        None
    });
    tracing::info!(
        wake_reason = wake_reason.as_str(),
        ?pending_alarm,
        source = platform.source_name(),
        "pew-powerd starting"
    );
    let manager = PowerManager::new(power_config.clone(), saved.map(|s| s.power), now);
    let published = Published::new(&manager.status(), wake_reason);
    let mut core = Core {
        announced: published.clone(),
        published,
        manager,
        platform,
        store,
        wake_reason,
        last_run: LastRun::Running,
        last_save: now,
        save_interval_s: config.save_interval_s as i64,
        awake_since: now,
        safety_alarm_armed_at: None,
        powering_off: false,
    };
    core.refresh_safety_alarm(now, power_config.policy.max_sleep_s);
    core.platform.apply_mode(core.manager.mode());
    // Marks this run as running, so a power cut from now on is recognised at the next start.
    core.save(now);

    let core = Arc::new(Mutex::new(core));
    let connection = pew_bus::serve(
        bus_address.as_deref(),
        &pew_bus::power::SERVICE,
        PowerInterface::new(core.clone()),
    )
    .await
    .context("cannot serve org.pew.Power1")?;
    let interface = connection
        .object_server()
        .interface::<_, PowerInterface>(pew_bus::power::SERVICE.object_path)
        .await?;
    systemd::ready(&status_line(&core.lock().await.published));

    let grace_s = power_config.modes.debounce_s * 2;
    let interval = Duration::from_secs_f64(config.sample_interval_s);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let shutdown = pew_daemon::shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            result = &mut shutdown => {
                result.context("cannot wait for signals")?;
                break;
            }
        }
        let (before, after) = {
            let mut core = core.lock().await;
            let before = core.published.clone();
            sample(
                &mut core,
                &interface,
                grace_s,
                power_config.policy.max_sleep_s,
            )
            .await;
            (before, core.published.clone())
        };
        interface
            .get()
            .await
            .announce(interface.signal_emitter())
            .await;
        if before.mode != after.mode || before.soc != after.soc {
            systemd::status(&status_line(&after));
        }
        systemd::watchdog();
    }

    systemd::stopping();
    let mut core = core.lock().await;
    if core.last_run == LastRun::Running {
        core.last_run = LastRun::Stopped;
    }
    let now = core.now();
    core.save(now);
    tracing::info!("pew-powerd stopped");
    Ok(())
}

/// One measurement and everything that follows from it.
async fn sample(
    core: &mut Core,
    interface: &zbus::object_server::InterfaceRef<PowerInterface>,
    grace_s: i64,
    max_sleep_s: i64,
) {
    let now = core.now();
    let compute_w = core.leased_power_w();
    let measurement = match core.platform.measure(compute_w) {
        Ok(measurement) => measurement,
        Err(error) => {
            // A sample lost is not a reason to act: the manager keeps its last estimate and the
            // debounce keeps a single bad bus transfer from changing anything.
            tracing::warn!(error = format!("{error:#}"), "measurement failed");
            return;
        }
    };
    for event in core.manager.observe(now, measurement) {
        match event {
            Event::ModeChanged(transition) => {
                tracing::warn!(from = transition.from.as_str(), to = transition.to.as_str(), reason = %transition.reason, "power mode changed");
                core.platform.apply_mode(transition.to);
                if let Err(error) = PowerInterface::mode_transition(
                    interface.signal_emitter(),
                    transition.from.as_str(),
                    transition.to.as_str(),
                    &transition.reason,
                )
                .await
                {
                    tracing::warn!(%error, "cannot emit ModeChanged");
                }
                core.save(now);
            }
            Event::LeaseExpired(lease) => {
                tracing::info!(lease = %lease.id, wh = lease.wh, reason = %lease.reason, "energy lease expired unreleased");
                if let Err(error) = PowerInterface::lease_expired(
                    interface.signal_emitter(),
                    &lease.id,
                    lease.wh,
                    &lease.reason,
                )
                .await
                {
                    tracing::warn!(%error, "cannot emit LeaseExpired");
                }
                core.save(now);
            }
        }
    }
    core.publish();
    if core.powering_off {
        return;
    }
    if core.manager.mode() == Mode::Shutdown && now - core.awake_since >= grace_s {
        power_off(core, now).await;
    } else {
        core.refresh_safety_alarm(now, max_sleep_s);
        core.save_if_due(now);
    }
}

/// Arms the wake alarm, records the planned power-off durably, then powers off.
async fn power_off(core: &mut Core, now: Timestamp) {
    let wanted = core.manager.wake_time(now);
    let wake_at = match core.platform.arm_wake(wanted) {
        Ok(armed) => armed.unwrap_or(wanted),
        Err(error) => {
            // Still power off: staying up on an empty battery ends in a brownout, and power HATs
            // restore power when the battery recovers even without an alarm.
            tracing::error!(
                error = format!("{error:#}"),
                "wake alarm not armed; powering off anyway"
            );
            wanted
        }
    };
    core.manager.record_wake_alarm(wake_at);
    core.last_run = LastRun::PoweredOff { wake_at };
    core.save(now);
    tracing::warn!(
        wake_at,
        sleep_s = wake_at - now,
        "powering off until the wake alarm"
    );
    match core.platform.power_off(wake_at).await {
        Ok(PowerOff::Requested) => core.powering_off = true,
        Ok(PowerOff::Resumed) => {
            let woke = core.now();
            core.wake_reason = wake::classify(Some(core.last_run), woke);
            core.last_run = LastRun::Running;
            core.awake_since = woke;
            core.safety_alarm_armed_at = None;
            tracing::info!(
                wake_reason = core.wake_reason.as_str(),
                "simulated node woke up"
            );
            core.save(woke);
        }
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "power-off failed; staying up");
            core.last_run = LastRun::Running;
            core.awake_since = now;
            core.save(now);
        }
    }
}

fn status_line(published: &Published) -> String {
    format!(
        "{} mode, {:.1} % charge, budget {:.1} Wh",
        published.mode, published.soc, published.budget_wh
    )
}
