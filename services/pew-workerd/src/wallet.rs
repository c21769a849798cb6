//! The worker's wallet: a keystore v3 file and its password file on the data partition.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{Context, Result};
use pew_poco::Wallet;

use crate::config::WalletConfig;

/// Decrypts the keystore. Files that others can read are used, but reported: the key must stay
/// the node's (provisioning writes both with mode 0600).
pub fn load(config: &WalletConfig) -> Result<Wallet> {
    for path in [&config.keystore, &config.password_file] {
        warn_if_readable_by_others(path);
    }
    let keystore = std::fs::read_to_string(&config.keystore).with_context(|| {
        format!(
            "cannot read the wallet keystore {}",
            config.keystore.display()
        )
    })?;
    let password = std::fs::read_to_string(&config.password_file).with_context(|| {
        format!(
            "cannot read the wallet password file {}",
            config.password_file.display()
        )
    })?;
    // Editors and `echo` add a final newline that is not part of the password.
    let password = password.strip_suffix('\n').unwrap_or(&password);
    let password = password.strip_suffix('\r').unwrap_or(password);
    pew_poco::keystore::decrypt(&keystore, password)
        .with_context(|| format!("cannot open the wallet {}", config.keystore.display()))
}

fn warn_if_readable_by_others(path: &Path) {
    if let Ok(metadata) = std::fs::metadata(path) {
        let mode = metadata.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(
                "{} has mode {:o}; it should be 0600",
                path.display(),
                mode & 0o777
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_provisioned_wallet_opens_and_a_trailing_newline_is_not_the_password() {
        let dir = tempfile::tempdir().unwrap();
        let wallet = Wallet::random();
        let config = WalletConfig {
            keystore: dir.path().join("keystore.json"),
            password_file: dir.path().join("password"),
        };
        std::fs::write(
            &config.keystore,
            pew_poco::keystore::encrypt(&wallet, "s3cret", 4).unwrap(),
        )
        .unwrap();
        std::fs::write(&config.password_file, "s3cret\n").unwrap();
        assert_eq!(load(&config).unwrap().address(), wallet.address());

        std::fs::write(&config.password_file, "wrong\n").unwrap();
        let error = format!("{:#}", load(&config).unwrap_err());
        assert!(error.contains("keystore.json"), "{error}");
    }

    #[test]
    fn a_missing_keystore_names_the_file() {
        let config = WalletConfig {
            keystore: "/nonexistent/keystore.json".into(),
            password_file: "/nonexistent/password".into(),
        };
        let error = format!("{:#}", load(&config).unwrap_err());
        assert!(error.contains("/nonexistent/keystore.json"), "{error}");
    }
}
