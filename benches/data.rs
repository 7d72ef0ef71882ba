//! Data-query benchmarks on a generated 10-million-row CSV, all measured
//! side by side in one run:
//!
//! - what the disclosure checks cost per query (`QueryTimings::policy`:
//!   the plan walk and guard placement), for queries of several shapes;
//! - a grouped mean (count, mean, variance of `bmi` by `sex`) computed by the
//!   `column-stats` algorithm through `data.query` from inside a guest,
//!   against the same SQL in DataFusion directly;
//! - the same statistics in pandas, reading the same CSV;
//! - the same guest with its queries on the audit record, against without
//!   (the target: at most 10 % more);
//! - a query with a scalar subquery (a guard on each aggregate, row ids)
//!   through the policy engine against DataFusion directly;
//! - the policy engine against its oracle (`SANDLET_ORACLE_CASES`, default
//!   2,000 random queries; the test runs 150);
//! - a differentially private grouped mean (the target: within 1.2x of the
//!   same query without privacy), against the same query on the same file
//!   under thresholds and in DataFusion directly, runs interleaved.
//!   `SANDLET_DATA_ONLY=privacy` runs this part alone.
//!
//! `cargo bench --bench data` (results in docs/developer/benchmarks.md).
//! Environment: `SANDLET_BENCH_ROWS` (default 10,000,000),
//! `SANDLET_BENCH_RUNS` (timed runs of each, default 5). The CSV is
//! generated once into
//! `$SANDLET_CACHE/bench-data/`; pandas is installed into
//! `$SANDLET_CACHE/bench-venv` with pip when the system Python lacks it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::prelude::{CsvReadOptions, SessionContext};
use sandlet_data::{AuditLog, AuditTrail, Caller, DataAccess as _, GrantedDatasets, QueryTimings};
use sandlet_runtime::{
    EngineOptions, OutputSinks, PreparedModule, RunOutcome, RunPlan, SandboxEngine,
};
use sandlet_station::StationConfig;

#[allow(dead_code)]
#[path = "../tests/integration/fixtures.rs"]
mod fixtures;

#[allow(dead_code)]
#[path = "../tests/integration/oracle.rs"]
mod oracle;

const GROUPED: &str = "SELECT \"sex\", COUNT(\"bmi\"), AVG(\"bmi\"), VAR_SAMP(\"bmi\") \
                       FROM \"patients\" GROUP BY \"sex\" ORDER BY \"sex\"";

fn cache_dir() -> PathBuf {
    std::env::var_os("SANDLET_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/sandlet")
        })
}

/// The dataset: `age,sex,bmi,outcome,site`, deterministic.
fn generate(path: &Path, rows: usize) {
    if path.exists() {
        return;
    }
    eprintln!("generating {rows} rows into {}", path.display());
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let partial = path.with_extension("partial");
    let mut out =
        std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&partial).unwrap());
    out.write_all(b"age,sex,bmi,outcome,site\n").unwrap();
    let mut rng = fixtures::Lcg::new(2026);
    let sites = ["north", "east", "south", "west"];
    for _ in 0..rows {
        let age = 18 + (rng.next_f64() * 70.0) as u32;
        let sex = if rng.next_f64() < 0.5 { "f" } else { "m" };
        let bmi = (1600.0 + rng.next_f64() * 2000.0).round() / 100.0;
        let outcome = u8::from(rng.next_f64() < 0.3);
        let site = sites[(rng.next_f64() * 4.0) as usize];
        writeln!(out, "{age},{sex},{bmi:.2},{outcome},{site}").unwrap();
    }
    out.flush().unwrap();
    drop(out);
    std::fs::rename(partial, path).unwrap();
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

/// A Python with pandas: the system's, or a venv made for the benchmark.
fn python_with_pandas() -> PathBuf {
    let system = PathBuf::from("python3");
    let has = |python: &Path| {
        Command::new(python)
            .args(["-c", "import pandas"])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if has(&system) {
        return system;
    }
    let venv = cache_dir().join("bench-venv");
    let python = venv.join("bin/python3");
    if !has(&python) {
        eprintln!("installing pandas into {}", venv.display());
        let ok = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .is_ok_and(|s| s.success())
            && Command::new(&python)
                .args(["-m", "pip", "install", "--quiet", "pandas"])
                .status()
                .is_ok_and(|s| s.success());
        assert!(
            ok,
            "cannot install pandas (python3-venv and PyPI are needed)"
        );
    }
    python
}

const PANDAS: &str = r#"
import sys, time
import pandas as pd
t = time.perf_counter()
df = pd.read_csv(sys.argv[1])
g = df.groupby("sex")["bmi"].agg(["count", "mean", "var"])
elapsed = time.perf_counter() - t
print(elapsed, g.loc["f", "mean"], g.loc["m", "mean"], pd.__version__)
"#;

/// What the grouped mean, the scalar subquery, the oracle and pandas
/// measured, for the report.
struct Measured {
    /// DataFusion directly: the median time, and the mean for `f`.
    direct: (Duration, f64),
    /// The policy engine from the host side, and its timings of each run.
    library: Duration,
    timings: Vec<QueryTimings>,
    /// The column-stats guest's whole run, and what it returned.
    guest: Duration,
    guest_result: String,
    /// The guest without and with its queries on the audit record, and the
    /// records written.
    audit_off: Duration,
    audit_on: Duration,
    records: u64,
    /// The scalar subquery, DataFusion directly and through the policy engine.
    sub_direct: Duration,
    sub_guarded: Duration,
    /// The oracle's cases, what it found, and how long it took.
    cases: usize,
    oracle: oracle::Outcome,
    oracle_time: Duration,
    /// pandas: the median time, the mean for `f`, pandas' version.
    pandas: Duration,
    pandas_mean_f: f64,
    pandas_version: String,
}

fn main() {
    let rows: usize = std::env::var("SANDLET_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let runs: usize = std::env::var("SANDLET_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let csv = cache_dir()
        .join("bench-data")
        .join(format!("patients-{rows}.csv"));
    generate(&csv, rows);
    let size = std::fs::metadata(&csv).unwrap().len();
    println!(
        "dataset: {rows} rows, {:.1} MiB CSV; {runs} timed runs each, median shown",
        size as f64 / (1 << 20) as f64
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();

    // The station's configuration, default (strict) policy.
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("station.yaml");
    std::fs::write(
        &config_path,
        format!(
            "datasets:\n  - name: patients\n    source: {{ csv: {} }}\n    policy: {{ allowedColumns: [age, sex, bmi, outcome] }}\n",
            csv.display()
        ),
    )
    .unwrap();
    let config = StationConfig::load(&config_path).unwrap().data;
    let grant = || GrantedDatasets::new(&config, &["patients".to_owned()]).unwrap();

    if std::env::var("SANDLET_DATA_ONLY").as_deref() == Ok("privacy") {
        privacy(&rt, &csv, runs);
        return;
    }

    let direct = direct_grouped(&rt, &csv, runs);
    let data = grant();
    let (library, timings) = host_grouped(&rt, &data, runs);
    let guests = fixtures::guests();
    let engine = SandboxEngine::new(EngineOptions::default()).unwrap();
    let module = engine.load_file(&guests.column_stats).unwrap();
    let (guest, guest_result) = guest_grouped(&rt, &engine, &module, &grant, runs);
    let (audit_off, audit_on, records) = audit_overhead(&rt, &engine, &module, &grant, runs);
    let (sub_direct, sub_guarded) = subquery(&rt, &csv, &data, runs);
    let (cases, oracle, oracle_time) = against_oracle(&rt);
    let policy = policy_shapes(&rt, &data);
    let (pandas, pandas_mean_f, pandas_version) = pandas(&csv, runs);

    report(Measured {
        direct,
        library,
        timings,
        guest,
        guest_result,
        audit_off,
        audit_on,
        records,
        sub_direct,
        sub_guarded,
        cases,
        oracle,
        oracle_time,
        pandas,
        pandas_mean_f,
        pandas_version,
    });
    privacy(&rt, &csv, runs);
    println!("policy checks per query (median of 3; SQL-to-plan time beside it):");
    for (name, policy, plan) in policy {
        println!(
            "  {name:<22} policy {:>7.3} ms   planning {:>7.3} ms",
            policy.as_secs_f64() * 1e3,
            plan.as_secs_f64() * 1e3
        );
    }
}

/// 1. DataFusion directly, table registered once: the median time and the
///    mean for `f`.
fn direct_grouped(rt: &tokio::runtime::Runtime, csv: &Path, runs: usize) -> (Duration, f64) {
    rt.block_on(async {
        let ctx = SessionContext::new();
        ctx.register_csv("patients", csv.to_str().unwrap(), CsvReadOptions::new())
            .await
            .unwrap();
        let mut times = Vec::new();
        let mut mean_f = 0.0;
        for i in 0..=runs {
            let started = Instant::now();
            let batches = ctx.sql(GROUPED).await.unwrap().collect().await.unwrap();
            if i > 0 {
                times.push(started.elapsed());
            }
            let means = batches[0]
                .column(2)
                .as_any()
                .downcast_ref::<datafusion::arrow::array::Float64Array>()
                .unwrap();
            mean_f = means.value(0);
        }
        (median(times), mean_f)
    })
}

/// 2. The same query through the policy engine, from the host side
///    (one session, as one run's queries share one).
fn host_grouped(
    rt: &tokio::runtime::Runtime,
    data: &GrantedDatasets,
    runs: usize,
) -> (Duration, Vec<QueryTimings>) {
    rt.block_on(async {
        let mut times = Vec::new();
        let mut timings: Vec<QueryTimings> = Vec::new();
        for i in 0..=runs {
            let started = Instant::now();
            let (_, t) = data.query_timed(GROUPED).await.unwrap();
            if i > 0 {
                times.push(started.elapsed());
                timings.push(t);
            }
        }
        (median(times), timings)
    })
}

/// One whole run of the column-stats guest over `data`, timed.
async fn run_guest(
    engine: &SandboxEngine,
    module: &PreparedModule,
    data: GrantedDatasets,
) -> (Duration, RunOutcome) {
    let input = r#"{"dataset": "patients", "column": "bmi", "group_by": "sex"}"#;
    let plan = RunPlan::builder("column-stats")
        .input(input)
        .data(Arc::new(data))
        .build()
        .unwrap();
    let started = Instant::now();
    let outcome = engine
        .run(module, &plan, &OutputSinks::null())
        .await
        .unwrap();
    (started.elapsed(), outcome)
}

/// 3. The column-stats algorithm in the sandbox: a whole run each time,
///    with a fresh grant (session, schema inference) as a pod would get.
fn guest_grouped(
    rt: &tokio::runtime::Runtime,
    engine: &SandboxEngine,
    module: &PreparedModule,
    grant: &dyn Fn() -> GrantedDatasets,
    runs: usize,
) -> (Duration, String) {
    rt.block_on(async {
        let mut times = Vec::new();
        let mut result = String::new();
        for i in 0..=runs {
            let (elapsed, outcome) = run_guest(engine, module, grant()).await;
            if i > 0 {
                times.push(elapsed);
            }
            match outcome {
                RunOutcome::Returned(Ok(json)) => result = json,
                other => panic!("column-stats: {other:?}"),
            }
        }
        (median(times), result)
    })
}

/// 3b. The same guest run with every query on the audit record, against
///     the same without, in alternate runs (the target: at most +10 %).
///     Returns both medians and the records written (their chain verified).
fn audit_overhead(
    rt: &tokio::runtime::Runtime,
    engine: &SandboxEngine,
    module: &PreparedModule,
    grant: &dyn Fn() -> GrantedDatasets,
    runs: usize,
) -> (Duration, Duration, u64) {
    let audit_dir = tempfile::tempdir().unwrap();
    let log = Arc::new(AuditLog::open(&audit_dir.path().join("audit")).unwrap());
    let trail = AuditTrail {
        log: Arc::clone(&log),
        station: "bench".to_owned(),
        caller: Caller {
            via: "run".to_owned(),
            module_digest: Some(module.digest().to_string()),
            ..Caller::default()
        },
        counters: None,
    };
    let (audit_off, audit_on) = rt.block_on(async {
        let (mut off, mut on) = (Vec::new(), Vec::new());
        for i in 0..=runs {
            for audited in [false, true] {
                let data = if audited {
                    grant().audited(trail.clone())
                } else {
                    grant()
                };
                let (elapsed, outcome) = run_guest(engine, module, data).await;
                assert!(
                    matches!(outcome, RunOutcome::Returned(Ok(_))),
                    "{outcome:?}"
                );
                if i > 0 {
                    if audited { &mut on } else { &mut off }.push(elapsed);
                }
            }
        }
        (median(off), median(on))
    });
    let records = sandlet_audit::verify(log.dir()).unwrap().records;
    (audit_off, audit_on, records)
}

/// 3c. A query with a scalar subquery: the policy engine (a guard on the
///     subquery's aggregate too, row ids for the outer one) against
///     DataFusion directly, alternating.
fn subquery(
    rt: &tokio::runtime::Runtime,
    csv: &Path,
    data: &GrantedDatasets,
    runs: usize,
) -> (Duration, Duration) {
    const SUBQUERY: &str =
        "SELECT COUNT(*) FROM patients WHERE bmi > (SELECT AVG(bmi) FROM patients)";
    rt.block_on(async {
        let ctx = SessionContext::new();
        ctx.register_csv("patients", csv.to_str().unwrap(), CsvReadOptions::new())
            .await
            .unwrap();
        let (mut direct, mut guarded) = (Vec::new(), Vec::new());
        for i in 0..=runs {
            let started = Instant::now();
            let want = ctx.sql(SUBQUERY).await.unwrap().collect().await.unwrap();
            let t_direct = started.elapsed();
            let started = Instant::now();
            let (got, _) = data.query_timed(SUBQUERY).await.unwrap();
            let t_guarded = started.elapsed();
            let want = want[0]
                .column(0)
                .as_any()
                .downcast_ref::<datafusion::arrow::array::Int64Array>()
                .unwrap()
                .value(0);
            assert_eq!(got.rows[0][0], sandlet_data::Value::Int(want));
            if i > 0 {
                direct.push(t_direct);
                guarded.push(t_guarded);
            }
        }
        (median(direct), median(guarded))
    })
}

/// 3d. The policy engine against its oracle, more cases than the test:
///     the cases, what the oracle found (no failures), how long it took.
fn against_oracle(rt: &tokio::runtime::Runtime) -> (usize, oracle::Outcome, Duration) {
    let cases: usize = std::env::var("SANDLET_ORACLE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let started = Instant::now();
    let oracle = rt.block_on(oracle::run(2026, cases));
    let oracle_time = started.elapsed();
    assert!(
        oracle.failures.is_empty(),
        "the oracle found {} failures:\n{}",
        oracle.failures.len(),
        oracle.failures.join("\n")
    );
    (cases, oracle, oracle_time)
}

/// 4. Policy checks alone, for several query shapes, on the same dataset:
///    per shape, the median of 3 of the policy checks and of planning.
fn policy_shapes(
    rt: &tokio::runtime::Runtime,
    data: &GrantedDatasets,
) -> Vec<(&'static str, Duration, Duration)> {
    let shapes = [
        ("grouped mean", GROUPED),
        (
            "crosstab with HAVING",
            "SELECT sex, outcome, COUNT(*) FROM patients GROUP BY sex, outcome HAVING COUNT(*) > 10",
        ),
        (
            "scalar subquery",
            "SELECT COUNT(*) FROM patients WHERE bmi > (SELECT AVG(bmi) FROM patients)",
        ),
        (
            "CTE + self-join",
            "WITH a AS (SELECT sex, AVG(bmi) AS m FROM patients GROUP BY sex) \
             SELECT a.sex, COUNT(*) FROM a JOIN patients p ON p.sex = a.sex WHERE p.bmi > a.m GROUP BY a.sex",
        ),
    ];
    rt.block_on(async {
        let mut out = Vec::new();
        for (name, sql) in shapes {
            let mut policy = Vec::new();
            let mut plan = Vec::new();
            for _ in 0..3 {
                let (_, t) = data.query_timed(sql).await.unwrap();
                policy.push(t.policy);
                plan.push(t.plan);
            }
            out.push((name, median(policy), median(plan)));
        }
        out
    })
}

/// 5. pandas on the same CSV: the median time, the mean for `f`, pandas'
///    version.
fn pandas(csv: &Path, runs: usize) -> (Duration, f64, String) {
    let python = python_with_pandas();
    let mut pandas_times = Vec::new();
    let mut pandas_mean_f = 0.0;
    let mut pandas_version = String::new();
    for _ in 0..runs {
        let output = Command::new(&python)
            .args(["-c", PANDAS])
            .arg(csv)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let text = String::from_utf8(output.stdout).unwrap();
        let fields: Vec<&str> = text.split_whitespace().collect();
        pandas_times.push(Duration::from_secs_f64(fields[0].parse().unwrap()));
        pandas_mean_f = fields[1].parse().unwrap();
        pandas_version = fields[3].to_owned();
    }
    (median(pandas_times), pandas_mean_f, pandas_version)
}

/// The grouped mean's, the scalar subquery's and the oracle's results,
/// once every mean is checked against DataFusion's.
fn report(m: Measured) {
    let Measured {
        direct,
        library,
        timings,
        guest,
        guest_result,
        audit_off,
        audit_on,
        records,
        sub_direct,
        sub_guarded,
        cases,
        oracle,
        oracle_time,
        pandas,
        pandas_mean_f,
        pandas_version,
    } = m;
    let guest_json: serde_json::Value = serde_json::from_str(&guest_result).unwrap();
    let guest_mean_f = guest_json["groups"][0]["mean"].as_f64().unwrap();
    for (what, mean) in [("guest", guest_mean_f), ("pandas", pandas_mean_f)] {
        assert!(
            (mean - direct.1).abs() < 1e-9 * direct.1,
            "{what} mean {mean} != DataFusion {}",
            direct.1
        );
    }
    let policy_of_grouped = median(timings.iter().map(|t| t.policy).collect());
    println!(
        "grouped count/mean/variance of bmi by sex (mean for f = {:.6}):",
        direct.1
    );
    println!(
        "  DataFusion directly                      {}",
        secs(direct.0)
    );
    println!(
        "  data.query, host side (policy engine)    {}  ({:.2}x direct; policy {:.3} ms)",
        secs(library),
        library.as_secs_f64() / direct.0.as_secs_f64(),
        policy_of_grouped.as_secs_f64() * 1e3
    );
    println!(
        "  column-stats guest, whole run            {}  ({:.2}x direct)",
        secs(guest),
        guest.as_secs_f64() / direct.0.as_secs_f64()
    );
    println!(
        "  pandas {pandas_version} read_csv + groupby       {}  ({:.2}x the guest)",
        secs(pandas),
        pandas.as_secs_f64() / guest.as_secs_f64()
    );
    println!(
        "  column-stats guest, audit off / on       {} / {}  (+{:.1} %; {records} records, chain verified)",
        secs(audit_off),
        secs(audit_on),
        (audit_on.as_secs_f64() / audit_off.as_secs_f64() - 1.0) * 100.0
    );
    println!("a scalar subquery (COUNT of bmi above the mean):");
    println!(
        "  DataFusion directly                      {}",
        secs(sub_direct)
    );
    println!(
        "  data.query, host side (policy engine)    {}  ({:.2}x direct)",
        secs(sub_guarded),
        sub_guarded.as_secs_f64() / sub_direct.as_secs_f64()
    );
    println!(
        "oracle: {cases} random queries over random tables in {}: {} answered (each equal to DataFusion's and backed by enough rows), {} denied, 0 failures",
        secs(oracle_time),
        oracle.answered,
        oracle.denied
    );
}

/// A grouped mean on a dataset with `privacy:` against the same query on
/// the same file with thresholds only, and DataFusion directly; each run
/// takes one of each in turn, so that the machine's drift falls on all.
fn privacy(rt: &tokio::runtime::Runtime, csv: &Path, runs: usize) {
    const PRIVATE: &str =
        "SELECT sex, AVG(bmi) AS mean FROM private_patients GROUP BY sex ORDER BY sex";
    const PLAIN: &str = "SELECT sex, AVG(bmi) AS mean FROM patients GROUP BY sex ORDER BY sex";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("station.yaml");
    std::fs::write(
        &path,
        format!(
            "datasets:
  - name: patients
    source: {{ csv: {csv} }}
  - name: private_patients
    source: {{ csv: {csv} }}
    privacy: {{ epsilon: 1000000, perQuery: 1, delta: 1.0e-6, bounds: {{ bmi: [10, 70] }} }}
",
            csv = csv.display()
        ),
    )
    .unwrap();
    let config = StationConfig::load(&path).unwrap().data;
    let ledger = Arc::new(sandlet_data::Ledger::open(dir.path()).unwrap());
    let private = GrantedDatasets::new(&config, &["private_patients".to_owned()])
        .unwrap()
        .budgeted(sandlet_data::Budget {
            ledger,
            namespace: "bench".to_owned(),
        });
    let plain = GrantedDatasets::new(&config, &["patients".to_owned()]).unwrap();
    let (private_time, plain_time, direct_time, means) = rt.block_on(async {
        let ctx = SessionContext::new();
        ctx.register_csv("patients", csv.to_str().unwrap(), CsvReadOptions::new())
            .await
            .unwrap();
        let (mut p, mut t, mut d) = (Vec::new(), Vec::new(), Vec::new());
        let mut means = (Vec::new(), Vec::new());
        for i in 0..=runs {
            let started = Instant::now();
            let noisy = private.query(PRIVATE).await.unwrap();
            let private_elapsed = started.elapsed();
            let started = Instant::now();
            let exact = plain.query(PLAIN).await.unwrap();
            let plain_elapsed = started.elapsed();
            let started = Instant::now();
            ctx.sql(PLAIN).await.unwrap().collect().await.unwrap();
            let direct_elapsed = started.elapsed();
            if i > 0 {
                p.push(private_elapsed);
                t.push(plain_elapsed);
                d.push(direct_elapsed);
            }
            means = (noisy.rows, exact.rows);
        }
        (median(p), median(t), median(d), means)
    });
    println!("differentially private grouped mean of bmi by sex (perQuery 1, bounds [10, 70]):");
    println!(
        "  DataFusion directly                      {}",
        secs(direct_time)
    );
    println!(
        "  thresholds only (data.query)             {}  ({:.2}x direct)",
        secs(plain_time),
        plain_time.as_secs_f64() / direct_time.as_secs_f64()
    );
    println!(
        "  differential privacy (data.query)        {}  ({:.2}x thresholds only; target 1.2x)",
        secs(private_time),
        private_time.as_secs_f64() / plain_time.as_secs_f64()
    );
    println!("  noisy {:?}\n  exact {:?}", means.0, means.1);
}
