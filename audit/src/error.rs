//! Errors from opening, appending to and reading the audit log.
//!
//! An append that returns any of these did not record the access, so the caller must refuse
//! the query (fail closed). Each variant names the file involved; the io error, where there is
//! one, is the `source`.

use std::io;
use std::path::PathBuf;

/// `Result` with [`AuditError`] as the default error.
pub type Result<T, E = AuditError> = std::result::Result<T, E>;

/// Why the audit log could not be opened, appended to or read.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The audit directory did not exist and could not be created.
    #[error("cannot create audit directory {}", dir.display())]
    CreateDir {
        /// The directory.
        dir: PathBuf,
        /// What the filesystem said.
        #[source]
        source: io::Error,
    },

    /// The lock file could not be opened or locked.
    #[error("cannot lock audit log {}", path.display())]
    Lock {
        /// The lock file, `<dir>/lock`.
        path: PathBuf,
        /// What the filesystem said.
        #[source]
        source: io::Error,
    },

    /// A log file or the directory could not be read.
    #[error("cannot read audit log {}", file.display())]
    Read {
        /// The file or directory.
        file: PathBuf,
        /// What the filesystem said.
        #[source]
        source: io::Error,
    },

    /// A record could not be written durably (disk full, permissions, I/O error). The file was
    /// cut back to its length before the write, so the log stays valid.
    #[error("cannot write audit log {}", file.display())]
    Write {
        /// The file.
        file: PathBuf,
        /// What the filesystem said.
        #[source]
        source: io::Error,
    },

    /// The current file could not be renamed to its rotated name, or the rename not made
    /// durable.
    #[error("cannot rotate audit log {} to {}", from.display(), to.display())]
    Rotate {
        /// The current file, `audit.log`.
        from: PathBuf,
        /// The rotated name.
        to: PathBuf,
        /// What the filesystem said.
        #[source]
        source: io::Error,
    },

    /// A path the log needs as a regular file is something else (a directory, a symlink).
    #[error("{} is not a regular file", file.display())]
    NotAFile {
        /// The path.
        file: PathBuf,
    },

    /// A record the log must build on (or that [`read`](crate::read) was asked for) cannot be
    /// read as a record: appending onto it would extend a chain that does not verify.
    #[error("audit log {} is damaged: {reason} (verify the log to find the first broken record)", file.display())]
    Corrupt {
        /// The file.
        file: PathBuf,
        /// What is wrong, with the line where known.
        reason: String,
    },

    /// The access cannot be recorded faithfully (e.g. a duration that is not a finite number,
    /// which JSON cannot hold).
    #[error("refusing to record an access: {reason}")]
    InvalidAccess {
        /// What is wrong.
        reason: String,
    },
}
