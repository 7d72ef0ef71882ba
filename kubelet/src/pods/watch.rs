//! Which pods this node runs: a watch on the pods bound to it, and one
//! [`crate::pods::lifecycle`] worker per pod UID.
//!
//! This module owns the mapping from the watch's events to workers: a new
//! UID starts a worker, an update is handed to that pod's worker, a
//! deletion ends it. It never decides anything about a pod itself.
//!
//! Guarantees: at most one worker per pod UID; the watch never ends while
//! the node runs (failures are retried every few seconds at most); a pod
//! deleted while the watch was down is noticed at the next relist (its
//! worker ends).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use tokio::sync::watch;

use crate::pods::context::NodeContext;
use crate::pods::lifecycle::run_pod;

/// First retry of a failed pod watch; doubles up to [`WATCH_RETRY_MAX`].
const WATCH_RETRY_FIRST: Duration = Duration::from_millis(500);
/// The pod watch is retried at least this often, so the node resumes
/// within seconds of the API server's return (client-go's reflector waits
/// up to 30 s; one node's re-list is cheap).
const WATCH_RETRY_MAX: Duration = Duration::from_secs(4);

/// The pod watch's back-off, reset by every event that arrives.
struct WatchBackoff(Duration);

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let wait = self.0;
        self.0 = (self.0 * 2).min(WATCH_RETRY_MAX);
        Some(wait)
    }
}

impl kube::runtime::utils::Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.0 = WATCH_RETRY_FIRST;
    }
}

/// Watches this node's pods for as long as the node runs. Errors (the API
/// server away, a watch expired) are logged and the watch is resumed with
/// back-off, re-listing where it must; the pods' workers run on meanwhile.
pub(crate) async fn run(ctx: Arc<NodeContext>) {
    let api: Api<Pod> = Api::all(ctx.client.clone());
    let config = watcher::Config::default().fields(&format!("spec.nodeName={}", ctx.identity.name));
    let mut events =
        std::pin::pin!(watcher::watcher(api, config).backoff(WatchBackoff(WATCH_RETRY_FIRST)));
    let mut workers: HashMap<String, watch::Sender<Pod>> = HashMap::new();
    let mut listed: HashSet<String> = HashSet::new();
    let mut failing = false;
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(event) => {
                if std::mem::take(&mut failing) {
                    tracing::info!("the pod watch is back");
                }
                event
            }
            Err(error) => {
                if !std::mem::replace(&mut failing, true) {
                    tracing::warn!(%error, "the pod watch failed; resuming it with back-off");
                } else {
                    tracing::debug!(%error, "the pod watch still fails");
                }
                continue;
            }
        };
        match event {
            Event::Init => listed.clear(),
            Event::InitApply(pod) => {
                if let Some(uid) = pod.metadata.uid.clone() {
                    listed.insert(uid);
                }
                dispatch(&ctx, &mut workers, pod);
            }
            Event::InitDone => {
                // Pods that disappeared while the watch was away.
                workers.retain(|uid, _| listed.contains(uid));
                remove_stale_pod_dirs(&ctx, &listed);
            }
            Event::Apply(pod) => dispatch(&ctx, &mut workers, pod),
            Event::Delete(pod) => {
                if let Some(uid) = &pod.metadata.uid {
                    // Dropping the sender tells the worker the pod is gone.
                    workers.remove(uid);
                }
            }
        }
    }
}

/// Removes the directories (volumes, logs) of pods that no longer exist,
/// e.g. force-deleted while sandlet was not running.
fn remove_stale_pod_dirs(ctx: &NodeContext, listed: &HashSet<String>) {
    for parent in [&ctx.pods_dir, &ctx.volumes_dir] {
        let Ok(entries) = std::fs::read_dir(parent) else {
            continue;
        };
        for entry in entries.flatten() {
            let uid = entry.file_name().to_string_lossy().into_owned();
            if !listed.contains(&uid) && ctx.pods.find_uid(&uid).is_none() {
                tracing::info!(%uid, dir = %entry.path().display(), "removing the directory of a pod that no longer exists");
                if let Err(error) = std::fs::remove_dir_all(entry.path()) {
                    tracing::warn!(%error, %uid, "cannot remove a stale pod directory");
                }
            }
        }
    }
}

/// Hands `pod` to its worker, starting one for a new UID.
fn dispatch(ctx: &Arc<NodeContext>, workers: &mut HashMap<String, watch::Sender<Pod>>, pod: Pod) {
    let Some(uid) = pod.metadata.uid.clone() else {
        return;
    };
    if let Some(sender) = workers.get(&uid) {
        sender.send_replace(pod);
        return;
    }
    let (sender, receiver) = watch::channel(pod);
    workers.insert(uid, sender);
    tokio::spawn(run_pod(ctx.clone(), receiver));
}
