//! The worker's side of `org.pew.Power1`: energy leases before work, the mode, and the node's
//! power for measuring what a task cost.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use pew_bus::power::{LeaseExpiredStream, ModeChangedStream, PowerProxy};
use tokio::sync::oneshot;
use zbus::proxy::OwnerChangedStream;

use crate::activity::PowerMode;
use crate::energy::EnergyIntegrator;

/// Node power is sampled this often while a task computes.
const SAMPLE_PERIOD: Duration = Duration::from_secs(2);

/// An answer to an energy request.
#[derive(Debug, Clone, PartialEq)]
pub enum Grant {
    Granted { lease_id: String },
    Refused { reason: String },
}

/// What the power manager announces that the worker acts on.
#[derive(Debug, Clone, PartialEq)]
pub enum PowerEvent {
    Mode(PowerMode),
    /// The id of a lease that ran out unreleased.
    LeaseExpired(String),
    /// The power manager's bus name changed hands: it restarted, and its leases are gone.
    Restarted,
}

/// The power manager's announcements as one stream.
pub struct PowerEvents {
    modes: ModeChangedStream,
    expiries: LeaseExpiredStream,
    owners: OwnerChangedStream<'static>,
}

impl PowerEvents {
    pub async fn subscribe(power: &PowerLink) -> zbus::Result<Self> {
        Ok(Self {
            modes: power.proxy.receive_mode_changed().await?,
            expiries: power.proxy.receive_lease_expired().await?,
            owners: power.proxy.inner().receive_owner_changed().await?,
        })
    }

    /// The next announcement; None once the bus connection is gone.
    pub async fn next(&mut self) -> Option<PowerEvent> {
        loop {
            let event = tokio::select! {
                change = self.modes.next() => change?
                    .args()
                    .ok()
                    .map(|args| PowerEvent::Mode(PowerMode::parse(args.new()))),
                expiry = self.expiries.next() => expiry?
                    .args()
                    .ok()
                    .map(|args| PowerEvent::LeaseExpired(args.lease_id().clone())),
                _owner = self.owners.next() => Some(PowerEvent::Restarted),
            };
            if let Some(event) = event {
                return Some(event);
            }
        }
    }
}

#[derive(Clone)]
pub struct PowerLink {
    proxy: PowerProxy<'static>,
}

impl PowerLink {
    pub async fn connect(connection: &zbus::Connection) -> zbus::Result<Self> {
        Ok(Self {
            proxy: PowerProxy::new(connection).await?,
        })
    }

    pub fn proxy(&self) -> &PowerProxy<'static> {
        &self.proxy
    }

    /// Asks for `wh` within `seconds`. A power manager that does not answer refuses: without
    /// it nobody vouches for the battery.
    pub async fn request(&self, wh: f64, seconds: u32, reason: &str) -> Grant {
        match self.proxy.request_budget(wh, seconds, reason).await {
            Ok(grant) if grant.granted => Grant::Granted {
                lease_id: grant.lease_id,
            },
            Ok(grant) => Grant::Refused {
                reason: grant.detail,
            },
            Err(e) => Grant::Refused {
                reason: format!("the power manager does not answer: {e}"),
            },
        }
    }

    pub async fn release(&self, lease_id: &str) {
        if let Err(e) = self.proxy.release_budget(lease_id).await {
            tracing::warn!(lease_id, "cannot release an energy lease: {e}");
        }
    }

    pub async fn mode(&self) -> String {
        self.proxy
            .power_mode()
            .await
            .unwrap_or_else(|_| "unknown".to_owned())
    }

    /// The node's power draw in watts, if the power manager knows it.
    pub async fn load_power(&self) -> Option<f64> {
        self.proxy.load_power().await.ok()
    }
}

/// Integrates the node's power in the background from `start` to `stop`.
pub struct EnergyMeter {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<EnergyIntegrator>,
}

impl EnergyMeter {
    pub fn start(power: PowerLink) -> Self {
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let mut integrator = EnergyIntegrator::default();
            let mut ticks = tokio::time::interval(SAMPLE_PERIOD);
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    _ = &mut stopped => {
                        if let Some(watts) = power.load_power().await {
                            integrator.sample(started.elapsed().as_secs_f64(), watts);
                        }
                        return integrator;
                    }
                }
                if let Some(watts) = power.load_power().await {
                    integrator.sample(started.elapsed().as_secs_f64(), watts);
                }
            }
        });
        Self { stop, task }
    }

    /// Watt-hours measured; zero when the power manager reported nothing.
    pub async fn stop(self) -> f64 {
        let _ = self.stop.send(());
        self.task
            .await
            .map_or(0.0, |integrator| integrator.watt_hours())
    }
}
