//! Tests that start services on loopback, without root: Debian's
//! `docker-registry`, one per test (`registry.rs`: HTTP or HTTPS with a
//! throw-away CA, with or without basic auth), and one PostgreSQL server
//! per test process (`postgres.rs`, through `scripts/postgres`). A missing
//! service fails the test, naming the package to install.
//!
//! `cargo test --workspace --test integration services::`

pub(crate) mod oci;
mod privacy;
pub(crate) mod queries;
pub(crate) mod signing;
