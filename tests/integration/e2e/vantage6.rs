//! vantage6 on sandlet: the task Jobs of vantage6's node (5.x), run as
//! wasm.
//!
//! `kube_a_vantage6_shaped_job_*` builds the Job exactly as vantage6 5.0.3's
//! node does (`vantage6/node/k8s/container_manager.py`: no arguments,
//! tolerations, node selector or annotation; base32 environment; input and
//! output as hostPath Files) and checks what the node relies on, against
//! the real control plane without the vantage6 stack.

use std::time::Duration;

use serde_json::Value;

use crate::cluster::{cluster, patients_station, push, wait_for};
use crate::fixtures::guests;
use crate::registry::{RegistrySetup, TestRegistry};
use crate::v6platform::Vantage6;

const LONG: Duration = Duration::from_secs(90);

/// A value as vantage6's node encodes it: base32, `=` written as `!`.
fn v6_encode(value: &str) -> String {
    sandlet_vantage6::encode(value)
}

/// The Job vantage6's node creates for run `run` of a federated step of
/// `method` (see the module docs).
fn v6_job(run: u32, image: &str, task_dir: &std::path::Path, method: &str) -> String {
    let env = [
        ("OUTPUT_FILE", "/app/vantage6/task/output".to_owned()),
        ("INPUT_FILE", "/app/vantage6/task/input".to_owned()),
        ("SESSION_FOLDER", "/app/vantage6/task/session".to_owned()),
        (
            "SESSION_FILE",
            "/app/vantage6/task/session/session_state.parquet".to_owned(),
        ),
        ("USER_REQUESTED_DATAFRAMES", String::new()),
        ("HOST", "http://127.0.0.1".to_owned()),
        ("PORT", "7654".to_owned()),
        ("API_PATH", String::new()),
        ("ALGORITHM_METHOD", method.to_owned()),
        ("FUNCTION_ACTION", "federated_compute".to_owned()),
        ("TASK_ID", "3".to_owned()),
        ("NODE_ID", "1".to_owned()),
        ("ORGANIZATION_ID", "1".to_owned()),
        ("COLLABORATION_ID", "1".to_owned()),
    ]
    .into_iter()
    .map(|(name, value)| serde_json::json!({ "name": name, "value": v6_encode(&value) }))
    .collect::<Vec<_>>();
    let name = format!("vantage6-run-{run}");
    let path = |p: &str| task_dir.join(p).display().to_string();
    serde_json::json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "labels": { "node_id": "84f74f858513ffe1" },
            "annotations": {
                "run_id": run.to_string(), "task_id": "3", "task_parent_id": "",
                "init_org_id": "1", "action": "federated_compute", "session_id": "1",
                "df_name": "", "df_id": "", "df_label": ""
            }
        },
        "spec": {
            "backoffLimit": 3,
            "template": {
                "metadata": { "labels": { "app": name, "role": "federated_compute" } },
                "spec": {
                    "containers": [{
                        "name": name,
                        "image": image,
                        "imagePullPolicy": "Always",
                        "tty": true,
                        "env": env,
                        "envFrom": [],
                        "volumeMounts": [
                            { "mountPath": "/app/vantage6/task/output", "name": format!("{name}-output"), "readOnly": false },
                            { "mountPath": "/app/vantage6/task/input", "name": format!("{name}-input"), "readOnly": false },
                            { "mountPath": "/app/vantage6/task/session", "name": "session000000001", "readOnly": false }
                        ]
                    }],
                    "restartPolicy": "Never",
                    "volumes": [
                        { "name": format!("{name}-output"), "hostPath": { "path": path(&format!("{run}/output")), "type": "File" } },
                        { "name": format!("{name}-input"), "hostPath": { "path": path(&format!("{run}/input")), "type": "File" } },
                        { "name": "session000000001", "hostPath": { "path": path("sessions/session000000001"), "type": "Directory" } }
                    ]
                }
            }
        }
    })
    .to_string()
}

/// Writes run `run`'s input and an empty output, as the node does before it
/// creates the Job.
fn v6_files(task_dir: &std::path::Path, run: u32, arguments: &str) {
    let dir = task_dir.join(run.to_string());
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::create_dir_all(task_dir.join("sessions/session000000001")).unwrap();
    std::fs::write(dir.join("input"), arguments).unwrap();
    std::fs::write(dir.join("output"), "").unwrap();
}

/// The phases of the pod of `job`, in the order a watch saw them, until it
/// is terminal.
fn watched_phases(namespace: &str, job: &str) -> Vec<String> {
    let c = cluster();
    let mut watch = c.kubectl_spawn(&[
        "get",
        "pods",
        "-n",
        namespace,
        "-l",
        &format!("app={job}"),
        "--watch",
        "-o",
        "jsonpath={.status.phase}{\"\\n\"}",
    ]);
    let mut phases: Vec<String> = Vec::new();
    use std::io::BufRead;
    let stdout = std::io::BufReader::new(watch.stdout.take().unwrap());
    for line in stdout.lines() {
        let phase = line.unwrap();
        if phase.is_empty() || phases.last() == Some(&phase) {
            continue;
        }
        let done = phase == "Succeeded" || phase == "Failed";
        phases.push(phase);
        if done {
            break;
        }
    }
    let _ = watch.kill();
    let _ = watch.wait();
    phases
}

/// Three runs of `image` from run id `first` on: a partial step that must
/// succeed and leave its result, a refused query and an unknown method that
/// must fail with the reason in the Job's log.
fn v6_runs(
    ns: &str,
    tasks: &std::path::Path,
    first: u32,
    image: &str,
    patients: &crate::fixtures::Patients,
) {
    let c = cluster();
    // The partial step. Its pod is seen Running before Succeeded, and the
    // output file holds the result the moment the Job counts it.
    let run = first;
    let job = format!("vantage6-run-{run}");
    v6_files(tasks, run, r#"{"column": "bmi"}"#);
    let watched = {
        let (ns, job) = (ns.to_owned(), job.clone());
        std::thread::spawn(move || watched_phases(&ns, &job))
    };
    std::thread::sleep(Duration::from_millis(500));
    c.apply(ns, &v6_job(run, image, tasks, "partial"));
    let succeeded = wait_for(&format!("{job} to succeed"), LONG, || {
        let object = c.get(ns, "job", &job)?;
        (object["status"]["succeeded"].as_i64() == Some(1)).then_some(object)
    });
    let output = std::fs::read_to_string(tasks.join(format!("{run}/output"))).unwrap();
    let result: Value = serde_json::from_str(&output)
        .unwrap_or_else(|e| panic!("{image}: output {output:?} is not JSON: {e}; {succeeded}"));
    assert_eq!(result["count"], 200, "{image}");
    crate::fixtures::assert_close(result["sum"].as_f64().unwrap(), patients.bmis.iter().sum());
    let phases = watched.join().unwrap();
    let running = phases.iter().position(|p| p == "Running");
    let done = phases.iter().position(|p| p == "Succeeded");
    assert!(
        matches!((running, done), (Some(r), Some(s)) if r < s),
        "{image}: phases seen by a watch: {phases:?}"
    );
    assert_eq!(
        std::fs::read_to_string(tasks.join(format!("{run}/input"))).unwrap(),
        r#"{"column": "bmi"}"#
    );
    let logs = c.kubectl(&["logs", "-n", ns, &format!("job/{job}")]);
    assert!(
        logs.contains("running partial (federated_compute) of task 3"),
        "{image}: {logs}"
    );

    // A hidden column: the station refuses, the Job fails, the refusal is
    // in the log the node collects, and no output is written.
    let run = first + 1;
    let logs = failed_job_logs(ns, tasks, run, image, "partial", r#"{"column": "ssn"}"#);
    assert!(logs.contains("error > not-granted"), "{image}: {logs}");
    assert_eq!(
        std::fs::read_to_string(tasks.join(format!("{run}/output"))).unwrap(),
        ""
    );

    // A method the algorithm does not have.
    let logs = failed_job_logs(
        ns,
        tasks,
        first + 2,
        image,
        "central",
        r#"{"column": "bmi"}"#,
    );
    assert!(logs.contains("no method \"central\""), "{image}: {logs}");
}

/// Runs `method` of `image` as vantage6's run `run` with `arguments`, waits
/// for its Job to count a failure, and returns the Job's log.
fn failed_job_logs(
    ns: &str,
    tasks: &std::path::Path,
    run: u32,
    image: &str,
    method: &str,
    arguments: &str,
) -> String {
    let c = cluster();
    let job = format!("vantage6-run-{run}");
    v6_files(tasks, run, arguments);
    c.apply(ns, &v6_job(run, image, tasks, method));
    wait_for(&format!("{job} to fail"), LONG, || {
        let object = c.get(ns, "job", &job)?;
        (object["status"]["failed"].as_i64() >= Some(1)).then_some(())
    });
    c.kubectl(&["logs", "-n", ns, &format!("job/{job}")])
}

#[test]
fn kube_a_vantage6_shaped_job_runs_as_wasm_and_leaves_its_result_in_the_task_dir() {
    let c = cluster();
    let registry = TestRegistry::start(RegistrySetup::default());
    let image = push(&registry, &guests().vantage6_mean, "v6/mean:1.0");
    let (node, patients, _data) = patients_station(
        "v6-station",
        &registry,
        200,
        11,
        "v6-tasks",
        &format!(
            "defaultGrants:\n  - namespace: v6-tasks\n    datasets: [patients]\nmodules:\n  allow:\n    - repository: {}/v6/*\n",
            registry.addr
        ),
    );
    // The namespace routes its pods to this node: vantage6's Jobs carry no
    // tolerations or selector of their own.
    let ns = c.namespace("v6-tasks");
    c.kubectl(&[
        "annotate",
        "namespace",
        &ns,
        &format!(
            "scheduler.alpha.kubernetes.io/node-selector=kubernetes.io/hostname={}",
            node.name
        ),
        r#"scheduler.alpha.kubernetes.io/defaultTolerations=[{"key":"kubernetes.io/arch","operator":"Equal","value":"wasm32-wasi","effect":"NoSchedule"},{"key":"kubernetes.io/arch","operator":"Equal","value":"wasm32-wasi","effect":"NoExecute"}]"#,
    ]);
    let task_dir = tempfile::tempdir().unwrap();
    let tasks = task_dir.path();
    // The same algorithm from each guest SDK: Rust and Python.
    let python = crate::local::languages::build_example(
        "python",
        "vantage6-mean",
        &crate::local::languages::toolchain("python"),
    );
    let python = push(&registry, &python, "v6/mean-python:1.0");
    for (first, image) in [(1, &image), (11, &python)] {
        v6_runs(&ns, tasks, first, image, &patients);
    }

    // vantage6's start-up pods: an image from a registry the station does
    // not list fails at once, before any connection (the isolation probe
    // needs a failure within 15 s), and never hangs Pending.
    c.apply(
        &ns,
        r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "v6-isolation-probe-1", "labels": {"role": "central_compute"}},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "probe", "image": "curlimages/curl:latest",
            "command": ["sh", "-c", "curl -s https://example.com"]}]}}"#,
    );
    let probe = c.wait_phase(
        &ns,
        "v6-isolation-probe-1",
        "Failed",
        Duration::from_secs(15),
    );
    assert_eq!(probe["status"]["reason"], "ModuleNotAllowed", "{probe}");
    let probe_exit = &probe["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"];
    assert_ne!(probe_exit, 0, "{probe}");
}

/// Sum and count of the bmi column of a patients CSV.
fn bmi_sum_count(csv: &str) -> (f64, usize) {
    let text = std::fs::read_to_string(csv).unwrap();
    let bmis: Vec<f64> = text
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(3).unwrap().parse().unwrap())
        .collect();
    (bmis.iter().sum(), bmis.len())
}

/// The run of organisation `org` in a task summary.
fn run_of<'a>(task: &'a Value, org: &str) -> &'a Value {
    task["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["organization"].as_i64() == org.parse::<i64>().ok())
        .unwrap_or_else(|| panic!("no run of organisation {org}: {task}"))
}

#[test]
fn kube_an_unmodified_vantage6_runs_its_tasks_as_wasm_on_sandlet_stations() {
    let v6 = Vantage6::up(false);
    let image = &v6.env["V6_MEAN_IMAGE"];
    let orgs: Vec<&str> = v6.env["V6_ORGS"].split(',').collect();
    let datasets: Vec<&str> = v6.env["V6_DATASETS"].split(',').collect();
    assert_eq!(orgs.len(), 2);
    assert_eq!(datasets.len(), 2);

    // The official client's task for both organisations: each station's
    // partial step ran as wasm on its own sandlet node, and the federated
    // mean equals the mean computed directly from both files.
    let mean = v6.task(image, "partial", r#"{"column": "bmi"}"#);
    assert_eq!(mean["status"], "completed", "{mean}");
    let (mut sum, mut count) = (0.0, 0i64);
    for (org, csv) in orgs.iter().zip(&datasets) {
        let run = run_of(&mean, org);
        assert_eq!(run["status"], "completed", "{run}");
        let (direct_sum, direct_count) = bmi_sum_count(csv);
        assert_eq!(run["result"]["count"], direct_count as i64, "{run}");
        crate::fixtures::assert_close(run["result"]["sum"].as_f64().unwrap(), direct_sum);
        sum += run["result"]["sum"].as_f64().unwrap();
        count += run["result"]["count"].as_i64().unwrap();
    }
    let direct: Vec<(f64, usize)> = datasets.iter().map(|d| bmi_sum_count(d)).collect();
    let direct_mean =
        direct.iter().map(|d| d.0).sum::<f64>() / direct.iter().map(|d| d.1).sum::<usize>() as f64;
    assert!(((sum / count as f64) - direct_mean).abs() < 1e-9);
    eprintln!(
        "vantage6 two-station task: created to results read in {:.2} s",
        mean["seconds"]
    );
    // They ran as wasm on the sandlet nodes named after the organisations.
    let pods: Value = serde_json::from_str(&v6.kubectl(&[
        "get",
        "events",
        "-A",
        "-o",
        "json",
        "--field-selector",
        "reason=Started",
    ]))
    .unwrap();
    let started_by: Vec<String> = pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["regarding"]["namespace"]
                .as_str()
                .is_some_and(|n| n.starts_with("v6-"))
                || e["involvedObject"]["namespace"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("v6-"))
        })
        .filter_map(|e| {
            e["reportingInstance"]
                .as_str()
                .or(e["reportingComponent"].as_str())
                .map(str::to_owned)
        })
        .collect();
    assert!(
        started_by.iter().any(|s| s == "station-1"),
        "{started_by:?}"
    );
    assert!(
        started_by.iter().any(|s| s == "station-2"),
        "{started_by:?}"
    );

    // A query that breaks the station's policy (a column it hides): the
    // task fails, and each run's log carries the station's refusal.
    let hidden = v6.task(image, "partial", r#"{"column": "ssn"}"#);
    assert_eq!(hidden["status"], "failed", "{hidden}");
    for org in &orgs {
        let run = run_of(&hidden, org);
        assert_eq!(run["status"], "crashed", "{run}");
        assert!(
            run["log"].as_str().unwrap().contains("not-granted"),
            "{run}"
        );
        assert!(run["result"].is_null(), "{run}");
    }

    // An image the vantage6 nodes do not allow never runs.
    let elsewhere = image.replace("/v6/", "/unreviewed/");
    let refused = v6.task(&elsewhere, "partial", r#"{"column": "bmi"}"#);
    assert_eq!(refused["status"], "failed", "{refused}");
    for org in &orgs {
        assert_eq!(run_of(&refused, org)["status"], "not allowed", "{refused}");
    }

    // A run stopped half-way (its pod deleted) is reported crashed, not
    // lost; the other station's run completes.
    let task = v6.client(&["create", image, "wait", r#"{"seconds": 40}"#]);
    let task = task.trim().to_owned();
    let running = wait_for("the first station's run to be Running", LONG, || {
        let pods: Value =
            serde_json::from_str(&v6.kubectl(&["get", "pods", "-n", "v6-station-1", "-o", "json"]))
                .unwrap();
        pods["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["status"]["phase"] == "Running")
            .and_then(|p| p["metadata"]["name"].as_str().map(str::to_owned))
    });
    v6.kubectl(&[
        "delete",
        "pod",
        "-n",
        "v6-station-1",
        &running,
        "--wait=false",
    ]);
    let line = v6.client(&["wait", &task, "240"]);
    let waited: Value = serde_json::from_str(line.trim()).unwrap();
    let killed = run_of(&waited, orgs[0]);
    assert_eq!(killed["status"], "crashed", "{waited}");
    assert_eq!(killed["finished"], true, "{waited}");
    let other = run_of(&waited, orgs[1]);
    assert_eq!(other["status"], "completed", "{waited}");
    assert_eq!(other["result"]["waited"], 40, "{waited}");

    // `down` leaves nothing running or mounted.
    let dir = v6.dir.path().to_owned();
    drop(v6);
    let mentions = |text: &[u8]| {
        let needle = dir.as_os_str().as_encoded_bytes();
        text.windows(needle.len()).any(|w| w == needle)
    };
    let scan = || -> Vec<String> {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
            .filter(|e| std::fs::read(e.path().join("cmdline")).is_ok_and(|c| mentions(&c)))
            .map(|e| {
                let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
                format!(
                    "{} {}",
                    e.file_name().to_string_lossy(),
                    String::from_utf8_lossy(&cmdline).replace('\0', " ")
                )
            })
            .collect()
    };
    // The watchdog notices `down` within a second.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut left = scan();
    while !left.is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
        left = scan();
    }
    assert!(
        left.is_empty(),
        "processes of {} left: {left:?}",
        dir.display()
    );
    let mounts = std::fs::read("/proc/self/mounts").unwrap();
    assert!(!mentions(&mounts), "mounts under {} left", dir.display());
}
