//! The scheduler's login challenge (§1.3).
//!
//! The core hands out a base64 string, and both sides hash it after a pass through web3j
//! `Numeric.hexStringToByteArray`, which reads it as hexadecimal even though it is not. A Rust
//! worker has to reproduce that quirk to produce a signature the core accepts.

use alloy_primitives::{Address, B256, keccak256};

use crate::{Signature65, Wallet};

/// web3j `Numeric.hexStringToByteArray`, quirks included:
///
/// - a leading `"0x"` (lowercase `x` only) is dropped;
/// - with an odd length, the first byte is the value of the first digit alone;
/// - each following pair becomes `(digit(a) << 4) + digit(b)`, where a non-hex character
///   counts as −1, computed in two's complement and truncated to the low 8 bits.
///
/// Lengths count UTF-16 code units, as Java does. Java's `Character.digit` also gives values
/// to non-ASCII decimal digits; they are treated as −1 here, which cannot matter for a base64
/// challenge or a hex callback.
pub fn java_hex_bytes(text: &str) -> Vec<u8> {
    let text = text.strip_prefix("0x").unwrap_or(text);
    let units: Vec<u16> = text.encode_utf16().collect();
    let (head, pairs) = units.split_at(units.len() % 2);
    head.iter()
        .map(|&unit| java_hex_digit(unit) as u8)
        .chain(pairs.chunks_exact(2).map(|pair| {
            let byte = (java_hex_digit(pair[0]) << 4) + java_hex_digit(pair[1]);
            // Java's `(byte)` cast keeps the low 8 bits, as `as u8` does.
            byte as u8
        }))
        .collect()
}

/// `Character.digit(c, 16)` for ASCII: 0–15, or −1 for anything else.
fn java_hex_digit(unit: u16) -> i32 {
    char::from_u32(u32::from(unit))
        .and_then(|c| c.to_digit(16))
        .map_or(-1, |digit| digit as i32)
}

/// The digest a worker signs to log in: `keccak(java_hex_bytes(challenge))`.
pub fn login_hash(challenge: &str) -> B256 {
    keccak256(java_hex_bytes(challenge))
}

/// The login signature (`SignatureUtils.hashAndSign`): raw ECDSA over [`login_hash`], no
/// EIP-191 prefix.
pub fn sign_login(wallet: &Wallet, challenge: &str) -> Signature65 {
    wallet.sign_hash(login_hash(challenge))
}

/// The scheduler's acceptance test (`WorkerController.getToken`): any of the four recovery ids
/// yields `wallet`, whatever `v` says.
pub fn login_signature_matches(challenge: &str, signature: &Signature65, wallet: Address) -> bool {
    signature
        .recover_any(login_hash(challenge))
        .contains(&wallet)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{WORKER_KEY, b256, hex_bytes, private_key, signature};

    #[test]
    fn the_word_challenge_becomes_five_garbage_bytes() {
        assert_eq!(java_hex_bytes("challenge"), hex_bytes("0x0cfaefdffe"));
        assert_eq!(
            login_hash("challenge"),
            b256("0x795a02268962015518a88faa7fadb4cff5a4305778ef0ef9187acf3f36f70de1")
        );
    }

    #[test]
    fn real_hex_decodes_normally() {
        assert_eq!(java_hex_bytes("0x00ff7F"), vec![0x00, 0xff, 0x7f]);
        assert_eq!(java_hex_bytes("abc"), vec![0x0a, 0xbc]);
        assert_eq!(java_hex_bytes(""), Vec::<u8>::new());
        assert_eq!(java_hex_bytes("0x"), Vec::<u8>::new());
    }

    #[test]
    fn only_a_lowercase_0x_prefix_is_stripped() {
        // "0X" stays: '0' → 0, 'X' → −1, so the pair is (0 << 4) − 1 = 0xff.
        assert_eq!(java_hex_bytes("0X12"), vec![0xff, 0x12]);
        // A lone "0x" prefix of odd-length text leaves an odd remainder.
        assert_eq!(java_hex_bytes("0x123"), vec![0x01, 0x23]);
    }

    #[test]
    fn non_hex_characters_count_as_minus_one() {
        // (−1 << 4) + (−1) = −17 → 0xef; a lone odd −1 → 0xff.
        assert_eq!(java_hex_bytes("zz"), vec![0xef]);
        assert_eq!(java_hex_bytes("z"), vec![0xff]);
        assert_eq!(java_hex_bytes("=="), vec![0xef]);
        // A non-ASCII character is one UTF-16 unit, so "é1" is one pair: (−1 << 4) + 1.
        assert_eq!(java_hex_bytes("é1"), vec![0xf1]);
    }

    #[test]
    fn realistic_base64_challenge_login() {
        let challenge = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
        assert_eq!(
            java_hex_bytes(challenge),
            hex_bytes("0xaaec9fffafbfbfefdaffcf9fdfefefeffbfaeffdef7f")
        );
        assert_eq!(
            login_hash(challenge),
            b256("0x9b14960129a8496d2b19b8efaaa80a9ccba4311ec789b7d246ad1bb70136d6be")
        );
        let worker = Wallet::from_private_key(&private_key(WORKER_KEY)).unwrap();
        let sig = sign_login(&worker, challenge);
        assert_eq!(
            sig,
            signature(
                "0xd17b2aa5d49d75dd7bacb3c333835409d7dbac042415e6ab54c03d5cfcafe53c5c4dbe19a503cc6f913af46074781335a932491b7edb6c458fb15efaae504e381c"
            )
        );
        assert!(login_signature_matches(challenge, &sig, worker.address()));
        assert!(!login_signature_matches(
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh80",
            &sig,
            worker.address()
        ));
    }
}
