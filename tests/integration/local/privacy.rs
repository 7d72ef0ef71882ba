//! Differential privacy end to end: private datasets held as CSV and
//! Parquet (PostgreSQL tables in `services::privacy`) answer noisy
//! aggregates; `sandlet query` spends the budget across processes; the
//! data admin lists and resets it, on the audit record. (The attacks and
//! the noise calibration are tested in `sandlet-data`'s `private` tests;
//! the node's pods in `e2e::kube`.)

use std::path::Path;
use std::sync::Arc;

use sandlet_data::{Budget, DataAccess, GrantedDatasets, Ledger, QueryError, Value};
use sandlet_station::StationConfig;

use crate::fixtures::sandlet;
use crate::local::queries::{LABS, PATIENTS, Source, lab, patient, write_csv, write_parquet};

/// Budgets so large that the noise is below one unit: the answers can be
/// checked against the exact values (the clamped ones).
fn config_text(dir: &Path, source: Source, url: Option<&str>) -> String {
    let source_of = |name: &str| match source {
        Source::Csv => format!("{{ csv: {}/{name}.csv }}", dir.display()),
        Source::Parquet => format!("{{ parquet: {}/{name}.parquet }}", dir.display()),
        Source::Postgres => format!(
            "{{ postgres: {{ url: \"{}\", table: {name} }} }}",
            url.unwrap()
        ),
    };
    format!(
        "datasets:
  - name: patients
    source: {}
    policy:
      allowedColumns: [age, sex, bmi, outcome, site]
    privacy:
      epsilon: 1000000
      perQuery: 10000
      delta: 1.0e-3
      bounds: {{ age: [0, 60], bmi: [10, 40], outcome: [0, 1] }}
  - name: labs
    source: {}
    privacy: {{ epsilon: 1000000, perQuery: 10000, delta: 1.0e-3, bounds: {{ value: [0, 15] }} }}
",
        source_of("patients"),
        source_of("labs"),
    )
}

fn number(value: &Value) -> f64 {
    match value {
        Value::Int(i) => *i as f64,
        Value::Float(x) => *x,
        other => panic!("not a number: {other:?}"),
    }
}

#[track_caller]
fn near(actual: &Value, expected: f64, tolerance: f64, what: &str) {
    let actual = number(actual);
    assert!(
        (actual - expected).abs() <= tolerance,
        "{what}: {actual}, expected {expected}"
    );
}

/// Noisy aggregates on the tables `write_csv` wrote into `dir`, held as
/// `source` (for Parquet, converted by `write_parquet`; for PostgreSQL,
/// loaded into the database `url` names).
pub(crate) async fn private_suite(dir: &Path, source: Source, url: Option<&str>) {
    let path = dir.join("datasets.yaml");
    std::fs::write(&path, config_text(dir, source, url)).unwrap();
    let config = StationConfig::load(&path).unwrap().data;
    let ledger = Arc::new(Ledger::open(&dir.join("state")).unwrap());
    let data = GrantedDatasets::new(&config, &["patients".into(), "labs".into()])
        .unwrap()
        .budgeted(Budget {
            ledger: Arc::clone(&ledger),
            namespace: "research".into(),
        });

    // Grouped: counts, a clamped mean (ages 20..79 clamped to 60) and a sum.
    let table = data
        .query(
            "SELECT sex, COUNT(*) AS n, AVG(age) AS mean, SUM(outcome) AS outcomes \
             FROM patients GROUP BY sex ORDER BY sex",
        )
        .await
        .unwrap_or_else(|e| panic!("{source:?}: {e}"));
    assert_eq!(table.columns, ["sex", "n", "mean", "outcomes"]);
    assert_eq!(table.rows.len(), 2, "{source:?}: {:?}", table.rows);
    for (row, sex) in table.rows.iter().zip(["f", "m"]) {
        assert_eq!(row[0], Value::Text(sex.into()));
        let people: Vec<_> = (0..PATIENTS)
            .map(patient)
            .filter(|p| p.sex == sex)
            .collect();
        let n = people.len() as f64;
        let mean = people.iter().map(|p| p.age.min(60) as f64).sum::<f64>() / n;
        let outcomes = people.iter().map(|p| p.outcome as f64).sum::<f64>();
        near(&row[1], n, 1.0, "count");
        near(&row[2], mean, 0.05, "clamped mean");
        near(&row[3], outcomes, 1.0, "sum");
    }

    // Every site shows, "west" (3 people) too: with this much ε its noisy
    // count passes the threshold.
    let table = data
        .query("SELECT site, COUNT(*) FROM patients GROUP BY site ORDER BY site")
        .await
        .unwrap();
    let sites: Vec<&Value> = table.rows.iter().map(|r| &r[0]).collect();
    assert_eq!(
        sites,
        ["east", "north", "south", "west"]
            .map(|s| Value::Text(s.into()))
            .iter()
            .collect::<Vec<_>>()
    );
    near(&table.rows[3][1], 3.0, 1.0, "west");

    // A decimal column (numeric in PostgreSQL), clamped at 15, and the
    // variance.
    let table = data
        .query("SELECT kind, AVG(value), VAR_POP(value) FROM labs GROUP BY kind ORDER BY kind")
        .await
        .unwrap_or_else(|e| panic!("{source:?}: {e}"));
    for (row, kind) in table.rows.iter().zip(["crp", "hb"]) {
        assert_eq!(row[0], Value::Text(kind.into()));
        let values: Vec<f64> = (0..LABS)
            .map(lab)
            .filter(|l| l.kind == kind)
            .map(|l| l.value.min(15.0))
            .collect();
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let variance = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        near(&row[1], mean, 0.05, "lab mean");
        near(&row[2], variance, 0.1, "lab variance");
    }

    // No rows: a noisy zero, not a refusal.
    let table = data
        .query("SELECT COUNT(*) FROM patients WHERE age > 1000")
        .await
        .unwrap();
    near(&table.rows[0][0], 0.0, 1.0, "no rows");

    // Row-level values, another dataset in the same query, a hidden column.
    for (sql, expected) in [
        (
            "SELECT age FROM patients",
            "privacy: dataset patients answers only differentially private aggregates",
        ),
        (
            "SELECT COUNT(*) FROM patients p JOIN labs l ON p.site = l.site",
            "privacy: dataset",
        ),
    ] {
        let error = data.query(sql).await.unwrap_err();
        assert!(
            matches!(&error, QueryError::Denied(m) if m.starts_with(expected)),
            "{source:?} {sql}: {error}"
        );
    }
    let error = data
        .query("SELECT COUNT(name) FROM patients")
        .await
        .unwrap_err();
    assert!(matches!(error, QueryError::NotGranted(_)), "{error}");
    // Three answered queries of patients and one of labs, 10000 each; the
    // refused ones cost nothing.
    assert_eq!(
        ledger.spent("patients", "research").unwrap().to_string(),
        "30000"
    );
    assert_eq!(
        ledger.spent("labs", "research").unwrap().to_string(),
        "10000"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_aggregates_on_csv() {
    let dir = tempfile::tempdir().unwrap();
    write_csv(dir.path());
    private_suite(dir.path(), Source::Csv, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_aggregates_on_parquet() {
    let dir = tempfile::tempdir().unwrap();
    write_csv(dir.path());
    write_parquet(dir.path()).await;
    private_suite(dir.path(), Source::Parquet, None).await;
}

/// `sandlet query` runs as its own process each time: the ledger in the
/// state directory is what every run shares, and what survives them.
#[test]
fn sandlet_query_spends_the_budget_across_processes_and_the_admin_resets_it() {
    let dir = tempfile::tempdir().unwrap();
    write_csv(dir.path());
    let config = dir.path().join("datasets.yaml");
    std::fs::write(
        &config,
        format!(
            "datasets:\n  - name: patients\n    source: {{ csv: {}/patients.csv }}\n    privacy: {{ epsilon: 1, perQuery: 0.25, bounds: {{ age: [0, 100] }} }}\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let state = dir.path().join("state");
    let query = || {
        let mut command = sandlet();
        command
            .args(["query", "--config"])
            .arg(&config)
            .arg("--state-dir")
            .arg(&state)
            .arg("SELECT COUNT(*) AS n, AVG(age) AS mean FROM patients");
        command
    };
    for _ in 0..4 {
        let out = query().output().unwrap();
        assert!(out.status.success(), "{out:?}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.starts_with("n,mean\n"), "{stdout}");
    }
    let out = query().output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim_end(),
        "limit-exceeded: privacy budget of dataset patients for namespace @local is spent: \
         0 of 1 left, and this query needs 0.25"
    );

    let budget = |args: &[&str]| {
        let mut command = sandlet();
        command
            .arg("budget")
            .args(args)
            .arg("--config")
            .arg(&config)
            .arg("--state-dir")
            .arg(&state);
        command.output().unwrap()
    };
    let out = budget(&["list"]);
    assert!(out.status.success(), "{out:?}");
    let listed = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<Vec<&str>> = listed
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines,
        [
            vec!["DATASET", "NAMESPACE", "SPENT", "BUDGET", "LEFT", "CHARGES"],
            vec!["patients", "@local", "1", "1", "0", "4"],
        ]
    );
    let out = budget(&["reset", "patients", "--namespace", "@local"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim_end(),
        "reset dataset patients for namespace @local: 1 spent in 4 charges"
    );
    let out = budget(&["reset", "patients", "--namespace", "nobody"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");

    // Eight processes at once, with room for four.
    let children: Vec<_> = (0..8)
        .map(|_| {
            query()
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outcomes: Vec<_> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let answered = outcomes.iter().filter(|o| o.status.success()).count();
    let refused = outcomes
        .iter()
        .filter(|o| {
            o.status.code() == Some(1)
                && String::from_utf8_lossy(&o.stderr).starts_with("limit-exceeded: privacy budget")
        })
        .count();
    assert_eq!((answered, refused), (4, 4), "{outcomes:?}");

    // The record: every charge and the reset, and the chain holds.
    let out = sandlet()
        .args(["audit", "verify", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("14 records"),
        "{out:?}"
    );
    let out = sandlet()
        .args(["audit", "show", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.lines().next().unwrap().contains("EPSILON"), "{shown}");
    assert!(
        shown.contains("0.25 (0.25/1)") && shown.contains("0.25 (1/1)"),
        "{shown}"
    );
    assert!(shown.contains("reset (1/1)"), "{shown}");
}
