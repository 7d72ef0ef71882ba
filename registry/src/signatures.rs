//! Module signatures in the registry: the cosign `sha256-<hex>.sig`
//! artifact beside a module, written by `sandlet sign`, read by `sandlet
//! verify`, and checked before the download when a station's allow-list
//! rule names keys.
//!
//! This module owns fetching and appending signature artifacts and the
//! per-process cache of signatures that verified; the format itself is
//! `sandlet_trust::cosign`'s. It must never count a signature layer whose
//! payload bytes do not match their digest, nor download more than a
//! signature's worth of bytes for one layer, nor cache a failure (a
//! signature added later must be found).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

use oci_client::Reference;
use oci_client::manifest::{
    IMAGE_CONFIG_MEDIA_TYPE, OCI_IMAGE_MEDIA_TYPE, OciDescriptor, OciImageManifest, OciManifest,
};
use oci_client::secrets::RegistryAuth;
use sha2::{Digest as _, Sha256};

use sandlet_core::Digest;
use sandlet_trust::cosign;
use sandlet_trust::{PrivateKey, PublicKey};

use super::allow_list::NotAllowed;
use super::oci::{Credentials, OciError, Registry, classify, parse_reference, repository_name};

/// The most bytes one signature payload may have (cosign's are a few
/// hundred).
const MAX_PAYLOAD_BYTES: i64 = 64 * 1024;
/// The most signature layers read for one digest.
const MAX_SIGNATURES: usize = 100;

/// A signature written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// The manifest digest signed.
    pub digest: Digest,
    /// `<repository>:sha256-<hex>.sig`.
    pub signatures: String,
    /// How many signatures the artifact holds now.
    pub count: usize,
}

/// A signature that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The manifest digest the reference resolved to and the signature
    /// signs.
    pub digest: Digest,
    /// The fingerprint of the key that made it.
    pub key: String,
}

/// Which key fingerprints have signed which manifest digests in which
/// repository, as checked in this process. The repository is part of the
/// key because a signature is looked for beside the module, as cosign
/// does: the same bytes pushed to a second repository are not admitted
/// there by a signature in the first, whatever was checked before.
#[derive(Debug, Default)]
pub(crate) struct VerifiedCache {
    signed: Mutex<HashMap<(String, Digest), HashSet<String>>>,
}

impl VerifiedCache {
    /// A fingerprint among `keys` already known to have signed `digest` in
    /// `repository`.
    fn lookup(&self, repository: &str, digest: &Digest, keys: &[PublicKey]) -> Option<String> {
        let signed = self.signed.lock().expect("signature cache poisoned");
        let known = signed.get(&(repository.to_owned(), *digest))?;
        keys.iter()
            .map(PublicKey::fingerprint)
            .find(|fingerprint| known.contains(fingerprint))
    }

    fn record(&self, repository: &str, digest: &Digest, fingerprint: &str) {
        self.signed
            .lock()
            .expect("signature cache poisoned")
            .entry((repository.to_owned(), *digest))
            .or_default()
            .insert(fingerprint.to_owned());
    }
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

fn signature_reference(reference: &Reference, digest: &Digest) -> Reference {
    Reference::with_tag(
        reference.registry().to_owned(),
        reference.repository().to_owned(),
        cosign::signature_tag(&digest.to_string()),
    )
}

fn unsigned(reference: &Reference, reason: impl std::fmt::Display) -> OciError {
    OciError::Unsigned {
        reference: reference.whole(),
        reason: reason.to_string(),
    }
}

impl Registry {
    /// The signature artifact's manifest of `digest`, if there is one.
    async fn signature_manifest(
        &self,
        reference: &Reference,
        auth: &RegistryAuth,
        digest: &Digest,
    ) -> Result<Option<OciImageManifest>, OciError> {
        let signatures = signature_reference(reference, digest);
        match self
            .client(reference.resolve_registry(), auth)
            .pull_manifest(&signatures, auth)
            .await
            .map_err(|e| classify(&signatures, e))
        {
            Ok((OciManifest::Image(manifest), _)) => Ok(Some(manifest)),
            Ok((OciManifest::ImageIndex(_), _)) => Err(unsigned(
                reference,
                "its signature artifact is an index, not a cosign signature manifest",
            )),
            Err(OciError::NotFound { .. }) => Ok(None),
            Err(other) => Err(other),
        }
    }

    /// Signs the manifest `reference` resolves to with `key`, appending the
    /// signature to the digest's signature artifact (as cosign does; a
    /// signature already there is not added twice).
    pub async fn sign(
        &self,
        reference: &str,
        credentials: &Credentials,
        key: &PrivateKey,
    ) -> Result<Signed, OciError> {
        let reference = parse_reference(reference)?;
        let auth = credentials.for_registry(reference.resolve_registry());
        let digest = self.manifest_digest(&reference, &auth).await?;
        let repository = repository_name(&reference);
        let payload = cosign::payload(&repository, &digest.to_string());
        let signature = cosign::sign(key, &payload);
        let existing = self
            .signature_manifest(&reference, &auth, &digest)
            .await?
            .map(|m| m.layers)
            .unwrap_or_default();
        let target = signature_reference(&reference, &digest);
        let client = self.client(reference.resolve_registry(), &auth);
        client
            .auth(&target, &auth, oci_client::RegistryOperation::Push)
            .await
            .map_err(|e| classify(&target, e))?;
        let payload_digest = sha256(&payload);
        let mut layers = existing;
        layers.push(OciDescriptor {
            media_type: cosign::PAYLOAD_MEDIA_TYPE.to_owned(),
            digest: payload_digest.clone(),
            size: payload.len() as i64,
            annotations: Some(BTreeMap::from([(
                cosign::SIGNATURE_ANNOTATION.to_owned(),
                signature,
            )])),
            ..OciDescriptor::default()
        });
        client
            .push_blob(&target, payload, &payload_digest)
            .await
            .map_err(|e| classify(&target, e))?;
        let config = b"{}".to_vec();
        let config_digest = sha256(&config);
        let config_size = config.len() as i64;
        client
            .push_blob(&target, config, &config_digest)
            .await
            .map_err(|e| classify(&target, e))?;
        let manifest = OciImageManifest {
            media_type: Some(OCI_IMAGE_MEDIA_TYPE.to_owned()),
            config: OciDescriptor {
                media_type: IMAGE_CONFIG_MEDIA_TYPE.to_owned(),
                digest: config_digest,
                size: config_size,
                ..OciDescriptor::default()
            },
            layers,
            ..OciImageManifest::default()
        };
        let count = manifest.layers.len();
        client
            .push_manifest(&target, &OciManifest::Image(manifest))
            .await
            .map_err(|e| classify(&target, e))?;
        Ok(Signed {
            digest,
            signatures: target.whole(),
            count,
        })
    }

    /// Checks that the manifest `reference` resolves to has a valid
    /// signature by one of `keys`.
    pub async fn verify_signature(
        &self,
        reference: &str,
        credentials: &Credentials,
        keys: &[PublicKey],
    ) -> Result<Verified, OciError> {
        let reference = parse_reference(reference)?;
        let auth = credentials.for_registry(reference.resolve_registry());
        let digest = self.manifest_digest(&reference, &auth).await?;
        let key = self.check_signed(&reference, &auth, &digest, keys).await?;
        Ok(Verified { digest, key })
    }

    /// Admits the module whose manifest digest is `digest` only if one of
    /// `keys` signed it, from the cache or from the registry; returns the
    /// key's fingerprint. A missing or bad signature is
    /// [`OciError::NotAllowed`] (no retry cures it); a registry that fails
    /// is its own error, as for any pull.
    pub(crate) async fn admit_signed(
        &self,
        text: &str,
        reference: &Reference,
        auth: &RegistryAuth,
        digest: &Digest,
        keys: &[PublicKey],
    ) -> Result<String, OciError> {
        let repository = repository_name(reference);
        if let Some(fingerprint) = self.verified.lookup(&repository, digest, keys) {
            return Ok(fingerprint);
        }
        match self.check_signed(reference, auth, digest, keys).await {
            Ok(fingerprint) => {
                self.verified.record(&repository, digest, &fingerprint);
                Ok(fingerprint)
            }
            Err(OciError::Unsigned { reason, .. }) => Err(OciError::NotAllowed(NotAllowed {
                reference: text.to_owned(),
                reason: format!("no valid signature by a trusted key: {reason}"),
            })),
            Err(other) => Err(other),
        }
    }

    /// As the signature check of [`Registry::pull`], for a module already
    /// stored: `image_id` is its `repository@manifest-digest`.
    pub async fn admit_stored(
        &self,
        text: &str,
        image_id: &str,
        credentials: &Credentials,
        digest: &Digest,
        keys: &[PublicKey],
    ) -> Result<String, OciError> {
        let reference = parse_reference(image_id)?;
        let auth = credentials.for_registry(reference.resolve_registry());
        self.admit_signed(text, &reference, &auth, digest, keys)
            .await
    }

    /// Checks the signature artifact of `digest` (in `reference`'s
    /// repository): some layer's payload must name exactly `digest` and be
    /// signed by one of `keys`. Returns that key's fingerprint.
    ///
    /// A layer whose payload is the one `sandlet sign` would write for this
    /// repository and digest (its descriptor's digest says so) is checked
    /// without fetching it: the signature manifest is then the only
    /// request. Other payloads (cosign's with optional claims, or from
    /// another repository) are fetched and checked as stored.
    pub(crate) async fn check_signed(
        &self,
        reference: &Reference,
        auth: &RegistryAuth,
        digest: &Digest,
        keys: &[PublicKey],
    ) -> Result<String, OciError> {
        let Some(manifest) = self.signature_manifest(reference, auth, digest).await? else {
            return Err(unsigned(reference, "it has no signature"));
        };
        let signatures = signature_reference(reference, digest);
        let repository = repository_name(reference);
        let expected = cosign::payload(&repository, &digest.to_string());
        let expected_digest = sha256(&expected);
        let mut reasons = Vec::new();
        for layer in manifest.layers.iter().take(MAX_SIGNATURES) {
            if layer.media_type != cosign::PAYLOAD_MEDIA_TYPE {
                continue;
            }
            let Some(signature) = layer
                .annotations
                .as_ref()
                .and_then(|a| a.get(cosign::SIGNATURE_ANNOTATION))
            else {
                reasons.push("a layer without a signature".to_owned());
                continue;
            };
            if !(0..=MAX_PAYLOAD_BYTES).contains(&layer.size) {
                reasons.push(format!("a payload of {} bytes", layer.size));
                continue;
            }
            let payload = if layer.digest == expected_digest {
                expected.clone()
            } else {
                match self
                    .fetch_small_blob(&signatures, auth, layer, MAX_PAYLOAD_BYTES as u64)
                    .await
                {
                    Ok(payload) => payload,
                    Err(OciError::Verification { .. }) => {
                        reasons.push("a payload that does not match its digest".to_owned());
                        continue;
                    }
                    Err(other) => return Err(other),
                }
            };
            match cosign::verify(&payload, signature, &digest.to_string(), keys) {
                Ok(key) => return Ok(key.fingerprint()),
                Err(rejected) => reasons.push(rejected.to_string()),
            }
        }
        reasons.dedup();
        Err(unsigned(
            reference,
            if reasons.is_empty() {
                "its signature artifact holds no signature".to_owned()
            } else {
                reasons.join("; ")
            },
        ))
    }
}
