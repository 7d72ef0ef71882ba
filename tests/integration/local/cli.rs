//! `sandlet run` as a user meets it: WASI commands, exit codes, and bad
//! input answered with one clear line and exit status 2.

use crate::fixtures::{guests, repo_root, run_sandlet};

#[test]
fn hello_prints_exactly_the_args_and_env_it_was_given() {
    let hello = guests().hello.to_str().unwrap();
    let ran = run_sandlet([
        "run",
        "--env",
        "B=2",
        "--env",
        "A=1",
        hello,
        "--",
        "one",
        "two words",
    ]);
    assert_eq!(ran.code, Some(0), "{ran:#?}");
    assert_eq!(
        ran.stdout,
        "arg: one\narg: two words\nenv: A=1\nenv: B=2\nhello from wasm\n"
    );
}

#[test]
fn a_component_command_reports_its_exit_code() {
    let hello = guests().hello.to_str().unwrap();
    let ran = run_sandlet(["run", hello, "--", "--exit", "3"]);
    assert_eq!(ran.code, Some(3), "{ran:#?}");
    assert!(ran.stdout.ends_with("hello from wasm\n"));
    let ran = run_sandlet(["run", hello, "--", "--exit", "1"]);
    assert_eq!(ran.code, Some(1), "{ran:#?}");
}

#[test]
fn a_preview1_core_module_runs_with_its_exit_code() {
    let hello = guests().hello_p1.to_str().unwrap();
    let ran = run_sandlet(["run", "--env", "X=y", hello, "--", "p1", "--exit", "7"]);
    assert_eq!(ran.code, Some(7), "{ran:#?}");
    assert_eq!(ran.stdout, "arg: p1\nenv: X=y\nhello from wasm\n");
}

#[test]
fn unreadable_module_file() {
    run_sandlet(["run", "/nonexistent/module.wasm"])
        .assert_sandlet_error("cannot read module /nonexistent/module.wasm");
}

#[test]
fn a_file_that_is_not_wasm() {
    let readme = repo_root().join("Cargo.toml");
    run_sandlet(["run".as_ref(), readme.as_os_str()]).assert_sandlet_error("not WebAssembly");
}

#[test]
fn truncated_wasm_is_an_invalid_module() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(&guests().hello).unwrap();
    let truncated = dir.path().join("truncated.wasm");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    run_sandlet(["run".as_ref(), truncated.as_os_str()]).assert_sandlet_error("invalid module");
}

#[test]
fn a_component_of_an_unknown_world() {
    let module = guests().unknown_world.to_str().unwrap();
    let ran = run_sandlet(["run", module]);
    ran.assert_sandlet_error("unknown world");
    assert!(
        ran.stderr.contains("greet"),
        "the refusal lists what it does export: {ran:#?}"
    );
}

#[test]
fn a_component_importing_an_interface_sandlet_does_not_offer_is_refused_by_name() {
    let module = guests().imports_unknown.to_str().unwrap();
    let ran = run_sandlet(["run", module]);
    ran.assert_sandlet_error("example:net/fetch@0.1.0, which sandlet does not offer");
    // Refused before anything ran: nothing of the guest's own output.
    assert_eq!(ran.stdout, "", "{ran:#?}");
    // WASI's interfaces, which the same component also imports, are not
    // among those named.
    assert!(!ran.stderr.contains("wasi:cli"), "{}", ran.stderr);
}

#[test]
fn a_dir_whose_host_path_does_not_exist() {
    let hello = guests().hello.to_str().unwrap();
    run_sandlet(["run", "--dir", "/nonexistent/sandlet:/data", hello])
        .assert_sandlet_error("directory /nonexistent/sandlet does not exist");
}

#[test]
fn malformed_input_json() {
    let module = guests().column_stats.to_str().unwrap();
    run_sandlet(["run", "--input", "{\"dataset\": ", module])
        .assert_sandlet_error("invalid --input: not JSON");
}

#[test]
fn zero_memory() {
    let hello = guests().hello.to_str().unwrap();
    run_sandlet(["run", "--memory", "0", hello])
        .assert_sandlet_error("--memory: memory limit must be greater than zero");
}

#[test]
fn malformed_limits_and_env() {
    let hello = guests().hello.to_str().unwrap();
    run_sandlet(["run", "--memory", "lots", hello]).assert_sandlet_error("invalid size \"lots\"");
    run_sandlet(["run", "--timeout", "soon", hello])
        .assert_sandlet_error("invalid duration \"soon\"");
    run_sandlet(["run", "--env", "NOEQUALS", hello])
        .assert_sandlet_error("invalid --env \"NOEQUALS\"");
    run_sandlet(["run", "--grant", "patients", hello])
        .assert_sandlet_error("--grant needs --config");
}

#[test]
fn a_memory_limit_smaller_than_the_module_needs_fails_at_start() {
    let hello = guests().hello.to_str().unwrap();
    run_sandlet(["run", "--memory", "64Ki", hello])
        .assert_sandlet_error("memory limit of 64Ki exceeded");
}

/// Files under `dir` (recursively) whose name starts with `prefix`.
fn files_named(dir: &std::path::Path, prefix: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_named(&path, prefix));
        } else if entry.file_name().to_string_lossy().starts_with(prefix) {
            found.push(path);
        }
    }
    found
}

#[test]
fn local_module_files_go_through_the_precompile_cache_by_digest() {
    let hex = |bytes: &[u8]| sandlet_runtime::Digest::of(bytes).hex();
    let state = tempfile::tempdir().unwrap();
    let state_dir = state.path().to_str().unwrap();
    let hello = guests().hello.to_str().unwrap();
    let digest = hex(&std::fs::read(hello).unwrap());
    let run = || run_sandlet(["run", "--state-dir", state_dir, hello, "--", "cached"]);

    let first = run();
    assert_eq!(first.code, Some(0), "{first:#?}");
    let artifacts = files_named(&state.path().join("compiled"), &digest);
    assert_eq!(
        artifacts.len(),
        1,
        "one artifact named by the file's digest"
    );
    // The second run loads it and answers the same.
    let second = run();
    assert_eq!((second.code, &second.stdout), (Some(0), &first.stdout));

    // A damaged artifact is not run: it is noticed, replaced, and the run
    // goes on from the module itself.
    std::fs::write(&artifacts[0], b"not machine code").unwrap();
    let third = run();
    assert_eq!((third.code, &third.stdout), (Some(0), &first.stdout));
    let artifacts = files_named(&state.path().join("compiled"), &digest);
    assert_eq!(artifacts.len(), 1);
    assert_ne!(std::fs::read(&artifacts[0]).unwrap(), b"not machine code");

    // A state directory that cannot hold a cache: the file is compiled as
    // before, with a warning.
    let blocked = state.path().join("a-file");
    std::fs::write(&blocked, "").unwrap();
    let ran = run_sandlet(["run", "--state-dir", blocked.to_str().unwrap(), hello]);
    assert_eq!(ran.code, Some(0), "{ran:#?}");
    assert!(
        ran.stderr.contains("without the precompile cache"),
        "{}",
        ran.stderr
    );

    // A changed file is another digest: compiled afresh, never the old
    // artifact.
    let copy = state.path().join("changed.wasm");
    let mut bytes = std::fs::read(hello).unwrap();
    // A custom section at the end changes the bytes, not the behaviour.
    bytes.extend_from_slice(&[0, 4, 3, b'a', b'b', b'c']);
    std::fs::write(&copy, &bytes).unwrap();
    let ran = run_sandlet(["run", "--state-dir", state_dir, copy.to_str().unwrap()]);
    assert_eq!(ran.code, Some(0), "{ran:#?}");
    let changed = hex(&bytes);
    assert_eq!(
        files_named(&state.path().join("compiled"), &changed).len(),
        1
    );
}
