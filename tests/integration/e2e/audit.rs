//! The audit log on a full disk: a query whose record cannot be written is
//! refused, and what was written stays intact and verifies. Mounts a small
//! tmpfs, so it needs root.

use crate::fixtures::SmallDisk;
use crate::local::audit::{query, station, verified_count};

#[test]
fn a_full_disk_refuses_queries_and_loses_nothing_written() {
    let dir = tempfile::tempdir().unwrap();
    let config = station(dir.path());
    let disk = SmallDisk::mount("256k");
    let state = disk.dir.path().join("state");
    let sql = "SELECT COUNT(*) FROM patients";
    for _ in 0..3 {
        assert_eq!(query(&config, &state, sql).code, Some(0));
    }
    // Fill the disk.
    let filler = disk.dir.path().join("filler");
    let mut file = std::fs::File::create(&filler).unwrap();
    let chunk = vec![0u8; 4096];
    while std::io::Write::write_all(&mut file, &chunk).is_ok() {}
    drop(file);
    // The log's last page may still hold a record or two; then a query is
    // refused.
    let log = state.join("audit/audit.log");
    let mut answered = 3;
    let (refused, before) = loop {
        let before = std::fs::read(&log).unwrap();
        let ran = query(&config, &state, sql);
        if ran.code != Some(0) {
            break (ran, before);
        }
        answered += 1;
        assert!(answered < 40, "queries are still answered on a full disk");
    };
    assert_eq!(refused.code, Some(1), "{refused:#?}");
    // One line, naming the cause.
    assert!(
        refused.stderr.starts_with("denied: audit: ")
            && refused.stderr.contains("No space left on device")
            && refused.stderr.lines().count() == 1,
        "{}",
        refused.stderr
    );
    assert_eq!(refused.stdout, "", "no answer without its record");
    // What was written is intact and still verifies.
    assert_eq!(std::fs::read(&log).unwrap(), before);
    assert_eq!(verified_count(&state), answered);
    // Space again: queries are answered and the chain goes on.
    std::fs::remove_file(&filler).unwrap();
    assert_eq!(query(&config, &state, sql).code, Some(0));
    assert_eq!(verified_count(&state), answered + 1);
}
