//! Container logs: written as the guest prints, read back for `kubectl logs`.
//!
//! This module owns the on-disk log format and the log options of the
//! kubelet API. Each run of a container writes one file,
//! `<pod dir>/<container>.<restart count>.log`, in the CRI logging
//! format: one record per write, `<RFC 3339 time> <stream> <F|P> <text>`,
//! where `F` marks text that ended a line and `P` text that did not. Files
//! outlive the sandlet process, so `kubectl logs` (and `--previous`) work
//! after a restart. The files sit in the pod's directory itself, with no
//! directories of their own: on ext4 a directory costs three times what a
//! file does to create, and a burst of pod starts creates hundreds.
//! (Container names are DNS labels, without dots, so a log file's name
//! never meets a volume's.)
//!
//! It must never let one run's file grow past [`MAX_LOG_FILE_BYTES`] (a
//! note says where it stopped), nor buffer a guest's output without
//! bound.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use sandlet_runtime::OutputSinks;
use sandlet_runtime::output::OutputSink;

/// How often a follower looks for new log records.
pub(crate) const FOLLOW_POLL: Duration = Duration::from_millis(100);

/// Where a container's logs live.
pub(crate) fn log_path(pod_dir: &Path, container: &str, restart_count: i32) -> PathBuf {
    pod_dir.join(format!("{container}.{restart_count}.log"))
}

/// The most one run's log file holds. A guest's output is limited
/// (16 MiB by default), but each write becomes a record with a 40-byte
/// prefix, so a guest writing a byte at a time could otherwise make a file
/// 40 times its output; past this the file ends with a note saying so.
pub(crate) const MAX_LOG_FILE_BYTES: u64 = 24 * 1024 * 1024;

/// One log file being written by both guest streams.
struct LogFile {
    file: Mutex<(File, u64)>,
}

/// An [`OutputSink`] for one stream of one container run.
pub(crate) struct LogSink {
    file: Arc<LogFile>,
    stream: &'static str,
}

impl OutputSink for LogSink {
    fn write_all(&self, bytes: &[u8]) -> io::Result<()> {
        let now = Timestamp::now();
        let mut record = Vec::with_capacity(bytes.len() + 48);
        // Split the write into lines; each complete line is one `F` record,
        // a trailing fragment one `P` record.
        let mut rest = bytes;
        while !rest.is_empty() {
            let (text, tag, advance) = match rest.iter().position(|&b| b == b'\n') {
                Some(i) => (&rest[..i], "F", i + 1),
                None => (rest, "P", rest.len()),
            };
            write!(record, "{now:.9} {} {tag} ", self.stream)?;
            record.extend_from_slice(text);
            record.push(b'\n');
            rest = &rest[advance..];
        }
        let mut file = self.file.file.lock().expect("log file poisoned");
        let (file, written) = &mut *file;
        if *written >= MAX_LOG_FILE_BYTES {
            return Ok(());
        }
        if *written + record.len() as u64 > MAX_LOG_FILE_BYTES {
            // The file ends with the note, a few dozen bytes past the limit.
            let note = format!(
                "{now:.9} stderr F [sandlet] this run's log reached {MAX_LOG_FILE_BYTES} bytes; later output is not kept\n"
            );
            *written = MAX_LOG_FILE_BYTES;
            return file.write_all(note.as_bytes());
        }
        *written += record.len() as u64;
        file.write_all(&record)
    }
}

/// Creates the log file of one container run and the sinks that write it.
pub(crate) fn open_sinks(path: &Path) -> io::Result<OutputSinks> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let file = Arc::new(LogFile {
        file: Mutex::new((
            OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .open(path)?,
            0,
        )),
    });
    Ok(OutputSinks {
        stdout: Arc::new(LogSink {
            file: file.clone(),
            stream: "stdout",
        }),
        stderr: Arc::new(LogSink {
            file,
            stream: "stderr",
        }),
    })
}

/// The options of `GET /containerLogs/...` (and `kubectl logs`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogOptions {
    /// Stream what the container writes until its run ends.
    pub(crate) follow: bool,
    /// The previous run's log.
    pub(crate) previous: bool,
    /// Each line with the time it was written.
    pub(crate) timestamps: bool,
    /// Only the last this many lines.
    pub(crate) tail_lines: Option<usize>,
    /// At most this many bytes.
    pub(crate) limit_bytes: Option<usize>,
    /// Only lines written since.
    pub(crate) since: Option<Timestamp>,
}

/// Why a log query was refused (400, with this text).
#[derive(Debug, thiserror::Error)]
pub enum LogQueryError {
    /// A number that is not one.
    #[error("{what}: not a number: {value:?}")]
    NotANumber {
        /// `tailLines`, `limitBytes` or `sinceSeconds`.
        what: &'static str,
        /// What was sent.
        value: String,
    },
    /// `limitBytes` of zero or less.
    #[error("limitBytes must be greater than zero")]
    LimitBytes,
    /// `sinceSeconds` reaching before the time that can be written.
    #[error("sinceSeconds: {0}")]
    SinceSeconds(#[source] k8s_openapi::jiff::Error),
    /// `sinceTime` that is no RFC 3339 time.
    #[error("sinceTime {text:?}: {source}")]
    SinceTime {
        /// What was sent, decoded.
        text: String,
        /// Why it is no time.
        #[source]
        source: k8s_openapi::jiff::Error,
    },
}

impl LogOptions {
    /// Parses the query string the API server forwards.
    pub fn from_query(query: &str) -> Result<LogOptions, LogQueryError> {
        let mut options = LogOptions::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let flag = || value.is_empty() || value == "true" || value == "1";
            let number = |what: &'static str| {
                value.parse::<i64>().map_err(|_| LogQueryError::NotANumber {
                    what,
                    value: value.to_owned(),
                })
            };
            match key {
                "follow" => options.follow = flag(),
                "previous" => options.previous = flag(),
                "timestamps" => options.timestamps = flag(),
                "tailLines" => {
                    let n = number("tailLines")?;
                    options.tail_lines = Some(n.max(0) as usize);
                }
                "limitBytes" => {
                    let n = number("limitBytes")?;
                    if n <= 0 {
                        return Err(LogQueryError::LimitBytes);
                    }
                    options.limit_bytes = Some(n as usize);
                }
                "sinceSeconds" => {
                    let n = number("sinceSeconds")?;
                    options.since = Some(
                        Timestamp::now()
                            .checked_sub(k8s_openapi::jiff::SignedDuration::from_secs(n.max(0)))
                            .map_err(LogQueryError::SinceSeconds)?,
                    );
                }
                "sinceTime" => {
                    let text = percent_decode(value);
                    options.since = Some(
                        text.parse()
                            .map_err(|source| LogQueryError::SinceTime { text, source })?,
                    );
                }
                _ => {}
            }
        }
        Ok(options)
    }
}

/// `text` with `%XX` escapes and `+` decoded, as a query value.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
        } else {
            out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One record of a log file.
struct Record<'a> {
    time: &'a str,
    partial: bool,
    text: &'a str,
}

fn parse_record(line: &str) -> Option<Record<'_>> {
    let line = line.strip_suffix('\n').unwrap_or(line);
    let mut parts = line.splitn(4, ' ');
    let time = parts.next()?;
    let _stream = parts.next()?;
    let tag = parts.next()?;
    let text = parts.next().unwrap_or("");
    Some(Record {
        time,
        partial: tag == "P",
        text,
    })
}

/// Reads one container run's log the way `kubectl logs` shows it.
///
/// The first [`LogReader::read_available`] applies `sinceTime`/`sinceSeconds`
/// and `tailLines` to the lines written so far; later calls (for `follow`)
/// return what was written since. `limitBytes` caps the total.
pub(crate) struct LogReader {
    file: BufReader<File>,
    options: LogOptions,
    /// A record the writer had not finished when we last read.
    unfinished: String,
    at_line_start: bool,
    first: bool,
    remaining: Option<usize>,
}

impl LogReader {
    pub(crate) fn open(path: &Path, options: LogOptions) -> io::Result<LogReader> {
        Ok(LogReader {
            file: BufReader::new(File::open(path)?),
            remaining: options.limit_bytes,
            options,
            unfinished: String::new(),
            at_line_start: true,
            first: true,
        })
    }

    /// Whether `limitBytes` has been reached: nothing more will be returned.
    pub(crate) fn exhausted(&self) -> bool {
        self.remaining == Some(0)
    }

    /// The rendered log text written since the last call.
    pub(crate) fn read_available(&mut self) -> io::Result<Vec<u8>> {
        let mut records = Vec::new();
        loop {
            let mut line = String::new();
            let n = self.file.read_line(&mut line)?;
            if n == 0 {
                break;
            }
            if !line.ends_with('\n') {
                // The writer is mid-record: keep it for next time.
                self.unfinished.push_str(&line);
                break;
            }
            let mut whole = std::mem::take(&mut self.unfinished);
            whole.push_str(&line);
            records.push(whole);
        }
        let parsed: Vec<Record<'_>> = records.iter().filter_map(|r| parse_record(r)).collect();
        let mut out = Vec::new();
        if std::mem::take(&mut self.first) {
            // Group records into lines, then apply since and tail per line.
            let mut lines: Vec<&[Record<'_>]> = Vec::new();
            let mut start = 0;
            for (i, record) in parsed.iter().enumerate() {
                if !record.partial {
                    lines.push(&parsed[start..=i]);
                    start = i + 1;
                }
            }
            if start < parsed.len() {
                lines.push(&parsed[start..]);
            }
            if let Some(since) = self.options.since {
                lines.retain(|line| {
                    line[0]
                        .time
                        .parse::<Timestamp>()
                        .map_or(true, |t| t >= since)
                });
            }
            if let Some(tail) = self.options.tail_lines {
                let skip = lines.len().saturating_sub(tail);
                lines.drain(..skip);
            }
            for record in lines.into_iter().flatten() {
                self.render(record, &mut out);
            }
        } else {
            for record in &parsed {
                self.render(record, &mut out);
            }
        }
        if let Some(remaining) = &mut self.remaining {
            out.truncate(*remaining);
            *remaining -= out.len();
        }
        Ok(out)
    }

    fn render(&mut self, record: &Record<'_>, out: &mut Vec<u8>) {
        if self.at_line_start && self.options.timestamps {
            out.extend_from_slice(record.time.as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(record.text.as_bytes());
        if record.partial {
            self.at_line_start = false;
        } else {
            out.push(b'\n');
            self.at_line_start = true;
        }
    }
}

/// Reads a whole log at once (no `follow`).
pub(crate) fn read_log(path: &Path, options: LogOptions) -> io::Result<Vec<u8>> {
    let mut reader = LogReader::open(path, options)?;
    reader.read_available()
}

/// Moves the reader to the end of a file, for tests of following.
#[cfg(test)]
fn file_len(path: &Path) -> u64 {
    use std::io::{Seek, SeekFrom};
    let mut f = File::open(path).unwrap();
    f.seek(SeekFrom::End(0)).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(sinks: &OutputSinks, stream: &str, text: &str) {
        let sink = if stream == "out" {
            &sinks.stdout
        } else {
            &sinks.stderr
        };
        sink.write_all(text.as_bytes()).unwrap();
    }

    #[test]
    fn lines_and_fragments_read_back_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(dir.path(), "main", 0);
        let sinks = open_sinks(&path).unwrap();
        write(&sinks, "out", "one\ntw");
        write(&sinks, "out", "o\nthree");
        write(&sinks, "err", "\nfour\n");
        let all = read_log(&path, LogOptions::default()).unwrap();
        assert_eq!(String::from_utf8(all).unwrap(), "one\ntwo\nthree\nfour\n");
    }

    #[test]
    fn tail_limit_and_timestamps_apply_per_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(dir.path(), "main", 0);
        let sinks = open_sinks(&path).unwrap();
        for i in 0..10 {
            write(&sinks, "out", &format!("line {i}\n"));
        }
        let tail = LogOptions {
            tail_lines: Some(2),
            ..LogOptions::default()
        };
        assert_eq!(read_log(&path, tail).unwrap(), b"line 8\nline 9\n");
        let limited = LogOptions {
            limit_bytes: Some(9),
            ..LogOptions::default()
        };
        assert_eq!(read_log(&path, limited).unwrap(), b"line 0\nli");
        let stamped = LogOptions {
            timestamps: true,
            tail_lines: Some(1),
            ..LogOptions::default()
        };
        let text = String::from_utf8(read_log(&path, stamped).unwrap()).unwrap();
        let (time, rest) = text.split_once(' ').unwrap();
        assert!(time.parse::<Timestamp>().is_ok(), "{text}");
        assert_eq!(rest, "line 9\n");
    }

    #[test]
    fn a_follower_sees_only_what_is_new() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(dir.path(), "main", 0);
        let sinks = open_sinks(&path).unwrap();
        write(&sinks, "out", "before\n");
        let mut reader = LogReader::open(&path, LogOptions::default()).unwrap();
        assert_eq!(reader.read_available().unwrap(), b"before\n");
        assert_eq!(reader.read_available().unwrap(), b"");
        write(&sinks, "out", "after\n");
        assert_eq!(reader.read_available().unwrap(), b"after\n");
        assert!(file_len(&path) > 0);
    }

    #[test]
    fn a_log_stops_at_its_limit_with_a_note_however_the_guest_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("main.0.log");
        let sinks = open_sinks(&path).unwrap();
        // One-byte lines: each is a record 40 times its size.
        let lines = "x\n".repeat(4096);
        let mut sent = 0u64;
        while sent < MAX_LOG_FILE_BYTES {
            write(&sinks, "out", &lines);
            sent += lines.len() as u64 * 20;
        }
        write(&sinks, "err", "after the limit\n");
        let size = std::fs::metadata(&path).unwrap().len();
        assert!(size <= MAX_LOG_FILE_BYTES + 200, "{size}");
        assert!(size > MAX_LOG_FILE_BYTES - 64 * 4096, "{size}");
        let text = read_log(&path, LogOptions::default()).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(
            text.ends_with("later output is not kept\n"),
            "{}",
            &text[text.len() - 200..]
        );
        assert!(!text.contains("after the limit"));
    }

    #[test]
    fn query_options_parse_like_the_kubelet() {
        let o = LogOptions::from_query(
            "follow=true&tailLines=5&timestamps=1&limitBytes=100&previous=false",
        )
        .unwrap();
        assert!(o.follow && o.timestamps && !o.previous);
        assert_eq!(o.tail_lines, Some(5));
        assert_eq!(o.limit_bytes, Some(100));
        assert!(LogOptions::from_query("tailLines=x").is_err());
        assert!(LogOptions::from_query("limitBytes=0").is_err());
        let o = LogOptions::from_query("sinceTime=2026-01-01T00%3A00%3A00Z").unwrap();
        assert_eq!(o.since, Some("2026-01-01T00:00:00Z".parse().unwrap()));
    }
}
