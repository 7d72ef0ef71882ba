//! The node put together and run: credentials and the API client, the
//! stores and the engine, the kubelet API, registration, the heartbeat,
//! certificate renewals, and the pod watch, until one of them ends.
//!
//! This module owns the order things start in (the API listens before
//! the Node is registered, so the API server can reach the node as soon
//! as it exists) and what is stopped when the node stops. It is the only
//! module that sees every other; it must never decide anything about a
//! pod.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;
use kube::Client;
use rustls::sign::CertifiedKey;
use rustls_pki_types::CertificateDer;
use sandlet_data::{Ledger, QueryCounters, open_audit_log};
use sandlet_registry::oci::Registry;
use sandlet_registry::pull::ImagePuller;
use sandlet_registry::store::ModuleStore;
use sandlet_runtime::precompiled::PrecompileCache;
use sandlet_runtime::{EngineOptions, SandboxEngine};
use tokio::task::JoinHandle;

use crate::api::auth::{ApiReviewer, Gate};
use crate::api::certs::{self, ServingCerts, Subject};
use crate::api::routes::Served;
use crate::api::server::{self, AccessControl};
use crate::api::tls;
use crate::cluster::bootstrap;
use crate::cluster::client::{client_config, http2_client};
use crate::cluster::rotation::{self, Rotation, Swap};
use crate::error::NodeError;
use crate::node::heartbeat::Heartbeat;
use crate::node::identity::NodeIdentity;
use crate::node::object::register;
use crate::options::NodeOptions;
use crate::pods::context::NodeContext;
use crate::pods::event_queue::event_queue;
use crate::pods::events::EventRecorder;
use crate::pods::objects::ObjectReader;
use crate::pods::table::PodTable;
use crate::pods::volumes::{default_runtime_dir, is_memory_backed, prepare_runtime_dir};
use crate::pods::watch;

/// A file or directory that cannot be made or read.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
struct PathError {
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

/// Runs the node until the pod watch ends or the kubelet API fails, or
/// the process is stopped (the future dropped).
pub async fn run(options: NodeOptions) -> Result<(), NodeError> {
    // One TLS provider for the process (kube's client, the registry client
    // and the kubelet API all use rustls).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let pki = options.state_dir.join("pki");
    let credentials = Credentials::obtain(&options, &pki).await?;
    let client = credentials.client.clone();
    let runtime_dir = runtime_dir(&options)?;
    let stores = Stores::open(&options)?;
    let identity = NodeIdentity::detect(
        &options.node_name,
        options.address,
        options.port,
        options.max_pods,
        sandlet_runtime::engine::WASMTIME_VERSION,
    );
    let subject = Subject {
        node: identity.name.clone(),
        ip: identity.internal_address(),
    };
    let (serving, renew_at) = serving_certificate(&options, &identity, &pki, &subject)?;
    let serving = Arc::new(ServingCerts::new(serving));
    let audit = Arc::new(
        open_audit_log(&options.state_dir)
            .map_err(NodeError::setup("the data-access audit log"))?,
    );
    let ledger = Arc::new(
        Ledger::open(&options.state_dir).map_err(NodeError::setup("the privacy budget ledger"))?,
    );
    let queries = Arc::new(QueryCounters::default());
    let pods = Arc::new(PodTable::default());
    let since = Timestamp::now();
    let server_address = SocketAddr::new(options.address, options.port);
    // Listen before registering, so the API server can reach the node as
    // soon as it exists.
    let access = AccessControl {
        client_ca: credentials.client_ca,
        gate: Gate::new(ApiReviewer(client.clone()), &identity.name, options.auth),
    };
    let server = tokio::spawn(server::serve(
        server_address,
        serving.clone(),
        access,
        Arc::new(Served::new(pods.clone(), queries.clone())),
    ));
    let node_uid = register(&client, &identity, since).await?;
    tracing::info!(node = %identity.name, address = %server_address, "registered");
    let mut heartbeat = Heartbeat::new(client.clone(), identity.clone(), node_uid, since);
    heartbeat
        .renew_lease()
        .await
        .map_err(NodeError::setup("the node lease"))?;
    let mut background = vec![tokio::spawn(heartbeat.run())];
    if let Some((swap, rotation)) = credentials.rotation {
        background.push(tokio::spawn(rotation::run(client.clone(), swap, rotation)));
    }
    if options.tls.is_none() && options.rotate_server_certificates {
        background.push(tokio::spawn(certs::run(
            client.clone(),
            subject,
            pki,
            serving,
            renew_at,
        )));
    }
    let recorder = Arc::new(EventRecorder::new(
        client.clone(),
        "sandlet",
        &identity.name,
    ));
    let ctx = Arc::new(NodeContext {
        objects: ObjectReader::new(client.clone()),
        client,
        identity,
        engine: stores.engine,
        puller: stores.puller,
        store: stores.store,
        compiled: stores.compiled,
        data: options.station.map(|s| Arc::new(s.data)),
        audit,
        ledger,
        queries,
        pods_dir: options.state_dir.join("pods"),
        volumes_dir: runtime_dir.join("pods"),
        events: event_queue(recorder.clone(), options.event_rate),
        recorder,
        pods,
        restart_backoff: options.restart_backoff,
    });
    let result = until_stopped(ctx, server).await;
    for task in background {
        task.abort();
    }
    result
}

/// Runs the pod watch until it or the kubelet API ends.
async fn until_stopped(
    ctx: Arc<NodeContext>,
    server: JoinHandle<Result<(), crate::api::ServerError>>,
) -> Result<(), NodeError> {
    tokio::select! {
        () = watch::run(ctx) => Ok(()),
        served = server => match served {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.into()),
            Err(e) => Err(NodeError::ServerTask(e)),
        },
    }
}

/// The node's API client, the CAs client certificates of the kubelet API
/// must chain to, and the client certificate's rotation if the node
/// rotates it.
struct Credentials {
    client: Client,
    client_ca: Vec<CertificateDer<'static>>,
    rotation: Option<(Swap, Rotation)>,
}

impl Credentials {
    /// TLS bootstrap as the kubelet does it (while the node has no
    /// kubeconfig of its own, or its bootstrapped certificate has
    /// expired), then the client and what the kubelet API trusts.
    async fn obtain(options: &NodeOptions, pki: &Path) -> Result<Credentials, NodeError> {
        if let (Some(bootstrap), Some(kubeconfig)) =
            (&options.bootstrap_kubeconfig, &options.kubeconfig)
            && bootstrap::needed(kubeconfig, pki)
        {
            bootstrap::bootstrap(bootstrap, kubeconfig, &options.node_name, pki).await?;
        }
        let config = client_config(options.kubeconfig.as_deref()).await?;
        // Client certificates for the kubelet API chain to --client-ca-file,
        // or to the CA the node trusts for the API server (as kubeadm sets
        // it up).
        let client_ca = match &options.client_ca {
            Some(path) => tls::load_client_ca(path)?,
            None => config
                .root_cert
                .iter()
                .flatten()
                .map(|der| CertificateDer::from(der.clone()))
                .collect(),
        };
        if client_ca.is_empty() {
            tracing::warn!(
                "no client CA (--client-ca-file, or a CA in the kubeconfig): the kubelet API accepts no client certificates, only tokens"
            );
        }
        let client = http2_client(config)?;
        // Client certificate rotation: only of a certificate the node
        // obtained.
        let rotation = match (&options.kubeconfig, options.rotate_certificates) {
            (Some(kubeconfig), true) if bootstrap::written_by_node(kubeconfig, pki) => {
                Some(Rotation {
                    node: options.node_name.clone(),
                    kubeconfig: kubeconfig.clone(),
                    bootstrap_kubeconfig: options.bootstrap_kubeconfig.clone(),
                    pki: pki.to_owned(),
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
        Ok(match rotation {
            Some(rotation) => {
                let (client, swap) = rotation::swappable(client);
                Credentials {
                    client,
                    client_ca,
                    rotation: Some((swap, rotation)),
                }
            }
            None => Credentials {
                client,
                client_ca,
                rotation: None,
            },
        })
    }
}

/// The state directory made, and the runtime directory for rendered pod
/// volumes made and checked (its place logged: memory, or disk).
fn runtime_dir(options: &NodeOptions) -> Result<PathBuf, NodeError> {
    std::fs::create_dir_all(&options.state_dir)
        .map_err(|source| PathError {
            path: options.state_dir.clone(),
            source,
        })
        .map_err(NodeError::setup("the state directory"))?;
    let runtime_dir = options
        .runtime_dir
        .clone()
        .unwrap_or_else(|| default_runtime_dir(&options.state_dir));
    prepare_runtime_dir(&runtime_dir).map_err(NodeError::setup("the runtime directory"))?;
    if is_memory_backed(&runtime_dir) {
        tracing::info!(dir = %runtime_dir.display(), "pod volumes rendered from Secrets, tokens and ConfigMaps are kept in memory (tmpfs)");
    } else {
        tracing::warn!(dir = %runtime_dir.display(), "the runtime directory is not on a tmpfs: Secrets and service-account tokens of pods are written to disk (see --runtime-dir)");
    }
    Ok(runtime_dir)
}

/// What runs the pods' modules: the engine, the module store and
/// precompile cache under the state directory, the registry client and
/// the puller.
struct Stores {
    engine: Arc<SandboxEngine>,
    store: Arc<ModuleStore>,
    compiled: Arc<PrecompileCache>,
    puller: Arc<ImagePuller>,
}

impl Stores {
    fn open(options: &NodeOptions) -> Result<Stores, NodeError> {
        let engine = Arc::new(
            SandboxEngine::new(EngineOptions {
                // Init containers run one at a time, so a slot per pod
                // suffices.
                max_concurrent_runs: options.max_pods.max(1),
            })
            .map_err(NodeError::setup("the wasm engine"))?,
        );
        let store = Arc::new(
            sandlet_station::defaults::module_store(&options.state_dir)
                .map_err(NodeError::setup("the module store"))?,
        );
        let compiled = Arc::new(
            PrecompileCache::open(
                &sandlet_station::defaults::precompile_cache_dir(&options.state_dir),
                &engine,
            )
            .map_err(NodeError::setup("the precompile cache"))?,
        );
        let registry = Arc::new(
            Registry::new(&options.registry).map_err(NodeError::setup("the registry client"))?,
        );
        let allow = options
            .station
            .as_ref()
            .map(|s| s.modules.clone())
            .unwrap_or_default();
        let puller = Arc::new(
            ImagePuller::new(registry, store.clone(), allow, &options.state_dir)
                .map_err(NodeError::setup("the image puller"))?,
        );
        Ok(Stores {
            engine,
            store,
            compiled,
            puller,
        })
    }
}

/// The serving certificate to start with: the one given; else one the
/// cluster issued earlier (with when to renew it), or a self-signed one
/// until the cluster issues one.
fn serving_certificate(
    options: &NodeOptions,
    identity: &NodeIdentity,
    pki: &Path,
    subject: &Subject,
) -> Result<(CertifiedKey, Option<i64>), NodeError> {
    if let Some((cert, key)) = &options.tls {
        return Ok((tls::load_cert(cert, key)?.certified()?, None));
    }
    let stored = options
        .rotate_server_certificates
        .then(|| certs::load_stored(pki, subject))
        .flatten();
    Ok(match stored {
        Some(stored) => {
            let renew_at = stored.renew_at();
            (stored.key, Some(renew_at))
        }
        None => (
            tls::self_signed(&identity.name, &identity.internal_ip())?.certified()?,
            None,
        ),
    })
}
