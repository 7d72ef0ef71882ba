//! sandlet's virtual kubelet: registers a Kubernetes Node and runs the pods
//! bound to it as WebAssembly guests through `sandlet-runtime`, with modules
//! from `sandlet-registry` and data from `sandlet-data`, composed here.
//!
//! Layers, bottom up (no module imports one above it):
//!
//! - [`status`]: the pod state this node reports, and its `PodStatus` (no IO).
//! - [`admission`]: a pod as written checked into an [`admission::PodPlan`] (no IO).
//! - [`env`]: env vars, envFrom and the downward API (no IO).
//! - [`volumes`]: pod volumes as host directories for preopens.
//! - [`logs`]: container log files and the kubelet's log options.
//! - [`node`]: the Node object, its status, and the heartbeat Lease.
//! - [`objects`]: ConfigMaps and Secrets, read once for many pods.
//! - [`context`]: what the workers and the API share, and the pod table.
//! - [`lifecycle`]: one pod's life: where it is decided what runs.
//! - [`pods`]: the watch on this node's pods, one worker per pod.
//! - [`metrics`]: `/metrics/resource`, the resource metrics of running
//!   containers and the node; `/metrics`, the node's query counters.
//! - [`auth`]: who may use the kubelet API (client certificates, token and
//!   access reviews).
//! - [`certs`]: the API's serving certificate, requested from the cluster.
//! - [`server`]: the kubelet HTTPS API (`/healthz`, `/containerLogs`,
//!   `/metrics/resource`, `/metrics`).
//!
//! This crate knows nothing of wasmtime: it turns pods into
//! `sandlet_runtime::RunPlan`s and asks the runtime to run them.

pub mod admission;
pub mod auth;
pub mod bootstrap;
pub mod certs;
pub mod context;
pub mod env;
pub mod events;
pub mod file_mounts;
pub mod lifecycle;
pub mod logs;
pub mod metrics;
pub mod node;
pub mod objects;
pub mod pods;
pub mod rotation;
pub mod server;
pub mod status;
pub mod volumes;

pub use context::EventRate;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};
use sandlet_data::{QueryCounters, open_audit_log};
use sandlet_registry::oci::{Registry, RegistryOptions};
use sandlet_registry::pull::ImagePuller;
use sandlet_registry::store::ModuleStore;
use sandlet_runtime::precompiled::PrecompileCache;
use sandlet_runtime::{EngineOptions, SandboxEngine};

use crate::context::{NodeContext, PodTable};
use crate::node::{Heartbeat, NodeIdentity};

/// The kubelet's default `--max-pods`.
pub const DEFAULT_MAX_PODS: u32 = 110;
/// The kubelet's default API port.
pub const DEFAULT_PORT: u16 = 10250;
/// The kubelet's first restart back-off.
pub const DEFAULT_RESTART_BACKOFF: Duration = Duration::from_secs(10);

/// `sandlet node`'s settings, as validated from its flags.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    pub kubeconfig: Option<PathBuf>,
    /// `--bootstrap-kubeconfig`: when `kubeconfig` does not exist yet, the
    /// credentials that obtain the node's client certificate.
    pub bootstrap_kubeconfig: Option<PathBuf>,
    pub node_name: String,
    /// The station file: datasets, policies and the module allow-list.
    pub station: Option<sandlet_station::StationConfig>,
    pub address: IpAddr,
    pub port: u16,
    pub max_pods: u32,
    pub state_dir: PathBuf,
    /// Where rendered pod volumes go (`--runtime-dir`); `None`:
    /// [`volumes::default_runtime_dir`].
    pub runtime_dir: Option<PathBuf>,
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
    pub auth: auth::AuthOptions,
    pub registry: RegistryOptions,
    pub restart_backoff: Duration,
    /// How fast Events are created (`--event-qps`, `--event-burst`).
    pub event_rate: context::EventRate,
}

/// Why the node stopped (or never started).
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("kubeconfig: {0}")]
    Kubeconfig(String),
    #[error("{0}")]
    Bootstrap(#[from] bootstrap::BootstrapError),
    #[error("{0}")]
    Register(#[from] node::NodeError),
    #[error("kubelet API: {0}")]
    Server(#[from] server::ServerError),
    #[error("cannot set up {what}: {reason}")]
    Setup { what: &'static str, reason: String },
    #[error("the pod watch failed: {0}")]
    Watch(String),
}

fn setup(what: &'static str) -> impl Fn(String) -> NodeError {
    move |reason| NodeError::Setup { what, reason }
}

/// The API client the node uses (HTTP/2, from `kubeconfig` or the
/// environment); public so that the load generator's reference kubelet
/// talks to the API server exactly as the node does.
pub async fn client(kubeconfig: Option<&PathBuf>) -> Result<Client, NodeError> {
    http2_client(client_config(kubeconfig).await?).map_err(NodeError::Kubeconfig)
}

/// The client configuration from `kubeconfig` or the environment.
async fn client_config(kubeconfig: Option<&PathBuf>) -> Result<kube::Config, NodeError> {
    let error = |e: String| NodeError::Kubeconfig(e);
    match kubeconfig {
        Some(path) => {
            let file = Kubeconfig::read_from(path)
                .map_err(|e| error(format!("{}: {e}", path.display())))?;
            kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                .await
                .map_err(|e| error(format!("{}: {e}", path.display())))
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| error(e.to_string())),
    }
}

/// A kube client that speaks HTTP/2 to the API server (kube-rs's default
/// client offers only HTTP/1.1, so a burst of pod starts opened one TLS
/// connection per concurrent request); same base URI, authentication and
/// headers as the default stack.
fn http2_client(config: kube::Config) -> Result<Client, String> {
    use kube::client::ConfigExt;
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(config.connect_timeout);
    let tls = config.rustls_client_config().map_err(|e| e.to_string())?;
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    let client: hyper_util::client::legacy::Client<_, kube::client::Body> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(https);
    let service = tower::ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(config.auth_layer().map_err(|e| e.to_string())?)
        .layer(config.extra_headers_layer().map_err(|e| e.to_string())?)
        .map_err(tower::BoxError::from)
        .service(client);
    Ok(Client::new(service, config.default_namespace.clone()))
}

/// Runs the node until the pod watch fails or the process is stopped.
pub async fn run(options: NodeOptions) -> Result<(), NodeError> {
    // One TLS provider for the process (kube's client, the registry client
    // and the kubelet API all use rustls).
    let _ = rustls::crypto::ring::default_provider().install_default();
    // TLS bootstrap, as the kubelet does it: while the node has no
    // kubeconfig of its own, or its bootstrapped certificate has expired.
    let pki = options.state_dir.join("pki");
    if let (Some(bootstrap), Some(kubeconfig)) =
        (&options.bootstrap_kubeconfig, &options.kubeconfig)
        && bootstrap::needed(kubeconfig, &pki)
    {
        bootstrap::bootstrap(bootstrap, kubeconfig, &options.node_name, &pki).await?;
    }
    let config = client_config(options.kubeconfig.as_ref()).await?;
    // Client certificates for the kubelet API chain to --client-ca-file, or
    // to the CA the node trusts for the API server (as kubeadm sets it up).
    let client_ca = match &options.client_ca {
        Some(path) => server::load_client_ca(path)?,
        None => config
            .root_cert
            .iter()
            .flatten()
            .map(|der| rustls_pki_types::CertificateDer::from(der.clone()))
            .collect(),
    };
    if client_ca.is_empty() {
        tracing::warn!(
            "no client CA (--client-ca-file, or a CA in the kubeconfig): the kubelet API accepts no client certificates, only tokens"
        );
    }
    let client = http2_client(config).map_err(NodeError::Kubeconfig)?;
    // Client certificate rotation: only of a certificate the node obtained.
    let rotation = match (&options.kubeconfig, options.rotate_certificates) {
        (Some(kubeconfig), true) if bootstrap::written_by_node(kubeconfig, &pki) => {
            Some(rotation::Rotation {
                node: options.node_name.clone(),
                kubeconfig: kubeconfig.clone(),
                bootstrap_kubeconfig: options.bootstrap_kubeconfig.clone(),
                pki: pki.clone(),
            })
        }
        (_, true) => {
            tracing::warn!(
                "--rotate-certificates: the kubeconfig's credentials are not a certificate the node obtained with --bootstrap-kubeconfig; they are not rotated"
            );
            None
        }
        (_, false) => None,
    };
    let (client, swap) = match rotation {
        Some(rotation) => {
            let (client, swap) = rotation::swappable(client);
            (client, Some((swap, rotation)))
        }
        None => (client, None),
    };
    std::fs::create_dir_all(&options.state_dir).map_err(|e| NodeError::Setup {
        what: "the state directory",
        reason: format!("{}: {e}", options.state_dir.display()),
    })?;
    let runtime_dir = options
        .runtime_dir
        .clone()
        .unwrap_or_else(|| volumes::default_runtime_dir(&options.state_dir));
    volumes::prepare_runtime_dir(&runtime_dir).map_err(setup("the runtime directory"))?;
    if volumes::is_memory_backed(&runtime_dir) {
        tracing::info!(dir = %runtime_dir.display(), "pod volumes rendered from Secrets, tokens and ConfigMaps are kept in memory (tmpfs)");
    } else {
        tracing::warn!(dir = %runtime_dir.display(), "the runtime directory is not on a tmpfs: Secrets and service-account tokens of pods are written to disk (see --runtime-dir)");
    }
    let engine = Arc::new(
        SandboxEngine::new(EngineOptions {
            // Init containers run one at a time, so a slot per pod suffices.
            max_concurrent_runs: options.max_pods.max(1),
        })
        .map_err(|e| setup("the wasm engine")(e.to_string()))?,
    );
    let store = Arc::new(
        ModuleStore::open(
            &options.state_dir.join("modules"),
            sandlet_station::defaults::STORE_BYTES,
        )
        .map_err(|e| setup("the module store")(e.to_string()))?,
    );
    let compiled = Arc::new(
        PrecompileCache::open(&options.state_dir.join("compiled"), &engine)
            .map_err(|e| setup("the precompile cache")(e.to_string()))?,
    );
    let registry = Arc::new(
        Registry::new(&options.registry)
            .map_err(|e| setup("the registry client")(e.to_string()))?,
    );
    let allow = options
        .station
        .as_ref()
        .map(|s| s.modules.clone())
        .unwrap_or_default();
    let puller = Arc::new(
        ImagePuller::new(registry, store.clone(), allow, &options.state_dir)
            .map_err(|e| setup("the image puller")(e.to_string()))?,
    );
    let identity = NodeIdentity::detect(
        &options.node_name,
        options.address,
        options.port,
        options.max_pods,
        sandlet_runtime::engine::WASMTIME_VERSION,
    );
    // The serving certificate: the one given; else one the cluster issued
    // earlier, or a self-signed one until the cluster issues one.
    let subject = certs::Subject {
        node: identity.name.clone(),
        ip: identity
            .internal_ip()
            .parse()
            .map_err(|e| setup("the serving certificate")(format!("node address: {e}")))?,
    };
    let (serving, renew_at) = match &options.tls {
        Some((cert, key)) => (server::load_cert(cert, key)?.certified()?, None),
        None => match options
            .rotate_server_certificates
            .then(|| certs::load_stored(&pki, &subject))
            .flatten()
        {
            Some(stored) => {
                let renew_at = stored.renew_at();
                (stored.key, Some(renew_at))
            }
            None => (
                server::self_signed(&identity.name, &identity.internal_ip())?.certified()?,
                None,
            ),
        },
    };
    let serving = Arc::new(certs::ServingCerts::new(serving));
    let audit = Arc::new(
        open_audit_log(&options.state_dir)
            .map_err(|e| setup("the data-access audit log")(e.to_string()))?,
    );
    let ledger = Arc::new(
        sandlet_data::Ledger::open(&options.state_dir)
            .map_err(|e| setup("the privacy budget ledger")(e.to_string()))?,
    );
    let queries = Arc::new(QueryCounters::default());
    let pods = Arc::new(PodTable::default());
    let since = Timestamp::now();
    let server_address = SocketAddr::new(options.address, options.port);
    // Listen before registering, so the API server can reach the node as
    // soon as it exists.
    let access = server::Access {
        client_ca,
        gate: auth::Gate::new(
            auth::ApiReviewer(client.clone()),
            &identity.name,
            options.auth,
        ),
    };
    let server = tokio::spawn(server::serve(
        server_address,
        serving.clone(),
        access,
        Arc::new(server::Served::new(pods.clone(), queries.clone())),
    ));
    let node_uid = node::register(&client, &identity, since).await?;
    tracing::info!(node = %identity.name, address = %server_address, "registered");
    let mut heartbeat = Heartbeat::new(client.clone(), identity.clone(), node_uid, since);
    heartbeat
        .renew_lease()
        .await
        .map_err(|e| setup("the node lease")(e.to_string()))?;
    let heartbeat = tokio::spawn(heartbeat.run());
    let client_certificate =
        swap.map(|(swap, rotation)| tokio::spawn(rotation::run(client.clone(), swap, rotation)));
    let certificates = (options.tls.is_none() && options.rotate_server_certificates)
        .then(|| tokio::spawn(certs::run(client.clone(), subject, pki, serving, renew_at)));
    let recorder = Arc::new(events::EventRecorder::new(
        client.clone(),
        "sandlet",
        &identity.name,
    ));
    let ctx = Arc::new(NodeContext {
        objects: objects::ObjectReader::new(client.clone()),
        client,
        identity,
        engine,
        puller,
        store,
        compiled,
        data: options.station.map(|s| Arc::new(s.data)),
        audit,
        ledger,
        queries,
        pods_dir: options.state_dir.join("pods"),
        volumes_dir: runtime_dir.join("pods"),
        events: context::event_queue(recorder.clone(), options.event_rate),
        recorder,
        pods,
        restart_backoff: options.restart_backoff,
    });
    let result = tokio::select! {
        watched = pods::run(ctx) => watched.map_err(|e| NodeError::Watch(e.to_string())),
        served = server => match served {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.into()),
            Err(e) => Err(NodeError::Watch(e.to_string())),
        },
    };
    heartbeat.abort();
    for task in [certificates, client_certificate].into_iter().flatten() {
        task.abort();
    }
    result
}
