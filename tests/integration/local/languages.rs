//! Algorithms in languages other than Rust, built from source with the
//! guest toolchains (`scripts/toolchains`) and the language's SDK: on the
//! same data they must give the Rust versions' numbers (compared as
//! numbers), the same refusals as the language's errors, and bad input as
//! the algorithm's own error. (The examples as pods are `e2e::languages`.)

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

use crate::fixtures::{Ran, guests, repo_root, run_ok, sandlet, wasm_target_dir, write_patients};
use crate::local::algorithms::{run_with_data, write_config};

/// The examples of one language.
pub(crate) struct Examples {
    pub(crate) column_stats: PathBuf,
    pub(crate) federated_mean: PathBuf,
}

/// Installs (once, cached) the toolchain of `lang` and returns the
/// directory its tools are in.
pub fn toolchain(lang: &str) -> PathBuf {
    let toolchains = repo_root().join("scripts/toolchains");
    let installed = crate::fixtures::output_of(Command::new(&toolchains).arg(lang));
    assert!(
        installed.status.success(),
        "the {lang} guest toolchain is missing and `scripts/toolchains {lang}` could not \
         install it: {}",
        String::from_utf8_lossy(&installed.stderr)
    );
    run_ok(Command::new(&toolchains).args(["env", lang]))
        .split('"')
        .nth(1)
        .and_then(|path| path.split(':').next())
        .map(PathBuf::from)
        .expect("a PATH export")
}

/// The digest of everything a build of `name` reads (the WIT world, the
/// SDK, the algorithm, the toolchain's directory name), so that a build is
/// reused until one of them changes: componentize-py and componentize-js
/// do not give the same bytes twice, and each new digest would be compiled
/// afresh by every run.
fn sources_key(dirs: &[PathBuf], toolchain: &Path) -> String {
    let mut bytes = toolchain.display().to_string().into_bytes();
    let mut files = Vec::new();
    for dir in dirs {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect();
        entries.sort();
        files.extend(entries);
    }
    for file in files {
        bytes.extend(file.display().to_string().into_bytes());
        bytes.extend(std::fs::read(&file).unwrap());
    }
    sandlet_runtime::Digest::of(&bytes).hex()[..16].to_owned()
}

/// `sandlet build` with what the guest toolchains need of the test's own
/// environment (the toolchain cache, PATH for clang, cargo and node).
pub fn sandlet_build() -> Command {
    let mut command = sandlet();
    for var in [
        "PATH",
        "HOME",
        "SANDLET_CACHE",
        "CARGO_HOME",
        "RUSTUP_HOME",
        "CARGO_TARGET_DIR",
    ] {
        if let Some(value) = std::env::var_os(var) {
            command.env(var, value);
        }
    }
    command.arg("build");
    command
}

/// `algorithms/LANG/NAME` built by `sandlet build` into
/// `wasm-target/LANG/NAME-KEY/`, unless it is there already.
pub fn build_example(lang: &str, name: &str, bin: &Path) -> PathBuf {
    let algorithm = repo_root().join("algorithms").join(lang).join(name);
    let sources = [
        repo_root().join("wit/0.1.0"),
        repo_root().join("sdk").join(lang),
        algorithm.clone(),
    ];
    let out_dir = wasm_target_dir()
        .join(lang)
        .join(format!("{name}-{}", sources_key(&sources, bin)));
    let component = out_dir.join(format!("{name}.wasm"));
    if !component.is_file() {
        let printed = run_ok(
            sandlet_build()
                .arg("--out-dir")
                .arg(&out_dir)
                .arg(&algorithm),
        );
        assert_eq!(
            printed.lines().last().map(PathBuf::from),
            Some(component.clone())
        );
    }
    component
}

fn examples(lang: &str) -> Examples {
    let bin = toolchain(lang);
    Examples {
        column_stats: build_example(lang, "column-stats", &bin),
        federated_mean: build_example(lang, "federated-mean", &bin),
    }
}

/// The Python examples (`algorithms/python`, SDK `sdk/python`), built once
/// per test process with componentize-py.
fn python() -> &'static Examples {
    static PYTHON: OnceLock<Examples> = OnceLock::new();
    PYTHON.get_or_init(|| examples("python"))
}

/// The JavaScript examples (`algorithms/js`, SDK `sdk/js`): bundled with
/// esbuild, then componentize-js without `wasi:http`.
fn javascript() -> &'static Examples {
    static JS: OnceLock<Examples> = OnceLock::new();
    JS.get_or_init(|| examples("js"))
}

/// The C examples (`algorithms/c`, SDK `sdk/c`): wit-bindgen's bindings,
/// clang for wasm32-wasi and the component linker.
fn c() -> &'static Examples {
    static C: OnceLock<Examples> = OnceLock::new();
    C.get_or_init(|| examples("c"))
}

/// Every language's examples, built.
pub(crate) fn languages() -> [(&'static str, &'static Examples); 3] {
    [
        ("python", python()),
        ("javascript", javascript()),
        ("c", c()),
    ]
}

/// JSON values equal with every number compared as a number (`2000` and
/// `2000.0` alike), exactly.
pub(crate) fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

fn json(ran: &Ran) -> Value {
    assert_eq!(ran.code, Some(0), "{ran:#?}");
    crate::local::algorithms::json(&ran.stdout)
}

#[test]
fn examples_in_every_language_give_the_rust_numbers_on_the_same_data() {
    let dir = tempfile::tempdir().unwrap();
    write_patients(dir.path(), "patients", 2000, 77);
    let config = write_config(dir.path(), &["patients"]);
    for (lang, example) in languages() {
        let column_stats = [
            r#"{"dataset": "patients", "column": "age"}"#,
            r#"{"dataset": "patients", "column": "bmi"}"#,
            r#"{"dataset": "patients", "column": "bmi", "group_by": "sex"}"#,
        ]
        .map(|input| (&guests().column_stats, &example.column_stats, input));
        let federated_mean = [
            r#"{"dataset": "patients", "column": "bmi"}"#,
            r#"{"dataset": "patients", "column": "age"}"#,
            r#"{"combine": [{"sum": 10.5, "count": 3}, {"sum": 4, "count": 2}]}"#,
            // Doubles that need all 17 digits to read back the same.
            r#"{"combine": [{"sum": 0.1, "count": 1}, {"sum": 0.2, "count": 2}]}"#,
        ]
        .map(|input| (&guests().federated_mean, &example.federated_mean, input));
        let cases = column_stats.into_iter().chain(federated_mean);
        for (rust, example, input) in cases {
            let expected = json(&run_with_data(rust, &config, &["patients"], input));
            let got = json(&run_with_data(example, &config, &["patients"], input));
            assert!(
                same(&got, &expected),
                "{lang} {input}:\n {lang} {got}\n rust {expected}"
            );
        }
    }
}

#[test]
fn refusals_and_bad_input_are_the_algorithms_errors_in_every_language() {
    let dir = tempfile::tempdir().unwrap();
    write_patients(dir.path(), "patients", 200, 78);
    let config = write_config(dir.path(), &["patients"]);
    for (lang, example) in languages() {
        // (module, grants, input, what stderr starts with), each also checked
        // against the Rust version where it has the same case.
        let cases: [(&Path, &[&str], &str, &str); 6] = [
            (
                &example.column_stats,
                &[],
                r#"{"dataset": "patients", "column": "age"}"#,
                "not-granted: ",
            ),
            (
                &example.column_stats,
                &["patients"],
                r#"{"dataset": "patients", "column": "ssn"}"#,
                "not-granted: ",
            ),
            (
                &example.column_stats,
                &["patients"],
                r#"{"dataset": "patients", "column": "age", "group_by": "bmi"}"#,
                "denied: minGroupSize: ",
            ),
            (
                &example.federated_mean,
                &["patients"],
                r#"{"dataset": "patients", "column": "ssn"}"#,
                "not-granted: ",
            ),
            (
                &example.column_stats,
                &["patients"],
                r#"{"dataset": 3}"#,
                "invalid input",
            ),
            (
                &example.federated_mean,
                &[],
                r#"{"combine": []}"#,
                "no values at any station",
            ),
        ];
        for (module, grants, input, error) in cases {
            let ran = run_with_data(module, &config, grants, input);
            assert_eq!(ran.code, Some(1), "{lang} {input}: {ran:#?}");
            assert_eq!(ran.stdout, "", "nothing but a result goes to stdout");
            assert!(
                ran.stderr.trim().starts_with(error),
                "{lang} {input}: {}",
                ran.stderr
            );
        }
        // The Rust versions refuse the same queries with the same words.
        let rust = run_with_data(
            &guests().column_stats,
            &config,
            &["patients"],
            r#"{"dataset": "patients", "column": "age", "group_by": "bmi"}"#,
        );
        let example = run_with_data(
            &example.column_stats,
            &config,
            &["patients"],
            r#"{"dataset": "patients", "column": "age", "group_by": "bmi"}"#,
        );
        assert_eq!(example.stderr.trim(), rust.stderr.trim(), "{lang}");
    }
}

/// The C SDK parses its input and writes its result itself: its reader,
/// writer and entry are tested natively under AddressSanitizer and UBSan
/// against a stubbed host (`sdk/c/test/sdk_test.c`: hostile JSON of every
/// kind, nesting past the limit, a megabyte string, writer misuse,
/// refusals and the host's memory).
#[test]
fn the_c_sdk_holds_under_sanitizers_against_hostile_input() {
    let bin = toolchain("c");
    let dir = tempfile::tempdir().unwrap();
    let generated = dir.path().join("gen");
    run_ok(
        Command::new(bin.join("wit-bindgen"))
            .arg("c")
            .arg(repo_root().join("wit/0.1.0"))
            .args(["--world", "algorithm", "--out-dir"])
            .arg(&generated),
    );
    let test = dir.path().join("sdk_test");
    let sdk = repo_root().join("sdk/c");
    run_ok(
        Command::new("clang-19")
            .args([
                "-fsanitize=address,undefined",
                "-fno-sanitize-recover=all",
                "-g",
                "-Wall",
                "-Werror",
            ])
            .arg("-I")
            .arg(&generated)
            .arg("-I")
            .arg(&sdk)
            .arg(sdk.join("test/sdk_test.c"))
            .arg(sdk.join("sandlet.c"))
            .args(["-lm", "-o"])
            .arg(&test),
    );
    let output = Command::new(&test).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stdout.trim(), "all passed");
}

/// Through `sandlet run` the host refuses what is not JSON before any
/// guest sees it; what is JSON but not what the algorithm takes (duplicate
/// keys, which serde lets through) is the C SDK's `invalid input`, and
/// escaped names arrive intact.
#[test]
fn the_c_examples_answer_odd_json_as_the_rust_ones_do() {
    let dir = tempfile::tempdir().unwrap();
    write_patients(dir.path(), "patients", 50, 80);
    let config = write_config(dir.path(), &["patients"]);
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    for input in [deep.as_str(), r#"{"dataset": "\ud800"}"#, "{} x"] {
        let ran = run_with_data(&c().column_stats, &config, &["patients"], input);
        assert_eq!(ran.code, Some(2), "{ran:#?}");
        assert!(
            ran.stderr.contains("invalid --input: not JSON"),
            "{}",
            ran.stderr
        );
    }
    let duplicate = r#"{"dataset": "patients", "dataset": "other", "column": "age"}"#;
    let ran = run_with_data(&c().column_stats, &config, &["patients"], duplicate);
    assert_eq!(ran.code, Some(1), "{ran:#?}");
    assert!(
        ran.stderr
            .starts_with("invalid input: not JSON: expected no duplicate member name"),
        "{}",
        ran.stderr
    );
    let rust = run_with_data(&guests().column_stats, &config, &["patients"], duplicate);
    assert_eq!(rust.code, Some(1), "{rust:#?}");
    assert!(rust.stderr.contains("duplicate field"), "{}", rust.stderr);
    let escaped = r#"{"dataset": "p\u0061tients", "column": "\u0061ge"}"#;
    let result = json(&run_with_data(
        &c().column_stats,
        &config,
        &["patients"],
        escaped,
    ));
    assert_eq!(result["dataset"], "patients");
    assert_eq!(result["count"], 50);
}
