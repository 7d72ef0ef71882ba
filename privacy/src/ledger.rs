//! The privacy budget ledger: how much ε each namespace has spent on each
//! dataset, kept durably in the state directory.
//!
//! One JSON file, `<state dir>/privacy/ledger.json`, holds every account.
//! Each change takes an exclusive `flock` on `ledger.lock` beside it, reads
//! the file, checks, and writes a new copy whole (`sandlet_core::state_file`):
//! every process and thread that shares the state directory (the node's
//! pods, `sandlet run`, `sandlet query`) sees one sequence of charges, so no
//! race spends more than the budget, and a crash leaves either the old file
//! or the new one. This module owns that file. It must never let a charge
//! through that would take an account past its total, and never treat a
//! ledger it cannot read as empty: it refuses until the admin repairs it.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use sandlet_core::state_file::write_atomically;
use serde::{Deserialize, Serialize};

use super::policy::Epsilon;

/// Where a state directory keeps its ledger: `<state dir>/privacy`.
pub fn ledger_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("privacy")
}

const FILE: &str = "ledger.json";
const LOCK: &str = "ledger.lock";
const VERSION: u32 = 1;

/// What can go wrong with a charge.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LedgerError {
    /// The charge would take the account past its budget.
    #[error(
        "privacy budget of dataset {dataset} for namespace {namespace} is spent: {left} of {total} \
         left, and this query needs {needed}"
    )]
    Exhausted {
        /// The dataset whose budget is spent.
        dataset: String,
        /// The namespace whose account it is.
        namespace: String,
        /// The account's whole budget.
        total: Epsilon,
        /// What the account has left.
        left: Epsilon,
        /// What the refused charge asked for.
        needed: Epsilon,
    },
    /// The ledger cannot be read or written.
    #[error("privacy budget ledger {path}: {reason}")]
    Unavailable {
        /// The ledger file, or the lock or directory beside it.
        path: String,
        /// What went wrong, e.g. the IO or parse error.
        reason: String,
    },
}

/// One account: a dataset and a namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Account {
    /// The dataset whose budget the account draws on.
    pub dataset: String,
    /// The namespace whose queries are charged to it.
    pub namespace: String,
    /// ε spent, in billionths.
    pub spent: u64,
    /// How many charges were made since the account was opened or reset.
    pub charges: u64,
}

impl Account {
    /// ε spent, as an [`Epsilon`].
    pub fn spent(&self) -> Epsilon {
        Epsilon::from_nanos(self.spent)
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Book {
    version: u32,
    accounts: Vec<Account>,
}

/// A charge made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Charge {
    /// What this charge took from the account.
    pub charged: Epsilon,
    /// Spent after this charge.
    pub spent: Epsilon,
    /// The account's whole budget.
    pub total: Epsilon,
}

/// The ledger of one state directory.
#[derive(Debug, Clone)]
pub struct Ledger {
    dir: PathBuf,
}

impl Ledger {
    /// The ledger under `state_dir`; its directory is made if missing.
    pub fn open(state_dir: &Path) -> Result<Ledger, LedgerError> {
        let dir = ledger_dir(state_dir);
        std::fs::create_dir_all(&dir).map_err(|e| unavailable(&dir, e))?;
        Ok(Ledger { dir })
    }

    /// The ledger file, `ledger.json`.
    pub(crate) fn path(&self) -> PathBuf {
        self.dir.join(FILE)
    }

    /// Charges `amount` to the account of `dataset` and `namespace`, whose
    /// budget is `total`, if that leaves it within its budget.
    pub fn charge(
        &self,
        dataset: &str,
        namespace: &str,
        total: Epsilon,
        amount: Epsilon,
    ) -> Result<Charge, LedgerError> {
        self.change(|book| {
            let account = book.account(dataset, namespace);
            let spent = Epsilon::from_nanos(account.spent);
            let after = spent.checked_add(amount).filter(|after| *after <= total);
            let Some(after) = after else {
                return Err(LedgerError::Exhausted {
                    dataset: dataset.to_owned(),
                    namespace: namespace.to_owned(),
                    total,
                    left: total.saturating_sub(spent),
                    needed: amount,
                });
            };
            account.spent = after.nanos();
            account.charges += 1;
            Ok(Charge {
                charged: amount,
                spent: after,
                total,
            })
        })
    }

    /// What the account of `dataset` and `namespace` has spent.
    pub fn spent(&self, dataset: &str, namespace: &str) -> Result<Epsilon, LedgerError> {
        let _lock = self.lock()?;
        Ok(self
            .read()?
            .accounts
            .iter()
            .find(|a| a.dataset == dataset && a.namespace == namespace)
            .map_or(Epsilon::ZERO, Account::spent))
    }

    /// Every account, by dataset and namespace.
    pub fn accounts(&self) -> Result<Vec<Account>, LedgerError> {
        let _lock = self.lock()?;
        let mut accounts = self.read()?.accounts;
        accounts.sort_by(|a, b| (&a.dataset, &a.namespace).cmp(&(&b.dataset, &b.namespace)));
        Ok(accounts)
    }

    /// Sets the account back to nothing spent; returns what it had spent
    /// (`None` when there was no such account).
    pub fn reset(&self, dataset: &str, namespace: &str) -> Result<Option<Account>, LedgerError> {
        self.change(|book| {
            let index = book
                .accounts
                .iter()
                .position(|a| a.dataset == dataset && a.namespace == namespace);
            Ok(index.map(|i| book.accounts.remove(i)))
        })
    }

    /// Runs `f` on the book under the lock, and writes the book back when
    /// `f` succeeded.
    fn change<T>(
        &self,
        f: impl FnOnce(&mut Book) -> Result<T, LedgerError>,
    ) -> Result<T, LedgerError> {
        let _lock = self.lock()?;
        let mut book = self.read()?;
        let value = f(&mut book)?;
        self.write(&book)?;
        Ok(value)
    }

    fn lock(&self) -> Result<File, LedgerError> {
        let path = self.dir.join(LOCK);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| unavailable(&path, e))?;
        file.lock().map_err(|e| unavailable(&path, e))?;
        Ok(file)
    }

    fn read(&self) -> Result<Book, LedgerError> {
        let path = self.path();
        let text = match std::fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Book {
                    version: VERSION,
                    accounts: Vec::new(),
                });
            }
            Err(e) => return Err(unavailable(&path, e)),
        };
        let book: Book = serde_json::from_slice(&text).map_err(|e| {
            unavailable(
                &path,
                format!("cannot be read ({e}); no private query is answered until it is repaired"),
            )
        })?;
        if book.version != VERSION {
            return Err(unavailable(
                &path,
                format!(
                    "has version {}, and this sandlet reads {VERSION}",
                    book.version
                ),
            ));
        }
        Ok(book)
    }

    fn write(&self, book: &Book) -> Result<(), LedgerError> {
        let path = self.path();
        let mut text = serde_json::to_vec_pretty(book).map_err(|e| unavailable(&path, e))?;
        text.push(b'\n');
        write_atomically(&path, &text).map_err(|e| unavailable(&path, e))
    }
}

impl Book {
    fn account(&mut self, dataset: &str, namespace: &str) -> &mut Account {
        let index = match self
            .accounts
            .iter()
            .position(|a| a.dataset == dataset && a.namespace == namespace)
        {
            Some(index) => index,
            None => {
                self.accounts.push(Account {
                    dataset: dataset.to_owned(),
                    namespace: namespace.to_owned(),
                    spent: 0,
                    charges: 0,
                });
                self.accounts.len() - 1
            }
        };
        &mut self.accounts[index]
    }
}

fn unavailable(path: &Path, reason: impl std::fmt::Display) -> LedgerError {
    LedgerError::Unavailable {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eps(value: f64) -> Epsilon {
        Epsilon::from_f64(value).unwrap()
    }

    #[test]
    fn charges_add_up_exactly_and_stop_at_the_budget() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(dir.path()).unwrap();
        for i in 1..=10u64 {
            let charge = ledger
                .charge("patients", "research", eps(1.0), eps(0.1))
                .unwrap();
            assert_eq!(charge.spent, Epsilon::from_nanos(i * 100_000_000));
        }
        let refused = ledger
            .charge("patients", "research", eps(1.0), Epsilon::from_nanos(1))
            .unwrap_err();
        assert_eq!(
            refused,
            LedgerError::Exhausted {
                dataset: "patients".into(),
                namespace: "research".into(),
                total: eps(1.0),
                left: Epsilon::ZERO,
                needed: Epsilon::from_nanos(1),
            }
        );
        assert!(
            refused
                .to_string()
                .starts_with("privacy budget of dataset patients")
        );
        // Other accounts are untouched.
        assert_eq!(ledger.spent("patients", "other").unwrap(), Epsilon::ZERO);
        assert_eq!(ledger.spent("labs", "research").unwrap(), Epsilon::ZERO);
    }

    #[test]
    fn the_ledger_survives_reopening_and_reset_clears_one_account() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(dir.path()).unwrap();
        ledger.charge("patients", "a", eps(1.0), eps(0.3)).unwrap();
        ledger.charge("patients", "b", eps(1.0), eps(0.2)).unwrap();
        drop(ledger);
        let ledger = Ledger::open(dir.path()).unwrap();
        assert_eq!(ledger.spent("patients", "a").unwrap(), eps(0.3));
        let accounts = ledger.accounts().unwrap();
        assert_eq!(accounts.len(), 2);
        assert_eq!(
            (accounts[1].namespace.as_str(), accounts[1].charges),
            ("b", 1)
        );
        let old = ledger.reset("patients", "a").unwrap().unwrap();
        assert_eq!(old.spent(), eps(0.3));
        assert_eq!(ledger.reset("patients", "a").unwrap(), None);
        assert_eq!(ledger.spent("patients", "a").unwrap(), Epsilon::ZERO);
        assert_eq!(ledger.spent("patients", "b").unwrap(), eps(0.2));
    }

    #[test]
    fn many_threads_never_spend_more_than_the_budget() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_owned();
        let threads: Vec<_> = (0..16)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || {
                    // Each thread opens its own handle, as separate
                    // processes would.
                    let ledger = Ledger::open(&path).unwrap();
                    (0..10)
                        .filter(|_| ledger.charge("d", "n", eps(2.0), eps(0.07)).is_ok())
                        .count()
                })
            })
            .collect();
        let granted: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        // 2.0 / 0.07 = 28.57: exactly 28 charges fit.
        assert_eq!(granted, 28);
        let ledger = Ledger::open(&path).unwrap();
        assert_eq!(
            ledger.spent("d", "n").unwrap(),
            Epsilon::from_nanos(28 * 70_000_000)
        );
    }

    #[test]
    fn a_ledger_that_cannot_be_read_refuses_every_charge() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(dir.path()).unwrap();
        ledger.charge("d", "n", eps(1.0), eps(0.5)).unwrap();
        std::fs::write(ledger.path(), b"{ not json").unwrap();
        let error = ledger.charge("d", "n", eps(1.0), eps(0.1)).unwrap_err();
        assert!(matches!(error, LedgerError::Unavailable { .. }), "{error}");
        assert!(error.to_string().contains("repaired"), "{error}");
        // Nothing was written over it.
        assert_eq!(std::fs::read(ledger.path()).unwrap(), b"{ not json");
    }
}
