//! What one record holds, and how a record becomes a line and back (no IO).
//!
//! This module owns the byte format of a line: the field order of the body, the hash suffix and
//! the hash itself. It must never touch the filesystem; [`crate::log`] writes the lines and
//! [`crate::verify`] checks the chain between them.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The `prev` of the very first record: 64 zeros.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Who asked, as far as the station knows.
///
/// Fields the station cannot know for a given path are `None` (a `sandlet query` from a shell
/// has no pod).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Caller {
    /// How the query reached the data: `"node"` (a pod on the node), `"run"` (`sandlet run`) or
    /// `"query"` (the `sandlet query` CLI).
    pub via: String,
    /// The pod's namespace.
    pub namespace: Option<String>,
    /// The pod's name.
    pub pod: Option<String>,
    /// The pod's UID, which tells apart pods that reuse a name.
    pub pod_uid: Option<String>,
    /// The pod's service account.
    pub service_account: Option<String>,
    /// Digest of the wasm module that ran the query (`sha256:…`).
    pub module_digest: Option<String>,
}

/// What became of a query: answered, or one of the refusal cases of the WIT `error` variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Decision {
    /// The query was answered.
    Answered,
    /// A dataset was not granted to the caller, or does not exist.
    NotGranted,
    /// The query breaks a dataset's disclosure policy.
    Denied,
    /// The query could not be parsed or planned.
    Invalid,
    /// A time, row or memory limit was hit.
    LimitExceeded,
}

impl Decision {
    /// Every decision, in the order of the WIT variant.
    pub const ALL: [Decision; 5] = [
        Decision::Answered,
        Decision::NotGranted,
        Decision::Denied,
        Decision::Invalid,
        Decision::LimitExceeded,
    ];

    /// The name as stored and shown: `answered`, `not-granted`, `denied`, `invalid`,
    /// `limit-exceeded`.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Answered => "answered",
            Decision::NotGranted => "not-granted",
            Decision::Denied => "denied",
            Decision::Invalid => "invalid",
            Decision::LimitExceeded => "limit-exceeded",
        }
    }
}

impl std::fmt::Display for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One data access as the caller describes it. The log adds `seq`, `prev`, `time` and `hash`.
#[derive(Debug, Clone, PartialEq)]
pub struct Access {
    /// The station's name.
    pub station: String,
    /// Who asked.
    pub caller: Caller,
    /// The datasets the query named.
    pub datasets: Vec<String>,
    /// The SQL as the caller sent it.
    pub sql: String,
    /// Hex SHA-256 of the checked plan; `None` when the query never got that far.
    pub plan_fingerprint: Option<String>,
    /// Answered, or why not.
    pub decision: Decision,
    /// The policy rule that refused the query (e.g. `minGroupSize`), if one did.
    pub rule: Option<String>,
    /// The refusal message, as the caller was told it.
    pub reason: Option<String>,
    /// Rows returned (0 when refused).
    pub rows: u64,
    /// How long the query took, in milliseconds. Must be finite.
    pub duration_ms: f64,
    /// What the access did to a privacy budget, if anything: the charge of a
    /// differentially private query, or an admin's reset.
    pub privacy: Option<PrivacyEntry>,
}

/// A change to one privacy budget account (a dataset and a namespace).
/// Amounts of ε are exact decimals as text (`"0.1"`), as the ledger counts
/// them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrivacyEntry {
    /// `charge` (a query spent `epsilon`) or `reset` (the admin set the
    /// account back to nothing spent; `epsilon` is what it had spent).
    pub action: String,
    /// The dataset whose budget changed.
    pub dataset: String,
    /// The namespace whose account of that budget changed.
    pub namespace: String,
    /// The ε of the change: what the query spent, or what a reset cleared.
    pub epsilon: String,
    /// Spent on the account after this change.
    pub spent: String,
    /// The account's whole budget.
    pub total: String,
}

/// One stored record: an [`Access`] with the fields the log added.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Position in the chain, from 1, across all files.
    pub seq: u64,
    /// The previous record's hash ([`GENESIS_HASH`] for the first).
    pub prev: String,
    /// When the log wrote the record (millisecond precision).
    pub time: DateTime<Utc>,
    /// What was accessed, by whom, and what became of it.
    pub access: Access,
    /// Hex SHA-256 of this record's body; the next record's `prev`.
    pub hash: String,
}

/// Proof that a record is on stable storage: its place in the chain and its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The record's `seq`.
    pub seq: u64,
    /// The record's hash.
    pub hash: String,
}

/// The body as written. Field order here *is* the format: do not reorder.
#[derive(Serialize)]
struct BodyOut<'a> {
    seq: u64,
    prev: &'a str,
    time: &'a str,
    station: &'a str,
    via: &'a str,
    namespace: Option<&'a str>,
    pod: Option<&'a str>,
    pod_uid: Option<&'a str>,
    service_account: Option<&'a str>,
    module_digest: Option<&'a str>,
    datasets: &'a [String],
    sql: &'a str,
    plan_fingerprint: Option<&'a str>,
    decision: Decision,
    rule: Option<&'a str>,
    reason: Option<&'a str>,
    rows: u64,
    duration_ms: f64,
    /// Written only when there is one, so that records without it keep
    /// the bytes (and hashes) they always had.
    #[serde(skip_serializing_if = "Option::is_none")]
    privacy: Option<&'a PrivacyEntry>,
}

/// The body as read back. Fields are required (`null` is fine for the optional ones) so that a
/// line missing one is not taken for a record.
#[derive(Deserialize)]
struct BodyIn {
    seq: u64,
    prev: String,
    time: String,
    station: String,
    via: String,
    namespace: Option<String>,
    pod: Option<String>,
    pod_uid: Option<String>,
    service_account: Option<String>,
    module_digest: Option<String>,
    datasets: Vec<String>,
    sql: String,
    plan_fingerprint: Option<String>,
    decision: Decision,
    rule: Option<String>,
    reason: Option<String>,
    rows: u64,
    duration_ms: f64,
    #[serde(default)]
    privacy: Option<PrivacyEntry>,
}

const HASH_KEY: &[u8] = br#","hash":""#;
/// `,"hash":"` + 64 hex digits + `"}`.
const HASH_SUFFIX_LEN: usize = HASH_KEY.len() + 64 + 2;

/// Formats a record time as stored: RFC 3339, UTC, milliseconds, `Z`.
pub(crate) fn format_time(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Lowercase hex SHA-256 of `parts` concatenated.
fn sha256_hex(parts: &[&[u8]]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    let digest = hasher.finalize();
    let mut hex = String::with_capacity(64);
    for byte in digest {
        hex.push(char::from(b"0123456789abcdef"[usize::from(byte >> 4)]));
        hex.push(char::from(b"0123456789abcdef"[usize::from(byte & 0xf)]));
    }
    hex
}

/// Checks that an access can be written and read back exactly.
pub(crate) fn check_access(access: &Access) -> Result<(), String> {
    // serde_json writes NaN and infinities as `null`, which would not read back as a number.
    if !access.duration_ms.is_finite() {
        return Err(format!(
            "duration_ms is {}, not a finite number",
            access.duration_ms
        ));
    }
    Ok(())
}

/// Builds the line for `access` at `seq` after `prev`: the bytes to write (ending in `\n`) and
/// the record's hash. The access must have passed [`check_access`].
pub(crate) fn encode_line(
    seq: u64,
    prev: &str,
    time: DateTime<Utc>,
    access: &Access,
) -> (Vec<u8>, String) {
    let time = format_time(time);
    let caller = &access.caller;
    let body = BodyOut {
        seq,
        prev,
        time: &time,
        station: &access.station,
        via: &caller.via,
        namespace: caller.namespace.as_deref(),
        pod: caller.pod.as_deref(),
        pod_uid: caller.pod_uid.as_deref(),
        service_account: caller.service_account.as_deref(),
        module_digest: caller.module_digest.as_deref(),
        datasets: &access.datasets,
        sql: &access.sql,
        plan_fingerprint: access.plan_fingerprint.as_deref(),
        decision: access.decision,
        rule: access.rule.as_deref(),
        reason: access.reason.as_deref(),
        rows: access.rows,
        duration_ms: access.duration_ms,
        privacy: access.privacy.as_ref(),
    };
    // Serialising plain strings, integers and a finite float into a Vec cannot fail.
    let mut line = serde_json::to_vec(&body).expect("a record body always serialises");
    let hash = sha256_hex(&[&line]);
    debug_assert_eq!(line.last(), Some(&b'}'));
    line.pop();
    line.extend_from_slice(HASH_KEY);
    line.extend_from_slice(hash.as_bytes());
    line.extend_from_slice(b"\"}\n");
    (line, hash)
}

/// Why a line is not a sound record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LineError {
    /// No `,"hash":"<64 hex>"}` at the end: cut short, or not written by this crate.
    NoHash,
    /// The hash does not match the body: the record was altered.
    HashMismatch {
        /// The hash the line carries.
        stored: String,
        /// The hash of the body as it is now.
        computed: String,
    },
    /// The body is not a record (not JSON, a field missing or of the wrong type).
    NotARecord(String),
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LineError::NoHash => f.write_str("line does not end in the record's hash (cut short?)"),
            LineError::HashMismatch { stored, computed } => write!(
                f,
                "content does not match its hash (stored {stored}, content hashes to {computed}): the record was altered"
            ),
            LineError::NotARecord(why) => write!(f, "not a record: {why}"),
        }
    }
}

/// Reads one line (without its `\n`) back into a record, checking its own hash. Chain links
/// (`seq`, `prev`) are the caller's to check.
pub(crate) fn decode_line(line: &[u8]) -> Result<Record, LineError> {
    let n = line.len();
    if n < HASH_SUFFIX_LEN + 1 || !line.ends_with(b"\"}") {
        return Err(LineError::NoHash);
    }
    let cut = n - HASH_SUFFIX_LEN;
    let suffix = &line[cut..];
    let stored = &suffix[HASH_KEY.len()..HASH_KEY.len() + 64];
    if !suffix.starts_with(HASH_KEY)
        || !stored
            .iter()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(LineError::NoHash);
    }
    // Hash the bytes as written: no re-serialisation, so float formatting or key order in a
    // future serde_json cannot change what verifies.
    let computed = sha256_hex(&[&line[..cut], b"}"]);
    let stored = String::from_utf8_lossy(stored).into_owned();
    if computed != stored {
        return Err(LineError::HashMismatch { stored, computed });
    }
    let mut body = Vec::with_capacity(cut + 1);
    body.extend_from_slice(&line[..cut]);
    body.push(b'}');
    let body: BodyIn =
        serde_json::from_slice(&body).map_err(|e| LineError::NotARecord(e.to_string()))?;
    let time = DateTime::parse_from_rfc3339(&body.time)
        .map_err(|e| LineError::NotARecord(format!("time {:?}: {e}", body.time)))?
        .with_timezone(&Utc);
    Ok(Record {
        seq: body.seq,
        prev: body.prev,
        time,
        access: Access {
            station: body.station,
            caller: Caller {
                via: body.via,
                namespace: body.namespace,
                pod: body.pod,
                pod_uid: body.pod_uid,
                service_account: body.service_account,
                module_digest: body.module_digest,
            },
            datasets: body.datasets,
            sql: body.sql,
            plan_fingerprint: body.plan_fingerprint,
            decision: body.decision,
            rule: body.rule,
            reason: body.reason,
            rows: body.rows,
            duration_ms: body.duration_ms,
            privacy: body.privacy,
        },
        hash: stored,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{access, at};

    #[test]
    fn a_line_is_the_body_with_its_hash_spliced_in() {
        let mut a = access(Some("ns-a"), Decision::Denied);
        a.sql = "SELECT count(*)\nFROM patients".into();
        let (line, hash) = encode_line(7, GENESIS_HASH, at("2026-12-02T13:20:01.123456Z"), &a);
        let text = std::str::from_utf8(&line).unwrap();

        assert!(text.ends_with(&format!(",\"hash\":\"{hash}\"}}\n")));
        assert_eq!(
            text.matches('\n').count(),
            1,
            "one line, newline in SQL escaped"
        );
        assert!(text.starts_with(r#"{"seq":7,"prev":"0000"#));
        assert!(text.contains(r#""time":"2026-12-02T13:20:01.123Z""#));
        let body = format!("{}}}", &text[..text.len() - 1 - HASH_SUFFIX_LEN]);
        assert_eq!(sha256_hex(&[body.as_bytes()]), hash);
        // The documented field order.
        let keys: Vec<&str> = [
            "seq",
            "prev",
            "time",
            "station",
            "via",
            "namespace",
            "pod",
            "pod_uid",
            "service_account",
            "module_digest",
            "datasets",
            "sql",
            "plan_fingerprint",
            "decision",
            "rule",
            "reason",
            "rows",
            "duration_ms",
            "hash",
        ]
        .to_vec();
        let positions: Vec<usize> = keys
            .iter()
            .map(|k| text.find(&format!("\"{k}\":")).unwrap())
            .collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{text}");
    }

    #[test]
    fn decode_reads_back_what_encode_wrote() {
        let a = access(Some("ns-a"), Decision::LimitExceeded);
        let (line, hash) = encode_line(3, &"ab".repeat(32), at("2026-12-02T13:20:01.123Z"), &a);
        let record = decode_line(&line[..line.len() - 1]).unwrap();

        assert_eq!(record.seq, 3);
        assert_eq!(record.prev, "ab".repeat(32));
        assert_eq!(record.time, at("2026-12-02T13:20:01.123Z"));
        assert_eq!(record.access.caller, a.caller);
        assert_eq!(record.access.datasets, a.datasets);
        assert_eq!(record.access.sql, a.sql);
        assert_eq!(record.access.decision, Decision::LimitExceeded);
        assert_eq!(record.access.rule, a.rule);
        assert_eq!(record.access.rows, a.rows);
        assert_eq!(record.access.duration_ms, a.duration_ms);
        assert_eq!(record.hash, hash);
        assert!(String::from_utf8_lossy(&line).contains(r#""decision":"limit-exceeded""#));
    }

    #[test]
    fn a_privacy_entry_is_written_after_the_fields_it_adds_to_and_reads_back() {
        let plain = access(Some("ns-a"), Decision::Answered);
        let (line, _) = encode_line(1, GENESIS_HASH, at("2026-12-02T13:20:01.123Z"), &plain);
        assert!(!String::from_utf8_lossy(&line).contains("privacy"));
        let mut charged = plain.clone();
        charged.privacy = Some(PrivacyEntry {
            action: "charge".into(),
            dataset: "patients".into(),
            namespace: "ns-a".into(),
            epsilon: "0.1".into(),
            spent: "0.3".into(),
            total: "1".into(),
        });
        let (line, _) = encode_line(2, GENESIS_HASH, at("2026-12-02T13:20:01.123Z"), &charged);
        let text = String::from_utf8_lossy(&line);
        assert!(text.find("\"duration_ms\"").unwrap() < text.find("\"privacy\"").unwrap());
        let record = decode_line(&line[..line.len() - 1]).unwrap();
        assert_eq!(record.access, charged);
    }

    #[test]
    fn decode_names_what_is_wrong_with_a_line() {
        let a = access(None, Decision::Answered);
        let (line, _) = encode_line(1, GENESIS_HASH, Utc::now(), &a);
        let line = &line[..line.len() - 1];

        assert_eq!(decode_line(&line[..line.len() / 2]), Err(LineError::NoHash));
        assert_eq!(decode_line(b""), Err(LineError::NoHash));

        let edited = String::from_utf8(line.to_vec())
            .unwrap()
            .replace("\"rows\":42", "\"rows\":43");
        assert!(matches!(
            decode_line(edited.as_bytes()),
            Err(LineError::HashMismatch { .. })
        ));

        // A well-formed hash over something that is not a record.
        let body = br#"{"seq":1}"#;
        let bogus = format!(
            "{{\"seq\":1,\"hash\":\"{}\"}}",
            sha256_hex(&[body.as_slice()])
        );
        assert!(matches!(
            decode_line(bogus.as_bytes()),
            Err(LineError::NotARecord(_))
        ));
    }

    #[test]
    fn non_finite_durations_are_refused() {
        let mut a = access(None, Decision::Answered);
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            a.duration_ms = bad;
            assert!(check_access(&a).is_err());
        }
        a.duration_ms = 0.25;
        assert_eq!(check_access(&a), Ok(()));
    }
}
