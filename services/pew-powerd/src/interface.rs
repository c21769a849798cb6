//! The `org.pew.Power1` object. Its properties are a published snapshot of the manager's
//! status, rounded to what the sensors can resolve so that noise in the last digit does not
//! flood the bus with PropertiesChanged signals.

use std::sync::Arc;

use pew_bus::power::{ForecastSlot, Grant, LeaseInfo};
use pew_power::manager::PowerStatus;
use tokio::sync::Mutex;
use zbus::message::Header;
use zbus::object_server::SignalEmitter;

use crate::service::Core;
use crate::wake::WakeReason;

pub struct PowerInterface {
    core: Arc<Mutex<Core>>,
}

impl PowerInterface {
    pub fn new(core: Arc<Mutex<Core>>) -> Self {
        Self { core }
    }
}

/// The values published as properties, rounded for publication.
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    pub soc: f64,
    pub soc_uncertainty: f64,
    pub battery_v: f64,
    pub battery_a: f64,
    pub solar_w: f64,
    pub load_w: f64,
    pub mode: String,
    pub budget_wh: f64,
    pub reserve_wh: f64,
    pub capacity_wh: f64,
    pub forecast: Vec<ForecastSlot>,
    pub wake_reason: &'static str,
}

fn round_to(value: f64, step: f64) -> f64 {
    (value / step).round() * step
}

impl Published {
    pub fn new(status: &PowerStatus, wake_reason: WakeReason) -> Self {
        Self {
            wake_reason: wake_reason.as_str(),
            soc: round_to(status.soc_percent, 0.1),
            soc_uncertainty: round_to(status.soc_uncertainty_percent, 0.1),
            battery_v: round_to(status.battery_v, 0.01),
            battery_a: round_to(status.battery_a, 0.001),
            solar_w: round_to(status.solar_w, 0.1),
            load_w: round_to(status.load_w, 0.1),
            mode: status.mode.as_str().to_owned(),
            budget_wh: round_to(status.budget_wh, 0.1),
            reserve_wh: round_to(status.reserve_wh, 0.1),
            capacity_wh: round_to(status.capacity_wh, 0.1),
            forecast: status
                .forecast
                .iter()
                .map(|slot| ForecastSlot {
                    start: slot.start,
                    wh: round_to(slot.wh, 0.01),
                })
                .collect(),
        }
    }
}

#[zbus::interface(name = "org.pew.Power1")]
impl PowerInterface {
    async fn request_budget(
        &self,
        wh: f64,
        seconds: u32,
        reason: String,
        #[zbus(header)] header: Header<'_>,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Grant {
        let caller = header.sender().map(|s| s.to_string()).unwrap_or_default();
        let grant = self
            .core
            .lock()
            .await
            .request_budget(wh, seconds, &reason, &caller);
        self.announce(&emitter).await;
        grant
    }

    async fn release_budget(
        &self,
        lease_id: String,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> bool {
        let released = self.core.lock().await.release_budget(&lease_id);
        self.announce(&emitter).await;
        released
    }

    async fn list_leases(&self) -> Vec<LeaseInfo> {
        self.core.lock().await.leases()
    }

    #[zbus(property)]
    async fn state_of_charge(&self) -> f64 {
        self.core.lock().await.published().soc
    }

    #[zbus(property)]
    async fn state_of_charge_uncertainty(&self) -> f64 {
        self.core.lock().await.published().soc_uncertainty
    }

    #[zbus(property)]
    async fn battery_voltage(&self) -> f64 {
        self.core.lock().await.published().battery_v
    }

    #[zbus(property)]
    async fn battery_current(&self) -> f64 {
        self.core.lock().await.published().battery_a
    }

    #[zbus(property)]
    async fn solar_power(&self) -> f64 {
        self.core.lock().await.published().solar_w
    }

    #[zbus(property)]
    async fn load_power(&self) -> f64 {
        self.core.lock().await.published().load_w
    }

    #[zbus(property)]
    async fn mode(&self) -> String {
        self.core.lock().await.published().mode.clone()
    }

    #[zbus(property)]
    async fn budget_wh(&self) -> f64 {
        self.core.lock().await.published().budget_wh
    }

    #[zbus(property)]
    async fn reserve_wh(&self) -> f64 {
        self.core.lock().await.published().reserve_wh
    }

    #[zbus(property)]
    async fn capacity_wh(&self) -> f64 {
        self.core.lock().await.published().capacity_wh
    }

    #[zbus(property)]
    async fn forecast(&self) -> Vec<ForecastSlot> {
        self.core.lock().await.published().forecast.clone()
    }

    #[zbus(property)]
    async fn wake_reason(&self) -> String {
        self.core.lock().await.published().wake_reason.to_owned()
    }

    #[zbus(property)]
    async fn source(&self) -> String {
        self.core.lock().await.source_name().to_owned()
    }

    // A lease ran out before its holder released it. (A doc comment would become part of the
    // introspected contract.)
    #[zbus(signal)]
    pub async fn lease_expired(
        emitter: &SignalEmitter<'_>,
        lease_id: &str,
        wh: f64,
        reason: &str,
    ) -> zbus::Result<()>;

    // The `ModeChanged` signal, named `mode_transition` in Rust because zbus already generates
    // `mode_changed` to announce changes of the `Mode` property.
    #[zbus(signal, name = "ModeChanged")]
    pub async fn mode_transition(
        emitter: &SignalEmitter<'_>,
        old: &str,
        new: &str,
        reason: &str,
    ) -> zbus::Result<()>;
}

impl PowerInterface {
    /// Emits PropertiesChanged for every published value that changed since the last
    /// announcement. Called after each sample and after each lease change; must not be called
    /// with the core locked (the property getters lock it).
    pub async fn announce(&self, emitter: &SignalEmitter<'_>) {
        let (old, new) = {
            let mut core = self.core.lock().await;
            core.take_unannounced()
        };
        if let Err(error) = self.announce_changes(emitter, &old, &new).await {
            tracing::warn!(%error, "cannot announce property changes");
        }
    }

    async fn announce_changes(
        &self,
        emitter: &SignalEmitter<'_>,
        old: &Published,
        new: &Published,
    ) -> zbus::Result<()> {
        if old.soc != new.soc {
            self.state_of_charge_changed(emitter).await?;
        }
        if old.soc_uncertainty != new.soc_uncertainty {
            self.state_of_charge_uncertainty_changed(emitter).await?;
        }
        if old.battery_v != new.battery_v {
            self.battery_voltage_changed(emitter).await?;
        }
        if old.battery_a != new.battery_a {
            self.battery_current_changed(emitter).await?;
        }
        if old.solar_w != new.solar_w {
            self.solar_power_changed(emitter).await?;
        }
        if old.load_w != new.load_w {
            self.load_power_changed(emitter).await?;
        }
        if old.mode != new.mode {
            self.mode_changed(emitter).await?;
        }
        if old.budget_wh != new.budget_wh {
            self.budget_wh_changed(emitter).await?;
        }
        if old.reserve_wh != new.reserve_wh {
            self.reserve_wh_changed(emitter).await?;
        }
        if old.capacity_wh != new.capacity_wh {
            self.capacity_wh_changed(emitter).await?;
        }
        if old.forecast != new.forecast {
            self.forecast_changed(emitter).await?;
        }
        if old.wake_reason != new.wake_reason {
            self.wake_reason_changed(emitter).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_hides_noise_below_sensor_resolution() {
        assert_eq!(round_to(3.80449, 0.01), round_to(3.80301, 0.01));
        assert_ne!(round_to(3.806, 0.01), round_to(3.794, 0.01));
        assert!((round_to(57.26, 0.1) - 57.3).abs() < 1e-9);
    }
}
