//! Granted datasets as DataFusion tables that show only their allowed
//! columns.
//!
//! [`DatasetTable`] is the only kind of table a guest's query can name. It
//! wraps the source's own table provider (a CSV or Parquet listing table, or
//! a PostgreSQL table) and exposes a schema with only the dataset's
//! `allowedColumns`: a hidden column does not exist for the planner, so no
//! spelling of it (quoting, case, aliases, `*`, subqueries, joins) can reach
//! it. The policy checker recognises datasets in a plan by this type.

use std::sync::Arc;

use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::datasource::file_format::csv::CsvFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;

use super::files::{DatasetFiles, SCHEME};
use super::postgres::PostgresTable;
use super::{DatasetConfig, SourceConfig};
use datafusion::execution::object_store::ObjectStoreUrl;

/// One granted dataset, as the guest's SQL sees it.
#[derive(Debug)]
pub(crate) struct DatasetTable {
    /// Position in the run's grant list; the policy checker's name for it.
    pub index: usize,
    pub config: Arc<DatasetConfig>,
    /// `None` when the source could not be opened.
    inner: Option<Arc<dyn TableProvider>>,
    /// For each visible column, its index in `inner`'s schema.
    visible: Vec<usize>,
    schema: SchemaRef,
}

impl DatasetTable {
    /// Opens the dataset's source and narrows it to the allowed columns. An
    /// allowed column that the source lacks is the data admin's error.
    pub async fn open(
        state: &dyn Session,
        config: Arc<DatasetConfig>,
        index: usize,
    ) -> Result<DatasetTable> {
        let inner: Arc<dyn TableProvider> = match &config.source {
            SourceConfig::Csv(path) => {
                let format = CsvFormat::default().with_has_header(true);
                listing_table(state, &config.name, path, Arc::new(format), ".csv").await?
            }
            SourceConfig::Parquet(path) => {
                let format = ParquetFormat::default();
                listing_table(state, &config.name, path, Arc::new(format), ".parquet").await?
            }
            SourceConfig::Postgres { url, table } => {
                Arc::new(PostgresTable::open(url, table, config.policy.query_timeout).await?)
            }
        };
        Self::over(inner, config, index)
    }

    /// Wraps an opened source.
    pub fn over(
        inner: Arc<dyn TableProvider>,
        config: Arc<DatasetConfig>,
        index: usize,
    ) -> Result<DatasetTable> {
        let full = inner.schema();
        let visible: Vec<usize> = match &config.policy.allowed_columns {
            None => (0..full.fields().len()).collect(),
            Some(allowed) => {
                for name in allowed {
                    if full.index_of(name).is_err() {
                        return Err(DataFusionError::Plan(format!(
                            "allowedColumns names {name:?}, which the source does not have"
                        )));
                    }
                }
                // Source order, so that `SELECT *` reads like the file.
                (0..full.fields().len())
                    .filter(|&i| allowed.iter().any(|a| a == full.field(i).name()))
                    .collect()
            }
        };
        let schema = Arc::new(full.project(&visible)?);
        Ok(DatasetTable {
            index,
            config,
            inner: Some(inner),
            visible,
            schema,
        })
    }

    /// A granted dataset whose source could not be opened: it has no
    /// columns, and a query that reads it is told it is unavailable.
    pub fn unavailable(config: Arc<DatasetConfig>, index: usize) -> DatasetTable {
        DatasetTable {
            index,
            config,
            inner: None,
            visible: Vec::new(),
            schema: Arc::new(Schema::empty()),
        }
    }

    /// Why queries cannot read this dataset, if they cannot.
    pub fn unavailable_reason(&self) -> Option<String> {
        self.inner.is_none().then(|| {
            format!(
                "dataset {} is unavailable on this station: its source cannot be read \
                 (the station's log has the details)",
                self.config.name
            )
        })
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The columns the guest can see.
    pub fn visible_schema(&self) -> &Schema {
        &self.schema
    }
}

/// A listing table over the dataset's files, read through its own
/// cap-std store. A single file is read whatever its name; a directory's
/// files are those with the format's extension.
async fn listing_table(
    state: &dyn Session,
    name: &str,
    path: &std::path::Path,
    format: Arc<dyn datafusion::datasource::file_format::FileFormat>,
    extension: &str,
) -> Result<Arc<dyn TableProvider>> {
    let (store, url) = DatasetFiles::open(name, path)
        .map_err(|e| DataFusionError::Plan(format!("cannot open {}: {e}", path.display())))?;
    let base = ObjectStoreUrl::parse(format!("{SCHEME}://{name}"))?;
    state
        .runtime_env()
        .register_object_store(base.as_ref(), Arc::new(store));
    let extension = if path.is_dir() { extension } else { "" };
    let url = ListingTableUrl::parse(url)?;
    let options = ListingOptions::new(format).with_file_extension(extension);
    let config = ListingTableConfig::new(url)
        .with_listing_options(options)
        .infer_schema(state)
        .await?;
    Ok(Arc::new(ListingTable::try_new(config)?))
}

#[async_trait::async_trait]
impl TableProvider for DatasetTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        // Indexes into our schema become indexes into the source's; filters
        // name columns, which are spelt the same in both.
        let projection: Vec<usize> = match projection {
            Some(columns) => columns.iter().map(|&i| self.visible[i]).collect(),
            None => self.visible.clone(),
        };
        match &self.inner {
            Some(inner) => inner.scan(state, Some(&projection), filters, limit).await,
            None => Err(DataFusionError::Plan(
                self.unavailable_reason().unwrap_or_default(),
            )),
        }
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        match &self.inner {
            Some(inner) => inner.supports_filters_pushdown(filters),
            None => Ok(vec![
                TableProviderFilterPushDown::Unsupported;
                filters.len()
            ]),
        }
    }
}
