//! Client certificate rotation (`--rotate-certificates`): the node renews
//! the client certificate it obtained by TLS bootstrap before it expires,
//! as the kubelet does.
//!
//! 80 % into the stored certificate's lifetime the node makes a new key and
//! asks the `kubernetes.io/kube-apiserver-client-kubelet` signer for a
//! certificate with its current one (the controller-manager's approver
//! approves a node's renewal of its own certificate where the cluster
//! grants `system:nodes` that right, as kubeadm sets it up). It checks the
//! issued certificate as bootstrap does, replaces the stored file
//! atomically, and from then on makes new connections with it: the API
//! client everything in the node holds is a [`Swappable`] one whose
//! connections are replaced. Requests already under way (long watches)
//! finish on the old connection; the API server authenticated those when
//! they began.
//!
//! When the certificate has expired before it could be renewed (the API
//! server was away that long), the node bootstraps again with
//! `--bootstrap-kubeconfig` if it has one, as the kubelet falls back to its
//! bootstrap credentials.
//!
//! This module owns the renewal loop and the swap. It never rotates a
//! certificate the node did not obtain itself (an admin's kubeconfig is
//! left as it is), and never replaces the stored certificate with one that
//! is not for the node's key and name.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::{Request, Response};
use kube::Client;
use kube::client::Body;

use crate::cluster::bootstrap::{self, BootstrapError, CertificateError, STORED};
use crate::cluster::client::ClientError;
use crate::cluster::csr::{self, RequestError, now_unix};

/// First retry after a failed renewal; doubles up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_secs(30);
const RETRY_MAX: Duration = Duration::from_secs(15 * 60);

/// Why a renewal did not give the node a new client certificate (logged;
/// it is tried again).
#[derive(Debug, thiserror::Error)]
pub(crate) enum RotationError {
    #[error("{0}")]
    Key(#[source] rcgen::Error),
    #[error("{0}")]
    Request(#[source] RequestError),
    #[error("from the signer: {0}")]
    Issued(#[source] CertificateError),
    #[error("cannot store {}: {source}", path.display())]
    Store {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the client certificate has expired and there is no --bootstrap-kubeconfig to obtain \
         a new one: the API server will refuse the node until it has new credentials"
    )]
    Expired,
    #[error("{0}")]
    Bootstrap(#[source] BootstrapError),
    #[error("kubeconfig: {0}")]
    Client(#[source] ClientError),
}

/// The API client's current connections, replaceable while clones of the
/// [`Client`] made by [`swappable`] are in use everywhere.
#[derive(Clone)]
pub(crate) struct Swap(Arc<RwLock<Client>>);

impl Swap {
    /// New requests go through `client` from now on.
    pub(crate) fn replace(&self, client: Client) {
        *self.0.write().expect("client lock") = client;
    }

    fn current(&self) -> Client {
        self.0.read().expect("client lock").clone()
    }
}

/// A client that sends every request through whatever [`Swap::replace`]
/// last set (at first `inner`).
pub(crate) fn swappable(inner: Client) -> (Client, Swap) {
    let default_namespace = inner.default_namespace().to_owned();
    let swap = Swap(Arc::new(RwLock::new(inner)));
    (
        Client::new(Swappable(swap.clone()), default_namespace),
        swap,
    )
}

/// The tower service behind [`swappable`]'s client.
#[derive(Clone)]
struct Swappable(Swap);

impl tower::Service<Request<Body>> for Swappable {
    type Response = Response<Body>;
    type Error = kube::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, kube::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), kube::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let client = self.0.current();
        Box::pin(async move { client.send(request).await })
    }
}

/// What the rotation needs besides the client.
pub(crate) struct Rotation {
    /// The node's name.
    pub(crate) node: String,
    /// `--kubeconfig`, which names the stored certificate.
    pub(crate) kubeconfig: PathBuf,
    /// `--bootstrap-kubeconfig`, for when the certificate has expired.
    pub(crate) bootstrap_kubeconfig: Option<PathBuf>,
    /// Where the certificate is stored.
    pub(crate) pki: PathBuf,
}

/// Renews the stored client certificate 80 % into each one's lifetime
/// and swaps the client's connections to it; retries failures from 30 s,
/// doubling to 15 min. Runs until dropped.
pub(crate) async fn run(client: Client, swap: Swap, rotation: Rotation) {
    let stored = rotation.pki.join(STORED);
    let mut retry = RETRY_FIRST;
    loop {
        let validity = bootstrap::validity(&stored);
        match &validity {
            Ok((not_before, not_after)) => {
                let at = renew_at(*not_before, *not_after);
                tracing::debug!(
                    renew_at = at,
                    not_after,
                    "client certificate renewal scheduled"
                );
                let wait = (at - now_unix()).max(0) as u64;
                tokio::time::sleep(Duration::from_secs(wait)).await;
            }
            Err(reason) => {
                tracing::warn!(certificate = %stored.display(), %reason, "the node's client certificate cannot be read: renewing it now");
            }
        }
        let expired = validity.is_ok_and(|(_, not_after)| not_after <= now_unix());
        let renewed = if expired {
            rebootstrap(&rotation).await
        } else {
            renew(&client, &rotation).await
        };
        // The stored file is new; the kubeconfig names it.
        let fresh = match renewed {
            Ok(()) => crate::cluster::client::client(Some(&rotation.kubeconfig))
                .await
                .map_err(RotationError::Client),
            Err(error) => Err(error),
        };
        match fresh {
            Ok(fresh) => {
                swap.replace(fresh);
                let not_after = bootstrap::validity(&stored).map(|(_, a)| a).unwrap_or(0);
                tracing::info!(
                    not_after,
                    "rotated the node's client certificate; new connections use it"
                );
                retry = RETRY_FIRST;
            }
            Err(error) => {
                tracing::warn!(%error, retry_in = ?retry, "cannot renew the node's client certificate");
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(RETRY_MAX);
            }
        }
    }
}

/// When to renew a certificate valid from `not_before` to `not_after`
/// (unix seconds): 80 % into its lifetime (the kubelet picks between 70 %
/// and 90 %).
fn renew_at(not_before: i64, not_after: i64) -> i64 {
    not_before + (not_after - not_before) * 4 / 5
}

/// A new certificate for the node, asked for with its current one.
async fn renew(client: &Client, rotation: &Rotation) -> Result<(), RotationError> {
    let (csr_pem, key_pem) =
        bootstrap::client_request(&rotation.node).map_err(RotationError::Key)?;
    tracing::info!(
        node = %rotation.node,
        "asking the cluster to renew the node's client certificate"
    );
    let chain_pem = csr::request_certificate(
        client,
        csr_pem,
        bootstrap::SIGNER,
        bootstrap::CLIENT_USAGES,
        "node-csr-",
    )
    .await
    .map_err(RotationError::Request)?;
    bootstrap::check_issued(&chain_pem, &key_pem, &rotation.node).map_err(RotationError::Issued)?;
    csr::store_pem(&rotation.pki, STORED, &chain_pem, &key_pem).map_err(|source| {
        RotationError::Store {
            path: rotation.pki.join(STORED),
            source,
        }
    })?;
    Ok(())
}

/// The certificate expired before it was renewed: bootstrap again, if the
/// node has bootstrap credentials.
async fn rebootstrap(rotation: &Rotation) -> Result<(), RotationError> {
    let Some(credentials) = &rotation.bootstrap_kubeconfig else {
        return Err(RotationError::Expired);
    };
    tracing::warn!(
        "the node's client certificate expired before it was renewed: bootstrapping again"
    );
    bootstrap::bootstrap(
        credentials,
        &rotation.kubeconfig,
        &rotation.node,
        &rotation.pki,
    )
    .await
    .map_err(RotationError::Bootstrap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_is_due_well_before_expiry() {
        // A year-long certificate: renewed after about 292 days.
        let year = 365 * 24 * 3600;
        let at = renew_at(1_000, 1_000 + year);
        assert_eq!(at, 1_000 + year * 4 / 5);
        assert!(at < 1_000 + year - 60 * 24 * 3600);
        // A short one is renewed with a fifth of its life left.
        assert_eq!(renew_at(0, 100), 80);
    }
}
