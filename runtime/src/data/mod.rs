//! Data that guests may query, and the boundary they query it through.
//!
//! This module owns the host-side model of the `sandlet:algorithm/data` WIT
//! interface ([`Value`], [`Table`], [`DatasetInfo`], [`QueryError`]) and the
//! one trait, [`DataAccess`], that a run's data capability is served by. A
//! run holds exactly one `DataAccess`: [`NoDatasets`] when nothing was
//! granted, or the [`GrantedDatasets`] of the datasets it was granted. The
//! guest never sees a path, a connection or a dataset it was not granted.
//!
//! It must never hand a guest row-level data that the dataset's policy
//! hides; the policy engine that enforces every disclosure rule is built on
//! this trait (see the README's "Data queries" section for what is enforced
//! today).

mod audit;
mod config;
mod engine;
mod files;
mod guard;
mod policy;
mod postgres;
mod raw;
mod rowset;
mod table;

pub use audit::{AuditTrail, QueryCounters};
pub use config::{ConfigError, DataConfig, DatasetConfig, DisclosurePolicy, SourceConfig};
pub use engine::{GrantError, GrantedDatasets, QueryTimings};
pub use raw::{RAW_FILES_ROOT, RawFilesError, exposed_dataset, raw_file_preopens};
pub use sandlet_audit::{AuditLog, Caller, Decision};

use std::fmt;

/// One cell of a query result.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Boolean(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

impl fmt::Display for Value {
    /// CSV-friendly text: nulls are empty, text is written as is.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => Ok(()),
            Value::Boolean(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::Text(s) => f.write_str(s),
        }
    }
}

/// A column a guest can see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnInfo {
    pub name: String,
    /// The SQL type name, e.g. `Int64`, `Float64`, `Utf8`.
    pub data_type: String,
}

/// A granted dataset with its visible columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetInfo {
    pub name: String,
    pub columns: Vec<ColumnInfo>,
}

/// A query result.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Table {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
}

/// Why a query was refused; the cases are those of the WIT `error` variant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// Not granted to this run, or does not exist: the guest cannot tell
    /// which.
    #[error("not-granted: {0}")]
    NotGranted(String),
    /// Breaks the dataset's disclosure policy; says which rule.
    #[error("denied: {0}")]
    Denied(String),
    /// Cannot be parsed or planned.
    #[error("invalid: {0}")]
    Invalid(String),
    /// Time, row or memory limit.
    #[error("limit-exceeded: {0}")]
    LimitExceeded(String),
}

/// The data capability of one run.
#[async_trait::async_trait]
pub trait DataAccess: Send + Sync + 'static {
    /// Datasets granted to this run, with only their visible columns.
    async fn datasets(&self) -> Result<Vec<DatasetInfo>, QueryError>;
    /// Runs one SQL query in which each granted dataset is a table.
    async fn query(&self, sql: &str) -> Result<Table, QueryError>;
}

/// The data capability of a run that was granted nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoDatasets;

#[async_trait::async_trait]
impl DataAccess for NoDatasets {
    async fn datasets(&self) -> Result<Vec<DatasetInfo>, QueryError> {
        Ok(Vec::new())
    }

    async fn query(&self, _sql: &str) -> Result<Table, QueryError> {
        Err(QueryError::NotGranted(
            "no dataset is granted to this run".to_owned(),
        ))
    }
}
