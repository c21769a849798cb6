//! `org.pew.Sensors1`: the weather station (Sense HAT) and camera.

use zbus::proxy;

pub const SERVICE: crate::Service = crate::Service {
    short_name: "sensors",
    unit: "pew-sensord",
    bus_name: "org.pew.Sensors1",
    object_path: "/org/pew/Sensors1",
    introspection: include_str!("../interfaces/org.pew.Sensors1.xml"),
    read_only_methods: &[],
};

#[proxy(
    interface = "org.pew.Sensors1",
    default_service = "org.pew.Sensors1",
    default_path = "/org/pew/Sensors1"
)]
pub trait Sensors {
    /// Takes a sample now, outside the schedule. Mutating: root and group `pew` only.
    fn sample_now(&self) -> zbus::Result<()>;

    /// "sampling", "idle" (sampling paused by the power mode) or "error".
    #[zbus(property)]
    fn state(&self) -> zbus::Result<String>;
    /// Air temperature, °C.
    #[zbus(property)]
    fn temperature(&self) -> zbus::Result<f64>;
    /// Relative humidity, percent.
    #[zbus(property)]
    fn humidity(&self) -> zbus::Result<f64>;
    /// Station pressure, hPa.
    #[zbus(property)]
    fn pressure(&self) -> zbus::Result<f64>;
    /// Time of the last sample, seconds since the Unix epoch.
    #[zbus(property)]
    fn last_sample(&self) -> zbus::Result<i64>;
    /// Seconds between samples in the current power mode.
    #[zbus(property)]
    fn sample_interval(&self) -> zbus::Result<u32>;

    /// A sample was taken: temperature °C, humidity %, pressure hPa, time.
    #[zbus(signal)]
    fn sampled(&self, temperature: f64, humidity: f64, pressure: f64, at: i64) -> zbus::Result<()>;
}
