//! Admission: a pod as written, checked into a [`PodPlan`] this node can run.
//!
//! This module owns every decision about whether a pod *can* run here, made
//! before anything is pulled or started: GPU and other device requests,
//! volume types, fields wasm has no meaning for, restart policy, deadlines,
//! and which datasets the pod is granted. It does no IO; what it refuses
//! comes back as a [`Rejection`] with the reason the pod's status shows.
//!
//! What needs the API server (ConfigMaps, Secrets, tokens) is resolved
//! later by [`crate::pods::volumes`] and [`crate::pods::env`], from the
//! references kept here.
//!
//! It must never do IO, grant a dataset beyond its `allowedNamespaces`,
//! nor admit a pod whose seal annotations are invalid.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, Volume};
use sandlet_data::DataConfig;
use sandlet_registry::pull::PullPolicy;
use sandlet_runtime::limits;

/// The annotation with which a pod asks for datasets (docs/reference/pods.md).
pub(crate) const DATASETS_ANNOTATION: &str = "sandlet.dev/datasets";

/// The annotation naming the age X25519 recipient (`age1...`) a pod's
/// results are sealed to (docs/reference/cli.md).
pub(crate) const SEAL_TO_ANNOTATION: &str = "sandlet.dev/seal-to";

/// The annotation (`"true"`) asking that a sealed pod's logs be sealed too.
pub(crate) const SEAL_LOGS_ANNOTATION: &str = "sandlet.dev/seal-logs";

/// Kubernetes' default grace period for a pod without one.
pub(crate) const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(30);

/// The RuntimeClass whose pods this node runs (docs/reference/pods.md); a pod
/// with no runtime class runs here too.
pub(crate) const RUNTIME_CLASS: &str = "sandlet";

/// Resources a wasm sandbox can honour; any other request (GPUs, hugepages,
/// device-plugin resources) cannot be met here.
const SUPPORTED_RESOURCES: [&str; 3] = ["cpu", "memory", "ephemeral-storage"];

/// Why this node refuses a pod. `reason` is the CamelCase word shown in the
/// pod's status and Event; `message` says what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct Rejection {
    pub(crate) reason: &'static str,
    pub(crate) message: String,
}

fn reject(reason: &'static str, message: impl Into<String>) -> Rejection {
    Rejection {
        reason,
        message: message.into(),
    }
}

/// `restartPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

impl RestartPolicy {
    /// Whether a container that ended with `exit_code` starts again.
    pub(crate) fn restarts(self, exit_code: i32) -> bool {
        match self {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => exit_code != 0,
            RestartPolicy::Never => false,
        }
    }
}

/// A volume mounted into a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MountPlan {
    pub(crate) volume: String,
    /// Absolute guest path.
    pub(crate) guest_path: String,
    pub(crate) read_only: bool,
    /// Mount only this path inside the volume.
    pub(crate) sub_path: Option<String>,
}

/// One container, checked.
#[derive(Debug, Clone)]
pub struct ContainerPlan {
    /// The container's name.
    pub name: String,
    pub(crate) image: String,
    pub(crate) pull_policy: PullPolicy,
    /// `command` then `args`; for algorithms the first entry is the input.
    pub(crate) args: Vec<String>,
    /// The container as written, for env resolution.
    pub(crate) spec: Container,
    pub(crate) mounts: Vec<MountPlan>,
    /// `resources.limits.memory`, if set.
    pub(crate) memory_limit: Option<u64>,
}

/// To whom a pod's results are sealed, and whether its logs are too.
#[derive(Debug, Clone)]
pub(crate) struct SealPlan {
    pub(crate) recipient: sandlet_trust::seal::Recipient,
    /// Whether the container logs are sealed (kept in memory while the
    /// container runs and written as one sealed block when it ends).
    pub(crate) logs: bool,
}

/// A pod this node can run.
#[derive(Debug, Clone)]
pub struct PodPlan {
    /// The init containers, in the order they run.
    pub init_containers: Vec<ContainerPlan>,
    /// The containers, all run at once.
    pub containers: Vec<ContainerPlan>,
    /// `restartPolicy`.
    pub(crate) restart_policy: RestartPolicy,
    /// `activeDeadlineSeconds`.
    pub(crate) active_deadline: Option<Duration>,
    /// `terminationGracePeriodSeconds`. Nothing waits for it: wasm guests
    /// cannot handle SIGTERM and are stopped at once, always inside it.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) grace_period: Duration,
    /// The pod's volumes as written.
    pub(crate) volumes: Vec<Volume>,
    /// Datasets the pod asked for and this station grants its namespace.
    pub(crate) datasets: Vec<String>,
    pub(crate) image_pull_secrets: Vec<String>,
    pub(crate) service_account: String,
    /// `sandlet.dev/seal-to`: results (and logs, if asked) sealed.
    pub(crate) seal: Option<SealPlan>,
}

impl PodPlan {
    /// Checks `pod` against what this node supports and what the station's
    /// data configuration grants.
    pub fn from_pod(pod: &Pod, data: Option<&DataConfig>) -> Result<PodPlan, Rejection> {
        let meta = &pod.metadata;
        let spec = pod
            .spec
            .as_ref()
            .ok_or_else(|| reject("InvalidPodSpec", "the pod has no spec"))?;
        let namespace = meta.namespace.clone().unwrap_or_else(|| "default".into());
        check_pod_fields(spec)?;
        for volume in spec.volumes.iter().flatten() {
            check_volume(volume)?;
        }
        let volumes = spec.volumes.clone().unwrap_or_default();
        let plan_list = |list: Option<&Vec<Container>>| -> Result<Vec<ContainerPlan>, Rejection> {
            list.into_iter()
                .flatten()
                .map(|c| container_plan(c, &volumes))
                .collect()
        };
        let init_containers = plan_list(spec.init_containers.as_ref())?;
        let containers = plan_list(Some(&spec.containers))?;
        if containers.is_empty() {
            return Err(reject("InvalidPodSpec", "the pod has no containers"));
        }
        let restart_policy = match spec.restart_policy.as_deref() {
            None | Some("Always") => RestartPolicy::Always,
            Some("OnFailure") => RestartPolicy::OnFailure,
            Some("Never") => RestartPolicy::Never,
            Some(other) => {
                return Err(reject(
                    "InvalidPodSpec",
                    format!("unknown restartPolicy {other:?}"),
                ));
            }
        };
        let datasets = granted_datasets(pod, &namespace, data)?;
        let seal = seal_plan(pod)?;
        Ok(PodPlan {
            init_containers,
            containers,
            restart_policy,
            active_deadline: spec
                .active_deadline_seconds
                .map(|s| Duration::from_secs(s.max(0) as u64)),
            grace_period: spec
                .termination_grace_period_seconds
                .map_or(DEFAULT_GRACE_PERIOD, |s| {
                    Duration::from_secs(s.max(0) as u64)
                }),
            volumes,
            datasets,
            image_pull_secrets: spec
                .image_pull_secrets
                .iter()
                .flatten()
                .map(|s| s.name.clone())
                .filter(|n| !n.is_empty())
                .collect(),
            service_account: spec
                .service_account_name
                .clone()
                .unwrap_or_else(|| "default".into()),
            seal,
        })
    }
}

/// The pod's sealing annotations, checked: a recipient that is not an age
/// X25519 one, or logs sealed to no one, is a spec to fix, never a reason
/// to run with results in the clear.
fn seal_plan(pod: &Pod) -> Result<Option<SealPlan>, Rejection> {
    let annotations = pod.metadata.annotations.as_ref();
    let get = |key: &str| annotations.and_then(|a| a.get(key)).map(String::as_str);
    let logs = match get(SEAL_LOGS_ANNOTATION).map(str::trim) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(reject(
                "InvalidPodSpec",
                format!(
                    "annotation {SEAL_LOGS_ANNOTATION}: {other:?} is not \"true\" or \"false\""
                ),
            ));
        }
    };
    match get(SEAL_TO_ANNOTATION) {
        None if logs => Err(reject(
            "InvalidPodSpec",
            format!(
                "annotation {SEAL_LOGS_ANNOTATION} asks for sealed logs, but {SEAL_TO_ANNOTATION} names no recipient"
            ),
        )),
        None => Ok(None),
        Some(text) => sandlet_trust::seal::Recipient::parse(text)
            .map(|recipient| Some(SealPlan { recipient, logs }))
            .map_err(|e| {
                reject(
                    "InvalidPodSpec",
                    format!("annotation {SEAL_TO_ANNOTATION}: {e}"),
                )
            }),
    }
}

/// Pod-level fields that have no meaning in a wasm sandbox and would be
/// silently wrong if ignored.
fn check_pod_fields(spec: &PodSpec) -> Result<(), Rejection> {
    // A pod that names another runtime class asked for a runtime this node
    // does not have (runc, kata, a GPU runtime): running it as wasm would
    // ignore what it asked for.
    if let Some(class) = spec.runtime_class_name.as_deref()
        && class != RUNTIME_CLASS
    {
        return Err(reject(
            "UnsupportedRuntimeClass",
            format!(
                "runtimeClassName {class:?} is not served by this node; a sandlet node runs pods \
                 with runtimeClassName {RUNTIME_CLASS:?} or none"
            ),
        ));
    }
    if spec.host_network == Some(true) {
        return Err(reject(
            "UnsupportedPodSpec",
            "hostNetwork is not supported for wasm pods (guests have no network)",
        ));
    }
    if spec.host_pid == Some(true) || spec.host_ipc == Some(true) {
        return Err(reject(
            "UnsupportedPodSpec",
            "hostPID and hostIPC are not supported for wasm pods",
        ));
    }
    if spec.resource_claims.as_ref().is_some_and(|c| !c.is_empty()) {
        return Err(reject(
            "UnsupportedResource",
            "resourceClaims (dynamic resource allocation, e.g. GPUs) are not supported on the wasm node; \
             schedule the pod to a GPU worker",
        ));
    }
    if spec
        .ephemeral_containers
        .as_ref()
        .is_some_and(|c| !c.is_empty())
    {
        return Err(reject(
            "UnsupportedPodSpec",
            "ephemeral containers are not supported for wasm pods",
        ));
    }
    Ok(())
}

fn check_volume(volume: &Volume) -> Result<(), Rejection> {
    let supported = volume.config_map.is_some()
        || volume.secret.is_some()
        || volume.empty_dir.is_some()
        || volume.host_path.is_some()
        || volume.downward_api.is_some()
        || volume.projected.is_some();
    if let Some(host) = &volume.host_path {
        let kind = host.type_.as_deref().unwrap_or("");
        if !matches!(
            kind,
            "" | "Directory" | "DirectoryOrCreate" | "File" | "FileOrCreate"
        ) {
            return Err(reject(
                "UnsupportedVolume",
                format!(
                    "volume {:?}: hostPath type {kind} is not supported; wasm guests are given \
                     directories (Directory, DirectoryOrCreate) and regular files (File, \
                     FileOrCreate) only",
                    volume.name
                ),
            ));
        }
    }
    if supported {
        return Ok(());
    }
    let kind = serde_json::to_value(volume)
        .ok()
        .and_then(|v| {
            v.as_object()
                .and_then(|o| o.keys().find(|k| *k != "name").cloned())
        })
        .unwrap_or_else(|| "<none>".to_owned());
    Err(reject(
        "UnsupportedVolume",
        format!(
            "volume {:?} is of type {kind}; wasm pods support configMap, secret, emptyDir, hostPath, \
             downwardAPI and projected volumes",
            volume.name
        ),
    ))
}

fn container_plan(c: &Container, volumes: &[Volume]) -> Result<ContainerPlan, Rejection> {
    let image = c.image.clone().unwrap_or_default();
    if image.is_empty() {
        return Err(reject(
            "InvalidImageName",
            format!("container {:?} has no image", c.name),
        ));
    }
    let pull_policy = match c.image_pull_policy.as_deref() {
        None | Some("") => PullPolicy::default_for(&image),
        Some(text) => text.parse().map_err(|_| {
            reject(
                "InvalidPodSpec",
                format!("container {:?}: unknown imagePullPolicy {text:?}", c.name),
            )
        })?,
    };
    let mut memory_limit = None;
    if let Some(resources) = &c.resources {
        for (what, list) in [
            ("limits", &resources.limits),
            ("requests", &resources.requests),
        ] {
            for (name, _quantity) in list.iter().flatten() {
                if !SUPPORTED_RESOURCES.contains(&name.as_str()) {
                    return Err(reject(
                        "UnsupportedResource",
                        format!(
                            "container {:?} {what} {name}: the wasm node has no such resource; \
                             schedule the pod to a worker that has it",
                            c.name
                        ),
                    ));
                }
            }
        }
        if let Some(memory) = resources.limits.as_ref().and_then(|l| l.get("memory")) {
            let bytes = limits::parse_memory_limit(&memory.0).map_err(|e| {
                reject(
                    "InvalidPodSpec",
                    format!("container {:?} memory limit: {e}", c.name),
                )
            })?;
            memory_limit = Some(bytes);
        }
    }
    if c.ports.as_ref().is_some_and(|p| !p.is_empty()) {
        // Declared ports are informational in Kubernetes; a guest simply
        // has no network, which the README says.
        tracing::debug!(container = %c.name, "ports declared on a wasm container are ignored");
    }
    if c.volume_devices.as_ref().is_some_and(|d| !d.is_empty()) {
        return Err(reject(
            "UnsupportedVolume",
            format!(
                "container {:?}: volumeDevices (raw block devices) are not supported",
                c.name
            ),
        ));
    }
    let mut mounts = Vec::new();
    for mount in c.volume_mounts.iter().flatten() {
        let Some(volume) = volumes.iter().find(|v| v.name == mount.name) else {
            return Err(reject(
                "InvalidPodSpec",
                format!(
                    "container {:?} mounts volume {:?}, which the pod does not define",
                    c.name, mount.name
                ),
            ));
        };
        if !mount.mount_path.starts_with('/') || mount.mount_path.split('/').any(|p| p == "..") {
            return Err(reject(
                "InvalidPodSpec",
                format!(
                    "container {:?}: mountPath {:?} must be absolute without `..`",
                    c.name, mount.mount_path
                ),
            ));
        }
        let sub_path = mount.sub_path.clone().filter(|s| !s.is_empty());
        if let Some(sub) = &sub_path
            && (sub.starts_with('/') || sub.split('/').any(|p| p == ".."))
        {
            return Err(reject(
                "InvalidPodSpec",
                format!(
                    "container {:?}: subPath {sub:?} must be relative without `..`",
                    c.name
                ),
            ));
        }
        // Secrets, ConfigMaps, downward API and projected volumes are
        // read-only in Kubernetes whatever the mount says.
        let forced_ro = volume.secret.is_some()
            || volume.config_map.is_some()
            || volume.downward_api.is_some()
            || volume.projected.is_some();
        mounts.push(MountPlan {
            volume: mount.name.clone(),
            guest_path: mount.mount_path.clone(),
            read_only: mount.read_only == Some(true) || forced_ro,
            sub_path,
        });
    }
    let args = c
        .command
        .iter()
        .flatten()
        .chain(c.args.iter().flatten())
        .cloned()
        .collect();
    Ok(ContainerPlan {
        name: c.name.clone(),
        image,
        pull_policy,
        args,
        spec: c.clone(),
        mounts,
        memory_limit,
    })
}

/// The datasets named in the pod's annotation that the station allows for
/// its namespace, or without the annotation the station's default grant
/// for the namespace. Asking for a dataset the station does not have, or one
/// its namespace may not use, is refused outright rather than granted
/// silently less: the algorithm would otherwise fail later with a less
/// helpful error.
fn granted_datasets(
    pod: &Pod,
    namespace: &str,
    data: Option<&DataConfig>,
) -> Result<Vec<String>, Rejection> {
    let Some(wanted) = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DATASETS_ANNOTATION))
    else {
        // No annotation: the station's default grant for the namespace,
        // checked again against each dataset's namespaces.
        let defaults = data.map_or(&[][..], |d| d.default_grant(namespace));
        return Ok(defaults
            .iter()
            .filter(|name| {
                data.and_then(|d| d.dataset(name))
                    .is_some_and(|d| d.policy.allows_namespace(namespace))
            })
            .cloned()
            .collect());
    };
    let mut granted = Vec::new();
    for name in wanted.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let allowed = data
            .and_then(|d| d.dataset(name))
            .is_some_and(|d| d.policy.allows_namespace(namespace));
        if !allowed {
            return Err(reject(
                "DatasetNotGranted",
                format!(
                    "dataset {name:?} (annotation {DATASETS_ANNOTATION}) is not available to namespace {namespace:?} on this node"
                ),
            ));
        }
        if !granted.iter().any(|g| g == name) {
            granted.push(name.to_owned());
        }
    }
    Ok(granted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(yaml: serde_json::Value) -> Pod {
        serde_json::from_value(yaml).expect("a valid pod")
    }

    fn basic(extra_spec: serde_json::Value) -> Pod {
        let mut spec = serde_json::json!({
            "containers": [{ "name": "main", "image": "127.0.0.1:5000/hello:v1" }]
        });
        for (k, v) in extra_spec.as_object().unwrap() {
            spec[k] = v.clone();
        }
        pod(serde_json::json!({
            "metadata": { "name": "p", "namespace": "research", "uid": "u1" },
            "spec": spec
        }))
    }

    #[test]
    fn a_plain_pod_is_planned_with_kubernetes_defaults() {
        let plan = PodPlan::from_pod(&basic(serde_json::json!({})), None).unwrap();
        assert_eq!(plan.restart_policy, RestartPolicy::Always);
        assert_eq!(plan.grace_period, DEFAULT_GRACE_PERIOD);
        assert_eq!(plan.containers[0].pull_policy, PullPolicy::IfNotPresent);
        assert_eq!(plan.service_account, "default");
    }

    #[test]
    fn gpu_requests_are_refused_with_a_reason() {
        let p = basic(serde_json::json!({
            "containers": [{ "name": "train", "image": "r/x:1",
                "resources": { "limits": { "nvidia.com/gpu": "1" } } }]
        }));
        let e = PodPlan::from_pod(&p, None).unwrap_err();
        assert_eq!(e.reason, "UnsupportedResource");
        assert!(e.message.contains("nvidia.com/gpu"), "{e}");
    }

    #[test]
    fn runtime_classes_other_than_sandlet_are_refused_naming_the_class() {
        for ok in [
            serde_json::json!({}),
            serde_json::json!({"runtimeClassName": "sandlet"}),
        ] {
            assert!(PodPlan::from_pod(&basic(ok.clone()), None).is_ok(), "{ok}");
        }
        // Other classes, however close to the name: the check is exact.
        for class in ["runc", "nvidia", "Sandlet", "sandlet ", "", "sandlet-gpu"] {
            let err =
                PodPlan::from_pod(&basic(serde_json::json!({"runtimeClassName": class})), None)
                    .expect_err(class);
            assert_eq!(err.reason, "UnsupportedRuntimeClass", "{class:?}");
            assert!(err.message.contains(&format!("{class:?}")), "{err}");
        }
    }

    #[test]
    fn unknown_volume_types_are_refused_naming_the_type() {
        let p = basic(serde_json::json!({
            "volumes": [{ "name": "data", "persistentVolumeClaim": { "claimName": "c" } }]
        }));
        let e = PodPlan::from_pod(&p, None).unwrap_err();
        assert_eq!(e.reason, "UnsupportedVolume");
        assert!(e.message.contains("persistentVolumeClaim"), "{e}");
    }

    #[test]
    fn secret_mounts_are_read_only_whatever_the_mount_says() {
        let p = basic(serde_json::json!({
            "volumes": [{ "name": "s", "secret": { "secretName": "s" } },
                        { "name": "scratch", "emptyDir": {} }],
            "containers": [{ "name": "main", "image": "r/x:1", "volumeMounts": [
                { "name": "s", "mountPath": "/s", "readOnly": false },
                { "name": "scratch", "mountPath": "/tmp" }
            ] }]
        }));
        let plan = PodPlan::from_pod(&p, None).unwrap();
        let mounts = &plan.containers[0].mounts;
        assert!(mounts[0].read_only);
        assert!(!mounts[1].read_only);
    }

    #[test]
    fn mounts_of_undefined_volumes_and_escaping_paths_are_refused() {
        let p = basic(serde_json::json!({
            "containers": [{ "name": "main", "image": "r/x:1",
                "volumeMounts": [{ "name": "nope", "mountPath": "/x" }] }]
        }));
        assert_eq!(
            PodPlan::from_pod(&p, None).unwrap_err().reason,
            "InvalidPodSpec"
        );
        let p = basic(serde_json::json!({
            "volumes": [{ "name": "v", "emptyDir": {} }],
            "containers": [{ "name": "main", "image": "r/x:1",
                "volumeMounts": [{ "name": "v", "mountPath": "/x", "subPath": "../../etc" }] }]
        }));
        assert_eq!(
            PodPlan::from_pod(&p, None).unwrap_err().reason,
            "InvalidPodSpec"
        );
    }

    #[test]
    fn host_path_types_a_guest_cannot_be_given_are_refused_at_once() {
        for kind in ["Socket", "CharDevice", "BlockDevice", "file", "Fifo"] {
            let p = basic(serde_json::json!({
                "volumes": [{ "name": "h", "hostPath": { "path": "/run/x", "type": kind } }]
            }));
            let e = PodPlan::from_pod(&p, None).unwrap_err();
            assert_eq!(e.reason, "UnsupportedVolume", "{kind}");
            assert!(
                e.message
                    .contains(&format!("hostPath type {kind} is not supported")),
                "{e:?}"
            );
        }
        for kind in ["", "Directory", "DirectoryOrCreate", "File", "FileOrCreate"] {
            let p = basic(serde_json::json!({
                "volumes": [{ "name": "h", "hostPath": { "path": "/run/x", "type": kind } }]
            }));
            assert!(PodPlan::from_pod(&p, None).is_ok(), "{kind}");
        }
    }

    #[test]
    fn a_namespace_default_grant_applies_only_without_the_annotation_and_only_there() {
        let mut config = sandlet_station::StationConfig::parse(
            "datasets:\n  - name: patients\n    source: { csv: p.csv }\n    policy:\n      allowedNamespaces: [v6-org1, research]\n  - name: labs\n    source: { csv: l.csv }\ndefaultGrants:\n  - namespace: v6-org1\n    datasets: [patients]\n",
            std::path::Path::new("station.yaml"),
            std::path::Path::new("/srv"),
        )
        .unwrap()
        .data;
        let in_namespace = |namespace: &str, annotation: Option<&str>| {
            let mut p = basic(serde_json::json!({}));
            p.metadata.namespace = Some(namespace.into());
            p.metadata.annotations =
                annotation.map(|a| [(DATASETS_ANNOTATION.to_owned(), a.to_owned())].into());
            p
        };
        let granted = |p: &Pod, config: &DataConfig| {
            PodPlan::from_pod(p, Some(config)).map(|plan| plan.datasets)
        };
        assert_eq!(
            granted(&in_namespace("v6-org1", None), &config).unwrap(),
            ["patients"]
        );
        // Other namespaces get nothing by default, even one the dataset allows.
        assert!(
            granted(&in_namespace("research", None), &config)
                .unwrap()
                .is_empty()
        );
        assert!(
            granted(&in_namespace("v6-org2", None), &config)
                .unwrap()
                .is_empty()
        );
        assert!(
            granted(&in_namespace("v6-org1x", None), &config)
                .unwrap()
                .is_empty()
        );
        // A pod that names datasets gets those, not the default: an empty
        // annotation asks for none.
        assert_eq!(
            granted(&in_namespace("v6-org1", Some("labs")), &config).unwrap(),
            ["labs"]
        );
        assert!(
            granted(&in_namespace("v6-org1", Some("")), &config)
                .unwrap()
                .is_empty()
        );
        // A default edited past the dataset's namespaces after validation
        // still grants nothing there.
        config
            .default_grants
            .insert("default".into(), vec!["patients".into(), "labs".into()]);
        assert_eq!(
            granted(&in_namespace("default", None), &config).unwrap(),
            ["labs"]
        );
        // Without a station file, nothing.
        assert!(
            PodPlan::from_pod(&in_namespace("v6-org1", None), None)
                .unwrap()
                .datasets
                .is_empty()
        );
    }

    #[test]
    fn datasets_are_granted_only_to_allowed_namespaces() {
        let config = sandlet_station::StationConfig::parse(
            "datasets:\n  - name: patients\n    source: { csv: p.csv }\n    policy:\n      allowedNamespaces: [research]\n",
            std::path::Path::new("station.yaml"),
            std::path::Path::new("/srv"),
        )
        .unwrap()
        .data;
        let mut p = basic(serde_json::json!({}));
        p.metadata.annotations =
            Some([(DATASETS_ANNOTATION.to_owned(), "patients".to_owned())].into());
        let plan = PodPlan::from_pod(&p, Some(&config)).unwrap();
        assert_eq!(plan.datasets, ["patients"]);

        p.metadata.namespace = Some("default".into());
        let e = PodPlan::from_pod(&p, Some(&config)).unwrap_err();
        assert_eq!(e.reason, "DatasetNotGranted");

        p.metadata.namespace = Some("research".into());
        p.metadata.annotations = Some([(DATASETS_ANNOTATION.to_owned(), "labs".to_owned())].into());
        assert_eq!(
            PodPlan::from_pod(&p, Some(&config)).unwrap_err().reason,
            "DatasetNotGranted"
        );
    }

    #[test]
    fn restart_policies_decide_restarts() {
        assert!(RestartPolicy::Always.restarts(0));
        assert!(RestartPolicy::OnFailure.restarts(1));
        assert!(!RestartPolicy::OnFailure.restarts(0));
        assert!(!RestartPolicy::Never.restarts(1));
    }

    #[test]
    fn seal_annotations_name_an_age_recipient_and_optionally_the_logs() {
        let (_, recipient) = sandlet_trust::seal::generate_identity();
        let with = |pairs: &[(&str, &str)]| {
            let mut p = basic(serde_json::json!({}));
            p.metadata.annotations = Some(
                pairs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            );
            PodPlan::from_pod(&p, None)
        };
        assert!(with(&[]).unwrap().seal.is_none());
        let plan = with(&[(SEAL_TO_ANNOTATION, recipient.as_str())]).unwrap();
        let seal = plan.seal.unwrap();
        assert_eq!(seal.recipient.as_str(), recipient.as_str());
        assert!(!seal.logs);
        let plan = with(&[
            (SEAL_TO_ANNOTATION, &format!(" {} ", recipient.as_str())),
            (SEAL_LOGS_ANNOTATION, "true"),
        ])
        .unwrap();
        assert!(plan.seal.unwrap().logs);
        // Mistakes are refused, never run in the clear.
        let ssh = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ5 me@host";
        for (pairs, expected) in [
            (
                vec![(SEAL_TO_ANNOTATION, "age1notakey")],
                "annotation sandlet.dev/seal-to: \"age1notakey\" is not an age X25519 recipient",
            ),
            (
                vec![(SEAL_TO_ANNOTATION, ssh)],
                "is not an age X25519 recipient",
            ),
            (
                vec![(SEAL_TO_ANNOTATION, "")],
                "is not an age X25519 recipient",
            ),
            (vec![(SEAL_LOGS_ANNOTATION, "true")], "names no recipient"),
            (
                vec![
                    (SEAL_TO_ANNOTATION, recipient.as_str()),
                    (SEAL_LOGS_ANNOTATION, "yes"),
                ],
                "\"yes\" is not \"true\" or \"false\"",
            ),
        ] {
            let e = with(&pairs).unwrap_err();
            assert_eq!(e.reason, "InvalidPodSpec");
            assert!(e.message.contains(expected), "{pairs:?}: {e}");
        }
    }
}
