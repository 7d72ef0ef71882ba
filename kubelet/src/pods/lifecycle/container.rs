//! One container's runs: each run reported Running, run in the sandbox and
//! reported terminated, and the restarts `restartPolicy` asks for, with
//! the kubelet's exponential back-off (`CrashLoopBackOff`).
//!
//! This module owns a container's way from its module to its last run and
//! how each run's end is reported (exit code, reason, termination
//! message). It must never report a container terminated before it was
//! reported Running, nor before what it wrote into read-write file mounts
//! is back on the host; and never run a container again once the pod is
//! stopped or `restartPolicy` says no.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::runtime::events::EventType;
use sandlet_runtime::limits::LimitExceeded;
use sandlet_runtime::{PreparedModule, RunError, RunOutcome, Usage};

use super::setup::{ConfigRetries, RunSetup};
use super::worker::{MAX_RESTART_BACKOFF, Slot, Stop, Worker};
use crate::pods::admission::{ContainerPlan, PodPlan, RestartPolicy};
use crate::pods::status::{Phase, Run, Terminated, termination_message};
use crate::pods::table::{ContainerRun, Metered};

/// Exit code reported for a guest stopped by the node (as for SIGKILL).
const KILLED_EXIT_CODE: i32 = 137;

impl Worker {
    /// Runs one container until it will not run again; returns how its
    /// last run ended (`None` if it never ran to an end).
    pub(super) async fn run_container(&self, plan: &PodPlan, slot: Slot) -> Option<Terminated> {
        let container = self.container_plan(plan, slot);
        let init = matches!(slot, Slot::Init(_));
        if let Some(last) = self.resume(slot).await {
            if !restarts(plan.restart_policy, init, last.exit_code) {
                return Some(last);
            }
            if self.back_off(slot, container, &last).await {
                return Some(last);
            }
        }
        let mut retries = ConfigRetries::default();
        loop {
            if self.stop.is_cancelled() {
                return self.container_mut(slot, |c| c.terminated().cloned());
            }
            let module = self.obtain_module(plan, slot).await?;
            let module_ready = self.seen.elapsed();
            let setup = match self.prepare_run(plan, slot, &module).await {
                Ok(setup) => {
                    retries = ConfigRetries::default();
                    setup
                }
                Err(error) => {
                    if self.config_failed(slot, &mut retries, error).await {
                        return None;
                    }
                    continue;
                }
            };
            let terminated = self
                .run_once(plan, slot, &module, setup, module_ready)
                .await;
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

    /// How the container's last run ended, if it ran before. What an
    /// earlier sandlet process left, a run it never saw end, counts as
    /// killed (and is reported so); then restartPolicy decides.
    async fn resume(&self, slot: Slot) -> Option<Terminated> {
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
        self.container_mut(slot, |c| c.terminated().cloned())
    }

    /// One run of the container, from reporting it Running to its state
    /// terminated (not yet published).
    async fn run_once(
        &self,
        plan: &PodPlan,
        slot: Slot,
        module: &PreparedModule,
        setup: RunSetup,
        module_ready: Duration,
    ) -> Terminated {
        let container = self.container_plan(plan, slot);
        let started_at = Timestamp::now();
        let (restart_count, usage) = self
            .report_started(slot, container, started_at, module_ready)
            .await;
        let outcome = tokio::select! {
            outcome = self.ctx.engine.run_metered(module, &setup.plan, &setup.sinks, &usage) => Some(outcome),
            _ = self.stop.cancelled() => None,
        };
        // What the guest wrote into read-write file mounts reaches the
        // host before anyone can see the container terminated.
        for failed in setup.staged.write_back() {
            self.event(
                EventType::Warning,
                "FailedWriteBack",
                format!("Container {}: cannot write back {failed}", container.name),
            );
        }
        // Sealed pods: the guest's answer (result or error) and its log
        // become ciphertext before anything records them.
        if let Some(log) = setup.sealed_log {
            self.write_sealed_log(container, log);
        }
        let outcome = self
            .sealed_outcome(plan, container, restart_count, outcome)
            .await;
        let finished_at = Timestamp::now();
        let mut terminated = match outcome {
            Some(outcome) => terminated_of(outcome, started_at, finished_at),
            None => self.killed(container, started_at, finished_at),
        };
        if terminated.message.is_none()
            && !terminated.succeeded()
            && container.spec.termination_message_policy.as_deref() == Some("FallbackToLogsOnError")
        {
            terminated.message = self.log_tail_message(plan, &container.name, restart_count);
        }
        self.container_mut(slot, |c| c.state = Run::Terminated(terminated.clone()));
        self.entry.set(
            &container.name,
            ContainerRun {
                restart_count,
                running: None,
            },
        );
        terminated
    }

    /// Shows the container Running (to the API server, the kubelet API's
    /// metrics and in Events) before its guest starts; its restart count
    /// and the usage the run is metered into. `module_ready`: when its
    /// module was ready, since the pod was first seen (for the trace).
    async fn report_started(
        &self,
        slot: Slot,
        container: &ContainerPlan,
        started_at: Timestamp,
        module_ready: Duration,
    ) -> (i32, Arc<Usage>) {
        let restart_count = self.container_mut(slot, |c| {
            c.state = Run::Running { started_at };
            c.restart_count
        });
        let usage = Arc::new(Usage::default());
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
        if matches!(slot, Slot::Main(_)) {
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
        (restart_count, usage)
    }

    /// How a run the node stopped ended (an Event says so).
    fn killed(
        &self,
        container: &ContainerPlan,
        started_at: Timestamp,
        finished_at: Timestamp,
    ) -> Terminated {
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
}
