//! Pod volumes as host directories, ready to be preopened for a guest.
//!
//! This module owns turning each volume of a pod (configMap, secret,
//! emptyDir, hostPath, downwardAPI, projected) into a directory, and where
//! those directories live ([`PodDirs`], [`default_runtime_dir`]): volumes
//! rendered from API objects (configMap, secret, downwardAPI, projected,
//! which carry Secrets and service-account tokens) and `emptyDir` with
//! `medium: Memory` go to the node's runtime directory, memory-backed by
//! default, as the kubelet keeps secret volumes on tmpfs; other `emptyDir`s
//! go to the pod's directory under the state directory; hostPath is the
//! host directory the cluster admin named. It writes files but talks to no
//! server: the ConfigMaps, Secrets and service-account tokens were fetched
//! before.
//!
//! What a guest may do with a directory (read-only or not) is decided by
//! the mount in [`crate::pods::admission`] and enforced by the
//! sandlet-runtime sandbox; this module must never grant anything itself,
//! nor give a volume that is, holds or links to a dataset's file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{DownwardAPIVolumeFile, HostPathVolumeSource, KeyToPath, Volume};
use sandlet_data::{DataConfig, exposed_dataset};

use crate::pods::env::{
    ConfigError, DownwardFacts, ObjectKind, PodObjects, field_value, resource_value,
};

/// Tokens for projected `serviceAccountToken` sources, by audience (`""`:
/// the API server's own audience).
pub(crate) type Tokens = BTreeMap<String, String>;

/// The audiences of every projected service-account token a pod needs, with
/// their requested lifetimes.
pub(crate) fn token_audiences(volumes: &[Volume]) -> Vec<(String, Option<i64>)> {
    let mut out: Vec<(String, Option<i64>)> = Vec::new();
    for source in volumes
        .iter()
        .filter_map(|v| v.projected.as_ref())
        .flat_map(|p| p.sources.iter().flatten())
    {
        if let Some(token) = &source.service_account_token {
            let audience = token.audience.clone().unwrap_or_default();
            if !out.iter().any(|(a, _)| *a == audience) {
                out.push((audience, token.expiration_seconds));
            }
        }
    }
    out
}

/// The TokenRequest for a projected service-account token bound to the pod
/// `name` (`uid`), as the kubelet makes it: bound to the pod so that it
/// stops working when the pod is gone; `audience` `""` is the API server's
/// own; the lifetime defaults to the kubelet's 3607 s.
pub fn bound_token_request(
    name: &str,
    uid: &str,
    audience: &str,
    expiration_seconds: Option<i64>,
) -> TokenRequest {
    TokenRequest {
        spec: Some(TokenRequestSpec {
            audiences: (!audience.is_empty()).then(|| vec![audience.to_owned()]),
            expiration_seconds: Some(expiration_seconds.unwrap_or(3607)),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".to_owned()),
                kind: Some("Pod".to_owned()),
                name: Some(name.to_owned()),
                uid: Some(uid.to_owned()),
            }),
        }),
        ..TokenRequest::default()
    }
}

/// Everything a volume's contents may come from.
pub(crate) struct VolumeInputs<'a> {
    pub(crate) facts: DownwardFacts<'a>,
    pub(crate) objects: &'a PodObjects,
    pub(crate) tokens: &'a Tokens,
    /// The station's datasets, whose files no volume may expose.
    pub(crate) data: Option<&'a DataConfig>,
}

/// Where one pod's volumes live.
#[derive(Debug, Clone)]
pub(crate) struct PodDirs {
    /// The pod's directory in the state directory (disk): `emptyDir`s.
    pub(crate) disk: PathBuf,
    /// The pod's directory in the runtime directory (memory-backed by
    /// default): rendered volumes and `emptyDir`s with `medium: Memory`.
    pub(crate) memory: PathBuf,
}

/// Where one volume is on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostVolume {
    pub(crate) path: PathBuf,
    /// A single file (a hostPath of type `File` or `FileOrCreate`, or an
    /// untyped one naming a file) rather than a directory; see
    /// [`crate::pods::file_mounts`] for how a guest is given it.
    pub(crate) file: bool,
}

/// Creates (or refreshes) every volume of the pod and returns where each
/// is on the host, by volume name.
pub(crate) fn materialize(
    dirs: &PodDirs,
    volumes: &[Volume],
    inputs: &VolumeInputs<'_>,
) -> Result<BTreeMap<String, HostVolume>, ConfigError> {
    let mut made = BTreeMap::new();
    for volume in volumes {
        let host = materialize_one(dirs, volume, inputs)?;
        made.insert(volume.name.clone(), host);
    }
    Ok(made)
}

/// The runtime directory used when `--runtime-dir` is not given: on Linux
/// with a tmpfs at `/dev/shm`, a private directory there, one per state
/// directory (`sandlet-<uid>-<hash of the state directory>`), so that
/// Secrets and tokens written for guests never reach the disk; otherwise
/// `<state dir>/run`.
pub(crate) fn default_runtime_dir(state_dir: &Path) -> PathBuf {
    use sha2::{Digest as _, Sha256};
    let shm = Path::new("/dev/shm");
    if !is_memory_backed(shm) {
        return state_dir.join("run");
    }
    let canonical = std::fs::canonicalize(state_dir).unwrap_or_else(|_| state_dir.to_owned());
    let hash = Sha256::digest(canonical.as_os_str().as_encoded_bytes());
    let key: String = hash[..8].iter().map(|b| format!("{b:02x}")).collect();
    shm.join(format!("sandlet-{}-{key}", effective_uid().unwrap_or(0)))
}

/// Why the runtime directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RuntimeDirError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} exists and is not a directory", path.display())]
    NotADirectory { path: PathBuf },
    #[error("{} belongs to user {owner}, not to this user ({uid})", path.display())]
    OtherUser { path: PathBuf, owner: u32, uid: u32 },
    #[error("{} is open to other users (mode {mode:o}); it must be 0700", path.display())]
    Open { path: PathBuf, mode: u32 },
}

/// Creates the runtime directory (mode 0700), or checks that an existing
/// one is a real directory of this user that nobody else can open: in a
/// shared place like `/dev/shm`, a directory or link someone else made
/// under the expected name is refused, never used.
pub(crate) fn prepare_runtime_dir(dir: &Path) -> Result<(), RuntimeDirError> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| RuntimeDirError::Io { path, source }
    };
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io(dir)(e)),
    }
    let meta = std::fs::symlink_metadata(dir).map_err(io(dir))?;
    let path = dir.to_owned();
    if !meta.is_dir() {
        return Err(RuntimeDirError::NotADirectory { path });
    }
    if let Some(uid) = effective_uid()
        && meta.uid() != uid
    {
        return Err(RuntimeDirError::OtherUser {
            path,
            owner: meta.uid(),
            uid,
        });
    }
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(RuntimeDirError::Open {
            path,
            mode: meta.permissions().mode() & 0o7777,
        });
    }
    Ok(())
}

/// Whether `path` lies on a tmpfs (from `/proc/self/mounts`; false where
/// that cannot be read).
pub(crate) fn is_memory_backed(path: &Path) -> bool {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") else {
        return false;
    };
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let _source = fields.next()?;
            // Spaces in mount points are written as \040.
            let point = PathBuf::from(fields.next()?.replace("\\040", " "));
            let kind = fields.next()?;
            path.starts_with(&point).then_some((point, kind == "tmpfs"))
        })
        // The last of the longest matching mount points is the one in use.
        .fold(None::<(PathBuf, bool)>, |best, (point, tmpfs)| match best {
            Some((ref p, _)) if p.as_os_str().len() > point.as_os_str().len() => best,
            _ => Some((point, tmpfs)),
        })
        .is_some_and(|(_, tmpfs)| tmpfs)
}

/// This process's effective user id (from `/proc/self/status`).
fn effective_uid() -> Option<u32> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> ConfigError {
    ConfigError(format!("{what} {}: {e}", path.display()))
}

/// A hostPath volume: the host directory or file the cluster admin named,
/// checked against its `type` as the kubelet checks it, and never one that
/// holds (or is, or links to) a dataset's file.
fn host_path(
    volume: &Volume,
    host: &HostPathVolumeSource,
    data: Option<&DataConfig>,
) -> Result<HostVolume, ConfigError> {
    let path = PathBuf::from(&host.path);
    let kind = host.type_.as_deref().unwrap_or("");
    let not = |what: &str| {
        ConfigError(format!(
            "volume {:?}: hostPath {} is not an existing {what}",
            volume.name, host.path
        ))
    };
    // Symlinks are followed, as the kubelet follows them.
    let file = match kind {
        "" => match std::fs::metadata(&path) {
            Ok(m) if m.is_dir() => false,
            Ok(m) if m.is_file() => true,
            _ => return Err(not("directory or regular file")),
        },
        "Directory" | "DirectoryOrCreate" => {
            if kind == "DirectoryOrCreate" {
                std::fs::create_dir_all(&path)
                    .map_err(|e| io_error("cannot create hostPath", &path, e))?;
            }
            if !path.is_dir() {
                return Err(not("directory"));
            }
            false
        }
        "File" | "FileOrCreate" => {
            if kind == "FileOrCreate" && std::fs::symlink_metadata(&path).is_err() {
                // As the kubelet does: an empty file, mode 0644; the
                // directory it goes in must exist.
                use std::os::unix::fs::OpenOptionsExt;
                std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o644)
                    .open(&path)
                    .map_err(|e| io_error("cannot create hostPath", &path, e))?;
            }
            if !std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
                return Err(not("regular file"));
            }
            true
        }
        other => {
            return Err(ConfigError(format!(
                "volume {:?}: hostPath type {other} is not supported; wasm guests are given \
                 directories and regular files only",
                volume.name
            )));
        }
    };
    if let Some(dataset) = data.and_then(|d| exposed_dataset(d, &path)) {
        return Err(ConfigError(format!(
            "volume {:?}: hostPath {} would expose the files of dataset {dataset:?}, which \
             pods reach only through data queries (or rawFiles under /data)",
            volume.name, host.path
        )));
    }
    Ok(HostVolume { path, file })
}

fn materialize_one(
    dirs: &PodDirs,
    volume: &Volume,
    inputs: &VolumeInputs<'_>,
) -> Result<HostVolume, ConfigError> {
    let rendered_dir = dirs.memory.join(&volume.name);
    let namespace = inputs
        .facts
        .pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    if let Some(host) = &volume.host_path {
        return host_path(volume, host, inputs.data);
    }
    if let Some(empty) = &volume.empty_dir {
        // Kept across container restarts, removed with the pod.
        let own_dir = if empty.medium.as_deref() == Some("Memory") {
            dirs.memory.join(&volume.name)
        } else {
            dirs.disk.join("volumes").join(&volume.name)
        };
        std::fs::create_dir_all(&own_dir)
            .map_err(|e| io_error("cannot create emptyDir", &own_dir, e))?;
        return Ok(HostVolume {
            path: own_dir,
            file: false,
        });
    }
    // The remaining types are rendered files: write them afresh.
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let add = |files: &mut BTreeMap<String, Vec<u8>>,
               kind,
               name: &str,
               items: Option<&[KeyToPath]>,
               optional: Option<bool>| {
        let optional = optional == Some(true);
        let data = inputs.objects.data(kind, &namespace, name, optional)?;
        add_keyed(files, data, items, optional, kind, &namespace, name)
    };
    if let Some(cm) = &volume.config_map {
        add(
            &mut files,
            ObjectKind::ConfigMap,
            &cm.name,
            cm.items.as_deref(),
            cm.optional,
        )?;
    } else if let Some(secret) = &volume.secret {
        let name = secret.secret_name.clone().unwrap_or_default();
        add(
            &mut files,
            ObjectKind::Secret,
            &name,
            secret.items.as_deref(),
            secret.optional,
        )?;
    } else if let Some(downward) = &volume.downward_api {
        add_downward(
            &mut files,
            downward.items.as_deref().unwrap_or_default(),
            inputs,
        )?;
    } else if let Some(projected) = &volume.projected {
        for source in projected.sources.iter().flatten() {
            if let Some(cm) = &source.config_map {
                add(
                    &mut files,
                    ObjectKind::ConfigMap,
                    &cm.name,
                    cm.items.as_deref(),
                    cm.optional,
                )?;
            } else if let Some(secret) = &source.secret {
                add(
                    &mut files,
                    ObjectKind::Secret,
                    &secret.name,
                    secret.items.as_deref(),
                    secret.optional,
                )?;
            } else if let Some(downward) = &source.downward_api {
                add_downward(
                    &mut files,
                    downward.items.as_deref().unwrap_or_default(),
                    inputs,
                )?;
            } else if let Some(token) = &source.service_account_token {
                let audience = token.audience.clone().unwrap_or_default();
                let value = inputs.tokens.get(&audience).ok_or_else(|| {
                    ConfigError(format!(
                        "no service account token for audience {audience:?}"
                    ))
                })?;
                add_file(&mut files, &token.path, value.clone().into_bytes())?;
            } else {
                return Err(ConfigError(format!(
                    "volume {:?}: projected source type not supported (configMap, secret, downwardAPI and serviceAccountToken are)",
                    volume.name
                )));
            }
        }
    } else {
        return Err(ConfigError(format!(
            "volume {:?}: unsupported volume type",
            volume.name
        )));
    }
    write_files(&rendered_dir, &files)?;
    Ok(HostVolume {
        path: rendered_dir,
        file: false,
    })
}

fn add_file(
    files: &mut BTreeMap<String, Vec<u8>>,
    path: &str,
    bytes: Vec<u8>,
) -> Result<(), ConfigError> {
    if path.is_empty()
        || path.starts_with('/')
        || path.split('/').any(|p| p == ".." || p.is_empty())
    {
        return Err(ConfigError(format!(
            "volume file path {path:?} must be relative, without `..` or empty parts"
        )));
    }
    files.insert(path.to_owned(), bytes);
    Ok(())
}

/// Files from an object's keys: the keys `items` names at their paths, or
/// every key as a file of its name. `data` is `None` only for an optional
/// object that does not exist.
fn add_keyed(
    files: &mut BTreeMap<String, Vec<u8>>,
    data: Option<BTreeMap<String, Vec<u8>>>,
    items: Option<&[KeyToPath]>,
    optional: bool,
    kind: ObjectKind,
    namespace: &str,
    name: &str,
) -> Result<(), ConfigError> {
    let Some(mut data) = data else {
        return Ok(());
    };
    match items {
        Some(items) if !items.is_empty() => {
            for item in items {
                match data.remove(&item.key) {
                    Some(bytes) => add_file(files, &item.path, bytes)?,
                    None if optional => {}
                    None => {
                        return Err(ConfigError(format!(
                            "couldn't find key {} in {kind:?} {namespace}/{name}",
                            item.key
                        )));
                    }
                }
            }
        }
        _ => {
            for (key, bytes) in data {
                add_file(files, &key, bytes)?;
            }
        }
    }
    Ok(())
}

fn add_downward(
    files: &mut BTreeMap<String, Vec<u8>>,
    items: &[DownwardAPIVolumeFile],
    inputs: &VolumeInputs<'_>,
) -> Result<(), ConfigError> {
    for item in items {
        let value = if let Some(field) = &item.field_ref {
            field_value(&inputs.facts, field)?
        } else if let Some(field) = &item.resource_field_ref {
            let name = field.container_name.clone().unwrap_or_default();
            let spec = inputs.facts.pod.spec.as_ref();
            let container = spec
                .into_iter()
                .flat_map(|s| {
                    s.containers
                        .iter()
                        .chain(s.init_containers.iter().flatten())
                })
                .find(|c| c.name == name)
                .ok_or_else(|| {
                    ConfigError(format!(
                        "downwardAPI item {:?}: no container {name:?}",
                        item.path
                    ))
                })?;
            resource_value(&inputs.facts, container, field)?
        } else {
            continue;
        };
        add_file(files, &item.path, value.into_bytes())?;
    }
    Ok(())
}

/// Replaces the directory's contents with `files`, atomically per file.
fn write_files(dir: &Path, files: &BTreeMap<String, Vec<u8>>) -> Result<(), ConfigError> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| io_error("cannot clear volume", dir, e))?;
    }
    std::fs::create_dir_all(dir).map_err(|e| io_error("cannot create volume", dir, e))?;
    for (path, bytes) in files {
        let target = dir.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io_error("cannot create", parent, e))?;
        }
        std::fs::write(&target, bytes).map_err(|e| io_error("cannot write", &target, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ConfigMap, Pod};

    fn pod(volumes: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": { "name": "p", "namespace": "ns", "labels": { "a": "b" } },
            "spec": { "containers": [{ "name": "main", "image": "r/x:1",
                "resources": { "limits": { "memory": "32Mi" } } }], "volumes": volumes }
        }))
        .unwrap()
    }

    fn pod_dirs(dir: &Path) -> PodDirs {
        PodDirs {
            disk: dir.join("disk"),
            memory: dir.join("memory"),
        }
    }

    fn inputs<'a>(pod: &'a Pod, objects: &'a PodObjects, tokens: &'a Tokens) -> VolumeInputs<'a> {
        VolumeInputs {
            facts: DownwardFacts {
                pod,
                node_name: "n",
                host_ip: "127.0.0.1",
                node_cpu: 1.0,
                node_memory: 1e9,
            },
            objects,
            tokens,
            data: None,
        }
    }

    #[test]
    fn every_volume_type_renders_its_files() {
        let dir = tempfile::tempdir().unwrap();
        let host = tempfile::tempdir().unwrap();
        let p = pod(serde_json::json!([
            { "name": "cfg", "configMap": { "name": "settings", "items": [{ "key": "a", "path": "sub/a.txt" }] } },
            { "name": "scratch", "emptyDir": {} },
            { "name": "fast", "emptyDir": { "medium": "Memory" } },
            { "name": "host", "hostPath": { "path": host.path() } },
            { "name": "info", "downwardAPI": { "items": [
                { "path": "name", "fieldRef": { "fieldPath": "metadata.name" } },
                { "path": "mem", "resourceFieldRef": { "containerName": "main", "resource": "limits.memory", "divisor": "1Mi" } }
            ] } },
            { "name": "api", "projected": { "sources": [
                { "serviceAccountToken": { "path": "token" } },
                { "configMap": { "name": "settings" } }
            ] } }
        ]));
        let cm: ConfigMap = serde_json::from_value(serde_json::json!({
            "metadata": { "name": "settings" }, "data": { "a": "A", "b": "B" }
        }))
        .unwrap();
        let objects = PodObjects {
            config_maps: [("settings".to_owned(), Some(cm))].into(),
            secrets: BTreeMap::new(),
        };
        let tokens: Tokens = [(String::new(), "tok".to_owned())].into();
        let volumes = p.spec.as_ref().unwrap().volumes.clone().unwrap();
        let places = pod_dirs(dir.path());
        let dirs = materialize(&places, &volumes, &inputs(&p, &objects, &tokens)).unwrap();
        assert!(dirs.values().all(|v| !v.file));
        let dirs: BTreeMap<String, PathBuf> = dirs.into_iter().map(|(k, v)| (k, v.path)).collect();
        let read = |v: &str, f: &str| std::fs::read_to_string(dirs[v].join(f)).unwrap();
        // Rendered volumes (tokens, Secrets) and memory emptyDirs live in
        // the runtime directory; other emptyDirs on disk.
        for memory in ["cfg", "info", "api", "fast"] {
            assert!(dirs[memory].starts_with(&places.memory), "{memory}");
        }
        assert!(dirs["scratch"].starts_with(&places.disk));
        assert!(!places.disk.join("volumes/api").exists());
        assert_eq!(read("cfg", "sub/a.txt"), "A");
        assert!(!dirs["cfg"].join("b").exists());
        assert!(dirs["scratch"].is_dir());
        assert_eq!(dirs["host"], host.path());
        assert_eq!(read("info", "name"), "p");
        assert_eq!(read("info", "mem"), "32");
        assert_eq!(read("api", "token"), "tok");
        assert_eq!(read("api", "b"), "B");
        assert_eq!(token_audiences(&volumes), [(String::new(), None)]);
    }

    #[test]
    fn missing_sources_and_bad_paths_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let objects = PodObjects {
            config_maps: [("gone".to_owned(), None)].into(),
            secrets: BTreeMap::new(),
        };
        let tokens = Tokens::new();
        let p = pod(serde_json::json!([{ "name": "cfg", "configMap": { "name": "gone" } }]));
        let volumes = p.spec.as_ref().unwrap().volumes.clone().unwrap();
        let e = materialize(
            &pod_dirs(dir.path()),
            &volumes,
            &inputs(&p, &objects, &tokens),
        )
        .unwrap_err();
        assert_eq!(e.0, "configmap \"gone\" not found");

        let p = pod(serde_json::json!([{ "name": "h", "hostPath": { "path": "/no/such/dir" } }]));
        let volumes = p.spec.as_ref().unwrap().volumes.clone().unwrap();
        let e = materialize(
            &pod_dirs(dir.path()),
            &volumes,
            &inputs(&p, &objects, &tokens),
        )
        .unwrap_err();
        assert!(e.0.contains("not an existing directory"), "{e}");

        // A hostPath that holds a dataset's file is refused, however it is
        // spelt (here through a symlink).
        let station = tempfile::tempdir().unwrap();
        std::fs::create_dir(station.path().join("srv")).unwrap();
        std::fs::write(station.path().join("srv/p.csv"), "a\n1\n").unwrap();
        std::os::unix::fs::symlink(station.path().join("srv"), station.path().join("link"))
            .unwrap();
        let config = sandlet_station::StationConfig::parse(
            "datasets:\n  - name: patients\n    source: { csv: srv/p.csv }\n",
            Path::new("station.yaml"),
            station.path(),
        )
        .unwrap()
        .data;
        for host in [station.path().to_owned(), station.path().join("link")] {
            let p = pod(serde_json::json!([{ "name": "h", "hostPath": { "path": host } }]));
            let volumes = p.spec.as_ref().unwrap().volumes.clone().unwrap();
            let inputs = VolumeInputs {
                data: Some(&config),
                ..inputs(&p, &objects, &tokens)
            };
            let e = materialize(&pod_dirs(dir.path()), &volumes, &inputs).unwrap_err();
            assert!(
                e.0.contains("would expose the files of dataset \"patients\""),
                "{e}"
            );
        }

        let p = pod(
            serde_json::json!([{ "name": "i", "downwardAPI": { "items": [
            { "path": "../escape", "fieldRef": { "fieldPath": "metadata.name" } }
        ] } }]),
        );
        let volumes = p.spec.as_ref().unwrap().volumes.clone().unwrap();
        let e = materialize(
            &pod_dirs(dir.path()),
            &volumes,
            &inputs(&p, &objects, &tokens),
        )
        .unwrap_err();
        assert!(e.0.contains("without `..`"), "{e}");
    }

    #[test]
    fn host_paths_are_checked_against_their_type_and_files_are_given_as_files() {
        let dir = tempfile::tempdir().unwrap();
        let host = tempfile::tempdir().unwrap();
        let file = host.path().join("input");
        std::fs::write(&file, "x").unwrap();
        let objects = PodObjects {
            config_maps: BTreeMap::new(),
            secrets: BTreeMap::new(),
        };
        let tokens = Tokens::new();
        let made = |source: serde_json::Value| {
            let p = pod(serde_json::json!([{ "name": "h", "hostPath": source }]));
            let volumes = p.spec.as_ref().unwrap().volumes.clone().unwrap();
            materialize(
                &pod_dirs(dir.path()),
                &volumes,
                &inputs(&p, &objects, &tokens),
            )
            .map(|mut m| m.remove("h").unwrap())
        };
        let as_file = HostVolume {
            path: file.clone(),
            file: true,
        };
        assert_eq!(
            made(serde_json::json!({ "path": file, "type": "File" })).unwrap(),
            as_file
        );
        assert_eq!(made(serde_json::json!({ "path": file })).unwrap(), as_file);
        assert_eq!(
            made(serde_json::json!({ "path": file, "type": "FileOrCreate" })).unwrap(),
            as_file
        );
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "x");
        // FileOrCreate makes an empty 0644 file in an existing directory.
        let created = host.path().join("output");
        let v = made(serde_json::json!({ "path": created, "type": "FileOrCreate" })).unwrap();
        assert!(v.file);
        use std::os::unix::fs::PermissionsExt;
        let m = std::fs::metadata(&created).unwrap();
        assert_eq!((m.len(), m.permissions().mode() & 0o777), (0, 0o644));
        let e = made(
            serde_json::json!({ "path": host.path().join("no/output"), "type": "FileOrCreate" }),
        )
        .unwrap_err();
        assert!(e.0.contains("cannot create hostPath"), "{e}");
        // Each type holds to what it names.
        for (source, error) in [
            (
                serde_json::json!({ "path": host.path(), "type": "File" }),
                "not an existing regular file",
            ),
            (
                serde_json::json!({ "path": file, "type": "Directory" }),
                "not an existing directory",
            ),
            (
                serde_json::json!({ "path": host.path().join("none"), "type": "File" }),
                "not an existing regular file",
            ),
            (
                serde_json::json!({ "path": host.path().join("none") }),
                "not an existing directory or regular file",
            ),
            (
                serde_json::json!({ "path": "/dev/null" }),
                "not an existing directory or regular file",
            ),
            (
                serde_json::json!({ "path": "/dev/null", "type": "File" }),
                "not an existing regular file",
            ),
            (
                serde_json::json!({ "path": "/dev/null", "type": "CharDevice" }),
                "type CharDevice is not supported",
            ),
        ] {
            let e = made(source.clone()).unwrap_err();
            assert!(e.0.contains(error), "{source}: {e}");
        }
        assert!(!host.path().join("none").exists());
    }

    #[test]
    fn a_dataset_file_cannot_be_mounted_as_a_file_however_it_is_reached() {
        let dir = tempfile::tempdir().unwrap();
        let station = tempfile::tempdir().unwrap();
        let srv = station.path().join("srv");
        std::fs::create_dir(&srv).unwrap();
        std::fs::write(srv.join("p.csv"), "a\n1\n").unwrap();
        std::os::unix::fs::symlink(srv.join("p.csv"), station.path().join("sym.csv")).unwrap();
        std::fs::hard_link(srv.join("p.csv"), station.path().join("hard.csv")).unwrap();
        std::fs::write(station.path().join("other.csv"), "fine").unwrap();
        let config = sandlet_station::StationConfig::parse(
            "datasets:\n  - name: patients\n    source: { csv: srv/p.csv }\n",
            Path::new("station.yaml"),
            station.path(),
        )
        .unwrap()
        .data;
        let objects = PodObjects {
            config_maps: BTreeMap::new(),
            secrets: BTreeMap::new(),
        };
        let tokens = Tokens::new();
        let attempt = |path: PathBuf, kind: Option<&str>| {
            let p = pod(
                serde_json::json!([{ "name": "h", "hostPath": { "path": path, "type": kind } }]),
            );
            let volumes = p.spec.as_ref().unwrap().volumes.clone().unwrap();
            let inputs = VolumeInputs {
                data: Some(&config),
                ..inputs(&p, &objects, &tokens)
            };
            materialize(&pod_dirs(dir.path()), &volumes, &inputs)
        };
        for path in [
            srv.join("p.csv"),
            srv.join("./p.csv"),
            station.path().join("srv/../srv/p.csv"),
            station.path().join("sym.csv"),
            station.path().join("hard.csv"),
        ] {
            for kind in [None, Some("File"), Some("FileOrCreate")] {
                let e = attempt(path.clone(), kind).unwrap_err();
                assert!(
                    e.0.contains("would expose the files of dataset \"patients\""),
                    "{path:?} {kind:?}: {e}"
                );
            }
        }
        assert!(attempt(station.path().join("other.csv"), Some("File")).is_ok());
    }

    #[test]
    fn a_runtime_dir_is_private_and_someone_elses_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("run");
        prepare_runtime_dir(&dir).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        // Again: the same directory is accepted.
        prepare_runtime_dir(&dir).unwrap();

        let open = base.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
        let e = prepare_runtime_dir(&open).unwrap_err().to_string();
        assert!(e.contains("open to other users (mode 755)"), "{e}");

        let link = base.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        let e = prepare_runtime_dir(&link).unwrap_err().to_string();
        assert!(e.contains("is not a directory"), "{e}");

        let file = base.path().join("file");
        std::fs::write(&file, "x").unwrap();
        let e = prepare_runtime_dir(&file).unwrap_err().to_string();
        assert!(e.contains("is not a directory"), "{e}");
    }

    #[test]
    fn the_default_runtime_dir_is_memory_backed_where_dev_shm_is() {
        let state = tempfile::tempdir().unwrap();
        let dir = default_runtime_dir(state.path());
        if is_memory_backed(Path::new("/dev/shm")) {
            assert!(dir.starts_with("/dev/shm"), "{}", dir.display());
            assert!(is_memory_backed(&dir.parent().unwrap().join("x")));
            // One per state directory.
            let other = tempfile::tempdir().unwrap();
            assert_ne!(default_runtime_dir(other.path()), dir);
            assert_eq!(default_runtime_dir(state.path()), dir);
        } else {
            assert_eq!(dir, state.path().join("run"));
        }
    }
}
