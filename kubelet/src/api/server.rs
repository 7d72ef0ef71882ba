//! The kubelet HTTPS API's listener: TLS, HTTP/1.1 and HTTP/2, and the
//! limits that keep any one client to its share.
//!
//! This module owns the listener and its connections. At most
//! [`MAX_CONNECTIONS`] connections at once (more are closed on accept),
//! [`HANDSHAKE_TIMEOUT`] to finish TLS, [`HEADER_TIMEOUT`] to send a
//! request's head, heads of at most [`MAX_HEAD_BYTES`] (431 beyond),
//! [`MAX_STREAMS`] concurrent HTTP/2 streams, and a connection with no
//! request in progress that moves no byte for [`IDLE_TIMEOUT`] is closed.
//! Every request then passes [`Gate::check`](crate::api::auth::Gate)
//! before it is routed ([`crate::api::routes`]). It must never read a
//! request body, nor serve a request the gate has not admitted.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls_pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::api::auth::{Gate, User};
use crate::api::certs::ServingCerts;
use crate::api::error::ServerError;
use crate::api::response::Body;
use crate::api::routes::{Served, admit};
use crate::api::tls::server_config;

/// Connections served at once; more are closed as they are accepted.
pub(crate) const MAX_CONNECTIONS: usize = 1024;
/// Time a client has to finish the TLS handshake.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a client has to send a request's head (HTTP/1).
pub(crate) const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection with no request in progress that moves no byte for this
/// long is closed.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest request head (HTTP/1 buffer, HTTP/2 header list).
pub(crate) const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Concurrent HTTP/2 streams on one connection.
pub(crate) const MAX_STREAMS: u32 = 100;

/// Who the API admits: client certificates chaining to `client_ca` (none:
/// no certificate is asked for), then whatever `gate` decides.
pub(crate) struct AccessControl {
    /// `--client-ca-file`, or the kubeconfig's CA.
    pub(crate) client_ca: Vec<CertificateDer<'static>>,
    /// Authentication and authorization of every request.
    pub(crate) gate: Gate,
}

/// The HTTP side of every connection, limits set.
type Http = hyper_util::server::conn::auto::Builder<TokioExecutor>;

/// Serves the kubelet API on `address` until the task is dropped.
pub(crate) async fn serve(
    address: SocketAddr,
    certs: Arc<ServingCerts>,
    access: AccessControl,
    served: Arc<Served>,
) -> Result<(), ServerError> {
    let acceptor = TlsAcceptor::from(Arc::new(server_config(certs, access.client_ca)?));
    let gate = Arc::new(access.gate);
    let listener = TcpListener::bind(address)
        .await
        .map_err(|source| ServerError::Listen { address, source })?;
    let mut http = Http::new(TokioExecutor::new());
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
        let connection = Connection {
            acceptor: acceptor.clone(),
            served: served.clone(),
            gate: gate.clone(),
            http: http.clone(),
            peer,
        };
        tokio::spawn(async move {
            let _permit = permit;
            connection.serve(tcp).await;
        });
    }
}

/// One accepted connection and what serving it takes.
struct Connection {
    acceptor: TlsAcceptor,
    served: Arc<Served>,
    gate: Arc<Gate>,
    http: Arc<Http>,
    peer: SocketAddr,
}

impl Connection {
    /// The TLS handshake, then requests until the client is done, the
    /// connection fails, or it is idle too long.
    async fn serve(self, tcp: TcpStream) {
        let peer = self.peer;
        let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, self.acceptor.accept(tcp)).await {
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
        let (served, gate) = (self.served, self.gate);
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
        let connection = self.http.serve_connection(TokioIo::new(io), service);
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
