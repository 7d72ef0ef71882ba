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
//!
//! No client can hold more than its share: at most [`MAX_CONNECTIONS`]
//! connections at once (more are closed on accept), [`HANDSHAKE_TIMEOUT`]
//! to finish TLS, [`HEADER_TIMEOUT`] to send a request's head, heads of at
//! most [`MAX_HEAD_BYTES`] (431 beyond), [`MAX_STREAMS`] concurrent HTTP/2
//! streams, and a connection with no request in progress that moves no
//! byte for [`IDLE_TIMEOUT`] is closed. Request bodies are never read (no
//! route takes one). Paths are matched as sent, never decoded or
//! normalized: names in them must be the DNS names Kubernetes allows, so
//! `..`, `%2f` and the like are refused before any lookup.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::auth::{Gate, User};
use crate::certs::ServingCerts;
use crate::context::PodTable;
use crate::logs::{FOLLOW_POLL, LogOptions, LogReader, log_path};
use sandlet_data::QueryCounters;

type Body = BoxBody<Bytes, Infallible>;

/// Connections served at once; more are closed as they are accepted.
pub const MAX_CONNECTIONS: usize = 1024;
/// Time a client has to finish the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a client has to send a request's head (HTTP/1).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection with no request in progress that moves no byte for this
/// long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest request head (HTTP/1 buffer, HTTP/2 header list).
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Concurrent HTTP/2 streams on one connection.
pub const MAX_STREAMS: u32 = 100;

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

/// Whole logs read at once; more requests wait their turn. A read holds
/// up to a few times [`crate::logs::MAX_LOG_FILE_BYTES`] in memory.
pub const MAX_LOG_READS: usize = 4;

/// What the API's handlers read: the node's pods and its query counters.
pub struct Served {
    pub pods: Arc<PodTable>,
    pub queries: Arc<QueryCounters>,
    /// [`MAX_LOG_READS`] permits.
    pub log_reads: tokio::sync::Semaphore,
}

impl Served {
    pub fn new(pods: Arc<PodTable>, queries: Arc<QueryCounters>) -> Served {
        Served {
            pods,
            queries,
            log_reads: tokio::sync::Semaphore::new(MAX_LOG_READS),
        }
    }
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
    let mut http = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    http.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES);
    http.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEAD_BYTES as u32)
        .max_concurrent_streams(MAX_STREAMS);
    let http = Arc::new(http);
    let connections = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    // Refused connections are logged at most once a minute.
    let mut last_warning: Option<Instant> = None;
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(error) => {
                tracing::warn!(%error, "kubelet API: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            if last_warning.is_none_or(|at| at.elapsed() >= Duration::from_secs(60)) {
                last_warning = Some(Instant::now());
                tracing::warn!(%peer, limit = MAX_CONNECTIONS, "kubelet API: too many connections; closing new ones");
            }
            drop(tcp);
            continue;
        };
        let acceptor = acceptor.clone();
        let served = served.clone();
        let gate = gate.clone();
        let http = http.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(error)) => {
                    tracing::debug!(%peer, %error, "kubelet API: TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "kubelet API: TLS handshake timed out");
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
            let activity = Arc::new(Activity::new());
            let io = Watched {
                inner: tls,
                activity: activity.clone(),
            };
            let in_service = activity.clone();
            let service = hyper::service::service_fn(move |request| {
                let busy = Busy::new(&in_service);
                let served = served.clone();
                let gate = gate.clone();
                let user = user.clone();
                async move {
                    let response = admit(request, user.as_deref(), &gate, &served).await;
                    Ok::<_, Infallible>(response.map(|body| Guarded { body, _busy: busy }))
                }
            });
            let connection = http.serve_connection(TokioIo::new(io), service);
            tokio::pin!(connection);
            loop {
                tokio::select! {
                    ended = connection.as_mut() => {
                        if let Err(error) = ended {
                            tracing::debug!(%peer, %error, "kubelet API: connection ended with an error");
                        }
                        return;
                    }
                    () = tokio::time::sleep(IDLE_TIMEOUT / 4) => {
                        if activity.idle_for() >= IDLE_TIMEOUT {
                            tracing::debug!(%peer, "kubelet API: closing an idle connection");
                            return;
                        }
                    }
                }
            }
        });
    }
}

/// When a connection last moved a byte, and how many of its requests are
/// in progress (from arrival until the response body is sent or dropped).
struct Activity {
    epoch: Instant,
    last_ms: AtomicU64,
    busy: AtomicUsize,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            epoch: Instant::now(),
            last_ms: AtomicU64::new(0),
            busy: AtomicUsize::new(0),
        }
    }

    fn touch(&self) {
        let now = self.epoch.elapsed().as_millis() as u64;
        self.last_ms.store(now, Ordering::Relaxed);
    }

    /// How long nothing has happened: zero while a request is in progress.
    fn idle_for(&self) -> Duration {
        if self.busy.load(Ordering::Relaxed) > 0 {
            return Duration::ZERO;
        }
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.epoch.elapsed().saturating_sub(last)
    }
}

/// One request in progress on a connection.
struct Busy(Arc<Activity>);

impl Busy {
    fn new(activity: &Arc<Activity>) -> Busy {
        activity.busy.fetch_add(1, Ordering::Relaxed);
        Busy(activity.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body that keeps its request counted as in progress.
struct Guarded {
    body: Body,
    _busy: Busy,
}

impl hyper::body::Body for Guarded {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// A connection's transport, noting every byte that moves.
struct Watched<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
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

/// What a request asks for, decided from its method and path alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route<'a> {
    Healthz,
    /// `/metrics/resource`.
    ResourceMetrics,
    /// `/metrics`: the node's own counters.
    Metrics,
    /// `/containerLogs/{namespace}/{pod}/{container}`, names checked.
    ContainerLogs {
        namespace: &'a str,
        pod: &'a str,
        container: &'a str,
    },
    /// `exec`, `attach`, `portForward` or `run`.
    Unsupported(&'a str),
    /// A route with a name that is not a Kubernetes name (400).
    Invalid(String),
    NotFound,
}

/// Routes `method` and `path` (as sent, never decoded).
pub fn route<'a>(method: &Method, path: &'a str) -> Route<'a> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method, parts.as_slice()) {
        (&Method::GET, ["healthz"]) => Route::Healthz,
        (&Method::GET, ["metrics", "resource"]) => Route::ResourceMetrics,
        (&Method::GET, ["metrics"]) => Route::Metrics,
        (&Method::GET, ["containerLogs", namespace, pod, container]) => {
            let checked = check_name("namespace", namespace, Name::Label)
                .and_then(|()| check_name("pod", pod, Name::Subdomain))
                .and_then(|()| check_name("container", container, Name::Label));
            match checked {
                Ok(()) => Route::ContainerLogs {
                    namespace,
                    pod,
                    container,
                },
                Err(reason) => Route::Invalid(reason),
            }
        }
        (_, [verb @ ("exec" | "attach" | "portForward" | "run"), ..]) => Route::Unsupported(verb),
        _ => Route::NotFound,
    }
}

async fn handle(request: Request<Incoming>, served: &Served) -> Response<Body> {
    let path = request.uri().path();
    let query = request.uri().query().unwrap_or("");
    match route(request.method(), path) {
        Route::Healthz => full(StatusCode::OK, "ok"),
        Route::ResourceMetrics => metrics(crate::metrics::render(
            crate::metrics::NodeSample::of_this_process(),
            &crate::metrics::containers(&served.pods),
            k8s_openapi::jiff::Timestamp::now().as_millisecond(),
        )),
        Route::Metrics => metrics(crate::metrics::render_queries(&served.queries.snapshot())),
        Route::ContainerLogs {
            namespace,
            pod,
            container,
        } => container_logs(served, namespace, pod, container, query).await,
        Route::Unsupported(verb) => full(
            StatusCode::BAD_REQUEST,
            format!(
                "{verb} is not supported for wasm pods: a WebAssembly guest has no shell, terminal or network to attach to"
            ),
        ),
        Route::Invalid(reason) => full(StatusCode::BAD_REQUEST, reason),
        Route::NotFound => {
            let shown: String = path.chars().take(200).collect();
            full(
                StatusCode::NOT_FOUND,
                format!("404 page not found: {shown}"),
            )
        }
    }
}

/// The kinds of name Kubernetes allows in a path.
#[derive(Clone, Copy)]
enum Name {
    /// RFC 1123 label: namespaces and containers.
    Label,
    /// RFC 1123 subdomain: pods.
    Subdomain,
}

/// `text` as sent (never decoded) must be a `kind` name: anything else,
/// `..`, `%2e`, `%2f`, NUL or upper case included, is refused by name.
fn check_name(what: &str, text: &str, kind: Name) -> Result<(), String> {
    let label = |part: &str| {
        let bytes = part.as_bytes();
        !bytes.is_empty()
            && bytes.len() <= 63
            && bytes
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
            && bytes[0] != b'-'
            && bytes[bytes.len() - 1] != b'-'
    };
    let valid = match kind {
        Name::Label => label(text),
        Name::Subdomain => text.len() <= 253 && text.split('.').all(label),
    };
    if valid {
        return Ok(());
    }
    let shown: String = text.chars().take(80).collect();
    let rule = match kind {
        Name::Label => {
            "a DNS label: at most 63 of a-z, 0-9 and '-', starting and ending with a letter or digit"
        }
        Name::Subdomain => {
            "a DNS subdomain: at most 253 of a-z, 0-9, '-' and '.', each part starting and ending with a letter or digit"
        }
    };
    Err(format!(
        "invalid {what} name {shown:?} in the path: it must be {rule} (paths are not decoded)"
    ))
}

async fn container_logs(
    served: &Served,
    namespace: &str,
    pod: &str,
    container: &str,
    query: &str,
) -> Response<Body> {
    let options = match LogOptions::from_query(query) {
        Ok(options) => options,
        Err(reason) => return full(StatusCode::BAD_REQUEST, reason),
    };
    let Some(entry) = served.pods.get(namespace, pod) else {
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
    let permit = served.log_reads.acquire().await;
    let first = match reader.read_available() {
        Ok(bytes) => bytes,
        Err(e) => {
            return full(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot read the log: {e}"),
            );
        }
    };
    drop(permit);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_in_paths_are_kubernetes_names_as_sent() {
        for ok in ["default", "a", "pod-1", "x9"] {
            check_name("container", ok, Name::Label).unwrap();
        }
        for ok in ["web-0", "a.b.c", "job-7d9f.x"] {
            check_name("pod", ok, Name::Subdomain).unwrap();
        }
        let long_label = "a".repeat(64);
        let long_subdomain = ["a"; 128].join("."); // 255 characters
        for bad in [
            "",
            ".",
            "..",
            "%2e%2e",
            "..%2f..%2fetc",
            "a%00",
            "a\0",
            "Main",
            "-a",
            "a-",
            "a_b",
            "a/b",
            "ä",
            long_label.as_str(),
        ] {
            let error = check_name("container", bad, Name::Label).unwrap_err();
            assert!(error.starts_with("invalid container name"), "{error}");
        }
        for bad in ["..", ".a", "a.", "a..b", "%2e", long_subdomain.as_str()] {
            assert!(check_name("pod", bad, Name::Subdomain).is_err(), "{bad:?}");
        }
        // A refusal shows at most 80 characters of what was sent.
        let error = check_name("namespace", &"X".repeat(100_000), Name::Label).unwrap_err();
        assert!(error.len() < 400, "{}", error.len());
    }
}
