//! Whose queries a container's are: the audit trail every data query of
//! the container is recorded under.
//!
//! This module owns the caller a container's queries are recorded as
//! (the node, the pod, its service account and the module's digest). It
//! must never leave out a field it knows: the audit log is where a data
//! protection officer reads who asked what.

use std::sync::Arc;

use sandlet_data::{AuditTrail, Caller};
use sandlet_runtime::PreparedModule;

use super::worker::Worker;
use crate::pods::admission::PodPlan;

impl Worker {
    /// Whose queries a container's are, for the audit log.
    pub(super) fn audit_trail(&self, plan: &PodPlan, module: &PreparedModule) -> AuditTrail {
        AuditTrail {
            log: Arc::clone(&self.ctx.audit),
            station: self.ctx.identity.name.clone(),
            caller: Caller {
                via: "node".to_owned(),
                namespace: Some(self.namespace.clone()),
                pod: Some(self.name.clone()),
                pod_uid: Some(self.uid.clone()),
                service_account: Some(plan.service_account.clone()),
                module_digest: Some(module.digest().to_string()),
            },
            counters: Some(Arc::clone(&self.ctx.queries)),
        }
    }
}
