//! The stable-Rust runner: every corpus input, then `iterations` mutants
//! of them, each through the target under `catch_unwind`. A panic is a
//! crash; the runner reports the input that caused it (and where it wrote
//! it), so it can become a regression input under `fuzz/regressions`.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::Target;
use crate::mutate::{Rng, mutant};

/// What a run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stats {
    /// The target's name.
    pub target: &'static str,
    /// The seed the mutants were drawn with; the same seed and corpus make
    /// the same mutants.
    pub seed: u64,
    /// Corpus inputs run as they are.
    pub corpus: usize,
    /// Inputs run in all: the corpus and the mutants.
    pub executions: usize,
    /// Distinct mutants (by content) among the executions.
    pub distinct: usize,
    /// Wall-clock time of the whole run.
    pub elapsed: Duration,
    /// The slowest single input.
    pub slowest: Duration,
}

/// An input that made the target panic.
#[derive(Debug)]
pub struct Crash {
    pub(crate) target: &'static str,
    pub(crate) seed: u64,
    pub(crate) message: String,
    pub(crate) input: Vec<u8>,
    /// Where the input was written, if it could be.
    pub saved: Option<PathBuf>,
}

impl std::fmt::Display for Crash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "fuzz target {} (seed {}) panicked: {}; input ({} bytes){}: {:?}",
            self.target,
            self.seed,
            self.message,
            self.input.len(),
            self.saved
                .as_ref()
                .map(|p| format!(" saved to {}", p.display()))
                .unwrap_or_default(),
            String::from_utf8_lossy(&self.input[..self.input.len().min(512)])
        )
    }
}

/// Reads every file of a corpus directory (sorted by name). A missing
/// directory is an error, never an empty corpus: a corpus or regression
/// folder that was moved or misspelt must fail the run, not pass it.
pub fn read_corpus(dir: &Path) -> std::io::Result<Vec<Vec<u8>>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    paths.retain(|p| p.is_file());
    paths.sort();
    paths.iter().map(std::fs::read).collect()
}

/// Runs `target` on `corpus` and `iterations` mutants; crashes are written
/// to `crashes` (a directory) when given.
pub fn run(
    target: &'static Target,
    corpus: &[Vec<u8>],
    iterations: usize,
    seed: u64,
    crashes: Option<&Path>,
) -> Result<Stats, Crash> {
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut seen = std::collections::HashSet::new();
    let mut rng = Rng::new(seed);
    let empty = Vec::new();
    let mut execute = |input: &[u8]| -> Result<(), Crash> {
        let one = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(|| (target.run)(input)));
        slowest = slowest.max(one.elapsed());
        outcome.map_err(|panic| {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "a panic".to_owned());
            let saved = crashes.and_then(|dir| {
                let digest = sandlet_core::Digest::of(input).to_string();
                let hex = digest.trim_start_matches("sha256:");
                let path = dir.join(format!("{}-crash-{}", target.name, &hex[..16]));
                std::fs::create_dir_all(dir)
                    .and_then(|()| std::fs::write(&path, input))
                    .ok()
                    .map(|()| path)
            });
            Crash {
                target: target.name,
                seed,
                message,
                input: input.to_vec(),
                saved,
            }
        })
    };
    for input in corpus {
        execute(input)?;
    }
    for _ in 0..iterations {
        let base = if corpus.is_empty() {
            &empty
        } else {
            &corpus[rng.below(corpus.len())]
        };
        let other = if corpus.is_empty() {
            &empty
        } else {
            &corpus[rng.below(corpus.len())]
        };
        let input = mutant(&mut rng, target.format, base, other, target.dictionary);
        seen.insert(sandlet_core::Digest::of(&input));
        execute(&input)?;
    }
    Ok(Stats {
        target: target.name,
        seed,
        corpus: corpus.len(),
        executions: corpus.len() + iterations,
        distinct: seen.len(),
        elapsed: started.elapsed(),
        slowest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Format;

    fn picky(data: &[u8]) {
        // Panics on one specific byte pair, as a parser bug would.
        assert!(!data.windows(2).any(|w| w == b"}{"), "found it");
    }

    static PICKY: Target = Target {
        name: "picky",
        run: picky,
        format: Format::Bytes,
        dictionary: &["}", "{"],
    };

    #[test]
    fn a_panic_is_reported_with_its_input_and_saved() {
        let dir = std::env::temp_dir().join(format!("sandlet-fuzz-{}", std::process::id()));
        let corpus = vec![b"{\"a\": 1}".to_vec()];
        let crash = run(&PICKY, &corpus, 10_000, 1, Some(&dir)).unwrap_err();
        assert!(crash.input.windows(2).any(|w| w == b"}{"));
        assert_eq!(crash.message, "found it");
        let saved = crash.saved.clone().unwrap();
        assert_eq!(std::fs::read(&saved).unwrap(), crash.input);
        assert!(crash.to_string().contains("picky"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_clean_target_runs_every_input() {
        static CLEAN: Target = Target {
            name: "clean",
            run: |_| {},
            format: Format::Json,
            dictionary: &[],
        };
        let corpus = vec![b"abc".to_vec(), b"def".to_vec()];
        let stats = run(&CLEAN, &corpus, 100, 3, None).unwrap();
        assert_eq!(stats.executions, 102);
        assert!(stats.distinct > 50, "{stats:?}");
    }

    #[test]
    fn a_missing_corpus_folder_is_an_error_naming_it() {
        let missing = std::env::temp_dir().join(format!(
            "sandlet-fuzz-missing-{}/regressions/station_yaml",
            std::process::id()
        ));
        let e = read_corpus(&missing).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
        assert!(e.to_string().contains("regressions/station_yaml"), "{e}");
    }
}
