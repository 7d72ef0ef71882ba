//! One pod's life on this node: where it is decided what runs, when, and
//! what the pod's status says about it. This file is the whole story; the
//! worker's jobs are its submodules, one file each:
//!
//! - [`worker`]: what the worker holds, its state, Events and stopping;
//! - [`pod_object`]: status patches (in order, retried) and the removal;
//! - [`pull`]: the container's module, pulled, pinned and prepared;
//! - [`audit`]: whose queries a container's are;
//! - [`sealing`]: a sealed pod's answer and log as ciphertext;
//! - [`setup`]: what a run is given, as a `RunPlan`, and config retries;
//! - [`container`]: a container's runs, restarts and back-off.
//!
//! A worker runs per pod UID, from the moment the pod is bound here until
//! it is deleted:
//!
//! 1. Admission ([`PodPlan::from_pod`]): a pod that cannot run here is
//!    failed at once with the reason and an Event.
//! 2. Init containers, one after another; a failed one restarts (unless
//!    `restartPolicy: Never`, which fails the pod).
//! 3. Containers, all at once, each restarted as `restartPolicy` says with
//!    exponential back-off (`CrashLoopBackOff`).
//! 4. The pod ends Succeeded or Failed, or is stopped by
//!    `activeDeadlineSeconds` (Failed, `DeadlineExceeded`) or deletion.
//! 5. On deletion: the guests are stopped (wasm guests cannot handle
//!    SIGTERM, so stopping is immediate and always inside the grace
//!    period), the final status is reported, and the pod is removed with
//!    its UID as precondition.
//!
//! Guarantees: every container that starts is reported Running before it
//! is reported terminated (docs/reference/pods.md); a pod whose status says
//! it finished is never run again, also after a sandlet restart; a
//! container that was running when sandlet stopped is treated as having
//! failed (exit code 137) and its `restartPolicy` decides what follows.
//!
//! Caveats: status updates are JSON merge patches of the whole status this
//! node owns; conditions written by others are carried over from the last
//! pod object seen.
//!
//! This module owns the pod's course: admission, the order of its
//! containers, its deadline, its final phase, and its end. It must never
//! run a pod whose status says it finished, nor leave anything of the pod
//! (table entry, Events, directories) behind once its worker ends.

mod audit;
mod container;
mod pod_object;
mod pull;
mod sealing;
pub(crate) mod setup;
mod worker;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::runtime::events::EventType;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::pods::admission::PodPlan;
use crate::pods::context::NodeContext;
use crate::pods::events::pod_reference;
use crate::pods::status::{Phase, PodState, Terminated};
use crate::pods::table::{ContainerRun, PodEntry};
use worker::{Slot, Stop, Worker};

/// Runs the pod in `updates` (the latest object the node has seen) until
/// it is deleted.
pub(crate) async fn run_pod(ctx: Arc<NodeContext>, updates: watch::Receiver<Pod>) {
    let pod = updates.borrow().clone();
    let namespace = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let name = pod.metadata.name.clone().unwrap_or_default();
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let pairs = |list: &[Container]| {
        list.iter()
            .map(|c| (c.name.clone(), c.image.clone().unwrap_or_default()))
            .collect::<Vec<_>>()
    };
    let state = PodState::new(
        &pairs(spec.init_containers.as_deref().unwrap_or_default()),
        &pairs(&spec.containers),
        pod.status.as_ref(),
        &ctx.identity.internal_ip(),
    );
    let entry = Arc::new(PodEntry {
        uid: uid.clone(),
        dir: ctx.pod_dirs(&uid).disk,
        containers: Mutex::default(),
    });
    for c in state.init.iter().chain(state.containers.iter()) {
        entry.set(
            &c.name,
            ContainerRun {
                restart_count: c.restart_count,
                running: None,
            },
        );
    }
    ctx.pods.insert(&namespace, &name, entry.clone());
    let worker = Arc::new(Worker {
        api: Api::namespaced(ctx.client.clone(), &namespace),
        reference: pod_reference(&pod),
        ctx: ctx.clone(),
        pod,
        namespace,
        name,
        uid,
        state: Mutex::new(state),
        publishing: tokio::sync::Mutex::new(()),
        unsent: std::sync::atomic::AtomicBool::new(false),
        status_retry: tokio::sync::Notify::new(),
        entry,
        stop: CancellationToken::new(),
        stop_reason: Mutex::new(None),
        deleted: CancellationToken::new(),
        pins: Mutex::new(HashMap::new()),
        volumes: tokio::sync::Mutex::new(None),
        seen: std::time::Instant::now(),
    });
    let watching = tokio::spawn(watch_for_deletion(worker.clone(), updates));
    let retrying = tokio::spawn(worker.clone().retry_status());
    worker.live().await;
    worker.deleted.cancelled().await;
    if worker.stopped() != Some(Stop::Gone) {
        worker.remove_from_api().await;
    }
    watching.abort();
    retrying.abort();
    ctx.pods
        .remove(&worker.namespace, &worker.name, &worker.uid);
    ctx.recorder.forget(&worker.uid);
    let dirs = ctx.pod_dirs(&worker.uid);
    for dir in [dirs.disk, dirs.memory] {
        if let Err(error) = tokio::fs::remove_dir_all(&dir).await
            && error.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(%error, dir = %dir.display(), "cannot remove the pod directory");
        }
    }
}

/// Stops the pod's guests once the pod has a deletionTimestamp, or is
/// gone (its sender dropped by the pod watch).
async fn watch_for_deletion(worker: Arc<Worker>, mut updates: watch::Receiver<Pod>) {
    loop {
        let deleting = updates
            .borrow_and_update()
            .metadata
            .deletion_timestamp
            .is_some();
        if deleting {
            worker.request_stop(Stop::Deleted);
            worker.deleted.cancel();
            return;
        }
        if updates.changed().await.is_err() {
            worker.request_stop(Stop::Gone);
            worker.deleted.cancel();
            return;
        }
    }
}

impl Worker {
    /// Admission, init containers, containers, and the pod's final phase.
    async fn live(self: &Arc<Self>) {
        if self.with_state(|s| s.phase.is_terminal()) {
            // Finished before (this process or an earlier one): never rerun.
            return;
        }
        let plan = match PodPlan::from_pod(&self.pod, self.ctx.data.as_deref()) {
            Ok(plan) => Arc::new(plan),
            Err(rejection) => {
                self.with_state(|s| {
                    s.finish(
                        Phase::Failed,
                        Some(rejection.reason),
                        Some(rejection.message.clone()),
                    )
                });
                self.event(EventType::Warning, rejection.reason, rejection.message);
                self.publish().await;
                return;
            }
        };
        // The first status goes out when a container starts or has to wait,
        // one API write fewer per pod.
        let start = self.with_state(|s| *s.start_time.get_or_insert_with(Timestamp::now));
        if let Some(deadline) = plan.active_deadline {
            let elapsed = Timestamp::now()
                .duration_since(start)
                .try_into()
                .unwrap_or(Duration::ZERO);
            let remaining = deadline.saturating_sub(elapsed);
            let worker = self.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = tokio::time::sleep(remaining) => worker.request_stop(Stop::Deadline),
                    _ = worker.stop.cancelled() => {}
                }
            });
        }
        if !self.with_state(|s| s.initialized) {
            for i in 0..plan.init_containers.len() {
                let already = self.container_mut(Slot::Init(i), |c| {
                    c.terminated().is_some_and(Terminated::succeeded)
                });
                if already {
                    continue;
                }
                match self.run_container(&plan, Slot::Init(i)).await {
                    Some(t) if t.succeeded() => {}
                    _ => break,
                }
            }
            let initialized = self.with_state(|s| {
                s.initialized = s
                    .init
                    .iter()
                    .all(|c| c.terminated().is_some_and(Terminated::succeeded));
                s.initialized
            });
            if !initialized {
                self.conclude().await;
                return;
            }
            self.publish().await;
        }
        let runs = (0..plan.containers.len()).map(|i| {
            let worker = self.clone();
            let plan = plan.clone();
            async move { worker.run_container(&plan, Slot::Main(i)).await }
        });
        futures_util::future::join_all(runs).await;
        self.conclude().await;
    }

    /// Sets the final phase once no container will run again.
    async fn conclude(&self) {
        let stop = self.stopped();
        self.with_state(|s| {
            if stop == Some(Stop::Deadline) {
                s.finish(
                    Phase::Failed,
                    Some("DeadlineExceeded"),
                    Some(
                        "Pod was active on the node longer than the specified deadline".to_owned(),
                    ),
                );
                return;
            }
            let init_failed = s
                .init
                .iter()
                .any(|c| c.terminated().is_some_and(|t| !t.succeeded()));
            let all_ok = !init_failed
                && s.initialized
                && s.containers
                    .iter()
                    .all(|c| c.terminated().is_some_and(Terminated::succeeded));
            s.finish(
                if all_ok {
                    Phase::Succeeded
                } else {
                    Phase::Failed
                },
                None,
                None,
            );
        });
        if stop == Some(Stop::Deadline) {
            self.event(
                EventType::Warning,
                "DeadlineExceeded",
                "Pod was active on the node longer than the specified deadline".to_owned(),
            );
        }
        self.publish().await;
    }
}
