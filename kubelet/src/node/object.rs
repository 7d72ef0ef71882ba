//! The Node object: its labels and taints (docs/reference/pods.md), its
//! status (capacity, addresses, the kubelet endpoint, `nodeInfo`, the
//! Ready condition), and registration.
//!
//! This module owns what the cluster sees of the node itself. Building the
//! objects does no IO ([`node_object`], [`node_status`]); [`register`]
//! sends them. It must never change the taints of a Node that exists
//! (NodeRestriction forbids it; the admin's word stands).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus,
    Taint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};

use crate::node::identity::NodeIdentity;

/// The architecture label and taint key that krustlet-era manifests use.
pub(crate) const ARCH_KEY: &str = "kubernetes.io/arch";
pub(crate) const ARCH: &str = "wasm32-wasi";

/// The labels of docs/reference/pods.md.
pub(crate) fn node_labels(name: &str) -> BTreeMap<String, String> {
    [
        (ARCH_KEY, ARCH),
        ("kubernetes.io/os", "wasi"),
        ("type", "sandlet"),
        ("kubernetes.io/hostname", name),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// The taints of docs/reference/pods.md: only pods that tolerate
/// `kubernetes.io/arch=wasm32-wasi` are scheduled (NoSchedule) or stay
/// (NoExecute) here.
pub(crate) fn node_taints() -> Vec<Taint> {
    ["NoSchedule", "NoExecute"]
        .into_iter()
        .map(|effect| Taint {
            key: ARCH_KEY.to_owned(),
            value: Some(ARCH.to_owned()),
            effect: effect.to_owned(),
            ..Taint::default()
        })
        .collect()
}

/// The Node to register.
pub(crate) fn node_object(id: &NodeIdentity, since: Timestamp) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(id.name.clone()),
            labels: Some(node_labels(&id.name)),
            annotations: Some([("node.alpha.kubernetes.io/ttl".to_owned(), "0".to_owned())].into()),
            ..ObjectMeta::default()
        },
        spec: Some(NodeSpec {
            taints: Some(node_taints()),
            ..NodeSpec::default()
        }),
        status: Some(node_status(id, since, Timestamp::now())),
    }
}

/// The Node's status: capacity, conditions, addresses, endpoints, info.
/// `since` is when the node became ready (the conditions' transition time).
pub(crate) fn node_status(id: &NodeIdentity, since: Timestamp, now: Timestamp) -> NodeStatus {
    let resources: BTreeMap<String, Quantity> = [
        ("cpu".to_owned(), Quantity(id.cpus.to_string())),
        (
            "memory".to_owned(),
            Quantity(format!("{}Ki", id.memory_bytes / 1024)),
        ),
        ("pods".to_owned(), Quantity(id.max_pods.to_string())),
    ]
    .into();
    let condition = |type_: &str, status: &str, reason: &str, message: &str| NodeCondition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: Some(reason.to_owned()),
        message: Some(message.to_owned()),
        last_heartbeat_time: Some(Time(now)),
        last_transition_time: Some(Time(since)),
    };
    NodeStatus {
        capacity: Some(resources.clone()),
        allocatable: Some(resources),
        conditions: Some(vec![
            condition(
                "MemoryPressure",
                "False",
                "KubeletHasSufficientMemory",
                "sandlet has sufficient memory available",
            ),
            condition(
                "DiskPressure",
                "False",
                "KubeletHasNoDiskPressure",
                "sandlet has no disk pressure",
            ),
            condition(
                "PIDPressure",
                "False",
                "KubeletHasSufficientPID",
                "sandlet has sufficient PID available",
            ),
            condition(
                "Ready",
                "True",
                "KubeletReady",
                "sandlet is ready to run wasm pods",
            ),
        ]),
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".to_owned(),
                address: id.internal_ip(),
            },
            NodeAddress {
                type_: "Hostname".to_owned(),
                address: id.name.clone(),
            },
        ]),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint {
                port: i32::from(id.port),
            }),
        }),
        node_info: Some(id.system_info.clone()),
        ..NodeStatus::default()
    }
}

/// Why the node could not register.
#[derive(Debug, thiserror::Error)]
#[error("cannot register node {name}: {source}")]
pub struct RegisterError {
    /// The node's name.
    pub(crate) name: String,
    /// What the API server said.
    #[source]
    pub(crate) source: kube::Error,
}

/// Registers the node (creating it, or updating the labels and status of
/// an existing Node of the same name) and returns its UID.
pub async fn register(
    client: &Client,
    id: &NodeIdentity,
    since: Timestamp,
) -> Result<String, RegisterError> {
    let nodes: Api<Node> = Api::all(client.clone());
    let error = |source| RegisterError {
        name: id.name.clone(),
        source,
    };
    let node = node_object(id, since);
    let created = match nodes.create(&PostParams::default(), &node).await {
        Ok(created) => created,
        Err(kube::Error::Api(status)) if status.code == 409 => {
            // Re-registration: labels may be refreshed; taints are left as
            // the admin (or the first registration) set them, as
            // NodeRestriction requires.
            nodes
                .patch(
                    &id.name,
                    &PatchParams::default(),
                    &Patch::Merge(
                        serde_json::json!({ "metadata": { "labels": node_labels(&id.name) } }),
                    ),
                )
                .await
                .map_err(error)?
        }
        Err(e) => return Err(error(e)),
    };
    // A created Node's status is dropped by the API server: set it.
    nodes
        .patch_status(
            &id.name,
            &PatchParams::default(),
            &Patch::Merge(
                serde_json::json!({ "status": node_status(id, since, Timestamp::now()) }),
            ),
        )
        .await
        .map_err(error)?;
    Ok(created.metadata.uid.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_carries_the_contract_labels_and_taints() {
        let node = node_object(&NodeIdentity::example(), Timestamp::now());
        let labels = node.metadata.labels.unwrap();
        assert_eq!(labels["kubernetes.io/arch"], "wasm32-wasi");
        assert_eq!(labels["kubernetes.io/os"], "wasi");
        assert_eq!(labels["type"], "sandlet");
        assert_eq!(labels["kubernetes.io/hostname"], "station-a");
        let taints = node.spec.unwrap().taints.unwrap();
        let effects: Vec<_> = taints.iter().map(|t| t.effect.as_str()).collect();
        assert_eq!(effects, ["NoSchedule", "NoExecute"]);
        assert!(
            taints
                .iter()
                .all(|t| t.key == ARCH_KEY && t.value.as_deref() == Some(ARCH))
        );
    }

    #[test]
    fn status_reports_capacity_address_and_endpoint() {
        let status = node_status(&NodeIdentity::example(), Timestamp::now(), Timestamp::now());
        let capacity = status.capacity.unwrap();
        assert_eq!(capacity["pods"].0, "500");
        assert_eq!(capacity["cpu"].0, "2");
        assert_eq!(capacity["memory"].0, "8388608Ki");
        let addresses = status.addresses.unwrap();
        assert_eq!(addresses[0].address, "127.0.0.1");
        assert_eq!(
            status
                .daemon_endpoints
                .unwrap()
                .kubelet_endpoint
                .unwrap()
                .port,
            10250
        );
        let info = status.node_info.unwrap();
        assert_eq!(info.container_runtime_version, "wasmtime://48.0.8");
        let ready = status
            .conditions
            .unwrap()
            .into_iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(ready.status, "True");
    }
}
