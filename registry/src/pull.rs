//! Image pull policies, as a kubelet applies them to a container's module.
//!
//! [`ImagePuller`] decides per container whether to use the stored module or
//! to go to the registry (`imagePullPolicy` Always / IfNotPresent / Never),
//! remembers which module each reference last resolved to (so IfNotPresent
//! and Never work without the network, across restarts), and backs off
//! after failures the way the kubelet does: the first failure is
//! `ErrImagePull`, attempts inside the back-off window answer
//! `ImagePullBackOff` at once, and the window doubles from 10 s to 5 min.
//!
//! Guarantees: a pull never returns a module the allow-list refuses (by
//! [`Registry::pull`], and for a stored module by checking it again under
//! the list of now, signatures included), and a failure never leaves a
//! partial module in the store.
//! Assumptions: one `ImagePuller` per process owns the reference index
//! directory. Caveats: the back-off is per reference, not per pod, as in
//! the kubelet.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::allow_list::{AllowList, Verdict};
use crate::oci::{Credentials, OciError, PulledModule, Registry, parse_reference};
use crate::store::ModuleStore;
use sandlet_core::Digest;

/// The kubelet's initial image pull back-off.
pub const DEFAULT_BACKOFF_BASE: Duration = Duration::from_secs(10);
/// The kubelet's longest image pull back-off.
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(300);

/// `imagePullPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    /// Ask the registry on every start; a reference that resolves to a
    /// stored module is not downloaded again.
    Always,
    /// Use the module the reference last resolved to when it is stored;
    /// pull otherwise.
    IfNotPresent,
    /// Use the stored module only; never contact the registry.
    Never,
}

impl std::str::FromStr for PullPolicy {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "Always" => Ok(PullPolicy::Always),
            "IfNotPresent" => Ok(PullPolicy::IfNotPresent),
            "Never" => Ok(PullPolicy::Never),
            other => Err(format!(
                "unknown imagePullPolicy {other:?}: expected Always, IfNotPresent or Never"
            )),
        }
    }
}

impl PullPolicy {
    /// Kubernetes' default: Always for `:latest` or no tag (without a
    /// digest), IfNotPresent otherwise.
    pub fn default_for(reference: &str) -> PullPolicy {
        if reference.contains('@') {
            return PullPolicy::IfNotPresent;
        }
        let last = reference.rsplit('/').next().unwrap_or(reference);
        match last.split_once(':') {
            Some((_, "latest")) | None => PullPolicy::Always,
            Some(_) => PullPolicy::IfNotPresent,
        }
    }
}

/// Why a container waits for its module; the strings are the kubelet's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitingReason {
    /// A pull from the registry failed; the next is after a back-off.
    ErrImagePull,
    /// An earlier pull failed and its back-off has not passed; the registry
    /// was not contacted.
    ImagePullBackOff,
    /// The policy is `Never` and the module is not stored.
    ErrImageNeverPull,
    /// The image reference cannot be parsed.
    InvalidImageName,
    /// The station's allow-list refuses the module: no retry cures it, so
    /// the node fails the pod rather than backing off.
    ModuleNotAllowed,
}

impl WaitingReason {
    /// The reason as a container status shows it, e.g. `ErrImagePull`.
    pub fn as_str(self) -> &'static str {
        match self {
            WaitingReason::ErrImagePull => "ErrImagePull",
            WaitingReason::ImagePullBackOff => "ImagePullBackOff",
            WaitingReason::ErrImageNeverPull => "ErrImageNeverPull",
            WaitingReason::InvalidImageName => "InvalidImageName",
            WaitingReason::ModuleNotAllowed => "ModuleNotAllowed",
        }
    }
}

/// A module that is not available (yet).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", reason.as_str())]
pub struct PullFailure {
    /// Why the container waits, as its status says.
    pub reason: WaitingReason,
    /// What went wrong, in one line, for the status and events.
    pub message: String,
    /// When trying again makes sense; `None` for failures that only a spec
    /// change cures.
    pub retry_after: Option<Duration>,
}

/// A stored module under the allow-list of now.
enum Readmitted {
    Ready(PulledModule),
    IfSignedBy(PulledModule, Vec<sandlet_trust::PublicKey>),
}

/// The failure of a module the allow-list refuses: no retry cures it.
fn not_allowed(error: OciError) -> PullFailure {
    PullFailure {
        reason: WaitingReason::ModuleNotAllowed,
        message: error.to_string(),
        retry_after: None,
    }
}

#[derive(Debug, Clone, Copy)]
struct Backoff {
    failures: u32,
    retry_at: Instant,
}

/// Applies pull policies for one node or CLI process.
pub struct ImagePuller {
    registry: Arc<Registry>,
    store: Arc<ModuleStore>,
    allow: AllowList,
    references: PathBuf,
    backoff: Mutex<HashMap<String, Backoff>>,
    base: Duration,
    max: Duration,
}

impl ImagePuller {
    /// `state_dir/references` keeps which module each reference resolved to.
    pub fn new(
        registry: Arc<Registry>,
        store: Arc<ModuleStore>,
        allow: AllowList,
        state_dir: &Path,
    ) -> Result<Self, OciError> {
        let references = state_dir.join("references");
        std::fs::create_dir_all(&references).map_err(|source| {
            OciError::Store(crate::store::StoreError::Io {
                path: references.clone(),
                source,
            })
        })?;
        Ok(ImagePuller {
            registry,
            store,
            allow,
            references,
            backoff: Mutex::new(HashMap::new()),
            base: DEFAULT_BACKOFF_BASE,
            max: DEFAULT_BACKOFF_MAX,
        })
    }

    /// The registry client modules are pulled with (the node stores sealed
    /// results through it too).
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Replaces the back-off window (tests use milliseconds).
    pub fn with_backoff(mut self, base: Duration, max: Duration) -> Self {
        self.base = base;
        self.max = max;
        self
    }

    /// The module `reference` names, obtained as `policy` says, with the
    /// back-off kept per reference.
    pub async fn ensure(
        &self,
        reference: &str,
        policy: PullPolicy,
        credentials: &Credentials,
    ) -> Result<PulledModule, PullFailure> {
        self.ensure_keyed(reference, reference, policy, credentials)
            .await
    }

    /// As [`ImagePuller::ensure`], with the back-off kept under
    /// `backoff_key`. The node keys it by pod and reference, as the kubelet
    /// does, so one pod's failures (missing credentials, say) never delay
    /// another pod's pull of the same reference.
    pub async fn ensure_keyed(
        &self,
        backoff_key: &str,
        reference: &str,
        policy: PullPolicy,
        credentials: &Credentials,
    ) -> Result<PulledModule, PullFailure> {
        if let Err(e) = parse_reference(reference) {
            return Err(PullFailure {
                reason: WaitingReason::InvalidImageName,
                message: e.to_string(),
                retry_after: None,
            });
        }
        let stored = self.recall(reference);
        // A stored module is admitted again under today's allow-list: the
        // list may have changed since it was pulled.
        let unverified = match (policy, stored) {
            (PullPolicy::Never | PullPolicy::IfNotPresent, Some(pulled)) => {
                match self.readmit(reference, pulled)? {
                    Readmitted::Ready(pulled) => return Ok(pulled),
                    Readmitted::IfSignedBy(pulled, keys) => Some((pulled, keys)),
                }
            }
            (PullPolicy::Never, None) => {
                return Err(PullFailure {
                    reason: WaitingReason::ErrImageNeverPull,
                    message: format!(
                        "module {reference} is not present on this node and imagePullPolicy is Never"
                    ),
                    retry_after: None,
                });
            }
            _ => None,
        };
        let now = Instant::now();
        if let Some(backoff) = self
            .backoff
            .lock()
            .expect("backoff poisoned")
            .get(backoff_key)
            && backoff.retry_at > now
        {
            return Err(PullFailure {
                reason: WaitingReason::ImagePullBackOff,
                message: format!("Back-off pulling module {reference}"),
                retry_after: Some(backoff.retry_at - now),
            });
        }
        let result = match unverified {
            // Stored, but no signature of it by a key trusted now is known:
            // the registry is asked for one, and the module is not fetched
            // again.
            Some((pulled, keys)) => self
                .registry
                .admit_stored(
                    reference,
                    &pulled.image_id,
                    credentials,
                    &pulled.manifest_digest,
                    &keys,
                )
                .await
                .map(|fingerprint| PulledModule {
                    signed_by: Some(fingerprint),
                    downloaded: false,
                    ..pulled
                }),
            None => {
                self.registry
                    .pull(reference, credentials, &self.store, &self.allow)
                    .await
            }
        };
        match result {
            Ok(pulled) => {
                self.backoff
                    .lock()
                    .expect("backoff poisoned")
                    .remove(backoff_key);
                self.remember(reference, &pulled);
                Ok(pulled)
            }
            Err(error @ OciError::NotAllowed(_)) => Err(not_allowed(error)),
            Err(error) => {
                let mut table = self.backoff.lock().expect("backoff poisoned");
                let failures = table.get(backoff_key).map_or(0, |b| b.failures) + 1;
                let window = self
                    .base
                    .saturating_mul(1 << (failures - 1).min(16))
                    .min(self.max);
                table.insert(
                    backoff_key.to_owned(),
                    Backoff {
                        failures,
                        retry_at: Instant::now() + window,
                    },
                );
                Err(PullFailure {
                    reason: WaitingReason::ErrImagePull,
                    message: error.to_string(),
                    retry_after: Some(window),
                })
            }
        }
    }

    /// Checks a stored module against the allow-list as it is now: refused,
    /// ready (allowed outright, or signed by a key the list still trusts,
    /// as recorded when it was pulled), or waiting for a signature check.
    fn readmit(&self, reference: &str, pulled: PulledModule) -> Result<Readmitted, PullFailure> {
        let repository = pulled
            .image_id
            .split_once('@')
            .map_or(pulled.image_id.as_str(), |(repository, _)| repository);
        match self.allow.check(
            reference,
            repository,
            &pulled.manifest_digest,
            &pulled.module_digest,
        ) {
            Err(refused) => Err(not_allowed(OciError::NotAllowed(refused))),
            Ok(Verdict::Allowed) => Ok(Readmitted::Ready(pulled)),
            Ok(Verdict::IfSignedBy(keys)) => {
                let known = pulled
                    .signed_by
                    .as_ref()
                    .is_some_and(|by| keys.iter().any(|key| &key.fingerprint() == by));
                Ok(if known {
                    Readmitted::Ready(pulled)
                } else {
                    Readmitted::IfSignedBy(pulled, keys)
                })
            }
        }
    }

    /// Drops the back-off kept under `backoff_key` (when its pod is gone).
    pub fn forget_backoff(&self, backoff_key: &str) {
        self.backoff
            .lock()
            .expect("backoff poisoned")
            .remove(backoff_key);
    }

    fn index_path(&self, reference: &str) -> PathBuf {
        self.references
            .join(format!("{}.json", Digest::of(reference.as_bytes()).hex()))
    }

    /// What `reference` last resolved to, if that module is still stored.
    fn recall(&self, reference: &str) -> Option<PulledModule> {
        let bytes = std::fs::read(self.index_path(reference)).ok()?;
        let pulled: PulledModule = serde_json::from_slice(&bytes).ok()?;
        self.store.contains(&pulled.module_digest).then_some(pulled)
    }

    fn remember(&self, reference: &str, pulled: &PulledModule) {
        let path = self.index_path(reference);
        let json = serde_json::to_vec(pulled).expect("a pulled module serialises");
        // Losing the index only costs a registry round trip later.
        if let Err(error) = sandlet_core::state_file::write_atomically(&path, &json) {
            tracing::warn!(%error, reference, "cannot record the pulled module");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policies_follow_kubernetes() {
        assert_eq!(PullPolicy::default_for("r.example/a/b"), PullPolicy::Always);
        assert_eq!(
            PullPolicy::default_for("r.example/a/b:latest"),
            PullPolicy::Always
        );
        assert_eq!(
            PullPolicy::default_for("r.example:5000/a/b"),
            PullPolicy::Always
        );
        assert_eq!(
            PullPolicy::default_for("r.example:5000/a/b:v1"),
            PullPolicy::IfNotPresent
        );
        let digest = format!("r.example/a/b@{}", Digest::of(b"m"));
        assert_eq!(PullPolicy::default_for(&digest), PullPolicy::IfNotPresent);
        assert_eq!("Never".parse::<PullPolicy>(), Ok(PullPolicy::Never));
        assert!("never".parse::<PullPolicy>().is_err());
    }
}
