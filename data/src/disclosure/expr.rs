//! The expressions of one plan node: which datasets' row-level values flow
//! into each (through its column references, outer references and
//! subqueries), and its subqueries checked and guarded as plans of their own.
//!
//! It must never let a column reference it cannot place carry less than
//! everything in scope, nor hand a subquery's row ids to the node above.

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchema, DataFusionError};
use datafusion::logical_expr::expr::{Exists, InSubquery, SetComparison};
use datafusion::logical_expr::{Expr, Subquery};

use super::{Checker, Sources, Taint, invalid, without_row_ids};
use crate::QueryError;

/// Where column references in an expression resolve: the inputs of the node
/// that holds it.
type Scope<'s> = [(&'s DFSchema, &'s Taint)];

/// An expression after checking.
pub(super) struct Checked1 {
    pub(super) expr: Expr,
    /// Datasets whose row-level values flow into its value.
    pub(super) taint: Sources,
    /// Datasets its subqueries read.
    pub(super) reads: Sources,
}

impl Checker<'_> {
    /// Checks an expression of a node whose inputs are `scope`: follows its
    /// column references and checks (and guards) its subqueries.
    pub(super) fn expr(
        &self,
        expr: &Expr,
        scope: &Scope<'_>,
        outer: &Sources,
    ) -> Result<Checked1, QueryError> {
        let mut taint = Sources::new();
        let mut reads = Sources::new();
        let mut failure: Option<QueryError> = None;
        // What a subquery's outer references may carry: anything in scope.
        let mut inner_outer = outer.clone();
        for (_, t) in scope {
            inner_outer.extend(t.everything());
        }
        let subquery = |sq: &Subquery,
                        taint: &mut Sources,
                        reads: &mut Sources|
         -> Result<Subquery, QueryError> {
            let (plan, t) = self.plan(&sq.subquery, &inner_outer)?;
            // A subquery answers with its own columns only.
            let plan = without_row_ids(plan)?;
            taint.extend(t.everything());
            reads.extend(&t.all);
            Ok(Subquery {
                subquery: Arc::new(plan),
                outer_ref_columns: sq.outer_ref_columns.clone(),
                spans: sq.spans.clone(),
            })
        };
        let result = expr.clone().transform_down(|e| {
            let rewritten = match &e {
                Expr::Column(column) => {
                    taint.extend(resolve(column, scope));
                    None
                }
                Expr::OuterReferenceColumn(_, _) => {
                    taint.extend(outer);
                    None
                }
                Expr::ScalarSubquery(sq) => {
                    Some(subquery(sq, &mut taint, &mut reads).map(Expr::ScalarSubquery))
                }
                Expr::Exists(exists) => Some(
                    subquery(&exists.subquery, &mut taint, &mut reads).map(|subquery| {
                        Expr::Exists(Exists {
                            subquery,
                            negated: exists.negated,
                        })
                    }),
                ),
                Expr::InSubquery(in_subquery) => Some(
                    subquery(&in_subquery.subquery, &mut taint, &mut reads).map(|subquery| {
                        Expr::InSubquery(InSubquery {
                            expr: in_subquery.expr.clone(),
                            subquery,
                            negated: in_subquery.negated,
                        })
                    }),
                ),
                Expr::SetComparison(comparison) => Some(
                    subquery(&comparison.subquery, &mut taint, &mut reads).map(|subquery| {
                        Expr::SetComparison(SetComparison {
                            subquery,
                            ..comparison.clone()
                        })
                    }),
                ),
                _ => None,
            };
            match rewritten {
                None => Ok(Transformed::no(e)),
                Some(Ok(new)) => Ok(Transformed::new(new, true, TreeNodeRecursion::Continue)),
                Some(Err(error)) => {
                    failure = Some(error);
                    Err(DataFusionError::Execution(
                        "policy check stopped".to_owned(),
                    ))
                }
            }
        });
        match (result, failure) {
            (_, Some(error)) => Err(error),
            (Err(error), None) => Err(invalid(error)),
            (Ok(transformed), None) => Ok(Checked1 {
                expr: transformed.data,
                taint,
                reads,
            }),
        }
    }
}

/// What a column reference carries: the matching input column's taint, or,
/// when it cannot be placed, everything in scope.
fn resolve(column: &Column, scope: &Scope<'_>) -> Sources {
    for (schema, taint) in scope {
        if let Some(col) = schema
            .maybe_index_of_column(column)
            .and_then(|i| taint.cols.get(i))
        {
            return col.clone();
        }
    }
    let mut all = Sources::new();
    for (_, taint) in scope {
        all.extend(taint.everything());
    }
    all
}
