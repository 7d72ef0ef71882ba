//! Sealed pods (`sandlet.dev/seal-to`, `sandlet.dev/seal-logs`): the
//! guest's answer and log turned into ciphertext for the pod's recipient
//! before anything records them.
//!
//! This module owns what becomes of a sealed pod's answer (in the
//! termination message if it fits, else stored beside the module in its
//! registry with a pointer in the message), of its log (kept in memory
//! while the guest runs, written to the log file as one sealed block), and
//! of a termination message taken from the log's tail. It must never put a
//! sealed pod's answer or log anywhere in the clear: what cannot be sealed
//! or stored fails the container with the reason instead.

use std::sync::Arc;

use kube::runtime::events::EventType;
use sandlet_runtime::output::MemorySink;
use sandlet_runtime::{OutputSinks, RunOutcome};
use sandlet_trust::seal::Recipient;

use super::worker::Worker;
use crate::pods::admission::{ContainerPlan, PodPlan, SealPlan};
use crate::pods::logs::{LogOptions, log_path, read_log};
use crate::pods::status::MAX_TERMINATION_MESSAGE_BYTES;

/// A run whose log is sealed: to whom, what the guest printed, and the log
/// file's sinks the sealed block goes to.
pub(super) struct SealedLog {
    recipient: Recipient,
    buffer: MemorySink,
    file: OutputSinks,
}

/// The sinks a run writes to: the log file's, or for a pod whose log is
/// sealed, memory (bounded by the run's output limit) that reaches the
/// file only as ciphertext, with what [`Worker::write_sealed_log`] needs.
pub(super) fn run_sinks(plan: &PodPlan, file: OutputSinks) -> (OutputSinks, Option<SealedLog>) {
    match &plan.seal {
        Some(seal) if seal.logs => {
            let buffer = MemorySink::new();
            let memory = OutputSinks {
                stdout: Arc::new(buffer.clone()),
                stderr: Arc::new(buffer.clone()),
            };
            let sealed = SealedLog {
                recipient: seal.recipient.clone(),
                buffer,
                file,
            };
            (memory, Some(sealed))
        }
        _ => (file, None),
    }
}

impl Worker {
    /// A run's outcome as it may be recorded: for a sealed pod, the
    /// guest's answer (result or error) sealed by [`Worker::seal_answer`];
    /// anything else as it is.
    pub(super) async fn sealed_outcome<E>(
        &self,
        plan: &PodPlan,
        container: &ContainerPlan,
        restart_count: i32,
        outcome: Option<Result<RunOutcome, E>>,
    ) -> Option<Result<RunOutcome, E>> {
        match (outcome, &plan.seal) {
            (Some(Ok(RunOutcome::Returned(answer))), Some(seal)) => Some(Ok(RunOutcome::Returned(
                self.seal_answer(plan, container, restart_count, seal, answer)
                    .await,
            ))),
            (outcome, _) => outcome,
        }
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
        seal: &SealPlan,
        answer: Result<String, String>,
    ) -> Result<String, String> {
        let (Ok(text) | Err(text)) = &answer;
        let sealed = match sandlet_trust::seal::seal(&seal.recipient, text.as_bytes()) {
            Ok(sealed) => sealed,
            Err(error) => return Err(error.to_string()),
        };
        let message = if sealed.len() <= MAX_TERMINATION_MESSAGE_BYTES {
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
    pub(super) fn write_sealed_log(&self, container: &ContainerPlan, log: SealedLog) {
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

    /// The termination message of `FallbackToLogsOnError`: the log's tail,
    /// in the clear for a pod that is not sealed, sealed like the result
    /// for one whose result is, and none for one whose log is sealed (its
    /// tail would be a piece of ciphertext: no use).
    pub(super) fn log_tail_message(
        &self,
        plan: &PodPlan,
        container: &str,
        restart_count: i32,
    ) -> Option<String> {
        match &plan.seal {
            None => self.log_tail(container, restart_count),
            Some(seal) if seal.logs => None,
            Some(seal) => self
                .log_tail(container, restart_count)
                .and_then(|tail| sandlet_trust::seal::seal(&seal.recipient, tail.as_bytes()).ok()),
        }
    }

    /// The last lines of a run's log (at most 80 lines, 2 KiB).
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
}
