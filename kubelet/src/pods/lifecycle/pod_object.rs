//! The pod object on the API server, as the worker writes it: status
//! patches, in order and retried until they arrive, and the removal of the
//! pod once its guests are stopped.
//!
//! This module owns those writes. It decides nothing about the status: it
//! sends what [`crate::pods::status::PodState::report`] says. It must
//! never send statuses out of order, nor give up on the latest one while
//! the pod's worker runs.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};

use super::worker::Worker;
use crate::pods::status::PodState;

/// First retry of a status the API server did not take.
const STATUS_RETRY_FIRST: Duration = Duration::from_secs(1);
/// Retries of an unsent status are at most this far apart, so statuses
/// converge within seconds of the API server's return.
const STATUS_RETRY_MAX: Duration = Duration::from_secs(4);

impl Worker {
    /// Sends the current status to the API server; if it cannot (the API
    /// server is away), the status retry task keeps sending the latest
    /// status until it arrives.
    pub(super) async fn publish(&self) {
        let _order = self.publishing.lock().await;
        for attempt in 0..3 {
            match self.send_status().await {
                Ok(()) => {
                    self.unsent.store(false, Ordering::SeqCst);
                    return;
                }
                Err(error) => {
                    tracing::warn!(%error, pod = %self.name, attempt, "cannot update pod status");
                    tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                }
            }
        }
        self.unsent.store(true, Ordering::SeqCst);
        self.status_retry.notify_one();
    }

    /// One patch of the current status (a pod already gone counts as sent).
    async fn send_status(&self) -> Result<(), kube::Error> {
        let status = self.with_state(PodState::report);
        let patch = serde_json::json!({ "status": status });
        match self
            .api
            .patch_status(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Sends the latest status whenever [`Worker::publish`] could not,
    /// every [`STATUS_RETRY_FIRST`] doubling to [`STATUS_RETRY_MAX`], until
    /// it arrives; runs until the pod's worker ends.
    pub(super) async fn retry_status(self: Arc<Self>) {
        loop {
            self.status_retry.notified().await;
            let mut wait = STATUS_RETRY_FIRST;
            while self.unsent.load(Ordering::SeqCst) {
                tokio::time::sleep(wait).await;
                let _order = self.publishing.lock().await;
                if !self.unsent.load(Ordering::SeqCst) {
                    break;
                }
                match self.send_status().await {
                    Ok(()) => {
                        self.unsent.store(false, Ordering::SeqCst);
                        tracing::info!(pod = %self.name, "pod status reported after the API server returned");
                    }
                    Err(error) => {
                        tracing::debug!(%error, pod = %self.name, retry_in = ?wait, "pod status still not reported");
                        wait = (wait * 2).min(STATUS_RETRY_MAX);
                    }
                }
            }
        }
    }

    /// Deletes the pod object now that its guests are stopped, with its
    /// UID as precondition (a new pod of the same name is left alone).
    pub(super) async fn remove_from_api(&self) {
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(self.uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match self.api.delete(&self.name, &params).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(error) => tracing::warn!(%error, pod = %self.name, "cannot remove the deleted pod"),
        }
    }
}
