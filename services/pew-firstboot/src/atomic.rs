//! Files replaced so that a power cut at any instant leaves the complete old file or the
//! complete new one, with its final owner and mode from the first byte on: a temporary file
//! beside the destination, written, owned, fsynced, renamed over it, then the directory
//! fsynced so the rename itself survives.
//!
//! pew_daemon::state::write_atomic does the same for service state; this one adds what
//! installing another account's secrets needs: the temporary file is created private (0600)
//! and exclusively, so neither a reader nor a planted symlink ever sees the content, and it
//! gets its owner and mode before it appears under its name.

use std::ffi::OsString;
use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Numeric owner and group of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ownership {
    pub uid: u32,
    pub gid: u32,
}

/// A file being written beside `destination`. [`PendingFile::commit`] puts it in place;
/// dropping it uncommitted removes it.
#[derive(Debug)]
pub struct PendingFile {
    file: File,
    temporary: PathBuf,
    destination: PathBuf,
    committed: bool,
}

impl PendingFile {
    /// Creates the temporary file for `destination`, readable and writable by its creator
    /// only. A temporary left by an interrupted earlier run is removed first.
    pub fn create(destination: &Path) -> io::Result<Self> {
        let temporary = temporary_path(destination)?;
        // remove_file deletes a symlink itself, never its target; create_new then refuses
        // anything that appears in between instead of following it.
        match fs::remove_file(&temporary) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
            _ => {}
        }
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temporary)?;
        Ok(Self {
            file,
            temporary,
            destination: destination.to_owned(),
            committed: false,
        })
    }

    /// The open temporary file, to write the content into.
    pub fn file(&mut self) -> &mut File {
        &mut self.file
    }

    /// Where the content is until [`PendingFile::commit`], e.g. to check what was written.
    pub fn temporary_path(&self) -> &Path {
        &self.temporary
    }

    /// Gives the file its owner and then its exact mode (no umask applies), makes it durable
    /// and renames it over the destination.
    pub fn commit(mut self, ownership: Option<Ownership>, mode: u32) -> io::Result<()> {
        if let Some(Ownership { uid, gid }) = ownership {
            std::os::unix::fs::fchown(&self.file, Some(uid), Some(gid))?;
        }
        // After chown, which may clear set-id bits.
        self.file.set_permissions(Permissions::from_mode(mode))?;
        self.file.sync_all()?;
        fs::rename(&self.temporary, &self.destination)?;
        self.committed = true;
        sync_directory_of(&self.destination)
    }
}

impl Drop for PendingFile {
    fn drop(&mut self) {
        if !self.committed {
            // Best effort: a leftover is removed by the next run's create() anyway.
            let _ = fs::remove_file(&self.temporary);
        }
    }
}

/// Writes `bytes` to `destination` atomically and durably with `mode`, owned by the writer.
pub fn write_file(destination: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let mut pending = PendingFile::create(destination)?;
    io::Write::write_all(pending.file(), bytes)?;
    pending.commit(None, mode)
}

/// Creates directory `path` (0755 before the umask) unless it exists, and makes its creation
/// durable. An existing symlink is refused rather than followed: directories below
/// `/var/lib` may belong to service accounts, and root must not be led to write elsewhere.
/// Returns whether it was created.
pub fn create_directory(path: &Path) -> io::Result<bool> {
    match fs::symlink_metadata(path) {
        Ok(metadata) if metadata.is_dir() => return Ok(false),
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a directory", path.display()),
            ));
        }
        Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
        Err(_) => {}
    }
    DirBuilder::new().mode(0o755).create(path)?;
    sync_directory_of(path)?;
    Ok(true)
}

/// Makes a rename, creation or deletion inside `path`'s directory durable.
pub fn sync_directory_of(path: &Path) -> io::Result<()> {
    let directory = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    File::open(directory)?.sync_all()
}

/// `.<name>.pew-tmp` beside the destination: hidden, and recognisably ours.
fn temporary_path(destination: &Path) -> io::Result<PathBuf> {
    let name = destination.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} names no file", destination.display()),
        )
    })?;
    let mut temporary = OsString::from(".");
    temporary.push(name);
    temporary.push(".pew-tmp");
    Ok(destination.with_file_name(temporary))
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::unix::fs::MetadataExt;

    use super::*;

    #[test]
    fn the_file_appears_complete_with_its_mode_and_no_temporary_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let destination = dir.path().join("machine-id");
        fs::write(&destination, "old\n").unwrap();
        write_file(&destination, b"0123456789abcdef0123456789abcdef\n", 0o444).unwrap();
        assert_eq!(
            fs::read_to_string(&destination).unwrap(),
            "0123456789abcdef0123456789abcdef\n"
        );
        assert_eq!(fs::metadata(&destination).unwrap().mode() & 0o7777, 0o444);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn the_temporary_is_private_while_written_and_owned_as_asked_when_committed() {
        let dir = tempfile::tempdir().unwrap();
        let destination = dir.path().join("key.json");
        let mut pending = PendingFile::create(&destination).unwrap();
        pending.file().write_all(b"{\"secret\": 1}").unwrap();
        let temporary = pending.temporary_path().to_owned();
        assert_eq!(temporary, dir.path().join(".key.json.pew-tmp"));
        assert_eq!(fs::metadata(&temporary).unwrap().mode() & 0o777, 0o600);
        assert!(!destination.exists());
        // Tests cannot give files away; owning them to ourselves exercises the same call.
        let me = fs::metadata(dir.path()).unwrap();
        let ownership = Ownership {
            uid: me.uid(),
            gid: me.gid(),
        };
        pending.commit(Some(ownership), 0o640).unwrap();
        let installed = fs::metadata(&destination).unwrap();
        assert_eq!(installed.mode() & 0o7777, 0o640);
        assert_eq!((installed.uid(), installed.gid()), (me.uid(), me.gid()));
        assert!(!temporary.exists());
    }

    #[test]
    fn an_abandoned_write_leaves_the_old_file_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let destination = dir.path().join("site.toml");
        fs::write(&destination, "old").unwrap();
        let mut pending = PendingFile::create(&destination).unwrap();
        pending.file().write_all(b"half").unwrap();
        drop(pending);
        assert_eq!(fs::read_to_string(&destination).unwrap(), "old");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_planted_symlink_at_the_temporary_name_is_removed_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        fs::write(&target, "must stay").unwrap();
        let destination = dir.path().join("key");
        std::os::unix::fs::symlink(&target, dir.path().join(".key.pew-tmp")).unwrap();
        write_file(&destination, b"secret", 0o600).unwrap();
        assert_eq!(fs::read_to_string(&target).unwrap(), "must stay");
        assert_eq!(fs::read_to_string(&destination).unwrap(), "secret");
    }

    #[test]
    fn directories_are_created_once_and_symlinks_or_files_in_their_place_refused() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("pew");
        assert!(create_directory(&state).unwrap());
        assert_eq!(fs::metadata(&state).unwrap().mode() & 0o022, 0);
        assert!(!create_directory(&state).unwrap());
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&state, &link).unwrap();
        assert_eq!(
            create_directory(&link).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
        fs::write(dir.path().join("file"), "").unwrap();
        assert!(create_directory(&dir.path().join("file")).is_err());
        assert_eq!(
            create_directory(&dir.path().join("missing/child"))
                .unwrap_err()
                .kind(),
            io::ErrorKind::NotFound
        );
    }

    #[test]
    fn a_path_without_a_file_name_is_refused() {
        let error = PendingFile::create(Path::new("/")).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
    }
}
