//! Modules as OCI artifacts: pulling them into the [`ModuleStore`] and
//! pushing them to a registry.
//!
//! This module owns the registry client (TLS roots, plain-HTTP exceptions),
//! credentials in the docker `config.json` / `kubernetes.io/dockerconfigjson`
//! format, and the rules for what counts as a module artifact: one layer, of
//! one of the three wasm media types. Every byte is verified against its
//! digest before it is stored (by the store, hashing as it writes), and
//! nothing partial is ever stored.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use oci_client::client::BlobResponse;
use oci_client::client::{
    Certificate, CertificateEncoding, ClientConfig, ClientProtocol, Config, ImageLayer,
};
use oci_client::errors::OciDistributionError;
use oci_client::manifest::{ImageIndexEntry, OciDescriptor, OciImageManifest};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use crate::allow_list::{AllowList, NotAllowed, Verdict};
use crate::store::{ModuleStore, StoreError};
use sandlet_core::Digest;

/// Layer media types accepted as a wasm module (docs/reference/pods.md).
pub const WASM_LAYER_MEDIA_TYPES: [&str; 3] = [
    "application/wasm",
    "application/vnd.wasm.content.layer.v1+wasm",
    "application/vnd.bytecodealliance.wasm.component.layer.v0+wasm",
];

/// Config media type of the artifacts `sandlet push` writes.
pub const WASM_CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";

/// Layer media type of the artifacts `sandlet push` writes.
pub const WASM_PUSH_LAYER_MEDIA_TYPE: &str = "application/wasm";

/// How to reach registries.
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// `HOST:PORT` of registries spoken to over plain HTTP.
    pub insecure: Vec<String>,
    /// A PEM file of extra CA certificates to trust (a private registry's).
    pub ca_file: Option<PathBuf>,
}

/// Why a pull or push failed. `Display` is the reason shown on the pod or
/// the CLI's stderr.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// The image reference cannot be parsed.
    #[error("invalid image reference {reference:?}: {reason}")]
    Reference {
        /// The reference as written.
        reference: String,
        /// The parser's message.
        reason: String,
    },
    /// The extra CA file cannot be read or holds no PEM certificate.
    #[error("cannot read registry CA file {}: {reason}", path.display())]
    CaFile {
        /// The CA file ([`RegistryOptions::ca_file`]).
        path: PathBuf,
        /// Why it cannot be used.
        reason: String,
    },
    /// A docker config cannot be read or an entry in it is malformed; says
    /// which and why.
    #[error("invalid registry credentials: {0}")]
    Credentials(String),
    /// The registry could not be connected to, or timed out.
    #[error("registry {registry} is unreachable: {reason}")]
    Unreachable {
        /// The registry's `host[:port]`.
        registry: String,
        /// The root cause, e.g. the connection or TLS error.
        reason: String,
    },
    /// The registry refused the credentials given (or asked for some when
    /// there were none).
    #[error("registry {registry} refused the credentials for {reference}")]
    Unauthorized {
        /// The registry's `host[:port]`.
        registry: String,
        /// The image reference being pulled or pushed.
        reference: String,
    },
    /// The registry has no such repository, tag or manifest.
    #[error("{reference} not found in its registry")]
    NotFound {
        /// The image reference that was looked up.
        reference: String,
    },
    /// The manifest has no layer of a wasm media type.
    #[error("{reference} is not a wasm module: it has no layer of type {}", WASM_LAYER_MEDIA_TYPES.join(", "))]
    NoWasmLayer {
        /// The image reference.
        reference: String,
    },
    /// The manifest has a wasm layer among others; a module artifact has
    /// exactly one layer.
    #[error(
        "{reference} is not a single wasm module: it has {count} layers, sandlet runs artifacts with exactly one"
    )]
    TooManyLayers {
        /// The image reference.
        reference: String,
        /// How many layers the manifest has.
        count: usize,
    },
    /// The manifest's one layer is not of a wasm media type.
    #[error("{reference} is not a wasm module: its layer has media type {media_type:?}")]
    NotWasmLayer {
        /// The image reference.
        reference: String,
        /// The layer's media type.
        media_type: String,
    },
    /// Downloaded bytes do not hash to the digest the registry gave, or
    /// are longer than it said.
    #[error("{reference}: download does not match its digest: {reason}")]
    Verification {
        /// The image reference.
        reference: String,
        /// What did not match.
        reason: String,
    },
    /// Any other answer of the registry that cannot be used (a server
    /// error, a malformed digest, a blob over its size limit).
    #[error("{reference}: {reason}")]
    Registry {
        /// The image reference.
        reference: String,
        /// The root cause, in one line.
        reason: String,
    },
    /// The module store could not take the module.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// The station's allow-list refuses the module, or it lacks a signature
    /// the list asks for.
    #[error("{0}")]
    NotAllowed(#[from] NotAllowed),
    /// The manifest has no signature artifact, or none of its signatures
    /// verifies with the keys given.
    #[error("{reference}: no valid signature by a trusted key: {reason}")]
    Unsigned {
        /// The image reference.
        reference: String,
        /// Why no signature counts, e.g. none found or each refused.
        reason: String,
    },
}

/// Registry credentials by registry host, as docker's `config.json` and
/// Kubernetes `kubernetes.io/dockerconfigjson` secrets hold them.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    by_registry: HashMap<String, (String, String)>,
}

#[derive(serde::Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: HashMap<String, DockerAuth>,
}

#[derive(serde::Deserialize)]
struct DockerAuth {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

impl Credentials {
    /// No credentials: every registry is accessed anonymously.
    pub fn anonymous() -> Self {
        Self::default()
    }

    /// Parses `{"auths": {"host:port": {"auth": base64("user:pass")}}}`
    /// (or `username` and `password` instead of `auth`).
    pub fn from_docker_config(json: &[u8]) -> Result<Self, OciError> {
        let config: DockerConfig = serde_json::from_slice(json)
            .map_err(|e| OciError::Credentials(format!("not a docker config: {e}")))?;
        let mut by_registry = HashMap::new();
        for (registry, auth) in config.auths {
            let pair = match (auth.auth, auth.username, auth.password) {
                (Some(encoded), _, _) => {
                    let decoded = base64::engine::general_purpose::STANDARD
                        .decode(encoded.trim())
                        .map_err(|e| {
                            OciError::Credentials(format!("{registry}: auth is not base64: {e}"))
                        })?;
                    let text = String::from_utf8(decoded).map_err(|_| {
                        OciError::Credentials(format!("{registry}: auth is not UTF-8"))
                    })?;
                    let (user, pass) = text.split_once(':').ok_or_else(|| {
                        OciError::Credentials(format!("{registry}: auth is not user:password"))
                    })?;
                    (user.to_owned(), pass.to_owned())
                }
                (None, Some(user), Some(pass)) => (user, pass),
                _ => {
                    return Err(OciError::Credentials(format!(
                        "{registry}: needs auth, or username and password"
                    )));
                }
            };
            by_registry.insert(normalise_registry(&registry), pair);
        }
        Ok(Credentials { by_registry })
    }

    /// Reads a docker config file.
    pub fn from_docker_config_file(path: &Path) -> Result<Self, OciError> {
        let bytes = std::fs::read(path)
            .map_err(|e| OciError::Credentials(format!("cannot read {}: {e}", path.display())))?;
        Self::from_docker_config(&bytes)
    }

    /// Adds `other`'s entries (theirs win).
    pub fn merge(&mut self, other: Credentials) {
        self.by_registry.extend(other.by_registry);
    }

    pub(crate) fn for_registry(&self, registry: &str) -> RegistryAuth {
        match self.by_registry.get(&normalise_registry(registry)) {
            Some((user, pass)) => RegistryAuth::Basic(user.clone(), pass.clone()),
            None => RegistryAuth::Anonymous,
        }
    }
}

/// `https://host:port/v1/` and `host:port` name the same registry.
fn normalise_registry(registry: &str) -> String {
    let without_scheme = registry
        .strip_prefix("https://")
        .or_else(|| registry.strip_prefix("http://"))
        .unwrap_or(registry);
    without_scheme
        .split('/')
        .next()
        .unwrap_or(without_scheme)
        .to_owned()
}

/// A module fetched into the store.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PulledModule {
    /// `<repository>@sha256:<manifest digest>`, the container's `imageID`.
    pub image_id: String,
    /// Digest of the manifest the reference resolved to.
    pub manifest_digest: Digest,
    /// Digest of the wasm layer: the module's identity in the store.
    pub module_digest: Digest,
    /// The fingerprint of the trusted key whose signature of the manifest
    /// digest admitted the module, when the allow-list asked for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_by: Option<String>,
    /// Whether the module's bytes were downloaded (false: already stored).
    #[serde(skip)]
    pub downloaded: bool,
}

/// A registry client. One per process; cheap to share.
///
/// oci-client remembers the first credentials it was given for a registry
/// (and the tokens they earned) for its lifetime, so one shared client would
/// let a pod without credentials ride on another pod's. Each distinct
/// (registry, credentials) pair therefore gets a client of its own.
pub struct Registry {
    options: RegistryOptions,
    extra_root_certificates: Vec<Certificate>,
    clients: std::sync::Mutex<std::collections::HashMap<Digest, Client>>,
    /// Which keys' signatures have verified for each repository and
    /// manifest digest in this process (key fingerprints), so a module's
    /// signature is fetched and checked once. Only successes are kept: a
    /// signature added later is found on the next pull.
    pub(crate) verified: crate::signatures::VerifiedCache,
}

impl Registry {
    /// A client with `options`' TLS roots and plain-HTTP registries; the
    /// CA file, if any, is read now.
    pub fn new(options: &RegistryOptions) -> Result<Self, OciError> {
        // reqwest is built without a default crypto provider; ring is ours.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut extra_root_certificates = Vec::new();
        if let Some(path) = &options.ca_file {
            let data = std::fs::read(path).map_err(|e| OciError::CaFile {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            if !String::from_utf8_lossy(&data).contains("-----BEGIN CERTIFICATE-----") {
                return Err(OciError::CaFile {
                    path: path.clone(),
                    reason: "no PEM certificate in it".to_owned(),
                });
            }
            extra_root_certificates.push(Certificate {
                encoding: CertificateEncoding::Pem,
                data,
            });
        }
        Ok(Registry {
            options: options.clone(),
            extra_root_certificates,
            clients: std::sync::Mutex::default(),
            verified: crate::signatures::VerifiedCache::default(),
        })
    }

    /// The client for `registry` used with `auth`.
    pub(crate) fn client(&self, registry: &str, auth: &RegistryAuth) -> Client {
        let key = {
            let mut who = format!("{registry}\n");
            match auth {
                RegistryAuth::Anonymous => who.push_str("anonymous"),
                RegistryAuth::Basic(user, password) => {
                    who.push_str(&format!("basic\n{user}\n{password}"))
                }
                RegistryAuth::Bearer(token) => who.push_str(&format!("bearer\n{token}")),
            }
            // Only a digest of the credentials is kept as the key.
            Digest::of(who.as_bytes())
        };
        self.clients
            .lock()
            .expect("registry clients poisoned")
            .entry(key)
            .or_insert_with(|| {
                let protocol = if self.options.insecure.is_empty() {
                    ClientProtocol::Https
                } else {
                    ClientProtocol::HttpsExcept(self.options.insecure.clone())
                };
                Client::new(ClientConfig {
                    protocol,
                    extra_root_certificates: self.extra_root_certificates.clone(),
                    platform_resolver: Some(Box::new(wasm_platform)),
                    connect_timeout: Some(std::time::Duration::from_secs(10)),
                    read_timeout: Some(std::time::Duration::from_secs(60)),
                    ..ClientConfig::default()
                })
            })
            .clone()
    }

    /// Resolves `reference` to its manifest and wasm layer without
    /// downloading the layer.
    async fn resolve(
        &self,
        reference: &Reference,
        auth: &RegistryAuth,
    ) -> Result<(Digest, OciDescriptor), OciError> {
        let text = reference.whole();
        let (manifest, manifest_digest) = self
            .client(reference.resolve_registry(), auth)
            .pull_image_manifest(reference, auth)
            .await
            .map_err(|e| classify(reference, e))?;
        let manifest_digest =
            manifest_digest
                .parse::<Digest>()
                .map_err(|e| OciError::Registry {
                    reference: text.clone(),
                    reason: e.to_string(),
                })?;
        let layer = wasm_layer(&manifest, &text)?;
        Ok((manifest_digest, layer))
    }

    /// Fetches `reference` into `store` (unless its module is already
    /// there), verifying every byte. Concurrent pulls of one module download
    /// it once.
    ///
    /// The allow-list is checked against the repository before the
    /// registry is contacted, then against the digests the registry reports
    /// before any byte of the module is downloaded; where its rule names
    /// keys, the manifest digest's signature is checked then too (once per
    /// repository, digest and process), and a module without a valid one
    /// is refused as [`OciError::NotAllowed`].
    pub async fn pull(
        &self,
        reference: &str,
        credentials: &Credentials,
        store: &ModuleStore,
        allow: &AllowList,
    ) -> Result<PulledModule, OciError> {
        let text = reference;
        let reference = parse_reference(reference)?;
        let repository = repository_name(&reference);
        // A repository no rule names is refused before any connection.
        allow.check_repository(text, &repository)?;
        let auth = credentials.for_registry(reference.resolve_registry());
        let (manifest_digest, layer) = self.resolve(&reference, &auth).await?;
        let module_digest = layer
            .digest
            .parse::<Digest>()
            .map_err(|e| OciError::Registry {
                reference: reference.whole(),
                reason: e.to_string(),
            })?;
        let signed_by = match allow.check(text, &repository, &manifest_digest, &module_digest)? {
            Verdict::Allowed => None,
            Verdict::IfSignedBy(keys) => Some(
                self.admit_signed(text, &reference, &auth, &manifest_digest, &keys)
                    .await?,
            ),
        };
        let downloaded = store
            .fetch_once(&module_digest, || async {
                // A range request from byte 0 returns the whole blob without
                // the client's own digest pass: the store hashes every byte
                // as it writes and refuses a mismatch, so one pass suffices.
                // A registry that ignores ranges answers 200, and the client
                // then verifies too.
                let download = self
                    .client(reference.resolve_registry(), &auth)
                    .pull_blob_stream_partial(&reference, &layer, 0, None)
                    .await
                    .map_err(|e| classify(&reference, e))?;
                let (BlobResponse::Full(stream) | BlobResponse::Partial(stream)) = download;
                Ok::<_, OciError>(stream.stream)
            })
            .await?;
        Ok(PulledModule {
            image_id: format!("{repository}@{manifest_digest}"),
            manifest_digest,
            module_digest,
            signed_by,
            downloaded,
        })
    }

    /// The blob `layer` of `reference`'s repository, whole in memory: at
    /// most `cap` bytes (the descriptor's size is checked first, and a
    /// registry that sends more than it said is cut off), and only if the
    /// bytes hash to the descriptor's digest.
    pub(crate) async fn fetch_small_blob(
        &self,
        reference: &Reference,
        auth: &RegistryAuth,
        layer: &OciDescriptor,
        cap: u64,
    ) -> Result<Vec<u8>, OciError> {
        use futures_util::StreamExt as _;
        use sha2::Digest as _;
        let size = u64::try_from(layer.size).unwrap_or(u64::MAX);
        if size > cap {
            return Err(OciError::Registry {
                reference: reference.whole(),
                reason: format!(
                    "blob {} is {} bytes, over the limit of {cap}",
                    layer.digest, layer.size
                ),
            });
        }
        let mut stream = self
            .client(reference.resolve_registry(), auth)
            .pull_blob_stream(reference, layer)
            .await
            .map_err(|e| classify(reference, e))?
            .stream;
        // What the descriptor claims is not trusted with memory up front.
        let mut bytes = Vec::with_capacity(size.min(1 << 20) as usize);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| OciError::Unreachable {
                registry: reference.resolve_registry().to_owned(),
                reason: e.to_string(),
            })?;
            if (bytes.len() + chunk.len()) as u64 > size {
                return Err(OciError::Verification {
                    reference: reference.whole(),
                    reason: format!("blob {} is longer than its {size} bytes", layer.digest),
                });
            }
            bytes.extend_from_slice(&chunk);
        }
        let actual = format!("sha256:{:x}", sha2::Sha256::digest(&bytes));
        if actual != layer.digest {
            return Err(OciError::Verification {
                reference: reference.whole(),
                reason: format!("blob {} hashes to {actual}", layer.digest),
            });
        }
        Ok(bytes)
    }

    /// Publishes `module` under `reference` as a one-layer wasm artifact and
    /// returns the manifest's digest.
    pub async fn push(
        &self,
        module: &[u8],
        reference: &str,
        credentials: &Credentials,
    ) -> Result<Digest, OciError> {
        let reference = parse_reference(reference)?;
        let auth = credentials.for_registry(reference.resolve_registry());
        let layer = ImageLayer::new(module.to_vec(), WASM_PUSH_LAYER_MEDIA_TYPE.to_owned(), None);
        self.push_one_layer(&reference, &auth, layer, WASM_CONFIG_MEDIA_TYPE)
            .await
    }

    /// Pushes an artifact of `layer` and an empty (`{}`) config of
    /// `config_media_type` as `reference`; the manifest digest.
    pub(crate) async fn push_one_layer(
        &self,
        reference: &Reference,
        auth: &RegistryAuth,
        layer: ImageLayer,
        config_media_type: &str,
    ) -> Result<Digest, OciError> {
        let config = Config::new(b"{}".to_vec(), config_media_type.to_owned(), None);
        self.client(reference.resolve_registry(), auth)
            .push(reference, &[layer], config, auth, None)
            .await
            .map_err(|e| classify(reference, e))?;
        self.manifest_digest(reference, auth).await
    }

    /// The manifest digest `reference` resolves to.
    pub(crate) async fn manifest_digest(
        &self,
        reference: &Reference,
        auth: &RegistryAuth,
    ) -> Result<Digest, OciError> {
        let digest = self
            .client(reference.resolve_registry(), auth)
            .fetch_manifest_digest(reference, auth)
            .await
            .map_err(|e| classify(reference, e))?;
        digest.parse::<Digest>().map_err(|e| OciError::Registry {
            reference: reference.whole(),
            reason: e.to_string(),
        })
    }
}

/// `registry/path/name` of `reference`, without tag or digest: how the
/// allow-list, signatures and messages name a repository.
pub(crate) fn repository_name(reference: &Reference) -> String {
    format!(
        "{}/{}",
        reference.resolve_registry(),
        reference.repository()
    )
}

fn is_wasm(layer: &OciDescriptor) -> bool {
    WASM_LAYER_MEDIA_TYPES.contains(&layer.media_type.as_str())
}

/// Parses an image reference (tag or `@sha256:` digest).
pub fn parse_reference(reference: &str) -> Result<Reference, OciError> {
    reference
        .parse::<Reference>()
        .map_err(|e| OciError::Reference {
            reference: reference.to_owned(),
            reason: e.to_string(),
        })
}

/// The one wasm layer of an image manifest, or why there is none
/// (`reference` is only used in messages).
pub fn wasm_layer(manifest: &OciImageManifest, reference: &str) -> Result<OciDescriptor, OciError> {
    let text = reference.to_owned();
    let layer = match manifest.layers.as_slice() {
        [] => return Err(OciError::NoWasmLayer { reference: text }),
        [layer] => layer.clone(),
        layers => {
            return Err(if layers.iter().any(is_wasm) {
                OciError::TooManyLayers {
                    reference: text,
                    count: layers.len(),
                }
            } else {
                OciError::NoWasmLayer { reference: text }
            });
        }
    };
    if !is_wasm(&layer) {
        return Err(OciError::NotWasmLayer {
            reference: text,
            media_type: layer.media_type,
        });
    }
    Ok(layer)
}

/// Picks the wasm entry of an image index: one whose platform is a wasi
/// or wasm one, else the only entry.
pub fn wasm_platform(entries: &[ImageIndexEntry]) -> Option<String> {
    let wasm = entries.iter().find(|entry| {
        entry.platform.as_ref().is_some_and(|p| {
            let os = p.os.to_string();
            let arch = p.architecture.to_string();
            os.starts_with("wasi") || arch.starts_with("wasm")
        })
    });
    match (wasm, entries) {
        (Some(entry), _) => Some(entry.digest.clone()),
        (None, [only]) => Some(only.digest.clone()),
        _ => None,
    }
}

/// Sorts a client error into the reasons users act on.
pub(crate) fn classify(reference: &Reference, error: OciDistributionError) -> OciError {
    let registry = reference.resolve_registry().to_owned();
    let text = reference.whole();
    match error {
        OciDistributionError::AuthenticationFailure(_)
        | OciDistributionError::UnauthorizedError { .. } => OciError::Unauthorized {
            registry,
            reference: text,
        },
        OciDistributionError::ServerError {
            code: 401 | 403, ..
        } => OciError::Unauthorized {
            registry,
            reference: text,
        },
        OciDistributionError::RegistryError { envelope, .. }
            if envelope.errors.iter().any(|e| {
                matches!(
                    e.code,
                    oci_client::errors::OciErrorCode::Unauthorized
                        | oci_client::errors::OciErrorCode::Denied
                )
            }) =>
        {
            OciError::Unauthorized {
                registry,
                reference: text,
            }
        }
        OciDistributionError::ImageManifestNotFoundError(_) => {
            OciError::NotFound { reference: text }
        }
        OciDistributionError::DigestError(e) => OciError::Verification {
            reference: text,
            reason: e.to_string(),
        },
        OciDistributionError::RequestError(e) if e.is_connect() || e.is_timeout() => {
            OciError::Unreachable {
                registry,
                reason: root_cause(&e),
            }
        }
        OciDistributionError::RegistryError { envelope, .. }
            if envelope.errors.iter().any(|e| {
                matches!(
                    e.code,
                    oci_client::errors::OciErrorCode::ManifestUnknown
                        | oci_client::errors::OciErrorCode::NameUnknown
                )
            }) =>
        {
            OciError::NotFound { reference: text }
        }
        other => OciError::Registry {
            reference: text,
            reason: root_cause(&other),
        },
    }
}

/// The innermost message of an error chain (reqwest's outer messages say
/// little).
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(source) = current.source() {
        current = source;
    }
    current.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_config_credentials_are_read_by_registry() {
        let json = br#"{"auths": {
            "127.0.0.1:5000": {"auth": "YWxpY2U6czNjcmV0"},
            "https://registry.example.org/v1/": {"username": "bob", "password": "pw"}
        }}"#;
        let credentials = Credentials::from_docker_config(json).unwrap();
        assert!(matches!(
            credentials.for_registry("127.0.0.1:5000"),
            RegistryAuth::Basic(u, p) if u == "alice" && p == "s3cret"
        ));
        assert!(matches!(
            credentials.for_registry("registry.example.org"),
            RegistryAuth::Basic(u, _) if u == "bob"
        ));
        assert!(matches!(
            credentials.for_registry("other:5000"),
            RegistryAuth::Anonymous
        ));
    }

    #[test]
    fn malformed_credentials_are_refused_with_the_registry_named() {
        let err =
            Credentials::from_docker_config(br#"{"auths": {"r:1": {"auth": "!!"}}}"#).unwrap_err();
        assert!(err.to_string().contains("r:1: auth is not base64"), "{err}");
        let err = Credentials::from_docker_config(br#"{"auths": {"r:1": {}}}"#).unwrap_err();
        assert!(err.to_string().contains("r:1: needs auth"), "{err}");
        assert!(Credentials::from_docker_config(b"not json").is_err());
    }

    #[test]
    fn references_are_parsed_with_clear_errors() {
        assert!(parse_reference("127.0.0.1:5000/algorithms/hello:v1").is_ok());
        let digest = format!("127.0.0.1:5000/hello@{}", Digest::of(b"x"));
        assert!(parse_reference(&digest).is_ok());
        let err = parse_reference("Not A Reference!").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid image reference \"Not A Reference!\""),
            "{err}"
        );
    }
}
