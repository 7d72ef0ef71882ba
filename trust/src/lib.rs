//! sandlet's trust formats, below the registry and the kubelet: which
//! modules a station trusts, and whom a result is for.
//!
//! - `keys`: ECDSA P-256 keys as `openssl` writes them ([`PublicKey`],
//!   [`PrivateKey`]);
//! - `cosign`: module signatures in cosign's tag format (payload, signing,
//!   checking one signature layer);
//! - `seal`: results sealed to an age X25519 recipient, ASCII-armored.
//!
//! It does no IO and knows no registry client, wasmtime or Kubernetes
//! type: the registry crate fetches and pushes signature artifacts, the
//! kubelet and the binary seal results.

pub mod cosign;
pub mod seal;

mod keys;

pub use keys::{KeyError, PrivateKey, PublicKey};
