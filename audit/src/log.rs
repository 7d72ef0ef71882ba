//! Appending records: the only code that writes the log.
//!
//! This module owns durability (fsync before acknowledging), the cross-process lock, rotation and
//! the repair of a torn final line. It must never rewrite or remove an acknowledged record.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use chrono::Utc;

use crate::error::{AuditError, Result};
use crate::files::{self, CURRENT, LOCK, Lines, chain_files, rotated_name, sync_dir};
use crate::record::{
    Access, GENESIS_HASH, Receipt, Record, check_access, decode_line, encode_line,
};

/// Size past which `audit.log` is rotated, unless [`AuditLog::with_max_file_bytes`] says
/// otherwise.
///
/// 64 MiB is a few hundred thousand records: rotation (a rename and a directory fsync) stays
/// rare, while one file is still small enough to copy, archive or scan by hand in moments.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// Files are readable by the station's user only: records hold SQL and pod identities.
const FILE_MODE: u32 = 0o600;
/// The directory is private for the same reason.
const DIR_MODE: u32 = 0o700;

/// An open audit log: appends records to one directory.
///
/// `AuditLog` is `Send + Sync`; share it behind an `Arc`. The API is synchronous and every append
/// waits for `fsync`, so async callers should use `spawn_blocking`.
///
/// # Guarantees
///
/// - When [`append`](Self::append) returns `Ok`, the record and every record before it are on
///   stable storage, chained onto the true last record of the directory.
/// - When it returns `Err`, the log is as it was before the call (a partly written line is cut
///   back), so the chain still verifies and a later append can succeed.
/// - Appends from threads of one process and from processes sharing the directory are
///   serialised (a mutex, then an exclusive `flock` on `<dir>/lock`); `seq` has no gaps.
///
/// # Assumptions
///
/// - Everything that writes the directory goes through this type (or at least takes the lock).
/// - The filesystem honours `fsync` and `flock` (local filesystems do; some network ones do not).
///
/// # Caveats
///
/// - A record may exist for an access whose answer was then withheld (e.g. the fsync failed
///   after the bytes reached the file and could not be cut back); never the other way round.
/// - The chain shows edits, deletions and reordering inside the log, but not the removal of the
///   newest records, nor a rewrite of the whole chain by someone who can write the directory.
///   Keep [`Verified::last_hash`](crate::Verified::last_hash) somewhere else to anchor it.
/// - `time` comes from the wall clock, which can step back; `seq` is the order.
#[derive(Debug)]
pub struct AuditLog {
    dir: PathBuf,
    max_file_bytes: u64,
    /// The lock file. Threads take the mutex first because `flock` does not exclude two threads
    /// using the same open file.
    lock: Mutex<File>,
    torn_bytes_on_open: u64,
}

impl AuditLog {
    /// Opens the log in `dir`, creating the directory (mode 0700) if it is missing.
    ///
    /// Under the lock, it removes a torn final line from `audit.log` (see
    /// [`torn_bytes_removed_on_open`](Self::torn_bytes_removed_on_open)) and reads the last
    /// record, so that a log that cannot be appended to fails here rather than at the first query.
    pub fn open(dir: &Path) -> Result<AuditLog> {
        create_dir(dir)?;
        let lock_path = dir.join(LOCK);
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .mode(FILE_MODE)
            .open(&lock_path)
            .map_err(|source| AuditError::Lock {
                path: lock_path,
                source,
            })?;
        let mut log = AuditLog {
            dir: dir.to_path_buf(),
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            lock: Mutex::new(lock),
            torn_bytes_on_open: 0,
        };
        let tail = log.locked(|| find_tail(&log.dir))?;
        log.torn_bytes_on_open = tail.torn_bytes;
        Ok(log)
    }

    /// Sets the size past which `audit.log` is rotated (default [`DEFAULT_MAX_FILE_BYTES`]).
    /// A record larger than this still goes in, alone in its file.
    pub fn with_max_file_bytes(mut self, bytes: u64) -> Self {
        self.max_file_bytes = bytes;
        self
    }

    /// The directory this log writes.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// How many bytes of an incomplete final line [`open`](Self::open) removed: a write cut short
    /// by a crash, power loss or full disk, which was never acknowledged. Nonzero is worth a
    /// warning in the caller's log.
    pub fn torn_bytes_removed_on_open(&self) -> u64 {
        self.torn_bytes_on_open
    }

    /// Records one access durably and returns its place in the chain.
    ///
    /// The log stamps the time, takes the next `seq` and chains onto the last record on disk
    /// (re-read under the lock on every append, so other processes' records are never skipped;
    /// one small read is nothing next to the fsync). On `Err` the access is not recorded and the
    /// caller must refuse the query.
    pub fn append(&self, access: &Access) -> Result<Receipt> {
        check_access(access).map_err(|reason| AuditError::InvalidAccess { reason })?;
        self.locked(|| {
            let tail = find_tail(&self.dir)?;
            let seq = tail.seq + 1;
            let (line, hash) = encode_line(seq, &tail.hash, Utc::now(), access);
            let mut len = tail.current_len;
            if len > 0 && len.saturating_add(line.len() as u64) > self.max_file_bytes {
                self.rotate()?;
                len = 0;
            }
            write_line(&self.dir, len, &line)?;
            Ok(Receipt { seq, hash })
        })
    }

    /// Runs `f` holding the mutex and the exclusive lock on `<dir>/lock`.
    fn locked<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        // A panic while holding the mutex leaves nothing behind in memory: every append reads
        // the chain's end from disk. So a poisoned mutex is safe to use.
        let file = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        file.lock().map_err(|source| AuditError::Lock {
            path: self.dir.join(LOCK),
            source,
        })?;
        let _unlock = Unlock(&file);
        f()
    }

    /// Renames `audit.log` to `audit-<its first seq>.log` and makes that durable.
    fn rotate(&self) -> Result<()> {
        let from = self.dir.join(CURRENT);
        let read_err = |source| AuditError::Read {
            file: from.clone(),
            source,
        };
        let mut lines = Lines::open(&from).map_err(read_err)?;
        let first = match lines.next_line().map_err(read_err)? {
            Some((line, true)) => decode_line(line).map_err(|e| AuditError::Corrupt {
                file: from.clone(),
                reason: format!("line 1: {e}"),
            })?,
            _ => {
                return Err(AuditError::Corrupt {
                    file: from.clone(),
                    reason: "line 1 is incomplete".into(),
                });
            }
        };
        let to = self.dir.join(rotated_name(first.seq));
        match fs::symlink_metadata(&to) {
            Ok(_) => {
                return Err(AuditError::Corrupt {
                    file: to,
                    reason: format!("cannot rotate {CURRENT} here: the file already exists"),
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(AuditError::Read { file: to, source }),
        }
        fs::rename(&from, &to)
            .and_then(|()| sync_dir(&self.dir))
            .map_err(|source| AuditError::Rotate { from, to, source })
    }
}

/// Releases the `flock` when an append ends, however it ends.
struct Unlock<'a>(&'a File);

impl Drop for Unlock<'_> {
    fn drop(&mut self) {
        // Unlocking an flock does not fail on a valid descriptor; if it somehow did, the lock
        // would still go when the process exits, and this process could still re-take it.
        let _ = self.0.unlock();
    }
}

/// Creates the log directory if missing, and makes its entry durable.
fn create_dir(dir: &Path) -> Result<()> {
    let create_err = |source| AuditError::CreateDir {
        dir: dir.to_path_buf(),
        source,
    };
    match fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => return Ok(()),
        Ok(_) => {
            return Err(create_err(io::Error::new(
                io::ErrorKind::NotADirectory,
                "exists and is not a directory",
            )));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(create_err(e)),
    }
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(create_err)?;
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    sync_dir(parent).map_err(create_err)
}

/// Where the chain ends, as found on disk under the lock.
#[derive(Debug)]
struct Tail {
    seq: u64,
    hash: String,
    /// Length of `audit.log` (0 when missing or empty).
    current_len: u64,
    /// Bytes of a torn final line removed on the way.
    torn_bytes: u64,
}

/// Finds the last record: the last line of `audit.log`, else of the newest rotated file, else
/// the start of the chain. Removes a torn final line from `audit.log` first; the caller holds
/// the lock, so an incomplete line is never another writer's line in progress.
fn find_tail(dir: &Path) -> Result<Tail> {
    let path = dir.join(CURRENT);
    let read_err = |source| AuditError::Read {
        file: path.clone(),
        source,
    };
    let mut len = match fs::symlink_metadata(&path) {
        Ok(meta) if meta.file_type().is_file() => meta.len(),
        Ok(_) => return Err(AuditError::NotAFile { file: path }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
        Err(source) => return Err(read_err(source)),
    };
    let mut torn_bytes = 0;
    if len > 0 {
        let file = File::open(&path).map_err(read_err)?;
        if files::byte_at(&file, len - 1).map_err(read_err)? != b'\n' {
            let keep = files::last_newline_before(&file, len)
                .map_err(read_err)?
                .map_or(0, |p| p + 1);
            cut_back(&path, keep)?;
            torn_bytes = len - keep;
            len = keep;
        }
        if len > 0 {
            let last = last_record(&path, &file, len)?;
            return Ok(Tail {
                seq: last.seq,
                hash: last.hash,
                current_len: len,
                torn_bytes,
            });
        }
    }
    // `audit.log` is missing or empty (just rotated, or a new log): the chain ends in the
    // newest rotated file, if there is one.
    let listed = chain_files(dir).map_err(|source| AuditError::Read {
        file: dir.to_path_buf(),
        source,
    })?;
    let Some(newest) = listed.iter().rev().find(|f| f.named_seq.is_some()) else {
        return Ok(Tail {
            seq: 0,
            hash: GENESIS_HASH.into(),
            current_len: 0,
            torn_bytes,
        });
    };
    let file_err = |source| AuditError::Read {
        file: newest.path.clone(),
        source,
    };
    let file = File::open(&newest.path).map_err(file_err)?;
    let newest_len = file.metadata().map_err(file_err)?.len();
    if newest_len == 0 || files::byte_at(&file, newest_len - 1).map_err(file_err)? != b'\n' {
        return Err(AuditError::Corrupt {
            file: newest.path.clone(),
            reason: "rotated file is empty or ends in an incomplete line".into(),
        });
    }
    let last = last_record(&newest.path, &file, newest_len)?;
    Ok(Tail {
        seq: last.seq,
        hash: last.hash,
        current_len: 0,
        torn_bytes,
    })
}

/// The last record of `file` (at `path`), `len` bytes long and ending in `\n`.
fn last_record(path: &Path, file: &File, len: u64) -> Result<Record> {
    let line = files::last_line(file, len).map_err(|source| AuditError::Read {
        file: path.to_path_buf(),
        source,
    })?;
    decode_line(&line).map_err(|e| AuditError::Corrupt {
        file: path.to_path_buf(),
        reason: format!("last record: {e}"),
    })
}

/// Truncates `path` to `len` bytes, durably.
fn cut_back(path: &Path, len: u64) -> Result<()> {
    OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|file| {
            file.set_len(len)?;
            file.sync_data()
        })
        .map_err(|source| AuditError::Write {
            file: path.to_path_buf(),
            source,
        })
}

/// Appends `line` to `audit.log`, currently `len` bytes long (0 when missing), and waits until
/// it is durable. On failure cuts the file back to `len`.
fn write_line(dir: &Path, len: u64, line: &[u8]) -> Result<()> {
    let path = dir.join(CURRENT);
    let mut file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(FILE_MODE)
        .open(&path)
        .map_err(|source| AuditError::Write {
            file: path.clone(),
            source,
        })?;
    // One write of the whole line; with the lock held no other writer interleaves. The first
    // record of a file also syncs the directory, so the file's entry is as durable as the record
    // (even for an empty file a failed append left behind).
    let written = file
        .write_all(line)
        .and_then(|()| file.sync_data())
        .and_then(|()| if len > 0 { Ok(()) } else { sync_dir(dir) });
    if let Err(source) = written {
        // Leave the log as it was. If even this fails, a partial line has no `\n` and the next
        // open or append removes it; a whole line that could not be synced stays, a record of an
        // access that was then refused.
        let _ = file.set_len(len).and_then(|()| file.sync_data());
        return Err(AuditError::Write { file: path, source });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::os::unix::fs::PermissionsExt;
    use std::sync::Arc;

    use super::*;
    use crate::record::Decision;
    use crate::testing::{Tmpfs, access, file_names, read_lines, two_records_per_file};
    use crate::verify::{BreakKind, verify};
    use crate::{Filter, read};

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn appended_records_verify_with_the_last_hash() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state/audit");
        let log = AuditLog::open(&dir).unwrap();

        let receipts: Vec<Receipt> = (0..5)
            .map(|_| {
                log.append(&access(Some("ns-a"), Decision::Answered))
                    .unwrap()
            })
            .collect();

        assert_eq!(
            receipts.iter().map(|r| r.seq).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5]
        );
        let verified = verify(&dir).unwrap();
        assert_eq!(verified.records, 5);
        assert_eq!(verified.last_hash, receipts[4].hash);
        let records = read(&dir, &Filter::default()).unwrap();
        assert_eq!(records[0].prev, GENESIS_HASH);
        assert_eq!(records[1].prev, receipts[0].hash);
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(CURRENT)), 0o600);
        assert_eq!(mode(&dir.join(LOCK)), 0o600);
        assert_eq!(log.torn_bytes_removed_on_open(), 0);
    }

    #[test]
    fn an_empty_or_missing_dir_verifies_with_no_records() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = verify(&tmp.path().join("missing")).unwrap();
        assert_eq!(
            (missing.records, missing.last_hash.as_str()),
            (0, GENESIS_HASH)
        );
        AuditLog::open(tmp.path()).unwrap();
        assert_eq!(verify(tmp.path()).unwrap().records, 0);
    }

    #[test]
    fn the_chain_runs_across_rotated_files() {
        let tmp = tempfile::tempdir().unwrap();
        let log = two_records_per_file(tmp.path());

        let receipts: Vec<Receipt> = (0..9)
            .map(|_| log.append(&access(None, Decision::Answered)).unwrap())
            .collect();

        assert_eq!(
            file_names(tmp.path()),
            [
                "audit-000000000001.log",
                "audit-000000000003.log",
                "audit-000000000005.log",
                "audit-000000000007.log",
                "audit.log",
                "lock"
            ]
        );
        assert_eq!(
            read_lines(&tmp.path().join("audit-000000000003.log")).len(),
            2
        );
        let verified = verify(tmp.path()).unwrap();
        assert_eq!(
            (verified.records, verified.last_hash),
            (9, receipts[8].hash.clone())
        );
        let records = read(tmp.path(), &Filter::default()).unwrap();
        assert_eq!(
            records.iter().map(|r| r.seq).collect::<Vec<_>>(),
            (1..=9).collect::<Vec<_>>()
        );
        assert_eq!(
            records[8].prev, receipts[7].hash,
            "audit.log's first record chains onto the rotated file"
        );
    }

    #[test]
    fn a_record_larger_than_the_threshold_gets_a_file_of_its_own() {
        let tmp = tempfile::tempdir().unwrap();
        let log = AuditLog::open(tmp.path()).unwrap().with_max_file_bytes(10);
        for _ in 0..3 {
            log.append(&access(None, Decision::Answered)).unwrap();
        }
        assert_eq!(
            file_names(tmp.path()),
            [
                "audit-000000000001.log",
                "audit-000000000002.log",
                "audit.log",
                "lock"
            ]
        );
        assert_eq!(verify(tmp.path()).unwrap().records, 3);
    }

    #[test]
    fn two_logs_on_one_dir_chain_onto_each_other() {
        let tmp = tempfile::tempdir().unwrap();
        // Two instances each hold their own lock file description, as two processes would.
        let node = AuditLog::open(tmp.path())
            .unwrap()
            .with_max_file_bytes(2_000);
        let cli = AuditLog::open(tmp.path())
            .unwrap()
            .with_max_file_bytes(2_000);

        let mut seqs = Vec::new();
        for i in 0..8 {
            let log = if i % 2 == 0 { &node } else { &cli };
            seqs.push(
                log.append(&access(Some("ns-a"), Decision::Answered))
                    .unwrap()
                    .seq,
            );
        }

        assert_eq!(seqs, (1..=8).collect::<Vec<_>>());
        assert_eq!(verify(tmp.path()).unwrap().records, 8);
        assert!(
            file_names(tmp.path()).len() > 2,
            "rotated by both instances"
        );
    }

    #[test]
    fn concurrent_appends_from_threads_and_instances_leave_no_gaps() {
        let tmp = tempfile::tempdir().unwrap();
        let logs = [
            Arc::new(
                AuditLog::open(tmp.path())
                    .unwrap()
                    .with_max_file_bytes(8_000),
            ),
            Arc::new(
                AuditLog::open(tmp.path())
                    .unwrap()
                    .with_max_file_bytes(8_000),
            ),
        ];
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let logs = logs.clone();
                std::thread::spawn(move || {
                    (0..25)
                        .map(|i| {
                            logs[(t + i) % 2]
                                .append(&access(Some("ns-a"), Decision::Answered))
                                .unwrap()
                                .seq
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let seqs: BTreeSet<u64> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();

        assert_eq!(seqs, (1..=100).collect());
        assert_eq!(verify(tmp.path()).unwrap().records, 100);
        let records = read(tmp.path(), &Filter::default()).unwrap();
        assert_eq!(
            records.iter().map(|r| r.seq).collect::<Vec<_>>(),
            (1..=100).collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_torn_final_line_is_removed_on_open_and_the_chain_continues() {
        let tmp = tempfile::tempdir().unwrap();
        let log = AuditLog::open(tmp.path()).unwrap();
        for _ in 0..3 {
            log.append(&access(None, Decision::Answered)).unwrap();
        }
        drop(log);
        let current = tmp.path().join(CURRENT);
        let intact = fs::read(&current).unwrap();
        let (torn, _) = encode_line(
            4,
            GENESIS_HASH,
            Utc::now(),
            &access(None, Decision::Answered),
        );
        let torn = &torn[..torn.len() / 2];
        fs::write(&current, [intact.as_slice(), torn].concat()).unwrap();
        let broken = verify(tmp.path()).unwrap_err();
        assert_eq!((broken.record, broken.kind), (4, BreakKind::Torn));

        let log = AuditLog::open(tmp.path()).unwrap();

        assert_eq!(log.torn_bytes_removed_on_open(), torn.len() as u64);
        assert_eq!(fs::read(&current).unwrap(), intact);
        assert_eq!(
            log.append(&access(None, Decision::Answered)).unwrap().seq,
            4
        );
        assert_eq!(verify(tmp.path()).unwrap().records, 4);
    }

    #[test]
    fn an_open_log_repairs_a_line_another_process_tore() {
        let tmp = tempfile::tempdir().unwrap();
        let log = AuditLog::open(tmp.path()).unwrap();
        log.append(&access(None, Decision::Answered)).unwrap();
        let current = tmp.path().join(CURRENT);
        let mut file = OpenOptions::new().append(true).open(&current).unwrap();
        file.write_all(br#"{"seq":2,"prev":"#).unwrap();

        assert_eq!(
            log.append(&access(None, Decision::Answered)).unwrap().seq,
            2
        );
        assert_eq!(verify(tmp.path()).unwrap().records, 2);
    }

    #[test]
    fn appends_refuse_to_chain_onto_a_damaged_last_record() {
        let tmp = tempfile::tempdir().unwrap();
        let log = AuditLog::open(tmp.path()).unwrap();
        log.append(&access(None, Decision::Answered)).unwrap();
        let current = tmp.path().join(CURRENT);
        let edited = fs::read_to_string(&current)
            .unwrap()
            .replace("\"rows\":42", "\"rows\":7");
        fs::write(&current, &edited).unwrap();

        let err = log.append(&access(None, Decision::Answered)).unwrap_err();

        assert!(
            matches!(&err, AuditError::Corrupt { file, .. } if *file == current),
            "{err:?}"
        );
        assert_eq!(
            fs::read_to_string(&current).unwrap(),
            edited,
            "nothing appended"
        );
        assert!(matches!(
            AuditLog::open(tmp.path()),
            Err(AuditError::Corrupt { .. })
        ));
    }

    #[test]
    fn a_non_finite_duration_is_refused_and_nothing_is_written() {
        let tmp = tempfile::tempdir().unwrap();
        let log = AuditLog::open(tmp.path()).unwrap();
        let mut a = access(None, Decision::Answered);
        a.duration_ms = f64::NAN;

        assert!(matches!(
            log.append(&a),
            Err(AuditError::InvalidAccess { .. })
        ));
        assert_eq!(verify(tmp.path()).unwrap().records, 0);
    }

    #[test]
    fn needs_root_a_full_disk_fails_the_append_and_leaves_the_log_valid() {
        let fs_ = Tmpfs::mount("64k");
        let dir = fs_.path.join("audit");
        let log = AuditLog::open(&dir).unwrap();
        let filler = fs_.path.join("filler");
        fs::write(&filler, vec![0_u8; 32 * 1024]).unwrap();
        let mut a = access(Some("ns-a"), Decision::Answered);
        a.sql = format!("SELECT {} FROM patients", "x".repeat(700));

        let mut appended = 0;
        let err = loop {
            match log.append(&a) {
                Ok(receipt) => appended = receipt.seq,
                Err(e) => break e,
            }
            assert!(appended < 1_000, "a 64k filesystem never filled up");
        };

        match &err {
            AuditError::Write { file, source } => {
                assert_eq!(file, &dir.join(CURRENT));
                assert_eq!(source.kind(), io::ErrorKind::StorageFull, "{source}");
            }
            other => panic!("expected a write error, got {other:?}"),
        }
        assert!(appended > 0);
        assert_eq!(
            verify(&dir).unwrap().records,
            appended,
            "no partial record left behind"
        );
        assert!(
            matches!(log.append(&a), Err(AuditError::Write { .. })),
            "still full"
        );

        fs::remove_file(&filler).unwrap();
        assert_eq!(log.append(&a).unwrap().seq, appended + 1);
        assert_eq!(verify(&dir).unwrap().records, appended + 1);
    }

    #[test]
    fn needs_root_a_read_only_filesystem_fails_open_and_keeps_the_log_readable() {
        let fs_ = Tmpfs::mount("1m");
        let dir = fs_.path.join("audit");
        let log = AuditLog::open(&dir).unwrap();
        log.append(&access(None, Decision::Answered)).unwrap();
        log.append(&access(None, Decision::Denied)).unwrap();
        drop(log);
        fs_.remount_read_only();

        let err = AuditLog::open(&dir).unwrap_err();

        match &err {
            AuditError::Lock { path, source } => {
                assert_eq!(path, &dir.join(LOCK));
                assert_eq!(source.kind(), io::ErrorKind::ReadOnlyFilesystem, "{source}");
            }
            other => panic!("expected a lock error, got {other:?}"),
        }
        assert_eq!(verify(&dir).unwrap().records, 2);
        assert_eq!(read(&dir, &Filter::default()).unwrap().len(), 2);
    }

    #[test]
    fn a_current_file_that_is_a_directory_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir(tmp.path().join(CURRENT)).unwrap();
        assert!(matches!(
            AuditLog::open(tmp.path()),
            Err(AuditError::NotAFile { file }) if file == tmp.path().join(CURRENT)
        ));

        // Or one that turns into a directory while the log is open.
        let other = tempfile::tempdir().unwrap();
        let log = AuditLog::open(other.path()).unwrap();
        fs::create_dir(other.path().join(CURRENT)).unwrap();
        assert!(matches!(
            log.append(&access(None, Decision::Answered)),
            Err(AuditError::NotAFile { .. })
        ));
    }

    #[test]
    fn a_dir_path_that_is_a_file_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("audit");
        fs::write(&path, "").unwrap();
        assert!(
            matches!(AuditLog::open(&path), Err(AuditError::CreateDir { dir, .. }) if dir == path)
        );
    }

    #[test]
    fn audit_log_is_send_and_sync() {
        fn shareable<T: Send + Sync>() {}
        shareable::<AuditLog>();
    }
}
