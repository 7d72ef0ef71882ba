//! End to end on a mixed cluster: a real container worker (`scripts/cluster
//! worker`: the kubelet, containerd and runc, a device plugin offering two
//! `nvidia.com/gpu`) beside a sandlet node, in a control plane of its own so
//! that the other tests' unpinned pods never meet a node that would run them.
//!
//! The worker changes machine-wide state (kernel settings, an address on
//! `lo`) that only the last worker's `down` restores, so the test of `down`
//! runs alone: tests that use a worker hold [`WORKERS`] for reading, and the
//! shared mixed cluster goes down when the last of them is done.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, Weak};
use std::time::Duration;

use serde_json::Value;

use crate::cluster::{Cluster, TestNode, push, wait_for, worker_processes};
use crate::fixtures::{combine_binary, guests, repo_root, run_ok};
use crate::registry::{RegistrySetup, TestRegistry};

const LONG: Duration = Duration::from_secs(90);

/// Held for reading by every test with a container worker running, for
/// writing by the test that checks what the last worker's `down` restores.
pub static WORKERS: RwLock<()> = RwLock::new(());

pub fn workers_shared() -> RwLockReadGuard<'static, ()> {
    WORKERS.read().unwrap_or_else(|e| e.into_inner())
}

/// The shared mixed cluster.
struct Mixed {
    cluster: Cluster,
    /// The container worker's node name.
    worker: String,
    /// `DIR/busybox-image`.
    busybox: String,
    node: TestNode,
    hello: String,
    _registry: TestRegistry,
}

const WORKER: &str = "gpu-worker";
const GPUS: usize = 2;

fn run_script(script: &str, args: &[&str]) -> String {
    run_ok(Command::new(repo_root().join("scripts").join(script)).args(args))
}

fn add_worker(cluster: &Cluster, name: &str, gpus: usize) {
    let dir = cluster.dir.to_str().unwrap();
    run_script(
        "cluster",
        &["worker", dir, name, "--gpus", &gpus.to_string()],
    );
}

impl Mixed {
    fn start() -> Mixed {
        let cluster = Cluster::up();
        add_worker(&cluster, WORKER, GPUS);
        let busybox = std::fs::read_to_string(cluster.dir.join("busybox-image"))
            .unwrap()
            .trim()
            .to_owned();
        let registry = TestRegistry::start(RegistrySetup::default());
        let hello = push(&registry, &guests().hello, "algorithms/hello:v1");
        let node = TestNode::start_in(&cluster, "mixed-sandlet", &registry, &[]);
        Mixed {
            cluster,
            worker: WORKER.to_owned(),
            busybox,
            node,
            hello,
            _registry: registry,
        }
    }
}

impl Drop for Mixed {
    fn drop(&mut self) {
        self.cluster.down();
    }
}

/// The shared mixed cluster, started by the first test that needs it and
/// stopped when the last one still using it is done. Keep the guard for as
/// long as the cluster (drop order: the cluster first).
fn mixed() -> (RwLockReadGuard<'static, ()>, Arc<Mixed>) {
    static SHARED: Mutex<Weak<Mixed>> = Mutex::new(Weak::new());
    let guard = workers_shared();
    let mut slot = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(mixed) = slot.upgrade() {
        return (guard, mixed);
    }
    let mixed = Arc::new(Mixed::start());
    *slot = Arc::downgrade(&mixed);
    (guard, mixed)
}

fn spec_node(pod: &Value) -> &str {
    pod["spec"]["nodeName"].as_str().unwrap_or("")
}

/// A plain container pod: busybox running `script`, no tolerations.
fn busybox_pod(name: &str, image: &str, script: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: {image}
    command: [sh, -c, {script}]
"#,
        script = serde_json::to_string(script).unwrap()
    )
}

/// `deploy/container-job.yaml` with its fields filled in, as the demo does.
fn hardened_job(name: &str, namespace: &str, image: &str, args: &str, gpus: usize) -> String {
    let template = std::fs::read_to_string(repo_root().join("deploy/container-job.yaml")).unwrap();
    template
        .replace("${NAME}", name)
        .replace("${NAMESPACE}", namespace)
        .replace("${IMAGE}", image)
        .replace("${ARGS}", args)
        .replace(
            "nvidia.com/gpu: \"1\"",
            &format!("nvidia.com/gpu: \"{gpus}\""),
        )
}

/// The first pod of Job `job`, once it exists.
fn job_pod(cluster: &Cluster, ns: &str, job: &str) -> Value {
    wait_for(&format!("a pod of job {job}"), LONG, || {
        let out = cluster.kubectl(&[
            "get",
            "pods",
            "-n",
            ns,
            "-l",
            &format!("job-name={job}"),
            "-o",
            "json",
        ]);
        let list: Value = serde_json::from_str(&out).unwrap();
        list["items"].as_array()?.first().cloned()
    })
}

#[test]
fn mixed_the_worker_runs_a_busybox_pod_to_completion_and_nothing_leaves_its_bridge() {
    let (_workers, m) = mixed();
    let c = &m.cluster;
    let ns = c.namespace("busybox");
    // What a pod might try to reach: the host's network, the node's own
    // address (the kubelet), and the API server on the host's loopback.
    let node_ip = c.get("", "node", &m.worker).unwrap()["status"]["addresses"][0]["address"]
        .as_str()
        .unwrap()
        .to_owned();
    let api_port = std::fs::read_to_string(c.dir.join("server"))
        .unwrap()
        .trim()
        .rsplit(':')
        .next()
        .unwrap()
        .to_owned();
    let script = format!(
        "echo hello from $(hostname); cat /etc/resolv.conf; ip -4 route; \
         for target in '192.0.2.1 80' '{node_ip} 10250' '127.0.0.1 {api_port}'; do \
         echo \"$target: $(nc -w 3 $target </dev/null 2>&1)\"; done; echo done"
    );
    c.apply(&ns, &busybox_pod("bb", &m.busybox, &script));
    let pod = c.wait_phase(&ns, "bb", "Succeeded", LONG);
    // No toleration and no selector: the container worker, never sandlet.
    assert_eq!(spec_node(&pod), m.worker);
    let status = &pod["status"]["containerStatuses"][0];
    assert_eq!(status["state"]["terminated"]["exitCode"], 0);
    let image_id = status["imageID"].as_str().unwrap();
    let registry = m.busybox.split('/').next().unwrap();
    assert!(
        image_id.starts_with(&format!("{registry}/library/busybox@sha256:")),
        "pulled from the loopback registry: {image_id}"
    );
    // Pods sit on the documentation range, with no gateway.
    let ip = pod["status"]["podIP"].as_str().unwrap();
    assert!(ip.starts_with("198.51.100."), "{ip}");

    let logs = c.kubectl(&["logs", "-n", &ns, "bb"]);
    assert!(logs.contains("hello from bb"), "{logs}");
    assert!(logs.contains("nameserver 127.0.0.1"), "{logs}");
    let host_resolver = std::fs::read_to_string("/etc/resolv.conf").unwrap();
    for line in host_resolver
        .lines()
        .filter(|l| l.starts_with("nameserver"))
    {
        assert!(
            !logs.contains(line),
            "the host's resolver reached the pod: {logs}"
        );
    }
    let routes: Vec<&str> = logs.lines().filter(|l| l.contains(" dev ")).collect();
    assert_eq!(routes.len(), 1, "{logs}");
    assert!(routes[0].starts_with("198.51.100.0/24 dev eth0"), "{logs}");
    assert!(!logs.contains("default"), "a default route: {logs}");
    // The host's network and the node's address have no route; the pod's
    // loopback is its own, so the API server is not there.
    for (target, error) in [
        ("192.0.2.1 80", "Network is unreachable"),
        (&format!("{node_ip} 10250"), "Network is unreachable"),
        (&format!("127.0.0.1 {api_port}"), "Connection refused"),
    ] {
        let line = logs
            .lines()
            .find(|l| l.starts_with(&format!("{target}:")))
            .unwrap_or_else(|| panic!("no attempt on {target}: {logs}"));
        assert!(line.contains(error), "{line}");
    }
    assert!(logs.trim_end().ends_with("done"), "{logs}");
}

#[test]
fn mixed_a_hardened_gpu_job_lands_on_the_worker_and_sees_its_device_allocation() {
    let (_workers, m) = mixed();
    let c = &m.cluster;
    let ns = c.namespace("gpu-job");
    let node = c.get("", "node", &m.worker).unwrap();
    assert_eq!(
        node["status"]["allocatable"]["nvidia.com/gpu"],
        GPUS.to_string(),
        "the device plugin's GPUs: {}",
        node["status"]
    );
    // The central step of the federated mean, as a static binary in an
    // image of its own.
    let rootfs = tempfile::tempdir().unwrap();
    std::fs::copy(
        combine_binary(),
        rootfs.path().join("federated-mean-combine"),
    )
    .unwrap();
    let image = run_script(
        "worker",
        &[
            "push",
            c.dir.to_str().unwrap(),
            "algorithms/federated-mean-combine",
            "test",
            rootfs.path().to_str().unwrap(),
            "--entrypoint",
            "/federated-mean-combine",
            "--user",
            "65534:65534",
        ],
    );
    let input = r#"{"combine": [{"sum": 10.5, "count": 3}, {"sum": 4.5, "count": 2}]}"#;
    c.apply(&ns, &hardened_job("combine", &ns, image.trim(), input, 1));
    let pod = job_pod(c, &ns, "combine");
    let name = pod["metadata"]["name"].as_str().unwrap().to_owned();
    let pod = c.wait_phase(&ns, &name, "Succeeded", LONG);
    assert_eq!(spec_node(&pod), m.worker);
    let message = pod["status"]["containerStatuses"][0]["state"]["terminated"]["message"]
        .as_str()
        .unwrap();
    let result: Value = serde_json::from_str(message).unwrap();
    assert_eq!(result["mean"], 3.0);
    assert_eq!(result["count"], 5);
    // One of the plugin's devices, handed to this container.
    let logs = c.kubectl(&["logs", "-n", &ns, &name]);
    let devices = logs
        .lines()
        .find_map(|l| l.strip_prefix("federated-mean-combine: GPUs allocated: "))
        .unwrap_or_else(|| panic!("no allocation in {logs}"));
    let known: Vec<String> = (0..GPUS).map(|i| format!("GPU-{}-{i}", m.worker)).collect();
    assert!(
        known.iter().any(|d| d == devices),
        "{devices} not in {known:?}"
    );
    // ExtendedResourceToleration: the GPU request alone tolerates a GPU
    // pool's taint.
    let tolerations = pod["spec"]["tolerations"].as_array().unwrap();
    assert!(
        tolerations
            .iter()
            .any(|t| t["key"] == "nvidia.com/gpu" && t["operator"] == "Exists"),
        "{tolerations:?}"
    );
    // The template's hardening reached the pod as written.
    let sc = &pod["spec"]["containers"][0]["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["capabilities"]["drop"][0], "ALL");
    assert_eq!(
        pod["spec"]["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert_eq!(pod["spec"]["automountServiceAccountToken"], false);
}

#[test]
fn mixed_a_job_asking_for_more_gpus_than_exist_stays_pending_with_failed_scheduling() {
    let (_workers, m) = mixed();
    let c = &m.cluster;
    let ns = c.namespace("too-many-gpus");
    c.apply(
        &ns,
        &hardened_job("greedy", &ns, &m.busybox, "true", GPUS + 1),
    );
    let pod = job_pod(c, &ns, "greedy");
    let name = pod["metadata"]["name"].as_str().unwrap().to_owned();
    let event = wait_for("a FailedScheduling event", LONG, || {
        c.events(&ns, &name)
            .into_iter()
            .find(|e| e.starts_with("FailedScheduling"))
    });
    assert!(event.contains("Insufficient nvidia.com/gpu"), "{event}");
    std::thread::sleep(Duration::from_secs(3));
    let pod = c.pod(&ns, &name);
    assert_eq!(pod["status"]["phase"], "Pending");
    assert!(pod["spec"]["nodeName"].is_null(), "bound: {pod}");
}

#[test]
fn mixed_runtime_class_sandlet_routes_pods_to_sandlet_and_no_other_pod_lands_there() {
    let (_workers, m) = mixed();
    let c = &m.cluster;
    let ns = c.namespace("routing");
    // No tolerations, no selector: the RuntimeClass supplies both.
    let wasm = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: wasm}}\nspec:\n  runtimeClassName: sandlet\n  \
         restartPolicy: Never\n  containers: [{{name: main, image: {}}}]\n",
        m.hello
    );
    c.apply(&ns, &wasm);
    let pod = c.wait_phase(&ns, "wasm", "Succeeded", LONG);
    assert_eq!(spec_node(&pod), m.node.name);
    assert_eq!(pod["spec"]["nodeSelector"]["type"], "sandlet");
    assert!(
        c.kubectl(&["logs", "-n", &ns, "wasm"])
            .contains("hello from wasm")
    );

    // Several plain pods: every one goes to the container worker.
    for i in 0..3 {
        c.apply(&ns, &busybox_pod(&format!("plain-{i}"), &m.busybox, "true"));
    }
    for i in 0..3 {
        let pod = c.wait_phase(&ns, &format!("plain-{i}"), "Succeeded", LONG);
        assert_eq!(spec_node(&pod), m.worker);
    }
    // A pod that asks for sandlet and for another kind of node at once is
    // refused when it is created (RuntimeClass admission).
    let conflicting = wasm.replace("name: wasm}", "name: conflicting}").replace(
        "  runtimeClassName: sandlet\n",
        "  runtimeClassName: sandlet\n  nodeSelector: {type: container}\n",
    );
    let out = c.kubectl_raw(&["apply", "-n", &ns, "-f", "-"], Some(&conflicting));
    assert!(
        !out.status.success(),
        "a conflicting node selector was accepted"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("conflict"), "{stderr}");
}

#[test]
fn mixed_a_routed_namespace_sends_unedited_wasm_pods_to_sandlet() {
    let (_workers, m) = mixed();
    let c = &m.cluster;
    let ns = c.namespace("routed");
    // README "Routing a namespace": what a federated platform's task
    // namespace gets once, so that the Jobs it creates need no edits.
    c.kubectl(&[
        "annotate",
        "namespace",
        &ns,
        "scheduler.alpha.kubernetes.io/node-selector=type=sandlet",
        r#"scheduler.alpha.kubernetes.io/defaultTolerations=[{"key":"kubernetes.io/arch","operator":"Equal","value":"wasm32-wasi","effect":"NoSchedule"},{"key":"kubernetes.io/arch","operator":"Equal","value":"wasm32-wasi","effect":"NoExecute"}]"#,
    ]);
    let unedited = format!(
        "apiVersion: batch/v1\nkind: Job\nmetadata: {{name: task}}\nspec:\n  backoffLimit: 0\n  template:\n    spec:\n      \
         restartPolicy: Never\n      containers: [{{name: main, image: {}, args: [routed]}}]\n",
        m.hello
    );
    c.apply(&ns, &unedited);
    let pod = job_pod(c, &ns, "task");
    let name = pod["metadata"]["name"].as_str().unwrap().to_owned();
    let pod = c.wait_phase(&ns, &name, "Succeeded", LONG);
    assert_eq!(spec_node(&pod), m.node.name);
    assert!(
        c.kubectl(&["logs", "-n", &ns, &name])
            .contains("arg: routed")
    );
    let escape = busybox_pod("escape", &m.busybox, "true").replace(
        "  restartPolicy: Never\n",
        &format!(
            "  restartPolicy: Never\n  nodeSelector: {{kubernetes.io/hostname: {}}}\n",
            m.worker
        ),
    );
    c.apply(&ns, &escape);
    // The namespace's selector is added to the pod's own: a pod of this
    // namespace cannot select its way onto the container worker.
    let pod = c.pod(&ns, "escape");
    assert_eq!(pod["spec"]["nodeSelector"]["type"], "sandlet", "{pod}");
    std::thread::sleep(Duration::from_secs(3));
    assert!(c.pod(&ns, "escape")["spec"]["nodeName"].is_null());
}

#[test]
fn mixed_a_pod_of_another_runtime_class_is_refused_by_sandlet_with_a_reason() {
    let (_workers, m) = mixed();
    let c = &m.cluster;
    let ns = c.namespace("other-class");
    c.apply(
        "default",
        "apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata: {name: runc}\nhandler: runc\n",
    );
    // Bound directly, as a controller with nodeName would, past the
    // scheduler.
    let pod = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: runc-pod}}\nspec:\n  runtimeClassName: runc\n  nodeName: {}\n  \
         tolerations: [{{key: kubernetes.io/arch, operator: Exists}}]\n  restartPolicy: Never\n  \
         containers: [{{name: main, image: {}}}]\n",
        m.node.name, m.hello
    );
    c.apply(&ns, &pod);
    let pod = c.wait_phase(&ns, "runc-pod", "Failed", LONG);
    assert_eq!(pod["status"]["reason"], "UnsupportedRuntimeClass");
    let message = pod["status"]["message"].as_str().unwrap();
    assert!(message.contains("\"runc\""), "{message}");
    wait_for("the UnsupportedRuntimeClass event", LONG, || {
        c.events(&ns, "runc-pod")
            .iter()
            .any(|e| e.starts_with("UnsupportedRuntimeClass"))
            .then_some(())
    });
}

/// Kernel settings the kubelet, bridges or CNI might change, as `key value`.
fn kernel_settings() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut roots: Vec<PathBuf> = vec!["/proc/sys/vm".into(), "/proc/sys/net/bridge".into()];
    roots.extend(
        [
            "kernel/panic",
            "kernel/panic_on_oops",
            "kernel/keys/root_maxkeys",
            "kernel/keys/root_maxbytes",
            "net/ipv4/ip_forward",
            "net/ipv4/conf/all/forwarding",
            "net/ipv4/conf/all/route_localnet",
            "net/ipv6/conf/all/forwarding",
        ]
        .map(|k| Path::new("/proc/sys").join(k)),
    );
    fn walk(path: &Path, out: &mut Vec<(String, String)>) {
        if path.is_dir() {
            let mut entries: Vec<_> = std::fs::read_dir(path).unwrap().flatten().collect();
            entries.sort_by_key(|e| e.path());
            for e in entries {
                walk(&e.path(), out);
            }
        } else if let Ok(value) = std::fs::read_to_string(path) {
            out.push((path.display().to_string(), value.trim().to_owned()));
        }
    }
    for root in roots {
        walk(&root, &mut out);
    }
    out
}

fn command_text(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// iptables rules without the dump's time-stamped comments.
fn iptables_rules() -> String {
    command_text("iptables-save", &[])
        .lines()
        .filter(|l| !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
}

fn cmdline(pid: &str) -> Option<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .ok()
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
}

#[test]
fn mixed_down_leaves_nothing_of_the_worker_running_mounted_or_changed() {
    // Alone: the kernel settings come back only with the last worker.
    let _alone = WORKERS.write().unwrap_or_else(|e| e.into_inner());
    let settings = kernel_settings();
    let rules = iptables_rules();
    let links = command_text("ip", &["-o", "link", "show"]);
    let lo = command_text("ip", &["-o", "addr", "show", "dev", "lo"]);
    assert!(
        !Path::new("/run/sandlet-workers").exists(),
        "a worker of another run is still up"
    );

    let cluster = Cluster::up();
    let dir = cluster.dir.clone();
    add_worker(&cluster, "short-lived", 1);
    let busybox = std::fs::read_to_string(dir.join("busybox-image")).unwrap();
    let ns = cluster.namespace("down");
    // A running pod: a sandbox, a shim, overlay and namespace mounts.
    cluster.apply(&ns, &busybox_pod("sleeper", busybox.trim(), "sleep 3600"));
    cluster.wait_phase(&ns, "sleeper", "Running", LONG);

    let w = dir.join("workers/short-lived");
    let id = std::fs::read_to_string(w.join("id"))
        .unwrap()
        .trim()
        .to_owned();
    let holder = std::fs::read_to_string(w.join("holder.pid"))
        .unwrap()
        .trim()
        .to_owned();
    let ns_inode = std::fs::read_link(format!("/proc/{holder}/ns/mnt")).unwrap();
    let in_worker = || -> Vec<String> {
        worker_processes(&ns_inode, &id)
            .iter()
            .map(u32::to_string)
            .collect()
    };
    let before = in_worker();
    let names: Vec<String> = before.iter().filter_map(|p| cmdline(p)).collect();
    for expected in [
        "containerd --config",
        "kubelet --config",
        "containerd-shim-runc-v2",
        "/pause",
        "sleep 3600",
    ] {
        assert!(
            names.iter().any(|n| n.contains(expected)),
            "no {expected} in {names:#?}"
        );
    }
    // The first worker saved the kernel settings as they were.
    let saved = std::fs::read_to_string("/run/sandlet-workers/sysctls").unwrap();
    for line in saved.lines() {
        let (key, value) = line.split_once(' ').unwrap();
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        let before = settings.iter().find(|(k, _)| *k == path);
        assert_eq!(
            before.map(|(_, v)| v.as_str()),
            Some(value),
            "{key} saved wrongly"
        );
    }
    let node_ip = std::fs::read_to_string(w.join("node-ip"))
        .unwrap()
        .trim()
        .to_owned();
    assert!(command_text("ip", &["-o", "addr", "show", "dev", "lo"]).contains(&node_ip));

    // The worker alone, then everything (which stops it again: a second
    // `down` must find nothing to do and still succeed).
    run_script("worker", &["down", dir.to_str().unwrap(), "short-lived"]);
    cluster.down();

    let left: Vec<String> = in_worker()
        .into_iter()
        .filter_map(|p| cmdline(&p))
        .collect();
    assert!(left.is_empty(), "still running: {left:#?}");
    let dir_text = dir.display().to_string();
    let strays: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| cmdline(&e.file_name().to_string_lossy()))
        .filter(|c| c.contains(&dir_text))
        // The harness's own guard, which runs `down` again when this test
        // process ends (then a no-op) and removes the directory.
        .filter(|c| !c.contains("watchdog"))
        .collect();
    assert!(
        strays.is_empty(),
        "processes of {dir_text} left: {strays:#?}"
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&dir_text), "mounts left: {mounts}");
    for hierarchy in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let cgroup = hierarchy.path().join(format!("sandlet-{id}"));
        assert!(!cgroup.exists(), "{} left", cgroup.display());
    }
    assert!(
        !command_text("ip", &["-o", "link", "show"]).contains(&format!("slw{id}")),
        "the pod bridge is left"
    );
    assert_eq!(
        command_text("ip", &["-o", "link", "show"]).lines().count(),
        links.lines().count()
    );
    assert_eq!(command_text("ip", &["-o", "addr", "show", "dev", "lo"]), lo);
    assert_eq!(kernel_settings(), settings, "kernel settings not restored");
    assert_eq!(iptables_rules(), rules, "iptables rules changed");
    assert!(
        !Path::new("/run/sandlet-workers").exists(),
        "machine-wide state left"
    );
}

#[test]
fn mixed_bad_worker_requests_are_refused_naming_the_problem_and_start_nothing() {
    let empty = tempfile::tempdir().unwrap();
    let dir = empty.path().to_str().unwrap();
    for (args, problem) in [
        (vec!["/no/such/dir", "w1"], "is not a directory"),
        (vec![dir, "Bad_Name"], "is not a lowercase DNS label"),
        (vec![dir, "w1", "--gpus", "lots"], "--gpus wants a number"),
        (vec![dir, "w1", "--gpus", "65"], "--gpus wants a number"),
        (vec![dir, "w1", "--gpu", "2"], "unknown option --gpu"),
        (vec![dir, "w1"], "has no running cluster"),
    ] {
        let mut command = vec!["worker"];
        command.extend(&args);
        let out = Command::new(repo_root().join("scripts/cluster"))
            .args(&command)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(problem), "{args:?}: {stderr}");
    }
    // Nothing was made: no worker directory, no registry.
    assert_eq!(std::fs::read_dir(empty.path()).unwrap().count(), 0);
}
