//! What the node knows about one pod, and the `PodStatus` it reports.
//!
//! This module owns the mapping from sandlet's view of a pod (which
//! container is waiting, running or terminated, and why) to the Kubernetes
//! status fields clients read: phase, conditions, container statuses. It
//! does no IO; [`crate::pods::lifecycle`] changes a [`PodState`] and publishes
//! [`PodState::report`].
//!
//! Guarantees: the phase only moves forward (Pending, Running, then
//! Succeeded or Failed); a terminal phase is never left. It must never do
//! IO.

use k8s_openapi::api::core::v1::{
    ContainerState as K8sContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, HostIP, PodCondition, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

/// Longest termination message Kubernetes shows (the kubelet's own cap).
pub(crate) const MAX_TERMINATION_MESSAGE_BYTES: usize = 4096;

/// The pod phases, in the only order they may be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Phase {
    Pending,
    Running,
    Succeeded,
    Failed,
}

impl Phase {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Running => "Running",
            Phase::Succeeded => "Succeeded",
            Phase::Failed => "Failed",
        }
    }

    pub(crate) fn is_terminal(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Failed)
    }

    fn parse(text: &str) -> Option<Phase> {
        Some(match text {
            "Pending" => Phase::Pending,
            "Running" => Phase::Running,
            "Succeeded" => Phase::Succeeded,
            "Failed" => Phase::Failed,
            _ => return None,
        })
    }
}

/// How one container run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Terminated {
    pub(crate) exit_code: i32,
    /// `Completed`, `Error`, `OOMKilled`, ...
    pub(crate) reason: String,
    pub(crate) message: Option<String>,
    pub(crate) started_at: Option<Timestamp>,
    pub(crate) finished_at: Timestamp,
}

impl Terminated {
    pub(crate) fn succeeded(&self) -> bool {
        self.exit_code == 0
    }
}

/// One container's current state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Run {
    Waiting {
        reason: String,
        message: Option<String>,
    },
    Running {
        started_at: Timestamp,
    },
    Terminated(Terminated),
}

/// What the node reports for one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ContainerState {
    pub(crate) name: String,
    pub(crate) image: String,
    /// `<repository>@sha256:<digest>`, once the module was pulled.
    pub(crate) image_id: Option<String>,
    pub(crate) restart_count: i32,
    pub(crate) state: Run,
    /// The previous run, after a restart.
    pub(crate) last: Option<Terminated>,
}

impl ContainerState {
    pub(crate) fn new(name: &str, image: &str) -> Self {
        ContainerState {
            name: name.to_owned(),
            image: image.to_owned(),
            image_id: None,
            restart_count: 0,
            state: Run::Waiting {
                reason: "ContainerCreating".to_owned(),
                message: None,
            },
            last: None,
        }
    }

    pub(crate) fn is_running(&self) -> bool {
        matches!(self.state, Run::Running { .. })
    }

    pub(crate) fn terminated(&self) -> Option<&Terminated> {
        match &self.state {
            Run::Terminated(t) => Some(t),
            _ => None,
        }
    }

    fn to_k8s(&self, init: bool) -> ContainerStatus {
        let running = self.is_running();
        ContainerStatus {
            name: self.name.clone(),
            image: self.image.clone(),
            image_id: self.image_id.clone().unwrap_or_default(),
            container_id: self
                .image_id
                .as_ref()
                .map(|_| format!("wasm://{}", self.name)),
            restart_count: self.restart_count,
            ready: running && !init || init && self.terminated().is_some_and(Terminated::succeeded),
            started: Some(running),
            state: Some(k8s_state(&self.state)),
            last_state: Some(match &self.last {
                Some(last) => k8s_state(&Run::Terminated(last.clone())),
                None => K8sContainerState::default(),
            }),
            ..ContainerStatus::default()
        }
    }

    /// The state a previous sandlet process reported, so a restarted node
    /// continues from it.
    fn from_k8s(status: &ContainerStatus) -> ContainerState {
        let state = status.state.as_ref().map(run_of).unwrap_or(Run::Waiting {
            reason: "ContainerCreating".to_owned(),
            message: None,
        });
        let last = status
            .last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .map(terminated_of);
        ContainerState {
            name: status.name.clone(),
            image: status.image.clone(),
            image_id: Some(status.image_id.clone()).filter(|id| !id.is_empty()),
            restart_count: status.restart_count,
            state,
            last,
        }
    }
}

fn time(t: Timestamp) -> Time {
    Time(t)
}

fn k8s_state(run: &Run) -> K8sContainerState {
    match run {
        Run::Waiting { reason, message } => K8sContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.clone()),
                message: message.clone(),
            }),
            ..K8sContainerState::default()
        },
        Run::Running { started_at } => K8sContainerState {
            running: Some(ContainerStateRunning {
                started_at: Some(time(*started_at)),
            }),
            ..K8sContainerState::default()
        },
        Run::Terminated(t) => K8sContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: t.exit_code,
                reason: Some(t.reason.clone()),
                message: t.message.clone(),
                started_at: t.started_at.map(time),
                finished_at: Some(time(t.finished_at)),
                ..ContainerStateTerminated::default()
            }),
            ..K8sContainerState::default()
        },
    }
}

fn terminated_of(t: &ContainerStateTerminated) -> Terminated {
    Terminated {
        exit_code: t.exit_code,
        reason: t.reason.clone().unwrap_or_else(|| "Error".to_owned()),
        message: t.message.clone(),
        started_at: t.started_at.as_ref().map(|t| t.0),
        finished_at: t.finished_at.as_ref().map_or_else(Timestamp::now, |t| t.0),
    }
}

fn run_of(state: &K8sContainerState) -> Run {
    if let Some(t) = &state.terminated {
        Run::Terminated(terminated_of(t))
    } else if let Some(r) = &state.running {
        Run::Running {
            started_at: r.started_at.as_ref().map_or_else(Timestamp::now, |t| t.0),
        }
    } else {
        let waiting = state.waiting.clone().unwrap_or_default();
        Run::Waiting {
            reason: waiting
                .reason
                .unwrap_or_else(|| "ContainerCreating".to_owned()),
            message: waiting.message,
        }
    }
}

/// Cuts `message` to the termination-message limit on a character boundary.
pub(crate) fn termination_message(message: &str) -> String {
    if message.len() <= MAX_TERMINATION_MESSAGE_BYTES {
        return message.to_owned();
    }
    let mut end = MAX_TERMINATION_MESSAGE_BYTES;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    message[..end].to_owned()
}

/// Everything the node reports about one pod.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PodState {
    pub(crate) phase: Phase,
    /// Why the pod is in its phase (`DeadlineExceeded`, `UnsupportedVolume`, ...).
    pub(crate) reason: Option<String>,
    pub(crate) message: Option<String>,
    pub(crate) start_time: Option<Timestamp>,
    pub(crate) init: Vec<ContainerState>,
    pub(crate) containers: Vec<ContainerState>,
    /// All init containers completed.
    pub(crate) initialized: bool,
    /// Conditions other writers own (the scheduler's PodScheduled,
    /// controllers' DisruptionTarget, ...), kept as they are.
    pub(crate) foreign_conditions: Vec<PodCondition>,
    /// Our own conditions' last transition times, so they do not move on
    /// every update.
    transitions: Vec<(String, String, Timestamp)>,
    pub(crate) host_ip: String,
}

/// The conditions this node writes.
const OWN_CONDITIONS: [&str; 4] = [
    "Initialized",
    "ContainersReady",
    "Ready",
    "PodReadyToStartContainers",
];

impl PodState {
    /// A fresh pod: every container waiting to be created.
    pub(crate) fn new(
        init: &[(String, String)],
        containers: &[(String, String)],
        existing: Option<&PodStatus>,
        host_ip: &str,
    ) -> Self {
        let states = |list: &[(String, String)]| {
            list.iter()
                .map(|(name, image)| ContainerState::new(name, image))
                .collect::<Vec<_>>()
        };
        let mut state = PodState {
            phase: Phase::Pending,
            reason: None,
            message: None,
            start_time: None,
            init: states(init),
            containers: states(containers),
            initialized: init.is_empty(),
            foreign_conditions: Vec::new(),
            transitions: Vec::new(),
            host_ip: host_ip.to_owned(),
        };
        if let Some(status) = existing {
            state.adopt(status);
        }
        state
    }

    /// Takes over what a previous sandlet process (or another writer)
    /// reported: phase, start time, container states, foreign conditions.
    pub(crate) fn adopt(&mut self, status: &PodStatus) {
        if let Some(phase) = status.phase.as_deref().and_then(Phase::parse) {
            self.phase = self.phase.max(phase);
        }
        self.reason = status.reason.clone().or(self.reason.take());
        self.message = status.message.clone().or(self.message.take());
        self.start_time = status.start_time.as_ref().map(|t| t.0).or(self.start_time);
        let adopt_list = |ours: &mut Vec<ContainerState>, theirs: Option<&Vec<ContainerStatus>>| {
            for status in theirs.into_iter().flatten() {
                if let Some(c) = ours.iter_mut().find(|c| c.name == status.name) {
                    let image = c.image.clone();
                    *c = ContainerState::from_k8s(status);
                    c.image = image;
                }
            }
        };
        adopt_list(&mut self.init, status.init_container_statuses.as_ref());
        adopt_list(&mut self.containers, status.container_statuses.as_ref());
        self.initialized = self.init.is_empty()
            || self
                .init
                .iter()
                .all(|c| c.terminated().is_some_and(Terminated::succeeded));
        for condition in status.conditions.iter().flatten() {
            if OWN_CONDITIONS.contains(&condition.type_.as_str()) {
                if let Some(t) = &condition.last_transition_time {
                    self.transitions
                        .push((condition.type_.clone(), condition.status.clone(), t.0));
                }
            } else {
                self.foreign_conditions.push(condition.clone());
            }
        }
    }

    /// Moves to `phase` unless the pod is already past it.
    pub(crate) fn advance(&mut self, phase: Phase) {
        if phase > self.phase && !self.phase.is_terminal() {
            self.phase = phase;
        }
    }

    /// Ends the pod with `phase`, a reason and a message.
    pub(crate) fn finish(&mut self, phase: Phase, reason: Option<&str>, message: Option<String>) {
        if self.phase.is_terminal() {
            return;
        }
        self.phase = phase;
        self.reason = reason.map(str::to_owned);
        self.message = message;
    }

    fn transition_time(&mut self, type_: &str, status: &str, now: Timestamp) -> Timestamp {
        if let Some((_, s, t)) = self.transitions.iter().find(|(ty, _, _)| ty == type_)
            && s == status
        {
            return *t;
        }
        self.transitions.retain(|(ty, _, _)| ty != type_);
        self.transitions
            .push((type_.to_owned(), status.to_owned(), now));
        now
    }

    /// The status to publish.
    pub(crate) fn report(&mut self) -> PodStatus {
        let now = Timestamp::now();
        let all_running =
            !self.containers.is_empty() && self.containers.iter().all(ContainerState::is_running);
        let completed = self.phase.is_terminal();
        let mut conditions = self.foreign_conditions.clone();
        let mut own = |state: &mut PodState, type_: &str, ok: bool, reason: Option<&str>| {
            let status = if ok { "True" } else { "False" };
            let at = state.transition_time(type_, status, now);
            conditions.push(PodCondition {
                type_: type_.to_owned(),
                status: status.to_owned(),
                reason: reason.map(str::to_owned),
                last_transition_time: Some(time(at)),
                ..PodCondition::default()
            });
        };
        let sandbox_ready = self.start_time.is_some() && !completed;
        own(self, "PodReadyToStartContainers", sandbox_ready, None);
        let initialized = self.initialized;
        own(
            self,
            "Initialized",
            initialized,
            (!initialized).then_some("ContainersNotInitialized"),
        );
        let ready_reason = if completed {
            Some("PodCompleted")
        } else if all_running {
            None
        } else {
            Some("ContainersNotReady")
        };
        let ready = all_running && !completed;
        own(self, "ContainersReady", ready, ready_reason);
        own(self, "Ready", ready, ready_reason);
        PodStatus {
            phase: Some(self.phase.as_str().to_owned()),
            reason: self.reason.clone(),
            message: self.message.clone(),
            host_ip: Some(self.host_ip.clone()),
            host_ips: Some(vec![HostIP {
                ip: self.host_ip.clone(),
            }]),
            start_time: self.start_time.map(time),
            conditions: Some(conditions),
            init_container_statuses: Some(self.init.iter().map(|c| c.to_k8s(true)).collect()),
            container_statuses: Some(self.containers.iter().map(|c| c.to_k8s(false)).collect()),
            ..PodStatus::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> PodState {
        PodState::new(
            &[("setup".into(), "r/setup:1".into())],
            &[("main".into(), "r/main:1".into())],
            None,
            "127.0.0.1",
        )
    }

    fn condition<'a>(status: &'a PodStatus, type_: &str) -> &'a PodCondition {
        status
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == type_)
            .unwrap_or_else(|| panic!("no {type_} condition"))
    }

    #[test]
    fn phase_never_moves_back() {
        let mut state = pod();
        state.advance(Phase::Running);
        state.finish(Phase::Succeeded, None, None);
        state.advance(Phase::Running);
        state.finish(Phase::Failed, Some("DeadlineExceeded"), None);
        assert_eq!(state.phase, Phase::Succeeded);
        assert_eq!(state.reason, None);
    }

    #[test]
    fn conditions_follow_the_containers() {
        let mut state = pod();
        let status = state.report();
        assert_eq!(status.phase.as_deref(), Some("Pending"));
        assert_eq!(condition(&status, "Initialized").status, "False");
        assert_eq!(condition(&status, "Ready").status, "False");

        state.init[0].state = Run::Terminated(Terminated {
            exit_code: 0,
            reason: "Completed".into(),
            message: None,
            started_at: None,
            finished_at: Timestamp::now(),
        });
        state.initialized = true;
        state.containers[0].state = Run::Running {
            started_at: Timestamp::now(),
        };
        state.advance(Phase::Running);
        let status = state.report();
        assert_eq!(status.phase.as_deref(), Some("Running"));
        assert_eq!(condition(&status, "Initialized").status, "True");
        assert_eq!(condition(&status, "ContainersReady").status, "True");
        assert_eq!(condition(&status, "Ready").status, "True");
        let main = &status.container_statuses.as_ref().unwrap()[0];
        assert!(main.ready);
        assert!(main.state.as_ref().unwrap().running.is_some());

        state.finish(Phase::Succeeded, None, None);
        let status = state.report();
        let ready = condition(&status, "Ready");
        assert_eq!(ready.status, "False");
        assert_eq!(ready.reason.as_deref(), Some("PodCompleted"));
    }

    #[test]
    fn transition_times_stay_put_while_the_status_does() {
        let mut state = pod();
        let first = condition(&state.report(), "Ready")
            .last_transition_time
            .clone();
        std::thread::sleep(std::time::Duration::from_millis(5));
        let second = condition(&state.report(), "Ready")
            .last_transition_time
            .clone();
        assert_eq!(first, second);
    }

    #[test]
    fn a_restarted_node_adopts_the_reported_status() {
        let mut before = pod();
        before.start_time = Some(Timestamp::now());
        before.containers[0].restart_count = 3;
        before.containers[0].image_id = Some("r/main@sha256:00".into());
        before.containers[0].state = Run::Running {
            started_at: Timestamp::now(),
        };
        before.advance(Phase::Running);
        let mut status = before.report();
        status.conditions.as_mut().unwrap().push(PodCondition {
            type_: "PodScheduled".into(),
            status: "True".into(),
            ..PodCondition::default()
        });
        let after = PodState::new(
            &[("setup".into(), "r/setup:1".into())],
            &[("main".into(), "r/main:1".into())],
            Some(&status),
            "127.0.0.1",
        );
        assert_eq!(after.phase, Phase::Running);
        assert_eq!(after.containers[0].restart_count, 3);
        assert!(after.containers[0].is_running());
        assert_eq!(
            after.containers[0].image_id.as_deref(),
            Some("r/main@sha256:00")
        );
        assert_eq!(after.foreign_conditions.len(), 1);
        assert_eq!(after.foreign_conditions[0].type_, "PodScheduled");
    }

    #[test]
    fn termination_messages_are_cut_on_a_character_boundary() {
        let long = "é".repeat(3000);
        let cut = termination_message(&long);
        assert!(cut.len() <= MAX_TERMINATION_MESSAGE_BYTES);
        assert!(cut.chars().all(|c| c == 'é'));
        assert_eq!(termination_message("short"), "short");
    }
}
