//! Host side of the `sandlet:algorithm` WIT world (`wit/0.1.0/algorithm.wit`).
//!
//! Owns the generated bindings and the `data` interface's host functions,
//! which forward to the run's [`DataAccess`](sandlet_core::data::DataAccess) and
//! convert between its types and the WIT types. No policy is decided here.

use crate::sandbox::ComponentState;
use sandlet_core::data;

wasmtime::component::bindgen!({
    path: "../wit/0.1.0",
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

/// `sandlet:algorithm@0.2.0` (`wit/0.2.0/algorithm.wit`): the same data
/// interface with differential privacy's budget and noise added. A
/// component imports one version or the other; the linker offers both.
pub(crate) mod v0_2 {
    use crate::sandbox::ComponentState;
    use sandlet_core::data;

    wasmtime::component::bindgen!({
        path: "../wit/0.2.0",
        world: "sandlet:algorithm/algorithm@0.2.0",
        imports: { default: async },
        exports: { default: async },
    });

    use self::sandlet::algorithm::data::{
        Budget, ColumnInfo, ColumnNoise, DatasetInfo, Error as QueryError, Noise, PrivateTable,
        Table, Value,
    };

    impl sandlet::algorithm::data::Host for ComponentState {
        async fn datasets(&mut self) -> Vec<DatasetInfo> {
            match self.data.datasets().await {
                Ok(infos) => infos.into_iter().map(dataset_info).collect(),
                Err(error) => {
                    tracing::warn!(%error, "listing datasets failed");
                    Vec::new()
                }
            }
        }

        async fn query(&mut self, sql: String) -> Result<Table, QueryError> {
            self.data.query(&sql).await.map(table).map_err(error)
        }

        async fn privacy_budget(&mut self, dataset: String) -> Option<Budget> {
            match self.data.budget(&dataset).await {
                Ok(budget) => budget.map(|b| Budget {
                    total: b.total,
                    spent: b.spent,
                    left: b.left,
                    per_query: b.per_query,
                    delta: b.delta,
                }),
                // No error case in the signature: the guest's next query
                // reports what is wrong.
                Err(error) => {
                    tracing::warn!(%error, "reading a privacy budget failed");
                    None
                }
            }
        }

        async fn query_private(
            &mut self,
            sql: String,
            epsilon: Option<f64>,
        ) -> Result<PrivateTable, QueryError> {
            let (result, noise) = self
                .data
                .query_private(&sql, epsilon)
                .await
                .map_err(error)?;
            Ok(PrivateTable {
                table: table(result),
                noise: noise.map(|n| Noise {
                    epsilon: n.epsilon,
                    delta: n.delta,
                    threshold: n.threshold,
                    columns: n
                        .columns
                        .into_iter()
                        .map(|c| ColumnNoise {
                            column: c.column,
                            statistic: c.statistic,
                            count_accuracy: c.count_accuracy,
                            sum_accuracy: c.sum_accuracy,
                        })
                        .collect(),
                }),
            })
        }
    }

    fn dataset_info(info: data::DatasetInfo) -> DatasetInfo {
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

    fn value(value: data::Value) -> Value {
        match value {
            data::Value::Null => Value::Null,
            data::Value::Boolean(b) => Value::Boolean(b),
            data::Value::Int(i) => Value::Int(i),
            data::Value::Float(x) => Value::Float(x),
            data::Value::Text(s) => Value::Text(s),
        }
    }

    fn table(table: data::Table) -> Table {
        Table {
            columns: table.columns,
            rows: table
                .rows
                .into_iter()
                .map(|row| row.into_iter().map(value).collect())
                .collect(),
        }
    }

    fn error(error: data::QueryError) -> QueryError {
        match error {
            data::QueryError::NotGranted(m) => QueryError::NotGranted(m),
            data::QueryError::Denied(m) => QueryError::Denied(m),
            data::QueryError::Invalid(m) => QueryError::Invalid(m),
            data::QueryError::LimitExceeded(m) => QueryError::LimitExceeded(m),
        }
    }
}
