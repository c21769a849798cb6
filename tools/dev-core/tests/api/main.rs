//! The double through its HTTP surface: status codes, bodies, upstream golden vectors, and whole
//! replicate workflows driven by a scripted worker on an in-memory chain.

mod harness;

mod auth;
mod config;
mod deals;
mod faults;
mod push;
mod real_chain;
mod result_proxy;
mod supply;
mod update_status;
mod workflow;
