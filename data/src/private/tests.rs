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
    let table = data
        .query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
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

/// The three attacks of docs/security/thresholds.md, against
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
    assert_noise(
        &errors,
        2.0 * discrete_laplace_variance(120.0),
        "differencing",
    );
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
    // Weighted: integers in [0, 120000], in units of 1: scale 120000;
    // divided by 1000, scale 120.
    let variance = discrete_laplace_variance(120_000.0) / 1e6;
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

/// Every way around the plan shape, refused with its rule and charged
/// nothing.
#[tokio::test]
async fn queries_that_could_single_a_row_out_are_refused_with_the_reason() {
    let station = Station::new(Some(privacy(10.0, 1.0, 0.0)));
    let data = station.patients();
    let alone =
        "privacy: dataset patients answers differentially private aggregates of itself alone";
    let only = "privacy: dataset patients answers only differentially private aggregates";
    for (sql, expected) in [
        ("SELECT age FROM patients", only),
        ("SELECT * FROM patients WHERE age > 30", only),
        ("SELECT SUM(age) OVER () FROM patients", only),
        (
            "SELECT MAX(age) FROM patients",
            "privacy: MAX cannot be answered",
        ),
        (
            "SELECT MEDIAN(age) FROM patients",
            "privacy: MEDIAN cannot be answered",
        ),
        (
            "SELECT SUM(DISTINCT age) FROM patients",
            "privacy: DISTINCT is allowed only in COUNT",
        ),
        (
            "SELECT SUM(character_length(sex)) FROM patients",
            "privacy: SUM(CAST(character_length(patients.sex) AS Int64)) needs the range",
        ),
        (
            "SELECT SUM(a.age) FROM patients a JOIN patients b ON a.id = b.id",
            alone,
        ),
        (
            "SELECT SUM(age) FROM patients UNION ALL SELECT SUM(age) FROM patients",
            alone,
        ),
        (
            "SELECT SUM(age) FROM patients WHERE age > (SELECT AVG(age) FROM patients)",
            alone,
        ),
        (
            "WITH p AS (SELECT age FROM patients) SELECT SUM(x.age) FROM p x, p y",
            alone,
        ),
        (
            "SELECT SUM(age) FROM (SELECT age FROM patients ORDER BY age LIMIT 5) t",
            "privacy: a LIMIT below the aggregate",
        ),
        (
            "SELECT SUM(age) FROM (SELECT DISTINCT age FROM patients) t",
            "privacy: a DISTINCT below the aggregate",
        ),
        (
            "SELECT COUNT(*) FROM patients WHERE 100 / (age - 27) > 1",
            "privacy: / only by a constant other than zero",
        ),
        (
            "SELECT COUNT(*) FROM patients WHERE CAST(sex AS INT) = 1",
            "privacy: CAST from Utf8 to Int32 can fail",
        ),
        (
            "SELECT COUNT(*) FROM patients WHERE concat(sex, 'x') = 'mx'",
            "privacy: the function concat",
        ),
        (
            "SELECT COUNT(*) FROM patients WHERE sex ~ 'm'",
            "privacy: the operator ~",
        ),
        (
            "SELECT sex, COUNT(*) FROM patients GROUP BY sex",
            "privacy: GROUP BY on dataset patients would show which groups exist",
        ),
        (
            "SELECT COUNT(*) FROM patients GROUP BY ROLLUP(sex)",
            "privacy: GROUPING SETS, ROLLUP and CUBE",
        ),
    ] {
        let error = data.query(sql).await.unwrap_err();
        assert!(
            matches!(&error, QueryError::Denied(m) if m.starts_with(expected)),
            "{sql}: {error}"
        );
    }
    assert_eq!(
        station.ledger.spent("patients", "research").unwrap(),
        sandlet_privacy::Epsilon::ZERO,
        "a refused query spends nothing"
    );
}

#[tokio::test]
async fn grouped_answers_show_only_groups_that_pass_the_noisy_threshold() {
    let station = Station::new(Some(privacy(1e6, 20.0, 1e-4)));
    let data = station.patients();
    let mut seen_single = 0;
    for _ in 0..50 {
        // Each age is one person: a group shown would show that person.
        let table = data
            .query("SELECT age, COUNT(*) AS n FROM patients GROUP BY age")
            .await
            .unwrap();
        seen_single += table.rows.len();
    }
    // δ per query is 1e-4 · 20 / 1e6; 30 groups of one in 50 queries.
    assert_eq!(seen_single, 0, "groups of one person were shown");
    let table = data
        .query(
            "SELECT sex, COUNT(*) AS n, AVG(age) AS mean FROM patients GROUP BY sex \
             HAVING COUNT(*) > 0 ORDER BY sex",
        )
        .await
        .unwrap();
    assert_eq!(table.columns, ["sex", "n", "mean"]);
    assert_eq!(table.rows.len(), 2, "{:?}", table.rows);
    assert_eq!(table.rows[0][0], Value::Text("f".into()));
    assert_eq!(table.rows[1][0], Value::Text("m".into()));
    // ε 20 over three statistics: noise of a few units at most.
    let (f_n, m_n) = (number(&table.rows[0][1]), number(&table.rows[1][1]));
    assert!(
        (f_n - 20.0).abs() <= 5.0 && (m_n - 10.0).abs() <= 5.0,
        "{f_n} {m_n}"
    );
    let mean_m = (0..30).filter(|i| i % 3 == 0).map(|i| 20 + i).sum::<i64>() as f64 / 10.0;
    let m_mean = number(&table.rows[1][2]);
    assert!((m_mean - mean_m).abs() < 5.0, "{m_mean} vs {mean_m}");
}

#[tokio::test]
async fn no_rows_null_values_and_values_out_of_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("odd.csv");
    // 20 rows of age 50; 5 of 500 (clamped to 120); 5 with no age.
    let mut file = std::fs::File::create(&path).unwrap();
    writeln!(file, "id,age,sex,bmi").unwrap();
    for i in 0..30 {
        let age = match i {
            0..20 => "50",
            20..25 => "500",
            _ => "",
        };
        writeln!(file, "{i},{age},f,25").unwrap();
    }
    let config = DataConfig {
        datasets: vec![DatasetConfig {
            name: "patients".into(),
            source: SourceConfig::Csv(path),
            policy: DisclosurePolicy {
                privacy: Some(privacy(1e9, 1e5, 0.0)),
                ..DisclosurePolicy::default()
            },
        }],
        default_grants: Default::default(),
    };
    let data = GrantedDatasets::new(&config, &["patients".into()])
        .unwrap()
        .budgeted(Budget {
            ledger: Arc::new(Ledger::open(dir.path()).unwrap()),
            namespace: "research".into(),
        });
    // ε 1e5 over the statistics: the noise is far below 1.
    let table = data
        .query("SELECT COUNT(*), COUNT(age), SUM(age), AVG(age), STDDEV(age) FROM patients")
        .await
        .unwrap();
    let row: Vec<f64> = table.rows[0].iter().map(number).collect();
    assert_eq!(row[0], 30.0, "rows");
    assert_eq!(row[1], 25.0, "non-NULL ages");
    assert!(
        (row[2] - (20.0 * 50.0 + 5.0 * 120.0)).abs() < 0.01,
        "clamped sum {}",
        row[2]
    );
    let mean = (20.0 * 50.0 + 5.0 * 120.0) / 25.0;
    assert!((row[3] - mean).abs() < 0.01, "clamped mean {}", row[3]);
    let variance = (20.0 * (50.0f64 - mean).powi(2) + 5.0 * (120.0f64 - mean).powi(2)) / 24.0;
    assert!(
        (row[4] - variance.sqrt()).abs() < 0.01,
        "stddev {} vs {}",
        row[4],
        variance.sqrt()
    );

    // No rows at all: still one noisy row, not a refusal (a refusal would
    // tell that no one matches).
    let table = data
        .query("SELECT COUNT(*), SUM(age), AVG(age) FROM patients WHERE age > 1000")
        .await
        .unwrap();
    assert_eq!(table.rows.len(), 1);
    assert_eq!(number(&table.rows[0][0]), 0.0);
    assert!(number(&table.rows[0][1]).abs() < 0.01);
    assert_eq!(table.rows[0][2], Value::Null, "a mean of nothing");
}

#[tokio::test]
async fn the_budget_is_spent_exactly_refused_when_gone_kept_across_restarts_and_reset() {
    let station = Station::new(Some(privacy(1.0, 0.25, 0.0)));
    for _ in 0..4 {
        scalar(&station.patients(), "SELECT COUNT(*) FROM patients").await;
    }
    let error = station
        .patients()
        .query("SELECT COUNT(*) FROM patients")
        .await
        .unwrap_err();
    assert_eq!(
        error,
        QueryError::LimitExceeded(
            "privacy budget of dataset patients for namespace research is spent: 0 of 1 left, \
             and this query needs 0.25"
                .into()
        )
    );
    // Another namespace has its own account.
    scalar(
        &station.grant("other", &["patients"]),
        "SELECT COUNT(*) FROM patients",
    )
    .await;
    // A new ledger over the same state directory: a restarted station.
    let reopened = Arc::new(Ledger::open(&station._dir.path().join("state")).unwrap());
    let restarted = GrantedDatasets::new(&station.config, &["patients".into()])
        .unwrap()
        .budgeted(Budget {
            ledger: Arc::clone(&reopened),
            namespace: "research".into(),
        });
    assert!(matches!(
        restarted.query("SELECT COUNT(*) FROM patients").await,
        Err(QueryError::LimitExceeded(_))
    ));
    reopened.reset("patients", "research").unwrap();
    scalar(&restarted, "SELECT COUNT(*) FROM patients").await;
    assert_eq!(
        reopened.spent("patients", "research").unwrap(),
        sandlet_privacy::Epsilon::from_f64(0.25).unwrap()
    );
}

#[tokio::test]
async fn concurrent_pods_never_spend_more_than_the_budget() {
    let station = Station::new(Some(privacy(1.0, 0.1, 0.0)));
    let state = station._dir.path().join("state");
    let mut pods = Vec::new();
    for _ in 0..30 {
        // Each pod has its own grant and its own handle on the ledger.
        let data = GrantedDatasets::new(&station.config, &["patients".into()])
            .unwrap()
            .budgeted(Budget {
                ledger: Arc::new(Ledger::open(&state).unwrap()),
                namespace: "research".into(),
            });
        pods.push(tokio::spawn(async move {
            data.query("SELECT AVG(age) FROM patients").await
        }));
    }
    let mut answered = 0;
    let mut refused = 0;
    for pod in pods {
        match pod.await.unwrap() {
            Ok(_) => answered += 1,
            Err(QueryError::LimitExceeded(m)) if m.starts_with("privacy budget") => refused += 1,
            Err(other) => panic!("{other}"),
        }
    }
    assert_eq!((answered, refused), (10, 20));
    assert_eq!(
        station.ledger.spent("patients", "research").unwrap(),
        sandlet_privacy::Epsilon::from_f64(1.0).unwrap()
    );
}

#[tokio::test]
async fn every_charge_is_on_the_audit_record() {
    let station = Station::new(Some(privacy(1.0, 0.4, 0.0)));
    let audit_dir = station._dir.path().join("audit");
    let trail = crate::AuditTrail {
        log: Arc::new(sandlet_audit::AuditLog::open(&audit_dir).unwrap()),
        station: "test".into(),
        caller: sandlet_audit::Caller {
            via: "run".into(),
            namespace: Some("research".into()),
            ..Default::default()
        },
        counters: None,
    };
    let data = station.patients().audited(trail);
    for _ in 0..3 {
        let _ = data.query("SELECT COUNT(*) FROM patients").await;
    }
    let _ = data.query("SELECT MAX(age) FROM patients").await;
    let records = sandlet_audit::read(&audit_dir, &Default::default()).unwrap();
    let privacy: Vec<_> = records
        .iter()
        .map(|r| {
            r.access
                .privacy
                .as_ref()
                .map(|p| (p.epsilon.as_str(), p.spent.as_str()))
        })
        .collect();
    assert_eq!(
        privacy,
        [Some(("0.4", "0.4")), Some(("0.4", "0.8")), None, None],
        "two charges, then a refusal for the budget and one for the shape"
    );
    assert_eq!(records[2].access.rule.as_deref(), Some("privacy"));
    assert_eq!(records[3].access.rule.as_deref(), Some("privacy"));
}

/// WIT 0.2.0's calls: the budget left, a query at a chosen ε, and the
/// noise of each column, calibrated as the query spent.
#[tokio::test]
async fn a_guest_may_spend_less_learn_its_budget_and_the_noise_of_each_column() {
    let station = Station::new(Some(privacy(1.0, 0.2, 0.0)));
    let data = station.patients();
    let budget = data.budget("patients").await.unwrap().unwrap();
    assert_eq!(
        (budget.total, budget.spent, budget.left, budget.per_query),
        (1.0, 0.0, 1.0, 0.2)
    );
    assert_eq!(data.budget("weights").await.unwrap(), None, "not granted");

    let (table, noise) = data
        .query_private(
            "SELECT COUNT(*) AS n, AVG(age) AS m, COUNT(*) + 1 AS k FROM patients",
            Some(0.05),
        )
        .await
        .map(|(t, n)| (t, n.unwrap()))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(table.columns, ["n", "m", "k"]);
    assert_eq!(noise.epsilon, 0.05);
    assert_eq!(noise.threshold, None);
    let columns: Vec<(&str, &str)> = noise
        .columns
        .iter()
        .map(|c| (c.column.as_str(), c.statistic.as_str()))
        .collect();
    // `k` is derived from an aggregate: its noise is the guest's to work out.
    assert_eq!(columns, [("n", "count"), ("m", "mean")]);
    // Three statistics (rows, ages counted, ages summed) at 0.05/3 each:
    // the count's scale is 60, its 95 % accuracy about 60·ln(20) ≈ 180.
    let count = noise.columns[0].count_accuracy.unwrap();
    assert!((150.0..200.0).contains(&count), "{count}");
    let sum = noise.columns[1].sum_accuracy.unwrap();
    assert!(
        (sum / count - 120.0).abs() < 1.0,
        "sum accuracy {sum}: 120 times the count's"
    );
    assert_eq!(
        data.budget("patients").await.unwrap().unwrap().spent,
        0.05,
        "charged what it asked for"
    );

    // More than perQuery, nothing, or nonsense: refused, and nothing spent.
    for (asked, expected) in [
        (
            0.3,
            "denied: privacy: this query asks for ε 0.3, and perQuery of dataset patients allows at most 0.2",
        ),
        (0.0, "invalid: the query's ε must be a positive number"),
        (f64::NAN, "invalid: the query's ε must be a positive number"),
    ] {
        let error = data
            .query_private("SELECT COUNT(*) FROM patients", Some(asked))
            .await
            .unwrap_err();
        assert!(error.to_string().starts_with(expected), "{asked}: {error}");
    }
    assert_eq!(data.budget("patients").await.unwrap().unwrap().spent, 0.05);
    // A query without ε spends perQuery.
    data.query_private("SELECT COUNT(*) FROM patients", None)
        .await
        .unwrap();
    assert_eq!(data.budget("patients").await.unwrap().unwrap().left, 0.75);
}
