//! sandlet's virtual kubelet: registers a Kubernetes Node and runs the pods
//! bound to it as WebAssembly guests through `sandlet-runtime`, with modules
//! from `sandlet-registry` and data from `sandlet-data`, composed here.
//!
//! Folders by concern, bottom up (no module imports one above it):
//!
//! - [`node`]: the node as the cluster sees it: its identity, its Node
//!   object, its heartbeat Lease.
//! - [`cluster`]: the node's API client and its credentials: the
//!   kubeconfig, TLS bootstrap, client certificate rotation, and the
//!   certificate requests they (and the kubelet API) make.
//! - [`pods`]: the pods bound to the node: admission, env, volumes, logs,
//!   Events, the pod table, one worker per pod (its life, and its jobs in
//!   a file each), and the pod watch.
//! - [`api`]: the kubelet HTTPS API (`/healthz`, `/containerLogs`,
//!   `/metrics/resource`, `/metrics`): who may use it, its certificates,
//!   routing and the listener.
//! - `options` ([`NodeOptions`]), `error` ([`NodeError`]) and `start`
//!   ([`run`]): the node put together from its flags, and run.
//!
//! This crate knows nothing of wasmtime: it turns pods into
//! `sandlet_runtime::RunPlan`s and asks the runtime to run them.

pub mod api;
pub mod cluster;
pub mod node;
pub mod pods;

mod error;
mod options;
mod start;

pub use error::NodeError;
pub use options::{DEFAULT_MAX_PODS, DEFAULT_PORT, NodeOptions};
pub use start::run;
