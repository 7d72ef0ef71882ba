//! The certificates the kubelet API serves with and the CAs it trusts:
//! `--tls-cert-file` and `--tls-private-key-file`, a self-signed
//! certificate until the cluster issues one, `--client-ca-file`, and the
//! TLS configuration made of them.
//!
//! This module owns reading those files and the TLS settings (protocol
//! versions, client certificates asked for but not required, ALPN). It
//! must never accept a client certificate that does not chain to the
//! client CA, nor ask for one when there is no client CA.

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

use crate::api::certs::ServingCerts;
use crate::api::error::ServerError;

/// A certificate chain and key, PEM.
pub(crate) struct ServingCert {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl ServingCert {
    /// The chain and key as rustls serves them (the key must match).
    pub(crate) fn certified(self) -> Result<rustls::sign::CertifiedKey, ServerError> {
        let provider = rustls::crypto::ring::default_provider();
        rustls::sign::CertifiedKey::from_der(self.chain, self.key, &provider)
            .map_err(ServerError::Tls)
    }
}

/// The bytes of `path`, the `what` file.
fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, ServerError> {
    std::fs::read(path).map_err(|source| ServerError::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

/// The certificates in `pem`, read from the `what` file `path`: at least
/// one.
fn certificates(
    what: &'static str,
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, ServerError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| ServerError::Pem {
            what,
            path: path.to_owned(),
            source,
        })?;
    if certs.is_empty() {
        return Err(ServerError::NoCertificate {
            what,
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// Reads `--tls-cert-file` and `--tls-private-key-file`.
pub(crate) fn load_cert(cert: &Path, key: &Path) -> Result<ServingCert, ServerError> {
    let cert_pem = read("certificate", cert)?;
    let key_pem = read("private key", key)?;
    let chain = certificates("certificate", cert, &cert_pem)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|source| ServerError::Pem {
        what: "private key",
        path: key.to_owned(),
        source,
    })?;
    Ok(ServingCert { chain, key })
}

/// A self-signed serving certificate for the node's name and address.
pub(crate) fn self_signed(node_name: &str, ip: &str) -> Result<ServingCert, ServerError> {
    let names = vec![node_name.to_owned(), ip.to_owned()];
    let certified = rcgen::generate_simple_self_signed(names).map_err(ServerError::SelfSigned)?;
    Ok(ServingCert {
        chain: vec![certified.cert.der().clone()],
        key: PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into()),
    })
}

/// Reads `--client-ca-file`: the CA certificates (PEM) that client
/// certificates must chain to.
pub(crate) fn load_client_ca(path: &Path) -> Result<Vec<CertificateDer<'static>>, ServerError> {
    certificates("client CA", path, &read("client CA", path)?)
}

/// The API's TLS configuration: the certificate `certs` holds at each
/// handshake; client certificates chaining to `client_ca` asked for (none:
/// not asked for) but not required, as token and anonymous requests come
/// without one; HTTP/2 or HTTP/1.1.
pub(crate) fn server_config(
    certs: Arc<ServingCerts>,
    client_ca: Vec<CertificateDer<'static>>,
) -> Result<ServerConfig, ServerError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(ServerError::Tls)?;
    let builder = if client_ca.is_empty() {
        builder.with_no_client_auth()
    } else {
        let mut roots = rustls::RootCertStore::empty();
        for ca in client_ca {
            roots.add(ca).map_err(ServerError::ClientCa)?;
        }
        // A certificate is asked for but not required: token and anonymous
        // requests come without one. One that is presented must verify.
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(ServerError::Verifier)?;
        builder.with_client_cert_verifier(verifier)
    };
    let mut config = builder.with_cert_resolver(certs);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}
