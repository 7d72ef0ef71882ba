//! sandlet's sandbox runtime: runs WebAssembly modules from validated run
//! plans, with no ambient authority.
//!
//! Layers, bottom up (no module imports one above it):
//!
//! - [`digest`]: content digests (`sha256:...`) that name modules.
//! - [`limits`]: the numbers a run may use, and the limiter that enforces
//!   memory and table growth.
//! - [`output`]: where guest stdout and stderr go, and the byte budget.
//! - [`admission`]: the station's allow-list of modules.
//! - [`data`]: datasets, their policies, and the query capability
//!   ([`data::DataAccess`]).
//! - [`store`]: the content-addressed module store (verified, atomic,
//!   bounded with LRU eviction, one fetch per digest).
//! - [`oci`]: pulling modules from OCI registries into the store (verified),
//!   pushing them, registry credentials.
//! - [`pull`]: `imagePullPolicy`, the reference index and pull back-off.
//! - [`plan`]: the validated [`RunPlan`], the only input to a sandbox.
//! - `sandbox`: the one place where a guest is granted capabilities.
//! - `algorithm`: host bindings of the `sandlet:algorithm` WIT world.
//! - [`engine`]: the process-wide wasmtime engine, module preparation and
//!   [`SandboxEngine::run`].
//! - [`precompiled`]: native artifacts keyed by module digest and engine
//!   configuration, checked before use.
//!
//! This crate knows nothing of Kubernetes; the kubelet turns pods into run
//! plans and calls it.

pub mod admission;
mod algorithm;
pub mod data;
pub mod digest;
pub mod engine;
pub mod limits;
pub mod oci;
pub mod output;
pub mod plan;
pub mod precompiled;
pub mod pull;
mod sandbox;
pub mod store;

pub use digest::Digest;
pub use engine::{
    Compiled, EngineOptions, ModuleError, ModuleKind, PreparedModule, RunError, RunOutcome,
    SandboxEngine,
};
pub use limits::{LimitExceeded, Limits, Usage};
pub use output::{MemorySink, OutputSink, OutputSinks};
pub use plan::{DirAccess, PlanError, Preopen, RunPlan};
pub use sandbox::SandboxError;
