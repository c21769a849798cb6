//! Resolving the package set from a Debian archive's `Packages` index, for
//! `cargo xtask image --update-lock`.
//!
//! apt does the dependency resolution (`apt-get install --print-uris` against an empty dpkg
//! status); this module supplies what apt cannot: which packages mmdebstrap's variants start
//! from, and the SHA-256 of each `.deb` apt chose, which `--print-uris` does not print (apt 2.6
//! prints the MD5).

use std::collections::BTreeMap;

use crate::lock::{EntryError, LockedPackage};

/// One stanza of a `Packages` index, the fields the lock needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    pub name: String,
    pub version: String,
    pub architecture: String,
    /// Path below the mirror root, e.g. `pool/main/a/apt/apt_3.0.3_arm64.deb`.
    pub filename: String,
    pub sha256: String,
    /// The suite whose index lists it (`trixie`, `trixie-security`, ...).
    pub suite: String,
    pub essential: bool,
    pub priority: String,
    /// The whole stanza, for writing a dpkg status that claims the package installed.
    pub stanza: String,
}

/// What is wrong with an index or with apt's answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArchiveError {
    #[error("stanza {stanza} of the Packages index has no {field} field")]
    MissingField { stanza: usize, field: &'static str },
    #[error("apt's --print-uris line {line} is not `'URL' FILE SIZE HASH`: {text:?}")]
    UriLine { line: usize, text: String },
    #[error("apt chose {0}, which no Packages index lists (were the indexes updated?)")]
    NotInIndex(String),
    #[error("{name} {version}: {problem}")]
    Entry {
        name: String,
        version: String,
        problem: EntryError,
    },
}

/// mmdebstrap's variants, which install in two stages: first the `Essential: yes` set into an
/// empty root, then, with those installed, the variant's other packages and the `--include`s.
/// apt resolves alternatives (`a | b`) differently when the first stage is already installed,
/// so the lock is resolved in the same two stages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// `Essential: yes` packages, then the includes (the tools tree).
    Essential,
    /// Essential, then `Priority: required` and the includes (the image).
    Minbase,
}

/// The suite of an index apt downloaded, from the file name apt gives it in its lists
/// directory (`deb.debian.org_debian_dists_trixie-updates_main_binary-arm64_Packages`): the
/// one of `suites` named after `_dists_`.
pub fn suite_of_index_file<'a>(file_name: &str, suites: &'a [String]) -> Option<&'a str> {
    suites
        .iter()
        .find(|suite| file_name.contains(&format!("_dists_{suite}_")))
        .map(String::as_str)
}

/// Where an index file apt keeps in its lists directory lives in the archive, below
/// `dists/<suite>/`: `InRelease`, or `<component>/binary-<arch>/Packages`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivePath<'a> {
    pub suite: &'a str,
    pub below_suite: String,
}

/// The archive path of `file_name` from apt's lists directory
/// (`deb.debian.org_debian_dists_trixie_main_binary-arm64_Packages`), when it is the signed
/// release file or a binary `Packages` index of one of `suites`.
pub fn archive_path<'a>(file_name: &str, suites: &'a [String]) -> Option<ArchivePath<'a>> {
    let suite = suite_of_index_file(file_name, suites)?;
    let marker = format!("_dists_{suite}_");
    let rest = &file_name[file_name.find(&marker)? + marker.len()..];
    let below_suite = if rest == "InRelease" {
        rest.to_owned()
    } else {
        let (component, index) = rest.split_once('_')?;
        let architecture = index.strip_prefix("binary-")?.strip_suffix("_Packages")?;
        format!("{component}/binary-{architecture}/Packages")
    };
    Some(ArchivePath { suite, below_suite })
}

/// Parses the `Packages` index of `suite` (deb822 stanzas separated by blank lines).
/// Continuation lines and fields the lock does not need are skipped.
pub fn parse_packages_index(text: &str, suite: &str) -> Result<Vec<IndexEntry>, ArchiveError> {
    let mut entries = Vec::new();
    for (index, stanza) in text.split("\n\n").enumerate() {
        if stanza.trim().is_empty() {
            continue;
        }
        let fields: BTreeMap<&str, &str> = stanza
            .lines()
            .filter(|line| !line.starts_with([' ', '\t']))
            .filter_map(|line| line.split_once(':'))
            .map(|(key, value)| (key, value.trim()))
            .collect();
        let field = |name: &'static str| {
            fields
                .get(name)
                .map(|value| (*value).to_owned())
                .ok_or(ArchiveError::MissingField {
                    stanza: index + 1,
                    field: name,
                })
        };
        entries.push(IndexEntry {
            name: field("Package")?,
            version: field("Version")?,
            architecture: field("Architecture")?,
            filename: field("Filename")?,
            sha256: field("SHA256")?,
            suite: suite.to_owned(),
            essential: fields.get("Essential") == Some(&"yes"),
            priority: fields
                .get("Priority")
                .copied()
                .unwrap_or("optional")
                .to_owned(),
            stanza: stanza.trim_matches('\n').to_owned(),
        });
    }
    Ok(entries)
}

/// What each stage installs by name: `(first stage, second stage before the includes)`.
pub fn variant_seeds(index: &[IndexEntry], variant: Variant) -> (Vec<String>, Vec<String>) {
    let names = |keep: &dyn Fn(&IndexEntry) -> bool| -> Vec<String> {
        let mut names: Vec<String> = index
            .iter()
            .filter(|entry| keep(entry))
            .map(|entry| entry.name.clone())
            .collect();
        names.sort();
        names.dedup();
        names
    };
    let essential = names(&|entry| entry.essential);
    let second = match variant {
        Variant::Essential => Vec::new(),
        Variant::Minbase => names(&|entry| !entry.essential && entry.priority == "required"),
    };
    (essential, second)
}

/// A dpkg status file claiming `installed` (with their index stanzas) installed, so apt
/// resolves the second stage as it will inside mmdebstrap.
pub fn installed_status(index: &[IndexEntry], installed: &[LockedPackage]) -> String {
    let mut status = String::new();
    for package in installed {
        let entry = index.iter().find(|entry| {
            entry.name == package.name
                && entry.version == package.version
                && entry.architecture == package.architecture
        });
        if let Some(entry) = entry {
            status += &entry.stanza;
            status += "\nStatus: install ok installed\n\n";
        }
    }
    status
}

/// One `.deb` apt would download: its URL and the name apt caches it under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Download {
    pub url: String,
    pub cache_filename: String,
}

/// Parses `apt-get install --print-uris` output: `'URL' FILE SIZE HASH` per line.
pub fn parse_print_uris(text: &str) -> Result<Vec<Download>, ArchiveError> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(index, line)| {
            let bad = || ArchiveError::UriLine {
                line: index + 1,
                text: line.to_owned(),
            };
            let rest = line.strip_prefix('\'').ok_or_else(bad)?;
            let (url, rest) = rest.split_once('\'').ok_or_else(bad)?;
            let cache_filename = rest.split_whitespace().next().ok_or_else(bad)?;
            Ok(Download {
                url: url.to_owned(),
                cache_filename: cache_filename.to_owned(),
            })
        })
        .collect()
}

/// Joins apt's choice with the index: every download becomes a locked package with the
/// index's SHA-256 and suite. The URL ends with the index's `Filename` path, percent-escaped.
/// A file two suites share (a point release folds `trixie-updates` into `trixie` without
/// moving the file) is locked with the suite that comes first in `index`; security updates
/// have pool paths of their own.
pub fn lock_entries(
    downloads: &[Download],
    index: &[IndexEntry],
) -> Result<Vec<LockedPackage>, ArchiveError> {
    let mut by_path: BTreeMap<&str, &IndexEntry> = BTreeMap::new();
    for entry in index {
        by_path.entry(entry.filename.as_str()).or_insert(entry);
    }
    downloads
        .iter()
        .map(|download| {
            let url = percent_decode(&download.url);
            let entry = url
                .find("/pool/")
                .and_then(|start| by_path.get(&url[start + 1..]))
                .ok_or_else(|| ArchiveError::NotInIndex(download.cache_filename.clone()))?;
            LockedPackage::new(
                &entry.name,
                &entry.version,
                &entry.architecture,
                Some(&entry.suite),
                &entry.sha256,
                &download.cache_filename,
            )
            .map_err(|problem| ArchiveError::Entry {
                name: entry.name.clone(),
                version: entry.version.clone(),
                problem,
            })
        })
        .collect()
}

/// The packages of `locked` that no suite's index offers any more with the same version and
/// hash: a build from this lock cannot fetch them.
pub fn unavailable<'a>(
    locked: &[&'a LockedPackage],
    index: &[IndexEntry],
) -> Vec<&'a LockedPackage> {
    let offered: std::collections::HashSet<(&str, &str, &str, &str)> = index
        .iter()
        .map(|entry| {
            (
                entry.name.as_str(),
                entry.version.as_str(),
                entry.architecture.as_str(),
                entry.sha256.as_str(),
            )
        })
        .collect();
    locked
        .iter()
        .copied()
        .filter(|package| {
            let sha256 = package.sha256.to_string();
            !offered.contains(&(
                package.name.as_str(),
                package.version.as_str(),
                package.architecture.as_str(),
                sha256.as_str(),
            ))
        })
        .collect()
}

/// `%2b` → `+`, `%3a` → `:`; apt escapes only a few bytes in pool URLs.
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let escaped = (bytes[index] == b'%')
            .then(|| text.get(index + 1..index + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                decoded.push(byte);
                index += 3;
            }
            None => {
                decoded.push(bytes[index]);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH_LIBC: &str = "9f0d3e2c1b4a59687766554433221100ffeeddccbbaa99887766554433221100";
    const HASH_APT: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    /// Trimmed from trixie's arm64 index: a description continuation line, an essential
    /// package, a required one and an optional one.
    const INDEX: &str = "\
Package: libc6
Source: glibc
Version: 2.41-12+deb13u4
Architecture: arm64
Priority: optional
Filename: pool/main/g/glibc/libc6_2.41-12+deb13u4_arm64.deb
SHA256: 9f0d3e2c1b4a59687766554433221100ffeeddccbbaa99887766554433221100
Description: GNU C Library: Shared libraries
 Contains the standard libraries.

Package: base-files
Version: 13.8+deb13u7
Architecture: arm64
Essential: yes
Priority: required
Filename: pool/main/b/base-files/base-files_13.8+deb13u7_arm64.deb
SHA256: aaaa000000000000000000000000000000000000000000000000000000000000

Package: bsdutils
Version: 1:2.41.5-0+deb13u1
Architecture: arm64
Priority: required
Filename: pool/main/u/util-linux/bsdutils_2.41.5-0+deb13u1_arm64.deb
SHA256: bbbb000000000000000000000000000000000000000000000000000000000000

Package: apt
Version: 3.0.3
Architecture: arm64
Priority: important
Filename: pool/main/a/apt/apt_3.0.3_arm64.deb
SHA256: 00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff
";

    #[test]
    fn index_fields_are_read_and_continuations_skipped() {
        let index = parse_packages_index(INDEX, "trixie").unwrap();
        assert_eq!(index.len(), 4);
        assert_eq!(index[0].name, "libc6");
        assert_eq!(index[0].sha256, HASH_LIBC);
        assert!(!index[0].essential);
        assert!(index[1].essential);
        assert_eq!(index[2].version, "1:2.41.5-0+deb13u1");
        assert_eq!(index[3].priority, "important");
    }

    #[test]
    fn a_stanza_without_a_hash_is_named() {
        let text = "Package: a\nVersion: 1\nArchitecture: all\nFilename: pool/a.deb\n\n";
        assert_eq!(
            parse_packages_index(text, "trixie"),
            Err(ArchiveError::MissingField {
                stanza: 1,
                field: "SHA256"
            })
        );
    }

    #[test]
    fn both_variants_start_with_the_essential_set_and_minbase_adds_required() {
        let index = parse_packages_index(INDEX, "trixie").unwrap();
        let (first, second) = variant_seeds(&index, Variant::Minbase);
        assert_eq!(first, ["base-files"]);
        assert_eq!(second, ["bsdutils"]);
        assert_eq!(
            variant_seeds(&index, Variant::Essential),
            (vec!["base-files".to_owned()], vec![])
        );
    }

    #[test]
    fn the_first_stage_becomes_a_dpkg_status_with_its_whole_stanzas() {
        let index = parse_packages_index(INDEX, "trixie").unwrap();
        let libc = LockedPackage::new(
            "libc6",
            "2.41-12+deb13u4",
            "arm64",
            Some("trixie"),
            HASH_LIBC,
            "libc6_2.41-12+deb13u4_arm64.deb",
        )
        .unwrap();
        let status = installed_status(&index, &[libc]);
        assert!(status.starts_with("Package: libc6\nSource: glibc\n"));
        assert!(
            status.contains(" Contains the standard libraries.\nStatus: install ok installed\n\n")
        );
        assert_eq!(status.matches("Package:").count(), 1);
    }

    #[test]
    fn apt_choice_is_locked_with_the_index_hash_and_apt_cache_name() {
        let index = parse_packages_index(INDEX, "trixie").unwrap();
        let uris = "\
'http://deb.debian.org/debian/pool/main/g/glibc/libc6_2.41-12%2bdeb13u4_arm64.deb' libc6_2.41-12+deb13u4_arm64.deb 2483572 MD5Sum:52dfbf15cfc7959c048a3a01d8742c48
'http://deb.debian.org/debian/pool/main/u/util-linux/bsdutils_2.41.5-0%2bdeb13u1_arm64.deb' bsdutils_1%3a2.41.5-0+deb13u1_arm64.deb 109000 MD5Sum:00
'http://deb.debian.org/debian/pool/main/a/apt/apt_3.0.3_arm64.deb' apt_3.0.3_arm64.deb 1361960 MD5Sum:00
";
        let downloads = parse_print_uris(uris).unwrap();
        let locked = lock_entries(&downloads, &index).unwrap();
        assert_eq!(locked.len(), 3);
        assert_eq!(locked[0].name, "libc6");
        assert_eq!(locked[0].sha256.to_string(), HASH_LIBC);
        assert_eq!(locked[1].version, "1:2.41.5-0+deb13u1");
        assert_eq!(
            locked[1].filename,
            "bsdutils_1%3a2.41.5-0+deb13u1_arm64.deb"
        );
        assert_eq!(locked[2].sha256.to_string(), HASH_APT);
    }

    #[test]
    fn the_suite_of_an_index_file_is_read_from_apts_list_name() {
        let suites: Vec<String> = ["trixie", "trixie-updates", "trixie-security"]
            .map(String::from)
            .to_vec();
        for (file, suite) in [
            (
                "deb.debian.org_debian_dists_trixie_main_binary-arm64_Packages",
                Some("trixie"),
            ),
            (
                "deb.debian.org_debian_dists_trixie-updates_non-free-firmware_binary-arm64_Packages",
                Some("trixie-updates"),
            ),
            (
                "security.debian.org_debian-security_dists_trixie-security_main_binary-arm64_Packages",
                Some("trixie-security"),
            ),
            (
                "_srv_snap_archive_debian_20261208T000000Z_dists_trixie_main_binary-arm64_Packages",
                Some("trixie"),
            ),
            (
                "deb.debian.org_debian_dists_bookworm_main_binary-arm64_Packages",
                None,
            ),
        ] {
            assert_eq!(suite_of_index_file(file, &suites), suite, "{file}");
        }
    }

    #[test]
    fn list_files_map_back_to_their_place_in_the_archive() {
        let suites: Vec<String> = ["trixie", "trixie-security"].map(String::from).to_vec();
        let place = |file: &str| {
            archive_path(file, &suites).map(|path| format!("{}/{}", path.suite, path.below_suite))
        };
        assert_eq!(
            place("deb.debian.org_debian_dists_trixie_InRelease").as_deref(),
            Some("trixie/InRelease")
        );
        assert_eq!(
            place("security.debian.org_debian-security_dists_trixie-security_non-free-firmware_binary-amd64_Packages")
                .as_deref(),
            Some("trixie-security/non-free-firmware/binary-amd64/Packages")
        );
        assert_eq!(
            place("deb.debian.org_debian_dists_trixie_main_i18n_Translation-en"),
            None
        );
        assert_eq!(place("lock"), None);
    }

    #[test]
    fn a_file_in_two_suites_keeps_the_first_and_security_has_its_own_pool() {
        let mut index = parse_packages_index(INDEX, "trixie").unwrap();
        index.extend(parse_packages_index(INDEX, "trixie-updates").unwrap());
        let security = INDEX
            .replace("pool/main/g/glibc", "pool/updates/main/g/glibc")
            .replace("2.41-12+deb13u4", "2.41-12+deb13u5");
        index.extend(parse_packages_index(&security, "trixie-security").unwrap());
        let uris = "\
'http://deb.debian.org/debian/pool/main/a/apt/apt_3.0.3_arm64.deb' apt_3.0.3_arm64.deb 1 MD5Sum:00
'http://security.debian.org/debian-security/pool/updates/main/g/glibc/libc6_2.41-12%2bdeb13u5_arm64.deb' libc6_2.41-12+deb13u5_arm64.deb 1 MD5Sum:00
";
        let locked = lock_entries(&parse_print_uris(uris).unwrap(), &index).unwrap();
        assert_eq!(locked[0].suite.as_deref(), Some("trixie"));
        assert_eq!(locked[1].version, "2.41-12+deb13u5");
        assert_eq!(locked[1].suite.as_deref(), Some("trixie-security"));
    }

    #[test]
    fn unavailable_names_versions_and_rebuilt_files_the_index_no_longer_offers() {
        let index = parse_packages_index(INDEX, "trixie").unwrap();
        let apt_now = LockedPackage::new(
            "apt",
            "3.0.3",
            "arm64",
            Some("trixie"),
            HASH_APT,
            "apt_3.0.3_arm64.deb",
        )
        .unwrap();
        let libc_old = LockedPackage::new(
            "libc6",
            "2.41-12",
            "arm64",
            None,
            HASH_LIBC,
            "libc6_2.41-12_arm64.deb",
        )
        .unwrap();
        let apt_other_bytes = LockedPackage::new(
            "apt",
            "3.0.3",
            "arm64",
            Some("trixie"),
            HASH_LIBC,
            "apt_3.0.3_arm64.deb",
        )
        .unwrap();
        let gone = unavailable(&[&apt_now, &libc_old, &apt_other_bytes], &index);
        assert_eq!(gone, [&libc_old, &apt_other_bytes]);
    }

    #[test]
    fn a_download_missing_from_the_index_is_an_error() {
        let downloads = parse_print_uris(
            "'http://m/debian/pool/main/x/x/x_1_all.deb' x_1_all.deb 1 MD5Sum:0\n",
        )
        .unwrap();
        assert_eq!(
            lock_entries(&downloads, &[]),
            Err(ArchiveError::NotInIndex("x_1_all.deb".into()))
        );
    }

    #[test]
    fn a_malformed_uri_line_is_named_by_number() {
        let result = parse_print_uris("'http://m/a.deb' a.deb 1 MD5Sum:0\nno quotes here\n");
        assert!(matches!(result, Err(ArchiveError::UriLine { line: 2, .. })));
    }
}
