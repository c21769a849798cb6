//! HS256 JSON Web Tokens in the shape jjwt 0.11 gives them in iexec-core and iexec-result-proxy.
//!
//! Both services sign with a random 128-byte key, emit the header `{"alg":"HS256"}` and write the
//! claims in the order they were set (jjwt keeps a linked map). The scheduler sets
//! `aud, iat, exp, sub`; the result proxy sets `aud, iat, sub` and no expiry.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// Length of the HMAC key both upstream services generate at start.
const KEY_LEN: usize = 128;

/// `base64url({"alg":"HS256"})`, the only header jjwt writes for an HMAC-signed token.
const HEADER_JSON: &str = r#"{"alg":"HS256"}"#;

/// Why a token was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwtError {
    /// Not three base64url segments, or the claims are not JSON.
    #[error("malformed token")]
    Malformed,
    /// The HMAC does not match this key.
    #[error("bad signature")]
    BadSignature,
    /// `exp` is in the past.
    #[error("token expired")]
    Expired,
}

/// The registered claims iExec services use, serialized in jjwt's insertion order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Audience: the scheduler's application id, or the worker wallet for the result proxy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    /// Issued-at, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Expiry, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<u64>,
    /// Subject: the worker wallet for the scheduler, a random UUID for the result proxy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
}

/// A secret HMAC key; `Debug` never shows it.
#[derive(Clone)]
pub struct JwtKey(Box<[u8; KEY_LEN]>);

impl std::fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtKey(..)")
    }
}

impl JwtKey {
    /// A fresh key from the OS RNG, as both services do at start (so tokens die with the process).
    pub fn random() -> Self {
        let mut key = Box::new([0u8; KEY_LEN]);
        OsRng.fill_bytes(key.as_mut_slice());
        Self(key)
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC accepts keys of any length; the error branch cannot be reached.
        Hmac::<Sha256>::new_from_slice(self.0.as_slice()).unwrap_or_else(|_| unreachable!())
    }

    /// Signs `claims` into a compact token.
    pub fn sign(&self, claims: &Claims) -> String {
        let payload = serde_json::to_vec(claims).unwrap_or_default();
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(HEADER_JSON),
            URL_SAFE_NO_PAD.encode(payload)
        );
        let mut mac = self.mac();
        mac.update(signing_input.as_bytes());
        let tag = mac.finalize().into_bytes();
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(tag))
    }

    /// Checks the signature and expiry of `token` at `now` (Unix seconds) and returns its claims.
    ///
    /// Expiry follows RFC 7519 §4.1.4: a token is refused on or after `exp`.
    pub fn verify(&self, token: &str, now: u64) -> Result<Claims, JwtError> {
        let (signing_input, tag_b64) = token.rsplit_once('.').ok_or(JwtError::Malformed)?;
        let (header_b64, payload_b64) = signing_input.split_once('.').ok_or(JwtError::Malformed)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag_b64)
            .map_err(|_| JwtError::Malformed)?;
        let mut mac = self.mac();
        mac.update(signing_input.as_bytes());
        mac.verify_slice(&tag).map_err(|_| JwtError::BadSignature)?;
        let header = URL_SAFE_NO_PAD
            .decode(header_b64)
            .map_err(|_| JwtError::Malformed)?;
        let header: serde_json::Value =
            serde_json::from_slice(&header).map_err(|_| JwtError::Malformed)?;
        if header.get("alg").and_then(|alg| alg.as_str()) != Some("HS256") {
            return Err(JwtError::Malformed);
        }
        let payload = URL_SAFE_NO_PAD
            .decode(payload_b64)
            .map_err(|_| JwtError::Malformed)?;
        let claims: Claims = serde_json::from_slice(&payload).map_err(|_| JwtError::Malformed)?;
        match claims.exp {
            Some(exp) if now >= exp => Err(JwtError::Expired),
            _ => Ok(claims),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scheduler_claims() -> Claims {
        Claims {
            aud: Some("iExec Scheduler v9.3.0".into()),
            iat: Some(1_700_000_000),
            exp: Some(1_700_003_600),
            sub: Some("0x108ca59d5d0eec2ff66003f8909eb40addd1a67d".into()),
        }
    }

    #[test]
    fn header_and_claims_are_written_like_jjwt() {
        let token = JwtKey::random().sign(&scheduler_claims());
        let mut parts = token.split('.');
        let header = URL_SAFE_NO_PAD.decode(parts.next().unwrap()).unwrap();
        assert_eq!(header, br#"{"alg":"HS256"}"#);
        let payload = URL_SAFE_NO_PAD.decode(parts.next().unwrap()).unwrap();
        assert_eq!(
            String::from_utf8(payload).unwrap(),
            r#"{"aud":"iExec Scheduler v9.3.0","iat":1700000000,"exp":1700003600,"sub":"0x108ca59d5d0eec2ff66003f8909eb40addd1a67d"}"#
        );
        // HMAC-SHA256 tag: 32 bytes, 43 base64url characters without padding.
        assert_eq!(parts.next().unwrap().len(), 43);
    }

    #[test]
    fn signature_matches_an_independent_hmac_computation() {
        // RFC 4231 style check with a known key: rebuild the tag by hand and compare.
        let key = JwtKey(Box::new([0x0b; KEY_LEN]));
        let claims = Claims {
            aud: Some("a".into()),
            iat: None,
            exp: None,
            sub: None,
        };
        let token = key.sign(&claims);
        let (input, tag) = token.rsplit_once('.').unwrap();
        let mut mac = Hmac::<Sha256>::new_from_slice(&[0x0b; KEY_LEN]).unwrap();
        mac.update(input.as_bytes());
        assert_eq!(
            URL_SAFE_NO_PAD.decode(tag).unwrap(),
            mac.finalize().into_bytes().to_vec()
        );
        assert_eq!(input, "eyJhbGciOiJIUzI1NiJ9.eyJhdWQiOiJhIn0");
    }

    #[test]
    fn verify_round_trips_before_expiry() {
        let key = JwtKey::random();
        let token = key.sign(&scheduler_claims());
        assert_eq!(key.verify(&token, 1_700_003_599), Ok(scheduler_claims()));
    }

    #[test]
    fn verify_refuses_at_and_after_expiry() {
        let key = JwtKey::random();
        let token = key.sign(&scheduler_claims());
        assert_eq!(key.verify(&token, 1_700_003_600), Err(JwtError::Expired));
        assert_eq!(key.verify(&token, 1_800_000_000), Err(JwtError::Expired));
    }

    #[test]
    fn token_without_expiry_never_expires() {
        let key = JwtKey::random();
        let claims = Claims {
            aud: Some("0xabc".into()),
            iat: Some(1),
            exp: None,
            sub: Some("uuid".into()),
        };
        assert_eq!(key.verify(&key.sign(&claims), u64::MAX), Ok(claims));
    }

    #[test]
    fn another_key_or_a_tampered_payload_is_refused() {
        let token = JwtKey::random().sign(&scheduler_claims());
        assert_eq!(
            JwtKey::random().verify(&token, 0),
            Err(JwtError::BadSignature)
        );

        let key = JwtKey::random();
        let token = key.sign(&scheduler_claims());
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(r#"{"aud":"iExec Scheduler v9.3.0","sub":"0xevil"}"#);
        parts[1] = &forged;
        assert_eq!(key.verify(&parts.join("."), 0), Err(JwtError::BadSignature));
    }

    #[test]
    fn garbage_is_malformed() {
        let key = JwtKey::random();
        assert_eq!(key.verify("", 0), Err(JwtError::Malformed));
        assert_eq!(key.verify("a.b", 0), Err(JwtError::Malformed));
        assert_eq!(key.verify("a.b.!!!", 0), Err(JwtError::Malformed));
    }
}
