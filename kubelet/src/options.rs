//! `sandlet node`'s settings, as validated from its flags, and their
//! defaults.
//!
//! This module owns [`NodeOptions`]. It must never read a file or the
//! environment: the binary parses flags, this crate acts on them.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use sandlet_registry::oci::RegistryOptions;

use crate::api::AuthOptions;
use crate::pods::EventRate;

/// The kubelet's default `--max-pods`.
pub const DEFAULT_MAX_PODS: u32 = 110;
/// The kubelet's default API port.
pub const DEFAULT_PORT: u16 = 10250;

/// `sandlet node`'s settings, as validated from its flags.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// `--kubeconfig`: the node's credentials; `None`: `$KUBECONFIG`,
    /// `~/.kube/config` or the in-cluster service account.
    pub kubeconfig: Option<PathBuf>,
    /// `--bootstrap-kubeconfig`: when `kubeconfig` does not exist yet, the
    /// credentials that obtain the node's client certificate.
    pub bootstrap_kubeconfig: Option<PathBuf>,
    /// The Node's name.
    pub node_name: String,
    /// The station file: datasets, policies and the module allow-list.
    pub station: Option<sandlet_station::StationConfig>,
    /// The kubelet API's address, also reported as the node's InternalIP.
    pub address: IpAddr,
    /// The kubelet API's port.
    pub port: u16,
    /// Pods this node accepts (its `pods` capacity).
    pub max_pods: u32,
    /// Where the node keeps modules, compiled modules, pods' logs and
    /// disk volumes, certificates, the audit log and the privacy ledger.
    pub state_dir: PathBuf,
    /// Where rendered pod volumes go (`--runtime-dir`); `None`: a
    /// private directory in `/dev/shm` where that is a tmpfs, else
    /// `<state dir>/run`.
    pub runtime_dir: Option<PathBuf>,
    /// `--tls-cert-file` and `--tls-private-key-file`.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Without `tls`: ask the cluster for a serving certificate with a
    /// CertificateSigningRequest (`--rotate-server-certificates`).
    pub rotate_server_certificates: bool,
    /// Renew the client certificate obtained by TLS bootstrap before it
    /// expires (`--rotate-certificates`).
    pub rotate_certificates: bool,
    /// `--client-ca-file`; `None`: the CA of the kubeconfig's cluster.
    pub client_ca: Option<PathBuf>,
    /// How the kubelet API authenticates and authorizes requests.
    pub auth: AuthOptions,
    /// How modules are pulled: registry TLS, plain-HTTP registries,
    /// credentials.
    pub registry: RegistryOptions,
    /// The first restart back-off of a failed container (doubling up to
    /// five minutes).
    pub restart_backoff: Duration,
    /// How fast Events are created (`--event-qps`, `--event-burst`).
    pub event_rate: EventRate,
}
