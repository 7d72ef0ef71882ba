//! The node's side of the API server: the client it talks through and the
//! credentials it talks with.
//!
//! Bottom up: `client` (the kubeconfig and the HTTP/2 connection stack),
//! `csr` (a CertificateSigningRequest made and waited on; the stored
//! certificate files), `bootstrap` (the client certificate obtained with
//! `--bootstrap-kubeconfig`), `rotation` (that certificate renewed, and
//! the client's connections swapped to it).
//!
//! This folder owns how the node authenticates to the cluster. It must
//! never approve its own certificate requests, never keep a bootstrap
//! token, and never know anything of pods or of the kubelet API.

pub(crate) mod bootstrap;
pub(crate) mod client;
pub(crate) mod csr;
pub(crate) mod rotation;

pub use bootstrap::{BootstrapError, CertificateError};
pub use client::{ClientError, client};
pub use csr::RequestError;
