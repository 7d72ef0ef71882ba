//! sandlet's data engine: the datasets a station holds, the policies that
//! guard them, and the DataFusion engine that answers a run's queries under
//! those policies, every query on the audit record.
//!
//! Layers, bottom up (no module imports one above it):
//!
//! - [`config`](DataConfig): the datasets of the station file, validated;
//! - `files`, `postgres`, `table`: sources as DataFusion tables that show
//!   only allowed columns;
//! - `rowset`, `guard`, `disclosure`: disclosure control on the logical plan;
//! - `private`: differentially private answers for datasets with a
//!   `privacy:` policy (noise and budgets from `sandlet-privacy`);
//! - `trail`: what each query leaves on the record ([`AuditTrail`]);
//! - `grants`: [`GrantedDatasets`], a run's whole data capability, the
//!   [`DataAccess`] the wasmtime engine serves to guests;
//! - `raw`: the files `rawFiles: true` grants to WASI commands.
//!
//! It implements the guest's data interface ([`sandlet_core::data`]) and
//! knows nothing of wasmtime, registries or Kubernetes. It must never hand
//! a guest row-level data that the dataset's policy hides, nor answer a
//! query that is not on the record (`docs/reference/queries.md` says what
//! is enforced, `docs/security/thresholds.md` what thresholds do not stop).

mod config;
mod disclosure;
mod files;
mod fixedsum;
mod grants;
mod guard;
mod postgres;
mod private;
mod raw;
mod rowset;
mod table;
mod trail;

pub use config::{
    DataConfig, DatasetConfig, DatasetError, DatasetSpec, DisclosurePolicy, SourceConfig,
};
pub use grants::{Budget, GrantError, GrantedDatasets, QueryTimings};
pub use raw::{RAW_FILES_ROOT, RawFilesError, RawMount, exposed_dataset, raw_file_mounts};
pub use sandlet_audit::{AuditLog, Caller, Decision, PrivacyEntry};
pub use sandlet_core::data::{
    ColumnInfo, DataAccess, DatasetInfo, NoDatasets, QueryError, Table, Value,
};
pub use sandlet_privacy::{Epsilon, Ledger, LedgerError, PrivacyPolicy};
pub use trail::{AuditTrail, QueryCounters, audit_dir, open_audit_log};
