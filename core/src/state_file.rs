//! The one way sandlet writes a whole file: the module store, the
//! precompile cache, pull records, the privacy ledger, certificates and
//! kubeconfigs all go through [`AtomicFile`] (or [`write_atomically`]).
//!
//! A file is written to a temporary file in the same directory, given its
//! mode (owner read and write only: state files hold keys, budgets and
//! modules), synced, renamed into place, and the directory synced, so
//! readers see the whole file or none and a crash after `commit` returns
//! keeps it. Several processes may share a state directory (a node and
//! `sandlet run`, two `sandlet pull`s), so a temporary file is only known
//! to be a write that never finished once it is older than any write takes
//! ([`STALE_PARTIAL_AGE`]); its owner removes it then.
//!
//! This is the only IO in `sandlet-core`. It never locks: callers that
//! read, change and write a file (the ledger) hold their own lock.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Name prefix of files still being written; whatever carries it after a
/// restart is a write that never finished.
pub const PARTIAL_PREFIX: &str = ".partial-";

/// The mode of every file written here: its owner's alone.
pub const FILE_MODE: u32 = 0o600;

/// Whether `name` is the name of an [`AtomicFile`] still being written.
pub fn is_partial(name: &str) -> bool {
    name.starts_with(PARTIAL_PREFIX)
}

/// How old a temporary file must be before it counts as a write that died:
/// an hour, far longer than a write takes (an artifact is complete before
/// its file is made; a download streams into its file, for minutes at
/// most), so another process's write in progress is never taken for one.
pub const STALE_PARTIAL_AGE: std::time::Duration = std::time::Duration::from_secs(60 * 60);

/// Whether `path` (named `name`) is a temporary file left by a write that
/// never finished: a partial file not modified for [`STALE_PARTIAL_AGE`].
/// Unreadable metadata says no.
pub fn is_stale_partial(path: &Path, name: &str) -> bool {
    is_partial(name)
        && std::fs::metadata(path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|modified| modified.elapsed().ok())
            .is_some_and(|age| age > STALE_PARTIAL_AGE)
}

/// A whole file on its way to `path`: written through [`Write`], put in
/// place by [`AtomicFile::commit`]. Dropped without a commit, it leaves
/// nothing behind.
pub struct AtomicFile {
    temp: tempfile::NamedTempFile,
    path: PathBuf,
}

impl AtomicFile {
    /// Starts a file that will replace `path` (which need not exist) when
    /// committed; the temporary file is in `path`'s directory.
    pub fn create(path: &Path) -> std::io::Result<AtomicFile> {
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let temp = tempfile::Builder::new()
            .prefix(PARTIAL_PREFIX)
            .permissions(std::fs::Permissions::from_mode(FILE_MODE))
            .tempfile_in(dir)?;
        Ok(AtomicFile {
            temp,
            path: path.to_owned(),
        })
    }

    /// Where the bytes are while they are written (for messages).
    pub fn temporary_path(&self) -> &Path {
        self.temp.path()
    }

    /// Syncs the file, renames it to its path and syncs the directory.
    pub fn commit(self) -> std::io::Result<()> {
        self.temp.as_file().sync_all()?;
        let dir = self.temp.path().parent().map(Path::to_owned);
        self.temp.persist(&self.path).map_err(|e| e.error)?;
        if let Some(dir) = dir {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.temp.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.temp.flush()
    }
}

/// Writes `bytes` to `path` whole or not at all (an [`AtomicFile`]).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = AtomicFile::create(path)?;
    file.write_all(bytes)?;
    file.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_committed_file_is_whole_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(&path, b"old").unwrap();
        write_atomically(&path, b"new contents").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new contents");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, FILE_MODE);
        // Nothing else is left in the directory.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn an_uncommitted_file_leaves_the_old_one_and_no_partial() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.json");
        std::fs::write(&path, b"old").unwrap();
        let mut file = AtomicFile::create(&path).unwrap();
        file.write_all(b"half").unwrap();
        let temporary = file.temporary_path().to_owned();
        assert!(is_partial(
            &temporary.file_name().unwrap().to_string_lossy()
        ));
        drop(file);
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert!(!temporary.exists());
    }

    #[test]
    fn a_file_in_a_missing_directory_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing/state.json");
        let e = write_atomically(&path, b"x").unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
    }
}
