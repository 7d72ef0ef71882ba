//! What every pod worker shares: the clients, the engine, the module store,
//! the datasets and their audit log, the pod table and the Event queue.
//!
//! This module owns the [`NodeContext`], made once when the node starts.
//! It must never hold per-pod state beyond the [`PodTable`]'s entries.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType};
use sandlet_data::{AuditLog, DataConfig, Ledger, QueryCounters};
use sandlet_registry::pull::ImagePuller;
use sandlet_registry::store::ModuleStore;
use sandlet_runtime::SandboxEngine;
use sandlet_runtime::precompiled::PrecompileCache;

use crate::node::identity::NodeIdentity;
use crate::pods::events::EventRecorder;
use crate::pods::objects::ObjectReader;
use crate::pods::table::PodTable;
use crate::pods::volumes::PodDirs;

/// Shared by all pod workers of one node.
pub(crate) struct NodeContext {
    /// The node's API client.
    pub(crate) client: Client,
    /// The node's name, address and capacity.
    pub(crate) identity: NodeIdentity,
    /// The wasm engine every container runs in.
    pub(crate) engine: Arc<SandboxEngine>,
    /// Pulls modules as `imagePullPolicy` and the allow-list say.
    pub(crate) puller: Arc<ImagePuller>,
    /// The module store the puller fills.
    pub(crate) store: Arc<ModuleStore>,
    /// Modules compiled for this engine.
    pub(crate) compiled: Arc<PrecompileCache>,
    /// The station's datasets, if it has a station file.
    pub(crate) data: Option<Arc<DataConfig>>,
    /// `<state dir>/audit`: every data query of every pod, on the record
    /// before it is answered.
    pub(crate) audit: Arc<AuditLog>,
    /// `<state dir>/privacy`: what each namespace has spent of each
    /// differentially private dataset's budget.
    pub(crate) ledger: Arc<Ledger>,
    /// Data queries answered and refused, for `/metrics`.
    pub(crate) queries: Arc<QueryCounters>,
    /// `<state dir>/pods`: one directory per pod UID (logs, emptyDirs).
    pub(crate) pods_dir: PathBuf,
    /// `<runtime dir>/pods`: one directory per pod UID (rendered volumes:
    /// Secrets, tokens, ConfigMaps, downward API; memory emptyDirs).
    pub(crate) volumes_dir: PathBuf,
    /// Events to send (see [`crate::pods::event_queue::event_queue`]).
    pub(crate) events: tokio::sync::mpsc::Sender<(Event, ObjectReference)>,
    /// What the event queue publishes through: forgets a pod's events when
    /// the pod is gone.
    pub(crate) recorder: Arc<EventRecorder>,
    /// ConfigMaps and Secrets, read once for many pods.
    pub(crate) objects: ObjectReader,
    /// The pods on this node, as the kubelet API sees them.
    pub(crate) pods: Arc<PodTable>,
    /// First delay of the restart back-off (doubles up to five minutes).
    pub(crate) restart_backoff: Duration,
}

impl NodeContext {
    /// Where one pod's volumes live.
    pub(crate) fn pod_dirs(&self, uid: &str) -> PodDirs {
        PodDirs {
            disk: self.pods_dir.join(uid),
            memory: self.volumes_dir.join(uid),
        }
    }

    /// Records an Event about `pod` without waiting for the API server;
    /// a lost Event is logged, never fatal.
    pub(crate) fn event(
        &self,
        pod: &ObjectReference,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note),
            action: reason.to_owned(),
            secondary: None,
        };
        if self.events.try_send((event, pod.clone())).is_err() {
            tracing::warn!(reason, "event queue full: an event was dropped");
        }
    }
}
