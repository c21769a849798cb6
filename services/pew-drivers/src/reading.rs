//! The one measurement shape every power-monitor backend (I2C chip or kernel hwmon) returns, so
//! the power manager does not care which backend produced it.

/// One sample of a shunt-based power monitor, in SI units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    /// Voltage on the bus (load) side of the shunt, in volts.
    pub bus_v: f64,
    /// Voltage across the shunt resistor, in volts; negative when current flows backwards.
    pub shunt_v: f64,
    /// Current through the shunt, in amperes. The sign follows the wiring: on a Waveshare UPS
    /// HAT, negative means the battery is discharging into the Pi.
    pub current_a: f64,
    /// Power as the chip (or kernel driver) reports it, in watts. The TI monitors report its
    /// magnitude only; take the direction from the sign of `current_a`.
    pub power_w: f64,
}
