//! Aggregates over dataset rows, wherever they stand: their functions
//! checked against `aggregatesOnly` (only COUNT, COUNT DISTINCT, SUM, AVG,
//! VAR and STDDEV), the rows that decide or feed them counted by them, and a
//! [`GuardNode`] on each that checks `minGroupSize` and `minRows` while the
//! query runs (plain counts, or per-scan row sets that it passes on to the
//! aggregate above).
//!
//! It must never leave an aggregate over dataset rows without a guard, nor
//! let rows it cannot count decide which rows an aggregate reads.

use std::sync::Arc;

use datafusion::common::{Column, DataFusionError, TableReference};
use datafusion::functions_aggregate::count::count_udaf;
use datafusion::logical_expr::expr::{AggregateFunction, AggregateFunctionParams};
use datafusion::logical_expr::{Aggregate, AggregateUDF, Expr, LogicalPlan, Projection, lit};

use super::contributing::contributing;
use super::{Checker, Sources, Taint, denied, invalid, row_id_columns};
use crate::guard::{GuardNode, GuardSpec, PlainCounts, SetCheck, SetKind};
use crate::rowset::{RID_PREFIX, RowSet};
use crate::{DisclosurePolicy, QueryError};

/// Aggregate functions that summarise rather than return an individual's
/// value (DataFusion's canonical names; aliases resolve to these).
const SAFE_AGGREGATES: &[&str] = &[
    "count",
    "sum",
    "avg",
    "var",
    "var_pop",
    "stddev",
    "stddev_pop",
];

pub(super) const SAFE_LIST: &str =
    "COUNT, COUNT(DISTINCT), SUM, AVG, VAR_SAMP, VAR_POP, STDDEV_SAMP, STDDEV_POP";

/// The guard columns added to a terminal aggregate.
const GROUP_ROWS: &str = "__sandlet_group_rows";
const VALUE_ROWS: &str = "__sandlet_value_rows_";
const ROW_SET: &str = "__sandlet_row_set_";

impl Checker<'_> {
    /// An aggregate over dataset rows: its functions are checked and it is
    /// guarded, wherever it stands in the plan (the query's output, a
    /// subquery in `FROM`, `WHERE`, a join or `HAVING`). Above the guard its
    /// groups and values summarise enough rows and are no longer row-level.
    /// In a plan with row ids it passes its groups' row sets on under the
    /// row-id column names, so that an aggregate above it counts the source
    /// rows behind its values, not its groups.
    pub(super) fn aggregate(
        &self,
        aggregate: &Aggregate,
        outer: &Sources,
    ) -> Result<(LogicalPlan, Taint), QueryError> {
        let (input, input_taint) = self.plan(&aggregate.input, outer)?;
        let mut reads = input_taint.all.clone();
        let scope = [(input.schema().as_ref(), &input_taint)];
        // The scans whose row ids reach this aggregate.
        let rids: Vec<(Column, usize)> = row_id_columns(input.schema())
            .into_iter()
            .filter_map(|c| {
                let instance = c.name.strip_prefix(RID_PREFIX)?.parse().ok()?;
                Some((c, instance))
            })
            .collect();

        let mut group_taint = Sources::new();
        let mut group = Vec::with_capacity(aggregate.group_expr.len());
        for expr in &aggregate.group_expr {
            let checked = self.expr(expr, &scope, outer)?;
            group_taint.extend(&checked.taint);
            reads.extend(&checked.reads);
            group.push(checked.expr);
        }
        if self.row_ids {
            // Rows that decide which rows this aggregate reads, or how it
            // groups them, must be among the rows it counts.
            let mut deciding = input_taint.rows.clone();
            deciding.extend(&group_taint);
            let uncounted = self.uncounted(&deciding, &rids);
            if !uncounted.is_empty() {
                return Err(denied(format!(
                    "aggregatesOnly: which rows an aggregate of this query reads depends on \
                     individual rows of {} that it cannot count (a row-level EXISTS, IN, \
                     INTERSECT, EXCEPT, semi-join or scalar subquery); aggregate those rows \
                     first (GROUP BY) or join them",
                    self.names(&uncounted)
                )));
            }
        }

        let mut aggr = Vec::with_capacity(aggregate.aggr_expr.len());
        // For each aggregate value that does not read every row of its
        // group: how to count the rows it does read, in all (a plan without
        // row ids) or per scan (with them).
        let mut value_counts = Vec::new();
        let mut value_sets: Vec<(Expr, usize)> = Vec::new();
        for expr in &aggregate.aggr_expr {
            let checked = self.expr(expr, &scope, outer)?;
            reads.extend(&checked.reads);
            let Some(function) = aggregate_function(&checked.expr) else {
                return Err(invalid(DataFusionError::Plan(format!(
                    "unexpected aggregate expression {}",
                    checked.expr
                ))));
            };
            let mut read = input_taint.rows.clone();
            read.extend(&checked.taint);
            if self.protected(&read) {
                check_safe(function, &self.protected_names(&read))?;
            }
            if self.row_ids {
                let uncounted = self.uncounted(&checked.taint, &rids);
                if !uncounted.is_empty() {
                    return Err(denied(format!(
                        "aggregatesOnly: an aggregate of this query reads row-level values \
                         that a subquery takes from {}; aggregate them in a subquery or CTE \
                         and join it",
                        self.names(&uncounted)
                    )));
                }
            }
            if let Some(condition) = contributing(function) {
                if self.row_ids {
                    for (column, instance) in &rids {
                        if !checked.taint.contains(instance) {
                            continue;
                        }
                        // AVG, VAR and COUNT of one column share one set.
                        let set = self.rowset(column, *instance, Some(condition.clone()));
                        if !value_sets.iter().any(|(e, _)| *e == set) {
                            value_sets.push((set, *instance));
                        }
                    }
                } else {
                    value_counts.push(count_where(condition));
                }
            }
            aggr.push(checked.expr);
        }

        if reads.is_empty() {
            // Over constants only (VALUES): nothing to guard.
            let plan = LogicalPlan::Aggregate(
                Aggregate::try_new(Arc::new(input), group, aggr).map_err(invalid)?,
            );
            let width = plan.schema().fields().len();
            let taint = Taint {
                cols: vec![Sources::new(); width],
                ..Taint::default()
            };
            return Ok((plan, taint));
        }

        let mut sets: Vec<(Expr, SetCheck)> = Vec::new();
        for (column, instance) in &rids {
            sets.push((
                self.rowset(column, *instance, None),
                self.set_check(*instance, SetKind::Group),
            ));
        }
        for (expr, instance) in value_sets {
            // A value may read none of its group's rows of a scan only when
            // the group has none of them either.
            let group = rids.iter().position(|(_, r)| *r == instance);
            sets.push((expr, self.set_check(instance, SetKind::Value { group })));
        }
        let pass_on: Vec<String> = rids.iter().map(|(c, _)| c.name.clone()).collect();
        let guarded = self.guard(input, group, aggr, value_counts, sets, &reads, &pass_on)?;
        let taint = Taint {
            rows: Sources::new(),
            cols: vec![Sources::new(); guarded.schema().fields().len()],
            all: reads,
        };
        Ok((guarded, taint))
    }

    /// The datasets among `sources` that protect their rows
    /// (`aggregatesOnly`) and whose row ids do not reach an aggregate.
    fn uncounted(&self, sources: &Sources, rids: &[(Column, usize)]) -> Sources {
        sources
            .iter()
            .copied()
            .filter(|i| self.policy(*i).aggregates_only && !rids.iter().any(|(_, r)| r == i))
            .collect()
    }

    /// `sandlet_rowset(rid)` for one scan, capped at what its policy needs.
    fn rowset(&self, column: &Column, instance: usize, filter: Option<Expr>) -> Expr {
        let policy = self.policy(instance);
        let udaf = Arc::new(AggregateUDF::from(RowSet::new(
            policy.min_group_size.max(policy.min_rows),
        )));
        Expr::AggregateFunction(AggregateFunction::new_udf(
            udaf,
            vec![Expr::Column(column.clone())],
            false,
            filter.map(Box::new),
            Vec::new(),
            None,
        ))
    }

    /// The check of one row set of scan `instance`.
    fn set_check(&self, instance: usize, kind: SetKind) -> SetCheck {
        let policy = self.policy(instance);
        SetCheck {
            column: 0,
            kind,
            min_group_size: policy.min_group_size,
            min_rows: policy.min_rows,
        }
    }

    /// Rebuilds an aggregate with its guard counts and row sets, puts the
    /// guard above it and projects them away again, except the group row
    /// sets named in `pass_on` (in the order of the group sets in `sets`),
    /// which an aggregate above counts.
    #[allow(clippy::too_many_arguments)]
    fn guard(
        &self,
        input: LogicalPlan,
        group: Vec<Expr>,
        mut aggr: Vec<Expr>,
        value_counts: Vec<Expr>,
        sets: Vec<(Expr, SetCheck)>,
        reads: &Sources,
        pass_on: &[String],
    ) -> Result<LogicalPlan, QueryError> {
        // With row ids the sets count source rows; plain counts would count
        // the rows of a subquery's groups instead, and are not made.
        let plain = !self.row_ids;
        if plain {
            aggr.push(
                Expr::AggregateFunction(AggregateFunction::new_udf(
                    count_udaf(),
                    vec![lit(1i64)],
                    false,
                    None,
                    Vec::new(),
                    None,
                ))
                .alias(GROUP_ROWS),
            );
        }
        let values = value_counts.len();
        for (i, count) in value_counts.into_iter().enumerate() {
            aggr.push(count.alias(format!("{VALUE_ROWS}{i}")));
        }
        let set_count = sets.len();
        let mut checks = Vec::with_capacity(set_count);
        for (i, (expr, check)) in sets.into_iter().enumerate() {
            aggr.push(expr.alias(format!("{ROW_SET}{i}")));
            checks.push(check);
        }
        let counted = Aggregate::try_new(Arc::new(input), group, aggr).map_err(invalid)?;
        let width = counted.schema.fields().len();
        // The aggregate as written: every column before the guard's own.
        let written = width - set_count - values - usize::from(plain);
        let first_set = width - set_count;
        for (i, check) in checks.iter_mut().enumerate() {
            check.column = first_set + i;
            // Group sets come first: a value's group set moves with them.
            if let SetKind::Value { group: Some(g) } = &mut check.kind {
                *g += first_set;
            }
        }
        let policies: Vec<&DisclosurePolicy> = reads.iter().map(|&i| self.policy(i)).collect();
        let spec = GuardSpec {
            plain: plain.then(|| PlainCounts {
                group_rows: written,
                value_rows: (written + 1..written + 1 + values).collect(),
            }),
            min_group_size: policies.iter().map(|p| p.min_group_size).max().unwrap_or(0),
            min_rows: policies.iter().map(|p| p.min_rows).max().unwrap_or(0),
            datasets: self.names(reads),
            sets: checks,
        };
        let guarded = GuardNode::plan(LogicalPlan::Aggregate(counted), spec);
        // The aggregate as written, then the row sets it passes on.
        let fields: Vec<(Option<TableReference>, String)> = guarded
            .schema()
            .iter()
            .map(|(qualifier, field)| (qualifier.cloned(), field.name().clone()))
            .collect();
        let mut columns: Vec<Expr> = fields
            .iter()
            .take(written)
            .map(|(qualifier, name)| Expr::Column(Column::new(qualifier.clone(), name)))
            .collect();
        for (i, name) in pass_on.iter().enumerate() {
            let (qualifier, set) = &fields[first_set + i];
            columns.push(Expr::Column(Column::new(qualifier.clone(), set)).alias(name));
        }
        Projection::try_new(columns, Arc::new(guarded))
            .map(LogicalPlan::Projection)
            .map_err(invalid)
    }
}

pub(super) fn aggregate_function(expr: &Expr) -> Option<&AggregateFunction> {
    match expr {
        Expr::AggregateFunction(function) => Some(function),
        Expr::Alias(alias) => aggregate_function(&alias.expr),
        _ => None,
    }
}

fn check_safe(function: &AggregateFunction, datasets: &str) -> Result<(), QueryError> {
    let name = function.func.name();
    if !SAFE_AGGREGATES.contains(&name) {
        return Err(denied(format!(
            "aggregatesOnly: {} can return an individual's value and may not read rows of \
             {datasets}; the disclosure-safe aggregates are {SAFE_LIST}",
            name.to_uppercase()
        )));
    }
    let AggregateFunctionParams {
        distinct, order_by, ..
    } = &function.params;
    if *distinct && name != "count" {
        return Err(denied(format!(
            "aggregatesOnly: DISTINCT is allowed only in COUNT(DISTINCT ...), not in {}",
            name.to_uppercase()
        )));
    }
    if !order_by.is_empty() {
        return Err(denied(format!(
            "aggregatesOnly: {} may not take ORDER BY",
            name.to_uppercase()
        )));
    }
    Ok(())
}

/// `COUNT(*) FILTER (WHERE condition)`: the rows that feed a value.
fn count_where(condition: Expr) -> Expr {
    Expr::AggregateFunction(AggregateFunction::new_udf(
        count_udaf(),
        vec![lit(1i64)],
        false,
        Some(Box::new(condition)),
        Vec::new(),
        None,
    ))
}
