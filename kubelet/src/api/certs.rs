//! The kubelet API's serving certificate when none is given
//! (`--tls-cert-file`): self-signed at first, then issued by the cluster's
//! `kubernetes.io/kubelet-serving` signer through a CertificateSigningRequest,
//! kept under the state directory, and renewed before it expires, as the
//! kubelet does with `serverTLSBootstrap`.
//!
//! This module owns the certificate in use ([`ServingCerts`], which the TLS
//! layer asks on every handshake), the stored copy, and the request loop
//! ([`run`]). Nothing approves the request here: as for the kubelet, a
//! cluster admin (`kubectl certificate approve`) or an approver controller
//! does; until then the node keeps serving what it has. It must never
//! approve its own request, nor serve a certificate that has expired or
//! does not name the node's address.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use x509_parser::error::X509Error;

use crate::cluster::csr::{RequestError, now_unix, request_certificate, store_pem};

/// The signer of kubelet serving certificates.
pub(crate) const SIGNER: &str = "kubernetes.io/kubelet-serving";
/// The stored certificate and key (PEM), in the `pki` directory of the
/// state directory (the kubelet's name for it).
pub(crate) const STORED: &str = "kubelet-server-current.pem";
/// First wait after a failed request; doubles up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_secs(30);
/// Longest wait between failed requests.
const RETRY_MAX: Duration = Duration::from_secs(15 * 60);

/// Why a certificate is not usable as the node's serving certificate.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CertError {
    #[error("certificate: {0}")]
    Pem(#[source] rustls_pki_types::pem::Error),
    #[error("no certificate")]
    Missing,
    #[error("key: {0}")]
    Key(#[source] rustls_pki_types::pem::Error),
    #[error("{0}")]
    Mismatch(#[source] rustls::Error),
    #[error("certificate: {0}")]
    Parse(#[source] X509Error),
    #[error("expired")]
    Expired,
    #[error("does not name {0}")]
    OtherAddress(IpAddr),
}

/// Why one serving-certificate request gave no certificate to serve.
#[derive(Debug, thiserror::Error)]
enum IssueError {
    #[error("{0}")]
    Key(#[source] rcgen::Error),
    #[error("node name as a DNS name: {0}")]
    DnsName(#[source] rcgen::Error),
    #[error("{0}")]
    Request(#[source] RequestError),
    #[error("the issued certificate is not usable: {0}")]
    Unusable(#[source] CertError),
}

/// The certificate the kubelet API serves with; replaced when a new one
/// is issued, used by the next handshake.
#[derive(Debug)]
pub(crate) struct ServingCerts {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ServingCerts {
    pub(crate) fn new(key: CertifiedKey) -> Self {
        ServingCerts {
            current: RwLock::new(Arc::new(key)),
        }
    }

    pub(crate) fn current(&self) -> Arc<CertifiedKey> {
        self.current.read().expect("serving cert lock").clone()
    }

    fn set(&self, key: CertifiedKey) {
        *self.current.write().expect("serving cert lock") = Arc::new(key);
    }
}

impl ResolvesServerCert for ServingCerts {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// What the certificate is for: the node's name and address.
#[derive(Debug, Clone)]
pub(crate) struct Subject {
    pub(crate) node: String,
    pub(crate) ip: IpAddr,
}

/// An issued certificate with its key, and when to renew it.
pub(crate) struct Issued {
    pub(crate) key: CertifiedKey,
    /// Unix seconds.
    pub(crate) not_before: i64,
    pub(crate) not_after: i64,
}

impl Issued {
    /// When to ask for the next one: 80 % into its lifetime (the kubelet
    /// picks between 70 % and 90 %).
    pub(crate) fn renew_at(&self) -> i64 {
        self.not_before + (self.not_after - self.not_before) * 4 / 5
    }
}

/// A certificate chain and key (PEM) as a serving certificate for
/// `subject`: the key must match and the leaf must name the node's address
/// and still be valid.
pub(crate) fn parse(
    chain_pem: &[u8],
    key_pem: &[u8],
    subject: &Subject,
) -> Result<Issued, CertError> {
    let chain = CertificateDer::pem_slice_iter(chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(CertError::Pem)?;
    let leaf = chain.first().ok_or(CertError::Missing)?.clone();
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(CertError::Key)?;
    let provider = rustls::crypto::ring::default_provider();
    let key = CertifiedKey::from_der(chain, key, &provider).map_err(CertError::Mismatch)?;
    let (_, cert) =
        x509_parser::parse_x509_certificate(&leaf).map_err(|e| CertError::Parse(e.into()))?;
    let validity = cert.validity();
    let (not_before, not_after) = (
        validity.not_before.timestamp(),
        validity.not_after.timestamp(),
    );
    if now_unix() >= not_after {
        return Err(CertError::Expired);
    }
    let names_ip = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .is_some_and(|san| {
            san.value.general_names.iter().any(|name| match name {
                x509_parser::extensions::GeneralName::IPAddress(bytes) => match subject.ip {
                    IpAddr::V4(ip) => *bytes == ip.octets(),
                    IpAddr::V6(ip) => *bytes == ip.octets(),
                },
                _ => false,
            })
        });
    if !names_ip {
        return Err(CertError::OtherAddress(subject.ip));
    }
    Ok(Issued {
        key,
        not_before,
        not_after,
    })
}

/// The stored certificate, if there is one still usable for `subject`.
pub(crate) fn load_stored(pki: &Path, subject: &Subject) -> Option<Issued> {
    let path = pki.join(STORED);
    let pem = std::fs::read(&path).ok()?;
    match parse(&pem, &pem, subject) {
        Ok(issued) => Some(issued),
        Err(reason) => {
            tracing::info!(path = %path.display(), %reason, "not using the stored serving certificate");
            None
        }
    }
}

/// Writes chain and key to `pki/STORED` (mode 0600, replaced atomically).
fn store(pki: &Path, chain_pem: &str, key_pem: &str) -> std::io::Result<PathBuf> {
    store_pem(pki, STORED, chain_pem, key_pem)
}

/// The certificate a node asks for, as the kubelet-serving signer requires
/// it: CN `system:node:<name>`, O `system:nodes`, the name and address as
/// subject alternative names.
fn params(subject: &Subject) -> Result<rcgen::CertificateParams, IssueError> {
    let mut params =
        rcgen::CertificateParams::new(Vec::<String>::new()).map_err(IssueError::Key)?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "system:nodes");
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!("system:node:{}", subject.node),
    );
    params.subject_alt_names = vec![
        rcgen::SanType::DnsName(
            subject
                .node
                .clone()
                .try_into()
                .map_err(IssueError::DnsName)?,
        ),
        rcgen::SanType::IpAddress(subject.ip),
    ];
    Ok(params)
}

/// A new key and a PKCS#10 request for `subject` (PEM each).
fn new_request(subject: &Subject) -> Result<(String, String), IssueError> {
    let key = rcgen::KeyPair::generate().map_err(IssueError::Key)?;
    let request = params(subject)?
        .serialize_request(&key)
        .and_then(|r| r.pem())
        .map_err(IssueError::Key)?;
    Ok((request, key.serialize_pem()))
}

/// Makes one serving-certificate request and waits for its certificate.
async fn request(
    client: &kube::Client,
    subject: &Subject,
) -> Result<(Issued, String, String), IssueError> {
    let (csr_pem, key_pem) = new_request(subject)?;
    let chain_pem = request_certificate(
        client,
        csr_pem,
        SIGNER,
        &["digital signature", "server auth"],
        "csr-",
    )
    .await
    .map_err(IssueError::Request)?;
    let issued =
        parse(chain_pem.as_bytes(), key_pem.as_bytes(), subject).map_err(IssueError::Unusable)?;
    Ok((issued, chain_pem, key_pem))
}

/// Keeps `certs` issued by the cluster: asks for a certificate now (or at
/// `renew_at`, unix seconds, when a usable stored one is served),
/// serves it once signed, stores it in `pki`, and renews it; retries
/// failures from 30 s, doubling to 15 min. Runs until dropped.
pub(crate) async fn run(
    client: kube::Client,
    subject: Subject,
    pki: PathBuf,
    certs: Arc<ServingCerts>,
    mut renew_at: Option<i64>,
) {
    let mut retry = RETRY_FIRST;
    loop {
        if let Some(at) = renew_at {
            let wait = (at - now_unix()).max(0) as u64;
            tokio::time::sleep(Duration::from_secs(wait)).await;
        }
        match request(&client, &subject).await {
            Ok((issued, chain_pem, key_pem)) => {
                if let Err(error) = store(&pki, &chain_pem, &key_pem) {
                    tracing::warn!(%error, dir = %pki.display(), "cannot store the serving certificate; it is used, and requested again after a restart");
                }
                renew_at = Some(issued.renew_at());
                tracing::info!(
                    not_after = issued.not_after,
                    "serving with a certificate issued by the cluster"
                );
                certs.set(issued.key);
                retry = RETRY_FIRST;
            }
            Err(error) => {
                tracing::warn!(%error, retry_in = ?retry, "no serving certificate from the cluster yet");
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(RETRY_MAX);
                // Try again now rather than at the old renewal time.
                renew_at = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject() -> Subject {
        Subject {
            node: "station-a".to_owned(),
            ip: "10.1.2.3".parse().unwrap(),
        }
    }

    /// A certificate for `subject` and `key_pem`, valid until the start of
    /// `until_year`, signed by a throwaway CA as the cluster's signer would;
    /// the chain as PEM.
    fn sign(key_pem: &str, until_year: i32) -> String {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let mut leaf = params(&subject()).unwrap();
        leaf.not_before = rcgen::date_time_ymd(2020, 1, 1);
        leaf.not_after = rcgen::date_time_ymd(until_year, 1, 1);
        let key = rcgen::KeyPair::from_pem(key_pem).unwrap();
        let cert = leaf.signed_by(&key, &issuer).unwrap();
        format!("{}{}", cert.pem(), ca_cert.pem())
    }

    #[test]
    fn requests_name_the_node_and_its_address() {
        use x509_parser::prelude::FromDer;
        let (csr, key) = new_request(&subject()).unwrap();
        assert!(key.contains("PRIVATE KEY"));
        let der =
            rustls_pki_types::CertificateSigningRequestDer::from_pem_slice(csr.as_bytes()).unwrap();
        let (_, parsed) =
            x509_parser::certification_request::X509CertificationRequest::from_der(der.as_ref())
                .unwrap();
        let info = &parsed.certification_request_info;
        assert_eq!(
            info.subject.to_string(),
            "O=system:nodes, CN=system:node:station-a"
        );
        let names = format!(
            "{:?}",
            parsed.requested_extensions().unwrap().collect::<Vec<_>>()
        );
        assert!(
            names.contains("station-a") && names.contains("[10, 1, 2, 3]"),
            "{names}"
        );
    }

    #[test]
    fn issued_certificates_are_stored_and_reused_only_while_they_fit() {
        let (_, key) = new_request(&subject()).unwrap();
        let chain = sign(&key, 2099);
        let issued = parse(chain.as_bytes(), key.as_bytes(), &subject()).unwrap();
        assert!(issued.renew_at() > issued.not_before && issued.renew_at() < issued.not_after);
        assert_eq!(issued.key.cert.len(), 2);

        let dir = tempfile::tempdir().unwrap();
        let pki = dir.path().join("pki");
        let path = store(&pki, &chain, &key).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(load_stored(&pki, &subject()).is_some());
        // Another address: not usable.
        let moved = Subject {
            ip: "10.9.9.9".parse().unwrap(),
            ..subject()
        };
        assert!(load_stored(&pki, &moved).is_none());
        // Another key: refused.
        let (_, other_key) = new_request(&subject()).unwrap();
        let err = parse(chain.as_bytes(), other_key.as_bytes(), &subject())
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("key"), "{err}");
        // Expired: refused.
        let old = sign(&key, 2021);
        assert_eq!(
            parse(old.as_bytes(), key.as_bytes(), &subject())
                .err()
                .map(|e| e.to_string())
                .as_deref(),
            Some("expired")
        );
        // Garbage on disk is no certificate.
        std::fs::write(&path, "not pem").unwrap();
        assert!(load_stored(&pki, &subject()).is_none());
    }

    #[test]
    fn the_served_certificate_is_swapped_in_place() {
        let (_, key) = new_request(&subject()).unwrap();
        let first = parse(sign(&key, 2099).as_bytes(), key.as_bytes(), &subject()).unwrap();
        let first_leaf = first.key.cert[0].clone();
        let certs = ServingCerts::new(first.key);
        let second = parse(sign(&key, 2098).as_bytes(), key.as_bytes(), &subject()).unwrap();
        certs.set(second.key);
        assert_ne!(certs.current().cert[0], first_leaf);
    }
}
