//! `org.pew.Power1`: the power manager. It tells every other service how much energy the node may
//! spend, and hands out time-limited energy leases to those about to do costly work.

use serde::{Deserialize, Serialize};
use zbus::{Type, proxy};

pub const SERVICE: crate::Service = crate::Service {
    short_name: "power",
    unit: "pew-powerd",
    bus_name: "org.pew.Power1",
    object_path: "/org/pew/Power1",
    introspection: include_str!("../interfaces/org.pew.Power1.xml"),
    read_only_methods: &["ListLeases"],
};

/// Values of the `Mode` property and of `ModeChanged`'s arguments.
pub const MODES: [&str; 4] = ["normal", "eco", "critical", "shutdown"];

/// Predicted solar energy for one slot of the forecast.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Type)]
pub struct ForecastSlot {
    /// Slot start, seconds since the Unix epoch (UTC).
    pub start: i64,
    pub wh: f64,
}

/// An energy lease as listed by `ListLeases`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Type)]
pub struct LeaseInfo {
    pub id: String,
    pub wh: f64,
    pub granted_at: i64,
    pub expires_at: i64,
    pub reason: String,
}

/// The answer to `RequestBudget`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Type)]
pub struct Grant {
    pub granted: bool,
    /// The lease to release when the work is done; empty when refused.
    pub lease_id: String,
    /// Why it was refused, or a summary of what was granted.
    pub detail: String,
}

#[proxy(
    interface = "org.pew.Power1",
    default_service = "org.pew.Power1",
    default_path = "/org/pew/Power1"
)]
pub trait Power {
    /// Asks for `wh` watt-hours to be spent within `seconds`. Granted energy is held for the
    /// caller until released or until the lease expires, so a crashed client cannot hold it
    /// forever. Mutating: root and group `pew` only.
    fn request_budget(&self, wh: f64, seconds: u32, reason: &str) -> zbus::Result<Grant>;
    /// Returns a lease's unused energy to the budget. False if no such lease is held.
    fn release_budget(&self, lease_id: &str) -> zbus::Result<bool>;
    /// The leases currently held.
    fn list_leases(&self) -> zbus::Result<Vec<LeaseInfo>>;

    /// State of charge, percent.
    #[zbus(property)]
    fn state_of_charge(&self) -> zbus::Result<f64>;
    /// One standard deviation of the state of charge estimate, percent.
    #[zbus(property)]
    fn state_of_charge_uncertainty(&self) -> zbus::Result<f64>;
    #[zbus(property)]
    fn battery_voltage(&self) -> zbus::Result<f64>;
    /// Amperes, positive while charging.
    #[zbus(property)]
    fn battery_current(&self) -> zbus::Result<f64>;
    #[zbus(property)]
    fn solar_power(&self) -> zbus::Result<f64>;
    #[zbus(property)]
    fn load_power(&self) -> zbus::Result<f64>;
    /// One of [`MODES`]. (Named `power_mode` in Rust because zbus's stream for changes of a
    /// `Mode` property would clash with the `ModeChanged` signal's.)
    #[zbus(property, name = "Mode")]
    fn power_mode(&self) -> zbus::Result<String>;
    /// Watt-hours that may be spent on compute now while keeping the reserve.
    #[zbus(property)]
    fn budget_wh(&self) -> zbus::Result<f64>;
    /// Watt-hours kept to survive the configured number of days without sun.
    #[zbus(property)]
    fn reserve_wh(&self) -> zbus::Result<f64>;
    /// Learned usable battery capacity.
    #[zbus(property)]
    fn capacity_wh(&self) -> zbus::Result<f64>;
    /// Solar energy forecast for the next 48 hours in 30-minute slots.
    #[zbus(property)]
    fn forecast(&self) -> zbus::Result<Vec<ForecastSlot>>;
    /// Why the node last started: "rtc-alarm", "power-restored", "reboot" or "first-boot".
    #[zbus(property)]
    fn wake_reason(&self) -> zbus::Result<String>;
    /// Where measurements come from: "ina219", "ina226", "hwmon", "power-supply" or "simulated".
    #[zbus(property)]
    fn source(&self) -> zbus::Result<String>;

    /// A lease ran out before its holder released it; its energy is back in the budget.
    #[zbus(signal)]
    fn lease_expired(&self, lease_id: String, wh: f64, reason: String) -> zbus::Result<()>;

    /// The power mode changed.
    #[zbus(signal)]
    fn mode_changed(&self, old: String, new: String, reason: String) -> zbus::Result<()>;
}
