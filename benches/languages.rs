//! Guest languages side by side: the column-stats algorithm in Rust,
//! Python, JavaScript and C, each built from source (`sandlet build`), and
//! per language
//!
//! - the component's size;
//! - its first start: compiling it (`SandboxEngine::load`: compile and
//!   link), what a node pays once per digest;
//! - a later start: loading the precompiled artifact, linking and
//!   instantiating it, ready to call (the target: under 50 ms for Python
//!   and JavaScript);
//! - `sandlet run` as a user types it, once the precompile cache holds the
//!   component (process start, cache read, run);
//! - the column-stats run itself, grouped by sex, over the same dataset
//!   (one whole run each time, with a fresh grant as a pod would get).
//!
//! `cargo bench --bench languages` (results in
//! docs/developer/benchmarks.md). Environment: `SANDLET_BENCH_ROWS`
//! (default 100,000), `SANDLET_BENCH_RUNS` (timed runs of each, default
//! 10). Toolchains are installed with `scripts/toolchains` when missing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sandlet_data::GrantedDatasets;
use sandlet_runtime::{Digest, EngineOptions, OutputSinks, RunOutcome, RunPlan, SandboxEngine};
use sandlet_station::StationConfig;

#[allow(dead_code)]
#[path = "../tests/integration/fixtures.rs"]
mod fixtures;

const INPUT: &str = r#"{"dataset": "patients", "column": "bmi", "group_by": "sex"}"#;

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `algorithms/LANG/column-stats` built by the `sandlet` under test.
fn build(lang: &str, out: &Path) -> PathBuf {
    let root = fixtures::repo_root();
    let status = Command::new(root.join("scripts/toolchains"))
        .arg(lang)
        .status()
        .unwrap();
    assert!(status.success(), "scripts/toolchains {lang}");
    let output = Command::new(env!("CARGO_BIN_EXE_sandlet"))
        .arg("build")
        .arg("--out-dir")
        .arg(out.join(lang))
        .arg(root.join("algorithms").join(lang).join("column-stats"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "sandlet build {lang}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    PathBuf::from(String::from_utf8(output.stdout).unwrap().trim())
}

struct Row {
    lang: &'static str,
    size: u64,
    compile: Duration,
    start: Duration,
    cli: Duration,
    run: Duration,
}

/// What every measurement needs: the engine, a runtime to drive it, the
/// station's configuration (for `sandlet run`), its dataset granted as a
/// pod would get it, the state directory of `sandlet run`, and the runs.
struct Setup<'a> {
    engine: &'a SandboxEngine,
    rt: &'a tokio::runtime::Runtime,
    config_path: &'a Path,
    grant: &'a dyn Fn() -> Arc<GrantedDatasets>,
    state: &'a Path,
    runs: usize,
}

fn main() {
    let rows = env_usize("SANDLET_BENCH_ROWS", 100_000);
    let runs = env_usize("SANDLET_BENCH_RUNS", 10);
    let dir = tempfile::tempdir().unwrap();
    fixtures::write_patients(dir.path(), "patients", rows, 14);
    let config_path = dir.path().join("station.yaml");
    std::fs::write(
        &config_path,
        "datasets:\n  - name: patients\n    source: { csv: patients.csv }\n    policy:\n      allowedColumns: [age, sex, bmi]\n",
    )
    .unwrap();
    let config = StationConfig::load(&config_path).unwrap().data;
    let grant = || Arc::new(GrantedDatasets::new(&config, &["patients".to_owned()]).unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let engine = SandboxEngine::new(EngineOptions::default()).unwrap();
    let state = dir.path().join("state");
    let setup = Setup {
        engine: &engine,
        rt: &rt,
        config_path: &config_path,
        grant: &grant,
        state: &state,
        runs,
    };

    let components = [
        ("Rust", fixtures::guests().column_stats.clone()),
        ("Python", build("python", dir.path())),
        ("JavaScript", build("js", dir.path())),
        ("C", build("c", dir.path())),
    ];
    let mut table = Vec::new();
    let mut expected: Option<serde_json::Value> = None;
    for (lang, path) in components {
        let (row, result) = measure(&setup, lang, &path);
        // Every language computes the same numbers.
        let value: serde_json::Value = serde_json::from_str(&result).unwrap();
        match &expected {
            None => expected = Some(value),
            Some(e) => {
                let means = |v: &serde_json::Value| -> Vec<f64> {
                    v["groups"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|g| g["mean"].as_f64().unwrap())
                        .collect()
                };
                assert_eq!(means(&value), means(e), "{lang} differs from Rust");
            }
        }
        table.push(row);
    }
    report(&table, rows, runs);
}

/// Everything measured of one language's component at `path`, and what its
/// column-stats run returned.
fn measure(setup: &Setup<'_>, lang: &'static str, path: &Path) -> (Row, String) {
    eprintln!("measuring {lang} ({})", path.display());
    let bytes = std::fs::read(path).unwrap();
    let compile = first_start(setup.engine, &bytes);
    let start = later_start(setup, &bytes);
    let (run, result) = column_stats_run(setup, lang, &bytes);
    let cli = cli_run(setup, path);
    let row = Row {
        lang,
        size: bytes.len() as u64,
        compile,
        start,
        cli,
        run,
    };
    (row, result)
}

/// First start: compile and link, three times (seconds each for the
/// large components).
fn first_start(engine: &SandboxEngine, bytes: &[u8]) -> Duration {
    median(
        (0..3)
            .map(|_| {
                let started = Instant::now();
                engine.load(bytes).unwrap();
                started.elapsed()
            })
            .collect(),
    )
}

/// Later start: the precompiled artifact loaded, linked and
/// instantiated (the instance dropped uncalled).
#[allow(unsafe_code)] // loads the artifact this engine just made
fn later_start(setup: &Setup<'_>, bytes: &[u8]) -> Duration {
    let Setup {
        engine, rt, runs, ..
    } = *setup;
    let digest = Digest::of(bytes);
    let artifact = engine.precompile(bytes).unwrap();
    let plan = RunPlan::builder("start").build().unwrap();
    median(
        (0..runs)
            .map(|_| {
                let started = Instant::now();
                // SAFETY: the artifact was made by this engine.
                let compiled = unsafe { engine.deserialize(&artifact) }.unwrap();
                let module = engine.prepare(compiled, digest).unwrap();
                rt.block_on(engine.instantiate(&module, &plan, &OutputSinks::null()))
                    .unwrap();
                started.elapsed()
            })
            .collect(),
    )
}

/// The column-stats run, whole, as a pod's would be: its median time and
/// what it returned.
fn column_stats_run(setup: &Setup<'_>, lang: &str, bytes: &[u8]) -> (Duration, String) {
    let Setup {
        engine,
        rt,
        grant,
        runs,
        ..
    } = *setup;
    let module = engine.load(bytes).unwrap();
    let mut result = String::new();
    let run = median(
        (0..=runs)
            .map(|_| {
                let plan = RunPlan::builder("column-stats")
                    .input(INPUT)
                    .data(grant())
                    .build()
                    .unwrap();
                let started = Instant::now();
                let outcome = rt
                    .block_on(engine.run(&module, &plan, &OutputSinks::null()))
                    .unwrap();
                let elapsed = started.elapsed();
                match outcome {
                    RunOutcome::Returned(Ok(text)) => result = text,
                    other => panic!("{lang}: {other:?}"),
                }
                elapsed
            })
            .skip(1)
            .collect(),
    );
    (run, result)
}

/// `sandlet run` end to end, the cache warmed by a first run.
fn cli_run(setup: &Setup<'_>, path: &Path) -> Duration {
    let Setup {
        config_path,
        state,
        runs,
        ..
    } = *setup;
    let cli = |_: usize| {
        let started = Instant::now();
        let output = Command::new(env!("CARGO_BIN_EXE_sandlet"))
            .env("SANDLET_STATE_DIR", state)
            .arg("run")
            .arg("--config")
            .arg(config_path)
            .args(["--grant", "patients", "--input", INPUT])
            .arg(path)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        started.elapsed()
    };
    cli(0);
    median((0..runs).map(cli).collect())
}

/// The table, and the precompiled start of Python and JavaScript against
/// the target.
fn report(table: &[Row], rows: usize, runs: usize) {
    println!(
        "\ncolumn-stats by language ({rows} rows, grouped by sex; medians of {runs} runs, first start of 3)\n"
    );
    println!(
        "| language | component | first start (compile + link) | later start (precompiled, instantiated) | `sandlet run`, cached | column-stats run |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for row in table {
        println!(
            "| {} | {:.2} MB | {} | {} | {} | {} |",
            row.lang,
            row.size as f64 / 1e6,
            ms(row.compile),
            ms(row.start),
            ms(row.cli),
            ms(row.run),
        );
    }
    for row in table
        .iter()
        .filter(|r| r.lang == "Python" || r.lang == "JavaScript")
    {
        let verdict = if row.start < Duration::from_millis(50) {
            "met"
        } else {
            "MISSED"
        };
        println!(
            "target: {} precompiled start {} < 50 ms: {verdict}",
            row.lang,
            ms(row.start)
        );
    }
}
