//! End to end: the real control plane (kube-apiserver, kube-scheduler,
//! kube-controller-manager, etcd), real `kubectl`, `sandlet node` processes
//! and modules pulled from a loopback `docker-registry`.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cluster::{
    TestNode, cluster, patients_station, push, wait_for, wasm_pod, with_datasets,
};
use crate::fixtures::guests;
use crate::registry::{RegistrySetup, TestRegistry};

const LONG: Duration = Duration::from_secs(60);

fn registry_with_hello() -> (TestRegistry, String) {
    let registry = TestRegistry::start(RegistrySetup::default());
    let hello = push(&registry, &guests().hello, "algorithms/hello:v1");
    (registry, hello)
}

fn container_status(pod: &Value) -> &Value {
    &pod["status"]["containerStatuses"][0]
}

/// Waits until the pod's first container waits for one of `reasons`;
/// returns its `state.waiting`.
fn wait_waiting(namespace: &str, pod: &str, reasons: &[&str]) -> Value {
    wait_for(&format!("{pod} to wait for {reasons:?}"), LONG, || {
        let object = cluster().pod(namespace, pod);
        let waiting = container_status(&object)["state"]["waiting"].clone();
        reasons
            .contains(&waiting["reason"].as_str().unwrap_or(""))
            .then_some(waiting)
    })
}

fn condition<'a>(object: &'a Value, type_: &str) -> &'a Value {
    object["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == type_))
        .unwrap_or_else(|| panic!("no {type_} condition in {object}"))
}

#[test]
fn kube_a_plain_pod_runs_and_kubectl_logs_shows_its_output() {
    let c = cluster();
    let (registry, hello) = registry_with_hello();
    let node = TestNode::start("plain", &registry, &[]);
    let ns = c.namespace("plain");
    c.apply(
        &ns,
        &wasm_pod("hello", &node.name, &hello, &["one", "two"], "Never"),
    );
    let pod = c.wait_phase(&ns, "hello", "Succeeded", LONG);

    let status = container_status(&pod);
    assert_eq!(status["state"]["terminated"]["exitCode"], 0);
    assert_eq!(status["state"]["terminated"]["reason"], "Completed");
    let image_id = status["imageID"].as_str().unwrap();
    assert!(
        image_id.starts_with(&format!("{}/algorithms/hello@sha256:", registry.addr)),
        "{image_id}"
    );
    assert!(status["state"]["terminated"]["startedAt"].is_string());
    assert!(status["state"]["terminated"]["finishedAt"].is_string());
    assert_eq!(condition(&pod, "PodScheduled")["status"], "True");
    assert_eq!(condition(&pod, "Initialized")["status"], "True");
    assert_eq!(condition(&pod, "Ready")["reason"], "PodCompleted");

    let logs = c.kubectl(&["logs", "-n", &ns, "hello"]);
    assert!(logs.contains("arg: one\narg: two\n"), "{logs}");
    assert!(logs.contains("hello from wasm"), "{logs}");
    // Nothing of the node's environment reaches the guest.
    assert!(!logs.contains("SANDLET_LOG"), "{logs}");
    let tail = c.kubectl(&["logs", "-n", &ns, "hello", "--tail=1", "--timestamps"]);
    let (time, line) = tail.trim_end().split_once(' ').unwrap();
    assert!(time.contains('T') && time.ends_with('Z'), "{tail}");
    assert_eq!(line, "hello from wasm");

    let events = c.events(&ns, "hello");
    for reason in ["Scheduled", "Pulled", "Created", "Started"] {
        assert!(
            events.iter().any(|e| e.starts_with(reason)),
            "{reason} missing in {events:?}"
        );
    }
    // exec has nothing to attach to.
    c.apply(
        &ns,
        &wasm_pod("long", &node.name, &hello, &["--sleep", "600"], "Never"),
    );
    c.wait_phase(&ns, "long", "Running", LONG);
    let exec = c.kubectl_raw(&["exec", "-n", &ns, "long", "--", "ls"], None);
    assert!(!exec.status.success());
    let stderr = String::from_utf8_lossy(&exec.stderr);
    assert!(stderr.contains("not supported for wasm pods"), "{stderr}");
}

/// `curl -k` against a node's kubelet API: the HTTP status (0 when no
/// answer came, e.g. a refused handshake) and the body.
pub(crate) fn curl(args: &[&str], url: &str) -> (u16, String) {
    curl_tls(&["-k"], args, url)
}

/// [`curl`] with `tls` instead of `-k` (e.g. `--cacert FILE`).
fn curl_tls(tls: &[&str], args: &[&str], url: &str) -> (u16, String) {
    let out = std::process::Command::new("curl")
        .args(["-s", "--max-time", "20", "-w", "\n%{http_code}"])
        .args(tls)
        .args(args)
        .arg(url)
        .output()
        .expect("cannot run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

#[test]
fn kube_the_kubelet_api_admits_only_authenticated_and_authorized_clients() {
    let c = cluster();
    let (registry, hello) = registry_with_hello();
    let node = TestNode::start("guarded", &registry, &[]);
    let ns = c.namespace("guarded");
    // Two service accounts: one may read through the node's proxy
    // subresource (as `kubectl logs` needs), the other may not.
    let role = format!("{ns}-node-proxy-reader");
    c.apply(
        &ns,
        &format!(
            r#"apiVersion: v1
kind: ServiceAccount
metadata: {{name: log-reader}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: bystander}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: {role}}}
rules:
- {{apiGroups: [""], resources: [nodes/proxy], verbs: [get]}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: {role}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {role}}}
subjects:
- {{kind: ServiceAccount, name: log-reader, namespace: {ns}}}
"#
        ),
    );
    c.apply(
        &ns,
        &wasm_pod("hello", &node.name, &hello, &["confidential"], "Never"),
    );
    c.wait_phase(&ns, "hello", "Succeeded", LONG);
    let reader = format!("system:serviceaccount:{ns}:log-reader");
    wait_for("the role binding to take effect", LONG, || {
        let out = c.kubectl_raw(
            &[
                "auth",
                "can-i",
                "get",
                "nodes",
                "--subresource=proxy",
                "--as",
                &reader,
            ],
            None,
        );
        out.status.success().then_some(())
    });

    // The API server reaches the node with its kubelet client certificate
    // (group system:masters). (Its node proxy refuses loopback addresses,
    // so /healthz is checked directly below.)
    let logs = c.kubectl(&["logs", "-n", &ns, "hello"]);
    assert!(logs.contains("arg: confidential"), "{logs}");

    let base = format!("https://127.0.0.1:{}", node.port);
    let logs_url = format!("{base}/containerLogs/{ns}/hello/main");
    let pki = c.dir.join("pki");
    let cert_args = |name: &str| {
        [
            "--cert".to_owned(),
            pki.join(format!("{name}.crt")).display().to_string(),
            "--key".to_owned(),
            pki.join(format!("{name}.key")).display().to_string(),
        ]
    };
    let with = |args: &[String], url: &str| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        curl(&args, url)
    };

    // No credentials: 401, for the logs and for everything else.
    for url in [&logs_url, &format!("{base}/healthz")] {
        assert_eq!(curl(&[], url), (401, "Unauthorized".to_owned()), "{url}");
    }
    // A certificate from the cluster CA for a user with the right: the
    // cluster admin (group system:masters).
    let (code, body) = with(&cert_args("admin"), &logs_url);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("arg: confidential"), "{body}");
    assert_eq!(
        with(&cert_args("admin"), &format!("{base}/healthz")),
        (200, "ok".to_owned())
    );
    // Another node's certificate: authenticated, not authorized (the Node
    // authorizer gives a node no rights on another node).
    c.node_kubeconfig("intruder");
    assert_eq!(
        with(&cert_args("node-intruder"), &logs_url),
        (
            403,
            "Forbidden (user=system:node:intruder, verb=get, resource=nodes, subresource=proxy)"
                .to_owned()
        )
    );
    // A certificate claiming system:masters from a CA of its own: never
    // admitted.
    let forged = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args([
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/O=system:masters/CN=mallory",
        ])
        .arg("-keyout")
        .arg(forged.path().join("forged.key"))
        .arg("-out")
        .arg(forged.path().join("forged.crt"))
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let forged_args = [
        "--cert".to_owned(),
        forged.path().join("forged.crt").display().to_string(),
        "--key".to_owned(),
        forged.path().join("forged.key").display().to_string(),
    ];
    let (code, body) = with(&forged_args, &logs_url);
    assert!(
        code == 0 || code == 401,
        "a forged certificate got {code}: {body}"
    );
    assert!(!body.contains("confidential"), "{body}");

    // Bearer tokens, checked with a TokenReview.
    let token = |sa: &str| {
        c.kubectl(&["create", "token", sa, "-n", &ns])
            .trim()
            .to_owned()
    };
    let bearer = |token: &str| vec!["-H".to_owned(), format!("Authorization: Bearer {token}")];
    let reader_token = token("log-reader");
    let (code, body) = with(&bearer(&reader_token), &logs_url);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("arg: confidential"), "{body}");
    // The same user may read but not create: exec is POST.
    let exec_url = format!("{base}/exec/{ns}/hello/main?command=ls");
    let mut post = bearer(&reader_token);
    post.extend(["-X".to_owned(), "POST".to_owned()]);
    assert_eq!(
        with(&post, &exec_url),
        (
            403,
            format!("Forbidden (user={reader}, verb=create, resource=nodes, subresource=proxy)")
        )
    );
    assert_eq!(
        with(&bearer(&token("bystander")), &logs_url),
        (
            403,
            format!(
                "Forbidden (user=system:serviceaccount:{ns}:bystander, verb=get, resource=nodes, subresource=proxy)"
            )
        )
    );
    assert_eq!(
        with(&bearer("not-a-token"), &logs_url),
        (401, "Unauthorized".to_owned())
    );

    // Resource metrics, as metrics-server scrapes them: nodes/metrics,
    // which the log reader does not have.
    let metrics_url = format!("{base}/metrics/resource");
    assert_eq!(
        with(&bearer(&reader_token), &metrics_url),
        (
            403,
            format!("Forbidden (user={reader}, verb=get, resource=nodes, subresource=metrics)")
        )
    );
    c.apply(
        &ns,
        &wasm_pod("sleeper", &node.name, &hello, &["--sleep", "600"], "Never"),
    );
    c.wait_phase(&ns, "sleeper", "Running", LONG);
    let value = |text: &str, series: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|rest| rest.split(' ').next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
    };
    let labels = format!("{{container=\"main\",namespace=\"{ns}\",pod=\"sleeper\"}}");
    let text = wait_for("the sleeper's memory in the metrics", LONG, || {
        let (code, text) = with(&cert_args("admin"), &metrics_url);
        assert_eq!(code, 200, "{text}");
        let series = format!("container_memory_working_set_bytes{labels}");
        text.contains(&series).then_some(text)
    });
    assert!(
        value(
            &text,
            &format!("container_memory_working_set_bytes{labels}")
        ) >= 65536.0
    );
    assert!(value(&text, &format!("container_cpu_usage_seconds_total{labels}")) >= 0.0);
    assert!(value(&text, "node_memory_working_set_bytes") > 0.0);
    assert!(value(&text, "node_cpu_usage_seconds_total") > 0.0);
    assert_eq!(value(&text, "resource_scrape_error"), 0.0);
    // The finished pod is not listed; only running containers are.
    assert!(!text.contains("pod=\"hello\""), "{text}");
    c.kubectl(&["delete", "clusterrolebinding,clusterrole", &role]);

    // Settings that cannot work are refused at start, naming the problem.
    let ran = crate::fixtures::run_sandlet(["node", "--authorization-mode", "RBAC"]);
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    assert!(
        ran.stderr.contains("unknown authorization mode \"RBAC\""),
        "{}",
        ran.stderr
    );
    let state = tempfile::tempdir().unwrap();
    let kubeconfig = c.node_kubeconfig("misconfigured");
    let ran = crate::fixtures::run_sandlet([
        "node".as_ref(),
        "--kubeconfig".as_ref(),
        kubeconfig.as_os_str(),
        "--node-name".as_ref(),
        "misconfigured".as_ref(),
        "--state-dir".as_ref(),
        state.path().as_os_str(),
        "--client-ca-file".as_ref(),
        "/nonexistent/ca.crt".as_ref(),
    ] as [&std::ffi::OsStr; 9]);
    ran.assert_sandlet_error("cannot read client CA /nonexistent/ca.crt");
    assert!(c.get("", "node", "misconfigured").is_none());
}

#[test]
fn kube_the_node_serves_a_certificate_the_cluster_issues_once_approved() {
    let c = cluster();
    let registry = TestRegistry::start(RegistrySetup::default());
    let mut node = TestNode::start("certified", &registry, &[]);
    let user = format!("system:node:{}", node.name);
    let csrs = || -> Vec<Value> {
        let list: Value = serde_json::from_str(&c.kubectl(&["get", "csr", "-o", "json"])).unwrap();
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|csr| csr["spec"]["username"] == user.as_str())
            .cloned()
            .collect()
    };
    let csr = wait_for("the node's CertificateSigningRequest", LONG, || {
        csrs().into_iter().next()
    });
    assert_eq!(csr["spec"]["signerName"], "kubernetes.io/kubelet-serving");
    assert_eq!(
        csr["spec"]["usages"],
        serde_json::json!(["digital signature", "server auth"])
    );
    assert!(csr["status"]["certificate"].is_null(), "{csr}");
    let name = csr["metadata"]["name"].as_str().unwrap();

    // A client that checks the cluster CA (and the address 127.0.0.1).
    let pki = c.dir.join("pki");
    let ca = pki.join("ca.crt").display().to_string();
    let cert = pki.join("admin.crt").display().to_string();
    let key = pki.join("admin.key").display().to_string();
    let healthz = format!("https://127.0.0.1:{}/healthz", node.port);
    let verified = || {
        curl_tls(
            &["--cacert", &ca],
            &["--cert", &cert, "--key", &key],
            &healthz,
        )
    };
    // Until the request is approved the node serves a self-signed
    // certificate, which such a client refuses.
    assert_eq!(verified().0, 0);
    c.kubectl(&["certificate", "approve", name]);
    wait_for("the issued certificate to be served", LONG, || {
        (verified() == (200, "ok".to_owned())).then_some(())
    });
    let stored = node
        .state_dir
        .join("pki")
        .join("kubelet-server-current.pem");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&stored).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // After a restart the stored certificate is served at once, and no new
    // request is made.
    node.kill();
    node.start_again();
    assert_eq!(verified(), (200, "ok".to_owned()));
    assert_eq!(csrs().len(), 1);
}

#[test]
fn kube_logs_follow_until_the_container_ends() {
    let c = cluster();
    let (registry, hello) = registry_with_hello();
    let node = TestNode::start("follow", &registry, &[]);
    let ns = c.namespace("follow");
    c.apply(
        &ns,
        &wasm_pod("ticker", &node.name, &hello, &["--ticks", "10"], "Never"),
    );
    c.wait_phase(&ns, "ticker", "Running", LONG);
    let started = Instant::now();
    let logs = c.kubectl(&["logs", "-f", "-n", &ns, "ticker"]);
    // Ten ticks 200 ms apart: following waited for the end.
    assert!(
        logs.contains("tick 1\n") && logs.ends_with("tick 10\n"),
        "{logs}"
    );
    assert!(started.elapsed() < LONG);
    let limited = c.kubectl(&["logs", "-n", &ns, "ticker", "--limit-bytes=5"]);
    assert_eq!(limited, "hello");
}

#[test]
fn kube_a_job_completes_and_its_backoff_limit_counts_failures() {
    let c = cluster();
    let (registry, hello) = registry_with_hello();
    let node = TestNode::start("jobs", &registry, &[]);
    let ns = c.namespace("jobs");
    let job = |name: &str, args: &[&str]| {
        format!(
            r#"apiVersion: batch/v1
kind: Job
metadata:
  name: {name}
spec:
  backoffLimit: 1
  template:
    spec:
      restartPolicy: Never
      nodeSelector: {{kubernetes.io/hostname: {node}}}
      tolerations: [{{key: kubernetes.io/arch, operator: Equal, value: wasm32-wasi}}]
      containers:
      - name: main
        image: {hello}
        args: {args}
"#,
            node = node.name,
            args = serde_json::to_string(args).unwrap()
        )
    };
    c.apply(&ns, &job("works", &["ok"]));
    c.apply(&ns, &job("fails", &["--exit", "4"]));
    let works = wait_for("job works to complete", LONG, || {
        let job = c.get(&ns, "job", "works")?;
        (job["status"]["succeeded"] == 1).then_some(job)
    });
    assert_eq!(condition(&works, "Complete")["status"], "True");
    let fails = wait_for("job fails to fail", LONG, || {
        let job = c.get(&ns, "job", "fails")?;
        (job["status"]["failed"] == 2).then_some(job)
    });
    assert_eq!(
        condition(&fails, "Failed")["reason"],
        "BackoffLimitExceeded"
    );
    let pods: Value = serde_json::from_str(&c.kubectl(&[
        "get",
        "pods",
        "-n",
        &ns,
        "-l",
        "job-name=fails",
        "-o",
        "json",
    ]))
    .unwrap();
    let pods = pods["items"].as_array().unwrap();
    assert_eq!(pods.len(), 2, "backoffLimit 1 means two pods");
    for pod in pods {
        assert_eq!(pod["status"]["phase"], "Failed");
        assert_eq!(container_status(pod)["state"]["terminated"]["exitCode"], 4);
    }
}

#[test]
fn kube_deleting_a_running_pod_stops_the_guest_within_the_grace_period() {
    let c = cluster();
    let (registry, hello) = registry_with_hello();
    let node = TestNode::start("deletion", &registry, &[]);
    let ns = c.namespace("deletion");
    let manifest = wasm_pod(
        "sleeper",
        &node.name,
        &hello,
        &["--ticks", "100000"],
        "Always",
    )
    .replace("spec:\n", "spec:\n  terminationGracePeriodSeconds: 10\n");
    c.apply(&ns, &manifest);
    c.wait_phase(&ns, "sleeper", "Running", LONG);
    let uid = c.pod(&ns, "sleeper")["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_owned();
    let log = node.state().join("pods").join(&uid).join("main.0.log");
    wait_for("the guest to print", LONG, || log.exists().then_some(()));
    let started = Instant::now();
    c.kubectl(&["delete", "pod", "-n", &ns, "sleeper", "--wait=true"]);
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "deletion took {took:?}, the grace period is 10 s"
    );
    assert!(c.get(&ns, "pod", "sleeper").is_none());
    // The guest is gone, not just the object: its pod directory was removed
    // and nothing writes there any more.
    std::thread::sleep(Duration::from_millis(500));
    assert!(!log.exists(), "the pod directory outlived the pod");
    let events = c.events(&ns, "sleeper");
    assert!(
        events.iter().any(|e| e.starts_with("Killing")),
        "{events:?}"
    );
}

#[test]
fn kube_restart_policies_behave_as_in_kubernetes() {
    let c = cluster();
    let (registry, hello) = registry_with_hello();
    let node = TestNode::start("restarts", &registry, &[]);
    let ns = c.namespace("restarts");
    c.apply(
        &ns,
        &wasm_pod("never", &node.name, &hello, &["--exit", "3"], "Never"),
    );
    c.apply(
        &ns,
        &wasm_pod(
            "onfailure-fails",
            &node.name,
            &hello,
            &["--exit", "3"],
            "OnFailure",
        ),
    );
    c.apply(
        &ns,
        &wasm_pod("onfailure-ok", &node.name, &hello, &[], "OnFailure"),
    );
    c.apply(&ns, &wasm_pod("always", &node.name, &hello, &[], "Always"));

    let never = c.wait_phase(&ns, "never", "Failed", LONG);
    assert_eq!(container_status(&never)["restartCount"], 0);
    assert_eq!(
        container_status(&never)["state"]["terminated"]["exitCode"],
        3
    );

    let ok = c.wait_phase(&ns, "onfailure-ok", "Succeeded", LONG);
    assert_eq!(container_status(&ok)["restartCount"], 0);

    for name in ["onfailure-fails", "always"] {
        let pod = wait_for(&format!("{name} to restart twice"), LONG, || {
            let pod = c.pod(&ns, name);
            (container_status(&pod)["restartCount"].as_i64() >= Some(2)).then_some(pod)
        });
        assert_eq!(pod["status"]["phase"], "Running", "{name} keeps running");
        let expected = if name == "always" { 0 } else { 3 };
        assert_eq!(
            container_status(&pod)["lastState"]["terminated"]["exitCode"],
            expected
        );
    }
    let waiting = wait_waiting(&ns, "onfailure-fails", &["CrashLoopBackOff"]);
    assert!(
        waiting["message"].as_str().unwrap().contains("back-off"),
        "{waiting}"
    );
    let previous = c.kubectl(&["logs", "-n", &ns, "onfailure-fails", "--previous"]);
    assert!(previous.contains("hello from wasm"), "{previous}");
    let events = c.events(&ns, "onfailure-fails");
    assert!(
        events.iter().any(|e| e.starts_with("BackOff")),
        "{events:?}"
    );
}

#[test]
fn kube_a_failed_init_container_fails_the_pod_before_any_container_runs() {
    let c = cluster();
    let (registry, hello) = registry_with_hello();
    let node = TestNode::start("init", &registry, &[]);
    let ns = c.namespace("init");
    let manifest = format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: setup-fails}}
spec:
  restartPolicy: Never
  nodeSelector: {{kubernetes.io/hostname: {node}}}
  tolerations: [{{key: kubernetes.io/arch, operator: Equal, value: wasm32-wasi}}]
  initContainers:
  - {{name: first, image: {hello}, args: [first]}}
  - {{name: second, image: {hello}, args: ["--exit", "7"]}}
  - {{name: third, image: {hello}, args: [third]}}
  containers:
  - {{name: main, image: {hello}, args: [main]}}
"#,
        node = node.name
    );
    c.apply(&ns, &manifest);
    let pod = c.wait_phase(&ns, "setup-fails", "Failed", LONG);
    let init = pod["status"]["initContainerStatuses"].as_array().unwrap();
    assert_eq!(init[0]["state"]["terminated"]["exitCode"], 0);
    assert_eq!(init[1]["state"]["terminated"]["exitCode"], 7);
    assert!(
        init[2]["state"]["waiting"].is_object(),
        "third never ran: {}",
        init[2]
    );
    assert!(
        container_status(&pod)["state"]["waiting"].is_object(),
        "main never ran"
    );
    assert_eq!(condition(&pod, "Initialized")["status"], "False");
    let first = c.kubectl(&["logs", "-n", &ns, "setup-fails", "-c", "first"]);
    assert!(first.contains("arg: first"), "{first}");
}

#[test]
fn kube_pods_that_cannot_run_here_get_a_reason_and_an_event() {
    let c = cluster();
    let (registry, hello) = registry_with_hello();
    let node = TestNode::start("refuses", &registry, &[]);
    let ns = c.namespace("refuses");
    // Bound directly (as a controller with nodeName would), past the
    // scheduler that would otherwise keep it away.
    let gpu = format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: gpu}}
spec:
  nodeName: {node}
  tolerations: [{{key: kubernetes.io/arch, operator: Exists}}]
  containers:
  - name: train
    image: {hello}
    resources: {{limits: {{nvidia.com/gpu: "1"}}}}
"#,
        node = node.name
    );
    c.apply(&ns, &gpu);
    let pod = c.wait_phase(&ns, "gpu", "Failed", LONG);
    assert_eq!(pod["status"]["reason"], "UnsupportedResource");
    assert!(
        pod["status"]["message"]
            .as_str()
            .unwrap()
            .contains("nvidia.com/gpu")
    );
    wait_for("the UnsupportedResource event", LONG, || {
        c.events(&ns, "gpu")
            .iter()
            .any(|e| e.starts_with("UnsupportedResource"))
            .then_some(())
    });

    // The scheduler would wait for the claim; bound directly, the node
    // must say it cannot mount it.
    let pvc = wasm_pod("claims", &node.name, &hello, &[], "Never").replace(
        "  containers:\n",
        &format!(
            "  nodeName: {}\n  volumes: [{{name: data, persistentVolumeClaim: {{claimName: x}}}}]\n  containers:\n",
            node.name
        ),
    );
    c.apply(&ns, &pvc);
    let pod = c.wait_phase(&ns, "claims", "Failed", LONG);
    assert_eq!(pod["status"]["reason"], "UnsupportedVolume");

    // An OCI image that is not a wasm module (a container image layer).
    let tar_layer = oci_client::client::ImageLayer::new(
        b"not wasm".to_vec(),
        "application/vnd.oci.image.layer.v1.tar+gzip".into(),
        None,
    );
    let container_image =
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(crate::services::oci::push_raw(
                &registry,
                "nginx",
                vec![tar_layer],
            ));
    c.apply(
        &ns,
        &wasm_pod("not-wasm", &node.name, &container_image, &[], "Never"),
    );
    let waiting = wait_waiting(&ns, "not-wasm", &["ErrImagePull"]);
    assert!(
        waiting["message"]
            .as_str()
            .unwrap()
            .contains("not a wasm module"),
        "{waiting}"
    );
    wait_for("a Failed event naming the module", LONG, || {
        c.events(&ns, "not-wasm")
            .iter()
            .any(|e| e.starts_with("Failed") && e.contains("not a wasm module"))
            .then_some(())
    });

    // A wasm layer whose bytes are not a module sandlet can run.
    let garbage = oci_client::client::ImageLayer::new(
        b"\0asm but not really".to_vec(),
        "application/wasm".into(),
        None,
    );
    let broken = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(crate::services::oci::push_raw(
            &registry,
            "broken",
            vec![garbage],
        ));
    c.apply(&ns, &wasm_pod("broken", &node.name, &broken, &[], "Never"));
    let pod = c.wait_phase(&ns, "broken", "Failed", LONG);
    assert_eq!(pod["status"]["reason"], "InvalidModule");
    assert!(
        pod["status"]["message"]
            .as_str()
            .unwrap()
            .contains("invalid module"),
        "{}",
        pod["status"]
    );

    let missing = wasm_pod(
        "missing",
        &node.name,
        &format!("{}/no/such:v1", registry.addr),
        &[],
        "Never",
    );
    c.apply(&ns, &missing);
    let waiting = wait_waiting(&ns, "missing", &["ErrImagePull", "ImagePullBackOff"]);
    assert!(
        waiting["message"].as_str().unwrap().contains("no/such"),
        "{waiting}"
    );
    assert_eq!(c.pod(&ns, "missing")["status"]["phase"], "Pending");
}

#[test]
fn kube_only_pods_tolerating_the_wasm_taint_schedule_here() {
    let c = cluster();
    let (registry, hello) = registry_with_hello();
    let node = TestNode::start("taints", &registry, &[]);
    let ns = c.namespace("taints");
    // krustlet's manifests: tolerations for the arch taint, nothing else.
    let krustlet = format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: krustlet-style}}
spec:
  restartPolicy: Never
  containers: [{{name: main, image: {hello}}}]
  tolerations:
  - {{key: kubernetes.io/arch, operator: Equal, value: wasm32-wasi, effect: NoExecute}}
  - {{key: kubernetes.io/arch, operator: Equal, value: wasm32-wasi, effect: NoSchedule}}
  nodeSelector: {{kubernetes.io/hostname: {node}}}
"#,
        node = node.name
    );
    c.apply(&ns, &krustlet);
    let pod = c.wait_phase(&ns, "krustlet-style", "Succeeded", LONG);
    assert_eq!(pod["spec"]["nodeName"], node.name.as_str());

    let plain = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: plain}}\nspec:\n  containers: [{{name: main, image: {hello}}}]\n"
    );
    c.apply(&ns, &plain);
    let pod = wait_for(
        "the scheduler to give up on the untolerating pod",
        LONG,
        || {
            let pod = c.pod(&ns, "plain");
            let scheduled = pod["status"]["conditions"]
                .as_array()
                .and_then(|cs| cs.iter().find(|c| c["type"] == "PodScheduled").cloned())?;
            (scheduled["status"] == "False").then_some((pod, scheduled))
        },
    );
    assert_eq!(pod.1["reason"], "Unschedulable");
    assert!(
        pod.1["message"]
            .as_str()
            .unwrap()
            .contains("untolerated taint"),
        "{}",
        pod.1
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        c.pod(&ns, "plain")["spec"]["nodeName"].is_null(),
        "never bound"
    );
}

#[test]
fn kube_a_restarted_node_keeps_finished_pods_and_applies_restart_policy_to_running_ones() {
    let c = cluster();
    let (registry, hello) = registry_with_hello();
    let mut node = TestNode::start("restart", &registry, &[]);
    let ns = c.namespace("restart");
    c.apply(
        &ns,
        &wasm_pod("done", &node.name, &hello, &["finished"], "Never"),
    );
    c.apply(
        &ns,
        &wasm_pod("never", &node.name, &hello, &["--sleep", "600"], "Never"),
    );
    c.apply(
        &ns,
        &wasm_pod(
            "onfailure",
            &node.name,
            &hello,
            &["--sleep", "600"],
            "OnFailure",
        ),
    );
    let done_before = c.wait_phase(&ns, "done", "Succeeded", LONG);
    c.wait_phase(&ns, "never", "Running", LONG);
    c.wait_phase(&ns, "onfailure", "Running", LONG);
    c.apply(
        &ns,
        &wasm_pod("orphan", &node.name, &hello, &["--sleep", "600"], "Never"),
    );
    let orphan = c.wait_phase(&ns, "orphan", "Running", LONG);
    let orphan_dir = node
        .state()
        .join("pods")
        .join(orphan["metadata"]["uid"].as_str().unwrap());
    assert!(orphan_dir.is_dir());

    node.kill();
    // Removed for good while the node was down: its files must not linger.
    c.kubectl(&[
        "delete",
        "pod",
        "-n",
        &ns,
        "orphan",
        "--force",
        "--grace-period=0",
    ]);
    node.start_again();

    let never = c.wait_phase(&ns, "never", "Failed", LONG);
    let terminated = &container_status(&never)["state"]["terminated"];
    assert_eq!(terminated["exitCode"], 137);
    assert!(
        terminated["message"]
            .as_str()
            .unwrap()
            .contains("sandlet restarted"),
        "{terminated}"
    );
    let onfailure = wait_for("onfailure to run again", LONG, || {
        let pod = c.pod(&ns, "onfailure");
        let status = container_status(&pod);
        (status["restartCount"] == 1 && status["state"]["running"].is_object()).then_some(pod)
    });
    assert_eq!(onfailure["status"]["phase"], "Running");
    // The finished pod was not run again: same start and finish times, and
    // its log survived the restart.
    std::thread::sleep(Duration::from_secs(1));
    let done_after = c.pod(&ns, "done");
    assert_eq!(
        container_status(&done_after),
        container_status(&done_before)
    );
    let logs = c.kubectl(&["logs", "-n", &ns, "done"]);
    assert!(logs.contains("arg: finished"), "{logs}");
    wait_for("the orphan's directory to be removed", LONG, || {
        (!orphan_dir.exists()).then_some(())
    });
    // Deleting after the restart still works (the node finalises it).
    c.kubectl(&[
        "delete",
        "pod",
        "-n",
        &ns,
        "onfailure",
        "--wait=true",
        "--timeout=30s",
    ]);
}

#[test]
fn kube_the_node_stays_ready_while_200_pods_run_through_it() {
    let c = cluster();
    let (registry, hello) = registry_with_hello();
    let node = TestNode::start("busy", &registry, &["--max-pods", "250"]);
    let ns = c.namespace("busy");
    let pods: String = (0..200)
        .map(|i| {
            wasm_pod(
                &format!("p{i}"),
                &node.name,
                &hello,
                &[&format!("pod {i}")],
                "Never",
            )
        })
        .collect::<Vec<_>>()
        .join("---\n");
    let lease_before =
        c.get("kube-node-lease", "lease", &node.name).unwrap()["spec"]["renewTime"].clone();
    c.apply(&ns, &pods);
    let started = Instant::now();
    let mut renewals = std::collections::BTreeSet::new();
    loop {
        let node_object = c.get("", "node", &node.name).unwrap();
        assert_eq!(
            condition(&node_object, "Ready")["status"],
            "True",
            "the node went NotReady"
        );
        let taints = node_object["spec"]["taints"].as_array().unwrap();
        assert!(
            taints
                .iter()
                .all(|t| t["key"] != "node.kubernetes.io/unreachable"),
            "the node lifecycle controller tainted the node: {taints:?}"
        );
        let lease = c.get("kube-node-lease", "lease", &node.name).unwrap();
        renewals.insert(lease["spec"]["renewTime"].to_string());
        let list: Value =
            serde_json::from_str(&c.kubectl(&["get", "pods", "-n", &ns, "-o", "json"])).unwrap();
        let items = list["items"].as_array().unwrap();
        let succeeded = items
            .iter()
            .filter(|p| p["status"]["phase"] == "Succeeded")
            .count();
        let failed: Vec<_> = items
            .iter()
            .filter(|p| p["status"]["phase"] == "Failed")
            .collect();
        assert!(failed.is_empty(), "pods failed: {failed:?}");
        if succeeded == 200 && started.elapsed() > Duration::from_secs(25) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "only {succeeded} of 200 pods succeeded"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    // Past the 20 s grace period of the test cluster's node lifecycle
    // controller, with the Lease renewed meanwhile.
    assert!(
        renewals.len() >= 2,
        "the lease was not renewed: {renewals:?} (before: {lease_before})"
    );
    let logs = c.kubectl(&["logs", "-n", &ns, "p199"]);
    assert!(logs.contains("arg: pod 199"), "{logs}");
}

/// Runs `DIR/stop` (written by scripts/demo) when dropped.
struct DemoGuard(std::path::PathBuf);

impl Drop for DemoGuard {
    fn drop(&mut self) {
        let stop = self.0.join("stop");
        if stop.exists() {
            let _ = std::process::Command::new(stop).status();
        }
    }
}

#[test]
fn kube_the_demo_federated_mean_equals_the_direct_mean() {
    let dir = tempfile::Builder::new()
        .prefix("sandlet-demo-")
        .tempdir()
        .unwrap();
    // The demo starts a container worker of its own.
    let _workers = crate::e2e::mixed::workers_shared();
    let _stop = DemoGuard(dir.path().to_owned());
    let out = std::process::Command::new(crate::fixtures::repo_root().join("scripts/demo"))
        .env("SANDLET_DEMO_DIR", dir.path())
        // The binary and module under test. Letting the demo build them
        // would re-link `debug/sandlet` (cargo test and cargo build unify
        // features differently) while other tests are executing it.
        .env("SANDLET_BIN", env!("CARGO_BIN_EXE_sandlet"))
        .env(
            "SANDLET_DEMO_MODULE",
            &crate::fixtures::guests().federated_mean,
        )
        .env("SANDLET_DEMO_COMBINE", crate::fixtures::combine_binary())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "scripts/demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let number = |prefix: &str| -> f64 {
        stdout
            .lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {prefix:?} line in:\n{stdout}"))
    };
    let federated = number("federated mean of bmi");
    let direct = number("direct mean of bmi");
    assert!((federated - direct).abs() < 1e-9, "{federated} != {direct}");
    // Every station ran its partial step on its own node, as a Job.
    for station in ["north", "east", "south"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.contains(&format!("partial-{station}-"))
                    && l.contains(&format!("on {station}"))),
            "no timeline for station {station}:\n{stdout}"
        );
    }
    // The stations ran only the reviewer's signed module, and every
    // partial reached the researcher sealed, opened with their key.
    assert!(
        stdout
            .lines()
            .any(|l| l.trim_start().starts_with("signed sha256:")),
        "the module was not signed:\n{stdout}"
    );
    for station in ["north", "east", "south"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.contains(&format!("station {station} "))
                    && l.contains("partial sealed (")
                    && l.contains("opened: {\"sum\":")),
            "no sealed partial of {station}:\n{stdout}"
        );
    }
    // The central step ran twice: as wasm on a sandlet node, and as a
    // container Job on the GPU worker, which saw its device.
    let gpu = number("the same, central step as a GPU container Job");
    assert_eq!(gpu, federated, "{stdout}");
    assert!(
        stdout.lines().any(|l| l.contains("combine-gpu-")
            && l.contains("on gpu-1")
            && l.contains("(container)")),
        "no GPU step on the worker:\n{stdout}"
    );
    assert!(
        stdout.contains("NVIDIA_VISIBLE_DEVICES=GPU-gpu-1-0"),
        "{stdout}"
    );
    assert!(stdout.contains("they agree."), "{stdout}");
}

#[test]
fn kube_an_algorithm_pod_gets_granted_datasets_and_reports_its_result() {
    let c = cluster();
    let registry = TestRegistry::start(RegistrySetup::default());
    let image = push(
        &registry,
        &guests().federated_mean,
        "algorithms/federated-mean:v1",
    );
    let (node, patients, data) =
        patients_station("algorithms", &registry, 300, 7, "alg-research", "");
    let ns = c.namespace("alg-research");
    let other = c.namespace("alg-other");
    let algorithm_pod = |name: &str, input: &str| {
        with_datasets(
            &wasm_pod(name, &node.name, &image, &[input], "Never"),
            "patients",
        )
    };
    let input = r#"{"dataset": "patients", "column": "bmi"}"#;
    c.apply(&ns, &algorithm_pod("partial", input));
    let pod = c.wait_phase(&ns, "partial", "Succeeded", LONG);
    let partial_uid = pod["metadata"]["uid"].as_str().unwrap().to_owned();
    let message = container_status(&pod)["state"]["terminated"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    let result: Value = serde_json::from_str(&message).unwrap();
    let sum: f64 = patients.bmis.iter().sum();
    assert_eq!(result["count"], 300);
    crate::fixtures::assert_close(result["sum"].as_f64().unwrap(), sum);

    // A hidden column: the algorithm's err() is the pod's failure message.
    c.apply(
        &ns,
        &algorithm_pod("hidden", r#"{"dataset": "patients", "column": "ssn"}"#),
    );
    let pod = c.wait_phase(&ns, "hidden", "Failed", LONG);
    let terminated = &container_status(&pod)["state"]["terminated"];
    assert_eq!(terminated["exitCode"], 1);
    assert!(
        terminated["message"]
            .as_str()
            .unwrap()
            .contains("not-granted"),
        "{terminated}"
    );

    // Another namespace is not granted the dataset.
    c.apply(&other, &algorithm_pod("elsewhere", input));
    let pod = c.wait_phase(&other, "elsewhere", "Failed", LONG);
    assert_eq!(pod["status"]["reason"], "DatasetNotGranted");

    // The station's policy, not the algorithm, refuses groups too small to
    // publish: grouping by bmi makes groups of one or two patients.
    let stats = push(
        &registry,
        &guests().column_stats,
        "algorithms/column-stats:v1",
    );
    let grouped = with_datasets(
        &wasm_pod(
            "by-bmi",
            &node.name,
            &stats,
            &[r#"{"dataset": "patients", "column": "age", "group_by": "bmi"}"#],
            "Never",
        ),
        "patients",
    );
    c.apply(&ns, &grouped);
    let pod = c.wait_phase(&ns, "by-bmi", "Failed", LONG);
    let message = container_status(&pod)["state"]["terminated"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(message.starts_with("denied: minGroupSize: "), "{message}");

    // Every query of these pods is on the node's audit record, as theirs,
    // and the chain verifies.
    let records = crate::local::audit::records(&node.state_dir);
    assert_eq!(
        crate::local::audit::verified_count(&node.state_dir),
        records.len() as u64
    );
    let of = |pod: &str| {
        records
            .iter()
            .find(|r| r["pod"] == pod)
            .unwrap_or_else(|| panic!("no record of {pod}: {records:#?}"))
    };
    let partial = of("partial");
    assert_eq!(partial["via"], "node");
    assert_eq!(partial["station"], node.name.as_str());
    assert_eq!(partial["namespace"], ns.as_str());
    assert_eq!(partial["pod_uid"], partial_uid.as_str());
    assert_eq!(partial["service_account"], "default");
    assert_eq!(partial["decision"], "answered");
    assert_eq!(partial["datasets"], serde_json::json!(["patients"]));
    assert!(
        partial["module_digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert_eq!(of("hidden")["decision"], "not-granted");
    assert_eq!(of("by-bmi")["decision"], "denied");
    assert_eq!(of("by-bmi")["rule"], "minGroupSize");
    // The node's counters, on /metrics (nodes/metrics, as the kubelet's).
    let pki = c.dir.join("pki");
    let (code, text) = curl(
        &[
            "--cert",
            pki.join("admin.crt").to_str().unwrap(),
            "--key",
            pki.join("admin.key").to_str().unwrap(),
        ],
        &format!("https://127.0.0.1:{}/metrics", node.port),
    );
    assert_eq!(code, 200, "{text}");
    assert!(
        text.contains("sandlet_data_queries_total{decision=\"denied\",rule=\"minGroupSize\"} 1\n"),
        "{text}"
    );
    let answered = records
        .iter()
        .filter(|r| r["decision"] == "answered")
        .count();
    assert!(
        text.contains(&format!(
            "sandlet_data_queries_total{{decision=\"answered\",rule=\"\"}} {answered}\n"
        )),
        "{text}"
    );

    // A hostPath volume may not reach around the policy to the files.
    let peek = format!(
        "{}  volumes: [{{name: data, hostPath: {{path: {dir}}}}}]\n",
        wasm_pod("peek", &node.name, &stats, &["{}"], "Never").replace(
            "    args:",
            "    volumeMounts: [{name: data, mountPath: /peek}]\n    args:"
        ),
        dir = data.path().display()
    );
    c.apply(&ns, &peek);
    let waiting = wait_waiting(&ns, "peek", &["CreateContainerConfigError"]);
    assert!(
        waiting["message"]
            .as_str()
            .unwrap_or("")
            .contains("would expose the files of dataset \"patients\""),
        "{waiting}"
    );
}

/// Pods spend their namespace's privacy budget on a private dataset: four
/// at once fit, the fifth is refused with the rule, another namespace has
/// its own account, and every charge is on the node's audit record.
#[test]
fn kube_pods_spend_their_namespaces_privacy_budget() {
    let c = cluster();
    let registry = TestRegistry::start(RegistrySetup::default());
    let stats = push(
        &registry,
        &guests().column_stats,
        "algorithms/column-stats:v1",
    );
    let (node, patients, _data) = patients_station(
        "private",
        &registry,
        300,
        11,
        "dp-a, dp-b",
        "    privacy: { epsilon: 1, perQuery: 0.25, delta: 1.0e-6, bounds: { bmi: [10, 40] } }\n",
    );
    let a = c.namespace("dp-a");
    let b = c.namespace("dp-b");
    let input = r#"{"dataset": "patients", "column": "bmi"}"#;
    let pod = |name: &str| {
        with_datasets(
            &wasm_pod(name, &node.name, &stats, &[input], "Never"),
            "patients",
        )
    };
    for i in 0..4 {
        c.apply(&a, &pod(&format!("spend-{i}")));
    }
    let (n, mean, _) = crate::fixtures::stats(&patients.bmis);
    for i in 0..4 {
        let done = c.wait_phase(&a, &format!("spend-{i}"), "Succeeded", LONG);
        let message = container_status(&done)["state"]["terminated"]["message"]
            .as_str()
            .unwrap()
            .to_owned();
        let result: Value = serde_json::from_str(&message).unwrap();
        assert_eq!(result["privacy"]["epsilon"], 0.25, "{result}");
        assert!(
            (result["count"].as_f64().unwrap() - n as f64).abs() < 100.0,
            "{result}"
        );
        assert!(
            (result["mean"].as_f64().unwrap() - mean).abs() < 10.0,
            "{result}"
        );
        assert!(result["mean_interval"].is_array(), "{result}");
    }
    c.apply(&a, &pod("spent"));
    let refused = c.wait_phase(&a, "spent", "Failed", LONG);
    let message = container_status(&refused)["state"]["terminated"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        message,
        format!(
            "limit-exceeded: privacy budget of dataset patients for namespace {a} is spent: \
             0 of 1 left, and this query needs 0.25"
        )
    );
    c.apply(&b, &pod("own-account"));
    c.wait_phase(&b, "own-account", "Succeeded", LONG);

    let records = crate::local::audit::records(&node.state_dir);
    let charges: Vec<(String, String)> = records
        .iter()
        .filter(|r| !r["privacy"].is_null())
        .map(|r| {
            (
                r["privacy"]["namespace"].as_str().unwrap().to_owned(),
                r["privacy"]["spent"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let mut spent_a: Vec<&str> = charges
        .iter()
        .filter(|(ns, _)| *ns == a)
        .map(|(_, spent)| spent.as_str())
        .collect();
    spent_a.sort();
    assert_eq!(spent_a, ["0.25", "0.5", "0.75", "1"], "{records:#?}");
    assert!(
        charges.contains(&(b.clone(), "0.25".to_owned())),
        "{charges:?}"
    );
    let refusal = records.iter().find(|r| r["pod"] == "spent").unwrap();
    assert_eq!(refusal["decision"], "limit-exceeded");
    assert_eq!(refusal["rule"], "privacy");
}

#[test]
fn kube_sigkill_of_the_node_in_a_burst_of_queries_leaves_every_answer_on_a_verifying_record() {
    let c = cluster();
    let registry = TestRegistry::start(RegistrySetup::default());
    let stats = push(
        &registry,
        &guests().column_stats,
        "algorithms/column-stats:v1",
    );
    let data = tempfile::tempdir().unwrap();
    crate::fixtures::write_patients(data.path(), "patients", 300, 7);
    let config = data.path().join("station.yaml");
    std::fs::write(
        &config,
        "datasets:\n  - name: patients\n    source: { csv: patients.csv }\n    policy: { allowedColumns: [age, sex, bmi] }\n",
    )
    .unwrap();
    let mut node = TestNode::start("burst", &registry, &["--config", config.to_str().unwrap()]);
    let ns = c.namespace("burst");
    let pods = 40;
    let burst: Vec<String> = (0..pods)
        .map(|i| {
            with_datasets(
                &wasm_pod(
                    &format!("q{i}"),
                    &node.name,
                    &stats,
                    &[r#"{"dataset": "patients", "column": "bmi", "group_by": "sex"}"#],
                    "Never",
                ),
                "patients",
            )
        })
        .collect();
    c.apply(&ns, &burst.join("---\n"));
    // Kill the node (SIGKILL) once a few pods have their answer.
    let succeeded = |c: &crate::cluster::Cluster| -> Vec<Value> {
        let list: Value =
            serde_json::from_str(&c.kubectl(&["get", "pods", "-n", &ns, "-o", "json"])).unwrap();
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["status"]["phase"] == "Succeeded")
            .cloned()
            .collect()
    };
    wait_for("a few answers", LONG, || {
        (succeeded(c).len() >= 3).then_some(())
    });
    node.kill();
    // Every answer a pod reported has its record, and the chain verifies.
    let answered = succeeded(c);
    let verify = |node: &TestNode| {
        let records = crate::local::audit::records(&node.state_dir);
        assert_eq!(
            crate::local::audit::verified_count(&node.state_dir),
            records.len() as u64
        );
        records
    };
    let records = verify(&node);
    eprintln!(
        "{} of {pods} pods answered before the kill; {} records",
        answered.len(),
        records.len()
    );
    for pod in &answered {
        let uid = pod["metadata"]["uid"].as_str().unwrap();
        let message = container_status(pod)["state"]["terminated"]["message"]
            .as_str()
            .unwrap_or("");
        assert!(message.contains("\"groups\""), "{message}");
        assert!(
            records
                .iter()
                .any(|r| r["pod_uid"] == uid && r["decision"] == "answered"),
            "pod {} answered without a record",
            pod["metadata"]["name"]
        );
    }
    // The node comes back and chains on.
    node.start_again();
    let before = records.len();
    c.apply(&ns, &burst[0].replace("name: q0", "name: after"));
    c.wait_phase(&ns, "after", "Succeeded", LONG);
    let records = verify(&node);
    assert!(records.len() > before, "no record after the restart");
    assert!(records.iter().any(|r| r["pod"] == "after"));
}

#[test]
fn kube_env_and_volumes_reach_the_guest_as_granted() {
    let c = cluster();
    let registry = TestRegistry::start(RegistrySetup::default());
    let hello = push(&registry, &guests().hello, "algorithms/hello:v1");
    let escape = push(&registry, &guests().escape, "tests/escape:v1");
    let node = TestNode::start("config", &registry, &[]);
    let ns = c.namespace("config");
    c.apply(
        &ns,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {MODE: fast, notes.txt: hello-notes}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: creds}\nstringData: {token: s3cret}\n",
    );
    let manifest = format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: configured, labels: {{team: stats}}}}
spec:
  restartPolicy: Never
  nodeSelector: {{kubernetes.io/hostname: {node}}}
  tolerations: [{{key: kubernetes.io/arch, operator: Equal, value: wasm32-wasi}}]
  volumes:
  - {{name: cfg, configMap: {{name: settings}}}}
  - {{name: scratch, emptyDir: {{}}}}
  - {{name: info, downwardAPI: {{items: [{{path: team, fieldRef: {{fieldPath: "metadata.labels['team']"}}}}]}}}}
  - {{name: sec, secret: {{secretName: creds}}}}
  containers:
  - name: env
    image: {hello}
    envFrom: [{{configMapRef: {{name: settings}}, prefix: CFG_}}]
    env:
    - {{name: TOKEN, valueFrom: {{secretKeyRef: {{name: creds, key: token}}}}}}
    - {{name: POD, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}
    - {{name: MEMORY_MI, valueFrom: {{resourceFieldRef: {{resource: limits.memory, divisor: 1Mi}}}}}}
    - {{name: GREETING, value: "mode $(CFG_MODE)"}}
    resources: {{limits: {{memory: 64Mi}}}}
  - name: reads-config
    image: {escape}
    args: [read, /cfg/notes.txt]
    volumeMounts: [{{name: cfg, mountPath: /cfg}}]
  - name: config-is-read-only
    image: {escape}
    args: [write, /cfg]
    volumeMounts: [{{name: cfg, mountPath: /cfg, readOnly: false}}]
  - name: writes-scratch
    image: {escape}
    args: [write-rw, /scratch]
    volumeMounts: [{{name: scratch, mountPath: /scratch}}]
  - name: reads-info
    image: {escape}
    args: [read, /info/team]
    volumeMounts: [{{name: info, mountPath: /info, readOnly: true}}]
  - name: reads-secret
    image: {escape}
    args: [read, /sec/token]
    volumeMounts: [{{name: sec, mountPath: /sec}}]
"#,
        node = node.name
    );
    c.apply(&ns, &manifest);
    let pod = wait_for("every container to finish", LONG, || {
        let pod = c.pod(&ns, "configured");
        pod["status"]["phase"]
            .as_str()
            .is_some_and(|p| p == "Succeeded" || p == "Failed")
            .then_some(pod)
    });
    let logs = |container: &str| c.kubectl(&["logs", "-n", &ns, "configured", "-c", container]);
    let env = logs("env");
    for line in [
        "env: CFG_MODE=fast",
        "env: TOKEN=s3cret",
        "env: POD=configured",
        "env: MEMORY_MI=64",
        "env: GREETING=mode fast",
    ] {
        assert!(env.contains(line), "{line} missing in:\n{env}");
    }
    // The escape guest reports a successful read as an escape (exit 10):
    // here reading the mounted file is exactly what was granted.
    let log = logs("reads-config");
    assert!(
        log.contains("read 11 bytes from /cfg/notes.txt"),
        "reads-config: {log}"
    );
    let log = logs("reads-info");
    assert!(
        log.contains("read 5 bytes from /info/team"),
        "reads-info: {log}"
    );
    let log = logs("reads-secret");
    assert!(
        log.contains("read 6 bytes from /sec/token"),
        "reads-secret: {log}"
    );
    // The Secret's file and the service-account token were written to the
    // runtime directory, never under the state directory (whose only copy
    // of the value is the env container's own log line).
    let files_with = |root: &std::path::Path, needle: &[u8]| -> Vec<std::path::PathBuf> {
        let mut found = Vec::new();
        let mut stack = vec![root.to_owned()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap().flatten() {
                let path = entry.path();
                if entry.file_type().unwrap().is_dir() {
                    stack.push(path);
                } else if std::fs::read(&path)
                    .is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle))
                {
                    found.push(path);
                }
            }
        }
        found
    };
    let in_state = files_with(&node.state_dir, b"s3cret");
    assert!(
        in_state
            .iter()
            .all(|p| p.extension().is_some_and(|e| e == "log")),
        "the Secret's value was written under the state directory: {in_state:?}"
    );
    let in_runtime = files_with(&node.runtime_dir, b"s3cret");
    assert!(
        in_runtime.iter().any(|p| p.ends_with("sec/token")),
        "the Secret volume is not in the runtime directory: {in_runtime:?}"
    );
    let tokens_in_state = files_with(&node.state_dir.join("pods"), b"eyJ");
    assert!(
        tokens_in_state.is_empty(),
        "a service-account token was written under the state directory: {tokens_in_state:?}"
    );
    let log = logs("config-is-read-only");
    assert!(
        log.contains("contained: no write succeeded in /cfg"),
        "config-is-read-only: {log}"
    );
    let log = logs("writes-scratch");
    assert!(log.contains("wrote"), "writes-scratch: {log}");
    let statuses = pod["status"]["containerStatuses"].as_array().unwrap();
    let exit = |name: &str| {
        statuses.iter().find(|s| s["name"] == name).unwrap()["state"]["terminated"]["exitCode"]
            .clone()
    };
    assert_eq!(exit("env"), 0);
    assert_eq!(exit("config-is-read-only"), 0);
    assert_eq!(exit("writes-scratch"), 0);
}

#[test]
fn kube_modules_outside_the_allow_list_fail_before_they_run() {
    let c = cluster();
    let registry = TestRegistry::start(RegistrySetup::default());
    let hello = push(&registry, &guests().hello, "algorithms/hello:v1");
    let other = push(&registry, &guests().hello, "unvetted/hello:v1");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("station.yaml");
    std::fs::write(
        &config,
        format!(
            "modules:\n  allow:\n    - repository: {}/algorithms/*\n",
            registry.addr
        ),
    )
    .unwrap();
    let node = TestNode::start(
        "allowlist",
        &registry,
        &["--config", config.to_str().unwrap()],
    );
    let ns = c.namespace("allowlist");
    c.apply(&ns, &wasm_pod("vetted", &node.name, &hello, &[], "Never"));
    c.apply(&ns, &wasm_pod("unvetted", &node.name, &other, &[], "Never"));
    c.wait_phase(&ns, "vetted", "Succeeded", LONG);
    let pod = c.wait_phase(&ns, "unvetted", "Failed", LONG);
    assert_eq!(pod["status"]["reason"], "ModuleNotAllowed");
    assert!(
        container_status(&pod)["state"]["waiting"].is_object(),
        "it never ran"
    );
    let events = c.events(&ns, "unvetted");
    assert!(
        events.iter().any(|e| e.starts_with("ModuleNotAllowed")),
        "{events:?}"
    );
}

#[test]
fn kube_a_station_that_names_keys_runs_only_modules_they_signed() {
    let c = cluster();
    let registry = TestRegistry::start(RegistrySetup::default());
    let dir = tempfile::tempdir().unwrap();
    let (reviewer, _) = crate::services::signing::key_pair(dir.path(), "reviewer");
    let (stranger, _) = crate::services::signing::key_pair(dir.path(), "stranger");
    // The same module under three names: only the signature differs.
    let signed = push(&registry, &guests().hello, "alg/signed:v1");
    let unsigned = push(&registry, &guests().hello, "alg/unsigned:v1");
    let foreign = push(&registry, &guests().hello, "alg/foreign:v1");
    assert_eq!(
        crate::services::signing::sign(&registry, &signed, &reviewer).code,
        Some(0)
    );
    assert_eq!(
        crate::services::signing::sign(&registry, &foreign, &stranger).code,
        Some(0)
    );
    let config = dir.path().join("station.yaml");
    std::fs::write(
        &config,
        format!(
            "modules:\n  allow:\n    - repository: {}/alg/*\n      keys: [reviewer.pub]\n",
            registry.addr
        ),
    )
    .unwrap();
    let node = TestNode::start(
        "signedonly",
        &registry,
        &["--config", config.to_str().unwrap()],
    );
    let ns = c.namespace("signedonly");
    c.apply(&ns, &wasm_pod("signed", &node.name, &signed, &[], "Never"));
    c.wait_phase(&ns, "signed", "Succeeded", LONG);
    assert!(
        c.kubectl(&["logs", "-n", &ns, "signed"])
            .contains("hello from wasm")
    );
    // Its bytes are on the node now; the other names are refused all the
    // same, for want of the reviewer's signature.
    for (name, reference, reason) in [
        ("unsigned", &unsigned, "it has no signature"),
        ("foreign", &foreign, "no trusted key made this signature"),
    ] {
        c.apply(&ns, &wasm_pod(name, &node.name, reference, &[], "Never"));
        let pod = c.wait_phase(&ns, name, "Failed", LONG);
        assert_eq!(pod["status"]["reason"], "ModuleNotAllowed");
        let message = pod["status"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(&format!("no valid signature by a trusted key: {reason}")),
            "{pod}"
        );
        assert!(
            container_status(&pod)["state"]["waiting"].is_object(),
            "it never ran: {pod}"
        );
        let events = c.events(&ns, name);
        assert!(
            events
                .iter()
                .any(|e| e.starts_with("ModuleNotAllowed") && e.contains(reason)),
            "{events:?}"
        );
    }
}

#[test]
fn kube_active_deadline_seconds_fails_a_pod_that_runs_too_long() {
    let c = cluster();
    let (registry, hello) = registry_with_hello();
    let node = TestNode::start("deadline", &registry, &[]);
    let ns = c.namespace("deadline");
    let manifest = wasm_pod("slow", &node.name, &hello, &["--sleep", "600"], "OnFailure")
        .replace("spec:\n", "spec:\n  activeDeadlineSeconds: 3\n");
    c.apply(&ns, &manifest);
    let started = Instant::now();
    let pod = c.wait_phase(&ns, "slow", "Failed", LONG);
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(pod["status"]["reason"], "DeadlineExceeded");
    let terminated = &container_status(&pod)["state"]["terminated"];
    assert_eq!(terminated["exitCode"], 137);
    assert_eq!(
        container_status(&pod)["restartCount"],
        0,
        "a stopped pod is not restarted"
    );
}

#[test]
fn kube_image_pull_secrets_authenticate_to_the_registry() {
    let c = cluster();
    let registry = TestRegistry::start(RegistrySetup {
        tls: false,
        auth: true,
    });
    let config = registry.docker_config(crate::registry::USER, crate::registry::PASSWORD);
    let reference = format!("{}/private/hello:v1", registry.addr);
    let pushed = crate::fixtures::run_sandlet([
        std::ffi::OsString::from("push"),
        "--insecure-registry".into(),
        registry.addr.clone().into(),
        "--registry-config".into(),
        config.clone().into(),
        guests().hello.clone().into(),
        reference.clone().into(),
    ]);
    assert_eq!(pushed.code, Some(0), "{}", pushed.stderr);
    let node = TestNode::start("secrets", &registry, &[]);
    // Always pull: a module already on the node would otherwise be used
    // without credentials (IfNotPresent), as Kubernetes does for images.
    let always = |manifest: String| {
        manifest.replace("    image:", "    imagePullPolicy: Always\n    image:")
    };
    let ns = c.namespace("secrets");
    let secret = c.kubectl(&[
        "create",
        "secret",
        "generic",
        "registry",
        "-n",
        &ns,
        "--type=kubernetes.io/dockerconfigjson",
        &format!("--from-file=.dockerconfigjson={}", config.display()),
    ]);
    assert!(secret.contains("created"), "{secret}");
    c.apply(
        &ns,
        &always(wasm_pod("anonymous", &node.name, &reference, &[], "Never")),
    );
    let with_secret = wasm_pod("authorised", &node.name, &reference, &["private"], "Never")
        .replace(
            "  containers:\n",
            "  imagePullSecrets: [{name: registry}]\n  containers:\n",
        );
    c.apply(&ns, &always(with_secret));
    c.wait_phase(&ns, "authorised", "Succeeded", LONG);
    let logs = c.kubectl(&["logs", "-n", &ns, "authorised"]);
    assert!(logs.contains("arg: private"), "{logs}");
    let waiting = wait_waiting(&ns, "anonymous", &["ErrImagePull", "ImagePullBackOff"]);
    assert!(
        waiting["message"]
            .as_str()
            .unwrap()
            .contains("refused the credentials"),
        "{waiting}"
    );
}

#[test]
fn kube_a_changed_config_map_or_secret_reaches_the_next_pod_at_once() {
    // Regression: the node read ConfigMaps and Secrets through a 2 s cache,
    // so a pod started just after a change could see the old value. They
    // are watched now.
    let c = cluster();
    let (registry, hello) = registry_with_hello();
    let node = TestNode::start("watched", &registry, &[]);
    let ns = c.namespace("watched");
    let objects = |mode: &str, token: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: settings}}\ndata: {{MODE: {mode}}}\n---\n\
             apiVersion: v1\nkind: Secret\nmetadata: {{name: creds}}\nstringData: {{token: {token}}}\n"
        )
    };
    let pod = |name: &str| {
        wasm_pod(name, &node.name, &hello, &[], "Never").replace(
            "    args: []\n",
            "    args: []\n    env:\n    - {name: MODE, valueFrom: {configMapKeyRef: {name: settings, key: MODE}}}\n    \
             - {name: TOKEN, valueFrom: {secretKeyRef: {name: creds, key: token}}}\n",
        )
    };
    let env_of = |name: &str| {
        c.wait_phase(&ns, name, "Succeeded", LONG);
        let logs = c.kubectl(&["logs", "-n", &ns, name]);
        let value = |key: &str| {
            logs.lines()
                .find_map(|l| l.strip_prefix(&format!("env: {key}=")))
                .unwrap_or_else(|| panic!("no {key} in {logs}"))
                .to_owned()
        };
        (value("MODE"), value("TOKEN"))
    };
    c.apply(&ns, &objects("v1", "t1"));
    c.apply(&ns, &pod("first"));
    assert_eq!(env_of("first"), ("v1".into(), "t1".into()));
    // Changed, then a pod at once: the new values.
    c.apply(&ns, &objects("v2", "t2"));
    c.apply(&ns, &pod("second"));
    assert_eq!(env_of("second"), ("v2".into(), "t2".into()));
    // Deleted: the next pod waits for it, and runs once it is back.
    c.kubectl(&["delete", "-n", &ns, "configmap", "settings"]);
    c.apply(&ns, &pod("third"));
    wait_waiting(&ns, "third", &["CreateContainerConfigError"]);
    // Only the ConfigMap comes back: two objects are two watches, whose
    // events the API server orders per object only, so a pod released by
    // one object's event may not yet see another's change made in the same
    // apply (the kubelet's Watch strategy guarantees no more; this step
    // failed under load when it also changed the Secret).
    c.apply(
        &ns,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {MODE: v3}\n",
    );
    assert_eq!(env_of("third"), ("v3".into(), "t2".into()));
}

#[test]
fn kube_host_files_are_given_as_single_files_and_written_back_before_the_pod_ends() {
    let c = cluster();
    let registry = TestRegistry::start(RegistrySetup::default());
    let hello = push(&registry, &guests().hello, "algorithms/hello:v1");
    let escape = push(&registry, &guests().escape, "tests/escape:v1");
    let node = TestNode::start("files", &registry, &[]);
    let ns = c.namespace("files");
    // A task directory as vantage6's node writes one: the pod is granted
    // `input` and `output`, not their neighbour.
    let task = tempfile::tempdir().unwrap();
    let file = |name: &str, content: &str| {
        let path = task.path().join(name);
        std::fs::write(&path, content).unwrap();
        path
    };
    let input = file("input", "question");
    let output = file("output", "");
    let sibling = file("token", "the neighbour's secret");
    let created = task.path().join("created");
    let manifest = format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: files}}
spec:
  restartPolicy: Never
  nodeSelector: {{kubernetes.io/hostname: {node}}}
  tolerations: [{{key: kubernetes.io/arch, operator: Equal, value: wasm32-wasi}}]
  volumes:
  - {{name: in, hostPath: {{path: {input}, type: File}}}}
  - {{name: out, hostPath: {{path: {output}, type: File}}}}
  - {{name: new, hostPath: {{path: {created}, type: FileOrCreate}}}}
  - {{name: scratch, hostPath: {{path: {scratch}, type: FileOrCreate}}}}
  containers:
  - name: writes-output
    image: {hello}
    args: [--append, /task/output]
    volumeMounts:
    - {{name: in, mountPath: /task/input, readOnly: true}}
    - {{name: out, mountPath: /task/output}}
  - name: writes-created
    image: {hello}
    args: [--append, /made/created]
    volumeMounts: [{{name: new, mountPath: /made/created}}]
  - name: reads-input
    image: {escape}
    args: [read, /task/input]
    volumeMounts: [{{name: in, mountPath: /task/input, readOnly: true}}]
  - name: neighbour-hidden
    image: {escape}
    args: [read, /task/token]
    volumeMounts: [{{name: in, mountPath: /task/input, readOnly: true}}]
  - name: neighbour-hidden-dotdot
    image: {escape}
    args: [read, /task/input/../token]
    volumeMounts: [{{name: in, mountPath: /task/input, readOnly: true}}]
  - name: read-only-file
    image: {escape}
    args: [write, /ro]
    volumeMounts: [{{name: in, mountPath: /ro/existing.txt, readOnly: true}}]
  - name: read-only-tampered-copy
    image: {hello}
    args: [--append, /task/input]
    volumeMounts:
    - {{name: in, mountPath: /task/input, readOnly: true}}
    - {{name: scratch, mountPath: /task/scratch}}
"#,
        node = node.name,
        input = input.display(),
        output = output.display(),
        created = created.display(),
        scratch = task.path().join("scratch").display(),
    );
    c.apply(&ns, &manifest);
    // The moment the writer is reported terminated, its output is in the
    // host file: whoever waits for the pod reads the final content.
    let status_of = |pod: &Value, name: &str| {
        pod["status"]["containerStatuses"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["name"] == name))
            .cloned()
            .unwrap_or(Value::Null)
    };
    let writer = wait_for("the writer to be reported terminated", LONG, || {
        let pod = c.pod(&ns, "files");
        let status = status_of(&pod, "writes-output");
        (!status["state"]["terminated"].is_null()).then_some(status)
    });
    let written = std::fs::read_to_string(&output).unwrap();
    assert_eq!(writer["state"]["terminated"]["exitCode"], 0, "{writer}");
    assert!(
        written.contains("run"),
        "output when reported terminated: {written:?}"
    );
    let pod = wait_for("every container to finish", LONG, || {
        let pod = c.pod(&ns, "files");
        pod["status"]["phase"]
            .as_str()
            .is_some_and(|p| p == "Succeeded" || p == "Failed")
            .then_some(pod)
    });
    let logs = |container: &str| c.kubectl(&["logs", "-n", &ns, "files", "-c", container]);
    let exit = |name: &str| status_of(&pod, name)["state"]["terminated"]["exitCode"].clone();
    // Reading the granted file is what was granted (the escape guest calls
    // any successful read an escape, exit 10).
    let log = logs("reads-input");
    assert!(
        log.contains("read 8 bytes from /task/input"),
        "reads-input: {log}"
    );
    // Its neighbour in the host directory is not there, however named.
    for name in ["neighbour-hidden", "neighbour-hidden-dotdot"] {
        let log = logs(name);
        assert!(log.contains("contained"), "{name}: {log}");
        assert_eq!(exit(name), 0, "{name}: {log}");
    }
    // A read-only file cannot be written, removed or added to.
    let log = logs("read-only-file");
    assert!(
        log.contains("contained: no write succeeded in /ro"),
        "{log}"
    );
    assert_eq!(exit("read-only-file"), 0);
    // Beside a read-write file its copy can be changed, but the host file
    // never is.
    assert_eq!(exit("read-only-tampered-copy"), 0);
    assert_eq!(std::fs::read_to_string(&input).unwrap(), "question");
    assert_eq!(
        std::fs::read_to_string(&sibling).unwrap(),
        "the neighbour's secret"
    );
    // FileOrCreate made the file, and the guest's line reached it.
    assert_eq!(exit("writes-created"), 0);
    assert_eq!(std::fs::read_to_string(&created).unwrap(), "run\n");
    assert_eq!(std::fs::read_to_string(&output).unwrap(), "run\n");

    // A file volume with a subPath, and a file in a directory that is
    // mounted as well, cannot be given: the reason is in the status.
    let clash = format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: clash}}
spec:
  restartPolicy: Never
  nodeSelector: {{kubernetes.io/hostname: {node}}}
  tolerations: [{{key: kubernetes.io/arch, operator: Equal, value: wasm32-wasi}}]
  volumes:
  - {{name: in, hostPath: {{path: {input}, type: File}}}}
  - {{name: scratch, emptyDir: {{}}}}
  containers:
  - name: main
    image: {hello}
    volumeMounts:
    - {{name: in, mountPath: /task/input}}
    - {{name: scratch, mountPath: /task}}
"#,
        node = node.name,
        input = input.display(),
    );
    c.apply(&ns, &clash);
    let waiting = wait_waiting(&ns, "clash", &["CreateContainerConfigError"]);
    assert!(
        waiting["message"]
            .as_str()
            .unwrap_or("")
            .contains("also a directory mount"),
        "{waiting}"
    );
}

#[test]
fn kube_a_namespace_default_grant_reaches_pods_without_the_annotation() {
    let c = cluster();
    let registry = TestRegistry::start(RegistrySetup::default());
    let image = push(
        &registry,
        &guests().federated_mean,
        "algorithms/federated-mean:v1",
    );
    let (node, patients, _data) = patients_station(
        "default-grants",
        &registry,
        120,
        3,
        "grant-tasks, grant-named",
        "defaultGrants:\n  - namespace: grant-tasks\n    datasets: [patients]\n",
    );
    let tasks = c.namespace("grant-tasks");
    let named = c.namespace("grant-named");
    let input = r#"{"dataset": "patients", "column": "bmi"}"#;
    let pod = |name: &str| wasm_pod(name, &node.name, &image, &[input], "Never");
    let message = |pod: &Value| {
        container_status(pod)["state"]["terminated"]["message"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    };
    // No annotation, in the namespace with a default grant: granted.
    c.apply(&tasks, &pod("unannotated"));
    let done = c.wait_phase(&tasks, "unannotated", "Succeeded", LONG);
    let result: Value = serde_json::from_str(&message(&done)).unwrap();
    assert_eq!(result["count"], 120);
    crate::fixtures::assert_close(result["sum"].as_f64().unwrap(), patients.bmis.iter().sum());
    // A namespace the dataset allows but without a default: the pod must
    // ask, and without asking the guest cannot see the dataset.
    c.apply(&named, &pod("unasked"));
    let failed = c.wait_phase(&named, "unasked", "Failed", LONG);
    assert!(message(&failed).contains("not-granted"), "{failed}");
    c.apply(&named, &with_datasets(&pod("asked"), "patients"));
    c.wait_phase(&named, "asked", "Succeeded", LONG);
    // The default namespace gets nothing.
    let other = c.namespace("grant-other");
    c.apply(&other, &pod("elsewhere"));
    let failed = c.wait_phase(&other, "elsewhere", "Failed", LONG);
    assert!(message(&failed).contains("not-granted"), "{failed}");
    // Every access, default or asked for, is on the audit record with its
    // namespace and the datasets it was granted.
    let records = crate::local::audit::records(&node.state_dir);
    for (namespace, pod) in [(&tasks, "unannotated"), (&named, "asked")] {
        let record = records
            .iter()
            .find(|r| r["pod"] == pod)
            .unwrap_or_else(|| panic!("no record of {pod}: {records:#?}"));
        assert_eq!(record["namespace"], namespace.as_str());
        assert_eq!(record["decision"], "answered");
        assert_eq!(record["datasets"], serde_json::json!(["patients"]));
    }
}
