//! `sandlet budget list|reset`: the differential-privacy budgets of a
//! state directory's ledger. A reset goes on the audit record, and is
//! refused when the record cannot be written.

use std::path::PathBuf;
use std::process::ExitCode;

use sandlet_audit::{Access, Caller, Decision, PrivacyEntry};
use sandlet_data::open_audit_log;
use sandlet_privacy::{Epsilon, Ledger};
use sandlet_station::StationConfig;

use crate::args::StoreArgs;
use crate::error::CliError;
use crate::local;

#[derive(Debug, clap::Subcommand)]
pub enum BudgetCommand {
    /// Print every account: dataset, namespace, ε spent, its budget and
    /// what is left (budgets from --config), and how many charges.
    List {
        /// The station file, for each private dataset's budget; its private
        /// datasets are listed even where nothing is spent yet.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Set one account back to nothing spent; the reset goes on the audit
    /// record.
    Reset {
        /// The dataset.
        #[arg(value_name = "DATASET")]
        dataset: String,
        /// The namespace whose account is reset (`@local` for `sandlet run`
        /// and `sandlet query`).
        #[arg(long, value_name = "NS")]
        namespace: String,
        /// The station file, to record the account's budget with the reset.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        #[command(flatten)]
        store: StoreArgs,
    },
}

pub fn execute(command: BudgetCommand) -> Result<ExitCode, CliError> {
    match command {
        BudgetCommand::List { config, store } => list(config, &store),
        BudgetCommand::Reset {
            dataset,
            namespace,
            config,
            store,
        } => reset(&dataset, &namespace, config, &store),
    }
}

/// Each private dataset's total budget in the station file, if one is given.
fn totals(config: Option<PathBuf>) -> Result<Vec<(String, Epsilon)>, CliError> {
    let Some(path) = config else {
        return Ok(Vec::new());
    };
    let station = StationConfig::load(&path)?;
    Ok(station
        .data
        .datasets
        .iter()
        .filter_map(|d| {
            d.policy
                .privacy
                .as_ref()
                .map(|p| (d.name.clone(), p.epsilon))
        })
        .collect())
}

fn list(config: Option<PathBuf>, store: &StoreArgs) -> Result<ExitCode, CliError> {
    let totals = totals(config)?;
    let ledger = Ledger::open(&store.state_dir()?)?;
    let accounts = ledger.accounts()?;
    let mut rows: Vec<[String; 6]> = Vec::new();
    for account in &accounts {
        let total = totals
            .iter()
            .find(|(d, _)| *d == account.dataset)
            .map(|(_, t)| *t);
        rows.push([
            account.dataset.clone(),
            account.namespace.clone(),
            account.spent().to_string(),
            total.map_or("-".to_owned(), |t| t.to_string()),
            total.map_or("-".to_owned(), |t| {
                t.saturating_sub(account.spent()).to_string()
            }),
            account.charges.to_string(),
        ]);
    }
    for (dataset, total) in &totals {
        if !accounts.iter().any(|a| a.dataset == *dataset) {
            rows.push([
                dataset.clone(),
                "-".to_owned(),
                "0".to_owned(),
                total.to_string(),
                total.to_string(),
                "0".to_owned(),
            ]);
        }
    }
    let header = ["DATASET", "NAMESPACE", "SPENT", "BUDGET", "LEFT", "CHARGES"];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    for row in std::iter::once(header.map(str::to_owned)).chain(rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:width$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
    Ok(ExitCode::SUCCESS)
}

fn reset(
    dataset: &str,
    namespace: &str,
    config: Option<PathBuf>,
    store: &StoreArgs,
) -> Result<ExitCode, CliError> {
    let total = totals(config)?
        .into_iter()
        .find(|(d, _)| d == dataset)
        .map_or("-".to_owned(), |(_, t)| t.to_string());
    let dir = store.state_dir()?;
    // The record must be writable before anything changes.
    let log = open_audit_log(&dir)
        .map_err(|e| CliError::step("the audit log cannot be opened, so no budget is reset", e))?;
    let ledger = Ledger::open(&dir)?;
    let Some(old) = ledger.reset(dataset, namespace)? else {
        eprintln!("no account of dataset {dataset} for namespace {namespace}: nothing is spent");
        return Ok(ExitCode::from(1));
    };
    let access = Access {
        station: local::station_name(),
        caller: Caller {
            via: "budget".to_owned(),
            namespace: Some(namespace.to_owned()),
            ..Caller::default()
        },
        datasets: vec![dataset.to_owned()],
        sql: String::new(),
        plan_fingerprint: None,
        decision: Decision::Answered,
        rule: None,
        reason: Some("privacy budget reset by the station's admin".to_owned()),
        rows: 0,
        duration_ms: 0.0,
        privacy: Some(PrivacyEntry {
            action: "reset".to_owned(),
            dataset: dataset.to_owned(),
            namespace: namespace.to_owned(),
            epsilon: old.spent().to_string(),
            spent: "0".to_owned(),
            total,
        }),
    };
    log.append(&access).map_err(|e| {
        CliError::step(
            "the budget was reset, and its audit record could not be written",
            e,
        )
    })?;
    println!(
        "reset dataset {dataset} for namespace {namespace}: {} spent in {} charges",
        old.spent(),
        old.charges
    );
    Ok(ExitCode::SUCCESS)
}
