//! A container's module: pulled as `imagePullPolicy` says (through the
//! registry crate's `ImagePuller`: allow-list, signatures, pull back-off),
//! pinned in the store while the pod exists, and prepared through the
//! precompile cache.
//!
//! This module owns the pull's side of a container's status (`Pulled`,
//! `ErrImagePull`, `ImagePullBackOff` and their Events) and the pod's
//! registry credentials (its imagePullSecrets). It must never run a module
//! the allow-list of now refuses, nor retry a module that is not allowed
//! or not valid: those fail the pod.

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::runtime::events::EventType;
use sandlet_registry::oci::Credentials;
use sandlet_registry::pull::WaitingReason;
use sandlet_registry::store::StoreError;
use sandlet_runtime::{Digest, ModuleError, PreparedModule};

use super::worker::{MAX_RESTART_BACKOFF, Slot, Stop, Worker};
use crate::pods::admission::PodPlan;
use crate::pods::status::Phase;

/// Why a pulled module cannot be prepared (the pod fails with
/// `InvalidModule`).
#[derive(Debug, thiserror::Error)]
enum PrepareError {
    #[error("{0}")]
    Store(#[source] StoreError),
    #[error("module {0} vanished from the store")]
    Vanished(Digest),
    #[error("{0}")]
    Module(#[source] ModuleError),
    #[error("compiling the module failed: {0}")]
    Task(#[source] tokio::task::JoinError),
}

impl Worker {
    /// Pulls (as imagePullPolicy says) and prepares the container's module,
    /// reporting waiting reasons and back-off; `None` if the pod was stopped
    /// or cannot run the module at all.
    pub(super) async fn obtain_module(&self, plan: &PodPlan, slot: Slot) -> Option<PreparedModule> {
        let container = self.container_plan(plan, slot);
        loop {
            let credentials = self.pull_credentials(plan).await;
            let started = std::time::Instant::now();
            let backoff_key = self.backoff_key(&container.image);
            let ensured = tokio::select! {
                r = self.ctx.puller.ensure_keyed(
                    &backoff_key,
                    &container.image,
                    container.pull_policy,
                    &credentials,
                ) => r,
                _ = self.stop.cancelled() => return None,
            };
            tracing::trace!(
                pod = %self.name,
                since_seen_ms = self.seen.elapsed().as_secs_f64() * 1e3,
                ensure_ms = started.elapsed().as_secs_f64() * 1e3,
                "module reference resolved"
            );
            let failure = match ensured {
                Ok(pulled) => {
                    let note = if pulled.downloaded {
                        format!(
                            "Successfully pulled module \"{}\" in {:?}",
                            container.image,
                            started.elapsed()
                        )
                    } else {
                        format!(
                            "Container image \"{}\" already present on machine",
                            container.image
                        )
                    };
                    self.event(EventType::Normal, "Pulled", note);
                    self.container_mut(slot, |c| c.image_id = Some(pulled.image_id.clone()));
                    self.pins
                        .lock()
                        .expect("pins poisoned")
                        .entry(pulled.module_digest)
                        .or_insert_with(|| self.ctx.store.pin(&pulled.module_digest));
                    match self.prepare_module(&pulled.module_digest).await {
                        Ok(module) => return Some(module),
                        Err(error) => {
                            self.fail_pod("InvalidModule", error.to_string()).await;
                            return None;
                        }
                    }
                }
                Err(failure) => failure,
            };
            if failure.reason == WaitingReason::ModuleNotAllowed {
                self.fail_pod("ModuleNotAllowed", failure.message).await;
                return None;
            }
            self.event(
                EventType::Warning,
                "Failed",
                format!(
                    "Failed to pull module \"{}\": {}",
                    container.image, failure.message
                ),
            );
            self.set_waiting(slot, failure.reason.as_str(), Some(failure.message.clone()));
            self.publish().await;
            // Spec problems wait for the pod to be changed or deleted.
            let delay = failure.retry_after.unwrap_or(MAX_RESTART_BACKOFF);
            if self.sleep_or_stop(delay).await {
                return None;
            }
            if failure.reason == WaitingReason::ErrImagePull {
                // Shown until the next attempt, as the kubelet does.
                self.set_waiting(
                    slot,
                    WaitingReason::ImagePullBackOff.as_str(),
                    Some(format!("Back-off pulling module \"{}\"", container.image)),
                );
                self.publish().await;
            }
        }
    }

    /// The pull back-off of this pod's `image` (kept per pod, as the
    /// kubelet's).
    fn backoff_key(&self, image: &str) -> String {
        format!("{}_{image}", self.uid)
    }

    /// Fails the whole pod for a reason no retry cures.
    async fn fail_pod(&self, reason: &'static str, message: String) {
        self.event(EventType::Warning, reason, message.clone());
        self.with_state(|s| s.finish(Phase::Failed, Some(reason), Some(message)));
        self.request_stop(Stop::Failed);
        self.publish().await;
    }

    /// The module of `digest`, prepared once per process (compiled, or
    /// loaded from the precompile cache, off the async threads).
    async fn prepare_module(&self, digest: &Digest) -> Result<PreparedModule, PrepareError> {
        if let Some(module) = self.ctx.compiled.prepared(digest) {
            return Ok(module);
        }
        let ctx = self.ctx.clone();
        let digest = *digest;
        tokio::task::spawn_blocking(move || {
            let bytes = ctx
                .store
                .get(&digest)
                .map_err(PrepareError::Store)?
                .ok_or(PrepareError::Vanished(digest))?;
            ctx.compiled
                .load_or_compile(&ctx.engine, &digest, &bytes)
                .map(|(module, _)| module)
                .map_err(PrepareError::Module)
        })
        .await
        .map_err(PrepareError::Task)?
    }

    /// Registry credentials from the pod's imagePullSecrets
    /// (`kubernetes.io/dockerconfigjson`); unreadable ones are skipped with
    /// a warning, as the kubelet does.
    pub(super) async fn pull_credentials(&self, plan: &PodPlan) -> Credentials {
        let mut credentials = Credentials::anonymous();
        if plan.image_pull_secrets.is_empty() {
            return credentials;
        }
        let secrets: Api<Secret> = Api::namespaced(self.ctx.client.clone(), &self.namespace);
        for name in &plan.image_pull_secrets {
            let config = match secrets.get(name).await {
                Ok(secret) => secret
                    .data
                    .and_then(|d| d.get(".dockerconfigjson").map(|b| b.0.clone())),
                Err(error) => {
                    tracing::warn!(%error, secret = %name, "cannot read an imagePullSecret");
                    None
                }
            };
            match config.map(|bytes| Credentials::from_docker_config(&bytes)) {
                Some(Ok(found)) => credentials.merge(found),
                Some(Err(error)) => {
                    self.event(
                        EventType::Warning,
                        "FailedToRetrieveImagePullSecret",
                        format!("imagePullSecret {name:?}: {error}"),
                    );
                }
                None => self.event(
                    EventType::Warning,
                    "FailedToRetrieveImagePullSecret",
                    format!("Unable to retrieve some image pull secrets ({name}); attempting to pull the module may not succeed."),
                ),
            }
        }
        credentials
    }
}
