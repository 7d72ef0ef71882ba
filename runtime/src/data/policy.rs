//! Disclosure control on the logical plan: which queries may run, and the
//! guards that make the thresholds hold while they do.
//!
//! The checker walks the plan that DataFusion made from the guest's SQL
//! (never the SQL text) and follows, for every relation in it, which
//! datasets' individual rows it still carries:
//!
//! - `rows`: datasets whose individual rows decide which rows this relation
//!   has (a scan, and everything that filters, joins or sorts one);
//! - `cols[i]`: datasets whose row-level values flow into column `i`.
//!
//! An aggregate whose groups reach the query's output unaggregated (a
//! *terminal* aggregate) ends both: its rows are groups and its columns are
//! group keys and aggregates. Each such aggregate gets a [`GuardNode`] that
//! checks `minGroupSize` and `minRows` while the query runs. Aggregates
//! deeper down (whose groups feed another aggregate) are row-level
//! intermediate results: allowed, and summarised by the aggregate above
//! them, which is guarded.
//!
//! Under `aggregatesOnly`, the query is refused when its output still carries
//! rows or values of such a dataset, when any aggregate over its rows is not
//! disclosure-safe (only COUNT, COUNT DISTINCT, SUM, AVG, VAR and STDDEV
//! are), and when a window function reads its rows. Whatever the policy,
//! only scans of granted datasets (as [`DatasetTable`]s, which show only
//! allowed columns) and plain query operators may appear: no DDL, DML,
//! `COPY`, `EXPLAIN`, recursive queries or extension nodes.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::ScalarValue;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchema, DataFusionError, TableReference};
use datafusion::datasource::{provider_as_source, source_as_provider};
use datafusion::functions_aggregate::count::count_udaf;
use datafusion::logical_expr::expr::{
    AggregateFunction, AggregateFunctionParams, Exists, InSubquery, SetComparison,
};
use datafusion::logical_expr::{
    Aggregate, AggregateUDF, Distinct, Expr, LogicalPlan, Projection, Subquery, TableScanBuilder,
    Union, lit,
};

use super::guard::{GuardNode, GuardSpec, SetCheck};
use super::rowset::{RID_PREFIX, RowIdTable, RowSet, is_rid};
use super::table::DatasetTable;
use super::{DisclosurePolicy, QueryError};

/// Datasets, by their index in the run's grant list.
type Sources = BTreeSet<usize>;

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

const SAFE_LIST: &str =
    "COUNT, COUNT(DISTINCT), SUM, AVG, VAR_SAMP, VAR_POP, STDDEV_SAMP, STDDEV_POP";

/// The guard columns added to a terminal aggregate.
const GROUP_ROWS: &str = "__sandlet_group_rows";
const VALUE_ROWS: &str = "__sandlet_value_rows_";
const ROW_SET: &str = "__sandlet_row_set_";

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
    let checker = Checker {
        tables,
        instances: RefCell::new(Vec::new()),
        row_ids: may_repeat_rows(plan),
    };
    let (plan, taint) = checker.plan(plan, true, &Sources::new())?;
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

/// Where column references in an expression resolve: the inputs of the node
/// that holds it.
type Scope<'s> = [(&'s DFSchema, &'s Taint)];

/// An expression after checking.
struct Checked1 {
    expr: Expr,
    /// Datasets whose row-level values flow into its value.
    taint: Sources,
    /// Datasets its subqueries read.
    reads: Sources,
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

    /// Checks one plan node and everything below it. `terminal`: whether
    /// this relation's rows reach the query's output without passing
    /// through another aggregate. `outer`: what a correlated subquery's
    /// outer references may carry.
    fn plan(
        &self,
        plan: &LogicalPlan,
        terminal: bool,
        outer: &Sources,
    ) -> Result<(LogicalPlan, Taint), QueryError> {
        match plan {
            LogicalPlan::TableScan(scan) => {
                let provider = source_as_provider(&scan.source).map_err(invalid)?;
                let Some(table) = provider.as_ref().downcast_ref::<DatasetTable>() else {
                    return Err(denied(format!(
                        "only granted datasets can be queried, and {} is not one",
                        scan.table_name
                    )));
                };
                if let Some(reason) = table.unavailable_reason() {
                    return Err(QueryError::Invalid(reason));
                }
                let instance = {
                    let mut instances = self.instances.borrow_mut();
                    instances.push(table.index);
                    instances.len() - 1
                };
                let one: Sources = [instance].into();
                if !self.row_ids {
                    let taint = Taint {
                        rows: one.clone(),
                        cols: vec![one.clone(); plan.schema().fields().len()],
                        all: one,
                    };
                    return Ok((plan.clone(), taint));
                }
                // A scan of its own, with the row-id column.
                let source = provider_as_source(Arc::new(RowIdTable::new(
                    Arc::clone(&self.tables[table.index]),
                    instance,
                )));
                let scan = TableScanBuilder::new(scan.table_name.clone(), source)
                    .with_filters(scan.filters.clone())
                    .with_fetch(scan.fetch)
                    .build()
                    .map_err(invalid)?;
                let plan = LogicalPlan::TableScan(scan);
                let mut cols = vec![one.clone(); plan.schema().fields().len()];
                if let Some(rid) = cols.last_mut() {
                    rid.clear();
                }
                let taint = Taint {
                    rows: one.clone(),
                    cols,
                    all: one,
                };
                Ok((plan, taint))
            }
            LogicalPlan::EmptyRelation(_) => Ok((
                plan.clone(),
                Taint {
                    cols: vec![Sources::new(); plan.schema().fields().len()],
                    ..Taint::default()
                },
            )),
            LogicalPlan::Values(values) => {
                let width = plan.schema().fields().len();
                let mut taint = Taint {
                    cols: vec![Sources::new(); width],
                    ..Taint::default()
                };
                let mut exprs = Vec::new();
                for row in &values.values {
                    for (i, expr) in row.iter().enumerate() {
                        let checked = self.expr(expr, &[], terminal, outer)?;
                        taint.rows.extend(&checked.taint);
                        if let Some(col) = taint.cols.get_mut(i) {
                            col.extend(&checked.taint);
                        }
                        taint.all.extend(&checked.reads);
                        exprs.push(checked.expr);
                    }
                }
                let plan = plan.with_new_exprs(exprs, Vec::new()).map_err(invalid)?;
                Ok((plan, taint))
            }
            LogicalPlan::Projection(projection) => {
                let (input, input_taint) = self.plan(&projection.input, terminal, outer)?;
                let scope = [(input.schema().as_ref(), &input_taint)];
                let mut taint = Taint {
                    rows: input_taint.rows.clone(),
                    cols: Vec::with_capacity(projection.expr.len()),
                    all: input_taint.all.clone(),
                };
                let mut exprs = Vec::with_capacity(projection.expr.len());
                for expr in &projection.expr {
                    let checked = self.expr(expr, &scope, terminal, outer)?;
                    taint.cols.push(checked.taint);
                    taint.all.extend(&checked.reads);
                    exprs.push(checked.expr);
                }
                // Row ids ride along to the aggregate that counts them.
                for column in row_id_columns(input.schema()) {
                    exprs.push(Expr::Column(column));
                    taint.cols.push(Sources::new());
                }
                let plan = Projection::try_new(exprs, Arc::new(input))
                    .map(LogicalPlan::Projection)
                    .map_err(invalid)?;
                Ok((plan, taint))
            }
            // Operators that keep their input's columns and choose, order or
            // cut its rows: whatever their expressions read decides which
            // rows come out.
            LogicalPlan::Filter(_)
            | LogicalPlan::Sort(_)
            | LogicalPlan::Limit(_)
            | LogicalPlan::SubqueryAlias(_)
            | LogicalPlan::Repartition(_)
            | LogicalPlan::Subquery(_) => {
                let [child] = plan.inputs()[..] else {
                    return Err(invalid(DataFusionError::Internal(format!(
                        "{} should have one input",
                        plan.display()
                    ))));
                };
                let (input, input_taint) = self.plan(child, terminal, outer)?;
                let mut taint = input_taint.clone();
                let scope = [(input.schema().as_ref(), &input_taint)];
                let mut exprs = Vec::new();
                for expr in plan.expressions() {
                    let checked = self.expr(&expr, &scope, terminal, outer)?;
                    taint.rows.extend(&checked.taint);
                    taint.all.extend(&checked.reads);
                    exprs.push(checked.expr);
                }
                let plan = plan.with_new_exprs(exprs, vec![input]).map_err(invalid)?;
                Ok((plan, taint))
            }
            LogicalPlan::Join(join) => {
                let (left, left_taint) = self.plan(&join.left, terminal, outer)?;
                let (right, right_taint) = self.plan(&join.right, terminal, outer)?;
                let mut rows = left_taint.rows.clone();
                rows.extend(&right_taint.rows);
                let mut all = left_taint.all.clone();
                all.extend(&right_taint.all);
                let mut exprs = Vec::new();
                {
                    let scope = [
                        (left.schema().as_ref(), &left_taint),
                        (right.schema().as_ref(), &right_taint),
                    ];
                    for expr in plan.expressions() {
                        let checked = self.expr(&expr, &scope, terminal, outer)?;
                        rows.extend(&checked.taint);
                        all.extend(&checked.reads);
                        exprs.push(checked.expr);
                    }
                }
                let plan = plan
                    .with_new_exprs(exprs, vec![left, right])
                    .map_err(invalid)?;
                let LogicalPlan::Join(join) = &plan else {
                    unreachable!("a join rebuilt is a join")
                };
                let mut everything = rows.clone();
                everything.extend(left_taint.everything());
                everything.extend(right_taint.everything());
                let cols = plan
                    .schema()
                    .iter()
                    .map(|(qualifier, field)| {
                        let column = Column::new(qualifier.cloned(), field.name());
                        if let Some(i) = join.left.schema().maybe_index_of_column(&column) {
                            left_taint.cols[i].clone()
                        } else if let Some(i) = join.right.schema().maybe_index_of_column(&column) {
                            right_taint.cols[i].clone()
                        } else {
                            // A mark column: it says whether rows matched.
                            everything.clone()
                        }
                    })
                    .collect();
                Ok((plan, Taint { rows, cols, all }))
            }
            LogicalPlan::Union(union) => {
                let mut inputs = Vec::with_capacity(union.inputs.len());
                let mut taint = Taint {
                    cols: vec![Sources::new(); plan.schema().fields().len()],
                    ..Taint::default()
                };
                let mut checked = Vec::with_capacity(union.inputs.len());
                for input in &union.inputs {
                    checked.push(self.plan(input, terminal, outer)?);
                }
                // Every branch gets every branch's row-id columns, in one
                // order, typed nulls where it has none.
                let mut rids: Vec<(String, DataType)> = Vec::new();
                for (input, _) in &checked {
                    for (_, field) in input.schema().iter() {
                        if is_rid(field.name()) && !rids.iter().any(|(n, _)| n == field.name()) {
                            rids.push((field.name().clone(), field.data_type().clone()));
                        }
                    }
                }
                rids.sort();
                let width = taint.cols.len();
                for (input, input_taint) in checked {
                    taint.rows.extend(&input_taint.rows);
                    taint.all.extend(&input_taint.all);
                    let schema = input.schema().clone();
                    let mut exprs = Vec::new();
                    let mut visible = 0;
                    for (i, (qualifier, field)) in schema.iter().enumerate() {
                        if !is_rid(field.name()) {
                            exprs.push(Expr::Column(Column::new(qualifier.cloned(), field.name())));
                            if let Some(col) = taint.cols.get_mut(visible) {
                                col.extend(&input_taint.cols[i]);
                            }
                            visible += 1;
                        }
                    }
                    for (name, data_type) in &rids {
                        match schema.iter().find(|(_, f)| f.name() == name) {
                            Some((qualifier, field)) => exprs
                                .push(Expr::Column(Column::new(qualifier.cloned(), field.name()))),
                            None => exprs.push(
                                Expr::Literal(
                                    ScalarValue::try_from(data_type).map_err(invalid)?,
                                    None,
                                )
                                .alias(name),
                            ),
                        }
                    }
                    let aligned = Projection::try_new(exprs, Arc::new(input))
                        .map(LogicalPlan::Projection)
                        .map_err(invalid)?;
                    inputs.push(aligned);
                }
                taint.cols.truncate(width);
                taint.cols.extend(rids.iter().map(|_| Sources::new()));
                // The union keeps its own column names and qualifiers (which
                // the nodes above refer to), plus the row ids.
                let mut fields: Vec<(Option<TableReference>, FieldRef)> = union
                    .schema
                    .iter()
                    .map(|(q, f)| (q.cloned(), Arc::clone(f)))
                    .collect();
                for (name, data_type) in &rids {
                    fields.push((None, Arc::new(Field::new(name, data_type.clone(), true))));
                }
                let schema = DFSchema::new_with_metadata(fields, union.schema.metadata().clone())
                    .map_err(invalid)?;
                let plan = LogicalPlan::Union(Union {
                    inputs: inputs.into_iter().map(Arc::new).collect(),
                    schema: Arc::new(schema),
                });
                Ok((plan, taint))
            }
            LogicalPlan::Aggregate(aggregate) => self.aggregate(aggregate, terminal, outer),
            LogicalPlan::Distinct(Distinct::All(input)) => {
                // DISTINCT is a GROUP BY of every column, and is guarded as one.
                let group = input
                    .schema()
                    .columns()
                    .into_iter()
                    .map(Expr::Column)
                    .collect();
                let aggregate =
                    Aggregate::try_new(Arc::clone(input), group, Vec::new()).map_err(invalid)?;
                self.aggregate(&aggregate, terminal, outer)
            }
            LogicalPlan::Window(window) => {
                let (input, input_taint) = self.plan(&window.input, terminal, outer)?;
                if self.protected(&input_taint.everything()) {
                    return Err(denied(format!(
                        "aggregatesOnly: window functions may not read rows of {}",
                        self.protected_names(&input_taint.everything())
                    )));
                }
                let scope = [(input.schema().as_ref(), &input_taint)];
                let mut taint = input_taint.clone();
                let mut exprs = Vec::new();
                for expr in &window.window_expr {
                    let checked = self.expr(expr, &scope, terminal, outer)?;
                    taint.cols.push(checked.taint);
                    taint.all.extend(&checked.reads);
                    exprs.push(checked.expr);
                }
                let plan = plan.with_new_exprs(exprs, vec![input]).map_err(invalid)?;
                Ok((plan, taint))
            }
            LogicalPlan::Distinct(Distinct::On(_)) | LogicalPlan::Unnest(_) => {
                let (kind, child) = match plan {
                    LogicalPlan::Unnest(unnest) => ("UNNEST", &unnest.input),
                    LogicalPlan::Distinct(Distinct::On(on)) => ("DISTINCT ON", &on.input),
                    _ => unreachable!(),
                };
                let (input, input_taint) = self.plan(child, terminal, outer)?;
                if self.protected(&input_taint.everything()) {
                    return Err(denied(format!(
                        "aggregatesOnly: {kind} may not read rows of {}",
                        self.protected_names(&input_taint.everything())
                    )));
                }
                let everything = input_taint.everything();
                let taint = Taint {
                    rows: everything.clone(),
                    cols: vec![everything; plan.schema().fields().len()],
                    all: input_taint.all.clone(),
                };
                let plan = plan
                    .with_new_exprs(plan.expressions(), vec![input])
                    .map_err(invalid)?;
                Ok((plan, taint))
            }
            LogicalPlan::RecursiveQuery(_) => Err(denied(
                "recursive queries (WITH RECURSIVE) are not allowed".to_owned(),
            )),
            LogicalPlan::Statement(_)
            | LogicalPlan::Dml(_)
            | LogicalPlan::Ddl(_)
            | LogicalPlan::Copy(_)
            | LogicalPlan::DescribeTable(_)
            | LogicalPlan::Explain(_)
            | LogicalPlan::Analyze(_)
            | LogicalPlan::Extension(_) => Err(denied(format!(
                "only SELECT queries are allowed, not {}",
                statement_kind(plan)
            ))),
        }
    }

    /// An aggregate: its functions are checked, and when it is terminal it
    /// is guarded.
    fn aggregate(
        &self,
        aggregate: &Aggregate,
        terminal: bool,
        outer: &Sources,
    ) -> Result<(LogicalPlan, Taint), QueryError> {
        let (input, input_taint) = self.plan(&aggregate.input, false, outer)?;
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

        // Subqueries in keys and arguments are guarded where they stand:
        // their values are not counted by this aggregate's row ids.
        let mut group_taint = Sources::new();
        let mut group = Vec::with_capacity(aggregate.group_expr.len());
        for expr in &aggregate.group_expr {
            let checked = self.expr(expr, &scope, true, outer)?;
            group_taint.extend(&checked.taint);
            reads.extend(&checked.reads);
            group.push(checked.expr);
        }

        let mut aggr = Vec::with_capacity(aggregate.aggr_expr.len());
        let mut value_taints = Vec::with_capacity(aggregate.aggr_expr.len());
        // For each aggregate value that does not read every row of its
        // group: how to count the rows it does read, in all and per scan.
        let mut value_counts = Vec::new();
        let mut value_sets: Vec<(Expr, usize)> = Vec::new();
        for expr in &aggregate.aggr_expr {
            let checked = self.expr(expr, &scope, true, outer)?;
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
            let uncounted: Sources = checked
                .taint
                .iter()
                .copied()
                .filter(|i| !rids.iter().any(|(_, r)| r == i))
                .collect();
            if self.row_ids && self.protected(&uncounted) {
                return Err(denied(format!(
                    "aggregatesOnly: an aggregate of this query reads row-level values that a \
                     subquery takes from {}; aggregate them in a subquery or CTE and join it",
                    self.protected_names(&uncounted)
                )));
            }
            if let Some(count) = value_count(function) {
                value_counts.push(count);
                let filter = contributing(function);
                for (column, instance) in &rids {
                    if !checked.taint.contains(instance) {
                        continue;
                    }
                    // AVG, VAR and COUNT of one column share one set.
                    let set = self.rowset(column, *instance, filter.clone());
                    if !value_sets.iter().any(|(e, _)| *e == set) {
                        value_sets.push((set, *instance));
                    }
                }
            }
            value_taints.push(read);
            aggr.push(checked.expr);
        }

        if terminal && !reads.is_empty() {
            let mut sets: Vec<(Expr, SetCheck)> = Vec::new();
            for (column, instance) in &rids {
                sets.push((
                    self.rowset(column, *instance, None),
                    self.set_check(*instance, false),
                ));
            }
            for (expr, instance) in value_sets {
                sets.push((expr, self.set_check(instance, true)));
            }
            let guarded = self.guard(input, group, aggr, value_counts, sets, &reads)?;
            let taint = Taint {
                rows: Sources::new(),
                cols: vec![Sources::new(); guarded.schema().fields().len()],
                all: reads,
            };
            return Ok((guarded, taint));
        }

        // An intermediate aggregate: its groups and values are still
        // row-level as far as the output is concerned, and it passes on the
        // row sets of its groups under the row-id column names.
        let values = aggr.len();
        for (column, instance) in &rids {
            aggr.push(self.rowset(column, *instance, None).alias(&column.name));
        }
        let plan = LogicalPlan::Aggregate(
            Aggregate::try_new(Arc::new(input), group, aggr).map_err(invalid)?,
        );
        let width = plan.schema().fields().len();
        let mut rows = input_taint.rows.clone();
        rows.extend(&group_taint);
        let keys = width - values - rids.len();
        let mut cols = vec![rows.clone(); keys];
        for value in value_taints {
            let mut col = value;
            col.extend(&rows);
            cols.push(col);
        }
        cols.extend(rids.iter().map(|_| Sources::new()));
        Ok((
            plan,
            Taint {
                rows,
                cols,
                all: reads,
            },
        ))
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

    fn set_check(&self, instance: usize, value: bool) -> SetCheck {
        let policy = self.policy(instance);
        SetCheck {
            column: 0,
            value,
            min_group_size: policy.min_group_size,
            min_rows: policy.min_rows,
        }
    }

    /// Rebuilds a terminal aggregate with its guard counts and row sets,
    /// puts the guard above it and projects them away again.
    fn guard(
        &self,
        input: LogicalPlan,
        group: Vec<Expr>,
        mut aggr: Vec<Expr>,
        value_counts: Vec<Expr>,
        sets: Vec<(Expr, SetCheck)>,
        reads: &Sources,
    ) -> Result<LogicalPlan, QueryError> {
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
        let group_rows = width - set_count - values - 1;
        for (i, check) in checks.iter_mut().enumerate() {
            check.column = width - set_count + i;
        }
        let policies: Vec<&DisclosurePolicy> = reads.iter().map(|&i| self.policy(i)).collect();
        let spec = GuardSpec {
            group_rows,
            value_rows: (group_rows + 1..group_rows + 1 + values).collect(),
            min_group_size: policies.iter().map(|p| p.min_group_size).max().unwrap_or(0),
            min_rows: policies.iter().map(|p| p.min_rows).max().unwrap_or(0),
            datasets: self.names(reads),
            sets: checks,
        };
        let guarded = GuardNode::plan(LogicalPlan::Aggregate(counted), spec);
        // The aggregate as written: every column before the guard's own.
        let columns = guarded
            .schema()
            .iter()
            .take(group_rows)
            .map(|(qualifier, field)| Expr::Column(Column::new(qualifier.cloned(), field.name())))
            .collect();
        Projection::try_new(columns, Arc::new(guarded))
            .map(LogicalPlan::Projection)
            .map_err(invalid)
    }

    /// Checks an expression of a node whose inputs are `scope`: follows its
    /// column references and checks (and guards) its subqueries.
    fn expr(
        &self,
        expr: &Expr,
        scope: &Scope<'_>,
        terminal: bool,
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
            let (plan, t) = self.plan(&sq.subquery, terminal, &inner_outer)?;
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

/// Whether any operator in the query can repeat a source row or pad a group
/// with rows from elsewhere: joins, unions, grouping sets, unnesting and
/// subquery expressions (whose one value repeats on every row). Without
/// them, the rows an aggregate reads are distinct rows of its one scan, and
/// the guard's row counts are exact without row ids.
fn may_repeat_rows(plan: &LogicalPlan) -> bool {
    let mut repeats = false;
    let _ = plan.apply_with_subqueries(|node| {
        let found = match node {
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
        } || node.expressions().iter().any(|e| {
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

/// Which rows feed an aggregate value: its arguments are not null, and its
/// `FILTER` holds. `None` when that is every row.
fn contributing(function: &AggregateFunction) -> Option<Expr> {
    let params = &function.params;
    let mut conditions: Vec<Expr> = params
        .args
        .iter()
        .filter(|arg| !matches!(arg, Expr::Literal(..)))
        .map(|arg| arg.clone().is_not_null())
        .collect();
    if let Some(filter) = &params.filter {
        conditions.push(filter.as_ref().clone());
    }
    conditions.into_iter().reduce(Expr::and)
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

fn aggregate_function(expr: &Expr) -> Option<&AggregateFunction> {
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

/// `COUNT` of the rows that feed an aggregate value, when that can be fewer
/// than its group's rows: its arguments are not all constants, or it has a
/// `FILTER`.
fn value_count(function: &AggregateFunction) -> Option<Expr> {
    let params = &function.params;
    let constant = params
        .args
        .iter()
        .all(|arg| matches!(arg, Expr::Literal(value, _) if !value.is_null()));
    if constant && params.filter.is_none() {
        return None;
    }
    let args = if constant {
        vec![lit(1i64)]
    } else {
        params.args.clone()
    };
    Some(Expr::AggregateFunction(AggregateFunction::new_udf(
        count_udaf(),
        args,
        false,
        params.filter.clone(),
        Vec::new(),
        None,
    )))
}

fn statement_kind(plan: &LogicalPlan) -> &'static str {
    match plan {
        LogicalPlan::Statement(_) => "statements such as SET",
        LogicalPlan::Dml(_) => "INSERT, UPDATE or DELETE",
        LogicalPlan::Ddl(_) => "CREATE or DROP",
        LogicalPlan::Copy(_) => "COPY",
        LogicalPlan::DescribeTable(_) => "DESCRIBE",
        LogicalPlan::Explain(_) | LogicalPlan::Analyze(_) => "EXPLAIN",
        _ => "this plan",
    }
}
