//! Faults around a running node, each on a real control plane, with the
//! same three checks every time: no pod is lost, none runs twice (its
//! runs are counted by the guest itself, in a host directory: `hello
//! --append`), and every status converges to the truth afterwards.
//!
//! These tests stop parts of a control plane, so they run on one of their
//! own (not the shared one of the other `kube_` tests), one fault at a
//! time. Each prints how long statuses took to converge once the fault
//! ended (the target in docs/developer/benchmarks.md is 10 s).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cluster::{Cluster, TestNode, push, wait_for};
use crate::fixtures::{guests, repo_root, run_ok};
use crate::registry::{RegistrySetup, TestRegistry};

const LONG: Duration = Duration::from_secs(90);

/// The control plane these tests break, and the lock that lets one break
/// it at a time.
fn fault_cluster() -> (MutexGuard<'static, ()>, &'static Cluster) {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let guard = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    (guard, CLUSTER.get_or_init(Cluster::up))
}

/// `scripts/cluster stop|start DIR COMPONENT`.
fn component(c: &Cluster, action: &str, name: &str) {
    run_ok(
        std::process::Command::new(repo_root().join("scripts/cluster"))
            .arg(action)
            .arg(&c.dir)
            .arg(name),
    );
}

/// Restarts the controller-manager when dropped: after an API server or
/// etcd outage its informers back off for up to half a minute, which the
/// next fault test (waiting on its namespace's ServiceAccount) would
/// otherwise pay.
struct FreshControllers<'a>(&'a Cluster);

impl Drop for FreshControllers<'_> {
    fn drop(&mut self) {
        component(self.0, "stop", "kube-controller-manager");
        component(self.0, "start", "kube-controller-manager");
    }
}

/// A host directory where each pod's guest appends a line per run.
struct Runs(tempfile::TempDir);

impl Runs {
    fn new() -> Runs {
        Runs(tempfile::tempdir().unwrap())
    }

    fn of(&self, pod: &str) -> usize {
        std::fs::read_to_string(self.0.path().join(pod))
            .map(|t| t.lines().count())
            .unwrap_or(0)
    }

    fn started(&self) -> usize {
        std::fs::read_dir(self.0.path()).unwrap().count()
    }
}

/// A pod that counts its runs in `runs`, then sleeps `sleep` seconds.
fn counted_pod(name: &str, node: &str, image: &str, runs: &Runs, sleep: u32) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 5
  nodeSelector:
    kubernetes.io/hostname: {node}
  tolerations:
  - {{key: kubernetes.io/arch, operator: Equal, value: wasm32-wasi}}
  - {{key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 2}}
  - {{key: node.kubernetes.io/not-ready, operator: Exists, effect: NoExecute, tolerationSeconds: 2}}
  containers:
  - name: main
    image: {image}
    args: ["--append", "/runs/{name}", "--sleep", "{sleep}"]
    volumeMounts:
    - {{name: runs, mountPath: /runs}}
  volumes:
  - name: runs
    hostPath: {{path: {runs}}}
"#,
        runs = runs.0.path().display()
    )
}

/// Every pod of `namespace`, by name.
fn pods(c: &Cluster, namespace: &str) -> Vec<Value> {
    let list: Value =
        serde_json::from_str(&c.kubectl(&["get", "pods", "-n", namespace, "-o", "json"])).unwrap();
    list["items"].as_array().unwrap().clone()
}

/// The pod called `name` among `all`; a pod that is not there was lost.
fn named<'a>(all: &'a [Value], name: &str) -> &'a Value {
    all.iter()
        .find(|p| p["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("pod {name} was lost"))
}

/// The terminated state of a pod's container, if it has one.
fn terminated(pod: &Value) -> Option<&Value> {
    let state = &pod["status"]["containerStatuses"][0]["state"]["terminated"];
    (!state.is_null()).then_some(state)
}

/// The three checks: every pod in `names` exists, ran exactly once, and
/// its status has converged to the end of that run (Succeeded, exit 0).
/// Returns how long convergence took from `since`.
fn converged(
    c: &Cluster,
    namespace: &str,
    names: &[String],
    runs: &Runs,
    since: Instant,
) -> Duration {
    wait_for("every pod's status to converge", LONG, || {
        let all = pods(c, namespace);
        let done = names.iter().all(|name| {
            let pod = named(&all, name);
            let phase = pod["status"]["phase"].as_str().unwrap_or("");
            let code = terminated(pod).and_then(|t| t["exitCode"].as_i64());
            phase == "Succeeded" && code == Some(0)
        });
        done.then_some(())
    });
    let took = since.elapsed();
    for name in names {
        assert_eq!(runs.of(name), 1, "pod {name} ran {} times", runs.of(name));
    }
    took
}

fn node_ready(c: &Cluster, name: &str) -> bool {
    c.get("", "node", name).is_some_and(|node| {
        node["status"]["conditions"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
    })
}

/// A pod created after the fault runs to the end: the node took it.
fn takes_new_pods(c: &Cluster, namespace: &str, node: &str, image: &str, runs: &Runs) {
    c.apply(namespace, &counted_pod("after", node, image, runs, 0));
    c.wait_phase(namespace, "after", "Succeeded", LONG);
    assert_eq!(runs.of("after"), 1);
}

#[test]
fn kube_fault_the_api_server_stopped_for_30_s_while_pods_start_run_and_finish() {
    let (_one, c) = fault_cluster();
    let registry = TestRegistry::start(RegistrySetup::default());
    let image = push(&registry, &guests().hello, "faults/hello:v1");
    let node = TestNode::start_in(c, "fault-api", &registry, &[]);
    let ns = c.namespace("fault-api");
    let runs = Runs::new();
    // Three finish during the outage, three after it; two more are created
    // just before it and may start only while it lasts.
    let mut names = Vec::new();
    for (i, sleep) in [10, 10, 10, 45, 45, 45].into_iter().enumerate() {
        let name = format!("p{i}");
        c.apply(&ns, &counted_pod(&name, &node.name, &image, &runs, sleep));
        names.push(name);
    }
    wait_for("six guests running", LONG, || {
        (runs.started() == 6).then_some(())
    });
    for name in ["late-0", "late-1"] {
        c.apply(&ns, &counted_pod(name, &node.name, &image, &runs, 5));
        names.push(name.to_owned());
    }
    wait_for("the late pods bound", LONG, || {
        pods(c, &ns)
            .iter()
            .all(|p| p["spec"]["nodeName"].is_string())
            .then_some(())
    });
    component(c, "stop", "kube-apiserver");
    let stopped = Instant::now();
    // The guests run on meanwhile (the first three finish), and the node
    // keeps going.
    std::thread::sleep(Duration::from_secs(30));
    assert!(runs.started() >= 6);
    component(c, "start", "kube-apiserver");
    let back = Instant::now();
    let _fresh = FreshControllers(c);
    let took = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        converged(c, &ns, &names, &runs, back)
    }))
    .unwrap_or_else(|_| {
        for pod in pods(c, &ns) {
            eprintln!("{}: {}", pod["metadata"]["name"], pod["status"]);
        }
        panic!("not converged; the node's log: {}", node.log_text());
    });
    eprintln!(
        "fault api-server: down {:.1?}; statuses converged {took:.1?} after it returned",
        back - stopped
    );
    wait_for("the node Ready", LONG, || {
        node_ready(c, &node.name).then_some(())
    });
    takes_new_pods(c, &ns, &node.name, &image, &runs);
}

#[test]
fn kube_fault_etcd_restarted_under_a_burst_of_pods() {
    let (_one, c) = fault_cluster();
    let registry = TestRegistry::start(RegistrySetup::default());
    let image = push(&registry, &guests().hello, "faults/hello:v1");
    let node = TestNode::start_in(c, "fault-etcd", &registry, &[]);
    let ns = c.namespace("fault-etcd");
    let runs = Runs::new();
    let names: Vec<String> = (0..20).map(|i| format!("burst-{i}")).collect();
    let manifest: String = names
        .iter()
        .map(|name| counted_pod(name, &node.name, &image, &runs, 1))
        .collect::<Vec<_>>()
        .join("---\n");
    c.apply(&ns, &manifest);
    // etcd goes away while the burst starts and reports.
    wait_for("the burst to start", LONG, || {
        (runs.started() >= 3).then_some(())
    });
    component(c, "stop", "etcd");
    std::thread::sleep(Duration::from_secs(5));
    component(c, "start", "etcd");
    let back = Instant::now();
    let _fresh = FreshControllers(c);
    let took = converged(c, &ns, &names, &runs, back);
    eprintln!("fault etcd: statuses converged {took:.1?} after etcd returned");
    wait_for("the node Ready", LONG, || {
        node_ready(c, &node.name).then_some(())
    });
    takes_new_pods(c, &ns, &node.name, &image, &runs);
}

#[test]
fn kube_fault_sandlet_killed_mid_burst_and_restarted() {
    let (_one, c) = fault_cluster();
    let registry = TestRegistry::start(RegistrySetup::default());
    let image = push(&registry, &guests().hello, "faults/hello:v1");
    let mut node = TestNode::start_in(c, "fault-kill", &registry, &[]);
    let ns = c.namespace("fault-kill");
    let runs = Runs::new();
    let names: Vec<String> = (0..20).map(|i| format!("burst-{i}")).collect();
    let manifest: String = names
        .iter()
        .map(|name| counted_pod(name, &node.name, &image, &runs, 3))
        .collect::<Vec<_>>()
        .join("---\n");
    c.apply(&ns, &manifest);
    wait_for("the burst to start", LONG, || {
        (runs.started() >= 5).then_some(())
    });
    node.kill();
    let killed_at = Instant::now();
    // Runs that had begun and not ended died with the process.
    let begun: Vec<String> = names.iter().filter(|n| runs.of(n) > 0).cloned().collect();
    node.start_again();
    let back = Instant::now();
    // Every pod ends: a run the kill ended is not run again (restartPolicy
    // Never) and ends Failed, 137, saying why; every other pod runs once
    // and succeeds.
    let killed: Vec<String> = wait_for("every pod's status to converge", LONG, || {
        let all = pods(c, &ns);
        let mut killed = Vec::new();
        for name in &names {
            let pod = named(&all, name);
            match (pod["status"]["phase"].as_str(), terminated(pod)) {
                (Some("Failed"), Some(t)) if t["exitCode"] == 137 => {
                    let message = t["message"].to_string();
                    assert!(message.contains("sandlet restarted"), "{name}: {message}");
                    killed.push(name.clone());
                }
                (Some("Succeeded"), Some(t)) if t["exitCode"] == 0 => {}
                (Some("Failed"), _) => panic!("pod {name} failed: {:#}", pod["status"]),
                _ => return None,
            }
        }
        Some(killed)
    });
    let took = back.elapsed();
    for name in &names {
        let ran = runs.of(name);
        if killed.contains(name) {
            // Killed as it began (before its first line) or while running.
            assert!(ran <= 1, "pod {name} ran {ran} times");
        } else {
            assert_eq!(ran, 1, "pod {name} ran {ran} times");
        }
    }
    assert!(
        killed.iter().all(|k| begun.contains(k) || runs.of(k) == 0),
        "only runs under way were killed: {killed:?}, begun {begun:?}"
    );
    assert!(!killed.is_empty(), "the kill was meant to land mid-burst");
    eprintln!(
        "fault sandlet SIGKILL: {} of 20 had begun, {} ended killed; down {:.1?}; statuses converged {took:.1?} after the restart",
        begun.len(),
        killed.len(),
        back - killed_at
    );
    takes_new_pods(c, &ns, &node.name, &image, &runs);
}

/// A TCP proxy the node reaches the API server through, which the test
/// can cut (every connection closed, new ones closed at once) and heal.
struct Link {
    port: u16,
    cut: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Link {
    fn to(target: String) -> Link {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (is_cut, all) = (cut.clone(), open.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if is_cut.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                let mut list = all.lock().unwrap();
                list.push(client.try_clone().unwrap());
                list.push(server.try_clone().unwrap());
                drop(list);
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16 * 1024];
                        while let Ok(n) = from.read(&mut buf) {
                            if n == 0 || to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(Shutdown::Both);
                        let _ = from.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        Link { port, cut, open }
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for stream in self.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    fn heal(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

/// `kubeconfig` with its server replaced by the link's address.
fn through(kubeconfig: &Path, link: &Link, dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(kubeconfig).unwrap();
    let rewritten: String = text
        .lines()
        .map(|line| match line.trim_start().strip_prefix("server: ") {
            Some(_) => format!("    server: https://127.0.0.1:{}", link.port),
            None => line.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    let path = dir.join("through-link.kubeconfig");
    std::fs::write(&path, rewritten).unwrap();
    path
}

fn api_address(c: &Cluster) -> String {
    std::fs::read_to_string(c.dir.join("server"))
        .unwrap()
        .trim()
        .trim_start_matches("https://")
        .to_owned()
}

#[test]
fn kube_fault_the_node_away_past_the_grace_period_has_its_pods_evicted_and_cleans_up() {
    let (_one, c) = fault_cluster();
    let registry = TestRegistry::start(RegistrySetup::default());
    let image = push(&registry, &guests().hello, "faults/hello:v1");
    let link = Link::to(api_address(c));
    let scratch = tempfile::tempdir().unwrap();
    let kubeconfig = through(&c.node_kubeconfig("fault-away"), &link, scratch.path());
    let node = TestNode::start_with_kubeconfig(c, "fault-away", &registry, &[], kubeconfig);
    // A healthy neighbour: with every node of the zone unreachable, the
    // node lifecycle controller assumes a network fault and evicts nothing.
    let _peer = TestNode::start_in(c, "fault-away-peer", &registry, &[]);
    let ns = c.namespace("fault-away");
    let runs = Runs::new();
    let names: Vec<String> = (0..4).map(|i| format!("away-{i}")).collect();
    for name in &names {
        c.apply(&ns, &counted_pod(name, &node.name, &image, &runs, 600));
    }
    wait_for("four guests running", LONG, || {
        (runs.started() == 4).then_some(())
    });
    wait_for("the pods Running", LONG, || {
        pods(c, &ns)
            .iter()
            .all(|p| p["status"]["phase"] == "Running")
            .then_some(())
    });
    let uids: Vec<String> = pods(c, &ns)
        .iter()
        .map(|p| p["metadata"]["uid"].as_str().unwrap().to_owned())
        .collect();

    // Cut off: the node lifecycle controller marks the node unreachable
    // after its grace period and evicts the pods (they tolerate that for
    // 2 s), which stay Terminating while the node cannot confirm.
    link.cut();
    let cut_at = Instant::now();
    wait_for("the node marked not Ready", LONG, || {
        (!node_ready(c, &node.name)).then_some(())
    });
    wait_for("every pod evicted (Terminating)", LONG, || {
        pods(c, &ns)
            .iter()
            .all(|p| p["metadata"]["deletionTimestamp"].is_string())
            .then_some(())
    });
    let away = cut_at.elapsed();
    link.heal();
    let back = Instant::now();

    // Back: the node stops what was evicted, cleans up and confirms; the
    // pods go, and each ran once.
    wait_for("the evicted pods to be gone", LONG, || {
        pods(c, &ns).is_empty().then_some(())
    });
    let took = back.elapsed();
    for name in &names {
        assert_eq!(runs.of(name), 1, "pod {name} ran {} times", runs.of(name));
    }
    wait_for("the evicted pods' directories removed", LONG, || {
        uids.iter()
            .all(|uid| !node.state_dir.join("pods").join(uid).exists())
            .then_some(())
    });
    wait_for("the node Ready", LONG, || {
        node_ready(c, &node.name).then_some(())
    });
    eprintln!(
        "fault node away: cut {away:.1?} until every pod was evicted; evictions confirmed {took:.1?} after the link returned"
    );
    takes_new_pods(c, &ns, &node.name, &image, &runs);
}

#[test]
fn kube_fault_the_node_object_deleted_while_pods_run() {
    let (_one, c) = fault_cluster();
    let registry = TestRegistry::start(RegistrySetup::default());
    let image = push(&registry, &guests().hello, "faults/hello:v1");
    let node = TestNode::start_in(c, "fault-deleted", &registry, &[]);
    let ns = c.namespace("fault-deleted");
    let runs = Runs::new();
    let names: Vec<String> = (0..3).map(|i| format!("orphan-{i}")).collect();
    for name in &names {
        c.apply(&ns, &counted_pod(name, &node.name, &image, &runs, 25));
    }
    wait_for("three guests running", LONG, || {
        (runs.started() == 3).then_some(())
    });
    let old_uid = c.get("", "node", &node.name).unwrap()["metadata"]["uid"].clone();
    c.kubectl(&["delete", "node", &node.name]);
    let deleted = Instant::now();
    // It registers again (a new Node, a new UID), Ready, with its labels.
    let new = wait_for("the node registered again", LONG, || {
        c.get("", "node", &node.name)
            .filter(|n| n["metadata"]["uid"] != old_uid)
    });
    let registered = deleted.elapsed();
    assert_eq!(new["metadata"]["labels"]["type"], "sandlet");
    wait_for("the node Ready", LONG, || {
        node_ready(c, &node.name).then_some(())
    });
    // Its pods were not lost and finish as they would have.
    let took = converged(c, &ns, &names, &runs, deleted);
    eprintln!(
        "fault Node deleted: registered again {registered:.1?} after the deletion; pods converged {took:.1?} after it"
    );
    let lease = c.get("kube-node-lease", "lease", &node.name).unwrap();
    assert_eq!(
        lease["metadata"]["ownerReferences"][0]["uid"], new["metadata"]["uid"],
        "the Lease belongs to the new Node"
    );
    takes_new_pods(c, &ns, &node.name, &image, &runs);
}

#[test]
fn kube_fault_the_registry_down_during_a_pull_then_back() {
    let (_one, c) = fault_cluster();
    let mut registry = TestRegistry::start(RegistrySetup::default());
    let image = push(&registry, &guests().hello, "faults/hello:v1");
    let node = TestNode::start_in(c, "fault-registry", &registry, &[]);
    let ns = c.namespace("fault-registry");
    let runs = Runs::new();
    registry.stop();
    c.apply(&ns, &counted_pod("pull", &node.name, &image, &runs, 0));
    let waiting = wait_for("the pull to back off", LONG, || {
        let pod = c.pod(&ns, "pull");
        let reason = pod["status"]["containerStatuses"][0]["state"]["waiting"]["reason"]
            .as_str()?
            .to_owned();
        (reason == "ImagePullBackOff" || reason == "ErrImagePull").then_some(pod)
    });
    let message = waiting["status"]["containerStatuses"][0]["state"]["waiting"]["message"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert!(message.contains(&registry.addr), "{message}");
    assert_eq!(runs.of("pull"), 0);
    registry.start_again();
    let back = Instant::now();
    let took = converged(c, &ns, &["pull".to_owned()], &runs, back);
    eprintln!("fault registry down: the pod ran {took:.1?} after the registry returned");
    let events = c.events(&ns, "pull").join("\n");
    assert!(events.contains("Failed"), "{events}");
    assert!(events.contains("Pulled"), "{events}");
}

#[test]
fn kube_fault_a_postgresql_dataset_stopped_during_queries_then_back() {
    // This breaks only a PostgreSQL server of its own: the shared cluster.
    let c = crate::cluster::cluster();
    let pg = crate::postgres::Postgres::private();
    let data = tempfile::tempdir().unwrap();
    let patients = crate::fixtures::write_patients(data.path(), "patients", 400, 11);
    pg.create_database("faults");
    pg.load_csv(
        "faults",
        "patients",
        "id integer, age integer, sex text, bmi double precision, ssn text",
        &data.path().join("patients.csv"),
        true,
    );
    let config = data.path().join("station.yaml");
    std::fs::write(
        &config,
        format!(
            "datasets:\n  - name: patients\n    source: {{ postgres: {{ url: \"{}\", table: patients }} }}\n    policy:\n      allowedColumns: [age, sex, bmi]\n      allowedNamespaces: [fault-pg]\n",
            pg.url("faults")
        ),
    )
    .unwrap();
    let registry = TestRegistry::start(RegistrySetup::default());
    let image = push(
        &registry,
        &guests().federated_mean,
        "faults/federated-mean:v1",
    );
    let node = TestNode::start_in(
        c,
        "fault-pg",
        &registry,
        &["--config", config.to_str().unwrap()],
    );
    let ns = c.namespace("fault-pg");
    let pod = |name: &str| {
        crate::cluster::with_datasets(
            &crate::cluster::wasm_pod(
                name,
                &node.name,
                &image,
                &[r#"{"dataset": "patients", "column": "bmi"}"#],
                "Never",
            ),
            "patients",
        )
    };
    let sum: f64 = patients.bmis.iter().sum();
    let answered = |pod: &Value| {
        let message = terminated(pod).unwrap()["message"]
            .as_str()
            .unwrap()
            .to_owned();
        let result: Value = serde_json::from_str(&message).unwrap();
        assert_eq!(result["count"], 400);
        crate::fixtures::assert_close(result["sum"].as_f64().unwrap(), sum);
    };
    c.apply(&ns, &pod("before"));
    answered(&c.wait_phase(&ns, "before", "Succeeded", LONG));

    // A burst of queries, and the server stopped while they run.
    let names: Vec<String> = (0..12).map(|i| format!("during-{i}")).collect();
    let manifest = names
        .iter()
        .map(|n| pod(n))
        .collect::<Vec<_>>()
        .join("---\n");
    c.apply(&ns, &manifest);
    pg.stop();
    // Every pod ends, with the right answer or a refusal that says what
    // happened; none is lost and the node goes on.
    let ended = wait_for("every pod to end", LONG, || {
        let all = pods(c, &ns);
        let ended: Vec<Value> = names
            .iter()
            .map(|n| named(&all, n).clone())
            .filter(|p| matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed")))
            .collect();
        (ended.len() == names.len()).then_some(ended)
    });
    let mut failed = 0;
    for pod in &ended {
        if pod["status"]["phase"] == "Succeeded" {
            answered(pod);
        } else {
            failed += 1;
            let message = terminated(pod).unwrap()["message"].as_str().unwrap_or("");
            // Told that the dataset is unavailable, not that the query is
            // wrong in some unnamed way.
            assert!(
                message.starts_with("invalid: dataset patients is unavailable on this station"),
                "{}: {message}",
                pod["metadata"]["name"]
            );
            assert!(
                !message.contains(crate::postgres::READER_PASSWORD),
                "{message}"
            );
        }
    }
    assert!(failed > 0, "the server was meant to stop under the burst");
    // Each ran once: one audit record per pod (answered or not).
    let records = crate::local::audit::records(&node.state_dir);
    for name in &names {
        let count = records.iter().filter(|r| r["pod"] == name.as_str()).count();
        assert!(count <= 1, "pod {name} queried {count} times");
    }

    // Back: the next query is answered, and the record verifies.
    pg.start_again();
    let back = Instant::now();
    c.apply(&ns, &pod("after"));
    answered(&c.wait_phase(&ns, "after", "Succeeded", LONG));
    eprintln!(
        "fault PostgreSQL stopped: {failed} of 12 queries refused while it was down; a query answered {:.1?} after it returned",
        back.elapsed()
    );
    let records = crate::local::audit::records(&node.state_dir);
    assert_eq!(
        crate::local::audit::verified_count(&node.state_dir),
        records.len() as u64
    );
}

/// Writes `dir/filler` until the file system is full; returns its size.
fn fill(dir: &Path) -> u64 {
    let mut file = std::fs::File::create(dir.join("filler")).unwrap();
    let chunk = vec![0u8; 256 * 1024];
    let mut written = 0u64;
    loop {
        match file.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) if e.raw_os_error() == Some(28) => break,
            Err(e) => panic!("filling {}: {e}", dir.display()),
        }
    }
    let _ = file.sync_all();
    written
}

#[test]
fn kube_fault_the_state_directory_full_then_space_again() {
    let c = crate::cluster::cluster();
    let registry = TestRegistry::start(RegistrySetup::default());
    let hello = push(&registry, &guests().hello, "disk/hello:v1");
    // A module the node has not pulled yet, needed once the disk is full.
    let other = push(&registry, &guests().hello_p1, "disk/other:v1");
    let disk = crate::fixtures::SmallDisk::mount("48m");
    let node = TestNode::start_with_state_in(c, "fault-disk", &registry, &[], disk.dir.path());
    let ns = c.namespace("fault-disk");
    let runs = Runs::new();
    c.apply(&ns, &counted_pod("running", &node.name, &hello, &runs, 15));
    c.wait_phase(&ns, "running", "Running", LONG);

    let filled = fill(disk.dir.path());
    assert!(filled > 0);
    // A new pod cannot get its module: it waits, saying why.
    c.apply(&ns, &counted_pod("new", &node.name, &other, &runs, 0));
    let waiting = wait_for("the new pod to wait for space", LONG, || {
        let pod = c.pod(&ns, "new");
        let waiting = pod["status"]["containerStatuses"][0]["state"]["waiting"].clone();
        let reason = waiting["reason"].as_str()?.to_owned();
        (reason == "ErrImagePull" || reason == "ImagePullBackOff").then_some(waiting)
    });
    let message = waiting["message"].as_str().unwrap_or("").to_owned();
    assert!(
        message.to_lowercase().contains("no space left"),
        "{waiting}"
    );
    assert_eq!(runs.of("new"), 0);
    // The pod that was running finishes, and its log reads back.
    c.wait_phase(&ns, "running", "Succeeded", LONG);
    let logs = c.kubectl(&["logs", "-n", &ns, "running"]);
    assert!(logs.contains("hello from wasm"), "{logs}");

    // Space again: the waiting pod gets its module and runs, once; the
    // module store holds only whole modules (every one verifies on use).
    std::fs::remove_file(disk.dir.path().join("filler")).unwrap();
    let back = Instant::now();
    let took = converged(
        c,
        &ns,
        &["running".to_owned(), "new".to_owned()],
        &runs,
        back,
    );
    eprintln!(
        "fault disk full: {} MiB filled; the waiting pod ran {took:.1?} after space returned",
        filled >> 20
    );
    let logs = c.kubectl(&["logs", "-n", &ns, "running"]);
    assert!(logs.contains("hello from wasm"), "{logs}");
    c.apply(&ns, &counted_pod("again", &node.name, &other, &runs, 0));
    c.wait_phase(&ns, "again", "Succeeded", LONG);
    let modules = node.state_dir.join("modules");
    for entry in std::fs::read_dir(&modules).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        assert!(
            !name.starts_with(".partial-"),
            "a partial module was left in the store: {name}"
        );
    }
}
