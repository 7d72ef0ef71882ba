//! The policy engine against an oracle: random queries over small random
//! tables. Every query the engine answers must
//!
//! - equal what DataFusion answers for the same SQL without any policy, and
//! - be backed, at every aggregate in it (in the output, in a `FROM`
//!   subquery, in a `WHERE`/`HAVING`/`IN`/correlated subquery, per value of
//!   a `FILTER` or `CASE`), by at least `minGroupSize` distinct rows per
//!   group and `minRows` rows in all — counted by separate, unguarded
//!   DataFusion queries that the generator writes beside each query.
//!
//! The tables have one row per person, so `COUNT(*)` in the backing queries
//! counts distinct people. Holds no test: shared by the integration test
//! (`local::oracle`, a bounded number of cases) and `benches/data.rs`
//! (`SANDLET_ORACLE_CASES`, more), which includes this file.

use std::fmt::Write as _;
use std::path::Path;

use datafusion::arrow::array::{Array, RecordBatch};
use datafusion::arrow::util::display::array_value_to_string;
use datafusion::prelude::{CsvReadOptions, SessionContext};
use sandlet_data::{DataAccess, GrantedDatasets, QueryError, Value};
use sandlet_station::StationConfig;

use crate::fixtures::Lcg;

/// One generated query and what must hold if it is answered.
pub struct Case {
    pub sql: String,
    /// `(SQL returning one number, threshold, what it counts)`: each number
    /// (NULL counts as 0) must reach its threshold when `sql` is answered.
    pub backing: Vec<(String, u64, &'static str)>,
}

/// How a run of cases went.
#[derive(Debug, Default)]
pub struct Outcome {
    pub answered: usize,
    pub denied: usize,
    /// Answers that broke a property, with the reason.
    pub failures: Vec<String>,
}

struct Gen {
    rng: Lcg,
    min_group_size: u64,
    min_rows: u64,
}

impl Gen {
    fn below(&mut self, n: u64) -> u64 {
        (self.rng.next_f64() * n as f64) as u64 % n.max(1)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }

    /// A random predicate over `t`'s columns, qualified by `q` (`""` or
    /// `"b."`). Often narrow, so that thresholds bite.
    fn predicate(&mut self, q: &str) -> String {
        let one = |g: &mut Gen| match g.below(5) {
            0 => format!("{q}x {} {}", g.pick(&["<", ">", "=", "<>"]), g.below(50)),
            1 => format!("{q}y {} {}.5", g.pick(&["<", ">"]), g.below(20)),
            2 => format!("{q}k = {}", g.below(6)),
            3 => format!("{q}g = '{}'", g.pick(&["a", "b", "c"])),
            _ => format!("{q}x BETWEEN {} AND {}", g.below(25), 25 + g.below(25)),
        };
        match self.below(3) {
            0 => one(self),
            1 => format!("{} AND {}", one(self), one(self)),
            _ => format!("({} OR {})", one(self), one(self)),
        }
    }

    fn groups(&mut self, q: &str, key: &str, filter: &str) -> (String, u64, &'static str) {
        (
            format!(
                "SELECT MIN(c) FROM (SELECT {q}{key}, COUNT(*) AS c FROM t {} WHERE {filter} \
                 GROUP BY {q}{key}) s",
                q.trim_end_matches('.')
            ),
            self.min_group_size,
            "the smallest group",
        )
    }

    fn total(&self, q: &str, filter: &str) -> (String, u64, &'static str) {
        (
            format!(
                "SELECT COUNT(*) FROM t {} WHERE {filter}",
                q.trim_end_matches('.')
            ),
            self.min_rows,
            "the rows read",
        )
    }

    fn value(&self, filter: &str) -> (String, u64, &'static str) {
        (
            format!("SELECT COUNT(*) FROM t WHERE {filter}"),
            self.min_group_size,
            "the rows behind a value",
        )
    }

    fn case(&mut self) -> Case {
        let p = self.predicate("");
        let p2 = self.predicate("");
        let c = self.below(30);
        let (sql, backing) = match self.below(10) {
            0 => (
                format!("SELECT g, COUNT(*), AVG(y) FROM t WHERE {p} GROUP BY g ORDER BY g"),
                vec![self.groups("", "g", &p), self.total("", &p)],
            ),
            1 => (
                format!("SELECT SUM(x) FILTER (WHERE {p2}) FROM t WHERE {p}"),
                vec![self.value(&format!("({p}) AND ({p2})")), self.total("", &p)],
            ),
            2 => (
                format!("SELECT SUM(CASE WHEN {p2} THEN y ELSE 0 END) FROM t WHERE {p}"),
                vec![
                    self.value(&format!("({p}) AND ({p2}) IS TRUE")),
                    self.total("", &p),
                ],
            ),
            3 => (
                format!(
                    "SELECT AVG(m), COUNT(*) FROM (SELECT k, AVG(y) AS m FROM t WHERE {p} \
                     GROUP BY k) s"
                ),
                vec![self.groups("", "k", &p), self.total("", &p)],
            ),
            4 => {
                let outer = format!("x > (SELECT AVG(x) FROM t WHERE {p2})");
                (
                    format!("SELECT COUNT(*) FROM t WHERE {outer}"),
                    vec![self.value(&p2), self.total("", &p2), self.total("", &outer)],
                )
            }
            5 => {
                let outer =
                    format!("k IN (SELECT k FROM t WHERE {p2} GROUP BY k HAVING AVG(y) > {c})");
                (
                    format!("SELECT COUNT(*) FROM t WHERE {outer}"),
                    vec![
                        self.groups("", "k", &p2),
                        self.total("", &p2),
                        self.total("", &outer),
                    ],
                )
            }
            6 => {
                let inner = self.predicate("b.");
                let outer = format!("a.y > (SELECT AVG(b.y) FROM t b WHERE b.g = a.g AND {inner})");
                (
                    format!("SELECT COUNT(*) FROM t a WHERE {outer}"),
                    vec![
                        self.groups("b.", "g", &inner),
                        self.total("b.", &inner),
                        self.total("a.", &outer),
                    ],
                )
            }
            7 => (
                format!(
                    "SELECT k, COUNT(*) AS n FROM t WHERE {p} GROUP BY k ORDER BY n DESC, k LIMIT 2"
                ),
                vec![self.groups("", "k", &p), self.total("", &p)],
            ),
            8 => (
                format!(
                    "SELECT g, COUNT(*) FROM t GROUP BY g \
                     HAVING AVG(y) > (SELECT AVG(y) FROM t WHERE {p2}) ORDER BY g"
                ),
                vec![
                    self.groups("", "g", "true"),
                    self.value(&p2),
                    self.total("", &p2),
                ],
            ),
            _ => (
                format!(
                    "SELECT COUNT(*), SUM(x) FROM t WHERE {p} AND g IN \
                     (SELECT g FROM t WHERE {p2} GROUP BY g)"
                ),
                vec![
                    self.groups("", "g", &p2),
                    self.total("", &p2),
                    self.total(
                        "",
                        &format!("({p}) AND g IN (SELECT g FROM t WHERE {p2} GROUP BY g)"),
                    ),
                ],
            ),
        };
        Case { sql, backing }
    }
}

/// Writes `t.csv` (columns g, k, x, y) with 12 to 60 random rows.
fn write_table(dir: &Path, rng: &mut Lcg) -> usize {
    let rows = 12 + (rng.next_f64() * 49.0) as usize;
    let mut text = String::from("g,k,x,y\n");
    for _ in 0..rows {
        let g = ["a", "b", "c"][(rng.next_f64() * 3.0) as usize % 3];
        let k = (rng.next_f64() * 6.0) as u64 % 6;
        let x = (rng.next_f64() * 50.0) as u64;
        let y = (rng.next_f64() * 2000.0).round() / 100.0;
        writeln!(text, "{g},{k},{x},{y:.2}").unwrap();
    }
    std::fs::write(dir.join("t.csv"), text).unwrap();
    rows
}

/// Every cell of one result, as text, rows sorted (floats rounded so that
/// summation order does not matter).
fn normalise(rows: Vec<Vec<String>>) -> Vec<Vec<String>> {
    let mut rows: Vec<Vec<String>> = rows
        .into_iter()
        .map(|row| {
            row.into_iter()
                .map(|cell| match cell.parse::<f64>() {
                    Ok(x) => format!("{:.6}", x),
                    Err(_) => cell,
                })
                .collect()
        })
        .collect();
    rows.sort();
    rows
}

fn value_text(value: &Value) -> String {
    value.to_string()
}

fn batch_rows(batches: &[RecordBatch]) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for batch in batches {
        for row in 0..batch.num_rows() {
            rows.push(
                batch
                    .columns()
                    .iter()
                    .map(|column| {
                        if column.is_null(row) {
                            String::new()
                        } else {
                            array_value_to_string(column, row).unwrap()
                        }
                    })
                    .collect(),
            );
        }
    }
    rows
}

/// Runs `cases` random cases, each on a table of its own, from `seed`.
pub async fn run(seed: u64, cases: usize) -> Outcome {
    let mut outcome = Outcome::default();
    let mut rng = Lcg::new(seed);
    let dir = tempfile::tempdir().unwrap();
    // A few tables, many queries each: opening a table is the slow part.
    let tables = cases.div_ceil(25).max(1);
    for table in 0..tables {
        let rows = write_table(dir.path(), &mut rng);
        let min_group_size = 3 + (rng.next_f64() * 3.0) as u64;
        let min_rows = min_group_size + 2 + (rng.next_f64() * 5.0) as u64;
        let config_path = dir.path().join("t.yaml");
        std::fs::write(
            &config_path,
            format!(
                "datasets:\n  - name: t\n    source: {{ csv: {} }}\n    policy: \
                 {{ minGroupSize: {min_group_size}, minRows: {min_rows} }}\n",
                dir.path().join("t.csv").display()
            ),
        )
        .unwrap();
        let config = StationConfig::load(&config_path).unwrap().data;
        let guarded = GrantedDatasets::new(&config, &["t".to_owned()]).unwrap();
        let plain = SessionContext::new();
        plain
            .register_csv(
                "t",
                dir.path().join("t.csv").to_str().unwrap(),
                CsvReadOptions::new(),
            )
            .await
            .unwrap();
        let mut generator = Gen {
            rng: Lcg::new(seed ^ (table as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
            min_group_size,
            min_rows,
        };
        let per_table = (cases - table * 25).min(25);
        for _ in 0..per_table {
            let case = generator.case();
            let context = format!(
                "table {table} ({rows} rows, minGroupSize {min_group_size}, minRows {min_rows}): {}",
                case.sql
            );
            match guarded.query(&case.sql).await {
                Err(QueryError::Denied(_)) => outcome.denied += 1,
                Err(other) => outcome.failures.push(format!(
                    "{context}\n  refused as other than denied: {other}"
                )),
                Ok(answer) => {
                    outcome.answered += 1;
                    let reference = plain.sql(&case.sql).await.unwrap().collect().await.unwrap();
                    let expected = normalise(batch_rows(&reference));
                    let got = normalise(
                        answer
                            .rows
                            .iter()
                            .map(|row| row.iter().map(value_text).collect())
                            .collect(),
                    );
                    if got != expected {
                        outcome.failures.push(format!(
                            "{context}\n  answered {got:?}\n  DataFusion says {expected:?}"
                        ));
                    }
                    for (sql, threshold, what) in &case.backing {
                        let batches = plain.sql(sql).await.unwrap().collect().await.unwrap();
                        let cell = batch_rows(&batches)
                            .first()
                            .and_then(|row| row.first().cloned())
                            .unwrap_or_default();
                        let n: u64 = cell.parse().unwrap_or(0);
                        if n < *threshold {
                            outcome.failures.push(format!(
                                "{context}\n  answered, but {what} is {n} < {threshold}: {sql}"
                            ));
                        }
                    }
                }
            }
        }
    }
    outcome
}
