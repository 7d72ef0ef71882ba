//! Why the kubelet API could not start.
//!
//! This module owns [`ServerError`]. It must never carry a secret: key
//! files are named by path, never shown.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A certificate, key or CA file cannot be read.
    #[error("cannot read {what} {}: {source}", path.display())]
    Read {
        /// `certificate`, `private key` or `client CA`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A certificate, key or CA file holds no usable PEM.
    #[error("cannot read {what} {}: {source}", path.display())]
    Pem {
        /// `certificate`, `private key` or `client CA`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    /// A certificate or CA file holds no certificate.
    #[error("cannot read {what} {}: no PEM certificate in it", path.display())]
    NoCertificate {
        /// `certificate` or `client CA`.
        what: &'static str,
        /// The file.
        path: PathBuf,
    },
    /// The certificate, key and CAs do not make a TLS configuration.
    #[error("invalid TLS configuration: {0}")]
    Tls(#[source] rustls::Error),
    /// A client CA is not a usable trust anchor.
    #[error("invalid TLS configuration: client CA: {0}")]
    ClientCa(#[source] rustls::Error),
    /// The client CAs do not make a verifier.
    #[error("invalid TLS configuration: client CA: {0}")]
    Verifier(#[source] rustls::server::VerifierBuilderError),
    /// No self-signed certificate could be made.
    #[error("invalid TLS configuration: {0}")]
    SelfSigned(#[source] rcgen::Error),
    /// The API's address cannot be listened on.
    #[error("cannot listen on {address}: {source}")]
    Listen {
        /// `--address` and `--port`.
        address: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}
