//! `federated-mean`: the two steps of a mean computed across data stations
//! that never share rows.
//!
//! - Partial step, run at each station:
//!   input `{"dataset": "patients", "column": "age"}`,
//!   output `{"sum": S, "count": N}` from one aggregate query.
//! - Central step, run anywhere (no data needed):
//!   input `{"combine": [{"sum": S1, "count": N1}, ...]}`,
//!   output `{"mean": (S1 + ...) / (N1 + ...), "sum": ..., "count": ...}`.

use serde::Deserialize;

wit_bindgen::generate!({
    path: "../../wit/0.1.0",
    world: "sandlet:algorithm/algorithm",
});

use sandlet::algorithm::data::{self, Value};

// The central step, shared with the native build for container workers
// (`algorithms/federated-mean-combine`).
use federated_mean_core::{Partial, combine};

#[derive(Deserialize)]
#[serde(untagged, deny_unknown_fields)]
enum Input {
    Partial { dataset: String, column: String },
    Combine { combine: Vec<Partial> },
}

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

fn partial(dataset: &str, column: &str) -> Result<Partial, String> {
    let column = quote(column);
    let sql = format!("SELECT SUM({column}) AS s, COUNT({column}) AS n FROM {}", quote(dataset));
    let table = data::query(&sql).map_err(describe)?;
    let row = table.rows.first().ok_or("the query returned no row")?;
    let sum = match row.first() {
        Some(Value::Int(i)) => *i as f64,
        Some(Value::Float(x)) => *x,
        Some(Value::Null) => 0.0,
        other => return Err(format!("unexpected sum {other:?}")),
    };
    let count = match row.get(1) {
        Some(Value::Int(n)) => *n,
        other => return Err(format!("unexpected count {other:?}")),
    };
    Ok(Partial { sum, count })
}

struct FederatedMean;

impl Guest for FederatedMean {
    fn run(input: String) -> Result<String, String> {
        let input: Input = serde_json::from_str(&input).map_err(|e| {
            format!("invalid input: expected {{\"dataset\", \"column\"}} or {{\"combine\": [...]}}: {e}")
        })?;
        let output = match input {
            Input::Partial { dataset, column } => serde_json::to_string(&partial(&dataset, &column)?),
            Input::Combine { combine: partials } => serde_json::to_string(&combine(&partials)?),
        };
        output.map_err(|e| e.to_string())
    }
}

export!(FederatedMean);
