//! The query policy against an oracle (`oracle.rs`): 150 random queries
//! over random tables, each answer compared with DataFusion without a
//! policy and its backing rows counted.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answered_queries_equal_datafusion_and_are_backed_by_enough_rows() {
    let outcome = crate::oracle::run(12, 150).await;
    eprintln!(
        "oracle: {} answered, {} denied, {} failures",
        outcome.answered,
        outcome.denied,
        outcome.failures.len()
    );
    assert!(
        outcome.failures.is_empty(),
        "{} of {} cases broke a property:\n{}",
        outcome.failures.len(),
        outcome.answered + outcome.denied,
        outcome.failures.join("\n")
    );
    // Both sides of the policy were exercised.
    assert!(outcome.answered >= 20, "{outcome:?}");
    assert!(outcome.denied >= 20, "{outcome:?}");
}
