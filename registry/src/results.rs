//! The sealed result store: results too large for a termination message,
//! kept as OCI artifacts in the registry the module came from, beside it.
//!
//! A node that seals a result (`sandlet.dev/seal-to`) and finds the
//! ciphertext longer than a termination message allows pushes it here and
//! puts a one-line pointer in the message instead
//! (`sandlet-sealed-result: <repository>@sha256:...`); `sandlet open` follows
//! the pointer. The artifact has one layer, the ASCII-armored age file as
//! the node sealed it, so any OCI tool can fetch it and `age -d` open it.
//!
//! This module owns the artifact's shape and the pointer's syntax. It must
//! never store or return anything but the sealed bytes it was given (it
//! cannot open them), nor read more than [`MAX_SEALED_RESULT_BYTES`] of
//! one.

use oci_client::client::ImageLayer;
use oci_client::manifest::OciManifest;

use crate::oci::{Credentials, OciError, Registry, classify, parse_reference, repository_name};

/// Media type of the one layer: an ASCII-armored age file.
pub const SEALED_RESULT_MEDIA_TYPE: &str = "application/vnd.sandlet.sealed-result.v1+age";
/// Media type of the artifact's (empty) config.
pub const SEALED_RESULT_CONFIG_MEDIA_TYPE: &str =
    "application/vnd.sandlet.sealed-result.config.v1+json";
/// What a termination message holding a pointer starts with.
pub const POINTER_PREFIX: &str = "sandlet-sealed-result: ";
/// The largest sealed result stored or fetched.
pub const MAX_SEALED_RESULT_BYTES: u64 = 256 * 1024 * 1024;

/// The termination-message line that points at a stored result.
pub fn pointer(stored: &str) -> String {
    format!("{POINTER_PREFIX}{stored}")
}

/// The stored result's reference, if `text` is a pointer.
pub fn parse_pointer(text: &str) -> Option<&str> {
    text.trim()
        .strip_prefix(POINTER_PREFIX)
        .map(str::trim)
        .filter(|r| !r.is_empty() && !r.contains(char::is_whitespace))
}

impl Registry {
    /// Stores `sealed` (armored age) in the repository of `module` (the
    /// module's reference) under `tag`; returns `repository@digest`.
    pub async fn push_sealed(
        &self,
        module: &str,
        tag: &str,
        credentials: &Credentials,
        sealed: &[u8],
    ) -> Result<String, OciError> {
        if sealed.len() as u64 > MAX_SEALED_RESULT_BYTES {
            return Err(OciError::Registry {
                reference: module.to_owned(),
                reason: format!(
                    "a sealed result of {} bytes is over the store's limit of {MAX_SEALED_RESULT_BYTES}",
                    sealed.len()
                ),
            });
        }
        let module = parse_reference(module)?;
        let target = oci_client::Reference::with_tag(
            module.registry().to_owned(),
            module.repository().to_owned(),
            tag.to_owned(),
        );
        let auth = credentials.for_registry(target.resolve_registry());
        let layer = ImageLayer::new(
            sealed.to_vec(),
            SEALED_RESULT_MEDIA_TYPE.to_owned(),
            Some(
                [(
                    "org.opencontainers.image.title".to_owned(),
                    "result.age".to_owned(),
                )]
                .into(),
            ),
        );
        let digest = self
            .push_one_layer(&target, &auth, layer, SEALED_RESULT_CONFIG_MEDIA_TYPE)
            .await?;
        Ok(format!("{}@{digest}", repository_name(&target)))
    }

    /// The sealed bytes stored at `reference` (what a pointer names).
    pub async fn pull_sealed(
        &self,
        reference: &str,
        credentials: &Credentials,
    ) -> Result<Vec<u8>, OciError> {
        let reference = parse_reference(reference)?;
        let auth = credentials.for_registry(reference.resolve_registry());
        let (manifest, _) = self
            .client(reference.resolve_registry(), &auth)
            .pull_manifest(&reference, &auth)
            .await
            .map_err(|e| classify(&reference, e))?;
        let not_a_result = |what: String| OciError::Registry {
            reference: reference.whole(),
            reason: format!("not a sealed result: {what}"),
        };
        let OciManifest::Image(manifest) = manifest else {
            return Err(not_a_result("it is an image index".to_owned()));
        };
        let [layer] = manifest.layers.as_slice() else {
            return Err(not_a_result(format!(
                "it has {} layers, not one",
                manifest.layers.len()
            )));
        };
        if layer.media_type != SEALED_RESULT_MEDIA_TYPE {
            return Err(not_a_result(format!(
                "its layer has media type {:?}",
                layer.media_type
            )));
        }
        self.fetch_small_blob(&reference, &auth, layer, MAX_SEALED_RESULT_BYTES)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers_are_one_line_naming_a_reference() {
        let line = pointer("127.0.0.1:5000/alg/mean@sha256:abc");
        assert_eq!(
            line,
            "sandlet-sealed-result: 127.0.0.1:5000/alg/mean@sha256:abc"
        );
        assert_eq!(
            parse_pointer(&format!("  {line}\n")),
            Some("127.0.0.1:5000/alg/mean@sha256:abc")
        );
        for other in [
            "-----BEGIN AGE ENCRYPTED FILE-----",
            "sandlet-sealed-result: ",
            "sandlet-sealed-result: a b",
            "{\"mean\": 1}",
        ] {
            assert_eq!(parse_pointer(other), None, "{other}");
        }
    }
}
