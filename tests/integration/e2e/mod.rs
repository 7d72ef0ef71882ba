//! Tests that need root and/or a real control plane: the `kube_` tests
//! (and the language examples as pods) on the control plane of the test
//! process (`cluster.rs`, `scripts/cluster up`); the `kube_fault_` tests on
//! one of their own; the `mixed_` tests with a container worker (root);
//! the unmodified vantage6 platform (`scripts/vantage6`, root); and the
//! full-disk tests, which mount a small tmpfs (root). Run them as root, as
//! CI does; without root those that need it fail, naming it.
//!
//! `cargo test --workspace --test integration e2e::`

mod audit;
mod bootstrap;
mod faults;
mod hostile_api;
pub(crate) mod kube;
mod languages;
pub(crate) mod mixed;
mod oci;
mod sealing;
mod vantage6;
