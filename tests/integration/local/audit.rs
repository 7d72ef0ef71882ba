//! The data-access audit log, end to end through the binary: every query
//! of `sandlet query` and `sandlet run` on the record before its answer,
//! `sandlet audit verify` and `show`, tampering and SIGKILL in a burst.
//! (The full disk is `e2e::audit`: it mounts a tmpfs.)

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::fixtures::{Ran, run_sandlet, sandlet, write_patients};

/// A station file over 300 generated patients (policy defaults).
pub(crate) fn station(dir: &Path) -> String {
    write_patients(dir, "patients", 300, 7);
    let config = dir.join("station.yaml");
    std::fs::write(
        &config,
        format!(
            "datasets:\n  - name: patients\n    source: {{ csv: {} }}\n    policy: {{ allowedColumns: [age, sex, bmi] }}\n",
            dir.join("patients.csv").display()
        ),
    )
    .unwrap();
    config.display().to_string()
}

/// `sandlet query` of `sql` at the station `config`, its state in `state`.
pub(crate) fn query(config: &str, state: &Path, sql: &str) -> Ran {
    run_sandlet([
        "query",
        "--config",
        config,
        "--state-dir",
        state.to_str().unwrap(),
        sql,
    ])
}

fn audit(args: &[&str], state: &Path) -> Ran {
    let mut full = vec!["audit"];
    full.extend_from_slice(args);
    full.extend(["--state-dir", state.to_str().unwrap()]);
    run_sandlet(full)
}

/// The records of `state`'s audit log as JSON, in chain order.
pub fn records(state: &Path) -> Vec<serde_json::Value> {
    let mut files: Vec<_> = std::fs::read_dir(state.join("audit"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    // Rotated files (audit-<seq>.log) sort before the current audit.log.
    files.sort_by_key(|p| (p.file_name().unwrap() == "audit.log", p.clone()));
    files
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The number of records `sandlet audit verify` finds in `state`'s log,
/// which must verify.
pub fn verified_count(state: &Path) -> u64 {
    let ran = audit(&["verify"], state);
    assert_eq!(ran.code, Some(0), "{ran:#?}");
    ran.stdout
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {:?}", ran.stdout))
}

#[test]
fn every_query_is_on_the_record_and_the_chain_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let config = station(dir.path());
    let state = dir.path().join("state");
    let answered = query(
        &config,
        &state,
        "SELECT sex, COUNT(*) FROM patients GROUP BY sex",
    );
    assert_eq!(answered.code, Some(0), "{answered:#?}");
    let denied = query(
        &config,
        &state,
        "SELECT age, COUNT(*) FROM patients GROUP BY age",
    );
    assert_eq!(denied.code, Some(1), "{denied:#?}");
    let not_granted = query(&config, &state, "SELECT COUNT(ssn) FROM patients");
    assert_eq!(not_granted.code, Some(1));

    let records = records(&state);
    assert_eq!(records.len(), 3);
    assert_eq!(records[0]["decision"], "answered");
    assert_eq!(records[0]["via"], "query");
    assert_eq!(records[0]["rows"], 2);
    assert_eq!(records[0]["datasets"], serde_json::json!(["patients"]));
    assert_eq!(
        records[0]["sql"],
        "SELECT sex, COUNT(*) FROM patients GROUP BY sex"
    );
    // The fingerprint of the checked plan: 64 hex digits, and the same
    // for the same query.
    let fingerprint = records[0]["plan_fingerprint"].as_str().unwrap();
    assert_eq!(fingerprint.len(), 64);
    assert_eq!(records[1]["decision"], "denied");
    assert_eq!(records[1]["rule"], "minGroupSize");
    assert_eq!(records[1]["rows"], 0);
    assert_eq!(records[2]["decision"], "not-granted");
    assert!(records[2]["plan_fingerprint"].is_null());
    for (i, record) in records.iter().enumerate() {
        assert_eq!(record["seq"], i as u64 + 1);
        assert!(record["duration_ms"].as_f64().unwrap() >= 0.0);
    }
    assert_eq!(records[1]["prev"], records[0]["hash"]);
    assert_eq!(verified_count(&state), 3);

    // A run's guest queries go on the same record, with the module digest.
    let ran = run_sandlet([
        "run",
        "--config",
        &config,
        "--grant",
        "patients",
        "--state-dir",
        state.to_str().unwrap(),
        "--input",
        r#"{"dataset": "patients", "column": "bmi"}"#,
        crate::fixtures::guests().column_stats.to_str().unwrap(),
    ]);
    assert_eq!(ran.code, Some(0), "{ran:#?}");
    let records = self::records(&state);
    assert!(records.len() > 3);
    let from_run = &records[3];
    assert_eq!(from_run["via"], "run");
    assert!(
        from_run["module_digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert_eq!(verified_count(&state), records.len() as u64);

    // `show` filters by decision.
    let shown = audit(&["show", "--decision", "denied"], &state);
    assert_eq!(shown.code, Some(0), "{shown:#?}");
    assert!(shown.stdout.contains("minGroupSize"), "{}", shown.stdout);
    assert!(
        !shown.stdout.contains("answered"),
        "only denied records: {}",
        shown.stdout
    );
    let all = audit(&["show", "--since", "1h"], &state);
    assert_eq!(all.code, Some(0));
    assert!(all.stdout.contains("answered") && all.stdout.contains("not-granted"));
    let bad = audit(&["show", "--decision", "maybe"], &state);
    bad.assert_sandlet_error("--decision");
}

/// Rewrites the current log file with `edit` applied to its lines.
fn tamper(state: &Path, edit: impl FnOnce(&mut Vec<String>)) {
    let file = state.join("audit/audit.log");
    let mut lines: Vec<String> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    edit(&mut lines);
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(&file, text).unwrap();
}

/// A change to the log's lines.
type Edit = Box<dyn FnOnce(&mut Vec<String>)>;

#[test]
fn tampering_fails_verify_naming_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let config = station(dir.path());
    let clean = dir.path().join("clean");
    for i in 0..5 {
        let sql = format!("SELECT COUNT(*) FROM patients WHERE age > {}", 20 + i);
        assert_eq!(query(&config, &clean, &sql).code, Some(0));
    }
    assert_eq!(verified_count(&clean), 5);
    let copy = |name: &str| {
        let to = dir.path().join(name);
        std::fs::create_dir_all(to.join("audit")).unwrap();
        std::fs::copy(clean.join("audit/audit.log"), to.join("audit/audit.log")).unwrap();
        to
    };
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "edited",
            Box::new(|lines| lines[2] = lines[2].replace("\"rows\":1", "\"rows\":7")),
            "record 3",
        ),
        (
            "edited-sql",
            Box::new(|lines| lines[1] = lines[1].replace("age > 21", "age > 99")),
            "record 2",
        ),
        (
            "deleted",
            Box::new(|lines| {
                lines.remove(1);
            }),
            "record 2",
        ),
        ("reordered", Box::new(|lines| lines.swap(2, 3)), "record 3"),
        (
            "truncated",
            Box::new(|lines| {
                let cut = lines[3].len() / 2;
                lines[3].truncate(cut);
            }),
            "record 4",
        ),
    ];
    for (name, edit, named) in cases {
        let state = copy(name);
        tamper(&state, edit);
        let ran = audit(&["verify"], &state);
        assert_eq!(ran.code, Some(1), "{name}: {ran:#?}");
        assert!(
            ran.stderr.contains(named),
            "{name}: expected {named:?} in {}",
            ran.stderr
        );
    }
}

#[test]
fn sigkill_in_a_burst_leaves_a_chain_that_verifies_and_no_answer_without_a_record() {
    let dir = tempfile::tempdir().unwrap();
    let config = station(dir.path());
    let state = dir.path().join("state");
    // Rounds of concurrent queries, each round killed part-way.
    let mut answers = 0;
    let started = Instant::now();
    let rounds = 8u64;
    let per_round = 6;
    for round in 0..rounds {
        let children: Vec<_> = (0..per_round)
            .map(|i| {
                sandlet()
                    .args([
                        "query",
                        "--config",
                        &config,
                        "--state-dir",
                        state.to_str().unwrap(),
                        &format!("SELECT COUNT(*) FROM patients WHERE age > {}", 20 + i),
                    ])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        // Let some finish and some not.
        std::thread::sleep(Duration::from_millis(10 + round * 25));
        for mut child in children {
            let _ = child.kill(); // SIGKILL
            let output = child.wait_with_output().unwrap();
            if output.status.success() && !output.stdout.is_empty() {
                answers += 1;
            }
        }
    }
    let records = records(&state);
    let answered = records
        .iter()
        .filter(|r| r["decision"] == "answered")
        .count();
    eprintln!(
        "{answers} answers printed, {answered} answered records, {} records, {:?}",
        records.len(),
        started.elapsed()
    );
    assert!(answers > 0, "no query finished before its kill");
    assert!(
        answers < (rounds * per_round) as usize,
        "every query finished: nothing was killed in the middle"
    );
    assert!(answered >= answers, "an answer left without its record");
    assert_eq!(verified_count(&state), records.len() as u64);
}
