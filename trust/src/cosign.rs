//! Module signatures in cosign's format, so that `cosign verify --key`
//! checks what `sandlet sign` writes, and sandlet checks what `cosign sign`
//! writes in its tag format.
//!
//! A signature of the manifest `sha256:<hex>` lives in the same repository
//! under the tag `sha256-<hex>.sig`: an OCI image manifest whose layers are
//! signatures, each a simple-signing JSON payload (media type
//! [`PAYLOAD_MEDIA_TYPE`]) naming the signed manifest digest, with the
//! base64 DER ECDSA P-256 / SHA-256 signature of the payload's exact bytes
//! in the layer annotation [`SIGNATURE_ANNOTATION`]. This module owns the
//! payload, signing and checking one layer; it does no IO (the registry
//! crate fetches and pushes the artifact). It must never accept a layer
//! whose payload names another digest, or check a signature over anything
//! but the payload bytes as stored.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use p256::ecdsa::signature::{Signer as _, Verifier as _};
use serde::{Deserialize, Serialize};

use super::keys::{PrivateKey, PublicKey};

/// The media type of a signature layer.
pub const PAYLOAD_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The layer annotation holding the base64 signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// The payload's `critical.type`.
pub const SIGNATURE_TYPE: &str = "cosign container image signature";

/// The tag of the signatures of `digest` (`sha256:<hex>`).
pub fn signature_tag(digest: &str) -> String {
    format!("{}.sig", digest.replacen(':', "-", 1))
}

#[derive(Debug, Serialize, Deserialize)]
struct Payload {
    critical: Critical,
    optional: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Critical {
    identity: Identity,
    image: Image,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Identity {
    #[serde(rename = "docker-reference")]
    docker_reference: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Image {
    #[serde(rename = "docker-manifest-digest")]
    docker_manifest_digest: String,
}

/// The payload that signs `digest` for `repository` (`registry/path`,
/// without tag or digest), in the field order cosign writes.
pub fn payload(repository: &str, digest: &str) -> Vec<u8> {
    let payload = Payload {
        critical: Critical {
            identity: Identity {
                docker_reference: repository.to_owned(),
            },
            image: Image {
                docker_manifest_digest: digest.to_owned(),
            },
            kind: SIGNATURE_TYPE.to_owned(),
        },
        optional: None,
    };
    serde_json::to_vec(&payload).unwrap_or_default()
}

/// Signs `payload`: the base64 of the DER ECDSA signature of its SHA-256.
pub fn sign(key: &PrivateKey, payload: &[u8]) -> String {
    let signature: p256::ecdsa::Signature = key.signing().sign(payload);
    STANDARD.encode(signature.to_der().as_bytes())
}

/// Why a signature layer does not vouch for a digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    /// The layer's payload is not cosign's simple-signing JSON, or its
    /// `critical.type` is another; says what was wrong.
    #[error("the payload is not a cosign signature payload ({0})")]
    NotAPayload(String),
    /// The payload signs another manifest digest than the one checked.
    #[error("the payload signs {signed}, not {wanted}")]
    OtherDigest {
        /// The digest the payload names.
        signed: String,
        /// The digest being checked.
        wanted: String,
    },
    /// The signature annotation is not base64 of a DER ECDSA signature.
    #[error("the signature is not base64 DER ECDSA ({0})")]
    Malformed(String),
    /// The signature is well formed, but none of the trusted keys made it.
    #[error("no trusted key made this signature")]
    NoTrustedKey,
}

/// Checks one signature layer for `digest`: the payload must be a cosign
/// payload naming exactly `digest`, and `signature` (the annotation's
/// base64) a signature of the payload's bytes by one of `keys`. Returns the
/// key that made it.
pub fn verify<'k>(
    payload: &[u8],
    signature: &str,
    digest: &str,
    keys: &'k [PublicKey],
) -> Result<&'k PublicKey, Rejected> {
    let parsed: Payload =
        serde_json::from_slice(payload).map_err(|e| Rejected::NotAPayload(e.to_string()))?;
    if parsed.critical.kind != SIGNATURE_TYPE {
        return Err(Rejected::NotAPayload(format!(
            "type {:?}",
            parsed.critical.kind
        )));
    }
    if parsed.critical.image.docker_manifest_digest != digest {
        return Err(Rejected::OtherDigest {
            signed: parsed.critical.image.docker_manifest_digest,
            wanted: digest.to_owned(),
        });
    }
    let der = STANDARD
        .decode(signature.trim())
        .map_err(|e| Rejected::Malformed(e.to_string()))?;
    let signature =
        p256::ecdsa::Signature::from_der(&der).map_err(|e| Rejected::Malformed(e.to_string()))?;
    keys.iter()
        .find(|key| key.verifying().verify(payload, &signature).is_ok())
        .ok_or(Rejected::NoTrustedKey)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn the_payload_and_tag_are_cosigns() {
        assert_eq!(
            String::from_utf8(payload("127.0.0.1:5000/algorithms/mean", DIGEST)).unwrap(),
            format!(
                "{{\"critical\":{{\"identity\":{{\"docker-reference\":\"127.0.0.1:5000/algorithms/mean\"}},\
                 \"image\":{{\"docker-manifest-digest\":\"{DIGEST}\"}},\
                 \"type\":\"cosign container image signature\"}},\"optional\":null}}"
            )
        );
        assert_eq!(
            signature_tag(DIGEST),
            "sha256-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.sig"
        );
    }

    #[test]
    fn a_signature_verifies_for_its_digest_and_trusted_key_only() {
        let key = PrivateKey::generate();
        let other = PrivateKey::generate();
        let body = payload("r/m", DIGEST);
        let signature = sign(&key, &body);
        let trusted = [other.public(), key.public()];
        assert_eq!(verify(&body, &signature, DIGEST, &trusted), Ok(&trusted[1]));
        assert_eq!(
            verify(&body, &signature, DIGEST, &[other.public()]),
            Err(Rejected::NoTrustedKey)
        );
        let elsewhere = DIGEST.replace("0123", "9999");
        assert!(matches!(
            verify(&body, &signature, &elsewhere, &trusted),
            Err(Rejected::OtherDigest { .. })
        ));
        // The payload changed by one byte (a space): the signature no
        // longer holds, though the JSON means the same.
        let mut spaced = body.clone();
        spaced.insert(1, b' ');
        assert_eq!(
            verify(&spaced, &signature, DIGEST, &trusted),
            Err(Rejected::NoTrustedKey)
        );
        // A tampered signature.
        let mut der = STANDARD.decode(&signature).unwrap();
        let last = der.len() - 1;
        der[last] ^= 1;
        assert!(verify(&body, &STANDARD.encode(der), DIGEST, &trusted).is_err());
        assert!(matches!(
            verify(&body, "not base64!", DIGEST, &trusted),
            Err(Rejected::Malformed(_))
        ));
        assert!(matches!(
            verify(b"{}", &signature, DIGEST, &trusted),
            Err(Rejected::NotAPayload(_))
        ));
    }

    /// openssl signs as cosign does (SHA-256, DER ECDSA), and checks what
    /// this module signs.
    #[test]
    fn signatures_interoperate_with_openssl() {
        let dir = tempfile::tempdir().unwrap();
        let run = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .output()
                .unwrap();
            assert!(out.status.success(), "openssl {args:?}: {out:?}");
            out.stdout
        };
        run(&[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "key.pem",
        ]);
        run(&["ec", "-in", "key.pem", "-pubout", "-out", "key.pub"]);
        let body = payload("r/m", DIGEST);
        std::fs::write(dir.path().join("payload"), &body).unwrap();
        run(&[
            "dgst", "-sha256", "-sign", "key.pem", "-out", "sig", "payload",
        ]);
        let public =
            PublicKey::from_pem(&std::fs::read_to_string(dir.path().join("key.pub")).unwrap())
                .unwrap();
        let by_openssl = STANDARD.encode(std::fs::read(dir.path().join("sig")).unwrap());
        assert!(verify(&body, &by_openssl, DIGEST, std::slice::from_ref(&public)).is_ok());

        let private =
            PrivateKey::from_pem(&std::fs::read_to_string(dir.path().join("key.pem")).unwrap())
                .unwrap();
        let ours = STANDARD.decode(sign(&private, &body)).unwrap();
        std::fs::write(dir.path().join("ours"), ours).unwrap();
        let checked = run(&[
            "dgst",
            "-sha256",
            "-verify",
            "key.pub",
            "-signature",
            "ours",
            "payload",
        ]);
        assert_eq!(String::from_utf8_lossy(&checked).trim(), "Verified OK");
    }
}
