//! Differential privacy through the whole engine: CSV datasets, the ledger
//! in a temporary state directory, and the attacks that thresholds alone
//! cannot stop.

use std::io::Write as _;
use std::sync::Arc;

use sandlet_privacy::{Ledger, PrivacyPolicy, PrivacySpec};

use crate::{
    Budget, DataAccess, DataConfig, DatasetConfig, DisclosurePolicy, GrantedDatasets, QueryError,
    SourceConfig, Value,
};

/// 30 patients: id 0..29, age 20 + id, sex "m" for every third, bmi 20 +
/// id / 2; the target of the attacks is id 7 (age 27).
fn write_patients(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("patients.csv");
    let mut file = std::fs::File::create(&path).unwrap();
    writeln!(file, "id,age,sex,bmi").unwrap();
    for i in 0..30 {
        let sex = if i % 3 == 0 { "m" } else { "f" };
        writeln!(file, "{i},{},{sex},{}", 20 + i, 20.0 + i as f64 / 2.0).unwrap();
    }
    path
}

const TARGET_AGE: f64 = 27.0;

fn privacy(epsilon: f64, per_query: f64, delta: f64) -> PrivacyPolicy {
    let spec = PrivacySpec {
        epsilon,
        delta,
        per_query: Some(per_query),
        bounds: [
            ("age".to_owned(), [0.0, 120.0]),
            ("bmi".to_owned(), [10.0, 70.0]),
            ("id".to_owned(), [0.0, 1000.0]),
        ]
        .into(),
        max_rows_per_person: None,
    };
    PrivacyPolicy::try_from(spec).unwrap()
}

struct Station {
    _dir: tempfile::TempDir,
    config: DataConfig,
    ledger: Arc<Ledger>,
}

impl Station {
    /// `patients` with `privacy` (or thresholds alone with `None`), and a
    /// ledger in a fresh state directory.
    fn new(privacy: Option<PrivacyPolicy>) -> Station {
        let dir = tempfile::tempdir().unwrap();
        let csv = write_patients(dir.path());
        let weights = dir.path().join("weights.csv");
        let mut file = std::fs::File::create(&weights).unwrap();
        writeln!(file, "id,w").unwrap();
        for i in 0..30 {
            writeln!(file, "{i},{}", if i == 7 { 1000 } else { 0 }).unwrap();
        }
        let config = DataConfig {
            datasets: vec![
                DatasetConfig {
                    name: "patients".into(),
                    source: SourceConfig::Csv(csv),
                    policy: DisclosurePolicy {
                        privacy,
                        ..DisclosurePolicy::default()
                    },
                },
                DatasetConfig {
                    name: "weights".into(),
                    source: SourceConfig::Csv(weights),
                    policy: DisclosurePolicy {
                        aggregates_only: false,
                        min_group_size: 1,
                        min_rows: 1,
                        ..DisclosurePolicy::default()
                    },
                },
            ],
            default_grants: Default::default(),
        };
        let ledger = Arc::new(Ledger::open(&dir.path().join("state")).unwrap());
        Station {
            _dir: dir,
            config,
            ledger,
        }
    }

    fn grant(&self, namespace: &str, names: &[&str]) -> GrantedDatasets {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        GrantedDatasets::new(&self.config, &names)
            .unwrap()
            .budgeted(Budget {
                ledger: Arc::clone(&self.ledger),
                namespace: namespace.into(),
            })
    }

    fn patients(&self) -> GrantedDatasets {
        self.grant("research", &["patients"])
    }
}

fn number(value: &Value) -> f64 {
    match value {
        Value::Int(i) => *i as f64,
        Value::Float(x) => *x,
        other => panic!("not a number: {other:?}"),
    }
}

async fn scalar(data: &GrantedDatasets, sql: &str) -> f64 {
    let table = data.query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    assert_eq!(table.rows.len(), 1, "{sql}");
    number(&table.rows[0][0])
}

/// The variance of the difference of two independent discrete Laplace
/// draws of scale `b` is twice the variance of one,
/// `2·e^{-1/b} / (1 - e^{-1/b})²`.
fn discrete_laplace_variance(b: f64) -> f64 {
    let q = (-1.0 / b).exp();
    2.0 * q / (1.0 - q).powi(2)
}

/// Checks that `errors` look like noise of `variance` around zero: mean
/// near 0, variance within 35 % (over 400 draws the sample variance of
/// Laplace noise is within that about 3 standard errors), and hardly ever
/// exactly zero.
fn assert_noise(errors: &[f64], variance: f64, what: &str) {
    let n = errors.len() as f64;
    let mean = errors.iter().sum::<f64>() / n;
    let sample = errors.iter().map(|e| (e - mean).powi(2)).sum::<f64>() / (n - 1.0);
    let sd = variance.sqrt();
    assert!(
        mean.abs() < 4.0 * sd / n.sqrt(),
        "{what}: mean error {mean}, sd {sd}"
    );
    assert!(
        (sample / variance - 1.0).abs() < 0.35,
        "{what}: variance {sample}, calibrated {variance}"
    );
    let exact = errors.iter().filter(|e| e.abs() < 0.5).count();
    assert!(
        exact * 20 < errors.len(),
        "{what}: {exact} of {} runs recovered the value exactly",
        errors.len()
    );
}

const RUNS: usize = 400;

/// The three attacks of README's "What thresholds do not stop", against
/// thresholds alone: each gives person 7's age away exactly.
#[tokio::test]
async fn thresholds_alone_give_the_targets_age_away_exactly() {
    let station = Station::new(None);
    let data = station.patients();
    let all = scalar(&data, "SELECT SUM(age) FROM patients").await;
    let rest = scalar(&data, "SELECT SUM(age) FROM patients WHERE id <> 7").await;
    assert_eq!(all - rest, TARGET_AGE, "differencing");
    let case = scalar(
        &data,
        "SELECT SUM(age * CASE WHEN id = 7 THEN 1 ELSE 0 END) FROM patients",
    )
    .await;
    assert_eq!(case, TARGET_AGE, "CASE ... ELSE 0");
    let repeated = scalar(
        &data,
        "SELECT SUM(age) FROM patients JOIN (VALUES (1), (2)) v(k) ON v.k = 1 OR id = 7",
    )
    .await;
    assert_eq!(repeated - all, TARGET_AGE, "repeated-row weighting join");
    let both = station.grant("research", &["patients", "weights"]);
    let weighted = scalar(
        &both,
        "SELECT SUM(p.age * w.w) FROM patients p JOIN weights w ON p.id = w.id",
    )
    .await;
    assert_eq!(weighted / 1000.0, TARGET_AGE, "weighting join");
}

#[tokio::test]
async fn with_privacy_differencing_recovers_the_age_only_within_the_noise() {
    let station = Station::new(Some(privacy(1e6, 1.0, 0.0)));
    let data = station.patients();
    let mut errors = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let all = scalar(&data, "SELECT SUM(age) FROM patients").await;
        let rest = scalar(&data, "SELECT SUM(age) FROM patients WHERE id <> 7").await;
        errors.push(all - rest - TARGET_AGE);
    }
    // One statistic per query, ε = 1: scale = 120 (the bound) / 1.
    assert_noise(&errors, 2.0 * discrete_laplace_variance(120.0), "differencing");
}

#[tokio::test]
async fn with_privacy_case_else_zero_and_weighting_recover_only_within_the_noise() {
    let station = Station::new(Some(privacy(1e6, 1.0, 0.0)));
    let data = station.patients();
    let mut case = Vec::with_capacity(RUNS);
    let mut weighted = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let v = scalar(
            &data,
            "SELECT SUM(age * CASE WHEN id = 7 THEN 1 ELSE 0 END) FROM patients",
        )
        .await;
        case.push(v - TARGET_AGE);
        // Weighting inside the query: the range grows with the weight, and
        // the noise with it.
        let v = scalar(
            &data,
            "SELECT SUM(age * CASE WHEN id = 7 THEN 1000 ELSE 0 END) FROM patients",
        )
        .await;
        weighted.push(v / 1000.0 - TARGET_AGE);
    }
    // CASE: the values lie in [0, 120], scale 120.
    assert_noise(&case, discrete_laplace_variance(120.0), "CASE ... ELSE 0");
    // Weighted: values in [0, 120000], in units of 2^-3 (120000 < 2^17):
    // scale 960000 units; divided by 1000 (and 8 units per 1), scale 120.
    let b = 120_000.0 / 2f64.powi(17 - 20);
    let variance = discrete_laplace_variance(b) * (2f64.powi(17 - 20) / 1000.0).powi(2);
    assert_noise(&weighted, variance, "weighting");

    // The plain CASE is answered too, with the same noise.
    let v = scalar(
        &data,
        "SELECT SUM(CASE WHEN id = 7 THEN age ELSE 0 END) FROM patients",
    )
    .await;
    assert!(v.fract() == 0.0 && (0.0..=1e5).contains(&(v + 5e4)), "{v}");

    // A join that weights or repeats rows is refused outright.
    let both = station.grant("research", &["patients", "weights"]);
    let error = both
        .query("SELECT SUM(p.age * w.w) FROM patients p JOIN weights w ON p.id = w.id")
        .await
        .unwrap_err();
    assert!(
        matches!(&error, QueryError::Denied(m) if m.starts_with("privacy: dataset patients answers differentially private aggregates of itself alone")),
        "{error}"
    );
    let error = data
        .query("SELECT SUM(age) FROM patients JOIN (VALUES (1), (2)) v(k) ON v.k = 1 OR id = 7")
        .await
        .unwrap_err();
    assert!(
        matches!(&error, QueryError::Denied(m) if m.starts_with("privacy: a join below the aggregate")),
        "{error}"
    );
}
