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

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{DFSchema, DFSchemaRef, ScalarValue};
use datafusion::datasource::{MemTable, provider_as_source, source_as_provider};
use datafusion::functions_aggregate::count::count_udaf;
use datafusion::logical_expr::expr::{AggregateFunction, AggregateFunctionParams, Case};
use datafusion::logical_expr::{
    Aggregate, AggregateUDF, BinaryExpr, Cast, Expr, ExprSchemable, LogicalPlan,
    LogicalPlanBuilder, Operator, col, lit, when,
};

use sandlet_core::data::{ColumnNoise, Noise};
use sandlet_privacy::mechanism::{self, Thresholded};
use sandlet_privacy::{Epsilon, PrivacyPolicy};

use super::QueryError;
use super::fixedsum::{FixedSum, Quantizer};
use super::table::DatasetTable;

/// The name of the noisy table that takes the aggregate's place.
const NOISY_TABLE: &str = "__sandlet_noisy";
/// Fixed-point sums keep each value within 2^20 units.
const UNIT_BITS: i32 = 20;

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

/// One integer statistic per group, released with noise.
#[derive(Debug, Clone, PartialEq)]
enum StatKind {
    /// COUNT(*): the group's rows; with GROUP BY, also its key's test.
    Rows,
    /// COUNT(x): the rows whose `x` is not NULL.
    Count,
    /// COUNT(DISTINCT x).
    Distinct,
    /// A sum of values in `[-magnitude, magnitude]`, in whole units.
    Sum,
}

#[derive(Debug, Clone)]
struct Stat {
    kind: StatKind,
    /// What the statistic sums or counts, as the plan writes it; with
    /// `kind`, what makes two statistics the same.
    key: String,
    /// The aggregate expression run exactly.
    expr: Expr,
    /// How much one row can change it, in its units.
    sensitivity: u64,
    /// The value of one unit.
    unit: f64,
}

/// How one of the aggregate's outputs is computed from noisy statistics.
#[derive(Debug, Clone)]
enum Output {
    Count {
        stat: usize,
    },
    Sum {
        stat: usize,
    },
    Mean {
        sum: usize,
        count: usize,
        range: Range,
    },
    /// Variance from the count and the sums of `x - center` and of its
    /// square; `sqrt` for the standard deviation.
    Variance {
        count: usize,
        centered: usize,
        squares: usize,
        half: f64,
        population: bool,
        sqrt: bool,
    },
}

/// The values an expression can take: `[low, high]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Range {
    low: f64,
    high: f64,
}

impl Range {
    fn point(value: f64) -> Range {
        Range {
            low: value,
            high: value,
        }
    }

    fn hull(self, other: Range) -> Range {
        Range {
            low: self.low.min(other.low),
            high: self.high.max(other.high),
        }
    }

    fn finite(self) -> Option<Range> {
        (self.low.is_finite() && self.high.is_finite()).then_some(self)
    }
}

/// Where a column's values lie, if the policy bounds them.
type Ranges = HashMap<datafusion::common::Column, Range>;

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

/// Which output of the private aggregate the plan's column `index` is,
/// when it passes up unchanged (renamed at most).
fn origin(plan: &LogicalPlan, index: usize) -> Option<usize> {
    match plan {
        LogicalPlan::Aggregate(aggregate) if reads_data(&aggregate.input) => Some(index),
        LogicalPlan::Projection(projection) => {
            let mut expr = projection.expr.get(index)?;
            while let Expr::Alias(alias) = expr {
                expr = &alias.expr;
            }
            let Expr::Column(column) = expr else {
                return None;
            };
            let below = projection.input.schema().index_of_column(column).ok()?;
            origin(&projection.input, below)
        }
        LogicalPlan::Filter(_)
        | LogicalPlan::Sort(_)
        | LogicalPlan::Limit(_)
        | LogicalPlan::SubqueryAlias(_) => origin(plan.inputs()[0], index),
        _ => None,
    }
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

/// Checks the steps between the scan and the aggregate, and returns the
/// ranges of the aggregate's input columns.
fn input_ranges(
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

/// The range a bounded column is clamped to, in the column's own type:
/// integer columns to the integers inside the bounds.
fn column_range(
    data_type: &DataType,
    bounds: &sandlet_privacy::Bounds,
    column: &str,
) -> Result<Range, QueryError> {
    if !data_type.is_numeric() {
        return Err(denied(format!(
            "privacy.bounds names column {column}, which is {data_type}, not a number"
        )));
    }
    if data_type.is_integer() {
        let (low, high) = (bounds.lower.ceil(), bounds.upper.floor());
        if low > high {
            return Err(denied(format!(
                "privacy.bounds of integer column {column} contain no integer"
            )));
        }
        Ok(Range { low, high })
    } else {
        Ok(Range {
            low: bounds.lower,
            high: bounds.upper,
        })
    }
}

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
fn check_expr(expr: &Expr, schema: &DFSchema) -> Result<(), QueryError> {
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

/// The range of a numeric expression over rows whose bounded columns are
/// within their ranges; `None` when nothing bounds it. NULL has no range:
/// aggregates skip it, so it widens nothing (`Range` of a NULL-only branch
/// is left out of the hull).
fn range_of(expr: &Expr, ranges: &Ranges) -> Option<Range> {
    let range = match expr {
        Expr::Column(column) => ranges.get(column).copied()?,
        Expr::Literal(value, _) => Range::point(number(value)?),
        Expr::Alias(alias) => range_of(&alias.expr, ranges)?,
        Expr::Cast(cast) => widen_to_integer(range_of(&cast.expr, ranges)?, cast.field.data_type()),
        Expr::TryCast(cast) => {
            widen_to_integer(range_of(&cast.expr, ranges)?, cast.field.data_type())
        }
        Expr::Negative(inner) => {
            let r = range_of(inner, ranges)?;
            Range {
                low: -r.high,
                high: -r.low,
            }
        }
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let (a, b) = (range_of(left, ranges)?, range_of(right, ranges)?);
            match op {
                Operator::Plus => Range {
                    low: a.low + b.low,
                    high: a.high + b.high,
                },
                Operator::Minus => Range {
                    low: a.low - b.high,
                    high: a.high - b.low,
                },
                Operator::Multiply => {
                    let products = [
                        a.low * b.low,
                        a.low * b.high,
                        a.high * b.low,
                        a.high * b.high,
                    ];
                    Range {
                        low: products.iter().copied().fold(f64::INFINITY, f64::min),
                        high: products.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                    }
                }
                Operator::Divide if b.low == b.high && b.low != 0.0 => {
                    let (x, y) = (a.low / b.low, a.high / b.low);
                    Range {
                        low: x.min(y),
                        high: x.max(y),
                    }
                }
                _ => return None,
            }
        }
        Expr::Case(Case {
            when_then_expr,
            else_expr,
            ..
        }) => {
            let mut hull: Option<Range> = None;
            let branches = when_then_expr
                .iter()
                .map(|(_, then)| &**then)
                .chain(else_expr.as_deref());
            for branch in branches {
                if matches!(branch, Expr::Literal(v, _) if v.is_null()) {
                    continue;
                }
                let r = range_of(branch, ranges)?;
                hull = Some(hull.map_or(r, |h| h.hull(r)));
            }
            hull?
        }
        Expr::ScalarFunction(function) if function.func.name() == "coalesce" => {
            let mut hull: Option<Range> = None;
            for arg in &function.args {
                let r = range_of(arg, ranges)?;
                hull = Some(hull.map_or(r, |h| h.hull(r)));
            }
            hull?
        }
        _ => return None,
    };
    range.finite()
}

/// A cast to an integer type truncates: the range grows to whole numbers.
fn widen_to_integer(range: Range, to: &DataType) -> Range {
    if to.is_integer() {
        Range {
            low: range.low.floor(),
            high: range.high.ceil(),
        }
    } else {
        range
    }
}

fn number(value: &ScalarValue) -> Option<f64> {
    match value {
        ScalarValue::Boolean(_) | ScalarValue::Utf8(_) | ScalarValue::Utf8View(_) => None,
        v if v.is_null() => None,
        v => v.cast_to(&DataType::Float64).ok().and_then(|f| match f {
            ScalarValue::Float64(Some(x)) => Some(x),
            _ => None,
        }),
    }
}

fn count_rows() -> Expr {
    aggregate(count_udaf(), lit(1i64), false)
}

fn aggregate(
    function: Arc<datafusion::logical_expr::AggregateUDF>,
    arg: Expr,
    distinct: bool,
) -> Expr {
    Expr::AggregateFunction(AggregateFunction::new_udf(
        function,
        vec![arg],
        distinct,
        None,
        vec![],
        None,
    ))
}

/// What a fixed-point sum adds up: the value, its distance from a
/// center, or that distance squared.
#[derive(Debug, Clone, Copy)]
enum Shape {
    Plain,
    Centered(f64),
    Squared(f64),
}

/// The statistics a query needs, each made once.
struct Builder {
    stats: Vec<Stat>,
    rows: u32,
}

impl Builder {
    fn stat(
        &mut self,
        kind: StatKind,
        expr: Expr,
        key: String,
        sensitivity: u64,
        unit: f64,
    ) -> usize {
        if let Some(i) = self
            .stats
            .iter()
            .position(|s| s.kind == kind && s.key == key)
        {
            return i;
        }
        let name = format!("__sandlet_stat_{}", self.stats.len());
        self.stats.push(Stat {
            kind,
            key,
            expr: expr.alias(name),
            sensitivity: sensitivity.max(1) * u64::from(self.rows),
            unit,
        });
        self.stats.len() - 1
    }

    /// A fixed-point sum of `value` clamped to `range`, less `center` and
    /// squared for [`Shape::Squared`].
    fn sum(
        &mut self,
        value: &Expr,
        range: Range,
        integral: bool,
        key: &str,
        shape: Shape,
    ) -> usize {
        let (center, square) = match shape {
            Shape::Plain => (0.0, false),
            Shape::Centered(c) => (c, false),
            Shape::Squared(c) => (c, true),
        };
        let deviation = (range.low - center).abs().max((range.high - center).abs());
        let magnitude = if square {
            deviation * deviation
        } else {
            deviation
        };
        let unit = if (integral && !square && center == 0.0 && magnitude <= 2f64.powi(UNIT_BITS))
            || magnitude == 0.0
        {
            1.0
        } else {
            2f64.powi(magnitude.log2().ceil() as i32 - UNIT_BITS)
        };
        let sensitivity = (magnitude / unit).ceil() as u64;
        let quantizer = Quantizer {
            low: range.low,
            high: range.high,
            center,
            square,
            unit,
        };
        let function = Arc::new(AggregateUDF::from(FixedSum::new(quantizer)));
        let arg = Expr::Cast(Cast::new(Box::new(value.clone()), DataType::Float64));
        self.stat(
            StatKind::Sum,
            aggregate(function, arg, false),
            format!("{shape:?}({key})@{unit}"),
            sensitivity,
            unit,
        )
    }

    fn output(
        &mut self,
        expr: &Expr,
        schema: &DFSchema,
        ranges: &Ranges,
    ) -> Result<Output, QueryError> {
        let function = match expr {
            Expr::AggregateFunction(f) => f,
            Expr::Alias(alias) => match &*alias.expr {
                Expr::AggregateFunction(f) => f,
                other => return Err(invalid(format!("unexpected aggregate {other}"))),
            },
            other => return Err(invalid(format!("unexpected aggregate {other}"))),
        };
        let name = function.func.name().to_owned();
        let AggregateFunctionParams {
            args,
            distinct,
            filter,
            order_by,
            ..
        } = &function.params;
        if !order_by.is_empty() {
            return Err(denied(format!(
                "{} may not take ORDER BY",
                name.to_uppercase()
            )));
        }
        let [arg] = args.as_slice() else {
            return Err(denied(format!(
                "{} with {} arguments cannot be answered with differential privacy",
                name.to_uppercase(),
                args.len()
            )));
        };
        check_expr(arg, schema)?;
        // FILTER (WHERE c) is CASE WHEN c THEN x END: the same rows count.
        let arg = match filter {
            None => arg.clone(),
            Some(condition) => {
                check_expr(condition, schema)?;
                when((**condition).clone(), arg.clone())
                    .end()
                    .map_err(invalid)?
            }
        };
        let constant = matches!(&arg, Expr::Literal(v, _) if !v.is_null());
        if *distinct && name != "count" {
            return Err(denied(format!(
                "DISTINCT is allowed only in COUNT(DISTINCT ...), not in {}",
                name.to_uppercase()
            )));
        }
        let key = arg.to_string();
        let range = |ranges: &Ranges| {
            range_of(&arg, ranges).ok_or_else(|| {
                denied(format!(
                    "{}({key}) needs the range of its values: declare privacy.bounds for the \
                     columns it reads (only +, -, *, / by a constant, CASE and COALESCE of \
                     bounded columns and constants have one)",
                    name.to_uppercase()
                ))
            })
        };
        let integral = arg.get_type(schema).is_ok_and(|t| t.is_integer());
        let count = |b: &mut Builder| {
            let expr = aggregate(count_udaf(), arg.clone(), false);
            b.stat(StatKind::Count, expr, key.clone(), 1, 1.0)
        };
        Ok(match name.as_str() {
            "count" if *distinct => {
                let expr = aggregate(count_udaf(), arg.clone(), true);
                Output::Count {
                    stat: self.stat(StatKind::Distinct, expr, key.clone(), 1, 1.0),
                }
            }
            "count" if constant => Output::Count {
                stat: self.stat(StatKind::Rows, count_rows(), "*".to_owned(), 1, 1.0),
            },
            "count" => Output::Count { stat: count(self) },
            "sum" => {
                let range = range(ranges)?;
                Output::Sum {
                    stat: self.sum(&arg, range, integral, &key, Shape::Plain),
                }
            }
            "avg" => {
                let range = range(ranges)?;
                Output::Mean {
                    sum: self.sum(&arg, range, integral, &key, Shape::Plain),
                    count: count(self),
                    range,
                }
            }
            "var" | "var_pop" | "stddev" | "stddev_pop" => {
                let range = range(ranges)?;
                let center = (range.low + range.high) / 2.0;
                let half = (range.high - range.low) / 2.0;
                Output::Variance {
                    count: count(self),
                    centered: self.sum(&arg, range, false, &key, Shape::Centered(center)),
                    squares: self.sum(&arg, range, false, &key, Shape::Squared(center)),
                    half,
                    population: name.ends_with("_pop"),
                    sqrt: name.starts_with("stddev"),
                }
            }
            other => {
                return Err(denied(format!(
                    "{} cannot be answered with differential privacy here; use COUNT, \
                     COUNT(DISTINCT), SUM, AVG, VAR or STDDEV",
                    other.to_uppercase()
                )));
            }
        })
    }
}

/// What one release spent and how noisy it is, for the record and for
/// guests that report intervals.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Release {
    /// The query's ε as charged.
    pub epsilon: Epsilon,
    pub delta: f64,
    /// The discrete Laplace scale of each statistic, in its own units.
    pub scales: Vec<f64>,
    /// With GROUP BY: the noisy row count a group needed to be shown.
    pub threshold: Option<i64>,
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

    /// The noise of each result column that is one of the aggregate's
    /// values, passed up unchanged (renamed at most).
    pub fn noise(&self, release: &Release) -> Noise {
        const ALPHA: f64 = 0.05;
        let accuracy =
            |stat: usize| mechanism::accuracy(release.scales[stat], ALPHA) * self.stats[stat].unit;
        let mut columns = Vec::new();
        for (index, field) in self.plan.schema().fields().iter().enumerate() {
            let Some(output) = origin(&self.plan, index)
                .and_then(|i| i.checked_sub(self.keys))
                .and_then(|i| self.outputs.get(i))
            else {
                continue;
            };
            let (statistic, count, sum) = match *output {
                Output::Count { stat } => ("count", Some(accuracy(stat)), None),
                Output::Sum { stat } => ("sum", None, Some(accuracy(stat))),
                Output::Mean { sum, count, .. } => {
                    ("mean", Some(accuracy(count)), Some(accuracy(sum)))
                }
                Output::Variance { count, sqrt, .. } => (
                    if sqrt { "stddev" } else { "variance" },
                    Some(accuracy(count)),
                    None,
                ),
            };
            columns.push(ColumnNoise {
                column: field.name().clone(),
                statistic: statistic.to_owned(),
                count_accuracy: count,
                sum_accuracy: sum,
            });
        }
        Noise {
            epsilon: release.epsilon.as_f64(),
            delta: release.delta,
            threshold: release.threshold,
            columns,
        }
    }

    /// Adds noise to the exact statistics in `batches` (the result of
    /// [`Private::exact`]), spending `epsilon` (and its share of δ), and
    /// returns the whole plan with the noisy table in the aggregate's place.
    pub fn release(
        &self,
        batches: &[RecordBatch],
        epsilon: Epsilon,
    ) -> Result<(LogicalPlan, Release), QueryError> {
        let grouped = self.keys > 0;
        let each = (epsilon.as_f64() / self.stats.len() as f64).next_down();
        let delta = self.policy.delta_for(epsilon);
        // Exact rows: the keys, and each statistic (a NULL sum is 0).
        let mut keys: Vec<Vec<ScalarValue>> = Vec::new();
        let mut exact: Vec<Vec<i64>> = vec![Vec::new(); self.stats.len()];
        for batch in batches {
            for row in 0..batch.num_rows() {
                let mut key = Vec::with_capacity(self.keys);
                for column in 0..self.keys {
                    key.push(
                        ScalarValue::try_from_array(batch.column(column), row).map_err(invalid)?,
                    );
                }
                keys.push(key);
                for (s, values) in exact.iter_mut().enumerate() {
                    let array = batch.column(self.keys + s);
                    let value = match ScalarValue::try_from_array(array, row).map_err(invalid)? {
                        ScalarValue::Int64(v) => v.unwrap_or(0),
                        other => {
                            return Err(invalid(format!(
                                "statistic of type {}",
                                other.data_type()
                            )));
                        }
                    };
                    values.push(value);
                }
            }
        }
        // Which groups are shown: all of them without GROUP BY (one, whose
        // presence tells nothing); with it, those that pass the threshold.
        let rows_stat = self.stats.iter().position(|s| s.kind == StatKind::Rows);
        let mut noisy: Vec<Option<Vec<i64>>> = vec![None; self.stats.len()];
        let mut scales = vec![0.0; self.stats.len()];
        let mut threshold = None;
        let shown: Vec<usize> = if grouped {
            let rows = rows_stat.ok_or_else(|| invalid("grouped without a row count"))?;
            let counts: HashMap<u64, i64> = exact[rows]
                .iter()
                .enumerate()
                .map(|(i, c)| (i as u64, *c))
                .collect();
            let Thresholded {
                counts: kept,
                scale,
                threshold: t,
                ..
            } = mechanism::laplace_threshold(counts, self.policy.max_rows_per_person, each, delta)
                .map_err(invalid)?;
            let mut shown: Vec<usize> = kept.keys().map(|k| *k as usize).collect();
            shown.sort_unstable();
            noisy[rows] = Some(shown.iter().map(|i| kept[&(*i as u64)]).collect());
            scales[rows] = scale;
            threshold = Some(t);
            shown
        } else {
            (0..keys.len()).collect()
        };
        for (s, stat) in self.stats.iter().enumerate() {
            if noisy[s].is_some() {
                continue;
            }
            let values: Vec<i64> = shown.iter().map(|i| exact[s][*i]).collect();
            let released = mechanism::laplace(&values, stat.sensitivity, each).map_err(invalid)?;
            scales[s] = released.scale;
            noisy[s] = Some(released.values);
        }
        let noisy: Vec<Vec<i64>> = noisy.into_iter().map(Option::unwrap_or_default).collect();

        // The noisy table, in the aggregate's schema.
        let fields = self.schema.fields();
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(fields.len());
        for k in 0..self.keys {
            let values: Vec<ScalarValue> = shown.iter().map(|i| keys[*i][k].clone()).collect();
            columns.push(if values.is_empty() {
                datafusion::arrow::array::new_empty_array(fields[k].data_type())
            } else {
                ScalarValue::iter_to_array(values).map_err(invalid)?
            });
        }
        for (o, output) in self.outputs.iter().enumerate() {
            let field = &fields[self.keys + o];
            let values: Vec<ScalarValue> = (0..shown.len())
                .map(|row| self.value(output, &noisy, row).cast_to(field.data_type()))
                .collect::<Result<_, _>>()
                .map_err(invalid)?;
            columns.push(if values.is_empty() {
                datafusion::arrow::array::new_empty_array(field.data_type())
            } else {
                ScalarValue::iter_to_array(values).map_err(invalid)?
            });
        }
        let plain: Vec<_> = fields
            .iter()
            .enumerate()
            .map(|(i, f)| {
                datafusion::arrow::datatypes::Field::new(
                    format!("c{i}"),
                    f.data_type().clone(),
                    true,
                )
            })
            .collect();
        let arrow_schema = Arc::new(Schema::new(plain));
        let columns: Vec<ArrayRef> = columns
            .into_iter()
            .zip(arrow_schema.fields())
            .map(|(c, f)| {
                if c.data_type() == f.data_type() {
                    Ok(c)
                } else {
                    datafusion::arrow::compute::cast(&c, f.data_type())
                }
            })
            .collect::<Result<_, _>>()
            .map_err(invalid)?;
        let batch = RecordBatch::try_new(arrow_schema.clone(), columns).map_err(invalid)?;
        let table = MemTable::try_new(arrow_schema, vec![vec![batch]]).map_err(invalid)?;
        let renamed: Vec<Expr> = self
            .schema
            .iter()
            .enumerate()
            .map(|(i, (qualifier, field))| {
                col(format!("c{i}")).alias_qualified(qualifier.cloned(), field.name())
            })
            .collect();
        let noisy_plan =
            LogicalPlanBuilder::scan(NOISY_TABLE, provider_as_source(Arc::new(table)), None)
                .and_then(|b| b.project(renamed))
                .and_then(LogicalPlanBuilder::build)
                .map_err(invalid)?;
        let mut replaced = false;
        let plan = self
            .plan
            .clone()
            .transform_up(|node| {
                if !replaced
                    && let LogicalPlan::Aggregate(aggregate) = &node
                    && reads_data(&aggregate.input)
                {
                    replaced = true;
                    return Ok(Transformed::yes(noisy_plan.clone()));
                }
                Ok(Transformed::no(node))
            })
            .map_err(invalid)?
            .data;
        if !replaced {
            return Err(invalid("the private aggregate was not found again"));
        }
        Ok((
            plan,
            Release {
                epsilon,
                delta: if grouped { delta } else { 0.0 },
                scales,
                threshold,
            },
        ))
    }

    /// One output value of one shown group from the noisy statistics.
    fn value(&self, output: &Output, noisy: &[Vec<i64>], row: usize) -> ScalarValue {
        let get = |s: usize| noisy[s][row] as f64 * self.stats[s].unit;
        match *output {
            Output::Count { stat } => ScalarValue::Int64(Some(noisy[stat][row].max(0))),
            Output::Sum { stat } => ScalarValue::Float64(Some(get(stat))),
            Output::Mean { sum, count, range } => {
                let n = get(count);
                if n < 1.0 {
                    return ScalarValue::Float64(None);
                }
                ScalarValue::Float64(Some((get(sum) / n).clamp(range.low, range.high)))
            }
            Output::Variance {
                count,
                centered,
                squares,
                half,
                population,
                sqrt,
            } => {
                let n = get(count);
                if n < 2.0 {
                    return ScalarValue::Float64(None);
                }
                let mean = (get(centered) / n).clamp(-half, half);
                let mut variance = (get(squares) / n - mean * mean).clamp(0.0, half * half);
                if !population {
                    variance = (variance * n / (n - 1.0)).min(half * half * 2.0);
                }
                ScalarValue::Float64(Some(if sqrt { variance.sqrt() } else { variance }))
            }
        }
    }
}

#[cfg(test)]
#[path = "private_tests.rs"]
mod tests;
