//! The disclosure checks' unit tests, over one in-memory dataset under the
//! default (strict) policy: where guards and row ids are placed, and which
//! plans are refused with which reason.

use super::aggregate::aggregate_function;
use super::contributing::{contributing, is_constant};
use super::*;
use crate::{DatasetConfig, SourceConfig};
use datafusion::arrow::array::{Float64Array, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::datasource::MemTable;
use datafusion::logical_expr::lit;
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
