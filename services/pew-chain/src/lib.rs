//! JSON-RPC client of the iExec PoCo hub, for the pew worker.
//!
//! Views decode into [`pew_poco::abi`] types. Transactions are legacy EIP-155 ones, priced
//! like the Java worker's (network price × 1.3, capped), sent one at a time with a nonce that
//! survives restarts, and awaited until mined; a reverted transaction is an error.

#![warn(missing_docs)]

mod backoff;
mod client;
mod error;
mod gas;
mod nonce;
mod receipt;
mod views;

pub use backoff::{Backoff, RetryPolicy};
pub use client::{Chain, ChainOptions, TxRequest};
pub use error::ChainError;
pub use gas::{GWEI, GasPricePolicy};
pub use nonce::{NonceFile, NonceFileError, starting_nonce};
pub use receipt::{ReceiptLog, TxReceipt};
