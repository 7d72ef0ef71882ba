//! {{name}}: a sandlet algorithm.
//!
//! Input: `{"dataset": "example", "column": "value"}`.
//! Output: `{"dataset": ..., "column": ..., "count": N, "mean": M}` from one
//! aggregate query, which the data station answers under its disclosure
//! policy (a refusal is the run's error: `not-granted: ...`, `denied: ...`).

use serde::{Deserialize, Serialize};

wit_bindgen::generate!({
    path: "wit",
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
}

/// Double-quotes an SQL identifier so that any name is taken literally.
fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

fn describe(error: data::Error) -> String {
    match error {
        data::Error::NotGranted(m) => format!("not-granted: {m}"),
        data::Error::Denied(m) => format!("denied: {m}"),
        data::Error::Invalid(m) => format!("invalid: {m}"),
        data::Error::LimitExceeded(m) => format!("limit-exceeded: {m}"),
    }
}

fn mean(input: Input) -> Result<Output, String> {
    let column = quote(&input.column);
    let sql = format!(
        "SELECT COUNT({column}), AVG({column}) FROM {}",
        quote(&input.dataset)
    );
    let table = data::query(&sql).map_err(describe)?;
    let row = table.rows.first().ok_or("the query returned no row")?;
    let count = match row.first() {
        Some(Value::Int(n)) => *n,
        other => return Err(format!("unexpected count {other:?}")),
    };
    let mean = match row.get(1) {
        Some(Value::Float(x)) => Some(*x),
        Some(Value::Int(i)) => Some(*i as f64),
        _ => None,
    };
    Ok(Output {
        dataset: input.dataset,
        column: input.column,
        count,
        mean,
    })
}

struct Algorithm;

impl Guest for Algorithm {
    fn run(input: String) -> Result<String, String> {
        let input: Input =
            serde_json::from_str(&input).map_err(|e| format!("invalid input: {e}"))?;
        let output = mean(input)?;
        serde_json::to_string(&output).map_err(|e| e.to_string())
    }
}

export!(Algorithm);
