//! Installing the provisioning area (`provision/` on the boot partition, format in
//! pew_image::provisioning) into `/var/lib/pew`, then removing it from the boot partition.
//!
//! All or nothing up to the installation: the manifest is parsed, every owner and group
//! resolved and every file's sha256 checked before the first byte is written, so a bad manifest
//! or a damaged file installs nothing and removes nothing, and the error says which file and
//! why. Each file is then written beside its destination (private while written), checked
//! again, given its owner and mode, and renamed into place. Only when all are installed does
//! the boot partition become writable for the removals, the manifest last and each removal
//! made durable before the next: a power cut anywhere leaves the manifest in place and the next
//! boot repeats the installation. Files whose source is already gone but whose destination
//! holds the listed content count as installed, so that repeat always ends.
//!
//! Contents are never logged, nor their digests (a digest of a short secret can be guessed).

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use pew_daemon::config::ConfigError;
use pew_image::digest::Sha256Digest;
use pew_image::provisioning::{InstallAction, MANIFEST_FILE, Manifest, PROVISION_DIRECTORY};
use tracing::info;

use crate::accounts::{Accounts, AccountsError};
use crate::atomic::{self, Ownership, PendingFile};
use crate::command::{CommandError, Invocation, Runner};
use crate::data::DataError;
use crate::under;

/// The boot partition, mounted, as the installation needs it.
pub trait ProvisioningArea {
    /// Its root directory (holding `provision/`).
    fn directory(&self) -> &Path;
    /// Makes it writable, for the removals. Called only once everything is installed.
    fn make_writable(&mut self) -> Result<(), CommandError>;
}

/// What [`consume`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provisioned {
    /// No manifest: nothing was dropped on the card, or it was installed at an earlier boot.
    NothingToDo,
    Installed {
        /// Files written this time.
        written: usize,
        /// Files whose source an interrupted earlier run had already removed.
        already_installed: usize,
    },
}

/// Why the provisioning area was not (completely) installed.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("not installing: {0}")]
    NotOnData(#[from] DataError),
    #[error(transparent)]
    Manifest(#[from] ConfigError),
    #[error("{destination}: {source}")]
    Account {
        destination: String,
        #[source]
        source: AccountsError,
    },
    #[error(transparent)]
    Accounts(#[from] AccountsError),
    #[error(
        "{source_file} does not match its sha256 in the manifest: damaged or replaced, nothing installed"
    )]
    Mismatch { source_file: String },
    #[error(
        "{source_file} is missing and {destination} does not hold its content: nothing installed"
    )]
    Missing {
        source_file: String,
        destination: String,
    },
    #[error(
        "{destination} did not read back as {source_file}'s content (read error on the card?); \
         left as it was"
    )]
    CopyMismatch {
        source_file: String,
        destination: String,
    },
    #[error("sha256sum printed {0:?}")]
    DigestOutput(String),
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// One file, checked and ready to install.
struct CheckedFile<'a> {
    /// As written in the manifest (`provision/<name>`), for messages.
    source_name: &'a str,
    source: PathBuf,
    /// As written in the manifest (absolute on the node), for messages.
    destination_name: &'a str,
    destination: PathBuf,
    owner: &'a str,
    group: &'a str,
    ownership: Ownership,
    mode: u32,
    sha256: Sha256Digest,
    already_installed: bool,
}

/// Installs the area's files under `root` (`/` on the node) and removes them from the area.
pub fn consume(
    area: &mut dyn ProvisioningArea,
    root: &Path,
    runner: &dyn Runner,
) -> Result<Provisioned, ProvisionError> {
    let manifest_path = area
        .directory()
        .join(PROVISION_DIRECTORY)
        .join(MANIFEST_FILE);
    let text = match fs::read_to_string(&manifest_path) {
        Ok(text) => text,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            return Ok(Provisioned::NothingToDo);
        }
        Err(source) => {
            return Err(ProvisionError::Io {
                action: "read",
                path: manifest_path,
                source,
            });
        }
    };
    let manifest = Manifest::parse(&manifest_path, &text)?;
    let plan = manifest.install_plan();
    let files = check_all(&plan, area.directory(), root, runner)?;

    for action in &plan {
        if let InstallAction::CreateDirectory { path } = action {
            let directory = under(root, path);
            atomic::create_directory(&directory).map_err(io_error("create", &directory))?;
        }
    }
    for file in files.iter().filter(|file| !file.already_installed) {
        install(file, runner)?;
    }

    area.make_writable()?;
    for action in &plan {
        if let InstallAction::RemoveFromBootPartition { path } = action {
            remove(&area.directory().join(path))?;
        }
    }
    let already_installed = files.iter().filter(|file| file.already_installed).count();
    Ok(Provisioned::Installed {
        written: files.len() - already_installed,
        already_installed,
    })
}

/// Resolves every owner and group and checks every file, writing nothing.
fn check_all<'a>(
    plan: &'a [InstallAction],
    area: &Path,
    root: &Path,
    runner: &dyn Runner,
) -> Result<Vec<CheckedFile<'a>>, ProvisionError> {
    let accounts = Accounts::load(root)?;
    let mut files = Vec::new();
    for action in plan {
        let InstallAction::InstallFile {
            source,
            destination,
            owner,
            group,
            mode,
            sha256,
        } = action
        else {
            continue;
        };
        let account_error = |source| ProvisionError::Account {
            destination: destination.clone(),
            source,
        };
        let mut file = CheckedFile {
            source_name: source,
            source: area.join(source),
            destination_name: destination,
            destination: under(root, destination),
            owner,
            group,
            ownership: Ownership {
                uid: accounts.uid(owner).map_err(account_error)?,
                gid: accounts.gid(group).map_err(account_error)?,
            },
            mode: *mode,
            sha256: *sha256,
            already_installed: false,
        };
        file.already_installed = is_already_installed(&file, runner)?;
        files.push(file);
    }
    Ok(files)
}

/// `false` when the source is there and intact; `true` when it is gone because an
/// interrupted earlier run installed the file and removed it; an error otherwise.
fn is_already_installed(
    file: &CheckedFile<'_>,
    runner: &dyn Runner,
) -> Result<bool, ProvisionError> {
    if file.source.exists() {
        return if sha256(runner, &file.source)? == file.sha256 {
            Ok(false)
        } else {
            Err(ProvisionError::Mismatch {
                source_file: file.source_name.to_owned(),
            })
        };
    }
    if file.destination.is_file() && sha256(runner, &file.destination)? == file.sha256 {
        Ok(true)
    } else {
        Err(ProvisionError::Missing {
            source_file: file.source_name.to_owned(),
            destination: file.destination_name.to_owned(),
        })
    }
}

fn install(file: &CheckedFile<'_>, runner: &dyn Runner) -> Result<(), ProvisionError> {
    let install_error = io_error("install", &file.destination);
    let mut source = File::open(&file.source).map_err(io_error("open", &file.source))?;
    let mut pending = PendingFile::create(&file.destination).map_err(&install_error)?;
    io::copy(&mut source, pending.file()).map_err(&install_error)?;
    // What is checked is what will be renamed into place, not what was read earlier.
    if sha256(runner, pending.temporary_path())? != file.sha256 {
        return Err(ProvisionError::CopyMismatch {
            source_file: file.source_name.to_owned(),
            destination: file.destination_name.to_owned(),
        });
    }
    pending
        .commit(Some(file.ownership), file.mode)
        .map_err(install_error)?;
    info!(
        "installed {} ({}:{} {:04o})",
        file.destination_name, file.owner, file.group, file.mode
    );
    Ok(())
}

/// Removes a file from the boot partition, durably before anything else is removed.
fn remove(path: &Path) -> Result<(), ProvisionError> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(ProvisionError::Io {
                action: "remove",
                path: path.to_owned(),
                source,
            });
        }
    }
    atomic::sync_directory_of(path).map_err(io_error("sync the directory of", path))
}

/// sha256sum's digest of `path` (no hashing crate in the workspace; the tool is essential).
fn sha256(runner: &dyn Runner, path: &Path) -> Result<Sha256Digest, ProvisionError> {
    let output = runner.run(&Invocation::new("sha256sum", [path]))?;
    // A line starts with `\` when the file name had to be escaped.
    output
        .trim_start_matches('\\')
        .split_whitespace()
        .next()
        .and_then(|digest| digest.parse().ok())
        .ok_or(ProvisionError::DigestOutput(output))
}

fn io_error(action: &'static str, path: &Path) -> impl Fn(io::Error) -> ProvisionError {
    let path = path.to_owned();
    move |source| ProvisionError::Io {
        action,
        path: path.clone(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;
    use crate::command::SystemRunner;
    use crate::command::testing::failure;

    /// A boot partition in a directory; "writable" is a flag the test checks.
    struct FakeArea {
        directory: tempfile::TempDir,
        made_writable: bool,
    }

    impl ProvisioningArea for FakeArea {
        fn directory(&self) -> &Path {
            self.directory.path()
        }

        fn make_writable(&mut self) -> Result<(), CommandError> {
            self.made_writable = true;
            Ok(())
        }
    }

    struct Node {
        root: tempfile::TempDir,
        area: FakeArea,
    }

    const KEY: &str = "{\"private\": \"5d2f…\"}\n";
    const SITE: &str = "[site]\nname = \"roof\"\n";

    fn digest(content: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x");
        fs::write(&path, content).unwrap();
        sha256(&SystemRunner, &path).unwrap().to_string()
    }

    /// A node whose accounts map `root` and `pew` to the test's own ids (tests cannot give
    /// files away), with `files` (name, content, destination, mode) dropped on the card.
    fn node(files: &[(&str, &str, &str, &str)]) -> Node {
        let root = tempfile::tempdir().unwrap();
        let me = fs::metadata(root.path()).unwrap();
        fs::create_dir_all(root.path().join("etc")).unwrap();
        fs::create_dir_all(root.path().join("var/lib")).unwrap();
        fs::write(
            root.path().join("etc/passwd"),
            format!("root:x:{}:{}::/root:/bin/sh\n", me.uid(), me.gid()),
        )
        .unwrap();
        fs::write(
            root.path().join("etc/group"),
            format!("root:x:{}:\npew:x:{}:\n", me.gid(), me.gid()),
        )
        .unwrap();
        let area = FakeArea {
            directory: tempfile::tempdir().unwrap(),
            made_writable: false,
        };
        let provision = area.directory().join(PROVISION_DIRECTORY);
        fs::create_dir(&provision).unwrap();
        let mut manifest = String::from("format = 1\n");
        for (name, content, destination, mode) in files {
            fs::write(provision.join(name), content).unwrap();
            let secret = *mode == "0600";
            manifest += &format!(
                "\n[[file]]\nsource = \"{name}\"\ndestination = \"{destination}\"\n\
                 owner = \"root\"\ngroup = \"pew\"\nmode = \"{mode}\"\nsecret = {secret}\n\
                 sha256 = \"{}\"\n",
                digest(content)
            );
        }
        fs::write(provision.join(MANIFEST_FILE), manifest).unwrap();
        Node { root, area }
    }

    fn two_files() -> Node {
        node(&[
            (
                "worker-key.json",
                KEY,
                "/var/lib/pew/worker/key.json",
                "0600",
            ),
            ("site.toml", SITE, "/var/lib/pew/site.toml", "0644"),
        ])
    }

    fn installed(node: &Node, path: &str) -> (String, u32) {
        let path = node.root.path().join(path);
        (
            fs::read_to_string(&path).unwrap(),
            fs::metadata(&path).unwrap().mode() & 0o7777,
        )
    }

    fn area_files(node: &Node) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(node.area.directory().join(PROVISION_DIRECTORY))
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn files_are_installed_with_modes_and_then_removed_from_the_card() {
        let mut node = two_files();
        let result = consume(&mut node.area, node.root.path(), &SystemRunner).unwrap();
        assert_eq!(
            result,
            Provisioned::Installed {
                written: 2,
                already_installed: 0
            }
        );
        assert_eq!(
            installed(&node, "var/lib/pew/worker/key.json"),
            (KEY.to_owned(), 0o600)
        );
        assert_eq!(
            installed(&node, "var/lib/pew/site.toml"),
            (SITE.to_owned(), 0o644)
        );
        let worker = fs::metadata(node.root.path().join("var/lib/pew/worker")).unwrap();
        assert!(worker.is_dir() && worker.mode() & 0o022 == 0);
        assert!(node.area.made_writable);
        assert!(area_files(&node).is_empty());
        // No temporary left beside the installed files.
        assert_eq!(
            fs::read_dir(node.root.path().join("var/lib/pew/worker"))
                .unwrap()
                .count(),
            1
        );
    }

    #[test]
    fn a_card_without_a_manifest_is_left_alone() {
        let mut node = two_files();
        fs::remove_file(node.area.directory().join("provision/manifest.toml")).unwrap();
        assert_eq!(
            consume(&mut node.area, node.root.path(), &SystemRunner).unwrap(),
            Provisioned::NothingToDo
        );
        assert!(!node.area.made_writable);
        assert_eq!(area_files(&node), ["site.toml", "worker-key.json"]);
    }

    #[test]
    fn one_damaged_file_installs_and_removes_nothing() {
        let mut node = two_files();
        fs::write(
            node.area.directory().join("provision/site.toml"),
            "[site]\nname = \"roog\"\n",
        )
        .unwrap();
        let error = consume(&mut node.area, node.root.path(), &SystemRunner).unwrap_err();
        assert_eq!(
            error.to_string(),
            "provision/site.toml does not match its sha256 in the manifest: damaged or \
             replaced, nothing installed"
        );
        assert!(!node.root.path().join("var/lib/pew").exists());
        assert!(!node.area.made_writable);
        assert_eq!(
            area_files(&node),
            ["manifest.toml", "site.toml", "worker-key.json"]
        );
    }

    #[test]
    fn a_bad_manifest_names_file_line_and_key_and_changes_nothing() {
        let mut node = two_files();
        let manifest = node.area.directory().join("provision/manifest.toml");
        let text = fs::read_to_string(&manifest).unwrap();
        fs::write(
            &manifest,
            text.replacen("\"/var/lib/pew/site.toml\"", "\"/etc/shadow\"", 1),
        )
        .unwrap();
        let error = consume(&mut node.area, node.root.path(), &SystemRunner).unwrap_err();
        let message = error.to_string();
        assert!(
            message.starts_with(&format!(
                "{} line 14 key `file[1].destination`",
                manifest.display()
            )),
            "{message}"
        );
        assert!(!node.root.path().join("var/lib/pew").exists());
        assert_eq!(area_files(&node).len(), 3);
    }

    #[test]
    fn an_unknown_owner_is_named_before_anything_is_written() {
        let mut node = two_files();
        fs::write(node.root.path().join("etc/group"), "root:x:0:\n").unwrap();
        let error = consume(&mut node.area, node.root.path(), &SystemRunner).unwrap_err();
        assert_eq!(
            error.to_string(),
            "/var/lib/pew/site.toml: no group \"pew\" in /etc/group"
        );
        assert!(!node.root.path().join("var/lib/pew").exists());
    }

    #[test]
    fn a_run_cut_short_after_some_removals_finishes_at_the_next_boot() {
        let mut node = two_files();
        consume(&mut node.area, node.root.path(), &SystemRunner).unwrap();
        // Replay the state a power cut leaves after site.toml was removed: the manifest and
        // worker-key.json still on the card.
        let mut replay = two_files();
        replay.root = node.root;
        fs::remove_file(replay.area.directory().join("provision/site.toml")).unwrap();
        let result = consume(&mut replay.area, replay.root.path(), &SystemRunner).unwrap();
        assert_eq!(
            result,
            Provisioned::Installed {
                written: 1,
                already_installed: 1
            }
        );
        assert!(area_files(&replay).is_empty());
    }

    #[test]
    fn a_missing_source_that_was_never_installed_is_an_error() {
        let mut node = two_files();
        fs::remove_file(node.area.directory().join("provision/worker-key.json")).unwrap();
        let error = consume(&mut node.area, node.root.path(), &SystemRunner).unwrap_err();
        assert!(
            matches!(error, ProvisionError::Missing { ref destination, .. } if destination == "/var/lib/pew/worker/key.json"),
            "{error}"
        );
        assert!(!node.area.made_writable);
    }

    #[test]
    fn a_symlinked_state_directory_is_refused_not_followed() {
        let mut node = two_files();
        let elsewhere = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), node.root.path().join("var/lib/pew")).unwrap();
        let error = consume(&mut node.area, node.root.path(), &SystemRunner).unwrap_err();
        assert!(error.to_string().contains("not a directory"), "{error}");
        assert_eq!(fs::read_dir(elsewhere.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_copy_that_reads_back_differently_is_not_renamed_into_place() {
        let mut node = two_files();
        // sha256sum answers correctly for the card, wrongly for the written copies.
        let card = node.area.directory().to_owned();
        let runner =
            crate::command::testing::RecordingRunner::new(move |invocation: &Invocation| {
                let path = Path::new(&invocation.args[0]);
                if path.starts_with(&card) {
                    SystemRunner.run(invocation)
                } else {
                    Ok(format!("{}  {}\n", "0".repeat(64), path.display()))
                }
            });
        let error = consume(&mut node.area, node.root.path(), &runner).unwrap_err();
        assert!(
            matches!(error, ProvisionError::CopyMismatch { .. }),
            "{error}"
        );
        assert!(!node.root.path().join("var/lib/pew/site.toml").exists());
        assert_eq!(
            fs::read_dir(node.root.path().join("var/lib/pew"))
                .unwrap()
                .count(),
            1
        );
        assert!(!node.area.made_writable);
    }

    #[test]
    fn a_failing_remount_keeps_every_file_on_the_card() {
        struct ReadOnlyArea(tempfile::TempDir);
        impl ProvisioningArea for ReadOnlyArea {
            fn directory(&self) -> &Path {
                self.0.path()
            }
            fn make_writable(&mut self) -> Result<(), CommandError> {
                Err(failure(
                    &Invocation::new("mount", ["-o", "remount,rw"]),
                    "read-only card",
                ))
            }
        }
        let node = two_files();
        let mut area = ReadOnlyArea(node.area.directory);
        let error = consume(&mut area, node.root.path(), &SystemRunner).unwrap_err();
        assert!(error.to_string().contains("read-only card"), "{error}");
        let remaining = fs::read_dir(area.0.path().join("provision"))
            .unwrap()
            .count();
        assert_eq!(remaining, 3);
    }

    #[test]
    fn sha256sum_output_is_parsed_including_escaped_names() {
        let digest = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let runner = crate::command::testing::RecordingRunner::new(move |_: &Invocation| {
            Ok(format!("\\{digest}  /run/a\\nb\n"))
        });
        assert_eq!(
            sha256(&runner, Path::new("/run/a\nb")).unwrap().to_string(),
            digest
        );
        let garbage =
            crate::command::testing::RecordingRunner::new(|_: &Invocation| Ok("?".into()));
        assert!(matches!(
            sha256(&garbage, Path::new("/x")),
            Err(ProvisionError::DigestOutput(_))
        ));
    }
}
