//! The power manager's logic, free of I/O: state of charge, solar forecast, energy budget,
//! power modes and energy leases. `pew-powerd` feeds it measurements from hardware or from
//! the simulator and serves its results on D-Bus; `cargo xtask sim power` drives the very same
//! code through a year of real weather.
//!
//! Every function takes the current time as an argument, so a simulation can replay a year in
//! seconds and tests never sleep.

pub mod budget;
pub mod calendar;
pub mod chemistry;
pub mod forecast;
pub mod lease;
pub mod manager;
pub mod mode;
pub mod soc;
pub mod solar;

/// Seconds since the Unix epoch, UTC.
pub type Timestamp = i64;
