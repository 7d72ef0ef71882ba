//! A real PostgreSQL server (Debian's package) for the data-query tests,
//! started once per test process by `scripts/postgres` and stopped by its
//! watchdog when this process ends.
//!
//! Each test makes its own database, loads tables from CSV as the
//! superuser over the unix socket, and reads them over TCP as a read-only
//! role with a password, as a station would.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::fixtures::Harness;

pub struct Postgres {
    pub dir: PathBuf,
    pub port: u16,
    bin: PathBuf,
}

/// The role stations read as, and its password.
pub const READER: &str = "reader";
pub const READER_PASSWORD: &str = "reader-secret";

/// Fails the test unless PostgreSQL's server is installed (Debian's
/// package, under `/usr/lib/postgresql/VERSION/bin`, off PATH). A test
/// installs nothing: without this check `scripts/postgres` would try
/// apt-get, through sudo where the test is not root.
#[track_caller]
fn require_server() {
    let installed = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .any(|version| version.path().join("bin/postgres").is_file());
    assert!(
        installed,
        "PostgreSQL not found (no /usr/lib/postgresql/*/bin/postgres): apt-get install postgresql \
         (`source scripts/lib.sh; ensure_debian_packages` installs every package the tests use)"
    );
}

/// The server of this test process, started on first use.
pub fn postgres() -> &'static Postgres {
    static SERVER: OnceLock<Postgres> = OnceLock::new();
    SERVER.get_or_init(|| {
        require_server();
        let harness = Harness::up("postgres");
        let port = harness.value("PGPORT").parse().unwrap();
        let bin = harness.bin();
        let dir = harness.dir;
        let server = Postgres { dir, port, bin };
        server.psql(
            "postgres",
            &format!("CREATE ROLE {READER} LOGIN PASSWORD '{READER_PASSWORD}'"),
        );
        server
    })
}

impl Postgres {
    /// A server of the caller's own (one the caller may stop), stopped
    /// when this process ends.
    #[allow(dead_code)]
    pub fn private() -> Postgres {
        require_server();
        let harness = Harness::up("postgres");
        let port = harness.value("PGPORT").parse().unwrap();
        let bin = harness.bin();
        let server = Postgres {
            dir: harness.dir,
            port,
            bin,
        };
        server.psql(
            "postgres",
            &format!("CREATE ROLE {READER} LOGIN PASSWORD '{READER_PASSWORD}'"),
        );
        server
    }

    /// `scripts/postgres down` (PostgreSQL's fast shutdown: sessions end).
    #[allow(dead_code)]
    pub fn stop(&self) {
        self.script("down");
    }

    /// `scripts/postgres start`: the same server again.
    #[allow(dead_code)]
    pub fn start_again(&self) {
        self.script("start");
    }

    fn script(&self, action: &str) {
        crate::fixtures::run_ok(
            Command::new(crate::fixtures::repo_root().join("scripts/postgres"))
                .arg(action)
                .arg(&self.dir),
        );
    }

    /// Runs SQL as the superuser in `database`; panics with psql's stderr.
    pub fn psql(&self, database: &str, sql: &str) -> String {
        let output = Command::new(self.bin.join("psql"))
            .args(["-v", "ON_ERROR_STOP=1", "-X", "-q", "-tA"])
            .arg("-h")
            .arg(&self.dir)
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                database,
            ])
            .args(["-c", sql])
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.bin.join("psql").display()));
        assert!(
            output.status.success(),
            "psql {sql:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// Makes a fresh database that the reader may connect to.
    pub fn create_database(&self, name: &str) {
        self.psql("postgres", &format!("DROP DATABASE IF EXISTS {name}"));
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        self.psql(
            "postgres",
            &format!("GRANT CONNECT ON DATABASE {name} TO {READER}"),
        );
    }

    /// Creates `table` with `columns` (SQL column definitions) in
    /// `database`, loads `csv` (with a header line) into it, and lets the
    /// reader select from it when `readable`.
    pub fn load_csv(&self, database: &str, table: &str, columns: &str, csv: &Path, readable: bool) {
        self.psql(database, &format!("CREATE TABLE {table} ({columns})"));
        self.psql(
            database,
            &format!(
                "\\copy {table} FROM '{}' WITH (FORMAT csv, HEADER true)",
                csv.display()
            ),
        );
        if readable {
            self.psql(database, &format!("GRANT SELECT ON {table} TO {READER}"));
        }
    }

    /// The URL a station's config names for `database`.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://{READER}:{READER_PASSWORD}@127.0.0.1:{}/{database}",
            self.port
        )
    }
}
