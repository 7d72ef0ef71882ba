//! A private query's release: discrete Laplace noise on each exact
//! statistic (through [`sandlet_privacy::mechanism`], the query's ε split
//! evenly between them), group keys shown only when their noisy row count
//! passes OpenDP's δ-threshold, the noisy table put in the aggregate's place
//! for the rest of the plan to run over, and each result column's noise.
//!
//! It must never show a group, or a value, that the mechanism did not
//! release: every value in the noisy table comes from noisy statistics.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::datatypes::Schema;
use datafusion::common::ScalarValue;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::datasource::{MemTable, provider_as_source};
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder, col};

use sandlet_core::data::{ColumnNoise, Noise};
use sandlet_privacy::Epsilon;
use sandlet_privacy::mechanism::{self, Thresholded};

use super::stats::{Output, StatKind};
use super::{Private, invalid, reads_data};
use crate::QueryError;

/// The name of the noisy table that takes the aggregate's place.
const NOISY_TABLE: &str = "__sandlet_noisy";

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

/// The key values of each group, in the order of the exact statistics.
type Keys = Vec<Vec<ScalarValue>>;

/// The noisy statistics of the groups a release shows.
struct Noised {
    /// The groups shown, by their row in the exact statistics.
    shown: Vec<usize>,
    /// For each statistic, its noisy value in each group shown.
    noisy: Vec<Vec<i64>>,
    /// The discrete Laplace scale of each statistic, in its own units.
    scales: Vec<f64>,
    /// With GROUP BY: the noisy row count a group needed to be shown.
    threshold: Option<i64>,
}

impl Private {
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
        let (keys, exact) = self.exact_rows(batches)?;
        let Noised {
            shown,
            noisy,
            scales,
            threshold,
        } = self.noised(&exact, keys.len(), each, delta)?;
        let noisy_plan = self.noisy_table(&keys, &shown, &noisy)?;
        let plan = self.with_noisy_table(noisy_plan)?;
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

    /// The exact rows of `batches`: the keys, and each statistic (a NULL sum
    /// is 0).
    fn exact_rows(&self, batches: &[RecordBatch]) -> Result<(Keys, Vec<Vec<i64>>), QueryError> {
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
        Ok((keys, exact))
    }

    /// Noise on the `exact` statistics of `groups` groups, each statistic
    /// spending `each` of ε (and the row count its share of `delta`).
    fn noised(
        &self,
        exact: &[Vec<i64>],
        groups: usize,
        each: f64,
        delta: f64,
    ) -> Result<Noised, QueryError> {
        let grouped = self.keys > 0;
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
            (0..groups).collect()
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
        Ok(Noised {
            shown,
            noisy,
            scales,
            threshold,
        })
    }

    /// The noisy table, in the aggregate's schema: the keys of the groups
    /// `shown`, then each output's value from the `noisy` statistics.
    fn noisy_table(
        &self,
        keys: &[Vec<ScalarValue>],
        shown: &[usize],
        noisy: &[Vec<i64>],
    ) -> Result<LogicalPlan, QueryError> {
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
                .map(|row| self.value(output, noisy, row).cast_to(field.data_type()))
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
        Ok(noisy_plan)
    }

    /// The whole plan as planned, with `noisy_plan` in the private
    /// aggregate's place.
    fn with_noisy_table(&self, noisy_plan: LogicalPlan) -> Result<LogicalPlan, QueryError> {
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
        Ok(plan)
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
