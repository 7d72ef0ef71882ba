//! ECDSA P-256 keys as `openssl` writes them: public keys as PEM
//! `PUBLIC KEY` (SubjectPublicKeyInfo, also what `cosign generate-key-pair`
//! writes), private keys as PEM `EC PRIVATE KEY` (SEC1, with or without the
//! `EC PARAMETERS` block `openssl ecparam -genkey` puts before it) or
//! `PRIVATE KEY` (PKCS#8), and cosign's own encrypted private keys (PEM
//! `ENCRYPTED SIGSTORE PRIVATE KEY` or the older `ENCRYPTED COSIGN PRIVATE
//! KEY`: PKCS#8 sealed with NaCl secretbox under a scrypt-derived key), given
//! their password.
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
    /// The file holds no PEM block at all.
    #[error("holds no PEM block (expected -----BEGIN {expected}-----)")]
    NoPem {
        /// The PEM label that was looked for.
        expected: &'static str,
    },
    /// The file holds PEM of another kind (a private key where a public
    /// one was wanted, a certificate, ...).
    #[error("holds a PEM {found}, not {expected}")]
    WrongKind {
        /// The label of the first PEM block in the file.
        found: String,
        /// The PEM label that was looked for.
        expected: &'static str,
    },
    /// The PEM block is a key, but not an ECDSA P-256 one, or is damaged.
    #[error("is not an ECDSA P-256 key ({0})")]
    NotP256(String),
    /// An encrypted cosign key was given without a password.
    #[error("is an encrypted cosign key: its password is needed (COSIGN_PASSWORD)")]
    NeedsPassword,
    /// An encrypted cosign key did not open with the password given.
    #[error("cannot be decrypted with this password (or is damaged)")]
    WrongPassword,
    /// An encrypted cosign key whose envelope (KDF, cipher, parameters) is
    /// not as cosign writes it, or asks for too much scrypt memory.
    #[error("is not a cosign encrypted key as cosign writes it: {0}")]
    NotCosign(String),
}

/// The PEM labels of cosign's encrypted private keys, newest first.
const COSIGN_LABELS: [&str; 2] = [
    "ENCRYPTED SIGSTORE PRIVATE KEY",
    "ENCRYPTED COSIGN PRIVATE KEY",
];

/// The most memory an encrypted key's scrypt parameters may ask for
/// (128 * r * N bytes); cosign's own take 64 MiB.
const MAX_SCRYPT_BYTES: u64 = 256 << 20;

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
    /// Whether `text` holds one of cosign's encrypted private keys, which
    /// [`PrivateKey::from_encrypted_pem`] reads with a password.
    pub fn is_encrypted(text: &str) -> bool {
        COSIGN_LABELS
            .iter()
            .any(|label| block(text, label).is_some())
    }

    /// Reads a key [`PrivateKey::from_pem`] reads, or one of cosign's
    /// encrypted ones with `password` (cosign's `COSIGN_PASSWORD`; `None`
    /// when none was given).
    pub fn from_encrypted_pem(text: &str, password: Option<&[u8]>) -> Result<PrivateKey, KeyError> {
        let Some(block) = COSIGN_LABELS.iter().find_map(|label| block(text, label)) else {
            return Self::from_pem(text);
        };
        let password = password.ok_or(KeyError::NeedsPassword)?;
        let der = cosign_decrypt(block, password)?;
        SigningKey::from_pkcs8_der(&der)
            .map(|key| PrivateKey { key })
            .map_err(|e| KeyError::NotP256(e.to_string()))
    }

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

    /// The public key that checks this key's signatures.
    pub fn public(&self) -> PublicKey {
        PublicKey {
            key: *self.key.verifying_key(),
        }
    }

    pub(crate) fn signing(&self) -> &SigningKey {
        &self.key
    }
}

/// cosign's encrypted key format: the PEM body is JSON naming the KDF
/// (scrypt, with its parameters and salt) and the cipher (NaCl secretbox,
/// with its nonce) of the ciphertext, a PKCS#8 DER key.
fn cosign_decrypt(block: &str, password: &[u8]) -> Result<Vec<u8>, KeyError> {
    use base64::Engine as _;
    use crypto_secretbox::aead::{Aead, KeyInit};

    #[derive(serde::Deserialize)]
    struct Sealed {
        kdf: Kdf,
        cipher: Cipher,
        ciphertext: String,
    }
    #[derive(serde::Deserialize)]
    struct Kdf {
        name: String,
        params: Params,
        salt: String,
    }
    #[derive(serde::Deserialize)]
    struct Params {
        #[serde(rename = "N")]
        n: u64,
        r: u32,
        p: u32,
    }
    #[derive(serde::Deserialize)]
    struct Cipher {
        name: String,
        nonce: String,
    }

    let bad = |why: String| KeyError::NotCosign(why);
    let b64 = base64::engine::general_purpose::STANDARD;
    let body: String = block
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .map(str::trim)
        .collect();
    let json = b64
        .decode(body)
        .map_err(|e| bad(format!("its body is not base64 ({e})")))?;
    let sealed: Sealed = serde_json::from_slice(&json)
        .map_err(|e| bad(format!("its body is not cosign's JSON ({e})")))?;
    if sealed.kdf.name != "scrypt" {
        return Err(bad(format!(
            "key derivation {:?}, not scrypt",
            sealed.kdf.name
        )));
    }
    if sealed.cipher.name != "nacl/secretbox" {
        return Err(bad(format!(
            "cipher {:?}, not nacl/secretbox",
            sealed.cipher.name
        )));
    }
    let Params { n, r, p } = sealed.kdf.params;
    if !n.is_power_of_two() || n < 2 {
        return Err(bad(format!("scrypt N = {n} is not a power of two")));
    }
    if 128 * u64::from(r) * n > MAX_SCRYPT_BYTES || p == 0 || p > 16 {
        return Err(bad(format!(
            "scrypt parameters N = {n}, r = {r}, p = {p} ask for more than {} MiB or are out of range",
            MAX_SCRYPT_BYTES >> 20
        )));
    }
    let params = scrypt::Params::new(n.trailing_zeros() as u8, r, p, 32)
        .map_err(|e| bad(format!("scrypt parameters: {e}")))?;
    let salt = b64
        .decode(&sealed.kdf.salt)
        .map_err(|e| bad(format!("salt: {e}")))?;
    let nonce = b64
        .decode(&sealed.cipher.nonce)
        .map_err(|e| bad(format!("nonce: {e}")))?;
    if nonce.len() != 24 {
        return Err(bad(format!("a nonce of {} bytes, not 24", nonce.len())));
    }
    let ciphertext = b64
        .decode(&sealed.ciphertext)
        .map_err(|e| bad(format!("ciphertext: {e}")))?;
    let mut key = [0u8; 32];
    scrypt::scrypt(password, &salt, &params, &mut key).map_err(|e| bad(format!("scrypt: {e}")))?;
    let cipher = crypto_secretbox::XSalsa20Poly1305::new(&key.into());
    cipher
        .decrypt(
            crypto_secretbox::Nonce::from_slice(&nonce),
            ciphertext.as_slice(),
        )
        .map_err(|_| KeyError::WrongPassword)
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

    /// Written by `cosign generate-key-pair` with an empty password
    /// (sigstore-rs keeps it as an interoperability vector:
    /// tests/data/keys/cosign_generated_encrypted_empty_private.key,
    /// Apache-2.0).
    const COSIGN_EMPTY_PASSWORD: &str =
        include_str!("../testdata/cosign-generated-empty-password.key");

    /// The older label, password "123" (sigstore-rs:
    /// tests/data/keys/ecdsa_encrypted_private.key, Apache-2.0).
    const COSIGN_PASSWORD_123: &str = include_str!("../testdata/sigstore-rs-password-123.key");

    #[test]
    fn cosigns_encrypted_keys_open_with_their_password_only() {
        for (text, password) in [
            (COSIGN_EMPTY_PASSWORD, &b""[..]),
            (COSIGN_PASSWORD_123, &b"123"[..]),
        ] {
            assert!(PrivateKey::is_encrypted(text));
            let key = PrivateKey::from_encrypted_pem(text, Some(password)).unwrap();
            // It signs, and its public half verifies what it signed.
            let payload = crate::cosign::payload("r/m", "sha256:00");
            let signature = crate::cosign::sign(&key, &payload);
            let public = [key.public()];
            assert!(crate::cosign::verify(&payload, &signature, "sha256:00", &public).is_ok());
            assert_eq!(
                PrivateKey::from_encrypted_pem(text, None).unwrap_err(),
                KeyError::NeedsPassword
            );
            assert_eq!(
                PrivateKey::from_encrypted_pem(text, Some(b"wrong")).unwrap_err(),
                KeyError::WrongPassword
            );
            // Without the password path, the label is named.
            let e = PrivateKey::from_pem(text).unwrap_err();
            assert!(matches!(e, KeyError::WrongKind { .. }), "{e}");
        }
        // A plain key reads the same with or without a password.
        assert!(!PrivateKey::is_encrypted("-----BEGIN EC PRIVATE KEY-----"));
        let text =
            String::from_utf8(openssl(&["ecparam", "-name", "prime256v1", "-genkey"])).unwrap();
        assert!(PrivateKey::from_encrypted_pem(&text, Some(b"x")).is_ok());
    }

    #[test]
    fn damaged_or_hostile_cosign_keys_are_refused_by_name() {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let wrap = |json: &str| {
            format!(
                "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n{}\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n",
                b64.encode(json)
            )
        };
        let salt = b64.encode([1u8; 32]);
        let nonce = b64.encode([2u8; 24]);
        let good_kdf =
            format!(r#"{{"name":"scrypt","params":{{"N":1024,"r":8,"p":1}},"salt":"{salt}"}}"#);
        let good_cipher = format!(r#"{{"name":"nacl/secretbox","nonce":"{nonce}"}}"#);
        for (json, expected) in [
            ("not json".to_owned(), "not cosign's JSON"),
            (
                format!(
                    r#"{{"kdf":{{"name":"argon2","params":{{"N":1024,"r":8,"p":1}},"salt":"{salt}"}},"cipher":{good_cipher},"ciphertext":"AAAA"}}"#
                ),
                "key derivation \"argon2\", not scrypt",
            ),
            (
                format!(
                    r#"{{"kdf":{good_kdf},"cipher":{{"name":"aes","nonce":"{nonce}"}},"ciphertext":"AAAA"}}"#
                ),
                "cipher \"aes\"",
            ),
            (
                format!(
                    r#"{{"kdf":{{"name":"scrypt","params":{{"N":1000,"r":8,"p":1}},"salt":"{salt}"}},"cipher":{good_cipher},"ciphertext":"AAAA"}}"#
                ),
                "not a power of two",
            ),
            // 2^30 * 8 * 128 bytes of scrypt memory: refused before any work.
            (
                format!(
                    r#"{{"kdf":{{"name":"scrypt","params":{{"N":1073741824,"r":8,"p":1}},"salt":"{salt}"}},"cipher":{good_cipher},"ciphertext":"AAAA"}}"#
                ),
                "ask for more than 256 MiB",
            ),
            (
                format!(
                    r#"{{"kdf":{good_kdf},"cipher":{{"name":"nacl/secretbox","nonce":"AAAA"}},"ciphertext":"AAAA"}}"#
                ),
                "a nonce of 3 bytes",
            ),
        ] {
            let e = PrivateKey::from_encrypted_pem(&wrap(&json), Some(b"pw")).unwrap_err();
            assert!(e.to_string().contains(expected), "{json}: {e}");
        }
        // Well-formed but not sealed under this password.
        let e = PrivateKey::from_encrypted_pem(
            &wrap(&format!(
                r#"{{"kdf":{good_kdf},"cipher":{good_cipher},"ciphertext":"{}"}}"#,
                b64.encode([0u8; 64])
            )),
            Some(b"pw"),
        )
        .unwrap_err();
        assert_eq!(e, KeyError::WrongPassword);
    }
}
