//! What every pod worker and the kubelet API share: the clients, the
//! engine, the module store, and the table of pods on this node.
//!
//! This module owns the [`PodTable`], the only place where the HTTPS API
//! learns which pods and container runs exist (for logs); pod workers
//! update it, the server only reads it.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use kube::Client;
use kube::runtime::events::{Event, EventType};

use crate::events::EventRecorder;
use sandlet_data::{AuditLog, DataConfig, QueryCounters};
use sandlet_registry::pull::ImagePuller;
use sandlet_registry::store::ModuleStore;
use sandlet_runtime::SandboxEngine;
use sandlet_runtime::precompiled::PrecompileCache;

use crate::node::NodeIdentity;
use crate::objects::ObjectReader;

/// Shared by all pod workers of one node.
pub struct NodeContext {
    pub client: Client,
    pub identity: NodeIdentity,
    pub engine: Arc<SandboxEngine>,
    pub puller: Arc<ImagePuller>,
    pub store: Arc<ModuleStore>,
    pub compiled: Arc<PrecompileCache>,
    pub data: Option<Arc<DataConfig>>,
    /// `<state dir>/audit`: every data query of every pod, on the record
    /// before it is answered.
    pub audit: Arc<AuditLog>,
    /// `<state dir>/privacy`: what each namespace has spent of each
    /// differentially private dataset's budget.
    pub ledger: Arc<sandlet_data::Ledger>,
    /// Data queries answered and refused, for `/metrics`.
    pub queries: Arc<QueryCounters>,
    /// `<state dir>/pods`: one directory per pod UID (logs, emptyDirs).
    pub pods_dir: PathBuf,
    /// `<runtime dir>/pods`: one directory per pod UID (rendered volumes:
    /// Secrets, tokens, ConfigMaps, downward API; memory emptyDirs).
    pub volumes_dir: PathBuf,
    /// Events to send (see [`event_queue`]).
    pub events: tokio::sync::mpsc::Sender<(Event, ObjectReference)>,
    /// What the event queue publishes through: forgets a pod's events when
    /// the pod is gone.
    pub recorder: Arc<EventRecorder>,
    /// ConfigMaps and Secrets, read once for many pods.
    pub objects: ObjectReader,
    pub pods: Arc<PodTable>,
    /// First delay of the restart back-off (doubles up to five minutes).
    pub restart_backoff: Duration,
}

impl NodeContext {
    /// Where one pod's volumes live.
    pub fn pod_dirs(&self, uid: &str) -> crate::volumes::PodDirs {
        crate::volumes::PodDirs {
            disk: self.pods_dir.join(uid),
            memory: self.volumes_dir.join(uid),
        }
    }

    /// Records an Event about `pod` without waiting for the API server;
    /// a lost Event is logged, never fatal.
    pub fn event(&self, pod: &ObjectReference, type_: EventType, reason: &str, note: String) {
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

/// Events waiting to be sent, at most this many; beyond it they are
/// dropped with a warning, as the kubelet's event broadcaster does.
pub const EVENT_QUEUE: usize = 4096;

/// Events sent to the API server at once.
pub const EVENTS_IN_FLIGHT: usize = 4;

/// How fast the node creates Events (`--event-qps`, `--event-burst`), with
/// the kubelet's defaults (`eventRecordQPS`, `eventBurst`): 50 per second
/// after a burst of 100. Events are the most numerous writes a node makes
/// (three per container start); the limit keeps a crash-looping pod or a
/// burst of pod starts from flooding the API server with them. They wait
/// in the queue meanwhile, off the pods' path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventRate {
    /// Events per second; 0 means no limit.
    pub qps: u32,
    /// How many may go at once after a quiet spell (at least 1).
    pub burst: u32,
}

impl Default for EventRate {
    fn default() -> Self {
        EventRate {
            qps: 50,
            burst: 100,
        }
    }
}

/// A token bucket for [`EventRate`]: `burst` tokens, refilled at `qps` per
/// second; a send that finds none waits for its own.
#[derive(Debug)]
struct Bucket {
    qps: f64,
    capacity: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(rate: EventRate, now: Instant) -> Option<Bucket> {
        (rate.qps > 0).then(|| Bucket {
            qps: f64::from(rate.qps),
            capacity: f64::from(rate.burst.max(1)),
            tokens: f64::from(rate.burst.max(1)),
            at: now,
        })
    }

    /// Takes a token at `now`: how long to wait before sending (zero if a
    /// token was there). Tokens may go negative: each waiting send has
    /// reserved its own.
    fn take(&mut self, now: Instant) -> Duration {
        let refill = now.saturating_duration_since(self.at).as_secs_f64() * self.qps;
        self.tokens = (self.tokens + refill).min(self.capacity) - 1.0;
        self.at = now;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.qps)
        }
    }
}

/// The sending side of the event queue, and the task that drains it at
/// `rate`.
pub fn event_queue(
    recorder: Arc<EventRecorder>,
    rate: EventRate,
) -> tokio::sync::mpsc::Sender<(Event, ObjectReference)> {
    let (sender, receiver) = tokio::sync::mpsc::channel::<(Event, ObjectReference)>(EVENT_QUEUE);
    let mut bucket = Bucket::new(rate, Instant::now());
    tokio::spawn(async move {
        use futures_util::StreamExt;
        tokio_stream_of(receiver)
            .then(move |item| {
                let wait = bucket
                    .as_mut()
                    .map_or(Duration::ZERO, |b| b.take(Instant::now()));
                async move {
                    if !wait.is_zero() {
                        tokio::time::sleep(wait).await;
                    }
                    item
                }
            })
            .for_each_concurrent(EVENTS_IN_FLIGHT, |(event, pod)| {
                let recorder = recorder.clone();
                async move {
                    if let Err(error) = recorder.publish(&event, &pod).await {
                        tracing::warn!(%error, reason = %event.reason, "cannot record an event");
                    }
                }
            })
            .await;
    });
    sender
}

fn tokio_stream_of<T: Send + 'static>(
    mut receiver: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> {
    futures_util::stream::poll_fn(move |cx| receiver.poll_recv(cx))
}

/// A reference to `pod` for Events.
pub fn pod_reference(pod: &Pod) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".to_owned()),
        kind: Some("Pod".to_owned()),
        name: pod.metadata.name.clone(),
        namespace: pod.metadata.namespace.clone(),
        uid: pod.metadata.uid.clone(),
        resource_version: pod.metadata.resource_version.clone(),
        ..ObjectReference::default()
    }
}

/// One container as the kubelet API sees it.
#[derive(Debug, Clone)]
pub struct ContainerRun {
    /// The current (or last) run's restart count: its log file's number.
    pub restart_count: i32,
    /// While the container runs: its start and what it has used so far.
    pub running: Option<Metered>,
}

/// A running container's start and what it has used so far.
#[derive(Debug, Clone)]
pub struct Metered {
    pub started_at: k8s_openapi::jiff::Timestamp,
    pub usage: Arc<sandlet_runtime::Usage>,
}

/// One pod as the kubelet API sees it.
#[derive(Debug)]
pub struct PodEntry {
    pub uid: String,
    pub dir: PathBuf,
    pub containers: Mutex<BTreeMap<String, ContainerRun>>,
}

/// The pods of this node by namespace and name.
#[derive(Debug, Default)]
pub struct PodTable {
    pods: Mutex<HashMap<(String, String), Arc<PodEntry>>>,
}

impl PodTable {
    pub fn insert(&self, namespace: &str, name: &str, entry: Arc<PodEntry>) {
        self.pods
            .lock()
            .expect("pod table poisoned")
            .insert((namespace.to_owned(), name.to_owned()), entry);
    }

    /// Removes the entry if it still belongs to `uid` (a new pod of the
    /// same name may have replaced it).
    pub fn remove(&self, namespace: &str, name: &str, uid: &str) {
        let mut pods = self.pods.lock().expect("pod table poisoned");
        let key = (namespace.to_owned(), name.to_owned());
        if pods.get(&key).is_some_and(|e| e.uid == uid) {
            pods.remove(&key);
        }
    }

    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<PodEntry>> {
        self.pods
            .lock()
            .expect("pod table poisoned")
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    /// The entry of the pod with this UID, if it is on the node.
    pub fn find_uid(&self, uid: &str) -> Option<Arc<PodEntry>> {
        self.pods
            .lock()
            .expect("pod table poisoned")
            .values()
            .find(|e| e.uid == uid)
            .cloned()
    }

    /// Every pod: namespace, name and entry.
    pub fn all(&self) -> Vec<(String, String, Arc<PodEntry>)> {
        self.pods
            .lock()
            .expect("pod table poisoned")
            .iter()
            .map(|((namespace, name), entry)| (namespace.clone(), name.clone(), entry.clone()))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.pods.lock().expect("pod table poisoned").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl PodEntry {
    pub fn set(&self, container: &str, run: ContainerRun) {
        self.containers
            .lock()
            .expect("pod entry poisoned")
            .insert(container.to_owned(), run);
    }

    /// The running containers with what they have used.
    pub fn running(&self) -> Vec<(String, Metered)> {
        self.containers
            .lock()
            .expect("pod entry poisoned")
            .iter()
            .filter_map(|(name, run)| Some((name.clone(), run.running.clone()?)))
            .collect()
    }

    pub fn container(&self, container: &str) -> Option<ContainerRun> {
        self.containers
            .lock()
            .expect("pod entry poisoned")
            .get(container)
            .cloned()
    }
}

/// The Event type for warnings, re-exported for workers.
pub use kube::runtime::events::EventType as Severity;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replaced_pod_keeps_its_entry_when_the_old_one_is_removed() {
        let table = PodTable::default();
        let entry = |uid: &str| {
            Arc::new(PodEntry {
                uid: uid.to_owned(),
                dir: PathBuf::from("/x"),
                containers: Mutex::default(),
            })
        };
        table.insert("ns", "p", entry("old"));
        table.insert("ns", "p", entry("new"));
        table.remove("ns", "p", "old");
        assert_eq!(table.get("ns", "p").unwrap().uid, "new");
        table.remove("ns", "p", "new");
        assert!(table.is_empty());
    }

    #[test]
    fn events_go_at_once_up_to_the_burst_then_at_the_rate() {
        let start = Instant::now();
        let rate = EventRate { qps: 50, burst: 3 };
        let mut bucket = Bucket::new(rate, start).unwrap();
        let ms = |n: u64| Duration::from_millis(n);
        // The burst: at once.
        for _ in 0..3 {
            assert_eq!(bucket.take(start), Duration::ZERO);
        }
        // Then one per 20 ms: a send at once waits for its token...
        assert_eq!(bucket.take(start), ms(20));
        // ...and the next, sent when that one went, waits another 20 ms.
        assert_eq!(bucket.take(start + ms(20)), ms(20));
        // After a quiet spell the burst is back, never more.
        let later = start + Duration::from_secs(10);
        for _ in 0..3 {
            assert_eq!(bucket.take(later), Duration::ZERO);
        }
        assert_eq!(bucket.take(later), ms(20));
    }

    #[test]
    fn no_event_limit_at_zero_qps() {
        assert!(Bucket::new(EventRate { qps: 0, burst: 10 }, Instant::now()).is_none());
        // A burst of 0 still lets one through.
        let now = Instant::now();
        let mut bucket = Bucket::new(EventRate { qps: 10, burst: 0 }, now).unwrap();
        assert_eq!(bucket.take(now), Duration::ZERO);
        assert_eq!(bucket.take(now), Duration::from_millis(100));
    }
}
