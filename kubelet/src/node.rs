//! The Node object: registration, status, and the heartbeat Lease.
//!
//! This module owns what the cluster sees of the node itself: labels and
//! taints (docs/reference/pods.md), capacity, addresses, the kubelet
//! endpoint, `nodeInfo`, the Ready condition, and the Lease in
//! `kube-node-lease` that the node lifecycle controller watches. Building
//! the objects does no IO ([`node_object`], [`node_status`]); [`Heartbeat`]
//! sends them.
//!
//! Guarantees: the Lease is renewed every [`LEASE_RENEW_INTERVAL`], well
//! inside [`LEASE_DURATION_SECONDS`], so a live node is never marked
//! NotReady; a failed renewal is retried at the next tick and logged.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus,
    NodeSystemInfo, Taint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};

/// The namespace of node heartbeat Leases.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
/// The kubelet's default Lease duration.
pub const LEASE_DURATION_SECONDS: i32 = 40;
/// A quarter of the Lease duration, as the kubelet renews.
pub const LEASE_RENEW_INTERVAL: Duration = Duration::from_secs(10);
/// How often the Ready condition's heartbeat is refreshed in the Node
/// status when nothing changed (the kubelet's nodeStatusReportFrequency).
pub const STATUS_REPORT_INTERVAL: Duration = Duration::from_secs(60);

/// The architecture label and taint key that krustlet-era manifests use.
pub const ARCH_KEY: &str = "kubernetes.io/arch";
pub const ARCH: &str = "wasm32-wasi";

/// Everything the Node object says about this node.
#[derive(Debug, Clone)]
pub struct NodeIdentity {
    pub name: String,
    /// The address the API server reaches the kubelet API at.
    pub address: IpAddr,
    pub port: u16,
    pub max_pods: u32,
    pub cpus: u32,
    pub memory_bytes: u64,
    /// `nodeInfo`: read from the host once, reported with every status.
    pub system_info: NodeSystemInfo,
}

impl NodeIdentity {
    /// This machine's cpus, memory and system identifiers;
    /// `runtime_version` is wasmtime's.
    pub fn detect(
        name: &str,
        address: IpAddr,
        port: u16,
        max_pods: u32,
        runtime_version: &str,
    ) -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        let memory_bytes = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|text| {
                text.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
            .map_or(1 << 30, |kib| kib * 1024);
        NodeIdentity {
            name: name.to_owned(),
            address,
            port,
            max_pods,
            cpus,
            memory_bytes,
            system_info: system_info(runtime_version),
        }
    }

    /// The address reported as InternalIP: an unspecified bind address
    /// (0.0.0.0) is reported as loopback.
    pub fn internal_ip(&self) -> String {
        if self.address.is_unspecified() {
            "127.0.0.1".to_owned()
        } else {
            self.address.to_string()
        }
    }
}

/// The labels of docs/reference/pods.md.
pub fn node_labels(name: &str) -> BTreeMap<String, String> {
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
pub fn node_taints() -> Vec<Taint> {
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

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// `nodeInfo`, with the host's kernel, machine and boot identifiers.
pub fn system_info(runtime_version: &str) -> NodeSystemInfo {
    NodeSystemInfo {
        architecture: "wasm32".to_owned(),
        operating_system: "wasi".to_owned(),
        os_image: "sandlet (WASI preview 2)".to_owned(),
        kernel_version: read_trimmed("/proc/sys/kernel/osrelease"),
        machine_id: read_trimmed("/etc/machine-id"),
        system_uuid: read_trimmed("/etc/machine-id"),
        boot_id: read_trimmed("/proc/sys/kernel/random/boot_id"),
        container_runtime_version: format!("wasmtime://{runtime_version}"),
        kubelet_version: format!("v1.36.0-sandlet.{}", env!("CARGO_PKG_VERSION")),
        kube_proxy_version: String::new(),
        ..NodeSystemInfo::default()
    }
}

/// The Node to register.
pub fn node_object(id: &NodeIdentity, since: Timestamp) -> Node {
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
pub fn node_status(id: &NodeIdentity, since: Timestamp, now: Timestamp) -> NodeStatus {
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

/// Why the node could not register or heartbeat.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("cannot register node {name}: {source}")]
    Register {
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// Registers the node (creating it, or updating the labels and status of
/// an existing Node of the same name) and returns its UID.
pub async fn register(
    client: &Client,
    id: &NodeIdentity,
    since: Timestamp,
) -> Result<String, NodeError> {
    let nodes: Api<Node> = Api::all(client.clone());
    let error = |source| NodeError::Register {
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

/// The Lease that says this node is alive.
pub fn lease_object(id: &NodeIdentity, node_uid: &str, now: Timestamp) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(id.name.clone()),
            namespace: Some(LEASE_NAMESPACE.to_owned()),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".to_owned(),
                kind: "Node".to_owned(),
                name: id.name.clone(),
                uid: node_uid.to_owned(),
                ..OwnerReference::default()
            }]),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(id.name.clone()),
            lease_duration_seconds: Some(LEASE_DURATION_SECONDS),
            renew_time: Some(MicroTime(now)),
            ..LeaseSpec::default()
        }),
    }
}

/// Keeps the node's Lease and status fresh.
pub struct Heartbeat {
    client: Client,
    id: NodeIdentity,
    node_uid: String,
    since: Timestamp,
}

impl Heartbeat {
    pub fn new(client: Client, id: NodeIdentity, node_uid: String, since: Timestamp) -> Self {
        Heartbeat {
            client,
            id,
            node_uid,
            since,
        }
    }

    /// Renews the Lease once (creating it if missing). A missing Lease is
    /// also how a deleted Node shows: the garbage collector removes its
    /// Lease with it, and the node registers again.
    pub async fn renew_lease(&mut self) -> Result<(), kube::Error> {
        let leases: Api<Lease> = Api::namespaced(self.client.clone(), LEASE_NAMESPACE);
        let now = Timestamp::now();
        let patch = serde_json::json!({ "spec": {
            "holderIdentity": self.id.name,
            "leaseDurationSeconds": LEASE_DURATION_SECONDS,
            "renewTime": MicroTime(now),
        }});
        match leases
            .patch(&self.id.name, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => {
                self.ensure_registered().await?;
                leases
                    .create(
                        &PostParams::default(),
                        &lease_object(&self.id, &self.node_uid, now),
                    )
                    .await
                    .map(drop)
            }
            Err(e) => Err(e),
        }
    }

    /// Registers the node again if its Node object is gone (deleted while
    /// the node ran), as it was registered at start; the node's pods go
    /// on. Keeps the Node's current UID for the Lease's owner.
    async fn ensure_registered(&mut self) -> Result<(), kube::Error> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        match nodes.get_opt(&self.id.name).await? {
            Some(node) => {
                if let Some(uid) = node.metadata.uid {
                    self.node_uid = uid;
                }
                Ok(())
            }
            None => {
                tracing::warn!(node = %self.id.name, "the Node object was deleted: registering again");
                let uid = register(&self.client, &self.id, self.since)
                    .await
                    .map_err(|NodeError::Register { source, .. }| source)?;
                tracing::info!(node = %self.id.name, uid, "registered again");
                self.node_uid = uid;
                Ok(())
            }
        }
    }

    /// Refreshes the Node's conditions (registering it again if it was
    /// deleted).
    pub async fn report_status(&mut self) -> Result<(), kube::Error> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let patch = || {
            Patch::Merge(serde_json::json!({
                "status": node_status(&self.id, self.since, Timestamp::now())
            }))
        };
        match nodes
            .patch_status(&self.id.name, &PatchParams::default(), &patch())
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => self.ensure_registered().await,
            Err(e) => Err(e),
        }
    }

    /// Runs until the task is dropped.
    pub async fn run(mut self) {
        let mut lease_tick = tokio::time::interval(LEASE_RENEW_INTERVAL);
        let mut status_tick = tokio::time::interval(STATUS_REPORT_INTERVAL);
        lease_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        status_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = lease_tick.tick() => {
                    if let Err(error) = self.renew_lease().await {
                        tracing::warn!(%error, "cannot renew the node lease; retrying in {:?}", LEASE_RENEW_INTERVAL);
                    }
                }
                _ = status_tick.tick() => {
                    if let Err(error) = self.report_status().await {
                        tracing::warn!(%error, "cannot report node status");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> NodeIdentity {
        NodeIdentity {
            name: "station-a".into(),
            address: "0.0.0.0".parse().unwrap(),
            port: 10250,
            max_pods: 500,
            cpus: 2,
            memory_bytes: 8 << 30,
            system_info: system_info("48.0.8"),
        }
    }

    #[test]
    fn the_node_carries_the_contract_labels_and_taints() {
        let node = node_object(&identity(), Timestamp::now());
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
        let status = node_status(&identity(), Timestamp::now(), Timestamp::now());
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

    #[test]
    fn the_lease_renews_well_inside_its_duration() {
        assert!(LEASE_RENEW_INTERVAL.as_secs() * 4 <= LEASE_DURATION_SECONDS as u64);
        let lease = lease_object(&identity(), "uid-1", Timestamp::now());
        assert_eq!(lease.metadata.namespace.as_deref(), Some(LEASE_NAMESPACE));
        assert_eq!(lease.metadata.owner_references.unwrap()[0].uid, "uid-1");
    }
}
