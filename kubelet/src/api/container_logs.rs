//! `/containerLogs`: a container's log, whole or followed, for
//! `kubectl logs` (`-f`, `--previous`, `--tail`, `--since`, ...).
//!
//! This module owns reading a run's log for the API: which run's file
//! (the current one, or the previous with `previous`), at most a few
//! whole reads at once, and following a running container until its run
//! ends. It must never serve a file that is not a container's log of a
//! pod in the [`PodTable`].

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::{Response, StatusCode};
use tokio::sync::Semaphore;

use crate::api::response::{Body, full};
use crate::pods::logs::{FOLLOW_POLL, LogOptions, LogReader, log_path};
use crate::pods::table::PodTable;

/// The log of `container` in pod `namespace/pod`, as `query` asks for it;
/// a whole read holds one of `log_reads`' permits.
pub(crate) async fn container_logs(
    pods: &PodTable,
    log_reads: &Semaphore,
    namespace: &str,
    pod: &str,
    container: &str,
    query: &str,
) -> Response<Body> {
    let options = match LogOptions::from_query(query) {
        Ok(options) => options,
        Err(reason) => return full(StatusCode::BAD_REQUEST, reason.to_string()),
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
    let permit = log_reads.acquire().await;
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
