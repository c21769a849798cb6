//! The provisioning area: per-node files dropped on the boot partition (by `provision` or by
//! hand) that first boot installs into `/var/lib/pew` and then deletes from the FAT.
//!
//! Placeholder format until the provisioning issue defines the real one. The boot partition
//! holds `provision/manifest.toml` and the files it lists, next to it:
//!
//! ```toml
//! format = 1
//!
//! [[file]]
//! source = "worker-key.json"                      # in provision/, no subdirectories
//! destination = "/var/lib/pew/worker/key.json"    # absolute, under /var/lib/pew
//! owner = "root"
//! group = "pew"
//! mode = "0600"                                   # octal, as a string
//! secret = true                                   # then no group or other permissions
//! sha256 = "…"                                    # the FAT has no journal: check every byte
//! ```
//!
//! The same image boots every node; only these files make a node itself. FAT records no
//! owners or modes, so the manifest carries them.

use std::collections::BTreeSet;
use std::path::Path;

use pew_daemon::config::{self, ConfigError};
use serde::Deserialize;

use crate::digest::Sha256Digest;

/// Directory of the provisioning area on the boot partition.
pub const PROVISION_DIRECTORY: &str = "provision";
/// The manifest's name in that directory.
pub const MANIFEST_FILE: &str = "manifest.toml";
/// Everything provisioned lands below this directory (on the data partition).
pub const STATE_ROOT: &str = "/var/lib/pew";
const FORMAT_VERSION: u32 = 1;

/// The manifest as written.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: u32,
    #[serde(default, rename = "file")]
    pub files: Vec<ProvisionedFile>,
}

/// One file to install.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvisionedFile {
    pub source: String,
    pub destination: String,
    pub owner: String,
    pub group: String,
    #[serde(deserialize_with = "octal_mode")]
    pub mode: u32,
    #[serde(default)]
    pub secret: bool,
    pub sha256: Sha256Digest,
}

fn octal_mode<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
    let text = String::deserialize(deserializer)?;
    let digits_ok =
        (3..=4).contains(&text.len()) && text.bytes().all(|b| (b'0'..=b'7').contains(&b));
    match u32::from_str_radix(&text, 8) {
        Ok(mode) if digits_ok => Ok(mode),
        _ => Err(serde::de::Error::custom(format!(
            "mode {text:?} is not 3 or 4 octal digits such as \"0600\""
        ))),
    }
}

/// One step of installing the provisioning area, in the order they must run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstallAction {
    /// Create the directory if missing (root:root 0755); an existing one keeps its owner and
    /// mode, which the owning service's `StateDirectory=` manages.
    CreateDirectory { path: String },
    /// Check `source` against `sha256`, write it to a temporary file beside `destination`,
    /// set owner, group and mode, fsync, rename over `destination`.
    InstallFile {
        source: String,
        destination: String,
        owner: String,
        group: String,
        mode: u32,
        sha256: Sha256Digest,
    },
    /// Delete a file from the provisioning area once everything is installed. The manifest is
    /// removed last, so a power cut before then repeats the whole (idempotent) installation.
    RemoveFromBootPartition { path: String },
}

impl Manifest {
    /// A manifest in the format this image reads, listing `files`.
    pub fn new(files: Vec<ProvisionedFile>) -> Self {
        Self {
            format: FORMAT_VERSION,
            files,
        }
    }

    /// The `provision/manifest.toml` text that [`Manifest::parse`] reads back as `self`.
    pub fn to_text(&self) -> String {
        let mut text = format!("format = {}\n", self.format);
        for file in &self.files {
            text.push_str(&format!(
                "\n[[file]]\nsource = {}\ndestination = {}\nowner = {}\ngroup = {}\n\
                 mode = \"{:04o}\"\nsecret = {}\nsha256 = \"{}\"\n",
                toml_string(&file.source),
                toml_string(&file.destination),
                toml_string(&file.owner),
                toml_string(&file.group),
                file.mode,
                file.secret,
                file.sha256,
            ));
        }
        text
    }

    /// Parses and checks `provision/manifest.toml` text; errors name the file, line and key.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let manifest: Manifest = config::parse(path, text)?;
        if manifest.format != FORMAT_VERSION {
            let message = format!(
                "format {} is not understood by this image (it reads {FORMAT_VERSION})",
                manifest.format
            );
            return Err(config::rejected(path, text, "format", message));
        }
        for (index, file) in manifest.files.iter().enumerate() {
            let earlier = &manifest.files[..index];
            if let Err((key, message)) = file.check(earlier) {
                return Err(ConfigError::Invalid {
                    location: config::Location {
                        path: path.to_owned(),
                        line: line_of_entry_key(text, "file", index, key),
                        key: Some(format!("file[{index}].{key}")),
                    },
                    message,
                });
            }
        }
        Ok(manifest)
    }

    /// The actions that install every file, directories first, then files, then the cleanup.
    pub fn install_plan(&self) -> Vec<InstallAction> {
        let directories: BTreeSet<String> = self
            .files
            .iter()
            .flat_map(|file| parent_directories(&file.destination))
            .collect();
        let mut files: Vec<&ProvisionedFile> = self.files.iter().collect();
        files.sort_by(|a, b| a.destination.cmp(&b.destination));
        let mut actions: Vec<InstallAction> = directories
            .into_iter()
            .map(|path| InstallAction::CreateDirectory { path })
            .collect();
        actions.extend(files.iter().map(|file| InstallAction::InstallFile {
            source: format!("{PROVISION_DIRECTORY}/{}", file.source),
            destination: file.destination.clone(),
            owner: file.owner.clone(),
            group: file.group.clone(),
            mode: file.mode,
            sha256: file.sha256,
        }));
        actions.extend(
            files
                .iter()
                .map(|file| InstallAction::RemoveFromBootPartition {
                    path: format!("{PROVISION_DIRECTORY}/{}", file.source),
                }),
        );
        actions.push(InstallAction::RemoveFromBootPartition {
            path: format!("{PROVISION_DIRECTORY}/{MANIFEST_FILE}"),
        });
        actions
    }
}

impl ProvisionedFile {
    /// Returns the offending key and why.
    fn check(&self, earlier: &[ProvisionedFile]) -> Result<(), (&'static str, String)> {
        if !is_plain_name(&self.source) || self.source == MANIFEST_FILE {
            return Err((
                "source",
                format!(
                    "{:?} must be a file name in {PROVISION_DIRECTORY}/ (no directories)",
                    self.source
                ),
            ));
        }
        let Some(relative) = self
            .destination
            .strip_prefix(STATE_ROOT)
            .and_then(|rest| rest.strip_prefix('/'))
        else {
            return Err((
                "destination",
                format!("{:?} is not under {STATE_ROOT}/", self.destination),
            ));
        };
        if !relative.split('/').all(is_plain_name) {
            return Err((
                "destination",
                format!(
                    "{:?} must be a normal path (no empty, . or .. parts)",
                    self.destination
                ),
            ));
        }
        for (key, name) in [("owner", &self.owner), ("group", &self.group)] {
            if !is_account_name(name) {
                return Err((key, format!("{name:?} is not a user or group name")));
            }
        }
        if self.mode & 0o7000 != 0 || self.mode & 0o002 != 0 {
            return Err((
                "mode",
                format!(
                    "{:04o}: no setuid, setgid, sticky or world-writable files",
                    self.mode
                ),
            ));
        }
        if self.secret && self.mode & 0o077 != 0 {
            return Err((
                "mode",
                format!(
                    "{:04o}: a secret must be readable by its owner only (0600 or 0400)",
                    self.mode
                ),
            ));
        }
        for other in earlier {
            if other.destination == self.destination {
                return Err((
                    "destination",
                    format!("{} is installed twice", self.destination),
                ));
            }
            if is_inside(&other.destination, &self.destination)
                || is_inside(&self.destination, &other.destination)
            {
                return Err((
                    "destination",
                    format!(
                        "{} and {} cannot both be files",
                        other.destination, self.destination
                    ),
                ));
            }
            if other.source == self.source {
                return Err(("source", format!("{} is listed twice", self.source)));
            }
        }
        Ok(())
    }
}

/// `text` as a TOML basic string.
fn toml_string(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for character in text.chars() {
        match character {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            c if c.is_control() => quoted.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\', '\0'])
}

/// useradd's portable names: lowercase letter or `_` first, then lowercase, digits, `_`, `-`.
fn is_account_name(name: &str) -> bool {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    first_ok
        && name.len() <= 32
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

fn is_inside(path: &str, directory: &str) -> bool {
    path.strip_prefix(directory)
        .is_some_and(|rest| rest.starts_with('/'))
}

/// Directories strictly between [`STATE_ROOT`] (included) and the file.
fn parent_directories(destination: &str) -> Vec<String> {
    let mut directories = Vec::new();
    let mut current = Path::new(destination).parent();
    while let Some(directory) = current {
        let text = directory.to_string_lossy().into_owned();
        let below_root = text.len() >= STATE_ROOT.len();
        if !below_root {
            break;
        }
        directories.push(text);
        current = directory.parent();
    }
    directories
}

/// The line of `key` inside the `index`-th `[[table]]` entry, for errors about one entry.
fn line_of_entry_key(text: &str, table: &str, index: usize, key: &str) -> Option<usize> {
    let header = format!("[[{table}]]");
    let mut entry = None;
    for (number, line) in text.lines().enumerate() {
        let content = line.split('#').next().unwrap_or_default().trim();
        if content == header {
            entry = Some(entry.map_or(0, |n| n + 1));
        } else if content.starts_with('[') {
            entry = None;
        } else if entry == Some(index)
            && content
                .split_once('=')
                .is_some_and(|(name, _)| name.trim() == key)
        {
            return Some(number + 1);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    fn entry(source: &str, destination: &str, mode: &str, secret: bool) -> String {
        format!(
            "[[file]]\nsource = \"{source}\"\ndestination = \"{destination}\"\nowner = \"root\"\ngroup = \"pew\"\n\
             mode = \"{mode}\"\nsecret = {secret}\nsha256 = \"{HASH}\"\n"
        )
    }

    fn manifest(entries: &[String]) -> String {
        format!("format = 1\n\n{}", entries.join("\n"))
    }

    fn rejection(text: &str) -> (Option<usize>, Option<String>, String) {
        match Manifest::parse(Path::new("provision/manifest.toml"), text) {
            Err(ConfigError::Invalid { location, message }) => {
                (location.line, location.key, message)
            }
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[test]
    fn a_valid_manifest_plans_directories_then_files_then_cleanup_with_the_manifest_last() {
        let text = manifest(&[
            entry(
                "key.json",
                "/var/lib/pew/worker/keys/key.json",
                "0600",
                true,
            ),
            entry("site.toml", "/var/lib/pew/site.toml", "0644", false),
        ]);
        let parsed = Manifest::parse(Path::new("provision/manifest.toml"), &text).unwrap();
        assert_eq!(parsed.files[0].mode, 0o600);
        let plan = parsed.install_plan();
        let directories: Vec<&str> = plan
            .iter()
            .filter_map(|action| match action {
                InstallAction::CreateDirectory { path } => Some(path.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(
            directories,
            [
                "/var/lib/pew",
                "/var/lib/pew/worker",
                "/var/lib/pew/worker/keys"
            ]
        );
        assert_eq!(
            plan[3],
            InstallAction::InstallFile {
                source: "provision/site.toml".into(),
                destination: "/var/lib/pew/site.toml".into(),
                owner: "root".into(),
                group: "pew".into(),
                mode: 0o644,
                sha256: HASH.parse().unwrap(),
            }
        );
        assert_eq!(
            plan.last(),
            Some(&InstallAction::RemoveFromBootPartition {
                path: "provision/manifest.toml".into()
            })
        );
        assert_eq!(plan.len(), 3 + 2 + 3);
    }

    #[test]
    fn a_written_manifest_reads_back_the_same() {
        let file = |source: &str, destination: &str, mode, secret| ProvisionedFile {
            source: source.to_owned(),
            destination: destination.to_owned(),
            owner: "root".to_owned(),
            group: "pew".to_owned(),
            mode,
            secret,
            sha256: HASH.parse().unwrap(),
        };
        let written = Manifest::new(vec![
            file(
                "key \"1\".json",
                "/var/lib/pew/wallet/keystore.json",
                0o600,
                true,
            ),
            file("site.toml", "/var/lib/pew/site.toml", 0o644, false),
        ]);
        let text = written.to_text();
        assert!(text.contains("mode = \"0600\""), "{text}");
        let read = Manifest::parse(Path::new("provision/manifest.toml"), &text).unwrap();
        assert_eq!(read, written);
        assert_eq!(toml_string("a\\b\tc"), "\"a\\\\b\\u0009c\"");
    }

    #[test]
    fn an_empty_area_only_removes_its_manifest() {
        let parsed = Manifest::parse(Path::new("m.toml"), "format = 1\n").unwrap();
        assert_eq!(
            parsed.install_plan(),
            [InstallAction::RemoveFromBootPartition {
                path: "provision/manifest.toml".into()
            }]
        );
    }

    #[test]
    fn destinations_must_stay_under_var_lib_pew() {
        for destination in [
            "/etc/shadow",
            "/var/lib/pewter/x",
            "/var/lib/pew/../../etc/x",
            "/var/lib/pew//x",
            "/var/lib/pew/",
            "var/lib/pew/x",
        ] {
            let text = manifest(&[entry("a", destination, "0644", false)]);
            let (line, key, message) = rejection(&text);
            assert_eq!(key.as_deref(), Some("file[0].destination"), "{destination}");
            assert_eq!(line, Some(5), "{destination}: {message}");
        }
    }

    #[test]
    fn secrets_must_be_private_and_no_file_world_writable_or_setuid() {
        let (line, key, message) =
            rejection(&manifest(&[entry("a", "/var/lib/pew/a", "0640", true)]));
        assert_eq!((line, key.as_deref()), (Some(8), Some("file[0].mode")));
        assert!(message.contains("owner only"), "{message}");
        assert!(
            Manifest::parse(
                Path::new("m"),
                &manifest(&[entry("a", "/var/lib/pew/a", "0400", true)])
            )
            .is_ok()
        );
        for mode in ["0666", "4755", "1644"] {
            let (_, key, _) = rejection(&manifest(&[entry("a", "/var/lib/pew/a", mode, false)]));
            assert_eq!(key.as_deref(), Some("file[0].mode"), "{mode}");
        }
    }

    #[test]
    fn modes_are_octal_strings() {
        for mode in ["600", "0600"] {
            assert!(
                Manifest::parse(
                    Path::new("m"),
                    &manifest(&[entry("a", "/var/lib/pew/a", mode, false)])
                )
                .is_ok(),
                "{mode}"
            );
        }
        for mode in ["0800", "60", "00600", "rw"] {
            let (_, _, message) =
                rejection(&manifest(&[entry("a", "/var/lib/pew/a", mode, false)]));
            assert!(message.contains("octal"), "{mode}: {message}");
        }
    }

    #[test]
    fn duplicates_and_file_directory_clashes_name_the_later_entry() {
        let twice = manifest(&[
            entry("a", "/var/lib/pew/x", "0644", false),
            entry("b", "/var/lib/pew/x", "0644", false),
        ]);
        let (line, key, message) = rejection(&twice);
        assert_eq!(
            (line, key.as_deref()),
            (Some(14), Some("file[1].destination"))
        );
        assert!(message.contains("installed twice"), "{message}");

        let clash = manifest(&[
            entry("a", "/var/lib/pew/x", "0644", false),
            entry("b", "/var/lib/pew/x/y", "0644", false),
        ]);
        assert!(rejection(&clash).2.contains("cannot both be files"));

        let same_source = manifest(&[
            entry("a", "/var/lib/pew/x", "0644", false),
            entry("a", "/var/lib/pew/y", "0644", false),
        ]);
        assert_eq!(rejection(&same_source).1.as_deref(), Some("file[1].source"));
    }

    #[test]
    fn sources_are_plain_names_in_the_area_and_not_the_manifest() {
        for source in ["../etc/passwd", "sub/dir", "manifest.toml", ""] {
            let (_, key, _) =
                rejection(&manifest(&[entry(source, "/var/lib/pew/a", "0644", false)]));
            assert_eq!(key.as_deref(), Some("file[0].source"), "{source:?}");
        }
    }

    #[test]
    fn owners_groups_hashes_format_and_unknown_keys_are_checked() {
        let bad_owner = manifest(&[entry("a", "/var/lib/pew/a", "0644", false)
            .replace("owner = \"root\"", "owner = \"Root\"")]);
        assert_eq!(rejection(&bad_owner).1.as_deref(), Some("file[0].owner"));
        let bad_hash =
            manifest(&[entry("a", "/var/lib/pew/a", "0644", false).replace(HASH, "abc")]);
        assert!(rejection(&bad_hash).2.contains("64 hex digits"));
        assert_eq!(rejection("format = 2\n").1.as_deref(), Some("format"));
        let unknown = manifest(&[entry("a", "/var/lib/pew/a", "0644", false) + "user = \"x\"\n"]);
        assert!(rejection(&unknown).2.contains("unknown field `user`"));
    }
}
