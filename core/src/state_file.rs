//! How sandlet writes the files it keeps under its state directory (the
//! module store, the precompile cache, pull records): whole or not at all.
//!
//! A file is written to a temporary file in the same directory, synced, and
//! renamed into place, so readers see the whole file or none; whatever
//! still carries the temporary prefix after a restart is a write that never
//! finished, and is removed by its owner.

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
