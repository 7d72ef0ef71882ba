//! The disclosure guard: the plan node that checks, while a query runs, that
//! every group an aggregate returns summarises enough rows.
//!
//! The policy checker ([`super::policy`]) puts a [`GuardNode`] directly above
//! each aggregate whose groups reach the query's output, after adding to
//! that aggregate a `COUNT(*)` (rows per group) and, for each aggregate value,
//! a `COUNT` of the rows that actually feed it (so that `FILTER` clauses and
//! `CASE ... END` arguments that single out a few rows are counted as what
//! they are). [`GuardExec`] reads all of the aggregate's groups before
//! letting any through, and fails the query with a [`PolicyViolation`] when
//! any group, or any aggregate value, summarises fewer than `minGroupSize`
//! rows, or when the aggregate read fewer than `minRows` rows in all (zero
//! groups included). Nothing is answered partially.
//!
//! Being an extension node, the guard is opaque to DataFusion's optimizers:
//! no filter, limit or projection is pushed through it, so it always sees
//! every group its aggregate makes.

use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

use std::collections::HashSet;

use datafusion::arrow::array::{Array, AsArray, Int64Array, RecordBatch};
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
    /// Column holding each group's row count.
    pub group_rows: usize,
    /// Columns holding, for each aggregate value, the rows that fed it.
    pub value_rows: Vec<usize>,
    pub min_group_size: u64,
    pub min_rows: u64,
    /// The datasets whose policies set the thresholds, for messages.
    pub datasets: String,
    /// Row sets (`sandlet_rowset`) of distinct source rows per dataset scan:
    /// each must be empty or reach `min_group_size`, and a group set's union
    /// over all groups must be empty or reach `min_rows`.
    pub sets: Vec<SetCheck>,
}

/// One row-set column the guard checks.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd)]
pub(crate) struct SetCheck {
    pub column: usize,
    /// A value's rows (`true`) or the group's (`false`).
    pub value: bool,
    pub min_group_size: u64,
    pub min_rows: u64,
}

impl GuardSpec {
    fn group_too_small(&self) -> DataFusionError {
        violation(
            "minGroupSize",
            format!(
                "every group of the result must summarise at least {} rows of {}, \
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
        for (check, seen) in self.sets.iter().zip(seen.iter_mut()) {
            let Some(lists) = batch.column(check.column).as_list_opt::<i32>() else {
                return internal_err!("guard column {} is not a row set", check.column);
            };
            for row in 0..lists.len() {
                let len = if lists.is_null(row) {
                    0
                } else {
                    lists.value_length(row) as u64
                };
                if len > 0 && len < check.min_group_size {
                    return Err(if check.value {
                        self.value_too_thin()
                    } else {
                        self.group_too_small()
                    });
                }
                if !check.value && (seen.len() as u64) < check.min_rows && !lists.is_null(row) {
                    let ids = lists.value(row);
                    seen.extend(ids.as_primitive::<UInt64Type>().iter().flatten());
                }
            }
        }
        Ok(())
    }

    /// After the last batch: every scan's distinct rows, over all groups.
    fn check_totals(&self, seen: &[HashSet<u64>]) -> Result<()> {
        for (check, seen) in self.sets.iter().zip(seen) {
            if !check.value && !seen.is_empty() && (seen.len() as u64) < check.min_rows {
                return Err(self.too_few_rows());
            }
        }
        Ok(())
    }

    /// Checks one batch of groups; returns the rows they summarise.
    fn check(&self, batch: &RecordBatch) -> Result<u64> {
        let mut total: u64 = 0;
        for value in counts(batch, self.group_rows)?.iter() {
            let value = value.unwrap_or(0).max(0) as u64;
            if value < self.min_group_size {
                return Err(self.group_too_small());
            }
            total = total.saturating_add(value);
        }
        for &column in &self.value_rows {
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
            if total < spec.min_rows {
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
