//! Tests that need nothing but the Rust toolchain with the wasm targets,
//! the guest toolchains (`scripts/toolchains`, which `develop` and
//! `languages` install when missing) and ordinary commands (`openssl`,
//! `age`): no service, no control plane, no root.
//!
//! `cargo test --workspace --test integration local::`

mod algorithms;
pub(crate) mod audit;
mod cli;
mod develop;
mod docs;
mod fuzz;
pub(crate) mod languages;
pub(crate) mod oci;
mod oracle;
pub(crate) mod privacy;
pub(crate) mod queries;
mod runtime;
mod sandbox;
pub(crate) mod sealing;
