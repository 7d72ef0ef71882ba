//! Parts 2 and 3, the node at volume: the throughput of 1,000 short pods,
//! and the node's resident memory with 500 pods running at once.

use std::time::{Duration, Instant};

use crate::Bench;
use crate::measure::rss_kib;
use crate::pods::{clear, create_all, pod_object, wait_until};

/// Part 2: 1,000 short pods.
pub async fn throughput(bench: &Bench<'_>) {
    let Bench {
        api,
        timeline,
        node,
        image,
        ..
    } = bench;
    let names: Vec<String> = (0..1000).map(|i| format!("short-{i}")).collect();
    let pods = names
        .iter()
        .map(|n| pod_object(n, &node.name, image, &[]))
        .collect();
    let started = Instant::now();
    create_all(api, pods, timeline, 50).await;
    wait_until(
        "1000 pods done",
        timeline,
        &names,
        Duration::from_secs(900),
        |s| s.finished.is_some(),
    )
    .await;
    let took = started.elapsed();
    println!(
        "1,000 short pods: {:.1} s from first create to last Succeeded, {:.1} pods/s",
        took.as_secs_f64(),
        1000.0 / took.as_secs_f64()
    );
    clear(api).await;
}

/// Part 3: 500 pods running at once, against the node's resident memory
/// when idle (`rss_idle`, KiB).
pub async fn resident_memory(bench: &Bench<'_>, rss_idle: u64) {
    let Bench {
        api,
        timeline,
        node,
        image,
        ..
    } = bench;
    let names: Vec<String> = (0..500).map(|i| format!("resident-{i}")).collect();
    let pods = names
        .iter()
        .map(|n| pod_object(n, &node.name, image, &["--sleep", "600"]))
        .collect();
    create_all(api, pods, timeline, 50).await;
    wait_until(
        "500 pods running",
        timeline,
        &names,
        Duration::from_secs(600),
        |s| s.running.is_some(),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_busy = rss_kib(node.pid());
    println!(
        "node resident memory: {:.1} MiB idle, {:.1} MiB with 500 pods running ({:.1} KiB per pod)",
        rss_idle as f64 / 1024.0,
        rss_busy as f64 / 1024.0,
        (rss_busy.saturating_sub(rss_idle)) as f64 / 500.0
    );
    clear(api).await;
}
