//! Drivers for the chips and kernel interfaces a pew node reads and drives. The I2C drivers are
//! generic over `embedded_hal::i2c::I2c`, so the same code runs on `/dev/i2c-1` on the Pi and
//! against `embedded-hal-mock` transaction scripts in tests; the sysfs readers take their root
//! directory as an argument for the same reason.

pub mod cpufreq;
pub mod hwmon;
pub mod ina;
pub mod ina219;
pub mod ina226;
pub mod power_supply;
mod reading;
pub mod rtc;
pub mod sysfs;

#[cfg(test)]
mod test_support;

pub use reading::Reading;
