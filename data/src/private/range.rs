//! The values an aggregated expression can take: the ranges `privacy.bounds`
//! gives columns, carried through arithmetic, casts, `CASE` and `COALESCE`;
//! every aggregated value is clamped to the range its sensitivity was
//! computed from.
//!
//! It must never give an expression a range narrower than the values it can
//! take while its columns are within their bounds, nor a range to one that
//! nothing bounds.

use std::collections::HashMap;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::expr::Case;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator};

use super::denied;
use crate::QueryError;

/// The values an expression can take: `[low, high]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Range {
    pub(super) low: f64,
    pub(super) high: f64,
}

impl Range {
    fn point(value: f64) -> Range {
        Range {
            low: value,
            high: value,
        }
    }

    fn hull(self, other: Range) -> Range {
        Range {
            low: self.low.min(other.low),
            high: self.high.max(other.high),
        }
    }

    fn finite(self) -> Option<Range> {
        (self.low.is_finite() && self.high.is_finite()).then_some(self)
    }
}

/// Where a column's values lie, if the policy bounds them.
pub(super) type Ranges = HashMap<datafusion::common::Column, Range>;

/// The range a bounded column is clamped to, in the column's own type:
/// integer columns to the integers inside the bounds.
pub(super) fn column_range(
    data_type: &DataType,
    bounds: &sandlet_privacy::Bounds,
    column: &str,
) -> Result<Range, QueryError> {
    if !data_type.is_numeric() {
        return Err(denied(format!(
            "privacy.bounds names column {column}, which is {data_type}, not a number"
        )));
    }
    if data_type.is_integer() {
        let (low, high) = (bounds.lower.ceil(), bounds.upper.floor());
        if low > high {
            return Err(denied(format!(
                "privacy.bounds of integer column {column} contain no integer"
            )));
        }
        Ok(Range { low, high })
    } else {
        Ok(Range {
            low: bounds.lower,
            high: bounds.upper,
        })
    }
}

/// The range of a numeric expression over rows whose bounded columns are
/// within their ranges; `None` when nothing bounds it. NULL has no range:
/// aggregates skip it, so it widens nothing (`Range` of a NULL-only branch
/// is left out of the hull).
pub(super) fn range_of(expr: &Expr, ranges: &Ranges) -> Option<Range> {
    let range = match expr {
        Expr::Column(column) => ranges.get(column).copied()?,
        Expr::Literal(value, _) => Range::point(number(value)?),
        Expr::Alias(alias) => range_of(&alias.expr, ranges)?,
        Expr::Cast(cast) => widen_to_integer(range_of(&cast.expr, ranges)?, cast.field.data_type()),
        Expr::TryCast(cast) => {
            widen_to_integer(range_of(&cast.expr, ranges)?, cast.field.data_type())
        }
        Expr::Negative(inner) => {
            let r = range_of(inner, ranges)?;
            Range {
                low: -r.high,
                high: -r.low,
            }
        }
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let (a, b) = (range_of(left, ranges)?, range_of(right, ranges)?);
            match op {
                Operator::Plus => Range {
                    low: a.low + b.low,
                    high: a.high + b.high,
                },
                Operator::Minus => Range {
                    low: a.low - b.high,
                    high: a.high - b.low,
                },
                Operator::Multiply => {
                    let products = [
                        a.low * b.low,
                        a.low * b.high,
                        a.high * b.low,
                        a.high * b.high,
                    ];
                    Range {
                        low: products.iter().copied().fold(f64::INFINITY, f64::min),
                        high: products.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                    }
                }
                Operator::Divide if b.low == b.high && b.low != 0.0 => {
                    let (x, y) = (a.low / b.low, a.high / b.low);
                    Range {
                        low: x.min(y),
                        high: x.max(y),
                    }
                }
                _ => return None,
            }
        }
        Expr::Case(Case {
            when_then_expr,
            else_expr,
            ..
        }) => {
            let mut hull: Option<Range> = None;
            let branches = when_then_expr
                .iter()
                .map(|(_, then)| &**then)
                .chain(else_expr.as_deref());
            for branch in branches {
                if matches!(branch, Expr::Literal(v, _) if v.is_null()) {
                    continue;
                }
                let r = range_of(branch, ranges)?;
                hull = Some(hull.map_or(r, |h| h.hull(r)));
            }
            hull?
        }
        Expr::ScalarFunction(function) if function.func.name() == "coalesce" => {
            let mut hull: Option<Range> = None;
            for arg in &function.args {
                let r = range_of(arg, ranges)?;
                hull = Some(hull.map_or(r, |h| h.hull(r)));
            }
            hull?
        }
        _ => return None,
    };
    range.finite()
}

/// A cast to an integer type truncates: the range grows to whole numbers.
fn widen_to_integer(range: Range, to: &DataType) -> Range {
    if to.is_integer() {
        Range {
            low: range.low.floor(),
            high: range.high.ceil(),
        }
    } else {
        range
    }
}

fn number(value: &ScalarValue) -> Option<f64> {
    match value {
        ScalarValue::Boolean(_) | ScalarValue::Utf8(_) | ScalarValue::Utf8View(_) => None,
        v if v.is_null() => None,
        v => v.cast_to(&DataType::Float64).ok().and_then(|f| match f {
            ScalarValue::Float64(Some(x)) => Some(x),
            _ => None,
        }),
    }
}
