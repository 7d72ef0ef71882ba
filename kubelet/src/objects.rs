//! ConfigMaps and Secrets as pods read them, fetched once for many pods.
//!
//! This module owns how the node reads the objects its pods reference: a
//! GET per (kind, namespace, name), shared by every pod that asks within
//! [`OBJECT_TTL`] and by every pod that asks while it is in flight. When a
//! hundred pods of one namespace start at once they need one read of
//! `kube-root-ca.crt`, not a hundred.
//!
//! Caveat: a ConfigMap or Secret changed less than [`OBJECT_TTL`] before a
//! container starts may be seen as it was (the kubelet's TTL cache has the
//! same property, with a longer TTL).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{Api, Client};
use tokio::sync::OnceCell;

/// How long a fetched object is reused.
pub const OBJECT_TTL: Duration = Duration::from_secs(2);

type Fetched<T> = Arc<OnceCell<Result<Option<T>, String>>>;
/// (namespace, name).
type Key = (String, String);

struct Cache<T> {
    entries: Mutex<HashMap<Key, (Instant, Fetched<T>)>>,
}

impl<T> Default for Cache<T> {
    fn default() -> Self {
        Cache {
            entries: Mutex::default(),
        }
    }
}

impl<T: Clone> Cache<T> {
    async fn get<F, Fut>(&self, namespace: &str, name: &str, fetch: F) -> Result<Option<T>, String>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Option<T>, String>>,
    {
        let cell = {
            let mut entries = self.entries.lock().expect("object cache poisoned");
            let now = Instant::now();
            entries.retain(|_, (at, _)| now.duration_since(*at) < OBJECT_TTL);
            entries
                .entry((namespace.to_owned(), name.to_owned()))
                .or_insert_with(|| (now, Arc::new(OnceCell::new())))
                .1
                .clone()
        };
        let result = cell.get_or_init(fetch).await.clone();
        if result.is_err() {
            // Errors are not cached: the next caller tries again.
            let mut entries = self.entries.lock().expect("object cache poisoned");
            if entries
                .get(&(namespace.to_owned(), name.to_owned()))
                .is_some_and(|(_, c)| Arc::ptr_eq(c, &cell))
            {
                entries.remove(&(namespace.to_owned(), name.to_owned()));
            }
        }
        result
    }
}

/// The node's reader of ConfigMaps and Secrets.
pub struct ObjectReader {
    client: Client,
    config_maps: Cache<ConfigMap>,
    secrets: Cache<Secret>,
}

impl ObjectReader {
    pub fn new(client: Client) -> Self {
        ObjectReader {
            client,
            config_maps: Cache::default(),
            secrets: Cache::default(),
        }
    }

    /// The ConfigMap, `None` if it does not exist.
    pub async fn config_map(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<ConfigMap>, String> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), namespace);
        self.config_maps
            .get(namespace, name, || async move {
                api.get_opt(name)
                    .await
                    .map_err(|e| format!("cannot read configmap {name:?}: {e}"))
            })
            .await
    }

    /// The Secret, `None` if it does not exist.
    pub async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, String> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        self.secrets
            .get(namespace, name, || async move {
                api.get_opt(name)
                    .await
                    .map_err(|e| format!("cannot read secret {name:?}: {e}"))
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn concurrent_and_recent_reads_share_one_fetch_and_errors_are_retried() {
        let cache: Cache<String> = Cache::default();
        let fetches = AtomicUsize::new(0);
        let fetch = || async {
            fetches.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok(Some("v".to_owned()))
        };
        let (a, b) = tokio::join!(cache.get("ns", "x", fetch), cache.get("ns", "x", fetch));
        assert_eq!(
            (a.unwrap(), b.unwrap()),
            (Some("v".into()), Some("v".into()))
        );
        assert_eq!(cache.get("ns", "x", fetch).await.unwrap(), Some("v".into()));
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        // Another name is another fetch.
        cache.get("ns", "y", fetch).await.unwrap();
        assert_eq!(fetches.load(Ordering::SeqCst), 2);

        let failing = || async { Err::<Option<String>, _>("down".to_owned()) };
        assert!(cache.get("ns", "z", failing).await.is_err());
        assert_eq!(cache.get("ns", "z", fetch).await.unwrap(), Some("v".into()));
    }
}
