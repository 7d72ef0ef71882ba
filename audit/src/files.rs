//! The files of the log directory: their names, their chain order, and reading lines from them.
//!
//! Shared by the writer, the verifier and the reader so that all three agree on which files
//! make up the chain. Nothing here writes.

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The file being appended to.
pub(crate) const CURRENT: &str = "audit.log";
/// The file appenders lock around each append.
pub(crate) const LOCK: &str = "lock";

/// The name `audit.log` gets when it is rotated: its first seq, zero-padded so that names sort
/// in chain order.
pub(crate) fn rotated_name(first_seq: u64) -> String {
    format!("audit-{first_seq:012}.log")
}

/// The first seq a rotated file's name claims, or `None` if the name is not a rotated file's.
fn rotated_seq(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("audit-")?.strip_suffix(".log")?;
    if digits.len() < 12 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// One file of the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChainFile {
    pub(crate) path: PathBuf,
    /// The first seq its name claims; `None` for `audit.log`.
    pub(crate) named_seq: Option<u64>,
}

/// The chain's files in order: rotated files by their number, then `audit.log` if it exists.
/// A missing directory has no files. Other names in the directory are not part of the chain.
pub(crate) fn chain_files(dir: &Path) -> io::Result<Vec<ChainFile>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut rotated = Vec::new();
    let mut current = None;
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name == CURRENT {
            current = Some(ChainFile {
                path: entry.path(),
                named_seq: None,
            });
        } else if let Some(seq) = rotated_seq(name) {
            rotated.push(ChainFile {
                path: entry.path(),
                named_seq: Some(seq),
            });
        }
    }
    rotated.sort_by_key(|f| f.named_seq);
    rotated.extend(current);
    Ok(rotated)
}

/// Reads a file line by line, telling whether each line ended in `\n`.
pub(crate) struct Lines {
    reader: BufReader<File>,
    buf: Vec<u8>,
}

impl Lines {
    pub(crate) fn open(path: &Path) -> io::Result<Lines> {
        Ok(Lines {
            reader: BufReader::new(File::open(path)?),
            buf: Vec::new(),
        })
    }

    /// The next line without its `\n`, and whether it had one; `None` at the end.
    pub(crate) fn next_line(&mut self) -> io::Result<Option<(&[u8], bool)>> {
        self.buf.clear();
        if self.reader.read_until(b'\n', &mut self.buf)? == 0 {
            return Ok(None);
        }
        let complete = self.buf.last() == Some(&b'\n');
        if complete {
            self.buf.pop();
        }
        Ok(Some((&self.buf, complete)))
    }
}

/// Position of the last `\n` before byte `end`, if any.
pub(crate) fn last_newline_before(file: &File, end: u64) -> io::Result<Option<u64>> {
    const CHUNK: u64 = 8 * 1024;
    let mut buf = vec![0; CHUNK as usize];
    let mut end = end;
    while end > 0 {
        let start = end.saturating_sub(CHUNK);
        let chunk = &mut buf[..(end - start) as usize];
        file.read_exact_at(chunk, start)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            return Ok(Some(start + i as u64));
        }
        end = start;
    }
    Ok(None)
}

/// The last line of a file of `len` bytes that ends in `\n`, without that `\n`.
pub(crate) fn last_line(file: &File, len: u64) -> io::Result<Vec<u8>> {
    debug_assert!(len > 0);
    let start = last_newline_before(file, len - 1)?.map_or(0, |p| p + 1);
    let mut line = vec![0; (len - 1 - start) as usize];
    file.read_exact_at(&mut line, start)?;
    Ok(line)
}

/// The byte at `pos`.
pub(crate) fn byte_at(file: &File, pos: u64) -> io::Result<u8> {
    let mut b = [0];
    file.read_exact_at(&mut b, pos)?;
    Ok(b[0])
}

/// Makes the directory's entries (created, renamed files) durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotated_names_sort_in_chain_order_and_parse_back() {
        assert_eq!(rotated_name(1), "audit-000000000001.log");
        assert_eq!(rotated_seq(&rotated_name(1234)), Some(1234));
        assert_eq!(
            rotated_seq(&rotated_name(10_u64.pow(13))),
            Some(10_u64.pow(13))
        );
        assert!(rotated_name(9) < rotated_name(10));
        for not_ours in [
            "audit.log",
            "audit-1.log",
            "audit-00000000000x.log",
            "lock",
            "audit-000000000001.log.gz",
        ] {
            assert_eq!(rotated_seq(not_ours), None, "{not_ours}");
        }
    }

    #[test]
    fn chain_files_lists_rotated_files_by_number_then_the_current_file() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            CURRENT,
            "audit-000000000011.log",
            "audit-000000000002.log",
            LOCK,
            "notes.txt",
        ] {
            std::fs::write(dir.path().join(name), "").unwrap();
        }
        let files = chain_files(dir.path()).unwrap();
        let names: Vec<_> = files
            .iter()
            .map(|f| f.path.file_name().unwrap().to_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            names,
            ["audit-000000000002.log", "audit-000000000011.log", CURRENT]
        );
        assert_eq!(files[1].named_seq, Some(11));
        assert_eq!(files[2].named_seq, None);

        assert_eq!(chain_files(&dir.path().join("missing")).unwrap(), []);
    }

    #[test]
    fn last_line_finds_the_line_across_chunk_boundaries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let long = "x".repeat(20_000);
        std::fs::write(&path, format!("first\n{long}\n")).unwrap();
        let file = File::open(&path).unwrap();
        let len = file.metadata().unwrap().len();
        assert_eq!(last_line(&file, len).unwrap(), long.as_bytes());
        assert_eq!(last_line(&file, 6).unwrap(), b"first");
        assert_eq!(last_newline_before(&file, 5).unwrap(), None);
    }
}
