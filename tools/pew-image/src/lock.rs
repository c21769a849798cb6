//! The package lock: the exact Debian packages an image is built from.
//!
//! deb.debian.org keeps only the current version of each package and snapshot.debian.org is
//! unreachable from our builders (image.md §7.3), so the `.deb` files themselves are a build
//! input, kept in a local cache (and published with each release) and checked against this
//! file. One line per package, sorted by name then architecture, fields separated by one space:
//!
//! ```text
//! # name version architecture suite sha256 filename
//! base-files 13.8+deb13u1 arm64 trixie 0f6c…e1 base-files_13.8+deb13u1_arm64.deb
//! ```
//!
//! One line per package diffs well: an update shows exactly the packages that changed. The
//! same name may appear for two architectures (the image is arm64, the pinned tools tree is the
//! build host's). The suite says where the version came from (`trixie`, `trixie-updates`,
//! `trixie-security`); locks written before suites were recorded have five fields and are read
//! with the suite unknown. The filename is stored rather than derived because apt escapes
//! epochs (`1%3a2.3`) in cache names.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use crate::digest::{DigestError, Sha256Digest};

const HEADER: &str = "# pew package lock: written by `cargo xtask image --update-lock`; change the recipe, not this file.\n\
                      # name version architecture suite sha256 filename\n";

/// One locked package.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct LockedPackage {
    pub name: String,
    pub version: String,
    pub architecture: String,
    /// The archive suite the version was resolved from; `None` in a lock from before suites
    /// were recorded.
    pub suite: Option<String>,
    pub sha256: Sha256Digest,
    /// The `.deb` file name in the package cache.
    pub filename: String,
}

/// What is wrong with one entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error(
        "expected 6 fields (name version architecture suite sha256 filename), or 5 without the suite, got {0}"
    )]
    FieldCount(usize),
    #[error("suite {0:?} is not a Debian suite name")]
    Suite(String),
    #[error(
        "package name {0:?} is not a Debian package name (lowercase letters, digits, + - ., at least 2)"
    )]
    Name(String),
    #[error("version {version:?}: {reason}")]
    Version {
        version: String,
        reason: &'static str,
    },
    #[error("architecture {0:?} is not a Debian architecture name")]
    Architecture(String),
    #[error("sha256: {0}")]
    Sha256(#[from] DigestError),
    #[error("file name {0:?} must be a plain `.deb` file name")]
    Filename(String),
}

/// Why a lock cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LockError {
    #[error("line {line}: {problem}")]
    Entry { line: usize, problem: EntryError },
    #[error("line {line}: {package} is already locked on line {first_line}")]
    DuplicateLine {
        line: usize,
        first_line: usize,
        package: String,
    },
    #[error("{0} is listed twice")]
    Duplicate(String),
    #[error("{filename}: sha256 is {actual}, the lock says {expected}")]
    Mismatch {
        filename: String,
        expected: Sha256Digest,
        actual: Sha256Digest,
    },
}

impl LockedPackage {
    /// Checks every field; a lock only ever holds validated entries.
    pub fn new(
        name: &str,
        version: &str,
        architecture: &str,
        suite: Option<&str>,
        sha256: &str,
        filename: &str,
    ) -> Result<Self, EntryError> {
        check_name(name)?;
        if let Some(suite) = suite.filter(|suite| !is_suite_name(suite)) {
            return Err(EntryError::Suite(suite.to_owned()));
        }
        check_version(version)?;
        if architecture.is_empty()
            || !architecture
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(EntryError::Architecture(architecture.to_owned()));
        }
        let sha256 = sha256.parse()?;
        if !filename.ends_with(".deb")
            || filename.starts_with('.')
            || filename.contains(['/', '\\'])
            || filename.contains(char::is_whitespace)
        {
            return Err(EntryError::Filename(filename.to_owned()));
        }
        Ok(Self {
            name: name.to_owned(),
            version: version.to_owned(),
            architecture: architecture.to_owned(),
            suite: suite.map(str::to_owned),
            sha256,
            filename: filename.to_owned(),
        })
    }

    /// The same package version from the same file: what a rebuild needs, wherever the lock
    /// says it came from.
    pub fn same_file(&self, other: &LockedPackage) -> bool {
        self.name == other.name
            && self.version == other.version
            && self.architecture == other.architecture
            && self.sha256 == other.sha256
    }

    /// `name:architecture`, as dpkg and apt name a package of one architecture.
    pub fn qualified_name(&self) -> String {
        format!("{}:{}", self.name, self.architecture)
    }

    /// Checks a cached or downloaded `.deb` against the lock.
    pub fn verify(&self, actual: Sha256Digest) -> Result<(), LockError> {
        if actual == self.sha256 {
            return Ok(());
        }
        Err(LockError::Mismatch {
            filename: self.filename.clone(),
            expected: self.sha256,
            actual,
        })
    }

    fn sort_key(&self) -> (&str, &str) {
        (&self.name, &self.architecture)
    }
}

impl fmt::Display for LockedPackage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.name, self.version, self.architecture)?;
        if let Some(suite) = &self.suite {
            write!(f, " {suite}")?;
        }
        write!(f, " {} {}", self.sha256, self.filename)
    }
}

/// Debian policy §5.6.7 package names.
pub(crate) fn check_name(name: &str) -> Result<(), EntryError> {
    let bytes = name.as_bytes();
    let allowed =
        |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.');
    let valid = bytes.len() >= 2
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes.iter().all(allowed);
    if valid {
        Ok(())
    } else {
        Err(EntryError::Name(name.to_owned()))
    }
}

/// `trixie`, `trixie-security`, `bookworm-backports`: lowercase letters, digits and dashes.
pub fn is_suite_name(suite: &str) -> bool {
    !suite.is_empty()
        && suite.starts_with(|c: char| c.is_ascii_lowercase())
        && suite
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Debian policy §5.6.12: `[epoch:]upstream_version[-debian_revision]`.
fn check_version(version: &str) -> Result<(), EntryError> {
    let reject = |reason| {
        Err(EntryError::Version {
            version: version.to_owned(),
            reason,
        })
    };
    let (epoch, rest) = version.split_once(':').unwrap_or(("0", version));
    if epoch.is_empty() || !epoch.bytes().all(|b| b.is_ascii_digit()) {
        return reject("the epoch before ':' must be digits");
    }
    let (upstream, revision) = match rest.rsplit_once('-') {
        Some((upstream, revision)) => (upstream, Some(revision)),
        None => (rest, None),
    };
    if !upstream.starts_with(|c: char| c.is_ascii_digit()) {
        return reject("the upstream version must start with a digit");
    }
    if !upstream
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'+' | b'~' | b'-'))
    {
        return reject("the upstream version may hold only letters, digits and . + ~ -");
    }
    let revision_ok = |revision: &str| {
        !revision.is_empty()
            && revision
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'+' | b'~'))
    };
    if revision.is_some_and(|revision| !revision_ok(revision)) {
        return reject(
            "the Debian revision after the last '-' may hold only letters, digits and . + ~",
        );
    }
    Ok(())
}

/// A validated lock: no package twice, held in canonical order.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct PackageLock {
    packages: Vec<LockedPackage>,
}

impl PackageLock {
    /// Builds a lock from resolved packages (for example `dpkg-query` output joined with the
    /// hashes of the cached `.deb`s), in any order.
    pub fn from_packages(mut packages: Vec<LockedPackage>) -> Result<Self, LockError> {
        packages.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
        if let Some(pair) = packages
            .windows(2)
            .find(|pair| pair[0].sort_key() == pair[1].sort_key())
        {
            return Err(LockError::Duplicate(pair[0].qualified_name()));
        }
        Ok(Self { packages })
    }

    /// Parses a lock file. Blank lines and `#` comments are skipped; entries may be in any
    /// order (a hand-resolved merge), [`PackageLock::to_text`] writes them sorted.
    pub fn parse(text: &str) -> Result<Self, LockError> {
        let mut first_lines: BTreeMap<(String, String), usize> = BTreeMap::new();
        let mut packages = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line_number = index + 1;
            let content = line.trim();
            if content.is_empty() || content.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = content.split_whitespace().collect();
            let (name, version, architecture, suite, sha256, filename) = match fields[..] {
                [name, version, architecture, suite, sha256, filename] => {
                    (name, version, architecture, Some(suite), sha256, filename)
                }
                [name, version, architecture, sha256, filename] => {
                    (name, version, architecture, None, sha256, filename)
                }
                _ => {
                    return Err(LockError::Entry {
                        line: line_number,
                        problem: EntryError::FieldCount(fields.len()),
                    });
                }
            };
            let package = LockedPackage::new(name, version, architecture, suite, sha256, filename)
                .map_err(|problem| LockError::Entry {
                    line: line_number,
                    problem,
                })?;
            let key = (package.name.clone(), package.architecture.clone());
            if let Some(&first_line) = first_lines.get(&key) {
                return Err(LockError::DuplicateLine {
                    line: line_number,
                    first_line,
                    package: package.qualified_name(),
                });
            }
            first_lines.insert(key, line_number);
            packages.push(package);
        }
        Self::from_packages(packages)
    }

    pub fn packages(&self) -> &[LockedPackage] {
        &self.packages
    }

    /// The canonical text: header, then one sorted line per package.
    pub fn to_text(&self) -> String {
        let mut text = String::from(HEADER);
        for package in &self.packages {
            text += &format!("{package}\n");
        }
        text
    }

    /// The key of the cached base root filesystem: SHA-256 of the canonical text, so the same
    /// packages give the same key however the file was laid out. `sha256` is supplied by the
    /// caller (no hashing crate in this workspace).
    pub fn hash(&self, sha256: impl Fn(&[u8]) -> Sha256Digest) -> Sha256Digest {
        sha256(self.to_text().as_bytes())
    }

    /// Whether every entry records its suite (locks written before suites were recorded do
    /// not, and are re-resolved unless the build is `--locked`).
    pub fn records_suites(&self) -> bool {
        self.packages.iter().all(|package| package.suite.is_some())
    }

    /// What changes from this lock to `newer`, in lock order: as `cargo update` reports it.
    /// Entries whose only difference is the suite now recorded are left out.
    pub fn changes(&self, newer: &PackageLock) -> Vec<LockChange> {
        let old: BTreeMap<(&str, &str), &LockedPackage> =
            self.packages.iter().map(|p| (p.sort_key(), p)).collect();
        let new: BTreeMap<(&str, &str), &LockedPackage> =
            newer.packages.iter().map(|p| (p.sort_key(), p)).collect();
        let keys: std::collections::BTreeSet<(&str, &str)> =
            old.keys().chain(new.keys()).copied().collect();
        keys.into_iter()
            .filter_map(|key| match (old.get(&key), new.get(&key)) {
                (Some(before), Some(after)) if before.same_file(after) => None,
                (Some(before), Some(after)) => Some(LockChange::Updated {
                    before: (*before).clone(),
                    after: (*after).clone(),
                }),
                (None, Some(after)) => Some(LockChange::Added((*after).clone())),
                (Some(before), None) => Some(LockChange::Removed((*before).clone())),
                (None, None) => None,
            })
            .collect()
    }

    /// Packages whose `.deb` is not among `cached_files` (the cache directory's file names),
    /// in lock order: what must be fetched before building.
    pub fn missing<'a>(
        &self,
        cached_files: impl IntoIterator<Item = &'a str>,
    ) -> Vec<&LockedPackage> {
        let cached: HashSet<&str> = cached_files.into_iter().collect();
        self.packages
            .iter()
            .filter(|package| !cached.contains(package.filename.as_str()))
            .collect()
    }
}

/// One difference between two locks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockChange {
    Updated {
        before: LockedPackage,
        after: LockedPackage,
    },
    Added(LockedPackage),
    Removed(LockedPackage),
}

impl LockChange {
    /// The package's new version is a security update (it comes from a `*-security` suite).
    pub fn is_security(&self) -> bool {
        match self {
            LockChange::Updated { after, .. } | LockChange::Added(after) => after
                .suite
                .as_deref()
                .is_some_and(|suite| suite.ends_with("-security")),
            LockChange::Removed(_) => false,
        }
    }
}

impl fmt::Display for LockChange {
    /// `cargo update`'s shape: a right-aligned verb, the package, the versions, and where the
    /// new version comes from.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let suite = |package: &LockedPackage| {
            package
                .suite
                .as_deref()
                .map_or(String::new(), |suite| format!(" ({suite})"))
        };
        match self {
            LockChange::Updated { before, after } => write!(
                f,
                "{:>9} {} {} -> {}{}",
                "Updating",
                after.qualified_name(),
                before.version,
                after.version,
                suite(after)
            ),
            LockChange::Added(after) => write!(
                f,
                "{:>9} {} {}{}",
                "Adding",
                after.qualified_name(),
                after.version,
                suite(after)
            ),
            LockChange::Removed(before) => write!(
                f,
                "{:>9} {} {}",
                "Removing",
                before.qualified_name(),
                before.version
            ),
        }?;
        if self.is_security() {
            f.write_str(" [security]")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH_A: &str = "1111111111111111111111111111111111111111111111111111111111111111";
    const HASH_B: &str = "2222222222222222222222222222222222222222222222222222222222222222";

    fn package(name: &str, version: &str, architecture: &str) -> LockedPackage {
        let filename = format!("{name}_{}_{architecture}.deb", version.replace(':', "%3a"));
        LockedPackage::new(
            name,
            version,
            architecture,
            Some("trixie"),
            HASH_A,
            &filename,
        )
        .unwrap()
    }

    fn entry_error(line: &str) -> EntryError {
        match PackageLock::parse(line) {
            Err(LockError::Entry { line: 1, problem }) => problem,
            other => panic!("expected an entry error on line 1, got {other:?}"),
        }
    }

    #[test]
    fn round_trips_sorted_by_name_then_architecture() {
        let text = format!(
            "zstd 1.5.7+dfsg-1 arm64 trixie {HASH_A} zstd_1.5.7+dfsg-1_arm64.deb\n\
             \n# a comment\n\
             libc6 2.41-12+deb13u1 arm64 trixie-security {HASH_B} libc6_2.41-12+deb13u1_arm64.deb\n\
             libc6 2.41-12 amd64 trixie-updates {HASH_A} libc6_2.41-12_amd64.deb\n"
        );
        let lock = PackageLock::parse(&text).unwrap();
        let order: Vec<String> = lock
            .packages()
            .iter()
            .map(LockedPackage::qualified_name)
            .collect();
        assert_eq!(order, ["libc6:amd64", "libc6:arm64", "zstd:arm64"]);
        let canonical = lock.to_text();
        assert!(canonical.starts_with("# pew package lock"));
        assert!(canonical.ends_with(&format!(
            "zstd 1.5.7+dfsg-1 arm64 trixie {HASH_A} zstd_1.5.7+dfsg-1_arm64.deb\n"
        )));
        assert_eq!(PackageLock::parse(&canonical).unwrap(), lock);
        assert_eq!(lock.packages()[1].suite.as_deref(), Some("trixie-security"));
        assert!(lock.records_suites());
    }

    #[test]
    fn a_lock_from_before_suites_is_read_with_the_suite_unknown() {
        let text = format!("libc6 2.41-12 arm64 {HASH_B} libc6_2.41-12_arm64.deb\n");
        let lock = PackageLock::parse(&text).unwrap();
        assert_eq!(lock.packages()[0].suite, None);
        assert!(!lock.records_suites());
        assert!(lock.to_text().ends_with(&text));
        assert_eq!(
            entry_error(&format!("pk 1.0 arm64 Trixie {HASH_A} p.deb")),
            EntryError::Suite("Trixie".into())
        );
    }

    #[test]
    fn changes_read_like_cargo_update_and_mark_security_fixes() {
        let old = PackageLock::from_packages(vec![
            package("kept", "1.0", "arm64"),
            package("libssl3t64", "3.5.1-1", "arm64"),
            package("tzdata", "2025b-4", "all"),
            package("gone", "2.0", "arm64"),
        ])
        .unwrap();
        let mut security = package("libssl3t64", "3.5.1-1+deb13u1", "arm64");
        security.suite = Some("trixie-security".into());
        let mut updates = package("tzdata", "2025c-0+deb13u1", "all");
        updates.suite = Some("trixie-updates".into());
        // The same file now recorded with its suite is no change.
        let mut resuited = package("kept", "1.0", "arm64");
        resuited.suite = None;
        let new = PackageLock::from_packages(vec![
            resuited,
            security,
            updates,
            package("new", "3", "arm64"),
        ])
        .unwrap();
        let lines: Vec<String> = old.changes(&new).iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                " Removing gone:arm64 2.0",
                " Updating libssl3t64:arm64 3.5.1-1 -> 3.5.1-1+deb13u1 (trixie-security) [security]",
                "   Adding new:arm64 3 (trixie)",
                " Updating tzdata:all 2025b-4 -> 2025c-0+deb13u1 (trixie-updates)",
            ]
        );
        assert!(old.changes(&old).is_empty());
    }

    #[test]
    fn epochs_tildes_and_native_versions_are_valid() {
        for version in [
            "1:2.3.4-1",
            "2.41-12",
            "1.0~rc1-2+deb13u1",
            "20240424",
            "1:9.2p1-2+b1",
            "1.2-3-4",
        ] {
            assert!(check_version(version).is_ok(), "{version}");
        }
    }

    #[test]
    fn malformed_versions_are_named_with_the_reason() {
        for (version, reason) in [
            ("x1.0-1", "start with a digit"),
            ("a:1.0", "epoch"),
            ("1.0-", "revision"),
            ("1.0_1", "only letters"),
            ("1.0-r_1", "revision"),
        ] {
            let line = format!("pkg {version} arm64 {HASH_A} pkg.deb");
            match entry_error(&line) {
                EntryError::Version {
                    version: named,
                    reason: text,
                } => {
                    assert_eq!(named, version);
                    assert!(text.contains(reason), "{version}: {text}");
                }
                other => panic!("{version}: {other:?}"),
            }
        }
    }

    #[test]
    fn malformed_fields_are_reported_with_their_line() {
        let text = format!(
            "# header\nok 1.0 arm64 {HASH_A} ok_1.0_arm64.deb\nbad 1.0 arm64 {} bad.deb\n",
            &HASH_A[..63]
        );
        assert_eq!(
            PackageLock::parse(&text),
            Err(LockError::Entry {
                line: 3,
                problem: EntryError::Sha256(DigestError::Length(63))
            })
        );
        assert_eq!(entry_error("a 1.0 arm64"), EntryError::FieldCount(3));
        assert_eq!(
            entry_error(&format!("Upper 1.0 arm64 {HASH_A} u.deb")),
            EntryError::Name("Upper".into())
        );
        assert_eq!(
            entry_error(&format!("p 1.0 arm64 {HASH_A} p.deb")),
            EntryError::Name("p".into())
        );
        assert_eq!(
            entry_error(&format!("pk 1.0 ARM64 {HASH_A} p.deb")),
            EntryError::Architecture("ARM64".into())
        );
        assert_eq!(
            entry_error(&format!("pk 1.0 arm64 {HASH_A} ../p.deb")),
            EntryError::Filename("../p.deb".into())
        );
        assert_eq!(
            entry_error(&format!("pk 1.0 arm64 {HASH_A} p.tar")),
            EntryError::Filename("p.tar".into())
        );
    }

    #[test]
    fn duplicates_name_both_lines() {
        let text = format!(
            "pk 1.0 arm64 {HASH_A} a.deb\npk 1.1 amd64 {HASH_A} b.deb\npk 1.2 arm64 {HASH_B} c.deb\n"
        );
        assert_eq!(
            PackageLock::parse(&text),
            Err(LockError::DuplicateLine {
                line: 3,
                first_line: 1,
                package: "pk:arm64".into()
            })
        );
        let twice = vec![package("pk", "1.0", "arm64"), package("pk", "2.0", "arm64")];
        assert_eq!(
            PackageLock::from_packages(twice),
            Err(LockError::Duplicate("pk:arm64".into()))
        );
    }

    #[test]
    fn hash_covers_the_canonical_text_whatever_the_input_order() {
        let forward = PackageLock::from_packages(vec![
            package("aa", "1.0", "arm64"),
            package("bb", "1:2.0-1", "arm64"),
        ])
        .unwrap();
        let backward = PackageLock::from_packages(vec![
            package("bb", "1:2.0-1", "arm64"),
            package("aa", "1.0", "arm64"),
        ])
        .unwrap();
        // A stand-in hasher that reveals its input: it must see exactly the canonical text.
        let hasher = |bytes: &[u8]| {
            assert_eq!(bytes, forward.to_text().as_bytes());
            let mut digest = [0u8; 32];
            digest[..8].copy_from_slice(&(bytes.len() as u64).to_le_bytes());
            Sha256Digest::from_bytes(digest)
        };
        assert_eq!(forward.hash(hasher), backward.hash(hasher));
    }

    #[test]
    fn missing_lists_packages_whose_deb_is_not_cached() {
        let lock = PackageLock::from_packages(vec![
            package("aa", "1.0", "arm64"),
            package("bb", "1:2.0-1", "arm64"),
            package("cc", "3", "all"),
        ])
        .unwrap();
        let cached = ["aa_1.0_arm64.deb", "cc_3_all.deb", "unrelated.deb"];
        let missing: Vec<&str> = lock
            .missing(cached)
            .iter()
            .map(|p| p.filename.as_str())
            .collect();
        assert_eq!(missing, ["bb_1%3a2.0-1_arm64.deb"]);
        assert_eq!(lock.missing([]).len(), 3);
    }

    #[test]
    fn verify_reports_a_corrupt_deb() {
        let locked = package("aa", "1.0", "arm64");
        assert_eq!(locked.verify(HASH_A.parse().unwrap()), Ok(()));
        let corrupt: Sha256Digest = HASH_B.parse().unwrap();
        let error = locked.verify(corrupt).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("aa_1.0_arm64.deb: sha256 is 2222"),
            "{error}"
        );
    }
}
