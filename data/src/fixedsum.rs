//! `sandlet_fixed_sum(x)`: the sum of values clamped to a range, each
//! rounded to a whole number of units, as a 64-bit integer. The statistic
//! a differentially private SUM, AVG or VAR is noised from.
//!
//! One value is clamped (NaN counts as the top of the range, as Arrow
//! orders it), shifted by `center`, squared when asked, and rounded to
//! units: so every value adds at most `magnitude / unit` (rounded) to the
//! sum, which is the statistic's sensitivity, and the sum is exact integer
//! arithmetic with nothing floating-point can round away. This module owns
//! that arithmetic; it must never let one value add more than its bound.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Int64Array};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Float64Type, Int64Type};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDFImpl, EmitTo, GroupsAccumulator, Signature, Volatility,
};

/// How one value becomes units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Quantizer {
    pub low: f64,
    pub high: f64,
    pub center: f64,
    pub square: bool,
    pub unit: f64,
}

impl Quantizer {
    #[inline]
    pub fn units(&self, value: f64) -> i64 {
        let x = if value.is_nan() {
            self.high
        } else {
            value.clamp(self.low, self.high)
        };
        let y = x - self.center;
        let y = if self.square { y * y } else { y };
        (y / self.unit).round() as i64
    }
}

/// The aggregate function; equal when its quantizers are.
#[derive(Debug)]
pub(crate) struct FixedSum {
    quantizer: Quantizer,
    signature: Signature,
}

impl FixedSum {
    pub fn new(quantizer: Quantizer) -> Self {
        FixedSum {
            quantizer,
            signature: Signature::exact(vec![DataType::Float64], Volatility::Immutable),
        }
    }

    fn bits(&self) -> [u64; 5] {
        let q = &self.quantizer;
        [
            q.low.to_bits(),
            q.high.to_bits(),
            q.center.to_bits(),
            u64::from(q.square),
            q.unit.to_bits(),
        ]
    }
}

impl PartialEq for FixedSum {
    fn eq(&self, other: &Self) -> bool {
        self.bits() == other.bits()
    }
}

impl Eq for FixedSum {}

impl std::hash::Hash for FixedSum {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.bits().hash(state);
    }
}

impl AggregateUDFImpl for FixedSum {
    fn name(&self) -> &str {
        "sandlet_fixed_sum"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int64)
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(SumAccumulator {
            quantizer: self.quantizer,
            sum: 0,
        }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(
            format!("{}[sum]", args.name),
            DataType::Int64,
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
        Ok(Box::new(SumsAccumulator {
            quantizer: self.quantizer,
            sums: Vec::new(),
        }))
    }
}

#[derive(Debug)]
struct SumAccumulator {
    quantizer: Quantizer,
    sum: i64,
}

impl Accumulator for SumAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let values = values[0].as_primitive::<Float64Type>();
        for value in values.iter().flatten() {
            self.sum = self.sum.wrapping_add(self.quantizer.units(value));
        }
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::Int64(Some(self.sum)))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![self.evaluate()?])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        for sum in states[0].as_primitive::<Int64Type>().iter().flatten() {
            self.sum = self.sum.wrapping_add(sum);
        }
        Ok(())
    }
}

#[derive(Debug)]
struct SumsAccumulator {
    quantizer: Quantizer,
    sums: Vec<i64>,
}

fn selected(filter: Option<&BooleanArray>, row: usize) -> bool {
    filter.is_none_or(|f| f.is_valid(row) && f.value(row))
}

impl SumsAccumulator {
    fn take(&mut self, emit_to: EmitTo) -> ArrayRef {
        Arc::new(Int64Array::from(emit_to.take_needed(&mut self.sums)))
    }
}

impl GroupsAccumulator for SumsAccumulator {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.sums.resize(total_num_groups, 0);
        let values = values[0].as_primitive::<Float64Type>();
        let quantizer = self.quantizer;
        if values.null_count() == 0 && opt_filter.is_none() {
            for (value, group) in values.values().iter().zip(group_indices) {
                let sum = &mut self.sums[*group];
                *sum = sum.wrapping_add(quantizer.units(*value));
            }
            return Ok(());
        }
        for (row, group) in group_indices.iter().enumerate() {
            if values.is_valid(row) && selected(opt_filter, row) {
                let sum = &mut self.sums[*group];
                *sum = sum.wrapping_add(quantizer.units(values.value(row)));
            }
        }
        Ok(())
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
        self.sums.resize(total_num_groups, 0);
        let states = values[0].as_primitive::<Int64Type>();
        for (row, group) in group_indices.iter().enumerate() {
            if states.is_valid(row) {
                let sum = &mut self.sums[*group];
                *sum = sum.wrapping_add(states.value(row));
            }
        }
        Ok(())
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        let values = values[0].as_primitive::<Float64Type>();
        let units: Int64Array = (0..values.len())
            .map(|row| {
                (values.is_valid(row) && selected(opt_filter, row))
                    .then(|| self.quantizer.units(values.value(row)))
            })
            .collect();
        Ok(vec![Arc::new(units)])
    }

    fn size(&self) -> usize {
        self.sums.capacity() * 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_value_adds_at_most_its_bound_in_units() {
        let q = Quantizer {
            low: 10.0,
            high: 70.0,
            center: 0.0,
            square: false,
            unit: 2f64.powi(-14),
        };
        let bound = (70.0 / q.unit) as i64;
        for value in [
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -1e300,
            1e300,
            70.0,
            10.0,
        ] {
            let units = q.units(value);
            assert!((0..=bound).contains(&units), "{value} gave {units}");
        }
        assert_eq!(
            q.units(f64::NAN),
            bound,
            "NaN is the top, as Arrow orders it"
        );
        assert_eq!(q.units(25.5), (25.5 / q.unit) as i64);
        let centered = Quantizer {
            center: 40.0,
            square: true,
            unit: 1.0,
            ..q
        };
        assert_eq!(centered.units(100.0), 900);
        assert_eq!(centered.units(38.0), 4);
    }

    #[test]
    fn groups_sum_their_own_values() {
        let q = Quantizer {
            low: 0.0,
            high: 5.0,
            center: 0.0,
            square: false,
            unit: 1.0,
        };
        let mut acc = SumsAccumulator {
            quantizer: q,
            sums: Vec::new(),
        };
        let values: ArrayRef = Arc::new(datafusion::arrow::array::Float64Array::from(vec![
            Some(1.0),
            None,
            Some(9.0),
            Some(2.4),
        ]));
        acc.update_batch(&[values], &[0, 0, 1, 0], None, 2).unwrap();
        let sums = acc.evaluate(EmitTo::All).unwrap();
        let sums = sums.as_primitive::<Int64Type>();
        assert_eq!(sums.values().to_vec(), vec![3, 5]);
    }
}
