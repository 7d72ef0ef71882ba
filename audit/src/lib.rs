//! The station's audit log: an append-only, hash-chained record of every data access.
//!
//! Every data query, whether from a guest algorithm, a pod on the node or the `sandlet query`
//! CLI, gets one [`Record`]: when, which station, who asked ([`Caller`]), which datasets, the
//! SQL, a fingerprint of the checked plan, the [`Decision`] (answered, or the refusal case and
//! rule), rows returned and duration. The caller appends the record with [`AuditLog::append`]
//! *before* it returns the answer, and refuses the query when the append fails: no answer
//! without its record.
//!
//! # What this crate owns
//!
//! - The on-disk format below, and the only code that writes it ([`AuditLog`]).
//! - Checking the chain ([`verify`]) and reading it back for people ([`read`], [`render_table`],
//!   [`parse_since`]).
//!
//! # What it must never do
//!
//! - Rewrite or delete a record that was acknowledged. The only bytes it ever removes are an
//!   unacknowledged, incomplete final line (a write cut short by a crash or a full disk).
//! - Acknowledge a record before it is on stable storage (`fsync`).
//! - Decide whether a query is allowed, or know about Kubernetes, wasm or the data engine: callers
//!   describe the access in plain strings; this crate only records it.
//!
//! # On-disk format
//!
//! The log lives in one directory, `<state dir>/audit/` by convention (mode 0700, files 0600):
//!
//! - `audit.log`: the current file, appended to.
//! - `audit-<first seq, 12 digits zero-padded>.log`: rotated files, e.g. `audit-000000000001.log`.
//!   Lexical order of the names is chain order (up to 10^12 records; readers sort by the number,
//!   so the order holds beyond that too). `audit.log` comes after all of them.
//! - `lock`: an empty file that appenders lock exclusively (`flock`) around each append, so
//!   several processes (the node and `sandlet query`) can share one directory.
//!
//! Each file holds one JSON object per line, each line ending in `\n`. A record's body `B` is
//! the compact JSON serialisation of these fields, in this order (absent values are `null`):
//!
//! ```text
//! seq, prev, time, station, via, namespace, pod, pod_uid, service_account, module_digest,
//! datasets, sql, plan_fingerprint, decision, rule, reason, rows, duration_ms
//! ```
//!
//! `seq` counts records from 1 across all files; `prev` is the previous record's hash (64 zeros
//! for the first record); `time` is stamped by the log itself, RFC 3339 UTC with milliseconds
//! (`2026-12-02T13:20:01.123Z`); `decision` is one of `answered`, `not-granted`, `denied`,
//! `invalid`, `limit-exceeded`. The stored line is `B` with its closing `}` replaced by
//! `,"hash":"<hex SHA-256 of B>"}`. To check a line, split off that 75-byte suffix, put the `}`
//! back and hash those bytes as they are; the hash covers the exact bytes written, so no
//! re-serialisation is involved.
//!
//! Rotation: when appending would push `audit.log` past the size threshold
//! ([`DEFAULT_MAX_FILE_BYTES`] unless set), `audit.log` is renamed to
//! `audit-<its first seq>.log`, the directory is fsynced, and the record starts a new
//! `audit.log`. The chain runs on across files: the new file's first `prev` is the old file's
//! last hash.

mod error;
mod files;
mod log;
mod record;
mod show;
mod verify;

#[cfg(test)]
mod testing;

pub use error::{AuditError, Result};
pub use log::{AuditLog, DEFAULT_MAX_FILE_BYTES};
pub use record::{Access, Caller, Decision, GENESIS_HASH, PrivacyEntry, Receipt, Record};
pub use show::{DecisionFilter, Filter, FilterError, parse_since, read, render_table};
pub use verify::{BreakKind, Broken, Verified, verify};
