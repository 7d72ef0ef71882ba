//! The checker's walk over the plan, one method per kind of node: which
//! datasets' individual rows each relation carries (`rows`, `cols[i]`),
//! the row ids that ride along to the aggregate that counts them, and the
//! nodes refused outright (top-k, windows, `DISTINCT ON` and `UNNEST` over
//! `aggregatesOnly` rows; recursive queries, statements, DDL, DML, `COPY`,
//! `EXPLAIN`, extension nodes).
//!
//! It must never pass a plan in which a dataset's rows reach an aggregate,
//! a limit or the output by a path it did not follow: unknown plan nodes are
//! refused, not waved through.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::ScalarValue;
use datafusion::common::{Column, DFSchema, DataFusionError, TableReference};
use datafusion::datasource::{provider_as_source, source_as_provider};
use datafusion::logical_expr::{
    Aggregate, Distinct, Expr, Join, LogicalPlan, Projection, TableScan, TableScanBuilder, Union,
    Values, Window,
};

use super::{Checker, Sources, Taint, denied, invalid, row_id_columns};
use crate::QueryError;
use crate::rowset::{RowIdTable, is_rid};
use crate::table::DatasetTable;

impl Checker<'_> {
    /// Checks one plan node and everything below it. `outer`: what a
    /// correlated subquery's outer references may carry.
    pub(super) fn plan(
        &self,
        plan: &LogicalPlan,
        outer: &Sources,
    ) -> Result<(LogicalPlan, Taint), QueryError> {
        match plan {
            LogicalPlan::TableScan(scan) => self.scan(plan, scan),
            LogicalPlan::EmptyRelation(_) => Ok((
                plan.clone(),
                Taint {
                    cols: vec![Sources::new(); plan.schema().fields().len()],
                    ..Taint::default()
                },
            )),
            LogicalPlan::Values(values) => self.values(plan, values, outer),
            LogicalPlan::Projection(projection) => self.projection(projection, outer),
            // Operators that keep their input's columns and choose, order or
            // cut its rows: whatever their expressions read decides which
            // rows come out.
            LogicalPlan::Filter(_)
            | LogicalPlan::Sort(_)
            | LogicalPlan::Limit(_)
            | LogicalPlan::SubqueryAlias(_)
            | LogicalPlan::Repartition(_)
            | LogicalPlan::Subquery(_) => self.row_operator(plan, outer),
            LogicalPlan::Join(join) => self.join(plan, join, outer),
            LogicalPlan::Union(union) => self.union(plan, union, outer),
            LogicalPlan::Aggregate(aggregate) => self.aggregate(aggregate, outer),
            LogicalPlan::Distinct(Distinct::All(input)) => self.distinct(input, outer),
            LogicalPlan::Window(window) => self.window(plan, window, outer),
            LogicalPlan::Distinct(Distinct::On(_)) | LogicalPlan::Unnest(_) => {
                self.distinct_on_or_unnest(plan, outer)
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

    /// A scan of a granted dataset: a new instance, whose rows and values
    /// are row-level; with row ids, a scan of its own that adds them.
    fn scan(
        &self,
        plan: &LogicalPlan,
        scan: &TableScan,
    ) -> Result<(LogicalPlan, Taint), QueryError> {
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

    /// Literal rows: whatever their expressions read.
    fn values(
        &self,
        plan: &LogicalPlan,
        values: &Values,
        outer: &Sources,
    ) -> Result<(LogicalPlan, Taint), QueryError> {
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

    /// A projection: each column carries what its expression reads; the
    /// input's row ids ride along.
    fn projection(
        &self,
        projection: &Projection,
        outer: &Sources,
    ) -> Result<(LogicalPlan, Taint), QueryError> {
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

    /// Operators that keep their input's columns and choose, order or cut
    /// its rows (`Filter`, `Sort`, `Limit`, `SubqueryAlias`, `Repartition`,
    /// `Subquery`).
    fn row_operator(
        &self,
        plan: &LogicalPlan,
        outer: &Sources,
    ) -> Result<(LogicalPlan, Taint), QueryError> {
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

    /// A join: both inputs' rows and what its condition reads decide its
    /// rows; each column carries its side's values.
    fn join(
        &self,
        plan: &LogicalPlan,
        join: &Join,
        outer: &Sources,
    ) -> Result<(LogicalPlan, Taint), QueryError> {
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

    /// A union: every branch's rows and values, each branch given every
    /// branch's row-id columns.
    fn union(
        &self,
        plan: &LogicalPlan,
        union: &Union,
        outer: &Sources,
    ) -> Result<(LogicalPlan, Taint), QueryError> {
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
                    Some((qualifier, field)) => {
                        exprs.push(Expr::Column(Column::new(qualifier.cloned(), field.name())))
                    }
                    None => exprs.push(
                        Expr::Literal(ScalarValue::try_from(data_type).map_err(invalid)?, None)
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

    /// `DISTINCT`: an aggregate, checked and guarded as one.
    fn distinct(
        &self,
        input: &Arc<LogicalPlan>,
        outer: &Sources,
    ) -> Result<(LogicalPlan, Taint), QueryError> {
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

    /// Window functions: refused over protected rows; each adds a column
    /// that carries what it reads.
    fn window(
        &self,
        plan: &LogicalPlan,
        window: &Window,
        outer: &Sources,
    ) -> Result<(LogicalPlan, Taint), QueryError> {
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

    /// `DISTINCT ON` and `UNNEST`: refused over protected rows; otherwise
    /// every output row and value carries everything its input did.
    fn distinct_on_or_unnest(
        &self,
        plan: &LogicalPlan,
        outer: &Sources,
    ) -> Result<(LogicalPlan, Taint), QueryError> {
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
