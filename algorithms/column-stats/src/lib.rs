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
//!
//! On a differentially private dataset the numbers are noisy, and the
//! output adds what they cost and how far off they may be: `"privacy":
//! {"epsilon": E, "confidence": 0.95}` and, beside each count and mean, a
//! 95 % interval (`"count_interval": [lo, hi]`, `"mean_interval": [lo, hi]`)
//! from the noise the station reports. Built for `sandlet:algorithm@0.2.0`.

use serde::{Deserialize, Serialize};

wit_bindgen::generate!({
    path: "../../wit/0.2.0",
    world: "sandlet:algorithm/algorithm@0.2.0",
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
    #[serde(flatten)]
    intervals: Intervals,
}

#[derive(Serialize)]
struct GroupedOutput {
    dataset: String,
    column: String,
    group_by: String,
    groups: Vec<Group>,
    #[serde(skip_serializing_if = "Option::is_none")]
    privacy: Option<Privacy>,
}

/// What a private query spent.
#[derive(Serialize)]
struct Privacy {
    epsilon: f64,
    confidence: f64,
}

/// 95 % intervals around noisy values; absent on datasets without privacy.
#[derive(Serialize, Default)]
struct Intervals {
    #[serde(skip_serializing_if = "Option::is_none")]
    count_interval: Option<[f64; 2]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mean_interval: Option<[f64; 2]>,
}

/// Runs `sql`, privately when the dataset is private: then with the
/// accuracies of the count (column 1 of `count_at`) and of the mean.
fn run_query(dataset: &str, sql: &str) -> Result<(data::Table, Option<data::Noise>), String> {
    if data::privacy_budget(dataset).is_none() {
        return data::query(sql).map(|t| (t, None)).map_err(describe);
    }
    let answer = data::query_private(sql, None).map_err(describe)?;
    Ok((answer.table, answer.noise))
}

/// The accuracies (count, sum) of result column `column`.
fn accuracies(noise: Option<&data::Noise>, column: &str) -> (Option<f64>, Option<f64>) {
    noise
        .and_then(|n| n.columns.iter().find(|c| c.column == column))
        .map_or((None, None), |c| (c.count_accuracy, c.sum_accuracy))
}

/// Intervals for a noisy count `n` and mean `m`: `n ± a_n`, and
/// `m ± (a_s + |m|·a_c) / n` while the count is surely above zero.
fn intervals(
    noise: Option<&data::Noise>,
    count_column: &str,
    mean_column: &str,
    count: i64,
    mean: Option<f64>,
) -> Intervals {
    let Some(noise) = noise else {
        return Intervals::default();
    };
    let (count_accuracy, _) = accuracies(Some(noise), count_column);
    let (mean_count, mean_sum) = accuracies(Some(noise), mean_column);
    let n = count as f64;
    let count_interval = count_accuracy.map(|a| [(n - a).max(0.0), n + a]);
    let mean_interval = match (mean, mean_count, mean_sum) {
        (Some(m), Some(a_c), Some(a_s)) if n - a_c > 0.0 => {
            let half = (a_s + m.abs() * a_c) / (n - a_c);
            Some([m - half, m + half])
        }
        _ => None,
    };
    Intervals {
        count_interval,
        mean_interval,
    }
}

fn privacy(noise: Option<&data::Noise>) -> Option<Privacy> {
    noise.map(|n| Privacy {
        epsilon: n.epsilon,
        confidence: 0.95,
    })
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
        "SELECT {key_column}, COUNT({column}) AS n, AVG({column}) AS mean, \
         VAR_SAMP({column}) AS variance FROM {} GROUP BY {key_column} ORDER BY {key_column}",
        quote(&input.dataset)
    );
    let (table, noise) = run_query(&input.dataset, &sql)?;
    let mut groups = Vec::with_capacity(table.rows.len());
    for row in &table.rows {
        let count = count_of(row.get(1))?;
        let mean = row.get(2).and_then(number);
        groups.push(Group {
            key: row.first().map(key).unwrap_or_default(),
            count,
            mean,
            variance: row.get(3).and_then(number),
            intervals: intervals(noise.as_ref(), "n", "mean", count, mean),
        });
    }
    let output = GroupedOutput {
        dataset: input.dataset,
        column: input.column,
        group_by,
        groups,
        privacy: privacy(noise.as_ref()),
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
    #[serde(flatten)]
    intervals: Intervals,
    #[serde(skip_serializing_if = "Option::is_none")]
    privacy: Option<Privacy>,
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
        let (table, noise) = run_query(&input.dataset, &sql)?;
        let row = table.rows.first().ok_or("the query returned no row")?;
        let count = count_of(row.first())?;
        let mean = row.get(1).and_then(number);
        let output = Output {
            dataset: input.dataset,
            column: input.column,
            count,
            mean,
            variance: row.get(2).and_then(number),
            intervals: intervals(noise.as_ref(), "n", "mean", count, mean),
            privacy: privacy(noise.as_ref()),
        };
        serde_json::to_string(&output).map_err(|e| e.to_string())
    }
}

export!(ColumnStats);
