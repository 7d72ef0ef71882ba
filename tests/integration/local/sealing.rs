//! Sealed results: `sandlet run --seal-to` and `sandlet open`. Keys come
//! from the standard `age-keygen`, and the standard `age` opens what
//! sandlet seals; only the named identity opens a result, and no plaintext
//! result reaches the audit log. (Sealed pods are `e2e::sealing`.)

use std::path::Path;
use std::process::Command;

use crate::fixtures::{Ran, guests, output_of, output_with_stdin, run_sandlet, sandlet};

const ARMOR: &str = "-----BEGIN AGE ENCRYPTED FILE-----";

/// A new age identity file `dir/NAME.key` (by `age-keygen`); its path and
/// recipient.
pub(crate) fn identity(dir: &Path, name: &str) -> (String, String) {
    let path = dir.join(format!("{name}.key"));
    let out = output_of(Command::new("age-keygen").arg("-o").arg(&path));
    assert!(out.status.success(), "{out:?}");
    let out = output_of(Command::new("age-keygen").arg("-y").arg(&path));
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
pub(crate) fn age_decrypt(identity: &str, sealed: &str) -> Result<String, String> {
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
pub(crate) fn assert_sealed(text: &str) {
    assert!(
        text.trim_start().starts_with(ARMOR)
            && text
                .trim_end()
                .ends_with("-----END AGE ENCRYPTED FILE-----"),
        "not armored age: {text:?}"
    );
}

/// Every file under `dir`, as text.
pub(crate) fn text_under(dir: &Path) -> String {
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
