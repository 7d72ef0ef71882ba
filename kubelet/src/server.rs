//! The kubelet HTTPS API that the API server calls: `/healthz`,
//! `/containerLogs` (so `kubectl logs` and `kubectl logs -f` work),
//! `/metrics/resource` (for metrics-server), `/metrics` (the node's own
//! counters: data queries answered and refused, by rule), and a
//! clear refusal for `exec`, `attach`, `portForward` and `run`.
//!
//! This module owns the listener, TLS and routing. TLS verifies a client
//! certificate against the client CA when one is presented; every request
//! then passes [`crate::auth::Gate::check`] before routing, which answers
//! 401/403 itself. The serving certificate is read from [`ServingCerts`] on
//! every handshake: `--tls-cert-file`, or one the cluster issued
//! ([`crate::certs`]), or until then a self-signed one ([`self_signed`]).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::auth::{Gate, User};
use crate::certs::ServingCerts;
use crate::context::PodTable;
use crate::logs::{FOLLOW_POLL, LogOptions, LogReader, log_path};
use sandlet_data::QueryCounters;

type Body = BoxBody<Bytes, Infallible>;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot read {what} {}: {reason}", path.display())]
    Read {
        what: &'static str,
        path: std::path::PathBuf,
        reason: String,
    },
    #[error("invalid TLS configuration: {0}")]
    Tls(String),
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// A certificate chain and key, PEM.
pub struct ServingCert {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl ServingCert {
    /// The chain and key as rustls serves them (the key must match).
    pub fn certified(self) -> Result<rustls::sign::CertifiedKey, ServerError> {
        let provider = rustls::crypto::ring::default_provider();
        rustls::sign::CertifiedKey::from_der(self.chain, self.key, &provider)
            .map_err(|e| ServerError::Tls(e.to_string()))
    }
}

/// Reads `--tls-cert-file` and `--tls-private-key-file`.
pub fn load_cert(cert: &Path, key: &Path) -> Result<ServingCert, ServerError> {
    let read = |what, path: &Path| {
        std::fs::read(path).map_err(|e| ServerError::Read {
            what,
            path: path.to_owned(),
            reason: e.to_string(),
        })
    };
    let cert_pem = read("certificate", cert)?;
    let key_pem = read("private key", key)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ServerError::Read {
            what: "certificate",
            path: cert.to_owned(),
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(ServerError::Read {
            what: "certificate",
            path: cert.to_owned(),
            reason: "no PEM certificate in it".to_owned(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| ServerError::Read {
        what: "private key",
        path: key.to_owned(),
        reason: e.to_string(),
    })?;
    Ok(ServingCert { chain, key })
}

/// A self-signed serving certificate for the node's name and address.
pub fn self_signed(node_name: &str, ip: &str) -> Result<ServingCert, ServerError> {
    let names = vec![node_name.to_owned(), ip.to_owned()];
    let certified =
        rcgen::generate_simple_self_signed(names).map_err(|e| ServerError::Tls(e.to_string()))?;
    Ok(ServingCert {
        chain: vec![certified.cert.der().clone()],
        key: PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into()),
    })
}

/// Reads `--client-ca-file`: the CA certificates (PEM) that client
/// certificates must chain to.
pub fn load_client_ca(path: &Path) -> Result<Vec<CertificateDer<'static>>, ServerError> {
    let error = |reason: String| ServerError::Read {
        what: "client CA",
        path: path.to_owned(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| error(e.to_string()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error(e.to_string()))?;
    if certs.is_empty() {
        return Err(error("no PEM certificate in it".to_owned()));
    }
    Ok(certs)
}

/// Who the API admits: client certificates chaining to `client_ca` (none:
/// no certificate is asked for), then whatever `gate` decides.
pub struct Access {
    pub client_ca: Vec<CertificateDer<'static>>,
    pub gate: Gate,
}

/// What the API's handlers read: the node's pods and its query counters.
pub struct Served {
    pub pods: Arc<PodTable>,
    pub queries: Arc<QueryCounters>,
}

/// Serves the kubelet API on `address` until the task is dropped.
pub async fn serve(
    address: SocketAddr,
    certs: Arc<ServingCerts>,
    access: Access,
    served: Arc<Served>,
) -> Result<(), ServerError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ServerError::Tls(e.to_string()))?;
    let builder = if access.client_ca.is_empty() {
        builder.with_no_client_auth()
    } else {
        let mut roots = rustls::RootCertStore::empty();
        for ca in access.client_ca {
            roots
                .add(ca)
                .map_err(|e| ServerError::Tls(format!("client CA: {e}")))?;
        }
        // A certificate is asked for but not required: token and anonymous
        // requests come without one. One that is presented must verify.
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| ServerError::Tls(format!("client CA: {e}")))?;
        builder.with_client_cert_verifier(verifier)
    };
    let mut config = builder.with_cert_resolver(certs);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let gate = Arc::new(access.gate);
    let listener = TcpListener::bind(address)
        .await
        .map_err(|source| ServerError::Listen { address, source })?;
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(conn) => conn,
            Err(error) => {
                tracing::warn!(%error, "kubelet API: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let served = served.clone();
        let gate = gate.clone();
        tokio::spawn(async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(tls) => tls,
                Err(error) => {
                    tracing::debug!(%error, "kubelet API: TLS handshake failed");
                    return;
                }
            };
            // The verifier has checked the chain; the leaf names the user.
            let user: Option<Arc<User>> = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(|leaf| User::from_certificate(leaf))
                .map(Arc::new);
            let service = hyper::service::service_fn(move |request| {
                let served = served.clone();
                let gate = gate.clone();
                let user = user.clone();
                async move { Ok::<_, Infallible>(admit(request, user.as_deref(), &gate, &served).await) }
            });
            if let Err(error) = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), service)
                .await
            {
                tracing::debug!(%error, "kubelet API: connection ended with an error");
            }
        });
    }
}

/// A Prometheus text exposition.
fn metrics(text: String) -> Response<Body> {
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/plain; version=0.0.4; charset=utf-8")
        .body(Full::new(Bytes::from(text)).boxed())
        .expect("a valid response")
}

fn full(status: StatusCode, text: impl Into<Bytes>) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain; charset=utf-8")
        .body(Full::new(text.into()).boxed())
        .expect("a valid response")
}

/// Decides the request with `gate`, then routes it.
async fn admit(
    request: Request<Incoming>,
    user: Option<&User>,
    gate: &Gate,
    served: &Served,
) -> Response<Body> {
    let authorization = request
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let path = request.uri().path();
    match gate
        .check(user, authorization, request.method(), path)
        .await
    {
        Ok(user) => {
            tracing::debug!(user = %user.name, method = %request.method(), path, "kubelet API request");
            handle(request, served).await
        }
        Err(refusal) => {
            if let crate::auth::Refusal::Unavailable { reason, .. } = &refusal {
                tracing::warn!(%reason, path, "kubelet API: cannot authenticate or authorize a request");
            }
            full(refusal.status(), refusal.message())
        }
    }
}

async fn handle(request: Request<Incoming>, served: &Served) -> Response<Body> {
    let pods = served.pods.as_ref();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or("").to_owned();
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (request.method(), parts.as_slice()) {
        (&Method::GET, ["healthz"]) => full(StatusCode::OK, "ok"),
        (&Method::GET, ["metrics", "resource"]) => metrics(crate::metrics::render(
            crate::metrics::NodeSample::of_this_process(),
            &crate::metrics::containers(pods),
            k8s_openapi::jiff::Timestamp::now().as_millisecond(),
        )),
        (&Method::GET, ["metrics"]) => {
            metrics(crate::metrics::render_queries(&served.queries.snapshot()))
        }
        (&Method::GET, ["containerLogs", namespace, pod, container]) => {
            container_logs(pods, namespace, pod, container, &query).await
        }
        (_, [verb @ ("exec" | "attach" | "portForward" | "run"), ..]) => full(
            StatusCode::BAD_REQUEST,
            format!(
                "{verb} is not supported for wasm pods: a WebAssembly guest has no shell, terminal or network to attach to"
            ),
        ),
        _ => full(StatusCode::NOT_FOUND, format!("404 page not found: {path}")),
    }
}

async fn container_logs(
    pods: &PodTable,
    namespace: &str,
    pod: &str,
    container: &str,
    query: &str,
) -> Response<Body> {
    let options = match LogOptions::from_query(query) {
        Ok(options) => options,
        Err(reason) => return full(StatusCode::BAD_REQUEST, reason),
    };
    let Some(entry) = pods.get(namespace, pod) else {
        return full(
            StatusCode::NOT_FOUND,
            format!("pod {namespace}/{pod} is not on this node"),
        );
    };
    let Some(run) = entry.container(container) else {
        return full(
            StatusCode::NOT_FOUND,
            format!("container {container:?} is not in pod {namespace}/{pod}"),
        );
    };
    let restart_count = if options.previous {
        if run.restart_count == 0 {
            return full(
                StatusCode::BAD_REQUEST,
                format!("previous terminated container {container:?} in pod {pod:?} not found"),
            );
        }
        run.restart_count - 1
    } else {
        run.restart_count
    };
    let path = log_path(&entry.dir, container, restart_count);
    let follow = options.follow && !options.previous;
    let mut reader = match LogReader::open(&path, options) {
        Ok(reader) => reader,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return full(
                StatusCode::BAD_REQUEST,
                format!("container {container:?} in pod {pod:?} is waiting to start"),
            );
        }
        Err(e) => {
            return full(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot read the log: {e}"),
            );
        }
    };
    let first = match reader.read_available() {
        Ok(bytes) => bytes,
        Err(e) => {
            return full(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot read the log: {e}"),
            );
        }
    };
    if !follow {
        return full(StatusCode::OK, first);
    }
    // Follow: stream what is there, then what is written, until the run
    // ends (or a newer run replaces it) and the file is drained.
    let container = container.to_owned();
    let stream = futures_util::stream::unfold(
        (Some(first), reader, entry, false),
        move |(pending, mut reader, entry, done)| {
            let container = container.clone();
            async move {
                if let Some(bytes) = pending {
                    return Some((
                        Ok(Frame::data(Bytes::from(bytes))),
                        (None, reader, entry, false),
                    ));
                }
                if done || reader.exhausted() {
                    return None;
                }
                loop {
                    let still_running = entry
                        .container(&container)
                        .is_some_and(|r| r.running.is_some() && r.restart_count == restart_count);
                    let bytes = reader.read_available().unwrap_or_default();
                    if !bytes.is_empty() {
                        return Some((
                            Ok(Frame::data(Bytes::from(bytes))),
                            (None, reader, entry, !still_running),
                        ));
                    }
                    if !still_running {
                        return None;
                    }
                    tokio::time::sleep(FOLLOW_POLL).await;
                }
            }
        },
    );
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/plain; charset=utf-8")
        .body(BodyExt::boxed(StreamBody::new(stream)))
        .expect("a valid response")
}
