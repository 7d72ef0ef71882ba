//! A dataset's privacy policy (the `privacy:` block of the station file), and
//! the unit budgets are kept in.
//!
//! This module owns what the policy may say and which values are refused. It
//! must never accept a policy whose budget, bounds or `delta` cannot be
//! enforced as written: a refusal names the field and the reason.

use std::collections::BTreeMap;

use serde::Deserialize;

/// An amount of privacy loss ε, counted exactly in billionths.
///
/// Budgets are added and compared as integers, so that ten queries at 0.1
/// spend a budget of 1.0 exactly, whatever floating point would make of the
/// sum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Epsilon(u64);

impl Epsilon {
    /// Billionths of ε in one ε.
    pub const UNIT: u64 = 1_000_000_000;
    /// No privacy loss: what an account that never paid has spent.
    pub const ZERO: Epsilon = Epsilon(0);

    /// ε as the station file writes it: finite, positive and a whole number
    /// of billionths at most (anything finer is refused, not rounded).
    pub fn from_f64(value: f64) -> Result<Epsilon, String> {
        if !value.is_finite() || value <= 0.0 {
            return Err(format!("must be a positive number, not {value}"));
        }
        let nanos = value * Self::UNIT as f64;
        if nanos > u64::MAX as f64 / 2.0 {
            return Err(format!("{value} is too large"));
        }
        let rounded = nanos.round();
        if rounded < 1.0 {
            return Err(format!(
                "{value} is smaller than 1e-9, the finest unit kept"
            ));
        }
        Ok(Epsilon(rounded as u64))
    }

    /// ε from a count of billionths, as the ledger stores it.
    pub(crate) const fn from_nanos(nanos: u64) -> Epsilon {
        Epsilon(nanos)
    }

    /// The amount in billionths of ε.
    pub(crate) const fn nanos(self) -> u64 {
        self.0
    }

    /// The amount in ε, as the guest interface and the noise mechanisms
    /// take it.
    pub fn as_f64(self) -> f64 {
        self.0 as f64 / Self::UNIT as f64
    }

    /// What is left of `self` once `other` is taken away; zero when
    /// `other` is more.
    pub fn saturating_sub(self, other: Epsilon) -> Epsilon {
        Epsilon(self.0.saturating_sub(other.0))
    }

    /// The sum, or `None` when it overflows.
    pub(crate) fn checked_add(self, other: Epsilon) -> Option<Epsilon> {
        self.0.checked_add(other.0).map(Epsilon)
    }
}

/// Shown as a decimal with no trailing zeros (`0.1`, `1`, `0.000000001`).
impl std::fmt::Display for Epsilon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let whole = self.0 / Self::UNIT;
        let frac = self.0 % Self::UNIT;
        if frac == 0 {
            return write!(f, "{whole}");
        }
        let digits = format!("{frac:09}");
        write!(f, "{whole}.{}", digits.trim_end_matches('0'))
    }
}

/// Default `maxRowsPerPerson`: each row is one person.
pub const DEFAULT_MAX_ROWS_PER_PERSON: u32 = 1;
/// How many queries the budget lasts when `perQuery` is omitted.
pub const DEFAULT_QUERIES_PER_BUDGET: u64 = 10;

/// The `privacy:` block as written, before validation.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrivacySpec {
    /// `epsilon`: the total ε each namespace may spend on the dataset.
    pub epsilon: f64,
    /// `delta`: the total δ each namespace may spend; 0 when omitted.
    #[serde(default)]
    pub delta: f64,
    /// `perQuery`: the ε one query spends; a tenth of `epsilon` when
    /// omitted.
    #[serde(default)]
    pub per_query: Option<f64>,
    /// `bounds`: each numeric column's `[lower, upper]` clamping range.
    #[serde(default)]
    pub bounds: BTreeMap<String, [f64; 2]>,
    /// `maxRowsPerPerson`: how many rows one person may have;
    /// [`DEFAULT_MAX_ROWS_PER_PERSON`] when omitted.
    #[serde(default)]
    pub max_rows_per_person: Option<u32>,
}

/// A dataset's differential-privacy policy, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct PrivacyPolicy {
    /// The total ε each namespace may spend on the dataset.
    pub epsilon: Epsilon,
    /// The total δ each namespace may spend; spent in proportion to ε, so
    /// that it runs out when ε does. Zero: no mechanism that needs δ runs
    /// (queries with `GROUP BY` are refused).
    pub delta: f64,
    /// The ε one query spends unless the guest asks for less.
    pub per_query: Epsilon,
    /// The clamping range of each numeric column the dataset bounds.
    pub bounds: BTreeMap<String, Bounds>,
    /// How many rows one person may have in the dataset: every sensitivity
    /// is multiplied by it.
    pub max_rows_per_person: u32,
}

/// A closed range `[lower, upper]` that a column's values are clamped to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bounds {
    /// The smallest value kept; smaller values are raised to it.
    pub lower: f64,
    /// The largest value kept; larger values are lowered to it.
    pub upper: f64,
}

impl Bounds {
    /// The largest magnitude a value in the range can have.
    pub fn magnitude(&self) -> f64 {
        self.lower.abs().max(self.upper.abs())
    }
}

impl TryFrom<PrivacySpec> for PrivacyPolicy {
    type Error = String;

    fn try_from(spec: PrivacySpec) -> Result<PrivacyPolicy, String> {
        let epsilon =
            Epsilon::from_f64(spec.epsilon).map_err(|e| format!("privacy.epsilon {e}"))?;
        if !(spec.delta.is_finite() && (0.0..1.0).contains(&spec.delta)) {
            return Err(format!(
                "privacy.delta must be at least 0 and below 1, not {}",
                spec.delta
            ));
        }
        let per_query = match spec.per_query {
            Some(value) => Epsilon::from_f64(value).map_err(|e| format!("privacy.perQuery {e}"))?,
            None => Epsilon::from_nanos((epsilon.nanos() / DEFAULT_QUERIES_PER_BUDGET).max(1)),
        };
        if per_query > epsilon {
            return Err(format!(
                "privacy.perQuery ({per_query}) is more than the whole budget, privacy.epsilon ({epsilon})"
            ));
        }
        let max_rows_per_person = spec
            .max_rows_per_person
            .unwrap_or(DEFAULT_MAX_ROWS_PER_PERSON);
        if max_rows_per_person == 0 {
            return Err("privacy.maxRowsPerPerson must be at least 1".to_owned());
        }
        let mut bounds = BTreeMap::new();
        for (column, [lower, upper]) in spec.bounds {
            if !lower.is_finite() || !upper.is_finite() {
                return Err(format!(
                    "privacy.bounds.{column}: both ends must be finite numbers"
                ));
            }
            if lower > upper {
                return Err(format!(
                    "privacy.bounds.{column}: the lower end ({lower}) is above the upper ({upper})"
                ));
            }
            // Sensitivities are computed in whole units of a power of two
            // no finer than 2^-20 of the magnitude; beyond 2^50 the sums
            // of a large table would no longer fit in 64 bits.
            if lower.abs().max(upper.abs()) > 2f64.powi(50) {
                return Err(format!(
                    "privacy.bounds.{column}: magnitudes above 2^50 are not supported"
                ));
            }
            bounds.insert(column, Bounds { lower, upper });
        }
        Ok(PrivacyPolicy {
            epsilon,
            delta: spec.delta,
            per_query,
            bounds,
            max_rows_per_person,
        })
    }
}

impl PrivacyPolicy {
    /// The δ that a query spending `epsilon` may use: the same share of the
    /// total δ as of the total ε.
    pub fn delta_for(&self, epsilon: Epsilon) -> f64 {
        self.delta * (epsilon.nanos() as f64 / self.epsilon.nanos() as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> Result<PrivacyPolicy, String> {
        let spec: PrivacySpec = serde_json::from_str(yaml).map_err(|e| e.to_string())?;
        PrivacyPolicy::try_from(spec)
    }

    #[test]
    fn epsilons_are_counted_exactly() {
        let tenth = Epsilon::from_f64(0.1).unwrap();
        let mut total = Epsilon::ZERO;
        for _ in 0..10 {
            total = total.checked_add(tenth).unwrap();
        }
        assert_eq!(total, Epsilon::from_f64(1.0).unwrap());
        assert_eq!(tenth.to_string(), "0.1");
        assert_eq!(total.to_string(), "1");
        assert_eq!(Epsilon::from_nanos(1).to_string(), "0.000000001");
        assert_eq!(Epsilon::from_nanos(2_500_000_000).to_string(), "2.5");
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e-12] {
            assert!(Epsilon::from_f64(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_policy_takes_defaults_and_refuses_what_cannot_be_enforced() {
        let policy = spec(r#"{"epsilon": 1.0, "bounds": {"age": [0, 120]}}"#).unwrap();
        assert_eq!(policy.per_query, Epsilon::from_f64(0.1).unwrap());
        assert_eq!(policy.delta, 0.0);
        assert_eq!(policy.max_rows_per_person, 1);
        assert_eq!(policy.bounds["age"].magnitude(), 120.0);

        let policy = spec(r#"{"epsilon": 2, "delta": 1e-6, "perQuery": 0.5}"#).unwrap();
        assert!((policy.delta_for(policy.per_query) - 2.5e-7).abs() < 1e-18);

        for (json, field) in [
            (r#"{"epsilon": 0}"#, "privacy.epsilon"),
            (r#"{"epsilon": 1, "perQuery": 2}"#, "privacy.perQuery"),
            (r#"{"epsilon": 1, "delta": 1}"#, "privacy.delta"),
            (r#"{"epsilon": 1, "delta": -0.1}"#, "privacy.delta"),
            (
                r#"{"epsilon": 1, "bounds": {"age": [5, 1]}}"#,
                "privacy.bounds.age",
            ),
            (
                r#"{"epsilon": 1, "bounds": {"x": [0, 1e300]}}"#,
                "privacy.bounds.x",
            ),
            (
                r#"{"epsilon": 1, "maxRowsPerPerson": 0}"#,
                "privacy.maxRowsPerPerson",
            ),
        ] {
            let error = spec(json).unwrap_err();
            assert!(error.starts_with(field), "{json}: {error}");
        }
        assert!(spec(r#"{"epsilon": 1, "epsilom": 2}"#).is_err());
    }
}
