//! The vocabulary sandlet's crates share, with no IO and no heavy
//! dependency (as `kube-core` is to kube-rs):
//!
//! - [`data`]: the guest's data interface as the host sees it, and the
//!   [`data::DataAccess`] trait that the wasmtime engine serves and the data
//!   engine implements;
//! - [`digest`]: content digests (`sha256:...`) that name modules in the
//!   store, the precompile cache, allow-lists and the audit log;
//! - [`quantity`]: sizes and durations as users write them;
//! - [`state_file`]: whole-or-nothing writes of the files under a state
//!   directory.
//!
//! Nothing here runs a guest, reads a dataset or talks to a registry.

pub mod data;
pub mod digest;
pub mod quantity;
pub mod state_file;

pub use digest::{Digest, DigestError};
