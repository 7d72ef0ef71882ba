//! The data interface as the host sees it: the `sandlet:algorithm/data`
//! WIT interface's types ([`Value`], [`Table`], [`DatasetInfo`],
//! [`QueryError`]) and the one trait, [`DataAccess`], that a run's data
//! capability is served by.
//!
//! The wasmtime engine serves this trait to guests; the data engine
//! (`sandlet-data`) implements it. Neither knows the other: the station
//! composes them. A run holds exactly one `DataAccess`: [`NoDatasets`] when
//! nothing was granted.

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
