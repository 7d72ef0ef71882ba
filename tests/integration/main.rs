//! sandlet's integration tests, in one binary so the machine links once.
//!
//! Every guest is built from source (`algorithms/`, `tests/guests/`) by the
//! fixtures before use. The OCI tests start Debian's `docker-registry` on
//! loopback (`registry.rs`). The `kube_` tests run against a real control
//! plane started once per process by `scripts/cluster` (`cluster.rs`).

mod algorithms;
mod audit;
mod bootstrap;
mod cli;
mod cluster;
mod develop;
mod docs;
mod faults;
mod fixtures;
mod fuzz;
mod hostile_api;
mod kube;
mod languages;
mod mixed;
mod oci;
mod oracle;
mod postgres;
mod privacy;
mod queries;
mod registry;
mod runtime;
mod sandbox;
mod sealing;
mod signing;
mod v6platform;
mod vantage6;
