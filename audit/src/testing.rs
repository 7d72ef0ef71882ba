//! Fixtures shared by the unit tests: sample accesses, line editing and tmpfs mounts.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::record::{Access, Caller, Decision};

/// A typical access from a pod in `namespace`; refusals carry a rule and a reason.
pub(crate) fn access(namespace: Option<&str>, decision: Decision) -> Access {
    let answered = decision == Decision::Answered;
    Access {
        station: "station-a".into(),
        caller: Caller {
            via: "node".into(),
            namespace: namespace.map(Into::into),
            pod: Some("algo-1".into()),
            pod_uid: Some("5f0c2b9e-1d3a-4c8e-9b7a-2e6f1c0d4a11".into()),
            service_account: Some("default".into()),
            module_digest: Some(format!("sha256:{}", "ab".repeat(32))),
        },
        datasets: vec!["patients".into()],
        sql: "SELECT age_group, count(*) FROM patients GROUP BY age_group".into(),
        plan_fingerprint: Some("cd".repeat(32)),
        decision,
        rule: (!answered).then(|| "minGroupSize".into()),
        reason: (!answered).then(|| "a group has fewer than 10 rows".into()),
        rows: if answered { 42 } else { 0 },
        duration_ms: 12.5,
        privacy: None,
    }
}

/// A time written in RFC 3339.
pub(crate) fn at(text: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&chrono::Utc)
}

/// A log in `dir` whose files hold two typical records each before they
/// rotate.
pub(crate) fn two_records_per_file(dir: &Path) -> crate::AuditLog {
    let one = crate::record::encode_line(
        1,
        crate::GENESIS_HASH,
        chrono::Utc::now(),
        &access(None, Decision::Answered),
    )
    .0
    .len() as u64;
    crate::AuditLog::open(dir)
        .unwrap()
        .with_max_file_bytes(2 * one + one / 2)
}

/// The lines of a file, without their `\n`.
pub(crate) fn read_lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Writes `lines`, each ending in `\n`.
pub(crate) fn write_lines(path: &Path, lines: &[String]) {
    fs::write(
        path,
        lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )
    .unwrap();
}

/// The names in a directory, sorted.
pub(crate) fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// A tmpfs mounted on a fresh temporary directory, unmounted on drop.
pub(crate) struct Tmpfs {
    pub(crate) path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (as `mount` spells it: `64k`). Only root can: the tests that
    /// call this are named `needs_root_...`, and without root they fail here, never pass
    /// silently (`cargo test -- --skip needs_root_` leaves them out by name).
    pub(crate) fn mount(size: &str) -> Tmpfs {
        let root = fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
        assert!(
            root,
            "mounting a tmpfs needs root: run as root, or leave this test out with \
             `-- --skip needs_root_`"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(&path)
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mount -t tmpfs on {} failed",
            path.display()
        );
        Tmpfs { path, _dir: dir }
    }

    /// Makes the filesystem read-only.
    pub(crate) fn remount_read_only(&self) {
        let status = Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(&self.path)
            .status()
            .expect("run mount");
        assert!(status.success(), "remount read-only failed");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy, so that a test failing with files still open does not leave the mount behind.
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}
