//! pew-workerd: an iExec v9 worker for a solar-powered node. It registers with a workerpool's
//! scheduler, takes one replicate at a time when the power manager grants the energy it needs,
//! runs the app as an unprivileged container, proves the result on-chain (contribute, reveal),
//! uploads it, and learns what each app costs.
//!
//! Pure parts ([`activity`], [`energy`], [`journal`], the files and digest of [`task`]) are tested
//! on their own; [`service`] and [`replicate`] wire them to the scheduler, the chain, the
//! container engine and the bus.

pub mod activity;
pub mod board;
pub mod config;
pub mod context;
pub mod energy;
pub mod interface;
pub mod journal;
pub mod power;
pub mod replicate;
pub mod service;
pub mod task;
pub mod wallet;
