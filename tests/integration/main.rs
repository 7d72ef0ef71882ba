//! sandlet's integration tests, in one binary so the machine links once.
//!
//! Every guest is built from source (`algorithms/`, `tests/guests/`) by the
//! fixtures before use. The OCI tests start Debian's `docker-registry` on
//! loopback (`registry.rs`); nothing here needs a cluster.

mod algorithms;
mod cli;
mod fixtures;
mod oci;
mod registry;
mod runtime;
mod sandbox;
