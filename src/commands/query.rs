//! `sandlet query`: one data query under the datasets' policies, as a
//! guest's would run (for data admins). Exit 0 with CSV on stdout; 1 with
//! the refusal on stderr, one line starting with its case (`denied:` ...);
//! 2 when the station file or a grant is wrong. No record, no answer: a
//! log that cannot be opened refuses the query.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use sandlet_audit::Caller;
use sandlet_core::data::{DataAccess, QueryError};
use sandlet_data::GrantedDatasets;
use sandlet_station::StationConfig;

use crate::args::StoreArgs;
use crate::error::CliError;
use crate::local;

#[derive(Debug, clap::Args)]
pub struct QueryArgs {
    /// The station's datasets and policies (YAML).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// A dataset the query may read (repeatable; default: every dataset in
    /// --config).
    #[arg(long = "grant", value_name = "NAME")]
    grants: Vec<String>,
    /// The query. Errors raised while data is read are told only in the
    /// log (SANDLET_LOG=warn shows them), as guests are told.
    #[arg(value_name = "SQL")]
    sql: String,
    /// The audit log is <state dir>/audit.
    #[command(flatten)]
    store: StoreArgs,
}

pub async fn execute(args: QueryArgs) -> Result<ExitCode, CliError> {
    let config = StationConfig::load(&args.config)?.data;
    let grants = if args.grants.is_empty() {
        config.datasets.iter().map(|d| d.name.clone()).collect()
    } else {
        args.grants
    };
    let data = GrantedDatasets::new(&config, &grants).map_err(|e| CliError::flag("--grant", e))?;
    let caller = Caller {
        via: "query".to_owned(),
        ..Caller::default()
    };
    let budget = local::local_budget(&args.store)?;
    let data = match local::audit_trail(&args.store, caller) {
        Ok(trail) => data.audited(trail).budgeted(budget),
        Err(reason) => {
            eprintln!("{}", QueryError::Denied(format!("audit: {reason}")));
            return Ok(ExitCode::from(1));
        }
    };
    match data.query(&args.sql).await {
        Ok(table) => {
            let mut text = csv_line(table.columns.iter().map(String::as_str));
            for row in &table.rows {
                let fields: Vec<String> = row.iter().map(ToString::to_string).collect();
                text.push_str(&csv_line(fields.iter().map(String::as_str)));
            }
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            out.write_all(text.as_bytes())
                .and_then(|()| out.flush())
                .map_err(|source| CliError::Io {
                    what: "cannot write the result".to_owned(),
                    source,
                })?;
            Ok(ExitCode::SUCCESS)
        }
        Err(refusal) => {
            // One line, starting with the case (`denied:` ...).
            eprintln!("{}", refusal.to_string().replace('\n', " "));
            Ok(ExitCode::from(1))
        }
    }
}

/// One CSV line of `fields`, ending in a line break.
fn csv_line<'a>(fields: impl Iterator<Item = &'a str>) -> String {
    let mut line = fields.map(csv_field).collect::<Vec<_>>().join(",");
    line.push('\n');
    line
}

/// One CSV field (RFC 4180): quoted when it holds a comma, a quote or a
/// line break.
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}
