//! The central step of the federated mean: partial sums and counts in, the
//! mean out. No data access, no host interface: the same code is the wasm
//! algorithm's `combine` (`algorithms/federated-mean`) and the native
//! binary of `algorithms/federated-mean-combine` that runs as a container
//! Job.

use serde::{Deserialize, Serialize};

/// One station's answer to the partial step.
#[derive(Serialize, Deserialize)]
pub struct Partial {
    pub sum: f64,
    pub count: i64,
}

/// The federated mean and what it was computed from.
#[derive(Serialize)]
pub struct Combined {
    pub mean: f64,
    pub sum: f64,
    pub count: i64,
}

pub fn combine(partials: &[Partial]) -> Result<Combined, String> {
    let sum: f64 = partials.iter().map(|p| p.sum).sum();
    let count: i64 = partials.iter().map(|p| p.count).sum();
    if count == 0 {
        return Err("no values at any station: the mean is undefined".to_owned());
    }
    Ok(Combined {
        mean: sum / count as f64,
        sum,
        count,
    })
}
