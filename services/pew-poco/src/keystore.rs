//! Web3 Secret Storage (keystore v3) files, the format of `iexec wallet create` (§4).
//!
//! Decryption accepts what geth, ethers and web3j write: scrypt or PBKDF2-HMAC-SHA256,
//! AES-128-CTR, the section named `crypto` or `Crypto`, unknown keys ignored. Encryption
//! writes the standard scrypt form.
//!
//! The password is used as its UTF-8 bytes. ethers NFKC-normalizes it first, which differs
//! only for non-ASCII passwords typed in a decomposed form.

use aes::Aes128;
use alloy_primitives::{Address, hex, keccak256};
use ctr::Ctr128BE;
use ctr::cipher::{KeyIvInit, StreamCipher};
use k256::elliptic_curve::subtle::ConstantTimeEq;
use k256::elliptic_curve::zeroize::Zeroizing;
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::Wallet;

/// The only cipher of the standard.
const CIPHER: &str = "aes-128-ctr";
/// Bytes of derived key the format uses: 16 for AES, 16 for the MAC.
const DERIVED_KEY_LEN: usize = 32;
/// scrypt's block size and parallelism for new files, as geth and ethers write them.
const SCRYPT_R: u32 = 8;
const SCRYPT_P: u32 = 1;
/// scrypt needs 128·r·N bytes of RAM. geth's standard file (N = 2^18, r = 8) needs exactly
/// this much; more would starve a 512 MB board, so a larger claim is refused, not attempted.
const MAX_SCRYPT_MEMORY: u64 = 256 * 1024 * 1024;
/// Each unit of scrypt parallelism repeats the whole computation on one core.
const MAX_SCRYPT_PARALLELISM: u32 = 16;
/// geth uses 262 144 rounds; a file asking for far more would keep the CPU busy for minutes.
const MAX_PBKDF2_ROUNDS: u32 = 10_000_000;

/// Why a keystore could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum KeystoreError {
    /// Not JSON, or a mandatory field is missing or of the wrong type (serde names it).
    #[error("keystore JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// Only version 3 exists in the wild.
    #[error("keystore version {0} is not supported, expected 3")]
    UnsupportedVersion(u64),
    /// Only AES-128-CTR is standard.
    #[error("cipher {0:?} is not supported, expected \"aes-128-ctr\"")]
    UnsupportedCipher(String),
    /// Only scrypt and PBKDF2 are standard.
    #[error("key derivation function {0:?} is not supported, expected \"scrypt\" or \"pbkdf2\"")]
    UnsupportedKdf(String),
    /// PBKDF2 is only defined with HMAC-SHA256.
    #[error("pbkdf2 prf {0:?} is not supported, expected \"hmac-sha256\"")]
    UnsupportedPrf(String),
    /// A field is present but its value is unusable.
    #[error("keystore field {field}: {reason}")]
    InvalidField { field: &'static str, reason: String },
    /// The MAC does not match: the password is wrong, or the file was altered.
    #[error("wrong password (keystore MAC mismatch)")]
    WrongPassword,
    /// The decrypted bytes are not a secp256k1 private key.
    #[error("the decrypted private key is invalid")]
    InvalidPrivateKey,
    /// The file names an address that its key does not have.
    #[error("keystore address {claimed} does not match its key's address {actual}")]
    AddressMismatch { claimed: String, actual: Address },
}

#[derive(Deserialize)]
struct KeystoreFile {
    version: u64,
    #[serde(alias = "Crypto")]
    crypto: CryptoSection,
    address: Option<String>,
}

#[derive(Deserialize)]
struct CryptoSection {
    cipher: String,
    cipherparams: CipherParams,
    ciphertext: String,
    kdf: String,
    kdfparams: serde_json::Value,
    mac: String,
}

#[derive(Deserialize, Serialize)]
struct CipherParams {
    iv: String,
}

#[derive(Deserialize, Serialize)]
struct ScryptParams {
    dklen: usize,
    n: u64,
    p: u32,
    r: u32,
    salt: String,
}

#[derive(Deserialize)]
struct Pbkdf2Params {
    c: u32,
    dklen: usize,
    prf: String,
    salt: String,
}

/// The key derivation a file asks for, validated.
enum Kdf {
    Scrypt {
        params: scrypt::Params,
        salt: Vec<u8>,
    },
    Pbkdf2 {
        rounds: u32,
        salt: Vec<u8>,
    },
}

impl Kdf {
    fn from_section(kdf: &str, params: serde_json::Value) -> Result<Self, KeystoreError> {
        let invalid = |error: serde_json::Error| KeystoreError::InvalidField {
            field: "crypto.kdfparams",
            reason: error.to_string(),
        };
        match kdf {
            "scrypt" => {
                let params: ScryptParams = serde_json::from_value(params).map_err(invalid)?;
                check_derived_key_len(params.dklen)?;
                if !params.n.is_power_of_two() || params.n < 2 {
                    return Err(KeystoreError::InvalidField {
                        field: "crypto.kdfparams.n",
                        reason: format!("{} is not a power of two above 1", params.n),
                    });
                }
                let log_n = params.n.trailing_zeros() as u8;
                Ok(Kdf::Scrypt {
                    params: scrypt_params(log_n, params.r, params.p)?,
                    salt: decode_hex("crypto.kdfparams.salt", &params.salt)?,
                })
            }
            "pbkdf2" => {
                let params: Pbkdf2Params = serde_json::from_value(params).map_err(invalid)?;
                check_derived_key_len(params.dklen)?;
                if params.prf != "hmac-sha256" {
                    return Err(KeystoreError::UnsupportedPrf(params.prf));
                }
                if params.c == 0 || params.c > MAX_PBKDF2_ROUNDS {
                    return Err(KeystoreError::InvalidField {
                        field: "crypto.kdfparams.c",
                        reason: format!("{} rounds, expected 1 to {MAX_PBKDF2_ROUNDS}", params.c),
                    });
                }
                Ok(Kdf::Pbkdf2 {
                    rounds: params.c,
                    salt: decode_hex("crypto.kdfparams.salt", &params.salt)?,
                })
            }
            other => Err(KeystoreError::UnsupportedKdf(other.to_owned())),
        }
    }

    /// The first 32 bytes of the derived key. Both KDFs end in PBKDF2, whose output is a
    /// prefix-stable stream, so a file with `dklen` > 32 yields the same first 32 bytes.
    fn derive(&self, password: &str) -> Zeroizing<[u8; DERIVED_KEY_LEN]> {
        let mut key = Zeroizing::new([0; DERIVED_KEY_LEN]);
        match self {
            Kdf::Scrypt { params, salt } => {
                // The output length is fixed and non-zero, the only condition scrypt checks.
                scrypt::scrypt(password.as_bytes(), salt, params, key.as_mut_slice())
                    .expect("a 32-byte scrypt output is always valid");
            }
            Kdf::Pbkdf2 { rounds, salt } => {
                pbkdf2::pbkdf2_hmac::<Sha256>(
                    password.as_bytes(),
                    salt,
                    *rounds,
                    key.as_mut_slice(),
                );
            }
        }
        key
    }
}

fn check_derived_key_len(dklen: usize) -> Result<(), KeystoreError> {
    if dklen < DERIVED_KEY_LEN {
        return Err(KeystoreError::InvalidField {
            field: "crypto.kdfparams.dklen",
            reason: format!("{dklen} bytes, at least {DERIVED_KEY_LEN} needed"),
        });
    }
    Ok(())
}

/// scrypt parameters within this board's means.
fn scrypt_params(log_n: u8, r: u32, p: u32) -> Result<scrypt::Params, KeystoreError> {
    if log_n == 0 {
        return Err(KeystoreError::InvalidField {
            field: "crypto.kdfparams.n",
            reason: "n = 1 gives no protection".to_owned(),
        });
    }
    let memory = (128 * u128::from(r)) << log_n;
    if memory > u128::from(MAX_SCRYPT_MEMORY) {
        return Err(KeystoreError::InvalidField {
            field: "crypto.kdfparams.n",
            reason: format!(
                "scrypt with n = 2^{log_n}, r = {r} needs {} MiB, more than the {} MiB allowed",
                memory >> 20,
                MAX_SCRYPT_MEMORY >> 20
            ),
        });
    }
    if p > MAX_SCRYPT_PARALLELISM {
        return Err(KeystoreError::InvalidField {
            field: "crypto.kdfparams.p",
            reason: format!("{p}, at most {MAX_SCRYPT_PARALLELISM} allowed"),
        });
    }
    // RFC 7914 requires n < 2^(128·r/8). geth and ethers do not enforce it (the Web3 Secret
    // Storage definition's own scrypt vector, n = 2^18 with r = 1, breaks it), but the scrypt
    // crate does; no wallet tool writes such files, so they are refused with the reason.
    if u32::from(log_n) >= 16 * r {
        return Err(KeystoreError::InvalidField {
            field: "crypto.kdfparams.n",
            reason: format!("n = 2^{log_n} with r = {r} is outside RFC 7914 (n < 2^(16·r))"),
        });
    }
    scrypt::Params::new(log_n, r, p, DERIVED_KEY_LEN).map_err(|error| KeystoreError::InvalidField {
        field: "crypto.kdfparams",
        reason: format!("n = 2^{log_n}, r = {r}, p = {p}: {error}"),
    })
}

fn decode_hex(field: &'static str, text: &str) -> Result<Vec<u8>, KeystoreError> {
    hex::decode(text).map_err(|error| KeystoreError::InvalidField {
        field,
        reason: error.to_string(),
    })
}

fn decode_hex_array<const N: usize>(
    field: &'static str,
    text: &str,
) -> Result<[u8; N], KeystoreError> {
    let bytes = decode_hex(field, text)?;
    bytes
        .as_slice()
        .try_into()
        .map_err(|_| KeystoreError::InvalidField {
            field,
            reason: format!("{} bytes, expected {N}", bytes.len()),
        })
}

/// `keccak(derivedKey[16..32] ‖ ciphertext)`, the file's password check.
fn mac(derived_key: &[u8; DERIVED_KEY_LEN], ciphertext: &[u8]) -> [u8; 32] {
    keccak256([&derived_key[16..], ciphertext].concat()).0
}

/// AES-128-CTR with the first half of the derived key; encryption and decryption are the same.
fn apply_cipher(derived_key: &[u8; DERIVED_KEY_LEN], iv: &[u8; 16], data: &mut [u8]) {
    let key: &[u8; 16] = derived_key[..16].try_into().expect("16 of 32 bytes");
    Ctr128BE::<Aes128>::new(key.into(), iv.into()).apply_keystream(data);
}

/// Opens a keystore v3 file with its password.
///
/// The KDF runs only after every field has been checked, so a malformed file fails fast.
pub fn decrypt(json: &str, password: &str) -> Result<Wallet, KeystoreError> {
    let file: KeystoreFile = serde_json::from_str(json)?;
    if file.version != 3 {
        return Err(KeystoreError::UnsupportedVersion(file.version));
    }
    let crypto = file.crypto;
    if crypto.cipher != CIPHER {
        return Err(KeystoreError::UnsupportedCipher(crypto.cipher));
    }
    let kdf = Kdf::from_section(&crypto.kdf, crypto.kdfparams)?;
    let iv: [u8; 16] = decode_hex_array("crypto.cipherparams.iv", &crypto.cipherparams.iv)?;
    let mut plaintext: Zeroizing<[u8; 32]> =
        Zeroizing::new(decode_hex_array("crypto.ciphertext", &crypto.ciphertext)?);
    let expected_mac: [u8; 32] = decode_hex_array("crypto.mac", &crypto.mac)?;

    let derived_key = kdf.derive(password);
    // Constant time, so the comparison leaks nothing about how close a guess was.
    if !bool::from(mac(&derived_key, plaintext.as_slice()).ct_eq(&expected_mac)) {
        return Err(KeystoreError::WrongPassword);
    }
    apply_cipher(&derived_key, &iv, plaintext.as_mut_slice());
    let wallet =
        Wallet::from_private_key(&plaintext).map_err(|_| KeystoreError::InvalidPrivateKey)?;

    if let Some(claimed) = file.address {
        let matches = claimed
            .parse::<Address>()
            .or_else(|_| format!("0x{claimed}").parse::<Address>())
            .is_ok_and(|address| address == wallet.address());
        if !matches {
            return Err(KeystoreError::AddressMismatch {
                claimed,
                actual: wallet.address(),
            });
        }
    }
    Ok(wallet)
}

#[derive(Serialize)]
struct NewKeystore {
    address: String,
    id: String,
    version: u8,
    crypto: NewCrypto,
}

#[derive(Serialize)]
struct NewCrypto {
    cipher: &'static str,
    cipherparams: CipherParams,
    ciphertext: String,
    kdf: &'static str,
    kdfparams: ScryptParams,
    mac: String,
}

/// Writes `wallet` as a keystore v3 file: scrypt with N = 2^`scrypt_log_n`, r = 8, p = 1,
/// a random 32-byte salt and 16-byte IV, a random UUID v4 id and the lowercase address
/// without `0x`. `iexec wallet create` uses `scrypt_log_n` = 17; tests use small values.
///
/// Fails only if the parameters would make a file this crate refuses to open.
pub fn encrypt(wallet: &Wallet, password: &str, scrypt_log_n: u8) -> Result<String, KeystoreError> {
    let params = scrypt_params(scrypt_log_n, SCRYPT_R, SCRYPT_P)?;
    let mut salt = [0; 32];
    let mut iv = [0; 16];
    OsRng.fill_bytes(&mut salt);
    OsRng.fill_bytes(&mut iv);

    let derived_key = Kdf::Scrypt {
        params,
        salt: salt.to_vec(),
    }
    .derive(password);
    let mut ciphertext = Zeroizing::new(wallet.private_key_bytes());
    apply_cipher(&derived_key, &iv, ciphertext.as_mut_slice());

    let file = NewKeystore {
        address: hex::encode(wallet.address()),
        id: random_uuid_v4(),
        version: 3,
        crypto: NewCrypto {
            cipher: CIPHER,
            cipherparams: CipherParams {
                iv: hex::encode(iv),
            },
            ciphertext: hex::encode(ciphertext.as_slice()),
            kdf: "scrypt",
            kdfparams: ScryptParams {
                dklen: DERIVED_KEY_LEN,
                n: 1 << scrypt_log_n,
                p: SCRYPT_P,
                r: SCRYPT_R,
                salt: hex::encode(salt),
            },
            mac: hex::encode(mac(&derived_key, ciphertext.as_slice())),
        },
    };
    Ok(serde_json::to_string(&file)?)
}

/// A random (version 4, RFC 4122 variant) UUID in its 8-4-4-4-12 form.
fn random_uuid_v4() -> String {
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = hex::encode(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{WORKER_KEY, private_key};

    const SPEC_PRIVATE_KEY: &str =
        "0x7a28b5ba57c53603b0b07b56bba752f7784bf506fa95edc395f5cf6c7514fe9d";

    /// The PBKDF2 test vector of the Web3 Secret Storage definition (password "testpassword").
    const SPEC_PBKDF2: &str = r#"{
        "crypto" : {
            "cipher" : "aes-128-ctr",
            "cipherparams" : { "iv" : "6087dab2f9fdbbfaddc31a909735c1e6" },
            "ciphertext" : "5318b4d5bcd28de64ee5559e671353e16f075ecae9f99c7a79a38af5f869aa46",
            "kdf" : "pbkdf2",
            "kdfparams" : {
                "c" : 262144,
                "dklen" : 32,
                "prf" : "hmac-sha256",
                "salt" : "ae3cd4e7013836a3df6bd7241b12db061dbe2c6785853cce422d148a624ce0bd"
            },
            "mac" : "517ead924a9d0dc3124507e3393d175ce3ff7c1e96529c6c555ce9e51205e9b2"
        },
        "id" : "3198bc9c-6672-5ab3-d995-4942343ae5b6",
        "version" : 3
    }"#;

    /// The scrypt test vector of the same definition.
    const SPEC_SCRYPT: &str = r#"{
        "crypto" : {
            "cipher" : "aes-128-ctr",
            "cipherparams" : { "iv" : "83dbcc02d8ccb40e466191a123791e0e" },
            "ciphertext" : "d172bf743a674da9cdad04534d56926ef8358534d458fffccd4e6ad2fbde479c",
            "kdf" : "scrypt",
            "kdfparams" : {
                "dklen" : 32,
                "n" : 262144,
                "p" : 8,
                "r" : 1,
                "salt" : "ab0c7876052600dd703518d6fc3fe8984592145b591fc8fb5c6d43190334ba19"
            },
            "mac" : "2103ac29920d71da29f15d75b4a16dbe95cfd7ff8faea1056c33131d846e3097"
        },
        "id" : "3198bc9c-6672-5ab3-d995-4942343ae5b6",
        "version" : 3
    }"#;

    /// iexec-worker's `encrypted-wallet_worker1.json` (password "whatever"): the exact shape
    /// `iexec wallet create` writes, capitalized `Crypto`, scrypt n = 2^17, r = 8.
    const IEXEC_WORKER1: &str = r#"{
        "address": "1a69b2eb604db8eba185df03ea4f5288dcbbd248",
        "id": "9428da60-eafb-4771-a64b-fac009946bba",
        "version": 3,
        "Crypto": {
            "cipher": "aes-128-ctr",
            "cipherparams": { "iv": "924d817ab4f4f8786c6ca6c563af4102" },
            "ciphertext": "0a26992572e1cad527eca658f99f79e0a9efc784144fc0524a1279a971828a43",
            "kdf": "scrypt",
            "kdfparams": {
                "salt": "a59ab4d6069b677bb71473c14cd58f7af0e778f10eba6ac2d24804d2e167ffb5",
                "n": 131072,
                "dklen": 32,
                "p": 1,
                "r": 8
            },
            "mac": "0155cebb27cd4818e8348afd1c4d84eb77303101ea0ef684ec179041fbb5fed1"
        }
    }"#;

    fn field_error(error: KeystoreError) -> &'static str {
        match error {
            KeystoreError::InvalidField { field, .. } => field,
            other => panic!("expected an invalid field, got {other:?}"),
        }
    }

    fn edit(json: &str, edit: impl FnOnce(&mut serde_json::Value)) -> String {
        let mut value: serde_json::Value = serde_json::from_str(json).unwrap();
        edit(&mut value);
        value.to_string()
    }

    /// A cheap keystore of the worker key (N = 2^4) for the error cases.
    fn small_keystore() -> String {
        let wallet = Wallet::from_private_key(&private_key(WORKER_KEY)).unwrap();
        encrypt(&wallet, "whatever", 4).unwrap()
    }

    #[test]
    fn spec_pbkdf2_vector_decrypts() {
        let wallet = decrypt(SPEC_PBKDF2, "testpassword").unwrap();
        assert_eq!(wallet.private_key_bytes(), private_key(SPEC_PRIVATE_KEY));
    }

    #[test]
    fn spec_scrypt_vector_is_refused_for_breaking_rfc_7914() {
        let error = decrypt(SPEC_SCRYPT, "testpassword").unwrap_err();
        assert_eq!(field_error(error), "crypto.kdfparams.n");
    }

    #[test]
    fn iexec_worker_keystore_decrypts_with_scrypt() {
        let wallet = decrypt(IEXEC_WORKER1, "whatever").unwrap();
        assert_eq!(
            wallet.address(),
            crate::test_support::address("0x1a69b2eb604db8eba185df03ea4f5288dcbbd248")
        );
    }

    #[test]
    fn spec_vector_with_a_wrong_password_is_refused() {
        assert!(matches!(
            decrypt(SPEC_PBKDF2, "testpassworD"),
            Err(KeystoreError::WrongPassword)
        ));
    }

    #[test]
    fn round_trip_with_a_small_scrypt_cost() {
        let wallet = Wallet::random();
        let json = encrypt(&wallet, "correct horse", 4).unwrap();
        let opened = decrypt(&json, "correct horse").unwrap();
        assert_eq!(opened.address(), wallet.address());
        assert_eq!(opened.private_key_bytes(), wallet.private_key_bytes());
    }

    #[test]
    fn encrypted_file_has_the_standard_shape() {
        let wallet = Wallet::from_private_key(&private_key(WORKER_KEY)).unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&encrypt(&wallet, "pw", 5).unwrap()).unwrap();
        assert_eq!(json["address"], "d154ef7ed41a66d8d1d01227388b2f904c436d70");
        assert_eq!(json["version"], 3);
        assert_eq!(json["crypto"]["cipher"], "aes-128-ctr");
        assert_eq!(json["crypto"]["kdf"], "scrypt");
        assert_eq!(json["crypto"]["kdfparams"]["n"], 32);
        assert_eq!(json["crypto"]["kdfparams"]["r"], 8);
        assert_eq!(json["crypto"]["kdfparams"]["p"], 1);
        assert_eq!(json["crypto"]["kdfparams"]["dklen"], 32);
        assert_eq!(
            json["crypto"]["kdfparams"]["salt"].as_str().unwrap().len(),
            64
        );
        assert_eq!(
            json["crypto"]["cipherparams"]["iv"].as_str().unwrap().len(),
            32
        );
        let id = json["id"].as_str().unwrap();
        assert_eq!(id.len(), 36);
        assert_eq!(id.as_bytes()[14], b'4', "uuid version 4: {id}");
        assert!(
            matches!(id.as_bytes()[19], b'8' | b'9' | b'a' | b'b'),
            "RFC 4122 variant: {id}"
        );
    }

    #[test]
    fn two_encryptions_use_fresh_salt_and_iv() {
        let wallet = Wallet::random();
        let first: serde_json::Value =
            serde_json::from_str(&encrypt(&wallet, "pw", 4).unwrap()).unwrap();
        let second: serde_json::Value =
            serde_json::from_str(&encrypt(&wallet, "pw", 4).unwrap()).unwrap();
        assert_ne!(
            first["crypto"]["kdfparams"]["salt"],
            second["crypto"]["kdfparams"]["salt"]
        );
        assert_ne!(
            first["crypto"]["cipherparams"]["iv"],
            second["crypto"]["cipherparams"]["iv"]
        );
        assert_ne!(
            first["crypto"]["ciphertext"],
            second["crypto"]["ciphertext"]
        );
        assert_ne!(first["id"], second["id"]);
    }

    #[test]
    fn capitalized_crypto_and_unknown_keys_are_accepted() {
        let json = edit(&small_keystore(), |value| {
            let crypto = value.as_object_mut().unwrap().remove("crypto").unwrap();
            value["Crypto"] = crypto;
            value["x-ethers"] = serde_json::json!({ "client": "ethers" });
            value["Crypto"]["kdfparams"]["extra"] = serde_json::json!(1);
            value["address"] = serde_json::json!("0xD154EF7ED41A66D8D1D01227388B2F904C436D70");
        });
        assert_eq!(
            decrypt(&json, "whatever")
                .unwrap()
                .address()
                .to_string()
                .to_lowercase(),
            "0xd154ef7ed41a66d8d1d01227388b2f904c436d70"
        );
    }

    #[test]
    fn wrong_password_is_its_own_error() {
        let error = decrypt(&small_keystore(), "whatever ").unwrap_err();
        assert!(matches!(error, KeystoreError::WrongPassword), "{error:?}");
        assert!(error.to_string().contains("wrong password"));
    }

    #[test]
    fn corrupted_mac_or_ciphertext_is_detected() {
        let json = small_keystore();
        let flip_first_digit = |text: &str| {
            let replacement = if text.starts_with('0') { "1" } else { "0" };
            format!("{replacement}{}", &text[1..])
        };
        for field in ["mac", "ciphertext"] {
            let corrupted = edit(&json, |value| {
                let old = value["crypto"][field].as_str().unwrap().to_owned();
                value["crypto"][field] = flip_first_digit(&old).into();
            });
            assert!(
                matches!(
                    decrypt(&corrupted, "whatever"),
                    Err(KeystoreError::WrongPassword)
                ),
                "{field}"
            );
        }
    }

    #[test]
    fn unsupported_cipher_kdf_prf_and_version_are_named() {
        let json = small_keystore();
        let cbc = edit(&json, |value| {
            value["crypto"]["cipher"] = "aes-128-cbc".into()
        });
        assert!(
            matches!(decrypt(&cbc, "whatever"), Err(KeystoreError::UnsupportedCipher(c)) if c == "aes-128-cbc")
        );
        let argon = edit(&json, |value| value["crypto"]["kdf"] = "argon2".into());
        assert!(
            matches!(decrypt(&argon, "whatever"), Err(KeystoreError::UnsupportedKdf(k)) if k == "argon2")
        );
        let v2 = edit(&json, |value| value["version"] = 2.into());
        assert!(matches!(
            decrypt(&v2, "whatever"),
            Err(KeystoreError::UnsupportedVersion(2))
        ));
        let sha512 = edit(SPEC_PBKDF2, |value| {
            value["crypto"]["kdfparams"]["prf"] = "hmac-sha512".into()
        });
        assert!(
            matches!(decrypt(&sha512, "testpassword"), Err(KeystoreError::UnsupportedPrf(p)) if p == "hmac-sha512")
        );
    }

    #[test]
    fn bad_fields_are_named_in_the_error() {
        let json = small_keystore();
        let short_iv = edit(&json, |value| {
            value["crypto"]["cipherparams"]["iv"] = "00ff".into()
        });
        assert_eq!(
            field_error(decrypt(&short_iv, "whatever").unwrap_err()),
            "crypto.cipherparams.iv"
        );
        let bad_salt = edit(&json, |value| {
            value["crypto"]["kdfparams"]["salt"] = "xyz".into()
        });
        assert_eq!(
            field_error(decrypt(&bad_salt, "whatever").unwrap_err()),
            "crypto.kdfparams.salt"
        );
        let odd_n = edit(&json, |value| {
            value["crypto"]["kdfparams"]["n"] = 1000.into()
        });
        assert_eq!(
            field_error(decrypt(&odd_n, "whatever").unwrap_err()),
            "crypto.kdfparams.n"
        );
        let huge_n = edit(&json, |value| {
            value["crypto"]["kdfparams"]["n"] = (1u64 << 20).into()
        });
        assert_eq!(
            field_error(decrypt(&huge_n, "whatever").unwrap_err()),
            "crypto.kdfparams.n"
        );
        let short_dk = edit(&json, |value| {
            value["crypto"]["kdfparams"]["dklen"] = 16.into()
        });
        assert_eq!(
            field_error(decrypt(&short_dk, "whatever").unwrap_err()),
            "crypto.kdfparams.dklen"
        );
        let no_salt = edit(&json, |value| {
            value["crypto"]["kdfparams"]
                .as_object_mut()
                .unwrap()
                .remove("salt");
        });
        let error = decrypt(&no_salt, "whatever").unwrap_err();
        assert!(error.to_string().contains("salt"), "{error}");

        let no_mac = edit(&json, |value| {
            value["crypto"].as_object_mut().unwrap().remove("mac");
        });
        let error = decrypt(&no_mac, "whatever").unwrap_err();
        assert!(
            matches!(error, KeystoreError::Json(_)) && error.to_string().contains("mac"),
            "{error}"
        );
        assert!(matches!(
            decrypt("not json", "x"),
            Err(KeystoreError::Json(_))
        ));
    }

    #[test]
    fn a_foreign_address_is_refused() {
        let json = edit(&small_keystore(), |value| {
            value["address"] = "2d29bfbec903479fe4ba991918bab99b494f2bef".into();
        });
        assert!(matches!(
            decrypt(&json, "whatever"),
            Err(KeystoreError::AddressMismatch { .. })
        ));
    }

    #[test]
    fn encrypt_refuses_a_cost_decrypt_would_refuse() {
        let wallet = Wallet::random();
        assert_eq!(
            field_error(encrypt(&wallet, "pw", 19).unwrap_err()),
            "crypto.kdfparams.n"
        );
        assert_eq!(
            field_error(encrypt(&wallet, "pw", 0).unwrap_err()),
            "crypto.kdfparams.n"
        );
    }

    #[test]
    fn debug_of_the_error_never_contains_the_password() {
        let error = decrypt(&small_keystore(), "hunter2-secret").unwrap_err();
        assert!(!format!("{error:?} {error}").contains("hunter2"));
    }
}
