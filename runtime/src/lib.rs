//! sandlet's sandbox runtime: runs WebAssembly modules from validated run
//! plans, with no ambient authority.
//!
//! Layers, bottom up (no module imports one above it):
//!
//! - [`limits`]: the numbers a run may use, and the limiter that enforces
//!   memory and table growth.
//! - [`output`]: where guest stdout and stderr go, and the byte budget.
//! - [`plan`]: the validated [`RunPlan`], the only input to a sandbox.
//! - `sandbox`: the one place where a guest is granted capabilities.
//! - `algorithm`: host bindings of the `sandlet:algorithm` WIT world, which
//!   serve the run's [`DataAccess`](sandlet_core::data::DataAccess).
//! - [`engine`]: the process-wide wasmtime engine, module preparation and
//!   [`SandboxEngine::run`].
//! - [`precompiled`]: native artifacts keyed by module digest and engine
//!   configuration, checked before use.
//!
//! This crate knows nothing of Kubernetes, of registries (`sandlet-registry`
//! fetches and stores modules) or of datasets (`sandlet-data` implements
//! the data capability a plan carries); the kubelet composes them.

mod algorithm;
pub mod engine;
pub mod limits;
pub mod output;
pub mod plan;
pub mod precompiled;
mod sandbox;

pub use engine::{
    Compiled, EngineOptions, ModuleError, ModuleKind, PreparedModule, RunError, RunOutcome,
    SandboxEngine,
};
pub use limits::{LimitExceeded, Limits, Usage};
pub use output::{MemorySink, OutputSink, OutputSinks};
pub use plan::{DirAccess, PlanError, Preopen, RunPlan};
pub use sandbox::SandboxError;
pub use sandlet_core::Digest;
