//! The fuzz targets (`fuzzing/`) on their checked-in corpus
//! (`fuzz/corpus/TARGET`), the inputs of crashes found before
//! (`fuzz/regressions/TARGET`), and a bounded number of mutants of them.
//!
//! `SANDLET_FUZZ_ITERATIONS` sets the mutants per target (default: a few
//! thousand, a module target fewer), `SANDLET_FUZZ_SEED` the seed (default:
//! one per day, printed). A crash fails the test with the input, which is
//! also written to `$TMPDIR/sandlet-fuzz-crashes/`; copied into
//! `fuzz/regressions/TARGET/` it is run on every test run from then on.

use std::path::Path;

use sandlet_fuzzing::runner::{read_corpus, run};

use crate::fixtures::repo_root;

fn iterations(default: usize) -> usize {
    std::env::var("SANDLET_FUZZ_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn seed() -> u64 {
    std::env::var("SANDLET_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs()
                / 86_400
        })
}

fn fuzz(name: &str, default_iterations: usize) {
    let target = sandlet_fuzzing::target(name).expect("a fuzz target");
    let root = repo_root();
    let mut corpus = read_corpus(&root.join("fuzz/corpus").join(name)).unwrap();
    assert!(!corpus.is_empty(), "fuzz/corpus/{name} is empty");
    let regressions = read_corpus(&root.join("fuzz/regressions").join(name)).unwrap();
    assert!(
        !regressions.is_empty(),
        "fuzz/regressions/{name} is empty: every target keeps at least one regression input"
    );
    corpus.extend(regressions.iter().cloned());
    let crashes = std::env::temp_dir().join("sandlet-fuzz-crashes");
    let stats = run(
        target,
        &corpus,
        iterations(default_iterations),
        seed(),
        Some(Path::new(&crashes)),
    )
    .unwrap_or_else(|crash| panic!("{crash}"));
    eprintln!(
        "fuzz {name}: seed {}, {} corpus + {} regression inputs, {} executions ({} distinct mutants) in {:.1?}, slowest {:.1?}",
        stats.seed,
        stats.corpus - regressions.len(),
        regressions.len(),
        stats.executions,
        stats.distinct,
        stats.elapsed,
        stats.slowest
    );
    assert!(stats.distinct * 2 > stats.executions - stats.corpus);
}

#[test]
fn fuzz_station_yaml() {
    fuzz("station_yaml", 20_000);
}

#[test]
fn fuzz_pod_admission() {
    fuzz("pod_admission", 10_000);
}

#[test]
fn fuzz_oci_manifest() {
    fuzz("oci_manifest", 20_000);
}

#[test]
fn fuzz_docker_config() {
    fuzz("docker_config", 20_000);
}

#[test]
fn fuzz_kubelet_path() {
    fuzz("kubelet_path", 50_000);
}

#[test]
fn fuzz_module() {
    fuzz("module", 2_000);
}
