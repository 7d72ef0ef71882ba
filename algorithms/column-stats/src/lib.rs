//! `column-stats`: count, mean and sample variance of one numeric column.
//!
//! Input: `{"dataset": "patients", "column": "age"}`.
//! Output: `{"dataset": ..., "column": ..., "count": N, "mean": M, "variance": V}`
//! where `variance` is the sample variance (divisor N - 1), `null` below two
//! values. The numbers come from one aggregate query; the algorithm never
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
        let input: Input = serde_json::from_str(&input).map_err(|e| format!("invalid input: {e}"))?;
        let column = quote(&input.column);
        let sql = format!(
            "SELECT COUNT({column}) AS n, AVG({column}) AS mean, VAR_SAMP({column}) AS variance FROM {}",
            quote(&input.dataset)
        );
        let table = data::query(&sql).map_err(describe)?;
        let row = table.rows.first().ok_or("the query returned no row")?;
        let count = match row.first() {
            Some(Value::Int(n)) => *n,
            other => return Err(format!("unexpected count {other:?}")),
        };
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
