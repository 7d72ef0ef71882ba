//! What the kubelet API answers: each request admitted by the [`Gate`]
//! first, then routed by its method and path alone.
//!
//! This module owns the routes (`/healthz`, `/containerLogs`,
//! `/metrics/resource`, `/metrics`, a clear refusal for `exec`, `attach`,
//! `portForward` and `run`) and the check of the names in a path. It must
//! never decode or normalise a path: names must be the DNS names
//! Kubernetes allows as sent, so `..`, `%2f` and the like are refused
//! before any lookup. It never reads a request body.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use sandlet_data::QueryCounters;

use crate::api::auth::{Gate, Refusal, User};
use crate::api::container_logs::container_logs;
use crate::api::metrics;
use crate::api::response::{self, Body, full};
use crate::pods::table::PodTable;

/// Whole logs read at once; more requests wait their turn. A read holds
/// up to a few times [`crate::pods::logs::MAX_LOG_FILE_BYTES`] in memory.
const MAX_LOG_READS: usize = 4;

/// What the API's handlers read: the node's pods and its query counters.
pub(crate) struct Served {
    pods: Arc<PodTable>,
    queries: Arc<QueryCounters>,
    /// [`MAX_LOG_READS`] permits.
    log_reads: tokio::sync::Semaphore,
}

impl Served {
    /// What the handlers of a node with `pods` and `queries` read.
    pub(crate) fn new(pods: Arc<PodTable>, queries: Arc<QueryCounters>) -> Served {
        Served {
            pods,
            queries,
            log_reads: tokio::sync::Semaphore::new(MAX_LOG_READS),
        }
    }
}

/// Decides the request with `gate`, then routes it.
pub(crate) async fn admit(
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
            if let Refusal::Unavailable { reason, .. } = &refusal {
                tracing::warn!(%reason, path, "kubelet API: cannot authenticate or authorize a request");
            }
            full(refusal.status(), refusal.message())
        }
    }
}

/// What a request asks for, decided from its method and path alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route<'a> {
    /// `/healthz`.
    Healthz,
    /// `/metrics/resource`.
    ResourceMetrics,
    /// `/metrics`: the node's own counters.
    Metrics,
    /// `/containerLogs/{namespace}/{pod}/{container}`, names checked.
    ContainerLogs {
        /// The pod's namespace.
        namespace: &'a str,
        /// The pod's name.
        pod: &'a str,
        /// The container's name.
        container: &'a str,
    },
    /// `exec`, `attach`, `portForward` or `run`.
    Unsupported(&'a str),
    /// A route with a name that is not a Kubernetes name (400).
    Invalid(String),
    /// Anything else (404).
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
                Err(invalid) => Route::Invalid(invalid.to_string()),
            }
        }
        (_, [verb @ ("exec" | "attach" | "portForward" | "run"), ..]) => Route::Unsupported(verb),
        _ => Route::NotFound,
    }
}

/// Answers an admitted request.
async fn handle(request: Request<Incoming>, served: &Served) -> Response<Body> {
    let path = request.uri().path();
    let query = request.uri().query().unwrap_or("");
    match route(request.method(), path) {
        Route::Healthz => full(StatusCode::OK, "ok"),
        Route::ResourceMetrics => response::metrics(metrics::render(
            metrics::NodeSample::of_this_process(),
            &metrics::containers(&served.pods),
            k8s_openapi::jiff::Timestamp::now().as_millisecond(),
        )),
        Route::Metrics => response::metrics(metrics::render_queries(&served.queries.snapshot())),
        Route::ContainerLogs {
            namespace,
            pod,
            container,
        } => {
            container_logs(
                &served.pods,
                &served.log_reads,
                namespace,
                pod,
                container,
                query,
            )
            .await
        }
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

/// A name in a path that is not the kind of name Kubernetes allows there.
#[derive(Debug, thiserror::Error)]
#[error("invalid {what} name {shown:?} in the path: it must be {rule} (paths are not decoded)")]
struct InvalidName {
    /// `namespace`, `pod` or `container`.
    what: &'static str,
    /// At most 80 characters of what was sent.
    shown: String,
    /// What the name must be.
    rule: &'static str,
}

/// `text` as sent (never decoded) must be a `kind` name: anything else,
/// `..`, `%2e`, `%2f`, NUL or upper case included, is refused by name.
fn check_name(what: &'static str, text: &str, kind: Name) -> Result<(), InvalidName> {
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
    let rule = match kind {
        Name::Label => {
            "a DNS label: at most 63 of a-z, 0-9 and '-', starting and ending with a letter or digit"
        }
        Name::Subdomain => {
            "a DNS subdomain: at most 253 of a-z, 0-9, '-' and '.', each part starting and ending with a letter or digit"
        }
    };
    Err(InvalidName {
        what,
        shown: text.chars().take(80).collect(),
        rule,
    })
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
            let error = check_name("container", bad, Name::Label)
                .unwrap_err()
                .to_string();
            assert!(error.starts_with("invalid container name"), "{error}");
        }
        for bad in ["..", ".a", "a.", "a..b", "%2e", long_subdomain.as_str()] {
            assert!(check_name("pod", bad, Name::Subdomain).is_err(), "{bad:?}");
        }
        // A refusal shows at most 80 characters of what was sent.
        let error = check_name("namespace", &"X".repeat(100_000), Name::Label)
            .unwrap_err()
            .to_string();
        assert!(error.len() < 400, "{}", error.len());
    }
}
