//! ConfigMaps and Secrets as pods read them, kept current by watches.
//!
//! This module owns how the node reads the objects its pods reference, as
//! the kubelet's `Watch` change-detection strategy does: the first read of
//! a (kind, namespace, name) starts a watch on that one object (field
//! selector `metadata.name`, which the Node authorizer allows for objects
//! the node's pods reference) and waits for its initial list; every later
//! read is answered from memory, as of the watch's last event. When a
//! hundred pods of one namespace start at once they share one list of
//! `kube-root-ca.crt`, and the next hundred need none.
//!
//! Guarantees: a read after the initial list sees the object as of the last
//! event the API server sent (no time-to-live staleness); concurrent first
//! reads share one list.
//!
//! Caveats: an error before the initial list (the Node authorizer refuses
//! for a moment after a pod is bound, say) is returned and not kept: the
//! next read starts a new watch. After the list, a broken watch keeps
//! answering with the last state it knew while it re-lists with back-off.
//! A watch that nobody has read for [`IDLE_STOP`] ends.
//!
//! It must never keep an error: the next read tries again.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

/// How long a watch lives after its last read: longer than the pauses
/// between bursts of pods, short enough that objects no pod uses stop
/// costing the API server a watch.
pub(crate) const IDLE_STOP: Duration = Duration::from_secs(120);

/// Why an object could not be read.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum ReadError {
    /// Its watch could not list it (the Node authorizer refused, say).
    #[error("cannot read {kind} {name:?}: {source}")]
    Watch {
        kind: &'static str,
        name: String,
        #[source]
        source: Arc<watcher::Error>,
    },
    /// Its watch ended before it listed the object.
    #[error("cannot read {kind} {name:?}: its watch ended")]
    Ended { kind: &'static str, name: String },
}

/// What a watch knows of its object.
#[derive(Debug, Clone)]
enum Known<T> {
    Listing,
    /// The object, or `None` if it does not exist.
    Ready(Option<T>),
    /// The watch could not list it; the watch has ended.
    Failed(ReadError),
}

/// (namespace, name).
type Key = (String, String);

struct Watched<T> {
    state: watch::Receiver<Known<T>>,
    last_read: Arc<Mutex<Instant>>,
    task: tokio::task::JoinHandle<()>,
}

impl<T> Drop for Watched<T> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The object's state after `event`, when it changes; `listed` collects an
/// initial list (a watch of one name lists at most one object).
fn apply<T>(event: Event<T>, listed: &mut Option<T>) -> Option<Option<T>> {
    match event {
        Event::Init => {
            *listed = None;
            None
        }
        Event::InitApply(object) => {
            *listed = Some(object);
            None
        }
        Event::InitDone => Some(listed.take()),
        Event::Apply(object) => Some(Some(object)),
        Event::Delete(_) => Some(None),
    }
}

struct Watches<T> {
    kind: &'static str,
    entries: Mutex<HashMap<Key, Watched<T>>>,
}

impl<T> Watches<T>
where
    T: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static,
{
    fn new(kind: &'static str) -> Self {
        Watches {
            kind,
            entries: Mutex::default(),
        }
    }

    async fn get(
        &self,
        client: &Client,
        namespace: &str,
        name: &str,
    ) -> Result<Option<T>, ReadError> {
        let mut state = {
            let mut entries = self.entries.lock().expect("object watches poisoned");
            // Watches that ended (failed, or idle) are dropped here.
            entries.retain(|_, w| !w.task.is_finished());
            let key = (namespace.to_owned(), name.to_owned());
            let watched = entries
                .entry(key)
                .or_insert_with(|| self.start(client, namespace, name));
            *watched.last_read.lock().expect("last read poisoned") = Instant::now();
            watched.state.clone()
        };
        let known = state
            .wait_for(|k| !matches!(k, Known::Listing))
            .await
            .map_err(|_| ReadError::Ended {
                kind: self.kind,
                name: name.to_owned(),
            })?
            .clone();
        match known {
            Known::Ready(object) => Ok(object),
            Known::Failed(error) => Err(error),
            Known::Listing => unreachable!("waited for the list"),
        }
    }

    fn start(&self, client: &Client, namespace: &str, name: &str) -> Watched<T> {
        let (tx, rx) = watch::channel(Known::Listing);
        let last_read = Arc::new(Mutex::new(Instant::now()));
        let api: Api<T> = Api::namespaced(client.clone(), namespace);
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let (kind, name, idle) = (self.kind, name.to_owned(), Arc::clone(&last_read));
        let task = tokio::spawn(async move {
            let mut events = std::pin::pin!(watcher::watcher(api, config).default_backoff());
            let mut listed = None;
            let mut ready = false;
            let mut idle_check = tokio::time::interval(IDLE_STOP / 4);
            loop {
                tokio::select! {
                    event = events.next() => match event {
                        Some(Ok(event)) => {
                            if let Some(object) = apply(event, &mut listed) {
                                ready = true;
                                tx.send_replace(Known::Ready(object));
                            }
                        }
                        Some(Err(e)) if !ready => {
                            tx.send_replace(Known::Failed(ReadError::Watch {
                                kind,
                                name: name.clone(),
                                source: Arc::new(e),
                            }));
                            return;
                        }
                        Some(Err(e)) => {
                            tracing::debug!(%kind, %name, "watch broken, re-listing: {e}");
                        }
                        None => return,
                    },
                    _ = idle_check.tick() => {
                        if idle.lock().expect("last read poisoned").elapsed() >= IDLE_STOP {
                            return;
                        }
                    }
                }
            }
        });
        Watched {
            state: rx,
            last_read,
            task,
        }
    }
}

/// The node's reader of ConfigMaps and Secrets.
pub(crate) struct ObjectReader {
    client: Client,
    config_maps: Watches<ConfigMap>,
    secrets: Watches<Secret>,
}

impl ObjectReader {
    pub(crate) fn new(client: Client) -> Self {
        ObjectReader {
            client,
            config_maps: Watches::new("configmap"),
            secrets: Watches::new("secret"),
        }
    }

    /// The ConfigMap, `None` if it does not exist.
    pub(crate) async fn config_map(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<ConfigMap>, ReadError> {
        self.config_maps.get(&self.client, namespace, name).await
    }

    /// The Secret, `None` if it does not exist.
    pub(crate) async fn secret(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Secret>, ReadError> {
        self.secrets.get(&self.client, namespace, name).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_follows_the_initial_list_then_each_event() {
        let mut listed = None;
        // A list that finds the object.
        assert_eq!(apply(Event::Init, &mut listed), None);
        assert_eq!(apply(Event::InitApply("v1"), &mut listed), None);
        assert_eq!(apply(Event::InitDone, &mut listed), Some(Some("v1")));
        // Changes and deletion.
        assert_eq!(apply(Event::Apply("v2"), &mut listed), Some(Some("v2")));
        assert_eq!(apply(Event::Delete("v2"), &mut listed), Some(None));
        // A re-list that no longer finds it: absent, not the old value.
        assert_eq!(apply(Event::Init, &mut listed), None);
        assert_eq!(apply(Event::InitDone, &mut listed), Some(None));
        // A re-list that was interrupted and started again forgets what the
        // first attempt had buffered.
        apply(Event::Init, &mut listed);
        apply(Event::InitApply("stale"), &mut listed);
        apply(Event::Init, &mut listed);
        assert_eq!(apply(Event::InitDone, &mut listed), Some(None));
    }
}
