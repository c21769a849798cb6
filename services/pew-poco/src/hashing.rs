//! The PoCo hashes (§2.1, §2.3, §2.4). Upstream builds them with
//! `HashUtils.concatenateAndHash`, i.e. Solidity's `abi.encodePacked`: addresses stay 20 bytes,
//! bytes32 values stay 32 bytes, nothing is padded.

use alloy_primitives::{Address, B256, U256, eip191_hash_message, keccak256};
use sha2::{Digest, Sha256};

/// Keccak-256 of the concatenation of `parts`.
fn packed_keccak(parts: &[&[u8]]) -> B256 {
    keccak256(parts.concat())
}

/// The on-chain id of task `index` of deal `deal_id`: `keccak(dealId ‖ uint256(index))`.
pub fn task_id(deal_id: B256, index: u64) -> B256 {
    packed_keccak(&[deal_id.as_slice(), &U256::from(index).to_be_bytes::<32>()])
}

/// What a worker commits to in `contribute`: `keccak(taskId ‖ resultDigest)`.
pub fn result_hash(task_id: B256, digest: B256) -> B256 {
    packed_keccak(&[task_id.as_slice(), digest.as_slice()])
}

/// Binds the contribution to the worker so another worker cannot copy it:
/// `keccak(worker ‖ taskId ‖ resultDigest)`.
pub fn result_seal(worker: Address, task_id: B256, digest: B256) -> B256 {
    packed_keccak(&[worker.as_slice(), task_id.as_slice(), digest.as_slice()])
}

/// The message of a workerpool authorization: `keccak(worker ‖ taskId ‖ enclaveChallenge)`.
/// The scheduler signs [`eth_signed_hash`] of it.
pub fn authorization_hash(worker: Address, task_id: B256, enclave_challenge: Address) -> B256 {
    packed_keccak(&[
        worker.as_slice(),
        task_id.as_slice(),
        enclave_challenge.as_slice(),
    ])
}

/// EIP-191 "personal sign" digest of a 32-byte hash:
/// `keccak("\x19Ethereum Signed Message:\n32" ‖ hash)`.
pub fn eth_signed_hash(hash: B256) -> B256 {
    eip191_hash_message(hash)
}

/// Plain SHA-256, the digest of a single result file.
pub fn sha256(data: &[u8]) -> B256 {
    B256::from(<[u8; 32]>::from(Sha256::digest(data)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{address, b256};

    #[test]
    fn concatenate_and_hash_matches_hash_utils_tests() {
        let worker = address("0x748e091bf16048cb5103E0E10F9D5a8b7fBDd860");
        let task = b256("0xd94b63fc2d3ec4b96daf84b403bbafdc8c8517e8e2addd51fec0fa4e67801be8");
        assert_eq!(
            packed_keccak(&[worker.as_slice(), task.as_slice()]),
            b256("0x9ca8cbf81a285c62778678c874dae13fdc6857566b67a9a825434dd557e18a8d")
        );
        let enclave = address("0x9a43BB008b7A657e1936ebf5d8e28e5c5E021596");
        assert_eq!(
            authorization_hash(worker, task, enclave),
            b256("0x54a76d209e8167e1ffa3bde8e3e7b30068423ca9554e1d605d8ee8fd0f165562")
        );
    }

    #[test]
    fn sha256_matches_hash_utils_tests() {
        assert_eq!(
            sha256(b"utf8String"),
            b256("0xb33845db05fb0822f1f1e3677cc6787b8a1a7a21f3c12f9e97c70cb596222218")
        );
        assert_eq!(
            sha256(b"hello"),
            b256("0x2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824")
        );
    }

    #[test]
    fn task_id_matches_chain_utils_tests() {
        let deal = b256("0xa0b0fd396b0f79f14e4d6b34af7180bd9e80e2d86afda91c6127c5c17a268e66");
        assert_eq!(
            task_id(deal, 0),
            b256("0xe06c86d6bb750dbd9be9e002482854b3b3f21550dbe37236767b9cac29e3ce28")
        );
        assert_ne!(
            task_id(deal, 1),
            task_id(deal, 0),
            "the index is part of the id"
        );
    }

    #[test]
    fn result_hash_and_seal_match_the_derived_vectors() {
        let task = b256("0xe06c86d6bb750dbd9be9e002482854b3b3f21550dbe37236767b9cac29e3ce28");
        let digest = b256("0xcc77508549295dd5de5876a2f4f00d4c3c27a547c6403450e43ab4de191bf1bc");
        let worker = address("0xd154ef7ed41a66d8d1d01227388b2f904c436d70");
        assert_eq!(
            result_hash(task, digest),
            b256("0x902fdcacc7286e13c6054a37cdc389f9a50c8430fcc4de5b62761b116d949d68")
        );
        assert_eq!(
            result_seal(worker, task, digest),
            b256("0x9f05ecb1267764de1969e2cf7b88e8a84abbd5b51d75bbe3229666bef4df2070")
        );
        assert_eq!(
            authorization_hash(worker, task, Address::ZERO),
            b256("0x6b02bf20d71f99afa6a77e80fd380da4872ad9756c81d3b2e6168b2ee9052232")
        );
    }

    #[test]
    fn eth_signed_hash_prefixes_the_32_byte_length() {
        let hash = b256("0x54a76d209e8167e1ffa3bde8e3e7b30068423ca9554e1d605d8ee8fd0f165562");
        let mut message = b"\x19Ethereum Signed Message:\n32".to_vec();
        message.extend_from_slice(hash.as_slice());
        assert_eq!(eth_signed_hash(hash), keccak256(&message));
    }
}
