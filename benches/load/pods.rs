//! The pods the load is made of: their objects for sandlet and for the
//! container worker, creating them, the watch's timeline of what each pod
//! was seen doing and when, and clearing them away between parts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};

#[derive(Debug, Default, Clone, Copy)]
pub struct Seen {
    pub created: Option<Instant>,
    pub scheduled: Option<Instant>,
    pub running: Option<Instant>,
    pub finished: Option<Instant>,
}

pub type Timeline = Arc<Mutex<HashMap<String, Seen>>>;

/// A pod for the container worker: `args` as the busybox image's command,
/// pinned by hostname, no toleration, a 1 s grace period (a shell as PID 1 ignores
/// SIGTERM; the default 30 s would only slow the clean-up between bursts).
pub fn container_pod_object(name: &str, node: &str, image: &str, args: &[&str]) -> Pod {
    let mut pod = pod_object(name, node, image, args);
    let spec = pod.spec.as_mut().expect("pod_object has a spec");
    spec.tolerations = None;
    spec.termination_grace_period_seconds = Some(1);
    pod
}

/// A pod for the sandlet node: the krustlet-style toleration, pinned by
/// hostname, with everything else at Kubernetes' defaults (including the
/// service-account token volume every pod gets).
pub fn pod_object(name: &str, node: &str, image: &str, args: &[&str]) -> Pod {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": name },
        "spec": {
            "restartPolicy": "Never",
            "nodeSelector": { "kubernetes.io/hostname": node },
            "tolerations": [{ "key": "kubernetes.io/arch", "operator": "Equal", "value": "wasm32-wasi" }],
            "containers": [{ "name": "main", "image": image, "args": args }]
        }
    }))
    .unwrap()
}

pub fn watch_timeline(api: Api<Pod>, timeline: Timeline) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut events =
            std::pin::pin!(watcher::watcher(api, watcher::Config::default()).applied_objects());
        while let Ok(Some(pod)) = events.try_next().await {
            let now = Instant::now();
            let name = pod.metadata.name.clone().unwrap_or_default();
            let status = pod.status.clone().unwrap_or_default();
            let scheduled = status
                .conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "PodScheduled" && c.status == "True");
            let container = status.container_statuses.iter().flatten().next().cloned();
            let running = container
                .as_ref()
                .and_then(|c| c.state.as_ref())
                .is_some_and(|s| s.running.is_some() || s.terminated.is_some());
            let finished = matches!(status.phase.as_deref(), Some("Succeeded" | "Failed"));
            let mut t = timeline.lock().unwrap();
            let seen = t.entry(name).or_default();
            if scheduled && seen.scheduled.is_none() {
                seen.scheduled = Some(now);
            }
            if running && seen.running.is_none() {
                seen.running = Some(now);
            }
            if finished && seen.finished.is_none() {
                seen.finished = Some(now);
            }
        }
    })
}

pub async fn create_all(api: &Api<Pod>, pods: Vec<Pod>, timeline: &Timeline, concurrency: usize) {
    futures_util::stream::iter(pods)
        .for_each_concurrent(concurrency, |pod| {
            let api = api.clone();
            let timeline = timeline.clone();
            async move {
                let name = pod.metadata.name.clone().unwrap();
                timeline
                    .lock()
                    .unwrap()
                    .entry(name.clone())
                    .or_default()
                    .created = Some(Instant::now());
                api.create(&PostParams::default(), &pod)
                    .await
                    .unwrap_or_else(|e| panic!("create {name}: {e}"));
            }
        })
        .await;
}

pub async fn wait_until(
    what: &str,
    timeline: &Timeline,
    names: &[String],
    timeout: Duration,
    done: impl Fn(&Seen) -> bool,
) {
    let start = Instant::now();
    loop {
        let count = {
            let t = timeline.lock().unwrap();
            names
                .iter()
                .filter(|n| t.get(*n).is_some_and(&done))
                .count()
        };
        if count == names.len() {
            return;
        }
        assert!(
            start.elapsed() < timeout,
            "{what}: only {count} of {} after {timeout:?}",
            names.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn clear(api: &Api<Pod>) {
    api.delete_collection(&DeleteParams::default(), &ListParams::default())
        .await
        .unwrap();
    let start = Instant::now();
    while !api
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .is_empty()
    {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "pods were not deleted"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
