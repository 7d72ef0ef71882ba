//! Certificates from the cluster: one CertificateSigningRequest made and
//! waited on until it is signed or refused, and the certificate with its
//! key stored under the state directory.
//!
//! This module owns that exchange for every certificate the node asks for
//! (its client certificate, by bootstrap and rotation; the kubelet API's
//! serving certificate). It must never approve a request itself: a
//! cluster admin or an approver controller does.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition, CertificateSigningRequestSpec,
    CertificateSigningRequestStatus,
};
use kube::api::{Api, ObjectMeta, PostParams};
use kube::runtime::wait::await_condition;
use sandlet_core::state_file::write_atomically;

/// How long one request waits to be approved and signed before a new one
/// is made (the kubelet's 15 minutes).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// Why one CertificateSigningRequest gave no certificate.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The request could not be created (the credentials were refused,
    /// say).
    #[error("creating a CertificateSigningRequest: {0}")]
    Create(#[source] kube::Error),
    /// The request could not be watched.
    #[error("watching {name}: {source}")]
    Watch {
        /// The request's name.
        name: String,
        /// Why the watch failed.
        #[source]
        source: kube::runtime::wait::Error,
    },
    /// The request was denied, failed, or deleted before it was signed.
    #[error("CertificateSigningRequest {name} was {how}: {message}")]
    Refused {
        /// The request's name.
        name: String,
        /// `denied`, `failed` or `deleted`.
        how: String,
        /// The condition's message.
        message: String,
    },
    /// Nobody approved and signed the request in time.
    #[error("CertificateSigningRequest {0} was not approved and signed within 15 minutes")]
    TimedOut(String),
    /// The signer issued something that is not PEM text.
    #[error("the issued certificate is not usable: not PEM")]
    NotPem,
}

/// Now, in unix seconds (certificates' validity is in those).
pub(crate) fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Writes a certificate chain and its key into `pki/name` (one PEM file,
/// mode 0600, in a 0700 directory), whole or not at all.
pub(crate) fn store_pem(
    pki: &Path,
    name: &str,
    chain_pem: &str,
    key_pem: &str,
) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(pki)?;
    let separator = if chain_pem.ends_with('\n') { "" } else { "\n" };
    let path = pki.join(name);
    write_atomically(&path, format!("{chain_pem}{separator}{key_pem}").as_bytes())?;
    Ok(path)
}

/// The condition that ended a request without a certificate, if any.
fn refusal(
    status: &CertificateSigningRequestStatus,
) -> Option<&CertificateSigningRequestCondition> {
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| (c.type_ == "Denied" || c.type_ == "Failed") && c.status == "True")
}

/// Creates a CertificateSigningRequest of `csr_pem` for `signer` and waits
/// until it is signed (the chain, PEM), refused, deleted or 15 minutes old.
pub(crate) async fn request_certificate(
    client: &kube::Client,
    csr_pem: String,
    signer: &str,
    usages: &[&str],
    generate_name: &str,
) -> Result<String, RequestError> {
    let api = Api::<CertificateSigningRequest>::all(client.clone());
    let csr = CertificateSigningRequest {
        metadata: ObjectMeta {
            generate_name: Some(generate_name.to_owned()),
            ..Default::default()
        },
        spec: CertificateSigningRequestSpec {
            request: ByteString(csr_pem.into_bytes()),
            signer_name: signer.to_owned(),
            usages: Some(usages.iter().map(|u| (*u).to_owned()).collect()),
            ..Default::default()
        },
        status: None,
    };
    let created = api
        .create(&PostParams::default(), &csr)
        .await
        .map_err(RequestError::Create)?;
    let name = created.metadata.name.unwrap_or_default();
    tracing::info!(csr = %name, signer, "asked for a certificate; it is used once approved and signed");
    let done = |csr: Option<&CertificateSigningRequest>| {
        csr.and_then(|c| c.status.as_ref()).is_some_and(|status| {
            status.certificate.as_ref().is_some_and(|c| !c.0.is_empty())
                || refusal(status).is_some()
        })
    };
    let csr = match tokio::time::timeout(REQUEST_TIMEOUT, await_condition(api, &name, done)).await {
        Err(_) => return Err(RequestError::TimedOut(name)),
        Ok(Err(source)) => return Err(RequestError::Watch { name, source }),
        Ok(Ok(None)) => {
            return Err(RequestError::Refused {
                name,
                how: "deleted".to_owned(),
                message: "before it was signed".to_owned(),
            });
        }
        Ok(Ok(Some(csr))) => csr,
    };
    let status = csr.status.unwrap_or_default();
    if let Some(refused) = refusal(&status) {
        return Err(RequestError::Refused {
            name,
            how: refused.type_.to_lowercase(),
            message: refused.message.clone().unwrap_or_default(),
        });
    }
    String::from_utf8(status.certificate.unwrap_or_default().0).map_err(|_| RequestError::NotPem)
}
