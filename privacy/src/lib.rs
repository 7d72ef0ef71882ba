//! sandlet's differential privacy, below the data engine: what a dataset's
//! `privacy:` policy may say, the noise mechanisms (OpenDP's), and the
//! durable ledger of what each namespace has spent on each dataset.
//!
//! Layers, bottom up:
//!
//! - `policy`: [`PrivacyPolicy`] and the exact unit budgets are counted in,
//!   [`Epsilon`];
//! - `mechanism`: OpenDP's discrete Laplace and thresholded releases,
//!   calibrated and checked against their privacy maps;
//! - `ledger`: [`Ledger`], the per dataset and namespace accounts in the
//!   state directory.
//!
//! It knows no SQL, no DataFusion, no wasmtime and no Kubernetes: the data
//! engine (`sandlet-data`) decides what a query's statistics and their
//! sensitivities are, and calls on this crate to charge and to add noise.

pub mod mechanism;

mod ledger;
mod policy;

pub use ledger::{Account, Charge, Ledger, LedgerError, ledger_dir};
pub use policy::{Bounds, DEFAULT_MAX_ROWS_PER_PERSON, Epsilon, PrivacyPolicy, PrivacySpec};
