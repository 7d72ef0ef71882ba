//! Every query on the record: what a run's [`super::GrantedDatasets`]
//! writes to the station's audit log ([`sandlet_audit`]) before it answers,
//! and the counters of answers and refusals the node exports.
//!
//! This module owns the mapping from one query's outcome to an audit
//! [`Access`] and to a counter. It must never let an answer out whose record
//! was not written: when the log cannot be written the query is refused
//! ([`audit_failed`]), whatever its own outcome was.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sandlet_audit::{Access, AuditLog, Caller, Decision};

use super::QueryError;

/// Where a state directory keeps its audit log: `<state dir>/audit`.
pub fn audit_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("audit")
}

/// Opens the audit log of `state_dir`, noting in the station's log a torn
/// last line that it cut away (a write that was never acknowledged).
pub fn open_audit_log(state_dir: &Path) -> Result<AuditLog, sandlet_audit::AuditError> {
    let log = AuditLog::open(&audit_dir(state_dir))?;
    if log.torn_bytes_removed_on_open() > 0 {
        tracing::warn!(
            bytes = log.torn_bytes_removed_on_open(),
            "the audit log ended in a torn record (never acknowledged); it was cut away"
        );
    }
    Ok(log)
}

/// What the record of one query says beyond its outcome.
#[derive(Debug, Default)]
pub(crate) struct QueryRecord {
    /// SHA-256 of the checked plan, once there is one.
    pub fingerprint: Option<String>,
    /// The privacy budget charge, if the query made one.
    pub privacy: Option<sandlet_audit::PrivacyEntry>,
}

/// Where a run's queries are recorded, and as whose.
#[derive(Debug, Clone)]
pub struct AuditTrail {
    /// The log every query is appended to before it is answered.
    pub log: Arc<AuditLog>,
    /// The station's name: the node's name, or the host's for the CLI.
    pub station: String,
    /// Who asks: the pod (namespace, name, module) or the local command.
    pub caller: Caller,
    /// Where answers and refusals are counted, if anywhere.
    pub counters: Option<Arc<QueryCounters>>,
}

/// Queries by decision and rule, since the process started.
#[derive(Debug, Default)]
pub struct QueryCounters {
    counts: Mutex<BTreeMap<(Decision, Option<String>), u64>>,
}

impl QueryCounters {
    /// Counts one query that ended with `decision` (and `rule`, for a
    /// refusal).
    pub fn count(&self, decision: Decision, rule: Option<&str>) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        *counts
            .entry((decision, rule.map(str::to_owned)))
            .or_default() += 1;
    }

    /// Every (decision, rule) seen, with its count, in a stable order.
    pub fn snapshot(&self) -> Vec<(Decision, Option<String>, u64)> {
        let counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts
            .iter()
            .map(|((decision, rule), n)| (*decision, rule.clone(), *n))
            .collect()
    }
}

/// The decision, rule and reason of one outcome.
fn decision_of<T>(result: &Result<T, QueryError>) -> (Decision, Option<String>, Option<String>) {
    let (decision, message) = match result {
        Ok(_) => return (Decision::Answered, None, None),
        Err(QueryError::NotGranted(m)) => (Decision::NotGranted, m),
        Err(QueryError::Denied(m)) => (Decision::Denied, m),
        Err(QueryError::Invalid(m)) => (Decision::Invalid, m),
        Err(QueryError::LimitExceeded(m)) => (Decision::LimitExceeded, m),
    };
    (decision, rule_of(message), Some(message.to_string()))
}

/// The rule a refusal names: its first word when that is a policy field or
/// rule name (`minGroupSize: ...`, `queryTimeout: ...`, `audit: ...`).
pub(crate) fn rule_of(message: &str) -> Option<String> {
    // A spent budget names no policy field of its own: its rule is privacy.
    if message.starts_with("privacy budget ") {
        return Some("privacy".to_owned());
    }
    let (head, _) = message.split_once(": ")?;
    (!head.is_empty() && head.chars().all(|c| c.is_ascii_alphabetic())).then(|| head.to_owned())
}

/// An error and its causes, on one line (`cannot write ...: No space left
/// on device`).
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        text.push_str(": ");
        text.push_str(&e.to_string());
        cause = e.source();
    }
    text
}

/// The refusal of a query whose record could not be written.
pub(crate) fn audit_failed(error: impl std::fmt::Display) -> QueryError {
    QueryError::Denied(format!(
        "audit: the station's data-access audit log cannot be written ({error}); \
         no query is answered until it can"
    ))
}

impl AuditTrail {
    /// Records one query, durably, and counts it; returns the outcome to
    /// give the caller: `result` itself, or a refusal when the record could
    /// not be written.
    pub(crate) async fn record<T>(
        &self,
        sql: &str,
        datasets: Vec<String>,
        facts: QueryRecord,
        rows: u64,
        elapsed: Duration,
        result: Result<T, QueryError>,
    ) -> Result<T, QueryError> {
        let (decision, rule, reason) = decision_of(&result);
        let access = Access {
            station: self.station.clone(),
            caller: self.caller.clone(),
            datasets,
            sql: sql.to_owned(),
            plan_fingerprint: facts.fingerprint,
            decision,
            rule,
            reason,
            rows: if result.is_ok() { rows } else { 0 },
            duration_ms: elapsed.as_secs_f64() * 1000.0,
            privacy: facts.privacy,
        };
        let log = Arc::clone(&self.log);
        let written = tokio::task::spawn_blocking(move || log.append(&access).map(|_| access))
            .await
            .map_err(|e| format!("the writer stopped: {e}"))
            .and_then(|r| r.map_err(|e| with_causes(&e)));
        let outcome = match written {
            Ok(_) => result,
            Err(error) => {
                tracing::warn!(%error, "a query was refused: its audit record cannot be written");
                Err(audit_failed(error))
            }
        };
        if let Some(counters) = &self.counters {
            let (decision, rule, _) = decision_of(&outcome);
            counters.count(decision, rule.as_deref());
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_is_the_policy_field_a_refusal_starts_with() {
        assert_eq!(
            rule_of("minGroupSize: every group ...").as_deref(),
            Some("minGroupSize")
        );
        assert_eq!(
            rule_of("queryTimeout: the query ran").as_deref(),
            Some("queryTimeout")
        );
        assert_eq!(rule_of("audit: the log").as_deref(), Some("audit"));
        assert_eq!(rule_of("only SELECT queries are allowed, not X"), None);
        assert_eq!(rule_of("dataset x: y"), None);
    }

    #[test]
    fn counters_count_by_decision_and_rule() {
        let counters = QueryCounters::default();
        counters.count(Decision::Answered, None);
        counters.count(Decision::Denied, Some("minRows"));
        counters.count(Decision::Denied, Some("minRows"));
        assert_eq!(
            counters.snapshot(),
            vec![
                (Decision::Answered, None, 1),
                (Decision::Denied, Some("minRows".to_owned()), 2),
            ]
        );
    }

    #[tokio::test]
    async fn no_answer_leaves_without_its_record() {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(AuditLog::open(&dir.path().join("audit")).unwrap());
        let counters = Arc::new(QueryCounters::default());
        let trail = AuditTrail {
            log: Arc::clone(&log),
            station: "s".into(),
            caller: Caller::default(),
            counters: Some(Arc::clone(&counters)),
        };
        let answered = trail
            .record(
                "SELECT 1",
                vec!["t".into()],
                QueryRecord::default(),
                1,
                Duration::ZERO,
                Ok(7),
            )
            .await;
        assert_eq!(answered, Ok(7));
        assert_eq!(sandlet_audit::verify(log.dir()).unwrap().records, 1);
        // The log's file becomes a directory: it cannot be written, and the
        // answer is withheld.
        let file = log.dir().join("audit.log");
        std::fs::remove_file(&file).unwrap();
        std::fs::create_dir(&file).unwrap();
        let refused = trail
            .record(
                "SELECT 2",
                vec!["t".into()],
                QueryRecord::default(),
                1,
                Duration::ZERO,
                Ok(8),
            )
            .await;
        assert!(
            matches!(&refused, Err(QueryError::Denied(m)) if m.starts_with("audit: ")),
            "{refused:?}"
        );
        assert!(
            counters
                .snapshot()
                .contains(&(Decision::Denied, Some("audit".to_owned()), 1))
        );
    }
}
