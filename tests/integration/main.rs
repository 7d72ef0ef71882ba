//! sandlet's integration tests, in one binary so the machine links once.
//!
//! Every guest is built from source (`algorithms/`, `tests/guests/`) by the
//! fixtures before use; nothing here needs a cluster.

mod algorithms;
mod cli;
mod fixtures;
mod runtime;
mod sandbox;
