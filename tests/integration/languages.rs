//! Algorithms in languages other than Rust, built from source with the
//! guest toolchains (`scripts/toolchains`) and the language's SDK: on the
//! same data they must give the Rust versions' numbers (compared as
//! numbers), the same refusals as the language's errors, and bad input as
//! the algorithm's own error.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

use crate::fixtures::{Ran, guests, repo_root, run_sandlet, wasm_target_dir, write_patients};

/// The examples of one language.
struct Examples {
    column_stats: PathBuf,
    federated_mean: PathBuf,
}

/// The Python examples (`algorithms/python`, SDK `sdk/python`), built once
/// per test process with componentize-py.
fn python() -> &'static Examples {
    static PYTHON: OnceLock<Examples> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let toolchains = repo_root().join("scripts/toolchains");
        let status = Command::new(&toolchains).arg("python").status().unwrap();
        assert!(status.success(), "scripts/toolchains python failed");
        let env = Command::new(&toolchains)
            .args(["env", "python"])
            .output()
            .unwrap();
        let env = String::from_utf8(env.stdout).unwrap();
        let bin = env
            .split('"')
            .nth(1)
            .and_then(|path| path.split(':').next())
            .expect("a PATH export");
        let out_dir = wasm_target_dir().join("python");
        std::fs::create_dir_all(&out_dir).unwrap();
        let build = |name: &str| {
            let out = out_dir.join(format!("{name}.wasm"));
            let status = Command::new(Path::new(bin).join("componentize-py"))
                .arg("-d")
                .arg(repo_root().join("wit"))
                .args(["-w", "algorithm", "componentize", "-p"])
                .arg(repo_root().join("sdk/python"))
                .arg("-p")
                .arg(repo_root().join("algorithms/python").join(name))
                .arg("sandlet_app")
                .arg("-o")
                .arg(&out)
                .stdout(std::process::Stdio::null())
                .status()
                .unwrap();
            assert!(status.success(), "componentize-py {name} failed");
            out
        };
        Examples {
            column_stats: build("column-stats"),
            federated_mean: build("federated-mean"),
        }
    })
}

fn write_config(dir: &Path) -> PathBuf {
    let path = dir.join("sandlet.yaml");
    std::fs::write(
        &path,
        "datasets:\n  - name: patients\n    source: { csv: patients.csv }\n    policy:\n      allowedColumns: [id, age, sex, bmi]\n",
    )
    .unwrap();
    path
}

fn run(module: &Path, config: &Path, grants: &[&str], input: &str) -> Ran {
    let mut args = vec![
        "run".to_owned(),
        "--config".to_owned(),
        config.display().to_string(),
    ];
    for grant in grants {
        args.extend(["--grant".to_owned(), (*grant).to_owned()]);
    }
    args.extend([
        "--input".to_owned(),
        input.to_owned(),
        module.display().to_string(),
    ]);
    run_sandlet(args)
}

/// JSON values equal with every number compared as a number (`2000` and
/// `2000.0` alike), exactly.
fn same(a: &Value, b: &Value) -> bool {
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
    serde_json::from_str(ran.stdout.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {ran:#?}"))
}

#[test]
fn python_examples_give_the_rust_numbers_on_the_same_data() {
    let dir = tempfile::tempdir().unwrap();
    write_patients(dir.path(), "patients", 2000, 77);
    let config = write_config(dir.path());
    let py = python();
    let cases = [
        (
            &guests().column_stats,
            &py.column_stats,
            r#"{"dataset": "patients", "column": "age"}"#,
        ),
        (
            &guests().column_stats,
            &py.column_stats,
            r#"{"dataset": "patients", "column": "bmi"}"#,
        ),
        (
            &guests().column_stats,
            &py.column_stats,
            r#"{"dataset": "patients", "column": "bmi", "group_by": "sex"}"#,
        ),
        (
            &guests().federated_mean,
            &py.federated_mean,
            r#"{"dataset": "patients", "column": "bmi"}"#,
        ),
        (
            &guests().federated_mean,
            &py.federated_mean,
            r#"{"dataset": "patients", "column": "age"}"#,
        ),
        (
            &guests().federated_mean,
            &py.federated_mean,
            r#"{"combine": [{"sum": 10.5, "count": 3}, {"sum": 4, "count": 2}]}"#,
        ),
    ];
    for (rust, python, input) in cases {
        let expected = json(&run(rust, &config, &["patients"], input));
        let got = json(&run(python, &config, &["patients"], input));
        assert!(
            same(&got, &expected),
            "{input}:\n python {got}\n rust   {expected}"
        );
    }
}

#[test]
fn python_refusals_and_bad_input_are_the_algorithms_errors() {
    let dir = tempfile::tempdir().unwrap();
    write_patients(dir.path(), "patients", 200, 78);
    let config = write_config(dir.path());
    let py = python();
    // (module, grants, input, what stderr starts with), each also checked
    // against the Rust version where it has the same case.
    let cases: [(&Path, &[&str], &str, &str); 6] = [
        (
            &py.column_stats,
            &[],
            r#"{"dataset": "patients", "column": "age"}"#,
            "not-granted: ",
        ),
        (
            &py.column_stats,
            &["patients"],
            r#"{"dataset": "patients", "column": "ssn"}"#,
            "not-granted: ",
        ),
        (
            &py.column_stats,
            &["patients"],
            r#"{"dataset": "patients", "column": "age", "group_by": "bmi"}"#,
            "denied: minGroupSize: ",
        ),
        (
            &py.federated_mean,
            &["patients"],
            r#"{"dataset": "patients", "column": "ssn"}"#,
            "not-granted: ",
        ),
        (
            &py.column_stats,
            &["patients"],
            r#"{"dataset": 3}"#,
            "invalid input",
        ),
        (
            &py.federated_mean,
            &[],
            r#"{"combine": []}"#,
            "no values at any station",
        ),
    ];
    for (module, grants, input, error) in cases {
        let ran = run(module, &config, grants, input);
        assert_eq!(ran.code, Some(1), "{input}: {ran:#?}");
        assert_eq!(ran.stdout, "", "nothing but a result goes to stdout");
        assert!(
            ran.stderr.trim().starts_with(error),
            "{input}: {}",
            ran.stderr
        );
    }
    // The Rust versions refuse the same queries with the same words.
    let rust = run(
        &guests().column_stats,
        &config,
        &["patients"],
        r#"{"dataset": "patients", "column": "age", "group_by": "bmi"}"#,
    );
    let python = run(
        &py.column_stats,
        &config,
        &["patients"],
        r#"{"dataset": "patients", "column": "age", "group_by": "bmi"}"#,
    );
    assert_eq!(python.stderr.trim(), rust.stderr.trim());
}

#[test]
fn python_examples_run_as_pods_with_the_rust_numbers() {
    use crate::cluster::{TestNode, cluster, push, wasm_pod};
    use crate::registry::{RegistrySetup, TestRegistry};
    let c = cluster();
    let registry = TestRegistry::start(RegistrySetup::default());
    let py = python();
    let python_image = push(&registry, &py.column_stats, "algorithms/column-stats-py:v1");
    let rust_image = push(
        &registry,
        &guests().column_stats,
        "algorithms/column-stats:v1",
    );
    let data = tempfile::tempdir().unwrap();
    write_patients(data.path(), "patients", 400, 79);
    let config = data.path().join("station.yaml");
    std::fs::write(
        &config,
        "datasets:\n  - name: patients\n    source: { csv: patients.csv }\n    policy:\n      allowedColumns: [age, sex, bmi]\n",
    )
    .unwrap();
    let node = TestNode::start(
        "languages",
        &registry,
        &["--config", config.to_str().unwrap()],
    );
    let ns = c.namespace("languages");
    let pod = |name: &str, image: &str, input: &str| {
        wasm_pod(name, &node.name, image, &[input], "Never").replace(
            "metadata:\n",
            "metadata:\n  annotations: {sandlet.dev/datasets: patients}\n",
        )
    };
    let message = |pod: &Value| {
        pod["status"]["containerStatuses"][0]["state"]["terminated"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let input = r#"{"dataset": "patients", "column": "bmi", "group_by": "sex"}"#;
    c.apply(&ns, &pod("python", &python_image, input));
    c.apply(&ns, &pod("rust", &rust_image, input));
    // The first start compiles an 18 MB component (a debug build here).
    let wait = std::time::Duration::from_secs(240);
    let python_pod = c.wait_phase(&ns, "python", "Succeeded", wait);
    let rust_pod = c.wait_phase(&ns, "rust", "Succeeded", wait);
    let parse = |text: String| -> Value { serde_json::from_str(&text).unwrap() };
    let (got, expected) = (parse(message(&python_pod)), parse(message(&rust_pod)));
    assert!(same(&got, &expected), "python {got}\nrust   {expected}");

    // A hidden column: the SDK's NotGranted is the pod's failure message.
    c.apply(
        &ns,
        &pod(
            "hidden",
            &python_image,
            r#"{"dataset": "patients", "column": "ssn"}"#,
        ),
    );
    let hidden = c.wait_phase(&ns, "hidden", "Failed", wait);
    assert_eq!(
        hidden["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"],
        1
    );
    assert!(
        message(&hidden).starts_with("not-granted: "),
        "{}",
        message(&hidden)
    );
}
