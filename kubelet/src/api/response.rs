//! The responses of the kubelet API: plain text and Prometheus text, with
//! the body type every handler returns.
//!
//! This module owns how a response is framed. It must never put anything
//! but the text it is given into a body.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::{Response, StatusCode};

/// The body of every response: whole, or streamed (`kubectl logs -f`).
pub(crate) type Body = BoxBody<Bytes, Infallible>;

/// A Prometheus text exposition.
pub(crate) fn metrics(text: String) -> Response<Body> {
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/plain; version=0.0.4; charset=utf-8")
        .body(Full::new(Bytes::from(text)).boxed())
        .expect("a valid response")
}

/// A plain-text response with `status`.
pub(crate) fn full(status: StatusCode, text: impl Into<Bytes>) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain; charset=utf-8")
        .body(Full::new(text.into()).boxed())
        .expect("a valid response")
}
