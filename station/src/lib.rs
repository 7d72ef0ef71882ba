//! The station file: the one YAML file (docs/reference/station-file.md) that says
//! which datasets a station holds under which policies, under
//! `defaultGrants` which datasets pods of a namespace get when they name
//! none themselves, and under `modules.allow` which modules may run there.
//!
//! This module owns the file: reading it, its top-level shape, and errors
//! that name the file, line and reason. It composes the parts that other
//! crates validate: the datasets ([`sandlet_data::DataConfig`]) and the
//! module allow-list ([`sandlet_registry::allow_list::AllowList`]), so that
//! neither of those crates knows about the other. It opens no data file and
//! contacts no registry; the allow-list reads the public key files its
//! rules name, relative to the station file's directory.

pub mod defaults;

use std::path::{Path, PathBuf};

use serde::Deserialize;

use sandlet_data::{DataConfig, DatasetSpec};
use sandlet_registry::allow_list::{AllowList, AllowRule};

/// A validated station file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StationConfig {
    /// The datasets, their policies and the default grants.
    pub data: DataConfig,
    /// The modules that may run (everything when the file has no
    /// `modules` section).
    pub modules: AllowList,
}

/// The file as written, before validation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStation {
    #[serde(default)]
    datasets: Vec<DatasetSpec>,
    #[serde(default, rename = "defaultGrants")]
    default_grants: Vec<RawDefaultGrant>,
    #[serde(default)]
    modules: Option<RawModules>,
}

/// `defaultGrants: [ { namespace: NAME, datasets: [...] } ]`: for pods
/// that cannot carry the `sandlet.dev/datasets` annotation (their
/// controller writes the pod, as vantage6's node does).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDefaultGrant {
    namespace: String,
    datasets: Vec<String>,
}

/// `modules: { allow: [ { repository: ..., digests: [...], keys: [...] } ] }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModules {
    allow: Vec<AllowRule>,
}

/// A station file that cannot be used. The message names the file and,
/// where the parser knows it, the line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        /// The station file.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid YAML of the station file's shape, or a
    /// default grant or allow-list rule in it is invalid.
    #[error("{}: {}", path.display(), Located(location, message))]
    Syntax {
        /// The station file.
        path: PathBuf,
        /// Line and column, 1-based.
        location: Option<(usize, usize)>,
        /// What is wrong.
        message: String,
    },
    /// A dataset's definition or policy is invalid.
    #[error("{}: {source}", path.display())]
    Dataset {
        /// The station file.
        path: PathBuf,
        /// What is wrong with which dataset.
        #[source]
        source: sandlet_data::DatasetError,
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

impl StationConfig {
    /// Reads and validates a station file. Relative data paths are taken
    /// relative to the file's own directory.
    pub fn load(path: &Path) -> Result<StationConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, path, base)
    }

    /// Parses station file text; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path, base: &Path) -> Result<StationConfig, ConfigError> {
        let raw: RawStation = serde_yaml::from_str(text).map_err(|e| {
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
        let mut data =
            DataConfig::from_specs(raw.datasets, base).map_err(|source| ConfigError::Dataset {
                path: path.to_owned(),
                source,
            })?;
        for grant in raw.default_grants {
            if !is_namespace_name(&grant.namespace) {
                return Err(ConfigError::Syntax {
                    path: path.to_owned(),
                    location: None,
                    message: format!(
                        "defaultGrants: {:?} is not a namespace name (a DNS label: a-z, 0-9 and -, at most 63)",
                        grant.namespace
                    ),
                });
            }
            data.grant_by_default(&grant.namespace, grant.datasets)
                .map_err(|message| ConfigError::Syntax {
                    path: path.to_owned(),
                    location: None,
                    message,
                })?;
        }
        let modules = match raw.modules {
            None => AllowList::allow_all(),
            Some(modules) => {
                AllowList::new(modules.allow, base).map_err(|e| ConfigError::Syntax {
                    path: path.to_owned(),
                    location: None,
                    message: e.to_string(),
                })?
            }
        };
        Ok(StationConfig { data, modules })
    }
}

/// A Kubernetes namespace name: an RFC 1123 DNS label.
fn is_namespace_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    use sandlet_data::{DisclosurePolicy, SourceConfig};
    use std::path::PathBuf;
    use std::time::Duration;

    fn parse(text: &str) -> Result<StationConfig, ConfigError> {
        StationConfig::parse(text, Path::new("/etc/sandlet/data.yaml"), Path::new("/srv"))
    }

    #[test]
    fn omitted_policy_fields_take_the_strict_defaults() {
        let config =
            parse("datasets:\n  - name: patients\n    source: { csv: data/p.csv }\n").unwrap();
        let dataset = &config.data.datasets[0];
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
        let policy = &config.data.datasets[0].policy;
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
                privacy: None,
            }
        );
        assert!(!policy.allows_namespace("default"));
        assert_eq!(
            config.data.dataset("labs").unwrap().source,
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
    fn a_privacy_block_is_read_in_the_policy_or_beside_it_and_validated() {
        let config = parse(
            r#"
datasets:
  - name: patients
    source: { csv: p.csv }
    privacy:
      epsilon: 1.0
      delta: 1.0e-6
      perQuery: 0.1
      bounds: { age: [0, 120], bmi: [10, 70] }
  - name: labs
    source: { csv: l.csv }
    policy:
      allowedColumns: [value]
      privacy: { epsilon: 2, bounds: { value: [0, 1] }, maxRowsPerPerson: 3 }
"#,
        )
        .unwrap();
        let patients = config.data.dataset("patients").unwrap();
        let privacy = patients.policy.privacy.as_ref().unwrap();
        assert_eq!(privacy.epsilon.to_string(), "1");
        assert_eq!(privacy.per_query.to_string(), "0.1");
        assert_eq!(privacy.delta, 1e-6);
        assert_eq!(privacy.bounds["bmi"].upper, 70.0);
        let labs = config.data.dataset("labs").unwrap();
        let privacy = labs.policy.privacy.as_ref().unwrap();
        assert_eq!(privacy.per_query.to_string(), "0.2", "a tenth by default");
        assert_eq!(privacy.max_rows_per_person, 3);

        for (text, line, reason) in [
            (
                "datasets:\n  - name: p\n    source: { csv: x.csv }\n    privacy: { epsilon: 1, perQuery: 3 }\n",
                "line 2",
                "privacy.perQuery (3) is more than the whole budget",
            ),
            (
                "datasets:\n  - name: p\n    source: { csv: x.csv }\n    privacy: { epsilon: -1 }\n",
                "line 2",
                "privacy.epsilon must be a positive number",
            ),
            (
                "datasets:\n  - name: p\n    source: { csv: x.csv }\n    privacy: { epsilon: 1, bounds: { age: [9, 1] } }\n",
                "line 2",
                "privacy.bounds.age: the lower end (9) is above the upper (1)",
            ),
            (
                "datasets:\n  - name: p\n    source: { csv: x.csv }\n    privacy: { epsilon: 1, epsilonn: 2 }\n",
                "line 4",
                "epsilonn",
            ),
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(line) && err.contains(reason), "{text}: {err}");
        }
        for (text, reason) in [
            (
                "datasets:\n  - name: p\n    source: { csv: x.csv }\n    privacy: { epsilon: 1 }\n    policy: { privacy: { epsilon: 1 } }\n",
                "privacy is given twice",
            ),
            (
                "datasets:\n  - name: p\n    source: { csv: x.csv }\n    privacy: { epsilon: 1 }\n    policy: { rawFiles: true }\n",
                "cannot have rawFiles",
            ),
            (
                "datasets:\n  - name: p\n    source: { csv: x.csv }\n    privacy: { epsilon: 1, bounds: { ssn: [0, 9] } }\n    policy: { allowedColumns: [age] }\n",
                "privacy.bounds names column \"ssn\", which allowedColumns does not allow",
            ),
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(reason), "{text}: {err}");
        }
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
        let d = sandlet_core::Digest::of(b"m");
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
    fn allow_list_keys_are_read_relative_to_the_station_file() {
        use sandlet_registry::allow_list::Verdict;
        let dir = tempfile::tempdir().unwrap();
        let key = sandlet_trust::PrivateKey::generate().public();
        std::fs::create_dir(dir.path().join("keys")).unwrap();
        std::fs::write(dir.path().join("keys/reviewer.pub"), key.to_pem()).unwrap();
        let file = dir.path().join("station.yaml");
        std::fs::write(
            &file,
            "modules:\n  allow:\n    - repository: r.example/alg/*\n      keys: [keys/reviewer.pub]\n",
        )
        .unwrap();
        let config = StationConfig::load(&file).unwrap();
        let d = sandlet_core::Digest::of(b"m");
        assert_eq!(
            config.modules.check("x", "r.example/alg/mean", &d, &d),
            Ok(Verdict::IfSignedBy(vec![key]))
        );
        std::fs::write(
            &file,
            "modules:\n  allow:\n    - repository: r.example/alg/*\n      keys: [keys/gone.pub]\n",
        )
        .unwrap();
        let err = StationConfig::load(&file).unwrap_err().to_string();
        assert!(
            err.starts_with(&file.display().to_string()) && err.contains("keys/gone.pub"),
            "{err}"
        );
    }

    #[test]
    fn default_grants_stay_within_each_datasets_namespaces() {
        let head = "datasets:\n  - name: patients\n    source: { csv: p.csv }\n    policy: { allowedNamespaces: [v6-org1, research] }\n  - name: labs\n    source: { csv: l.csv }\n";
        let config = parse(&format!(
            "{head}defaultGrants:\n  - namespace: v6-org1\n    datasets: [patients, labs, patients]\n"
        ))
        .unwrap();
        assert_eq!(config.data.default_grant("v6-org1"), ["patients", "labs"]);
        assert!(config.data.default_grant("research").is_empty());
        assert!(config.data.default_grant("v6-org2").is_empty());
        for (grants, error) in [
            // Wider than the dataset's allowedNamespaces, under any spelling.
            (
                "  - namespace: default\n    datasets: [patients]\n",
                "allowedNamespaces does not include it",
            ),
            (
                "  - namespace: V6-org1\n    datasets: [patients]\n",
                "not a namespace name",
            ),
            (
                "  - namespace: 'v6-org1 '\n    datasets: [patients]\n",
                "not a namespace name",
            ),
            (
                "  - namespace: ''\n    datasets: [patients]\n",
                "not a namespace name",
            ),
            (
                "  - namespace: v6-org1\n    datasets: [Patients]\n",
                "does not have",
            ),
            (
                "  - namespace: v6-org1\n    datasets: [nothing]\n",
                "does not have",
            ),
            ("  - namespace: v6-org1\n    datasets: []\n", "no dataset"),
            (
                "  - namespace: v6-org1\n    datasets: [labs]\n  - namespace: v6-org1\n    datasets: [patients]\n",
                "listed twice",
            ),
            (
                "  - namespace: v6-org1\n    dataset: [labs]\n",
                "unknown field `dataset`",
            ),
        ] {
            let err = parse(&format!("{head}defaultGrants:\n{grants}")).unwrap_err();
            assert!(
                err.to_string().starts_with("/etc/sandlet/data.yaml: "),
                "{err}"
            );
            assert!(err.to_string().contains(error), "{grants}: {err}");
        }
    }

    #[test]
    fn unreadable_file_is_named() {
        let err = StationConfig::load(Path::new("/nonexistent/sandlet.yaml")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("/nonexistent/sandlet.yaml: cannot read"),
            "{err}"
        );
    }
}
