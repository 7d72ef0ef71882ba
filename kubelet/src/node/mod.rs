//! The node itself as the cluster sees it: who it is, its Node object and
//! its heartbeat.
//!
//! Bottom up: [`identity`](NodeIdentity) (name, address, capacity, system
//! identifiers), `object` (the Node: labels, taints, status, registration),
//! `heartbeat` (the Lease and the status refreshed with it).
//!
//! This folder owns the Node and its Lease. It must never read or write a
//! pod: nothing here knows the pods the node runs.

pub(crate) mod heartbeat;
pub(crate) mod identity;
pub(crate) mod object;

pub use heartbeat::Heartbeat;
pub use identity::NodeIdentity;
pub use object::{RegisterError, register};
