//! The iExec v9 worker ⇄ scheduler (iexec-core) protocol, free of I/O.
//!
//! Both sides of the conversation live here so that `pew-workerd` and the `dev-core` test double
//! cannot drift apart: the JSON bodies of the REST API ([`model`]), the replicate statuses and
//! notification types ([`status`]), the core's replicate state machine ([`workflow`]), and the two
//! framings the core's push channel is wrapped in ([`sockjs`] carrying [`stomp`]).
//!
//! Wire names follow the Java classes of iexec-core 9.3 / iexec-common 9.2 exactly. Parsing is
//! lenient where Jackson is (numbers in strings, `"true"`, several `Duration` spellings), because a
//! worker must keep working against whatever a real core or config server sends.

mod java_duration;
mod lenient;
pub mod model;
pub mod sockjs;
pub mod status;
pub mod stomp;
mod wire_enum;
pub mod workflow;
