//! How sandlet writes the files it keeps under its state directory (the
//! module store, the precompile cache, pull records): whole or not at all.
//!
//! A file is written to a temporary file in the same directory, synced, and
//! renamed into place, so readers see the whole file or none. Several
//! processes may share a state directory (a node and `sandlet run`, two
//! `sandlet pull`s), so a temporary file is only known to be a write that
//! never finished once it is older than any write takes
//! ([`STALE_PARTIAL_AGE`]); its owner removes it then.

use std::io::Write;
use std::path::Path;

/// Name prefix of files still being written; whatever carries it after a
/// restart is a write that never finished.
pub const PARTIAL_PREFIX: &str = ".partial-";

/// A new temporary file in `dir`, to be renamed into place when complete.
pub fn partial_file(dir: &Path) -> std::io::Result<tempfile::NamedTempFile> {
    tempfile::Builder::new()
        .prefix(PARTIAL_PREFIX)
        .tempfile_in(dir)
}

/// Whether `name` is a file [`partial_file`] made.
pub fn is_partial(name: &str) -> bool {
    name.starts_with(PARTIAL_PREFIX)
}

/// How old a temporary file must be before it counts as a write that died:
/// an hour, far longer than a write takes (an artifact is complete before
/// its file is made; a download streams into its file, for minutes at
/// most), so another process's write in progress is never taken for one.
pub const STALE_PARTIAL_AGE: std::time::Duration = std::time::Duration::from_secs(60 * 60);

/// Whether `path` (named `name`) is a temporary file left by a write that
/// never finished: a [`partial_file`] not modified for
/// [`STALE_PARTIAL_AGE`]. Unreadable metadata says no.
pub fn is_stale_partial(path: &Path, name: &str) -> bool {
    is_partial(name)
        && std::fs::metadata(path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|modified| modified.elapsed().ok())
            .is_some_and(|age| age > STALE_PARTIAL_AGE)
}

/// Writes `bytes` to `path` through a temporary file in the same directory,
/// synced, and a rename, so readers see the whole file or none. Used for
/// every file sandlet keeps under its state directory.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().expect("state paths have a parent");
    let mut temp = partial_file(dir)?;
    temp.write_all(bytes)?;
    temp.as_file().sync_all()?;
    temp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
