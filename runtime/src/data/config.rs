//! The datasets-and-policies file (CONTRACT.md section 4): parsing and
//! validation.
//!
//! This is the first of two configuration stages: it turns what the data
//! admin wrote into a validated [`DataConfig`], refusing anything unclear
//! with the file, line and reason. It opens no data file and connects to no
//! database; [`super::GrantedDatasets`] does that for each run.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::admission::{AllowList, AllowRule};
use crate::limits::{parse_memory_limit, parse_timeout};

/// Default `minGroupSize`: DataSHIELD and vantage6 both use thresholds of
/// 3 to 5; we take the stricter end.
pub const DEFAULT_MIN_GROUP_SIZE: u64 = 5;
/// Default `minRows`: vantage6's GLM minimum, the strictest of its defaults.
pub const DEFAULT_MIN_ROWS: u64 = 10;
/// Default `maxResultRows`: enough for any crosstab a person reads, small
/// enough that a result cannot become a copy of the dataset.
pub const DEFAULT_MAX_RESULT_ROWS: u64 = 1000;

/// A validated station configuration file: its datasets and, under
/// `modules.allow`, the allow-list of modules that may run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DataConfig {
    pub datasets: Vec<DatasetConfig>,
    pub modules: AllowList,
}

/// One dataset, with its source resolved to absolute paths.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetConfig {
    /// The table name guests use; a lowercase SQL identifier.
    pub name: String,
    pub source: SourceConfig,
    pub policy: DisclosurePolicy,
}

/// Where a dataset's rows come from.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceConfig {
    Csv(PathBuf),
    Parquet(PathBuf),
    Postgres { url: String, table: String },
}

/// The disclosure-control rules of one dataset. Omitted fields take the
/// strict defaults.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
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

/// The file as written, before validation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    datasets: Vec<RawDataset>,
    #[serde(default)]
    modules: Option<RawModules>,
}

/// `modules: { allow: [ { repository: ..., digests: [...] } ] }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModules {
    allow: Vec<AllowRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDataset {
    name: String,
    source: RawSource,
    #[serde(default)]
    policy: DisclosurePolicy,
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

/// A configuration that cannot be used. The message names the file and,
/// where the parser knows it, the line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {}", path.display(), Located(location, message))]
    Syntax {
        path: PathBuf,
        /// Line and column, 1-based.
        location: Option<(usize, usize)>,
        message: String,
    },
    #[error("{}: dataset {name:?}: {reason}", path.display())]
    Dataset {
        path: PathBuf,
        name: String,
        reason: String,
    },
}

struct Located<'a>(&'a Option<(usize, usize)>, &'a String);

impl std::fmt::Display for Located<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some((line, column)) => write!(f, "line {line}, column {column}: {}", self.1),
            None => f.write_str(self.1),
        }
    }
}

impl DataConfig {
    /// Reads and validates a configuration file. Relative data paths are
    /// taken relative to the file's own directory.
    pub fn load(path: &Path) -> Result<DataConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, path, base)
    }

    /// Parses configuration text; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path, base: &Path) -> Result<DataConfig, ConfigError> {
        let raw: RawConfig = serde_yaml::from_str(text).map_err(|e| {
            let location = e.location().map(|l| (l.line(), l.column()));
            let mut message = e.to_string();
            // serde_yaml appends " at line L column C"; we print it in front.
            if let Some(at) = message.find(" at line ") {
                message.truncate(at);
            }
            ConfigError::Syntax {
                path: path.to_owned(),
                location,
                message,
            }
        })?;
        let mut seen = HashSet::new();
        let mut datasets = Vec::with_capacity(raw.datasets.len());
        for dataset in raw.datasets {
            let invalid = |reason: String| ConfigError::Dataset {
                path: path.to_owned(),
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
        let modules = match raw.modules {
            None => AllowList::allow_all(),
            Some(modules) => AllowList::new(modules.allow).map_err(|e| ConfigError::Syntax {
                path: path.to_owned(),
                location: None,
                message: e.to_string(),
            })?,
        };
        Ok(DataConfig { datasets, modules })
    }

    pub fn dataset(&self, name: &str) -> Option<&DatasetConfig> {
        self.datasets.iter().find(|d| d.name == name)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<DataConfig, ConfigError> {
        DataConfig::parse(text, Path::new("/etc/sandlet/data.yaml"), Path::new("/srv"))
    }

    #[test]
    fn omitted_policy_fields_take_the_strict_defaults() {
        let config =
            parse("datasets:\n  - name: patients\n    source: { csv: data/p.csv }\n").unwrap();
        let dataset = &config.datasets[0];
        assert_eq!(
            dataset.source,
            SourceConfig::Csv(PathBuf::from("/srv/data/p.csv"))
        );
        assert_eq!(dataset.policy, DisclosurePolicy::default());
        assert!(dataset.policy.aggregates_only);
        assert_eq!(dataset.policy.min_group_size, 5);
        assert_eq!(dataset.policy.min_rows, 10);
        assert_eq!(dataset.policy.max_result_rows, 1000);
        assert!(dataset.policy.allows_namespace("anything"));
    }

    #[test]
    fn every_contract_field_is_read() {
        let config = parse(
            r#"
datasets:
  - name: patients
    source: { parquet: /data/p.parquet }
    policy:
      minGroupSize: 3
      minRows: 4
      aggregatesOnly: false
      allowedColumns: [age, sex]
      maxResultRows: 7
      rawFiles: true
      allowedNamespaces: [research]
      queryTimeout: 5s
      queryMemory: 64Mi
  - name: labs
    source: { postgres: { url: "postgres://reader@localhost/db", table: labs } }
"#,
        )
        .unwrap();
        let policy = &config.datasets[0].policy;
        assert_eq!(
            policy,
            &DisclosurePolicy {
                min_group_size: 3,
                min_rows: 4,
                aggregates_only: false,
                allowed_columns: Some(vec!["age".into(), "sex".into()]),
                max_result_rows: 7,
                raw_files: true,
                allowed_namespaces: Some(vec!["research".into()]),
                query_timeout: Duration::from_secs(5),
                query_memory: 64 << 20,
            }
        );
        assert!(!policy.allows_namespace("default"));
        assert_eq!(
            config.dataset("labs").unwrap().source,
            SourceConfig::Postgres {
                url: "postgres://reader@localhost/db".into(),
                table: "labs".into()
            }
        );
    }

    #[test]
    fn unknown_source_type_names_file_line_and_reason() {
        let err = parse("datasets:\n  - name: p\n    source: { excel: /x.xlsx }\n").unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("/etc/sandlet/data.yaml: line 3"), "{text}");
        assert!(
            text.contains("unknown field `excel`, expected one of `csv`, `parquet`, `postgres`"),
            "{text}"
        );
    }

    #[test]
    fn a_source_must_name_exactly_one_type() {
        let err = parse("datasets:\n  - name: p\n    source: { csv: a.csv, parquet: b.parquet }\n")
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("exactly one of csv, parquet or postgres"),
            "{err}"
        );
        let err = parse("datasets:\n  - name: p\n    source: {}\n").unwrap_err();
        assert!(
            err.to_string()
                .contains("exactly one of csv, parquet or postgres"),
            "{err}"
        );
    }

    #[test]
    fn misspelt_policy_field_is_refused() {
        let err = parse(
            "datasets:\n  - name: p\n    source: { csv: x.csv }\n    policy: { minGroupSise: 2 }\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("line 4"), "{err}");
        assert!(err.to_string().contains("minGroupSise"), "{err}");
    }

    #[test]
    fn bad_names_and_duplicates_are_refused() {
        let err = parse("datasets:\n  - name: Patients\n    source: { csv: x.csv }\n").unwrap_err();
        assert!(
            err.to_string().contains("lowercase SQL identifier"),
            "{err}"
        );
        let err = parse(
            "datasets:\n  - name: p\n    source: { csv: x.csv }\n  - name: p\n    source: { csv: y.csv }\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("used twice"), "{err}");
    }

    #[test]
    fn the_module_allow_list_is_read_and_validated() {
        let config = parse("modules:\n  allow:\n    - repository: r.example/alg/*\n").unwrap();
        let d = crate::digest::Digest::of(b"m");
        assert!(
            config
                .modules
                .check("x", "r.example/alg/mean", &d, &d)
                .is_ok()
        );
        assert!(
            config
                .modules
                .check("x", "r.example/other/mean", &d, &d)
                .is_err()
        );
        assert_eq!(
            parse("datasets: []\n").unwrap().modules,
            AllowList::allow_all()
        );
        let err = parse("modules:\n  allow:\n    - repository: '*'\n").unwrap_err();
        assert!(err.to_string().contains("allow-list rule"), "{err}");
    }

    #[test]
    fn unreadable_file_is_named() {
        let err = DataConfig::load(Path::new("/nonexistent/sandlet.yaml")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("/nonexistent/sandlet.yaml: cannot read"),
            "{err}"
        );
    }
}
