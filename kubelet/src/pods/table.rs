//! The pods of this node as the kubelet API sees them: by namespace and
//! name, each with its directory and its containers' runs.
//!
//! This module owns the [`PodTable`], the only place where the HTTPS API
//! learns which pods and container runs exist (for logs and metrics). Pod
//! workers update it; the API only reads it. It must never keep a pod
//! after its worker has ended, nor drop a newer pod of the same name.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// One container as the kubelet API sees it.
#[derive(Debug, Clone)]
pub(crate) struct ContainerRun {
    /// The current (or last) run's restart count: its log file's number.
    pub(crate) restart_count: i32,
    /// While the container runs: its start and what it has used so far.
    pub(crate) running: Option<Metered>,
}

/// A running container's start and what it has used so far.
#[derive(Debug, Clone)]
pub(crate) struct Metered {
    pub(crate) started_at: k8s_openapi::jiff::Timestamp,
    pub(crate) usage: Arc<sandlet_runtime::Usage>,
}

/// One pod as the kubelet API sees it.
#[derive(Debug)]
pub(crate) struct PodEntry {
    pub(crate) uid: String,
    pub(crate) dir: PathBuf,
    pub(crate) containers: Mutex<BTreeMap<String, ContainerRun>>,
}

/// The pods of this node by namespace and name.
#[derive(Debug, Default)]
pub(crate) struct PodTable {
    pods: Mutex<HashMap<(String, String), Arc<PodEntry>>>,
}

impl PodTable {
    pub(crate) fn insert(&self, namespace: &str, name: &str, entry: Arc<PodEntry>) {
        self.pods
            .lock()
            .expect("pod table poisoned")
            .insert((namespace.to_owned(), name.to_owned()), entry);
    }

    /// Removes the entry if it still belongs to `uid` (a new pod of the
    /// same name may have replaced it).
    pub(crate) fn remove(&self, namespace: &str, name: &str, uid: &str) {
        let mut pods = self.pods.lock().expect("pod table poisoned");
        let key = (namespace.to_owned(), name.to_owned());
        if pods.get(&key).is_some_and(|e| e.uid == uid) {
            pods.remove(&key);
        }
    }

    pub(crate) fn get(&self, namespace: &str, name: &str) -> Option<Arc<PodEntry>> {
        self.pods
            .lock()
            .expect("pod table poisoned")
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    /// The entry of the pod with this UID, if it is on the node.
    pub(crate) fn find_uid(&self, uid: &str) -> Option<Arc<PodEntry>> {
        self.pods
            .lock()
            .expect("pod table poisoned")
            .values()
            .find(|e| e.uid == uid)
            .cloned()
    }

    /// Every pod: namespace, name and entry.
    pub(crate) fn all(&self) -> Vec<(String, String, Arc<PodEntry>)> {
        self.pods
            .lock()
            .expect("pod table poisoned")
            .iter()
            .map(|((namespace, name), entry)| (namespace.clone(), name.clone(), entry.clone()))
            .collect()
    }

    /// Whether no pod is on the node.
    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.pods.lock().expect("pod table poisoned").is_empty()
    }
}

impl PodEntry {
    pub(crate) fn set(&self, container: &str, run: ContainerRun) {
        self.containers
            .lock()
            .expect("pod entry poisoned")
            .insert(container.to_owned(), run);
    }

    /// The running containers with what they have used.
    pub(crate) fn running(&self) -> Vec<(String, Metered)> {
        self.containers
            .lock()
            .expect("pod entry poisoned")
            .iter()
            .filter_map(|(name, run)| Some((name.clone(), run.running.clone()?)))
            .collect()
    }

    pub(crate) fn container(&self, container: &str) -> Option<ContainerRun> {
        self.containers
            .lock()
            .expect("pod entry poisoned")
            .get(container)
            .cloned()
    }
}

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
}
