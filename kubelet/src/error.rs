//! Why the node stopped, or never started.
//!
//! This module owns [`NodeError`], the one error [`crate::run`] returns:
//! its `Display` is the one line `sandlet node` prints, and each variant
//! keeps its source. It must never lose the source of a failure.

use crate::api::ServerError;
use crate::cluster::{BootstrapError, ClientError};
use crate::node::RegisterError;

/// Why the node stopped (or never started).
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The node has no API client: its kubeconfig cannot be read or used.
    #[error("kubeconfig: {0}")]
    Kubeconfig(#[from] ClientError),
    /// TLS bootstrap gave the node no client certificate.
    #[error("{0}")]
    Bootstrap(#[from] BootstrapError),
    /// The Node object could not be registered.
    #[error("{0}")]
    Register(#[from] RegisterError),
    /// The kubelet API could not start, or stopped.
    #[error("kubelet API: {0}")]
    Server(#[from] ServerError),
    /// The kubelet API's task ended without an answer (it panicked).
    #[error("kubelet API: {0}")]
    ServerTask(#[source] tokio::task::JoinError),
    /// Something the node needs could not be opened or made.
    #[error("cannot set up {what}: {source}")]
    Setup {
        /// What: `the state directory`, `the module store`, ...
        what: &'static str,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl NodeError {
    /// A failure to set up `what`, for `map_err`.
    pub(crate) fn setup<E>(what: &'static str) -> impl FnOnce(E) -> NodeError
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        move |source| NodeError::Setup {
            what,
            source: Box::new(source),
        }
    }
}
