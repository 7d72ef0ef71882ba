//! The end-to-end load generator: pods through a real control plane to one
//! `sandlet node`, timed from a watch.
//!
//! `cargo bench --bench load` (needs the Go-built control plane and
//! Debian's docker-registry, like the e2e tests; results in BENCHMARKS.md).
//!
//! 1. Start latency: 100 pods created at once, module already cached and
//!    compiled. Per pod, from the moment the watch first sees it scheduled
//!    (PodScheduled) to the moment it first sees its container running, and
//!    from the create request to Running. The same burst also goes, in
//!    turns in the same run, to a reference kubelet in this process that
//!    runs nothing and only does what a kubelet must do to report a pod
//!    running on this control plane: once with the pod's service-account
//!    token request and the Running status, once with the status alone.
//!    They show what the control plane on this machine costs by itself.
//!    Two bursts to the reference kubelet warm the control plane up first.
//! 2. Throughput: 1,000 short pods, from the first create to the last pod
//!    seen Succeeded.
//! 3. Memory: the node's resident set size with 500 pods running at once.
//!
//! Times are taken when this process receives the watch event, so they
//! include the API server's and the watch's delivery time.
//!
//! `SANDLET_LOAD_ONLY=start` runs only the first part;
//! `SANDLET_LOAD_ROUNDS=N` sets its rounds (default 3);
//! `SANDLET_LOAD_NODE_LOG=FILE` keeps the node's log (with `SANDLET_LOG` as
//! the node's log filter, e.g. `info,sandlet_kubelet=trace`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{WatchStreamExt, watcher};

#[allow(dead_code)]
#[path = "../tests/integration/cluster.rs"]
mod cluster;
#[allow(dead_code)]
#[path = "../tests/integration/fixtures.rs"]
mod fixtures;
#[allow(dead_code)]
#[path = "../tests/integration/registry.rs"]
mod registry;

#[derive(Debug, Default, Clone, Copy)]
struct Seen {
    created: Option<Instant>,
    scheduled: Option<Instant>,
    running: Option<Instant>,
    finished: Option<Instant>,
}

type Timeline = Arc<Mutex<HashMap<String, Seen>>>;

/// A pod for the sandlet node: the krustlet-style toleration, pinned by
/// hostname, with everything else at Kubernetes' defaults (including the
/// service-account token volume every pod gets).
fn pod_object(name: &str, node: &str, image: &str, args: &[&str]) -> Pod {
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

fn watch_timeline(api: Api<Pod>, timeline: Timeline) -> tokio::task::JoinHandle<()> {
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

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

async fn create_all(api: &Api<Pod>, pods: Vec<Pod>, timeline: &Timeline, concurrency: usize) {
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

async fn wait_until(
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

async fn clear(api: &Api<Pod>) {
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

/// Creates 100 pods named `{prefix}-N` for `node` at once and returns,
/// sorted, PodScheduled -> running and created -> running of each.
async fn burst(
    api: &Api<Pod>,
    timeline: &Timeline,
    node: &str,
    image: &str,
    prefix: &str,
) -> (Vec<Duration>, Vec<Duration>) {
    let names: Vec<String> = (0..100).map(|i| format!("{prefix}-{i}")).collect();
    let pods = names
        .iter()
        .map(|n| pod_object(n, node, image, &["--sleep", "20"]))
        .collect();
    create_all(api, pods, timeline, 100).await;
    wait_until(
        "100 pods running",
        timeline,
        &names,
        Duration::from_secs(120),
        |s| s.running.is_some(),
    )
    .await;
    let (mut to_running, mut created_to_running) = (Vec::new(), Vec::new());
    {
        let t = timeline.lock().unwrap();
        for n in &names {
            let s = t[n];
            let running = s.running.unwrap();
            to_running.push(running.saturating_duration_since(s.scheduled.unwrap_or(running)));
            created_to_running.push(running.saturating_duration_since(s.created.unwrap()));
        }
    }
    to_running.sort();
    created_to_running.sort();
    clear(api).await;
    (to_running, created_to_running)
}

fn report(what: &str, (to_running, created_to_running): &(Vec<Duration>, Vec<Duration>)) {
    println!("{what}:");
    println!(
        "  PodScheduled -> running: median {}, p99 {}, max {}",
        ms(percentile(to_running, 0.5)),
        ms(percentile(to_running, 0.99)),
        ms(*to_running.last().unwrap())
    );
    println!(
        "  created -> running:      median {}, p99 {}, max {}",
        ms(percentile(created_to_running, 0.5)),
        ms(percentile(created_to_running, 0.99)),
        ms(*created_to_running.last().unwrap())
    );
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

    let client = sandlet_kubelet::client(Some(&kubeconfig)).await.unwrap();
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
                let request = sandlet_kubelet::volumes::bound_token_request(&name, &uid, "", None);
                let mut delay = sandlet_kubelet::lifecycle::CONFIG_FIRST_RETRY;
                while let Err(error) = accounts
                    .create_token_request("default", &PostParams::default(), &request)
                    .await
                {
                    assert!(delay <= Duration::from_secs(2), "token for {name}: {error}");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
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

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` would run this
    // too, so only run when asked to benchmark.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let c = cluster::cluster();
    let registry = registry::TestRegistry::start(registry::RegistrySetup::default());
    let image = cluster::push(&registry, &fixtures::guests().hello, "bench/hello:v1");
    let node = cluster::TestNode::start("load", &registry, &["--max-pods", "1100"]);
    let pid = node.pid();
    let ns = c.namespace("load");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let kubeconfig = Kubeconfig::read_from(&c.kubeconfig).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .unwrap();
        let client = kube::Client::try_from(config).unwrap();
        let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let timeline: Timeline = Arc::default();
        let watch = watch_timeline(api.clone(), timeline.clone());

        // Warm-up: the module is pulled and compiled once.
        let warm = vec![pod_object("warm", &node.name, &image, &[])];
        create_all(&api, warm, &timeline, 1).await;
        wait_until("warm-up", &timeline, &["warm".to_owned()], Duration::from_secs(60), |s| s.finished.is_some()).await;
        clear(&api).await;
        let rss_idle = rss_kib(pid);

        // 1. 100 pods at once, each running for a while. A control plane
        // that has just started is slow for its first bursts, whoever runs
        // the pods: two bursts to the reference kubelet warm it up first
        // (reported, not counted; sandlet itself gets no warm-up beyond the
        // one pod above). Then rounds of the same burst to sandlet and to
        // the reference kubelet (token request + status, status only), in
        // turns, so that drift over the run touches all three alike.
        let mut references = Vec::new();
        for (floor, name) in [(Floor::TokenAndStatus, "floor-token"), (Floor::StatusOnly, "floor-status")] {
            references.push(tokio::spawn(reference_kubelet(c.node_kubeconfig(name), name, floor)));
            wait_for_ready_node(&client, name).await;
        }
        for warm_up in 1..=2 {
            let result = burst(&api, &timeline, "floor-token", &image, &format!("warm-up-{warm_up}")).await;
            report(&format!("control plane warm-up {warm_up}: reference kubelet, token request + status"), &result);
        }
        let rounds: usize = std::env::var("SANDLET_LOAD_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
        let targets = [
            (node.name.as_str(), "sandlet"),
            ("floor-token", "reference kubelet, token request + status"),
            ("floor-status", "reference kubelet, status only"),
        ];
        let mut all: Vec<Vec<Duration>> = vec![Vec::new(); targets.len()];
        for round in 0..rounds {
            for (i, (target, what)) in targets.iter().enumerate() {
                let result = burst(&api, &timeline, target, &image, &format!("r{round}-{i}")).await;
                report(&format!("round {}: {what}", round + 1), &result);
                all[i].extend(result.0);
            }
        }
        for reference in references {
            reference.abort();
        }
        let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
        for name in ["floor-token", "floor-status"] {
            let _ = nodes.delete(name, &DeleteParams::default()).await;
        }
        println!("PodScheduled -> running, all {rounds} rounds together ({} pods each):", rounds * 100);
        for (i, (_, what)) in targets.iter().enumerate() {
            all[i].sort();
            println!(
                "  {what:<45} median {}, p99 {}",
                ms(percentile(&all[i], 0.5)),
                ms(percentile(&all[i], 0.99))
            );
        }

        if std::env::var("SANDLET_LOAD_ONLY").as_deref() == Ok("start") {
            watch.abort();
            return;
        }

        // 2. 1,000 short pods.
        let names: Vec<String> = (0..1000).map(|i| format!("short-{i}")).collect();
        let pods = names.iter().map(|n| pod_object(n, &node.name, &image, &[])).collect();
        let started = Instant::now();
        create_all(&api, pods, &timeline, 50).await;
        wait_until("1000 pods done", &timeline, &names, Duration::from_secs(900), |s| s.finished.is_some()).await;
        let took = started.elapsed();
        println!(
            "1,000 short pods: {:.1} s from first create to last Succeeded, {:.1} pods/s",
            took.as_secs_f64(),
            1000.0 / took.as_secs_f64()
        );
        clear(&api).await;

        // 3. 500 pods running at once.
        let names: Vec<String> = (0..500).map(|i| format!("resident-{i}")).collect();
        let pods = names.iter().map(|n| pod_object(n, &node.name, &image, &["--sleep", "600"])).collect();
        create_all(&api, pods, &timeline, 50).await;
        wait_until("500 pods running", &timeline, &names, Duration::from_secs(600), |s| s.running.is_some()).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let rss_busy = rss_kib(pid);
        println!(
            "node resident memory: {:.1} MiB idle, {:.1} MiB with 500 pods running ({:.1} KiB per pod)",
            rss_idle as f64 / 1024.0,
            rss_busy as f64 / 1024.0,
            (rss_busy.saturating_sub(rss_idle)) as f64 / 500.0
        );
        clear(&api).await;
        watch.abort();
    });
    if let Ok(path) = std::env::var("SANDLET_LOAD_NODE_LOG") {
        std::fs::write(path, node.log_text()).unwrap();
    }
}
