//! The node's heartbeat: the Lease in `kube-node-lease` that the node
//! lifecycle controller watches, and the Node status refreshed with it.
//!
//! This module owns keeping the node alive in the cluster's eyes,
//! registering it again if its Node object was deleted while it ran.
//!
//! Guarantees: the Lease is renewed every [`LEASE_RENEW_INTERVAL`], well
//! inside [`LEASE_DURATION_SECONDS`], so a live node is never marked
//! NotReady; a failed renewal is retried at the next tick and logged. It
//! must never stop while the node runs.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};

use crate::node::identity::NodeIdentity;
use crate::node::object::{RegisterError, node_status, register};

/// The namespace of node heartbeat Leases.
pub(crate) const LEASE_NAMESPACE: &str = "kube-node-lease";
/// The kubelet's default Lease duration.
pub(crate) const LEASE_DURATION_SECONDS: i32 = 40;
/// A quarter of the Lease duration, as the kubelet renews.
pub(crate) const LEASE_RENEW_INTERVAL: Duration = Duration::from_secs(10);
/// How often the Ready condition's heartbeat is refreshed in the Node
/// status when nothing changed (the kubelet's nodeStatusReportFrequency).
pub(crate) const STATUS_REPORT_INTERVAL: Duration = Duration::from_secs(60);

/// The Lease that says this node is alive.
pub(crate) fn lease_object(id: &NodeIdentity, node_uid: &str, now: Timestamp) -> Lease {
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
    /// The heartbeat of the node `id`, registered as `node_uid`, ready
    /// since `since`.
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
    pub(crate) async fn renew_lease(&mut self) -> Result<(), kube::Error> {
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
                    .map_err(|e: RegisterError| e.source)?;
                tracing::info!(node = %self.id.name, uid, "registered again");
                self.node_uid = uid;
                Ok(())
            }
        }
    }

    /// Refreshes the Node's conditions (registering it again if it was
    /// deleted).
    pub(crate) async fn report_status(&mut self) -> Result<(), kube::Error> {
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

    #[test]
    fn the_lease_renews_well_inside_its_duration() {
        assert!(LEASE_RENEW_INTERVAL.as_secs() * 4 <= LEASE_DURATION_SECONDS as u64);
        let lease = lease_object(&NodeIdentity::example(), "uid-1", Timestamp::now());
        assert_eq!(lease.metadata.namespace.as_deref(), Some(LEASE_NAMESPACE));
        assert_eq!(lease.metadata.owner_references.unwrap()[0].uid, "uid-1");
    }
}
