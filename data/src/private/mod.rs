//! Differentially private queries: the plan analysis for datasets with a
//! `privacy:` policy, and the noisy answer built from it.
//!
//! A query that reads such a dataset is answered only when its plan has this
//! shape (anything else is refused with a `privacy:` reason):
//!
//! - it reads the dataset once and no other table: no joins, self-joins,
//!   unions or subqueries that read data, so each person's rows reach the
//!   aggregate once (`maxRowsPerPerson` times at most);
//! - below its aggregate there are only row-wise steps (projections, filters,
//!   aliases) built from expressions that cannot fail on one row's value;
//! - the aggregate has plain `GROUP BY` keys (no grouping sets) and only
//!   COUNT, COUNT(DISTINCT), SUM, AVG, VAR and STDDEV, whose numeric
//!   arguments have a range the dataset's `bounds` fix;
//! - above the aggregate anything may follow (`HAVING`, `ORDER BY`, `LIMIT`,
//!   arithmetic on the aggregates): it only post-processes noisy values.
//!
//! The aggregate is run exactly, as integer statistics (row counts, counts
//! of values, sums of clamped values in fixed-point units); each statistic
//! gets discrete Laplace noise from [`sandlet_privacy::mechanism`], with
//! the query's ε split evenly between them; group keys are released only
//! when their noisy row count passes OpenDP's δ-threshold. The noisy table
//! then takes the aggregate's place, and the rest of the plan runs over it.
//! Every aggregated value is clamped to the range its sensitivity was
//! computed from (for a bounded column, its bounds; for an expression, the
//! range it has while its columns are within theirs), inside the fixed-point
//! sum ([`super::fixedsum`]). This module must never release a statistic whose
//! sensitivity it did not derive from the plan, nor let a query read a
//! private dataset's rows by any path but the one aggregate it noises.
//!
//! Its parts: [`input`] checks the row-wise steps below the aggregate
//! (with [`infallible`], the expressions they may use) and derives the
//! [`range`] of every value the aggregate reads; [`stats`] turns each
//! aggregate into the integer statistics it is computed from, with their
//! sensitivities; [`release`] adds the noise and puts the noisy table in
//! the aggregate's place. This file finds the private dataset and its
//! aggregate, and holds the query between its analysis and its release.

use std::sync::Arc;

use datafusion::common::DFSchemaRef;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::{Aggregate, Expr, LogicalPlan, LogicalPlanBuilder};

use sandlet_privacy::{Epsilon, PrivacyPolicy};

use super::QueryError;
use super::table::DatasetTable;

mod infallible;
mod input;
mod range;
mod release;
mod stats;

#[cfg(test)]
mod tests;

use infallible::check_expr;
use input::input_ranges;
use stats::{Builder, Output, Stat, StatKind, count_rows};

fn denied(message: impl std::fmt::Display) -> QueryError {
    QueryError::Denied(format!("privacy: {message}"))
}

fn invalid(error: impl std::fmt::Display) -> QueryError {
    QueryError::Invalid(error.to_string())
}

/// A private query, ready to be charged and run.
#[derive(Debug)]
pub(crate) struct Private {
    /// The private dataset's index in the run's grants.
    pub dataset: usize,
    /// The dataset's name and policy.
    pub name: String,
    pub policy: PrivacyPolicy,
    /// The whole plan as planned: its aggregate is replaced by the noisy
    /// table once there is one.
    plan: LogicalPlan,
    /// The aggregate run exactly: the group keys, then one column per
    /// statistic.
    pub exact: LogicalPlan,
    keys: usize,
    stats: Vec<Stat>,
    outputs: Vec<Output>,
    /// The aggregate's output schema, which the noisy table takes.
    schema: DFSchemaRef,
}

/// Finds the private dataset a plan reads, if any, and checks the plan's
/// shape. `Ok(None)`: the plan reads no private dataset.
pub(crate) fn analyse(
    plan: &LogicalPlan,
    tables: &[Arc<DatasetTable>],
) -> Result<Option<Private>, QueryError> {
    let mut scans = Vec::new();
    plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            scans.push(scan.clone());
        }
        Ok(TreeNodeRecursion::Continue)
    })
    .map_err(invalid)?;
    let mut private = None;
    for scan in &scans {
        let provider = source_as_provider(&scan.source).map_err(invalid)?;
        if let Some(table) = provider.as_ref().downcast_ref::<DatasetTable>()
            && let Some(policy) = &table.config.policy.privacy
        {
            private = Some((table.index, policy.clone()));
        }
    }
    let Some((dataset, policy)) = private else {
        return Ok(None);
    };
    let name = tables[dataset].name().to_owned();
    if let Some(reason) = tables[dataset].unavailable_reason() {
        return Err(QueryError::Invalid(reason));
    }
    if scans.len() != 1 {
        return Err(denied(format!(
            "dataset {name} answers differentially private aggregates of itself alone: a query \
             that reads it reads it once and no other table (no joins, self-joins, unions or \
             subqueries), so that one person's rows count once"
        )));
    }
    let Some(aggregate) = lowest_aggregate(plan) else {
        return Err(denied(format!(
            "dataset {name} answers only differentially private aggregates: COUNT, \
             COUNT(DISTINCT), SUM, AVG, VAR or STDDEV, with GROUP BY keys if any"
        )));
    };
    let ranges = input_ranges(&aggregate.input, &policy, &name)?;
    let input = aggregate.input.as_ref().clone();
    let input_schema = input.schema().clone();

    for key in &aggregate.group_expr {
        if matches!(key, Expr::GroupingSet(_)) {
            return Err(denied(
                "GROUPING SETS, ROLLUP and CUBE count each row in several groups; group by plain keys",
            ));
        }
        check_expr(key, &input_schema)?;
    }

    let mut builder = Builder {
        stats: Vec::new(),
        rows: policy.max_rows_per_person,
    };
    let mut outputs = Vec::with_capacity(aggregate.aggr_expr.len());
    for expr in &aggregate.aggr_expr {
        outputs.push(builder.output(expr, &input_schema, &ranges)?);
    }
    let grouped = !aggregate.group_expr.is_empty();
    if grouped {
        // The keys' test needs the rows of each group.
        builder.stat(StatKind::Rows, count_rows(), "*".to_owned(), 1, 1.0);
        if policy.delta <= 0.0 {
            return Err(denied(format!(
                "GROUP BY on dataset {name} would show which groups exist, and its policy sets no \
                 privacy.delta to hide the small ones with"
            )));
        }
    }
    let stats = builder.stats;
    let exact = LogicalPlanBuilder::from(input)
        .aggregate(
            aggregate.group_expr.clone(),
            stats.iter().map(|s| s.expr.clone()).collect::<Vec<_>>(),
        )
        .and_then(LogicalPlanBuilder::build)
        .map_err(invalid)?;
    Ok(Some(Private {
        dataset,
        name,
        policy,
        plan: plan.clone(),
        exact,
        keys: aggregate.group_expr.len(),
        stats,
        outputs,
        schema: aggregate.schema.clone(),
    }))
}

/// The aggregate nearest the scan: the one that reads the dataset's rows.
fn lowest_aggregate(plan: &LogicalPlan) -> Option<&Aggregate> {
    for input in plan.inputs() {
        if let Some(found) = lowest_aggregate(input) {
            return Some(found);
        }
    }
    match plan {
        LogicalPlan::Aggregate(aggregate) if reads_data(&aggregate.input) => Some(aggregate),
        _ => None,
    }
}

fn reads_data(plan: &LogicalPlan) -> bool {
    plan.exists(|node| Ok(matches!(node, LogicalPlan::TableScan(_))))
        .unwrap_or(true)
}

impl Private {
    /// The ε a query spends: what the guest asked for, at most `perQuery`;
    /// `perQuery` when it asked for nothing.
    pub fn epsilon(&self, asked: Option<f64>) -> Result<Epsilon, QueryError> {
        let Some(asked) = asked else {
            return Ok(self.policy.per_query);
        };
        let epsilon = Epsilon::from_f64(asked)
            .map_err(|e| QueryError::Invalid(format!("the query's ε {e}")))?;
        if epsilon > self.policy.per_query {
            return Err(denied(format!(
                "this query asks for ε {epsilon}, and perQuery of dataset {} allows at most {}",
                self.name, self.policy.per_query
            )));
        }
        Ok(epsilon)
    }
}
