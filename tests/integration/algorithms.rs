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
