//! The kubelet HTTPS API the API server calls (`kubectl logs`,
//! metrics-server, Prometheus), and its certificates.
//!
//! Bottom up: `error` (why the API could not start), `response` (how a
//! response is framed), `auth` (who may use the API: certificate users,
//! token and access reviews), `certs` (the serving certificate the cluster
//! issues, renewed), `tls` (the certificate files and the TLS settings),
//! `metrics` (`/metrics/resource`, `/metrics`), `container_logs`
//! (`/containerLogs`), `routes` (admission, then routing), `server` (the
//! listener and its connection limits).
//!
//! This folder owns what the API serves and to whom. It reads the pods'
//! table and log files and never changes them: it must never start, stop
//! or change a pod, nor read a request body.

pub(crate) mod auth;
pub(crate) mod certs;
pub(crate) mod container_logs;
pub(crate) mod error;
pub(crate) mod metrics;
pub(crate) mod response;
pub(crate) mod routes;
pub(crate) mod server;
pub(crate) mod tls;

pub use auth::{Access, AuthOptions, AuthorizationMode, UnknownAuthorizationMode, accesses};
pub use error::ServerError;
pub use routes::{Route, route};
