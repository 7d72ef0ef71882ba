//! One pod's life on this node: where it is decided what runs, when, and
//! what the pod's status says about it.
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

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ObjectReference, Pod, Secret};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::events::EventType;
use sandlet_data::{
    AuditTrail, Budget, Caller, DataAccess, GrantedDatasets, NoDatasets, raw_file_mounts,
};
use sandlet_registry::oci::Credentials;
use sandlet_registry::pull::WaitingReason;
use sandlet_registry::store::Pin;
use sandlet_runtime::limits::{LimitExceeded, Limits};
use sandlet_runtime::{DirAccess, ModuleKind, PreparedModule, RunError, RunOutcome, RunPlan};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::admission::{ContainerPlan, PodPlan, RestartPolicy};
use crate::context::{ContainerRun, Metered, NodeContext, PodEntry, pod_reference};
use crate::env::{ConfigError, DownwardFacts, PodObjects, expand, referenced_objects, resolve_env};
use crate::file_mounts::{self, FileMount, StagedFiles};
use crate::logs::{LogOptions, log_path, open_sinks, read_log};
use crate::status::{Phase, PodState, Run, Terminated, termination_message};
use crate::volumes::{
    HostVolume, Tokens, VolumeInputs, bound_token_request, materialize, token_audiences,
};

/// Longest restart back-off, as the kubelet's.
pub const MAX_RESTART_BACKOFF: Duration = Duration::from_secs(300);

/// How long a pod container may run: pods have no sandbox timeout of their
/// own (`activeDeadlineSeconds` bounds a pod), so this only keeps the
/// engine's deadline arithmetic finite.
pub const POD_RUN_TIMEOUT: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Exit code reported for a guest stopped by the node (as for SIGKILL).
pub const KILLED_EXIT_CODE: i32 = 137;

/// How often a container whose configuration cannot be built (a missing
/// ConfigMap, say) is tried again, at most.
const CONFIG_RETRY: Duration = Duration::from_secs(2);

/// The first retry of a container's configuration. Right after a pod is
/// bound, the API server's NodeRestriction admission may not yet know the
/// pod is on this node and refuses the node its tokens for a moment (its
/// pod cache trails the binding by a few milliseconds); quick retries,
/// doubling from this, ride that out.
const CONFIG_FIRST_RETRY: Duration = Duration::from_millis(10);

/// How long a container's configuration may keep failing before the error
/// is reported (status `CreateContainerConfigError` and an Event); the
/// retries until then are quiet, and the last one is timed to land on it.
const CONFIG_QUIET: Duration = Duration::from_millis(750);

/// Why a pod's guests are being stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// The pod is being deleted (it has a deletionTimestamp).
    Deleted,
    /// The pod object no longer exists.
    Gone,
    /// `activeDeadlineSeconds` passed.
    Deadline,
    /// The pod failed for a reason no retry cures (its module is invalid
    /// or not allowed): its other containers stop too.
    Failed,
}

impl Stop {
    fn message(self) -> &'static str {
        match self {
            Stop::Deleted | Stop::Gone => "stopped by sandlet: the pod was deleted",
            Stop::Deadline => "stopped by sandlet: the pod's activeDeadlineSeconds passed",
            Stop::Failed => "stopped by sandlet: the pod failed",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Init(usize),
    Main(usize),
}

/// First retry of a status the API server did not take.
const STATUS_RETRY_FIRST: Duration = Duration::from_secs(1);
/// Retries of an unsent status are at most this far apart, so statuses
/// converge within seconds of the API server's return.
const STATUS_RETRY_MAX: Duration = Duration::from_secs(4);

struct Worker {
    ctx: Arc<NodeContext>,
    pod: Pod,
    reference: ObjectReference,
    api: Api<Pod>,
    namespace: String,
    name: String,
    uid: String,
    state: Mutex<PodState>,
    /// Serialises status patches so they arrive in order.
    publishing: tokio::sync::Mutex<()>,
    /// Set while the latest status has not reached the API server; the
    /// status retry task ([`Worker::retry_status`]) sends it until it does.
    unsent: std::sync::atomic::AtomicBool,
    /// Wakes the status retry task.
    status_retry: tokio::sync::Notify,
    entry: Arc<PodEntry>,
    stop: CancellationToken,
    stop_reason: Mutex<Option<Stop>>,
    /// Set once the pod has a deletionTimestamp or is gone.
    deleted: CancellationToken,
    /// Keeps this pod's modules from being evicted from the store while
    /// the pod exists (one pin per module).
    pins: Mutex<HashMap<sandlet_runtime::Digest, Pin>>,
    /// The pod's volumes on the host (directories, or single files), made
    /// once per pod (by the first container to start) and shared by all
    /// its containers.
    volumes: tokio::sync::Mutex<Option<Arc<BTreeMap<String, HostVolume>>>>,
    /// When this process first saw the pod (for the start-up trace).
    seen: std::time::Instant,
}

/// Runs the pod in `updates` (the latest object the node has seen) until
/// it is deleted.
pub async fn run_pod(ctx: Arc<NodeContext>, updates: watch::Receiver<Pod>) {
    let pod = updates.borrow().clone();
    let namespace = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let name = pod.metadata.name.clone().unwrap_or_default();
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let pairs = |list: &[k8s_openapi::api::core::v1::Container]| {
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
    let gone = *worker.stop_reason.lock().expect("stop reason poisoned") == Some(Stop::Gone);
    if !gone {
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
    fn request_stop(&self, reason: Stop) {
        let mut current = self.stop_reason.lock().expect("stop reason poisoned");
        if current.is_none() || reason == Stop::Gone {
            *current = Some(reason);
        }
        self.stop.cancel();
    }

    fn stopped(&self) -> Option<Stop> {
        *self.stop_reason.lock().expect("stop reason poisoned")
    }

    fn event(&self, type_: EventType, reason: &str, note: String) {
        self.ctx.event(&self.reference, type_, reason, note);
    }

    fn with_state<T>(&self, f: impl FnOnce(&mut PodState) -> T) -> T {
        f(&mut self.state.lock().expect("pod state poisoned"))
    }

    fn container_mut<T>(
        &self,
        slot: Slot,
        f: impl FnOnce(&mut crate::status::ContainerState) -> T,
    ) -> T {
        self.with_state(|s| match slot {
            Slot::Init(i) => f(&mut s.init[i]),
            Slot::Main(i) => f(&mut s.containers[i]),
        })
    }

    /// Sends the current status to the API server; if it cannot (the API
    /// server is away), the status retry task keeps sending the latest
    /// status until it arrives.
    async fn publish(&self) {
        use std::sync::atomic::Ordering;
        let _order = self.publishing.lock().await;
        for attempt in 0..3 {
            match self.send_status().await {
                Ok(()) => {
                    self.unsent.store(false, Ordering::SeqCst);
                    return;
                }
                Err(error) => {
                    tracing::warn!(%error, pod = %self.name, attempt, "cannot update pod status");
                    tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                }
            }
        }
        self.unsent.store(true, Ordering::SeqCst);
        self.status_retry.notify_one();
    }

    /// One patch of the current status (a pod already gone counts as sent).
    async fn send_status(&self) -> Result<(), kube::Error> {
        let status = self.with_state(PodState::to_status);
        let patch = serde_json::json!({ "status": status });
        match self
            .api
            .patch_status(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Sends the latest status whenever [`Worker::publish`] could not,
    /// every [`STATUS_RETRY_FIRST`] doubling to [`STATUS_RETRY_MAX`], until
    /// it arrives; runs until the pod's worker ends.
    async fn retry_status(self: Arc<Self>) {
        use std::sync::atomic::Ordering;
        loop {
            self.status_retry.notified().await;
            let mut wait = STATUS_RETRY_FIRST;
            while self.unsent.load(Ordering::SeqCst) {
                tokio::time::sleep(wait).await;
                let _order = self.publishing.lock().await;
                if !self.unsent.load(Ordering::SeqCst) {
                    break;
                }
                match self.send_status().await {
                    Ok(()) => {
                        self.unsent.store(false, Ordering::SeqCst);
                        tracing::info!(pod = %self.name, "pod status reported after the API server returned");
                    }
                    Err(error) => {
                        tracing::debug!(%error, pod = %self.name, retry_in = ?wait, "pod status still not reported");
                        wait = (wait * 2).min(STATUS_RETRY_MAX);
                    }
                }
            }
        }
    }

    /// Deletes the pod object now that its guests are stopped.
    async fn remove_from_api(&self) {
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(self.uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match self.api.delete(&self.name, &params).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(error) => tracing::warn!(%error, pod = %self.name, "cannot remove the deleted pod"),
        }
    }

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

    fn container_plan<'p>(&self, plan: &'p PodPlan, slot: Slot) -> &'p ContainerPlan {
        match slot {
            Slot::Init(i) => &plan.init_containers[i],
            Slot::Main(i) => &plan.containers[i],
        }
    }

    fn set_waiting(&self, slot: Slot, reason: &str, message: Option<String>) {
        self.container_mut(slot, |c| {
            c.state = Run::Waiting {
                reason: reason.to_owned(),
                message,
            }
        });
    }

    /// Sleeps for `delay` unless the pod is stopped first; true if stopped.
    async fn sleep_or_stop(&self, delay: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(delay) => false,
            _ = self.stop.cancelled() => true,
        }
    }

    /// Runs one container until it will not run again; returns how its
    /// last run ended (`None` if it never ran to an end).
    async fn run_container(&self, plan: &PodPlan, slot: Slot) -> Option<Terminated> {
        let container = self.container_plan(plan, slot);
        let init = matches!(slot, Slot::Init(_));
        // What an earlier sandlet process left: a run it never saw end
        // counts as killed, then restartPolicy decides.
        let interrupted = self.container_mut(slot, |c| {
            if let Run::Running { started_at } = c.state {
                c.state = Run::Terminated(Terminated {
                    exit_code: KILLED_EXIT_CODE,
                    reason: "Error".to_owned(),
                    message: Some("sandlet restarted while the container was running".to_owned()),
                    started_at: Some(started_at),
                    finished_at: Timestamp::now(),
                });
                true
            } else {
                false
            }
        });
        if interrupted {
            self.publish().await;
        }
        if let Some(last) = self.container_mut(slot, |c| c.terminated().cloned()) {
            if !restarts(plan.restart_policy, init, last.exit_code) {
                return Some(last);
            }
            if self.back_off(slot, container, &last).await {
                return Some(last);
            }
        }
        let mut config_failures = 0u32;
        let mut failing_since = None;
        loop {
            if self.stop.is_cancelled() {
                return self.container_mut(slot, |c| c.terminated().cloned());
            }
            let module = self.obtain_module(plan, slot).await?;
            let module_ready = self.seen.elapsed();
            let (run_plan, sinks, staged, sealed_log) = match self
                .prepare_run(plan, slot, &module)
                .await
            {
                Ok(ready) => {
                    config_failures = 0;
                    failing_since = None;
                    ready
                }
                Err(error) => {
                    config_failures += 1;
                    let failing_for = failing_since
                        .get_or_insert_with(std::time::Instant::now)
                        .elapsed();
                    tracing::debug!(pod = %self.name, %error, attempt = config_failures, "container configuration failed");
                    if failing_for >= CONFIG_QUIET {
                        self.set_waiting(slot, "CreateContainerConfigError", Some(error.0.clone()));
                        self.event(EventType::Warning, "Failed", format!("Error: {}", error.0));
                        self.publish().await;
                    }
                    let delay = config_retry_delay(config_failures, failing_for);
                    if self.sleep_or_stop(delay).await {
                        return None;
                    }
                    continue;
                }
            };
            let started_at = Timestamp::now();
            let restart_count = self.container_mut(slot, |c| {
                c.state = Run::Running { started_at };
                c.restart_count
            });
            let usage = Arc::new(sandlet_runtime::Usage::default());
            self.entry.set(
                &container.name,
                ContainerRun {
                    restart_count,
                    running: Some(Metered {
                        started_at,
                        usage: usage.clone(),
                    }),
                },
            );
            if !init {
                self.with_state(|s| s.advance(Phase::Running));
            }
            self.event(
                EventType::Normal,
                "Created",
                format!("Created container: {}", container.name),
            );
            self.event(
                EventType::Normal,
                "Started",
                format!("Started container {}", container.name),
            );
            let prepared = self.seen.elapsed();
            // Reported Running before anything can report it terminated.
            self.publish().await;
            tracing::debug!(
                pod = %self.name,
                container = %container.name,
                module_ms = module_ready.as_secs_f64() * 1e3,
                prepared_ms = prepared.as_secs_f64() * 1e3,
                reported_ms = self.seen.elapsed().as_secs_f64() * 1e3,
                "container started (times since the pod was first seen)"
            );
            let outcome = tokio::select! {
                outcome = self.ctx.engine.run_metered(&module, &run_plan, &sinks, &usage) => Some(outcome),
                _ = self.stop.cancelled() => None,
            };
            // What the guest wrote into read-write file mounts reaches the
            // host before anyone can see the container terminated.
            for failed in staged.write_back() {
                self.event(
                    EventType::Warning,
                    "FailedWriteBack",
                    format!("Container {}: cannot write back {failed}", container.name),
                );
            }
            // Sealed pods: the guest's answer (result or error) and its log
            // become ciphertext before anything records them.
            if let Some(log) = sealed_log {
                self.write_sealed_log(container, log);
            }
            let outcome = match (outcome, &plan.seal) {
                (Some(Ok(RunOutcome::Returned(answer))), Some(seal)) => {
                    Some(Ok(RunOutcome::Returned(
                        self.seal_answer(plan, container, restart_count, seal, answer)
                            .await,
                    )))
                }
                (outcome, _) => outcome,
            };
            let finished_at = Timestamp::now();
            let mut terminated = match outcome {
                Some(outcome) => terminated_of(outcome, started_at, finished_at),
                None => {
                    let stop = self.stopped().unwrap_or(Stop::Deleted);
                    self.event(
                        EventType::Normal,
                        "Killing",
                        format!("Stopping container {}", container.name),
                    );
                    Terminated {
                        exit_code: KILLED_EXIT_CODE,
                        reason: "Error".to_owned(),
                        message: Some(stop.message().to_owned()),
                        started_at: Some(started_at),
                        finished_at,
                    }
                }
            };
            if terminated.message.is_none()
                && !terminated.succeeded()
                && container.spec.termination_message_policy.as_deref()
                    == Some("FallbackToLogsOnError")
            {
                terminated.message = match &plan.seal {
                    None => self.log_tail(&container.name, restart_count),
                    // A sealed log's tail is a piece of ciphertext: no use.
                    Some(seal) if seal.logs => None,
                    // The log's tail, sealed like the result.
                    Some(seal) => self
                        .log_tail(&container.name, restart_count)
                        .and_then(|tail| {
                            sandlet_trust::seal::seal(&seal.recipient, tail.as_bytes()).ok()
                        }),
                };
            }
            self.container_mut(slot, |c| c.state = Run::Terminated(terminated.clone()));
            self.entry.set(
                &container.name,
                ContainerRun {
                    restart_count,
                    running: None,
                },
            );
            if self.stop.is_cancelled()
                || !restarts(plan.restart_policy, init, terminated.exit_code)
            {
                self.publish().await;
                return Some(terminated);
            }
            if self.back_off(slot, container, &terminated).await {
                return Some(terminated);
            }
        }
    }

    /// Waits out the restart back-off, showing `CrashLoopBackOff`; true if
    /// the pod was stopped meanwhile.
    async fn back_off(&self, slot: Slot, container: &ContainerPlan, last: &Terminated) -> bool {
        let restarts_so_far = self.container_mut(slot, |c| c.restart_count);
        let delay = self
            .ctx
            .restart_backoff
            .saturating_mul(1 << restarts_so_far.clamp(0, 16))
            .min(MAX_RESTART_BACKOFF);
        let message = format!(
            "back-off {} restarting failed container={} pod={}_{}({})",
            humantime(delay),
            container.name,
            self.name,
            self.namespace,
            self.uid
        );
        self.container_mut(slot, |c| {
            c.last = Some(last.clone());
            c.state = Run::Waiting {
                reason: "CrashLoopBackOff".to_owned(),
                message: Some(message),
            };
        });
        self.event(
            EventType::Warning,
            "BackOff",
            format!(
                "Back-off restarting failed container {} in pod {}",
                container.name, self.name
            ),
        );
        self.publish().await;
        if self.sleep_or_stop(delay).await {
            // Stopped while waiting: the last run's end is the final word.
            self.container_mut(slot, |c| c.state = Run::Terminated(last.clone()));
            return true;
        }
        self.container_mut(slot, |c| c.restart_count += 1);
        false
    }

    /// The guest's answer sealed to the pod's recipient: in the termination
    /// message if it fits, else stored beside the module in its registry
    /// with a pointer in the message. A result that cannot be sealed or
    /// stored fails the container with the reason (never in the clear).
    async fn seal_answer(
        &self,
        plan: &PodPlan,
        container: &ContainerPlan,
        restart_count: i32,
        seal: &crate::admission::SealPlan,
        answer: Result<String, String>,
    ) -> Result<String, String> {
        let (Ok(text) | Err(text)) = &answer;
        let sealed = match sandlet_trust::seal::seal(&seal.recipient, text.as_bytes()) {
            Ok(sealed) => sealed,
            Err(error) => return Err(error.to_string()),
        };
        let message = if sealed.len() <= crate::status::MAX_TERMINATION_MESSAGE_BYTES {
            sealed
        } else {
            let tag = format!("sealed-{}-{}-{restart_count}", self.uid, container.name);
            let credentials = self.pull_credentials(plan).await;
            match self
                .ctx
                .puller
                .registry()
                .push_sealed(&container.image, &tag, &credentials, sealed.as_bytes())
                .await
            {
                Ok(stored) => {
                    self.event(
                        EventType::Normal,
                        "SealedResultStored",
                        format!(
                            "Container {}: sealed result of {} bytes stored as {stored}",
                            container.name,
                            sealed.len()
                        ),
                    );
                    sandlet_registry::results::pointer(&stored)
                }
                Err(error) => {
                    return Err(format!(
                        "the sealed result ({} bytes) is too long for the termination message \
                         and could not be stored beside the module: {error}",
                        sealed.len()
                    ));
                }
            }
        };
        match answer {
            Ok(_) => Ok(message),
            Err(_) => Err(message),
        }
    }

    /// Writes what the guest printed, sealed as one block, into the
    /// container's log file.
    fn write_sealed_log(&self, container: &ContainerPlan, log: SealedLog) {
        let text = match sandlet_trust::seal::seal(&log.recipient, &log.buffer.contents()) {
            Ok(sealed) => sealed,
            Err(error) => {
                format!("sandlet: the log could not be sealed and is not kept: {error}\n")
            }
        };
        if let Err(error) = log.file.stdout.write_all(text.as_bytes()) {
            self.event(
                EventType::Warning,
                "FailedSealedLog",
                format!(
                    "Container {}: cannot write the sealed log: {error}",
                    container.name
                ),
            );
        }
    }

    fn log_tail(&self, container: &str, restart_count: i32) -> Option<String> {
        let path = log_path(&self.entry.dir, container, restart_count);
        let options = LogOptions {
            tail_lines: Some(80),
            limit_bytes: Some(2048),
            ..LogOptions::default()
        };
        read_log(&path, options)
            .ok()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .filter(|s| !s.is_empty())
    }

    /// Pulls (as imagePullPolicy says) and prepares the container's module,
    /// reporting waiting reasons and back-off; `None` if the pod was stopped
    /// or cannot run the module at all.
    async fn obtain_module(&self, plan: &PodPlan, slot: Slot) -> Option<PreparedModule> {
        let container = self.container_plan(plan, slot);
        loop {
            let credentials = self.pull_credentials(plan).await;
            let started = std::time::Instant::now();
            let backoff_key = self.backoff_key(&container.image);
            let ensured = tokio::select! {
                r = self.ctx.puller.ensure_keyed(
                    &backoff_key,
                    &container.image,
                    container.pull_policy,
                    &credentials,
                ) => r,
                _ = self.stop.cancelled() => return None,
            };
            tracing::trace!(
                pod = %self.name,
                since_seen_ms = self.seen.elapsed().as_secs_f64() * 1e3,
                ensure_ms = started.elapsed().as_secs_f64() * 1e3,
                "module reference resolved"
            );
            let failure = match ensured {
                Ok(pulled) => {
                    let note = if pulled.downloaded {
                        format!(
                            "Successfully pulled module \"{}\" in {:?}",
                            container.image,
                            started.elapsed()
                        )
                    } else {
                        format!(
                            "Container image \"{}\" already present on machine",
                            container.image
                        )
                    };
                    self.event(EventType::Normal, "Pulled", note);
                    self.container_mut(slot, |c| c.image_id = Some(pulled.image_id.clone()));
                    self.pins
                        .lock()
                        .expect("pins poisoned")
                        .entry(pulled.module_digest)
                        .or_insert_with(|| self.ctx.store.pin(&pulled.module_digest));
                    match self.prepare_module(&pulled.module_digest).await {
                        Ok(module) => return Some(module),
                        Err(message) => {
                            self.fail_pod("InvalidModule", message).await;
                            return None;
                        }
                    }
                }
                Err(failure) => failure,
            };
            if failure.reason == WaitingReason::ModuleNotAllowed {
                self.fail_pod("ModuleNotAllowed", failure.message).await;
                return None;
            }
            self.event(
                EventType::Warning,
                "Failed",
                format!(
                    "Failed to pull module \"{}\": {}",
                    container.image, failure.message
                ),
            );
            self.set_waiting(slot, failure.reason.as_str(), Some(failure.message.clone()));
            self.publish().await;
            // Spec problems wait for the pod to be changed or deleted.
            let delay = failure.retry_after.unwrap_or(MAX_RESTART_BACKOFF);
            if self.sleep_or_stop(delay).await {
                return None;
            }
            if failure.reason == WaitingReason::ErrImagePull {
                // Shown until the next attempt, as the kubelet does.
                self.set_waiting(
                    slot,
                    WaitingReason::ImagePullBackOff.as_str(),
                    Some(format!("Back-off pulling module \"{}\"", container.image)),
                );
                self.publish().await;
            }
        }
    }

    /// The pull back-off of this pod's `image` (kept per pod, as the
    /// kubelet's).
    fn backoff_key(&self, image: &str) -> String {
        format!("{}_{image}", self.uid)
    }

    /// Fails the whole pod for a reason no retry cures.
    async fn fail_pod(&self, reason: &'static str, message: String) {
        self.event(EventType::Warning, reason, message.clone());
        self.with_state(|s| s.finish(Phase::Failed, Some(reason), Some(message)));
        self.request_stop(Stop::Failed);
        self.publish().await;
    }

    async fn prepare_module(
        &self,
        digest: &sandlet_runtime::Digest,
    ) -> Result<PreparedModule, String> {
        if let Some(module) = self.ctx.compiled.prepared(digest) {
            return Ok(module);
        }
        let ctx = self.ctx.clone();
        let digest = *digest;
        tokio::task::spawn_blocking(move || {
            let bytes = ctx
                .store
                .get(&digest)
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("module {digest} vanished from the store"))?;
            ctx.compiled
                .load_or_compile(&ctx.engine, &digest, &bytes)
                .map(|(module, _)| module)
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| format!("compiling the module failed: {e}"))?
    }

    /// Registry credentials from the pod's imagePullSecrets
    /// (`kubernetes.io/dockerconfigjson`); unreadable ones are skipped with
    /// a warning, as the kubelet does.
    async fn pull_credentials(&self, plan: &PodPlan) -> Credentials {
        let mut credentials = Credentials::anonymous();
        if plan.image_pull_secrets.is_empty() {
            return credentials;
        }
        let secrets: Api<Secret> = Api::namespaced(self.ctx.client.clone(), &self.namespace);
        for name in &plan.image_pull_secrets {
            let config = match secrets.get(name).await {
                Ok(secret) => secret
                    .data
                    .and_then(|d| d.get(".dockerconfigjson").map(|b| b.0.clone())),
                Err(error) => {
                    tracing::warn!(%error, secret = %name, "cannot read an imagePullSecret");
                    None
                }
            };
            match config.map(|bytes| Credentials::from_docker_config(&bytes)) {
                Some(Ok(found)) => credentials.merge(found),
                Some(Err(error)) => {
                    self.event(
                        EventType::Warning,
                        "FailedToRetrieveImagePullSecret",
                        format!("imagePullSecret {name:?}: {error}"),
                    );
                }
                None => self.event(
                    EventType::Warning,
                    "FailedToRetrieveImagePullSecret",
                    format!("Unable to retrieve some image pull secrets ({name}); attempting to pull the module may not succeed."),
                ),
            }
        }
        credentials
    }

    /// Builds the run plan and log sinks of one container run: env,
    /// volumes, limits, datasets.
    async fn prepare_run(
        &self,
        plan: &PodPlan,
        slot: Slot,
        module: &PreparedModule,
    ) -> Result<
        (
            RunPlan,
            sandlet_runtime::OutputSinks,
            StagedFiles,
            Option<SealedLog>,
        ),
        ConfigError,
    > {
        let container = self.container_plan(plan, slot);
        // The pod's volumes are made once, by the first container to get
        // here; the others wait for them.
        let mut made = self.volumes.lock().await;
        // The objects the pod references and its tokens are independent
        // reads: both in flight at once, one round trip to wait for.
        let (objects, tokens) = if made.is_none() {
            tokio::try_join!(self.fetch_objects(), self.fetch_tokens(plan))?
        } else {
            (self.fetch_objects().await?, Tokens::new())
        };
        let facts = DownwardFacts {
            pod: &self.pod,
            node_name: &self.ctx.identity.name,
            host_ip: &self.ctx.identity.internal_ip(),
            node_cpu: f64::from(self.ctx.identity.cpus),
            node_memory: self.ctx.identity.memory_bytes as f64,
        };
        let env = resolve_env(&facts, &container.spec, &objects)?;
        let pod_dir = self.entry.dir.clone();
        let volume_dirs = {
            match &*made {
                Some(dirs) => dirs.clone(),
                None => {
                    let dirs = Arc::new(materialize(
                        &self.ctx.pod_dirs(&self.uid),
                        &plan.volumes,
                        &VolumeInputs {
                            facts: facts.clone(),
                            objects: &objects,
                            tokens: &tokens,
                            data: self.ctx.data.as_deref(),
                        },
                    )?);
                    *made = Some(dirs.clone());
                    dirs
                }
            }
        };
        drop(made);
        let args: Vec<String> = container.args.iter().map(|a| expand(a, &env)).collect();
        let mut builder = RunPlan::builder(container.name.clone());
        let mut raw_paths = Vec::new();
        match module.kind() {
            ModuleKind::Algorithm => {
                builder = builder.input(args.first().cloned().unwrap_or_else(|| "{}".to_owned()));
            }
            ModuleKind::Command => {
                builder = builder.args(args);
                // Raw files of granted datasets that allow them.
                if let Some(config) = &self.ctx.data {
                    let raw = raw_file_mounts(config, &plan.datasets, &pod_dir.join("raw"))
                        .map_err(|e| ConfigError(e.to_string()))?;
                    for mount in raw {
                        raw_paths.push(mount.guest.clone());
                        builder = builder.dir(mount.host, mount.guest, DirAccess::ReadOnly);
                    }
                }
            }
        }
        for (key, value) in env {
            builder = builder.env(key, value);
        }
        let mut files = Vec::new();
        let mut dir_paths: Vec<&str> = raw_paths.iter().map(String::as_str).collect();
        for mount in &container.mounts {
            let volume = &volume_dirs[&mount.volume];
            if volume.file {
                if mount.sub_path.is_some() {
                    return Err(ConfigError(format!(
                        "volume {:?} is a single file: a subPath of it cannot be mounted",
                        mount.volume
                    )));
                }
                files.push(FileMount {
                    host: volume.path.clone(),
                    guest_path: mount.guest_path.clone(),
                    read_only: mount.read_only,
                });
                continue;
            }
            dir_paths.push(&mount.guest_path);
            let mut host = volume.path.clone();
            if let Some(sub) = &mount.sub_path {
                host = host.join(sub);
                std::fs::create_dir_all(&host).map_err(|e| {
                    ConfigError(format!("subPath {sub:?} of volume {:?}: {e}", mount.volume))
                })?;
            }
            let access = if mount.read_only {
                DirAccess::ReadOnly
            } else {
                DirAccess::ReadWrite
            };
            builder = builder.dir(host, mount.guest_path.clone(), access);
        }
        let staged = file_mounts::stage(
            &pod_dir.join("files").join(&container.name),
            &files,
            &dir_paths,
        )?;
        for dir in &staged.dirs {
            let access = if dir.read_only {
                DirAccess::ReadOnly
            } else {
                DirAccess::ReadWrite
            };
            builder = builder.dir(dir.host.clone(), dir.guest.clone(), access);
        }
        let mut limits = Limits {
            timeout: POD_RUN_TIMEOUT,
            ..Limits::default()
        };
        if let Some(memory) = container.memory_limit {
            limits.memory_bytes = memory;
        }
        builder = builder.limits(limits);
        let data: Arc<dyn DataAccess> = match (&self.ctx.data, plan.datasets.is_empty()) {
            (Some(config), false) => Arc::new(
                GrantedDatasets::new(config, &plan.datasets)
                    .map_err(|e| ConfigError(e.to_string()))?
                    .audited(self.audit_trail(plan, module))
                    .budgeted(Budget {
                        ledger: Arc::clone(&self.ctx.ledger),
                        namespace: self.namespace.clone(),
                    }),
            ),
            _ => Arc::new(NoDatasets),
        };
        let run_plan = builder
            .data(data)
            .build()
            .map_err(|e| ConfigError(e.to_string()))?;
        let restart_count = self.container_mut(slot, |c| c.restart_count);
        let sinks = open_sinks(&log_path(&pod_dir, &container.name, restart_count))
            .map_err(|e| ConfigError(format!("cannot create the container log: {e}")))?;
        // A sealed log is kept in memory (bounded by the run's output
        // limit) and reaches the file only as ciphertext.
        Ok(match &plan.seal {
            Some(seal) if seal.logs => {
                let buffer = sandlet_runtime::output::MemorySink::new();
                let memory = sandlet_runtime::OutputSinks {
                    stdout: Arc::new(buffer.clone()),
                    stderr: Arc::new(buffer.clone()),
                };
                (
                    run_plan,
                    memory,
                    staged,
                    Some(SealedLog {
                        recipient: seal.recipient.clone(),
                        buffer,
                        file: sinks,
                    }),
                )
            }
            _ => (run_plan, sinks, staged, None),
        })
    }

    /// Whose queries a container's are, for the audit log.
    fn audit_trail(&self, plan: &PodPlan, module: &PreparedModule) -> AuditTrail {
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

    async fn fetch_objects(&self) -> Result<PodObjects, ConfigError> {
        use futures_util::future::try_join_all;
        let (config_maps, secrets) = referenced_objects(&self.pod);
        let reader = &self.ctx.objects;
        let namespace = self.namespace.as_str();
        // All reads at once.
        let (config_maps, secrets) = tokio::try_join!(
            try_join_all(config_maps.into_iter().map(|name| async move {
                let found = reader.config_map(namespace, &name).await?;
                Ok::<_, String>((name, found))
            })),
            try_join_all(secrets.into_iter().map(|name| async move {
                let found = reader.secret(namespace, &name).await?;
                Ok::<_, String>((name, found))
            })),
        )
        .map_err(ConfigError)?;
        Ok(PodObjects {
            config_maps: config_maps.into_iter().collect(),
            secrets: secrets.into_iter().collect(),
        })
    }

    /// Service-account tokens for projected volumes, bound to this pod.
    async fn fetch_tokens(&self, plan: &PodPlan) -> Result<Tokens, ConfigError> {
        let mut tokens = Tokens::new();
        let audiences = token_audiences(&plan.volumes);
        if audiences.is_empty() {
            return Ok(tokens);
        }
        let accounts: Api<k8s_openapi::api::core::v1::ServiceAccount> =
            Api::namespaced(self.ctx.client.clone(), &self.namespace);
        for (audience, expiration) in audiences {
            let request = bound_token_request(&self.name, &self.uid, &audience, expiration);
            let response = accounts
                .create_token_request(&plan.service_account, &Default::default(), &request)
                .await
                .map_err(|e| {
                    ConfigError(format!(
                        "cannot get a token for service account {:?}: {e}",
                        plan.service_account
                    ))
                })?;
            let token = response
                .status
                .and_then(|s| s.token)
                .ok_or_else(|| ConfigError("the token request returned no token".to_owned()))?;
            tokens.insert(audience, token);
        }
        Ok(tokens)
    }
}

/// The wait before configuration attempt `failures + 1`, the failures
/// having gone on for `failing_for`: 10 ms after the first, doubling up to
/// `CONFIG_RETRY`, and never past the end of the quiet period, so that a
/// lasting error is reported about `CONFIG_QUIET` after it began.
pub fn config_retry_delay(failures: u32, failing_for: Duration) -> Duration {
    let delay = CONFIG_FIRST_RETRY
        .saturating_mul(1 << (failures.max(1) - 1).min(16))
        .min(CONFIG_RETRY);
    match CONFIG_QUIET.checked_sub(failing_for) {
        Some(left) if !left.is_zero() => delay.min(left),
        _ => delay,
    }
}

/// A run whose log is sealed: to whom, what the guest printed, and the log
/// file's sinks the sealed block goes to.
struct SealedLog {
    recipient: sandlet_trust::seal::Recipient,
    buffer: sandlet_runtime::output::MemorySink,
    file: sandlet_runtime::OutputSinks,
}

/// Whether a container that ended with `exit_code` runs again. Init
/// containers restart only on failure, and never under `Never`.
fn restarts(policy: RestartPolicy, init: bool, exit_code: i32) -> bool {
    if init {
        exit_code != 0 && policy != RestartPolicy::Never
    } else {
        policy.restarts(exit_code)
    }
}

/// How a run's outcome is reported as a terminated container state.
fn terminated_of(
    outcome: Result<RunOutcome, RunError>,
    started_at: Timestamp,
    finished_at: Timestamp,
) -> Terminated {
    let (exit_code, reason, message) = match outcome {
        Ok(RunOutcome::Exited(0)) => (0, "Completed", None),
        Ok(RunOutcome::Exited(code)) => (code, "Error", None),
        Ok(RunOutcome::Returned(Ok(result))) => (0, "Completed", Some(result)),
        Ok(RunOutcome::Returned(Err(message))) => (1, "Error", Some(message)),
        Err(RunError::Limit(limit @ LimitExceeded::Memory { .. })) => {
            (KILLED_EXIT_CODE, "OOMKilled", Some(limit.to_string()))
        }
        Err(error) => (2, "Error", Some(error.to_string())),
    };
    Terminated {
        exit_code,
        reason: reason.to_owned(),
        message: message.map(|m| termination_message(&m)),
        started_at: Some(started_at),
        finished_at,
    }
}

/// `10s`, `2m40s`: the kubelet's way of writing a back-off.
fn humantime(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= 60 {
        let (m, s) = (secs / 60, secs % 60);
        if s == 0 {
            format!("{m}m0s")
        } else {
            format!("{m}m{s}s")
        }
    } else if secs > 0 {
        format!("{secs}s")
    } else {
        format!("{}ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_containers_restart_only_on_failure() {
        assert!(!restarts(RestartPolicy::Always, true, 0));
        assert!(restarts(RestartPolicy::Always, true, 1));
        assert!(!restarts(RestartPolicy::Never, true, 1));
        assert!(restarts(RestartPolicy::Always, false, 0));
    }

    #[test]
    fn outcomes_map_to_kubelet_reasons() {
        let now = Timestamp::now();
        let t = terminated_of(
            Ok(RunOutcome::Returned(Ok("{\"mean\":1}".into()))),
            now,
            now,
        );
        assert_eq!((t.exit_code, t.reason.as_str()), (0, "Completed"));
        assert_eq!(t.message.as_deref(), Some("{\"mean\":1}"));
        let t = terminated_of(Ok(RunOutcome::Returned(Err("bad input".into()))), now, now);
        assert_eq!((t.exit_code, t.reason.as_str()), (1, "Error"));
        let t = terminated_of(
            Err(RunError::Limit(LimitExceeded::Memory {
                limit: 1,
                requested: 2,
            })),
            now,
            now,
        );
        assert_eq!((t.exit_code, t.reason.as_str()), (137, "OOMKilled"));
        let t = terminated_of(Ok(RunOutcome::Exited(3)), now, now);
        assert_eq!(
            (t.exit_code, t.reason.as_str(), t.message),
            (3, "Error", None)
        );
        let long = "x".repeat(10_000);
        let t = terminated_of(Ok(RunOutcome::Returned(Ok(long))), now, now);
        assert_eq!(t.message.unwrap().len(), 4096);
    }

    #[test]
    fn back_off_reads_like_the_kubelet() {
        assert_eq!(humantime(Duration::from_secs(10)), "10s");
        assert_eq!(humantime(Duration::from_secs(160)), "2m40s");
        assert_eq!(humantime(Duration::from_secs(300)), "5m0s");
    }

    #[test]
    fn configuration_retries_start_quick_and_report_after_the_quiet_period() {
        let ms = Duration::from_millis;
        // Doubling from 10 ms while early failures leave quiet time over.
        assert_eq!(config_retry_delay(1, ms(0)), ms(10));
        assert_eq!(config_retry_delay(2, ms(15)), ms(20));
        assert_eq!(config_retry_delay(5, ms(200)), ms(160));
        // The last quiet retry lands at the end of the quiet period.
        assert_eq!(config_retry_delay(7, ms(700)), ms(50));
        // After it, doubling on up to CONFIG_RETRY.
        assert_eq!(config_retry_delay(8, ms(760)), ms(1280));
        assert_eq!(config_retry_delay(12, ms(9000)), CONFIG_RETRY);
    }
}
