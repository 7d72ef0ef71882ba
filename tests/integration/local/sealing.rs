//! Sealed results: `sandlet run --seal-to`, pods annotated
//! `sandlet.dev/seal-to` (and `sandlet.dev/seal-logs`), the result store
//! for long results, and `sandlet open`. Keys come from the standard
//! `age-keygen`, and the standard `age` opens what sandlet seals; only the
//! named identity opens a result, and no plaintext result reaches the
//! termination message, the API server, the node's log or the audit log.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::cluster::{TestNode, cluster, patients_station, push, wasm_pod, with_datasets};
use crate::fixtures::{Ran, guests, output_with_stdin, run_sandlet, sandlet};
use crate::registry::{RegistrySetup, TestRegistry};

const ARMOR: &str = "-----BEGIN AGE ENCRYPTED FILE-----";
const LONG: std::time::Duration = std::time::Duration::from_secs(90);

/// A new age identity file `dir/NAME.key` (by `age-keygen`); its path and
/// recipient.
pub(crate) fn identity(dir: &Path, name: &str) -> (String, String) {
    let path = dir.join(format!("{name}.key"));
    let out = Command::new("age-keygen")
        .arg("-o")
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let out = Command::new("age-keygen")
        .arg("-y")
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let recipient = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(recipient.starts_with("age1"), "{recipient}");
    (path.to_str().unwrap().to_owned(), recipient)
}

/// `sandlet open ARGS...` with `input` on stdin.
pub(crate) fn open(args: &[&str], input: &str) -> Ran {
    output_with_stdin(sandlet().arg("open").args(args), input.as_bytes()).into()
}

/// What the standard `age -d -i IDENTITY` makes of `sealed`.
fn age_decrypt(identity: &str, sealed: &str) -> Result<String, String> {
    let out = output_with_stdin(
        Command::new("age").args(["-d", "-i", identity]),
        sealed.as_bytes(),
    );
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[track_caller]
fn assert_sealed(text: &str) {
    assert!(
        text.trim_start().starts_with(ARMOR)
            && text
                .trim_end()
                .ends_with("-----END AGE ENCRYPTED FILE-----"),
        "not armored age: {text:?}"
    );
}

/// Every file under `dir`, as text.
fn text_under(dir: &Path) -> String {
    let mut all = String::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            all.push_str(&text_under(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            all.push_str(&String::from_utf8_lossy(&bytes));
        }
    }
    all
}

#[test]
fn sandlet_run_seals_results_that_only_the_named_identity_opens() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let (researcher, recipient) = identity(dir, "researcher");
    let (stranger, _) = identity(dir, "stranger");
    crate::fixtures::write_patients(dir, "patients", 300, 7);
    let config = dir.join("station.yaml");
    std::fs::write(
        &config,
        "datasets:\n  - name: patients\n    source: { csv: patients.csv }\n    policy:\n      allowedColumns: [age, sex, bmi]\n",
    )
    .unwrap();
    let state = dir.join("state");
    let mean = guests().federated_mean.to_str().unwrap().to_owned();
    let run = |input: &str, seal: Option<&str>| {
        let mut args = vec![
            "run".to_owned(),
            "--config".to_owned(),
            config.to_str().unwrap().to_owned(),
            "--grant".to_owned(),
            "patients".to_owned(),
            "--state-dir".to_owned(),
            state.to_str().unwrap().to_owned(),
            "--input".to_owned(),
            input.to_owned(),
        ];
        if let Some(recipient) = seal {
            args.extend(["--seal-to".to_owned(), recipient.to_owned()]);
        }
        args.push(mean.clone());
        run_sandlet(args)
    };
    let input = r#"{"dataset": "patients", "column": "bmi"}"#;
    let plain = run(input, None);
    assert_eq!(plain.code, Some(0), "{plain:#?}");
    let result = plain.stdout.trim_end().to_owned();
    assert!(result.contains("\"count\":300"), "{result}");

    // Sealed: stdout is armored age, and nothing else.
    let sealed = run(input, Some(&recipient));
    assert_eq!(sealed.code, Some(0), "{sealed:#?}");
    assert_sealed(&sealed.stdout);
    assert!(!sealed.stdout.contains("count") && !sealed.stderr.contains("count"));
    // Opened by sandlet (from stdin and from a file) and by the age tool.
    let opened = open(&["--identity", &researcher], &sealed.stdout);
    assert_eq!(opened.code, Some(0), "{opened:#?}");
    assert_eq!(opened.stdout, result);
    let file = dir.join("result.age");
    std::fs::write(&file, &sealed.stdout).unwrap();
    let opened = run_sandlet(["open", "--identity", &researcher, file.to_str().unwrap()]);
    assert_eq!(opened.stdout, result, "{opened:#?}");
    assert_eq!(age_decrypt(&researcher, &sealed.stdout), Ok(result.clone()));
    // Sealing is randomised: the same result seals differently each time.
    let again = run(input, Some(&recipient));
    assert_ne!(again.stdout, sealed.stdout);

    // Only the named identity opens it.
    let refused = open(&["--identity", &stranger], &sealed.stdout);
    refused.assert_sandlet_error("not sealed for this identity");
    assert!(refused.stdout.is_empty());
    assert!(age_decrypt(&stranger, &sealed.stdout).is_err());
    // Not a sealed result at all, or an identity file that is not one.
    open(&["--identity", &researcher], "{\"mean\": 1}\n")
        .assert_sandlet_error("cannot open the result");
    open(&["--identity", config.to_str().unwrap()], &sealed.stdout)
        .assert_sandlet_error("the identity file cannot be read");
    open(
        &["--identity", &dir.join("none.key").display().to_string()],
        "",
    )
    .assert_sandlet_error("cannot read");

    // The algorithm's error is sealed too (on stderr, exit 1).
    let failed = run(
        r#"{"dataset": "patients", "column": "ssn"}"#,
        Some(&recipient),
    );
    assert_eq!(failed.code, Some(1), "{failed:#?}");
    assert!(failed.stdout.is_empty());
    assert_sealed(&failed.stderr);
    let message = open(&["--identity", &researcher], &failed.stderr);
    assert!(message.stdout.starts_with("not-granted: "), "{message:#?}");

    // A recipient that is not one: refused before anything runs.
    for bad in [
        "age1notakey",
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ5 me@host",
        "",
    ] {
        let ran = run(input, Some(bad));
        ran.assert_sandlet_error("--seal-to: ");
        assert!(
            ran.stderr.contains("is not an age X25519 recipient"),
            "{ran:#?}"
        );
        assert!(ran.stdout.is_empty());
    }

    // A command's result is its stdout: sealed whole.
    let hello = run_sandlet([
        "run",
        "--seal-to",
        &recipient,
        guests().hello.to_str().unwrap(),
        "--",
        "private",
    ]);
    assert_eq!(hello.code, Some(0), "{hello:#?}");
    assert_sealed(&hello.stdout);
    assert_eq!(
        open(&["--identity", &researcher], &hello.stdout).stdout,
        "arg: private\nhello from wasm\n"
    );

    // The audit log records the queries, never the results.
    let audit = text_under(&state.join("audit"));
    assert!(audit.contains("answered"), "{audit}");
    assert!(!audit.contains(&result), "{audit}");
    let sum = result.split("\"sum\":").nth(1).unwrap();
    let sum = sum.split([',', '}']).next().unwrap();
    assert!(!audit.contains(sum), "the sum {sum} is in the audit log");
}

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
