//! Guests that try to escape or exhaust the sandbox, each run through the
//! `sandlet run` binary exactly as a user would, and each contained.

use std::io::Read;
use std::net::TcpListener;

use crate::fixtures::{Ran, guests, run_sandlet, sandlet};

fn escape(extra: &[&str], attempt: &[&str]) -> Ran {
    let mut args = vec!["run"];
    args.extend_from_slice(extra);
    args.push(guests().escape.to_str().unwrap());
    args.push("--");
    args.extend_from_slice(attempt);
    run_sandlet(args)
}

#[track_caller]
fn assert_contained(ran: &Ran) {
    assert_eq!(ran.code, Some(0), "{ran:#?}");
    assert!(ran.stdout.starts_with("contained: "), "{ran:#?}");
    assert!(!ran.stdout.contains("ESCAPED"), "{ran:#?}");
}

/// A directory with `existing.txt` inside and `secret.txt` beside it (one
/// level up), so escapes by `..` or symlink have a real target.
struct Jail {
    _root: tempfile::TempDir,
    dir: std::path::PathBuf,
    secret: std::path::PathBuf,
}

fn jail() -> Jail {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("jail");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("existing.txt"), b"original").unwrap();
    let secret = root.path().join("secret.txt");
    std::fs::write(&secret, b"patient records").unwrap();
    Jail {
        _root: root,
        dir,
        secret,
    }
}

#[test]
fn absolute_path_without_preopen_is_not_reachable() {
    assert_contained(&escape(&[], &["read", "/etc/passwd"]));
}

#[test]
fn absolute_path_outside_a_preopen_is_not_reachable() {
    let jail = jail();
    let dir = format!("{}:/data", jail.dir.display());
    assert_contained(&escape(&["--dir", &dir], &["read", "/etc/passwd"]));
    let secret = jail.secret.to_str().unwrap();
    assert_contained(&escape(&["--dir", &dir], &["read", secret]));
}

#[test]
fn dotdot_does_not_climb_out_of_a_preopen() {
    let jail = jail();
    let dir = format!("{}:/data", jail.dir.display());
    assert_contained(&escape(&["--dir", &dir], &["read", "/data/../secret.txt"]));
    assert_contained(&escape(
        &["--dir", &dir],
        &["read", "/data/sub/../../secret.txt"],
    ));
    // The control case: the same guest can read inside the preopen.
    let ran = escape(&["--dir", &dir], &["read", "/data/existing.txt"]);
    assert_eq!(
        ran.code,
        Some(10),
        "reading inside the preopen must work: {ran:#?}"
    );
}

#[test]
fn symlinks_inside_a_preopen_do_not_lead_outside() {
    let jail = jail();
    std::os::unix::fs::symlink(&jail.secret, jail.dir.join("absolute-link")).unwrap();
    std::os::unix::fs::symlink("../secret.txt", jail.dir.join("relative-link")).unwrap();
    let dir = format!("{}:/data:rw", jail.dir.display());
    assert_contained(&escape(&["--dir", &dir], &["read", "/data/absolute-link"]));
    assert_contained(&escape(&["--dir", &dir], &["read", "/data/relative-link"]));
}

#[test]
fn read_only_preopen_refuses_every_write() {
    let jail = jail();
    let dir = format!("{}:/data", jail.dir.display());
    assert_contained(&escape(&["--dir", &dir], &["write", "/data"]));
    let explicit = format!("{}:/data:ro", jail.dir.display());
    assert_contained(&escape(&["--dir", &explicit], &["write", "/data"]));
    assert_eq!(
        std::fs::read(jail.dir.join("existing.txt")).unwrap(),
        b"original"
    );
    let entries: Vec<_> = std::fs::read_dir(&jail.dir).unwrap().collect();
    assert_eq!(
        entries.len(),
        1,
        "nothing may be created in a read-only preopen"
    );
}

#[test]
fn read_write_preopen_allows_writes() {
    let jail = jail();
    let dir = format!("{}:/out:rw", jail.dir.display());
    let ran = escape(&["--dir", &dir], &["write-rw", "/out"]);
    assert_eq!(ran.code, Some(0), "{ran:#?}");
    assert_eq!(std::fs::read(jail.dir.join("written.txt")).unwrap(), b"ok");
}

#[test]
fn host_environment_is_not_inherited() {
    let ran: Ran = sandlet()
        .env("SANDLET_TEST_SECRET", "hunter2")
        .args(["run", "--env", "GIVEN=yes"])
        .arg(&guests().escape)
        .args(["--", "env", "SANDLET_TEST_SECRET"])
        .output()
        .unwrap()
        .into();
    assert_contained(&ran);
    assert_eq!(ran.stdout.trim(), "contained: variables: [GIVEN=yes]");
}

#[test]
fn tcp_connections_and_name_lookups_are_refused() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    assert_contained(&escape(&[], &["tcp", &addr]));
    // Nothing reached the listener.
    match listener.accept() {
        Ok((mut stream, peer)) => {
            let mut buf = Vec::new();
            let _ = stream.read_to_end(&mut buf);
            panic!("the guest connected from {peer}");
        }
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock),
    }
}

#[test]
fn memory_past_the_limit_ends_the_run_naming_the_limit() {
    let ran = escape(&["--memory", "32Mi"], &["memory"]);
    ran.assert_sandlet_error("memory limit of 32Mi exceeded");
}

#[test]
fn an_endless_loop_ends_at_the_timeout() {
    let ran = escape(&["--timeout", "1s"], &["loop"]);
    ran.assert_sandlet_error("timeout of 1s exceeded");
}

#[test]
fn a_guest_waiting_in_a_host_call_ends_at_the_timeout() {
    // The guest asks to sleep for an hour; epochs cannot interrupt it.
    let ran = escape(&["--timeout", "500ms"], &["sleep"]);
    ran.assert_sandlet_error("timeout of 500ms exceeded");
}

#[test]
fn unbounded_recursion_on_the_wasm_stack_is_a_stack_overflow() {
    let ran = escape(&[], &["recurse-native"]);
    ran.assert_sandlet_error("trap: stack overflow: the guest used more than 512Ki of wasm stack");
    // The control case: a shallow recursion returns normally.
    let ran = escape(&[], &["recurse-native", "100"]);
    assert_eq!(ran.code, Some(0), "{ran:#?}");
}

#[test]
fn unbounded_recursion_on_the_shadow_stack_traps() {
    // Rust keeps address-taken locals on a stack in linear memory; running
    // off its end is an out-of-bounds access, not a wasm stack overflow.
    let ran = escape(&[], &["recurse"]);
    assert_eq!(ran.code, Some(2), "{ran:#?}");
    let line = ran
        .stderr
        .lines()
        .find(|l| l.starts_with("sandlet:"))
        .unwrap_or_default();
    assert!(
        line.contains("stack overflow") || line.contains("out-of-bounds memory access"),
        "{ran:#?}"
    );
}

#[test]
fn printing_without_end_stops_at_the_default_output_limit() {
    let ran = escape(&[], &["print"]);
    ran.assert_sandlet_error("output limit of 16Mi exceeded");
    assert_eq!(
        ran.stdout.len(),
        16 << 20,
        "exactly the limit reaches the terminal"
    );
}

#[test]
fn output_limit_is_configurable() {
    let ran = escape(&["--output-limit", "1Mi"], &["print"]);
    ran.assert_sandlet_error("output limit of 1Mi exceeded");
    assert_eq!(ran.stdout.len(), 1 << 20);
}
