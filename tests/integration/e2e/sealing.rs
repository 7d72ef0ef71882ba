//! Sealed pods on the control plane: pods annotated `sandlet.dev/seal-to`
//! (and `sandlet.dev/seal-logs`) and the result store for long results;
//! only the named identity opens a result, and no plaintext result reaches
//! the termination message, the API server, the node's log or the audit
//! log. (`sandlet run --seal-to` alone is `local::sealing`.)

use serde_json::Value;

use crate::cluster::{TestNode, cluster, patients_station, push, wasm_pod, with_datasets};
use crate::fixtures::guests;
use crate::local::sealing::{age_decrypt, assert_sealed, identity, open, text_under};
use crate::registry::{RegistrySetup, TestRegistry};

const LONG: std::time::Duration = std::time::Duration::from_secs(90);

/// A pod's termination message, once it has one.
fn message_of(pod: &Value) -> String {
    pod["status"]["containerStatuses"][0]["state"]["terminated"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn sealed_pod(manifest: &str, recipient: &str, logs: bool) -> String {
    let extra = if logs {
        ", sandlet.dev/seal-logs: \"true\""
    } else {
        ""
    };
    if manifest.contains("  annotations: {") {
        manifest.replacen(
            "  annotations: {",
            &format!("  annotations: {{sandlet.dev/seal-to: \"{recipient}\"{extra}, "),
            1,
        )
    } else {
        manifest.replacen(
            "metadata:\n",
            &format!("metadata:\n  annotations: {{sandlet.dev/seal-to: \"{recipient}\"{extra}}}\n"),
            1,
        )
    }
}

#[test]
fn kube_sealed_pods_show_only_ciphertext_and_the_requester_opens_them() {
    let c = cluster();
    let registry = TestRegistry::start(RegistrySetup::default());
    let mean = push(&registry, &guests().federated_mean, "alg/mean:v1");
    let stats = push(&registry, &guests().column_stats, "alg/stats:v1");
    let hello = push(&registry, &guests().hello, "alg/hello:v1");
    let keys = tempfile::tempdir().unwrap();
    let (researcher, recipient) = identity(keys.path(), "researcher");
    let (stranger, _) = identity(keys.path(), "stranger");
    let (node, patients, _data) = patients_station("sealing", &registry, 3000, 11, "sealed", "");
    let ns = c.namespace("sealed");
    let algorithm = |name: &str, image: &str, input: &str| {
        sealed_pod(
            &with_datasets(
                &wasm_pod(name, &node.name, image, &[input], "Never"),
                "patients",
            ),
            &recipient,
            false,
        )
    };
    let access = ["--insecure-registry", registry.addr.as_str()];
    let open_as = |identity: &str, message: &str| {
        let mut args = vec!["--identity", identity];
        args.extend(access);
        open(&args, message)
    };

    // A partial mean, sealed in its termination message.
    c.apply(
        &ns,
        &algorithm(
            "partial",
            &mean,
            r#"{"dataset": "patients", "column": "bmi"}"#,
        ),
    );
    // An error, sealed the same way.
    c.apply(
        &ns,
        &algorithm(
            "hidden",
            &mean,
            r#"{"dataset": "patients", "column": "ssn"}"#,
        ),
    );
    // 70 groups: too long for a termination message once sealed, so stored
    // beside the module and pointed at.
    c.apply(
        &ns,
        &algorithm(
            "groups",
            &stats,
            r#"{"dataset": "patients", "column": "bmi", "group_by": "age"}"#,
        ),
    );
    // A command whose log is sealed too.
    c.apply(
        &ns,
        &sealed_pod(
            &wasm_pod("logs", &node.name, &hello, &["confidential"], "Never"),
            &recipient,
            true,
        ),
    );

    // A failing command whose log tail becomes its termination message
    // (FallbackToLogsOnError): the tail is sealed like a result.
    c.apply(
        &ns,
        &sealed_pod(
            &wasm_pod(
                "tail",
                &node.name,
                &hello,
                &["--exit", "3", "leaked"],
                "Never",
            )
            .replace(
                "    image:",
                "    terminationMessagePolicy: FallbackToLogsOnError\n    image:",
            ),
            &recipient,
            false,
        ),
    );

    let pod = c.wait_phase(&ns, "partial", "Succeeded", LONG);
    let message = message_of(&pod);
    assert_sealed(&message);
    let opened = open_as(&researcher, &message);
    assert_eq!(opened.code, Some(0), "{opened:#?}");
    let partial: Value = serde_json::from_str(&opened.stdout).unwrap();
    assert_eq!(partial["count"], 3000);
    crate::fixtures::assert_close(partial["sum"].as_f64().unwrap(), patients.bmis.iter().sum());
    assert_eq!(
        age_decrypt(&researcher, &message),
        Ok(opened.stdout.clone())
    );
    open_as(&stranger, &message).assert_sandlet_error("not sealed for this identity");

    let pod = c.wait_phase(&ns, "hidden", "Failed", LONG);
    assert_eq!(
        pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"],
        1
    );
    let hidden_message = message_of(&pod);
    assert_sealed(&hidden_message);
    let hidden = open_as(&researcher, &hidden_message).stdout;
    assert!(hidden.starts_with("not-granted: "), "{hidden}");

    let pod = c.wait_phase(&ns, "groups", "Succeeded", LONG);
    let pointer = message_of(&pod);
    let stored = pointer
        .strip_prefix("sandlet-sealed-result: ")
        .unwrap_or_else(|| panic!("not a pointer: {pointer}"));
    assert!(
        stored.starts_with(&format!("{}/alg/stats@sha256:", registry.addr)),
        "{stored}"
    );
    let opened = open_as(&researcher, &pointer);
    assert_eq!(opened.code, Some(0), "{opened:#?}");
    let groups: Value = serde_json::from_str(&opened.stdout).unwrap();
    assert_eq!(groups["groups"].as_array().unwrap().len(), 70, "{groups}");
    let counted: i64 = groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["count"].as_i64().unwrap())
        .sum();
    assert_eq!(counted, 3000);
    open_as(&stranger, &pointer).assert_sandlet_error("not sealed for this identity");
    // A pointer at something that is not a sealed result (a module), or at
    // nothing, is named as such.
    open_as(&researcher, &format!("sandlet-sealed-result: {hello}"))
        .assert_sandlet_error("not a sealed result: its layer has media type \"application/wasm\"");
    open_as(
        &researcher,
        &format!("sandlet-sealed-result: {}/alg/stats:gone", registry.addr),
    )
    .assert_sandlet_error("not found");
    assert!(
        c.events(&ns, "groups")
            .iter()
            .any(|e| e.starts_with("SealedResultStored")),
        "{:?}",
        c.events(&ns, "groups")
    );

    let pod = c.wait_phase(&ns, "logs", "Succeeded", LONG);
    assert_eq!(message_of(&pod), "", "a command has no result message");
    let logs = c.kubectl(&["logs", "-n", &ns, "logs"]);
    assert_sealed(&logs);
    assert_eq!(
        open_as(&researcher, &logs).stdout,
        "arg: confidential\nhello from wasm\n"
    );

    let pod = c.wait_phase(&ns, "tail", "Failed", LONG);
    let tail = message_of(&pod);
    assert_sealed(&tail);
    assert_eq!(
        open_as(&researcher, &tail).stdout,
        "arg: leaked\nhello from wasm\n"
    );
    // (Its log itself is not sealed: the pod did not ask.)
    assert!(
        c.kubectl(&["logs", "-n", &ns, "tail"])
            .contains("arg: leaked")
    );

    // No plaintext anywhere else: the API server's pods and events, the
    // node's own log, its audit log.
    let plaintexts = [
        serde_json::to_string(&partial).unwrap(),
        format!("\"sum\":{}", partial["sum"]),
        hidden.trim().to_owned(),
        "\"groups\":[".to_owned(),
        "hello from wasm".to_owned(),
    ];
    let places = [
        ("pods", c.kubectl(&["get", "pods", "-n", &ns, "-o", "json"])),
        (
            "events",
            c.kubectl(&["get", "events", "-n", &ns, "-o", "json"]),
        ),
        ("node log", node.log_text()),
        ("audit log", text_under(&node.state_dir.join("audit"))),
    ];
    for (place, text) in &places {
        assert!(!text.is_empty(), "{place} is empty");
        for plaintext in &plaintexts {
            assert!(
                !text.contains(plaintext.as_str()),
                "{plaintext:?} is in the {place}"
            );
        }
    }

    // A pod naming no valid recipient is refused before it runs.
    c.apply(
        &ns,
        &sealed_pod(
            &wasm_pod("mistyped", &node.name, &hello, &[], "Never"),
            "age1notakey",
            false,
        ),
    );
    let pod = c.wait_phase(&ns, "mistyped", "Failed", LONG);
    assert_eq!(pod["status"]["reason"], "InvalidPodSpec", "{pod}");
    assert!(
        pod["status"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("sandlet.dev/seal-to"),
        "{pod}"
    );
    drop::<TestNode>(node);
}
