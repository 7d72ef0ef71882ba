//! Events about pods (`events.k8s.io/v1`), recorded as the kubelet records
//! them: an event that repeats is one Event object whose `series` counts
//! the repeats, not a new object each time.
//!
//! This module owns what the node remembers to count repeats: at most
//! [`SERIES_CAPACITY`] recent events (the kubelet's correlator keeps 4096),
//! each for at most [`SERIES_TTL`], and nothing of a pod once the pod is
//! gone ([`EventRecorder::forget`]). A node that runs pods for months must
//! not keep an entry per pod it ever ran (kube-runtime's `Recorder` keeps
//! every event of the last six minutes, and prunes only when it next
//! publishes: a burst of 10,000 pods left ~40 MiB behind). It sends what
//! it is given; rate limits are the event queue's
//! ([`crate::pods::event_queue`]). It must never keep anything of a pod
//! after the pod is gone.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use k8s_openapi::api::events::v1::{Event as K8sEvent, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType};
use kube::{Api, Client};

/// The most events remembered for counting repeats.
pub(crate) const SERIES_CAPACITY: usize = 4096;
/// How long an event is remembered after it was last seen.
pub(crate) const SERIES_TTL: Duration = Duration::from_secs(6 * 60);

/// What makes two events the same: the kubelet's aggregation key (source,
/// object, type, reason and message).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    uid: String,
    namespace: String,
    name: String,
    warning: bool,
    reason: String,
    action: String,
    note: String,
}

#[derive(Debug, Clone)]
struct Seen {
    object: String,
    count: i32,
    last: Instant,
}

/// The bounded memory of recent events.
#[derive(Debug, Default)]
struct Series {
    seen: HashMap<Key, Seen>,
}

impl Series {
    /// How many times `key` was seen before now (0: never, or forgotten),
    /// and the Event object that counts it.
    fn repeat(&mut self, key: &Key, now: Instant) -> Option<(String, i32)> {
        match self.seen.get_mut(key) {
            Some(seen) if now.duration_since(seen.last) < SERIES_TTL => {
                seen.count += 1;
                seen.last = now;
                Some((seen.object.clone(), seen.count))
            }
            Some(_) => {
                self.seen.remove(key);
                None
            }
            None => None,
        }
    }

    fn remember(&mut self, key: Key, object: String, now: Instant) {
        if self.seen.len() >= SERIES_CAPACITY {
            self.seen
                .retain(|_, seen| now.duration_since(seen.last) < SERIES_TTL);
        }
        if self.seen.len() >= SERIES_CAPACITY
            && let Some(oldest) = self
                .seen
                .iter()
                .min_by_key(|(_, seen)| seen.last)
                .map(|(k, _)| k.clone())
        {
            self.seen.remove(&oldest);
        }
        self.seen.insert(
            key,
            Seen {
                object,
                count: 1,
                last: now,
            },
        );
    }

    fn forget(&mut self, uid: &str) {
        self.seen.retain(|key, _| key.uid != uid);
        if self.seen.is_empty() {
            // Give back the table's memory, not only its entries.
            self.seen.shrink_to_fit();
        }
    }
}

/// Publishes events for the objects of one node.
pub(crate) struct EventRecorder {
    client: Client,
    controller: String,
    instance: String,
    series: Mutex<Series>,
}

impl EventRecorder {
    pub(crate) fn new(client: Client, controller: &str, instance: &str) -> Self {
        EventRecorder {
            client,
            controller: controller.to_owned(),
            instance: instance.to_owned(),
            series: Mutex::new(Series::default()),
        }
    }

    /// Creates the Event, or counts one more of an Event seen recently.
    pub(crate) async fn publish(
        &self,
        event: &Event,
        regarding: &ObjectReference,
    ) -> kube::Result<()> {
        let key = Key {
            uid: regarding.uid.clone().unwrap_or_default(),
            namespace: regarding
                .namespace
                .clone()
                .unwrap_or_else(|| "default".to_owned()),
            name: regarding.name.clone().unwrap_or_default(),
            warning: matches!(event.type_, EventType::Warning),
            reason: event.reason.clone(),
            action: event.action.clone(),
            note: event.note.clone().unwrap_or_default(),
        };
        let api: Api<K8sEvent> = Api::namespaced(self.client.clone(), &key.namespace);
        let now = Timestamp::now();
        let repeat = self.lock().repeat(&key, Instant::now());
        if let Some((object, count)) = repeat {
            let patch = serde_json::json!({
                "series": EventSeries {
                    count,
                    last_observed_time: MicroTime(now),
                }
            });
            match api
                .patch(&object, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => return Ok(()),
                // Deleted meanwhile (events expire after an hour): a new one.
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(error) => return Err(error),
            }
        }
        let object = format!(
            "{}.{:x}",
            if key.name.is_empty() {
                &self.controller
            } else {
                &key.name
            },
            now.as_nanosecond()
        );
        let created = K8sEvent {
            action: Some(event.action.clone()),
            reason: Some(event.reason.clone()),
            note: event.note.clone(),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding.clone()),
            related: event.secondary.clone(),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            type_: Some(if key.warning { "Warning" } else { "Normal" }.to_owned()),
            metadata: ObjectMeta {
                name: Some(object.clone()),
                namespace: Some(key.namespace.clone()),
                ..ObjectMeta::default()
            },
            ..K8sEvent::default()
        };
        api.create(&PostParams::default(), &created).await?;
        self.lock().remember(key, object, Instant::now());
        Ok(())
    }

    /// Forgets the events of the object `uid` (a pod that is gone).
    pub(crate) fn forget(&self, uid: &str) {
        self.lock().forget(uid);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Series> {
        self.series.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A reference to `pod` for Events.
pub(crate) fn pod_reference(pod: &Pod) -> ObjectReference {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn key(uid: &str, reason: &str) -> Key {
        Key {
            uid: uid.to_owned(),
            namespace: "ns".to_owned(),
            name: "p".to_owned(),
            warning: false,
            reason: reason.to_owned(),
            action: "a".to_owned(),
            note: "n".to_owned(),
        }
    }

    #[test]
    fn repeats_are_counted_until_they_expire() {
        let mut series = Series::default();
        let t0 = Instant::now();
        assert_eq!(series.repeat(&key("u", "Pulled"), t0), None);
        series.remember(key("u", "Pulled"), "p.1".into(), t0);
        assert_eq!(
            series.repeat(&key("u", "Pulled"), t0 + Duration::from_secs(1)),
            Some(("p.1".into(), 2))
        );
        assert_eq!(
            series.repeat(&key("u", "Pulled"), t0 + Duration::from_secs(2)),
            Some(("p.1".into(), 3))
        );
        // Another note is another event.
        let mut other = key("u", "Pulled");
        other.note = "m".into();
        assert_eq!(series.repeat(&other, t0), None);
        // Past the TTL since last seen: a new event, and the old entry gone.
        let later = t0 + Duration::from_secs(2) + SERIES_TTL;
        assert_eq!(series.repeat(&key("u", "Pulled"), later), None);
        assert!(series.seen.is_empty());
    }

    #[test]
    fn memory_is_bounded_by_count_and_gone_with_the_pod() {
        let mut series = Series::default();
        let t0 = Instant::now();
        for n in 0..(SERIES_CAPACITY + 500) {
            let at = t0 + Duration::from_millis(n as u64);
            series.remember(key(&format!("u{n}"), "Started"), format!("e{n}"), at);
        }
        assert_eq!(series.seen.len(), SERIES_CAPACITY);
        // The oldest were dropped, the newest kept.
        assert!(!series.seen.contains_key(&key("u0", "Started")));
        let newest = format!("u{}", SERIES_CAPACITY + 499);
        assert!(series.seen.contains_key(&key(&newest, "Started")));
        // Expired entries go first when the table is full.
        let much_later = t0 + SERIES_TTL + Duration::from_secs(60);
        series.remember(key("fresh", "Started"), "f".into(), much_later);
        assert_eq!(series.seen.len(), 1);
        // A pod that is gone leaves nothing.
        series.remember(key("fresh", "Pulled"), "g".into(), much_later);
        series.remember(key("other", "Pulled"), "h".into(), much_later);
        series.forget("fresh");
        assert_eq!(series.seen.len(), 1);
        series.forget("other");
        assert!(series.seen.is_empty());
        assert_eq!(series.seen.capacity(), 0);
    }
}
