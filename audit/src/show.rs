//! Reading the log back for people: filters, the `--since` syntax and the table `show` prints.
//!
//! Read-only. Everything shown comes from untrusted callers (SQL written by guest code), so the
//! table never passes control characters through to the terminal.

use std::path::Path;
use std::str::FromStr;

use chrono::{DateTime, TimeDelta, Utc};

use crate::error::{AuditError, Result};
use crate::files::{Lines, chain_files};
use crate::record::{Decision, Record, decode_line, format_time};

/// Which records [`read`] returns. The default selects all.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    /// Only records written at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only records from pods in this namespace.
    pub namespace: Option<String>,
    /// Only records with this decision.
    pub decision: Option<DecisionFilter>,
}

impl Filter {
    /// Whether `record` passes every condition set.
    pub fn matches(&self, record: &Record) -> bool {
        self.since.is_none_or(|since| record.time >= since)
            && self
                .namespace
                .as_deref()
                .is_none_or(|ns| record.access.caller.namespace.as_deref() == Some(ns))
            && self
                .decision
                .is_none_or(|d| d.matches(record.access.decision))
    }
}

/// A decision to filter on: one decision, or every refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecisionFilter {
    /// Exactly this decision.
    Is(Decision),
    /// Every decision but [`Decision::Answered`].
    Refused,
}

impl DecisionFilter {
    /// Whether `decision` passes.
    pub fn matches(self, decision: Decision) -> bool {
        match self {
            DecisionFilter::Is(wanted) => decision == wanted,
            DecisionFilter::Refused => decision != Decision::Answered,
        }
    }
}

impl FromStr for DecisionFilter {
    type Err = FilterError;

    /// `answered`, `not-granted`, `denied`, `invalid`, `limit-exceeded` or `refused`.
    fn from_str(text: &str) -> Result<Self, FilterError> {
        if text == "refused" {
            return Ok(DecisionFilter::Refused);
        }
        Decision::ALL
            .into_iter()
            .find(|d| d.as_str() == text)
            .map(DecisionFilter::Is)
            .ok_or_else(|| FilterError::Decision {
                text: text.to_owned(),
            })
    }
}

/// A filter value that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// Not a time `--since` understands.
    #[error(
        "{text:?} is neither an RFC 3339 time (2026-12-02T10:00:00Z) nor a time ago (30s, 10m, 2h, 1d)"
    )]
    Since {
        /// What was given.
        text: String,
    },
    /// Not a decision.
    #[error(
        "{text:?} is not a decision: expected answered, not-granted, denied, invalid, limit-exceeded or refused"
    )]
    Decision {
        /// What was given.
        text: String,
    },
}

/// Parses a `--since` value: an RFC 3339 time (`2026-12-02T10:00:00Z`), or a whole number of
/// seconds, minutes, hours or days ago (`30s`, `10m`, `2h`, `1d`).
pub fn parse_since(text: &str) -> Result<DateTime<Utc>, FilterError> {
    parse_since_at(text, Utc::now())
}

fn parse_since_at(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, FilterError> {
    let err = || FilterError::Since {
        text: text.to_owned(),
    };
    let trimmed = text.trim();
    if let Ok(time) = DateTime::parse_from_rfc3339(trimmed) {
        return Ok(time.with_timezone(&Utc));
    }
    const UNITS: [(&str, i64); 4] = [("s", 1), ("m", 60), ("h", 60 * 60), ("d", 24 * 60 * 60)];
    let (number, seconds_per) = UNITS
        .iter()
        .find_map(|&(unit, secs)| trimmed.strip_suffix(unit).map(|n| (n, secs)))
        .ok_or_else(err)?;
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err());
    }
    let ago = number
        .parse::<i64>()
        .ok()
        .and_then(|n| n.checked_mul(seconds_per))
        .and_then(TimeDelta::try_seconds)
        .ok_or_else(err)?;
    now.checked_sub_signed(ago).ok_or_else(err)
}

/// The records in `dir` that pass `filter`, in chain order.
///
/// Checks each record's own hash (a record that fails is an error naming its file and line) but
/// not the links between records: that is [`verify`](crate::verify)'s job. An incomplete final
/// line of `audit.log` (a write cut short, never acknowledged) is skipped.
pub fn read(dir: &Path, filter: &Filter) -> Result<Vec<Record>> {
    let files = chain_files(dir).map_err(|source| AuditError::Read {
        file: dir.to_path_buf(),
        source,
    })?;
    let mut out = Vec::new();
    for (i, chain_file) in files.iter().enumerate() {
        let path = &chain_file.path;
        let read_err = |source| AuditError::Read {
            file: path.clone(),
            source,
        };
        let last_file = i + 1 == files.len() && chain_file.named_seq.is_none();
        let mut lines = Lines::open(path).map_err(read_err)?;
        let mut line_no = 0;
        while let Some((line, complete)) = lines.next_line().map_err(read_err)? {
            line_no += 1;
            if !complete && last_file {
                break;
            }
            let record = decode_line(line).map_err(|e| AuditError::Corrupt {
                file: path.clone(),
                reason: format!("line {line_no}: {e}"),
            })?;
            if filter.matches(&record) {
                out.push(record);
            }
        }
    }
    Ok(out)
}

/// How much SQL a table row shows: enough to recognise a query, short enough for a row to fit a
/// wide terminal. The full SQL is in the log.
const SQL_SHOWN_CHARS: usize = 60;

const HEADERS: [&str; 12] = [
    "SEQ",
    "TIME",
    "VIA",
    "NAMESPACE",
    "POD",
    "DATASETS",
    "DECISION",
    "RULE",
    "ROWS",
    "MS",
    "EPSILON",
    "SQL",
];
/// Numbers align right.
const RIGHT_ALIGNED: [bool; 12] = [
    true, false, false, false, false, false, false, false, true, true, false, false,
];

/// An aligned table of `records`, one line each under a header line: SEQ TIME VIA NAMESPACE POD
/// DATASETS DECISION RULE ROWS MS SQL. Missing values show as `-`; the SQL is put on one line
/// and cut to about 60 characters.
pub fn render_table(records: &[Record]) -> String {
    let rows: Vec<[String; 12]> = records
        .iter()
        .map(|r| {
            [
                r.seq.to_string(),
                format_time(r.time),
                cell(&r.access.caller.via),
                optional(r.access.caller.namespace.as_deref()),
                optional(r.access.caller.pod.as_deref()),
                if r.access.datasets.is_empty() {
                    "-".into()
                } else {
                    cell(&r.access.datasets.join(","))
                },
                r.access.decision.to_string(),
                optional(r.access.rule.as_deref()),
                r.access.rows.to_string(),
                format!("{:.1}", r.access.duration_ms),
                epsilon(r.access.privacy.as_ref()),
                one_line(&r.access.sql),
            ]
        })
        .collect();
    let mut widths = HEADERS.map(|h| h.chars().count());
    for row in &rows {
        for (width, value) in widths.iter_mut().zip(row) {
            *width = (*width).max(value.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(HEADERS.map(String::from)).chain(rows) {
        let mut line = String::new();
        for (i, value) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let pad = " ".repeat(widths[i] - value.chars().count());
            if RIGHT_ALIGNED[i] {
                line.push_str(&pad);
                line.push_str(value);
            } else {
                line.push_str(value);
                line.push_str(&pad);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A charge as `0.1 (0.3/1)`: charged, then spent of the budget after it;
/// a reset as `reset (0.3/1)`: what had been spent.
fn epsilon(entry: Option<&crate::record::PrivacyEntry>) -> String {
    match entry {
        None => "-".into(),
        Some(e) if e.action == "charge" => {
            cell(&format!("{} ({}/{})", e.epsilon, e.spent, e.total))
        }
        Some(e) => cell(&format!("{} ({}/{})", e.action, e.epsilon, e.total)),
    }
}

fn optional(value: Option<&str>) -> String {
    value.map_or_else(|| "-".into(), cell)
}

/// `text` with anything that could steer a terminal (control characters such as ESC, and
/// bidirectional overrides that reorder what is shown) replaced by `?`.
fn cell(text: &str) -> String {
    text.chars()
        .map(|c| if shows_as_itself(c) { c } else { '?' })
        .collect()
}

fn shows_as_itself(c: char) -> bool {
    !c.is_control()
        && !matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// SQL on one line, whitespace runs collapsed, cut to [`SQL_SHOWN_CHARS`] with `…`.
fn one_line(sql: &str) -> String {
    let flat = cell(&sql.split_whitespace().collect::<Vec<_>>().join(" "));
    if flat.chars().count() <= SQL_SHOWN_CHARS {
        return flat;
    }
    let mut cut: String = flat.chars().take(SQL_SHOWN_CHARS - 1).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AuditLog;
    use crate::testing::{access, at};

    /// Five records: ns-a answered, ns-a denied, ns-b answered, ns-b limit-exceeded, no namespace
    /// not-granted.
    fn sample_log() -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        let log = AuditLog::open(tmp.path()).unwrap();
        for (ns, decision) in [
            (Some("ns-a"), Decision::Answered),
            (Some("ns-a"), Decision::Denied),
            (Some("ns-b"), Decision::Answered),
            (Some("ns-b"), Decision::LimitExceeded),
            (None, Decision::NotGranted),
        ] {
            log.append(&access(ns, decision)).unwrap();
        }
        tmp
    }

    fn seqs(dir: &Path, filter: Filter) -> Vec<u64> {
        read(dir, &filter).unwrap().iter().map(|r| r.seq).collect()
    }

    #[test]
    fn filters_select_by_namespace_and_decision() {
        let tmp = sample_log();
        let dir = tmp.path();
        let ns = |n: &str| Some(n.to_owned());

        assert_eq!(seqs(dir, Filter::default()), [1, 2, 3, 4, 5]);
        assert_eq!(
            seqs(
                dir,
                Filter {
                    namespace: ns("ns-b"),
                    ..Filter::default()
                }
            ),
            [3, 4]
        );
        let refused = Some(DecisionFilter::Refused);
        assert_eq!(
            seqs(
                dir,
                Filter {
                    decision: refused,
                    ..Filter::default()
                }
            ),
            [2, 4, 5]
        );
        let denied = Some(DecisionFilter::Is(Decision::Denied));
        assert_eq!(
            seqs(
                dir,
                Filter {
                    decision: denied,
                    ..Filter::default()
                }
            ),
            [2]
        );
        let answered_in_a = Filter {
            namespace: ns("ns-a"),
            decision: Some(DecisionFilter::Is(Decision::Answered)),
            ..Filter::default()
        };
        assert_eq!(seqs(dir, answered_in_a), [1]);
    }

    #[test]
    fn since_selects_records_at_or_after_the_time() {
        let tmp = tempfile::tempdir().unwrap();
        let log = AuditLog::open(tmp.path()).unwrap();
        for _ in 0..4 {
            log.append(&access(Some("ns-a"), Decision::Answered))
                .unwrap();
            // Times are stored to the millisecond; keep them apart.
            std::thread::sleep(std::time::Duration::from_millis(3));
        }
        let all = read(tmp.path(), &Filter::default()).unwrap();
        let since = |t| {
            seqs(
                tmp.path(),
                Filter {
                    since: Some(t),
                    ..Filter::default()
                },
            )
        };

        assert_eq!(since(all[2].time), [3, 4]);
        assert_eq!(since(all[2].time - TimeDelta::milliseconds(1)), [3, 4]);
        assert_eq!(
            since(all[3].time + TimeDelta::milliseconds(1)),
            Vec::<u64>::new()
        );
        assert_eq!(since(all[0].time - TimeDelta::days(1)), [1, 2, 3, 4]);
    }

    #[test]
    fn decision_filters_parse() {
        assert_eq!("refused".parse(), Ok(DecisionFilter::Refused));
        for decision in Decision::ALL {
            assert_eq!(decision.as_str().parse(), Ok(DecisionFilter::Is(decision)));
        }
        assert_eq!(
            "Denied".parse::<DecisionFilter>(),
            Err(FilterError::Decision {
                text: "Denied".into()
            })
        );
    }

    #[test]
    fn since_accepts_rfc3339_and_times_ago() {
        let now = at("2026-12-02T13:20:00Z");
        assert_eq!(
            parse_since_at("2026-12-02T10:00:00Z", now),
            Ok(at("2026-12-02T10:00:00Z"))
        );
        assert_eq!(
            parse_since_at("2026-12-02T11:00:00+01:00", now),
            Ok(at("2026-12-02T10:00:00Z"))
        );
        assert_eq!(parse_since_at("30s", now), Ok(at("2026-12-02T13:19:30Z")));
        assert_eq!(parse_since_at("10m", now), Ok(at("2026-12-02T13:10:00Z")));
        assert_eq!(parse_since_at("2h", now), Ok(at("2026-12-02T11:20:00Z")));
        assert_eq!(parse_since_at("1d", now), Ok(at("2026-12-01T13:20:00Z")));
        for bad in [
            "",
            "h",
            "-1h",
            "1.5h",
            "10",
            "10x",
            "yesterday",
            "99999999999999999999d",
        ] {
            assert_eq!(
                parse_since_at(bad, now),
                Err(FilterError::Since { text: bad.into() }),
                "{bad}"
            );
        }
        assert!(parse_since("1h").unwrap() < Utc::now());
    }

    #[test]
    fn the_table_has_the_columns_and_one_line_per_record() {
        let tmp = sample_log();
        let records = read(tmp.path(), &Filter::default()).unwrap();

        let table = render_table(&records);
        let lines: Vec<&str> = table.lines().collect();

        assert_eq!(lines.len(), 1 + records.len());
        let header: Vec<&str> = lines[0].split_whitespace().collect();
        assert_eq!(header, HEADERS);
        // Columns line up: DECISION starts at the same offset on every line.
        let at_decision = lines[0].find("DECISION").unwrap();
        assert_eq!(&lines[2][at_decision..at_decision + 6], "denied");
        assert_eq!(&lines[4][at_decision..at_decision + 14], "limit-exceeded");
        assert!(lines[2].contains("minGroupSize"));
        assert!(
            lines[5].contains("  -  "),
            "missing namespace shows as -: {}",
            lines[5]
        );
        assert!(lines[1].starts_with("  1  "));
        assert!(lines[1].contains(&format_time(records[0].time)));
    }

    #[test]
    fn long_or_hostile_sql_stays_on_one_short_line() {
        let tmp = tempfile::tempdir().unwrap();
        let log = AuditLog::open(tmp.path()).unwrap();
        let mut a = access(Some("ns-a"), Decision::Invalid);
        // Guest-written SQL trying to clear the admin's screen and reorder what is shown.
        a.sql = format!(
            "SELECT\n  1 -- \u{1b}[2J\u{202E}\r\n FROM t WHERE x = '{}'",
            "y".repeat(200)
        );
        log.append(&a).unwrap();

        let table = render_table(&read(tmp.path(), &Filter::default()).unwrap());

        assert_eq!(table.lines().count(), 2);
        assert!(!table.contains('\u{1b}') && !table.contains('\u{202E}') && !table.contains('\r'));
        let sql =
            &table.lines().nth(1).unwrap()[table.lines().next().unwrap().find("SQL").unwrap()..];
        assert!(sql.starts_with("SELECT 1 -- ?[2J? FROM t"), "{sql}");
        assert_eq!(sql.chars().count(), SQL_SHOWN_CHARS);
        assert!(sql.ends_with('…'));
    }

    #[test]
    fn read_skips_a_torn_final_line_and_reports_a_damaged_one() {
        let tmp = sample_log();
        let current = tmp.path().join(crate::files::CURRENT);
        let intact = std::fs::read_to_string(&current).unwrap();
        std::fs::write(&current, format!("{intact}{{\"seq\":6,")).unwrap();
        assert_eq!(read(tmp.path(), &Filter::default()).unwrap().len(), 5);

        std::fs::write(&current, intact.replacen("\"rows\":42", "\"rows\":1", 1)).unwrap();
        let err = read(tmp.path(), &Filter::default()).unwrap_err();
        assert!(
            matches!(&err, AuditError::Corrupt { file, reason } if *file == current && reason.starts_with("line 1:")),
            "{err:?}"
        );
    }
}
