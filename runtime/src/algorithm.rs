//! Host side of the `sandlet:algorithm` WIT world (`wit/algorithm.wit`).
//!
//! Owns the generated bindings and the `data` interface's host functions,
//! which forward to the run's [`DataAccess`](sandlet_core::data::DataAccess) and
//! convert between its types and the WIT types. No policy is decided here.

use crate::sandbox::ComponentState;
use sandlet_core::data;

wasmtime::component::bindgen!({
    path: "../wit",
    world: "sandlet:algorithm/algorithm",
    imports: { default: async },
    exports: { default: async },
});

pub(crate) use self::sandlet::algorithm::data::{
    ColumnInfo, DatasetInfo, Error as QueryError, Table, Value,
};

impl sandlet::algorithm::data::Host for ComponentState {
    async fn datasets(&mut self) -> Vec<DatasetInfo> {
        match self.data.datasets().await {
            Ok(infos) => infos.into_iter().map(Into::into).collect(),
            // The WIT signature has no error case: a dataset that cannot be
            // opened is left out, and its queries report why.
            Err(error) => {
                tracing::warn!(%error, "listing datasets failed");
                Vec::new()
            }
        }
    }

    async fn query(&mut self, sql: String) -> Result<Table, QueryError> {
        self.data
            .query(&sql)
            .await
            .map(Into::into)
            .map_err(Into::into)
    }
}

impl From<data::DatasetInfo> for DatasetInfo {
    fn from(info: data::DatasetInfo) -> Self {
        DatasetInfo {
            name: info.name,
            columns: info
                .columns
                .into_iter()
                .map(|c| ColumnInfo {
                    name: c.name,
                    data_type: c.data_type,
                })
                .collect(),
        }
    }
}

impl From<data::Value> for Value {
    fn from(value: data::Value) -> Self {
        match value {
            data::Value::Null => Value::Null,
            data::Value::Boolean(b) => Value::Boolean(b),
            data::Value::Int(i) => Value::Int(i),
            data::Value::Float(x) => Value::Float(x),
            data::Value::Text(s) => Value::Text(s),
        }
    }
}

impl From<data::Table> for Table {
    fn from(table: data::Table) -> Self {
        Table {
            columns: table.columns,
            rows: table
                .rows
                .into_iter()
                .map(|row| row.into_iter().map(Into::into).collect())
                .collect(),
        }
    }
}

impl From<data::QueryError> for QueryError {
    fn from(error: data::QueryError) -> Self {
        match error {
            data::QueryError::NotGranted(m) => QueryError::NotGranted(m),
            data::QueryError::Denied(m) => QueryError::Denied(m),
            data::QueryError::Invalid(m) => QueryError::Invalid(m),
            data::QueryError::LimitExceeded(m) => QueryError::LimitExceeded(m),
        }
    }
}
