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

/// A pod for the container worker: `args` as the busybox image's command,
/// pinned by hostname, no toleration, a 1 s grace period (a shell as PID 1 ignores
/// SIGTERM; the default 30 s would only slow the clean-up between bursts).
fn container_pod_object(name: &str, node: &str, image: &str, args: &[&str]) -> Pod {
    let mut pod = pod_object(name, node, image, args);
    let spec = pod.spec.as_mut().expect("pod_object has a spec");
    spec.tolerations = None;
    spec.termination_grace_period_seconds = Some(1);
    pod
}

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

/// CPU time of the processes a burst involves, from /proc (in USER_HZ
/// ticks, 100 per second on Linux), and of the whole machine.
struct CpuProbe {
    processes: Vec<(String, u32)>,
}

struct CpuSample {
    at: Instant,
    /// Every process: its name and CPU ticks.
    everyone: HashMap<u32, (String, u64)>,
    /// The machine's busy and total ticks, all cores.
    busy: u64,
    total: u64,
}

impl CpuSample {
    fn ticks(&self, pid: u32) -> u64 {
        self.everyone.get(&pid).map_or(0, |t| t.1)
    }

    /// The share of the machine's time spent busy since `before`.
    fn busy_since(&self, before: &CpuSample) -> f64 {
        (self.busy - before.busy) as f64 / (self.total - before.total).max(1) as f64
    }
}

impl CpuProbe {
    /// The control plane's processes (found by their data directory on the
    /// command line), the node and this load generator.
    fn new(cluster_dir: &std::path::Path, nodes: &[(String, u32)]) -> CpuProbe {
        let dir = cluster_dir.to_string_lossy().into_owned();
        let mut processes = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            let program = cmdline.split(' ').next().unwrap_or_default();
            let name = program.rsplit('/').next().unwrap_or_default();
            if cmdline.contains(&dir) && (name == "etcd" || name.starts_with("kube-")) {
                processes.push((name.to_owned(), pid));
            }
        }
        processes.sort();
        processes.extend(nodes.iter().cloned());
        processes.push(("load generator".to_owned(), std::process::id()));
        CpuProbe { processes }
    }

    fn sample(&self) -> CpuSample {
        let mut everyone = HashMap::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            if let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() {
                everyone.insert(pid, process_ticks(pid));
            }
        }
        let stat = std::fs::read_to_string("/proc/stat").unwrap();
        let cpu: Vec<u64> = stat
            .lines()
            .next()
            .unwrap()
            .split_whitespace()
            .skip(1)
            .filter_map(|f| f.parse().ok())
            .collect();
        let idle = cpu[3] + cpu.get(4).copied().unwrap_or(0);
        let total: u64 = cpu.iter().take(8).sum();
        CpuSample {
            at: Instant::now(),
            everyone,
            busy: total - idle,
            total,
        }
    }

    /// One line: each process's CPU seconds between the samples, the
    /// busiest other process, and how busy the machine's cores were.
    fn describe(&self, before: &CpuSample, after: &CpuSample) -> String {
        let mut parts: Vec<String> = self
            .processes
            .iter()
            .map(|(name, pid)| {
                let ticks = after.ticks(*pid).saturating_sub(before.ticks(*pid));
                format!("{name} {:.2}", ticks as f64 / 100.0)
            })
            .collect();
        let ours: std::collections::HashSet<u32> =
            self.processes.iter().map(|(_, pid)| *pid).collect();
        let mut others: Vec<(u64, &str)> = after
            .everyone
            .iter()
            .filter(|(pid, _)| !ours.contains(pid))
            .map(|(pid, (name, ticks))| (ticks.saturating_sub(before.ticks(*pid)), name.as_str()))
            .collect();
        others.sort_unstable_by(|a, b| b.cmp(a));
        let rest: u64 = others.iter().map(|o| o.0).sum();
        parts.push(format!("others {:.2}", rest as f64 / 100.0));
        if let Some((ticks, name)) = others.first().filter(|o| o.0 > 0) {
            parts.push(format!("(most: {name} {:.2})", *ticks as f64 / 100.0));
        }
        format!(
            "CPU s: {}; machine {:.0} % busy over {:.2} s",
            parts.join(", "),
            after.busy_since(before) * 100.0,
            (after.at - before.at).as_secs_f64()
        )
    }
}

/// How fast this machine is at the moment: the time a fixed piece of work
/// takes (median of 5 on one thread, lower is faster; about 11.5 ms on an
/// idle machine here at its fastest). On a shared virtual
/// machine it varies between runs and within one; a slow burst with a
/// slow loop beside it says the machine, not the code, was slow.
fn machine_speed() -> Duration {
    let mut times: Vec<Duration> = (0..5)
        .map(|_| {
            let start = Instant::now();
            // Branchy, memory-bound work, as an API server's is: make,
            // sort and index 400,000 pseudo-random numbers.
            let mut x = 0x9E37_79B9_7F4A_7C15u64;
            let mut numbers: Vec<u64> = (0..400_000)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x
                })
                .collect();
            numbers.sort_unstable();
            let index: HashMap<u64, usize> = numbers
                .iter()
                .take(100_000)
                .enumerate()
                .map(|(i, n)| (*n, i))
                .collect();
            std::hint::black_box(index);
            start.elapsed()
        })
        .collect();
    times.sort();
    times[2]
}

/// Waits (up to 15 s) until the machine is quiet: under 25 % busy over
/// half a second, then 2 s more. What the last burst left behind (its pods'
/// deletion, a node's queued Events) is then done before the next burst
/// starts, and the scheduler's client rate limit is full again, so each
/// burst starts from the same place whoever had the one before.
async fn settle(probe: &CpuProbe) {
    if std::env::var("SANDLET_LOAD_SETTLE").as_deref() == Ok("0") {
        return;
    }
    let start = Instant::now();
    let mut before = probe.sample();
    while start.elapsed() < Duration::from_secs(15) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let after = probe.sample();
        if after.busy_since(&before) < 0.25 {
            // And the scheduler's API client has its whole burst again (100
            // requests, refilled at 50/s), so it binds every burst alike.
            tokio::time::sleep(Duration::from_secs(2)).await;
            return;
        }
        before = after;
    }
    println!("  (the machine did not settle under 25 % busy in 15 s)");
}

/// A process's name and CPU time (user + system, in USER_HZ ticks).
fn process_ticks(pid: u32) -> (String, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let name = stat
        .split_once('(')
        .and_then(|(_, rest)| rest.rsplit_once(')'))
        .map(|(name, _)| name.to_owned())
        .unwrap_or_default();
    // After the name: state, then fields 4...; utime and stime are fields
    // 14 and 15.
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |n: usize| {
        fields
            .get(n - 3)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (name, field(14) + field(15))
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

/// Where a burst goes: a node, the pods it gets, and how its own cost is
/// measured.
struct Target {
    node: String,
    what: String,
    pod: Box<dyn Fn(&str) -> Pod>,
    cost: Option<NodeCost>,
}

/// How a node's own CPU time and memory are read.
enum NodeCost {
    /// One process (sandlet).
    Process(u32),
    /// A container worker: the cpuacct cgroup holding its kubelet,
    /// containerd, shims and pods; its processes are those in the cgroup
    /// or in the worker's mount namespace.
    Worker {
        cgroup: std::path::PathBuf,
        holder: u32,
    },
}

impl NodeCost {
    /// CPU seconds used so far.
    fn cpu_seconds(&self) -> f64 {
        match self {
            NodeCost::Process(pid) => process_ticks(*pid).1 as f64 / 100.0,
            NodeCost::Worker { cgroup, .. } => {
                std::fs::read_to_string(cgroup.join("cpuacct.usage"))
                    .ok()
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .unwrap_or(0) as f64
                    / 1e9
            }
        }
    }

    /// The node's processes' proportional set size, KiB.
    fn memory_kib(&self) -> u64 {
        match self {
            NodeCost::Process(pid) => pss_kib(*pid),
            NodeCost::Worker { cgroup, holder } => {
                let Ok(ns) = std::fs::read_link(format!("/proc/{holder}/ns/mnt")) else {
                    return 0;
                };
                let name = cgroup.file_name().unwrap().to_string_lossy();
                let id = name.strip_prefix("sandlet-").unwrap_or(&name);
                cluster::worker_processes(&ns, id)
                    .into_iter()
                    .map(pss_kib)
                    .sum()
            }
        }
    }
}

/// A process's proportional set size (shared pages split among their
/// users), KiB; 0 if it is gone.
fn pss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// What one burst measured.
struct Burst {
    to_running: Vec<Duration>,
    created_to_running: Vec<Duration>,
    notes: String,
    /// The node's CPU seconds from the first create to the last pod seen
    /// running, and its memory growth per running pod (KiB), if measured.
    cpu: Option<f64>,
    memory_per_pod: Option<f64>,
}

/// Creates 100 pods named `{prefix}-N` for `target` at once and returns,
/// sorted, PodScheduled -> running and created -> running of each.
async fn burst(
    api: &Api<Pod>,
    timeline: &Timeline,
    probe: &CpuProbe,
    target: &Target,
    prefix: &str,
) -> Burst {
    let names: Vec<String> = (0..100).map(|i| format!("{prefix}-{i}")).collect();
    let pods = names.iter().map(|n| (target.pod)(n)).collect();
    settle(probe).await;
    let speed = machine_speed();
    let memory_before = target.cost.as_ref().map(NodeCost::memory_kib);
    let cpu_before = target.cost.as_ref().map(NodeCost::cpu_seconds);
    let before = probe.sample();
    create_all(api, pods, timeline, 100).await;
    wait_until(
        "100 pods running",
        timeline,
        &names,
        Duration::from_secs(300),
        |s| s.running.is_some(),
    )
    .await;
    let cpu = target
        .cost
        .as_ref()
        .zip(cpu_before)
        .map(|(cost, before)| cost.cpu_seconds() - before);
    let memory_per_pod = target
        .cost
        .as_ref()
        .zip(memory_before)
        .map(|(cost, before)| cost.memory_kib().saturating_sub(before) as f64 / 100.0);
    // What else the burst showed: the scheduler's pace, the machine's
    // speed and the CPU each process used.
    let mut notes = probe.describe(&before, &probe.sample());
    if let (Some(cpu), Some(memory)) = (cpu, memory_per_pod) {
        notes = format!(
            "node side: {cpu:.2} CPU s for the 100 pods, {memory:.0} KiB per running pod\n  {notes}"
        );
    }
    let (mut to_running, mut created_to_running) = (Vec::new(), Vec::new());
    {
        let t = timeline.lock().unwrap();
        // How fast the scheduler bound the burst: from the first create to
        // the 10th, 50th and last pod seen scheduled.
        let first = names.iter().filter_map(|n| t[n].created).min().unwrap();
        let mut bound: Vec<Duration> = names
            .iter()
            .filter_map(|n| t[n].scheduled)
            .map(|s| s.saturating_duration_since(first))
            .collect();
        bound.sort();
        if bound.len() == names.len() {
            notes = format!(
                "scheduled: 10th pod {}, 50th {}, last {} after the first create; machine speed: {} for the reference loop\n  {notes}",
                ms(bound[9]),
                ms(bound[49]),
                ms(bound[bound.len() - 1]),
                ms(speed)
            );
        }
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
    Burst {
        to_running,
        created_to_running,
        notes,
        cpu,
        memory_per_pod,
    }
}

fn report(what: &str, burst: &Burst) {
    let Burst {
        to_running,
        created_to_running,
        notes,
        ..
    } = burst;
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
    println!("  {notes}");
}

/// Token requests of the reference kubelet refused and retried (the
/// NodeRestriction moment after binding), since last read.
static TOKEN_RETRIES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn report_token_retries() {
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
                    tokio::time::sleep(sandlet_kubelet::lifecycle::config_retry_delay(
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

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// Entries (pod directories) under `dir`, and the files below them.
fn left_behind(dir: &std::path::Path) -> (usize, usize) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (0, 0);
    };
    let mut dirs = 0;
    let mut files = 0;
    for entry in entries.flatten() {
        dirs += 1;
        let mut stack = vec![entry.path()];
        while let Some(path) = stack.pop() {
            match std::fs::read_dir(&path) {
                Ok(children) => stack.extend(children.flatten().map(|c| c.path())),
                Err(_) => files += 1,
            }
        }
    }
    (dirs, files)
}

/// Part 4: waves of short pods, then the node against its idle baseline.
async fn soak(api: &Api<Pod>, timeline: &Timeline, node: &cluster::TestNode, image: &str) {
    let pid = node.pid();
    let total: usize = std::env::var("SANDLET_SOAK_PODS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    const WAVE: usize = 100;
    let wave = |label: String| {
        let names: Vec<String> = (0..WAVE).map(|i| format!("{label}-{i}")).collect();
        let pods: Vec<Pod> = names
            .iter()
            .map(|n| pod_object(n, &node.name, image, &[]))
            .collect();
        (names, pods)
    };
    let mut stuck = 0;
    let mut run_wave = async |label: String| {
        let (names, pods) = wave(label.clone());
        create_all(api, pods, timeline, 50).await;
        let start = Instant::now();
        loop {
            let done = {
                let t = timeline.lock().unwrap();
                names
                    .iter()
                    .filter(|n| t.get(*n).is_some_and(|s| s.finished.is_some()))
                    .count()
            };
            if done == names.len() {
                break;
            }
            if start.elapsed() > Duration::from_secs(120) {
                println!(
                    "soak: wave {label}: {} of {} pods not finished after 120 s",
                    names.len() - done,
                    names.len()
                );
                stuck += names.len() - done;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        clear(api).await;
        timeline.lock().unwrap().retain(|k, _| !names.contains(k));
    };
    let rss_start = rss_kib(pid);
    let fds_start = fd_count(pid);
    run_wave("soak-warm".to_owned()).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let rss_idle = rss_kib(pid);
    let fds_idle = fd_count(pid);
    let started = Instant::now();
    let mut peak = rss_idle;
    for w in 0..total / WAVE {
        run_wave(format!("soak-{w}")).await;
        peak = peak.max(rss_kib(pid));
        if (w + 1) % 10 == 0 {
            println!(
                "soak: {} pods in {:.0} s; node RSS {:.1} MiB, {} fds",
                (w + 1) * WAVE,
                started.elapsed().as_secs_f64(),
                rss_kib(pid) as f64 / 1024.0,
                fd_count(pid)
            );
        }
    }
    let took = started.elapsed();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let rss_after = rss_kib(pid);
    let fds_after = fd_count(pid);
    let (pod_dirs, pod_files) = left_behind(&node.state_dir.join("pods"));
    let (volume_dirs, volume_files) = left_behind(&node.runtime_dir.join("pods"));
    println!(
        "soak: {} pods in {:.1} s ({:.1} pods/s); stuck {stuck}",
        total / WAVE * WAVE,
        took.as_secs_f64(),
        (total / WAVE * WAVE) as f64 / took.as_secs_f64()
    );
    println!(
        "soak: node RSS {:.1} MiB at start, {:.1} MiB idle after the first wave, peak {:.1} MiB, {:.1} MiB 10 s after the last ({:+.1} % of idle; target within 10 %)",
        rss_start as f64 / 1024.0,
        rss_idle as f64 / 1024.0,
        peak as f64 / 1024.0,
        rss_after as f64 / 1024.0,
        (rss_after as f64 / rss_idle as f64 - 1.0) * 100.0
    );
    println!("soak: open fds {fds_start} at start, {fds_idle} idle, {fds_after} after");
    println!(
        "soak: left behind: {pod_dirs} pod directories ({pod_files} files) in the state directory, {volume_dirs} ({volume_files} files) in the runtime directory"
    );
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
            let _ = rustls::crypto::ring::default_provider().install_default();
            let kubeconfig = Kubeconfig::read_from(&c.kubeconfig).unwrap();
            let config =
                kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                    .await
                    .unwrap();
            let client = kube::Client::try_from(config).unwrap();
            let api: Api<Pod> = Api::namespaced(client, &ns);
            let timeline: Timeline = Arc::default();
            let watch = watch_timeline(api.clone(), timeline.clone());
            soak(&api, &timeline, &node, &image).await;
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
    let pid = node.pid();
    // The container worker, in the same control plane.
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

        // Warm-up: the module is pulled and compiled once, busybox pulled.
        let mut warm = vec![
            pod_object("warm", &node.name, &image, &[]),
            container_pod_object("warm-worker", worker, &busybox, &["true"]),
        ];
        warm.extend(compare.iter().map(|b| pod_object("warm-b", &b.name, &image, &[])));
        let warm_names: Vec<String> = warm.iter().filter_map(|p| p.metadata.name.clone()).collect();
        create_all(&api, warm, &timeline, 2).await;
        wait_until("warm-up", &timeline, &warm_names, Duration::from_secs(60), |s| s.finished.is_some()).await;
        clear(&api).await;
        let rss_idle = rss_kib(pid);

        // 1. 100 pods at once, each running for a while. A control plane
        // that has just started is slow for its first bursts, whoever runs
        // the pods: two bursts to the reference kubelet warm it up first
        // (reported, not counted; sandlet itself gets no warm-up beyond the
        // one pod above). Then rounds of the same burst to sandlet and to
        // the reference kubelet (token request + status, status only), in
        // turns, so that drift over the run touches all three alike.
        let mut node_pids = vec![("sandlet node".to_owned(), pid)];
        node_pids.extend(compare.iter().map(|b| ("sandlet node B".to_owned(), b.pid())));
        let probe = CpuProbe::new(&c.dir, &node_pids);
        let sandlet_pod = |node: String, image: String| -> Box<dyn Fn(&str) -> Pod> {
            Box::new(move |name| pod_object(name, &node, &image, &["--sleep", "20"]))
        };
        let mut references = Vec::new();
        for (floor, name) in [(Floor::TokenAndStatus, "floor-token"), (Floor::StatusOnly, "floor-status")] {
            // On threads and a runtime of its own, as a kubelet process
            // would be, not sharing this load generator's.
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let kubeconfig = c.node_kubeconfig(name);
            let thread = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
                runtime.block_on(async move {
                    tokio::select! {
                        () = reference_kubelet(kubeconfig, name, floor) => {}
                        _ = stopped => {}
                    }
                });
            });
            references.push((stop, thread));
            wait_for_ready_node(&client, name).await;
        }
        let floor_token = Target {
            node: "floor-token".to_owned(),
            what: "reference kubelet, token request + status".to_owned(),
            pod: sandlet_pod("floor-token".to_owned(), image.clone()),
            cost: None,
        };
        for warm_up in 1..=2 {
            let result = burst(&api, &timeline, &probe, &floor_token, &format!("warm-up-{warm_up}")).await;
            report(&format!("control plane warm-up {warm_up}: reference kubelet, token request + status"), &result);
            report_token_retries();
        }
        let rounds: usize = std::env::var("SANDLET_LOAD_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
        let mut targets = vec![Target {
            node: node.name.clone(),
            what: "sandlet".to_owned(),
            pod: sandlet_pod(node.name.clone(), image.clone()),
            cost: Some(NodeCost::Process(pid)),
        }];
        if let (Some(b), Some(args)) = (&compare, &compare_args) {
            targets.push(Target {
                node: b.name.clone(),
                what: format!("sandlet B ({args})"),
                pod: sandlet_pod(b.name.clone(), image.clone()),
                cost: Some(NodeCost::Process(b.pid())),
            });
        }
        targets.push(floor_token);
        targets.push(Target {
            node: "floor-status".to_owned(),
            what: "reference kubelet, status only".to_owned(),
            pod: sandlet_pod("floor-status".to_owned(), image.clone()),
            cost: None,
        });
        // Last in each round: the worker's clean-up after its burst (sandbox
        // tear-down) is the longest, and sandlet, not the reference, has
        // the burst after it.
        let busybox_for = busybox.clone();
        targets.push(Target {
            node: worker.to_owned(),
            what: "container worker (kubelet + containerd + runc)".to_owned(),
            pod: Box::new(move |name| container_pod_object(name, worker, &busybox_for, &["sleep", "20"])),
            cost: Some(worker_cost),
        });
        let mut all: Vec<Vec<Duration>> = vec![Vec::new(); targets.len()];
        let mut costs: Vec<(Vec<f64>, Vec<f64>)> = vec![(Vec::new(), Vec::new()); targets.len()];
        for round in 0..rounds {
            for (i, target) in targets.iter().enumerate() {
                let result = burst(&api, &timeline, &probe, target, &format!("r{round}-{i}")).await;
                report(&format!("round {}: {}", round + 1, target.what), &result);
                if target.node == "floor-token" {
                    report_token_retries();
                }
                costs[i].0.extend(result.cpu);
                costs[i].1.extend(result.memory_per_pod);
                all[i].extend(result.to_running);
            }
        }
        for (stop, thread) in references {
            let _ = stop.send(());
            thread.join().unwrap();
        }
        let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
        for name in ["floor-token", "floor-status"] {
            let _ = nodes.delete(name, &DeleteParams::default()).await;
        }
        println!("PodScheduled -> running, all {rounds} rounds together ({} pods each):", rounds * 100);
        let mean = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
        let mut medians = HashMap::new();
        let mut node_costs = HashMap::new();
        for (i, target) in targets.iter().enumerate() {
            all[i].sort();
            let median = percentile(&all[i], 0.5);
            medians.insert(target.node.clone(), median);
            let cost = match (mean(&costs[i].0), mean(&costs[i].1)) {
                (Some(cpu), Some(memory)) => {
                    node_costs.insert(target.node.clone(), (cpu, memory));
                    format!(", node CPU {cpu:.2} s per 100 pods, {memory:.0} KiB per running pod")
                }
                _ => String::new(),
            };
            println!(
                "  {:<48} median {}, p99 {}{cost}",
                target.what,
                ms(median),
                ms(percentile(&all[i], 0.99))
            );
        }
        let ratio = |a: &str, b: &str| {
            medians[a].as_secs_f64() / medians[b].as_secs_f64().max(1e-9)
        };
        println!(
            "  sandlet / container worker: median {:.3}x (target <= 0.333)",
            ratio(&node.name, worker)
        );
        if let (Some(s), Some(w)) = (node_costs.get(&node.name), node_costs.get(worker)) {
            println!(
                "  sandlet / container worker: CPU per pod {:.3}x (target <= 0.1), memory per running pod {:.3}x (target <= 0.05)",
                s.0 / w.0.max(1e-9),
                s.1 / w.1.max(1e-9)
            );
        }
        println!(
            "  sandlet / reference kubelet (token + status): median {:.3}x (target <= 1.1)",
            ratio(&node.name, "floor-token")
        );

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
