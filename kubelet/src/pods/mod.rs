//! The pods bound to this node: each one admitted, given its objects,
//! volumes and env, run container by container through `sandlet-runtime`,
//! and reported, until it is deleted.
//!
//! Bottom up (no module imports one above it):
//!
//! - `status`: the pod state this node reports, and its `PodStatus` (no IO);
//! - `admission`: a pod as written checked into a [`PodPlan`] (no IO);
//! - `env`: env vars, envFrom and the downward API (no IO);
//! - `volumes`: pod volumes as host directories and files;
//! - `file_mounts`: single host files given to a guest;
//! - `logs`: container log files and the kubelet's log options;
//! - `objects`: ConfigMaps and Secrets, read once for many pods;
//! - `events`: Events with repeats counted in a series;
//! - `event_queue`: the queue Events wait in, and their rate;
//! - `table`: the pods as the kubelet API sees them;
//! - `context`: what every pod worker shares;
//! - `lifecycle`: one pod's life, where it is decided what runs, and the
//!   worker's jobs (status, pulls, set-up, runs, audit trail, sealing);
//! - `watch`: the watch on this node's pods, one worker per pod UID.
//!
//! This folder owns everything the node does with a pod. It turns pods
//! into `sandlet_runtime::RunPlan`s and must never touch wasmtime, nor
//! grant a guest anything its pod's plan does not.

pub(crate) mod admission;
pub(crate) mod context;
pub(crate) mod env;
pub(crate) mod event_queue;
pub(crate) mod events;
pub(crate) mod file_mounts;
pub(crate) mod lifecycle;
pub(crate) mod logs;
pub(crate) mod objects;
pub(crate) mod status;
pub(crate) mod table;
pub(crate) mod volumes;
pub(crate) mod watch;

pub use admission::{ContainerPlan, PodPlan, Rejection};
pub use event_queue::EventRate;
pub use lifecycle::setup::config_retry_delay;
pub use logs::{LogOptions, LogQueryError};
pub use volumes::bound_token_request;
