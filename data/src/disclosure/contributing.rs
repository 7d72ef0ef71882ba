//! Which rows feed an aggregate value: the condition its guard counts the
//! value's rows under (non-null arguments, `FILTER`, and `CASE`/`COALESCE`
//! arguments that take a row's value rather than a constant).
//!
//! It must never count, as a row that feeds a value, one that adds only a
//! constant to it: the zeros of `SUM(CASE WHEN <one person> THEN bmi ELSE 0
//! END)` are not people.

use datafusion::common::tree_node::TreeNode;
use datafusion::logical_expr::expr::{AggregateFunction, Case};
use datafusion::logical_expr::{Expr, lit};

/// Which rows feed an aggregate value: its arguments are not null, its
/// `FILTER` holds, and an argument that chooses between a row's value and a
/// constant (`CASE`, `COALESCE`) takes the row's value. `None` when that is
/// every row.
///
/// The last rule is why `SUM(CASE WHEN <one person> THEN bmi ELSE 0 END)`
/// counts as a value of one row: the zeros it adds are not people. `COUNT`
/// is exempt, since counting a constant for a row counts the row.
pub(super) fn contributing(function: &AggregateFunction) -> Option<Expr> {
    let params = &function.params;
    let mut conditions: Vec<Expr> = params
        .args
        .iter()
        .filter(|arg| !matches!(arg, Expr::Literal(..)))
        .map(|arg| arg.clone().is_not_null())
        .collect();
    if function.func.name() != "count" {
        conditions.extend(params.args.iter().filter_map(takes_row_value));
    }
    if let Some(filter) = &params.filter {
        conditions.push(filter.as_ref().clone());
    }
    conditions.into_iter().reduce(Expr::and)
}

/// For an expression that chooses, row by row, between a value read from
/// the row and a constant: the condition under which it takes the row's
/// value. `None` when it always does (or is of another form: arithmetic
/// that zeroes rows is not recognised, see docs/reference/queries.md).
fn takes_row_value(expr: &Expr) -> Option<Expr> {
    match expr {
        Expr::Alias(alias) => takes_row_value(&alias.expr),
        Expr::Cast(cast) => takes_row_value(&cast.expr),
        Expr::TryCast(cast) => takes_row_value(&cast.expr),
        Expr::Negative(inner) => takes_row_value(inner),
        Expr::Case(case) => {
            // Each branch becomes whether it takes a row's value.
            let branch = |e: Option<&Expr>| -> Expr {
                match e {
                    None => lit(false),
                    Some(e) if is_constant(e) => lit(false),
                    Some(e) => takes_row_value(e).unwrap_or_else(|| lit(true)),
                }
            };
            let when_then: Vec<(Box<Expr>, Box<Expr>)> = case
                .when_then_expr
                .iter()
                .map(|(when, then)| (when.clone(), Box::new(branch(Some(then)))))
                .collect();
            let otherwise = branch(case.else_expr.as_deref());
            let always = when_then
                .iter()
                .map(|(_, then)| then.as_ref())
                .chain([&otherwise])
                .all(|e| *e == lit(true));
            if always {
                return None;
            }
            // A row whose condition is null takes no branch's value either.
            Some(
                Expr::Case(Case {
                    expr: case.expr.clone(),
                    when_then_expr: when_then,
                    else_expr: Some(Box::new(otherwise)),
                })
                .is_true(),
            )
        }
        Expr::ScalarFunction(call) if matches!(call.func.name(), "coalesce" | "nvl" | "ifnull") => {
            let (first, rest) = call.args.split_first()?;
            (!is_constant(first) && rest.iter().all(is_constant))
                .then(|| first.clone().is_not_null())
        }
        _ => None,
    }
}

/// Whether an expression reads nothing of the row: no columns, no outer
/// references, no subqueries. (A volatile function such as `random()` is a
/// constant here: it tells nothing about the row.)
pub(super) fn is_constant(expr: &Expr) -> bool {
    !expr
        .exists(|e| {
            Ok(matches!(
                e,
                Expr::Column(_)
                    | Expr::OuterReferenceColumn(..)
                    | Expr::ScalarSubquery(_)
                    | Expr::Exists(_)
                    | Expr::InSubquery(_)
                    | Expr::SetComparison(_)
            ))
        })
        .unwrap_or(true)
}
