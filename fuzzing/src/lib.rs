//! sandlet's fuzz targets and a stable-Rust runner for them.
//!
//! Each target takes arbitrary bytes to one of the node's parsers of
//! hostile input and checks what must hold whatever the input: no panic,
//! and for some an invariant besides (a routed log path names only
//! Kubernetes names; an admitted pod's plan agrees with its spec). The
//! same functions serve libFuzzer (`fuzz/`, `cargo +nightly fuzz run
//! TARGET`, for long coverage-guided runs) and [`runner`], which mutates the
//! checked-in corpus (`fuzz/corpus/TARGET`) for a bounded number of
//! iterations on stable Rust, as `scripts/test` does.
//!
//! This crate owns the targets, their dictionaries and the runner. It never
//! touches the network or files outside a temporary directory, and no
//! target holds state from one input to the next (the wasm engine aside,
//! which compiles each module afresh).

pub mod mutate;
pub mod runner;

use std::path::Path;
use std::sync::OnceLock;

use k8s_openapi::api::core::v1::Pod;
pub use mutate::Format;
use sandlet_kubelet::api::Route;
use sandlet_kubelet::pods::PodPlan;
use sandlet_runtime::{EngineOptions, SandboxEngine};
use sandlet_station::StationConfig;

/// One fuzz target.
pub struct Target {
    /// Also the corpus directory's name and the libFuzzer binary's.
    pub name: &'static str,
    pub(crate) run: fn(&[u8]),
    /// How its inputs are structured.
    pub format: Format,
    /// Tokens the mutator splices in.
    pub dictionary: &'static [&'static str],
}

/// Every target.
pub const TARGETS: &[Target] = &[
    Target {
        name: "station_yaml",
        run: station_yaml,
        format: Format::Yaml,
        dictionary: &[
            "datasets:",
            "- name: ",
            "source:",
            "{ csv: ",
            "{ parquet: ",
            "postgres:",
            "url: ",
            "table: ",
            "policy:",
            "minGroupSize: ",
            "minRows: ",
            "aggregatesOnly: ",
            "maxResultRows: ",
            "rawFiles: ",
            "allowedNamespaces: [",
            "allowedColumns: [",
            "queryTimeout: ",
            "queryMemory: ",
            "modules:",
            "allow:",
            "- repository: ",
            "digests: [sha256:",
            "keys: [",
            "&a ",
            "*a",
            "!!binary ",
            "<<: ",
            "~",
            "\"\\u0000\"",
            "'",
            "\n  ",
            "-1",
            "18446744073709551616",
            ".nan",
        ],
    },
    Target {
        name: "pod_admission",
        run: pod_admission,
        format: Format::Json,
        dictionary: &[
            "\"spec\":",
            "\"containers\":[",
            "\"initContainers\":[",
            "\"name\":",
            "\"image\":",
            "\"args\":[",
            "\"env\":[",
            "\"valueFrom\":",
            "\"volumeMounts\":[",
            "\"mountPath\":",
            "\"subPath\":",
            "\"readOnly\":",
            "\"volumes\":[",
            "\"hostPath\":{\"path\":\"/\"}",
            "\"emptyDir\":{}",
            "\"configMap\":{\"name\":\"c\"}",
            "\"secret\":{\"secretName\":\"s\"}",
            "\"projected\":",
            "\"resources\":{\"limits\":{\"memory\":",
            "\"1e400\"",
            "\"64Mi\"",
            "\"activeDeadlineSeconds\":",
            "\"terminationGracePeriodSeconds\":",
            "\"restartPolicy\":",
            "\"annotations\":{\"sandlet.dev/datasets\":",
            "\"hostNetwork\":true",
            "\"securityContext\":{\"privileged\":true}",
            "\"../../etc\"",
            "-9223372036854775808",
            "null",
        ],
    },
    Target {
        name: "oci_manifest",
        run: oci_manifest,
        format: Format::Json,
        dictionary: &[
            "\"schemaVersion\":2",
            "\"mediaType\":",
            "\"application/vnd.oci.image.manifest.v1+json\"",
            "\"application/vnd.oci.image.index.v1+json\"",
            "\"application/wasm\"",
            "\"application/vnd.wasm.content.layer.v1+wasm\"",
            "\"config\":",
            "\"layers\":[",
            "\"manifests\":[",
            "\"platform\":{\"os\":\"wasip2\",\"architecture\":\"wasm\"}",
            "\"digest\":\"sha256:",
            "\"size\":",
            "\"annotations\":{",
            "-1",
            "18446744073709551616",
        ],
    },
    Target {
        name: "docker_config",
        run: docker_config,
        format: Format::Json,
        dictionary: &[
            "{\"auths\":{",
            "\"auth\":\"",
            "\"username\":\"",
            "\"password\":\"",
            "https://",
            "index.docker.io/v1/",
            "localhost:5000",
            "dXNlcjpwYXNz",
            "=",
            "\\u0000",
        ],
    },
    Target {
        name: "kubelet_path",
        run: kubelet_path,
        format: Format::Bytes,
        dictionary: &[
            "/containerLogs/",
            "/metrics/resource",
            "/metrics",
            "/healthz",
            "/exec/",
            "/portForward/",
            "..",
            "%2f",
            "%2e",
            "%00",
            "//",
            "?",
            "&",
            "follow=true",
            "previous=1",
            "timestamps",
            "tailLines=",
            "limitBytes=",
            "sinceSeconds=",
            "sinceTime=",
            "9223372036854775807",
            "-9223372036854775808",
        ],
    },
    Target {
        name: "module",
        run: module,
        format: Format::Wasm,
        dictionary: &[
            "\0asm\x01\0\0\0",
            "\0asm\x0d\0\x01\0",
            "_start",
            "wasi:cli/run@0.2.0",
            "wasi_snapshot_preview1",
            "sandlet:algorithm/data",
            "memory",
            "run",
        ],
    },
];

/// The target named `name`.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

/// A station file: parsed and validated, or refused with an error; never a
/// panic. Relative paths resolve under a directory that does not exist.
pub fn station_yaml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("/nonexistent/station.yaml");
    if let Err(error) = StationConfig::parse(text, path, Path::new("/nonexistent")) {
        // Every refusal names the file.
        assert!(
            error.to_string().contains("station.yaml"),
            "an error that does not name the file: {error}"
        );
    }
}

/// A Pod as the API server would send it (JSON), admitted or rejected
/// against a station with one dataset; an admitted plan has a container
/// for every container of the spec, named as in the spec.
pub fn pod_admission(data: &[u8]) {
    let Ok(pod) = serde_json::from_slice::<Pod>(data) else {
        return;
    };
    let station = station();
    match PodPlan::from_pod(&pod, Some(&station.data)) {
        Ok(plan) => {
            let spec = pod.spec.as_ref().expect("an admitted pod has a spec");
            assert_eq!(plan.containers.len(), spec.containers.len());
            for (planned, container) in plan.containers.iter().zip(&spec.containers) {
                assert_eq!(planned.name, container.name);
            }
            assert_eq!(
                plan.init_containers.len(),
                spec.init_containers.as_ref().map_or(0, Vec::len)
            );
        }
        Err(rejection) => {
            assert!(!rejection.to_string().is_empty());
        }
    }
}

fn station() -> &'static StationConfig {
    static STATION: OnceLock<StationConfig> = OnceLock::new();
    STATION.get_or_init(|| {
        StationConfig::parse(
            "datasets:\n  - name: patients\n    source: { csv: patients.csv }\n    policy: { allowedNamespaces: [default, research] }\n",
            Path::new("/nonexistent/station.yaml"),
            Path::new("/nonexistent"),
        )
        .expect("the fuzz station parses")
    })
}

/// An image manifest or index (JSON) as the registry client parses it,
/// then sandlet's choice of the wasm layer or index entry; a chosen layer's
/// digest either parses or is refused.
pub fn oci_manifest(data: &[u8]) {
    use oci_client::manifest::OciManifest;
    let Ok(manifest) = serde_json::from_slice::<OciManifest>(data) else {
        return;
    };
    match manifest {
        OciManifest::Image(image) => {
            if let Ok(layer) = sandlet_registry::oci::wasm_layer(&image, "fuzz/image:v1") {
                let _ = layer.digest.parse::<sandlet_core::Digest>();
            }
        }
        OciManifest::ImageIndex(index) => {
            if let Some(digest) = sandlet_registry::oci::wasm_platform(&index.manifests) {
                assert!(index.manifests.iter().any(|m| m.digest == digest));
            }
        }
    }
}

/// A docker config (an image pull Secret's `.dockerconfigjson`): parsed or
/// refused with an error; never a panic.
pub fn docker_config(data: &[u8]) {
    let _ = sandlet_registry::oci::Credentials::from_docker_config(data);
}

/// A kubelet API request line: the first byte picks the method, the rest
/// is the path and query. A routed log request names only Kubernetes
/// names (no `/`, `%`, `..`, upper case), is authorized as `proxy`, and its
/// query either parses or is refused.
pub fn kubelet_path(data: &[u8]) {
    use hyper::Method;
    let Some((first, rest)) = data.split_first() else {
        return;
    };
    let method = match first % 4 {
        0 => Method::GET,
        1 => Method::POST,
        2 => Method::DELETE,
        _ => Method::PUT,
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let (path, query) = text.split_once('?').unwrap_or((text, ""));
    let accesses = sandlet_kubelet::api::accesses(&method, path);
    assert!(!accesses.is_empty());
    match sandlet_kubelet::api::route(&method, path) {
        Route::ContainerLogs {
            namespace,
            pod,
            container,
        } => {
            for name in [namespace, pod, container] {
                assert!(!name.is_empty() && name.len() <= 253, "{name:?}");
                assert!(
                    name.bytes().all(|b| b.is_ascii_lowercase()
                        || b.is_ascii_digit()
                        || b == b'-'
                        || b == b'.'),
                    "{name:?}"
                );
                assert!(!name.contains(".."), "{name:?}");
            }
            assert!(!container.contains('.') && !namespace.contains('.'));
            assert_eq!(accesses.last().map(|a| a.subresource), Some("proxy"));
            let _ = sandlet_kubelet::pods::LogOptions::from_query(query);
        }
        Route::Invalid(reason) => assert!(reason.starts_with("invalid "), "{reason}"),
        Route::Healthz | Route::Metrics | Route::ResourceMetrics => {
            assert_eq!(method, Method::GET);
        }
        Route::Unsupported(_) | Route::NotFound => {}
    }
}

/// Wasm bytes handed to the engine as a pulled module is: compiled and
/// prepared, or refused with an error; never a panic.
pub fn module(data: &[u8]) {
    static ENGINE: OnceLock<SandboxEngine> = OnceLock::new();
    let engine = ENGINE.get_or_init(|| {
        SandboxEngine::new(EngineOptions {
            max_concurrent_runs: 1,
        })
        .expect("a wasm engine")
    });
    let _ = engine.load(data);
}
