//! A container's environment, resolved as the kubelet resolves it.
//!
//! This module owns `env` and `envFrom` (values, ConfigMap and Secret keys,
//! the downward API's `fieldRef` and `resourceFieldRef`) and `$(VAR)`
//! expansion in values and arguments. It does no IO: the ConfigMaps and
//! Secrets a pod references are fetched first ([`PodObjects`]) and looked up
//! here. It must never pass on anything of the host's environment.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{
    ConfigMap, Container, ObjectFieldSelector, Pod, ResourceFieldSelector, Secret,
};

/// Why a container's configuration cannot be built; the kubelet shows it as
/// `CreateContainerConfigError`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct ConfigError(pub String);

/// The ConfigMaps and Secrets one pod references, as fetched (`None`: not
/// found).
#[derive(Debug, Clone, Default)]
pub(crate) struct PodObjects {
    pub(crate) config_maps: BTreeMap<String, Option<ConfigMap>>,
    pub(crate) secrets: BTreeMap<String, Option<Secret>>,
}

/// The names of every ConfigMap and Secret a pod references, in env,
/// envFrom and volumes.
pub(crate) fn referenced_objects(pod: &Pod) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut config_maps = BTreeSet::new();
    let mut secrets = BTreeSet::new();
    let Some(spec) = &pod.spec else {
        return (config_maps, secrets);
    };
    let containers = spec
        .init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter());
    for c in containers {
        for env in c.env.iter().flatten() {
            if let Some(from) = &env.value_from {
                if let Some(r) = &from.config_map_key_ref {
                    config_maps.insert(r.name.clone());
                }
                if let Some(r) = &from.secret_key_ref {
                    secrets.insert(r.name.clone());
                }
            }
        }
        for from in c.env_from.iter().flatten() {
            if let Some(r) = &from.config_map_ref {
                config_maps.insert(r.name.clone());
            }
            if let Some(r) = &from.secret_ref {
                secrets.insert(r.name.clone());
            }
        }
    }
    for volume in spec.volumes.iter().flatten() {
        if let Some(cm) = &volume.config_map {
            config_maps.insert(cm.name.clone());
        }
        if let Some(s) = &volume.secret
            && let Some(name) = &s.secret_name
        {
            secrets.insert(name.clone());
        }
        for source in volume
            .projected
            .iter()
            .flat_map(|p| p.sources.iter().flatten())
        {
            if let Some(cm) = &source.config_map {
                config_maps.insert(cm.name.clone());
            }
            if let Some(s) = &source.secret {
                secrets.insert(s.name.clone());
            }
        }
    }
    (config_maps, secrets)
}

/// The two kinds of object whose keys pods read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ObjectKind {
    ConfigMap,
    Secret,
}

impl ObjectKind {
    /// As the kubelet's messages write it when the object is missing.
    fn noun(self) -> &'static str {
        match self {
            ObjectKind::ConfigMap => "configmap",
            ObjectKind::Secret => "secret",
        }
    }
}

impl PodObjects {
    /// The object's data (text and binary keys together); `None` if it
    /// does not exist and `optional`, an error naming it if it is required.
    pub(crate) fn data(
        &self,
        kind: ObjectKind,
        namespace: &str,
        name: &str,
        optional: bool,
    ) -> Result<Option<BTreeMap<String, Vec<u8>>>, ConfigError> {
        let not_fetched = || {
            ConfigError(format!(
                "{} {namespace}/{name} was not fetched",
                kind.noun()
            ))
        };
        let data: Option<BTreeMap<String, Vec<u8>>> = match kind {
            ObjectKind::ConfigMap => self
                .config_maps
                .get(name)
                .ok_or_else(not_fetched)?
                .as_ref()
                .map(|cm| {
                    let text = cm
                        .data
                        .iter()
                        .flatten()
                        .map(|(k, v)| (k.clone(), v.clone().into_bytes()));
                    let binary = cm
                        .binary_data
                        .iter()
                        .flatten()
                        .map(|(k, v)| (k.clone(), v.0.clone()));
                    text.chain(binary).collect()
                }),
            ObjectKind::Secret => self
                .secrets
                .get(name)
                .ok_or_else(not_fetched)?
                .as_ref()
                .map(|secret| {
                    let data = secret
                        .data
                        .iter()
                        .flatten()
                        .map(|(k, v)| (k.clone(), v.0.clone()));
                    let text = secret
                        .string_data
                        .iter()
                        .flatten()
                        .map(|(k, v)| (k.clone(), v.clone().into_bytes()));
                    data.chain(text).collect()
                }),
        };
        match data {
            Some(data) => Ok(Some(data)),
            None if optional => Ok(None),
            None => Err(ConfigError(format!("{} \"{name}\" not found", kind.noun()))),
        }
    }

    /// One key of the object; `None` if it (or the object) is missing and
    /// `optional`.
    pub(crate) fn value(
        &self,
        kind: ObjectKind,
        namespace: &str,
        name: &str,
        key: &str,
        optional: bool,
    ) -> Result<Option<Vec<u8>>, ConfigError> {
        let Some(mut data) = self.data(kind, namespace, name, optional)? else {
            return Ok(None);
        };
        match data.remove(key) {
            Some(value) => Ok(Some(value)),
            None if optional => Ok(None),
            None => Err(ConfigError(format!(
                "couldn't find key {key} in {kind:?} {namespace}/{name}"
            ))),
        }
    }
}

/// What the downward API can say about the pod and its node.
#[derive(Debug, Clone)]
pub(crate) struct DownwardFacts<'a> {
    pub(crate) pod: &'a Pod,
    pub(crate) node_name: &'a str,
    pub(crate) host_ip: &'a str,
    /// The node's allocatable cpu (cores) and memory (bytes), the default
    /// for `limits.*` of a container without limits.
    pub(crate) node_cpu: f64,
    pub(crate) node_memory: f64,
}

/// The value of a `fieldRef`.
pub(crate) fn field_value(
    facts: &DownwardFacts<'_>,
    field: &ObjectFieldSelector,
) -> Result<String, ConfigError> {
    let meta = &facts.pod.metadata;
    let path = field.field_path.as_str();
    let map_entry = |map: Option<&BTreeMap<String, String>>, key: &str| {
        map.and_then(|m| m.get(key)).cloned().unwrap_or_default()
    };
    let render_map = |map: Option<&BTreeMap<String, String>>| {
        map.into_iter()
            .flatten()
            .map(|(k, v)| format!("{k}={}", serde_json::to_string(v).unwrap_or_default()))
            .collect::<Vec<_>>()
            .join("\n")
    };
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => render_map(meta.labels.as_ref()),
        "metadata.annotations" => render_map(meta.annotations.as_ref()),
        "spec.nodeName" => facts.node_name.to_owned(),
        "spec.serviceAccountName" => facts
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.hostIP" | "status.hostIPs" => facts.host_ip.to_owned(),
        // Wasm pods have no network of their own.
        "status.podIP" | "status.podIPs" => String::new(),
        _ => {
            if let Some(key) = subscript(path, "metadata.labels") {
                map_entry(meta.labels.as_ref(), &key)
            } else if let Some(key) = subscript(path, "metadata.annotations") {
                map_entry(meta.annotations.as_ref(), &key)
            } else {
                return Err(ConfigError(format!(
                    "unsupported fieldRef fieldPath {path:?}"
                )));
            }
        }
    })
}

/// `metadata.labels['key']` -> `key`.
fn subscript(path: &str, prefix: &str) -> Option<String> {
    let rest = path.strip_prefix(prefix)?.strip_prefix("['")?;
    Some(rest.strip_suffix("']")?.to_owned())
}

/// A Kubernetes quantity (`500m`, `64Mi`, `1.5G`) as a number.
pub(crate) fn parse_quantity(text: &str) -> Option<f64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024.0f64.powi(2),
        "Gi" => 1024.0f64.powi(3),
        "Ti" => 1024.0f64.powi(4),
        "Pi" => 1024.0f64.powi(5),
        "Ei" => 1024.0f64.powi(6),
        _ => {
            // Decimal exponent, e.g. 1e3.
            let exponent: i32 = suffix.strip_prefix(['e', 'E'])?.parse().ok()?;
            10f64.powi(exponent)
        }
    };
    Some(number * scale)
}

/// The value of a `resourceFieldRef`: the container's limit or request,
/// divided by the divisor and rounded up, as the kubelet computes it.
pub(crate) fn resource_value(
    facts: &DownwardFacts<'_>,
    container: &Container,
    field: &ResourceFieldSelector,
) -> Result<String, ConfigError> {
    let resources = container.resources.as_ref();
    let get = |kind: &str, name: &str| {
        resources
            .and_then(|r| {
                if kind == "limits" {
                    r.limits.as_ref()
                } else {
                    r.requests.as_ref()
                }
            })
            .and_then(|m| m.get(name))
            .and_then(|q| parse_quantity(&q.0))
    };
    let value = match field.resource.as_str() {
        "limits.cpu" => get("limits", "cpu").unwrap_or(facts.node_cpu),
        "limits.memory" => get("limits", "memory").unwrap_or(facts.node_memory),
        "requests.cpu" => get("requests", "cpu")
            .or(get("limits", "cpu"))
            .unwrap_or(0.0),
        "requests.memory" => get("requests", "memory")
            .or(get("limits", "memory"))
            .unwrap_or(0.0),
        "limits.ephemeral-storage" | "requests.ephemeral-storage" => 0.0,
        other => {
            return Err(ConfigError(format!(
                "unsupported resourceFieldRef resource {other:?}"
            )));
        }
    };
    let divisor = match &field.divisor {
        Some(d) => parse_quantity(&d.0)
            .filter(|d| *d > 0.0)
            .ok_or_else(|| ConfigError(format!("invalid resourceFieldRef divisor {:?}", d.0)))?,
        None => 1.0,
    };
    // Round up, as the kubelet does (a 500m limit in cores is 1).
    let scaled = (value / divisor - 1e-9).ceil().max(0.0);
    Ok(format!("{scaled:.0}"))
}

/// Expands `$(NAME)` from `vars`; `$$` is a literal `$`; unknown references
/// stay as written (Kubernetes' rule).
pub(crate) fn expand(text: &str, vars: &[(String, String)]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(body) = after.strip_prefix('(')
            && let Some(end) = body.find(')')
        {
            let name = &body[..end];
            match vars.iter().rev().find(|(k, _)| k == name) {
                Some((_, value)) => out.push_str(value),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The environment of `container`, in Kubernetes' order: `envFrom` sources,
/// then `env` entries (later entries override earlier ones).
pub(crate) fn resolve_env(
    facts: &DownwardFacts<'_>,
    container: &Container,
    objects: &PodObjects,
) -> Result<Vec<(String, String)>, ConfigError> {
    let namespace = facts
        .pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let mut vars: Vec<(String, String)> = Vec::new();
    let set = |vars: &mut Vec<(String, String)>, key: String, value: String| {
        vars.retain(|(k, _)| *k != key);
        vars.push((key, value));
    };
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let (kind, name, optional) = if let Some(r) = &from.config_map_ref {
            (ObjectKind::ConfigMap, &r.name, r.optional == Some(true))
        } else if let Some(r) = &from.secret_ref {
            (ObjectKind::Secret, &r.name, r.optional == Some(true))
        } else {
            continue;
        };
        for (key, value) in objects
            .data(kind, &namespace, name, optional)?
            .unwrap_or_default()
        {
            set(
                &mut vars,
                format!("{prefix}{key}"),
                String::from_utf8_lossy(&value).into_owned(),
            );
        }
    }
    for env in container.env.iter().flatten() {
        let value = if let Some(from) = &env.value_from {
            let key_ref = if let Some(r) = &from.config_map_key_ref {
                Some((
                    ObjectKind::ConfigMap,
                    &r.name,
                    &r.key,
                    r.optional == Some(true),
                ))
            } else {
                from.secret_key_ref.as_ref().map(|r| {
                    (
                        ObjectKind::Secret,
                        &r.name,
                        &r.key,
                        r.optional == Some(true),
                    )
                })
            };
            if let Some((kind, name, key, optional)) = key_ref {
                match objects.value(kind, &namespace, name, key, optional)? {
                    Some(v) => String::from_utf8_lossy(&v).into_owned(),
                    None => continue,
                }
            } else if let Some(field) = &from.field_ref {
                field_value(facts, field)?
            } else if let Some(field) = &from.resource_field_ref {
                resource_value(facts, container, field)?
            } else {
                String::new()
            }
        } else {
            expand(env.value.as_deref().unwrap_or(""), &vars)
        };
        set(&mut vars, env.name.clone(), value);
    }
    Ok(vars)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn pod() -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": { "name": "p", "namespace": "research", "uid": "u-1",
                          "labels": { "app": "stats" } },
            "spec": { "containers": [{ "name": "main", "image": "r/x:1" }] }
        }))
        .unwrap()
    }

    fn facts(pod: &Pod) -> DownwardFacts<'_> {
        DownwardFacts {
            pod,
            node_name: "station-a",
            host_ip: "127.0.0.1",
            node_cpu: 2.0,
            node_memory: 1024.0 * 1024.0 * 1024.0,
        }
    }

    fn container(json: serde_json::Value) -> Container {
        serde_json::from_value(json).unwrap()
    }

    fn objects() -> PodObjects {
        let cm: ConfigMap = serde_json::from_value(serde_json::json!({
            "metadata": { "name": "settings" }, "data": { "MODE": "fast", "LEVEL": "3" }
        }))
        .unwrap();
        let secret = Secret {
            data: Some([("token".to_owned(), ByteString(b"s3cret".to_vec()))].into()),
            ..Secret::default()
        };
        PodObjects {
            config_maps: [("settings".to_owned(), Some(cm)), ("gone".to_owned(), None)].into(),
            secrets: [("creds".to_owned(), Some(secret))].into(),
        }
    }

    #[test]
    fn every_kind_of_env_source_resolves() {
        let pod = pod();
        let c = container(serde_json::json!({
            "name": "main",
            "envFrom": [{ "configMapRef": { "name": "settings" }, "prefix": "CFG_" }],
            "env": [
                { "name": "PLAIN", "value": "v" },
                { "name": "EXPANDED", "value": "$(PLAIN)-$(CFG_MODE)-$$(PLAIN)-$(NOPE)" },
                { "name": "FROM_CM", "valueFrom": { "configMapKeyRef": { "name": "settings", "key": "LEVEL" } } },
                { "name": "FROM_SECRET", "valueFrom": { "secretKeyRef": { "name": "creds", "key": "token" } } },
                { "name": "POD", "valueFrom": { "fieldRef": { "fieldPath": "metadata.name" } } },
                { "name": "APP", "valueFrom": { "fieldRef": { "fieldPath": "metadata.labels['app']" } } },
                { "name": "NODE", "valueFrom": { "fieldRef": { "fieldPath": "spec.nodeName" } } },
                { "name": "MEM", "valueFrom": { "resourceFieldRef": { "resource": "limits.memory", "divisor": "1Mi" } } },
                { "name": "OPTIONAL", "valueFrom": { "configMapKeyRef": { "name": "gone", "key": "k", "optional": true } } }
            ],
            "resources": { "limits": { "memory": "64Mi" } }
        }));
        let env = resolve_env(&facts(&pod), &c, &objects()).unwrap();
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("CFG_MODE"), Some("fast"));
        assert_eq!(get("PLAIN"), Some("v"));
        assert_eq!(get("EXPANDED"), Some("v-fast-$(PLAIN)-$(NOPE)"));
        assert_eq!(get("FROM_CM"), Some("3"));
        assert_eq!(get("FROM_SECRET"), Some("s3cret"));
        assert_eq!(get("POD"), Some("p"));
        assert_eq!(get("APP"), Some("stats"));
        assert_eq!(get("NODE"), Some("station-a"));
        assert_eq!(get("MEM"), Some("64"));
        assert_eq!(get("OPTIONAL"), None);
    }

    #[test]
    fn missing_objects_and_keys_are_named() {
        let pod = pod();
        let c = container(serde_json::json!({ "name": "main", "env": [
            { "name": "X", "valueFrom": { "configMapKeyRef": { "name": "gone", "key": "k" } } }
        ]}));
        let e = resolve_env(&facts(&pod), &c, &objects()).unwrap_err();
        assert_eq!(e.0, "configmap \"gone\" not found");
        let c = container(serde_json::json!({ "name": "main", "env": [
            { "name": "X", "valueFrom": { "secretKeyRef": { "name": "creds", "key": "nope" } } }
        ]}));
        let e = resolve_env(&facts(&pod), &c, &objects()).unwrap_err();
        assert_eq!(e.0, "couldn't find key nope in Secret research/creds");
    }

    #[test]
    fn cpu_limits_round_up_and_default_to_the_node() {
        let pod = pod();
        let field = |resource: &str, divisor: Option<&str>| ResourceFieldSelector {
            resource: resource.to_owned(),
            divisor: divisor
                .map(|d| k8s_openapi::apimachinery::pkg::api::resource::Quantity(d.to_owned())),
            ..ResourceFieldSelector::default()
        };
        let c = container(
            serde_json::json!({ "name": "m", "resources": { "limits": { "cpu": "500m" } } }),
        );
        assert_eq!(
            resource_value(&facts(&pod), &c, &field("limits.cpu", None)).unwrap(),
            "1"
        );
        assert_eq!(
            resource_value(&facts(&pod), &c, &field("limits.cpu", Some("1m"))).unwrap(),
            "500"
        );
        let bare = container(serde_json::json!({ "name": "m" }));
        assert_eq!(
            resource_value(&facts(&pod), &bare, &field("limits.cpu", None)).unwrap(),
            "2"
        );
    }

    #[test]
    fn quantities_parse() {
        assert_eq!(parse_quantity("64Mi"), Some(64.0 * 1024.0 * 1024.0));
        assert_eq!(parse_quantity("250m"), Some(0.25));
        assert_eq!(parse_quantity("1e3"), Some(1000.0));
        assert_eq!(parse_quantity("x"), None);
    }
}
