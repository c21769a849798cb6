//! Simulated node hardware replaying real measured weather, and the year-long power
//! simulation that drives pew-power's real manager with it.
//!
//! - [`weather`]: typical-year weather of real stations ([`tmy3`] converts the source files,
//!   [`weather_file`] is the committed compact format, [`calendar`] maps timestamps onto it);
//! - [`pv`], [`battery`], [`node`]: the panel, the pack and the node they make up;
//! - [`year`], [`plot`]: the year simulation behind `cargo xtask sim power` and its chart.

pub mod battery;
pub mod calendar;
pub mod node;
pub mod plot;
pub mod pv;
pub mod tmy3;
pub mod weather;
pub mod weather_file;
pub mod year;
