//! 65-byte Ethereum signatures `r ‖ s ‖ v` as exchanged with the iExec scheduler and the PoCo
//! contracts (`v` = 27 or 28).

use std::fmt;
use std::str::FromStr;

use alloy_primitives::{Address, B256, hex};
use k256::ecdsa::{RecoveryId, Signature, VerifyingKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Offset added to the recovery id in `v`, as in Ethereum's pre-EIP-155 signatures.
const V_OFFSET: u8 = 27;

/// Why a signature could not be parsed or no signer recovered from it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    /// The text is not hexadecimal.
    #[error("signature is not hexadecimal: {0}")]
    InvalidHex(String),
    /// A signature has exactly 65 bytes.
    #[error("signature has {0} bytes, expected 65")]
    InvalidLength(usize),
    /// `v` must be 27 or 28.
    #[error("signature v = {0}, expected 27 or 28")]
    InvalidV(u8),
    /// `r` or `s` is out of range, or no curve point matches.
    #[error("no public key can be recovered from this signature")]
    Unrecoverable,
}

/// An ECDSA secp256k1 signature `r(32) ‖ s(32) ‖ v(1)`.
///
/// It prints and parses as `0x` followed by 130 lowercase hex digits, and serializes as that
/// string (the `value` of the scheduler's `Signature` JSON object).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature65([u8; 65]);

impl Signature65 {
    /// Wraps raw bytes; nothing is checked until [`Signature65::recover`].
    pub const fn from_bytes(bytes: [u8; 65]) -> Self {
        Self(bytes)
    }

    /// Assembles a signature from its parts.
    pub fn from_rsv(r: B256, s: B256, v: u8) -> Self {
        let mut bytes = [0; 65];
        bytes[..32].copy_from_slice(r.as_slice());
        bytes[32..64].copy_from_slice(s.as_slice());
        bytes[64] = v;
        Self(bytes)
    }

    /// The 65 bytes `r ‖ s ‖ v`.
    pub const fn as_bytes(&self) -> &[u8; 65] {
        &self.0
    }

    /// The `r` scalar.
    pub fn r(&self) -> B256 {
        B256::from_slice(&self.0[..32])
    }

    /// The `s` scalar.
    pub fn s(&self) -> B256 {
        B256::from_slice(&self.0[32..64])
    }

    /// The recovery byte, 27 or 28 for a well-formed signature.
    pub const fn v(&self) -> u8 {
        self.0[64]
    }

    /// The address that signed `hash` (a raw 32-byte digest, no prefix added), using `v` to
    /// pick the public key as `ecrecover` does.
    pub fn recover(&self, hash: B256) -> Result<Address, SignatureError> {
        let recovery_id = match self.v().checked_sub(V_OFFSET) {
            Some(id @ (0 | 1)) => id,
            _ => return Err(SignatureError::InvalidV(self.v())),
        };
        self.recover_with_id(hash, recovery_id)
    }

    /// Every address that could have signed `hash`, trying recovery ids 0 to 3 and ignoring
    /// `v`. The scheduler's login check accepts a signature when the worker's address is among
    /// these (web3j `SignatureUtils.doesSignatureMatchesAddress`).
    pub fn recover_any(&self, hash: B256) -> Vec<Address> {
        (0..=3)
            .filter_map(|id| self.recover_with_id(hash, id).ok())
            .collect()
    }

    fn recover_with_id(&self, hash: B256, recovery_id: u8) -> Result<Address, SignatureError> {
        let signature =
            Signature::from_slice(&self.0[..64]).map_err(|_| SignatureError::Unrecoverable)?;
        let id = RecoveryId::from_byte(recovery_id).ok_or(SignatureError::InvalidV(self.v()))?;
        // k256 only verifies low-S signatures while web3j and `ecrecover` accept both halves.
        // Negating s and flipping the parity of R's y recovers the same key from the canonical twin.
        let (signature, id) = match signature.normalize_s() {
            Some(low_s) => (low_s, RecoveryId::new(!id.is_y_odd(), id.is_x_reduced())),
            None => (signature, id),
        };
        let key = VerifyingKey::recover_from_prehash(hash.as_slice(), &signature, id)
            .map_err(|_| SignatureError::Unrecoverable)?;
        Ok(address_of(&key))
    }
}

/// The Ethereum address of a public key: the last 20 bytes of keccak(x ‖ y).
pub(crate) fn address_of(key: &VerifyingKey) -> Address {
    let point = key.to_encoded_point(false);
    // An uncompressed SEC1 point is 0x04 ‖ x(32) ‖ y(32).
    Address::from_raw_public_key(&point.as_bytes()[1..])
}

impl fmt::Display for Signature65 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{}", hex::encode(self.0))
    }
}

impl fmt::Debug for Signature65 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature65({self})")
    }
}

impl FromStr for Signature65 {
    type Err = SignatureError;

    /// Accepts 130 hex digits with or without a `0x` prefix, in either case.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bytes =
            hex::decode(text).map_err(|error| SignatureError::InvalidHex(error.to_string()))?;
        let bytes: [u8; 65] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| SignatureError::InvalidLength(bytes.len()))?;
        Ok(Self(bytes))
    }
}

impl Serialize for Signature65 {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Signature65 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{address, b256, signature};
    use crate::{challenge, eth_signed_hash};

    #[test]
    fn text_round_trip_is_lowercase_0x_hex() {
        let text = "0x873c63aa363337dd2d5b3e7ca0659f62e1602116e199ba47bea3084fa8bad8752d054ba48a665448e87638a8228b666a20509425e7b7c411f9d3ed76e9db79da1b";
        let parsed: Signature65 = text.to_uppercase().replacen("0X", "0x", 1).parse().unwrap();
        assert_eq!(parsed.to_string(), text);
        assert_eq!(parsed.v(), 27);
        let without_prefix: Signature65 = text[2..].parse().unwrap();
        assert_eq!(without_prefix, parsed);
    }

    #[test]
    fn malformed_text_is_rejected_with_the_reason() {
        assert_eq!(
            "0x1234".parse::<Signature65>(),
            Err(SignatureError::InvalidLength(2))
        );
        assert!(matches!(
            "0xzz".parse::<Signature65>(),
            Err(SignatureError::InvalidHex(_))
        ));
    }

    #[test]
    fn serde_uses_the_string_form() {
        let sig = signature(
            "0x6fefa6943a091b0e640dfb78425587868f7277029d024a3019b3495074378dd87eecff336d2cd0941d67477b442a58469edcff600eff706d52b0036bf4ca3d161b",
        );
        let json = serde_json::to_string(&sig).unwrap();
        assert_eq!(json, format!("\"{sig}\""));
        assert_eq!(serde_json::from_str::<Signature65>(&json).unwrap(), sig);
        assert!(serde_json::from_str::<Signature65>("\"0x00\"").is_err());
    }

    #[test]
    fn r_s_v_accessors_split_the_bytes() {
        let r = b256("0x63f2c959ed7dfc11619e1e0b5ba8a4bf56f81ce81d0b6e6e9cdeca538cb85d97");
        let s = b256("0x737747b747bc6c7d42cba859fdd030b1bed8b2513699ba78ac67dab5b785fda5");
        let sig = Signature65::from_rsv(r, s, 28);
        assert_eq!((sig.r(), sig.s(), sig.v()), (r, s, 28));
    }

    #[test]
    fn recover_rejects_a_v_other_than_27_or_28() {
        let mut bytes = *signature("0xf11e72d3a1d6e13c5187862cfa0342f135909f36c369e01f2392ad19daee781377328a1441ac993f518d7024aafed664508d8dadf42ebdd97394ebfeb5b837121c").as_bytes();
        bytes[64] = 1;
        let sig = Signature65::from_bytes(bytes);
        assert_eq!(sig.recover(B256::ZERO), Err(SignatureError::InvalidV(1)));
    }

    #[test]
    fn is_signature_valid_vector_recovers_its_signer_through_eip191() {
        let message = b256("0xe6fe0ad9cc7e30e83c9f9b6ce818ad20d576a496dd332cb1a257e85a7ebf2ca3");
        let sig = signature(
            "0x7e78fbf387024f96211345c9caae47bafccf9a992fbf7924b3473d133f73c02a32204b44309bb2eaba2fcfa3be726c2c1d19f4ca560ba0c82dbd18b724ea52a11b",
        );
        assert_eq!(
            sig.recover(eth_signed_hash(message)),
            Ok(address("0x043B9300356351419d9F63E818054E99e6c831b2"))
        );
        assert_ne!(
            sig.recover(message),
            Ok(address("0x043B9300356351419d9F63E818054E99e6c831b2"))
        );
    }

    #[test]
    fn worker_controller_login_signatures() {
        let wallet = address("0x108ca59d5d0eec2ff66003f8909eb40addd1a67d");
        let hash = challenge::login_hash("challenge");
        let valid = signature(
            "0xf11e72d3a1d6e13c5187862cfa0342f135909f36c369e01f2392ad19daee781377328a1441ac993f518d7024aafed664508d8dadf42ebdd97394ebfeb5b837121c",
        );
        let invalid = signature(
            "0xab5861286e8ef54febad4e606d7e7f32bec8e017a909bfa54e95ad6a7d42dc3f1cab39bacff7aeb15514d41750a3d7da0b21759063c50db1a8ac378062977ba51b",
        );
        assert_eq!(valid.recover(hash), Ok(wallet));
        assert!(valid.recover_any(hash).contains(&wallet));
        assert!(!invalid.recover_any(hash).contains(&wallet));
        assert!(challenge::login_signature_matches(
            "challenge",
            &valid,
            wallet
        ));
        assert!(!challenge::login_signature_matches(
            "challenge",
            &invalid,
            wallet
        ));
    }

    #[test]
    fn recover_any_ignores_v_and_accepts_high_s_like_web3j() {
        let wallet = address("0x108ca59d5d0eec2ff66003f8909eb40addd1a67d");
        let hash = challenge::login_hash("challenge");
        let valid = signature(
            "0xf11e72d3a1d6e13c5187862cfa0342f135909f36c369e01f2392ad19daee781377328a1441ac993f518d7024aafed664508d8dadf42ebdd97394ebfeb5b837121c",
        );
        // A wrong v breaks `recover` but not the scheduler's check.
        let wrong_v = Signature65::from_rsv(valid.r(), valid.s(), 27);
        assert_ne!(wrong_v.recover(hash), Ok(wallet));
        assert!(wrong_v.recover_any(hash).contains(&wallet));
        // (r, n - s) is the other valid signature of the same key.
        let high_s = Signature65::from_rsv(valid.r(), negate_mod_n(valid.s()), 27);
        assert_eq!(high_s.recover(hash), Ok(wallet));
    }

    #[test]
    fn garbage_recovers_nobody() {
        let zero = Signature65::from_bytes([0; 65]);
        assert!(zero.recover_any(B256::ZERO).is_empty());
        assert_eq!(
            Signature65::from_rsv(B256::ZERO, B256::ZERO, 27).recover(B256::ZERO),
            Err(SignatureError::Unrecoverable)
        );
    }

    /// n - s on secp256k1, computed without k256 scalars to keep the test independent.
    fn negate_mod_n(s: B256) -> B256 {
        let n = alloy_primitives::U256::from_str_radix(
            "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141",
            16,
        )
        .unwrap();
        B256::from(n - alloy_primitives::U256::from_be_bytes(s.0))
    }
}
