//! Disclosure control on PostgreSQL tables (one server per test process,
//! `scripts/postgres` on loopback): the table-driven suite of
//! `local::queries` on the same data loaded into PostgreSQL, a slow scan
//! against the query timeout, and the example algorithms' numbers from
//! every source type.

use std::path::Path;

use sandlet_data::{DataAccess as _, QueryError};

use crate::local::queries::{
    PATIENTS, Patient, Source, config_text, count_patients, grant, int, patient, run_suite,
    write_csv, write_parquet,
};
use crate::postgres::postgres;

/// Loads the CSVs into a fresh PostgreSQL database; `secret` is not
/// readable by the station's role.
pub(crate) fn load_postgres(dir: &Path, database: &str) -> String {
    let pg = postgres();
    pg.create_database(database);
    pg.load_csv(
        database,
        "patients",
        "id integer, name text, age integer, sex text, bmi double precision, outcome integer, site varchar(16)",
        &dir.join("patients.csv"),
        true,
    );
    pg.load_csv(
        database,
        "labs",
        "site text, kind text, value numeric(6,2)",
        &dir.join("labs.csv"),
        true,
    );
    pg.load_csv(
        database,
        "secret",
        "code integer",
        &dir.join("secret.csv"),
        false,
    );
    pg.url(database)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_and_legitimate_queries_on_postgres() {
    let dir = tempfile::tempdir().unwrap();
    write_csv(dir.path());
    let url = load_postgres(dir.path(), "suite");
    run_suite(dir.path(), Source::Postgres, Some(&url)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_postgres_scan_hits_the_query_timeout() {
    let dir = tempfile::tempdir().unwrap();
    write_csv(dir.path());
    let url = load_postgres(dir.path(), "slow");
    let pg = postgres();
    pg.psql(
        "slow",
        "CREATE VIEW crawl AS SELECT p.age FROM patients p, pg_sleep(5)",
    );
    pg.psql(
        "slow",
        &format!("GRANT SELECT ON crawl TO {}", crate::postgres::READER),
    );
    let yaml = format!(
        "datasets:
  - name: patients
    source: {{ postgres: {{ url: \"{url}\", table: patients }} }}
    policy: {{ queryTimeout: 1s }}
  - name: crawl
    source: {{ postgres: {{ url: \"{url}\", table: public.crawl }} }}
    policy: {{ queryTimeout: 1s }}
"
    );
    let data = grant(dir.path(), &yaml, &["patients", "crawl"]);
    let started = std::time::Instant::now();
    assert_eq!(
        data.query("SELECT COUNT(*) FROM crawl").await.unwrap_err(),
        QueryError::LimitExceeded("queryTimeout: the query ran longer than 1s".to_owned())
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(4));
    assert_eq!(
        count_patients(&data).await,
        Ok(vec![vec![int(PATIENTS as i64)]])
    );
    // The station's role is read-only and the guest's SQL never reaches
    // PostgreSQL: the secret table, which the role cannot read, cannot be
    // granted into existence either.
    let yaml = format!(
        "datasets:\n  - name: secret\n    source: {{ postgres: {{ url: \"{url}\", table: secret }} }}\n"
    );
    let data = grant(dir.path(), &yaml, &["secret"]);
    assert!(matches!(
        data.query("SELECT COUNT(*) FROM secret").await,
        Err(QueryError::Invalid(m)) if m.contains("unavailable")
    ));
}

/// The example algorithms, run by `sandlet run` against each source type,
/// get exactly the numbers computed directly from the generated rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_algorithms_get_exact_numbers_from_every_source() {
    use crate::fixtures::{guests, run_sandlet};
    let dir = tempfile::tempdir().unwrap();
    write_csv(dir.path());
    write_parquet(dir.path()).await;
    let url = load_postgres(dir.path(), "algorithms");
    let patients: Vec<Patient> = (0..PATIENTS).map(patient).collect();
    let bmis = |sex: Option<&str>| -> Vec<f64> {
        patients
            .iter()
            .filter(|p| sex.is_none_or(|s| p.sex == s))
            .map(|p| p.bmi)
            .collect()
    };
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1.0);
    for source in [Source::Csv, Source::Parquet, Source::Postgres] {
        let config = dir.path().join(format!("{source:?}.yaml"));
        std::fs::write(&config, config_text(dir.path(), source, Some(&url))).unwrap();
        let run = |module: &Path, input: &str| {
            let ran = run_sandlet([
                "run",
                "--config",
                config.to_str().unwrap(),
                "--grant",
                "patients",
                "--input",
                input,
                module.to_str().unwrap(),
            ]);
            assert_eq!(ran.code, Some(0), "{source:?}: {}", ran.stderr);
            serde_json::from_str::<serde_json::Value>(ran.stdout.trim()).unwrap()
        };
        // federated-mean's partial step: count and sum.
        let partial = run(
            &guests().federated_mean,
            r#"{"dataset": "patients", "column": "bmi"}"#,
        );
        let all = bmis(None);
        assert_eq!(partial["count"], all.len() as i64, "{source:?}");
        assert!(
            close(partial["sum"].as_f64().unwrap(), all.iter().sum()),
            "{source:?}: {partial}"
        );
        // column-stats grouped by sex: count, mean, sample variance.
        let stats = run(
            &guests().column_stats,
            r#"{"dataset": "patients", "column": "bmi", "group_by": "sex"}"#,
        );
        for (group, sex) in stats["groups"].as_array().unwrap().iter().zip(["f", "m"]) {
            let values = bmis(Some(sex));
            let n = values.len() as f64;
            let mean = values.iter().sum::<f64>() / n;
            let variance = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
            assert_eq!(group["key"], sex, "{source:?}");
            assert_eq!(group["count"], values.len() as i64, "{source:?}");
            assert!(
                close(group["mean"].as_f64().unwrap(), mean),
                "{source:?}: {group}"
            );
            assert!(
                close(group["variance"].as_f64().unwrap(), variance),
                "{source:?}: {group}"
            );
        }
    }
}
