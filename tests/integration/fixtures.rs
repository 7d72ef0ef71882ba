//! Shared fixtures: the guests built from source, the `sandlet` binary, and
//! generated datasets.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The repository root.
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Where guests are built: `SANDLET_WASM_TARGET_DIR` (set by `scripts/test`
/// to a cache outside the clone) or `target/wasm` in the repository.
pub fn wasm_target_dir() -> PathBuf {
    std::env::var_os("SANDLET_WASM_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target").join("wasm"))
}

/// Paths of every guest module the tests run.
pub struct Guests {
    pub hello: PathBuf,
    pub hello_p1: PathBuf,
    pub column_stats: PathBuf,
    pub federated_mean: PathBuf,
    /// The federated mean as a vantage6 algorithm (`algorithms/vantage6-mean`).
    pub vantage6_mean: PathBuf,
    pub escape: PathBuf,
    pub unknown_world: PathBuf,
    pub imports_unknown: PathBuf,
}

fn cargo_build(package: &str, target: &str) -> PathBuf {
    cargo_build_in(package, target, &wasm_target_dir(), None)
}

/// `cargo build --release --target TARGET` of the package at `package`
/// (outside the workspace) into `target_dir`, with `rustflags` for the
/// target only; the directory the artifacts are in.
fn cargo_build_in(
    package: &str,
    target: &str,
    target_dir: &Path,
    rustflags: Option<&str>,
) -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .args([
            "build",
            "--release",
            "--quiet",
            "--target",
            target,
            "--manifest-path",
        ])
        .arg(repo_root().join(package).join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", target_dir)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    if let Some(flags) = rustflags {
        let variable = format!(
            "CARGO_TARGET_{}_RUSTFLAGS",
            target.to_uppercase().replace('-', "_")
        );
        command.env(variable, flags);
    }
    let status = command
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo to build {package}: {e}"));
    assert!(
        status.success(),
        "building {package} for {target} failed (cargo's output is above; a missing \
         target is installed by `rustup target add {target}`)"
    );
    target_dir.join(target).join("release")
}

/// Builds every guest once per test process (later callers wait for the
/// first).
pub fn guests() -> &'static Guests {
    static GUESTS: OnceLock<Guests> = OnceLock::new();
    GUESTS.get_or_init(|| {
        let p2 = "wasm32-wasip2";
        let hello = cargo_build("algorithms/hello", p2).join("hello.wasm");
        let hello_p1 = cargo_build("algorithms/hello", "wasm32-wasip1").join("hello.wasm");
        let column_stats = cargo_build("algorithms/column-stats", p2).join("column_stats.wasm");
        let federated_mean =
            cargo_build("algorithms/federated-mean", p2).join("federated_mean.wasm");
        let vantage6_mean = cargo_build("algorithms/vantage6-mean", p2).join("vantage6_mean.wasm");
        let guests_dir = cargo_build("tests/guests", p2);
        let guests = Guests {
            hello,
            hello_p1,
            column_stats,
            federated_mean,
            vantage6_mean,
            escape: guests_dir.join("escape.wasm"),
            unknown_world: guests_dir.join("unknown_world.wasm"),
            imports_unknown: guests_dir.join("imports_unknown.wasm"),
        };
        for path in [
            &guests.hello,
            &guests.hello_p1,
            &guests.column_stats,
            &guests.federated_mean,
            &guests.vantage6_mean,
            &guests.escape,
            &guests.unknown_world,
            &guests.imports_unknown,
        ] {
            assert!(path.is_file(), "{} was not built", path.display());
        }
        guests
    })
}

/// The federated mean's central step built natively and statically
/// (`algorithms/federated-mean-combine`), the container workers' algorithm
/// image; once per test process.
pub fn combine_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let target_dir = std::env::var_os("SANDLET_NATIVE_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo_root().join("target").join("native"));
        // Static: the image holds nothing but this file.
        let binary = cargo_build_in(
            "algorithms/federated-mean-combine",
            "x86_64-unknown-linux-gnu",
            &target_dir,
            Some("-C target-feature=+crt-static"),
        )
        .join("federated-mean-combine");
        assert!(binary.is_file(), "{} was not built", binary.display());
        binary
    })
}

/// The `sandlet` binary under test, with an empty environment so that
/// nothing of the test's own environment leaks in by accident, but for
/// `SANDLET_STATE_DIR`: a state directory under the target dir that every
/// test shares (where `run` and `query` keep their audit log unless a test
/// passes `--state-dir`; many processes append to it at once, as on a
/// station).
pub fn sandlet() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sandlet"));
    command.env_clear();
    command.env(
        "SANDLET_STATE_DIR",
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("sandlet-state"),
    );
    command
}

/// The Debian package of a command the tests call, for the message that
/// names what to install when it is missing.
fn debian_package(program: &str) -> Option<&'static str> {
    Some(match program {
        "openssl" => "openssl",
        "age" | "age-keygen" => "age",
        "curl" => "curl",
        "htpasswd" => "apache2-utils",
        "docker-registry" => "docker-registry",
        "mount" | "umount" | "setpriv" => "util-linux",
        "clang-19" => "clang-19",
        _ => return None,
    })
}

/// Fails the test for `command`, which could not be started: a program
/// that is not installed is named, with the Debian package that has it.
#[track_caller]
pub fn cannot_run(command: &Command, error: std::io::Error) -> ! {
    let program = command.get_program().to_string_lossy();
    if error.kind() == std::io::ErrorKind::NotFound {
        match debian_package(&program) {
            Some(package) => panic!(
                "{program} not found: apt-get install {package} \
                 (`source scripts/lib.sh; ensure_debian_packages` installs every package the \
                 tests use)"
            ),
            None => panic!("{program} not found ({error}): {command:?}"),
        }
    }
    panic!("cannot run {command:?}: {error}")
}

/// `command.output()`; a program that cannot be started fails the test,
/// naming it.
#[track_caller]
pub fn output_of(command: &mut Command) -> Output {
    match command.output() {
        Ok(output) => output,
        Err(error) => cannot_run(command, error),
    }
}

/// Runs `command` with `input` on its stdin and its stdout and stderr
/// captured.
pub fn output_with_stdin(command: &mut Command, input: &[u8]) -> Output {
    use std::io::Write as _;
    use std::process::Stdio;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| cannot_run(command, e));
    // A command that exits without reading its input is not an error here.
    let _ = child.stdin.take().unwrap().write_all(input);
    child.wait_with_output().unwrap()
}

/// What one `sandlet` invocation did.
#[derive(Debug)]
pub struct Ran {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Ran {
    fn from(output: Output) -> Self {
        Ran {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl Ran {
    /// Asserts sandlet's own failure form: exit 2 and exactly one line on
    /// stderr that starts with `sandlet:` and contains `needle`.
    #[track_caller]
    pub fn assert_sandlet_error(&self, needle: &str) {
        assert_eq!(self.code, Some(2), "{self:#?}");
        let lines: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| l.starts_with("sandlet:"))
            .collect();
        assert_eq!(lines.len(), 1, "expected one sandlet: line; {self:#?}");
        assert!(
            lines[0].contains(needle),
            "expected {needle:?} in {:?}",
            lines[0]
        );
        assert!(!self.stderr.contains("panicked"), "{self:#?}");
    }
}

/// Runs `sandlet` with `args`.
pub fn run_sandlet<I, S>(args: I) -> Ran
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    sandlet()
        .args(args)
        .output()
        .expect("running sandlet")
        .into()
}

/// A small deterministic generator, so datasets are the same on every run
/// without a dependency.
pub struct Lcg(u64);

impl Lcg {
    pub fn new(seed: u64) -> Self {
        Lcg(seed)
    }

    /// A number in `0..1`.
    pub fn next_f64(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A generated patients dataset.
pub struct Patients {
    pub ages: Vec<i64>,
    pub sexes: Vec<&'static str>,
    pub bmis: Vec<f64>,
}

/// Writes `rows` patients (id, age, sex, bmi, ssn) to `dir/name.csv`.
pub fn write_patients(dir: &Path, name: &str, rows: usize, seed: u64) -> Patients {
    use std::fmt::Write;
    let mut rng = Lcg::new(seed);
    let mut text = String::from("id,age,sex,bmi,ssn\n");
    let mut ages = Vec::with_capacity(rows);
    let mut bmis = Vec::with_capacity(rows);
    let mut sexes = Vec::with_capacity(rows);
    for id in 0..rows {
        let age = 18 + (rng.next_f64() * 70.0) as i64;
        let sex = if rng.next_f64() < 0.5 { "f" } else { "m" };
        // Two decimals, so the CSV text is exactly the value we sum.
        let bmi = (1600.0 + rng.next_f64() * 2000.0).round() / 100.0;
        let ssn = 100_000_000 + (rng.next_f64() * 899_999_999.0) as u64;
        writeln!(text, "{id},{age},{sex},{bmi:.2},{ssn}").unwrap();
        ages.push(age);
        sexes.push(sex);
        bmis.push(bmi);
    }
    std::fs::write(dir.join(format!("{name}.csv")), text).unwrap();
    Patients { ages, sexes, bmis }
}

/// Count, mean and sample variance computed directly.
pub fn stats(values: &[f64]) -> (usize, f64, f64) {
    let n = values.len();
    let mean = values.iter().sum::<f64>() / n as f64;
    let variance = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n as f64 - 1.0);
    (n, mean, variance)
}

#[track_caller]
pub fn assert_close(actual: f64, expected: f64) {
    let tolerance = 1e-9 * expected.abs().max(1.0);
    assert!(
        (actual - expected).abs() <= tolerance,
        "{actual} != {expected}"
    );
}

/// Runs `command`, which must succeed; its stdout. A failure panics with
/// the command and its stderr.
pub fn run_ok(command: &mut Command) -> String {
    let output = output_of(command);
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A harness started by `scripts/<script> up DIR` in a fresh directory,
/// stopped (and its directory removed) by the script's watchdog when this
/// process ends, however it ends.
pub struct Harness {
    pub dir: PathBuf,
    /// `DIR/env`: the shell exports the script wrote.
    env: String,
}

impl Harness {
    pub fn up(script: &str) -> Harness {
        let dir = tempfile::Builder::new()
            .prefix(&format!("sandlet-{script}-"))
            .tempdir()
            .unwrap()
            .keep();
        let owner = format!("SANDLET_{}", script.to_uppercase());
        let status = Command::new(repo_root().join("scripts").join(script))
            .arg("up")
            .arg(&dir)
            .env(format!("{owner}_OWNER"), std::process::id().to_string())
            .env(format!("{owner}_CLEANUP"), "1")
            .status()
            .unwrap_or_else(|e| panic!("cannot run scripts/{script}: {e}"));
        assert!(
            status.success(),
            "scripts/{script} up failed (its output, above, names the cause)"
        );
        let env = std::fs::read_to_string(dir.join("env")).unwrap();
        Harness { dir, env }
    }

    /// The value `DIR/env` exports for `key`.
    pub fn value(&self, key: &str) -> String {
        self.env
            .lines()
            .find_map(|l| l.strip_prefix(&format!("export {key}=\"")))
            .map(|v| v.trim_end_matches('"').to_owned())
            .unwrap_or_else(|| panic!("{key} in {}/env", self.dir.display()))
    }

    /// The directory the harness put first on `PATH` (its own binaries).
    pub fn bin(&self) -> PathBuf {
        PathBuf::from(self.value("PATH").split(':').next().unwrap_or_default())
    }
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// A tmpfs of `size` mounted for the life of the guard: only root can, so
/// the tests that use it are in the `e2e` tier, and without root they fail
/// here, saying so.
pub struct SmallDisk {
    pub dir: tempfile::TempDir,
}

impl SmallDisk {
    #[track_caller]
    pub fn mount(size: &str) -> SmallDisk {
        assert!(
            is_root(),
            "this test mounts a small tmpfs and needs root: run the e2e tier as root, as CI does"
        );
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .unwrap_or_else(|e| panic!("cannot run mount: {e}"));
        assert!(
            status.success(),
            "mount -t tmpfs on {} failed",
            dir.path().display()
        );
        SmallDisk { dir }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}
