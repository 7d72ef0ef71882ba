//! TLS bootstrap: the node's client certificate obtained with bootstrap
//! credentials, as the kubelet does with `--bootstrap-kubeconfig`.
//!
//! When the node's `--kubeconfig` does not exist yet, the node makes a key,
//! asks the `kubernetes.io/kube-apiserver-client-kubelet` signer for a
//! certificate for `system:node:NAME` (group `system:nodes`) with a
//! CertificateSigningRequest made with the bootstrap credentials (the
//! controller-manager's approver approves it where the cluster grants
//! bootstrap tokens that right, as kubeadm sets it up), stores certificate
//! and key in `<state dir>/pki/kubelet-client-current.pem` (0600) and
//! writes `--kubeconfig` pointing at that file, with the bootstrap file's
//! cluster (server and CA).
//!
//! The same happens again when the certificate it stored has expired (a
//! station switched off for longer than the certificate lived).
//!
//! This module owns that exchange and the files it writes. It never
//! approves its own request, never writes `--kubeconfig` before the
//! certificate is in hand (a failed bootstrap leaves nothing behind), and
//! never uses the bootstrap credentials for anything but the request.

use std::path::{Path, PathBuf};

use kube::config::{
    AuthInfo, Context, KubeConfigOptions, Kubeconfig, KubeconfigError, NamedAuthInfo, NamedContext,
};
use sandlet_core::state_file::write_atomically;
use x509_parser::error::X509Error;

use crate::cluster::csr::{self, RequestError};

/// The signer of kubelet client certificates.
pub(crate) const SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
/// The stored client certificate and key (the kubelet's file name).
pub(crate) const STORED: &str = "kubelet-client-current.pem";
/// The key usages asked for a client certificate.
pub(crate) const CLIENT_USAGES: &[&str] = &["digital signature", "client auth"];

/// Why the node could not obtain its client certificate.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// The bootstrap kubeconfig cannot be read or used.
    #[error("--bootstrap-kubeconfig {path}: {source}")]
    Kubeconfig {
        /// `--bootstrap-kubeconfig`.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: KubeconfigError,
    },
    /// The bootstrap kubeconfig does not make a client.
    #[error("--bootstrap-kubeconfig {path}: {source}")]
    Client {
        /// `--bootstrap-kubeconfig`.
        path: PathBuf,
        /// Why.
        #[source]
        source: kube::Error,
    },
    /// The bootstrap kubeconfig names no cluster to write into the node's.
    #[error("--bootstrap-kubeconfig {path}: {missing}")]
    Incomplete {
        /// `--bootstrap-kubeconfig`.
        path: PathBuf,
        /// What it lacks: `no current-context`, `no context NAME` or
        /// `no cluster NAME`.
        missing: String,
    },
    /// The node's kubeconfig could not be written as YAML.
    #[error("--bootstrap-kubeconfig {path}: {source}")]
    Yaml {
        /// `--bootstrap-kubeconfig`.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_yaml::Error,
    },
    /// The API server did not take the bootstrap token.
    #[error(
        "the API server refused the bootstrap credentials in {path} (401 Unauthorized): the \
         bootstrap token has expired, was revoked or never existed; ask the cluster admin for a \
         new one (scripts/cluster bootstrap-kubeconfig DIR NAME)"
    )]
    Unauthorized {
        /// `--bootstrap-kubeconfig`.
        path: PathBuf,
    },
    /// The bootstrap token may not ask for a node client certificate.
    #[error(
        "the bootstrap credentials in {path} may not ask for a node client certificate \
         (403 Forbidden: {message}); the cluster must grant bootstrap tokens \
         system:node-bootstrapper"
    )]
    Forbidden {
        /// `--bootstrap-kubeconfig`.
        path: PathBuf,
        /// The API server's message.
        message: String,
    },
    /// No key and request could be made.
    #[error("no client certificate: {0}")]
    Key(#[source] rcgen::Error),
    /// The request gave no certificate.
    #[error("no client certificate: {0}")]
    Request(#[source] RequestError),
    /// The signer issued a certificate that is not the node's.
    #[error("no client certificate: from the signer: {0}")]
    Issued(#[source] CertificateError),
    /// The certificate or the kubeconfig could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Why a client certificate (stored, or as issued) is not usable as the
/// node's.
#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    /// The file cannot be read.
    #[error("{0}")]
    Read(#[source] std::io::Error),
    /// There is no PEM certificate.
    #[error("no certificate")]
    Missing,
    /// The PEM text does not hold a certificate.
    #[error("no certificate: {0}")]
    Pem(#[source] rustls_pki_types::pem::Error),
    /// The certificate does not parse.
    #[error("the certificate does not parse: {0}")]
    Parse(#[source] X509Error),
    /// The node's key does not parse.
    #[error("{0}")]
    Key(#[source] rcgen::Error),
    /// The certificate is for another key.
    #[error("the issued certificate is not for the node's key")]
    OtherKey,
    /// The certificate names another user.
    #[error("the issued certificate names {found:?}, not {expected}")]
    OtherName {
        /// The common name it has.
        found: Option<String>,
        /// `system:node:NAME`.
        expected: String,
    },
}

/// A new key and a PKCS#10 request for `system:node:NAME` in
/// `system:nodes` (PEM each): ECDSA P-256, no names besides the subject,
/// which is what the approver accepts for this signer.
pub(crate) fn client_request(node: &str) -> Result<(String, String), rcgen::Error> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    let mut name = rcgen::DistinguishedName::new();
    name.push(rcgen::DnType::OrganizationName, "system:nodes");
    name.push(rcgen::DnType::CommonName, format!("system:node:{node}"));
    params.distinguished_name = name;
    let request = params.serialize_request(&key).and_then(|r| r.pem())?;
    Ok((request, key.serialize_pem()))
}

/// Obtains the node's client certificate with the credentials in
/// `bootstrap` and writes `kubeconfig` to use it; the certificate and key
/// go to `pki`.
pub(crate) async fn bootstrap(
    bootstrap: &Path,
    kubeconfig: &Path,
    node: &str,
    pki: &Path,
) -> Result<(), BootstrapError> {
    let path = || bootstrap.to_owned();
    let invalid = |source| BootstrapError::Kubeconfig {
        path: path(),
        source,
    };
    let file = Kubeconfig::read_from(bootstrap).map_err(invalid)?;
    let config = kube::Config::from_custom_kubeconfig(file.clone(), &KubeConfigOptions::default())
        .await
        .map_err(invalid)?;
    let client = kube::Client::try_from(config).map_err(|source| BootstrapError::Client {
        path: path(),
        source,
    })?;
    let (csr_pem, key_pem) = client_request(node).map_err(BootstrapError::Key)?;
    tracing::info!(
        node,
        "asking the cluster for a client certificate with the bootstrap credentials"
    );
    let chain_pem = csr::request_certificate(&client, csr_pem, SIGNER, CLIENT_USAGES, "node-csr-")
        .await
        .map_err(|e| match e {
            RequestError::Create(kube::Error::Api(status)) if status.code == 401 => {
                BootstrapError::Unauthorized { path: path() }
            }
            RequestError::Create(kube::Error::Api(status)) if status.code == 403 => {
                BootstrapError::Forbidden {
                    path: path(),
                    message: status.message.clone(),
                }
            }
            other => BootstrapError::Request(other),
        })?;
    check_issued(&chain_pem, &key_pem, node).map_err(BootstrapError::Issued)?;
    let stored = csr::store_pem(pki, STORED, &chain_pem, &key_pem).map_err(|source| {
        BootstrapError::Write {
            path: pki.join(STORED),
            source,
        }
    })?;
    let written = node_kubeconfig(&file, &stored).map_err(|e| match e {
        NodeKubeconfigError::Missing(missing) => BootstrapError::Incomplete {
            path: path(),
            missing,
        },
        NodeKubeconfigError::Yaml(source) => BootstrapError::Yaml {
            path: path(),
            source,
        },
    })?;
    write_atomically(kubeconfig, written.as_bytes()).map_err(|source| BootstrapError::Write {
        path: kubeconfig.to_owned(),
        source,
    })?;
    tracing::info!(kubeconfig = %kubeconfig.display(), certificate = %stored.display(), "bootstrapped: the node's client certificate is issued and stored");
    Ok(())
}

/// Whether the node must bootstrap: its kubeconfig does not exist, or it
/// is the one bootstrap wrote and the stored certificate has expired or
/// cannot be read (a station that was off longer than the certificate
/// lived), as the kubelet falls back to its bootstrap credentials then.
/// A kubeconfig the node did not write is never replaced.
pub(crate) fn needed(kubeconfig: &Path, pki: &Path) -> bool {
    if !kubeconfig.exists() {
        return true;
    }
    if !written_by_node(kubeconfig, pki) {
        return false;
    }
    let stored = pki.join(STORED);
    match validity(&stored) {
        Ok((_, not_after)) if not_after > csr::now_unix() => false,
        Ok(_) => {
            tracing::warn!(certificate = %stored.display(), "the node's client certificate has expired: bootstrapping again");
            true
        }
        Err(reason) => {
            tracing::warn!(certificate = %stored.display(), %reason, "the node's client certificate cannot be read: bootstrapping again");
            true
        }
    }
}

/// Whether `kubeconfig` is the one bootstrap wrote: its user is the
/// certificate stored in `pki`.
pub(crate) fn written_by_node(kubeconfig: &Path, pki: &Path) -> bool {
    let stored = pki.join(STORED);
    Kubeconfig::read_from(kubeconfig).is_ok_and(|k| {
        k.auth_infos.iter().any(|a| {
            a.auth_info
                .as_ref()
                .and_then(|i| i.client_certificate.as_deref())
                .is_some_and(|c| Path::new(c) == stored)
        })
    })
}

/// The validity (unix seconds, not before and not after) of the first
/// certificate in the PEM file `path`.
pub(crate) fn validity(path: &Path) -> Result<(i64, i64), CertificateError> {
    let pem = std::fs::read(path).map_err(CertificateError::Read)?;
    with_leaf(&pem, |cert| {
        let validity = cert.validity();
        (
            validity.not_before.timestamp(),
            validity.not_after.timestamp(),
        )
    })
}

/// `read` of the first certificate in `pem`.
fn with_leaf<T>(
    pem: &[u8],
    read: impl FnOnce(&x509_parser::certificate::X509Certificate) -> T,
) -> Result<T, CertificateError> {
    use rustls_pki_types::pem::PemObject;
    use x509_parser::prelude::FromDer;
    let leaf = rustls_pki_types::CertificateDer::pem_slice_iter(pem)
        .next()
        .ok_or(CertificateError::Missing)?
        .map_err(CertificateError::Pem)?;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(leaf.as_ref())
        .map_err(|e| CertificateError::Parse(e.into()))?;
    Ok(read(&cert))
}

/// The issued chain must be for this key and name the node.
pub(crate) fn check_issued(
    chain_pem: &str,
    key_pem: &str,
    node: &str,
) -> Result<(), CertificateError> {
    let key = rcgen::KeyPair::from_pem(key_pem).map_err(CertificateError::Key)?;
    let expected = format!("system:node:{node}");
    with_leaf(chain_pem.as_bytes(), |cert| {
        if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(CertificateError::OtherKey);
        }
        let common_name = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok());
        if common_name != Some(expected.as_str()) {
            return Err(CertificateError::OtherName {
                found: common_name.map(str::to_owned),
                expected,
            });
        }
        Ok(())
    })?
}

/// Why the node's kubeconfig cannot be made from the bootstrap file.
#[derive(Debug)]
enum NodeKubeconfigError {
    /// `no current-context`, `no context NAME`, `no cluster NAME`.
    Missing(String),
    Yaml(serde_yaml::Error),
}

/// The node's kubeconfig: the bootstrap file's cluster, the stored client
/// certificate and key as the user.
fn node_kubeconfig(bootstrap: &Kubeconfig, stored: &Path) -> Result<String, NodeKubeconfigError> {
    let context_name = bootstrap
        .current_context
        .clone()
        .ok_or_else(|| NodeKubeconfigError::Missing("no current-context".to_owned()))?;
    let context = bootstrap
        .contexts
        .iter()
        .find(|c| c.name == context_name)
        .and_then(|c| c.context.as_ref())
        .ok_or_else(|| NodeKubeconfigError::Missing(format!("no context {context_name}")))?;
    let cluster = bootstrap
        .clusters
        .iter()
        .find(|c| c.name == context.cluster)
        .cloned()
        .ok_or_else(|| NodeKubeconfigError::Missing(format!("no cluster {}", context.cluster)))?;
    let path = stored.display().to_string();
    let config = Kubeconfig {
        clusters: vec![cluster.clone()],
        auth_infos: vec![NamedAuthInfo {
            name: "default-auth".to_owned(),
            auth_info: Some(AuthInfo {
                client_certificate: Some(path.clone()),
                client_key: Some(path),
                ..Default::default()
            }),
            ..Default::default()
        }],
        contexts: vec![NamedContext {
            name: "default-context".to_owned(),
            context: Some(Context {
                cluster: cluster.name,
                user: Some("default-auth".to_owned()),
                ..Default::default()
            }),
            ..Default::default()
        }],
        current_context: Some("default-context".to_owned()),
        kind: Some("Config".to_owned()),
        api_version: Some("v1".to_owned()),
        ..Default::default()
    };
    serde_yaml::to_string(&config).map_err(NodeKubeconfigError::Yaml)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_names_the_node_and_nothing_else() {
        use rustls_pki_types::pem::PemObject;
        use x509_parser::prelude::FromDer;
        let (csr, key) = client_request("station-a").unwrap();
        assert!(key.contains("PRIVATE KEY"));
        let der =
            rustls_pki_types::CertificateSigningRequestDer::from_pem_slice(csr.as_bytes()).unwrap();
        let (_, parsed) =
            x509_parser::certification_request::X509CertificationRequest::from_der(der.as_ref())
                .unwrap();
        assert_eq!(
            parsed.certification_request_info.subject.to_string(),
            "O=system:nodes, CN=system:node:station-a"
        );
        // No subject alternative names: the approver refuses those for
        // client certificates.
        assert!(
            parsed
                .requested_extensions()
                .is_none_or(|mut e| e.next().is_none())
        );
    }

    #[test]
    fn only_a_certificate_for_the_key_and_the_node_is_accepted() {
        let (_, key) = client_request("station-a").unwrap();
        let sign = |key_pem: &str, cn: &str| {
            let ca_key = rcgen::KeyPair::generate().unwrap();
            let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            let issuer = rcgen::Issuer::new(ca, ca_key);
            let mut leaf = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            leaf.distinguished_name.push(rcgen::DnType::CommonName, cn);
            let key = rcgen::KeyPair::from_pem(key_pem).unwrap();
            leaf.signed_by(&key, &issuer).unwrap().pem()
        };
        check_issued(&sign(&key, "system:node:station-a"), &key, "station-a").unwrap();
        let error = check_issued(&sign(&key, "system:node:other"), &key, "station-a")
            .unwrap_err()
            .to_string();
        assert!(error.contains("not system:node:station-a"), "{error}");
        let (_, other_key) = client_request("station-a").unwrap();
        let error = check_issued(
            &sign(&other_key, "system:node:station-a"),
            &key,
            "station-a",
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("not for the node's key"), "{error}");
    }

    #[test]
    fn an_expired_stored_certificate_needs_a_new_bootstrap_and_a_foreign_kubeconfig_never_does() {
        let dir = tempfile::tempdir().unwrap();
        let pki = dir.path().join("pki");
        let kubeconfig = dir.path().join("kubeconfig");
        assert!(needed(&kubeconfig, &pki), "no kubeconfig yet");
        let cert = |year: i32| {
            let key = rcgen::KeyPair::generate().unwrap();
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(year, 1, 1);
            (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
        };
        let bootstrap: Kubeconfig = serde_yaml::from_str(
            "clusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:6443\ncontexts:\n- name: x\n  context:\n    cluster: c\ncurrent-context: x\n",
        )
        .unwrap();
        std::fs::write(
            &kubeconfig,
            node_kubeconfig(&bootstrap, &pki.join(STORED)).unwrap(),
        )
        .unwrap();
        let (valid, key) = cert(2099);
        csr::store_pem(&pki, STORED, &valid, &key).unwrap();
        assert!(!needed(&kubeconfig, &pki), "a valid certificate is kept");
        let (expired, key) = cert(2021);
        csr::store_pem(&pki, STORED, &expired, &key).unwrap();
        assert!(needed(&kubeconfig, &pki), "an expired one is replaced");
        std::fs::write(pki.join(STORED), "garbage").unwrap();
        assert!(needed(&kubeconfig, &pki), "an unreadable one is replaced");
        // An admin's kubeconfig (another certificate file) is left alone.
        std::fs::write(
            &kubeconfig,
            node_kubeconfig(&bootstrap, &dir.path().join("admin.pem")).unwrap(),
        )
        .unwrap();
        assert!(!needed(&kubeconfig, &pki));
    }

    #[test]
    fn the_node_kubeconfig_keeps_the_cluster_and_uses_the_stored_certificate() {
        let bootstrap: Kubeconfig = serde_yaml::from_str(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:6443\n    certificate-authority-data: Q0E=\nusers:\n- name: b\n  user:\n    token: abcdef.0123456789abcdef\ncontexts:\n- name: b@c\n  context:\n    cluster: c\n    user: b\ncurrent-context: b@c\n",
        )
        .unwrap();
        let text = node_kubeconfig(
            &bootstrap,
            Path::new("/state/pki/kubelet-client-current.pem"),
        )
        .unwrap();
        assert!(
            !text.contains("abcdef"),
            "the bootstrap token is not kept: {text}"
        );
        let written: Kubeconfig = serde_yaml::from_str(&text).unwrap();
        let cluster = written.clusters[0].cluster.as_ref().unwrap();
        assert_eq!(cluster.server.as_deref(), Some("https://127.0.0.1:6443"));
        let user = written.auth_infos[0].auth_info.as_ref().unwrap();
        assert_eq!(
            user.client_certificate.as_deref(),
            Some("/state/pki/kubelet-client-current.pem")
        );
        assert_eq!(user.client_key, user.client_certificate);
    }
}
