//! sandlet's registry path: how modules reach a station and which may run.
//!
//! Layers, bottom up (no module imports one above it):
//!
//! - [`allow_list`]: the station's allow-list of modules (by repository and
//!   digest), checked before anything is downloaded;
//! - [`store`]: the content-addressed module store (verified, atomic,
//!   bounded with LRU eviction, one fetch per digest);
//! - [`oci`]: pulling modules from OCI registries into the store (verified),
//!   pushing them, registry credentials;
//! - [`signatures`]: cosign signature artifacts beside modules, written and
//!   checked (format from `sandlet-trust`);
//! - [`results`]: sealed results too large for a termination message,
//!   stored as artifacts beside their module;
//! - [`pull`]: `imagePullPolicy`, the reference index and pull back-off.
//!
//! It knows nothing of wasmtime (the engine precompiles what the store
//! holds) or of Kubernetes. It must never hand out bytes whose digest was
//! not checked.

pub mod allow_list;
pub mod oci;
pub mod pull;
pub mod results;
pub mod signatures;
pub mod store;

pub use sandlet_core::Digest;
