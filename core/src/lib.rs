//! The vocabulary sandlet's crates share, with no heavy dependency (as
//! `kube-core` is to kube-rs), and the one atomic file writer:
//!
//! - [`data`]: the guest's data interface as the host sees it, and the
//!   [`data::DataAccess`] trait that the wasmtime engine serves and the data
//!   engine implements;
//! - [`digest`]: content digests (`sha256:...`) that name modules in the
//!   store, the precompile cache, allow-lists and the audit log;
//! - [`quantity`]: sizes and durations as users write them;
//! - [`state_file`]: whole-or-nothing writes of every file sandlet keeps
//!   (temporary file, mode, sync, rename), the crate's only IO.
//!
//! Nothing here runs a guest, reads a dataset or talks to a registry.

pub mod data;
pub mod digest;
pub mod quantity;
pub mod state_file;

pub use digest::{Digest, DigestError};
