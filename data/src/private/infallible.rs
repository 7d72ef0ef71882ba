//! The expressions a private query may use below its aggregate and in its
//! arguments: those that cannot fail on one row's value (so that an error
//! would tell whether that row exists) and read no other data.
//!
//! It must never let through an expression that can fail on a value or
//! read other data (a division by a column, a lossy `CAST`, a subquery).

use datafusion::arrow::datatypes::DataType;
use datafusion::common::DFSchema;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::{BinaryExpr, Expr, ExprSchemable, Operator};

use super::{denied, invalid};
use crate::QueryError;

/// Scalar functions a private query may use: none of them can fail on a
/// value, so an error can never tell one row apart.
const SAFE_FUNCTIONS: &[&str] = &[
    "coalesce",
    "nullif",
    "lower",
    "upper",
    "btrim",
    "ltrim",
    "rtrim",
    "character_length",
    "date_part",
];

/// Refuses expressions that could fail on one row's value (so that an
/// error would tell whether that row exists) or read other data.
pub(super) fn check_expr(expr: &Expr, schema: &DFSchema) -> Result<(), QueryError> {
    let mut refusal = None;
    expr.apply(|e| {
        let problem = match e {
            Expr::Column(_)
            | Expr::Literal(..)
            | Expr::Alias(_)
            | Expr::Not(_)
            | Expr::IsNull(_)
            | Expr::IsNotNull(_)
            | Expr::IsTrue(_)
            | Expr::IsFalse(_)
            | Expr::IsUnknown(_)
            | Expr::IsNotTrue(_)
            | Expr::IsNotFalse(_)
            | Expr::IsNotUnknown(_)
            | Expr::Negative(_)
            | Expr::Between(_)
            | Expr::Case(_)
            | Expr::TryCast(_) => None,
            Expr::Like(like) => (!matches!(*like.pattern, Expr::Literal(..)))
                .then(|| "LIKE takes a constant pattern here".to_owned()),
            Expr::InList(list) => (!list.list.iter().all(|e| matches!(e, Expr::Literal(..))))
                .then(|| "IN takes a list of constants here".to_owned()),
            Expr::BinaryExpr(BinaryExpr { op, right, .. }) => match op {
                Operator::Divide | Operator::Modulo => {
                    let nonzero = matches!(&**right, Expr::Literal(v, _)
                        if !v.is_null() && v.to_string().parse::<f64>().is_ok_and(|x| x != 0.0));
                    (!nonzero).then(|| {
                        format!("{op} only by a constant other than zero (a division by a row's zero would fail)")
                    })
                }
                Operator::Eq
                | Operator::NotEq
                | Operator::Lt
                | Operator::LtEq
                | Operator::Gt
                | Operator::GtEq
                | Operator::And
                | Operator::Or
                | Operator::Plus
                | Operator::Minus
                | Operator::Multiply
                | Operator::IsDistinctFrom
                | Operator::IsNotDistinctFrom
                | Operator::StringConcat => None,
                other => Some(format!("the operator {other}")),
            },
            Expr::Cast(cast) => match cast.expr.get_type(schema) {
                Ok(from) if lossless_cast(&from, cast.field.data_type()) => None,
                Ok(from) => Some(format!(
                    "CAST from {from} to {} can fail on a value; use TRY_CAST",
                    cast.field.data_type()
                )),
                Err(e) => Some(e.to_string()),
            },
            Expr::ScalarFunction(function) => {
                let name = function.func.name();
                (!SAFE_FUNCTIONS.contains(&name)).then(|| format!("the function {name}"))
            }
            Expr::ScalarSubquery(_)
            | Expr::Exists(_)
            | Expr::InSubquery(_)
            | Expr::SetComparison(_) => Some("a subquery".to_owned()),
            Expr::AggregateFunction(_) => Some("an aggregate inside another".to_owned()),
            Expr::WindowFunction(_) => Some("a window function".to_owned()),
            other => Some(format!("the expression {}", other.variant_name())),
        };
        if let Some(problem) = problem {
            refusal = Some(problem);
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    })
    .map_err(invalid)?;
    match refusal {
        None => Ok(()),
        Some(problem) => Err(denied(format!(
            "{problem} is not allowed in a query of a differentially private dataset: it can \
             fail on one row's value, or read other data"
        ))),
    }
}

/// Casts that cannot fail: widening numbers, and anything to text.
fn lossless_cast(from: &DataType, to: &DataType) -> bool {
    use DataType::*;
    if from == to || matches!(from, Null) {
        return true;
    }
    match to {
        Utf8 | LargeUtf8 | Utf8View => true,
        Float64 => from.is_numeric(),
        Float32 => matches!(from, Int8 | Int16 | UInt8 | UInt16 | Float16),
        Int64 => matches!(from, Int8 | Int16 | Int32 | UInt8 | UInt16 | UInt32),
        Int32 => matches!(from, Int8 | Int16 | UInt8 | UInt16),
        Decimal128(..) | Decimal256(..) => from.is_integer(),
        _ => false,
    }
}
