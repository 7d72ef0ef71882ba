//! The worker of one pod: what it holds while the pod is on the node, and
//! the small steps every job of the worker takes (its state, its Events,
//! stopping).
//!
//! This module owns the [`Worker`] and its fields. It decides nothing
//! about the pod: the jobs beside it (status, pulls, set-up, runs, sealing)
//! act, and [`super`] decides. It must never hold a lock on the pod state
//! across an await.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use kube::Api;
use kube::runtime::events::EventType;
use sandlet_registry::store::Pin;
use tokio_util::sync::CancellationToken;

use crate::pods::admission::{ContainerPlan, PodPlan};
use crate::pods::context::NodeContext;
use crate::pods::status::{ContainerState, PodState, Run};
use crate::pods::table::PodEntry;
use crate::pods::volumes::HostVolume;

/// Longest restart back-off, as the kubelet's; also how long a pull whose
/// spec cannot succeed waits before it is tried again.
pub(super) const MAX_RESTART_BACKOFF: Duration = Duration::from_secs(300);

/// Why a pod's guests are being stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stop {
    /// The pod is being deleted (it has a deletionTimestamp).
    Deleted,
    /// The pod object no longer exists.
    Gone,
    /// `activeDeadlineSeconds` passed.
    Deadline,
    /// The pod failed for a reason no retry cures (its module is invalid
    /// or not allowed): its other containers stop too.
    Failed,
}

impl Stop {
    /// The termination message of a container stopped for this reason.
    pub(super) fn message(self) -> &'static str {
        match self {
            Stop::Deleted | Stop::Gone => "stopped by sandlet: the pod was deleted",
            Stop::Deadline => "stopped by sandlet: the pod's activeDeadlineSeconds passed",
            Stop::Failed => "stopped by sandlet: the pod failed",
        }
    }
}

/// Which container of the pod: the `i`th init container or the `i`th
/// container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Slot {
    Init(usize),
    Main(usize),
}

/// Everything one pod's worker holds, from the moment the pod is bound
/// here until it is deleted.
pub(super) struct Worker {
    pub(super) ctx: Arc<NodeContext>,
    pub(super) pod: Pod,
    pub(super) reference: ObjectReference,
    pub(super) api: Api<Pod>,
    pub(super) namespace: String,
    pub(super) name: String,
    pub(super) uid: String,
    pub(super) state: Mutex<PodState>,
    /// Serialises status patches so they arrive in order.
    pub(super) publishing: tokio::sync::Mutex<()>,
    /// Set while the latest status has not reached the API server; the
    /// status retry task ([`Worker::retry_status`]) sends it until it does.
    pub(super) unsent: std::sync::atomic::AtomicBool,
    /// Wakes the status retry task.
    pub(super) status_retry: tokio::sync::Notify,
    pub(super) entry: Arc<PodEntry>,
    pub(super) stop: CancellationToken,
    pub(super) stop_reason: Mutex<Option<Stop>>,
    /// Set once the pod has a deletionTimestamp or is gone.
    pub(super) deleted: CancellationToken,
    /// Keeps this pod's modules from being evicted from the store while
    /// the pod exists (one pin per module).
    pub(super) pins: Mutex<HashMap<sandlet_runtime::Digest, Pin>>,
    /// The pod's volumes on the host (directories, or single files), made
    /// once per pod (by the first container to start) and shared by all
    /// its containers.
    pub(super) volumes: tokio::sync::Mutex<Option<Arc<BTreeMap<String, HostVolume>>>>,
    /// When this process first saw the pod (for the start-up trace).
    pub(super) seen: std::time::Instant,
}

impl Worker {
    /// Stops the pod's guests for `reason` (the first reason stands, but
    /// for a pod that is gone).
    pub(super) fn request_stop(&self, reason: Stop) {
        let mut current = self.stop_reason.lock().expect("stop reason poisoned");
        if current.is_none() || reason == Stop::Gone {
            *current = Some(reason);
        }
        self.stop.cancel();
    }

    /// Why the pod's guests are being stopped, if they are.
    pub(super) fn stopped(&self) -> Option<Stop> {
        *self.stop_reason.lock().expect("stop reason poisoned")
    }

    /// Records an Event about the pod (off the pod's path).
    pub(super) fn event(&self, type_: EventType, reason: &str, note: String) {
        self.ctx.event(&self.reference, type_, reason, note);
    }

    /// `f` of the pod state, under its lock.
    pub(super) fn with_state<T>(&self, f: impl FnOnce(&mut PodState) -> T) -> T {
        f(&mut self.state.lock().expect("pod state poisoned"))
    }

    /// `f` of one container's state, under the pod state's lock.
    pub(super) fn container_mut<T>(
        &self,
        slot: Slot,
        f: impl FnOnce(&mut ContainerState) -> T,
    ) -> T {
        self.with_state(|s| match slot {
            Slot::Init(i) => f(&mut s.init[i]),
            Slot::Main(i) => f(&mut s.containers[i]),
        })
    }

    /// The plan of the container in `slot`.
    pub(super) fn container_plan<'p>(&self, plan: &'p PodPlan, slot: Slot) -> &'p ContainerPlan {
        match slot {
            Slot::Init(i) => &plan.init_containers[i],
            Slot::Main(i) => &plan.containers[i],
        }
    }

    /// Shows the container waiting, for `reason`.
    pub(super) fn set_waiting(&self, slot: Slot, reason: &str, message: Option<String>) {
        self.container_mut(slot, |c| {
            c.state = Run::Waiting {
                reason: reason.to_owned(),
                message,
            }
        });
    }

    /// Sleeps for `delay` unless the pod is stopped first; true if stopped.
    pub(super) async fn sleep_or_stop(&self, delay: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(delay) => false,
            _ = self.stop.cancelled() => true,
        }
    }
}
