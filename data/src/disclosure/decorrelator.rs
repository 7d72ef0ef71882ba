//! Subquery expressions rewritten into the joins they mean, before the
//! disclosure checks walk the plan: `EXISTS`, `IN`, `ANY`/`ALL` and scalar
//! subqueries, with DataFusion's own decorrelation rules.
//!
//! It must never decide what may run: a shape a rule cannot rewrite stays a
//! subquery expression, which the checker checks where it stands.

use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::execution::SessionState;
use datafusion::logical_expr::LogicalPlan;
use datafusion::optimizer::decorrelate_lateral_join::DecorrelateLateralJoin;
use datafusion::optimizer::decorrelate_predicate_subquery::DecorrelatePredicateSubquery;
use datafusion::optimizer::rewrite_set_comparison::RewriteSetComparison;
use datafusion::optimizer::scalar_subquery_to_join::ScalarSubqueryToJoin;
use datafusion::optimizer::{Optimizer, OptimizerContext};

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
