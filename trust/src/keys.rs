//! ECDSA P-256 keys as `openssl` writes them: public keys as PEM
//! `PUBLIC KEY` (SubjectPublicKeyInfo, also what `cosign generate-key-pair`
//! writes), private keys as PEM `EC PRIVATE KEY` (SEC1, with or without the
//! `EC PARAMETERS` block `openssl ecparam -genkey` puts before it) or
//! `PRIVATE KEY` (PKCS#8).
//!
//! This module owns reading key files into keys; a refusal names what the
//! file holds instead. It must never accept a key of another curve or
//! algorithm as a P-256 key.

use p256::ecdsa::{SigningKey, VerifyingKey};
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePublicKey};
use sha2::{Digest, Sha256};

/// A key file that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("holds no PEM block (expected -----BEGIN {expected}-----)")]
    NoPem { expected: &'static str },
    #[error("holds a PEM {found}, not {expected}")]
    WrongKind {
        found: String,
        expected: &'static str,
    },
    #[error("is not an ECDSA P-256 key ({0})")]
    NotP256(String),
}

/// A public key that module signatures are checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    key: VerifyingKey,
}

impl PublicKey {
    /// Reads a PEM `PUBLIC KEY`.
    pub fn from_pem(text: &str) -> Result<PublicKey, KeyError> {
        const EXPECTED: &str = "PUBLIC KEY";
        let labels = labels(text);
        if !labels.iter().any(|l| l == EXPECTED) {
            return Err(match labels.first() {
                None => KeyError::NoPem { expected: EXPECTED },
                Some(found) => KeyError::WrongKind {
                    found: found.clone(),
                    expected: EXPECTED,
                },
            });
        }
        let block = block(text, EXPECTED).unwrap_or(text);
        VerifyingKey::from_public_key_pem(block)
            .map(|key| PublicKey { key })
            .map_err(|e| KeyError::NotP256(e.to_string()))
    }

    pub(crate) fn verifying(&self) -> &VerifyingKey {
        &self.key
    }

    /// The key as a PEM `PUBLIC KEY`.
    pub fn to_pem(&self) -> String {
        self.key
            .to_public_key_pem(p256::pkcs8::LineEnding::LF)
            .unwrap_or_default()
    }

    /// `sha256:` and the first 16 hex digits of the SHA-256 of the key's
    /// DER form: how messages name a key.
    pub fn fingerprint(&self) -> String {
        let der = self
            .key
            .to_public_key_der()
            .map(|d| d.as_bytes().to_vec())
            .unwrap_or_default();
        let digest = Sha256::digest(der);
        let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        format!("sha256:{hex}")
    }
}

/// A private key that signs modules.
#[derive(Debug, Clone)]
pub struct PrivateKey {
    key: SigningKey,
}

impl PrivateKey {
    /// Reads a PEM `EC PRIVATE KEY` (SEC1) or `PRIVATE KEY` (PKCS#8).
    pub fn from_pem(text: &str) -> Result<PrivateKey, KeyError> {
        const EXPECTED: &str = "EC PRIVATE KEY or PRIVATE KEY";
        if let Some(block) = block(text, "EC PRIVATE KEY") {
            return p256::SecretKey::from_sec1_pem(block)
                .map(|secret| PrivateKey {
                    key: SigningKey::from(secret),
                })
                .map_err(|e| KeyError::NotP256(e.to_string()));
        }
        if let Some(block) = block(text, "PRIVATE KEY") {
            return SigningKey::from_pkcs8_pem(block)
                .map(|key| PrivateKey { key })
                .map_err(|e| KeyError::NotP256(e.to_string()));
        }
        Err(match labels(text).into_iter().next() {
            None => KeyError::NoPem { expected: EXPECTED },
            Some(found) => KeyError::WrongKind {
                found,
                expected: EXPECTED,
            },
        })
    }

    /// A fresh key (for tests and `sandlet` users without openssl).
    pub fn generate() -> PrivateKey {
        PrivateKey {
            key: SigningKey::random(&mut p256::elliptic_curve::rand_core::OsRng),
        }
    }

    pub fn public(&self) -> PublicKey {
        PublicKey {
            key: *self.key.verifying_key(),
        }
    }

    pub(crate) fn signing(&self) -> &SigningKey {
        &self.key
    }
}

/// The labels of the PEM blocks in `text`, in order.
fn labels(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| {
            line.trim()
                .strip_prefix("-----BEGIN ")
                .and_then(|rest| rest.strip_suffix("-----"))
                .map(str::to_owned)
        })
        .collect()
}

/// The PEM block labelled `label`, from its BEGIN line to its END line.
fn block<'a>(text: &'a str, label: &str) -> Option<&'a str> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)?;
    let stop = text[start..].find(&end)? + start + end.len();
    Some(&text[start..stop])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn openssl(args: &[&str]) -> Vec<u8> {
        let out = Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl");
        assert!(out.status.success(), "openssl {args:?}: {out:?}");
        out.stdout
    }

    #[test]
    fn keys_as_openssl_writes_them_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let sec1 = dir.path().join("sec1.pem");
        let pkcs8 = dir.path().join("pkcs8.pem");
        // `ecparam -genkey` without -noout: EC PARAMETERS first.
        let text = openssl(&["ecparam", "-name", "prime256v1", "-genkey"]);
        std::fs::write(&sec1, &text).unwrap();
        openssl(&[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            pkcs8.to_str().unwrap(),
        ]);
        for path in [&sec1, &pkcs8] {
            let private = PrivateKey::from_pem(&std::fs::read_to_string(path).unwrap()).unwrap();
            let public =
                String::from_utf8(openssl(&["pkey", "-in", path.to_str().unwrap(), "-pubout"]))
                    .unwrap();
            let public = PublicKey::from_pem(&public).unwrap();
            assert_eq!(private.public(), public, "{}", path.display());
            assert!(public.fingerprint().starts_with("sha256:"));
            assert_eq!(PublicKey::from_pem(&public.to_pem()).unwrap(), public);
        }
    }

    #[test]
    fn other_keys_and_other_files_are_refused_with_what_they_hold() {
        let rsa = String::from_utf8(openssl(&[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:1024",
        ]))
        .unwrap();
        assert!(matches!(
            PrivateKey::from_pem(&rsa),
            Err(KeyError::NotP256(_))
        ));
        let p384 = String::from_utf8(openssl(&[
            "ecparam",
            "-name",
            "secp384r1",
            "-genkey",
            "-noout",
        ]))
        .unwrap();
        assert!(matches!(
            PrivateKey::from_pem(&p384),
            Err(KeyError::NotP256(_))
        ));
        assert_eq!(
            PublicKey::from_pem("not a key"),
            Err(KeyError::NoPem {
                expected: "PUBLIC KEY"
            })
        );
        let error = PublicKey::from_pem(&rsa).unwrap_err();
        assert_eq!(
            error,
            KeyError::WrongKind {
                found: "PRIVATE KEY".into(),
                expected: "PUBLIC KEY"
            },
            "a private key given where a public one belongs"
        );
    }
}
