//! A machine ID that stays the same across boots although `/etc` is read-only.
//!
//! The image ships an empty `/etc/machine-id`. systemd then generates a transient ID at each
//! boot, writes it to `/run/machine-id` and binds that over `/etc/machine-id` (machine-id(5);
//! an empty file is not a "first boot", so no first-boot units run). Early in every boot,
//! once the data partition is mounted:
//!
//! - first boot (nothing saved yet): the transient ID is saved to `/data/etc/machine-id`;
//! - later boots: the saved ID is copied to `/run/pew-machine-id` and bound read-only over
//!   `/etc/machine-id`. A copy in RAM rather than the file on data, so the bind does not keep
//!   the data partition busy at shutdown.
//!
//! journald is the one daemon already running by then, and it chose its journal directory
//! (`/var/log/journal/<machine-id>`) from the transient ID. Left so, every boot would open a
//! new directory that `journalctl` never shows and journald never vacuums, until data is full.
//! So journald is restarted whenever the ID changed; it is ordered before the journal flush,
//! which then copies the early-boot messages into the right directory.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use tracing::{info, warn};

use crate::atomic;
use crate::command::{CommandError, Invocation, Runner};
use crate::under;

/// The ID systemd uses, as seen by every program.
pub const MACHINE_ID: &str = "/etc/machine-id";
/// Where it is kept across boots.
pub const SAVED_MACHINE_ID: &str = "/data/etc/machine-id";
/// The RAM copy bound over [`MACHINE_ID`].
pub const RUNTIME_MACHINE_ID: &str = "/run/pew-machine-id";
const JOURNALD: &str = "systemd-journald.service";

/// A machine ID: 128 bits as 32 lowercase hex digits, not all zero (machine-id(5)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineId(String);

impl FromStr for MachineId {
    type Err = ();

    /// Accepts the file's content: the digits, optionally followed by a newline.
    fn from_str(text: &str) -> Result<Self, ()> {
        let digits = text.strip_suffix('\n').unwrap_or(text);
        let hex = digits.len() == 32 && digits.bytes().all(|b| b.is_ascii_hexdigit());
        if !hex || digits.bytes().all(|b| b == b'0') {
            return Err(());
        }
        Ok(Self(digits.to_ascii_lowercase()))
    }
}

impl fmt::Display for MachineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the data partition holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Saved {
    Missing,
    Valid(MachineId),
    /// Present but not an ID (a damaged card); the reason is for the log.
    Corrupt(String),
}

/// What to do about the ID this boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Keep the running ID and save it (first boot, or the saved one was unreadable).
    Save(MachineId),
    /// The running ID already is the saved one (e.g. passed as `systemd.machine_id=`).
    Nothing,
    /// Replace the running, transient ID with the saved one.
    Adopt(MachineId),
}

/// Why the ID could not be kept.
#[derive(Debug, thiserror::Error)]
pub enum MachineIdError {
    #[error(
        "{MACHINE_ID} holds no valid ID and none is saved on the data partition: systemd should \
         have installed a transient one"
    )]
    NoId,
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Command(#[from] CommandError),
}

/// The pure decision.
pub fn decide(running: Option<&MachineId>, saved: &Saved) -> Result<Action, MachineIdError> {
    match (running, saved) {
        (Some(running), Saved::Valid(saved)) if running == saved => Ok(Action::Nothing),
        (_, Saved::Valid(saved)) => Ok(Action::Adopt(saved.clone())),
        (Some(running), Saved::Missing | Saved::Corrupt(_)) => Ok(Action::Save(running.clone())),
        (None, Saved::Missing | Saved::Corrupt(_)) => Err(MachineIdError::NoId),
    }
}

/// Makes the machine ID the saved one, saving it first if this is the first boot. `root` is
/// `/` on the node.
pub fn keep(root: &Path, runner: &dyn Runner) -> Result<Action, MachineIdError> {
    let running = read_id(&under(root, MACHINE_ID))?;
    let saved_path = under(root, SAVED_MACHINE_ID);
    let saved = match read_id(&saved_path) {
        Ok(Some(id)) => Saved::Valid(id),
        Ok(None) if saved_path.exists() => Saved::Corrupt("not a machine ID".to_owned()),
        Ok(None) => Saved::Missing,
        Err(error) => Saved::Corrupt(error.to_string()),
    };
    let action = decide(running.as_ref(), &saved)?;
    match &action {
        Action::Save(id) => {
            if let Saved::Corrupt(reason) = &saved {
                let aside = saved_path.with_extension("corrupt");
                warn!(
                    "{SAVED_MACHINE_ID} is unusable ({reason}); kept as {} and replaced: this \
                     node's machine ID changes to {id}",
                    aside.display()
                );
                fs::rename(&saved_path, &aside).map_err(io_error("move aside", &saved_path))?;
            }
            let directory = saved_path.parent().unwrap_or(root);
            atomic::create_directory(directory).map_err(io_error("create", directory))?;
            atomic::write_file(&saved_path, format!("{id}\n").as_bytes(), 0o444)
                .map_err(io_error("write", &saved_path))?;
            info!("machine ID {id} saved to {SAVED_MACHINE_ID}");
        }
        Action::Nothing => info!("machine ID {} already in use", running_or_blank(&running)),
        Action::Adopt(id) => {
            let copy = under(root, RUNTIME_MACHINE_ID);
            atomic::write_file(&copy, format!("{id}\n").as_bytes(), 0o444)
                .map_err(io_error("write", &copy))?;
            runner.run(&bind_read_only(&copy, &under(root, MACHINE_ID)))?;
            // --no-block: the restart job is queued before this unit ends, so the journal
            // flush, ordered after both, still waits for journald's new start.
            runner.run(&Invocation::new(
                "systemctl",
                ["--no-block", "restart", JOURNALD],
            ))?;
            info!(
                "machine ID {id} restored from {SAVED_MACHINE_ID} (transient one was {})",
                running_or_blank(&running)
            );
        }
    }
    Ok(action)
}

fn bind_read_only(source: &Path, target: &Path) -> Invocation {
    Invocation::new(
        "mount",
        [
            "--bind".as_ref(),
            "-o".as_ref(),
            "ro".as_ref(),
            source.as_os_str(),
            target.as_os_str(),
        ],
    )
}

/// `Ok(None)` when the file is missing, empty or not an ID.
fn read_id(path: &Path) -> Result<Option<MachineId>, MachineIdError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(text.parse().ok()),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(MachineIdError::Io {
            action: "read",
            path: path.to_owned(),
            source,
        }),
    }
}

fn running_or_blank(running: &Option<MachineId>) -> String {
    running
        .as_ref()
        .map_or_else(|| "missing".to_owned(), ToString::to_string)
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> MachineIdError {
    let path = path.to_owned();
    move |source| MachineIdError::Io {
        action,
        path,
        source,
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;
    use crate::command::testing::silent;

    const TRANSIENT: &str = "5bd1c2f54a0e4a4bb0f2e5a1d3c7e911";
    const SAVED: &str = "0f4a9c2e7d3b4e1f8a6c5d2b1e0f9a87";

    fn id(text: &str) -> MachineId {
        text.parse().unwrap()
    }

    fn node(running: &str) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        for dir in ["etc", "run", "data"] {
            fs::create_dir(root.path().join(dir)).unwrap();
        }
        fs::write(root.path().join("etc/machine-id"), running).unwrap();
        root
    }

    #[test]
    fn ids_are_32_hex_digits_not_all_zero() {
        assert_eq!(id(&format!("{TRANSIENT}\n")).to_string(), TRANSIENT);
        assert_eq!(id(&TRANSIENT.to_uppercase()).to_string(), TRANSIENT);
        for bad in [
            "",
            "\n",
            "uninitialized\n",
            &TRANSIENT[1..],
            &"0".repeat(32),
        ] {
            assert!(bad.parse::<MachineId>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_decision_covers_every_case() {
        let (running, saved) = (id(TRANSIENT), id(SAVED));
        assert_eq!(
            decide(Some(&running), &Saved::Missing).unwrap(),
            Action::Save(running.clone())
        );
        assert_eq!(
            decide(Some(&running), &Saved::Valid(saved.clone())).unwrap(),
            Action::Adopt(saved.clone())
        );
        assert_eq!(
            decide(None, &Saved::Valid(saved.clone())).unwrap(),
            Action::Adopt(saved.clone())
        );
        assert_eq!(
            decide(Some(&saved), &Saved::Valid(saved.clone())).unwrap(),
            Action::Nothing
        );
        assert_eq!(
            decide(Some(&running), &Saved::Corrupt("x".into())).unwrap(),
            Action::Save(running.clone())
        );
        assert!(matches!(
            decide(None, &Saved::Missing),
            Err(MachineIdError::NoId)
        ));
    }

    #[test]
    fn first_boot_saves_the_transient_id_read_only_and_changes_nothing_running() {
        let root = node(&format!("{TRANSIENT}\n"));
        let runner = silent();
        assert_eq!(
            keep(root.path(), &runner).unwrap(),
            Action::Save(id(TRANSIENT))
        );
        let saved = root.path().join("data/etc/machine-id");
        assert_eq!(
            fs::read_to_string(&saved).unwrap(),
            format!("{TRANSIENT}\n")
        );
        assert_eq!(fs::metadata(&saved).unwrap().mode() & 0o777, 0o444);
        assert!(runner.log.borrow().is_empty());
    }

    #[test]
    fn a_later_boot_binds_the_saved_id_and_restarts_journald() {
        let root = node(&format!("{TRANSIENT}\n"));
        fs::create_dir(root.path().join("data/etc")).unwrap();
        fs::write(
            root.path().join("data/etc/machine-id"),
            format!("{SAVED}\n"),
        )
        .unwrap();
        let runner = silent();
        assert_eq!(
            keep(root.path(), &runner).unwrap(),
            Action::Adopt(id(SAVED))
        );
        let copy = root.path().join("run/pew-machine-id");
        assert_eq!(fs::read_to_string(&copy).unwrap(), format!("{SAVED}\n"));
        assert_eq!(
            runner.command_lines(),
            [
                format!(
                    "mount --bind -o ro {} {}",
                    copy.display(),
                    root.path().join("etc/machine-id").display()
                ),
                "systemctl --no-block restart systemd-journald.service".to_owned(),
            ]
        );
    }

    #[test]
    fn a_damaged_saved_id_is_kept_aside_and_replaced_by_the_running_one() {
        let root = node(TRANSIENT);
        fs::create_dir(root.path().join("data/etc")).unwrap();
        fs::write(root.path().join("data/etc/machine-id"), "\0\0\0garbage").unwrap();
        assert_eq!(
            keep(root.path(), &silent()).unwrap(),
            Action::Save(id(TRANSIENT))
        );
        assert_eq!(
            fs::read(root.path().join("data/etc/machine-id.corrupt")).unwrap(),
            b"\0\0\0garbage"
        );
        assert_eq!(
            fs::read_to_string(root.path().join("data/etc/machine-id")).unwrap(),
            format!("{TRANSIENT}\n")
        );
    }

    #[test]
    fn a_running_id_equal_to_the_saved_one_needs_nothing() {
        let root = node(SAVED);
        fs::create_dir(root.path().join("data/etc")).unwrap();
        fs::write(root.path().join("data/etc/machine-id"), SAVED).unwrap();
        let runner = silent();
        assert_eq!(keep(root.path(), &runner).unwrap(), Action::Nothing);
        assert!(runner.log.borrow().is_empty());
    }
}
