//! The end-to-end load generator: pods through a real control plane to one
//! `sandlet node`, timed from a watch.
//!
//! `cargo bench --bench load` (needs the Go-built control plane and
//! Debian's docker-registry, like the e2e tests; results in docs/developer/benchmarks.md).
//!
//! 1. Start latency: 100 pods created at once, module already cached and
//!    compiled. Per pod, from the moment the watch first sees it scheduled
//!    (PodScheduled) to the moment it first sees its container running, and
//!    from the create request to Running. The same burst also goes, in
//!    turns in the same run, to a reference kubelet in this process (on
//!    threads and an async runtime of its own) that
//!    runs nothing and only does what a kubelet must do to report a pod
//!    running on this control plane: once with the pod's service-account
//!    token request and the Running status, once with the status alone.
//!    They show what the control plane on this machine costs by itself.
//!    Two bursts to the reference kubelet warm the control plane up first.
//!    The same bursts also go to a real container worker (`scripts/cluster
//!    worker`: the kubelet, containerd and runc), a busybox container per
//!    pod with its image present: what a station would run otherwise. For
//!    sandlet and the worker each burst also reports the node side's CPU
//!    time per 100 pods (the sandlet process; the worker's cpuacct cgroup,
//!    which holds the kubelet, containerd, every shim and runc and the
//!    pods) and memory per running pod (proportional set size of the node's
//!    processes with the 100 pods running, less before the burst).
//!    Each burst starts once the machine is quiet again, and reports the
//!    CPU each process used during it, how fast the scheduler bound it, and
//!    how fast the (shared, virtual) machine was just before it.
//! 2. Throughput: 1,000 short pods, from the first create to the last pod
//!    seen Succeeded.
//! 3. Memory: the node's resident set size with 500 pods running at once.
//! 4. Soak (`SANDLET_LOAD_ONLY=soak`, alone): 10,000 short pods
//!    (`SANDLET_SOAK_PODS`) through the node in waves of 100, each created,
//!    run to Succeeded and deleted before the next, as fast as the control
//!    plane takes them; the node's resident memory and open file
//!    descriptors against its idle baseline (after a first wave), pods that
//!    never finished, and pod directories and log files left behind.
//!
//! Times are taken when this process receives the watch event, so they
//! include the API server's and the watch's delivery time.
//!
//! `SANDLET_LOAD_ONLY=start` runs only the first part;
//! `SANDLET_LOAD_ROUNDS=N` sets its rounds (default 3);
//! `SANDLET_LOAD_SETTLE=0` starts each burst as soon as the one before
//! is cleared away, without waiting for a quiet machine (how runs 1-34 in
//! docs/developer/benchmarks.md were made);
//! `SANDLET_LOAD_COMPARE="ARGS"` also starts a second sandlet node with
//! these extra arguments (e.g. `--event-qps 0`) and sends the first part's
//! bursts to it too, in the same turns;
//! `SANDLET_LOAD_NODE_LOG=FILE` keeps the node's log (with `SANDLET_LOG` as
//! the node's log filter, e.g. `info,sandlet_kubelet=trace`).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::config::{KubeConfigOptions, Kubeconfig};

#[allow(dead_code)]
#[path = "../../tests/integration/cluster.rs"]
mod cluster;
#[allow(dead_code)]
#[path = "../../tests/integration/fixtures.rs"]
mod fixtures;
#[allow(dead_code)]
#[path = "../../tests/integration/registry.rs"]
mod registry;

mod burst;
mod measure;
mod pods;
mod reference;
mod soak;
mod start;
mod volume;

use measure::{NodeCost, rss_kib};
use pods::{Timeline, container_pod_object, create_all, pod_object, wait_until, watch_timeline};

/// What the parts of the benchmark share: the cluster, a client of it, the
/// load namespace's pods and the watch's timeline of them, the module's
/// image, the sandlet node, and the second sandlet node with its extra
/// arguments if `SANDLET_LOAD_COMPARE` asks for one.
struct Bench<'a> {
    cluster: &'static cluster::Cluster,
    client: kube::Client,
    api: Api<Pod>,
    timeline: Timeline,
    image: &'a str,
    node: &'a cluster::TestNode,
    compare: Option<(&'a cluster::TestNode, &'a str)>,
}

/// The container worker (`scripts/cluster worker`: the kubelet, containerd
/// and runc) in the same control plane: its node, the busybox image it
/// has, and how its cost is read.
struct Worker {
    name: &'static str,
    busybox: String,
    cost: NodeCost,
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
    if std::env::var("SANDLET_LOAD_ONLY").as_deref() == Ok("soak") {
        let ns = c.namespace("soak");
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let client = connect(c).await;
            let api: Api<Pod> = Api::namespaced(client, &ns);
            let timeline: Timeline = Arc::default();
            let watch = watch_timeline(api.clone(), timeline.clone());
            soak::soak(&api, &timeline, &node, &image).await;
            watch.abort();
        });
        return;
    }
    let compare_args = std::env::var("SANDLET_LOAD_COMPARE").ok();
    let compare = compare_args.as_deref().map(|args| {
        let mut all = vec!["--max-pods", "1100"];
        all.extend(args.split_whitespace());
        cluster::TestNode::start("load-b", &registry, &all)
    });
    let worker = start_worker(c);
    let ns = c.namespace("load");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client = connect(c).await;
        let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let timeline: Timeline = Arc::default();
        let watch = watch_timeline(api.clone(), timeline.clone());
        let bench = Bench {
            cluster: c,
            client,
            api,
            timeline,
            image: &image,
            node: &node,
            compare: compare.as_ref().zip(compare_args.as_deref()),
        };
        warm_up(&bench, &worker).await;
        // The node's resident memory once warm and idle, for part 3.
        let rss_idle = rss_kib(node.pid());

        start::start_latency(&bench, worker).await;
        if std::env::var("SANDLET_LOAD_ONLY").as_deref() == Ok("start") {
            watch.abort();
            return;
        }
        volume::throughput(&bench).await;
        volume::resident_memory(&bench, rss_idle).await;
        watch.abort();
    });
    if let Ok(path) = std::env::var("SANDLET_LOAD_NODE_LOG") {
        std::fs::write(path, node.log_text()).unwrap();
    }
}

/// A client of the control plane, as its administrator.
async fn connect(c: &cluster::Cluster) -> kube::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let kubeconfig = Kubeconfig::read_from(&c.kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

/// The container worker, in the same control plane.
fn start_worker(c: &cluster::Cluster) -> Worker {
    let worker = "bench-worker";
    let status = std::process::Command::new(fixtures::repo_root().join("scripts/cluster"))
        .arg("worker")
        .arg(&c.dir)
        .arg(worker)
        .status()
        .unwrap();
    assert!(status.success(), "scripts/cluster worker failed");
    let worker_dir = c.dir.join("workers").join(worker);
    let read = |path: std::path::PathBuf| std::fs::read_to_string(path).unwrap().trim().to_owned();
    let busybox = read(c.dir.join("busybox-image"));
    let worker_cost = NodeCost::Worker {
        cgroup: std::path::Path::new("/sys/fs/cgroup/cpuacct")
            .join(format!("sandlet-{}", read(worker_dir.join("id")))),
        holder: read(worker_dir.join("holder.pid")).parse().unwrap(),
    };
    Worker {
        name: worker,
        busybox,
        cost: worker_cost,
    }
}

/// Warm-up: the module is pulled and compiled once, busybox pulled.
async fn warm_up(bench: &Bench<'_>, worker: &Worker) {
    let Bench {
        api,
        timeline,
        node,
        image,
        compare,
        ..
    } = bench;
    let mut warm = vec![
        pod_object("warm", &node.name, image, &[]),
        container_pod_object("warm-worker", worker.name, &worker.busybox, &["true"]),
    ];
    warm.extend(
        compare
            .iter()
            .map(|(b, _)| pod_object("warm-b", &b.name, image, &[])),
    );
    let warm_names: Vec<String> = warm
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    create_all(api, warm, timeline, 2).await;
    wait_until(
        "warm-up",
        timeline,
        &warm_names,
        Duration::from_secs(60),
        |s| s.finished.is_some(),
    )
    .await;
    pods::clear(api).await;
}
