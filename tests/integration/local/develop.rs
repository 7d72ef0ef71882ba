//! `sandlet new` and `sandlet build`: a scaffold in every language builds
//! and passes its own test as it is; bad directories and missing
//! toolchains are refused by name, and nothing already there is lost.

use std::path::Path;
use std::process::Command;

use crate::fixtures::{Ran, run_ok, sandlet, wasm_target_dir};
use crate::local::languages::{sandlet_build, toolchain};

const LANGUAGES: [&str; 4] = ["rust", "python", "js", "c"];

fn new(lang: &str, dir: &Path) -> Ran {
    sandlet()
        .args(["new", "--lang", lang])
        .arg(dir)
        .output()
        .unwrap()
        .into()
}

/// The scaffold's own test script, with the binary under test and what the
/// toolchains need of this environment; a Rust scaffold shares the wasm
/// target directory so its dependencies are compiled once.
fn test_run(dir: &Path) -> Ran {
    let mut command = Command::new(dir.join("test/run"));
    command.env("SANDLET", env!("CARGO_BIN_EXE_sandlet"));
    command.env("CARGO_TARGET_DIR", wasm_target_dir().join("scaffolds"));
    command.env(
        "SANDLET_STATE_DIR",
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("sandlet-state"),
    );
    command.output().unwrap().into()
}

#[test]
fn a_scaffold_in_every_language_builds_and_passes_its_own_test() {
    let root = tempfile::tempdir().unwrap();
    for lang in LANGUAGES {
        if lang != "rust" {
            toolchain(lang);
        }
        let dir = root.path().join(format!("mean-{lang}"));
        let made = new(lang, &dir);
        assert_eq!(made.code, Some(0), "{lang}: {made:#?}");
        let ran = test_run(&dir);
        assert_eq!(ran.code, Some(0), "{lang}: {ran:#?}");
        // The script compared the result with test/expected.json.
        let last = ran.stdout.lines().last().unwrap_or_default();
        let result: serde_json::Value =
            serde_json::from_str(last.strip_prefix("ok: ").expect(last)).unwrap();
        assert_eq!(result["count"], 12, "{lang}: {result}");
        assert_eq!(result["mean"].as_f64(), Some(6.5), "{lang}: {result}");
        // `sandlet build` prints the component's path and nothing else on
        // stdout; the component is one sandlet runs.
        let built = sandlet_build().arg(&dir).output().unwrap();
        assert!(built.status.success(), "{lang}: {built:?}");
        let stdout = String::from_utf8(built.stdout).unwrap();
        assert_eq!(stdout.lines().count(), 1, "{lang}: {stdout}");
        let component = Path::new(stdout.trim());
        assert!(component.is_file() && component.extension().unwrap() == "wasm");
    }
    // The test checks something: a wrong expectation fails it.
    let c = root.path().join("mean-c");
    std::fs::write(
        c.join("test/expected.json"),
        r#"{"dataset": "example", "column": "value", "count": 12, "mean": 7}"#,
    )
    .unwrap();
    let ran = test_run(&c);
    assert_ne!(ran.code, Some(0), "{ran:#?}");
    assert!(ran.stderr.contains("FAIL"), "{}", ran.stderr);
}

#[test]
fn new_refuses_a_directory_with_anything_in_it_and_names_it() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("mine");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("algorithm.py"), "def run(args): return 1\n").unwrap();
    let ran = new("python", &dir);
    assert_eq!(ran.code, Some(2), "{ran:#?}");
    assert!(ran.stderr.contains("is not empty"), "{}", ran.stderr);
    assert_eq!(
        std::fs::read_to_string(dir.join("algorithm.py")).unwrap(),
        "def run(args): return 1\n"
    );
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
    // A name no language can use, and a language sandlet does not have.
    let ran = new("c", &root.path().join("2 means"));
    assert_eq!(ran.code, Some(2), "{ran:#?}");
    assert!(
        ran.stderr.contains("cannot name an algorithm"),
        "{}",
        ran.stderr
    );
    assert!(!root.path().join("2 means").exists());
    let ran = new("cobol", &root.path().join("mean"));
    assert_eq!(ran.code, Some(2), "{ran:#?}");
    assert!(ran.stderr.contains("cobol"), "{}", ran.stderr);
    assert!(!root.path().join("mean").exists());
}

#[test]
fn build_names_what_is_missing_or_wrong() {
    let root = tempfile::tempdir().unwrap();
    let build = |dir: &Path| -> Ran { sandlet_build().arg(dir).output().unwrap().into() };
    // No directory, nothing to build, two languages at once.
    let ran = build(&root.path().join("absent"));
    assert_eq!(ran.code, Some(2));
    assert!(
        ran.stderr.contains("absent: no such directory"),
        "{}",
        ran.stderr
    );
    let empty = root.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let ran = build(&empty);
    assert_eq!(ran.code, Some(2));
    assert!(ran.stderr.contains("no algorithm in"), "{}", ran.stderr);
    assert!(ran.stderr.contains("algorithm.py"), "{}", ran.stderr);
    let both = root.path().join("both");
    std::fs::create_dir(&both).unwrap();
    std::fs::write(both.join("algorithm.js"), "").unwrap();
    std::fs::write(both.join("algorithm.c"), "").unwrap();
    let ran = build(&both);
    assert_eq!(ran.code, Some(2));
    assert!(
        ran.stderr.contains("more than one language"),
        "{}",
        ran.stderr
    );

    // A toolchain that is not installed is named with the command that
    // installs it: an empty cache and a PATH without the tools.
    let bare_path = std::env::join_paths(["/usr/bin", "/bin"]).unwrap();
    for (lang, tool) in [
        ("python", "componentize-py"),
        ("js", "componentize-js"),
        ("c", "wit-bindgen"),
    ] {
        let dir = root.path().join(format!("bare-{lang}"));
        assert_eq!(new(lang, &dir).code, Some(0));
        let ran: Ran = sandlet()
            .env("SANDLET_CACHE", root.path().join("no-cache"))
            .env("PATH", &bare_path)
            .arg("build")
            .arg(&dir)
            .output()
            .unwrap()
            .into();
        assert_eq!(ran.code, Some(2), "{lang}: {ran:#?}");
        assert!(
            ran.stderr.contains(&format!("{tool} not found")),
            "{lang}: {}",
            ran.stderr
        );
        assert!(
            ran.stderr.contains(&format!("scripts/toolchains {lang}")),
            "{lang}: {}",
            ran.stderr
        );
        assert_eq!(ran.stdout, "");
    }

    // Code that does not compile: the compiler's words, exit 2, and no
    // component left from the failed build; a good earlier build stays
    // until a new one replaces it.
    toolchain("c");
    let dir = root.path().join("broken");
    assert_eq!(new("c", &dir).code, Some(0));
    let good = run_ok(sandlet_build().arg(&dir));
    let component = Path::new(good.trim()).to_owned();
    let before = std::fs::read(&component).unwrap();
    std::fs::write(
        dir.join("algorithm.c"),
        "int sandlet_algorithm(void) { return x; }\n",
    )
    .unwrap();
    let ran = build(&dir);
    assert_eq!(ran.code, Some(2), "{ran:#?}");
    assert!(ran.stderr.contains("clang failed"), "{}", ran.stderr);
    assert!(ran.stderr.contains("algorithm.c"), "{}", ran.stderr);
    assert_eq!(ran.stdout, "");
    assert_eq!(std::fs::read(&component).unwrap(), before);
    assert!(!dir.join("build/broken.partial.wasm").exists());
}
