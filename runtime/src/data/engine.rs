//! Running a guest's SQL over the datasets granted to its run, with
//! DataFusion.
//!
//! Each query gets a fresh DataFusion session that contains exactly the
//! granted datasets, each as a view of only its allowed columns; the
//! underlying file is never registered under a name the guest could use.
//! Statements other than queries (DDL, DML, `SET`, `COPY`) are refused before
//! planning.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::common::ScalarValue;
use datafusion::error::DataFusionError;
use datafusion::execution::context::SQLOptions;
use datafusion::prelude::{CsvReadOptions, DataFrame, ParquetReadOptions, SessionContext};

use super::{
    ColumnInfo, DataAccess, DataConfig, DatasetConfig, DatasetInfo, QueryError, SourceConfig,
    Table, Value,
};

/// A grant that cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    #[error("dataset {0:?} is not in the data configuration")]
    Unknown(String),
}

/// The datasets one run was granted: its whole data capability.
#[derive(Debug, Clone, Default)]
pub struct GrantedDatasets {
    datasets: Vec<Arc<DatasetConfig>>,
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
        Ok(GrantedDatasets { datasets })
    }

    /// Names of the granted datasets, in grant order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.datasets.iter().map(|d| d.name.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.datasets.is_empty()
    }

    /// A session in which each granted dataset is a view of its allowed
    /// columns and nothing else is registered.
    async fn session(&self) -> Result<SessionContext, QueryError> {
        let ctx = SessionContext::new();
        for dataset in &self.datasets {
            let frame = visible_frame(&ctx, dataset).await?;
            ctx.register_table(dataset.name.as_str(), frame.into_view())
                .map_err(|e| internal(&dataset.name, e))?;
        }
        Ok(ctx)
    }
}

/// The dataset's rows with only the columns its policy allows.
async fn visible_frame(
    ctx: &SessionContext,
    dataset: &DatasetConfig,
) -> Result<DataFrame, QueryError> {
    let frame = match &dataset.source {
        SourceConfig::Csv(path) => {
            let path = path.to_string_lossy();
            ctx.read_csv(path.as_ref(), CsvReadOptions::new().has_header(true))
                .await
        }
        SourceConfig::Parquet(path) => {
            let path = path.to_string_lossy();
            ctx.read_parquet(path.as_ref(), ParquetReadOptions::default())
                .await
        }
        SourceConfig::Postgres { .. } => {
            return Err(QueryError::Invalid(format!(
                "dataset {:?} is a PostgreSQL table, which this build cannot query yet",
                dataset.name
            )));
        }
    }
    .map_err(|e| internal(&dataset.name, e))?;
    match &dataset.policy.allowed_columns {
        None => Ok(frame),
        Some(columns) => {
            let columns: Vec<&str> = columns.iter().map(String::as_str).collect();
            frame
                .select_columns(&columns)
                .map_err(|e| internal(&dataset.name, e))
        }
    }
}

/// A dataset that cannot be opened is the data admin's problem, not the
/// guest's: the guest learns only that this dataset is unavailable.
fn internal(name: &str, error: DataFusionError) -> QueryError {
    tracing::warn!(dataset = name, %error, "dataset cannot be opened");
    QueryError::Invalid(format!("dataset {name:?} is unavailable on this station"))
}

fn sql_options() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

/// Sorts a DataFusion error into the WIT cases. Unknown tables and columns
/// are `not-granted`, so a guest cannot tell a hidden name from a missing
/// one.
fn classify(error: DataFusionError) -> QueryError {
    let error = error.find_root().to_string();
    let lower = error.to_lowercase();
    if lower.contains("not found") || lower.contains("no field named") {
        QueryError::NotGranted(
            "the query names a table or column that is not granted to this run".to_owned(),
        )
    } else if lower.contains("resources exhausted") {
        QueryError::LimitExceeded(error)
    } else {
        QueryError::Invalid(error)
    }
}

#[async_trait::async_trait]
impl DataAccess for GrantedDatasets {
    async fn datasets(&self) -> Result<Vec<DatasetInfo>, QueryError> {
        let ctx = SessionContext::new();
        let mut infos = Vec::with_capacity(self.datasets.len());
        for dataset in &self.datasets {
            let frame = visible_frame(&ctx, dataset).await?;
            let columns = frame
                .schema()
                .fields()
                .iter()
                .map(|field| ColumnInfo {
                    name: field.name().clone(),
                    data_type: field.data_type().to_string(),
                })
                .collect();
            infos.push(DatasetInfo {
                name: dataset.name.clone(),
                columns,
            });
        }
        Ok(infos)
    }

    async fn query(&self, sql: &str) -> Result<Table, QueryError> {
        if self.datasets.is_empty() {
            return Err(QueryError::NotGranted(
                "no dataset is granted to this run".to_owned(),
            ));
        }
        let ctx = self.session().await?;
        let frame = ctx
            .sql_with_options(sql, sql_options())
            .await
            .map_err(classify)?;
        let columns = frame
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let batches = frame.collect().await.map_err(classify)?;
        Ok(Table {
            columns,
            rows: rows_of(&batches)?,
        })
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
    use crate::data::DisclosurePolicy;
    use std::io::Write;

    fn config_with_csv(dir: &std::path::Path, allowed: Option<Vec<String>>) -> DataConfig {
        let path = dir.join("patients.csv");
        let mut file = std::fs::File::create(&path).unwrap();
        writeln!(file, "age,sex,ssn").unwrap();
        for (age, sex, ssn) in [(30, "f", 111), (40, "m", 222), (50, "f", 333)] {
            writeln!(file, "{age},{sex},{ssn}").unwrap();
        }
        DataConfig {
            modules: Default::default(),
            datasets: vec![DatasetConfig {
                name: "patients".into(),
                source: SourceConfig::Csv(path),
                policy: DisclosurePolicy {
                    allowed_columns: allowed,
                    ..DisclosurePolicy::default()
                },
            }],
        }
    }

    #[tokio::test]
    async fn granted_csv_answers_sql() {
        let dir = tempfile::tempdir().unwrap();
        let config = config_with_csv(dir.path(), None);
        let data = GrantedDatasets::new(&config, &["patients".into()]).unwrap();
        let table = data
            .query("SELECT sex, COUNT(*) AS n, AVG(age) AS mean FROM patients GROUP BY sex ORDER BY sex")
            .await
            .unwrap();
        assert_eq!(table.columns, ["sex", "n", "mean"]);
        assert_eq!(
            table.rows,
            vec![
                vec![Value::Text("f".into()), Value::Int(2), Value::Float(40.0)],
                vec![Value::Text("m".into()), Value::Int(1), Value::Float(40.0)],
            ]
        );
    }

    #[tokio::test]
    async fn hidden_columns_do_not_exist_for_the_guest() {
        let dir = tempfile::tempdir().unwrap();
        let config = config_with_csv(dir.path(), Some(vec!["age".into(), "sex".into()]));
        let data = GrantedDatasets::new(&config, &["patients".into()]).unwrap();
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
        let star = data.query("SELECT * FROM patients").await.unwrap();
        assert_eq!(star.columns, ["age", "sex"]);
    }

    #[tokio::test]
    async fn ungranted_and_unknown_tables_look_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let config = config_with_csv(dir.path(), None);
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
    async fn statements_other_than_queries_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let config = config_with_csv(dir.path(), None);
        let data = GrantedDatasets::new(&config, &["patients".into()]).unwrap();
        for sql in [
            "CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '/etc/passwd'",
            "CREATE TABLE t AS SELECT 1",
            "INSERT INTO patients VALUES (1, 'f', 2)",
            "SET datafusion.execution.batch_size = 1",
            "SELECT * FROM '/etc/passwd'",
            "SELEC 1",
        ] {
            let err = data.query(sql).await.unwrap_err();
            assert!(
                matches!(err, QueryError::Invalid(_) | QueryError::NotGranted(_)),
                "{sql}: {err}"
            );
        }
    }
}
