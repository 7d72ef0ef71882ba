//! The datasets of the station file (docs/reference/station-file.md), validated.
//!
//! This is the second of two configuration stages for datasets: the station
//! file (`sandlet-kubelet`'s `station` module) reads the YAML into
//! [`DatasetSpec`]s, with file and line in its errors, and
//! [`DataConfig::from_specs`] turns them into a validated [`DataConfig`],
//! refusing anything unclear with the dataset and reason. It opens no data
//! file and connects to no database; [`super::GrantedDatasets`] does that
//! for each run.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use sandlet_core::quantity::{parse_memory_limit, parse_timeout};
use sandlet_privacy::{PrivacyPolicy, PrivacySpec};

/// Default `minGroupSize`: DataSHIELD and vantage6 both use thresholds of
/// 3 to 5; we take the stricter end.
pub const DEFAULT_MIN_GROUP_SIZE: u64 = 5;
/// Default `minRows`: vantage6's GLM minimum, the strictest of its defaults.
pub const DEFAULT_MIN_ROWS: u64 = 10;
/// Default `maxResultRows`: enough for any crosstab a person reads, small
/// enough that a result cannot become a copy of the dataset.
pub const DEFAULT_MAX_RESULT_ROWS: u64 = 1000;

/// A station's datasets, validated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DataConfig {
    /// Every dataset of the station, in the order the file lists them.
    pub datasets: Vec<DatasetConfig>,
    /// Datasets granted to pods of a namespace that ask for none
    /// themselves, by namespace (the station file's `defaultGrants`). Each
    /// dataset named allows its namespace; a pod that names datasets gets
    /// those and not these.
    pub default_grants: std::collections::BTreeMap<String, Vec<String>>,
}

/// One dataset, with its source resolved to absolute paths.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetConfig {
    /// The table name guests use; a lowercase SQL identifier.
    pub name: String,
    /// Where its rows are read from.
    pub source: SourceConfig,
    /// The rules every query of it is held to.
    pub policy: DisclosurePolicy,
}

/// Where a dataset's rows come from.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceConfig {
    /// A CSV file with a header line (`csv: PATH`).
    Csv(PathBuf),
    /// A Parquet file (`parquet: PATH`).
    Parquet(PathBuf),
    /// A PostgreSQL table, read in a read-only transaction.
    Postgres {
        /// The connection URL (`postgres://user:password@host:port/db`).
        url: String,
        /// The table, optionally schema-qualified (`lab.results`).
        table: String,
    },
}

/// The disclosure-control rules of one dataset. Omitted fields take the
/// strict defaults.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct DisclosurePolicy {
    /// Each aggregate output row must summarise at least this many rows.
    pub min_group_size: u64,
    /// The rows an aggregate reads (after WHERE) must be at least this many.
    pub min_rows: u64,
    /// No query may return row-level values.
    pub aggregates_only: bool,
    /// Columns the guest may see; `None` means all.
    pub allowed_columns: Option<Vec<String>>,
    /// A query whose answer has more rows than this is refused.
    pub max_result_rows: u64,
    /// WASI commands see the file read-only under `/data/<name>/`.
    pub raw_files: bool,
    /// Namespaces whose pods may be granted this dataset; `None` means all.
    pub allowed_namespaces: Option<Vec<String>>,
    /// How long one query may run (`30s`); also PostgreSQL's
    /// `statement_timeout`.
    #[serde(deserialize_with = "timeout_text")]
    pub query_timeout: Duration,
    /// How much memory one query's operators may hold (`256Mi`).
    #[serde(deserialize_with = "memory_text")]
    pub query_memory: u64,
    /// Differential privacy: with it, the dataset answers only noisy
    /// aggregates, each charged to a per-namespace budget (README,
    /// "Differential privacy"). Written under `policy:` or beside it.
    #[serde(deserialize_with = "privacy_spec")]
    pub privacy: Option<PrivacyPolicy>,
}

fn privacy_spec<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<PrivacyPolicy>, D::Error> {
    let spec = PrivacySpec::deserialize(d)?;
    PrivacyPolicy::try_from(spec)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

/// Default `queryTimeout`: a grouped mean over ten million rows takes a few
/// seconds; anything near this is a mistake or an attack.
pub const DEFAULT_QUERY_TIMEOUT: Duration = Duration::from_secs(30);
/// Default `queryMemory`.
pub const DEFAULT_QUERY_MEMORY: u64 = 256 * 1024 * 1024;

fn timeout_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    parse_timeout(&text).map_err(serde::de::Error::custom)
}

fn memory_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let text = String::deserialize(d)?;
    parse_memory_limit(&text).map_err(serde::de::Error::custom)
}

impl Default for DisclosurePolicy {
    fn default() -> Self {
        DisclosurePolicy {
            min_group_size: DEFAULT_MIN_GROUP_SIZE,
            min_rows: DEFAULT_MIN_ROWS,
            aggregates_only: true,
            allowed_columns: None,
            max_result_rows: DEFAULT_MAX_RESULT_ROWS,
            raw_files: false,
            allowed_namespaces: None,
            query_timeout: DEFAULT_QUERY_TIMEOUT,
            query_memory: DEFAULT_QUERY_MEMORY,
            privacy: None,
        }
    }
}

impl DisclosurePolicy {
    /// Whether pods of `namespace` may be granted the dataset.
    pub fn allows_namespace(&self, namespace: &str) -> bool {
        self.allowed_namespaces
            .as_ref()
            .is_none_or(|allowed| allowed.iter().any(|n| n == namespace))
    }
}

/// One dataset as the station file writes it, before validation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetSpec {
    name: String,
    source: RawSource,
    #[serde(default)]
    policy: DisclosurePolicy,
    #[serde(default, deserialize_with = "privacy_spec")]
    privacy: Option<PrivacyPolicy>,
}

/// `{ csv: PATH }`, `{ parquet: PATH }` or `{ postgres: { url, table } }`:
/// one key naming the source type. (A struct, because serde_yaml reads
/// enums only from YAML tags.)
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    csv: Option<PathBuf>,
    parquet: Option<PathBuf>,
    postgres: Option<RawPostgres>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPostgres {
    url: String,
    table: String,
}

/// A dataset that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("dataset {name:?}: {reason}")]
pub struct DatasetError {
    /// The dataset's name as the file writes it.
    pub name: String,
    /// What is wrong with it.
    pub reason: String,
}

impl DataConfig {
    /// Validates the datasets of a station file; relative data paths are
    /// taken relative to `base`, the file's own directory.
    pub fn from_specs(specs: Vec<DatasetSpec>, base: &Path) -> Result<DataConfig, DatasetError> {
        let mut seen = HashSet::new();
        let mut datasets = Vec::with_capacity(specs.len());
        for mut dataset in specs {
            let invalid = |reason: String| DatasetError {
                name: dataset.name.clone(),
                reason,
            };
            if !is_identifier(&dataset.name) {
                return Err(invalid(
                    "a dataset name must be a lowercase SQL identifier (a-z, 0-9 and _, starting with a letter)"
                        .to_owned(),
                ));
            }
            if !seen.insert(dataset.name.clone()) {
                return Err(invalid("the name is used twice".to_owned()));
            }
            if let Some(columns) = &dataset.policy.allowed_columns
                && columns.is_empty()
            {
                return Err(invalid(
                    "allowedColumns is empty: omit it to allow all columns".to_owned(),
                ));
            }
            if dataset.policy.max_result_rows == 0 {
                return Err(invalid("maxResultRows must be at least 1".to_owned()));
            }
            if let Some(privacy) = dataset.privacy.take() {
                if dataset.policy.privacy.is_some() {
                    return Err(invalid(
                        "privacy is given twice, beside policy and in it: keep one".to_owned(),
                    ));
                }
                dataset.policy.privacy = Some(privacy);
            }
            if let Some(privacy) = &dataset.policy.privacy {
                if dataset.policy.raw_files {
                    return Err(invalid(
                        "rawFiles would hand out every row that privacy protects: a dataset \
                         with privacy cannot have rawFiles"
                            .to_owned(),
                    ));
                }
                if let Some(allowed) = &dataset.policy.allowed_columns
                    && let Some(column) = privacy.bounds.keys().find(|c| !allowed.contains(c))
                {
                    return Err(invalid(format!(
                        "privacy.bounds names column {column:?}, which allowedColumns does not allow"
                    )));
                }
            }
            let source = match dataset.source {
                RawSource {
                    csv: Some(file),
                    parquet: None,
                    postgres: None,
                } => SourceConfig::Csv(resolve(base, &file)),
                RawSource {
                    csv: None,
                    parquet: Some(file),
                    postgres: None,
                } => SourceConfig::Parquet(resolve(base, &file)),
                RawSource {
                    csv: None,
                    parquet: None,
                    postgres: Some(RawPostgres { url, table }),
                } => {
                    if table.is_empty() || url.is_empty() {
                        return Err(invalid("postgres needs both url and table".to_owned()));
                    }
                    if dataset.policy.raw_files {
                        return Err(invalid(
                            "rawFiles needs a csv or parquet source: a PostgreSQL table has no files"
                                .to_owned(),
                        ));
                    }
                    SourceConfig::Postgres { url, table }
                }
                _ => {
                    return Err(invalid(
                        "source must name exactly one of csv, parquet or postgres".to_owned(),
                    ));
                }
            };
            datasets.push(DatasetConfig {
                name: dataset.name,
                source,
                policy: dataset.policy,
            });
        }
        Ok(DataConfig {
            datasets,
            default_grants: Default::default(),
        })
    }

    /// The dataset called `name`, if the station has one.
    pub fn dataset(&self, name: &str) -> Option<&DatasetConfig> {
        self.datasets.iter().find(|d| d.name == name)
    }

    /// Grants `datasets` by default to pods of `namespace` that ask for
    /// none. Refused when the namespace has a default grant already, or a
    /// dataset is unknown or does not allow the namespace: a default can
    /// never reach further than `allowedNamespaces`.
    pub fn grant_by_default(
        &mut self,
        namespace: &str,
        datasets: Vec<String>,
    ) -> Result<(), String> {
        if self.default_grants.contains_key(namespace) {
            return Err(format!(
                "defaultGrants: namespace {namespace:?} is listed twice"
            ));
        }
        if datasets.is_empty() {
            return Err(format!(
                "defaultGrants: namespace {namespace:?} is granted no dataset"
            ));
        }
        for name in &datasets {
            let Some(dataset) = self.dataset(name) else {
                return Err(format!(
                    "defaultGrants: namespace {namespace:?} is granted dataset {name:?}, which this station does not have"
                ));
            };
            if !dataset.policy.allows_namespace(namespace) {
                return Err(format!(
                    "defaultGrants: namespace {namespace:?} is granted dataset {name:?}, whose allowedNamespaces does not include it"
                ));
            }
        }
        let mut unique: Vec<String> = Vec::with_capacity(datasets.len());
        for name in datasets {
            if !unique.contains(&name) {
                unique.push(name);
            }
        }
        self.default_grants.insert(namespace.to_owned(), unique);
        Ok(())
    }

    /// The datasets granted by default to pods of `namespace`.
    pub fn default_grant(&self, namespace: &str) -> &[String] {
        self.default_grants
            .get(namespace)
            .map_or(&[], |d| d.as_slice())
    }
}

fn resolve(base: &Path, file: &Path) -> PathBuf {
    if file.is_absolute() {
        file.to_owned()
    } else {
        base.join(file)
    }
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z'))
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
}
