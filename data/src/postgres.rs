//! PostgreSQL tables as DataFusion table providers.
//!
//! The guest's SQL never reaches PostgreSQL. DataFusion plans and runs the
//! query; this module only reads rows: for each scan it builds one
//! `SELECT` of the columns the plan needs, from the configured table, with
//! the simple filters that PostgreSQL evaluates exactly as DataFusion would
//! (DataFusion applies them again: they are pushed down as `Inexact`).
//! Every scan opens its own connection as the role in the dataset's URL,
//! runs in a `READ ONLY` transaction with `statement_timeout` set to the
//! dataset's `queryTimeout`, and streams rows into Arrow batches as they
//! arrive.
//!
//! Columns are read as four Arrow types: integers as `Int64`, `real`,
//! `double precision` and `numeric` as `Float64`, `boolean` as `Boolean`,
//! and everything else as its text form (`Utf8`).

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, RecordBatch, RecordBatchOptions,
    StringBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    ReplaceChildrenOptions,
};
use futures_util::{StreamExt, TryStreamExt};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, NoTls};

/// Rows per Arrow batch.
const BATCH_ROWS: usize = 8192;

/// A PostgreSQL error that means the statement ran out of time.
#[derive(Debug, thiserror::Error)]
#[error("PostgreSQL cancelled the scan at the statement timeout")]
pub(crate) struct SourceTimeout;

/// A PostgreSQL error that means the server went away (shut down,
/// crashed, the connection closed or refused): the dataset is unavailable,
/// not the query wrong.
#[derive(Debug, thiserror::Error)]
#[error("the PostgreSQL server went away: {0}")]
pub(crate) struct SourceUnavailable(String);

/// Whether `error` says the server, not the statement, failed.
fn server_gone(error: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    if error.is_closed() {
        return true;
    }
    match error.code() {
        Some(code) => {
            code.code().starts_with("08")
                || [
                    SqlState::ADMIN_SHUTDOWN,
                    SqlState::CRASH_SHUTDOWN,
                    SqlState::CANNOT_CONNECT_NOW,
                ]
                .contains(code)
        }
        // No server error: the connection itself failed (refused, reset).
        None => std::error::Error::source(error)
            .is_some_and(|s| s.downcast_ref::<std::io::Error>().is_some()),
    }
}

/// How one column is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int,
    Float,
    Bool,
    Text,
}

impl Kind {
    fn of(postgres_type: &str) -> Kind {
        match postgres_type {
            "smallint" | "integer" | "bigint" => Kind::Int,
            "real" | "double precision" | "numeric" => Kind::Float,
            "boolean" => Kind::Bool,
            _ => Kind::Text,
        }
    }

    fn arrow(self) -> DataType {
        match self {
            Kind::Int => DataType::Int64,
            Kind::Float => DataType::Float64,
            Kind::Bool => DataType::Boolean,
            Kind::Text => DataType::Utf8,
        }
    }
}

#[derive(Debug, Clone)]
struct PgColumn {
    name: String,
    kind: Kind,
}

impl PgColumn {
    /// The column as selected: cast to the type it is read as.
    fn selected(&self) -> String {
        let name = quote_ident(&self.name);
        match self.kind {
            Kind::Int => format!("{name}::int8"),
            Kind::Float => format!("{name}::float8"),
            Kind::Bool => name,
            Kind::Text => format!("{name}::text"),
        }
    }
}

/// Where and how to reach one table.
#[derive(Debug, Clone)]
struct Target {
    config: Config,
    /// `"schema"."table"`, quoted.
    table: String,
}

impl Target {
    async fn connect(&self) -> std::result::Result<Client, tokio_postgres::Error> {
        let (client, connection) = self.config.connect(NoTls).await?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "postgres connection ended");
            }
        });
        Ok(client)
    }
}

/// A PostgreSQL table.
#[derive(Debug)]
pub(crate) struct PostgresTable {
    target: Target,
    columns: Vec<PgColumn>,
    schema: SchemaRef,
}

impl PostgresTable {
    /// Connects once to read the table's columns. `table` is `name` or
    /// `schema.name`; without a schema, the role's `current_schema()`.
    pub async fn open(url: &str, table: &str, timeout: Duration) -> Result<PostgresTable> {
        let mut config: Config = url
            .parse()
            .map_err(|e| DataFusionError::Plan(format!("bad PostgreSQL url: {e}")))?;
        let millis = timeout.as_millis();
        config
            .connect_timeout(timeout)
            .application_name("sandlet")
            .options(format!(
                "-c default_transaction_read_only=on -c statement_timeout={millis}"
            ));
        let (schema_name, table_name) = match table.split_once('.') {
            Some((schema, name)) => (Some(schema.to_owned()), name.to_owned()),
            None => (None, table.to_owned()),
        };
        let probe = Target {
            config,
            table: String::new(),
        };
        let client = probe.connect().await.map_err(external)?;
        let schema_name = match schema_name {
            Some(schema) => schema,
            None => client
                .query_one("SELECT current_schema()", &[])
                .await
                .map_err(external)?
                .try_get::<_, String>(0)
                .map_err(external)?,
        };
        let rows = client
            .query(
                "SELECT column_name::text, data_type::text FROM information_schema.columns \
                 WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position",
                &[&schema_name, &table_name],
            )
            .await
            .map_err(external)?;
        if rows.is_empty() {
            return Err(DataFusionError::Plan(format!(
                "table {schema_name}.{table_name} does not exist or the role cannot see it"
            )));
        }
        let mut columns = Vec::with_capacity(rows.len());
        for row in rows {
            let name: String = row.try_get(0).map_err(external)?;
            let data_type: String = row.try_get(1).map_err(external)?;
            columns.push(PgColumn {
                name,
                kind: Kind::of(&data_type),
            });
        }
        let schema = Arc::new(Schema::new(
            columns
                .iter()
                .map(|c| Field::new(&c.name, c.kind.arrow(), true))
                .collect::<Vec<_>>(),
        ));
        Ok(PostgresTable {
            target: Target {
                table: format!("{}.{}", quote_ident(&schema_name), quote_ident(&table_name)),
                ..probe
            },
            columns,
            schema,
        })
    }

    fn column(&self, name: &str) -> Option<&PgColumn> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// The filter as a PostgreSQL condition that selects exactly the rows
    /// DataFusion would keep, if there is one.
    fn condition(&self, filter: &Expr, params: &mut Vec<String>) -> Option<String> {
        match filter {
            Expr::BinaryExpr(BinaryExpr { left, op, right }) if *op == Operator::And => {
                let mark = params.len();
                match (self.condition(left, params), self.condition(right, params)) {
                    (Some(l), Some(r)) => Some(format!("({l} AND {r})")),
                    _ => {
                        params.truncate(mark);
                        None
                    }
                }
            }
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                let (column, op, value) = match (left.as_ref(), right.as_ref()) {
                    (Expr::Column(c), Expr::Literal(v, _)) => (c, *op, v),
                    (Expr::Literal(v, _), Expr::Column(c)) => (c, op.swap()?, v),
                    _ => return None,
                };
                let column = self.column(&column.name)?;
                let sql_op = match op {
                    Operator::Eq => "=",
                    Operator::NotEq => "<>",
                    Operator::Lt => "<",
                    Operator::LtEq => "<=",
                    Operator::Gt => ">",
                    Operator::GtEq => ">=",
                    _ => return None,
                };
                let literal = literal(column.kind, value, op, params)?;
                let name = match column.kind {
                    // An integer column compares with an integer exactly as
                    // int8 would, and keeps its index.
                    Kind::Int | Kind::Bool => quote_ident(&column.name),
                    Kind::Float | Kind::Text => format!("({})", column.selected()),
                };
                Some(format!("{name} {sql_op} {literal}"))
            }
            Expr::IsNull(inner) | Expr::IsNotNull(inner) => {
                let Expr::Column(column) = inner.as_ref() else {
                    return None;
                };
                let column = self.column(&column.name)?;
                let test = if matches!(filter, Expr::IsNull(_)) {
                    "IS NULL"
                } else {
                    "IS NOT NULL"
                };
                Some(format!("{} {test}", quote_ident(&column.name)))
            }
            _ => None,
        }
    }
}

/// A literal PostgreSQL compares as DataFusion does, as SQL text (numbers
/// and booleans, written by Rust) or as a text parameter.
fn literal(
    kind: Kind,
    value: &ScalarValue,
    op: Operator,
    params: &mut Vec<String>,
) -> Option<String> {
    match (kind, value) {
        (Kind::Int, v) => integer(v).map(|i| i.to_string()),
        (Kind::Float, v) => {
            let x = match v {
                ScalarValue::Float64(Some(x)) => *x,
                ScalarValue::Float32(Some(x)) => f64::from(*x),
                other => integer(other)? as f64,
            };
            x.is_finite().then(|| format!("'{x:?}'::float8"))
        }
        (Kind::Bool, ScalarValue::Boolean(Some(b)))
            if matches!(op, Operator::Eq | Operator::NotEq) =>
        {
            Some(b.to_string())
        }
        // Text orders by collation in PostgreSQL and by bytes in
        // DataFusion: only equality is the same in both.
        (
            Kind::Text,
            ScalarValue::Utf8(Some(s))
            | ScalarValue::Utf8View(Some(s))
            | ScalarValue::LargeUtf8(Some(s)),
        ) if matches!(op, Operator::Eq | Operator::NotEq) => {
            params.push(s.clone());
            Some(format!("${}::text", params.len()))
        }
        _ => None,
    }
}

fn integer(value: &ScalarValue) -> Option<i64> {
    match value {
        ScalarValue::Int8(Some(i)) => Some((*i).into()),
        ScalarValue::Int16(Some(i)) => Some((*i).into()),
        ScalarValue::Int32(Some(i)) => Some((*i).into()),
        ScalarValue::Int64(Some(i)) => Some(*i),
        ScalarValue::UInt8(Some(i)) => Some((*i).into()),
        ScalarValue::UInt16(Some(i)) => Some((*i).into()),
        ScalarValue::UInt32(Some(i)) => Some((*i).into()),
        ScalarValue::UInt64(Some(i)) => i64::try_from(*i).ok(),
        _ => None,
    }
}

/// `"name"`, with embedded quotes doubled.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn external(error: tokio_postgres::Error) -> DataFusionError {
    if error.code() == Some(&tokio_postgres::error::SqlState::QUERY_CANCELED) {
        return DataFusionError::External(Box::new(SourceTimeout));
    }
    if server_gone(&error) {
        return DataFusionError::External(Box::new(SourceUnavailable(error.to_string())));
    }
    DataFusionError::External(Box::new(error))
}

#[async_trait::async_trait]
impl TableProvider for PostgresTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let indexes: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..self.columns.len()).collect(),
        };
        let columns: Vec<PgColumn> = indexes.iter().map(|&i| self.columns[i].clone()).collect();
        let schema = Arc::new(self.schema.project(&indexes)?);
        let mut sql = String::from("SELECT ");
        if columns.is_empty() {
            sql.push_str("NULL");
        } else {
            let list: Vec<String> = columns.iter().map(PgColumn::selected).collect();
            sql.push_str(&list.join(", "));
        }
        let _ = write!(sql, " FROM {}", self.target.table);
        let mut params = Vec::new();
        let conditions: Vec<String> = filters
            .iter()
            .filter_map(|f| self.condition(f, &mut params))
            .collect();
        if !conditions.is_empty() {
            let _ = write!(sql, " WHERE {}", conditions.join(" AND "));
        }
        if let Some(limit) = limit {
            let _ = write!(sql, " LIMIT {limit}");
        }
        Ok(Arc::new(PostgresScanExec::new(
            self.target.clone(),
            sql,
            params,
            columns,
            schema,
        )))
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| {
                if self.condition(f, &mut Vec::new()).is_some() {
                    TableProviderFilterPushDown::Inexact
                } else {
                    TableProviderFilterPushDown::Unsupported
                }
            })
            .collect())
    }
}

/// One `SELECT` against PostgreSQL, streamed as Arrow batches.
#[derive(Debug)]
struct PostgresScanExec {
    target: Target,
    sql: String,
    params: Vec<String>,
    columns: Vec<PgColumn>,
    properties: Arc<PlanProperties>,
}

impl PostgresScanExec {
    fn new(
        target: Target,
        sql: String,
        params: Vec<String>,
        columns: Vec<PgColumn>,
        schema: SchemaRef,
    ) -> Self {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        PostgresScanExec {
            target,
            sql,
            params,
            columns,
            properties: Arc::new(properties),
        }
    }
}

impl DisplayAs for PostgresScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "PostgresScanExec: {}", self.sql)
    }
}

impl ExecutionPlan for PostgresScanExec {
    fn name(&self) -> &str {
        "PostgresScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if !children.is_empty() {
            return Err(DataFusionError::Internal(
                "PostgresScanExec has no inputs".to_owned(),
            ));
        }
        Ok(self)
    }

    #[allow(deprecated)]
    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.replace_children(
            children,
            ReplaceChildrenOptions::new(
                datafusion::physical_plan::ChildrenPropertiesMode::Recompute,
            ),
        )
    }

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return Err(DataFusionError::Internal(format!(
                "PostgresScanExec has one partition, not {partition}"
            )));
        }
        let schema = self.schema();
        let target = self.target.clone();
        let sql = self.sql.clone();
        let params = self.params.clone();
        let columns = self.columns.clone();
        let batch_schema = Arc::clone(&schema);
        let rows = async move {
            let client = target.connect().await.map_err(external)?;
            client
                .batch_execute("START TRANSACTION READ ONLY")
                .await
                .map_err(external)?;
            let params: Vec<&(dyn ToSql + Sync)> =
                params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
            let rows = client
                .query_raw(sql.as_str(), params)
                .await
                .map_err(external)?;
            // The client lives as long as the rows are read.
            let rows = rows.map(move |row| {
                let _held = &client;
                row.map_err(external)
            });
            Ok::<_, DataFusionError>(rows.try_chunks(BATCH_ROWS).map(move |chunk| {
                let chunk = chunk.map_err(|e| e.1)?;
                to_batch(&batch_schema, &columns, &chunk)
            }))
        };
        let stream = futures_util::stream::once(rows).try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }
}

fn to_batch(
    schema: &SchemaRef,
    columns: &[PgColumn],
    rows: &[tokio_postgres::Row],
) -> Result<RecordBatch> {
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(columns.len());
    for (i, column) in columns.iter().enumerate() {
        let array: ArrayRef = match column.kind {
            Kind::Int => {
                let mut b = Int64Builder::with_capacity(rows.len());
                for row in rows {
                    b.append_option(row.try_get::<_, Option<i64>>(i).map_err(external)?);
                }
                Arc::new(b.finish())
            }
            Kind::Float => {
                let mut b = Float64Builder::with_capacity(rows.len());
                for row in rows {
                    b.append_option(row.try_get::<_, Option<f64>>(i).map_err(external)?);
                }
                Arc::new(b.finish())
            }
            Kind::Bool => {
                let mut b = BooleanBuilder::with_capacity(rows.len());
                for row in rows {
                    b.append_option(row.try_get::<_, Option<bool>>(i).map_err(external)?);
                }
                Arc::new(b.finish())
            }
            Kind::Text => {
                let mut b = StringBuilder::new();
                for row in rows {
                    b.append_option(row.try_get::<_, Option<&str>>(i).map_err(external)?);
                }
                Arc::new(b.finish())
            }
        };
        arrays.push(array);
    }
    let options = RecordBatchOptions::new().with_row_count(Some(rows.len()));
    Ok(RecordBatch::try_new_with_options(
        Arc::clone(schema),
        arrays,
        &options,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::logical_expr::{col, lit};

    fn table() -> PostgresTable {
        let columns = vec![
            PgColumn {
                name: "age".into(),
                kind: Kind::Int,
            },
            PgColumn {
                name: "bmi".into(),
                kind: Kind::Float,
            },
            PgColumn {
                name: "sex".into(),
                kind: Kind::Text,
            },
            PgColumn {
                name: "odd\"name".into(),
                kind: Kind::Bool,
            },
        ];
        PostgresTable {
            target: Target {
                config: Config::new(),
                table: "\"public\".\"t\"".into(),
            },
            schema: Arc::new(Schema::empty()),
            columns,
        }
    }

    #[test]
    fn exact_filters_become_conditions_and_the_rest_stay_in_datafusion() {
        let t = table();
        let mut params = Vec::new();
        assert_eq!(
            t.condition(&col("age").gt(lit(40i64)), &mut params)
                .as_deref(),
            Some("\"age\" > 40")
        );
        assert_eq!(
            t.condition(&lit(40i64).lt_eq(col("age")), &mut params)
                .as_deref(),
            Some("\"age\" >= 40")
        );
        assert_eq!(
            t.condition(&col("bmi").lt(lit(25.5f64)), &mut params)
                .as_deref(),
            Some("(\"bmi\"::float8) < '25.5'::float8")
        );
        assert_eq!(
            t.condition(&col("sex").eq(lit("f'; DROP TABLE t; --")), &mut params)
                .as_deref(),
            Some("(\"sex\"::text) = $1::text")
        );
        assert_eq!(params, ["f'; DROP TABLE t; --"]);
        // Text ranges order differently; LIKE and functions are not pushed.
        assert_eq!(t.condition(&col("sex").gt(lit("f")), &mut params), None);
        assert_eq!(t.condition(&col("sex").like(lit("f%")), &mut params), None);
        assert_eq!(
            t.condition(&col("bmi").lt(lit(f64::NAN)), &mut params),
            None
        );
        assert_eq!(
            t.condition(&col("odd\"name").eq(lit(true)), &mut params)
                .as_deref(),
            Some("\"odd\"\"name\" = true")
        );
        // Half of an AND is not enough.
        let mut params = Vec::new();
        assert_eq!(
            t.condition(
                &col("sex").eq(lit("m")).and(col("sex").gt(lit("a"))),
                &mut params
            ),
            None
        );
        assert!(params.is_empty());
    }
}
