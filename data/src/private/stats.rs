//! The integer statistics a private aggregate is computed from: row counts,
//! counts of values and fixed-point sums of clamped values (plain, centered
//! or squared), each made once, with the sensitivity one person's rows give
//! it; and how each of the aggregate's outputs is computed from them.
//!
//! It must never make a statistic whose sensitivity it did not derive from
//! the plan: a sum's values are clamped to the range its sensitivity was
//! computed from, inside the fixed-point sum.

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::DFSchema;
use datafusion::functions_aggregate::count::count_udaf;
use datafusion::logical_expr::expr::{AggregateFunction, AggregateFunctionParams};
use datafusion::logical_expr::{AggregateUDF, Cast, Expr, ExprSchemable, lit, when};

use super::infallible::check_expr;
use super::range::{Range, Ranges, range_of};
use super::{denied, invalid};
use crate::QueryError;
use crate::fixedsum::{FixedSum, Quantizer};

/// Fixed-point sums keep each value within 2^20 units.
const UNIT_BITS: i32 = 20;

/// One integer statistic per group, released with noise.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum StatKind {
    /// COUNT(*): the group's rows; with GROUP BY, also its key's test.
    Rows,
    /// COUNT(x): the rows whose `x` is not NULL.
    Count,
    /// COUNT(DISTINCT x).
    Distinct,
    /// A sum of values in `[-magnitude, magnitude]`, in whole units.
    Sum,
}

#[derive(Debug, Clone)]
pub(super) struct Stat {
    pub(super) kind: StatKind,
    /// What the statistic sums or counts, as the plan writes it; with
    /// `kind`, what makes two statistics the same.
    key: String,
    /// The aggregate expression run exactly.
    pub(super) expr: Expr,
    /// How much one row can change it, in its units.
    pub(super) sensitivity: u64,
    /// The value of one unit.
    pub(super) unit: f64,
}

/// How one of the aggregate's outputs is computed from noisy statistics.
#[derive(Debug, Clone)]
pub(super) enum Output {
    Count {
        stat: usize,
    },
    Sum {
        stat: usize,
    },
    Mean {
        sum: usize,
        count: usize,
        range: Range,
    },
    /// Variance from the count and the sums of `x - center` and of its
    /// square; `sqrt` for the standard deviation.
    Variance {
        count: usize,
        centered: usize,
        squares: usize,
        half: f64,
        population: bool,
        sqrt: bool,
    },
}

pub(super) fn count_rows() -> Expr {
    aggregate(count_udaf(), lit(1i64), false)
}

fn aggregate(
    function: Arc<datafusion::logical_expr::AggregateUDF>,
    arg: Expr,
    distinct: bool,
) -> Expr {
    Expr::AggregateFunction(AggregateFunction::new_udf(
        function,
        vec![arg],
        distinct,
        None,
        vec![],
        None,
    ))
}

/// What a fixed-point sum adds up: the value, its distance from a
/// center, or that distance squared.
#[derive(Debug, Clone, Copy)]
enum Shape {
    Plain,
    Centered(f64),
    Squared(f64),
}

/// The statistics a query needs, each made once.
pub(super) struct Builder {
    pub(super) stats: Vec<Stat>,
    pub(super) rows: u32,
}

impl Builder {
    pub(super) fn stat(
        &mut self,
        kind: StatKind,
        expr: Expr,
        key: String,
        sensitivity: u64,
        unit: f64,
    ) -> usize {
        if let Some(i) = self
            .stats
            .iter()
            .position(|s| s.kind == kind && s.key == key)
        {
            return i;
        }
        let name = format!("__sandlet_stat_{}", self.stats.len());
        self.stats.push(Stat {
            kind,
            key,
            expr: expr.alias(name),
            sensitivity: sensitivity.max(1) * u64::from(self.rows),
            unit,
        });
        self.stats.len() - 1
    }

    /// A fixed-point sum of `value` clamped to `range`, less `center` and
    /// squared for [`Shape::Squared`].
    fn sum(
        &mut self,
        value: &Expr,
        range: Range,
        integral: bool,
        key: &str,
        shape: Shape,
    ) -> usize {
        let (center, square) = match shape {
            Shape::Plain => (0.0, false),
            Shape::Centered(c) => (c, false),
            Shape::Squared(c) => (c, true),
        };
        let deviation = (range.low - center).abs().max((range.high - center).abs());
        let magnitude = if square {
            deviation * deviation
        } else {
            deviation
        };
        let unit = if (integral && !square && center == 0.0 && magnitude <= 2f64.powi(UNIT_BITS))
            || magnitude == 0.0
        {
            1.0
        } else {
            2f64.powi(magnitude.log2().ceil() as i32 - UNIT_BITS)
        };
        let sensitivity = (magnitude / unit).ceil() as u64;
        let quantizer = Quantizer {
            low: range.low,
            high: range.high,
            center,
            square,
            unit,
        };
        let function = Arc::new(AggregateUDF::from(FixedSum::new(quantizer)));
        let arg = Expr::Cast(Cast::new(Box::new(value.clone()), DataType::Float64));
        self.stat(
            StatKind::Sum,
            aggregate(function, arg, false),
            format!("{shape:?}({key})@{unit}"),
            sensitivity,
            unit,
        )
    }

    pub(super) fn output(
        &mut self,
        expr: &Expr,
        schema: &DFSchema,
        ranges: &Ranges,
    ) -> Result<Output, QueryError> {
        let function = match expr {
            Expr::AggregateFunction(f) => f,
            Expr::Alias(alias) => match &*alias.expr {
                Expr::AggregateFunction(f) => f,
                other => return Err(invalid(format!("unexpected aggregate {other}"))),
            },
            other => return Err(invalid(format!("unexpected aggregate {other}"))),
        };
        let name = function.func.name().to_owned();
        let AggregateFunctionParams {
            args,
            distinct,
            filter,
            order_by,
            ..
        } = &function.params;
        if !order_by.is_empty() {
            return Err(denied(format!(
                "{} may not take ORDER BY",
                name.to_uppercase()
            )));
        }
        let [arg] = args.as_slice() else {
            return Err(denied(format!(
                "{} with {} arguments cannot be answered with differential privacy",
                name.to_uppercase(),
                args.len()
            )));
        };
        check_expr(arg, schema)?;
        // FILTER (WHERE c) is CASE WHEN c THEN x END: the same rows count.
        let arg = match filter {
            None => arg.clone(),
            Some(condition) => {
                check_expr(condition, schema)?;
                when((**condition).clone(), arg.clone())
                    .end()
                    .map_err(invalid)?
            }
        };
        let constant = matches!(&arg, Expr::Literal(v, _) if !v.is_null());
        if *distinct && name != "count" {
            return Err(denied(format!(
                "DISTINCT is allowed only in COUNT(DISTINCT ...), not in {}",
                name.to_uppercase()
            )));
        }
        let key = arg.to_string();
        let range = |ranges: &Ranges| {
            range_of(&arg, ranges).ok_or_else(|| {
                denied(format!(
                    "{}({key}) needs the range of its values: declare privacy.bounds for the \
                     columns it reads (only +, -, *, / by a constant, CASE and COALESCE of \
                     bounded columns and constants have one)",
                    name.to_uppercase()
                ))
            })
        };
        let integral = arg.get_type(schema).is_ok_and(|t| t.is_integer());
        let count = |b: &mut Builder| {
            let expr = aggregate(count_udaf(), arg.clone(), false);
            b.stat(StatKind::Count, expr, key.clone(), 1, 1.0)
        };
        Ok(match name.as_str() {
            "count" if *distinct => {
                let expr = aggregate(count_udaf(), arg.clone(), true);
                Output::Count {
                    stat: self.stat(StatKind::Distinct, expr, key.clone(), 1, 1.0),
                }
            }
            "count" if constant => Output::Count {
                stat: self.stat(StatKind::Rows, count_rows(), "*".to_owned(), 1, 1.0),
            },
            "count" => Output::Count { stat: count(self) },
            "sum" => {
                let range = range(ranges)?;
                Output::Sum {
                    stat: self.sum(&arg, range, integral, &key, Shape::Plain),
                }
            }
            "avg" => {
                let range = range(ranges)?;
                Output::Mean {
                    sum: self.sum(&arg, range, integral, &key, Shape::Plain),
                    count: count(self),
                    range,
                }
            }
            "var" | "var_pop" | "stddev" | "stddev_pop" => {
                let range = range(ranges)?;
                let center = (range.low + range.high) / 2.0;
                let half = (range.high - range.low) / 2.0;
                Output::Variance {
                    count: count(self),
                    centered: self.sum(&arg, range, false, &key, Shape::Centered(center)),
                    squares: self.sum(&arg, range, false, &key, Shape::Squared(center)),
                    half,
                    population: name.ends_with("_pop"),
                    sqrt: name.starts_with("stddev"),
                }
            }
            other => {
                return Err(denied(format!(
                    "{} cannot be answered with differential privacy here; use COUNT, \
                     COUNT(DISTINCT), SUM, AVG, VAR or STDDEV",
                    other.to_uppercase()
                )));
            }
        })
    }
}
