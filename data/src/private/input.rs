//! The steps between a private dataset's scan and its aggregate: only
//! projections, filters and aliases, with expressions that cannot fail on a
//! row; and the ranges of the columns they hand the aggregate.
//!
//! It must never pass a step that picks, repeats or combines rows (a
//! `LIMIT`, join, union, sort, `DISTINCT`, window or another aggregate)
//! below the aggregate.

use datafusion::logical_expr::LogicalPlan;

use sandlet_privacy::PrivacyPolicy;

use super::denied;
use super::infallible::check_expr;
use super::range::{Ranges, column_range, range_of};
use crate::QueryError;

/// Checks the steps between the scan and the aggregate, and returns the
/// ranges of the aggregate's input columns.
pub(super) fn input_ranges(
    plan: &LogicalPlan,
    policy: &PrivacyPolicy,
    name: &str,
) -> Result<Ranges, QueryError> {
    match plan {
        LogicalPlan::TableScan(scan) => {
            if scan.fetch.is_some() {
                return Err(denied("a LIMIT below the aggregate picks rows"));
            }
            for filter in &scan.filters {
                check_expr(filter, &scan.projected_schema)?;
            }
            let mut ranges = Ranges::new();
            for (qualifier, field) in scan.projected_schema.iter() {
                if let Some(bounds) = policy.bounds.get(field.name()) {
                    let range = column_range(field.data_type(), bounds, field.name())?;
                    ranges.insert(
                        datafusion::common::Column::new(qualifier.cloned(), field.name()),
                        range,
                    );
                }
            }
            Ok(ranges)
        }
        LogicalPlan::Filter(filter) => {
            check_expr(&filter.predicate, filter.input.schema())?;
            input_ranges(&filter.input, policy, name)
        }
        LogicalPlan::Projection(projection) => {
            let below = input_ranges(&projection.input, policy, name)?;
            let mut ranges = Ranges::new();
            for (expr, (qualifier, field)) in projection.expr.iter().zip(projection.schema.iter()) {
                check_expr(expr, projection.input.schema())?;
                if let Some(range) = range_of(expr, &below) {
                    ranges.insert(
                        datafusion::common::Column::new(qualifier.cloned(), field.name()),
                        range,
                    );
                }
            }
            Ok(ranges)
        }
        LogicalPlan::SubqueryAlias(alias) => {
            let below = input_ranges(&alias.input, policy, name)?;
            let mut ranges = Ranges::new();
            for ((old_q, old_f), (new_q, new_f)) in
                alias.input.schema().iter().zip(alias.schema.iter())
            {
                let old = datafusion::common::Column::new(old_q.cloned(), old_f.name());
                if let Some(range) = below.get(&old) {
                    ranges.insert(
                        datafusion::common::Column::new(new_q.cloned(), new_f.name()),
                        *range,
                    );
                }
            }
            Ok(ranges)
        }
        other => Err(denied(format!(
            "{} below the aggregate of dataset {name}: only projections and filters may stand \
             between a private dataset and its aggregate",
            node_kind(other)
        ))),
    }
}

fn node_kind(plan: &LogicalPlan) -> &'static str {
    match plan {
        LogicalPlan::Join(_) => "a join",
        LogicalPlan::Union(_) => "a union",
        LogicalPlan::Limit(_) => "a LIMIT",
        LogicalPlan::Sort(_) => "an ORDER BY",
        LogicalPlan::Distinct(_) => "a DISTINCT",
        LogicalPlan::Window(_) => "a window function",
        LogicalPlan::Aggregate(_) => "an aggregate",
        LogicalPlan::Values(_) => "VALUES",
        _ => "a plan step",
    }
}
