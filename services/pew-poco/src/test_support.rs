//! Parsing helpers and keys shared by the unit tests.

use alloy_primitives::{Address, B256};

use crate::Signature65;

/// Worker key of `SignatureUtilsTests` (address 0xd154ef7e…6d70).
pub const WORKER_KEY: &str = "0x6dacd24b3d49d0c50c555aa728c60a57aa08beb363e3a90cce2e4e5d327c6ee2";
/// Scheduler key of `SignatureServiceTests` (address 0x2d29bfbe…2bef).
pub const SCHEDULER_KEY: &str =
    "0x2a46e8c1535792f6689b10d5c882c9363910c30751ec193ae71ec71630077909";

pub fn b256(text: &str) -> B256 {
    text.parse().unwrap()
}

pub fn address(text: &str) -> Address {
    text.parse().unwrap()
}

pub fn signature(text: &str) -> Signature65 {
    text.parse().unwrap()
}

pub fn private_key(text: &str) -> [u8; 32] {
    b256(text).0
}

pub fn hex_bytes(text: &str) -> Vec<u8> {
    alloy_primitives::hex::decode(text).unwrap()
}
