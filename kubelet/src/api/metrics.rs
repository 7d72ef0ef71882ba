//! `/metrics/resource`: the kubelet's resource metrics (Prometheus text),
//! which metrics-server scrapes from every node for `kubectl top` and the
//! HorizontalPodAutoscaler; and `/metrics`, the node's own counters (data
//! queries by decision and rule, for a data protection officer's
//! dashboard beside the audit log).
//!
//! This module owns the rendering and the node's own numbers. A container's
//! CPU is the time the runtime spent running its guest, and its working set
//! the guest's linear memory ([`sandlet_runtime::Usage`]); the node's are
//! those of the sandlet process (`/proc/self`), which runs every guest.
//! Only running containers are listed, as the kubelet lists them. It must
//! never show anything of what a guest computed or read: only time and
//! memory.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::pods::table::PodTable;

/// One running container's numbers.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ContainerSample {
    pub(crate) namespace: String,
    pub(crate) pod: String,
    pub(crate) container: String,
    pub(crate) cpu_seconds: f64,
    pub(crate) memory_bytes: u64,
    pub(crate) start_seconds: f64,
}

/// The node's own numbers; `None` where they cannot be read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct NodeSample {
    pub(crate) cpu_seconds: Option<f64>,
    pub(crate) memory_bytes: Option<u64>,
}

/// Clock ticks per second of `/proc/<pid>/stat` (USER_HZ, 100 on every
/// Linux architecture that sandlet builds for).
const USER_HZ: f64 = 100.0;

impl NodeSample {
    /// This process's CPU time and resident memory.
    pub(crate) fn of_this_process() -> NodeSample {
        let cpu_seconds = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|stat| {
                // Fields after the command name, which is in parentheses and
                // may contain spaces: state is field 3, utime 14, stime 15.
                let rest = stat.rsplit_once(')')?.1;
                let fields: Vec<&str> = rest.split_whitespace().collect();
                let utime: f64 = fields.get(11)?.parse().ok()?;
                let stime: f64 = fields.get(12)?.parse().ok()?;
                Some((utime + stime) / USER_HZ)
            });
        let memory_bytes = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|status| {
                let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
                let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
                Some(kib * 1024)
            });
        NodeSample {
            cpu_seconds,
            memory_bytes,
        }
    }
}

/// The running containers of every pod in `pods`.
pub(crate) fn containers(pods: &PodTable) -> Vec<ContainerSample> {
    let mut samples = Vec::new();
    for (namespace, pod, entry) in pods.all() {
        for (container, metered) in entry.running() {
            samples.push(ContainerSample {
                namespace: namespace.clone(),
                pod: pod.clone(),
                container,
                cpu_seconds: metered.usage.cpu().as_secs_f64(),
                memory_bytes: metered.usage.memory_bytes(),
                start_seconds: metered.started_at.as_millisecond() as f64 / 1000.0,
            });
        }
    }
    samples.sort_by(|a, b| {
        (&a.namespace, &a.pod, &a.container).cmp(&(&b.namespace, &b.pod, &b.container))
    });
    samples
}

/// A label value, escaped as the text format requires.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `{k="v",...}` for `pairs`.
fn labels(pairs: &[(&str, &str)]) -> String {
    let inner: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", label(v)))
        .collect();
    format!("{{{}}}", inner.join(","))
}

/// One metric family: its HELP and TYPE lines, then a line per sample
/// (labels, value), stamped with `stamp` where given.
fn family(
    out: &mut String,
    (name, kind, help): (&str, &str, &str),
    samples: impl IntoIterator<Item = (String, String)>,
    stamp: Option<i64>,
) {
    let _ = writeln!(out, "# HELP {name} [STABLE] {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, value) in samples {
        match stamp {
            Some(ms) => writeln!(out, "{name}{labels} {value} {ms}"),
            None => writeln!(out, "{name}{labels} {value}"),
        }
        .expect("writing to a String");
    }
}

/// The metrics in the Prometheus text format, each sample stamped with
/// `now_ms` (milliseconds since the epoch), as the kubelet stamps them.
pub(crate) fn render(node: NodeSample, containers: &[ContainerSample], now_ms: i64) -> String {
    let mut out = String::new();
    let at = Some(now_ms);
    let per_container = |value: fn(&ContainerSample) -> String| {
        containers.iter().map(move |c| {
            let labels = labels(&[
                ("container", &c.container),
                ("namespace", &c.namespace),
                ("pod", &c.pod),
            ]);
            (labels, value(c))
        })
    };
    family(
        &mut out,
        (
            "container_cpu_usage_seconds_total",
            "counter",
            "Cumulative cpu time consumed by the container in core-seconds",
        ),
        per_container(|c| c.cpu_seconds.to_string()),
        at,
    );
    family(
        &mut out,
        (
            "container_memory_working_set_bytes",
            "gauge",
            "Current working set of the container in bytes",
        ),
        per_container(|c| c.memory_bytes.to_string()),
        at,
    );
    family(
        &mut out,
        (
            "container_start_time_seconds",
            "gauge",
            "Start time of the container since unix epoch in seconds",
        ),
        per_container(|c| c.start_seconds.to_string()),
        at,
    );
    // The node's families only where its numbers could be read.
    if let Some(cpu) = node.cpu_seconds {
        family(
            &mut out,
            (
                "node_cpu_usage_seconds_total",
                "counter",
                "Cumulative cpu time consumed by the node in core-seconds",
            ),
            [(String::new(), cpu.to_string())],
            at,
        );
    }
    if let Some(memory) = node.memory_bytes {
        family(
            &mut out,
            (
                "node_memory_working_set_bytes",
                "gauge",
                "Current working set of the node in bytes",
            ),
            [(String::new(), memory.to_string())],
            at,
        );
    }
    // Pods: the sums of their running containers.
    let mut pods: BTreeMap<(&str, &str), (f64, u64)> = BTreeMap::new();
    for c in containers {
        let sum = pods.entry((&c.namespace, &c.pod)).or_default();
        sum.0 += c.cpu_seconds;
        sum.1 += c.memory_bytes;
    }
    let per_pod = |value: fn(&(f64, u64)) -> String| {
        pods.iter().map(move |((namespace, pod), sums)| {
            (
                labels(&[("namespace", namespace), ("pod", pod)]),
                value(sums),
            )
        })
    };
    family(
        &mut out,
        (
            "pod_cpu_usage_seconds_total",
            "counter",
            "Cumulative cpu time consumed by the pod in core-seconds",
        ),
        per_pod(|(cpu, _)| cpu.to_string()),
        at,
    );
    family(
        &mut out,
        (
            "pod_memory_working_set_bytes",
            "gauge",
            "Current working set of the pod in bytes",
        ),
        per_pod(|(_, memory)| memory.to_string()),
        at,
    );
    let error = u8::from(node.cpu_seconds.is_none() || node.memory_bytes.is_none());
    family(
        &mut out,
        (
            "resource_scrape_error",
            "gauge",
            "1 if there was an error while getting container metrics, 0 otherwise",
        ),
        [(String::new(), error.to_string())],
        None,
    );
    out
}

/// `/metrics`: `sandlet_data_queries_total` by decision (`answered`,
/// `denied`, ...) and the rule that refused (`minGroupSize`, `audit`, ...;
/// empty when none is named).
pub(crate) fn render_queries(counts: &[(sandlet_data::Decision, Option<String>, u64)]) -> String {
    let mut out = String::new();
    family(
        &mut out,
        (
            "sandlet_data_queries_total",
            "counter",
            "Data queries since the node started, by decision and the policy rule that refused them",
        ),
        counts.iter().map(|(decision, rule, n)| {
            (
                labels(&[
                    ("decision", decision.as_str()),
                    ("rule", rule.as_deref().unwrap_or("")),
                ]),
                n.to_string(),
            )
        }),
        None,
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(pod: &str, container: &str, cpu: f64, memory: u64) -> ContainerSample {
        ContainerSample {
            namespace: "research".to_owned(),
            pod: pod.to_owned(),
            container: container.to_owned(),
            cpu_seconds: cpu,
            memory_bytes: memory,
            start_seconds: 1700000000.5,
        }
    }

    #[test]
    fn containers_pods_and_the_node_are_rendered_as_the_kubelet_does() {
        let text = render(
            NodeSample {
                cpu_seconds: Some(12.5),
                memory_bytes: Some(64 << 20),
            },
            &[
                sample("p", "a", 0.25, 1 << 20),
                sample("p", "b", 0.5, 2 << 20),
                sample("q", "main", 1.0, 65536),
            ],
            1700000001000,
        );
        for line in [
            "# TYPE container_cpu_usage_seconds_total counter",
            "container_cpu_usage_seconds_total{container=\"a\",namespace=\"research\",pod=\"p\"} 0.25 1700000001000",
            "container_memory_working_set_bytes{container=\"main\",namespace=\"research\",pod=\"q\"} 65536 1700000001000",
            "container_start_time_seconds{container=\"b\",namespace=\"research\",pod=\"p\"} 1700000000.5 1700000001000",
            "node_cpu_usage_seconds_total 12.5 1700000001000",
            "node_memory_working_set_bytes 67108864 1700000001000",
            "pod_cpu_usage_seconds_total{namespace=\"research\",pod=\"p\"} 0.75 1700000001000",
            "pod_memory_working_set_bytes{namespace=\"research\",pod=\"p\"} 3145728 1700000001000",
            "resource_scrape_error 0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line:?} missing in:\n{text}"
            );
        }
        // Every sample line belongs to a family declared before it.
        let mut declared = Vec::new();
        for l in text.lines() {
            if let Some(rest) = l.strip_prefix("# TYPE ") {
                declared.push(rest.split(' ').next().unwrap().to_owned());
            } else if !l.starts_with('#') {
                let name = l.split(['{', ' ']).next().unwrap();
                assert!(declared.iter().any(|d| d == name), "{l}");
            }
        }
    }

    #[test]
    fn unreadable_node_numbers_are_a_scrape_error_and_labels_are_escaped() {
        let text = render(
            NodeSample {
                cpu_seconds: None,
                memory_bytes: Some(1),
            },
            &[sample("we\"ird\\", "main", 0.0, 0)],
            1,
        );
        assert!(text.contains("resource_scrape_error 1"), "{text}");
        assert!(!text.contains("node_cpu_usage_seconds_total"), "{text}");
        assert!(text.contains(r#"pod="we\"ird\\""#), "{text}");
    }

    #[test]
    fn this_process_has_cpu_time_and_memory() {
        let node = NodeSample::of_this_process();
        assert!(node.cpu_seconds.is_some_and(|c| c >= 0.0), "{node:?}");
        assert!(node.memory_bytes.is_some_and(|m| m > 0), "{node:?}");
    }

    #[test]
    fn query_counters_render_by_decision_and_rule() {
        use sandlet_data::Decision;
        let text = render_queries(&[
            (Decision::Answered, None, 3),
            (Decision::Denied, Some("minGroupSize".to_owned()), 2),
        ]);
        assert!(
            text.contains("# TYPE sandlet_data_queries_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("sandlet_data_queries_total{decision=\"answered\",rule=\"\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "sandlet_data_queries_total{decision=\"denied\",rule=\"minGroupSize\"} 2\n"
            ),
            "{text}"
        );
    }
}
