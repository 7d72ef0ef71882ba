//! `sandlet node`: the virtual kubelet. This file owns the node's flags
//! and their defaults; everything the node does is in `sandlet-kubelet`.
//! It runs until SIGTERM or Ctrl-C, then exits 0.

use std::path::PathBuf;
use std::process::ExitCode;

use sandlet_kubelet::NodeOptions;
use sandlet_kubelet::api::{AuthOptions, AuthorizationMode};
use sandlet_kubelet::pods::EventRate;
use sandlet_runtime::limits;
use sandlet_station::StationConfig;

use crate::args::{RegistryArgs, StoreArgs};
use crate::error::CliError;
use crate::local;

#[derive(Debug, clap::Args)]
pub struct NodeArgs {
    /// Credentials of the node (system:node:<name>); default: $KUBECONFIG,
    /// ~/.kube/config or the in-cluster service account.
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// When the --kubeconfig file does not exist yet: obtain the node's
    /// client certificate with the bootstrap credentials in FILE (a
    /// CertificateSigningRequest to kubernetes.io/kube-apiserver-client-kubelet),
    /// keep it in <state dir>/pki and write --kubeconfig, as the kubelet does.
    #[arg(long, value_name = "FILE", requires = "kubeconfig")]
    bootstrap_kubeconfig: Option<PathBuf>,
    /// The Node's name (default: this host's name).
    #[arg(long, value_name = "NAME")]
    node_name: Option<String>,
    /// The station's datasets, policies and module allow-list (YAML).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address of the kubelet HTTPS API, also reported as the node's
    /// InternalIP (0.0.0.0 is reported as 127.0.0.1).
    #[arg(long, value_name = "IP", default_value = "0.0.0.0")]
    address: std::net::IpAddr,
    /// Port of the kubelet HTTPS API.
    #[arg(long, value_name = "PORT", default_value_t = sandlet_kubelet::DEFAULT_PORT)]
    port: u16,
    /// Pods this node accepts (its `pods` capacity).
    #[arg(long, value_name = "N", default_value_t = sandlet_kubelet::DEFAULT_MAX_PODS)]
    max_pods: u32,
    /// Serving certificate of the kubelet API (PEM); without it the node
    /// serves with a self-signed one.
    #[arg(long, value_name = "FILE", requires = "tls_private_key_file")]
    tls_cert_file: Option<PathBuf>,
    /// Key of --tls-cert-file (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert_file")]
    tls_private_key_file: Option<PathBuf>,
    /// Without --tls-cert-file: ask the cluster for a serving certificate
    /// (a CertificateSigningRequest to kubernetes.io/kubelet-serving, to be
    /// approved by an admin or an approver), serve it once signed, keep it
    /// in <state dir>/pki and renew it; until then, serve a self-signed one.
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    rotate_server_certificates: bool,
    /// Renew the client certificate obtained with --bootstrap-kubeconfig
    /// before it expires (a CertificateSigningRequest made with the current
    /// one, 80 % into its lifetime), as the kubelet does.
    #[arg(long, value_name = "BOOL", default_value_t = false, action = clap::ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    rotate_certificates: bool,
    /// CA certificates (PEM) that kubelet API client certificates must be
    /// signed by; the user is the certificate's CN, its groups the O values
    /// (default: the CA of the kubeconfig's cluster).
    #[arg(long, value_name = "FILE")]
    client_ca_file: Option<PathBuf>,
    /// Let kubelet API requests without credentials through as
    /// system:anonymous, to be authorized like any user.
    #[arg(long, value_name = "BOOL", default_value_t = false, action = clap::ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    anonymous_auth: bool,
    /// Check kubelet API bearer tokens with a TokenReview.
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    authentication_token_webhook: bool,
    /// How kubelet API requests are authorized: Webhook (a
    /// SubjectAccessReview for nodes/<subresource> of this node) or
    /// AlwaysAllow (every authenticated request).
    #[arg(long, value_name = "MODE", default_value = "Webhook")]
    authorization_mode: AuthorizationMode,
    /// First delay before restarting a failed container; doubles per
    /// restart up to 5 minutes (the kubelet's 10s by default).
    #[arg(long, value_name = "DURATION", default_value = "10s")]
    restart_backoff: String,
    /// Where pod volumes rendered from Secrets, service-account tokens,
    /// ConfigMaps and the downward API are written, and emptyDirs with
    /// medium Memory; should be a tmpfs (default: a private directory in
    /// /dev/shm when that is a tmpfs, else <state dir>/run).
    #[arg(long, value_name = "DIR")]
    runtime_dir: Option<PathBuf>,
    /// Events the node creates per second at most, after a burst of
    /// --event-burst (the kubelet's eventRecordQPS); 0: no limit.
    #[arg(long, value_name = "N", default_value_t = EventRate::default().qps)]
    event_qps: u32,
    /// Events the node may create at once after a quiet spell (the
    /// kubelet's eventBurst).
    #[arg(long, value_name = "N", default_value_t = EventRate::default().burst)]
    event_burst: u32,
    #[command(flatten)]
    registry: RegistryArgs,
    #[command(flatten)]
    store: StoreArgs,
}

pub async fn execute(args: NodeArgs) -> Result<ExitCode, CliError> {
    let station = args
        .config
        .as_deref()
        .map(StationConfig::load)
        .transpose()?;
    let restart_backoff = limits::parse_timeout(&args.restart_backoff)
        .map_err(|e| CliError::flag("--restart-backoff", e))?;
    let node_name = args
        .node_name
        .clone()
        .or_else(local::host_name)
        .ok_or_else(|| {
            CliError::Usage("--node-name is required: this host's name cannot be read".to_owned())
        })?;
    let options = NodeOptions {
        kubeconfig: args.kubeconfig,
        bootstrap_kubeconfig: args.bootstrap_kubeconfig,
        node_name,
        station,
        address: args.address,
        port: args.port,
        max_pods: args.max_pods,
        state_dir: args.store.state_dir()?,
        runtime_dir: args.runtime_dir,
        tls: args.tls_cert_file.zip(args.tls_private_key_file),
        rotate_server_certificates: args.rotate_server_certificates,
        rotate_certificates: args.rotate_certificates,
        client_ca: args.client_ca_file,
        auth: AuthOptions {
            anonymous: args.anonymous_auth,
            token_review: args.authentication_token_webhook,
            authorization: args.authorization_mode,
        },
        registry: args.registry.options(),
        restart_backoff,
        event_rate: EventRate {
            qps: args.event_qps,
            burst: args.event_burst,
        },
    };
    let stop = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("a SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    tokio::select! {
        result = sandlet_kubelet::run(options) => result.map(|()| ExitCode::SUCCESS).map_err(CliError::from),
        _ = stop => Ok(ExitCode::SUCCESS),
    }
}
