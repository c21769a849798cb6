//! The worker's secp256k1 key.

use std::fmt;

use alloy_primitives::{Address, B256};
use k256::ecdsa::SigningKey;
use rand_core::OsRng;

use crate::eth_signed_hash;
use crate::signature::{Signature65, address_of};

/// Why a private key was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WalletError {
    /// Zero or not below the curve order.
    #[error("the private key is not a valid secp256k1 scalar")]
    InvalidPrivateKey,
}

/// A secp256k1 key pair and its Ethereum address.
///
/// `Debug` shows the address only. The key material lives in a k256 `SigningKey`, which wipes
/// its memory on drop.
#[derive(Clone)]
pub struct Wallet {
    key: SigningKey,
    address: Address,
}

impl Wallet {
    /// A wallet from its 32-byte private key.
    pub fn from_private_key(bytes: &[u8; 32]) -> Result<Self, WalletError> {
        let key =
            SigningKey::from_bytes(bytes.into()).map_err(|_| WalletError::InvalidPrivateKey)?;
        Ok(Self::from_signing_key(key))
    }

    /// A fresh key from the operating system's random generator.
    pub fn random() -> Self {
        Self::from_signing_key(SigningKey::random(&mut OsRng))
    }

    fn from_signing_key(key: SigningKey) -> Self {
        let address = address_of(key.verifying_key());
        Self { key, address }
    }

    /// The Ethereum address of this key.
    pub fn address(&self) -> Address {
        self.address
    }

    /// A copy of the private key, for signers that need raw bytes (alloy's transaction
    /// signer, keystore encryption). The caller is responsible for wiping it.
    pub fn private_key_bytes(&self) -> [u8; 32] {
        self.key.to_bytes().into()
    }

    /// Signs a 32-byte digest as is (no prefix): RFC 6979 deterministic nonce, low-S,
    /// `v = 27 + recovery id`, byte-identical to web3j `Sign.signMessage(hash, key, false)`.
    pub fn sign_hash(&self, hash: B256) -> Signature65 {
        let (signature, recovery_id) = self
            .key
            .sign_prehash_recoverable(hash.as_slice())
            // With a 32-byte digest this fails only if RFC 6979 yields r = 0 or s = 0, which has
            // probability 2^-256; there is no input that triggers it on purpose.
            .expect("ECDSA signing of a 32-byte digest cannot fail");
        let mut bytes = [0; 65];
        bytes[..64].copy_from_slice(&signature.to_bytes());
        bytes[64] = 27 + recovery_id.to_byte();
        Signature65::from_bytes(bytes)
    }

    /// Signs the EIP-191 digest of a 32-byte hash (web3j `Sign.signPrefixedMessage`), the form
    /// the PoCo contracts verify for workerpool authorizations.
    pub fn sign_eth_signed(&self, hash: B256) -> Signature65 {
        self.sign_hash(eth_signed_hash(hash))
    }
}

impl fmt::Debug for Wallet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wallet")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{SCHEDULER_KEY, WORKER_KEY, address, b256, private_key, signature};
    use crate::{authorization_hash, challenge};

    #[test]
    fn addresses_of_the_test_keys() {
        assert_eq!(
            Wallet::from_private_key(&private_key(WORKER_KEY))
                .unwrap()
                .address(),
            address("0xd154ef7ed41a66d8d1d01227388b2f904c436d70")
        );
        assert_eq!(
            Wallet::from_private_key(&private_key(SCHEDULER_KEY))
                .unwrap()
                .address(),
            address("0x2d29bfbec903479fe4ba991918bab99b494f2bef")
        );
    }

    #[test]
    fn invalid_private_keys_are_refused() {
        assert_eq!(
            Wallet::from_private_key(&[0; 32]).unwrap_err(),
            WalletError::InvalidPrivateKey
        );
        assert_eq!(
            Wallet::from_private_key(&[0xff; 32]).unwrap_err(),
            WalletError::InvalidPrivateKey
        );
    }

    #[test]
    fn private_key_bytes_round_trip() {
        let key = private_key(WORKER_KEY);
        assert_eq!(
            Wallet::from_private_key(&key).unwrap().private_key_bytes(),
            key
        );
    }

    #[test]
    fn debug_never_prints_the_key() {
        let wallet = Wallet::from_private_key(&private_key(WORKER_KEY)).unwrap();
        let debug = format!("{wallet:?}");
        assert!(
            debug.contains("d154ef7ed41a66d8d1d01227388b2f904c436d70"),
            "{debug}"
        );
        assert!(!debug.to_lowercase().contains("6dacd24b"), "{debug}");
        assert!(
            !debug.contains("109, 172"),
            "no key bytes in decimal either: {debug}"
        );
    }

    #[test]
    fn signature_service_tests_authorization_signature() {
        let scheduler = Wallet::from_private_key(&private_key(SCHEDULER_KEY)).unwrap();
        let hash = b256("0x54a76d209e8167e1ffa3bde8e3e7b30068423ca9554e1d605d8ee8fd0f165562");
        let sig = scheduler.sign_eth_signed(hash);
        assert_eq!(
            sig.r(),
            b256("0x63f2c959ed7dfc11619e1e0b5ba8a4bf56f81ce81d0b6e6e9cdeca538cb85d97")
        );
        assert_eq!(
            sig.s(),
            b256("0x737747b747bc6c7d42cba859fdd030b1bed8b2513699ba78ac67dab5b785fda5")
        );
        assert_eq!(sig.v(), 28);
        assert_eq!(sig.recover(eth_signed_hash(hash)), Ok(scheduler.address()));
    }

    #[test]
    fn hash_and_sign_of_the_challenge_matches_signature_utils_tests() {
        let worker = Wallet::from_private_key(&private_key(WORKER_KEY)).unwrap();
        assert_eq!(
            challenge::sign_login(&worker, "challenge"),
            signature(
                "0x873c63aa363337dd2d5b3e7ca0659f62e1602116e199ba47bea3084fa8bad8752d054ba48a665448e87638a8228b666a20509425e7b7c411f9d3ed76e9db79da1b"
            )
        );
    }

    #[test]
    fn derived_authorization_signature_of_the_end_to_end_example() {
        let scheduler = Wallet::from_private_key(&private_key(SCHEDULER_KEY)).unwrap();
        let worker = address("0xd154ef7ed41a66d8d1d01227388b2f904c436d70");
        let task = b256("0xe06c86d6bb750dbd9be9e002482854b3b3f21550dbe37236767b9cac29e3ce28");
        let sig = scheduler.sign_eth_signed(authorization_hash(worker, task, Address::ZERO));
        assert_eq!(
            sig,
            signature(
                "0x6fefa6943a091b0e640dfb78425587868f7277029d024a3019b3495074378dd87eecff336d2cd0941d67477b442a58469edcff600eff706d52b0036bf4ca3d161b"
            )
        );
    }

    #[test]
    fn signatures_are_deterministic_low_s_and_recoverable() {
        let wallet = Wallet::random();
        let half_order = b256("0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0");
        for seed in 0u8..16 {
            let hash = alloy_primitives::keccak256([seed]);
            let sig = wallet.sign_hash(hash);
            assert_eq!(sig, wallet.sign_hash(hash), "RFC 6979 is deterministic");
            assert!(sig.s() <= half_order, "low-S");
            assert!(matches!(sig.v(), 27 | 28));
            assert_eq!(sig.recover(hash), Ok(wallet.address()));
        }
    }

    #[test]
    fn random_wallets_differ() {
        assert_ne!(Wallet::random().address(), Wallet::random().address());
    }
}
