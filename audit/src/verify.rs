//! Checking the chain: every record's own hash, and each link to the one before.
//!
//! Read-only: verifying never changes the log, not even to remove a torn line.

use std::path::{Path, PathBuf};

use crate::files::{Lines, chain_files};
use crate::record::{GENESIS_HASH, LineError, decode_line};

/// A chain that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// How many records the chain holds.
    pub records: u64,
    /// The last record's hash ([`GENESIS_HASH`] when there are none). Kept elsewhere, it shows
    /// later whether records were removed from the end.
    pub last_hash: String,
}

/// What kind of break [`verify`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakKind {
    /// A file or the directory could not be read.
    Unreadable,
    /// The last line has no line end: a write cut short (never acknowledged) or a truncated file.
    Torn,
    /// The line is not a record: not JSON, a field missing, or no hash (cut in the middle).
    Malformed,
    /// The record's content does not match its hash: it was edited.
    Altered,
    /// `seq` does not follow the previous record's: records missing, duplicated or reordered.
    OutOfSequence,
    /// `prev` is not the previous record's hash: a record was replaced by a forged one.
    ChainMismatch,
    /// A rotated file's name does not match its first record, or the file is empty.
    MisnamedFile,
}

/// The first place the chain breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("record {record} ({} line {line}): {reason}", file.display())]
pub struct Broken {
    /// Which record breaks the chain, counted from 1 across all files: the `seq` it should have.
    /// Every record before it verified, so in an intact log this is its `seq`.
    pub record: u64,
    /// The file it is in (the directory, when the directory could not be read).
    pub file: PathBuf,
    /// Its line in that file, from 1 (0 when no line applies).
    pub line: usize,
    /// What kind of break.
    pub kind: BreakKind,
    /// What is wrong, for people.
    pub reason: String,
}

/// Checks the whole chain in `dir`: the number of records and the last hash, or the first
/// broken record. An empty or missing directory verifies with 0 records.
pub fn verify(dir: &Path) -> Result<Verified, Broken> {
    let files = chain_files(dir).map_err(|e| Broken {
        record: 1,
        file: dir.to_path_buf(),
        line: 0,
        kind: BreakKind::Unreadable,
        reason: format!("cannot list the directory: {e}"),
    })?;
    let mut seq = 0;
    let mut hash = GENESIS_HASH.to_owned();
    for chain_file in &files {
        // Every break names the record that should come next: all before it verified.
        let broken = |seq: u64, line: usize, kind: BreakKind, reason: String| Broken {
            record: seq + 1,
            file: chain_file.path.clone(),
            line,
            kind,
            reason,
        };
        let mut lines = Lines::open(&chain_file.path)
            .map_err(|e| broken(seq, 0, BreakKind::Unreadable, format!("cannot open: {e}")))?;
        let mut line_no = 0;
        loop {
            let next = lines.next_line().map_err(|e| {
                broken(
                    seq,
                    line_no + 1,
                    BreakKind::Unreadable,
                    format!("cannot read: {e}"),
                )
            })?;
            let Some((line, complete)) = next else { break };
            line_no += 1;
            if !complete {
                return Err(broken(
                    seq,
                    line_no,
                    BreakKind::Torn,
                    "the line has no end: a write was cut short or the file truncated".into(),
                ));
            }
            let record = decode_line(line).map_err(|e| {
                let kind = match e {
                    LineError::HashMismatch { .. } => BreakKind::Altered,
                    LineError::NoHash | LineError::NotARecord(_) => BreakKind::Malformed,
                };
                broken(seq, line_no, kind, e.to_string())
            })?;
            if record.seq != seq + 1 {
                return Err(broken(
                    seq,
                    line_no,
                    BreakKind::OutOfSequence,
                    format!(
                        "seq is {} where {} should follow: records are missing, duplicated or out of order",
                        record.seq,
                        seq + 1
                    ),
                ));
            }
            if record.prev != hash {
                return Err(broken(
                    seq,
                    line_no,
                    BreakKind::ChainMismatch,
                    format!(
                        "prev does not match the hash of record {seq}: the record was replaced"
                    ),
                ));
            }
            if let (1, Some(named)) = (line_no, chain_file.named_seq)
                && named != record.seq
            {
                return Err(broken(
                    seq,
                    line_no,
                    BreakKind::MisnamedFile,
                    format!("the file's name says it starts at seq {named}"),
                ));
            }
            seq = record.seq;
            hash = record.hash;
        }
        if line_no == 0 && chain_file.named_seq.is_some() {
            return Err(broken(
                seq,
                0,
                BreakKind::MisnamedFile,
                "the rotated file is empty".into(),
            ));
        }
    }
    Ok(Verified {
        records: seq,
        last_hash: hash,
    })
}

#[cfg(test)]
mod tests {
    use std::fs;

    use chrono::Utc;

    use super::*;
    use crate::files::{CURRENT, rotated_name};
    use crate::record::{Decision, encode_line};
    use crate::testing::{access, read_lines, two_records_per_file, write_lines};
    use crate::{AuditLog, Receipt};

    /// A log of `n` records, all in `audit.log`.
    fn log_of(n: usize) -> (tempfile::TempDir, PathBuf, Vec<Receipt>) {
        let tmp = tempfile::tempdir().unwrap();
        let log = AuditLog::open(tmp.path()).unwrap();
        let receipts = (0..n)
            .map(|_| {
                log.append(&access(Some("ns-a"), Decision::Answered))
                    .unwrap()
            })
            .collect();
        let current = tmp.path().join(CURRENT);
        (tmp, current, receipts)
    }

    /// A log of 9 records, two per rotated file.
    fn rotated_log() -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        let log = two_records_per_file(tmp.path());
        for _ in 0..9 {
            log.append(&access(None, Decision::Answered)).unwrap();
        }
        tmp
    }

    fn broken(dir: &Path) -> Broken {
        verify(dir).expect_err("the chain should not verify")
    }

    #[test]
    fn an_edited_record_is_named() {
        let (tmp, current, _) = log_of(5);
        let mut lines = read_lines(&current);
        lines[2] = lines[2].replace("\"rows\":42", "\"rows\":420");
        write_lines(&current, &lines);

        let b = broken(tmp.path());

        assert_eq!((b.record, b.line, b.kind), (3, 3, BreakKind::Altered));
        assert_eq!(b.file, current);
        assert!(
            b.to_string()
                .starts_with(&format!("record 3 ({} line 3): ", current.display())),
            "{b}"
        );
    }

    #[test]
    fn a_deleted_record_names_the_first_that_does_not_follow() {
        let (tmp, current, _) = log_of(5);
        let mut lines = read_lines(&current);
        lines.remove(2);
        write_lines(&current, &lines);

        let b = broken(tmp.path());

        assert_eq!((b.record, b.line, b.kind), (3, 3, BreakKind::OutOfSequence));
        assert!(b.reason.contains("seq is 4 where 3 should follow"), "{b}");
    }

    #[test]
    fn swapped_records_are_named() {
        let (tmp, current, _) = log_of(5);
        let mut lines = read_lines(&current);
        lines.swap(2, 3);
        write_lines(&current, &lines);

        let b = broken(tmp.path());

        assert_eq!((b.record, b.line, b.kind), (3, 3, BreakKind::OutOfSequence));
    }

    #[test]
    fn a_record_cut_in_the_middle_is_named() {
        let (tmp, current, _) = log_of(5);
        let mut lines = read_lines(&current);
        let half = lines[1].len() / 2;
        lines[1].truncate(half);
        write_lines(&current, &lines);

        let b = broken(tmp.path());

        assert_eq!((b.record, b.line, b.kind), (2, 2, BreakKind::Malformed));
    }

    #[test]
    fn a_truncated_file_names_its_last_record_torn() {
        let (tmp, current, _) = log_of(5);
        let bytes = fs::read(&current).unwrap();
        fs::write(&current, &bytes[..bytes.len() - 10]).unwrap();

        let b = broken(tmp.path());

        assert_eq!((b.record, b.line, b.kind), (5, 5, BreakKind::Torn));
    }

    #[test]
    fn a_forged_record_with_a_valid_hash_breaks_the_link() {
        let (tmp, current, receipts) = log_of(3);
        let mut lines = read_lines(&current);
        // Rebuilt with its own correct hash, but not chained onto record 2.
        let (forged, _) = encode_line(
            3,
            &"f".repeat(64),
            Utc::now(),
            &access(Some("ns-a"), Decision::Answered),
        );
        lines[2] = String::from_utf8(forged).unwrap().trim_end().to_owned();
        write_lines(&current, &lines);

        let b = broken(tmp.path());

        assert_eq!((b.record, b.kind), (3, BreakKind::ChainMismatch));
        assert_ne!(receipts[1].hash, "f".repeat(64));
    }

    #[test]
    fn a_deleted_rotated_file_names_its_first_record() {
        let tmp = rotated_log();
        fs::remove_file(tmp.path().join(rotated_name(5))).unwrap();

        let b = broken(tmp.path());

        assert_eq!((b.record, b.line, b.kind), (5, 1, BreakKind::OutOfSequence));
        assert_eq!(b.file, tmp.path().join(rotated_name(7)));
    }

    #[test]
    fn a_deleted_first_file_names_record_one() {
        let tmp = rotated_log();
        fs::remove_file(tmp.path().join(rotated_name(1))).unwrap();

        let b = broken(tmp.path());

        assert_eq!((b.record, b.kind), (1, BreakKind::OutOfSequence));
    }

    #[test]
    fn a_renamed_rotated_file_is_named() {
        let tmp = rotated_log();
        fs::rename(
            tmp.path().join(rotated_name(3)),
            tmp.path().join(rotated_name(4)),
        )
        .unwrap();

        let b = broken(tmp.path());

        assert_eq!((b.record, b.line, b.kind), (3, 1, BreakKind::MisnamedFile));
    }

    #[test]
    fn a_rotated_log_verifies_until_tampered() {
        let tmp = rotated_log();
        assert_eq!(verify(tmp.path()).unwrap().records, 9);

        let path = tmp.path().join(rotated_name(7));
        let mut lines = read_lines(&path);
        lines[1] = lines[1].replace("\"station\":\"station-a\"", "\"station\":\"station-b\"");
        write_lines(&path, &lines);

        let b = broken(tmp.path());
        assert_eq!((b.record, b.line, b.kind), (8, 2, BreakKind::Altered));
    }
}
