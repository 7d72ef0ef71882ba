//! Differential privacy on PostgreSQL tables (one server per test process,
//! `scripts/postgres` on loopback): the noisy aggregates of
//! `local::privacy` on the same data loaded into PostgreSQL.

use crate::local::privacy::private_suite;
use crate::local::queries::{Source, write_csv};
use crate::services::queries::load_postgres;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_aggregates_on_postgres() {
    let dir = tempfile::tempdir().unwrap();
    write_csv(dir.path());
    let url = load_postgres(dir.path(), "private");
    private_suite(dir.path(), Source::Postgres, Some(&url)).await;
}
