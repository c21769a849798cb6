//! Worker authentication (iexec-core `ChallengeService`, `JwtTokenProvider`, the login check of
//! `WorkerController`).
//!
//! Wallets are the strings the worker sends, compared exactly, as upstream does: the login
//! address becomes the worker's identity everywhere (JWT subject, replicate owner, STOMP
//! recipient).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use pew_poco::Address;
use pew_poco::Signature65;
use rand_core::{OsRng, RngCore};

use crate::jwt::{Claims, JwtKey};

/// Per-wallet login challenges, each valid for a fixed time from its creation.
#[derive(Debug)]
pub(crate) struct ChallengeStore {
    ttl: Duration,
    /// Tests pin the challenge to replay upstream signature vectors.
    fixed: Option<String>,
    issued: HashMap<String, (String, Instant)>,
}

impl ChallengeStore {
    pub(crate) fn new(ttl: Duration, fixed: Option<String>) -> Self {
        Self {
            ttl,
            fixed,
            issued: HashMap::new(),
        }
    }

    /// The wallet's pending challenge, or a new one: base64 of 32 random bytes (44 characters).
    pub(crate) fn get_or_create(&mut self, wallet: &str, now: Instant) -> String {
        if let Some(fixed) = &self.fixed {
            return fixed.clone();
        }
        let ttl = self.ttl;
        self.issued
            .retain(|_, (_, created)| now.saturating_duration_since(*created) < ttl);
        let (challenge, _) = self
            .issued
            .entry(wallet.to_owned())
            .or_insert_with(|| (random_challenge(), now));
        challenge.clone()
    }

    /// Forgets the challenge once it has been used to log in.
    pub(crate) fn remove(&mut self, wallet: &str, challenge: &str) {
        if self
            .issued
            .get(wallet)
            .is_some_and(|(issued, _)| issued == challenge)
        {
            self.issued.remove(wallet);
        }
    }
}

fn random_challenge() -> String {
    let mut seed = [0u8; 32];
    OsRng.fill_bytes(&mut seed);
    STANDARD.encode(seed)
}

/// Whether `signature` over `challenge` comes from `wallet` (any recovery id, `v` ignored; the
/// address compared case-insensitively, as web3j's `equalsIgnoreCase`).
pub(crate) fn login_signature_matches(challenge: &str, signature: &str, wallet: &str) -> bool {
    let Ok(signature) = signature.parse::<Signature65>() else {
        return false;
    };
    let Some(address) = parse_address(wallet) else {
        return false;
    };
    pew_poco::challenge::login_signature_matches(challenge, &signature, address)
}

/// A `0x`-prefixed 40-digit hex address in any case; upstream compares `"0x" + recovered` with
/// the string, so anything else never matches.
pub(crate) fn parse_address(text: &str) -> Option<Address> {
    let digits = text.strip_prefix("0x")?;
    if digits.len() != 40 {
        return None;
    }
    digits.parse().ok()
}

/// The scheduler's JWTs: one per wallet, reused until presented after its expiry.
#[derive(Debug)]
pub(crate) struct SchedulerTokens {
    key: JwtKey,
    audience: String,
    ttl: Duration,
    issued: HashMap<String, String>,
}

impl SchedulerTokens {
    /// `audience` is `"iExec Scheduler v<version>"`.
    pub(crate) fn new(version: &str, ttl: Duration) -> Self {
        Self {
            key: JwtKey::random(),
            audience: format!("iExec Scheduler v{version}"),
            ttl,
            issued: HashMap::new(),
        }
    }

    /// The wallet's cached token, or a new one valid for the TTL from `now_secs`.
    ///
    /// Like upstream, a cached token is returned without checking it: an expired one is only
    /// purged when it is presented, so a worker may need a second login.
    pub(crate) fn get_or_create(&mut self, wallet: &str, now_secs: u64) -> String {
        let Self {
            key,
            audience,
            ttl,
            issued,
        } = self;
        issued
            .entry(wallet.to_owned())
            .or_insert_with(|| {
                key.sign(&Claims {
                    aud: Some(audience.clone()),
                    iat: Some(now_secs),
                    exp: Some(now_secs + ttl.as_secs()),
                    sub: Some(wallet.to_owned()),
                })
            })
            .clone()
    }

    /// The wallet named by an `Authorization: Bearer <jwt>` header, if the token is one this
    /// scheduler issued, unexpired, for its audience (`getWalletAddressFromBearerToken`).
    pub(crate) fn wallet_of_bearer(&mut self, header: &str, now_secs: u64) -> Option<String> {
        let token = header.strip_prefix("Bearer ")?;
        if !self.issued.values().any(|issued| issued == token) {
            return None;
        }
        match self.key.verify(token, now_secs) {
            Ok(claims) if claims.aud.as_deref() == Some(self.audience.as_str()) => claims.sub,
            Ok(_) => None,
            Err(crate::jwt::JwtError::Expired) => {
                self.issued.retain(|_, issued| issued != token);
                None
            }
            Err(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `WorkerControllerTests`: wallet, and the signatures of challenge `"challenge"`.
    const WALLET: &str = "0x108ca59d5d0eec2ff66003f8909eb40addd1a67d";
    const SIGN: &str = "0xf11e72d3a1d6e13c5187862cfa0342f135909f36c369e01f2392ad19daee781377328a1441ac993f518d7024aafed664508d8dadf42ebdd97394ebfeb5b837121c";
    const INVALID_SIGNATURE: &str = "0xab5861286e8ef54febad4e606d7e7f32bec8e017a909bfa54e95ad6a7d42dc3f1cab39bacff7aeb15514d41750a3d7da0b21759063c50db1a8ac378062977ba51b";

    #[test]
    fn upstream_login_vectors() {
        assert!(login_signature_matches("challenge", SIGN, WALLET));
        assert!(login_signature_matches(
            "challenge",
            SIGN,
            &WALLET.to_uppercase().replacen("0X", "0x", 1)
        ));
        assert!(!login_signature_matches(
            "challenge",
            INVALID_SIGNATURE,
            WALLET
        ));
        assert!(!login_signature_matches("another challenge", SIGN, WALLET));
    }

    #[test]
    fn v_is_ignored_by_the_login_check() {
        let flipped = format!("{}1b", &SIGN[..SIGN.len() - 2]);
        assert!(login_signature_matches("challenge", &flipped, WALLET));
    }

    #[test]
    fn malformed_inputs_never_match() {
        assert!(!login_signature_matches("challenge", "0x1234", WALLET));
        assert!(
            !login_signature_matches("challenge", SIGN, &WALLET[2..]),
            "no 0x prefix"
        );
        assert!(!login_signature_matches(
            "challenge",
            SIGN,
            "0xnot-an-address"
        ));
    }

    #[test]
    fn challenge_is_44_char_base64_stable_until_expiry_or_use() {
        let mut store = ChallengeStore::new(Duration::from_secs(300), None);
        let start = Instant::now();
        let first = store.get_or_create(WALLET, start);
        assert_eq!(first.len(), 44);
        assert_eq!(STANDARD.decode(&first).unwrap().len(), 32);
        assert_eq!(
            store.get_or_create(WALLET, start + Duration::from_secs(299)),
            first
        );
        assert_ne!(store.get_or_create("0xother", start), first, "per wallet");
        let renewed = store.get_or_create(WALLET, start + Duration::from_secs(300));
        assert_ne!(renewed, first, "expired 5 min after creation");
        store.remove(WALLET, &renewed);
        assert_ne!(
            store.get_or_create(WALLET, start + Duration::from_secs(301)),
            renewed,
            "used once"
        );
    }

    #[test]
    fn wallets_are_distinct_strings() {
        let mut store = ChallengeStore::new(Duration::from_secs(300), None);
        let now = Instant::now();
        let lower = store.get_or_create(WALLET, now);
        assert_ne!(store.get_or_create(&WALLET.to_uppercase(), now), lower);
    }

    #[test]
    fn fixed_challenge_is_always_returned() {
        let mut store = ChallengeStore::new(Duration::from_secs(300), Some("challenge".into()));
        assert_eq!(store.get_or_create(WALLET, Instant::now()), "challenge");
        store.remove(WALLET, "challenge");
        assert_eq!(store.get_or_create(WALLET, Instant::now()), "challenge");
    }

    #[test]
    fn token_is_cached_per_wallet_and_names_it() {
        let mut tokens = SchedulerTokens::new("9.3.0", Duration::from_secs(3600));
        let token = tokens.get_or_create(WALLET, 1_000);
        assert_eq!(tokens.get_or_create(WALLET, 2_000), token);
        assert_eq!(
            tokens
                .wallet_of_bearer(&format!("Bearer {token}"), 1_000)
                .as_deref(),
            Some(WALLET)
        );
        assert_eq!(
            tokens.wallet_of_bearer(&token, 1_000),
            None,
            "Bearer prefix required"
        );
    }

    #[test]
    fn expired_token_is_refused_then_replaced_at_next_login() {
        let mut tokens = SchedulerTokens::new("9.3.0", Duration::from_secs(3600));
        let token = tokens.get_or_create(WALLET, 1_000);
        // Still returned by a login before anyone presents it.
        assert_eq!(tokens.get_or_create(WALLET, 4_700), token);
        assert_eq!(
            tokens.wallet_of_bearer(&format!("Bearer {token}"), 4_600),
            None
        );
        let renewed = tokens.get_or_create(WALLET, 4_700);
        assert_ne!(renewed, token);
        assert!(
            tokens
                .wallet_of_bearer(&format!("Bearer {renewed}"), 4_700)
                .is_some()
        );
    }

    #[test]
    fn token_of_another_scheduler_instance_is_unknown() {
        let mut ours = SchedulerTokens::new("9.3.0", Duration::from_secs(3600));
        let mut theirs = SchedulerTokens::new("9.3.0", Duration::from_secs(3600));
        let foreign = theirs.get_or_create(WALLET, 1_000);
        assert_eq!(
            ours.wallet_of_bearer(&format!("Bearer {foreign}"), 1_000),
            None
        );
    }
}
