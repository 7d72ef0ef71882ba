//! Sealed results: a result encrypted to its requester's age X25519
//! recipient (`age1...`), ASCII-armored, so that only the matching identity
//! opens it, with `sandlet open` or the standard `age -d -i` tool.
//!
//! This module owns the recipient's syntax and the age format (through the
//! `age` crate). It must never return plaintext from `seal`, nor accept a
//! recipient kind other than X25519 (which every `age` release reads).

use std::io::{BufReader, Read as _};
use std::str::FromStr as _;

/// Why a recipient, a seal or an opening failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The recipient text (first) is not an `age1...` X25519 recipient;
    /// the second says why.
    #[error("{0:?} is not an age X25519 recipient (age1...): {1}")]
    Recipient(String, String),
    /// Encryption failed.
    #[error("cannot seal the result: {0}")]
    Seal(String),
    /// The identity file cannot be parsed, or holds no key.
    #[error("the identity file cannot be read: {0}")]
    Identity(String),
    /// The result was sealed to a recipient none of the identity's keys
    /// matches.
    #[error("not sealed for this identity: no key in the identity file opens it")]
    NotForThisIdentity,
    /// The sealed result is not age's armored format, or is damaged.
    #[error("cannot open the result: {0}")]
    Open(String),
}

/// Whom a result is sealed to.
#[derive(Clone)]
pub struct Recipient {
    key: age::x25519::Recipient,
    text: String,
}

impl std::fmt::Debug for Recipient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl Recipient {
    /// Reads an `age1...` recipient.
    pub fn parse(text: &str) -> Result<Recipient, SealError> {
        let trimmed = text.trim();
        age::x25519::Recipient::from_str(trimmed)
            .map(|key| Recipient {
                key,
                text: trimmed.to_owned(),
            })
            .map_err(|e| SealError::Recipient(trimmed.to_owned(), e.to_string()))
    }

    /// The recipient as written (`age1...`), without surrounding
    /// whitespace.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// `plaintext` encrypted to `recipient`, ASCII-armored
/// (`-----BEGIN AGE ENCRYPTED FILE-----`).
pub fn seal(recipient: &Recipient, plaintext: &[u8]) -> Result<String, SealError> {
    age::encrypt_and_armor(&recipient.key, plaintext).map_err(|e| SealError::Seal(e.to_string()))
}

/// Opens a sealed result with the keys of an age identity file (its
/// `AGE-SECRET-KEY-1...` lines; comments allowed).
pub fn open(identity_file: &str, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
    let identities = age::IdentityFile::from_buffer(BufReader::new(identity_file.as_bytes()))
        .map_err(|e| SealError::Identity(e.to_string()))?
        .into_identities()
        .map_err(|e| SealError::Identity(e.to_string()))?;
    if identities.is_empty() {
        return Err(SealError::Identity("it holds no key".to_owned()));
    }
    let decryptor = age::Decryptor::new_buffered(age::armor::ArmoredReader::new(sealed))
        .map_err(|e| SealError::Open(e.to_string()))?;
    let mut reader = decryptor
        .decrypt(identities.iter().map(|i| i.as_ref() as &dyn age::Identity))
        .map_err(|e| match e {
            age::DecryptError::NoMatchingKeys => SealError::NotForThisIdentity,
            other => SealError::Open(other.to_string()),
        })?;
    let mut plaintext = Vec::new();
    reader
        .read_to_end(&mut plaintext)
        .map_err(|e| SealError::Open(e.to_string()))?;
    Ok(plaintext)
}

/// A fresh identity: its file text and its recipient (tests, examples).
pub fn generate_identity() -> (String, Recipient) {
    use age::secrecy::ExposeSecret as _;
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public();
    let text = recipient.to_string();
    (
        format!("{}\n", identity.to_string().expose_secret()),
        Recipient {
            key: recipient,
            text,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_named_identity_opens_a_sealed_result() {
        let (identity, recipient) = generate_identity();
        let (stranger, _) = generate_identity();
        let result = br#"{"sum": 1234.5, "count": 42}"#;
        let sealed = seal(&recipient, result).unwrap();
        assert!(
            sealed.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"),
            "{sealed}"
        );
        assert!(!sealed.contains("1234.5") && !sealed.contains("count"));
        assert_eq!(open(&identity, sealed.as_bytes()).unwrap(), result);
        assert_eq!(
            open(&stranger, sealed.as_bytes()),
            Err(SealError::NotForThisIdentity)
        );
        let with_comment = format!("# created: today\n# public key: {recipient:?}\n{identity}");
        assert_eq!(open(&with_comment, sealed.as_bytes()).unwrap(), result);
        assert!(matches!(
            open("not an identity", sealed.as_bytes()),
            Err(SealError::Identity(_))
        ));
        assert!(matches!(
            open(&identity, b"plain text"),
            Err(SealError::Open(_))
        ));
    }

    #[test]
    fn recipients_are_x25519_only() {
        let (_, recipient) = generate_identity();
        assert!(Recipient::parse(&format!("  {}\n", recipient.as_str())).is_ok());
        for bad in [
            "",
            "age1",
            "AGE-SECRET-KEY-1QQQ",
            "ssh-ed25519 AAAA",
            "age1xyz",
        ] {
            assert!(
                matches!(Recipient::parse(bad), Err(SealError::Recipient(..))),
                "{bad}"
            );
        }
    }

    /// The standard `age` tool opens what this module seals, and this
    /// module opens what it seals.
    #[test]
    fn the_age_tool_and_this_module_read_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let (identity, recipient) = generate_identity();
        let key = dir.path().join("key.txt");
        std::fs::write(&key, &identity).unwrap();
        let sealed = dir.path().join("result.age");
        std::fs::write(&sealed, seal(&recipient, b"forty-two").unwrap()).unwrap();
        let out = std::process::Command::new("age")
            .arg("-d")
            .arg("-i")
            .arg(&key)
            .arg(&sealed)
            .output()
            .expect("the age tool (Debian package age)");
        assert!(out.status.success(), "{out:?}");
        assert_eq!(out.stdout, b"forty-two");

        let out = std::process::Command::new("age")
            .args(["-a", "-r", recipient.as_str()])
            .arg("-o")
            .arg(dir.path().join("by-age.age"))
            .arg(&key)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let by_age = std::fs::read(dir.path().join("by-age.age")).unwrap();
        assert_eq!(open(&identity, &by_age).unwrap(), identity.as_bytes());
    }
}
