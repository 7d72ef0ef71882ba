//! One burst: 100 pods created at once for one node, timed from the watch
//! until all run, with what the node and the machine spent meanwhile, and
//! its report.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;

use crate::measure::{CpuProbe, NodeCost, machine_speed, settle};
use crate::pods::{Timeline, clear, create_all, wait_until};

/// Where a burst goes: a node, the pods it gets, and how its own cost is
/// measured.
pub struct Target {
    pub node: String,
    pub what: String,
    pub pod: Box<dyn Fn(&str) -> Pod>,
    pub cost: Option<NodeCost>,
}

/// What one burst measured.
pub struct Burst {
    pub to_running: Vec<Duration>,
    pub created_to_running: Vec<Duration>,
    pub notes: String,
    /// The node's CPU seconds from the first create to the last pod seen
    /// running, and its memory growth per running pod (KiB), if measured.
    pub cpu: Option<f64>,
    pub memory_per_pod: Option<f64>,
}

/// Creates 100 pods named `{prefix}-N` for `target` at once and returns,
/// sorted, PodScheduled -> running and created -> running of each.
pub async fn burst(
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

pub fn report(what: &str, burst: &Burst) {
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

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}
