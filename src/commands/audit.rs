//! `sandlet audit verify|show`: the data-access audit log of a state
//! directory. `verify` exits 0 with the number of records when the chain
//! holds and 1 naming the first broken record otherwise; `show` prints
//! the records as a table.

use std::process::ExitCode;

use sandlet_audit::{DecisionFilter, Filter};
use sandlet_data::audit_dir;

use crate::args::StoreArgs;
use crate::error::CliError;

#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Check the log's hash chain: prints the number of records and the last
    /// record's hash and exits 0, or names the first broken record and exits
    /// 1.
    Verify {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Print the log's records as a table.
    Show(AuditShowArgs),
}

#[derive(Debug, clap::Args)]
pub struct AuditShowArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Only records at or after T: an RFC 3339 time
    /// (2026-12-02T10:00:00Z) or an age (30s, 10m, 2h, 1d).
    #[arg(long, value_name = "T")]
    since: Option<String>,
    /// Only queries from pods of this namespace.
    #[arg(long, value_name = "N")]
    namespace: Option<String>,
    /// Only this decision: answered, not-granted, denied, invalid,
    /// limit-exceeded, or refused (every one but answered).
    #[arg(long, value_name = "D")]
    decision: Option<String>,
}

pub fn execute(command: AuditCommand) -> Result<ExitCode, CliError> {
    match command {
        AuditCommand::Verify { store } => {
            match sandlet_audit::verify(&audit_dir(&store.state_dir()?)) {
                Ok(verified) => {
                    println!(
                        "{} records, chain intact; last hash {}",
                        verified.records, verified.last_hash
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(broken) => {
                    eprintln!("audit log broken at {broken}");
                    Ok(ExitCode::from(1))
                }
            }
        }
        AuditCommand::Show(args) => {
            let filter = filter_of(&args)?;
            let records = sandlet_audit::read(&audit_dir(&args.store.state_dir()?), &filter)?;
            print!("{}", sandlet_audit::render_table(&records));
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn filter_of(args: &AuditShowArgs) -> Result<Filter, CliError> {
    let since = args
        .since
        .as_deref()
        .map(sandlet_audit::parse_since)
        .transpose()
        .map_err(|e| CliError::flag("--since", e))?;
    let decision = args
        .decision
        .as_deref()
        .map(str::parse::<DecisionFilter>)
        .transpose()
        .map_err(|e| CliError::flag("--decision", e))?;
    Ok(Filter {
        since,
        namespace: args.namespace.clone(),
        decision,
    })
}
