//! Part 1, start latency: rounds of 100-pod bursts, in turns, to sandlet
//! (and a second sandlet node if asked), to the two reference kubelets and
//! to the container worker, after two bursts that warm the control plane
//! up; then all rounds together per node and the ratios against the
//! targets.

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;

use crate::burst::{Target, burst, ms, percentile, report};
use crate::measure::{CpuProbe, NodeCost};
use crate::pods::{container_pod_object, pod_object};
use crate::reference::{References, report_token_retries};
use crate::{Bench, Worker};

/// Each target's PodScheduled -> running times over all rounds, and its
/// node's CPU seconds per burst and memory per running pod (KiB).
struct Rounds {
    all: Vec<Vec<Duration>>,
    costs: Vec<(Vec<f64>, Vec<f64>)>,
}

/// Part 1: start latency, every target's bursts and the summary.
pub async fn start_latency(bench: &Bench<'_>, worker: Worker) {
    // 1. 100 pods at once, each running for a while. A control plane
    // that has just started is slow for its first bursts, whoever runs
    // the pods: two bursts to the reference kubelet warm it up first
    // (reported, not counted; sandlet itself gets no warm-up beyond the
    // one pod of `warm_up`). Then rounds of the same burst to sandlet and to
    // the reference kubelet (token request + status, status only), in
    // turns, so that drift over the run touches all three alike.
    let mut node_pids = vec![("sandlet node".to_owned(), bench.node.pid())];
    node_pids.extend(
        bench
            .compare
            .iter()
            .map(|(b, _)| ("sandlet node B".to_owned(), b.pid())),
    );
    let probe = CpuProbe::new(&bench.cluster.dir, &node_pids);
    let references = References::start(bench.cluster, &bench.client).await;
    let floor_token = Target {
        node: "floor-token".to_owned(),
        what: "reference kubelet, token request + status".to_owned(),
        pod: sandlet_pod("floor-token".to_owned(), bench.image.to_owned()),
        cost: None,
    };
    warm_up_control_plane(bench, &probe, &floor_token).await;
    let rounds: usize = std::env::var("SANDLET_LOAD_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let worker_name = worker.name;
    let targets = targets(bench, floor_token, worker);
    let measured = run_rounds(bench, &probe, &targets, rounds).await;
    references.stop(&bench.client).await;
    summarise(bench, &targets, measured, rounds, worker_name);
}

/// Sandlet's pod for a burst (the reference kubelets get the same): the
/// module, running for 20 s.
fn sandlet_pod(node: String, image: String) -> Box<dyn Fn(&str) -> Pod> {
    Box::new(move |name| pod_object(name, &node, &image, &["--sleep", "20"]))
}

/// Two bursts to the reference kubelet (token request + status), reported
/// and not counted.
async fn warm_up_control_plane(bench: &Bench<'_>, probe: &CpuProbe, floor_token: &Target) {
    for warm_up in 1..=2 {
        let result = burst(
            &bench.api,
            &bench.timeline,
            probe,
            floor_token,
            &format!("warm-up-{warm_up}"),
        )
        .await;
        report(
            &format!("control plane warm-up {warm_up}: reference kubelet, token request + status"),
            &result,
        );
        report_token_retries();
    }
}

/// Every round's targets, in the order of their turns.
fn targets(bench: &Bench<'_>, floor_token: Target, worker: Worker) -> Vec<Target> {
    let node = bench.node;
    let image = bench.image;
    let mut targets = vec![Target {
        node: node.name.clone(),
        what: "sandlet".to_owned(),
        pod: sandlet_pod(node.name.clone(), image.to_owned()),
        cost: Some(NodeCost::Process(node.pid())),
    }];
    if let Some((b, args)) = bench.compare {
        targets.push(Target {
            node: b.name.clone(),
            what: format!("sandlet B ({args})"),
            pod: sandlet_pod(b.name.clone(), image.to_owned()),
            cost: Some(NodeCost::Process(b.pid())),
        });
    }
    targets.push(floor_token);
    targets.push(Target {
        node: "floor-status".to_owned(),
        what: "reference kubelet, status only".to_owned(),
        pod: sandlet_pod("floor-status".to_owned(), image.to_owned()),
        cost: None,
    });
    // Last in each round: the worker's clean-up after its burst (sandbox
    // tear-down) is the longest, and sandlet, not the reference, has
    // the burst after it.
    let Worker {
        name: worker,
        busybox: busybox_for,
        cost: worker_cost,
    } = worker;
    targets.push(Target {
        node: worker.to_owned(),
        what: "container worker (kubelet + containerd + runc)".to_owned(),
        pod: Box::new(move |name| {
            container_pod_object(name, worker, &busybox_for, &["sleep", "20"])
        }),
        cost: Some(worker_cost),
    });
    targets
}

/// `rounds` rounds of one burst to each target in turn, each reported.
async fn run_rounds(
    bench: &Bench<'_>,
    probe: &CpuProbe,
    targets: &[Target],
    rounds: usize,
) -> Rounds {
    let mut all: Vec<Vec<Duration>> = vec![Vec::new(); targets.len()];
    let mut costs: Vec<(Vec<f64>, Vec<f64>)> = vec![(Vec::new(), Vec::new()); targets.len()];
    for round in 0..rounds {
        for (i, target) in targets.iter().enumerate() {
            let result = burst(
                &bench.api,
                &bench.timeline,
                probe,
                target,
                &format!("r{round}-{i}"),
            )
            .await;
            report(&format!("round {}: {}", round + 1, target.what), &result);
            if target.node == "floor-token" {
                report_token_retries();
            }
            costs[i].0.extend(result.cpu);
            costs[i].1.extend(result.memory_per_pod);
            all[i].extend(result.to_running);
        }
    }
    Rounds { all, costs }
}

/// All rounds together per target, and sandlet against the container
/// worker and the reference kubelet.
fn summarise(bench: &Bench<'_>, targets: &[Target], measured: Rounds, rounds: usize, worker: &str) {
    let node = bench.node;
    let Rounds { mut all, costs } = measured;
    println!(
        "PodScheduled -> running, all {rounds} rounds together ({} pods each):",
        rounds * 100
    );
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
    let ratio = |a: &str, b: &str| medians[a].as_secs_f64() / medians[b].as_secs_f64().max(1e-9);
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
}
