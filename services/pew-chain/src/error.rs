//! What can go wrong talking to the chain, named by the failing step.

use std::path::PathBuf;
use std::time::Duration;

use alloy::primitives::B256;
use alloy::transports::TransportError;
use pew_poco::abi::AbiError;

use crate::nonce::NonceFileError;

/// A chain client failure. Each variant says *what* failed so a caller can tell a dead RPC
/// endpoint (retry later) from a reverted transaction (the call itself is wrong) from a
/// contract that returned unexpected data (wrong hub address or ABI).
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The RPC URL could not be parsed.
    #[error("invalid RPC URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// Why it was rejected.
        reason: String,
    },
    /// The HTTP client could not be built (TLS setup).
    #[error("cannot build the HTTP client: {0}")]
    HttpClient(#[source] reqwest::Error),
    /// The endpoint could not be reached, even after retrying.
    #[error("RPC {method} unreachable after {attempts} attempts: {source}")]
    Unreachable {
        /// JSON-RPC method.
        method: &'static str,
        /// How many times it was tried.
        attempts: u32,
        /// The last transport failure.
        source: TransportError,
    },
    /// The node answered with an error (e.g. `eth_call` reverted, nonce too low, underpriced).
    #[error("RPC {method} failed: {source}")]
    Rpc {
        /// JSON-RPC method.
        method: &'static str,
        /// The node's answer.
        source: TransportError,
    },
    /// The node returned data that does not decode as the expected ABI type.
    #[error("cannot decode the result of {call}: {source}")]
    Decode {
        /// Contract function whose result was being decoded.
        call: &'static str,
        /// The decoder's complaint.
        source: AbiError,
    },
    /// A transaction was mined but reverted.
    #[error("transaction {tx_hash} reverted in block {block_number}")]
    Reverted {
        /// Hash of the reverted transaction.
        tx_hash: B256,
        /// Block that included it.
        block_number: u64,
    },
    /// No receipt appeared in time; the transaction may still be pending.
    #[error("no receipt for transaction {tx_hash} after {waited:?}")]
    ReceiptTimeout {
        /// Hash of the transaction.
        tx_hash: B256,
        /// How long we polled.
        waited: Duration,
    },
    /// A receipt lacked the block number (a pending receipt, which a node should not return).
    #[error("receipt of {tx_hash} has no block number")]
    ReceiptWithoutBlock {
        /// Hash of the transaction.
        tx_hash: B256,
    },
    /// The chain was opened without a wallet, so it cannot send transactions.
    #[error("no wallet configured: this chain client is read-only")]
    NoWallet,
    /// The wallet's key was rejected by the transaction signer.
    #[error("cannot sign the transaction: {0}")]
    Signing(#[source] alloy::signers::Error),
    /// The persisted nonce could not be read or written.
    #[error(transparent)]
    NonceFile(#[from] NonceFileError),
    /// The blocking task that writes the nonce file did not complete.
    #[error("nonce file {path} task failed: {reason}")]
    NonceTask {
        /// The nonce file.
        path: PathBuf,
        /// Why the task ended.
        reason: String,
    },
}
