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
    AggregateFunction, AggregateFunctionParams, Case, Exists, InSubquery, SetComparison,
};
use datafusion::logical_expr::{
    Aggregate, AggregateUDF, Distinct, Expr, LogicalPlan, Projection, Subquery, TableScanBuilder,
    Union, lit,
};

use datafusion::common::config::ConfigOptions;
use datafusion::execution::SessionState;
use datafusion::optimizer::decorrelate_lateral_join::DecorrelateLateralJoin;
use datafusion::optimizer::decorrelate_predicate_subquery::DecorrelatePredicateSubquery;
use datafusion::optimizer::rewrite_set_comparison::RewriteSetComparison;
use datafusion::optimizer::scalar_subquery_to_join::ScalarSubqueryToJoin;
use datafusion::optimizer::{Optimizer, OptimizerContext};

use super::guard::{GuardNode, GuardSpec, PlainCounts, SetCheck, SetKind};
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

/// Rewrites subquery expressions into joins, as DataFusion's optimizer
/// would later: `EXISTS`/`IN`/`ANY`/`ALL` into semi-, anti- and mark joins,
/// correlated scalar subqueries into left joins. The checker then sees every
/// row such a subquery reads as a row of a join, whose ids it can carry to
/// the aggregate above. What stays a subquery expression (an uncorrelated
/// scalar subquery, which DataFusion runs once, or a shape the rules cannot
/// rewrite) is checked where it stands: its aggregates are guarded, and a
/// row-level value it yields may not decide or feed an aggregate.
///
/// Made once per session: its options and rules do not change between
/// queries.
pub(crate) struct Decorrelator {
    options: Arc<ConfigOptions>,
    rules: Optimizer,
}

impl Decorrelator {
    pub fn new(state: &SessionState) -> Self {
        let mut options = state.config_options().as_ref().clone();
        // A shape a rule cannot rewrite stays a subquery expression, which
        // the checker handles too; it is not an error of the guest's.
        options.optimizer.skip_failed_rules = true;
        Decorrelator {
            options: Arc::new(options),
            rules: Optimizer::with_rules(vec![
                Arc::new(RewriteSetComparison::new()),
                Arc::new(DecorrelatePredicateSubquery::new()),
                Arc::new(ScalarSubqueryToJoin::new()),
                Arc::new(DecorrelateLateralJoin::new()),
            ]),
        }
    }

    pub fn run(
        &self,
        plan: LogicalPlan,
        state: &SessionState,
    ) -> datafusion::error::Result<LogicalPlan> {
        let plan = state
            .analyzer()
            .execute_and_check(plan, &self.options, |_, _| {})?;
        let context = OptimizerContext::new_with_config_options(Arc::clone(&self.options));
        self.rules.optimize(plan, &context, |_, _| {})
    }
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

    /// Checks one plan node and everything below it. `outer`: what a
    /// correlated subquery's outer references may carry.
    fn plan(
        &self,
        plan: &LogicalPlan,
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
                if scan.fetch.is_some() && self.protected(&one) {
                    return Err(picks_rows_denied(&self.protected_names(&one)));
                }
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
                        let checked = self.expr(expr, &[], outer)?;
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
                let (input, input_taint) = self.plan(&projection.input, outer)?;
                let scope = [(input.schema().as_ref(), &input_taint)];
                let mut taint = Taint {
                    rows: input_taint.rows.clone(),
                    cols: Vec::with_capacity(projection.expr.len()),
                    all: input_taint.all.clone(),
                };
                let mut exprs = Vec::with_capacity(projection.expr.len());
                for expr in &projection.expr {
                    let checked = self.expr(expr, &scope, outer)?;
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
                let (input, input_taint) = self.plan(child, outer)?;
                if picks_rows(plan) && self.protected(&input_taint.everything()) {
                    return Err(picks_rows_denied(
                        &self.protected_names(&input_taint.everything()),
                    ));
                }
                let mut taint = input_taint.clone();
                let scope = [(input.schema().as_ref(), &input_taint)];
                let mut exprs = Vec::new();
                for expr in plan.expressions() {
                    let checked = self.expr(&expr, &scope, outer)?;
                    taint.rows.extend(&checked.taint);
                    taint.all.extend(&checked.reads);
                    exprs.push(checked.expr);
                }
                let plan = plan.with_new_exprs(exprs, vec![input]).map_err(invalid)?;
                Ok((plan, taint))
            }
            LogicalPlan::Join(join) => {
                let (left, left_taint) = self.plan(&join.left, outer)?;
                let (right, right_taint) = self.plan(&join.right, outer)?;
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
                        let checked = self.expr(&expr, &scope, outer)?;
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
                    checked.push(self.plan(input, outer)?);
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
            LogicalPlan::Aggregate(aggregate) => self.aggregate(aggregate, outer),
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
                self.aggregate(&aggregate, outer)
            }
            LogicalPlan::Window(window) => {
                let (input, input_taint) = self.plan(&window.input, outer)?;
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
                    let checked = self.expr(expr, &scope, outer)?;
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
                let (input, input_taint) = self.plan(child, outer)?;
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

    /// An aggregate over dataset rows: its functions are checked and it is
    /// guarded, wherever it stands in the plan (the query's output, a
    /// subquery in `FROM`, `WHERE`, a join or `HAVING`). Above the guard its
    /// groups and values summarise enough rows and are no longer row-level.
    /// In a plan with row ids it passes its groups' row sets on under the
    /// row-id column names, so that an aggregate above it counts the source
    /// rows behind its values, not its groups.
    fn aggregate(
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

    /// Checks an expression of a node whose inputs are `scope`: follows its
    /// column references and checks (and guards) its subqueries.
    fn expr(
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

/// Whether a node keeps only some of its input's rows by their position:
/// a `LIMIT`/`OFFSET`, or a sort that keeps its first rows. Over row-level
/// data that is a choice of individual rows by their values (top-k).
fn picks_rows(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::Limit(_) => true,
        LogicalPlan::Sort(sort) => sort.fetch.is_some(),
        _ => false,
    }
}

fn picks_rows_denied(datasets: &str) -> QueryError {
    denied(format!(
        "aggregatesOnly: LIMIT and OFFSET may not choose individual rows of {datasets} \
         (ORDER BY ... LIMIT picks rows by their values); aggregate first and limit the groups"
    ))
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

/// Which rows feed an aggregate value: its arguments are not null, its
/// `FILTER` holds, and an argument that chooses between a row's value and a
/// constant (`CASE`, `COALESCE`) takes the row's value. `None` when that is
/// every row.
///
/// The last rule is why `SUM(CASE WHEN <one person> THEN bmi ELSE 0 END)`
/// counts as a value of one row: the zeros it adds are not people. `COUNT`
/// is exempt, since counting a constant for a row counts the row.
fn contributing(function: &AggregateFunction) -> Option<Expr> {
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
/// that zeroes rows is not recognised, see the README).
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
fn is_constant(expr: &Expr) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DatasetConfig, SourceConfig};
    use datafusion::arrow::array::{Float64Array, Int64Array, RecordBatch, StringArray};
    use datafusion::arrow::datatypes::Schema;
    use datafusion::datasource::MemTable;
    use datafusion::prelude::SessionContext;

    /// `t`: 40 people, `g` in a, b (20 each), `k` 0..7 (5 each), `x` = i,
    /// `y` = i / 2.
    fn people() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("g", DataType::Utf8, false),
            Field::new("k", DataType::Int64, false),
            Field::new("x", DataType::Int64, false),
            Field::new("y", DataType::Float64, false),
        ]));
        let n = 40;
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from_iter_values(
                    (0..n).map(|i| if i % 2 == 0 { "a" } else { "b" }),
                )),
                Arc::new(Int64Array::from_iter_values((0..n).map(|i| i % 8))),
                Arc::new(Int64Array::from_iter_values(0..n)),
                Arc::new(Float64Array::from_iter_values(
                    (0..n).map(|i| i as f64 / 2.0),
                )),
            ],
        )
        .unwrap()
    }

    /// A session with `t` granted under the default (strict) policy.
    fn session() -> (SessionContext, Vec<Arc<DatasetTable>>) {
        let ctx = SessionContext::new();
        let batch = people();
        let memory = MemTable::try_new(batch.schema(), vec![vec![batch]]).unwrap();
        let config = Arc::new(DatasetConfig {
            name: "t".into(),
            source: SourceConfig::Csv("unused.csv".into()),
            policy: DisclosurePolicy::default(),
        });
        let table = Arc::new(DatasetTable::over(Arc::new(memory), config, 0).unwrap());
        ctx.register_table("t", Arc::clone(&table) as _).unwrap();
        (ctx, vec![table])
    }

    async fn checked(sql: &str) -> Result<Checked, QueryError> {
        let (ctx, tables) = session();
        let state = ctx.state();
        let plan = state.create_logical_plan(sql).await.map_err(invalid)?;
        let plan = Decorrelator::new(&state)
            .run(plan, &state)
            .map_err(invalid)?;
        check(&plan, &tables)
    }

    /// `sql` is refused at the check, with an error `expected` accepts.
    async fn assert_refused(sql: &str, expected: impl Fn(&QueryError) -> bool) {
        let error = checked(sql).await.unwrap_err();
        assert!(expected(&error), "{sql}: {error}");
    }

    /// Aggregates in the checked plan: (all, directly under a guard).
    fn aggregates(plan: &LogicalPlan) -> (usize, usize) {
        let (mut all, mut guarded) = (0, 0);
        plan.apply_with_subqueries(|node| {
            match node {
                LogicalPlan::Aggregate(_) => all += 1,
                LogicalPlan::Extension(e) if e.node.name() == "SandletGuard" => {
                    if matches!(e.node.inputs()[..], [LogicalPlan::Aggregate(_)]) {
                        guarded += 1;
                    }
                }
                _ => {}
            }
            Ok(TreeNodeRecursion::Continue)
        })
        .unwrap();
        (all, guarded)
    }

    fn scans_row_ids(plan: &LogicalPlan) -> bool {
        plan.exists(|node| {
            Ok(matches!(node, LogicalPlan::TableScan(scan)
                if scan.projected_schema.fields().iter().any(|f| is_rid(f.name()))))
        })
        .unwrap()
    }

    #[tokio::test]
    async fn every_aggregate_over_rows_is_guarded_wherever_it_stands() {
        for (sql, aggregates_over_rows) in [
            ("SELECT COUNT(*) FROM t", 1),
            ("SELECT g, AVG(y) FROM t GROUP BY g", 1),
            (
                "SELECT AVG(m) FROM (SELECT g, AVG(y) AS m FROM t GROUP BY g) s",
                2,
            ),
            ("SELECT COUNT(*) FROM t WHERE x > (SELECT AVG(x) FROM t)", 2),
            (
                "SELECT COUNT(*) FROM t a WHERE a.x > (SELECT AVG(b.x) FROM t b WHERE b.g = a.g)",
                2,
            ),
            (
                "SELECT COUNT(*) FROM t WHERE g IN (SELECT g FROM t GROUP BY g HAVING COUNT(*) > 3)",
                2,
            ),
            (
                "SELECT COUNT(*) FROM t WHERE EXISTS (SELECT 1 FROM t q GROUP BY q.g HAVING AVG(q.y) > 1)",
                2,
            ),
            (
                "SELECT g, COUNT(*) FROM t GROUP BY g HAVING AVG(y) > (SELECT AVG(y) FROM t)",
                2,
            ),
            (
                "SELECT COUNT(*) FROM t JOIN (SELECT AVG(x) AS m FROM t) s ON t.x > s.m",
                2,
            ),
            ("SELECT COUNT(*) FROM (SELECT DISTINCT g FROM t) s", 2),
        ] {
            let plan = checked(sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
                .plan;
            assert_eq!(
                aggregates(&plan),
                (aggregates_over_rows, aggregates_over_rows),
                "{sql}:\n{}",
                plan.display_indent()
            );
        }
    }

    #[tokio::test]
    async fn row_ids_only_where_rows_can_repeat_or_aggregates_nest() {
        for (sql, row_ids) in [
            ("SELECT g, COUNT(*) FROM t WHERE x > 3 GROUP BY g", false),
            (
                "SELECT AVG(m) FROM (SELECT g, AVG(y) AS m FROM t GROUP BY g) s",
                true,
            ),
            ("SELECT COUNT(*) FROM t a JOIN t b ON a.k = b.k", true),
            (
                "SELECT COUNT(*) FROM t WHERE x > (SELECT AVG(x) FROM t)",
                true,
            ),
        ] {
            let plan = checked(sql).await.unwrap().plan;
            assert_eq!(scans_row_ids(&plan), row_ids, "{sql}");
            // Whatever the plan carries inside, the answer has no row ids.
            assert!(row_id_columns(plan.schema()).is_empty(), "{sql}");
        }
    }

    #[tokio::test]
    async fn a_limit_may_cut_groups_but_not_rows() {
        for sql in [
            "SELECT SUM(x) FROM (SELECT x FROM t ORDER BY x DESC LIMIT 11) s",
            "SELECT COUNT(*) FROM (SELECT x FROM t LIMIT 10 OFFSET 3) s",
            "SELECT COUNT(*) FROM t WHERE x IN (SELECT x FROM t ORDER BY y LIMIT 1)",
        ] {
            assert_refused(
                sql,
                |e| matches!(e, QueryError::Denied(m) if m.starts_with("aggregatesOnly: LIMIT")),
            )
            .await;
        }
        for sql in [
            "SELECT g, COUNT(*) AS n FROM t GROUP BY g ORDER BY n DESC LIMIT 1",
            "SELECT SUM(n) FROM (SELECT k, COUNT(*) AS n FROM t GROUP BY k ORDER BY n LIMIT 2) s",
        ] {
            checked(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
    }

    #[tokio::test]
    async fn rows_that_choose_an_aggregates_rows_must_be_counted_by_it() {
        for sql in [
            "SELECT COUNT(*) FROM t WHERE EXISTS (SELECT 1 FROM t q WHERE q.x = 7)",
            "SELECT COUNT(*) FROM t WHERE k NOT IN (SELECT k FROM t q WHERE q.x < 2)",
            "SELECT COUNT(*) FROM (SELECT g FROM t EXCEPT SELECT g FROM t WHERE x = 1) s",
        ] {
            assert_refused(sql, |e| {
                matches!(e, QueryError::Denied(m)
                    if m.starts_with("aggregatesOnly: which rows an aggregate"))
            })
            .await;
        }
    }

    fn condition_of(sql_arg: &str) -> Option<String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let (ctx, _) = session();
        let plan = rt
            .block_on(
                ctx.state()
                    .create_logical_plan(&format!("SELECT SUM({sql_arg}) FROM t")),
            )
            .unwrap();
        let mut found = None;
        plan.apply(|node| {
            if let LogicalPlan::Aggregate(aggregate) = node
                && let Some(function) = aggregate_function(&aggregate.aggr_expr[0])
            {
                found = Some(contributing(function).map(|e| e.to_string()));
            }
            Ok(TreeNodeRecursion::Continue)
        })
        .unwrap();
        found.expect("an aggregate")
    }

    #[test]
    fn a_value_chosen_against_a_constant_counts_only_the_rows_that_take_it() {
        // Every row feeds a plain column (no condition beyond non-null).
        assert_eq!(condition_of("y").as_deref(), Some("t.y IS NOT NULL"));
        // ELSE 0: only the rows that take y.
        let case = condition_of("CASE WHEN x = 3 THEN y ELSE 0 END").unwrap();
        assert!(
            case.contains("THEN Boolean(true) ELSE Boolean(false) END IS TRUE"),
            "{case}"
        );
        // The constant first: the rows that do not take it.
        let case = condition_of("CASE WHEN x <> 3 THEN 0 ELSE y END").unwrap();
        assert!(
            case.contains("THEN Boolean(false) ELSE Boolean(true) END IS TRUE"),
            "{case}"
        );
        // Every branch reads the row: no extra condition.
        let case = condition_of("CASE WHEN x = 3 THEN y ELSE y * 2 END").unwrap();
        assert!(!case.contains("IS TRUE"), "{case}");
        // COALESCE with a constant fallback: the rows where the first is set.
        let coalesce = condition_of("COALESCE(CASE WHEN x = 3 THEN y END, 0)").unwrap();
        assert!(coalesce.contains("IS NOT NULL"), "{coalesce}");
        assert!(coalesce.matches("IS NOT NULL").count() >= 2, "{coalesce}");
    }

    #[tokio::test]
    async fn a_guest_may_not_name_a_column_as_the_station_names_its_own() {
        for sql in [
            "SELECT COUNT(*) FROM (SELECT x AS __sandlet_rid_0 FROM t) s",
            "SELECT COUNT(*) FROM t a JOIN (SELECT k, x AS __sandlet_rid_1 FROM t) b ON a.k = b.k",
            "SELECT g AS __sandlet_group_rows, COUNT(*) FROM t GROUP BY g",
        ] {
            assert_refused(
                sql,
                |e| matches!(e, QueryError::Invalid(m) if m.contains("reserved for the station")),
            )
            .await;
        }
    }

    #[test]
    fn constants_read_nothing_of_the_row() {
        assert!(is_constant(&lit(0)));
        assert!(is_constant(&lit(1).alias("one")));
        assert!(!is_constant(&Expr::Column(Column::from_name("x"))));
        assert!(!is_constant(
            &(Expr::Column(Column::from_name("x")) + lit(0))
        ));
    }
}
