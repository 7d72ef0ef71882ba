//! The Python, JavaScript and C examples as pods on the control plane: the
//! Rust versions' numbers, and a hidden column as the pod's failure
//! message. (The examples through `sandlet run` are `local::languages`.)

use serde_json::Value;

use crate::cluster::{TestNode, cluster, push, wasm_pod, with_datasets};
use crate::fixtures::{guests, write_patients};
use crate::local::languages::{languages, same};
use crate::registry::{RegistrySetup, TestRegistry};

#[test]
fn examples_in_every_language_run_as_pods_with_the_rust_numbers() {
    let c = cluster();
    let registry = TestRegistry::start(RegistrySetup::default());
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
        with_datasets(
            &wasm_pod(name, &node.name, image, &[input], "Never"),
            "patients",
        )
    };
    let message = |pod: &Value| {
        pod["status"]["containerStatuses"][0]["state"]["terminated"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let input = r#"{"dataset": "patients", "column": "bmi", "group_by": "sex"}"#;
    c.apply(&ns, &pod("rust", &rust_image, input));
    let images: Vec<(&str, String)> = languages()
        .into_iter()
        .map(|(lang, example)| {
            let image = push(
                &registry,
                &example.column_stats,
                &format!("algorithms/column-stats-{lang}:v1"),
            );
            c.apply(&ns, &pod(lang, &image, input));
            let hidden = format!("{lang}-hidden");
            c.apply(
                &ns,
                &pod(
                    &hidden,
                    &image,
                    r#"{"dataset": "patients", "column": "ssn"}"#,
                ),
            );
            (lang, image)
        })
        .collect();
    // A first start compiles a component of 12-18 MB (a debug build here).
    let wait = std::time::Duration::from_secs(300);
    let parse = |text: String| -> Value { serde_json::from_str(&text).unwrap() };
    let expected = parse(message(&c.wait_phase(&ns, "rust", "Succeeded", wait)));
    for (lang, _) in images {
        let got = parse(message(&c.wait_phase(&ns, lang, "Succeeded", wait)));
        assert!(same(&got, &expected), "{lang} {got}\nrust {expected}");
        // A hidden column: the SDK's NotGranted is the pod's failure message.
        let hidden = c.wait_phase(&ns, &format!("{lang}-hidden"), "Failed", wait);
        assert_eq!(
            hidden["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"],
            1
        );
        assert!(
            message(&hidden).starts_with("not-granted: "),
            "{lang}: {}",
            message(&hidden)
        );
    }
}
