//! Running a guest's SQL over the datasets granted to its run, with
//! DataFusion, under the datasets' disclosure policies.
//!
//! Each run gets one DataFusion session that contains exactly its granted
//! datasets (as [`DatasetTable`]s: only allowed columns), no table
//! functions, no `information_schema`, no URL tables and no spilling to
//! disk, with a memory pool of the smallest `queryMemory` among them. A
//! query is parsed (only a single `SELECT`-like query statement is
//! accepted), planned, checked and guarded by [`super::disclosure`], cut at
//! `maxResultRows + 1` rows, and run under the smallest `queryTimeout`.
//! Errors are sorted into the WIT cases; errors raised while data is read
//! are reported without their text (which can quote a value) and logged for
//! the station's admin instead.

use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::RecordBatch;
use datafusion::common::ScalarValue;
use datafusion::common::config::Dialect;
use datafusion::error::DataFusionError;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::{LogicalPlan, LogicalPlanBuilder};
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;
use futures_util::FutureExt;

use sha2::{Digest as _, Sha256};

use super::disclosure;
use super::guard::{GuardedQueryPlanner, PolicyViolation, find_in_chain};
use super::postgres::{SourceTimeout, SourceUnavailable};
use super::private;
use super::table::DatasetTable;
use super::trail::{AuditTrail, QueryRecord};
use super::{
    ColumnInfo, DataAccess, DataConfig, DatasetConfig, DatasetInfo, Ledger, LedgerError,
    PrivacyEntry, QueryError, Table, Value,
};
use sandlet_core::data::{BudgetInfo, Noise};
use sandlet_core::quantity::{DurationText, Size};

/// What a guest is told when its query failed while data was read.
const RUNNING_FAILED: &str = "the query failed while reading the data or computing over it \
     (the station's log has the details)";

/// A grant that cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    /// The station has no dataset of that name.
    #[error("dataset {0:?} is not in the data configuration")]
    Unknown(String),
}

/// The datasets one run was granted: its whole data capability.
#[derive(Debug, Clone, Default)]
pub struct GrantedDatasets {
    datasets: Vec<Arc<DatasetConfig>>,
    session: Arc<tokio::sync::OnceCell<Session>>,
    /// Where every query is recorded before it is answered.
    audit: Option<AuditTrail>,
    /// Where private queries are charged; without it they are refused.
    budget: Option<Budget>,
}

/// Where a run's differentially private queries are charged: the station's
/// ledger, and the account (namespace) of whoever runs.
#[derive(Debug, Clone)]
pub struct Budget {
    /// The station's ledger of spent budgets.
    pub ledger: Arc<Ledger>,
    /// The pod's namespace; [`Budget::LOCAL`] for `sandlet run` and
    /// `sandlet query`.
    pub namespace: String,
}

impl Budget {
    /// The account of runs on the station's own command line: no
    /// Kubernetes namespace can have this name.
    pub const LOCAL: &'static str = "@local";
}

/// How long each step of one query took; for benchmarks.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, Default)]
pub struct QueryTimings {
    /// SQL text to DataFusion's logical plan.
    pub plan: Duration,
    /// The disclosure checks and guard placement.
    pub policy: Duration,
    /// Optimising and running the plan, and collecting the result.
    pub execute: Duration,
}

impl GrantedDatasets {
    /// Grants `names` from `config`. Every name must be configured; asking
    /// twice for one dataset grants it once.
    pub fn new(config: &DataConfig, names: &[String]) -> Result<Self, GrantError> {
        let mut datasets: Vec<Arc<DatasetConfig>> = Vec::new();
        for name in names {
            let dataset = config
                .dataset(name)
                .ok_or_else(|| GrantError::Unknown(name.clone()))?;
            if !datasets.iter().any(|d| d.name == *name) {
                datasets.push(Arc::new(dataset.clone()));
            }
        }
        Ok(GrantedDatasets {
            datasets,
            session: Default::default(),
            audit: None,
            budget: None,
        })
    }

    /// Charges this run's differentially private queries to `budget`.
    pub fn budgeted(mut self, budget: Budget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Records every query of this run in `trail` before answering it; a
    /// query whose record cannot be written is refused.
    pub fn audited(mut self, trail: AuditTrail) -> Self {
        self.audit = Some(trail);
        self
    }

    /// Names of the granted datasets, in grant order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.datasets.iter().map(|d| d.name.as_str())
    }

    /// Whether the run was granted no dataset.
    pub fn is_empty(&self) -> bool {
        self.datasets.is_empty()
    }

    /// The smallest `queryTimeout` of the granted datasets.
    fn timeout(&self) -> Duration {
        strictest_timeout(&self.datasets)
    }

    async fn session(&self) -> Result<&Session, QueryError> {
        self.session
            .get_or_try_init(|| Session::open(&self.datasets))
            .await
    }

    /// Runs one query and reports how long each step took. With an audit
    /// trail, the query is on the record before its outcome is returned.
    #[doc(hidden)]
    pub async fn query_timed(&self, sql: &str) -> Result<(Table, QueryTimings), QueryError> {
        self.query_with(sql, None)
            .await
            .map(|(table, timings, _)| (table, timings))
    }

    /// Runs one query, spending `epsilon` of a private dataset's budget
    /// (its `perQuery` when `None`), with its noise if it read one.
    async fn query_with(
        &self,
        sql: &str,
        epsilon: Option<f64>,
    ) -> Result<(Table, QueryTimings, Option<Noise>), QueryError> {
        let started = Instant::now();
        let mut record = QueryRecord::default();
        let result = self.run_query(sql, epsilon, &mut record).await;
        let Some(trail) = &self.audit else {
            return result;
        };
        let rows = result
            .as_ref()
            .map_or(0, |(table, _, _)| table.rows.len() as u64);
        let datasets = self.names().map(str::to_owned).collect();
        trail
            .record(sql, datasets, record, rows, started.elapsed(), result)
            .await
    }

    async fn run_query(
        &self,
        sql: &str,
        epsilon: Option<f64>,
        record: &mut QueryRecord,
    ) -> Result<(Table, QueryTimings, Option<Noise>), QueryError> {
        if self.datasets.is_empty() {
            return Err(QueryError::NotGranted(
                "no dataset is granted to this run".to_owned(),
            ));
        }
        let timeout = self.timeout();
        let run = async {
            let session = self.session().await?;
            session
                .query(sql, epsilon, self.budget.as_ref(), record)
                .await
        };
        // A malformed file can make a reader panic (the parquet crate does
        // on some corrupt footers): that ends this query, not the run.
        let run = std::panic::AssertUnwindSafe(run).catch_unwind();
        match tokio::time::timeout(timeout, run).await {
            Ok(Ok(result)) => result,
            Ok(Err(_panic)) => {
                tracing::error!("a query panicked while reading its data");
                Err(QueryError::Invalid(RUNNING_FAILED.to_owned()))
            }
            Err(_) => Err(timed_out(timeout)),
        }
    }
}

/// One run's DataFusion session and its granted tables, by grant index.
struct Session {
    ctx: SessionContext,
    tables: Vec<Arc<DatasetTable>>,
    decorrelator: disclosure::Decorrelator,
    memory: u64,
    timeout: Duration,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("tables", &self.tables.len())
            .finish()
    }
}

impl Session {
    async fn open(datasets: &[Arc<DatasetConfig>]) -> Result<Session, QueryError> {
        let memory = datasets
            .iter()
            .map(|d| d.policy.query_memory)
            .min()
            .unwrap_or(super::config::DEFAULT_QUERY_MEMORY);
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(memory as usize, 1.0)
            .with_disk_manager_builder(
                DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
            )
            .build_arc()
            .map_err(|e| QueryError::Invalid(format!("cannot start the query engine: {e}")))?;
        let config = SessionConfig::new().with_information_schema(false);
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime)
            .with_default_features()
            .with_table_functions(Default::default())
            .with_table_factories(Default::default())
            .with_query_planner(Arc::new(GuardedQueryPlanner))
            .build();
        let ctx = SessionContext::new_with_state(state);
        let mut tables = Vec::with_capacity(datasets.len());
        // Opening registers object stores in the runtime, which the state
        // shares with the context: one snapshot serves every dataset.
        let state = ctx.state();
        for (index, dataset) in datasets.iter().enumerate() {
            let open = DatasetTable::open(&state, Arc::clone(dataset), index);
            let table = match std::panic::AssertUnwindSafe(open).catch_unwind().await {
                Ok(Ok(table)) => table,
                Ok(Err(error)) => {
                    tracing::warn!(dataset = %dataset.name, %error, "dataset cannot be opened");
                    DatasetTable::unavailable(Arc::clone(dataset), index)
                }
                Err(_panic) => {
                    tracing::error!(dataset = %dataset.name, "opening the dataset panicked");
                    DatasetTable::unavailable(Arc::clone(dataset), index)
                }
            };
            let table = Arc::new(table);
            ctx.register_table(dataset.name.as_str(), Arc::clone(&table) as _)
                .map_err(|e| {
                    QueryError::Invalid(format!("cannot register {}: {e}", dataset.name))
                })?;
            tables.push(table);
        }
        let decorrelator = disclosure::Decorrelator::new(&ctx.state());
        Ok(Session {
            ctx,
            tables,
            decorrelator,
            memory,
            timeout: strictest_timeout(datasets),
        })
    }

    /// Runs one query; `fingerprint` gets the SHA-256 of the checked plan
    /// once there is one.
    async fn query(
        &self,
        sql: &str,
        epsilon: Option<f64>,
        budget: Option<&Budget>,
        record: &mut QueryRecord,
    ) -> Result<(Table, QueryTimings, Option<Noise>), QueryError> {
        let mut timings = QueryTimings::default();
        let started = Instant::now();
        let state = self.ctx.state();
        let statement = state
            .sql_to_statement(sql, &Dialect::Generic)
            .map_err(|e| QueryError::Invalid(e.find_root().to_string()))?;
        if !is_query(&statement) {
            return Err(QueryError::Denied(format!(
                "only SELECT queries are allowed, not {}",
                first_keyword(sql)
            )));
        }
        // A granted dataset whose source could not be opened has no
        // columns to plan against: say so, rather than that the query
        // names something not granted.
        if let Ok(references) = state.resolve_table_references(&statement) {
            for reference in &references {
                if let Some(reason) = self
                    .tables
                    .iter()
                    .find(|t| t.name() == reference.table())
                    .and_then(|t| t.unavailable_reason())
                {
                    return Err(QueryError::Invalid(reason));
                }
            }
        }
        let plan = state
            .statement_to_plan(statement)
            .await
            .and_then(|plan| self.decorrelator.run(plan, &state))
            .map_err(planning_error)?;
        timings.plan = started.elapsed();

        if let Some(private) = private::analyse(&plan, &self.tables)? {
            return self
                .private_query(private, epsilon, budget, record, timings)
                .await;
        }

        let started = Instant::now();
        let checked = disclosure::check(&plan, &self.tables)?;
        record.fingerprint = Some(format!(
            "{:x}",
            Sha256::digest(checked.plan.display_indent().to_string())
        ));
        timings.policy = started.elapsed();

        let started = Instant::now();
        let table = self.answer(checked.plan, checked.max_result_rows).await?;
        timings.execute = started.elapsed();
        Ok((table, timings, None))
    }

    /// Runs a plan that may run, cut one row past `max_result_rows`, and
    /// refuses a result longer than that.
    async fn answer(&self, plan: LogicalPlan, max_result_rows: u64) -> Result<Table, QueryError> {
        let max_rows = usize::try_from(max_result_rows).unwrap_or(usize::MAX);
        let frame = self
            .ctx
            .execute_logical_plan(limited(plan, max_rows)?)
            .await
            .map_err(|e| self.execution_error(e))?;
        let columns = frame
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let batches = frame.collect().await.map_err(|e| self.execution_error(e))?;
        let rows = rows_of(&batches)?;
        if rows.len() > max_rows {
            return Err(QueryError::LimitExceeded(format!(
                "maxResultRows: the result has more than {max_rows} rows"
            )));
        }
        Ok(Table { columns, rows })
    }

    /// Answers a query of a differentially private dataset: charges its
    /// budget, runs the aggregate exactly, adds the noise and runs the rest
    /// of the plan over the noisy table. The charge stands whatever happens
    /// after it: a query that fails while it reads the data has still
    /// looked at it.
    async fn private_query(
        &self,
        private: private::Private,
        asked: Option<f64>,
        budget: Option<&Budget>,
        record: &mut QueryRecord,
        mut timings: QueryTimings,
    ) -> Result<(Table, QueryTimings, Option<Noise>), QueryError> {
        let started = Instant::now();
        record.fingerprint = Some(format!(
            "{:x}",
            Sha256::digest(private.exact.display_indent().to_string())
        ));
        let Some(budget) = budget else {
            return Err(QueryError::Denied(format!(
                "privacy: dataset {} is differentially private, and this run keeps no privacy \
                 budget ledger to charge",
                private.name
            )));
        };
        let epsilon = private.epsilon(asked)?;
        let ledger = Arc::clone(&budget.ledger);
        let (dataset, namespace, total) = (
            private.name.clone(),
            budget.namespace.clone(),
            private.policy.epsilon,
        );
        let charge = tokio::task::spawn_blocking(move || {
            ledger.charge(&dataset, &namespace, total, epsilon)
        })
        .await
        .map_err(|e| QueryError::Denied(format!("privacy: the budget ledger failed: {e}")))?;
        let charge = match charge {
            Ok(charge) => charge,
            Err(exhausted @ LedgerError::Exhausted { .. }) => {
                return Err(QueryError::LimitExceeded(exhausted.to_string()));
            }
            Err(unavailable) => return Err(QueryError::Denied(format!("privacy: {unavailable}"))),
        };
        record.privacy = Some(PrivacyEntry {
            action: "charge".to_owned(),
            dataset: private.name.clone(),
            namespace: budget.namespace.clone(),
            epsilon: charge.charged.to_string(),
            spent: charge.spent.to_string(),
            total: charge.total.to_string(),
        });
        timings.policy = started.elapsed();

        let started = Instant::now();
        let exact = self
            .ctx
            .execute_logical_plan(private.exact.clone())
            .await
            .map_err(|e| self.execution_error(e))?
            .collect()
            .await
            .map_err(|e| self.execution_error(e))?;
        let (plan, release) = private.release(&exact, charge.charged)?;
        let max_rows = self.tables[private.dataset].config.policy.max_result_rows;
        let table = self.answer(plan, max_rows).await?;
        timings.execute = started.elapsed();
        Ok((table, timings, Some(private.noise(&release))))
    }

    /// Sorts an error raised while the query ran. Only policy violations and
    /// the memory limit are told to the guest in full: other errors can
    /// quote the data (a value that failed to parse, say).
    fn execution_error(&self, error: DataFusionError) -> QueryError {
        if let Some(violation) = find_in_chain::<PolicyViolation>(&error) {
            return QueryError::Denied(violation.to_string());
        }
        if find_in_chain::<SourceTimeout>(&error).is_some() {
            return timed_out(self.timeout);
        }
        if let Some(gone) = find_in_chain::<SourceUnavailable>(&error) {
            tracing::warn!(error = %gone, "a PostgreSQL dataset became unavailable while a query read it");
            let names: Vec<&str> = self
                .tables
                .iter()
                .filter(|t| matches!(t.config.source, super::SourceConfig::Postgres { .. }))
                .map(|t| t.name())
                .collect();
            let which = match names.as_slice() {
                [one] => format!("dataset {one} is"),
                _ => format!("a dataset of {} is", names.join(", ")),
            };
            // Nothing of the server's message: it can name hosts and roles.
            return QueryError::Invalid(format!(
                "{which} unavailable on this station: its PostgreSQL server went away while the \
                 query read it (the station's log has the details)"
            ));
        }
        match error.find_root() {
            DataFusionError::ResourcesExhausted(_) => QueryError::LimitExceeded(format!(
                "queryMemory: the query needs more than {} of memory",
                Size(self.memory)
            )),
            DataFusionError::Plan(_)
            | DataFusionError::NotImplemented(_)
            | DataFusionError::SchemaError(..) => planning_error(error),
            root => {
                if let Some(table) = self
                    .tables
                    .iter()
                    .find(|t| t.unavailable_reason().is_some())
                {
                    tracing::debug!(dataset = table.name(), "an unavailable dataset was read");
                }
                tracing::warn!(error = %root, "query failed while running");
                QueryError::Invalid(RUNNING_FAILED.to_owned())
            }
        }
    }
}

/// The smallest `queryTimeout` of `datasets`: a query over several gets
/// the strictest.
fn strictest_timeout(datasets: &[Arc<DatasetConfig>]) -> Duration {
    datasets
        .iter()
        .map(|d| d.policy.query_timeout)
        .min()
        .unwrap_or(super::config::DEFAULT_QUERY_TIMEOUT)
}

fn timed_out(timeout: Duration) -> QueryError {
    QueryError::LimitExceeded(format!(
        "queryTimeout: the query ran longer than {}",
        DurationText(timeout)
    ))
}

/// Whether a parsed statement is a query (`SELECT`, `WITH`, `VALUES`, set
/// operations), the only kind a guest may run.
fn is_query(statement: &DfStatement) -> bool {
    matches!(statement, DfStatement::Statement(s) if matches!(**s, SqlStatement::Query(_)))
}

fn first_keyword(sql: &str) -> String {
    let word: String = sql
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect();
    if word.is_empty() {
        "this statement".to_owned()
    } else {
        word.to_uppercase()
    }
}

/// Sorts an error raised while planning: these concern the SQL text only.
/// Unknown tables and columns are `not-granted`, so a guest cannot tell a
/// hidden name from a missing one.
fn planning_error(error: DataFusionError) -> QueryError {
    if let Some(violation) = find_in_chain::<PolicyViolation>(&error) {
        return QueryError::Denied(violation.to_string());
    }
    let root = error.find_root().to_string();
    let lower = root.to_lowercase();
    if lower.contains("not found")
        || lower.contains("no field named")
        || lower.contains("doesn't exist")
        || lower.contains("does not exist")
    {
        QueryError::NotGranted(
            "the query names a table or column that is not granted to this run".to_owned(),
        )
    } else {
        QueryError::Invalid(root)
    }
}

/// Cuts the result one row past the limit, so that a result over the limit
/// is told from one at it without computing all of it.
fn limited(plan: LogicalPlan, max_rows: usize) -> Result<LogicalPlan, QueryError> {
    LogicalPlanBuilder::from(plan)
        .limit(0, Some(max_rows.saturating_add(1)))
        .and_then(LogicalPlanBuilder::build)
        .map_err(|e| QueryError::Invalid(e.to_string()))
}

#[async_trait::async_trait]
impl DataAccess for GrantedDatasets {
    async fn datasets(&self) -> Result<Vec<DatasetInfo>, QueryError> {
        let session = self.session().await?;
        Ok(session
            .tables
            .iter()
            .filter(|table| table.unavailable_reason().is_none())
            .map(|table| DatasetInfo {
                name: table.name().to_owned(),
                columns: table
                    .visible_schema()
                    .fields()
                    .iter()
                    .map(|field| ColumnInfo {
                        name: field.name().clone(),
                        data_type: field.data_type().to_string(),
                    })
                    .collect(),
            })
            .collect())
    }

    async fn query(&self, sql: &str) -> Result<Table, QueryError> {
        self.query_timed(sql).await.map(|(table, _)| table)
    }

    async fn budget(&self, dataset: &str) -> Result<Option<BudgetInfo>, QueryError> {
        let Some(config) = self.datasets.iter().find(|d| d.name == dataset) else {
            return Ok(None);
        };
        let (Some(policy), Some(budget)) = (&config.policy.privacy, &self.budget) else {
            return Ok(None);
        };
        let ledger = Arc::clone(&budget.ledger);
        let (name, namespace) = (config.name.clone(), budget.namespace.clone());
        let spent = tokio::task::spawn_blocking(move || ledger.spent(&name, &namespace))
            .await
            .map_err(|e| QueryError::Denied(format!("privacy: the budget ledger failed: {e}")))?
            .map_err(|e| QueryError::Denied(format!("privacy: {e}")))?;
        Ok(Some(BudgetInfo {
            total: policy.epsilon.as_f64(),
            spent: spent.as_f64(),
            left: policy.epsilon.saturating_sub(spent).as_f64(),
            per_query: policy.per_query.as_f64(),
            delta: policy.delta,
        }))
    }

    async fn query_private(
        &self,
        sql: &str,
        epsilon: Option<f64>,
    ) -> Result<(Table, Option<Noise>), QueryError> {
        self.query_with(sql, epsilon)
            .await
            .map(|(table, _, noise)| (table, noise))
    }
}

fn rows_of(batches: &[RecordBatch]) -> Result<Vec<Vec<Value>>, QueryError> {
    let mut rows = Vec::new();
    for batch in batches {
        for row in 0..batch.num_rows() {
            let mut values = Vec::with_capacity(batch.num_columns());
            for column in batch.columns() {
                let scalar = ScalarValue::try_from_array(column, row)
                    .map_err(|e| QueryError::Invalid(e.to_string()))?;
                values.push(value_of(scalar));
            }
            rows.push(values);
        }
    }
    Ok(rows)
}

/// Maps an Arrow value to the five WIT value cases; anything without a
/// direct case (dates, decimals) travels as text or float.
fn value_of(scalar: ScalarValue) -> Value {
    if scalar.is_null() {
        return Value::Null;
    }
    match scalar {
        ScalarValue::Boolean(Some(b)) => Value::Boolean(b),
        ScalarValue::Int8(Some(i)) => Value::Int(i.into()),
        ScalarValue::Int16(Some(i)) => Value::Int(i.into()),
        ScalarValue::Int32(Some(i)) => Value::Int(i.into()),
        ScalarValue::Int64(Some(i)) => Value::Int(i),
        ScalarValue::UInt8(Some(i)) => Value::Int(i.into()),
        ScalarValue::UInt16(Some(i)) => Value::Int(i.into()),
        ScalarValue::UInt32(Some(i)) => Value::Int(i.into()),
        ScalarValue::UInt64(Some(i)) => match i64::try_from(i) {
            Ok(i) => Value::Int(i),
            Err(_) => Value::Float(i as f64),
        },
        ScalarValue::Float32(Some(x)) => Value::Float(x.into()),
        ScalarValue::Float64(Some(x)) => Value::Float(x),
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => Value::Text(s),
        ScalarValue::Decimal128(Some(v), _, scale) => {
            Value::Float(v as f64 / 10f64.powi(scale.into()))
        }
        other => Value::Text(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DisclosurePolicy, SourceConfig};
    use std::io::Write;

    /// 30 patients: ages 20..50, every third one "m" (10 m, 20 f).
    fn config(dir: &std::path::Path, policy: DisclosurePolicy) -> DataConfig {
        let path = dir.join("patients.csv");
        let mut file = std::fs::File::create(&path).unwrap();
        writeln!(file, "age,sex,ssn").unwrap();
        for i in 0..30 {
            let sex = if i % 3 == 0 { "m" } else { "f" };
            writeln!(file, "{},{sex},{}", 20 + i, 1000 + i).unwrap();
        }
        DataConfig {
            datasets: vec![DatasetConfig {
                name: "patients".into(),
                source: SourceConfig::Csv(path),
                policy,
            }],
            default_grants: Default::default(),
        }
    }

    fn granted(dir: &std::path::Path, policy: DisclosurePolicy) -> GrantedDatasets {
        GrantedDatasets::new(&config(dir, policy), &["patients".into()]).unwrap()
    }

    /// Each query is denied by the rule its message starts with.
    async fn assert_denied(data: &GrantedDatasets, cases: &[(&str, &str)]) {
        for (sql, rule) in cases {
            let err = data.query(sql).await.unwrap_err();
            assert!(
                matches!(&err, QueryError::Denied(m) if m.starts_with(rule)),
                "{sql}: {err}"
            );
        }
    }

    fn hiding_ssn() -> DisclosurePolicy {
        DisclosurePolicy {
            allowed_columns: Some(vec!["age".into(), "sex".into()]),
            ..DisclosurePolicy::default()
        }
    }

    #[tokio::test]
    async fn grouped_aggregates_are_answered() {
        let dir = tempfile::tempdir().unwrap();
        let data = granted(dir.path(), hiding_ssn());
        let table = data
            .query("SELECT sex, COUNT(*) AS n, AVG(age) AS mean FROM patients GROUP BY sex ORDER BY sex")
            .await
            .unwrap();
        assert_eq!(table.columns, ["sex", "n", "mean"]);
        // f: ages 21,22,24,25,...,49 (i % 3 != 0); m: 20,23,...,47.
        let mean_m = (0..30).filter(|i| i % 3 == 0).map(|i| 20 + i).sum::<i64>() as f64 / 10.0;
        let mean_f = (0..30).filter(|i| i % 3 != 0).map(|i| 20 + i).sum::<i64>() as f64 / 20.0;
        assert_eq!(
            table.rows,
            vec![
                vec![
                    Value::Text("f".into()),
                    Value::Int(20),
                    Value::Float(mean_f)
                ],
                vec![
                    Value::Text("m".into()),
                    Value::Int(10),
                    Value::Float(mean_m)
                ],
            ]
        );
    }

    #[tokio::test]
    async fn small_groups_and_few_rows_are_denied_with_the_rule() {
        let dir = tempfile::tempdir().unwrap();
        let data = granted(dir.path(), hiding_ssn());
        assert_denied(
            &data,
            &[
                (
                    "SELECT age, COUNT(*) FROM patients GROUP BY age",
                    "minGroupSize:",
                ),
                // 7 rows in one group: the group is big enough, the total is not.
                ("SELECT COUNT(*) FROM patients WHERE age < 27", "minRows:"),
                // No rows at all is as much a disclosure as one.
                (
                    "SELECT sex, COUNT(*) FROM patients WHERE age > 100 GROUP BY sex",
                    "minRows:",
                ),
                // An aggregate that reads only a few rows of its group.
                (
                    "SELECT AVG(CASE WHEN age = 20 THEN age END) FROM patients",
                    "minGroupSize:",
                ),
            ],
        )
        .await;
    }

    #[tokio::test]
    async fn row_level_values_and_unsafe_aggregates_are_denied() {
        let dir = tempfile::tempdir().unwrap();
        let data = granted(dir.path(), hiding_ssn());
        assert_denied(
            &data,
            &[
                ("SELECT age FROM patients", "aggregatesOnly:"),
                ("SELECT 1 FROM patients", "aggregatesOnly:"),
                ("SELECT MAX(age) FROM patients", "aggregatesOnly: MAX"),
                (
                    "SELECT ROW_NUMBER() OVER () FROM patients",
                    "aggregatesOnly: window",
                ),
            ],
        )
        .await;
    }

    #[tokio::test]
    async fn row_level_values_are_answered_where_the_policy_allows_them() {
        let dir = tempfile::tempdir().unwrap();
        let data = granted(
            dir.path(),
            DisclosurePolicy {
                aggregates_only: false,
                ..hiding_ssn()
            },
        );
        let table = data
            .query("SELECT age FROM patients WHERE age < 22 ORDER BY age")
            .await
            .unwrap();
        assert_eq!(table.rows, vec![vec![Value::Int(20)], vec![Value::Int(21)]]);
    }

    #[tokio::test]
    async fn hidden_columns_do_not_exist_for_the_guest() {
        let dir = tempfile::tempdir().unwrap();
        let data = granted(dir.path(), hiding_ssn());
        let infos = data.datasets().await.unwrap();
        let names: Vec<_> = infos[0].columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["age", "sex"]);
        let hidden = data
            .query("SELECT SUM(ssn) FROM patients")
            .await
            .unwrap_err();
        let missing = data
            .query("SELECT SUM(nope) FROM patients")
            .await
            .unwrap_err();
        assert!(matches!(hidden, QueryError::NotGranted(_)), "{hidden}");
        assert_eq!(
            hidden, missing,
            "a hidden column must look exactly like a missing one"
        );
    }

    #[tokio::test]
    async fn ungranted_and_unknown_tables_look_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path(), DisclosurePolicy::default());
        let data = GrantedDatasets::new(&config, &["patients".into()]).unwrap();
        let unknown = data.query("SELECT COUNT(*) FROM labs").await.unwrap_err();
        assert!(matches!(unknown, QueryError::NotGranted(_)), "{unknown}");
        assert!(GrantedDatasets::new(&config, &["labs".into()]).is_err());
        let none = GrantedDatasets::new(&config, &[]).unwrap();
        assert!(matches!(
            none.query("SELECT COUNT(*) FROM patients").await,
            Err(QueryError::NotGranted(_))
        ));
    }

    #[tokio::test]
    async fn statements_other_than_queries_are_denied() {
        let dir = tempfile::tempdir().unwrap();
        let data = granted(dir.path(), DisclosurePolicy::default());
        for (sql, kind) in [
            (
                "CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '/etc/passwd'",
                "CREATE",
            ),
            ("CREATE TABLE t AS SELECT 1", "CREATE"),
            ("INSERT INTO patients VALUES (1, 'f', 2)", "INSERT"),
            ("SET datafusion.execution.batch_size = 1", "SET"),
            ("EXPLAIN SELECT COUNT(*) FROM patients", "EXPLAIN"),
        ] {
            let err = data.query(sql).await.unwrap_err();
            assert_eq!(
                err,
                QueryError::Denied(format!("only SELECT queries are allowed, not {kind}")),
                "{sql}"
            );
        }
        let err = data.query("SELEC 1").await.unwrap_err();
        assert!(matches!(err, QueryError::Invalid(_)), "{err}");
    }
}
