//! The example algorithms on generated datasets: their numbers must equal a
//! computation done here, in the test, over the same rows.

use crate::fixtures::{Ran, assert_close, guests, run_sandlet, stats, write_patients};

/// Writes a config granting `names` (each a CSV in `dir`), hiding `ssn`.
pub fn write_config(dir: &std::path::Path, names: &[&str]) -> std::path::PathBuf {
    let mut yaml = String::from("datasets:\n");
    for name in names {
        yaml.push_str(&format!(
            "  - name: {name}\n    source: {{ csv: {name}.csv }}\n    policy:\n      allowedColumns: [id, age, sex, bmi]\n"
        ));
    }
    let path = dir.join("sandlet.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

/// Runs `module` with `config`, the given grants and `input`.
pub fn run_with_data(
    module: &std::path::Path,
    config: &std::path::Path,
    grants: &[&str],
    input: &str,
) -> Ran {
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

pub fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}"))
}

#[test]
fn column_stats_matches_a_direct_computation() {
    let dir = tempfile::tempdir().unwrap();
    let patients = write_patients(dir.path(), "patients", 2000, 42);
    let config = write_config(dir.path(), &["patients"]);
    for (column, values) in [
        (
            "age",
            patients.ages.iter().map(|&a| a as f64).collect::<Vec<_>>(),
        ),
        ("bmi", patients.bmis.clone()),
    ] {
        let input = format!(r#"{{"dataset": "patients", "column": "{column}"}}"#);
        let ran = run_with_data(&guests().column_stats, &config, &["patients"], &input);
        assert_eq!(ran.code, Some(0), "{ran:#?}");
        let result = json(&ran.stdout);
        let (n, mean, variance) = stats(&values);
        assert_eq!(result["count"], n as i64, "{result}");
        assert_close(result["mean"].as_f64().unwrap(), mean);
        assert_close(result["variance"].as_f64().unwrap(), variance);
    }
}

#[test]
fn grouped_column_stats_match_and_small_groups_are_denied_inside_the_guest() {
    let dir = tempfile::tempdir().unwrap();
    let patients = write_patients(dir.path(), "patients", 2000, 43);
    let config = write_config(dir.path(), &["patients"]);
    let input = r#"{"dataset": "patients", "column": "bmi", "group_by": "sex"}"#;
    let ran = run_with_data(&guests().column_stats, &config, &["patients"], input);
    assert_eq!(ran.code, Some(0), "{ran:#?}");
    let result = json(&ran.stdout);
    let groups = result["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2, "{result}");
    for (group, sex) in groups.iter().zip(["f", "m"]) {
        let values: Vec<f64> = patients
            .bmis
            .iter()
            .zip(&patients.sexes)
            .filter(|(_, s)| **s == sex)
            .map(|(b, _)| *b)
            .collect();
        let (n, mean, variance) = stats(&values);
        assert_eq!(group["key"], sex);
        assert_eq!(group["count"], n as i64);
        assert_close(group["mean"].as_f64().unwrap(), mean);
        assert_close(group["variance"].as_f64().unwrap(), variance);
    }
    // Grouping by bmi makes groups of one or two: the policy, not the
    // algorithm, refuses it.
    let input = r#"{"dataset": "patients", "column": "age", "group_by": "bmi"}"#;
    let ran = run_with_data(&guests().column_stats, &config, &["patients"], input);
    assert_eq!(ran.code, Some(1), "{ran:#?}");
    assert!(
        ran.stderr.trim().starts_with("denied: minGroupSize: "),
        "{ran:#?}"
    );
}

/// A private dataset, seen by a guest of each WIT version: `column-stats`
/// (0.2.0) reports 95 % intervals from the noise the station tells it, and
/// they hold; `federated-mean` (0.1.0) runs unchanged and spends perQuery.
#[test]
fn guests_of_both_wit_versions_run_on_a_private_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let patients = write_patients(dir.path(), "patients", 500, 44);
    let config = dir.path().join("private.yaml");
    std::fs::write(
        &config,
        "datasets:\n  - name: patients\n    source: { csv: patients.csv }\n    policy: { allowedColumns: [age, sex, bmi] }\n    privacy: { epsilon: 1000, perQuery: 0.5, delta: 1.0e-6, bounds: { bmi: [10, 40], age: [0, 100] } }\n",
    )
    .unwrap();
    let state = tempfile::tempdir().unwrap();
    let run = |module: &std::path::Path, input: &str| -> Ran {
        run_sandlet([
            "run",
            "--state-dir",
            state.path().to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--grant",
            "patients",
            "--input",
            input,
            module.to_str().unwrap(),
        ])
    };
    let (n, mean, _) = stats(&patients.bmis);
    let runs = 40;
    let (mut count_held, mut mean_held) = (0, 0);
    for _ in 0..runs {
        let ran = run(
            &guests().column_stats,
            r#"{"dataset": "patients", "column": "bmi"}"#,
        );
        assert_eq!(ran.code, Some(0), "{ran:#?}");
        let result = json(&ran.stdout);
        assert_eq!(result["privacy"]["epsilon"], 0.5, "{result}");
        assert_eq!(result["privacy"]["confidence"], 0.95, "{result}");
        let count = result["count_interval"].as_array().expect("count interval");
        let (lo, hi) = (count[0].as_f64().unwrap(), count[1].as_f64().unwrap());
        // Three statistics at ε 0.5/3: the count's scale is 6, so its 95 %
        // half-width is about 6·ln(20) ≈ 18.
        assert!((10.0..40.0).contains(&((hi - lo) / 2.0)), "{result}");
        count_held += usize::from(lo <= n as f64 && n as f64 <= hi);
        let interval = result["mean_interval"].as_array().expect("mean interval");
        let (lo, hi) = (interval[0].as_f64().unwrap(), interval[1].as_f64().unwrap());
        mean_held += usize::from(lo <= mean && mean <= hi);
    }
    // Each interval holds with probability at least 0.95; 40 runs with
    // fewer than 33 would happen less than once in a thousand.
    assert!(
        count_held >= 33,
        "count intervals held {count_held} of {runs}"
    );
    assert!(mean_held >= 33, "mean intervals held {mean_held} of {runs}");

    // Grouped: an interval per shown group.
    let ran = run(
        &guests().column_stats,
        r#"{"dataset": "patients", "column": "bmi", "group_by": "sex"}"#,
    );
    assert_eq!(ran.code, Some(0), "{ran:#?}");
    let result = json(&ran.stdout);
    for group in result["groups"].as_array().unwrap() {
        assert!(group["mean_interval"].is_array(), "{result}");
    }

    // A 0.1.0 guest: its one query spends perQuery and is near the truth.
    let ran = run(
        &guests().federated_mean,
        r#"{"dataset": "patients", "column": "bmi"}"#,
    );
    assert_eq!(ran.code, Some(0), "{ran:#?}");
    let result = json(&ran.stdout);
    let sum: f64 = patients.bmis.iter().sum();
    assert!(
        (result["count"].as_f64().unwrap() - n as f64).abs() < 60.0,
        "{result}"
    );
    assert!(
        (result["sum"].as_f64().unwrap() - sum).abs() < 2000.0,
        "{result}"
    );
    let listed = run_sandlet([
        "budget",
        "list",
        "--state-dir",
        state.path().to_str().unwrap(),
    ]);
    // 41 column-stats runs and one federated-mean run, 0.5 each.
    let account: Vec<&str> = listed
        .stdout
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        account,
        ["patients", "@local", "21", "-", "-", "42"],
        "{listed:#?}"
    );
}

#[test]
fn an_algorithm_error_exits_1_with_the_message_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    write_patients(dir.path(), "patients", 20, 1);
    let config = write_config(dir.path(), &["patients"]);
    // Granted nothing: the query is refused and the algorithm reports it.
    let input = r#"{"dataset": "patients", "column": "age"}"#;
    let ran = run_with_data(&guests().column_stats, &config, &[], input);
    assert_eq!(ran.code, Some(1), "{ran:#?}");
    assert_eq!(ran.stdout, "", "nothing but a result goes to stdout");
    assert!(ran.stderr.trim().starts_with("not-granted:"), "{ran:#?}");
    // A hidden column is not-granted too, exactly like a missing one.
    let input = r#"{"dataset": "patients", "column": "ssn"}"#;
    let ran = run_with_data(&guests().column_stats, &config, &["patients"], input);
    assert_eq!(ran.code, Some(1), "{ran:#?}");
    assert!(ran.stderr.trim().starts_with("not-granted:"), "{ran:#?}");
}

#[test]
fn federated_mean_over_three_stations_equals_the_direct_mean() {
    let dir = tempfile::tempdir().unwrap();
    let stations = ["north", "east", "south"];
    let mut all_bmis = Vec::new();
    for (i, station) in stations.iter().enumerate() {
        let patients = write_patients(dir.path(), station, 300 + 150 * i, 7 + i as u64);
        all_bmis.extend(patients.bmis);
    }
    let config = write_config(dir.path(), &stations);
    let module = guests().federated_mean.to_str().unwrap();
    let mut partials = Vec::new();
    for station in stations {
        let input = format!(r#"{{"dataset": "{station}", "column": "bmi"}}"#);
        let ran = run_with_data(&guests().federated_mean, &config, &[station], &input);
        assert_eq!(ran.code, Some(0), "{ran:#?}");
        partials.push(json(&ran.stdout));
    }
    // The central step needs no data at all.
    let combine = serde_json::json!({ "combine": partials }).to_string();
    let ran = run_sandlet(["run", "--input", &combine, module]);
    assert_eq!(ran.code, Some(0), "{ran:#?}");
    let combined = json(&ran.stdout);
    let (n, mean, _) = stats(&all_bmis);
    assert_eq!(combined["count"], n as i64);
    assert_close(combined["mean"].as_f64().unwrap(), mean);
}

#[test]
fn a_config_with_an_unknown_source_type_is_refused_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.yaml");
    std::fs::write(
        &config,
        "datasets:\n  - name: p\n    source: { excel: p.xlsx }\n",
    )
    .unwrap();
    let ran = run_sandlet([
        "run",
        "--config",
        config.to_str().unwrap(),
        guests().hello.to_str().unwrap(),
    ]);
    ran.assert_sandlet_error(&format!("{}: line 3", config.display()));
    assert!(ran.stderr.contains("unknown field `excel`"), "{ran:#?}");
}
