//! Disclosure control on the logical plan: which queries may run, and the
//! guards that make the thresholds hold while they do.
//!
//! The checker walks the plan that DataFusion made from the guest's SQL
//! (never the SQL text), after a [`Decorrelator`] has turned subquery
//! expressions (`EXISTS`, `IN`, scalar subqueries) into the joins they mean,
//! and follows, for every relation in it, which datasets' individual rows
//! it still carries:
//!
//! - `rows`: datasets whose individual rows decide which rows this relation
//!   has (a scan, and everything that filters, joins or sorts one);
//! - `cols[i]`: datasets whose row-level values flow into column `i`.
//!
//! **Every aggregate over dataset rows is guarded, wherever it stands**: in
//! the output, in a subquery in `FROM`, in what was a `WHERE`, `HAVING` or
//! join condition's subquery. It gets a [`GuardNode`] that checks
//! `minGroupSize` and `minRows` while the query runs, and above the guard
//! its groups and values are no longer row-level. When the plan can repeat
//! rows or nests aggregates, every scan carries row ids and the guards count
//! distinct source rows ([`super::rowset`]); an aggregate passes its groups'
//! row sets on, so the one above counts the people behind its values, not
//! its groups. Rows that decide what an aggregate reads must be counted by
//! it: a semi-join on row-level values (whose rows the aggregate never sees)
//! is refused.
//!
//! Under `aggregatesOnly`, the query is refused when its output still carries
//! rows or values of such a dataset, when any aggregate over its rows is not
//! disclosure-safe (only COUNT, COUNT DISTINCT, SUM, AVG, VAR and STDDEV
//! are), when a window function, `DISTINCT ON` or a `LIMIT`/`OFFSET` (top-k)
//! chooses among its rows. Whatever the policy, only scans of granted
//! datasets (as [`DatasetTable`]s, which show only allowed columns) and plain
//! query operators may appear: no DDL, DML, `COPY`, `EXPLAIN`, recursive
//! queries or extension nodes.
//!
//! It must never pass a plan in which a dataset's rows reach an aggregate,
//! a limit or the output by a path it did not follow: unknown plan nodes are
//! refused, not waved through.
//!
//! Its parts: [`decorrelator`] turns subquery expressions into joins;
//! [`walk`] follows rows and values through each kind of plan node;
//! [`expr`] follows them through the expressions a node holds, into
//! subqueries; [`aggregate`] checks and guards every aggregate over dataset
//! rows, counting the rows [`contributing`] says feed each value. This file
//! holds what they share and the checks over the whole plan (reserved
//! column names, whether rows can repeat).

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::sync::Arc;

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchema, DataFusionError};
use datafusion::logical_expr::{Distinct, Expr, LogicalPlan, Projection};

use super::rowset::is_rid;
use super::table::DatasetTable;
use super::{DisclosurePolicy, QueryError};

mod aggregate;
mod contributing;
mod decorrelator;
mod expr;
mod walk;

#[cfg(test)]
mod tests;

use aggregate::SAFE_LIST;
pub(crate) use decorrelator::Decorrelator;

/// Datasets, by their index in the run's grant list.
type Sources = BTreeSet<usize>;

/// What the checker knows about one relation.
#[derive(Debug, Clone, Default)]
struct Taint {
    rows: Sources,
    cols: Vec<Sources>,
    /// Every dataset read anywhere below, subqueries included.
    all: Sources,
}

impl Taint {
    fn everything(&self) -> Sources {
        let mut all = self.rows.clone();
        for col in &self.cols {
            all.extend(col);
        }
        all
    }
}

/// A plan that may run, with its guards in place.
#[derive(Debug)]
pub(crate) struct Checked {
    pub plan: LogicalPlan,
    /// The smallest `maxResultRows` of the datasets the query reads.
    pub max_result_rows: u64,
}

/// Checks `plan` against the policies of `tables` (the run's grants, by
/// index) and returns it with guards added.
pub(crate) fn check(
    plan: &LogicalPlan,
    tables: &[Arc<DatasetTable>],
) -> Result<Checked, QueryError> {
    if let Some(name) = reserved_name(plan) {
        return Err(QueryError::Invalid(format!(
            "column names starting with {RESERVED_PREFIX} are reserved for the station, \
             and the query names {name}"
        )));
    }
    let checker = Checker {
        tables,
        instances: RefCell::new(Vec::new()),
        row_ids: may_repeat_rows(plan),
    };
    let (plan, taint) = checker.plan(plan, &Sources::new())?;
    let plan = without_row_ids(plan)?;
    let leaked: Sources = taint
        .everything()
        .into_iter()
        .filter(|&i| checker.policy(i).aggregates_only)
        .collect();
    if !leaked.is_empty() {
        return Err(QueryError::Denied(format!(
            "aggregatesOnly: this query returns row-level values of {}; every output column \
             must be a GROUP BY key or an aggregate ({SAFE_LIST})",
            checker.names(&leaked)
        )));
    }
    // The smallest limit of the datasets read; of every granted one when
    // the query reads none.
    let max_result_rows = if taint.all.is_empty() {
        tables.iter().map(|t| t.config.policy.max_result_rows).min()
    } else {
        taint
            .all
            .iter()
            .map(|&i| checker.policy(i).max_result_rows)
            .min()
    }
    .unwrap_or(super::config::DEFAULT_MAX_RESULT_ROWS);
    Ok(Checked {
        plan,
        max_result_rows,
    })
}

struct Checker<'a> {
    tables: &'a [Arc<DatasetTable>],
    /// For each dataset scan in the query (its instance number), the
    /// granted dataset it reads.
    instances: RefCell<Vec<usize>>,
    /// Whether scans carry row ids: only where an operator can repeat or
    /// pad rows; otherwise rows counted are distinct source rows already.
    row_ids: bool,
}

fn denied(message: String) -> QueryError {
    QueryError::Denied(message)
}

fn invalid(error: DataFusionError) -> QueryError {
    QueryError::Invalid(error.to_string())
}

impl Checker<'_> {
    /// The policy of the dataset that scan `instance` reads.
    fn policy(&self, instance: usize) -> &DisclosurePolicy {
        let table = self.instances.borrow()[instance];
        &self.tables[table].config.policy
    }

    fn protected(&self, sources: &Sources) -> bool {
        sources.iter().any(|&i| self.policy(i).aggregates_only)
    }

    fn protected_names(&self, sources: &Sources) -> String {
        let protected: Sources = sources
            .iter()
            .copied()
            .filter(|&i| self.policy(i).aggregates_only)
            .collect();
        self.names(&protected)
    }

    fn names(&self, sources: &Sources) -> String {
        let instances = self.instances.borrow();
        let tables: BTreeSet<usize> = sources.iter().map(|&i| instances[i]).collect();
        let names: Vec<&str> = tables.iter().map(|&t| self.tables[t].name()).collect();
        match names.as_slice() {
            [] => "no dataset".to_owned(),
            [one] => (*one).to_owned(),
            [init @ .., last] => format!("{} and {last}", init.join(", ")),
        }
    }
}

/// Whether any operator in the query can repeat a source row or pad a group
/// with rows from elsewhere: joins, unions, grouping sets, unnesting and
/// subquery expressions (whose one value repeats on every row), or whether
/// one aggregate reads another's groups (and so would count groups, not
/// rows). Without them, the rows an aggregate reads are distinct rows of
/// its one scan, and the guard's row counts are exact without row ids.
fn may_repeat_rows(plan: &LogicalPlan) -> bool {
    let mut repeats = false;
    let mut aggregates = 0;
    let _ = plan.apply_with_subqueries(|node| {
        if matches!(
            node,
            LogicalPlan::Aggregate(_) | LogicalPlan::Distinct(Distinct::All(_))
        ) {
            aggregates += 1;
        }
        let found = aggregates > 1
            || match node {
                LogicalPlan::Join(_)
                | LogicalPlan::Union(_)
                | LogicalPlan::Unnest(_)
                | LogicalPlan::RecursiveQuery(_)
                | LogicalPlan::Subquery(_) => true,
                LogicalPlan::Aggregate(aggregate) => aggregate
                    .group_expr
                    .iter()
                    .any(|e| matches!(e, Expr::GroupingSet(_))),
                _ => false,
            }
            || node.expressions().iter().any(|e| {
                e.exists(|e| {
                    Ok(matches!(
                        e,
                        Expr::ScalarSubquery(_)
                            | Expr::Exists(_)
                            | Expr::InSubquery(_)
                            | Expr::SetComparison(_)
                    ))
                })
                .unwrap_or(true)
            });
        repeats |= found;
        Ok(if found {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    });
    repeats
}

/// Names the station gives its own columns (row ids, row sets, guard
/// counts); a guest's alias of that form could pass for one.
const RESERVED_PREFIX: &str = "__sandlet_";

/// The first column name in the plan (subqueries included) that starts
/// with [`RESERVED_PREFIX`].
fn reserved_name(plan: &LogicalPlan) -> Option<String> {
    let mut found = None;
    let _ = plan.apply_with_subqueries(|node| {
        found = node
            .schema()
            .fields()
            .iter()
            .find(|f| f.name().starts_with(RESERVED_PREFIX))
            .map(|f| f.name().clone());
        Ok(if found.is_some() {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    });
    found
}

/// The row-id (and row-set) columns of a schema.
fn row_id_columns(schema: &DFSchema) -> Vec<Column> {
    schema
        .iter()
        .filter(|(_, field)| is_rid(field.name()))
        .map(|(qualifier, field)| Column::new(qualifier.cloned(), field.name()))
        .collect()
}

/// The query's own output: row ids, if they reached the top, are dropped.
fn without_row_ids(plan: LogicalPlan) -> Result<LogicalPlan, QueryError> {
    if row_id_columns(plan.schema()).is_empty() {
        return Ok(plan);
    }
    let columns = plan
        .schema()
        .iter()
        .filter(|(_, field)| !is_rid(field.name()))
        .map(|(qualifier, field)| Expr::Column(Column::new(qualifier.cloned(), field.name())))
        .collect();
    Projection::try_new(columns, Arc::new(plan))
        .map(LogicalPlan::Projection)
        .map_err(invalid)
}
