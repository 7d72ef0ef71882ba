//! `column-stats`: count, mean and sample variance of one numeric column,
//! over the whole dataset or per group.
//!
//! Input: `{"dataset": "patients", "column": "age"}`, optionally with
//! `"group_by": "sex"`.
//! Output: `{"dataset": ..., "column": ..., "count": N, "mean": M, "variance": V}`
//! where `variance` is the sample variance (divisor N - 1), `null` below two
//! values; with `group_by`, `{"dataset": ..., "column": ..., "group_by": ...,
//! "groups": [{"key": K, "count": N, "mean": M, "variance": V}, ...]}` in key
//! order. The numbers come from one aggregate query; the algorithm never
//! sees a row.

use serde::{Deserialize, Serialize};

wit_bindgen::generate!({
    path: "../../wit",
    world: "sandlet:algorithm/algorithm",
});

use sandlet::algorithm::data::{self, Value};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    dataset: String,
    column: String,
    #[serde(default)]
    group_by: Option<String>,
}

#[derive(Serialize)]
struct Group {
    key: serde_json::Value,
    count: i64,
    mean: Option<f64>,
    variance: Option<f64>,
}

#[derive(Serialize)]
struct GroupedOutput {
    dataset: String,
    column: String,
    group_by: String,
    groups: Vec<Group>,
}

fn key(value: &Value) -> serde_json::Value {
    match value {
        Value::Null => serde_json::Value::Null,
        Value::Boolean(b) => (*b).into(),
        Value::Int(i) => (*i).into(),
        Value::Float(x) => (*x).into(),
        Value::Text(s) => s.clone().into(),
    }
}

fn count_of(value: Option<&Value>) -> Result<i64, String> {
    match value {
        Some(Value::Int(n)) => Ok(*n),
        other => Err(format!("unexpected count {other:?}")),
    }
}

/// One grouped query: key, count, mean and variance per group.
fn grouped(input: Input, group_by: String) -> Result<String, String> {
    let column = quote(&input.column);
    let key_column = quote(&group_by);
    let sql = format!(
        "SELECT {key_column}, COUNT({column}), AVG({column}), VAR_SAMP({column}) FROM {} \
         GROUP BY {key_column} ORDER BY {key_column}",
        quote(&input.dataset)
    );
    let table = data::query(&sql).map_err(describe)?;
    let mut groups = Vec::with_capacity(table.rows.len());
    for row in &table.rows {
        groups.push(Group {
            key: row.first().map(key).unwrap_or_default(),
            count: count_of(row.get(1))?,
            mean: row.get(2).and_then(number),
            variance: row.get(3).and_then(number),
        });
    }
    let output = GroupedOutput {
        dataset: input.dataset,
        column: input.column,
        group_by,
        groups,
    };
    serde_json::to_string(&output).map_err(|e| e.to_string())
}

#[derive(Serialize)]
struct Output {
    dataset: String,
    column: String,
    count: i64,
    mean: Option<f64>,
    variance: Option<f64>,
}

/// Double-quotes an SQL identifier so any column name is taken literally.
fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Int(i) => Some(*i as f64),
        Value::Float(x) => Some(*x),
        _ => None,
    }
}

fn describe(error: data::Error) -> String {
    match error {
        data::Error::NotGranted(m) => format!("not-granted: {m}"),
        data::Error::Denied(m) => format!("denied: {m}"),
        data::Error::Invalid(m) => format!("invalid: {m}"),
        data::Error::LimitExceeded(m) => format!("limit-exceeded: {m}"),
    }
}

struct ColumnStats;

impl Guest for ColumnStats {
    fn run(input: String) -> Result<String, String> {
        let mut input: Input =
            serde_json::from_str(&input).map_err(|e| format!("invalid input: {e}"))?;
        if let Some(group_by) = input.group_by.take() {
            return grouped(input, group_by);
        }
        let column = quote(&input.column);
        let sql = format!(
            "SELECT COUNT({column}) AS n, AVG({column}) AS mean, VAR_SAMP({column}) AS variance FROM {}",
            quote(&input.dataset)
        );
        let table = data::query(&sql).map_err(describe)?;
        let row = table.rows.first().ok_or("the query returned no row")?;
        let count = count_of(row.first())?;
        let output = Output {
            dataset: input.dataset,
            column: input.column,
            count,
            mean: row.get(1).and_then(number),
            variance: row.get(2).and_then(number),
        };
        serde_json::to_string(&output).map_err(|e| e.to_string())
    }
}

export!(ColumnStats);
