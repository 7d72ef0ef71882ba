//! `vantage6-mean`: a federated mean as a vantage6 algorithm, run by an
//! unmodified vantage6 node on a sandlet station.
//!
//! Method `partial`, arguments `{"column": NAME}` (and optionally
//! `"dataset": NAME`): `{"sum": S, "count": N}` of the column over the
//! station's dataset, from one aggregate query that the station's policy
//! checks; the algorithm never sees a row. The dataset is the one named, or
//! the only one the station grants the task (a vantage6 task's pod names
//! none itself: the station grants its namespace a default).
//!
//! Method `wait`, arguments `{"seconds": N}`: waits N seconds (at most 600)
//! and returns `{"waited": N}`, touching no data: a stand-in for a long
//! computation, with which the tests stop a run half-way.
//!
//! The central step (sum of sums over sum of counts) is left to the
//! researcher's client: a guest has no network to create subtasks with.

use serde_json::{Value, json};

wit_bindgen::generate!({
    path: "../../wit/0.1.0",
    world: "sandlet:algorithm/algorithm",
});

use sandlet::algorithm::data::{self, Value as Cell};
use sandlet_vantage6::Task;

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

/// The dataset named, or the only one granted.
fn dataset(task: &Task) -> Result<String, String> {
    if let Some(name) = task.optional_string("dataset")? {
        return Ok(name.to_owned());
    }
    let granted = data::datasets();
    match granted.as_slice() {
        [only] => Ok(only.name.clone()),
        [] => Err("this station grants the task no dataset".to_owned()),
        many => Err(format!(
            "this station grants {} datasets ({}): name one with the argument \"dataset\"",
            many.len(),
            many.iter().map(|d| d.name.as_str()).collect::<Vec<_>>().join(", ")
        )),
    }
}

fn partial(task: &Task) -> Result<Value, String> {
    let column = quote(task.string("column")?);
    let dataset = dataset(task)?;
    let sql = format!(
        "SELECT SUM({column}) AS s, COUNT({column}) AS n FROM {}",
        quote(&dataset)
    );
    let table = data::query(&sql).map_err(describe)?;
    let row = table.rows.first().ok_or("the query returned no row")?;
    let sum = match row.first() {
        Some(Cell::Int(i)) => *i as f64,
        Some(Cell::Float(x)) => *x,
        Some(Cell::Null) => 0.0,
        other => return Err(format!("unexpected sum {other:?}")),
    };
    let count = match row.get(1) {
        Some(Cell::Int(n)) => *n,
        other => return Err(format!("unexpected count {other:?}")),
    };
    Ok(json!({ "sum": sum, "count": count }))
}

fn wait(task: &Task) -> Result<Value, String> {
    let seconds = task
        .arguments
        .get("seconds")
        .and_then(Value::as_u64)
        .filter(|s| *s <= 600)
        .ok_or("argument \"seconds\" must be a whole number of seconds up to 600")?;
    std::thread::sleep(std::time::Duration::from_secs(seconds));
    Ok(json!({ "waited": seconds }))
}

struct Vantage6Mean;

impl Guest for Vantage6Mean {
    fn run(_input: String) -> Result<String, String> {
        sandlet_vantage6::run(&[("partial", partial), ("wait", wait)])
    }
}

export!(Vantage6Mean);
