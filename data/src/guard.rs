//! The disclosure guard: the plan node that checks, while a query runs, that
//! every group an aggregate makes summarises enough rows.
//!
//! The policy checker ([`super::disclosure`]) puts a [`GuardNode`] directly above
//! every aggregate that reads dataset rows, wherever it stands in the plan,
//! after adding to that aggregate what the guard counts:
//!
//! - in a plan with one scan and nothing that repeats rows (*plain counts*):
//!   a `COUNT(*)` per group and, for each aggregate value, a `COUNT` of the
//!   rows that actually feed it (so `FILTER` clauses and `CASE` arguments
//!   that single out a few rows are counted as what they are);
//! - otherwise, per dataset scan, the capped row-id sets of each group and
//!   of each value ([`super::rowset`]), which count distinct source rows
//!   however joins, unions and nested aggregates repeat or merge them.
//!
//! [`GuardExec`] reads all of the aggregate's groups before letting any
//! through, and fails the query with a [`PolicyViolation`] when any group,
//! or any aggregate value, summarises fewer than `minGroupSize` rows, or
//! when the aggregate read fewer than `minRows` rows in all (zero groups
//! included). Nothing is answered partially.
//!
//! Being an extension node, the guard is opaque to DataFusion's optimizers:
//! no filter, limit or projection is pushed through it, so it always sees
//! every group its aggregate makes. It must never let a batch out before
//! every batch was checked.

use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

use std::collections::HashSet;

use datafusion::arrow::array::{Array, AsArray, Int64Array, ListArray, RecordBatch};
use datafusion::arrow::datatypes::UInt64Type;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DFSchemaRef, internal_err};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::context::QueryPlanner;
use datafusion::execution::memory_pool::MemoryConsumer;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{
    Expr, LogicalPlan, UserDefinedLogicalNode, UserDefinedLogicalNodeCore,
};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::distribution_requirements::InputDistributionRequirements;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, Distribution, ExecutionPlan, Partitioning, PlanProperties,
    ReplaceChildrenOptions,
};
use datafusion::physical_planner::{DefaultPhysicalPlanner, ExtensionPlanner, PhysicalPlanner};
use futures_util::{StreamExt, TryStreamExt};

/// A query stopped because it would break a dataset's disclosure policy.
/// `rule` is the policy field that was broken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{rule}: {message}")]
pub(crate) struct PolicyViolation {
    pub rule: &'static str,
    pub message: String,
}

/// What one guard checks.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd)]
pub(crate) struct GuardSpec {
    /// Plain row counts, only where they count distinct source rows (in
    /// plans without row ids); with row ids the sets decide.
    pub plain: Option<PlainCounts>,
    pub min_group_size: u64,
    pub min_rows: u64,
    /// The datasets whose policies set the thresholds, for messages.
    pub datasets: String,
    /// Row sets (`sandlet_rowset`) of distinct source rows per dataset scan:
    /// a group's set must be empty or reach `min_group_size`, its union
    /// over all groups must reach `min_rows`, and a value's set must reach
    /// `min_group_size` unless its group has no rows of that scan at all.
    pub sets: Vec<SetCheck>,
}

/// The columns of plain row counts.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd)]
pub(crate) struct PlainCounts {
    /// Each group's row count.
    pub group_rows: usize,
    /// For each aggregate value, the rows that fed it.
    pub value_rows: Vec<usize>,
}

/// One row-set column the guard checks.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd)]
pub(crate) struct SetCheck {
    pub column: usize,
    pub kind: SetKind,
    pub min_group_size: u64,
    pub min_rows: u64,
}

/// Whose rows a row set holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd)]
pub(crate) enum SetKind {
    /// A group's rows of one scan.
    Group,
    /// The rows of one scan that feed an aggregate value; `group` is the
    /// column of the group's set of the same scan, when the plan has one.
    Value { group: Option<usize> },
}

impl GuardSpec {
    fn group_too_small(&self) -> DataFusionError {
        violation(
            "minGroupSize",
            format!(
                "every group an aggregate makes must summarise at least {} rows of {}, \
                 and a group of this query summarises fewer",
                self.min_group_size, self.datasets
            ),
        )
    }

    fn value_too_thin(&self) -> DataFusionError {
        violation(
            "minGroupSize",
            format!(
                "every aggregate value must be computed from at least {} rows of {}, \
                 and a value of this query is computed from fewer \
                 (a FILTER or CASE that selects few rows)",
                self.min_group_size, self.datasets
            ),
        )
    }

    fn too_few_rows(&self) -> DataFusionError {
        violation(
            "minRows",
            format!(
                "an aggregate must read at least {} rows of {} after filtering, \
                 and an aggregate of this query reads fewer",
                self.min_rows, self.datasets
            ),
        )
    }

    /// Checks the row sets of one batch of groups, adding each group set's
    /// ids to `seen` (by position in `sets`).
    fn check_sets(&self, batch: &RecordBatch, seen: &mut [HashSet<u64>]) -> Result<()> {
        let lists_of = |column: usize| match batch.column(column).as_list_opt::<i32>() {
            Some(lists) => Ok(lists),
            None => internal_err!("guard column {column} is not a row set"),
        };
        let len = |lists: &ListArray, row: usize| {
            if lists.is_null(row) {
                0
            } else {
                lists.value_length(row) as u64
            }
        };
        for (check, seen) in self.sets.iter().zip(seen.iter_mut()) {
            let lists = lists_of(check.column)?;
            let group = match check.kind {
                SetKind::Value {
                    group: Some(column),
                } => Some(lists_of(column)?),
                _ => None,
            };
            for row in 0..lists.len() {
                let n = len(lists, row);
                if n >= check.min_group_size {
                    // Enough.
                } else if let SetKind::Value { .. } = check.kind {
                    // A value of none of its group's rows of this scan is
                    // fine only when the group has none either.
                    let group_empty = group.is_some_and(|g| len(g, row) == 0);
                    if n > 0 || !group_empty {
                        return Err(self.value_too_thin());
                    }
                } else if n > 0 {
                    return Err(self.group_too_small());
                }
                if check.kind == SetKind::Group
                    && (seen.len() as u64) < check.min_rows
                    && !lists.is_null(row)
                {
                    let ids = lists.value(row);
                    seen.extend(ids.as_primitive::<UInt64Type>().iter().flatten());
                }
            }
        }
        Ok(())
    }

    /// After the last batch: every scan's distinct rows, over all groups,
    /// reach `min_rows` (none at all is too few: "nobody" is an answer).
    fn check_totals(&self, seen: &[HashSet<u64>]) -> Result<()> {
        for (check, seen) in self.sets.iter().zip(seen) {
            if check.kind == SetKind::Group && (seen.len() as u64) < check.min_rows {
                return Err(self.too_few_rows());
            }
        }
        Ok(())
    }

    /// Checks the plain counts of one batch of groups; returns the rows
    /// they summarise.
    fn check(&self, batch: &RecordBatch) -> Result<u64> {
        let Some(plain) = &self.plain else {
            return Ok(0);
        };
        let mut total: u64 = 0;
        for value in counts(batch, plain.group_rows)?.iter() {
            let value = value.unwrap_or(0).max(0) as u64;
            if value < self.min_group_size {
                return Err(self.group_too_small());
            }
            total = total.saturating_add(value);
        }
        for &column in &plain.value_rows {
            if counts(batch, column)?
                .iter()
                .any(|n| (n.unwrap_or(0).max(0) as u64) < self.min_group_size)
            {
                return Err(self.value_too_thin());
            }
        }
        Ok(total)
    }
}

fn counts(batch: &RecordBatch, column: usize) -> Result<&Int64Array> {
    match batch.column(column).as_any().downcast_ref::<Int64Array>() {
        Some(array) => Ok(array),
        None => internal_err!("guard column {column} is not a count"),
    }
}

fn violation(rule: &'static str, message: String) -> DataFusionError {
    DataFusionError::External(Box::new(PolicyViolation { rule, message }))
}

/// The logical guard; its schema is its input's.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct GuardNode {
    pub input: LogicalPlan,
    pub spec: GuardSpec,
}

impl GuardNode {
    pub fn plan(input: LogicalPlan, spec: GuardSpec) -> LogicalPlan {
        LogicalPlan::Extension(datafusion::logical_expr::Extension {
            node: Arc::new(GuardNode { input, spec }),
        })
    }
}

impl PartialOrd for GuardNode {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        match self.input.partial_cmp(&other.input) {
            Some(Ordering::Equal) => self.spec.partial_cmp(&other.spec),
            other => other,
        }
    }
}

impl UserDefinedLogicalNodeCore for GuardNode {
    fn name(&self) -> &str {
        "SandletGuard"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }

    fn schema(&self) -> &DFSchemaRef {
        self.input.schema()
    }

    fn expressions(&self) -> Vec<Expr> {
        Vec::new()
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "SandletGuard: minGroupSize={}, minRows={}",
            self.spec.min_group_size, self.spec.min_rows
        )
    }

    fn with_exprs_and_inputs(
        &self,
        exprs: Vec<Expr>,
        mut inputs: Vec<LogicalPlan>,
    ) -> Result<Self> {
        if !exprs.is_empty() || inputs.len() != 1 {
            return internal_err!("SandletGuard takes one input and no expressions");
        }
        Ok(GuardNode {
            input: inputs.swap_remove(0),
            spec: self.spec.clone(),
        })
    }
}

/// The physical guard: one partition in, one out.
#[derive(Debug)]
pub(crate) struct GuardExec {
    input: Arc<dyn ExecutionPlan>,
    spec: GuardSpec,
    properties: Arc<PlanProperties>,
}

impl GuardExec {
    fn new(input: Arc<dyn ExecutionPlan>, spec: GuardSpec) -> Self {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(input.schema()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        );
        GuardExec {
            input,
            spec,
            properties: Arc::new(properties),
        }
    }
}

impl DisplayAs for GuardExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "SandletGuardExec: minGroupSize={}, minRows={}",
            self.spec.min_group_size, self.spec.min_rows
        )
    }
}

impl ExecutionPlan for GuardExec {
    fn name(&self) -> &str {
        "SandletGuardExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn input_distribution_requirements(&self) -> InputDistributionRequirements {
        InputDistributionRequirements::new(vec![Distribution::SinglePartition])
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.len() != 1 {
            return internal_err!("SandletGuardExec takes one input");
        }
        Ok(Arc::new(GuardExec::new(
            children.swap_remove(0),
            self.spec.clone(),
        )))
    }

    #[allow(deprecated)]
    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.replace_children(
            children,
            ReplaceChildrenOptions::new(
                datafusion::physical_plan::ChildrenPropertiesMode::Recompute,
            ),
        )
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return internal_err!("SandletGuardExec has one partition, not {partition}");
        }
        let mut input = self.input.execute(0, Arc::clone(&context))?;
        let spec = self.spec.clone();
        let reservation = MemoryConsumer::new("SandletGuard").register(context.memory_pool());
        let checked = async move {
            let mut batches = Vec::new();
            let mut total: u64 = 0;
            let mut seen = vec![HashSet::new(); spec.sets.len()];
            while let Some(batch) = input.next().await {
                let batch = batch?;
                total = total.saturating_add(spec.check(&batch)?);
                spec.check_sets(&batch, &mut seen)?;
                reservation.try_grow(batch.get_array_memory_size())?;
                batches.push(batch);
            }
            if spec.plain.is_some() && total < spec.min_rows {
                return Err(spec.too_few_rows());
            }
            spec.check_totals(&seen)?;
            // The reservation lives as long as the batches are held.
            Ok(futures_util::stream::iter(batches.into_iter().map(
                move |batch| {
                    let _held = &reservation;
                    Ok(batch)
                },
            )))
        };
        let stream = futures_util::stream::once(checked).try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema(),
            stream,
        )))
    }
}

/// Plans [`GuardNode`]s.
struct GuardPlanner;

#[async_trait::async_trait]
impl ExtensionPlanner for GuardPlanner {
    async fn plan_extension(
        &self,
        _planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        _logical_inputs: &[&LogicalPlan],
        physical_inputs: &[Arc<dyn ExecutionPlan>],
        _session: &dyn datafusion::catalog::Session,
        _planning_ctx: &datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        let Some(guard) = node.as_any().downcast_ref::<GuardNode>() else {
            return Ok(None);
        };
        let [input] = physical_inputs else {
            return internal_err!("SandletGuard takes one input");
        };
        Ok(Some(Arc::new(GuardExec::new(
            Arc::clone(input),
            guard.spec.clone(),
        ))))
    }
}

/// The query planner of sandlet's sessions: DataFusion's, plus guards.
#[derive(Debug)]
pub(crate) struct GuardedQueryPlanner;

#[async_trait::async_trait]
impl QueryPlanner for GuardedQueryPlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session: &dyn datafusion::catalog::Session,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        DefaultPhysicalPlanner::with_extension_planners(vec![Arc::new(GuardPlanner)])
            .create_physical_plan(logical_plan, session)
            .await
    }
}

/// The error of type `T` somewhere in an error's chain, if there is one.
pub(crate) fn find_in_chain<T: std::error::Error + 'static>(error: &DataFusionError) -> Option<&T> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        current = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{ArrayRef, ListArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema, UInt64Type};

    /// One batch whose columns are row sets, one list per group.
    fn sets(columns: &[Vec<Vec<u64>>]) -> RecordBatch {
        let fields: Vec<Field> = (0..columns.len())
            .map(|i| Field::new(format!("s{i}"), super::super::rowset::set_type(), true))
            .collect();
        let arrays: Vec<ArrayRef> = columns
            .iter()
            .map(|groups| {
                Arc::new(ListArray::from_iter_primitive::<UInt64Type, _, _>(
                    groups
                        .iter()
                        .map(|ids| Some(ids.iter().copied().map(Some).collect::<Vec<_>>())),
                )) as ArrayRef
            })
            .collect();
        RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).unwrap()
    }

    fn spec(kinds: &[SetKind]) -> GuardSpec {
        GuardSpec {
            plain: None,
            min_group_size: 3,
            min_rows: 4,
            datasets: "t".into(),
            sets: kinds
                .iter()
                .enumerate()
                .map(|(column, &kind)| SetCheck {
                    column,
                    kind,
                    min_group_size: 3,
                    min_rows: 4,
                })
                .collect(),
        }
    }

    /// The rule of the violation, or `None` when the sets pass.
    fn verdict(spec: &GuardSpec, batches: &[RecordBatch]) -> Option<&'static str> {
        let mut seen = vec![HashSet::new(); spec.sets.len()];
        let result = batches
            .iter()
            .try_for_each(|b| spec.check_sets(b, &mut seen))
            .and_then(|()| spec.check_totals(&seen));
        result.err().map(|e| {
            find_in_chain::<PolicyViolation>(&e)
                .expect("a violation")
                .rule
        })
    }

    #[test]
    fn a_group_set_is_empty_or_large_enough_and_the_total_reaches_min_rows() {
        let group = spec(&[SetKind::Group]);
        assert_eq!(
            verdict(&group, &[sets(&[vec![vec![1, 2, 3], vec![4, 5, 6]]])]),
            None
        );
        // One group of two.
        assert_eq!(
            verdict(&group, &[sets(&[vec![vec![1, 2, 3], vec![4, 5]]])]),
            Some("minGroupSize")
        );
        // A group with none of this scan's rows (an outer join's padding).
        assert_eq!(
            verdict(&group, &[sets(&[vec![vec![1, 2, 3, 4], vec![]]])]),
            None
        );
        // Three distinct rows over two groups that share them: too few.
        assert_eq!(
            verdict(&group, &[sets(&[vec![vec![1, 2, 3], vec![3, 2, 1]]])]),
            Some("minRows")
        );
        // The same rows split over batches count once.
        assert_eq!(
            verdict(
                &group,
                &[sets(&[vec![vec![1, 2, 3]]]), sets(&[vec![vec![1, 2, 3]]])]
            ),
            Some("minRows")
        );
        // No rows at all is too few: "nobody" is an answer.
        assert_eq!(verdict(&group, &[sets(&[vec![vec![]]])]), Some("minRows"));
        assert_eq!(verdict(&group, &[]), Some("minRows"));
    }

    #[test]
    fn a_value_may_read_none_of_a_scans_rows_only_when_its_group_has_none() {
        let value = spec(&[SetKind::Group, SetKind::Value { group: Some(0) }]);
        let both = |group: Vec<Vec<u64>>, value_sets: Vec<Vec<u64>>| {
            verdict(&value, &[sets(&[group, value_sets])])
        };
        assert_eq!(both(vec![vec![1, 2, 3, 4]], vec![vec![1, 2, 3]]), None);
        assert_eq!(
            both(vec![vec![1, 2, 3, 4]], vec![vec![1]]),
            Some("minGroupSize")
        );
        // A FILTER that matches nobody in a group that has rows: zero is an
        // answer about those rows.
        assert_eq!(
            both(vec![vec![1, 2, 3, 4]], vec![vec![]]),
            Some("minGroupSize")
        );
        // A group without rows of this scan has no values of it either.
        assert_eq!(
            both(vec![vec![1, 2, 3, 4], vec![]], vec![vec![1, 2, 3], vec![]]),
            None
        );
        // Without a group set of the same scan, an empty value is too thin.
        let alone = spec(&[SetKind::Group, SetKind::Value { group: None }]);
        assert_eq!(
            verdict(&alone, &[sets(&[vec![vec![1, 2, 3, 4]], vec![vec![]]])]),
            Some("minGroupSize")
        );
    }

    #[test]
    fn plain_counts_are_checked_only_when_asked() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, false),
            Field::new("v", DataType::Int64, false),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![5, 2])),
                Arc::new(Int64Array::from(vec![5, 2])),
            ],
        )
        .unwrap();
        let mut spec = spec(&[]);
        assert_eq!(spec.check(&batch).unwrap(), 0);
        spec.plain = Some(PlainCounts {
            group_rows: 0,
            value_rows: vec![1],
        });
        let error = spec.check(&batch).unwrap_err();
        assert_eq!(
            find_in_chain::<PolicyViolation>(&error).unwrap().rule,
            "minGroupSize"
        );
        let big = RecordBatch::try_new(
            batch.schema(),
            vec![
                Arc::new(Int64Array::from(vec![5, 4])),
                Arc::new(Int64Array::from(vec![3, 3])),
            ],
        )
        .unwrap();
        assert_eq!(spec.check(&big).unwrap(), 9);
    }
}
