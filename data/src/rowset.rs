//! Which source rows stand behind a group: row ids, and the capped row-set
//! aggregate the guards count them with.
//!
//! Thresholds must count people's rows, not the rows an operator happens to
//! produce: a join repeats a row, a union with constants pads a group. So
//! every dataset scan in a checked query carries a hidden row-id column
//! (`__sandlet_rid_<n>`, one per scan, unique within it; [`RowIdTable`]),
//! which the policy checker carries through projections, filters, joins and
//! unions. Aggregates gather the ids into `sandlet_rowset` sets: a
//! terminal aggregate's guard counts them, and an intermediate aggregate
//! passes its sets on under the same column name.
//!
//! A set keeps at most `cap` ids (the larger of the dataset's
//! `minGroupSize` and `minRows`): whether a union of sets reaches `cap` is
//! decided exactly by the capped sets (if any part reaches the cap so does
//! the union; otherwise nothing was dropped), so memory stays a few ids per
//! group however large the data.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, ListArray, RecordBatch, UInt64Array, UInt64Builder,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef, UInt64Type};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{ScalarValue, internal_err};
use datafusion::datasource::TableType;
use datafusion::error::Result;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDFImpl, EmitTo, Expr, GroupsAccumulator, Signature,
    TableProviderFilterPushDown, Volatility,
};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning,
    PlanProperties, ReplaceChildrenOptions,
};
use futures_util::StreamExt;

use super::table::DatasetTable;

/// Prefix of the row-id (and row-set) columns.
pub(crate) const RID_PREFIX: &str = "__sandlet_rid_";

pub(crate) fn is_rid(name: &str) -> bool {
    name.starts_with(RID_PREFIX)
}

/// The list type of row sets.
pub(crate) fn set_type() -> DataType {
    DataType::List(Arc::new(Field::new_list_field(DataType::UInt64, true)))
}

/// A granted dataset, as the checked plan scans it: its visible columns and
/// one more, the row id.
#[derive(Debug)]
pub(crate) struct RowIdTable {
    pub table: Arc<DatasetTable>,
    schema: SchemaRef,
}

impl RowIdTable {
    pub fn new(table: Arc<DatasetTable>, instance: usize) -> Self {
        let mut fields: Vec<FieldRef> = table.visible_schema().fields().iter().cloned().collect();
        fields.push(Arc::new(Field::new(
            format!("{RID_PREFIX}{instance}"),
            DataType::UInt64,
            false,
        )));
        RowIdTable {
            table,
            schema: Arc::new(Schema::new(fields)),
        }
    }
}

#[async_trait::async_trait]
impl TableProvider for RowIdTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let rid = self.schema.fields().len() - 1;
        let all: Vec<usize> = (0..self.schema.fields().len()).collect();
        let projection = projection.unwrap_or(&all);
        let visible: Vec<usize> = projection.iter().copied().filter(|&i| i != rid).collect();
        let input = self
            .table
            .scan(state, Some(&visible), filters, limit)
            .await?;
        match projection.iter().position(|&i| i == rid) {
            None => Ok(input),
            Some(at) => {
                let schema = Arc::new(self.schema.project(projection)?);
                Ok(Arc::new(RowIdExec::new(input, at, schema)))
            }
        }
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        self.table.supports_filters_pushdown(filters)
    }
}

/// Inserts a row-id column at `at`: partition number in the high bits, row
/// number within the partition below.
#[derive(Debug)]
struct RowIdExec {
    input: Arc<dyn ExecutionPlan>,
    at: usize,
    properties: Arc<PlanProperties>,
}

impl RowIdExec {
    fn new(input: Arc<dyn ExecutionPlan>, at: usize, schema: SchemaRef) -> Self {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema),
            Partitioning::UnknownPartitioning(input.output_partitioning().partition_count()),
            input.pipeline_behavior(),
            input.boundedness(),
        );
        RowIdExec {
            input,
            at,
            properties: Arc::new(properties),
        }
    }
}

impl DisplayAs for RowIdExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "SandletRowIdExec")
    }
}

impl ExecutionPlan for RowIdExec {
    fn name(&self) -> &str {
        "SandletRowIdExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
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
            return internal_err!("SandletRowIdExec takes one input");
        }
        Ok(Arc::new(RowIdExec::new(
            children.swap_remove(0),
            self.at,
            self.schema(),
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
        let input = self.input.execute(partition, context)?;
        let schema = self.schema();
        let out_schema = Arc::clone(&schema);
        let at = self.at;
        let mut next = (partition as u64) << 40;
        let stream = input.map(move |batch| {
            let batch = batch?;
            let rows = batch.num_rows() as u64;
            let ids: ArrayRef = Arc::new(UInt64Array::from_iter_values(next..next + rows));
            next += rows;
            let mut columns = batch.columns().to_vec();
            columns.insert(at, ids);
            Ok(RecordBatch::try_new(Arc::clone(&out_schema), columns)?)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }
}

/// `sandlet_rowset(ids)`: the set of row ids (or the union of row sets) of
/// a group, capped at `cap` ids.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct RowSet {
    cap: usize,
    signature: Signature,
}

impl RowSet {
    pub fn new(cap: u64) -> Self {
        RowSet {
            cap: usize::try_from(cap.max(1)).unwrap_or(usize::MAX),
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl AggregateUDFImpl for RowSet {
    fn name(&self) -> &str {
        "sandlet_rowset"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(set_type())
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(SetAccumulator {
            set: Vec::new(),
            cap: self.cap,
        }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(
            format!("{}[set]", args.name),
            set_type(),
            true,
        ))])
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(
        &self,
        _args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(SetsAccumulator {
            sets: Vec::new(),
            cap: self.cap,
        }))
    }
}

/// Adds `id` unless the set is full or has it.
fn add(set: &mut Vec<u64>, cap: usize, id: u64) {
    if set.len() < cap && !set.contains(&id) {
        set.push(id);
    }
}

/// Calls `f(row, id)` for every id in `values` (ids or lists of ids).
fn for_each_id(values: &ArrayRef, mut f: impl FnMut(usize, u64)) -> Result<()> {
    match values.data_type() {
        DataType::UInt64 => {
            let ids = values.as_primitive::<UInt64Type>();
            for (row, id) in ids.iter().enumerate() {
                if let Some(id) = id {
                    f(row, id);
                }
            }
        }
        DataType::List(_) => {
            let lists = values.as_list::<i32>();
            for row in 0..lists.len() {
                if lists.is_null(row) {
                    continue;
                }
                let list = lists.value(row);
                for id in list.as_primitive::<UInt64Type>().iter().flatten() {
                    f(row, id);
                }
            }
        }
        other => return internal_err!("sandlet_rowset of {other}"),
    }
    Ok(())
}

fn to_list(sets: &[Vec<u64>]) -> ArrayRef {
    let mut values = UInt64Builder::new();
    let mut offsets = Vec::with_capacity(sets.len() + 1);
    offsets.push(0i32);
    for set in sets {
        values.append_slice(set);
        offsets.push(offsets.last().copied().unwrap_or(0) + set.len() as i32);
    }
    Arc::new(ListArray::new(
        Arc::new(Field::new_list_field(DataType::UInt64, true)),
        OffsetBuffer::new(offsets.into()),
        Arc::new(values.finish()),
        None,
    ))
}

#[derive(Debug)]
struct SetAccumulator {
    set: Vec<u64>,
    cap: usize,
}

impl Accumulator for SetAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let (set, cap) = (&mut self.set, self.cap);
        for_each_id(&values[0], |_, id| add(set, cap, id))
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::List(Arc::new(
            to_list(std::slice::from_ref(&self.set))
                .as_list::<i32>()
                .clone(),
        )))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.set.capacity() * 8
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![self.evaluate()?])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.update_batch(states)
    }
}

#[derive(Debug)]
struct SetsAccumulator {
    sets: Vec<Vec<u64>>,
    cap: usize,
}

impl SetsAccumulator {
    fn add_all(
        &mut self,
        values: &ArrayRef,
        groups: &[usize],
        filter: Option<&BooleanArray>,
        total: usize,
    ) -> Result<()> {
        if self.sets.len() < total {
            self.sets.resize_with(total, Vec::new);
        }
        let (sets, cap) = (&mut self.sets, self.cap);
        for_each_id(values, |row, id| {
            if filter.is_none_or(|f| f.is_valid(row) && f.value(row)) {
                add(&mut sets[groups[row]], cap, id);
            }
        })
    }

    fn take(&mut self, emit_to: EmitTo) -> ArrayRef {
        let sets = emit_to.take_needed(&mut self.sets);
        to_list(&sets)
    }
}

impl GroupsAccumulator for SetsAccumulator {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.add_all(&values[0], group_indices, opt_filter, total_num_groups)
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        Ok(self.take(emit_to))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        Ok(vec![self.take(emit_to)])
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.add_all(&values[0], group_indices, None, total_num_groups)
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        let mut sets = vec![Vec::new(); values[0].len()];
        let cap = self.cap;
        for_each_id(&values[0], |row, id| {
            if opt_filter.is_none_or(|f| f.is_valid(row) && f.value(row)) {
                add(&mut sets[row], cap, id);
            }
        })?;
        Ok(vec![to_list(&sets)])
    }

    fn size(&self) -> usize {
        self.sets.capacity() * std::mem::size_of::<Vec<u64>>()
            + self.sets.iter().map(|s| s.capacity() * 8).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(values: &[u64]) -> ArrayRef {
        Arc::new(UInt64Array::from(values.to_vec()))
    }

    fn lists(sets: &[Vec<u64>]) -> ArrayRef {
        to_list(sets)
    }

    fn sets_of(array: &ArrayRef) -> Vec<Vec<u64>> {
        let lists = array.as_list::<i32>();
        (0..lists.len())
            .map(|row| {
                let mut ids: Vec<u64> = lists
                    .value(row)
                    .as_primitive::<UInt64Type>()
                    .iter()
                    .flatten()
                    .collect();
                ids.sort_unstable();
                ids
            })
            .collect()
    }

    #[test]
    fn a_set_keeps_distinct_ids_up_to_its_cap() {
        let mut set = SetAccumulator {
            set: Vec::new(),
            cap: 3,
        };
        set.update_batch(&[ids(&[7, 7, 8])]).unwrap();
        assert_eq!(set.set, vec![7, 8]);
        set.update_batch(&[ids(&[8, 9, 10, 11])]).unwrap();
        assert_eq!(set.set, vec![7, 8, 9], "capped at 3");
        // Merging partial states (lists) is a union, capped the same way.
        let mut other = SetAccumulator {
            set: Vec::new(),
            cap: 3,
        };
        other
            .merge_batch(&[lists(&[vec![1, 2], vec![2, 3]])])
            .unwrap();
        assert_eq!(other.set, vec![1, 2, 3]);
    }

    #[test]
    fn whether_a_union_reaches_the_cap_is_decided_exactly_by_capped_parts() {
        // Parts below the cap keep every id, so their union is exact; a
        // part at the cap makes the union reach it too.
        let cap = 4;
        let parts = [vec![1, 2], vec![2, 3], vec![3, 1]];
        let mut union = SetAccumulator {
            set: Vec::new(),
            cap,
        };
        union.merge_batch(&[lists(&parts)]).unwrap();
        assert_eq!(union.set.len(), 3, "three distinct ids, below the cap");
        union.merge_batch(&[lists(&[vec![9, 8, 7, 6]])]).unwrap();
        assert_eq!(union.set.len(), cap);
    }

    #[test]
    fn groups_gather_their_own_ids_and_honour_the_filter() {
        let mut groups = SetsAccumulator {
            sets: Vec::new(),
            cap: 2,
        };
        let filter = BooleanArray::from(vec![Some(true), Some(false), None, Some(true)]);
        groups
            .update_batch(&[ids(&[1, 2, 3, 4])], &[0, 0, 1, 1], Some(&filter), 2)
            .unwrap();
        assert_eq!(groups.sets, vec![vec![1], vec![4]]);
        groups
            .merge_batch(&[lists(&[vec![5, 6, 7], vec![4]])], &[1, 0], 2)
            .unwrap();
        assert_eq!(groups.sets, vec![vec![1, 4], vec![4, 5]]);
        let emitted = groups.evaluate(EmitTo::All).unwrap();
        assert_eq!(sets_of(&emitted), vec![vec![1, 4], vec![4, 5]]);
        let state = groups
            .convert_to_state(
                &[ids(&[1, 2])],
                Some(&BooleanArray::from(vec![false, true])),
            )
            .unwrap();
        assert_eq!(sets_of(&state[0]), vec![vec![], vec![2]]);
    }
}
