//! SHA-256 digests as they appear in the lock file and the provisioning manifest: 64 lowercase
//! hex digits, the form `sha256sum` prints. This crate never hashes anything itself (no hashing
//! crate is in the workspace); callers pass in a hashing function where one is needed.

use std::fmt;
use std::str::FromStr;

/// A SHA-256 digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256Digest([u8; 32]);

/// Why a text is not a SHA-256 digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("a sha256 is 64 hex digits, got {0}")]
    Length(usize),
    #[error("a sha256 is written in lowercase hex digits, got {0:?}")]
    NotLowercaseHex(String),
}

impl Sha256Digest {
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl FromStr for Sha256Digest {
    type Err = DigestError;

    /// Only lowercase is accepted so that one digest has exactly one spelling in files that are
    /// compared and diffed as text.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.len() != 64 {
            return Err(DigestError::Length(text.len()));
        }
        let mut bytes = [0u8; 32];
        if !decode_lowercase_hex(text, &mut bytes) {
            return Err(DigestError::NotLowercaseHex(text.to_owned()));
        }
        Ok(Self(bytes))
    }
}

/// Fills `bytes` from exactly `2 * bytes.len()` lowercase hex digits; false if `text` is not that.
pub(crate) fn decode_lowercase_hex(text: &str, bytes: &mut [u8]) -> bool {
    if text.len() != 2 * bytes.len() {
        return false;
    }
    for (byte, pair) in bytes.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
        let (Some(high), Some(low)) = (lowercase_hex_value(pair[0]), lowercase_hex_value(pair[1]))
        else {
            return false;
        };
        *byte = high << 4 | low;
    }
    true
}

fn lowercase_hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        _ => None,
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256Digest({self})")
    }
}

impl<'de> serde::Deserialize<'de> for Sha256Digest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SHA-256 of the empty input (FIPS 180-2 test vector).
    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn round_trips_the_sha256sum_spelling() {
        let digest: Sha256Digest = EMPTY.parse().unwrap();
        assert_eq!(digest.as_bytes()[0], 0xe3);
        assert_eq!(digest.as_bytes()[31], 0x55);
        assert_eq!(digest.to_string(), EMPTY);
    }

    #[test]
    fn rejects_wrong_length_uppercase_and_non_hex() {
        assert_eq!("abc".parse::<Sha256Digest>(), Err(DigestError::Length(3)));
        assert!(matches!(
            EMPTY.to_uppercase().parse::<Sha256Digest>(),
            Err(DigestError::NotLowercaseHex(_))
        ));
        let with_g = format!("g{}", &EMPTY[1..]);
        assert!(matches!(
            with_g.parse::<Sha256Digest>(),
            Err(DigestError::NotLowercaseHex(_))
        ));
    }
}
