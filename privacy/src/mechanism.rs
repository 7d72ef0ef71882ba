//! The noise: OpenDP's measurements, as the data engine uses them.
//!
//! This module owns the calibration of each mechanism (its scale from a
//! sensitivity and an ε, its threshold from a δ) and checks every
//! calibration with the measurement's own privacy map before any noise is
//! drawn. All noise is OpenDP's discrete Laplace over integers, sampled
//! exactly from OpenSSL's `RAND_priv_bytes`: the engine turns every
//! statistic into an integer before it gets here, so no floating-point
//! sampler (and none of the attacks on one) is involved. It must never
//! release a value whose mechanism's privacy map says more than it was
//! given.

use std::collections::HashMap;

use opendp::accuracy::discrete_laplacian_scale_to_accuracy;
use opendp::domains::{AtomDomain, MapDomain, VectorDomain};
use opendp::measurements::{make_laplace, make_laplace_threshold};
use opendp::measures::{Approximate, MaxDivergence};
use opendp::metrics::{AbsoluteDistance, L1Distance, L01InfDistance};

/// A mechanism that could not be built or run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("differential privacy mechanism: {0}")]
pub struct MechanismError(String);

fn failed(error: impl std::fmt::Display) -> MechanismError {
    MechanismError(error.to_string())
}

/// Noisy values and how they were made.
#[derive(Debug, Clone, PartialEq)]
pub struct Noisy<T> {
    /// The values with their noise added, in the order given.
    pub values: T,
    /// The discrete Laplace scale `b` (the noise's standard deviation is
    /// about `b·√2`).
    pub scale: f64,
    /// The ε the release cost, from the measurement's privacy map.
    pub epsilon: f64,
}

/// The smallest scale whose privacy map gives at most `epsilon` for `map`:
/// `sensitivity / epsilon`, nudged up past floating-point rounding.
fn calibrate(
    sensitivity: f64,
    epsilon: f64,
    map: impl Fn(f64) -> Result<f64, MechanismError>,
) -> Result<(f64, f64), MechanismError> {
    if !(epsilon.is_finite() && epsilon > 0.0) {
        return Err(failed(format!("ε must be positive, not {epsilon}")));
    }
    let mut scale = sensitivity / epsilon;
    for _ in 0..64 {
        let spent = map(scale)?;
        if spent <= epsilon {
            return Ok((scale, spent));
        }
        scale = scale.next_up();
    }
    Err(failed(format!(
        "no scale near {scale} keeps ε at most {epsilon}"
    )))
}

/// Adds discrete Laplace noise to every value, so that releasing the whole
/// vector is `epsilon`-differentially private when one person can change it
/// by at most `sensitivity` in L1 distance (the sum of the changes over all
/// entries).
pub fn laplace(
    values: &[i64],
    sensitivity: u64,
    epsilon: f64,
) -> Result<Noisy<Vec<i64>>, MechanismError> {
    let sensitivity = i64::try_from(sensitivity).map_err(failed)?;
    let build = |scale: f64| {
        make_laplace::<_, _, MaxDivergence>(
            VectorDomain::new(AtomDomain::<i64>::default()),
            L1Distance::<i64>::default(),
            scale,
            None,
        )
        .map_err(failed)
    };
    let (scale, spent) = calibrate(sensitivity as f64, epsilon, |scale| {
        build(scale)?.map(&sensitivity).map_err(failed)
    })?;
    let noisy = build(scale)?.invoke(&values.to_vec()).map_err(failed)?;
    Ok(Noisy {
        values: noisy,
        scale,
        epsilon: spent,
    })
}

/// What a thresholded release kept.
#[derive(Debug, Clone, PartialEq)]
pub struct Thresholded {
    /// The counts whose noisy value reached the threshold, noisy.
    pub counts: HashMap<u64, i64>,
    /// The discrete Laplace scale `b` of the noise on each count.
    pub scale: f64,
    /// The noisy count a group needed to be kept.
    pub threshold: i64,
    /// The ε the release cost, from the measurement's privacy map.
    pub epsilon: f64,
    /// The δ the release cost, from the measurement's privacy map.
    pub delta: f64,
}

/// Releases noisy `counts` of groups whose keys are themselves private:
/// a group is kept only when its noisy count reaches a threshold set so
/// that a group made by `rows` rows of one person shows with probability at
/// most `delta` (OpenDP's propose-test-release over a map, Rogers 2023).
/// One person has at most `rows` rows, and so changes at most `rows` counts
/// by at most `rows`.
pub fn laplace_threshold(
    counts: HashMap<u64, i64>,
    rows: u32,
    epsilon: f64,
    delta: f64,
) -> Result<Thresholded, MechanismError> {
    if !(delta > 0.0 && delta < 1.0) {
        return Err(failed(format!(
            "δ must be above 0 and below 1, not {delta}"
        )));
    }
    let li = i64::from(rows);
    let d_in = (rows, li, li);
    let build = |scale: f64, threshold: i64| {
        make_laplace_threshold::<_, _, Approximate<MaxDivergence>>(
            MapDomain::new(AtomDomain::<u64>::default(), AtomDomain::<i64>::default()),
            L01InfDistance::<AbsoluteDistance<i64>>::default(),
            scale,
            threshold,
            None,
        )
        .map_err(failed)
    };
    // The threshold changes only δ: calibrate ε with the largest one.
    let (scale, _) = calibrate(li as f64, epsilon, |scale| {
        Ok(build(scale, i64::MAX / 4)?.map(&d_in).map_err(failed)?.0)
    })?;
    // The smallest threshold whose δ is small enough: δ falls as the
    // threshold rises.
    let privacy = |threshold: i64| build(scale, threshold)?.map(&d_in).map_err(failed);
    let (mut low, mut high) = (li, li.max(1));
    while privacy(high)?.1 > delta {
        low = high;
        high = high
            .checked_mul(2)
            .ok_or_else(|| failed(format!("no threshold keeps δ at most {delta}")))?;
    }
    while low < high {
        let middle = low + (high - low) / 2;
        if privacy(middle)?.1 <= delta {
            high = middle;
        } else {
            low = middle + 1;
        }
    }
    let threshold = high;
    let (spent, spent_delta) = privacy(threshold)?;
    if spent > epsilon || spent_delta > delta {
        return Err(failed(format!(
            "the threshold mechanism would spend ({spent}, {spent_delta}), more than ({epsilon}, {delta})"
        )));
    }
    let kept = build(scale, threshold)?.invoke(&counts).map_err(failed)?;
    Ok(Thresholded {
        counts: kept,
        scale,
        threshold,
        epsilon: spent,
        delta: spent_delta,
    })
}

/// The half-width of the interval that holds a discrete-Laplace-noised value
/// around the exact one with probability `1 - alpha`.
pub fn accuracy(scale: f64, alpha: f64) -> f64 {
    discrete_laplacian_scale_to_accuracy(scale, alpha).unwrap_or(f64::INFINITY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn laplace_is_calibrated_to_sensitivity_over_epsilon() {
        let exact = vec![1000i64; 4000];
        let noisy = laplace(&exact, 10, 0.5).unwrap();
        assert!((noisy.scale - 20.0).abs() < 1e-9, "{}", noisy.scale);
        assert!(noisy.epsilon <= 0.5);
        let errors: Vec<f64> = noisy.values.iter().map(|v| (*v - 1000) as f64).collect();
        let mean = errors.iter().sum::<f64>() / errors.len() as f64;
        let variance = errors.iter().map(|e| (e - mean).powi(2)).sum::<f64>() / errors.len() as f64;
        // Discrete Laplace(20): variance 2·e^{-1/20}/(1-e^{-1/20})² ≈ 799.
        let q: f64 = (-1.0f64 / 20.0).exp();
        let expected = 2.0 * q / (1.0 - q).powi(2);
        assert!(mean.abs() < 3.0, "mean {mean}");
        assert!(
            (variance / expected - 1.0).abs() < 0.15,
            "variance {variance}, expected {expected}"
        );
        // Every value moved by an integer, and not every one by zero.
        assert!(noisy.values.iter().filter(|v| **v == 1000).count() < 200);
    }

    #[test]
    fn groups_of_one_person_rarely_pass_the_threshold() {
        let counts: HashMap<u64, i64> = (0..2000u64).map(|k| (k, 1)).chain([(9999, 500)]).collect();
        let kept = laplace_threshold(counts, 1, 1.0, 1e-3).unwrap();
        assert!(kept.delta <= 1e-3 && kept.epsilon <= 1.0);
        // Threshold about 1 + ln(1/(2δ)) ≈ 7.2 at scale 1.
        assert!(
            (6..=9).contains(&kept.threshold),
            "threshold {}",
            kept.threshold
        );
        assert!(kept.counts.contains_key(&9999));
        assert!(
            kept.counts.len() < 20,
            "{} singletons kept",
            kept.counts.len() - 1
        );
        assert!(kept.counts.values().all(|c| *c >= kept.threshold));
    }

    #[test]
    fn bad_parameters_are_refused() {
        assert!(laplace(&[1], 1, 0.0).is_err());
        assert!(laplace(&[1], 1, f64::NAN).is_err());
        assert!(laplace_threshold(HashMap::new(), 1, 1.0, 0.0).is_err());
    }

    #[test]
    fn accuracy_follows_the_scale() {
        let narrow = accuracy(1.0, 0.05);
        let wide = accuracy(10.0, 0.05);
        assert!(narrow > 1.0 && wide > 9.0 * narrow / 2.0, "{narrow} {wide}");
    }
}
