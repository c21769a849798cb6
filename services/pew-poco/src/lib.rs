//! iExec Proof-of-Contribution (PoCo) arithmetic and the worker's wallet, free of I/O except
//! for the task's result files: the hashes a worker contributes and reveals, secp256k1
//! signatures compatible with web3j and the PoCo contracts, Web3 Secret Storage (keystore v3)
//! files, the scheduler's login challenge, the result digest and the hub's ABI.
//!
//! Every formula follows the iExec v9 Java worker and PoCo v6 byte for byte; the unit tests
//! replay the upstream test vectors. Section numbers (§) refer to
//! `shared/reference/iexec-protocol.md`.

pub mod abi;
pub mod challenge;
mod hashing;
pub mod keystore;
pub mod result;
mod signature;
mod wallet;

pub use alloy_primitives::{Address, B256, U256, keccak256};
pub use hashing::{authorization_hash, eth_signed_hash, result_hash, result_seal, sha256, task_id};
pub use signature::{Signature65, SignatureError};
pub use wallet::{Wallet, WalletError};

#[cfg(test)]
mod test_support;
