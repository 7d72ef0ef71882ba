//! sandlet's integration tests, in one binary so the machine links once,
//! in three tiers by what a test needs, each a module of its own:
//!
//! - `local`: nothing but the Rust toolchain with the wasm targets, the
//!   guest toolchains (`scripts/toolchains`) and ordinary commands
//!   (`openssl`, `age`); no service, no root.
//! - `services`: services the tests start on loopback, without root:
//!   Debian's `docker-registry` (`registry.rs`) and PostgreSQL through
//!   `scripts/postgres` (`postgres.rs`).
//! - `e2e`: root (a tmpfs, container workers, the vantage6 platform)
//!   and/or a real control plane, started by `scripts/cluster`
//!   (`cluster.rs`).
//!
//! One tier runs by its path (`source scripts/lib.sh` first, to share the
//! build of `scripts/test`):
//!
//! ```sh
//! cargo test --workspace --test integration local::
//! cargo test --workspace --test integration services::
//! cargo test --workspace --test integration e2e::      # as root
//! ```
//!
//! A test whose prerequisite is missing fails, naming it; none is skipped.
//! Every guest is built from source (`algorithms/`, `tests/guests/`) by the
//! fixtures before use. The modules at this level hold no tests: the
//! helpers the tiers share, which `benches/` include by path.

mod cluster;
mod fixtures;
mod oracle;
mod postgres;
mod registry;
mod v6platform;

mod e2e;
mod local;
mod services;
