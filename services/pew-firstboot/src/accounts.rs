//! Users and groups by name, from `/etc/passwd` and `/etc/group` of the root filesystem.
//!
//! The image's accounts are all local (created by packages and sysusers.d at build time, on a
//! read-only root), so these two files are the whole truth and no NSS lookup is needed; reading
//! them under a root directory lets tests map names to their own ids.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// Why an account could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} line {line} is not `name:password:id:…`", path.display())]
    Malformed { path: PathBuf, line: usize },
    #[error("no user {0:?} in /etc/passwd")]
    UnknownUser(String),
    #[error("no group {0:?} in /etc/group")]
    UnknownGroup(String),
}

/// Numeric ids by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accounts {
    users: BTreeMap<String, u32>,
    groups: BTreeMap<String, u32>,
}

impl Accounts {
    /// Reads `<root>/etc/passwd` and `<root>/etc/group`.
    pub fn load(root: &Path) -> Result<Self, AccountsError> {
        Ok(Self {
            users: read_ids(&root.join("etc/passwd"))?,
            groups: read_ids(&root.join("etc/group"))?,
        })
    }

    pub fn uid(&self, user: &str) -> Result<u32, AccountsError> {
        self.users
            .get(user)
            .copied()
            .ok_or_else(|| AccountsError::UnknownUser(user.to_owned()))
    }

    pub fn gid(&self, group: &str) -> Result<u32, AccountsError> {
        self.groups
            .get(group)
            .copied()
            .ok_or_else(|| AccountsError::UnknownGroup(group.to_owned()))
    }
}

fn read_ids(path: &Path) -> Result<BTreeMap<String, u32>, AccountsError> {
    let text = fs::read_to_string(path).map_err(|source| AccountsError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_ids(&text).map_err(|line| AccountsError::Malformed {
        path: path.to_owned(),
        line,
    })
}

/// Name and id (the first and third fields) of every entry; passwd and group share that
/// shape. Returns the 1-based number of the first line that is not an entry.
fn parse_ids(text: &str) -> Result<BTreeMap<String, u32>, usize> {
    let mut ids = BTreeMap::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let mut fields = line.split(':');
        let (Some(name), Some(_password), Some(id)) = (fields.next(), fields.next(), fields.next())
        else {
            return Err(index + 1);
        };
        let id = id.parse().map_err(|_| index + 1)?;
        if name.is_empty() {
            return Err(index + 1);
        }
        // The first entry of a name wins, as in glibc's files backend.
        ids.entry(name.to_owned()).or_insert(id);
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
sshd:x:100:65534::/run/sshd:/usr/sbin/nologin
root:x:4242:0:shadowed duplicate:/:/bin/false
";
    const GROUP: &str = "root:x:0:\n\npew:x:998:alice,bob\n";

    fn accounts() -> Accounts {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("etc")).unwrap();
        fs::write(dir.path().join("etc/passwd"), PASSWD).unwrap();
        fs::write(dir.path().join("etc/group"), GROUP).unwrap();
        Accounts::load(dir.path()).unwrap()
    }

    #[test]
    fn names_resolve_to_their_ids_and_the_first_entry_wins() {
        let accounts = accounts();
        assert_eq!(accounts.uid("root").unwrap(), 0);
        assert_eq!(accounts.uid("sshd").unwrap(), 100);
        assert_eq!(accounts.gid("pew").unwrap(), 998);
    }

    #[test]
    fn unknown_names_are_errors_naming_them() {
        let accounts = accounts();
        assert_eq!(
            accounts.uid("pew").unwrap_err().to_string(),
            "no user \"pew\" in /etc/passwd"
        );
        assert!(matches!(
            accounts.gid("sshd"),
            Err(AccountsError::UnknownGroup(name)) if name == "sshd"
        ));
    }

    #[test]
    fn a_malformed_line_is_reported_by_number() {
        assert_eq!(parse_ids("root:x:0:0\nbroken\n"), Err(2));
        assert_eq!(parse_ids("root:x:zero:0\n"), Err(1));
        assert_eq!(parse_ids(":x:7:\n"), Err(1));
    }

    #[test]
    fn missing_files_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let error = Accounts::load(dir.path()).unwrap_err();
        assert!(error.to_string().contains("etc/passwd"), "{error}");
    }
}
