//! The reference kubelets: in this process, on threads and an async runtime
//! of their own, kubelets that run nothing and only do what a kubelet must
//! do to report a pod running on this control plane (with the pod's
//! service-account token request, or the status alone). They show what the
//! control plane on this machine costs by itself.

use std::time::{Duration, Instant};

use futures_util::TryStreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};

use crate::cluster;

/// Token requests of the reference kubelet refused and retried (the
/// NodeRestriction moment after binding), since last read.
static TOKEN_RETRIES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

pub fn report_token_retries() {
    let retries = TOKEN_RETRIES.swap(0, std::sync::atomic::Ordering::Relaxed);
    println!("  token requests refused and retried: {retries}");
}

/// What the reference kubelet does for each pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Floor {
    /// Report the container running.
    StatusOnly,
    /// Get the pod's service-account token (as sandlet does for the token
    /// volume every pod has), then report the container running.
    TokenAndStatus,
}

/// A kubelet that runs nothing: it registers a Node like sandlet's (same
/// labels, taints and heartbeat, node credentials under NodeRestriction,
/// the same HTTP/2 client) and reports each pod bound to it running, after
/// a token request if `floor` says so, retried as sandlet retries it.
/// Pods being deleted are removed at once.
async fn reference_kubelet(kubeconfig: std::path::PathBuf, node: &str, floor: Floor) {
    use k8s_openapi::api::core::v1::ServiceAccount;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;
    use kube::api::{Patch, PatchParams, Preconditions};
    use sandlet_kubelet::node::{Heartbeat, NodeIdentity, register};

    let client = sandlet_kubelet::cluster::client(Some(&kubeconfig))
        .await
        .unwrap();
    let id = NodeIdentity::detect(node, "127.0.0.1".parse().unwrap(), 10250, 1100, "none");
    let since = Timestamp::now();
    let node_uid = register(&client, &id, since).await.unwrap();
    let heartbeat = tokio::spawn(Heartbeat::new(client.clone(), id, node_uid, since).run());
    // Ends with this kubelet (when its task is aborted).
    struct AbortOnDrop(tokio::task::JoinHandle<()>);
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let _heartbeat = AbortOnDrop(heartbeat);

    let all: Api<Pod> = Api::all(client.clone());
    let config = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
    let mut handled = std::collections::HashSet::new();
    let mut events = std::pin::pin!(watcher::watcher(all, config).applied_objects());
    while let Ok(Some(pod)) = events.try_next().await {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
        if pod.metadata.deletion_timestamp.is_some() {
            if handled.insert(format!("delete {uid}")) {
                let params = DeleteParams {
                    grace_period_seconds: Some(0),
                    preconditions: Some(Preconditions {
                        uid: Some(uid),
                        resource_version: None,
                    }),
                    ..DeleteParams::default()
                };
                tokio::spawn(async move {
                    let _ = pods.delete(&name, &params).await;
                });
            }
            continue;
        }
        if !handled.insert(uid.clone()) {
            continue;
        }
        let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &namespace);
        let image = pod.spec.as_ref().unwrap().containers[0].image.clone();
        tokio::spawn(async move {
            if floor == Floor::TokenAndStatus {
                // The request sandlet makes, with sandlet's retry schedule
                // for the moment after binding when NodeRestriction does not
                // yet know the pod is here.
                let request = sandlet_kubelet::pods::bound_token_request(&name, &uid, "", None);
                let mut failing_since = None;
                let mut failures = 0;
                while let Err(error) = accounts
                    .create_token_request("default", &PostParams::default(), &request)
                    .await
                {
                    TOKEN_RETRIES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    failures += 1;
                    let failing_for = failing_since.get_or_insert_with(Instant::now).elapsed();
                    assert!(
                        failing_for < Duration::from_secs(5),
                        "token for {name}: {error}"
                    );
                    tokio::time::sleep(sandlet_kubelet::pods::config_retry_delay(
                        failures,
                        failing_for,
                    ))
                    .await;
                }
            }
            let now = Time(Timestamp::now());
            let condition = |type_: &str| serde_json::json!({ "type": type_, "status": "True" });
            let status = serde_json::json!({ "status": {
                "phase": "Running",
                "startTime": now,
                "conditions": [
                    condition("PodScheduled"), condition("Initialized"),
                    condition("ContainersReady"), condition("Ready"),
                ],
                "containerStatuses": [{
                    "name": "main", "image": image, "imageID": "", "ready": true,
                    "restartCount": 0, "started": true,
                    "state": { "running": { "startedAt": now } },
                }],
            }});
            pods.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                .await
                .unwrap_or_else(|e| panic!("status of {name}: {e}"));
        });
    }
}

/// Waits until the scheduler can place pods on `node` (Ready).
async fn wait_for_ready_node(client: &kube::Client, node: &str) {
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
    let start = Instant::now();
    loop {
        let ready = nodes.get_opt(node).await.unwrap().is_some_and(|n| {
            n.status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        });
        if ready {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "node {node} never became Ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The two reference kubelets while they run: how to stop each, and its
/// thread.
pub struct References(
    Vec<(
        tokio::sync::oneshot::Sender<()>,
        std::thread::JoinHandle<()>,
    )>,
);

impl References {
    /// Starts `floor-token` (token request + status) and `floor-status`
    /// (status only) and waits until the scheduler can place pods on each.
    pub async fn start(c: &cluster::Cluster, client: &kube::Client) -> References {
        let mut references = Vec::new();
        for (floor, name) in [
            (Floor::TokenAndStatus, "floor-token"),
            (Floor::StatusOnly, "floor-status"),
        ] {
            // On threads and a runtime of its own, as a kubelet process
            // would be, not sharing this load generator's.
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let kubeconfig = c.node_kubeconfig(name);
            let thread = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async move {
                    tokio::select! {
                        () = reference_kubelet(kubeconfig, name, floor) => {}
                        _ = stopped => {}
                    }
                });
            });
            references.push((stop, thread));
            wait_for_ready_node(client, name).await;
        }
        References(references)
    }

    /// Stops both and deletes their Nodes.
    pub async fn stop(self, client: &kube::Client) {
        for (stop, thread) in self.0 {
            let _ = stop.send(());
            thread.join().unwrap();
        }
        let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
        for name in ["floor-token", "floor-status"] {
            let _ = nodes.delete(name, &DeleteParams::default()).await;
        }
    }
}
