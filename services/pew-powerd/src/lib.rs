//! pew-powerd: the power manager of a solar node. It measures battery and panel, estimates the
//! state of charge, forecasts the sun, decides how much energy compute may spend and which power
//! mode the node is in, powers the node off with its wake alarm armed when the battery runs low,
//! and serves all of it as `org.pew.Power1`. The decisions are pew-power's; this crate is the
//! wiring to hardware (or the simulated node) and to the bus.

pub mod config;
pub mod interface;
pub mod meter;
pub mod platform;
pub mod service;
pub mod simulation;
pub mod wake;
