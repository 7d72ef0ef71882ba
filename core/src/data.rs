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
    /// SQL NULL: no value.
    Null,
    /// A boolean column's value.
    Boolean(bool),
    /// An integer column's value, widened to 64 bits.
    Int(i64),
    /// A floating-point column's value, widened to 64 bits.
    Float(f64),
    /// A string column's value.
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
    /// The column's name, as a query refers to it.
    pub name: String,
    /// The SQL type name, e.g. `Int64`, `Float64`, `Utf8`.
    pub data_type: String,
}

/// A granted dataset with its visible columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetInfo {
    /// The dataset's name, which is also its table name in queries.
    pub name: String,
    /// The columns the run may see, in the dataset's order.
    pub columns: Vec<ColumnInfo>,
}

/// A query result.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Table {
    /// The result's column names, in order.
    pub columns: Vec<String>,
    /// The result's rows, each with one value per column in `columns`.
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

/// A private dataset's budget for a run's namespace, in ε (WIT 0.2.0's
/// `budget`).
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetInfo {
    /// The whole budget (the dataset's `epsilon`).
    pub total: f64,
    /// What the namespace's queries have spent so far.
    pub spent: f64,
    /// What is left to spend: `total` less `spent`, never below 0.
    pub left: f64,
    /// What one query spends unless it asks for less.
    pub per_query: f64,
    /// The δ of the whole budget; 0 means GROUP BY is refused.
    pub delta: f64,
}

/// How the noise of one result column was made (WIT 0.2.0's
/// `column-noise`): 95 % half-widths of the noise on the count and on the
/// sum behind each value.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnNoise {
    /// The result column's name.
    pub column: String,
    /// `count`, `sum`, `mean`, `variance` or `stddev`.
    pub statistic: String,
    /// The 95 % half-width of the noise on the count behind each value
    /// (count, mean, variance, stddev), in rows.
    pub count_accuracy: Option<f64>,
    /// The 95 % half-width of the noise on the sum behind each value (sum,
    /// mean), in the column's units.
    pub sum_accuracy: Option<f64>,
}

/// What a query of a private dataset spent, and its noise.
#[derive(Debug, Clone, PartialEq)]
pub struct Noise {
    /// The ε the query spent of the dataset's budget.
    pub epsilon: f64,
    /// The δ the query spent; 0 without GROUP BY.
    pub delta: f64,
    /// With GROUP BY: the noisy row count a group needed to be shown.
    pub threshold: Option<i64>,
    /// The result columns that are a noisy aggregate; others are keys or
    /// derived.
    pub columns: Vec<ColumnNoise>,
}

/// The data capability of one run.
#[async_trait::async_trait]
pub trait DataAccess: Send + Sync + 'static {
    /// Datasets granted to this run, with only their visible columns.
    async fn datasets(&self) -> Result<Vec<DatasetInfo>, QueryError>;
    /// Runs one SQL query in which each granted dataset is a table.
    async fn query(&self, sql: &str) -> Result<Table, QueryError>;
    /// The budget of a granted private dataset; `None` when the dataset is
    /// not private or not granted.
    async fn budget(&self, _dataset: &str) -> Result<Option<BudgetInfo>, QueryError> {
        Ok(None)
    }
    /// Runs one query spending `epsilon` (at most the dataset's `perQuery`;
    /// `perQuery` when `None`) of a private dataset's budget, and tells its
    /// noise; on other datasets, [`DataAccess::query`] with no noise.
    async fn query_private(
        &self,
        sql: &str,
        _epsilon: Option<f64>,
    ) -> Result<(Table, Option<Noise>), QueryError> {
        self.query(sql).await.map(|table| (table, None))
    }
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
